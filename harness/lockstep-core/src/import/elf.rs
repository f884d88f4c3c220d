//! clang-compiled BPF objects (`clang -O2 -g -target bpf -c x.bpf.c`) as cases: each program
//! of the object becomes a [`Case`].
//!
//! aya-obj 0.3 parses the object: programs, functions, maps (`.maps` with BTF, `maps`, and the
//! `.data*`/`.bss*`/`.rodata*` global data sections), map relocations (`relocate_maps`, given
//! stand-in fds that are mapped back to names here) and bpf-to-bpf calls (`relocate_calls`, which
//! appends the subprograms each program calls). What aya-obj leaves out is done here from the ELF
//! (object crate) and the raw `.BTF` ([`super::btf`]):
//!
//! - section names libbpf knows but aya-obj 0.3 does not (`tc`, `syscall`, `?tc`, ...) are renamed
//!   in a copy of the bytes before parsing; the program type comes from the original name
//!   ([`super::sec`]);
//! - calls to `extern ... __ksym` functions become kfunc calls (`Reloc::Kfunc`);
//! - value layouts (where the `bpf_spin_lock` is), function linkage (global subprograms) and
//!   the test annotations (`__success`, `__failure`, `__msg` decl tags, [`super::annot`]).

use std::collections::{BTreeMap, HashSet};

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget, SectionKind};

use super::annot::{decl_tag_annotation, TestSpec};
use super::btf::{Btf, BtfTypes, Kind};
use super::cfile::value_layout;
use super::sec::prog_type_of_section;
use crate::asm::{disassemble, Program, Reloc};
use crate::case::{Case, Field, GlobalFunc, MapSpec, MapType, ObjectSource, ProgType, ValueLayout};
use crate::insn::{Insn, BPF_PSEUDO_FUNC, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE};

/// The programs of an object: those that became cases, and those that did not, with the reason.
#[derive(Clone, Debug, Default)]
pub struct ObjectCases {
    pub cases: Vec<Case>,
    /// (program name, reason).
    pub skipped: Vec<(String, String)>,
}

/// An object that cannot be read at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ElfError(pub String);

/// An undefined symbol a non-call instruction references: a `__ksym` / `__kconfig` extern.
/// `func`: an `extern` function (its BTF FUNC), with whether the symbol is weak and its
/// prototype's [`Btf::compat_shape`].
struct Extern {
    name: String,
    func: Option<(bool, String)>,
    /// A typed `extern <type> name __ksym` variable: its object BTF VAR's type's
    /// [`Btf::compat_shape`] and the ELF symbol's binding (`__weak`).
    var: Option<(bool, String)>,
}

/// `src_reg` of a kfunc call (`BPF_PSEUDO_KFUNC_CALL`).
const PSEUDO_KFUNC_CALL: u8 = crate::insn::BPF_PSEUDO_KFUNC_CALL;
/// Stand-in map fds start here (mapped back to names after relocation).
const FD_BASE: i32 = 0x4c00_0000;
/// Kfunc calls carry `KFUNC_TAG + index` in `imm` until they are named.
const KFUNC_TAG: i32 = 0x4b00_0000;
/// `src_reg` marking an `ld_imm64` of an extern variable (not a real pseudo value).
const EXTERN_VAR_SRC: u8 = 7;
/// The section of an object's arena global variables (libbpf's `ARENA_SEC`).
const ARENA_SEC: &str = ".addr_space.1";
/// The section name aya-obj is given for every program section (it accepts `socket/...`).
const RENAMED: &str = "socket/__lockstep";

/// Reads the programs of a BPF object. `file` names it in the cases; `known_kfuncs` are the
/// kfuncs the model knows ([`crate::corpus::known_kfuncs`]): calls to others are listed in each
/// case's `extern_kfuncs`, as a case file's `kfuncs` key does.
///
/// A malformed object is an [`ElfError`] naming the file and what is wrong: its structure is
/// checked first ([`super::elf_check`]), and a panic inside aya-obj that the checks miss is
/// caught and reported as such.
pub fn cases_from_object(file: &str, bytes: &[u8], known_kfuncs: &[String]) -> Result<ObjectCases, ElfError> {
    let e = |s: String| ElfError(format!("{file}: {s}"));
    let elf = object::File::parse(bytes).map_err(|x| e(format!("not an ELF object: {x}")))?;
    if elf.architecture() != object::Architecture::Bpf || !elf.is_little_endian() || !elf.is_64() {
        return Err(e("not a little-endian 64-bit BPF object (clang -target bpf)".into()));
    }
    super::elf_check::check_object(&elf).map_err(|w| e(format!("malformed object: {w}")))?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_object(file, bytes, &elf, known_kfuncs)))
        .unwrap_or_else(|p| {
            let why = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(e(format!("malformed object: aya-obj panicked reading it ({why})")))
        })
}

/// [`cases_from_object`] on an object whose structure was checked.
fn read_object(
    file: &str,
    bytes: &[u8],
    elf: &object::File<'_>,
    known_kfuncs: &[String],
) -> Result<ObjectCases, ElfError> {
    let e = |s: String| ElfError(format!("{file}: {s}"));
    // Program sections: executable, not .text.
    let mut prog_secs: BTreeMap<usize, String> = BTreeMap::new();
    for s in elf.sections() {
        let name = s.name().unwrap_or("").to_string();
        if s.kind() == SectionKind::Text && s.size() > 0 && !name.starts_with(".text") {
            prog_secs.insert(s.index().0, name);
        }
    }
    // clang leaves DATASEC variable offsets 0 for the loader to fill in from the symbol table
    // (libbpf's btf_fixup_datasec()): the data symbols' addresses.
    let data_syms: BTreeMap<String, u32> = elf
        .symbols()
        .filter(|s| s.section_index().is_some() && s.kind() == object::SymbolKind::Data)
        .filter_map(|s| Some((s.name().ok()?.to_string(), s.address() as u32)))
        .collect();
    let btf = match elf.section_by_name(".BTF") {
        Some(s) => Btf::parse(s.data().map_err(|x| e(x.to_string()))?).map_err(|x| e(x.to_string()))?,
        None => Btf::default(),
    };
    let struct_ops = struct_ops_members(elf, &btf, &data_syms);
    // Undefined symbols referenced from code: kfunc calls and extern variables.
    let mut kfuncs: Vec<String> = Vec::new();
    let mut externs: Vec<Extern> = Vec::new();
    let mut patches: Vec<(usize, u64, u8, i32)> = Vec::new(); // (section, byte offset, src_reg, imm)
    for s in elf.sections().filter(|s| s.kind() == SectionKind::Text) {
        let data = s.data().map_err(|x| e(x.to_string()))?;
        for (off, rel) in s.relocations() {
            let RelocationTarget::Symbol(si) = rel.target() else { continue };
            let Ok(sym) = elf.symbol_by_index(si) else { continue };
            if !sym.is_undefined() {
                continue;
            }
            let name = sym.name().unwrap_or("").to_string();
            let code = data.get(off as usize).copied().unwrap_or(0);
            if code == 0x85 {
                let k = kfuncs.iter().position(|n| *n == name).unwrap_or_else(|| {
                    kfuncs.push(name.clone());
                    kfuncs.len() - 1
                });
                patches.push((s.index().0, off, PSEUDO_KFUNC_CALL, KFUNC_TAG + k as i32));
            } else {
                // An `extern ... __ksym` function used as a value (`bpf_ksym_exists()`): its
                // object BTF FUNC (linkage extern), the ELF symbol's binding (`__weak`).
                let func = btf.func(&name).and_then(|id| match btf.get(id).map(|t| &t.kind) {
                    Some(Kind::Func { proto, .. }) => Some((sym.is_weak(), btf.compat_shape(*proto))),
                    _ => None,
                });
                // A typed `__ksym` variable: an extern VAR of the object's BTF (`.kconfig`
                // variables, also extern VARs, are in the DATASEC `.kconfig`, not `.ksyms`).
                let var = btf
                    .types
                    .iter()
                    .find(|t| t.name == name && matches!(t.kind, Kind::Var { .. }))
                    .filter(|_| ksyms_datasec_has(&btf, &name))
                    .and_then(|t| match t.kind {
                        Kind::Var { ty } => Some((sym.is_weak(), btf.compat_shape(ty))),
                        _ => None,
                    });
                externs.push(Extern { name, func, var });
                patches.push((s.index().0, off, EXTERN_VAR_SRC, externs.len() as i32 - 1));
            }
        }
    }
    let mut patched =
        rename_sections(bytes, &prog_secs.keys().copied().collect::<Vec<_>>(), RENAMED).map_err(e)?;
    // `.maps` fields aya-obj cannot read (`__ulong(map_extra, ...)`) hidden in its copy of the BTF.
    if let Some((at, len)) = elf.section_by_name(".BTF").and_then(|s| s.file_range()) {
        let blob =
            patched.get_mut(at as usize..(at + len) as usize).ok_or_else(|| e(".BTF out of range".into()))?;
        // A blob the sanitizer cannot walk goes to aya-obj as it is: its refusal then makes every
        // program a kernel-only case, named with the reason (programs_for_kernel_only()).
        let _ = super::btf_sanitize::hide_unreadable_map_fields(blob);
    }
    let mut obj = match aya_obj::Object::parse(&patched) {
        Ok(o) => o,
        // aya-obj's limits (BTF kinds it does not know, ...) are the model's, not the object's:
        // the structure and BTF passed lockstep's own checks, so libbpf loads it in the guest.
        Err(x) => {
            return Ok(programs_for_kernel_only(file, bytes, elf, &prog_secs, &btf, &format!("aya-obj: {x}")))
        }
    };
    for f in obj.functions.values_mut() {
        for &(sec, off, src, imm) in &patches {
            let start = f.section_offset as u64;
            if f.section_index.0 == sec && off >= start && off < start + 8 * f.instructions.len() as u64 {
                let ins = &mut f.instructions[((off - start) / 8) as usize];
                ins.set_src_reg(src);
                ins.imm = imm;
                if src == PSEUDO_KFUNC_CALL {
                    ins.off = 0;
                }
            }
        }
    }
    let mut map_names: Vec<String> = obj.maps.keys().cloned().collect();
    map_names.sort();
    let text_sections: HashSet<usize> = obj.functions.keys().map(|(s, _)| *s).collect();
    let fds: Vec<(String, i32)> =
        map_names.iter().enumerate().map(|(i, n)| (n.clone(), FD_BASE + i as i32)).collect();
    {
        let maps = fds.iter().map(|(n, fd)| (n.as_str(), *fd, &obj.maps[n]));
        // relocate_maps borrows obj mutably and the maps immutably: work on a clone of the maps.
        let owned: Vec<(String, i32, aya_obj::Map)> =
            maps.map(|(n, fd, m)| (n.to_string(), fd, m.clone())).collect();
        let relocated =
            obj.relocate_maps(owned.iter().map(|(n, fd, m)| (n.as_str(), *fd, m)), &text_sections);
        match relocated {
            // Arena globals (`__arena` variables): libbpf relocates references to `.addr_space.1`
            // into the object's arena (bpf_object__init_arena_map / ARENA_SEC), aya-obj 0.3 knows
            // no such section. The kernel judges each program through libbpf; the model cannot.
            Err(x) if elf.section_by_name(ARENA_SEC).is_some() => {
                let why = format!("arena global variables ({ARENA_SEC}) are not read by aya-obj: {x}");
                return Ok(programs_for_kernel_only(file, bytes, elf, &prog_secs, &btf, &why));
            }
            r => r.map_err(|x| e(format!("aya-obj map relocation: {x}")))?,
        }
    }
    obj.relocate_calls(&text_sections).map_err(|x| e(format!("aya-obj call relocation: {x}")))?;

    let mut programs: Vec<(&String, &aya_obj::Program)> = obj.programs.iter().collect();
    programs.sort_by_key(|(_, p)| (p.section_index, p.address));
    let file_name = file.rsplit('/').next().unwrap_or(file).to_string();
    let shared = Shared { file_name: &file_name, bytes: bytes.into(), func_info: has_func_info(elf) };
    let mut out = ObjectCases::default();
    for (name, p) in programs {
        let sec = prog_secs.get(&p.section_index).cloned().unwrap_or_default();
        let annotations = Annotations::read(file, name, &btf);
        let mut object = object_source(&shared, name, &sec, annotations.as_ref().ok());
        object.struct_ops = struct_ops.get(name.as_str()).cloned();
        let case = obj
            .functions
            .get(&p.function_key())
            .ok_or_else(|| "its function was not found in the object".to_string())
            .and_then(|func| {
                let a = annotations.as_ref().map_err(Clone::clone)?;
                program_case(
                    file,
                    name,
                    &sec,
                    func,
                    &obj,
                    &btf,
                    &data_syms,
                    &map_names,
                    &kfuncs,
                    &externs,
                    known_kfuncs,
                    a,
                )
            });
        match case {
            Ok(c) => out.cases.push(Case { object: Some(object), license: object_license(elf), ..c }),
            Err(why) => {
                // The kernel still judges it (through libbpf); the model says why it cannot.
                out.cases.push(kernel_only_case(file, name, annotations.as_ref().ok(), object, &why));
                out.skipped.push((name.clone(), why));
            }
        }
    }
    Ok(out)
}

/// One case per program (every function symbol of a program section, as libbpf takes them) of
/// an object the model's reader cannot read: the kernel judges each through libbpf, the model
/// says `unsupported` with `why`. Annotations come from lockstep's own BTF reader.
fn programs_for_kernel_only(
    file: &str,
    bytes: &[u8],
    elf: &object::File<'_>,
    prog_secs: &BTreeMap<usize, String>,
    btf: &Btf,
    why: &str,
) -> ObjectCases {
    let file_name = file.rsplit('/').next().unwrap_or(file).to_string();
    let shared = Shared { file_name: &file_name, bytes: bytes.into(), func_info: has_func_info(elf) };
    let mut syms: Vec<(usize, u64, String)> = elf
        .symbols()
        .filter(|s| s.kind() == object::SymbolKind::Text && s.size() > 0)
        .filter_map(|s| {
            let sec = s.section_index()?.0;
            if !prog_secs.contains_key(&sec) {
                return None;
            }
            Some((sec, s.address(), s.name().ok()?.to_string()))
        })
        .collect();
    syms.sort();
    let mut out = ObjectCases::default();
    for (sec, _, name) in syms {
        let annotations = Annotations::read(file, &name, btf);
        let section = prog_secs.get(&sec).map_or("", String::as_str);
        let object = object_source(&shared, &name, section, annotations.as_ref().ok());
        out.cases.push(kernel_only_case(file, &name, annotations.as_ref().ok(), object, why));
        out.skipped.push((name, why.to_string()));
    }
    out
}

/// The struct_ops member each program implements, by program name: libbpf's
/// `bpf_object__collect_st_ops_relos()` takes the relocations of a `.struct_ops` /
/// `.struct_ops.link` section (a function pointer member of a variable of `struct <type>`, the
/// variable's offset from its symbol as `btf_fixup_datasec()` sets it) and loads the program
/// with `expected_attach_type` = the member's index and `attach_btf_id` = the kernel's `<type>`.
/// The member's return type is read from the object's BTF (its prototype is the kernel's:
/// vmlinux.h).
fn struct_ops_members(
    elf: &object::File<'_>,
    btf: &Btf,
    data_syms: &BTreeMap<String, u32>,
) -> BTreeMap<String, crate::case::StructOpsMember> {
    let mut out = BTreeMap::new();
    for sec_name in [".struct_ops", ".struct_ops.link"] {
        let Some(sec) = elf.section_by_name(sec_name) else { continue };
        let Some(Kind::Datasec { entries }) =
            btf.datasec(sec_name).and_then(|id| btf.get(id)).map(|t| &t.kind)
        else {
            continue;
        };
        for (off, rel) in sec.relocations() {
            let RelocationTarget::Symbol(si) = rel.target() else { continue };
            let Ok(sym) = elf.symbol_by_index(si) else { continue };
            if sym.kind() != object::SymbolKind::Text {
                continue;
            }
            let Ok(prog) = sym.name() else { continue };
            for &(var, var_off, size) in entries {
                let Some(v) = btf.get(var) else { continue };
                let Kind::Var { ty } = v.kind else { continue };
                let start = data_syms.get(v.name.as_str()).copied().unwrap_or(var_off) as u64;
                if off < start || off >= start + size as u64 {
                    continue;
                }
                let st_id = btf.resolve(ty);
                let Some(st) = btf.get(st_id) else { continue };
                let Kind::Struct { members, .. } = &st.kind else { continue };
                let Some(m) = members.iter().find(|m| m.bit_offset as u64 == (off - start) * 8) else {
                    continue;
                };
                let Some(Kind::Ptr { to }) = btf.get(btf.resolve(m.ty)).map(|t| &t.kind) else { continue };
                let Some(Kind::FuncProto { ret, .. }) = btf.get(btf.resolve(*to)).map(|t| &t.kind) else {
                    continue;
                };
                let ret = match btf.get(btf.resolve(*ret)).map(|t| &t.kind) {
                    Some(Kind::Void) => "void",
                    Some(Kind::Ptr { .. }) => "ptr",
                    _ => "scalar",
                };
                out.insert(
                    prog.to_string(),
                    crate::case::StructOpsMember {
                        st: st.name.to_string(),
                        member: m.name.to_string(),
                        ret: ret.into(),
                    },
                );
            }
        }
    }
    out
}

/// The licence libbpf passes with every program of the object (`bpf_object__init_license()`):
/// the `license` section up to its first NUL, at most 63 bytes; "" without the section.
pub(crate) fn object_license(elf: &object::File<'_>) -> String {
    let data = elf.section_by_name("license").and_then(|s| s.data().ok()).unwrap_or_default();
    let end = data.iter().position(|&b| b == 0).unwrap_or(data.len()).min(63);
    String::from_utf8_lossy(&data[..end]).into_owned()
}

/// What every program of one object shares in its [`ObjectSource`].
struct Shared<'a> {
    file_name: &'a str,
    bytes: std::sync::Arc<[u8]>,
    func_info: bool,
}

/// Whether the object has a `.BTF.ext` section (func_info / line_info), which libbpf passes
/// with each program it loads (clang writes it with `-g`).
fn has_func_info(elf: &object::File<'_>) -> bool {
    elf.section_by_name(".BTF.ext").is_some_and(|s| s.size() > 0)
}

/// How the guest loads program `name` of the object (`bytes`, named `file_name`) through libbpf:
/// only it autoloaded, the log level and program flags of its annotations, a test run when it
/// expects a `__retval`.
fn object_source(
    shared: &Shared<'_>,
    name: &str,
    section: &str,
    annotations: Option<&Annotations>,
) -> ObjectSource {
    ObjectSource {
        file_name: shared.file_name.to_string(),
        bytes: shared.bytes.clone(),
        program: name.to_string(),
        section: section.to_string(),
        func_info: shared.func_info,
        autoload: vec![name.to_string()],
        log_level: annotations.map_or(0, |a| a.log_level).max(1),
        // BPF_F_SLEEPABLE is 1 << 4.
        prog_flags: annotations.map_or(0, |a| a.flags.0 | if a.flags.1 { 1 << 4 } else { 0 }),
        test_run: annotations.is_some_and(|a| a.expect.values().any(|e| e.retval.is_some())),
        struct_ops: None,
    }
}

/// The case of program `name` that only the kernel judges (through libbpf): its annotations as
/// expectations, the model `unsupported` with `why`.
fn kernel_only_case(
    file: &str,
    name: &str,
    annotations: Option<&Annotations>,
    object: ObjectSource,
    why: &str,
) -> Case {
    let mut c = Case::new(name.to_string(), ProgType::SocketFilter, Program::default(), "");
    c.file = file.to_string();
    if let Some(a) = annotations {
        c.expect = a.expect.clone();
        c.description = a.description.clone();
        c.tags = a.tags.clone();
        c.log_level = a.log_level;
    }
    c.object = Some(object);
    c.model_unsupported = Some(why.to_string());
    c
}

#[allow(clippy::too_many_arguments)]
fn program_case(
    file: &str,
    name: &str,
    sec: &str,
    func: &aya_obj::Function,
    obj: &aya_obj::Object,
    btf: &Btf,
    data_syms: &BTreeMap<String, u32>,
    map_names: &[String],
    kfuncs: &[String],
    externs: &[Extern],
    known_kfuncs: &[String],
    annotations: &Annotations,
) -> Result<Case, String> {
    let st = prog_type_of_section(sec)?;
    // `__exception_cb(f)`: libbpf appends `f` and the kernel verifies it as the program's
    // exception callback (check_btf_info() / add_subprog_and_kfunc(): exception_callback_subprog,
    // its return value checked as the main program's).
    let exception_cb = exception_cb_of(btf, name);
    let mut insns: Vec<Insn> = func
        .instructions
        .iter()
        .map(|i| Insn { code: i.code, dst: i.dst_reg(), src: i.src_reg(), off: i.off, imm: i.imm })
        .collect();
    // Subprogram names and linkage from func_info (BTF FUNC records).
    let mut names: BTreeMap<usize, (String, u32)> = BTreeMap::new();
    for fi in &func.func_info.func_info {
        if let Some(t) = btf.get(fi.type_id) {
            names.insert(fi.insn_off as usize, (t.name.to_string(), fi.type_id));
        }
    }
    // libbpf's bpf_object__relocate(): once the program's calls are relocated, the exception
    // callback is appended (bpf_object__append_subprog_code(), then bpf_object__reloc_code() on
    // it) unless a call already appended it (`subprog->sub_insn_off`). Its own callees, which
    // libbpf appends after it, are not (the program is then the kernel's alone).
    let mut cb_start = None;
    if let Some(cb) = exception_cb.as_ref().filter(|cb| cb.global) {
        if let Some((&at, _)) = names.iter().find(|(_, (n, _))| *n == cb.name) {
            cb_start = Some(at);
        } else if let (Some(f), Some(id)) =
            (obj.functions.values().find(|f| f.name == cb.name), btf.func(&cb.name))
        {
            let calls = f.instructions.iter().any(|i| {
                (i.code == 0x85 && i.src_reg() == 1) || (i.code == 0x18 && i.src_reg() == BPF_PSEUDO_FUNC)
            });
            if calls {
                return Err(format!(
                    "exception callback `{}` calls subprograms (libbpf appends them after it): not modelled",
                    cb.name
                ));
            }
            let at = insns.len();
            insns.extend(f.instructions.iter().map(|i| Insn {
                code: i.code,
                dst: i.dst_reg(),
                src: i.src_reg(),
                off: i.off,
                imm: i.imm,
            }));
            names.insert(at, (cb.name.clone(), id));
            cb_start = Some(at);
        }
    }
    let mut program = Program {
        insns: Vec::new(),
        relocs: BTreeMap::new(),
        labels: BTreeMap::new(),
        lines: vec![0; insns.len()],
    };
    let mut used_maps: Vec<String> = Vec::new();
    let map_of = |fd: i32| -> Result<String, String> {
        usize::try_from(fd - FD_BASE)
            .ok()
            .and_then(|i| map_names.get(i))
            .cloned()
            .ok_or_else(|| format!("ld_imm64 with unknown map fd {fd}"))
    };
    let mut i = 0;
    while i < insns.len() {
        let ins = insns[i];
        if ins.is_ld_imm64() {
            match ins.src {
                BPF_PSEUDO_MAP_FD | BPF_PSEUDO_MAP_VALUE => {
                    let m = map_of(ins.imm)?;
                    let reloc = if ins.src == BPF_PSEUDO_MAP_FD {
                        Reloc::Map { name: m.clone() }
                    } else {
                        Reloc::MapValue {
                            name: m.clone(),
                            offset: insns.get(i + 1).map_or(0, |n| n.imm as u32),
                        }
                    };
                    program.relocs.insert(i, reloc);
                    insns[i].imm = 0;
                    if !used_maps.contains(&m) {
                        used_maps.push(m);
                    }
                }
                EXTERN_VAR_SRC => match externs.get(ins.imm as usize) {
                    Some(Extern { name, func: Some((weak, proto)), .. }) => {
                        program.relocs.insert(
                            i,
                            Reloc::KsymFunc { name: name.clone(), weak: *weak, proto: proto.clone() },
                        );
                        insns[i].src = crate::insn::BPF_PSEUDO_BTF_ID;
                        insns[i].imm = 0;
                    }
                    Some(Extern { name, func: None, var: Some((weak, shape)) }) => {
                        program.relocs.insert(
                            i,
                            Reloc::KsymVar { name: name.clone(), weak: *weak, shape: shape.clone() },
                        );
                        insns[i].src = crate::insn::BPF_PSEUDO_BTF_ID;
                        insns[i].imm = 0;
                    }
                    // A `__kconfig` extern: libbpf's `.kconfig` map at the extern's offset
                    // (kconfig.rs), BPF_PSEUDO_MAP_VALUE.
                    Some(Extern { name, func: None, var: None })
                        if btf.datasec(super::kconfig::KCONFIG_MAP).is_some() =>
                    {
                        let vars = super::kconfig::layout(btf)?;
                        let Some(v) = vars.iter().find(|v| v.name == *name) else {
                            return Err(format!("uses extern variable `{name}` outside .ksyms and .kconfig"));
                        };
                        let map = super::kconfig::KCONFIG_MAP.to_string();
                        program.relocs.insert(i, Reloc::MapValue { name: map.clone(), offset: v.off });
                        insns[i].src = BPF_PSEUDO_MAP_VALUE;
                        insns[i].imm = 0;
                        if let Some(next) = insns.get_mut(i + 1) {
                            next.imm = v.off as i32;
                        }
                        if !used_maps.contains(&map) {
                            used_maps.push(map);
                        }
                    }
                    e => {
                        return Err(format!(
                        "uses extern variable `{}` (typed __ksym and __kconfig variables are not supported)",
                        e.map_or("?", |e| e.name.as_str())
                    ))
                    }
                },
                BPF_PSEUDO_FUNC => {
                    let t = (i as i64 + ins.imm as i64 + 1) as usize;
                    program.relocs.insert(i, Reloc::Subprog { label: label_of(&names, t) });
                }
                _ => {}
            }
            i += 2;
            continue;
        }
        if ins.is_call() {
            match ins.src {
                0 => {
                    if let Some(h) = crate::helpers::helper_name(ins.imm) {
                        program.relocs.insert(i, Reloc::Helper { name: h.to_string() });
                    }
                }
                1 => {
                    let t = (i as i64 + ins.imm as i64 + 1) as usize;
                    program.relocs.insert(i, Reloc::Subprog { label: label_of(&names, t) });
                }
                PSEUDO_KFUNC_CALL => {
                    let k = kfuncs
                        .get((ins.imm - KFUNC_TAG) as usize)
                        .ok_or("kfunc call without a relocation")?;
                    program.relocs.insert(i, Reloc::Kfunc { name: k.clone() });
                    insns[i].imm = 0;
                }
                _ => {}
            }
        }
        i += 1;
    }
    program.insns = insns;
    let mut globals = Vec::new();
    let mut starts = program.subprog_starts();
    starts.extend(cb_start);
    starts.sort_unstable();
    starts.dedup();
    for start in starts {
        let label = if start == 0 { name.to_string() } else { label_of(&names, start) };
        program.labels.insert(start, label.clone());
        if start == 0 {
            continue;
        }
        if let Some((_, id)) = names.get(&start) {
            if let Some(Kind::Func { proto, global: true }) = btf.get(*id).map(|t| &t.kind) {
                let (args, ctx_args) = global_args(btf, *proto, st.prog_type)
                    .map_err(|why| format!("global function `{label}`: {why}"))?;
                globals.push(GlobalFunc { label, args, ctx_args });
            }
        }
    }
    let mut maps = Vec::new();
    for m in &used_maps {
        if m == super::kconfig::KCONFIG_MAP && !obj.maps.contains_key(m) {
            maps.push(kconfig_map_spec(btf)?);
            continue;
        }
        maps.push(map_spec(m, &obj.maps[m], btf, data_syms).map_err(|why| format!("map `{m}`: {why}"))?);
    }
    let Annotations { expect, description, tags, log_level, flags } = annotations.clone();
    let extern_kfuncs: Vec<String> = {
        let mut v: Vec<String> = program
            .relocs
            .values()
            .filter_map(|r| if let Reloc::Kfunc { name } = r { Some(name.clone()) } else { None })
            .filter(|n| !known_kfuncs.contains(n))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let mut types = super::special::contained_types(btf, &maps)?;
    // Constants loaded with ld_imm64 (src 0): the candidates for bpf_obj_new()'s type id.
    let consts: Vec<u64> = (0..program.insns.len())
        .filter(|&i| program.insns[i].is_ld_imm64() && program.insns[i].src == 0)
        .map(|i| {
            let hi = program.insns.get(i + 1).map_or(0, |n| n.imm as u32 as u64);
            (hi << 32) | program.insns[i].imm as u32 as u64
        })
        .collect();
    super::special::allocated_types(btf, &consts, &mut types);
    let non_struct_type_ids = super::special::non_struct_ids(btf, &consts);
    super::special::kptr_pointee_types(btf, &maps, &mut types);
    Ok(Case {
        name: name.to_string(),
        file: file.to_string(),
        line: 0,
        prog_type: st.prog_type,
        sleepable: st.sleepable || flags.1,
        prog_flags: st.prog_flags | flags.0,
        log_level,
        maps,
        globals,
        types,
        extern_kfuncs,
        text: disassemble(&program),
        program,
        expect,
        description,
        tags,
        object: None,
        model_unsupported: None,
        exception_cb,
        license: crate::case::DEFAULT_LICENSE.into(),
        non_struct_type_ids,
    })
}

/// The `__exception_cb(f)` of program `name` (its `exception_callback:` decl tags) and how the
/// BTF declares `f`. A tag naming no function gives a callback without parameters or linkage
/// that the model reports as unsupported.
fn exception_cb_of(btf: &Btf, name: &str) -> Option<crate::case::ExceptionCb> {
    use crate::case::{CbReturn, ExceptionCb};
    let tags: Vec<String> = btf
        .func(name)
        .into_iter()
        .flat_map(|id| btf.decl_tags(id))
        .filter_map(|t| t.strip_prefix("exception_callback:").map(str::to_string))
        .collect();
    let cb = tags.first()?.clone();
    let mut out = ExceptionCb {
        name: cb.clone(),
        tags: u8::try_from(tags.len()).unwrap_or(u8::MAX),
        global: false,
        ret: CbReturn::Other,
        args: u8::MAX,
        args_scalar: false,
    };
    let Some(Kind::Func { proto, global }) = btf.func(&cb).and_then(|id| btf.get(id)).map(|t| &t.kind) else {
        return Some(out);
    };
    out.global = *global;
    if let Some(Kind::FuncProto { ret, params, .. }) = btf.get(*proto).map(|t| &t.kind) {
        let scalar = |id: u32| {
            matches!(btf.get(btf.resolve(id)).map(|t| &t.kind), Some(Kind::Int { .. } | Kind::Enum { .. }))
        };
        out.ret = match btf.get(btf.resolve(*ret)).map(|t| &t.kind) {
            _ if *ret == 0 => CbReturn::Void,
            Some(Kind::Void) => CbReturn::Void,
            _ if scalar(*ret) => CbReturn::Scalar,
            _ => CbReturn::Other,
        };
        out.args = u8::try_from(params.len()).unwrap_or(u8::MAX);
        out.args_scalar = params.iter().all(|p| scalar(*p));
    }
    Some(out)
}

/// What a program's test annotations (BTF decl tags) say.
#[derive(Clone, Debug, Default)]
struct Annotations {
    expect: BTreeMap<String, crate::case::Expectation>,
    description: Option<String>,
    tags: Vec<String>,
    /// `__log_level(N)` (0: none).
    log_level: u32,
    /// (`prog_flags`, sleepable) from `__flag(...)`.
    flags: (u32, bool),
}

impl Annotations {
    /// The annotations of program `name`, or why they cannot be used.
    fn read(file: &str, name: &str, btf: &Btf) -> Result<Annotations, String> {
        let Some(id) = btf.func(name) else { return Ok(Annotations::default()) };
        let tags: Vec<String> = btf.decl_tags(id).into_iter().filter_map(decl_tag_annotation).collect();
        let spec = TestSpec::from_annotations(tags.iter().map(String::as_str));
        if !spec.unknown.is_empty() {
            return Err(format!("unknown annotations: {}", spec.unknown.join(", ")));
        }
        let expect = if spec == TestSpec::default() {
            BTreeMap::new()
        } else {
            spec.expectations("*", &format!("{file}: decl tags of {name}"))?
        };
        let flags = spec.prog_flags()?;
        let log_level =
            spec.log_level.as_deref().and_then(|l| l.parse().ok()).filter(|l| *l <= 2).unwrap_or(0);
        Ok(Annotations {
            expect,
            description: spec.description.clone(),
            tags: spec.notes(),
            log_level,
            flags,
        })
    }
}

fn label_of(names: &BTreeMap<usize, (String, u32)>, at: usize) -> String {
    names.get(&at).map_or_else(|| format!("subprog_{at}"), |(n, _)| n.clone())
}

/// The argument count of a global function whose arguments are all integers.
fn global_args(btf: &Btf, proto: u32, prog_type: ProgType) -> Result<(u8, u8), String> {
    let Some(Kind::FuncProto { params, .. }) = btf.get(proto).map(|t| &t.kind) else {
        return Err("global function without a prototype".into());
    };
    // btf_prepare_func_args(): a pointer to the program type's context struct is ARG_PTR_TO_CTX
    // (btf_is_prog_ctx_type(); the __sk_buff programs' and xdp's xdp_md here); `__arg_*` decl tags are not read.
    let ctx_struct = match prog_type {
        ProgType::SocketFilter | ProgType::SchedCls | ProgType::SchedAct | ProgType::CgroupSkb => {
            Some("__sk_buff")
        }
        ProgType::Xdp => Some("xdp_md"),
        _ => None,
    };
    let mut ctx_args = 0u8;
    for (i, p) in params.iter().enumerate() {
        let t = btf.get(btf.resolve(*p)).map(|t| &t.kind);
        if matches!(t, Some(Kind::Int { .. } | Kind::Enum { .. })) {
            continue;
        }
        let pointee = match t {
            Some(Kind::Ptr { to }) => btf.get(btf.resolve(*to)),
            _ => None,
        };
        let is_ctx = pointee.is_some_and(|t| {
            matches!(t.kind, Kind::Struct { .. } | Kind::Fwd) && Some(t.name.as_str()) == ctx_struct
        });
        if !is_ctx || i >= 5 {
            let what = match pointee {
                Some(t) if !t.name.is_empty() => format!("a pointer to `{}`", t.name),
                Some(_) => "a pointer".to_string(),
                None => "neither an integer nor a pointer".to_string(),
            };
            return Err(format!(
                "a global function takes a non-integer argument (argument {}, {what}: btf_prepare_func_args() not modelled)",
                i + 1
            ));
        }
        ctx_args |= 1 << i;
    }
    let args = u8::try_from(params.len()).map_err(|_| "too many arguments".to_string())?;
    Ok((args, ctx_args))
}

/// libbpf's `.kconfig` internal map (`bpf_object__init_kconfig_map()`, kconfig.rs): an array of
/// one element sized by the externs' layout, `BPF_F_RDONLY_PROG` (`bpf_map_is_rdonly()` once
/// frozen), mmapable like the other global data maps, with the DATASEC as value BTF.
fn kconfig_map_spec(btf: &Btf) -> Result<MapSpec, String> {
    let vars = super::kconfig::layout(btf)?;
    Ok(MapSpec {
        name: super::kconfig::KCONFIG_MAP.to_string(),
        map_type: MapType::Array,
        key_size: 4,
        max_entries: 1,
        btf: true,
        value: ValueLayout { size: super::kconfig::map_size(&vars), fields: Vec::new() },
        global_section: true,
        flags: 1 << 7,
        inner: None,
    })
}

/// The map type with uapi number `t`.
fn map_type(t: u32) -> Option<MapType> {
    MapType::ALL.into_iter().find(|m| m.uapi() == t)
}

/// A map of the object as lockstep creates it.
fn map_spec(
    name: &str,
    m: &aya_obj::Map,
    btf: &Btf,
    data_syms: &BTreeMap<String, u32>,
) -> Result<MapSpec, String> {
    use aya_obj::EbpfSectionKind as K;
    if matches!(m.section_kind(), K::Data | K::Bss | K::Rodata) {
        let value = match btf.datasec(name) {
            Some(id) => datasec_layout(btf, id, m.value_size(), data_syms)?,
            None => ValueLayout { size: m.value_size(), fields: Vec::new() },
        };
        // libbpf creates .rodata with BPF_F_RDONLY_PROG (1 << 7).
        let flags = if m.section_kind() == K::Rodata { 1 << 7 } else { 0 };
        return Ok(MapSpec {
            name: name.to_string(),
            map_type: MapType::Array,
            key_size: 4,
            max_entries: 1,
            btf: btf.datasec(name).is_some(),
            value,
            global_section: true,
            flags,
            inner: None,
        });
    }
    let map_type = map_type(m.map_type())
        .ok_or_else(|| format!("map type {} is not one the model represents", m.map_type()))?;
    let value_id = match m {
        aya_obj::Map::Btf(b) => b.def.btf_value_type_id,
        aya_obj::Map::Legacy(_) => 0,
    };
    // libbpf creates a map-in-map without value BTF (its value is an inner map's fd) and first
    // creates the inner map `<outer>.inner` from the `__array(values, ...)` definition.
    let inner = if map_type.is_map_in_map() { Some(Box::new(inner_spec(name, btf)?)) } else { None };
    let value_id = if inner.is_some() { 0 } else { value_id };
    Ok(MapSpec {
        name: name.to_string(),
        map_type,
        key_size: m.key_size(),
        max_entries: m.max_entries(),
        value: btf_value_layout(btf, value_id, m.value_size())?,
        btf: value_id != 0,
        global_section: false,
        flags: m.map_flags(),
        inner,
    })
}

/// A map value's layout from its BTF type (`value_id` 0: no BTF, no fields).
fn btf_value_layout(btf: &Btf, value_id: u32, size: u32) -> Result<ValueLayout, String> {
    if value_id == 0 {
        return Ok(ValueLayout { size, fields: Vec::new() });
    }
    let mut v = value_layout(&btf.ctype(value_id).map_err(|x| x.to_string())?)?;
    super::special::merge(&mut v, super::special::struct_fields(btf, value_id, 0, None)?);
    v.size = size;
    Ok(v)
}

/// The inner map of map-in-map `outer` as libbpf creates it (`<outer>.inner`, with BTF).
fn inner_spec(outer: &str, btf: &Btf) -> Result<MapSpec, String> {
    let d = super::inner_map::inner_def(btf, outer).map_err(|e| format!("map-in-map inner map: {e}"))?;
    let map_type = map_type(d.map_type).filter(|t| !t.is_map_in_map()).ok_or_else(|| {
        format!("map-in-map inner map: map type {} is not one the model represents", d.map_type)
    })?;
    Ok(MapSpec {
        name: format!("{outer}.inner"),
        map_type,
        key_size: d.key_size,
        max_entries: d.max_entries,
        value: btf_value_layout(btf, d.value_type, d.value_size)?,
        btf: d.value_type != 0,
        global_section: false,
        flags: d.map_flags,
        inner: None,
    })
}

/// The layout of a global data section from its `DATASEC`: each variable's fields, at the
/// variable's symbol address.
fn datasec_layout(
    btf: &Btf,
    id: u32,
    size: u32,
    data_syms: &BTreeMap<String, u32>,
) -> Result<ValueLayout, String> {
    let Some(Kind::Datasec { entries }) = btf.get(id).map(|t| &t.kind) else { unreachable!("a datasec id") };
    let mut fields = Vec::new();
    let mut special = Vec::new();
    for &(var, off, _size) in entries {
        let Some(t) = btf.get(var) else { continue };
        let Kind::Var { ty } = t.kind else { continue };
        let off = data_syms.get(t.name.as_str()).copied().unwrap_or(off);
        let inner = value_layout(&btf.ctype(ty).map_err(|x| x.to_string())?)?;
        let single = inner.fields.len() == 1 && inner.fields[0].offset == 0;
        for f in inner.fields {
            let name = if single { t.name.to_string() } else { format!("{}_{}", t.name, f.name) };
            fields.push(Field { name, offset: f.offset + off, ..f });
        }
        special.extend(super::special::var_fields(btf, var, &t.name, ty, off)?);
    }
    fields.sort_by_key(|f| f.offset);
    let mut layout = ValueLayout { size, fields };
    super::special::merge(&mut layout, special);
    Ok(layout)
}

/// A copy of the ELF64 little-endian `bytes` with sections `which` renamed to `new_name`: the
/// section-name string table is copied to the end of the file with the new name appended.
pub fn rename_sections(bytes: &[u8], which: &[usize], new_name: &str) -> Result<Vec<u8>, String> {
    if which.is_empty() {
        return Ok(bytes.to_vec());
    }
    let rd = |o: usize, n: usize| -> Result<u64, String> {
        let s = bytes.get(o..o + n).ok_or("truncated ELF header")?;
        Ok(s.iter().rev().fold(0u64, |a, b| (a << 8) | *b as u64))
    };
    let shoff = rd(0x28, 8)? as usize;
    let shentsize = rd(0x3a, 2)? as usize;
    let shnum = rd(0x3c, 2)? as usize;
    let shstrndx = rd(0x3e, 2)? as usize;
    if shstrndx >= shnum || shentsize < 0x40 {
        return Err("unsupported section header layout".into());
    }
    let hdr = |i: usize| shoff + i * shentsize;
    let str_off = rd(hdr(shstrndx) + 0x18, 8)? as usize;
    let str_size = rd(hdr(shstrndx) + 0x20, 8)? as usize;
    let table = bytes.get(str_off..str_off + str_size).ok_or("section name table out of range")?;
    let mut out = bytes.to_vec();
    while !out.len().is_multiple_of(8) {
        out.push(0);
    }
    let new_off = out.len();
    out.extend_from_slice(table);
    let name_at = table.len() as u32;
    out.extend_from_slice(new_name.as_bytes());
    out.push(0);
    let new_size = out.len() - new_off;
    let wr = |out: &mut Vec<u8>, o: usize, v: u64, n: usize| {
        for k in 0..n {
            out[o + k] = (v >> (8 * k)) as u8;
        }
    };
    wr(&mut out, hdr(shstrndx) + 0x18, new_off as u64, 8);
    wr(&mut out, hdr(shstrndx) + 0x20, new_size as u64, 8);
    for &i in which {
        if i >= shnum {
            return Err(format!("no section {i}"));
        }
        wr(&mut out, hdr(i), name_at as u64, 4);
    }
    Ok(out)
}

/// Whether the object's DATASEC `.ksyms` (where libbpf finds typed and typeless `__ksym`
/// externs, `bpf_object__collect_externs()`) lists the VAR `name`.
fn ksyms_datasec_has(btf: &Btf, name: &str) -> bool {
    btf.types.iter().any(|t| {
        t.name == ".ksyms"
            && matches!(&t.kind, Kind::Datasec { entries }
                if entries.iter().any(|e| btf.get(e.0).is_some_and(|v| v.name == name)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_an_object() {
        assert!(cases_from_object("x", b"not an ELF file", &[]).unwrap_err().0.contains("not an ELF object"));
        assert!(rename_sections(&[0u8; 16], &[1], "x").is_err());
        assert_eq!(rename_sections(b"abc", &[], "x").unwrap(), b"abc");
    }
}
