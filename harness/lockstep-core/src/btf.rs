//! A minimal raw-BTF reader (include/uapi/linux/btf.h): enough to walk the type section, count
//! types, name the `BTF_KIND_FUNC` types of a (split) BTF and find the functions carrying a
//! `BTF_KIND_DECL_TAG` (pahole's `bpf_kfunc` tag marks kfuncs). Pure: takes bytes.

use std::collections::BTreeMap;

const MAGIC: u16 = 0xeb9f;
const KIND_FUNC: u32 = 12;
const KIND_DECL_TAG: u32 = 17;

/// The decl tag pahole (1.26+, `--btf_features=decl_tag_kfuncs`) puts on every function of a
/// kernel kfunc id set (`BTF_KFUNCS_START`).
pub const KFUNC_TAG: &str = "bpf_kfunc";

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
    let types =
        btf.get(hdr_len + type_off..hdr_len + type_off + type_len).ok_or("type section out of range")?;
    let strings =
        btf.get(hdr_len + str_off..hdr_len + str_off + str_len).ok_or("string section out of range")?;
    Ok(Raw { types, strings })
}

/// Bytes that follow the 12-byte `struct btf_type` for a type of `kind` with `vlen` members.
pub(crate) fn trailing(kind: u32, vlen: usize) -> Result<usize, String> {
    Ok(match kind {
        1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
        2 | 7..=12 | 16 | 18 => 0,    // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
        3 => 12,                      // ARRAY
        4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
        6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
        k => return Err(format!("unknown BTF kind {k}")),
    })
}

/// One type record: its kind, name offset, the `size`/`type` word, and the bytes that follow
/// the 12-byte `struct btf_type`.
#[derive(Debug)]
struct TypeRec<'a> {
    kind: u32,
    name_off: u32,
    size_or_type: u32,
    extra: &'a [u8],
}

/// Walks the types in id order (the first is id 1 of this blob).
fn walk<'a>(raw: &Raw<'a>) -> Result<Vec<TypeRec<'a>>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < raw.types.len() {
        let (Some(name_off), Some(info), Some(size_or_type)) =
            (u32_at(raw.types, at), u32_at(raw.types, at + 4), u32_at(raw.types, at + 8))
        else {
            return Err("truncated type".into());
        };
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let len = trailing(kind, vlen)?;
        let extra = raw.types.get(at + 12..at + 12 + len).ok_or("truncated type")?;
        at += 12 + len;
        out.push(TypeRec { kind, name_off, size_or_type, extra });
    }
    Ok(out)
}

fn string(strings: &[u8], off: usize) -> Option<String> {
    let s = strings.get(off..)?;
    let end = s.iter().position(|&b| b == 0)?;
    String::from_utf8(s[..end].to_vec()).ok()
}

/// A parsed BTF, possibly split on top of a base: names resolve across both.
struct Blob<'a> {
    base_strings: &'a [u8],
    /// Number of types of the base (0 without one): this blob's first id is `first_id`.
    first_id: u32,
    strings: &'a [u8],
    types: Vec<TypeRec<'a>>,
}

impl<'a> Blob<'a> {
    fn new(btf: &'a [u8], base: Option<&'a [u8]>) -> Result<Blob<'a>, String> {
        let (base_strings, first_id) = match base {
            Some(b) => {
                let raw = parse(b)?;
                (raw.strings, walk(&raw)?.len() as u32 + 1)
            }
            None => (&[][..], 1),
        };
        let raw = parse(btf)?;
        Ok(Blob { base_strings, first_id, strings: raw.strings, types: walk(&raw)? })
    }

    /// A name: split string offsets continue after the base's strings.
    fn name(&self, off: u32) -> Option<String> {
        let off = off as usize;
        if off < self.base_strings.len() {
            string(self.base_strings, off)
        } else {
            string(self.strings, off - self.base_strings.len())
        }
    }

    /// The record of type `id`, if it belongs to this blob (not to the base).
    fn get(&self, id: u32) -> Option<&TypeRec<'a>> {
        self.types.get(id.checked_sub(self.first_id)? as usize)
    }

    fn funcs(&self) -> BTreeMap<u32, String> {
        let mut out = BTreeMap::new();
        for (i, t) in self.types.iter().enumerate() {
            if t.kind == KIND_FUNC {
                if let Some(n) = self.name(t.name_off) {
                    out.insert(self.first_id + i as u32, n);
                }
            }
        }
        out
    }
}

/// The function types of `split` (a split BTF on top of `base`), by type id. Split ids continue
/// after the base's (id 0 is `void`); split string offsets continue after the base's strings.
pub fn func_names(split: &[u8], base: &[u8]) -> Result<BTreeMap<u32, String>, String> {
    Ok(Blob::new(split, Some(base))?.funcs())
}

/// The function types of a BTF (`base`: its base when it is split, e.g. module BTF on vmlinux).
pub fn funcs(btf: &[u8], base: Option<&[u8]>) -> Result<BTreeMap<u32, String>, String> {
    Ok(Blob::new(btf, base)?.funcs())
}

/// The functions of `btf` that carry a decl tag named `tag` on the function itself
/// (`component_idx == -1`), by type id. With [`KFUNC_TAG`] these are the kernel's kfuncs.
/// `base`: the base BTF when `btf` is split (module BTF on top of vmlinux).
pub fn tagged_funcs(btf: &[u8], base: Option<&[u8]>, tag: &str) -> Result<BTreeMap<u32, String>, String> {
    Ok(scan_tagged(btf, base, tag)?.1)
}

/// [`tagged_funcs`] with the number of functions of `btf` (one parse).
pub fn scan_tagged(
    btf: &[u8],
    base: Option<&[u8]>,
    tag: &str,
) -> Result<(usize, BTreeMap<u32, String>), String> {
    let blob = Blob::new(btf, base)?;
    let nfuncs = blob.types.iter().filter(|t| t.kind == KIND_FUNC).count();
    let mut out = BTreeMap::new();
    for t in blob.types.iter().filter(|t| t.kind == KIND_DECL_TAG) {
        let component = t.extra.get(0..4).map(|b| i32::from_le_bytes(b.try_into().expect("4 bytes")));
        if component != Some(-1) || blob.name(t.name_off).as_deref() != Some(tag) {
            continue;
        }
        let target = t.size_or_type;
        if let Some(f) = blob.get(target).filter(|f| f.kind == KIND_FUNC) {
            if let Some(n) = blob.name(f.name_off) {
                out.insert(target, n);
            }
        }
    }
    Ok((nfuncs, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A raw BTF blob from `(name_off, info, size/type word, trailing bytes)` types and a string
    /// section.
    fn raw(types: impl IntoIterator<Item = (u32, u32, u32, Vec<u8>)>, strings: &[u8]) -> Vec<u8> {
        let mut t = Vec::new();
        for (name, info, size_or_type, extra) in types {
            t.extend(name.to_le_bytes());
            t.extend(info.to_le_bytes());
            t.extend(size_or_type.to_le_bytes());
            t.extend(extra);
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

    /// A raw BTF blob from (kind, vlen, name_off, trailing byte count) types.
    fn blob(types: &[(u32, u32, u32, usize)], strings: &[u8]) -> Vec<u8> {
        raw(
            types.iter().map(|&(kind, vlen, name, extra)| (name, (kind << 24) | vlen, 0, vec![0u8; extra])),
            strings,
        )
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

    /// A raw BTF blob from (kind, name_off, size/type word, trailing bytes) types.
    fn blob_with(types: &[(u32, u32, u32, Vec<u8>)], strings: &[u8]) -> Vec<u8> {
        raw(
            types
                .iter()
                .map(|(kind, name, size_or_type, extra)| (*name, kind << 24, *size_or_type, extra.clone())),
            strings,
        )
    }

    #[test]
    fn only_functions_tagged_on_themselves_with_the_kfunc_tag_are_kfuncs() {
        // "\0f\0g\0h\0bpf_kfunc\0other\0": f=1 g=3 h=5 bpf_kfunc=7 other=17
        let strings = b"\0f\0g\0h\0bpf_kfunc\0other\0";
        let minus1 = (-1i32).to_le_bytes().to_vec();
        let types = [
            (13, 0, 0, vec![]),                      // 1: FUNC_PROTO
            (12, 1, 1, vec![]),                      // 2: FUNC f
            (12, 3, 1, vec![]),                      // 3: FUNC g
            (12, 5, 1, vec![]),                      // 4: FUNC h
            (17, 7, 2, minus1.clone()),              // 5: DECL_TAG bpf_kfunc -> f
            (17, 7, 3, 0i32.to_le_bytes().to_vec()), // 6: bpf_kfunc on g's first parameter: not g
            (17, 17, 4, minus1.clone()),             // 7: DECL_TAG other -> h
            (17, 7, 1, minus1),                      // 8: bpf_kfunc on a non-function: ignored
        ];
        let b = blob_with(&types, strings);
        let k = tagged_funcs(&b, None, KFUNC_TAG).unwrap();
        assert_eq!(k.into_iter().collect::<Vec<_>>(), vec![(2, "f".to_string())]);
        assert_eq!(funcs(&b, None).unwrap().len(), 3);
        assert_eq!(
            scan_tagged(&b, None, "other").unwrap(),
            (3, [(4, "h".to_string())].into_iter().collect())
        );
    }

    #[test]
    fn kfunc_tags_of_a_split_btf_name_split_functions() {
        // base: INT "int" (id 1); split: FUNC "k" (id 2), DECL_TAG bpf_kfunc -> 2 (id 3)
        let base = blob(&[(1, 0, 1, 4)], b"\0int\0");
        // split strings start at base offset 5: "\0k\0bpf_kfunc\0" -> "k" at 6, "bpf_kfunc" at 8
        let split =
            blob_with(&[(12, 6, 0, vec![]), (17, 8, 2, (-1i32).to_le_bytes().to_vec())], b"\0k\0bpf_kfunc\0");
        let k = tagged_funcs(&split, Some(&base), KFUNC_TAG).unwrap();
        assert_eq!(k.into_iter().collect::<Vec<_>>(), vec![(2, "k".to_string())]);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(func_names(b"nope", b"nope").is_err());
        let bad_kind = blob(&[(31, 0, 0, 0)], b"\0");
        assert!(func_names(&bad_kind, &blob(&[], b"\0")).unwrap_err().contains("kind 31"));
    }
}
