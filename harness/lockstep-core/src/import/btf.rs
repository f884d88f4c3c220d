//! A reader for raw BTF (the `.BTF` section; `include/uapi/linux/btf.h`): the types lockstep
//! needs from an object (struct layouts, functions and their linkage, data sections, decl tags).
//! aya-obj 0.3 parses BTF but keeps the type internals private, so the bytes are read here.

use super::ctypes::{CType, Member};

/// A name in BTF: inline up to 24 bytes, so parsing vmlinux's ~127k types and their members and
/// parameters does not allocate once per name (nor free once per name when the BTF is dropped).
pub type BtfName = compact_str::CompactString;

/// A BTF kind with the data lockstep uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Void,
    Int {
        size: u32,
        signed: bool,
    },
    /// A pointer to type `to`.
    Ptr {
        to: u32,
    },
    Array {
        elem: u32,
        nelems: u32,
    },
    Struct {
        size: u32,
        members: Vec<BtfMember>,
    },
    Union {
        size: u32,
        members: Vec<BtfMember>,
    },
    Enum {
        size: u32,
    },
    Fwd,
    /// Typedef, volatile, const, restrict: a reference to another type.
    Modifier(u32),
    /// A type tag (`__attribute__((btf_type_tag("kptr")))`; the tag is the type's name) on `u32`.
    TypeTag(u32),
    Func {
        proto: u32,
        global: bool,
    },
    FuncProto {
        ret: u32,
        params: Vec<u32>,
        /// The parameters' names (empty strings where BTF has none).
        names: Vec<BtfName>,
    },
    Var {
        ty: u32,
    },
    Datasec {
        entries: Vec<(u32, u32, u32)>,
    },
    Float {
        size: u32,
    },
    DeclTag {
        target: u32,
        component: i32,
    },
}

/// A struct or union member: name, type, bit offset, bit-field size (0: not a bit-field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtfMember {
    pub name: BtfName,
    pub ty: u32,
    pub bit_offset: u32,
    pub bit_size: u32,
}

/// One type: its name and kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtfType {
    pub name: BtfName,
    pub kind: Kind,
}

/// Parsed BTF; type ids index `types` (id 0 is void).
#[derive(Clone, Debug, Default)]
pub struct Btf {
    pub types: Vec<BtfType>,
}

/// A malformed BTF blob.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("BTF: {0}")]
pub struct BtfError(pub String);

/// A position in a type section.
pub(super) struct Reader<'a> {
    pub(super) b: &'a [u8],
    pub(super) pos: usize,
}

impl Reader<'_> {
    pub(super) fn u32(&mut self) -> Result<u32, BtfError> {
        let s =
            self.b.get(self.pos..self.pos + 4).ok_or_else(|| BtfError("truncated type section".into()))?;
        self.pos += 4;
        Ok(u32::from_le_bytes(s.try_into().expect("4 bytes")))
    }
}

/// The type and string sections of a BTF blob.
pub(super) fn sections(b: &[u8]) -> Result<(&[u8], &[u8]), BtfError> {
    let h = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_le_bytes(s.try_into().expect("4 bytes")))
            .ok_or_else(|| BtfError("truncated header".into()))
    };
    if b.len() < 24 || u16::from_le_bytes([b[0], b[1]]) != 0xeb9f {
        return Err(BtfError("bad magic (big-endian or not BTF)".into()));
    }
    let hdr_len = h(4)? as usize;
    let (type_off, type_len, str_off, str_len) =
        (h(8)? as usize, h(12)? as usize, h(16)? as usize, h(20)? as usize);
    let types_b = b
        .get(hdr_len + type_off..hdr_len + type_off + type_len)
        .ok_or_else(|| BtfError("type section out of range".into()))?;
    let strs = b
        .get(hdr_len + str_off..hdr_len + str_off + str_len)
        .ok_or_else(|| BtfError("string section out of range".into()))?;
    Ok((types_b, strs))
}

/// A string section, checked as UTF-8 once (kernel BTF's are ASCII) rather than name by name.
#[derive(Clone, Copy)]
pub(super) enum Strings<'a> {
    Text(&'a str),
    /// Not UTF-8 as a whole: each name is converted on its own, lossily.
    Bytes(&'a [u8]),
}

impl<'a> Strings<'a> {
    pub(super) fn new(b: &'a [u8]) -> Strings<'a> {
        std::str::from_utf8(b).map_or(Strings::Bytes(b), Strings::Text)
    }

    fn len(&self) -> usize {
        match self {
            Strings::Text(t) => t.len(),
            Strings::Bytes(b) => b.len(),
        }
    }

    /// The string at `off` (Err: the offset is outside the section or its string has no end,
    /// which makes the BTF invalid; aya-obj panics on one).
    pub(super) fn lookup(&self, off: u32) -> Result<BtfName, u32> {
        self.borrow(off).map(BtfName::from)
    }

    /// [`Strings::lookup`] without a copy where the name is UTF-8.
    pub(super) fn borrow(&self, off: u32) -> Result<std::borrow::Cow<'a, str>, u32> {
        let bytes = match *self {
            Strings::Text(t) => match t.get(off as usize..) {
                Some(s) => return s.find('\0').map(|end| std::borrow::Cow::Borrowed(&s[..end])).ok_or(off),
                // Inside a character: not a name's start, read as bytes below.
                None => t.as_bytes(),
            },
            Strings::Bytes(b) => b,
        };
        let s = bytes.get(off as usize..).ok_or(off)?;
        let end = s.iter().position(|&c| c == 0).ok_or(off)?;
        Ok(String::from_utf8_lossy(&s[..end]))
    }
}

/// Parses the types of `types_b` onto `types`, naming them through `name`.
fn parse_types(
    types_b: &[u8],
    name: &dyn Fn(u32) -> Result<BtfName, u32>,
    types: &mut Vec<BtfType>,
) -> Result<(), BtfError> {
    let bad_name: std::cell::Cell<Option<u32>> = std::cell::Cell::new(None);
    let name = |off: u32| -> BtfName {
        name(off).unwrap_or_else(|off| {
            bad_name.set(Some(off));
            BtfName::default()
        })
    };
    let mut r = Reader { b: types_b, pos: 0 };
    while r.pos < types_b.len() {
        types.push(decode_type(&mut r, &name)?);
    }
    if let Some(off) = bad_name.get() {
        return Err(BtfError(format!("name offset {off} outside the string section")));
    }
    Ok(())
}

/// Decodes the type record at `r`'s position (leaving `r` after it), naming it through `name`.
pub(super) fn decode_type(r: &mut Reader<'_>, name: &dyn Fn(u32) -> BtfName) -> Result<BtfType, BtfError> {
    let name_off = r.u32()?;
    let info = r.u32()?;
    let size_type = r.u32()?;
    let vlen = info & 0xffff;
    let kflag = info >> 31 == 1;
    let kind = match (info >> 24) & 0x1f {
        1 => {
            let extra = r.u32()?;
            Kind::Int { size: size_type, signed: (extra >> 24) & 1 == 1 }
        }
        2 => Kind::Ptr { to: size_type },
        3 => {
            let elem = r.u32()?;
            let _index = r.u32()?;
            Kind::Array { elem, nelems: r.u32()? }
        }
        k @ (4 | 5) => {
            let mut members = Vec::new();
            for _ in 0..vlen {
                let n = r.u32()?;
                let ty = r.u32()?;
                let off = r.u32()?;
                let (bit_offset, bit_size) = if kflag { (off & 0xff_ffff, off >> 24) } else { (off, 0) };
                members.push(BtfMember { name: name(n), ty, bit_offset, bit_size });
            }
            if k == 4 {
                Kind::Struct { size: size_type, members }
            } else {
                Kind::Union { size: size_type, members }
            }
        }
        6 => {
            r.pos += 8 * vlen as usize;
            Kind::Enum { size: size_type }
        }
        7 => Kind::Fwd,
        8..=11 => Kind::Modifier(size_type),
        18 => Kind::TypeTag(size_type),
        12 => Kind::Func { proto: size_type, global: vlen == 1 },
        13 => {
            let mut params = Vec::new();
            let mut names = Vec::new();
            for _ in 0..vlen {
                names.push(name(r.u32()?));
                params.push(r.u32()?);
            }
            Kind::FuncProto { ret: size_type, params, names }
        }
        14 => {
            let _linkage = r.u32()?;
            Kind::Var { ty: size_type }
        }
        15 => {
            let mut entries = Vec::new();
            for _ in 0..vlen {
                entries.push((r.u32()?, r.u32()?, r.u32()?));
            }
            Kind::Datasec { entries }
        }
        16 => Kind::Float { size: size_type },
        17 => Kind::DeclTag { target: size_type, component: r.u32()? as i32 },
        19 => {
            r.pos += 12 * vlen as usize;
            Kind::Enum { size: size_type }
        }
        k => return Err(BtfError(format!("unknown BTF kind {k}"))),
    };
    Ok(BtfType { name: name(name_off), kind })
}

/// Types by id, whether all parsed at once ([`Btf`]) or each on first use
/// ([`super::btf_lazy::LazyBtf`], a kernel's BTF).
pub trait BtfTypes {
    /// The type with id `id`.
    fn type_of(&self, id: u32) -> Option<&BtfType>;

    /// Follows typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.type_of(id).map(|t| &t.kind) {
                Some(Kind::Modifier(t) | Kind::TypeTag(t)) => id = *t,
                _ => break,
            }
        }
        id
    }

    /// Type `id` as libbpf's `__bpf_core_types_are_compat()` compares it: modifiers and typedefs
    /// skipped, kinds compared (enum and enum64 alike), pointers, arrays and function prototypes
    /// followed, names ignored. Two types are compatible exactly when their shapes are equal.
    fn compat_shape(&self, id: u32) -> String {
        shape_at(self, id, 0)
    }
}

fn shape_at<B: BtfTypes + ?Sized>(btf: &B, id: u32, depth: u32) -> String {
    if depth > 32 {
        return "deep".into();
    }
    let id = btf.resolve(id);
    match btf.type_of(id).map(|t| &t.kind) {
        None => format!("bad{id}"),
        Some(Kind::Void) => "void".into(),
        Some(Kind::Int { .. }) => "int".into(),
        Some(Kind::Ptr { to }) => format!("ptr({})", shape_at(btf, *to, depth + 1)),
        Some(Kind::Array { elem, .. }) => format!("array({})", shape_at(btf, *elem, depth + 1)),
        Some(Kind::Struct { .. }) => "struct".into(),
        Some(Kind::Union { .. }) => "union".into(),
        Some(Kind::Enum { .. }) => "enum".into(),
        Some(Kind::Fwd) => "fwd".into(),
        Some(Kind::Float { .. }) => "float".into(),
        Some(Kind::FuncProto { ret, params, .. }) => {
            let ps: Vec<String> = params.iter().map(|p| shape_at(btf, *p, depth + 1)).collect();
            format!("proto({};{})", shape_at(btf, *ret, depth + 1), ps.join(","))
        }
        Some(k) => format!("{k:?}"),
    }
}

impl BtfTypes for Btf {
    fn type_of(&self, id: u32) -> Option<&BtfType> {
        self.get(id)
    }
}

impl Btf {
    /// Parses little-endian BTF.
    pub fn parse(b: &[u8]) -> Result<Btf, BtfError> {
        let (types_b, strs) = sections(b)?;
        let mut types = vec![BtfType { name: BtfName::default(), kind: Kind::Void }];
        let strs = Strings::new(strs);
        parse_types(types_b, &|off| strs.lookup(off), &mut types)?;
        Ok(Btf { types })
    }

    /// Parses split BTF (a module's `.BTF`) on top of its `base` (the module's `.BTF.base` or the
    /// kernel's vmlinux `.BTF`), as `btf_parse_module()` does: the split's type ids continue after
    /// the base's, its name offsets past the base's string section name its own strings. Returns
    /// the combined types (base first) and the number of base types (void included).
    pub fn parse_split(split: &[u8], base: &[u8]) -> Result<(Btf, u32), BtfError> {
        let (base_types_b, base_strs) = sections(base)?;
        let mut types = vec![BtfType { name: BtfName::default(), kind: Kind::Void }];
        let base_strs = Strings::new(base_strs);
        parse_types(base_types_b, &|off| base_strs.lookup(off), &mut types)?;
        let base_count = types.len() as u32;
        let (types_b, strs) = sections(split)?;
        let blen = base_strs.len() as u32;
        let strs = Strings::new(strs);
        let name = |off: u32| if off < blen { base_strs.lookup(off) } else { strs.lookup(off - blen) };
        parse_types(types_b, &name, &mut types)?;
        Ok((Btf { types }, base_count))
    }

    /// The type with id `id`.
    pub fn get(&self, id: u32) -> Option<&BtfType> {
        self.types.get(id as usize)
    }

    /// The id of the `FUNC` named `name`.
    pub fn func(&self, name: &str) -> Option<u32> {
        self.types
            .iter()
            .position(|t| t.name == name && matches!(t.kind, Kind::Func { .. }))
            .map(|i| i as u32)
    }

    /// The id of the `DATASEC` named `name`.
    pub fn datasec(&self, name: &str) -> Option<u32> {
        self.types
            .iter()
            .position(|t| t.name == name && matches!(t.kind, Kind::Datasec { .. }))
            .map(|i| i as u32)
    }

    /// The decl tags on type `id` itself (component -1), in order.
    pub fn decl_tags(&self, id: u32) -> Vec<&str> {
        self.types
            .iter()
            .filter(|t| matches!(t.kind, Kind::DeclTag { target, component: -1 } if target == id))
            .map(|t| t.name.as_str())
            .collect()
    }

    /// The decl tags on member `component` of struct `id` (or on a `VAR` with component -1), in order.
    pub fn member_decl_tags(&self, id: u32, component: i32) -> Vec<&str> {
        self.types
            .iter()
            .filter(|t| matches!(t.kind, Kind::DeclTag { target, component: c } if target == id && c == component))
            .map(|t| t.name.as_str())
            .collect()
    }

    /// The id of the struct named `name`, if the BTF has one.
    pub fn struct_named(&self, name: &str) -> Option<u32> {
        self.types
            .iter()
            .position(|t| t.name == name && matches!(t.kind, Kind::Struct { .. }))
            .map(|i| i as u32)
    }

    /// The C type of `id` (sizes and member offsets as BTF gives them).
    pub fn ctype(&self, id: u32) -> Result<CType, BtfError> {
        self.ctype_depth(id, 0)
    }

    fn ctype_depth(&self, id: u32, depth: u32) -> Result<CType, BtfError> {
        if depth > 32 {
            return Err(BtfError("type nesting too deep".into()));
        }
        let id = self.resolve(id);
        let t = self.get(id).ok_or_else(|| BtfError(format!("no type {id}")))?;
        Ok(match &t.kind {
            Kind::Int { size, signed } => CType::Int { size: *size as u64, signed: *signed },
            Kind::Enum { size } | Kind::Float { size } => CType::Int { size: *size as u64, signed: false },
            Kind::Ptr { .. } => CType::Ptr,
            Kind::Array { elem, nelems } => {
                CType::Array { elem: Box::new(self.ctype_depth(*elem, depth + 1)?), len: *nelems as u64 }
            }
            Kind::Struct { size, members } | Kind::Union { size, members } => {
                let mut ms = Vec::new();
                let mut align = 1;
                for m in members {
                    let ty = self.ctype_depth(m.ty, depth + 1)?;
                    align = align.max(ty.align());
                    let bits = (m.bit_size != 0 || m.bit_offset % 8 != 0).then_some(m.bit_size as u64);
                    ms.push(Member {
                        name: (!m.name.is_empty()).then(|| m.name.to_string()),
                        offset: (m.bit_offset / 8) as u64,
                        ty,
                        bits,
                    });
                }
                CType::Record {
                    name: (!t.name.is_empty()).then(|| t.name.to_string()),
                    size: *size as u64,
                    align,
                    members: ms,
                }
            }
            other => return Err(BtfError(format!("type {id} ({other:?}) has no layout"))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds BTF bytes from (name, info, size_type, extra words) records.
    fn blob(types: &[(&str, u32, u32, &[u32])]) -> Vec<u8> {
        let mut strs = vec![0u8];
        let mut tb = Vec::new();
        for (name, info, st, extra) in types {
            let off = if name.is_empty() {
                0
            } else {
                let o = strs.len() as u32;
                strs.extend_from_slice(name.as_bytes());
                strs.push(0);
                o
            };
            for w in [off, *info, *st].iter().chain(extra.iter()) {
                tb.extend_from_slice(&w.to_le_bytes());
            }
        }
        let mut b = Vec::new();
        for w in [0xeb9fu16 as u32 | (1 << 16), 24, 0, tb.len() as u32, tb.len() as u32, strs.len() as u32] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        // magic+version+flags share the first word: 0xeb9f, version 1, flags 0
        b[0..4].copy_from_slice(&[0x9f, 0xeb, 1, 0]);
        b.extend(tb);
        b.extend(strs);
        b
    }

    #[test]
    fn struct_with_lock_and_decl_tags() {
        // 1: int, 2: __u32 (unsigned int), 3: struct bpf_spin_lock { __u32 val; },
        // 4: struct val { int cnt; struct bpf_spin_lock l; }, 5: FUNC_PROTO, 6: FUNC f (global),
        // 7: decl tag on 6
        let b = blob(&[
            ("int", 1 << 24, 4, &[(1 << 24) | 32]),
            ("unsigned int", 1 << 24, 4, &[32]),
            ("bpf_spin_lock", (4 << 24) | 1, 4, &[0, 2, 0]),
            ("val", (4 << 24) | 2, 8, &[0, 1, 0, 0, 3, 32]),
            ("", 13 << 24, 1, &[]),
            ("f", (12 << 24) | 1, 5, &[]),
            ("comment:0:test_expect_failure", 17 << 24, 6, &[u32::MAX]),
        ]);
        // member names are offsets into the string table; fix them up by name lookup instead:
        let btf = Btf::parse(&b).unwrap();
        assert_eq!(btf.types.len(), 8);
        assert_eq!(btf.func("f"), Some(6));
        assert!(matches!(btf.get(6).unwrap().kind, Kind::Func { global: true, .. }));
        assert_eq!(btf.decl_tags(6), vec!["comment:0:test_expect_failure"]);
        let CType::Record { size, members, .. } = btf.ctype(4).unwrap() else { panic!() };
        assert_eq!(size, 8);
        assert_eq!(members[1].offset, 4);
        assert_eq!(members[1].ty.record_name(), Some("bpf_spin_lock"));
        assert_eq!(members[0].ty, CType::Int { size: 4, signed: true });
    }

    #[test]
    fn rejects_bad_magic() {
        assert!(Btf::parse(&[0u8; 24]).is_err());
    }
}
