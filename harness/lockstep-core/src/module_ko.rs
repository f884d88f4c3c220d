//! Reads a built module's kfunc flags from its `.BTF_ids` section: what the kernel will see.
//!
//! `BTF_KFUNCS_START(set)` / `BTF_ID_FLAGS(func, name, flags)` emit, in `.BTF_ids`, a set8 header
//! (symbol `__BTF_ID__set8__<set>`) followed by one `{u32 id; u32 flags;}` pair per kfunc
//! (include/linux/btf_ids.h); resolve_btfids fills the ids in and sorts the pairs by id. The flags are
//! the compiled values, so a flag chosen by `#ifdef` (the lock-safe flag exists only on some
//! kernels) is read as the kernel will see it. Input is the `.ko`'s bytes; no I/O here.

use std::collections::BTreeMap;

use object::{Object, ObjectSection, ObjectSymbol};

use crate::profile::ModuleKfuncs;

/// One kfunc entry of a module's `.BTF_ids`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KoKfunc {
    /// The kfunc id set it belongs to (`BTF_KFUNCS_START(set)`).
    pub set: String,
    /// Its flags word.
    pub flags: u32,
}

/// Errors reading a `.ko`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KoError {
    #[error("not an ELF object: {0}")]
    Elf(String),
    #[error("no .BTF_ids section (module built without BTF, or no kfuncs)")]
    NoBtfIds,
    #[error("no .BTF section: the module has no BTF, so its kfuncs cannot be called")]
    NoBtf,
    #[error("no .BTF.base section: pass the kernel's vmlinux BTF as the base")]
    NoBase,
    #[error("bad BTF: {0}")]
    Btf(String),
    #[error("set {set} lies outside .BTF_ids")]
    OutOfRange { set: String },
    #[error("kfunc id {id} of set {set} is not a function of the module's BTF")]
    UnknownId { set: String, id: u32 },
}

/// The contents of section `name` of an ELF file.
pub fn elf_section<'a>(elf: &'a [u8], name: &str) -> Result<Option<&'a [u8]>, KoError> {
    section(&parse(elf)?, name)
}

/// Where section `name` of an ELF file lies in its bytes ([`elf_section`] as a range).
pub fn elf_section_range(elf: &[u8], name: &str) -> Result<Option<std::ops::Range<usize>>, KoError> {
    Ok(elf_section(elf, name)?.map(|s| {
        let start = s.as_ptr() as usize - elf.as_ptr() as usize;
        start..start + s.len()
    }))
}

fn parse(elf: &[u8]) -> Result<object::File<'_>, KoError> {
    object::File::parse(elf).map_err(|e| KoError::Elf(e.to_string()))
}

/// The contents of section `name` of a parsed ELF file (borrowing the file's bytes).
fn section<'a>(file: &object::File<'a>, name: &str) -> Result<Option<&'a [u8]>, KoError> {
    file.section_by_name(name).map(|s| s.data().map_err(|e| KoError::Elf(e.to_string()))).transpose()
}

/// The kfuncs (name -> set and flags) of a module's `.BTF_ids`. Kfunc ids are named from the
/// module's split `.BTF`, whose base is its `.BTF.base` (distilled base, 6.13+) or else
/// `vmlinux_btf` (the `.BTF` of the kernel's vmlinux).
///
/// Each set is found by its `__BTF_ID__set8__<set>` symbol; its entries are read from the section,
/// not from the per-entry symbols, because resolve_btfids sorts a kfunc set by id after linking.
pub fn kfunc_flags(ko: &[u8], vmlinux_btf: Option<&[u8]>) -> Result<BTreeMap<String, KoKfunc>, KoError> {
    let file = parse(ko)?;
    let split = section(&file, ".BTF")?.ok_or(KoError::NoBtf)?;
    let base = match section(&file, ".BTF.base")? {
        Some(b) => b,
        None => vmlinux_btf.ok_or(KoError::NoBase)?,
    };
    let names = crate::btf::func_names(split, base).map_err(KoError::Btf)?;
    let mut out = BTreeMap::new();
    for e in set8_entries(&file, &|id| names.get(&id).cloned(), true)? {
        out.insert(e.name, KoKfunc { set: e.set, flags: e.flags });
    }
    Ok(out)
}

/// `BTF_SET8_KFUNCS`: the set8 header flag of kfunc id sets (include/linux/btf_ids.h).
const BTF_SET8_KFUNCS: u32 = 1 << 0;

/// One `{id, flags}` pair of a set8 in `.BTF_ids`, named.
struct Set8Entry {
    set: String,
    set_flags: u32,
    name: String,
    flags: u32,
}

/// Every entry of every `__BTF_ID__set8__<set>` of `.BTF_ids`, named through `names`.
/// `strict`: an id that names no function is an error (else skipped: resolve_btfids leaves 0 for
/// a kfunc that was not built).
fn set8_entries(
    file: &object::File<'_>,
    names: &dyn Fn(u32) -> Option<String>,
    strict: bool,
) -> Result<Vec<Set8Entry>, KoError> {
    let sec = file.section_by_name(".BTF_ids").ok_or(KoError::NoBtfIds)?;
    let data = sec.data().map_err(|e| KoError::Elf(e.to_string()))?;
    let u32_at = |at: usize| data.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")));
    let mut out = Vec::new();
    for sym in file.symbols().filter(|s| s.section_index() == Some(sec.index())) {
        let Some(set) = sym.name().ok().and_then(|n| n.strip_prefix("__BTF_ID__set8__")) else { continue };
        let start = (sym.address() - sec.address()) as usize;
        // struct btf_id_set8 { u32 cnt; u32 flags; struct { u32 id; u32 flags; } pairs[]; }
        let (Some(cnt), Some(set_flags)) = (u32_at(start), u32_at(start + 4)) else {
            return Err(KoError::OutOfRange { set: set.to_string() });
        };
        for i in 0..cnt as usize {
            let at = start + 8 + i * 8;
            let (Some(id), Some(flags)) = (u32_at(at), u32_at(at + 4)) else {
                return Err(KoError::OutOfRange { set: set.to_string() });
            };
            let name = match names(id) {
                Some(n) => n,
                None if strict => return Err(KoError::UnknownId { set: set.to_string(), id }),
                None => continue,
            };
            out.push(Set8Entry { set: set.to_string(), set_flags, name, flags });
        }
    }
    Ok(out)
}

/// The kfunc id sets of a kernel's `vmlinux` (an ELF with `.BTF` and `.BTF_ids`, such as the
/// BTF-only vmlinux of Debian's headers package): kfunc name -> set name -> compiled flags word.
/// Only sets marked `BTF_SET8_KFUNCS` count. Which program types a set is registered for is in
/// C code (`register_btf_kfunc_id_set()`), not here.
pub fn vmlinux_kfunc_sets(vmlinux: &[u8]) -> Result<BTreeMap<String, BTreeMap<String, u32>>, KoError> {
    let file = parse(vmlinux)?;
    let btf = section(&file, ".BTF")?.ok_or(KoError::NoBtf)?;
    let names = crate::btf::funcs(btf, None).map_err(KoError::Btf)?;
    kfunc_sets_of(&file, &|id| names.get(&id).cloned())
}

/// [`vmlinux_kfunc_sets`] for a vmlinux whose `.BTF` the caller parsed already: `func_name`
/// names its `FUNC` ids (None for any other id), instead of a second walk of its ~127k types.
pub fn vmlinux_kfunc_sets_named(
    vmlinux: &[u8],
    func_name: &dyn Fn(u32) -> Option<String>,
) -> Result<BTreeMap<String, BTreeMap<String, u32>>, KoError> {
    kfunc_sets_of(&parse(vmlinux)?, func_name)
}

fn kfunc_sets_of(
    file: &object::File<'_>,
    names: &dyn Fn(u32) -> Option<String>,
) -> Result<BTreeMap<String, BTreeMap<String, u32>>, KoError> {
    let mut out: BTreeMap<String, BTreeMap<String, u32>> = BTreeMap::new();
    for e in set8_entries(file, names, false)?.into_iter().filter(|e| e.set_flags & BTF_SET8_KFUNCS != 0) {
        out.entry(e.name).or_default().insert(e.set, e.flags);
    }
    Ok(out)
}

impl ModuleKfuncs {
    /// Replaces each kfunc's flags by the built module's (`kfunc_flags` of its `.ko`). Kfuncs the
    /// `.ko` lacks are dropped (the kernel cannot resolve them); returns their names.
    pub fn apply_ko_flags(&mut self, ko: &BTreeMap<String, KoKfunc>) -> Vec<String> {
        let missing: Vec<String> = self.kfuncs.keys().filter(|k| !ko.contains_key(*k)).cloned().collect();
        for m in &missing {
            self.kfuncs.remove(m);
        }
        for (name, k) in self.kfuncs.iter_mut() {
            k.flags = ko[name].flags;
        }
        missing
    }
}

/// The first line of [`kfuncs_text`].
const KFUNCS_TEXT_HEADER: &str = "lockstep ko kfuncs 1\n";

/// `kfuncs` (a [`kfunc_flags`] answer) as text, for a cache: a header line, then one
/// `name set flags` line per kfunc.
pub fn kfuncs_text(kfuncs: &BTreeMap<String, KoKfunc>) -> String {
    let mut out = KFUNCS_TEXT_HEADER.to_string();
    for (name, k) in kfuncs {
        out.push_str(&format!("{name} {} {}\n", k.set, k.flags));
    }
    out
}

/// The kfuncs of a [`kfuncs_text`] (None: not one, or from another version of it).
pub fn kfuncs_from_text(text: &str) -> Option<BTreeMap<String, KoKfunc>> {
    let body = text.strip_prefix(KFUNCS_TEXT_HEADER)?;
    body.lines()
        .map(|line| {
            let mut f = line.split(' ');
            let (name, set, flags) = (f.next()?, f.next()?, f.next()?.parse().ok()?);
            (f.next().is_none() && !name.is_empty() && !set.is_empty())
                .then(|| (name.to_string(), KoKfunc { set: set.to_string(), flags }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kfuncs_come_back_from_their_text_and_other_text_is_refused() {
        let mut k = BTreeMap::new();
        k.insert(
            "bpf_kfunc_call_test1".to_string(),
            KoKfunc { set: "bpf_testmod_check_kfunc_ids".into(), flags: 0 },
        );
        k.insert(
            "lockstep_safe".to_string(),
            KoKfunc { set: "lockstep_kfunc_ids".into(), flags: 1 << 17 | 2 },
        );
        let text = kfuncs_text(&k);
        assert_eq!(kfuncs_from_text(&text), Some(k));
        assert_eq!(kfuncs_from_text(KFUNCS_TEXT_HEADER), Some(BTreeMap::new()));
        assert_eq!(kfuncs_from_text(&text.replace(" 1\n", " 2\n")), None, "another version's header");
        assert_eq!(kfuncs_from_text(&format!("{KFUNCS_TEXT_HEADER}a b\n")), None, "no flags");
        assert_eq!(kfuncs_from_text(&format!("{KFUNCS_TEXT_HEADER}a b x\n")), None, "flags not a number");
        assert_eq!(kfuncs_from_text(&format!("{KFUNCS_TEXT_HEADER}a b 1 c\n")), None, "a field too many");
    }

    #[test]
    fn rejects_non_elf_and_objects_without_btf() {
        assert!(matches!(kfunc_flags(b"not an elf", None), Err(KoError::Elf(_))));
    }

    #[test]
    fn applying_ko_flags_overrides_the_source_and_drops_missing() {
        let mut m = crate::module_src::bundled();
        let mut ko = BTreeMap::new();
        for name in m.kfuncs.keys() {
            ko.insert(name.clone(), KoKfunc { set: "s".into(), flags: 0 });
        }
        ko.remove("lockstep_unsafe");
        assert_ne!(m.kfuncs["lockstep_safe"].flags, 0);
        let missing = m.apply_ko_flags(&ko);
        assert_eq!(missing, vec!["lockstep_unsafe".to_string()]);
        assert_eq!(m.kfuncs["lockstep_safe"].flags, 0, "the .ko's flags win");
        assert!(!m.kfuncs.contains_key("lockstep_unsafe"));
    }
}
