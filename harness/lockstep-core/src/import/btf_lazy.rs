//! A kernel's BTF, each type decoded the first time it is asked for. A vmlinux holds ~130k types
//! and the model reads only some of them in a run (kfunc prototypes, the structs programs walk,
//! attach functions): decoding all of them took 25-35 ms of CPU per kernel, and freeing them
//! about as much again, beside the guests of a parallel run (docs/speed.md, session 24).
//!
//! [`LazyBtf::parse`] checks the whole blob as the kernel's `btf_parse()` and [`Btf::parse`]
//! would reject it (header, sections, every type record, every name offset it decodes) and
//! notes where each type starts; [`LazyBtf::get`] decodes a type once and keeps it.
//!
//! [`Btf::parse`]: super::btf::Btf::parse

use std::ops::Range;
use std::sync::OnceLock;

use super::btf::{decode_type, sections, BtfError, BtfName, BtfType, BtfTypes, Kind, Reader, Strings};

/// BTF whose types are decoded on first use; type ids as in [`super::btf::Btf`] (0 is void).
pub struct LazyBtf {
    /// The bytes the BTF was read from (the raw blob, or a whole vmlinux ELF).
    bytes: Vec<u8>,
    /// The BTF blob within `bytes`.
    blob: Range<usize>,
    /// Its type and string sections within `bytes`.
    types: Range<usize>,
    strings: Range<usize>,
    /// Where each type's record starts in the type section, by id (id 0, void, has none).
    starts: Vec<u32>,
    /// Each type once decoded, by id.
    decoded: Vec<OnceLock<Box<BtfType>>>,
    void: BtfType,
}

impl std::fmt::Debug for LazyBtf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let decoded = self.decoded.iter().filter(|t| t.get().is_some()).count();
        f.debug_struct("LazyBtf")
            .field("types", &self.starts.len())
            .field("decoded", &decoded)
            .field("blob_bytes", &self.blob.len())
            .finish()
    }
}

impl LazyBtf {
    /// Checks and indexes the little-endian BTF at `blob` within `bytes` (all of them for raw
    /// BTF, the `.BTF` section for a vmlinux ELF).
    pub fn parse(bytes: Vec<u8>, blob: Range<usize>) -> Result<LazyBtf, BtfError> {
        let b = bytes.get(blob.clone()).ok_or_else(|| BtfError("BTF out of range".into()))?;
        let (types_b, strs) = sections(b)?;
        // As the kernel's btf_parse_str_sec() demands: then every offset inside the section
        // starts a name that ends.
        if strs.last() != Some(&0) {
            return Err(BtfError("string section does not end with NUL".into()));
        }
        let starts = index(types_b, strs.len())?;
        let (types, strings) = (within(&bytes, types_b), within(&bytes, strs));
        let decoded = std::iter::repeat_with(OnceLock::new).take(starts.len()).collect();
        let void = BtfType { name: BtfName::default(), kind: Kind::Void };
        Ok(LazyBtf { bytes, blob, types, strings, starts, decoded, void })
    }

    /// The type with id `id`, decoded now if it was not yet.
    pub fn get(&self, id: u32) -> Option<&BtfType> {
        if id == 0 {
            return Some(&self.void);
        }
        let cell = self.decoded.get(id as usize)?;
        Some(cell.get_or_init(|| Box::new(self.decode(id))))
    }

    fn decode(&self, id: u32) -> BtfType {
        let strings = Strings::Bytes(&self.bytes[self.strings.clone()]);
        let name = |off: u32| strings.lookup(off).unwrap_or_default();
        let mut r = Reader { b: &self.bytes[self.types.clone()], pos: self.starts[id as usize] as usize };
        // `parse` checked this record and the names it holds: decoding it cannot fail.
        decode_type(&mut r, &name).unwrap_or_else(|_| self.void.clone())
    }

    /// The number of types, void included.
    pub fn count(&self) -> u32 {
        self.starts.len() as u32
    }

    /// Calls `f` with the id and name of every named type, in id order, decoding none.
    pub fn for_each_name(&self, mut f: impl FnMut(u32, &str)) {
        let types = &self.bytes[self.types.clone()];
        let strings = Strings::new(&self.bytes[self.strings.clone()]);
        for (id, &at) in self.starts.iter().enumerate().skip(1) {
            let off = word(types, at as usize).unwrap_or(0);
            if let Ok(name) = strings.borrow(off) {
                if !name.is_empty() {
                    f(id as u32, &name);
                }
            }
        }
    }

    /// The BTF blob (raw BTF, as a vmlinux's `.BTF` section holds it).
    pub fn blob(&self) -> &[u8] {
        &self.bytes[self.blob.clone()]
    }

    /// All the bytes the BTF was read from (a vmlinux ELF's other sections too).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl BtfTypes for LazyBtf {
    fn type_of(&self, id: u32) -> Option<&BtfType> {
        self.get(id)
    }
}

/// Where `inner`, a slice of `outer`, lies in it.
fn within(outer: &[u8], inner: &[u8]) -> Range<usize> {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    start..start + inner.len()
}

fn word(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")))
}

/// Walks the type section: where each record starts (index = id, 0 for void), every record and
/// every name offset [`decode_type`] reads checked (the errors are [`super::btf::Btf::parse`]'s).
fn index(types: &[u8], strings_len: usize) -> Result<Vec<u32>, BtfError> {
    let truncated = || BtfError("truncated type section".into());
    let name = |off: u32| {
        if (off as usize) < strings_len {
            Ok(())
        } else {
            Err(BtfError(format!("name offset {off} outside the string section")))
        }
    };
    let mut starts = vec![0u32];
    let mut at = 0usize;
    while at < types.len() {
        let (Some(name_off), Some(info), Some(_)) =
            (word(types, at), word(types, at + 4), word(types, at + 8))
        else {
            return Err(truncated());
        };
        name(name_off)?;
        let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
        let len = crate::btf::trailing(kind, vlen).map_err(BtfError)?;
        // The stride of the records whose first word is a name decode_type() reads.
        let named_every = match kind {
            4 | 5 => Some(12), // members
            13 => Some(8),     // parameters
            _ => None,
        };
        let body = at + 12;
        if types.len() < body + len {
            return Err(truncated());
        }
        if let Some(stride) = named_every {
            for rec in (body..body + len).step_by(stride) {
                name(word(types, rec).ok_or_else(truncated)?)?;
            }
        }
        starts.push(u32::try_from(at).map_err(|_| truncated())?);
        at = body + len;
    }
    Ok(starts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::btf::Btf;

    fn sample() -> Vec<u8> {
        crate::kernel_btf::fixture::sample()
    }

    #[test]
    fn every_type_decodes_as_the_whole_parse_gives_it() {
        let b = sample();
        let all = Btf::parse(&b).unwrap();
        let lazy = LazyBtf::parse(b.clone(), 0..b.len()).unwrap();
        assert_eq!(lazy.count() as usize, all.types.len());
        // Backwards, so that no type is decoded in the order the walk met it.
        for id in (0..lazy.count()).rev() {
            assert_eq!(lazy.get(id), all.get(id), "type {id}");
        }
        assert_eq!(lazy.get(lazy.count()), None);
        let mut names = Vec::new();
        lazy.for_each_name(|id, n| names.push((id, n.to_string())));
        let want: Vec<_> = (0..all.types.len() as u32)
            .filter_map(|id| Some((id, all.get(id)?.name.to_string())).filter(|(_, n)| !n.is_empty()))
            .collect();
        assert_eq!(names, want);
    }

    #[test]
    fn a_blob_inside_other_bytes_is_read_where_it_lies() {
        let b = sample();
        let mut elf_like = vec![0xaa; 100];
        elf_like.extend_from_slice(&b);
        elf_like.extend_from_slice(&[0x55; 37]);
        let lazy = LazyBtf::parse(elf_like, 100..100 + b.len()).unwrap();
        assert_eq!(lazy.blob(), &b[..]);
        assert_eq!(lazy.bytes().len(), 100 + b.len() + 37);
        let all = Btf::parse(&b).unwrap();
        assert_eq!(lazy.get(lazy.count() - 1), all.get(lazy.count() - 1));
        assert!(LazyBtf::parse(b.clone(), 0..b.len() + 1).is_err());
    }

    /// Where the type section starts, its length, and where the string section ends.
    fn section_sizes(b: &[u8]) -> (usize, usize, usize) {
        let w = |at: usize| word(b, at).unwrap() as usize;
        (w(4) + w(8), w(12), w(4) + w(16) + w(20))
    }

    #[test]
    fn rejects_what_the_whole_parse_rejects() {
        let b = sample();
        let (types_at, types_len, strings_end) = section_sizes(&b);
        let both_fail = |bad: Vec<u8>, why: &str| {
            let lazy = LazyBtf::parse(bad.clone(), 0..bad.len()).expect_err(why);
            let all = Btf::parse(&bad).expect_err(why);
            assert_eq!(lazy, all, "{why}");
        };
        let mut bad = b.clone();
        bad[0] = 0;
        both_fail(bad, "bad magic");
        // The first type's kind made unknown (kind 31).
        let mut bad = b.clone();
        bad[types_at + 7] |= 0x1f;
        both_fail(bad, "unknown kind");
        // The first type's name offset past the strings.
        let mut bad = b.clone();
        bad[types_at..types_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        both_fail(bad, "name offset");
        // The type section cut short by its header: the last record runs past it.
        let mut bad = b.clone();
        bad[12..16].copy_from_slice(&((types_len - 4) as u32).to_le_bytes());
        both_fail(bad, "truncated");
        // A string section without its final NUL (the kernel refuses it too).
        let mut bad = b.clone();
        assert_eq!(bad[strings_end - 1], 0);
        bad[strings_end - 1] = b'x';
        let e = LazyBtf::parse(bad.clone(), 0..bad.len()).expect_err("no final NUL");
        assert!(e.0.contains("NUL"), "{e}");
    }

    #[test]
    fn a_member_name_offset_past_the_strings_is_refused_before_any_decode() {
        let b = sample();
        let all = Btf::parse(&b).unwrap();
        let (types_at, _, _) = section_sizes(&b);
        // The first struct with a member: its first member's name offset set past the strings.
        let mut at = types_at;
        let mut target = None;
        for t in all.types.iter().skip(1) {
            let info = word(&b, at + 4).unwrap();
            let vlen = (info & 0xffff) as usize;
            if matches!(t.kind, Kind::Struct { .. }) && vlen > 0 {
                target = Some(at + 12);
                break;
            }
            at += 12 + crate::btf::trailing((info >> 24) & 0x1f, vlen).unwrap();
        }
        let mut bad = b.clone();
        bad[target.expect("the sample has a struct with members")..][..4]
            .copy_from_slice(&u32::MAX.to_le_bytes());
        let lazy = LazyBtf::parse(bad.clone(), 0..bad.len()).expect_err("member name");
        assert_eq!(lazy, Btf::parse(&bad).expect_err("member name"));
    }
}
