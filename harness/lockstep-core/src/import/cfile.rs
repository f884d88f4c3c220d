//! Reading a selftest C file: its functions (annotations, `SEC`, naked asm with operands), its
//! `SEC(".maps")` map definitions and its global variables.

use std::collections::BTreeMap;

use super::annot::macro_key;
use super::clex::{self, lex, matching, show, split_commas, CSource, Tok};
use super::ctypes::{CDefs, CType, Member};
use crate::case::{Field, FieldKind, MapSpec, MapType, ValueLayout};

/// An `asm volatile` input operand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Operand {
    /// `__imm(name)`: the symbol's name.
    Imm(String),
    /// `__imm_addr(name)`: a map or a global variable.
    Addr(String),
    /// `__imm_const(name, expr)` or `[name]"i"(expr)`.
    Const(Vec<Tok>),
    /// `__imm_ptr`, `__imm_insn` and other forms: not converted.
    Other(String),
}

/// A function of the file.
#[derive(Clone, Debug)]
pub(crate) struct Func {
    pub(crate) name: String,
    pub(crate) line: usize,
    pub(crate) sec: Option<String>,
    /// Annotations as decl-tag strings (`test_expect_msg=...`), in source order.
    pub(crate) annotations: Vec<String>,
    /// The same as written in C (`__msg("...")`), for comments.
    pub(crate) c_annotations: Vec<String>,
    pub(crate) is_static: bool,
    pub(crate) params: Vec<Vec<Tok>>,
    /// The asm text (decoded string literal) and its operands, for a naked function.
    pub(crate) asm: Option<(String, BTreeMap<String, Operand>)>,
    /// The body mentions a lock (for C bodies).
    pub(crate) body_mentions_lock: bool,
}

/// What a file defines.
pub(crate) struct FileDefs {
    pub(crate) defs: CDefs,
    pub(crate) funcs: Vec<Func>,
    /// Map name -> spec, or why it cannot be used.
    pub(crate) maps: BTreeMap<String, Result<MapSpec, String>>,
    /// Global variables (name -> section).
    pub(crate) globals: BTreeMap<String, String>,
}

/// Parses the file: functions (with annotations and asm), maps, global variables.
pub(crate) fn parse_file(text: &str, base: &CDefs) -> FileDefs {
    let src = CSource::new(text);
    let mut defs = base.clone();
    defs.add_source(&src.clean, &src.defines);
    let mut fd = FileDefs { defs, funcs: Vec::new(), maps: BTreeMap::new(), globals: BTreeMap::new() };
    for item in clex::items(&src) {
        let toks_head = match item.body {
            Some((b, _)) => lex(&src.clean[item.start..b - 1]),
            None => lex(&src.clean[item.start..item.end]),
        };
        if let Some((b, e)) = item.body {
            if let Some(f) = parse_func(&src, &toks_head, b, e, src.line_of(item.start)) {
                fd.funcs.push(f);
            }
            continue;
        }
        let sec = section_of(&toks_head);
        if sec.as_deref() == Some(".maps") {
            if let Some((name, m)) = parse_map(&fd.defs, &toks_head) {
                fd.maps.insert(name, m);
            }
        } else if let Some(s) = sec {
            if let Some(name) = declared_name(&toks_head) {
                fd.globals.insert(name, s);
            }
        } else if toks_head.first().and_then(|t| t.ident()) == Some("private") {
            // bpf_experimental.h: #define private(name) SEC(".bss." #name) __hidden
            if let Some(name) = declared_name(&toks_head) {
                fd.globals.insert(name, ".bss.private".into());
            }
        }
    }
    fd
}

/// `SEC("...")` in a token list.
pub(crate) fn section_of(toks: &[Tok]) -> Option<String> {
    toks.windows(3).find_map(|w| match (&w[0], &w[1], &w[2]) {
        (Tok::Ident(s), p, Tok::Str(v)) if s == "SEC" && p.is("(") => Some(v.clone()),
        _ => None,
    })
}

/// The declared name of a variable declaration: the identifier before `SEC`, `=`, `[` or `;`.
pub(crate) fn declared_name(toks: &[Tok]) -> Option<String> {
    let stop = toks
        .iter()
        .position(|t| t.ident() == Some("SEC") || t.is("=") || t.is("[") || t.is(";"))
        .unwrap_or(toks.len());
    toks[..stop].iter().rev().find_map(|t| t.ident()).map(str::to_string)
}

pub(crate) fn parse_func(
    src: &CSource,
    head: &[Tok],
    body_start: usize,
    body_end: usize,
    line: usize,
) -> Option<Func> {
    // The name: the last `IDENT (` of the head that is not an attribute.
    let mut name_at = None;
    for k in 0..head.len().saturating_sub(1) {
        if let (Some(id), true) = (head[k].ident(), head[k + 1].is("(")) {
            if !matches!(id, "__attribute__" | "__attribute" | "__aligned" | "__section") {
                name_at = Some(k);
            }
        }
    }
    let k = name_at?;
    let name = head[k].ident()?.to_string();
    let close = matching(head, k + 1)?;
    let params = split_commas(&head[k + 2..close]);
    let mut annotations = Vec::new();
    let mut c_annotations = Vec::new();
    let mut sec = None;
    let mut j = 0;
    while j < k {
        let Some(id) = head[j].ident() else {
            j += 1;
            continue;
        };
        let args = if head.get(j + 1).is_some_and(|t| t.is("(")) {
            let c = matching(head, j + 1).unwrap_or(k);
            let a = head[j + 2..c].to_vec();
            j = c + 1;
            Some(a)
        } else {
            j += 1;
            None
        };
        if id == "SEC" {
            if let Some(Tok::Str(s)) = args.as_ref().and_then(|a| a.first()) {
                sec = Some(s.clone());
            }
            continue;
        }
        if let Some(key) = macro_key(id) {
            c_annotations.push(match &args {
                Some(a) => format!(
                    "{id}({})",
                    a.iter()
                        .map(|t| match t {
                            Tok::Str(s) => format!("{s:?}"),
                            t => show(std::slice::from_ref(t)),
                        })
                        .collect::<Vec<_>>()
                        .join("")
                ),
                None => id.to_string(),
            });
            let ann = match args {
                Some(a) if !a.is_empty() => {
                    let v = match a.as_slice() {
                        [Tok::Str(s)] => s.clone(),
                        other => show(other).replace(' ', ""),
                    };
                    format!("{key}={v}")
                }
                Some(_) if key.starts_with("test_expect_msg") => format!("{key}="),
                _ => key,
            };
            annotations.push(ann);
        }
    }
    let is_static = head[..k].iter().any(|t| t.ident() == Some("static"));
    let body_text = &src.clean[body_start..body_end];
    let asm = parse_asm(body_text);
    Some(Func {
        name,
        line,
        sec,
        annotations,
        c_annotations,
        is_static,
        params,
        asm,
        body_mentions_lock: uses_lock_text(body_text),
    })
}

/// Whether a function's text mentions taking or releasing a spin lock (selftests import only
/// those functions).
pub(super) fn uses_lock_text(asm: &str) -> bool {
    asm.contains("spin_lock") || asm.contains("spin_unlock")
}

/// The asm string and operands of a body that is one `asm volatile (...)` statement.
pub(crate) fn parse_asm(body: &str) -> Option<(String, BTreeMap<String, Operand>)> {
    let t = body.trim_start();
    let rest = t.strip_prefix("asm").or_else(|| t.strip_prefix("__asm__"))?;
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix("volatile")
        .or_else(|| rest.strip_prefix("__volatile__"))
        .unwrap_or(rest)
        .trim_start();
    let rest = rest.strip_prefix('(')?;
    // String literals, joined; line splices kept as newlines.
    let b = rest.as_bytes();
    let mut i = 0;
    let mut text = String::new();
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() || b[i] != b'"' {
            break;
        }
        let mut j = i + 1;
        while j < b.len() && b[j] != b'"' {
            if b[j] == b'\\' {
                j += 1;
            }
            j += 1;
        }
        text.push_str(&clex::decode_string(&rest[i + 1..j.min(rest.len())]));
        i = j + 1;
    }
    let ops_toks = lex(rest.get(i..).unwrap_or(""));
    // : outputs : inputs : clobbers ) ;  (sections[0] is empty: the string ends it)
    let mut sections: Vec<Vec<Tok>> = vec![Vec::new()];
    let mut depth = 0;
    for tk in ops_toks {
        if tk.is("(") || tk.is("[") {
            depth += 1;
        } else if tk.is(")") || tk.is("]") {
            depth -= 1;
            if depth < 0 {
                break;
            }
        }
        if tk.is(":") && depth == 0 {
            sections.push(Vec::new());
        } else {
            sections.last_mut().expect("never empty").push(tk);
        }
    }
    let mut ops = BTreeMap::new();
    if let Some(inputs) = sections.get(2) {
        for op in split_commas(inputs) {
            if let Some((n, o)) = operand(&op) {
                ops.insert(n, o);
            }
        }
    }
    Some((text, ops))
}

pub(crate) fn operand(op: &[Tok]) -> Option<(String, Operand)> {
    let id = op.first()?.ident();
    if let Some(macro_name) = id {
        if !op.get(1)?.is("(") {
            return None;
        }
        let close = matching(op, 1)?;
        let args = split_commas(&op[2..close]);
        let name = args.first()?.first()?.ident()?.to_string();
        let o = match macro_name {
            "__imm" => Operand::Imm(name.clone()),
            "__imm_addr" => Operand::Addr(name.clone()),
            "__imm_const" => Operand::Const(args.get(1)?.clone()),
            other => Operand::Other(format!("`{other}(...)`")),
        };
        return Some((name, o));
    }
    // [name] "i" (expr)
    if op.first()?.is("[") {
        let name = op.get(1)?.ident()?.to_string();
        let open = op.iter().position(|t| t.is("("))?;
        let close = matching(op, open)?;
        let expr = op[open + 1..close].to_vec();
        return Some((name, Operand::Const(expr)));
    }
    None
}

/// Map types by their uapi enumerator name.
pub(crate) const MAP_TYPES: &[(&str, MapType)] = &[
    ("BPF_MAP_TYPE_HASH", MapType::Hash),
    ("BPF_MAP_TYPE_ARRAY", MapType::Array),
    ("BPF_MAP_TYPE_PROG_ARRAY", MapType::ProgArray),
    ("BPF_MAP_TYPE_PERCPU_HASH", MapType::PercpuHash),
    ("BPF_MAP_TYPE_PERCPU_ARRAY", MapType::PercpuArray),
    ("BPF_MAP_TYPE_LRU_HASH", MapType::LruHash),
    ("BPF_MAP_TYPE_CGROUP_STORAGE", MapType::CgroupStorage),
    ("BPF_MAP_TYPE_SK_STORAGE", MapType::SkStorage),
    ("BPF_MAP_TYPE_SOCKMAP", MapType::SockMap),
    ("BPF_MAP_TYPE_XSKMAP", MapType::XskMap),
    ("BPF_MAP_TYPE_SOCKHASH", MapType::SockHash),
    ("BPF_MAP_TYPE_REUSEPORT_SOCKARRAY", MapType::ReuseportSockarray),
];

/// `struct { __uint(type, ...); ... } name SEC(".maps");`
pub(crate) fn parse_map(defs: &CDefs, toks: &[Tok]) -> Option<(String, Result<MapSpec, String>)> {
    if toks.first()?.ident() != Some("struct") || !toks.get(1)?.is("{") {
        return None;
    }
    let close = matching(toks, 1)?;
    let name = toks.get(close + 1)?.ident()?.to_string();
    Some((name.clone(), map_spec(defs, &name, &toks[2..close])))
}

pub(crate) fn map_spec(defs: &CDefs, name: &str, body: &[Tok]) -> Result<MapSpec, String> {
    let mut map_type = None;
    let (mut key_size, mut value_size, mut max_entries, mut flags) = (None, None, 1u32, 0u32);
    let mut key_ty = None;
    let mut value_ty = None;
    for stmt in body.split(|t| t.is(";")).filter(|s| !s.is_empty()) {
        let Some(kind) = stmt[0].ident() else { continue };
        if !stmt.get(1).is_some_and(|t| t.is("(")) {
            return Err(format!("unexpected `{}` in the map definition", show(stmt)));
        }
        let close = matching(stmt, 1).ok_or("unbalanced map definition")?;
        let args = split_commas(&stmt[2..close]);
        let field = args.first().and_then(|a| a.first()).and_then(|t| t.ident()).unwrap_or("");
        let arg = args.get(1).cloned().unwrap_or_default();
        match (kind, field) {
            ("__uint", "type") => {
                let t = arg.first().and_then(|t| t.ident()).unwrap_or("");
                map_type = Some(
                    MAP_TYPES
                        .iter()
                        .find(|(n, _)| *n == t)
                        .map(|(_, m)| *m)
                        .ok_or_else(|| format!("map type {t} is not one lockstep creates"))?,
                );
            }
            ("__uint", "max_entries") => max_entries = defs.eval(&arg).map_err(|e| e.to_string())? as u32,
            ("__uint", "key_size") => key_size = Some(defs.eval(&arg).map_err(|e| e.to_string())? as u32),
            ("__uint", "value_size") => value_size = Some(defs.eval(&arg).map_err(|e| e.to_string())? as u32),
            ("__uint", "map_flags") => flags = defs.eval(&arg).map_err(|e| e.to_string())? as u32,
            ("__type", "key") => key_ty = Some(defs.type_of(&arg).map_err(|e| e.to_string())?),
            ("__type", "value") => value_ty = Some(defs.type_of(&arg).map_err(|e| e.to_string())?),
            _ => return Err(format!("`{kind}({field}, ...)` in the map definition is not converted")),
        }
    }
    let map_type = map_type.ok_or("no map type")?;
    let key_size = key_ty.as_ref().map(|t| t.size() as u32).or(key_size).unwrap_or(4);
    // libbpf passes BTF key/value type ids only for __type(); key_size/value_size alone give a
    // map without value BTF, in which the kernel finds no lock.
    let btf = value_ty.is_some();
    let value = match &value_ty {
        Some(t) => value_layout(t)?,
        None if map_type == MapType::ProgArray => ValueLayout { size: 4, fields: Vec::new() },
        None => ValueLayout { size: value_size.ok_or("no value type or size")?, fields: Vec::new() },
    };
    Ok(MapSpec {
        name: name.to_string(),
        map_type,
        key_size,
        max_entries,
        value,
        btf,
        global_section: false,
        flags,
        inner: None,
    })
}

/// The lockstep layout of a C value type: its integer and lock members; arrays, bit-fields and
/// other members stay padding. A lock inside a nested struct is found where btf.c finds it
/// (`btf_find_struct_field()` -> `btf_find_field_one()` -> `btf_find_nested_struct()`), with the
/// integer members of that struct beside it; a lock inside an array is refused.
pub fn value_layout(t: &CType) -> Result<ValueLayout, String> {
    let mut fields = Vec::new();
    match t {
        CType::Int { size, .. } if matches!(size, 1 | 2 | 4 | 8) => fields.push(Field {
            name: "value".into(),
            kind: FieldKind::Int,
            offset: 0,
            size: *size as u32,
            target: None,
        }),
        CType::Record { .. } if lock_kind(t).is_some() => fields.push(Field {
            name: "lock".into(),
            kind: lock_kind(t).expect("checked"),
            offset: 0,
            size: 4,
            target: None,
        }),
        CType::Record { members, .. } => record_fields(members, 0, None, &mut fields)?,
        other if contains_lock(other) => return Err("a lock inside an array is not converted".into()),
        _ => {}
    }
    Ok(ValueLayout { size: t.size() as u32, fields })
}

/// The integer and lock fields of a record's `members` at `base` bytes, named
/// `<prefix>_<member>` inside a nested struct. A nested struct (not an array) holding a lock is
/// descended into: `btf_find_nested_struct()` with `nelems` 1 (btf.c, the same in 7.2 and 7.3;
/// an array of them, `btf_repeat_fields()`, refuses a lock with -EINVAL: not converted).
fn record_fields(
    members: &[Member],
    base: u32,
    prefix: Option<&str>,
    fields: &mut Vec<Field>,
) -> Result<(), String> {
    for m in members {
        let plain = m.name.clone().unwrap_or_else(|| format!("anon_{}", m.offset));
        let name = match prefix {
            Some(p) => format!("{p}_{plain}"),
            None => plain,
        };
        if m.bits.is_some() {
            continue;
        }
        let offset = base + m.offset as u32;
        match &m.ty {
            CType::Int { size, .. } if matches!(size, 1 | 2 | 4 | 8) => {
                fields.push(Field { name, kind: FieldKind::Int, offset, size: *size as u32, target: None })
            }
            CType::Ptr => fields.push(Field { name, kind: FieldKind::Int, offset, size: 8, target: None }),
            r @ CType::Record { .. } if lock_kind(r).is_some() => fields.push(Field {
                name,
                kind: lock_kind(r).expect("checked"),
                offset,
                size: 4,
                target: None,
            }),
            CType::Record { members: inner, .. } if contains_lock(&m.ty) => {
                record_fields(inner, offset, Some(&name), fields)?
            }
            other if contains_lock(other) => {
                return Err(format!("a lock inside member `{name}` (an array) is not converted"))
            }
            _ => {}
        }
    }
    Ok(())
}

pub(crate) fn lock_kind(t: &CType) -> Option<FieldKind> {
    match t.record_name() {
        Some("bpf_spin_lock") => Some(FieldKind::SpinLock),
        Some("bpf_res_spin_lock") => Some(FieldKind::ResSpinLock),
        _ => None,
    }
}

pub(crate) fn contains_lock(t: &CType) -> bool {
    match t {
        CType::Record { members, .. } => {
            lock_kind(t).is_some() || members.iter().any(|m| contains_lock(&m.ty))
        }
        CType::Array { elem, .. } => contains_lock(elem),
        _ => false,
    }
}
