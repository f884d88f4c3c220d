//! A minimal raw-BTF reader (include/uapi/linux/btf.h): enough to walk the type section, count
//! types and name the `BTF_KIND_FUNC` types of a split BTF on top of its base. Pure: takes bytes.

use std::collections::BTreeMap;

const MAGIC: u16 = 0xeb9f;
const KIND_FUNC: u32 = 12;

/// The header and sections of one raw BTF blob.
#[derive(Debug)]
struct Raw<'a> {
    types: &'a [u8],
    strings: &'a [u8],
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
}

fn parse(btf: &[u8]) -> Result<Raw<'_>, String> {
    let magic = btf.get(0..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    if magic != Some(MAGIC) {
        return Err("bad magic (not little-endian BTF)".into());
    }
    let field = |i: usize| u32_at(btf, 8 + 4 * i).ok_or("truncated header").map(|v| v as usize);
    let hdr_len = u32_at(btf, 4).ok_or("truncated header")? as usize;
    let (type_off, type_len, str_off, str_len) = (field(0)?, field(1)?, field(2)?, field(3)?);
    let types = btf.get(hdr_len + type_off..hdr_len + type_off + type_len).ok_or("type section out of range")?;
    let strings = btf.get(hdr_len + str_off..hdr_len + str_off + str_len).ok_or("string section out of range")?;
    Ok(Raw { types, strings })
}

/// Bytes that follow the 12-byte `struct btf_type` for a type of `kind` with `vlen` members.
fn trailing(kind: u32, vlen: usize) -> Result<usize, String> {
    Ok(match kind {
        1 | 14 | 17 => 4,                    // INT, VAR, DECL_TAG
        2 | 7..=12 | 16 | 18 => 0,           // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        3 => 12,                             // ARRAY
        4 | 5 | 15 | 19 => 12 * vlen,        // STRUCT, UNION, DATASEC, ENUM64
        6 | 13 => 8 * vlen,                  // ENUM, FUNC_PROTO
        k => return Err(format!("unknown BTF kind {k}")),
    })
}

/// Walks the types: (kind, name offset) of each, in id order (the first is id 1 of this blob).
fn walk(raw: &Raw<'_>) -> Result<Vec<(u32, u32)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < raw.types.len() {
        let (Some(name_off), Some(info)) = (u32_at(raw.types, at), u32_at(raw.types, at + 4)) else {
            return Err("truncated type".into());
        };
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        at += 12 + trailing(kind, vlen)?;
        out.push((kind, name_off));
    }
    Ok(out)
}

fn string(strings: &[u8], off: usize) -> Option<String> {
    let s = strings.get(off..)?;
    let end = s.iter().position(|&b| b == 0)?;
    String::from_utf8(s[..end].to_vec()).ok()
}

/// The function types of `split` (a split BTF on top of `base`), by type id. Split ids continue
/// after the base's (id 0 is `void`); split string offsets continue after the base's strings.
pub fn func_names(split: &[u8], base: &[u8]) -> Result<BTreeMap<u32, String>, String> {
    let base = parse(base)?;
    let base_types = walk(&base)?.len() as u32;
    let split = parse(split)?;
    let mut out = BTreeMap::new();
    for (i, (kind, name_off)) in walk(&split)?.into_iter().enumerate() {
        if kind != KIND_FUNC {
            continue;
        }
        let off = name_off as usize;
        let name = if off < base.strings.len() { string(base.strings, off) } else { string(split.strings, off - base.strings.len()) };
        if let Some(n) = name {
            out.insert(base_types + 1 + i as u32, n);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw BTF blob from (kind, vlen, name_off, trailing bytes) types and a string section.
    fn blob(types: &[(u32, u32, u32, usize)], strings: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        for &(kind, vlen, name, extra) in types {
            t.extend(name.to_le_bytes());
            t.extend(((kind << 24) | vlen).to_le_bytes());
            t.extend(0u32.to_le_bytes());
            t.extend(vec![0u8; extra]);
        }
        let mut b = Vec::new();
        b.extend(MAGIC.to_le_bytes());
        b.extend([1u8, 0]);
        b.extend(24u32.to_le_bytes());
        for v in [0, t.len() as u32, t.len() as u32, strings.len() as u32] {
            b.extend(v.to_le_bytes());
        }
        b.extend(t);
        b.extend(strings);
        b
    }

    #[test]
    fn split_ids_and_strings_continue_after_the_base() {
        // base: "\0int\0" with INT "int" (id 1) and a 2-member STRUCT (id 2)
        let base = blob(&[(1, 0, 1, 4), (4, 2, 0, 24)], b"\0int\0");
        // split strings start at base offset 5: "\0f\0g\0" -> "f" at 6, "g" at 8
        let split = blob(&[(13, 1, 0, 8), (12, 0, 6, 0), (12, 0, 8, 0), (1, 0, 1, 4)], b"\0f\0g\0");
        let names = func_names(&split, &base).unwrap();
        assert_eq!(names.into_iter().collect::<Vec<_>>(), vec![(4, "f".to_string()), (5, "g".to_string())]);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(func_names(b"nope", b"nope").is_err());
        let bad_kind = blob(&[(31, 0, 0, 0)], b"\0");
        assert!(func_names(&bad_kind, &blob(&[], b"\0")).unwrap_err().contains("kind 31"));
    }
}
