//! A copy of an object's `.BTF` that aya-obj 0.3 can read, with the same type ids (as libbpf
//! sanitizes BTF for a consumer that does not know a construct, `bpf_object__sanitize_btf()`).
//!
//! aya-obj reads a `.maps` definition's integer fields (`type`, `max_entries`, `map_extra`, ...)
//! only in the `__uint(name, val)` form, a pointer to an array of `val` elements, and refuses the
//! whole object otherwise ("BTF error"). libbpf also takes `__ulong(name, val)` (an enum, or enum64,
//! whose one value is `val`: `get_map_field_long()`), which the arena selftests use for
//! `map_extra` (the start of the arena's mmap region). The model does not use `map_extra` (only
//! the kernel's mmap and JIT do; the guest loads the original object through libbpf), so such a
//! member is hidden from aya-obj: its name offset is moved one byte into its own name
//! (`map_extra` -> `ap_extra`, a member aya-obj skips), which keeps every size, offset and id.

/// The `.maps` struct members aya-obj reads as `__uint` (`get_map_field`).
const AYA_INT_FIELDS: [&str; 7] =
    ["type", "key_size", "value_size", "max_entries", "map_flags", "map_extra", "pinning"];

/// A malformed `.BTF` met while sanitizing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("BTF: {0}")]
pub struct SanitizeError(String);

/// One type record: kind, its size/type word, and for a struct or union the byte position of each
/// member record (name offset, type) in the blob.
struct Rec {
    name_off: u32,
    kind: u32,
    size_type: u32,
    /// Array element type (kind 3).
    elem: u32,
    /// (position of the member record in the blob, name offset, type) of a struct/union, and
    /// (var type, ...) of a datasec.
    members: Vec<(usize, u32, u32)>,
}

/// The member names hidden from aya-obj in `btf` (a little-endian `.BTF` section, changed in
/// place): each `.maps` definition field that aya-obj reads as `__uint` but that is not in that
/// form. Empty when nothing needed hiding (then `btf` is unchanged).
pub fn hide_unreadable_map_fields(btf: &mut [u8]) -> Result<Vec<String>, SanitizeError> {
    let err = |s: &str| SanitizeError(s.to_string());
    let rd = |b: &[u8], o: usize| -> Result<u32, SanitizeError> {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
            .ok_or_else(|| err("truncated"))
    };
    if btf.len() < 24 || u16::from_le_bytes([btf[0], btf[1]]) != 0xeb9f {
        return Err(err("bad magic (big-endian or not BTF)"));
    }
    let hdr_len = rd(btf, 4)? as usize;
    let (type_off, type_len) = (hdr_len + rd(btf, 8)? as usize, rd(btf, 12)? as usize);
    let (str_off, str_len) = (hdr_len + rd(btf, 16)? as usize, rd(btf, 20)? as usize);
    let strs = btf.get(str_off..str_off + str_len).ok_or_else(|| err("string section out of range"))?;
    let name = |off: u32| -> &[u8] {
        let s = strs.get(off as usize..).unwrap_or(&[]);
        &s[..s.iter().position(|&c| c == 0).unwrap_or(s.len())]
    };
    let mut recs = vec![Rec { name_off: 0, kind: 0, size_type: 0, elem: 0, members: Vec::new() }];
    let end = type_off
        .checked_add(type_len)
        .filter(|&e| e <= btf.len())
        .ok_or_else(|| err("type section out of range"))?;
    let mut pos = type_off;
    while pos < end {
        let (name_off, info, size_type) = (rd(btf, pos)?, rd(btf, pos + 4)?, rd(btf, pos + 8)?);
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        pos += 12;
        let mut rec = Rec { name_off, kind, size_type, elem: 0, members: Vec::new() };
        match kind {
            1 | 14 | 17 => pos += 4,
            3 => {
                rec.elem = rd(btf, pos)?;
                pos += 12;
            }
            4 | 5 | 15 => {
                for i in 0..vlen {
                    let at = pos + 12 * i;
                    rec.members.push((at, rd(btf, at)?, rd(btf, at + 4)?));
                }
                pos += 12 * vlen;
            }
            6 | 13 => pos += 8 * vlen,
            19 => pos += 12 * vlen,
            2 | 7..=12 | 16 | 18 => {}
            k => return Err(SanitizeError(format!("unknown BTF kind {k}"))),
        }
        recs.push(rec);
    }
    if pos != end {
        return Err(err("truncated type section"));
    }
    // Typedef, volatile, const, restrict, type tag: followed to the type they qualify.
    let resolve = |mut id: u32| {
        for _ in 0..32 {
            match recs.get(id as usize) {
                Some(r) if matches!(r.kind, 8..=11 | 18) => id = r.size_type,
                _ => break,
            }
        }
        id
    };
    let is_ptr_to_array = |id: u32| {
        recs.get(id as usize).is_some_and(|r| r.kind == 2)
            && recs.get(recs[id as usize].size_type as usize).is_some_and(|a| a.kind == 3)
    };
    // The map definition structs: the `.maps` variables' types, and inner map structs (`values`).
    let mut defs: Vec<u32> = Vec::new();
    for r in recs.iter().filter(|r| r.kind == 15 && name(r.name_off) == b".maps") {
        for &(_, var, _) in &r.members {
            if let Some(v) = recs.get(var as usize).filter(|v| v.kind == 14) {
                defs.push(resolve(v.size_type));
            }
        }
    }
    let mut patches: Vec<(usize, u32)> = Vec::new();
    let mut hidden = Vec::new();
    let mut seen = Vec::new();
    while let Some(id) = defs.pop() {
        if seen.contains(&id) {
            continue;
        }
        seen.push(id);
        let Some(s) = recs.get(id as usize).filter(|s| s.kind == 4) else { continue };
        for &(at, n, ty) in &s.members {
            let field = name(n);
            if field == b"values" {
                // An array of pointers to the inner map's struct.
                let arr = resolve(ty);
                if let Some(a) = recs.get(arr as usize).filter(|a| a.kind == 3) {
                    if let Some(p) = recs.get(resolve(a.elem) as usize).filter(|p| p.kind == 2) {
                        defs.push(resolve(p.size_type));
                    }
                }
            } else if AYA_INT_FIELDS.iter().any(|f| f.as_bytes() == field) && !is_ptr_to_array(ty) {
                patches.push((at, n + 1));
                hidden.push(String::from_utf8_lossy(field).into_owned());
            }
        }
    }
    for (at, n) in patches {
        btf[at..at + 4].copy_from_slice(&n.to_le_bytes());
    }
    Ok(hidden)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A BTF blob: header, `types` (u32 words), strings.
    fn blob(types: &[u32], strs: &[u8]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [0x0001_eb9f_u32, 24, 0, 4 * types.len() as u32, 4 * types.len() as u32, strs.len() as u32] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        for w in types {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(strs);
        b
    }

    const STRS: &[u8] = b"\0int\0type\0map_extra\0arena\0.maps\0v\0";
    const INT: u32 = 1;
    const TYPE: u32 = 5;
    const MAP_EXTRA: u32 = 10;
    const ARENA: u32 = 20;
    const MAPS: u32 = 26;
    const V: u32 = 32;

    /// `struct { __uint(type, 33); __ulong(map_extra, 1 << 44); } arena SEC(".maps");`, as clang
    /// writes it (ids: 1 int, 2 array, 3 ptr, 4 enum64, 5 struct, 6 var, 7 datasec).
    fn arena_btf(map_extra_type: u32) -> Vec<u8> {
        let types = [
            INT,
            1 << 24,
            4,
            32, // [1] int
            0,
            3 << 24,
            0,
            INT,
            INT,
            33, // [2] int[33]
            0,
            2 << 24,
            2, // [3] ptr -> [2]
            0,
            (19 << 24) | 1,
            8,
            V,
            0,
            1 << 12, // [4] enum64 { v = 1 << 44 }
            0,
            (4 << 24) | 2,
            16,
            TYPE,
            3,
            0,
            MAP_EXTRA,
            map_extra_type,
            64, // [5] struct
            ARENA,
            14 << 24,
            5,
            1, // [6] var arena
            MAPS,
            (15 << 24) | 1,
            0,
            6,
            0,
            16, // [7] datasec .maps
        ];
        blob(&types, STRS)
    }

    #[test]
    fn an_enum64_map_extra_is_hidden_and_the_rest_kept() {
        let mut b = arena_btf(4);
        let before = b.clone();
        assert_eq!(hide_unreadable_map_fields(&mut b).unwrap(), vec!["map_extra".to_string()]);
        let diff: Vec<usize> = (0..b.len()).filter(|&i| b[i] != before[i]).collect();
        assert_eq!(diff.len(), 1, "only the low byte of one name offset changes");
        // The new name is `ap_extra`, inside the old one: the string section is unchanged.
        let p = diff[0];
        assert_eq!(u32::from_le_bytes(b[p..p + 4].try_into().unwrap()), MAP_EXTRA + 1);
        // Lockstep's own reader still sees the same types (ids, kinds) apart from that name.
        let (x, y) =
            (super::super::btf::Btf::parse(&before).unwrap(), super::super::btf::Btf::parse(&b).unwrap());
        assert_eq!(x.types.len(), y.types.len());
    }

    #[test]
    fn a_uint_map_extra_is_left_alone() {
        let mut b = arena_btf(3);
        let before = b.clone();
        assert!(hide_unreadable_map_fields(&mut b).unwrap().is_empty());
        assert_eq!(b, before);
    }

    #[test]
    fn a_malformed_blob_is_an_error() {
        assert!(hide_unreadable_map_fields(&mut [0u8; 8]).is_err());
        let mut b = arena_btf(4);
        b[12] += 4; // type_len past the strings
        b[16] += 4;
        assert!(hide_unreadable_map_fields(&mut b).is_err());
    }
}
