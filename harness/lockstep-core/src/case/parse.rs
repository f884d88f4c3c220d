//! The case-file parser: TOML in, [`Case`]s out, every error located by file, line and column.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::{
    Case, Expectation, Field, FieldKind, FieldTarget, GlobalFunc, MapSpec, MapType, ObjType, ProgType,
    ValueLayout,
};
use crate::asm::{self, Symbols};
use crate::verdict::VerdictKind;

/// A case-file error: where it is and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct CaseError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    case: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: Spanned<String>,
    prog_type: Spanned<String>,
    #[serde(default)]
    sleepable: bool,
    #[serde(default)]
    prog_flags: Vec<Spanned<String>>,
    #[serde(default)]
    log_level: u32,
    /// The licence `BPF_PROG_LOAD` carries (default "GPL").
    #[serde(default)]
    license: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    map: Vec<RawMap>,
    /// Global data sections (`.data`, `.bss`), each an array map with one entry.
    #[serde(default)]
    global: Vec<RawGlobalSection>,
    #[serde(default)]
    globals: Vec<RawGlobalFunc>,
    /// Local object types (`[[case.type]]`).
    #[serde(default, rename = "type")]
    types: Vec<RawType>,
    #[serde(default)]
    kfuncs: Vec<String>,
    text: Spanned<String>,
    #[serde(default)]
    expect: BTreeMap<String, Spanned<RawExpect>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMap {
    name: Spanned<String>,
    #[serde(default = "default_map_type", rename = "type")]
    map_type: Spanned<String>,
    #[serde(default = "default_key_size")]
    key_size: u32,
    #[serde(default = "default_max_entries")]
    max_entries: u32,
    #[serde(default = "default_true")]
    btf: bool,
    #[serde(default)]
    value_size: Option<u32>,
    #[serde(default)]
    flags: u32,
    #[serde(default)]
    fields: Vec<Spanned<RawField>>,
    /// A map-in-map's inner map (`[case.map.inner]`).
    #[serde(default)]
    inner: Option<Spanned<RawInnerMap>>,
}

/// The inner map of an `array_of_maps` / `hash_of_maps` (named `<outer>.inner`, as libbpf does).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInnerMap {
    #[serde(default = "default_map_type", rename = "type")]
    map_type: Spanned<String>,
    #[serde(default = "default_key_size")]
    key_size: u32,
    #[serde(default = "default_max_entries")]
    max_entries: u32,
    #[serde(default = "default_true")]
    btf: bool,
    #[serde(default)]
    value_size: Option<u32>,
    #[serde(default)]
    flags: u32,
    #[serde(default)]
    fields: Vec<Spanned<RawField>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobalSection {
    section: Spanned<String>,
    #[serde(default)]
    fields: Vec<Spanned<RawField>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawType {
    name: Spanned<String>,
    #[serde(default)]
    size: Option<u32>,
    /// The id lockstep's program BTF gives the type (what `bpf_obj_new()` is passed).
    #[serde(default)]
    btf_id: Option<u32>,
    #[serde(default)]
    fields: Vec<Spanned<RawField>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: String,
    kind: String,
    #[serde(default)]
    size: Option<u32>,
    #[serde(default)]
    offset: Option<u32>,
    /// A graph root's `__contains(type, node)`, written `"type:node"`.
    #[serde(default)]
    contains: Option<String>,
    /// A kptr's pointee struct.
    #[serde(default)]
    pointee: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobalFunc {
    label: String,
    #[serde(default)]
    args: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    verdict: String,
    #[serde(default)]
    insn: Option<usize>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    msgs: Vec<String>,
}

fn default_map_type() -> Spanned<String> {
    Spanned::new(0..0, "array".to_string())
}
fn default_key_size() -> u32 {
    4
}
fn default_max_entries() -> u32 {
    1
}
fn default_true() -> bool {
    true
}

/// Maps a byte offset of the source to a 1-based (line, column): line starts are found once, so
/// locating every case of a large file stays linear (a scan from the start per lookup was quadratic).
struct LineIndex<'a> {
    src: &'a str,
    /// Byte offset of the start of each line.
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(src: &'a str) -> Self {
        let starts = std::iter::once(0).chain(src.match_indices('\n').map(|(i, _)| i + 1)).collect();
        LineIndex { src, starts }
    }

    fn locate(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src.len());
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let column = self.src.get(start..offset).map_or(offset - start, |l| l.chars().count()) + 1;
        (line, column)
    }
}

struct Ctx<'a> {
    file: &'a str,
    index: LineIndex<'a>,
}

impl Ctx<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> CaseError {
        let (line, column) = self.index.locate(span.start);
        CaseError { file: self.file.to_string(), line, column, message: message.into() }
    }
}

/// Parses a case file. `file` names it in errors; `known_kfuncs` are the kfunc names calls may
/// resolve to (the model's vmlinux kfuncs and the test module's), besides each case's `kfuncs`.
pub fn parse_cases(file: &str, src: &str, known_kfuncs: &[String]) -> Result<Vec<Case>, CaseError> {
    let ctx = Ctx { file, index: LineIndex::new(src) };
    let raw: RawFile = toml::from_str(src).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        ctx.err(span, e.message().trim().to_string())
    })?;
    if raw.case.is_empty() {
        return Err(ctx.err(0..0, "no [[case]] tables in file"));
    }
    let mut seen = BTreeMap::new();
    let mut out = Vec::with_capacity(raw.case.len());
    for rc in raw.case {
        if let Some(prev) = seen.insert(rc.name.get_ref().clone(), rc.name.span()) {
            let (pl, _) = ctx.index.locate(prev.start);
            return Err(ctx.err(
                rc.name.span(),
                format!("duplicate case name `{}` (first at line {pl})", rc.name.get_ref()),
            ));
        }
        out.push(convert_case(&ctx, src, rc, known_kfuncs)?);
    }
    Ok(out)
}

fn convert_case(ctx: &Ctx, src: &str, rc: RawCase, known_kfuncs: &[String]) -> Result<Case, CaseError> {
    let prog_type =
        ProgType::ALL.into_iter().find(|p| p.name() == rc.prog_type.get_ref()).ok_or_else(|| {
            let names: Vec<_> = ProgType::ALL.iter().map(|p| p.name()).collect();
            ctx.err(
                rc.prog_type.span(),
                format!(
                    "unknown prog_type `{}` (expected one of: {})",
                    rc.prog_type.get_ref(),
                    names.join(", ")
                ),
            )
        })?;
    if rc.log_level > 2 {
        return Err(ctx.err(
            rc.name.span(),
            format!(
                "case `{}`: log_level {} (expected 1 or 2; stats are always on)",
                rc.name.get_ref(),
                rc.log_level
            ),
        ));
    }
    let mut prog_flags = 0u32;
    for f in &rc.prog_flags {
        let bit =
            super::PROG_FLAGS.iter().find(|(n, _)| n == f.get_ref()).map(|(_, b)| *b).ok_or_else(|| {
                let names: Vec<_> = super::PROG_FLAGS.iter().map(|(n, _)| *n).collect();
                ctx.err(
                    f.span(),
                    format!(
                        "unknown prog flag `{}` (expected one of: {}; BPF_F_SLEEPABLE is `sleepable = true`)",
                        f.get_ref(),
                        names.join(", ")
                    ),
                )
            })?;
        prog_flags |= bit;
    }
    let mut maps = Vec::new();
    for m in &rc.map {
        maps.push(convert_map(ctx, m)?);
    }
    for g in &rc.global {
        let section = g.section.get_ref();
        if ![".data", ".bss", ".rodata"].contains(&section.as_str()) {
            return Err(ctx.err(
                g.section.span(),
                format!("unknown global section `{section}` (expected .data, .bss or .rodata)"),
            ));
        }
        let value = convert_layout(ctx, &g.fields, None, g.section.span())?;
        maps.push(MapSpec {
            name: section.clone(),
            map_type: MapType::Array,
            key_size: 4,
            max_entries: 1,
            value,
            btf: true,
            global_section: true,
            flags: 0,
            inner: None,
        });
    }
    let mut types: Vec<ObjType> = Vec::new();
    for t in &rc.types {
        let name = t.name.get_ref();
        if !is_ident(name) {
            return Err(ctx.err(t.name.span(), format!("type name `{name}` is not a C identifier")));
        }
        if types.iter().any(|o| &o.name == name) {
            return Err(ctx.err(t.name.span(), format!("type `{name}` declared twice")));
        }
        let layout = convert_layout(ctx, &t.fields, t.size, t.name.span())?;
        // The program BTF is written in declaration order: a kptr in a local type may point to a
        // type declared before it (or a kernel type), not to itself or a later one.
        let later =
            |p: &str| p == name || rc.types.iter().skip(types.len() + 1).any(|o| o.name.get_ref() == p);
        for f in &layout.fields {
            if let Some(FieldTarget::Pointee(p)) = &f.target {
                if later(p) {
                    return Err(ctx.err(
                        t.name.span(),
                        format!(
                            "type `{name}`: kptr `{}` points to `{p}`, which is not declared before `{name}`",
                            f.name
                        ),
                    ));
                }
            }
        }
        types.push(ObjType { btf_id: t.btf_id, ..ObjType::new(name.clone(), layout) });
    }
    for (i, m) in maps.iter().enumerate() {
        if maps[..i].iter().any(|o| o.name == m.name) {
            return Err(ctx.err(
                rc.name.span(),
                format!("case `{}`: map `{}` declared twice", rc.name.get_ref(), m.name),
            ));
        }
    }
    let mut kfuncs: Vec<String> = known_kfuncs.to_vec();
    kfuncs.extend(rc.kfuncs.iter().cloned());
    let symbols = Symbols { maps: maps.iter().map(|m| m.name.clone()).collect(), kfuncs };
    let text_line = text_start_line(src, rc.text.span(), &ctx.index);
    let program = asm::assemble(rc.text.get_ref(), &symbols).map_err(|e| CaseError {
        file: ctx.file.to_string(),
        line: text_line + e.line - 1,
        column: e.column,
        message: format!("case `{}`: {}", rc.name.get_ref(), e.message),
    })?;
    let mut globals = Vec::new();
    for g in rc.globals {
        if !program.labels.values().any(|l| *l == g.label) {
            return Err(ctx.err(
                rc.name.span(),
                format!(
                    "case `{}`: global function `{}` is not a label of the program",
                    rc.name.get_ref(),
                    g.label
                ),
            ));
        }
        if g.args > 5 {
            return Err(ctx.err(
                rc.name.span(),
                format!(
                    "case `{}`: global function `{}` has {} args (at most 5)",
                    rc.name.get_ref(),
                    g.label,
                    g.args
                ),
            ));
        }
        globals.push(GlobalFunc { label: g.label, args: g.args, ctx_args: 0 });
    }
    let mut expect = BTreeMap::new();
    let profiles = crate::profile::KernelProfile::names();
    for (profile, e) in rc.expect {
        let span = e.span();
        if profile != "*" && !profiles.contains(&profile.as_str()) {
            return Err(ctx.err(
                span,
                format!(
                    "case `{}`: expectation for unknown profile `{profile}` (expected `*` or one of: {})",
                    rc.name.get_ref(),
                    profiles.join(", ")
                ),
            ));
        }
        let e = e.into_inner();
        let verdict = match e.verdict.as_str() {
            "accept" => VerdictKind::Accept,
            "reject" => VerdictKind::Reject,
            "unsupported" => VerdictKind::Unsupported,
            other => {
                return Err(ctx.err(
                    span,
                    format!("unknown verdict `{other}` (expected accept, reject or unsupported)"),
                ))
            }
        };
        if verdict == VerdictKind::Accept && (e.insn.is_some() || e.message.is_some()) {
            return Err(
                ctx.err(span, "an `accept` expectation takes no insn or message (log lines go in `msgs`)")
            );
        }
        if e.msgs.iter().any(|m| m.is_empty()) {
            return Err(ctx.err(span, "an empty `msgs` pattern matches everything; leave it out"));
        }
        if let Err(e) = crate::msgpat::validate(&e.msgs) {
            return Err(ctx.err(span, e.to_string()));
        }
        expect.insert(
            profile,
            Expectation {
                verdict,
                insn: e.insn,
                message: e.message,
                source: e.source,
                msgs: e.msgs,
                retval: None,
            },
        );
    }
    let (line, _) = ctx.index.locate(rc.name.span().start);
    Ok(Case {
        name: rc.name.into_inner(),
        file: ctx.file.to_string(),
        line,
        prog_type,
        sleepable: rc.sleepable,
        prog_flags,
        log_level: rc.log_level,
        maps,
        globals,
        types,
        extern_kfuncs: rc.kfuncs,
        program,
        text: rc.text.into_inner(),
        expect,
        description: rc.description,
        tags: rc.tags,
        object: None,
        model_unsupported: None,
        exception_cb: None,
        license: rc.license.unwrap_or_else(|| crate::case::DEFAULT_LICENSE.into()),
        non_struct_type_ids: Vec::new(),
    })
}

/// The file line holding the first line of a (possibly multi-line) string value.
fn text_start_line(src: &str, span: Range<usize>, index: &LineIndex) -> usize {
    let (line, _) = index.locate(span.start);
    let raw = &src[span.start.min(src.len())..span.end.min(src.len())];
    let multi = raw.starts_with("'''") || raw.starts_with("\"\"\"");
    let first_nl = raw.get(3..).is_some_and(|r| r.starts_with('\n') || r.starts_with("\r\n"));
    if multi && first_nl {
        line + 1
    } else {
        line
    }
}

fn map_type_named(ctx: &Ctx, t: &Spanned<String>) -> Result<MapType, CaseError> {
    let name = t.get_ref().as_str();
    MapType::ALL.into_iter().find(|m| m.name() == name).ok_or_else(|| {
        let known: Vec<&str> = MapType::ALL.iter().map(|t| t.name()).collect();
        ctx.err(t.span(), format!("unknown map type `{name}` (expected {})", known.join(", ")))
    })
}

fn convert_map(ctx: &Ctx, m: &RawMap) -> Result<MapSpec, CaseError> {
    let map_type = map_type_named(ctx, &m.map_type)?;
    let value = if map_type == MapType::ProgArray {
        if !m.fields.is_empty() {
            return Err(ctx
                .err(m.name.span(), "a prog_array map has no value fields (its value is a 4-byte prog fd)"));
        }
        ValueLayout {
            size: 4,
            fields: vec![Field { name: "fd".into(), kind: FieldKind::Int, offset: 0, size: 4, target: None }],
        }
    } else if map_type.is_map_in_map() {
        if !m.fields.is_empty() {
            return Err(ctx.err(
                m.name.span(),
                "a map-in-map has no value fields (its value is an inner map's fd; declare [case.map.inner])",
            ));
        }
        ValueLayout { size: 4, fields: Vec::new() }
    } else {
        convert_layout(ctx, &m.fields, m.value_size, m.name.span())?
    };
    if ![1, 2, 4, 8, 16].contains(&m.key_size) && m.key_size > 64 {
        return Err(ctx.err(m.name.span(), format!("key_size {} is out of range", m.key_size)));
    }
    let inner = match (&m.inner, map_type.is_map_in_map()) {
        (Some(i), true) => Some(Box::new(convert_inner(ctx, m.name.get_ref(), i)?)),
        (None, true) => {
            return Err(ctx.err(
                m.name.span(),
                format!(
                    "map `{}` of type {} needs its inner map ([case.map.inner])",
                    m.name.get_ref(),
                    map_type.name()
                ),
            ))
        }
        (Some(i), false) => {
            return Err(ctx.err(i.span(), "only an array_of_maps or hash_of_maps map has an inner map"))
        }
        (None, false) => None,
    };
    Ok(MapSpec {
        name: m.name.get_ref().clone(),
        map_type,
        key_size: m.key_size,
        max_entries: m.max_entries,
        value,
        // libbpf creates a map-in-map without BTF (bpf_object__create_map()).
        btf: m.btf && inner.is_none(),
        global_section: false,
        flags: m.flags,
        inner,
    })
}

/// `[case.map.inner]` of map `outer`.
fn convert_inner(ctx: &Ctx, outer: &str, raw: &Spanned<RawInnerMap>) -> Result<MapSpec, CaseError> {
    let i = raw.get_ref();
    let map_type = map_type_named(ctx, &i.map_type)?;
    // bpf_map_meta_alloc(): an inner map-in-map is -EINVAL; a prog_array inner map needs a
    // program owner the model does not follow.
    if map_type.is_map_in_map() || map_type == MapType::ProgArray {
        return Err(
            ctx.err(i.map_type.span(), format!("an inner map of type {} is not supported", map_type.name()))
        );
    }
    Ok(MapSpec {
        name: format!("{outer}.inner"),
        map_type,
        key_size: i.key_size,
        max_entries: i.max_entries,
        value: convert_layout(ctx, &i.fields, i.value_size, raw.span())?,
        btf: i.btf,
        global_section: false,
        flags: i.flags,
        inner: None,
    })
}

fn convert_layout(
    ctx: &Ctx,
    fields: &[Spanned<RawField>],
    value_size: Option<u32>,
    owner: Range<usize>,
) -> Result<ValueLayout, CaseError> {
    let mut out: Vec<Field> = Vec::new();
    let mut next = 0u32;
    let mut max_align = 1u32;
    for f in fields {
        let span = f.span();
        let f = f.get_ref();
        let Some(kind) = FieldKind::ALL.into_iter().find(|k| k.name() == f.kind) else {
            let known: Vec<&str> = FieldKind::ALL.iter().map(|k| k.name()).collect();
            return Err(
                ctx.err(span, format!("unknown field kind `{}` (expected {})", f.kind, known.join(", ")))
            );
        };
        let (natural, align) = kind.size_align().unwrap_or((f.size.unwrap_or(4), f.size.unwrap_or(4)));
        if kind == FieldKind::Int && ![1, 2, 4, 8].contains(&natural) {
            return Err(
                ctx.err(span, format!("field `{}`: int size must be 1, 2, 4 or 8, not {natural}", f.name))
            );
        }
        if kind != FieldKind::Int && f.size.is_some_and(|s| s != natural) {
            return Err(ctx.err(span, format!("field `{}`: a {} is {natural} bytes", f.name, f.kind)));
        }
        let target = field_target(kind, f).map_err(|m| ctx.err(span.clone(), m))?;
        let offset = f.offset.unwrap_or_else(|| next.div_ceil(align) * align);
        if offset % align != 0 {
            return Err(
                ctx.err(span, format!("field `{}` at offset {offset} is not {align}-byte aligned", f.name))
            );
        }
        if offset < next {
            return Err(ctx.err(
                span,
                format!("field `{}` at offset {offset} overlaps the previous field (ends at {next})", f.name),
            ));
        }
        if out.iter().any(|o| o.name == f.name) {
            return Err(ctx.err(span, format!("field `{}` declared twice", f.name)));
        }
        next = offset + natural;
        max_align = max_align.max(align);
        out.push(Field { name: f.name.clone(), kind, offset, size: natural, target });
    }
    let size = match value_size {
        Some(s) if s < next => {
            return Err(
                ctx.err(owner, format!("value_size {s} is smaller than the fields (which end at {next})"))
            )
        }
        Some(s) => s,
        None => next.div_ceil(max_align).max(1) * max_align,
    };
    Ok(ValueLayout { size, fields: out })
}

/// The `contains` / `pointee` of a field: required for graph roots and kptrs, refused elsewhere.
fn field_target(kind: FieldKind, f: &RawField) -> Result<Option<FieldTarget>, String> {
    let name = &f.name;
    match (&f.contains, &f.pointee) {
        (Some(_), _) if !kind.is_graph_root() => {
            Err(format!("field `{name}`: `contains` is for list_head and rb_root fields"))
        }
        (_, Some(_)) if !kind.is_kptr() => {
            Err(format!("field `{name}`: `pointee` is for kptr, kptr_untrusted and percpu_kptr fields"))
        }
        (Some(c), _) => match c.split_once(':') {
            Some((t, n)) if is_ident(t) && is_ident(n) => {
                Ok(Some(FieldTarget::Contains { type_name: t.into(), node: n.into() }))
            }
            _ => Err(format!("field `{name}`: contains = \"{c}\" (expected \"type:node_field\")")),
        },
        (None, Some(p)) if is_ident(p) => Ok(Some(FieldTarget::Pointee(p.clone()))),
        (None, Some(p)) => Err(format!("field `{name}`: pointee `{p}` is not a C identifier")),
        (None, None) if kind.is_graph_root() => Err(format!(
            "field `{name}`: a {} needs `contains = \"type:node_field\"` (its __contains)",
            kind.name()
        )),
        (None, None) if kind.is_kptr() => {
            Err(format!("field `{name}`: a {} needs `pointee = \"struct_name\"`", kind.name()))
        }
        (None, None) => Ok(None),
    }
}

/// A C identifier (BTF names of local types and fields must be).
fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|x| x.is_ascii_alphabetic() || x == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

#[cfg(test)]
mod tests;
