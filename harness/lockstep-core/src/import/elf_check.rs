//! Checks of a BPF object's structure that aya-obj 0.3 relies on without checking (it indexes
//! sections, `.BTF` strings and `.BTF.ext` records by offsets read from the file and panics on
//! a bad one). Run before aya-obj sees the bytes: a malformed object is then an error naming
//! what is wrong, never a panic. Pure.

use object::{Object as _, ObjectSection as _, ObjectSymbol as _, RelocationTarget, SectionKind, SymbolKind};

/// `BTF_MAGIC`, as the first two bytes of `.BTF` and `.BTF.ext` (little-endian).
const BTF_MAGIC: u16 = 0xeb9f;

fn u16_at(b: &[u8], o: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(o..o + 4)?.try_into().ok()?))
}

/// The string section of a raw `.BTF` (after its header checks).
fn btf_strings(btf: &[u8]) -> Result<&[u8], String> {
    let bad = |w: &str| format!(".BTF: {w}");
    if u16_at(btf, 0) != Some(BTF_MAGIC) {
        return Err(bad("bad magic"));
    }
    let hdr_len = u32_at(btf, 4).ok_or_else(|| bad("truncated header"))? as usize;
    let field = |o| u32_at(btf, o).map(|v| v as usize).ok_or_else(|| bad("truncated header"));
    let (type_off, type_len, str_off, str_len) = (field(8)?, field(12)?, field(16)?, field(20)?);
    let region = |off: usize, len: usize, what: &str| {
        hdr_len
            .checked_add(off)
            .and_then(|s| Some((s, s.checked_add(len)?)))
            .filter(|(_, e)| *e <= btf.len())
            .ok_or_else(|| bad(&format!("{what} section (offset {off}, {len} bytes) past the end")))
    };
    region(type_off, type_len, "type")?;
    let (s, e) = region(str_off, str_len, "string")?;
    Ok(&btf[s..e])
}

/// Whether `off` starts a NUL-terminated string of `strings`.
fn valid_string(strings: &[u8], off: u32) -> bool {
    strings.get(off as usize..).is_some_and(|r| r.contains(&0))
}

/// Checks one `.BTF.ext` info block (func_info, line_info or CO-RE relocations): a record size
/// of at least `min_rec`, then per section its name, record count and records, all in bounds.
fn check_info_block(block: &[u8], min_rec: usize, what: &str, strings: &[u8]) -> Result<(), String> {
    if block.is_empty() {
        return Ok(());
    }
    let bad = |w: String| format!(".BTF.ext {what}: {w}");
    let rec = u32_at(block, 0).ok_or_else(|| bad("truncated record size".into()))? as usize;
    if rec < min_rec || rec > 1 << 16 {
        return Err(bad(format!("record size {rec} (at least {min_rec})")));
    }
    let mut at = 4;
    while at < block.len() {
        let name = u32_at(block, at).ok_or_else(|| bad(format!("truncated section header at {at}")))?;
        let n = u32_at(block, at + 4).ok_or_else(|| bad(format!("truncated section header at {at}")))?;
        if !valid_string(strings, name) {
            return Err(bad(format!("section name offset {name} is not a .BTF string")));
        }
        let len = (n as usize).checked_mul(rec).ok_or_else(|| bad(format!("{n} records overflow")))?;
        let end = (at + 8)
            .checked_add(len)
            .filter(|e| *e <= block.len())
            .ok_or_else(|| bad(format!("{n} records of {rec} bytes past the end of the block")))?;
        // Line records rebase on the first one of each function (aya-obj subtracts it): their
        // instruction offsets must not go down (the kernel wants them increasing).
        if what == "line_info" {
            let offs: Vec<u32> = (at + 8..end).step_by(rec).filter_map(|r| u32_at(block, r)).collect();
            if let Some(w) = offs.windows(2).find(|w| w[1] < w[0]) {
                return Err(bad(format!("instruction offset {} after {} (not in order)", w[1], w[0])));
            }
        }
        at = end;
    }
    Ok(())
}

/// Checks `.BTF.ext`'s header and its blocks against the `.BTF` string section.
fn check_btf_ext(ext: &[u8], strings: &[u8]) -> Result<(), String> {
    let bad = |w: &str| format!(".BTF.ext: {w}");
    if u16_at(ext, 0) != Some(BTF_MAGIC) {
        return Err(bad("bad magic"));
    }
    let hdr_len = u32_at(ext, 4).ok_or_else(|| bad("truncated header"))? as usize;
    if hdr_len < 24 || hdr_len > ext.len() {
        return Err(bad(&format!("header length {hdr_len}")));
    }
    let block = |off_at: usize| -> Result<&[u8], String> {
        let off = u32_at(ext, off_at).ok_or_else(|| bad("truncated header"))? as usize;
        let len = u32_at(ext, off_at + 4).ok_or_else(|| bad("truncated header"))? as usize;
        hdr_len
            .checked_add(off)
            .and_then(|s| ext.get(s..s.checked_add(len)?))
            .ok_or_else(|| bad(&format!("block at offset {off} ({len} bytes) past the end")))
    };
    check_info_block(block(8)?, 8, "func_info", strings)?;
    check_info_block(block(16)?, 16, "line_info", strings)?;
    if hdr_len >= 32 {
        check_info_block(block(24)?, 16, "core_relo", strings)?;
    }
    Ok(())
}

/// Checks what aya-obj trusts: program and function symbols inside their sections, relocations
/// inside the section they patch and pointing at a symbol of a kind it handles, `.BTF` and
/// `.BTF.ext` offsets. The error names the section, symbol or block.
pub fn check_object(elf: &object::File<'_>) -> Result<(), String> {
    for s in elf.sections() {
        let name = s.name().unwrap_or("?");
        if s.kind() != SectionKind::UninitializedData {
            s.data().map_err(|e| format!("section `{name}`: {e}"))?;
        }
    }
    for sym in elf.symbols() {
        let Some(idx) = sym.section_index() else { continue };
        let Ok(sec) = elf.section_by_index(idx) else {
            return Err(format!(
                "symbol `{}` in section {} which does not exist",
                sym.name().unwrap_or("?"),
                idx.0
            ));
        };
        if sec.kind() != SectionKind::Text {
            continue;
        }
        let end = sym.address().checked_add(sym.size());
        if sym.address() < sec.address() || end.is_none_or(|e| e > sec.address() + sec.size()) {
            return Err(format!(
                "symbol `{}` (offset {}, {} bytes) lies outside section `{}` ({} bytes)",
                sym.name().unwrap_or("?"),
                sym.address(),
                sym.size(),
                sec.name().unwrap_or("?"),
                sec.size()
            ));
        }
        if sym.kind() == SymbolKind::Text && sym.name().is_err() {
            return Err(format!(
                "a function symbol of section `{}` has no readable name",
                sec.name().unwrap_or("?")
            ));
        }
    }
    for s in elf.sections().filter(|s| s.kind() == SectionKind::Text) {
        let name = s.name().unwrap_or("?");
        let code = s.data().unwrap_or(&[]);
        for (off, rel) in s.relocations() {
            if off.checked_add(8).is_none_or(|e| e > s.size()) {
                return Err(format!(
                    "a relocation at offset {off} lies past the end of section `{name}` ({} bytes)",
                    s.size()
                ));
            }
            if let RelocationTarget::Symbol(si) = rel.target() {
                let sym = elf.symbol_by_index(si).map_err(|_| {
                    format!("a relocation in section `{name}` names symbol {} which does not exist", si.0)
                })?;
                let in_text = sym
                    .section_index()
                    .and_then(|i| elf.section_by_index(i).ok())
                    .is_some_and(|t| t.kind() == SectionKind::Text);
                // R_BPF_64_64 (1, ld_imm64) and R_BPF_64_32 (10, call) are the code relocations.
                let r_type = match rel.flags() {
                    object::RelocationFlags::Elf { r_type } => r_type,
                    _ => 0,
                };
                if in_text && sym.kind() == SymbolKind::Section && !matches!(r_type, 1 | 10) {
                    return Err(format!(
                        "a relocation in section `{name}` at offset {off} has type {r_type} (not R_BPF_64_64 or R_BPF_64_32)"
                    ));
                }
                // A reference to a map or global data section patches an ld_imm64, both of its
                // slots (aya-obj's relocate_maps writes the second one unchecked), and aya-obj cuts
                // the code into functions at their symbols: both slots must lie in the function
                // holding the first.
                let in_data = sym.section_index().is_some() && !in_text;
                let whole_ld_imm64 = || {
                    code.get(off as usize) == Some(&0x18)
                        && off + 16 <= s.size()
                        && !elf.symbols().any(|f| {
                            f.section_index() == Some(s.index())
                                && f.kind() == SymbolKind::Text
                                && f.size() > 0
                                && (f.address()..f.address() + f.size()).contains(&off)
                                && off + 16 > f.address() + f.size()
                        })
                };
                if in_data && !whole_ld_imm64() {
                    return Err(format!(
                        "a relocation in section `{name}` at offset {off} names data symbol `{}` but does not patch a whole ld_imm64",
                        sym.name().unwrap_or("?")
                    ));
                }
                // A call or function reference through a section symbol: aya-obj computes the
                // callee's byte offset from the instruction's imm (R_BPF_64_32: (imm + 1) * 8,
                // R_BPF_64_64: imm) unchecked; it must land inside the callee's section.
                if in_text && sym.kind() == SymbolKind::Section {
                    let imm = code
                        .get(off as usize + 4..off as usize + 8)
                        .map_or(0, |b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                    let delta = match r_type {
                        10 => imm
                            .checked_add(1)
                            .and_then(|n| u64::try_from(n).ok())
                            .and_then(|n| n.checked_mul(8)),
                        _ => u64::try_from(imm).ok(),
                    };
                    let callee = sym.section_index().and_then(|i| elf.section_by_index(i).ok());
                    let inside = delta.and_then(|d| sym.address().checked_add(d)).is_some_and(|to| {
                        callee.as_ref().is_some_and(|c| to >= c.address() && to < c.address() + c.size())
                    });
                    if !inside {
                        return Err(format!(
                            "a relocation in section `{name}` at offset {off} (imm {imm}) points past the code of section `{}`",
                            callee.as_ref().and_then(|c| c.name().ok()).unwrap_or("?")
                        ));
                    }
                }
                // An extern is NOTYPE (libbpf's sym_is_extern); an undefined function symbol is a
                // callee aya-obj looks for in a section that does not exist.
                if sym.kind() == SymbolKind::Text && sym.section_index().is_none() {
                    return Err(format!(
                        "a relocation in section `{name}` at offset {off} names `{}`, an undefined function symbol (an extern is NOTYPE)",
                        sym.name().unwrap_or("?")
                    ));
                }
                if in_text && !matches!(sym.kind(), SymbolKind::Text | SymbolKind::Section) {
                    return Err(format!(
                        "a relocation in section `{name}` at offset {off} names `{}`, a {:?} symbol in code",
                        sym.name().unwrap_or("?"),
                        sym.kind()
                    ));
                }
            }
        }
    }
    let strings = match elf.section_by_name(".BTF") {
        Some(s) => Some(btf_strings(s.data().map_err(|e| format!(".BTF: {e}"))?)?),
        None => None,
    };
    if let Some(ext) = elf.section_by_name(".BTF.ext") {
        let strings = strings.ok_or(".BTF.ext without .BTF")?;
        check_btf_ext(ext.data().map_err(|e| format!(".BTF.ext: {e}"))?, strings)?;
    }
    Ok(())
}
