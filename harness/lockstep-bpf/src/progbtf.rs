//! The program BTF of a case: map key/value types (with `struct bpf_spin_lock` /
//! `struct bpf_res_spin_lock` recognised by name and size), data sections for global data maps
//! (one `VAR` per field, as clang emits for C globals and libbpf loads for `.data`/`.bss`), and
//! `FUNC`/`FUNC_PROTO` records for `func_info` when the case declares global functions. Graph
//! roots and nodes, `bpf_refcount` and kptrs are written as clang writes them from
//! `bpf_experimental.h` (the uapi struct by name and size, `contains:<type>:<node>` decl tags,
//! `PTR -> TYPE_TAG("kptr") -> STRUCT`), and the case's local object types as structs.

use std::collections::HashMap;

use lockstep_core::case::{Case, Field, FieldKind, FieldTarget, GlobalFunc, MapSpec, ObjType, ValueLayout};

use crate::sys::{Btf, SysError};

/// A built (not yet loaded) program BTF.
#[derive(Debug)]
pub struct ProgBtf {
    /// The BTF.
    pub btf: Btf,
    /// Per map of the case (same order): (key type id, value type id) when the map has BTF.
    pub maps: Vec<Option<(u32, u32)>>,
    /// Per map of the case (same order): the inner map's (key, value) type ids, for a map-in-map
    /// whose inner map has BTF.
    pub inner: Vec<Option<(u32, u32)>>,
    /// `func_info` records (insn_off, FUNC type id); empty unless the case has globals or names a
    /// local type's id (`btf_id`).
    pub func_info: Vec<(u32, u32)>,
    /// The type id of each of the case's local object types (same order).
    pub types: Vec<u32>,
}

/// A C identifier made from `s` (BTF names of structs, vars, funcs must be identifiers).
pub fn ident(s: &str) -> String {
    let mut out: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() || out.as_bytes()[0].is_ascii_digit() {
        out.insert(0, '_');
    }
    out
}

/// Instruction indices where subprograms start, as the kernel's `add_subprog_and_kfunc` finds
/// them: 0, targets of bpf-to-bpf calls and of `ld_imm64` with `BPF_PSEUDO_FUNC`.
pub fn subprog_starts(case: &Case) -> Vec<usize> {
    case.program.subprog_starts()
}

/// Type ids shared by everything in one BTF (ints by size, the lock structs).
#[derive(Default)]
struct Types {
    ints: HashMap<u32, u32>,
    u8_ty: Option<u32>,
    spin_lock: Option<u32>,
    res_spin_lock: Option<u32>,
    /// The uapi structs of graph roots / nodes and `bpf_refcount`, by kind.
    specials: HashMap<FieldKind, u32>,
    /// Structs by name: the case's local object types and kptr pointees.
    structs: HashMap<String, u32>,
}

impl Types {
    fn int(&mut self, btf: &mut Btf, size: u32) -> Result<u32, SysError> {
        if let Some(&id) = self.ints.get(&size) {
            return Ok(id);
        }
        let id = btf.add_int(&format!("__u{}", size * 8), size, false)?;
        self.ints.insert(size, id);
        Ok(id)
    }

    fn u8(&mut self, btf: &mut Btf) -> Result<u32, SysError> {
        if let Some(id) = self.u8_ty {
            return Ok(id);
        }
        let id = self.int(btf, 1)?;
        self.u8_ty = Some(id);
        Ok(id)
    }

    /// An unsigned int of `size` bytes, or `__u8[size]` for other sizes.
    fn scalar(&mut self, btf: &mut Btf, size: u32) -> Result<u32, SysError> {
        if matches!(size, 1 | 2 | 4 | 8) {
            self.int(btf, size)
        } else {
            let elem = self.u8(btf)?;
            let index = self.int(btf, 4)?;
            btf.add_array(index, elem, size)
        }
    }

    /// `struct bpf_spin_lock { __u32 val; }` (include/uapi/linux/bpf.h).
    fn spin_lock(&mut self, btf: &mut Btf) -> Result<u32, SysError> {
        if let Some(id) = self.spin_lock {
            return Ok(id);
        }
        let u32_ty = self.int(btf, 4)?;
        let id = btf.add_struct("bpf_spin_lock", 4)?;
        btf.add_field("val", u32_ty, 0)?;
        self.spin_lock = Some(id);
        Ok(id)
    }

    /// `struct bpf_res_spin_lock { u32 val; }`, 4 bytes, 4-aligned (include/asm-generic/rqspinlock.h,
    /// 6.15..7.3; btf.c matches it by name and `sizeof`). A layout that gives the field 8 bytes
    /// gets the 4-byte struct followed by padding.
    fn res_spin_lock(&mut self, btf: &mut Btf) -> Result<u32, SysError> {
        if let Some(id) = self.res_spin_lock {
            return Ok(id);
        }
        let u32_ty = self.int(btf, 4)?;
        let id = btf.add_struct("bpf_res_spin_lock", 4)?;
        btf.add_field("val", u32_ty, 0)?;
        self.res_spin_lock = Some(id);
        Ok(id)
    }

    /// `struct bpf_list_head { __u64 __opaque[2]; }` and the like (include/uapi/linux/bpf.h):
    /// btf.c matches the name and the size.
    fn special(&mut self, btf: &mut Btf, kind: FieldKind) -> Result<u32, SysError> {
        if let Some(&id) = self.specials.get(&kind) {
            return Ok(id);
        }
        let (size, align) = kind.size_align().expect("a special kind");
        let elem = self.int(btf, align)?;
        let index = self.int(btf, 4)?;
        let arr = btf.add_array(index, elem, size / align)?;
        let id = btf.add_struct(kind.struct_name().expect("a struct kind"), size)?;
        btf.add_field("__opaque", arr, 0)?;
        self.specials.insert(kind, id);
        Ok(id)
    }

    /// The struct named `name`: a local object type already written, else an empty struct of that
    /// name (a kernel type: btf.c looks a kptr's pointee up in vmlinux by name first).
    fn named_struct(&mut self, btf: &mut Btf, name: &str) -> Result<u32, SysError> {
        if let Some(&id) = self.structs.get(name) {
            return Ok(id);
        }
        let id = btf.add_struct(name, 0)?;
        self.structs.insert(name.to_string(), id);
        Ok(id)
    }

    fn field(&mut self, btf: &mut Btf, f: &Field) -> Result<u32, SysError> {
        match f.kind {
            FieldKind::Int => self.scalar(btf, f.size),
            FieldKind::SpinLock => self.spin_lock(btf),
            FieldKind::ResSpinLock => self.res_spin_lock(btf),
            k if k.is_kptr() => {
                let pointee = match &f.target {
                    Some(FieldTarget::Pointee(p)) => p.as_str(),
                    _ => "__lockstep_unknown",
                };
                let to = self.named_struct(btf, pointee)?;
                let tag = btf.add_type_tag(k.name(), to)?;
                btf.add_ptr(tag)
            }
            k => self.special(btf, k),
        }
    }
}

/// The `contains:<type>:<node>` decl tag of a graph root.
fn contains_tag(f: &Field) -> Option<String> {
    match &f.target {
        Some(FieldTarget::Contains { type_name, node }) => Some(format!("contains:{type_name}:{node}")),
        _ => None,
    }
}

/// A struct named `name` of `v`'s size with one member per field at its offset (gaps stay
/// padding), then the decl tags of its graph roots.
fn layout_struct(btf: &mut Btf, t: &mut Types, name: &str, v: &ValueLayout) -> Result<u32, SysError> {
    let tys: Vec<u32> = v.fields.iter().map(|f| t.field(btf, f)).collect::<Result<_, _>>()?;
    let id = btf.add_struct(name, v.size)?;
    for (f, ty) in v.fields.iter().zip(tys) {
        btf.add_field(&ident(&f.name), ty, f.offset)?;
    }
    for (i, f) in v.fields.iter().enumerate() {
        if let Some(tag) = contains_tag(f) {
            btf.add_decl_tag(&tag, id, i as i32)?;
        }
    }
    Ok(id)
}

/// The value struct of a map: one member per field at its offset; gaps stay padding.
fn value_struct(btf: &mut Btf, t: &mut Types, name: &str, v: &ValueLayout) -> Result<u32, SysError> {
    layout_struct(btf, t, &format!("{}_value", ident(name)), v)
}

/// A `DATASEC` named after the section with one `VAR` per field (what libbpf passes as the value
/// type of `.data`/`.bss` maps, key type 0).
fn datasec(btf: &mut Btf, t: &mut Types, m: &MapSpec) -> Result<u32, SysError> {
    let mut vars = Vec::new();
    for f in &m.value.fields {
        let ty = t.field(btf, f)?;
        let size = f.kind.size_align().map_or(f.size, |(s, _)| s);
        let var = btf.add_var(&ident(&f.name), ty)?;
        if let Some(tag) = contains_tag(f) {
            btf.add_decl_tag(&tag, var, -1)?;
        }
        vars.push((var, f.offset, size));
    }
    if vars.is_empty() {
        let ty = t.scalar(btf, m.value.size.max(1))?;
        vars.push((btf.add_var("__pad", ty)?, 0, m.value.size.max(1)));
    }
    let id = btf.add_datasec(&m.name, m.value.size)?;
    for (var, off, size) in vars {
        btf.add_datasec_var(var, off, size)?;
    }
    Ok(id)
}

/// Whether a case has a program BTF: a map with BTF, a global function or a local type.
fn needs_btf(case: &Case) -> bool {
    let any_map_btf = case.maps.iter().any(|m| m.btf || m.inner.as_ref().is_some_and(|i| i.btf));
    any_map_btf || !case.globals.is_empty() || !case.types.is_empty()
}

/// Whether [`build`] writes `FUNC` records (`func_info`): the kernel keeps the program BTF
/// (prog->aux->btf, which bpf_obj_new() needs) only with func_info, written for global
/// functions and for local types the program names by id.
fn writes_funcs(case: &Case) -> bool {
    !case.globals.is_empty() || case.types.iter().any(|t| t.btf_id.is_some())
}

/// Builds the program BTF of a case, or None when nothing needs BTF (no map with BTF, no globals).
pub fn build(case: &Case) -> Result<Option<ProgBtf>, SysError> {
    if !needs_btf(case) {
        return Ok(None);
    }
    let mut btf = Btf::new_empty()?;
    let mut t = Types::default();
    let mut types = Vec::with_capacity(case.types.len());
    for o in &case.types {
        let id = layout_struct(&mut btf, &mut t, &ident(&o.name), &o.layout)?;
        // A case names its type's id (`btf_id`, for bpf_obj_new()): it must be the one written.
        if o.btf_id.is_some_and(|want| want != id) {
            return Err(SysError {
                op: "case type btf_id (not the id lockstep's BTF gives it)",
                errno: nix::errno::Errno::EINVAL,
            });
        }
        t.structs.insert(o.name.clone(), id);
        types.push(id);
    }
    let mut maps = Vec::with_capacity(case.maps.len());
    for m in &case.maps {
        if !m.btf {
            maps.push(None);
        } else if m.global_section {
            maps.push(Some((0, datasec(&mut btf, &mut t, m)?)));
        } else {
            let key = t.scalar(&mut btf, m.key_size)?;
            let value = value_struct(&mut btf, &mut t, &m.name, &m.value)?;
            maps.push(Some((key, value)));
        }
    }
    let mut inner = Vec::with_capacity(case.maps.len());
    for m in &case.maps {
        match m.inner.as_deref().filter(|i| i.btf) {
            Some(i) => {
                let key = t.scalar(&mut btf, i.key_size)?;
                inner.push(Some((key, value_struct(&mut btf, &mut t, &i.name, &i.value)?)));
            }
            None => inner.push(None),
        }
    }
    let mut func_info = Vec::new();
    if writes_funcs(case) {
        let int_ty = btf.add_int("int", 4, true)?;
        for start in subprog_starts(case) {
            let label = case.program.labels.get(&start);
            let global = label.and_then(|l| case.globals.iter().find(|g| &g.label == l));
            let name = match (start, label) {
                (0, _) => ident(&case.name),
                (_, Some(l)) => ident(l),
                (_, None) => format!("sub_{start}"),
            };
            let proto = btf.add_func_proto(int_ty)?;
            for i in 0..global.map_or(0, |g| g.args) {
                btf.add_func_param(&format!("a{i}"), int_ty)?;
            }
            let func = btf.add_func(&name, global.is_some(), proto)?;
            func_info.push((start as u32, func));
        }
    }
    Ok(Some(ProgBtf { btf, maps, inner, func_info, types }))
}

/// A program BTF as bytes, with the type ids [`ProgBtf`] gives (what [`BtfMemo`] keeps).
#[derive(Debug, PartialEq, Eq)]
pub struct BuiltBtf {
    /// The BTF blob (`btf__raw_data()`), what `BPF_BTF_LOAD` takes.
    pub raw: Vec<u8>,
    /// As [`ProgBtf::maps`].
    pub maps: Vec<Option<(u32, u32)>>,
    /// As [`ProgBtf::inner`].
    pub inner: Vec<Option<(u32, u32)>>,
    /// As [`ProgBtf::func_info`].
    pub func_info: Vec<(u32, u32)>,
    /// As [`ProgBtf::types`].
    pub types: Vec<u32>,
}

impl ProgBtf {
    /// The blob and the ids.
    pub fn into_built(mut self) -> BuiltBtf {
        let raw = self.btf.raw_data();
        BuiltBtf { raw, maps: self.maps, inner: self.inner, func_info: self.func_info, types: self.types }
    }
}

/// Everything of a case [`build`] reads, borrowed: equal inputs give a byte-equal BTF with
/// equal ids. The maps, globals and local types; with `func_info` also the case's name (the main
/// program's `FUNC`) and each subprogram start with its label.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Inputs<'a> {
    maps: &'a [MapSpec],
    globals: &'a [GlobalFunc],
    types: &'a [ObjType],
    funcs: Option<Funcs<&'a str>>,
}

/// The case's name and each subprogram start with its label (the `FUNC` names).
type Funcs<S> = (S, Vec<(usize, Option<S>)>);

impl<'a> Inputs<'a> {
    fn of(case: &'a Case) -> Inputs<'a> {
        let funcs = writes_funcs(case).then(|| {
            let starts = subprog_starts(case);
            let labelled = starts.into_iter().map(|s| (s, case.program.labels.get(&s).map(String::as_str)));
            (case.name.as_str(), labelled.collect())
        });
        Inputs { maps: &case.maps, globals: &case.globals, types: &case.types, funcs }
    }

    fn hash(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        Hash::hash(self, &mut h);
        h.finish()
    }
}

/// The inputs of a [`BuiltBtf`], owned.
#[derive(Debug)]
struct OwnedInputs {
    maps: Vec<MapSpec>,
    globals: Vec<GlobalFunc>,
    types: Vec<ObjType>,
    funcs: Option<Funcs<String>>,
}

impl OwnedInputs {
    fn new(i: &Inputs<'_>) -> OwnedInputs {
        OwnedInputs {
            maps: i.maps.to_vec(),
            globals: i.globals.to_vec(),
            types: i.types.to_vec(),
            funcs: i.funcs.as_ref().map(|(name, starts)| {
                (name.to_string(), starts.iter().map(|&(s, l)| (s, l.map(str::to_string))).collect())
            }),
        }
    }

    fn view(&self) -> Inputs<'_> {
        Inputs {
            maps: &self.maps,
            globals: &self.globals,
            types: &self.types,
            funcs: self.funcs.as_ref().map(|(name, starts)| {
                (name.as_str(), starts.iter().map(|(s, l)| (*s, l.as_deref())).collect())
            }),
        }
    }
}

/// Program BTF built before, by the case inputs it was built from ([`Inputs`]): a case whose
/// inputs were seen skips the build (libbpf's `btf__add_*` calls and `btf__raw_data()`), which
/// under TCG costs about a tenth of a small program's verification (docs/speed.md, session 13).
#[derive(Debug, Default)]
pub struct BtfMemo {
    /// By the hash of the inputs.
    built: HashMap<u64, Vec<(OwnedInputs, std::sync::Arc<BuiltBtf>)>>,
    len: usize,
}

/// Built BTFs a [`BtfMemo`] keeps; past it, it starts again empty.
const MEMO_MAX: usize = 4096;

impl BtfMemo {
    /// The program BTF of `case` ([`build`]), built only when no case with equal inputs was
    /// built before; None when the case needs none. A failed build is not kept.
    pub fn get(&mut self, case: &Case) -> Result<Option<std::sync::Arc<BuiltBtf>>, SysError> {
        if !needs_btf(case) {
            return Ok(None);
        }
        let inputs = Inputs::of(case);
        let hash = inputs.hash();
        if let Some((_, b)) = self.built.get(&hash).and_then(|v| v.iter().find(|(o, _)| o.view() == inputs)) {
            return Ok(Some(b.clone()));
        }
        let Some(p) = build(case)? else { return Ok(None) };
        let b = std::sync::Arc::new(p.into_built());
        if self.len >= MEMO_MAX {
            self.built.clear();
            self.len = 0;
        }
        self.built.entry(hash).or_default().push((OwnedInputs::new(&inputs), b.clone()));
        self.len += 1;
        Ok(Some(b))
    }

    /// Number of built BTFs kept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use lockstep_core::case::parse::parse_cases;
    use lockstep_core::import::btf::{Btf as RawBtf, Kind};
    use lockstep_core::import::special::{contained_types, struct_fields, var_fields};

    use super::*;

    const CASE: &str = r#"
[[case]]
name = "g"
prog_type = "sched_cls"
text = '''
r0 = 0
exit
'''

[[case.map]]
name = "m"
fields = [
    { name = "lock", kind = "spin_lock" },
    { name = "obj", kind = "kptr", pointee = "node_data" },
    { name = "task", kind = "kptr_untrusted", pointee = "task_struct" },
    { name = "head", kind = "list_head", contains = "node_data:l" },
    { name = "root", kind = "rb_root", contains = "node_data:r" },
]

[[case.global]]
section = ".bss"
fields = [{ name = "glock", kind = "spin_lock" }, { name = "ghead", kind = "list_head", contains = "node_data:l" }]

[[case.type]]
name = "pc_val"
fields = [{ name = "a", kind = "int", size = 8 }]

[[case.type]]
name = "node_data"
fields = [
    { name = "key", kind = "int", size = 8 },
    { name = "ref", kind = "refcount" },
    { name = "l", kind = "list_node" },
    { name = "r", kind = "rb_node" },
    { name = "pc", kind = "percpu_kptr", pointee = "pc_val" },
]
"#;

    /// The program BTF lockstep writes for the special field kinds reads back, through the same
    /// reader the ELF import uses on clang's BTF, as the case's own layouts.
    #[test]
    fn special_fields_round_trip_through_the_program_btf() {
        let case = &parse_cases("t.toml", CASE, &[]).unwrap()[0];
        let mut p = build(case).unwrap().expect("BTF");
        let btf = RawBtf::parse(&p.btf.raw_data()).unwrap();
        let special = |l: &ValueLayout| -> Vec<Field> {
            l.fields
                .iter()
                .filter(|f| !matches!(f.kind, FieldKind::Int | FieldKind::SpinLock))
                .cloned()
                .collect()
        };
        // The map value struct: its kptrs and graph roots, with pointees and __contains.
        let (_, value) = p.maps[0].unwrap();
        assert_eq!(struct_fields(&btf, value, 0, None).unwrap(), special(&case.maps[0].value));
        // The .bss DATASEC: the list head is a VAR with the decl tag on the VAR itself.
        let (_, sec) = p.maps[1].unwrap();
        let Some(Kind::Datasec { entries }) = btf.get(sec).map(|t| &t.kind) else { panic!("a datasec") };
        let got: Vec<Field> = entries
            .iter()
            .flat_map(|&(var, off, _)| {
                let t = btf.get(var).unwrap();
                let Kind::Var { ty } = t.kind else { panic!("a var") };
                var_fields(&btf, var, &t.name, ty, off).unwrap()
            })
            .collect();
        assert_eq!(got, special(&case.maps[1].value));
        // The local type the roots contain, found by name as the kernel does.
        let maps: Vec<MapSpec> = case.maps.clone();
        let types = contained_types(&btf, &maps).unwrap();
        assert_eq!(types.len(), 1);
        assert_eq!(special(&types[0].layout), special(&case.types[1].layout));
        assert_eq!(types[0].layout.size, case.types[1].layout.size);
    }
}

#[cfg(test)]
mod memo {
    use std::sync::Arc;

    use lockstep_core::case::parse::parse_cases;

    use super::*;

    /// A case with a BTF map `map` and a subprogram `gsub`, named `name`, declaring `gsub` global
    /// when `global`.
    fn case(name: &str, map: &str, global: bool) -> Case {
        let globals = if global { r#"globals = [{ label = "gsub", args = 1 }]"# } else { "" };
        let label = "gsub";
        let text = format!(
            r#"
[[case]]
name = "{name}"
prog_type = "sched_cls"
{globals}
text = '''
call {label}
r0 = 0
exit
{label}:
r0 = 0
exit
'''

[[case.map]]
name = "{map}"
type = "hash"
btf = true
fields = [{{ name = "cnt", kind = "int" }}, {{ name = "lock", kind = "spin_lock" }}]
"#
        );
        parse_cases("t.toml", &text, &[]).unwrap().remove(0)
    }

    fn built(c: &Case) -> BuiltBtf {
        build(c).unwrap().expect("BTF").into_built()
    }

    /// A case whose inputs were seen gets the BTF built then (not built again), which is the one
    /// `build` gives it; a case with other inputs gets its own.
    #[test]
    fn equal_inputs_share_one_build_and_other_inputs_do_not() {
        let mut memo = BtfMemo::default();
        let a = memo.get(&case("a", "m", false)).unwrap().unwrap();
        assert_eq!(*a, built(&case("a", "m", false)));
        // Without func_info the case's name is not in the BTF: another name shares the build.
        let b = memo.get(&case("b", "m", false)).unwrap().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(memo.len(), 1);
        // Another map name: another value struct.
        let c = memo.get(&case("a", "n", false)).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(*c, built(&case("a", "n", false)));
        assert_ne!(a.raw, c.raw);
        // With a global function the case's name and the subprogram labels are `FUNC` names.
        let g = memo.get(&case("a", "m", true)).unwrap().unwrap();
        assert!(!g.func_info.is_empty());
        assert_eq!(*g, built(&case("a", "m", true)));
        let other = case("b", "m", true);
        let o = memo.get(&other).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&g, &o));
        assert_eq!(*o, built(&other));
        assert_ne!(o.raw, g.raw);
        let again = memo.get(&case("a", "m", true)).unwrap().unwrap();
        assert!(Arc::ptr_eq(&g, &again));
        assert_eq!(memo.len(), 4);
    }

    /// A subprogram start's label names its `FUNC`: a relabelled subprogram is another BTF.
    #[test]
    fn a_relabelled_subprogram_is_another_build() {
        let mut memo = BtfMemo::default();
        let mut a = case("a", "m", true);
        let g = memo.get(&a).unwrap().unwrap();
        // Same globals, the label at the subprogram start renamed (the global now names no start).
        let start = *a.program.labels.keys().next().unwrap();
        a.program.labels.insert(start, "other".into());
        let o = memo.get(&a).unwrap().unwrap();
        assert!(!Arc::ptr_eq(&g, &o));
        assert_eq!(*o, built(&a));
        assert_ne!(o.raw, g.raw);
    }

    /// A case without program BTF gets none, and nothing is kept for it.
    #[test]
    fn a_case_without_btf_gets_none() {
        let mut c = case("a", "m", false);
        c.maps[0].btf = false;
        let mut memo = BtfMemo::default();
        assert!(memo.get(&c).unwrap().is_none());
        assert!(memo.is_empty());
    }
}

#[cfg(test)]
mod corpus_ids {
    use lockstep_core::case::parse::parse_cases;

    /// Every `btf_id` a corpus case gives a local type is the id this BTF writer gives it.
    #[test]
    fn corpus_type_ids_are_the_written_ones() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus");
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let kfuncs = lockstep_core::corpus::known_kfuncs(&lockstep_core::module_src::bundled());
            for mut case in parse_cases(&path.display().to_string(), &text, &kfuncs).unwrap() {
                if case.types.iter().all(|t| t.btf_id.is_none()) {
                    continue;
                }
                let want: Vec<Option<u32>> = case.types.iter().map(|t| t.btf_id).collect();
                case.types.iter_mut().for_each(|t| t.btf_id = None);
                let got = super::build(&case).unwrap().expect("BTF").types;
                for (w, g) in want.iter().zip(&got) {
                    assert!(
                        w.is_none_or(|w| w == *g),
                        "{}: case {}: btf_id {w:?}, written as {g}",
                        path.display(),
                        case.name
                    );
                }
            }
        }
    }
}
