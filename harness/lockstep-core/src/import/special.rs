//! The special fields btf.c finds in a value type besides the locks (`btf_get_field_type()`,
//! `btf_find_kptr()`, `btf_find_graph_root()`, kernel/bpf/btf.c): `bpf_list_head`/`bpf_list_node`,
//! `bpf_rb_root`/`bpf_rb_node`, `bpf_refcount` and kptrs (`__kptr`, `__kptr_untrusted`,
//! `__percpu_kptr`), with their offsets, `__contains(type, node)` and pointee, and the local
//! object types the graph roots contain. The lock and integer fields come from
//! [`super::cfile::value_layout`]; these are merged into the same layout.

use super::btf::{Btf, BtfTypes, Kind};
use super::cfile::value_layout;
use crate::case::{Field, FieldKind, FieldTarget, MapSpec, ObjType, ValueLayout};

/// The non-lock struct kind named `name` of `size` bytes (btf.c matches name and size).
fn struct_kind(name: &str, size: u32) -> Option<FieldKind> {
    FieldKind::ALL.into_iter().find(|k| {
        !k.is_lock() && k.struct_name() == Some(name) && k.size_align().is_some_and(|(s, _)| s == size)
    })
}

/// `btf_find_kptr()`: a pointer (volatile allowed) to a `kptr` / `kptr_untrusted` /
/// `percpu_kptr` type tag on a struct: the flavour and the struct's name.
fn kptr_of(btf: &Btf, mut id: u32) -> Option<(FieldKind, String)> {
    // A bounded walk: a malformed BTF may loop.
    for _ in 0..8 {
        match btf.get(id).map(|t| &t.kind) {
            Some(Kind::Modifier(t)) => id = *t,
            _ => break,
        }
    }
    let Kind::Ptr { to } = btf.get(id)?.kind else { return None };
    let tag = btf.get(to)?;
    let Kind::TypeTag(next) = tag.kind else { return None };
    let kind = match tag.name.as_str() {
        "kptr" => FieldKind::Kptr,
        "kptr_untrusted" => FieldKind::KptrUntrusted,
        "percpu_kptr" => FieldKind::PercpuKptr,
        _ => return None,
    };
    let pointee = btf.get(btf.resolve(next))?;
    Some((kind, pointee.name.to_string()))
}

/// The `contains:<type>:<node>` decl tag among `tags` (`btf_find_decl_tag_value()`).
fn contains_of(tags: &[&str]) -> Option<FieldTarget> {
    let v = tags.iter().find_map(|t| t.strip_prefix("contains:"))?;
    let (t, n) = v.split_once(':')?;
    Some(FieldTarget::Contains { type_name: t.to_string(), node: n.to_string() })
}

/// The special field a member (or a global variable) of type `ty` is, named `name` at `offset`,
/// with `tags` its decl tags.
fn field_of(btf: &Btf, ty: u32, name: &str, offset: u32, tags: &[&str]) -> Option<Field> {
    if let Some((kind, pointee)) = kptr_of(btf, ty) {
        return Some(Field {
            name: name.into(),
            kind,
            offset,
            size: 8,
            target: Some(FieldTarget::Pointee(pointee)),
        });
    }
    let t = btf.get(btf.resolve(ty))?;
    let Kind::Struct { size, .. } = t.kind else { return None };
    let kind = struct_kind(&t.name, size)?;
    let target = if kind.is_graph_root() { contains_of(tags) } else { None };
    Some(Field { name: name.into(), kind, offset, size, target })
}

/// Whether `btf_repeat_fields()` repeats a field of this kind over an array's elements (kptrs,
/// list heads and rbtree roots; any other kind in an array of more than one element is -EINVAL).
fn repeatable(kind: FieldKind) -> bool {
    kind.is_kptr() || kind.is_graph_root()
}

/// `btf_find_field_one()` (kernel/bpf/btf.c, the same in 7.2 and 7.3): the special fields of
/// member `component` of `holder` (a struct, or a `VAR` with component -1) of type `ty`, named
/// `name`, at `off` bytes. Arrays are flattened (`nelems`, the product of their lengths) and
/// the element's fields repeated (`btf_repeat_fields()`, refusing other kinds than kptrs and
/// graph roots); a struct that is no special field is descended into
/// (`btf_find_nested_struct()`, its member fields named `<name>_<member>`). An array's copies are
/// named `<name>_<i>`.
fn find_one(
    btf: &Btf,
    (holder, component): (u32, i32),
    ty: u32,
    name: &str,
    off: u32,
    level: u32,
    out: &mut Vec<Field>,
) -> Result<(), String> {
    let (mut elem, mut nelems) = (ty, 1u32);
    for _ in 0..32 {
        match btf.get(elem).map(|t| &t.kind) {
            Some(Kind::Array { elem: e, nelems: n }) => {
                nelems = nelems.saturating_mul(*n);
                elem = *e;
            }
            _ => break,
        }
    }
    if nelems == 0 {
        return Ok(());
    }
    let tags = btf.member_decl_tags(holder, component);
    let mut found = Vec::new();
    let elem_size;
    if let Some(f) = field_of(btf, elem, name, off, &tags) {
        elem_size = f.size;
        found.push(f);
    } else if let Some(Kind::Struct { size, .. }) = btf.get(elem).map(|t| &t.kind) {
        // btf_find_nested_struct(): `level` counts the nesting (MAX_RESOLVE_DEPTH, -E2BIG).
        if level + 1 >= 32 {
            return Err(format!("member `{name}`: structs nested too deep (-E2BIG)"));
        }
        elem_size = *size;
        struct_members(btf, elem, off, Some(name), level + 1, &mut found)?;
    } else {
        return Ok(());
    }
    if nelems > 1 && !found.is_empty() {
        if let Some(f) = found.iter().find(|f| !repeatable(f.kind)) {
            return Err(format!(
                "member `{name}`: a {} in an array (btf_repeat_fields(), -EINVAL) is not converted",
                f.kind.struct_name().unwrap_or("special field")
            ));
        }
        let one = std::mem::take(&mut found);
        for i in 0..nelems {
            for f in &one {
                found.push(Field {
                    name: format!("{}_{i}", f.name),
                    offset: f.offset + i * elem_size,
                    ..f.clone()
                });
            }
        }
    }
    out.extend(found);
    Ok(())
}

/// `btf_find_struct_field()`: the special fields of the members of struct `id` at `base` bytes.
fn struct_members(
    btf: &Btf,
    id: u32,
    base: u32,
    prefix: Option<&str>,
    level: u32,
    out: &mut Vec<Field>,
) -> Result<(), String> {
    let Some(Kind::Struct { members, .. }) = btf.get(id).map(|t| &t.kind) else { return Ok(()) };
    for (i, m) in members.iter().enumerate() {
        if m.bit_offset % 8 != 0 {
            continue;
        }
        let name = match prefix {
            Some(p) => format!("{p}_{}", m.name),
            None => m.name.to_string(),
        };
        find_one(btf, (id, i as i32), m.ty, &name, base + m.bit_offset / 8, level, out)?;
    }
    Ok(())
}

/// The special fields of struct `id` at `base` bytes, each named `<prefix>_<member>` (or
/// `<member>`), nested structs and arrays included as btf.c finds them ([`find_one`]).
pub fn struct_fields(btf: &Btf, id: u32, base: u32, prefix: Option<&str>) -> Result<Vec<Field>, String> {
    let mut out = Vec::new();
    struct_members(btf, btf.resolve(id), base, prefix, 0, &mut out)?;
    Ok(out)
}

/// The special fields of a global variable `var` (a `VAR` of a `DATASEC`) of type `ty` at
/// `offset` (`btf_find_datasec_var()`): the variable itself (`struct bpf_list_head ghead
/// __contains(foo, node)`, or an array of them), or the members of its struct type.
pub fn var_fields(btf: &Btf, var: u32, name: &str, ty: u32, offset: u32) -> Result<Vec<Field>, String> {
    let mut out = Vec::new();
    find_one(btf, (var, -1), ty, name, offset, 0, &mut out)?;
    Ok(out)
}

/// Adds `extra` to `layout`: an integer field they overlap (a kptr was read as an 8-byte
/// pointer) is replaced; fields stay in offset order.
pub fn merge(layout: &mut ValueLayout, extra: Vec<Field>) {
    if extra.is_empty() {
        return;
    }
    layout.fields.retain(|f| {
        f.kind != FieldKind::Int
            || !extra.iter().any(|e| f.offset < e.offset + e.size && e.offset < f.offset + f.size)
    });
    layout.fields.extend(extra);
    layout.fields.sort_by_key(|f| f.offset);
}

/// The layout of the local object type `id` (locks, integers and special fields).
fn type_layout(btf: &Btf, id: u32) -> Result<ValueLayout, String> {
    let mut layout = value_layout(&btf.ctype(id).map_err(|e| e.to_string())?)?;
    merge(&mut layout, struct_fields(btf, id, 0, None)?);
    Ok(layout)
}

/// The local object types the graph roots of `maps` contain, and those their own graph roots
/// contain, in discovery order. A type the BTF lacks is left out (the kernel then refuses the map).
pub fn contained_types(btf: &Btf, maps: &[MapSpec]) -> Result<Vec<ObjType>, String> {
    let mut todo: Vec<String> = Vec::new();
    for m in maps.iter().flat_map(|m| std::iter::once(m).chain(m.inner.as_deref())) {
        roots(&m.value, &mut todo);
    }
    let mut out: Vec<ObjType> = Vec::new();
    add_contained(btf, todo, &mut out)?;
    Ok(out)
}

/// The `__contains` type names of the graph roots of `l`, pushed on `todo`.
fn roots(l: &ValueLayout, todo: &mut Vec<String>) {
    for f in &l.fields {
        if let Some(FieldTarget::Contains { type_name, .. }) = &f.target {
            todo.push(type_name.clone());
        }
    }
}

/// Adds to `out` the local types named in `todo` and those their own graph roots contain (as
/// `btf_parse_struct_metas()` gives every program struct its record). A type the BTF lacks is
/// left out.
fn add_contained(btf: &Btf, mut todo: Vec<String>, out: &mut Vec<ObjType>) -> Result<(), String> {
    while let Some(name) = todo.pop() {
        if out.iter().any(|t| t.name == name) {
            continue;
        }
        let Some(id) = btf.struct_named(&name) else { continue };
        let layout = type_layout(btf, id).map_err(|e| format!("type `{name}`: {e}"))?;
        roots(&layout, &mut todo);
        out.push(ObjType {
            btf_id: Some(id),
            pointers: pointer_offsets(btf, id),
            ..ObjType::new(name, layout)
        });
    }
    Ok(())
}

/// Byte offsets of the pointer members of struct `id` (not descending into nested structs).
fn pointer_offsets(btf: &Btf, id: u32) -> Vec<u32> {
    let Some(Kind::Struct { members, .. }) = btf.get(btf.resolve(id)).map(|t| &t.kind) else {
        return Vec::new();
    };
    members
        .iter()
        .filter(|m| m.bit_offset % 8 == 0)
        .filter(|m| matches!(btf.get(btf.resolve(m.ty)).map(|t| &t.kind), Some(Kind::Ptr { .. })))
        .map(|m| m.bit_offset / 8)
        .collect()
}

/// Adds to `types` the local struct types a program may allocate: `bpf_obj_new(T)` is
/// `bpf_obj_new_impl(bpf_core_type_id_local(T), NULL)`, which clang emits as an `ld_imm64` of the
/// type's id in the program BTF (`consts`: those constants). A constant that is the id of a struct
/// becomes that type with its id; a type already there gets the id. A struct whose layout lockstep
/// cannot represent is left out (the model then says the type is unknown).
pub fn allocated_types(btf: &Btf, consts: &[u64], types: &mut Vec<ObjType>) {
    for &c in consts {
        let Ok(id) = u32::try_from(c) else { continue };
        if id == 0 || types.iter().any(|t| t.btf_id == Some(id)) {
            continue;
        }
        let Some(t) = btf.get(id) else { continue };
        if !matches!(t.kind, Kind::Struct { .. }) {
            continue;
        }
        // An anonymous struct (`bpf_obj_new(struct { int data; })` in the selftests) keeps its
        // empty name, as btf_type_name() prints it; nothing refers to it by name.
        let named = !t.name.is_empty();
        if let Some(known) = types.iter_mut().find(|o| named && o.name == t.name && o.btf_id.is_none()) {
            known.btf_id = Some(id);
            continue;
        }
        let Ok(layout) = type_layout(btf, id) else { continue };
        // The types its own graph roots contain (`bpf_obj_new()` of a struct holding a
        // `bpf_list_head __contains(foo, node)`: foo's record is the program's too).
        let mut todo = Vec::new();
        roots(&layout, &mut todo);
        if add_contained(btf, todo, types).is_err() {
            continue;
        }
        types.push(ObjType {
            btf_id: Some(id),
            pointers: pointer_offsets(btf, id),
            ..ObjType::new(t.name.clone(), layout)
        });
    }
}

/// Adds to `types` the structs of the program BTF that a `__kptr` / `__percpu_kptr` field of a
/// map value (or of a type already in `types`) points to and that are not there yet, marked
/// [`ObjType::kptr_pointee_only`] and without an id (nothing allocates them by id). A struct the
/// BTF lacks, or whose layout lockstep cannot represent, is left out.
pub fn kptr_pointee_types(btf: &Btf, maps: &[MapSpec], types: &mut Vec<ObjType>) {
    let mut names: Vec<String> = Vec::new();
    let layouts = maps
        .iter()
        .flat_map(|m| std::iter::once(m).chain(m.inner.as_deref()))
        .map(|m| &m.value)
        .chain(types.iter().map(|t| &t.layout));
    for l in layouts {
        for f in &l.fields {
            if let (FieldKind::Kptr | FieldKind::PercpuKptr, Some(FieldTarget::Pointee(n))) =
                (f.kind, &f.target)
            {
                if !names.contains(n) {
                    names.push(n.clone());
                }
            }
        }
    }
    for name in names {
        if types.iter().any(|t| t.name == name) {
            continue;
        }
        let Some(id) = btf.struct_named(&name) else { continue };
        let Ok(layout) = type_layout(btf, id) else { continue };
        types.push(ObjType {
            pointers: pointer_offsets(btf, id),
            kptr_pointee_only: true,
            ..ObjType::new(name, layout)
        });
    }
}

/// The constants of `consts` (u32 values) that name no struct of `btf`: a type of another kind
/// (`int`, a union, a typedef: `__btf_type_is_struct()` is BTF_KIND_STRUCT only), which
/// `check_special_kfunc()` refuses as `bpf_obj_new()`'s type id. An id past the BTF's last type
/// is left out (libbpf may append types to what the kernel sees). Sorted, without duplicates.
pub fn non_struct_ids(btf: &Btf, consts: &[u64]) -> Vec<u32> {
    let mut v: Vec<u32> = consts
        .iter()
        .filter_map(|&c| u32::try_from(c).ok())
        .filter(|&id| btf.get(id).is_some_and(|t| !matches!(t.kind, Kind::Struct { .. })))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::btf::{BtfMember, BtfType};

    fn member(name: &str, ty: u32, byte: u32) -> BtfMember {
        BtfMember { name: name.into(), ty, bit_offset: byte * 8, bit_size: 0 }
    }

    fn strukt(name: &str, size: u32, members: Vec<BtfMember>) -> BtfType {
        BtfType { name: name.into(), kind: Kind::Struct { size, members } }
    }

    /// linked_list.c's shapes: `struct inner { struct bpf_spin_lock lock; struct bpf_list_head
    /// head __contains(foo, node); }` inside `struct outer { int x; struct inner inner; }`, a
    /// global `struct bpf_list_head ga[2] __contains(foo, node)`, and an array of `inner`.
    fn btf() -> Btf {
        let t = |name: &str, kind| BtfType { name: name.into(), kind };
        Btf {
            types: vec![
                t("", Kind::Void),
                t("int", Kind::Int { size: 4, signed: true }),
                strukt("bpf_spin_lock", 4, vec![member("val", 1, 0)]),
                strukt("bpf_list_head", 16, vec![]),
                strukt("inner", 24, vec![member("lock", 2, 0), member("head", 3, 8)]),
                t("contains:foo:node", Kind::DeclTag { target: 4, component: 1 }),
                strukt("outer", 32, vec![member("x", 1, 0), member("inner", 4, 8)]),
                t("", Kind::Array { elem: 3, nelems: 2 }),
                t("ga", Kind::Var { ty: 7 }),
                t("contains:foo:node", Kind::DeclTag { target: 8, component: -1 }),
                t("", Kind::Array { elem: 4, nelems: 2 }),
                strukt("outer2", 48, vec![member("inners", 10, 0)]),
            ],
        }
    }

    #[test]
    fn nested_structs_and_arrays_as_btf_c_finds_them() {
        let btf = btf();
        let contains = Some(FieldTarget::Contains { type_name: "foo".into(), node: "node".into() });
        // btf_find_nested_struct(): the head of the nested struct, with its member's decl tag;
        // the lock and the int from value_layout().
        let f = struct_fields(&btf, 6, 0, None).unwrap();
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].name.as_str(), f[0].kind, f[0].offset), ("inner_head", FieldKind::ListHead, 16));
        assert_eq!(f[0].target, contains);
        let l = value_layout(&btf.ctype(6).unwrap()).unwrap();
        let kinds: Vec<_> = l.fields.iter().map(|f| (f.name.as_str(), f.kind, f.offset)).collect();
        assert_eq!(kinds, vec![("x", FieldKind::Int, 0), ("inner_lock", FieldKind::SpinLock, 8)]);
        // btf_repeat_fields(): an array of heads, the VAR's decl tag on each.
        let g = var_fields(&btf, 8, "ga", 7, 100).unwrap();
        let heads: Vec<_> = g.iter().map(|f| (f.name.as_str(), f.offset, f.target == contains)).collect();
        assert_eq!(heads, vec![("ga_0", 100, true), ("ga_1", 116, true)]);
        // An array of structs: their heads repeated; with a lock inside, -EINVAL (the locks are
        // value_layout()'s: not converted).
        let r: Vec<_> = struct_fields(&btf, 11, 0, None).unwrap().into_iter().map(|f| f.offset).collect();
        assert_eq!(r, vec![8, 32]);
        assert!(value_layout(&btf.ctype(11).unwrap()).unwrap_err().contains("an array"));
    }

    #[test]
    fn non_struct_ids_are_the_in_range_ids_of_other_kinds() {
        // 0 (void), 1 (int), 7 (an array) are no struct; 4 is `inner`; 99 is past the BTF's end
        // and u64::MAX no u32.
        let got = non_struct_ids(&btf(), &[4, 1, 99, 7, 1, 0, u64::MAX]);
        assert_eq!(got, vec![0, 1, 7]);
    }

    #[test]
    fn kptr_pointees_of_map_values_become_pointee_only_types() {
        // `struct node_data { int data; }` (id 12) and `struct inner` (id 4, already a type);
        // a map value `{ struct node_data __kptr *a; struct inner __kptr *b; struct gone __kptr *c; }`.
        let mut b = btf();
        b.types.push(strukt("node_data", 4, vec![member("data", 1, 0)]));
        let kptr = |name: &str, offset| Field {
            name: name.into(),
            kind: FieldKind::Kptr,
            offset,
            size: 8,
            target: Some(FieldTarget::Pointee(name.into())),
        };
        let value =
            ValueLayout { size: 24, fields: vec![kptr("node_data", 0), kptr("inner", 8), kptr("gone", 16)] };
        let map = MapSpec {
            name: "m".into(),
            map_type: crate::case::MapType::Array,
            key_size: 4,
            max_entries: 1,
            value,
            btf: true,
            global_section: false,
            flags: 0,
            inner: None,
        };
        let mut types = vec![ObjType {
            btf_id: Some(4),
            ..ObjType::new("inner", ValueLayout { size: 24, fields: vec![] })
        }];
        kptr_pointee_types(&b, &[map], &mut types);
        assert_eq!(types.len(), 2);
        assert!(!types[0].kptr_pointee_only);
        let t = &types[1];
        assert_eq!(
            (t.name.as_str(), t.btf_id, t.kptr_pointee_only, t.layout.size),
            ("node_data", None, true, 4)
        );
    }
}
