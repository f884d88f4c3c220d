//! `__kconfig` externs (`extern unsigned CONFIG_HZ __kconfig;`): libbpf's `.kconfig` map
//! (tools/lib/bpf/libbpf.c of linux-source-7.3, the libbpf the guest's loader is built from).
//! `bpf_object__collect_externs()` takes every VAR of the object BTF's DATASEC `.kconfig` as an
//! `EXT_KCFG` extern (size and alignment of its type, `btf__align_of()`: an integer's size, at
//! most 8), sorts them (`cmp_externs()`: alignment descending, then size ascending, then name)
//! and lays them out one after the other (`kcfg.data_off = roundup(off, align)`);
//! `bpf_object__init_kconfig_map()` creates the internal map `.kconfig` of that size
//! (`BPF_F_RDONLY_PROG | BPF_F_MMAPABLE`, one array element, the DATASEC as value BTF), fills it
//! from the kernel's config (`/boot/config-$(uname -r)`, which lockstep's guest has) and freezes
//! it; each `ld_imm64` of an extern becomes `BPF_PSEUDO_MAP_VALUE` of that map at the extern's
//! offset. The verifier then reads a load from it as the constant stored there
//! (`bpf_map_direct_read()`: the map is read-only and frozen). Pure: bytes in, layout out.

use super::btf::{Btf, Kind};

/// The internal map's name (`KCONFIG_SEC`).
pub const KCONFIG_MAP: &str = ".kconfig";

/// One `EXT_KCFG` extern: its name, offset in the `.kconfig` map and size; `signed` for an
/// integer type that is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KconfigVar {
    pub name: String,
    pub off: u32,
    pub size: u32,
    pub signed: bool,
}

/// The `.kconfig` map's layout for the object BTF `btf` (empty without a `.kconfig` DATASEC), or
/// why the model does not lay it out (a type other than an integer or enum: libbpf's
/// `KCFG_CHAR_ARR` strings and bools are not modelled).
pub fn layout(btf: &Btf) -> Result<Vec<KconfigVar>, String> {
    let Some(sec) = btf.datasec(KCONFIG_MAP) else { return Ok(Vec::new()) };
    let Some(Kind::Datasec { entries }) = btf.get(sec).map(|t| &t.kind) else { return Ok(Vec::new()) };
    let mut vars = Vec::new();
    for e in entries {
        let Some(v) = btf.get(e.0) else { continue };
        let Kind::Var { ty } = v.kind else { continue };
        let (size, signed) = int_of(btf, ty)
            .ok_or_else(|| format!("__kconfig extern `{}` of a type other than an integer", v.name))?;
        vars.push((v.name.clone(), size, signed));
    }
    // cmp_externs(): alignment (btf__align_of(): min(size, 8) for an integer) descending, size
    // ascending, name.
    vars.sort_by(|a, b| b.1.min(8).cmp(&a.1.min(8)).then(a.1.cmp(&b.1)).then(a.0.cmp(&b.0)));
    let mut off = 0u32;
    Ok(vars
        .into_iter()
        .map(|(name, size, signed)| {
            let align = size.min(8);
            let at = off.div_ceil(align) * align;
            off = at + size;
            KconfigVar { name: name.to_string(), off: at, size, signed }
        })
        .collect())
}

/// The `.kconfig` map's value size (`map_sz = last_ext->kcfg.data_off + last_ext->kcfg.sz`).
pub fn map_size(vars: &[KconfigVar]) -> u32 {
    vars.last().map_or(0, |v| v.off + v.size)
}

/// The layout of the `.kconfig` map of the object `bytes` (an ELF with `.BTF`).
pub fn layout_of_object(bytes: &[u8]) -> Result<Vec<KconfigVar>, String> {
    use object::{Object as _, ObjectSection as _};
    let elf = object::File::parse(bytes).map_err(|e| e.to_string())?;
    let sec = elf.section_by_name(".BTF").ok_or("no .BTF section")?;
    let btf = Btf::parse(sec.data().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    layout(&btf)
}

/// An integer or enum type's size and sign, through typedefs and modifiers.
fn int_of(btf: &Btf, mut ty: u32) -> Option<(u32, bool)> {
    for _ in 0..16 {
        match btf.get(ty)?.kind {
            Kind::Modifier(to) => ty = to,
            Kind::Int { size, signed } if matches!(size, 1 | 2 | 4 | 8) => return Some((size, signed)),
            Kind::Enum { size } if matches!(size, 1 | 2 | 4 | 8) => return Some((size, false)),
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::btf::BtfType;
    use super::*;

    /// A BTF with DATASEC `.kconfig` over VARs of the given (name, type id) pairs: types 1 u8,
    /// 2 u32 (`unsigned`), 3 s64, 4 typedef -> 2, 5 char[4].
    fn btf(vars: &[(&str, u32)]) -> Btf {
        let t = |name: &str, kind| BtfType { name: name.into(), kind };
        let mut types = vec![
            t("", Kind::Void),
            t("u8", Kind::Int { size: 1, signed: false }),
            t("unsigned int", Kind::Int { size: 4, signed: false }),
            t("long", Kind::Int { size: 8, signed: true }),
            t("u32", Kind::Modifier(2)),
            t("", Kind::Array { elem: 1, nelems: 4 }),
        ];
        let first = types.len() as u32;
        types.extend(vars.iter().map(|(n, ty)| t(n, Kind::Var { ty: *ty })));
        let entries = (0..vars.len() as u32).map(|i| (first + i, 0, 0)).collect();
        types.push(t(KCONFIG_MAP, Kind::Datasec { entries }));
        Btf { types }
    }

    #[test]
    fn laid_out_as_libbpf_sorts_them() {
        // bpf_qdisc_fq.c: `extern unsigned CONFIG_HZ __kconfig;` alone, at 0, 4 bytes.
        let hz = layout(&btf(&[("CONFIG_HZ", 2)])).unwrap();
        assert_eq!(hz, [KconfigVar { name: "CONFIG_HZ".into(), off: 0, size: 4, signed: false }]);
        assert_eq!(map_size(&hz), 4);
        // cmp_externs(): the 8-byte one first, then the 4-byte ones by name, the byte last.
        let v = layout(&btf(&[("CONFIG_B", 1), ("CONFIG_HZ", 4), ("CONFIG_A", 2), ("CONFIG_X", 3)])).unwrap();
        let got: Vec<_> = v.iter().map(|k| (k.name.as_str(), k.off, k.size, k.signed)).collect();
        assert_eq!(
            got,
            [
                ("CONFIG_X", 0, 8, true),
                ("CONFIG_A", 8, 4, false),
                ("CONFIG_HZ", 12, 4, false),
                ("CONFIG_B", 16, 1, false)
            ]
        );
        assert_eq!(map_size(&v), 17);
        // No .kconfig: nothing; a string config: not laid out by the model.
        assert_eq!(layout(&Btf::default()), Ok(Vec::new()));
        assert!(layout(&btf(&[("CONFIG_S", 5)])).unwrap_err().contains("CONFIG_S"));
    }
}
