//! C types and their x86-64 / BPF layout (sizes, alignment, struct member offsets, bit-fields as
//! the SysV ABI packs them), and integer constant expressions (`offsetof`, `sizeof`, macros, enum
//! constants) as they appear in `__imm_const(...)` and map definitions.

use std::collections::BTreeMap;

pub use super::cexpr::parse_number;
use super::cexpr::{Parser, Scope, TypeInfo};
use super::clex::{lex, matching, show, split_commas, CError, Tok};

/// A resolved C type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CType {
    Int {
        size: u64,
        signed: bool,
    },
    Ptr,
    Array {
        elem: Box<CType>,
        len: u64,
    },
    /// A struct or union with its laid-out members.
    Record {
        name: Option<String>,
        size: u64,
        align: u64,
        members: Vec<Member>,
    },
}

/// A laid-out member of a struct or union.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// None for an anonymous struct/union member or an unnamed bit-field.
    pub name: Option<String>,
    /// Byte offset (for a bit-field: of its storage unit).
    pub offset: u64,
    pub ty: CType,
    /// Set for bit-fields.
    pub bits: Option<u64>,
}

impl CType {
    /// `sizeof`.
    pub fn size(&self) -> u64 {
        match self {
            CType::Int { size, .. } => *size,
            CType::Ptr => 8,
            CType::Array { elem, len } => elem.size() * len,
            CType::Record { size, .. } => *size,
        }
    }
    /// `_Alignof`.
    pub fn align(&self) -> u64 {
        match self {
            CType::Int { size, .. } => (*size).max(1),
            CType::Ptr => 8,
            CType::Array { elem, .. } => elem.align(),
            CType::Record { align, .. } => *align,
        }
    }
    /// The struct name, for a named record.
    pub fn record_name(&self) -> Option<&str> {
        match self {
            CType::Record { name, .. } => name.as_deref(),
            _ => None,
        }
    }
}

/// Names of integer typedefs (kernel uapi, vmlinux-style and libc) with (size, signed).
const INT_TYPEDEFS: &[(&str, u64, bool)] = &[
    ("__u8", 1, false),
    ("__s8", 1, true),
    ("u8", 1, false),
    ("s8", 1, true),
    ("uint8_t", 1, false),
    ("int8_t", 1, true),
    ("__u16", 2, false),
    ("__s16", 2, true),
    ("u16", 2, false),
    ("s16", 2, true),
    ("uint16_t", 2, false),
    ("int16_t", 2, true),
    ("__be16", 2, false),
    ("__le16", 2, false),
    ("__sum16", 2, false),
    ("__u32", 4, false),
    ("__s32", 4, true),
    ("u32", 4, false),
    ("s32", 4, true),
    ("uint32_t", 4, false),
    ("int32_t", 4, true),
    ("__be32", 4, false),
    ("__le32", 4, false),
    ("__wsum", 4, false),
    ("__u64", 8, false),
    ("__s64", 8, true),
    ("u64", 8, false),
    ("s64", 8, true),
    ("uint64_t", 8, false),
    ("int64_t", 8, true),
    ("__be64", 8, false),
    ("__le64", 8, false),
    ("__aligned_u64", 8, false),
    ("size_t", 8, false),
    ("ssize_t", 8, true),
    ("bool", 1, false),
    ("_Bool", 1, false),
    ("uintptr_t", 8, false),
];

/// Keywords and attribute macros that do not change a type's layout.
const QUALIFIERS: &[&str] = &[
    "const",
    "volatile",
    "static",
    "extern",
    "register",
    "restrict",
    "__restrict",
    "inline",
    "__always_inline",
    "__arena",
    "__kptr",
    "__kptr_untrusted",
    "__percpu_kptr",
    "__user",
    "__rcu",
    "__may_alias",
    "__ksym",
    "__weak",
];

fn err<T>(s: impl Into<String>) -> Result<T, CError> {
    Err(CError(s.into()))
}

/// Struct, union and enum definitions and macros collected from source files.
#[derive(Clone, Debug, Default)]
pub struct CDefs {
    /// `struct NAME` / `union NAME` bodies (tokens between the braces), keyed `struct NAME`.
    records: BTreeMap<String, Vec<Tok>>,
    /// Enum constants.
    pub enums: BTreeMap<String, i64>,
    /// Object-like macros.
    pub macros: BTreeMap<String, String>,
}

impl CDefs {
    /// Adds every `struct NAME {...}`, `union NAME {...}` and `enum ... {...}` of the cleaned
    /// source text `clean`, and `defines`.
    pub fn add_source(&mut self, clean: &str, defines: &BTreeMap<String, String>) {
        for (k, v) in defines {
            self.macros.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let toks = lex(clean);
        let mut i = 0;
        while i + 2 < toks.len() {
            let kw = toks[i].ident();
            if matches!(kw, Some("struct") | Some("union")) {
                if let (Some(name), true) = (toks[i + 1].ident(), toks[i + 2].is("{")) {
                    if let Some(close) = matching(&toks, i + 2) {
                        let key = format!("{} {name}", kw.unwrap_or_default());
                        self.records.entry(key).or_insert_with(|| toks[i + 3..close].to_vec());
                        i = close;
                        continue;
                    }
                }
            }
            if kw == Some("enum") {
                let brace = if toks[i + 1].is("{") {
                    Some(i + 1)
                } else if toks[i + 2].is("{") {
                    Some(i + 2)
                } else {
                    None
                };
                if let Some(open) = brace {
                    if let Some(close) = matching(&toks, open) {
                        let mut next = 0i64;
                        for part in split_commas(&toks[open + 1..close]) {
                            let Some(name) = part.first().and_then(|t| t.ident()) else { continue };
                            let v = if part.len() > 2 && part[1].is("=") {
                                self.eval(&part[2..]).unwrap_or(next)
                            } else {
                                next
                            };
                            self.enums.insert(name.to_string(), v);
                            next = v.wrapping_add(1);
                        }
                        i = close;
                        continue;
                    }
                }
            }
            i += 1;
        }
    }

    /// Resolves a type name given as tokens (`struct val`, `unsigned int`, `__u32 *`).
    pub fn type_of(&self, toks: &[Tok]) -> Result<CType, CError> {
        let (base, rest) = self.base_type(toks)?;
        let mut ty = base;
        for t in rest {
            if t.is("*") {
                ty = CType::Ptr;
            } else if !t.ident().is_some_and(|s| QUALIFIERS.contains(&s)) {
                return err(format!("unexpected `{}` in a type name", show(std::slice::from_ref(t))));
            }
        }
        Ok(ty)
    }

    /// The base type at the start of `toks` and the tokens after it.
    fn base_type<'a>(&self, toks: &'a [Tok]) -> Result<(CType, &'a [Tok]), CError> {
        let mut i = 0;
        while toks.get(i).and_then(|t| t.ident()).is_some_and(|s| QUALIFIERS.contains(&s)) {
            i += 1;
        }
        let Some(first) = toks.get(i).and_then(|t| t.ident()) else {
            return err(format!("no type in `{}`", show(toks)));
        };
        match first {
            "struct" | "union" => {
                let is_union = first == "union";
                if toks.get(i + 1).is_some_and(|t| t.is("{")) {
                    let close = matching(toks, i + 1).ok_or_else(|| CError("unbalanced braces".into()))?;
                    let rec = self.layout(None, &toks[i + 2..close], is_union)?;
                    return Ok((rec, &toks[close + 1..]));
                }
                let name = toks
                    .get(i + 1)
                    .and_then(|t| t.ident())
                    .ok_or_else(|| CError(format!("`{first}` without a name")))?;
                let after = if toks.get(i + 2).is_some_and(|t| t.is("{")) {
                    let close = matching(toks, i + 2).ok_or_else(|| CError("unbalanced braces".into()))?;
                    &toks[close + 1..]
                } else {
                    &toks[i + 2..]
                };
                Ok((self.record(first, name)?, after))
            }
            "enum" => {
                let mut j = i + 1;
                if toks.get(j).and_then(|t| t.ident()).is_some() {
                    j += 1;
                }
                if toks.get(j).is_some_and(|t| t.is("{")) {
                    j = matching(toks, j).ok_or_else(|| CError("unbalanced braces".into()))? + 1;
                }
                Ok((CType::Int { size: 4, signed: false }, &toks[j..]))
            }
            _ => {
                if let Some((_, size, signed)) = INT_TYPEDEFS.iter().find(|(n, _, _)| *n == first) {
                    return Ok((CType::Int { size: *size, signed: *signed }, &toks[i + 1..]));
                }
                // Built-in integer types: any run of these keywords.
                let mut j = i;
                let (mut longs, mut unsigned, mut short, mut char_, mut any) =
                    (0, false, false, false, false);
                while let Some(w) = toks.get(j).and_then(|t| t.ident()) {
                    match w {
                        "unsigned" => unsigned = true,
                        "signed" | "int" => {}
                        "long" => longs += 1,
                        "short" => short = true,
                        "char" => char_ = true,
                        "void" => {
                            // Only meaningful behind a pointer; sizeof(void) is 1 in GNU C.
                            return Ok((CType::Int { size: 1, signed: false }, &toks[j + 1..]));
                        }
                        _ if QUALIFIERS.contains(&w) => {}
                        _ => break,
                    }
                    any = true;
                    j += 1;
                }
                if !any {
                    return err(format!("unknown type `{first}`"));
                }
                let size = if char_ {
                    1
                } else if short {
                    2
                } else if longs > 0 {
                    8
                } else {
                    4
                };
                Ok((CType::Int { size, signed: !unsigned }, &toks[j..]))
            }
        }
    }

    /// A named struct or union (the two lock types are known without a definition).
    pub fn record(&self, kw: &str, name: &str) -> Result<CType, CError> {
        let key = format!("{kw} {name}");
        match self.records.get(&key) {
            Some(body) => {
                let mut rec = self.layout(Some(name.to_string()), body, kw == "union")?;
                if let CType::Record { name: n, .. } = &mut rec {
                    *n = Some(name.to_string());
                }
                Ok(rec)
            }
            // include/uapi/linux/bpf.h: struct bpf_spin_lock { __u32 val; };
            // struct bpf_res_spin_lock { __u32 val; } (4 bytes, include/asm-generic/rqspinlock.h)
            None if kw == "struct" && (name == "bpf_spin_lock" || name == "bpf_res_spin_lock") => {
                Ok(CType::Record {
                    name: Some(name.to_string()),
                    size: 4,
                    align: 4,
                    members: vec![Member {
                        name: Some("val".into()),
                        offset: 0,
                        ty: CType::Int { size: 4, signed: false },
                        bits: None,
                    }],
                })
            }
            None => err(format!("`{key}` is not defined in the sources read")),
        }
    }

    /// Lays out the member declarations `body` (the tokens between a record's braces).
    fn layout(&self, name: Option<String>, body: &[Tok], is_union: bool) -> Result<CType, CError> {
        let mut members = Vec::new();
        let mut off_bits = 0u64;
        let mut size = 0u64;
        let mut align = 1u64;
        for decl in split_statements(body) {
            for m in self.declaration(&decl)? {
                let (ty, name, bits, attr_align) = m;
                let a = attr_align.unwrap_or(ty.align()).max(1);
                if let Some(width) = bits {
                    // SysV: a bit-field goes at the current bit offset unless it would straddle a
                    // boundary of its declared type's alignment; unnamed ones do not align the record.
                    let unit = ty.size() * 8;
                    let mut at = if is_union { 0 } else { off_bits };
                    if width == 0 || at / unit != (at + width - 1) / unit {
                        at = at.div_ceil(unit) * unit;
                    }
                    if name.is_some() {
                        align = align.max(a);
                    }
                    members.push(Member { name, offset: (at / unit) * ty.size(), ty, bits: Some(width) });
                    off_bits = if is_union { off_bits.max(at + width) } else { at + width };
                    size = size.max((at + width).div_ceil(8));
                    continue;
                }
                let at = if is_union { 0 } else { off_bits.div_ceil(8).div_ceil(a) * a };
                align = align.max(a);
                let end = at + ty.size();
                members.push(Member { name, offset: at, ty, bits: None });
                off_bits = if is_union { off_bits.max(end * 8) } else { end * 8 };
                size = size.max(end);
            }
        }
        let size = size.div_ceil(align) * align;
        Ok(CType::Record { name, size, align, members })
    }

    /// One member declaration: each declarator's (type, name, bit width, aligned attribute).
    #[allow(clippy::type_complexity)]
    fn declaration(
        &self,
        decl: &[Tok],
    ) -> Result<Vec<(CType, Option<String>, Option<u64>, Option<u64>)>, CError> {
        // __bpf_md_ptr(type, name): union { type name; __u64 :64; } __attribute__((aligned(8)))
        if decl.first().and_then(|t| t.ident()) == Some("__bpf_md_ptr") {
            let close = matching(decl, 1).ok_or_else(|| CError("unbalanced __bpf_md_ptr".into()))?;
            let args = split_commas(&decl[2..close]);
            let name = args.get(1).and_then(|a| a.first()).and_then(|t| t.ident()).map(str::to_string);
            return Ok(vec![(CType::Int { size: 8, signed: false }, name, None, Some(8))]);
        }
        let (attrs, decl) = strip_attributes(decl);
        let attr_align = attrs.iter().find_map(|(n, args)| {
            (n == "aligned" || n == "__aligned__")
                .then(|| args.first().and_then(|a| self.eval(a).ok()).map_or(16, |v| v as u64))
        });
        let (base, rest) = self.base_type(&decl)?;
        let mut out = Vec::new();
        if rest.is_empty() {
            // An anonymous struct/union member.
            out.push((base, None, None, attr_align));
            return Ok(out);
        }
        for d in split_commas(rest) {
            let mut ty = base.clone();
            let mut k = 0;
            while d.get(k).is_some_and(|t| t.is("*") || t.ident().is_some_and(|s| QUALIFIERS.contains(&s))) {
                if d[k].is("*") {
                    ty = CType::Ptr;
                }
                k += 1;
            }
            let name = d.get(k).and_then(|t| t.ident()).map(str::to_string);
            if name.is_some() {
                k += 1;
            }
            let mut dims = Vec::new();
            while d.get(k).is_some_and(|t| t.is("[")) {
                let close = matching(&d, k).ok_or_else(|| CError("unbalanced brackets".into()))?;
                dims.push(if close == k + 1 { 0 } else { self.eval(&d[k + 1..close])? as u64 });
                k = close + 1;
            }
            for len in dims.into_iter().rev() {
                ty = CType::Array { elem: Box::new(ty), len };
            }
            let bits =
                if d.get(k).is_some_and(|t| t.is(":")) { Some(self.eval(&d[k + 1..])? as u64) } else { None };
            if bits.is_none() && k < d.len() {
                return err(format!("cannot read the declarator `{}`", show(&d)));
            }
            out.push((ty, name, bits, attr_align));
        }
        Ok(out)
    }

    /// `offsetof(TYPE, a.b[2])`: the type tokens and the member path tokens.
    pub(super) fn offsetof(&self, ty: &[Tok], path: &[Tok]) -> Result<i64, CError> {
        let mut cur = self.type_of(ty)?;
        let mut off = 0u64;
        let mut k = 0;
        while k < path.len() {
            if path[k].is(".") {
                k += 1;
                continue;
            }
            if path[k].is("[") {
                let close = matching(path, k).ok_or_else(|| CError("unbalanced brackets".into()))?;
                let idx = self.eval(&path[k + 1..close])? as u64;
                let CType::Array { elem, .. } = cur else { return err("indexing a non-array in offsetof") };
                off += idx * elem.size();
                cur = *elem;
                k = close + 1;
                continue;
            }
            let Some(field) = path[k].ident() else {
                return err(format!("bad offsetof path `{}`", show(path)));
            };
            let (o, t) =
                find_member(&cur, field).ok_or_else(|| CError(format!("no member `{field}` in offsetof")))?;
            off += o;
            cur = t;
            k += 1;
        }
        Ok(off as i64)
    }

    /// Evaluates an integer constant expression.
    pub fn eval(&self, toks: &[Tok]) -> Result<i64, CError> {
        let mut p = Parser { defs: self, toks, pos: 0, depth: 0 };
        let v = p.expr(0)?;
        if p.pos != toks.len() {
            return err(format!("cannot evaluate `{}`", show(toks)));
        }
        Ok(v)
    }

    /// Evaluates expression text.
    pub fn eval_str(&self, s: &str) -> Result<i64, CError> {
        self.eval(&lex(s))
    }
}

/// The offset and type of member `name` of a record, looking into anonymous members.
pub fn find_member(ty: &CType, name: &str) -> Option<(u64, CType)> {
    let CType::Record { members, .. } = ty else { return None };
    for m in members {
        match &m.name {
            Some(n) if n == name => return Some((m.offset, m.ty.clone())),
            None if m.bits.is_none() => {
                if let Some((o, t)) = find_member(&m.ty, name) {
                    return Some((m.offset + o, t));
                }
            }
            _ => {}
        }
    }
    None
}

/// Splits a record body at top-level `;`.
fn split_statements(body: &[Tok]) -> Vec<Vec<Tok>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut depth = 0i32;
    for t in body {
        if t.is("(") || t.is("{") || t.is("[") {
            depth += 1;
        } else if t.is(")") || t.is("}") || t.is("]") {
            depth -= 1;
        }
        if t.is(";") && depth == 0 {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(t.clone());
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Removes `__attribute__((...))` and `__aligned(N)` groups; returns (attribute name, args).
#[allow(clippy::type_complexity)]
pub fn strip_attributes(toks: &[Tok]) -> (Vec<(String, Vec<Vec<Tok>>)>, Vec<Tok>) {
    let mut attrs = Vec::new();
    let mut out = Vec::new();
    let mut k = 0;
    while k < toks.len() {
        let id = toks[k].ident();
        if matches!(id, Some("__attribute__") | Some("__attribute"))
            && toks.get(k + 1).is_some_and(|t| t.is("("))
        {
            let close = matching(toks, k + 1).unwrap_or(toks.len() - 1);
            // __attribute__(( a(args), b ))
            let inner =
                if close >= k + 3 { &toks[k + 3..close.saturating_sub(1).max(k + 3)] } else { &[][..] };
            for a in split_commas(inner) {
                if let Some(n) = a.first().and_then(|t| t.ident()) {
                    let args = if a.len() > 2 && a[1].is("(") {
                        split_commas(&a[2..a.len() - 1])
                    } else {
                        Vec::new()
                    };
                    attrs.push((n.to_string(), args));
                }
            }
            k = close + 1;
        } else if id == Some("__aligned") && toks.get(k + 1).is_some_and(|t| t.is("(")) {
            let close = matching(toks, k + 1).unwrap_or(toks.len() - 1);
            attrs.push(("aligned".to_string(), vec![toks[k + 2..close].to_vec()]));
            k = close + 1;
        } else {
            out.push(toks[k].clone());
            k += 1;
        }
    }
    (attrs, out)
}

/// What the expression parser reads of the definitions.
impl Scope for CDefs {
    fn type_info(&self, toks: &[Tok]) -> Result<TypeInfo, CError> {
        let ty = self.type_of(toks)?;
        let int = match ty {
            CType::Int { size, signed } => Some((size, signed)),
            _ => None,
        };
        Ok(TypeInfo { size: ty.size(), int })
    }

    fn offsetof(&self, ty: &[Tok], path: &[Tok]) -> Result<i64, CError> {
        CDefs::offsetof(self, ty, path)
    }

    fn enum_value(&self, name: &str) -> Option<i64> {
        self.enums.get(name).copied()
    }

    fn macro_text(&self, name: &str) -> Option<&str> {
        self.macros.get(name).map(String::as_str)
    }
}
