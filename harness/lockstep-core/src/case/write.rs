//! Writing [`Case`]s back as case-file TOML (`tests/corpus/README.md`): the one writer behind
//! generated corpora (`import-selftests`) and fuzz findings. The program is written from
//! `Case::text`; [`super::parse::parse_cases`] on the output gives the case back.

use std::fmt::Write;

use super::{Case, FieldKind, FieldTarget, MapType, ValueLayout, PROG_FLAGS};

/// A TOML basic string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// A TOML array of basic strings.
fn list(items: &[String]) -> String {
    let v: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", v.join(", "))
}

/// A value layout's `fields = [...]` inline tables.
fn fields(v: &ValueLayout) -> String {
    let fs: Vec<String> = v
        .fields
        .iter()
        .map(|f| match f.kind {
            FieldKind::Int => format!(
                "{{ name = {}, kind = \"int\", size = {}, offset = {} }}",
                q(&f.name),
                f.size,
                f.offset
            ),
            k => {
                let target = match &f.target {
                    Some(FieldTarget::Contains { type_name, node }) => {
                        format!(", contains = {}", q(&format!("{type_name}:{node}")))
                    }
                    Some(FieldTarget::Pointee(p)) => format!(", pointee = {}", q(p)),
                    None => String::new(),
                };
                format!("{{ name = {}, kind = \"{}\", offset = {}{target} }}", q(&f.name), k.name(), f.offset)
            }
        })
        .collect();
    format!("[{}]", fs.join(", "))
}

/// One `[[case]]` table (keys, then maps, global sections and expectations), preceded by
/// `comments` (each line written as a `# ` line).
pub fn case_toml(c: &Case, comments: &[String]) -> String {
    let mut o = String::new();
    for line in comments {
        for l in line.lines() {
            let _ = writeln!(o, "# {l}");
        }
    }
    let _ = writeln!(o, "[[case]]");
    let _ = writeln!(o, "name = {}", q(&c.name));
    let _ = writeln!(o, "prog_type = {}", q(c.prog_type.name()));
    if c.sleepable {
        let _ = writeln!(o, "sleepable = true");
    }
    let flags: Vec<String> =
        PROG_FLAGS.iter().filter(|(_, b)| c.prog_flags & b != 0).map(|(n, _)| n.to_string()).collect();
    if !flags.is_empty() {
        let _ = writeln!(o, "prog_flags = {}", list(&flags));
    }
    if c.log_level != 0 {
        let _ = writeln!(o, "log_level = {}", c.log_level);
    }
    if c.license != crate::case::DEFAULT_LICENSE {
        let _ = writeln!(o, "license = {}", q(&c.license));
    }
    if let Some(d) = &c.description {
        let _ = writeln!(o, "description = {}", q(d));
    }
    if !c.tags.is_empty() {
        let _ = writeln!(o, "tags = {}", list(&c.tags));
    }
    if !c.globals.is_empty() {
        let g: Vec<String> =
            c.globals.iter().map(|g| format!("{{ label = {}, args = {} }}", q(&g.label), g.args)).collect();
        let _ = writeln!(o, "globals = [{}]", g.join(", "));
    }
    if !c.extern_kfuncs.is_empty() {
        let _ = writeln!(o, "kfuncs = {}", list(&c.extern_kfuncs));
    }
    let text = c.text.trim_matches('\n');
    if text.contains("'''") {
        let _ = writeln!(o, "text = {}", q(&format!("{text}\n")));
    } else {
        let _ = writeln!(o, "text = '''\n{text}\n'''");
    }
    for m in c.maps.iter().filter(|m| !m.global_section) {
        let _ = writeln!(o, "\n[[case.map]]");
        let _ = writeln!(o, "name = {}", q(&m.name));
        let _ = writeln!(o, "type = {}", q(m.map_type.name()));
        let _ = writeln!(o, "key_size = {}", m.key_size);
        let _ = writeln!(o, "max_entries = {}", m.max_entries);
        if !m.btf {
            let _ = writeln!(o, "btf = false");
        }
        if m.flags != 0 {
            let _ = writeln!(o, "flags = {}", m.flags);
        }
        if m.map_type != MapType::ProgArray && !m.map_type.is_map_in_map() {
            let _ = writeln!(o, "value_size = {}", m.value.size);
            let _ = writeln!(o, "fields = {}", fields(&m.value));
        }
        if let Some(i) = &m.inner {
            let _ = writeln!(o, "\n[case.map.inner]");
            let _ = writeln!(o, "type = {}", q(i.map_type.name()));
            let _ = writeln!(o, "key_size = {}", i.key_size);
            let _ = writeln!(o, "max_entries = {}", i.max_entries);
            if !i.btf {
                let _ = writeln!(o, "btf = false");
            }
            if i.flags != 0 {
                let _ = writeln!(o, "flags = {}", i.flags);
            }
            let _ = writeln!(o, "value_size = {}", i.value.size);
            let _ = writeln!(o, "fields = {}", fields(&i.value));
        }
    }
    for m in c.maps.iter().filter(|m| m.global_section) {
        let _ = writeln!(o, "\n[[case.global]]");
        let _ = writeln!(o, "section = {}", q(&m.name));
        let _ = writeln!(o, "fields = {}", fields(&m.value));
    }
    for t in &c.types {
        let _ = writeln!(o, "\n[[case.type]]");
        let _ = writeln!(o, "name = {}", q(&t.name));
        let _ = writeln!(o, "size = {}", t.layout.size);
        let _ = writeln!(o, "fields = {}", fields(&t.layout));
    }
    for (p, e) in &c.expect {
        let _ = writeln!(o, "\n[case.expect.{}]", q(p));
        let _ = writeln!(o, "verdict = {}", q(e.verdict.as_str()));
        if let Some(i) = e.insn {
            let _ = writeln!(o, "insn = {i}");
        }
        if let Some(m) = &e.message {
            let _ = writeln!(o, "message = {}", q(m));
        }
        if !e.msgs.is_empty() {
            let _ = writeln!(o, "msgs = {}", list(&e.msgs));
        }
        if let Some(s) = &e.source {
            let _ = writeln!(o, "source = {}", q(s));
        }
    }
    o
}

/// A whole case file holding `cases`, with a header comment.
pub fn case_file(header: &str, cases: &[Case]) -> String {
    let mut s = String::new();
    for l in header.lines() {
        let _ = writeln!(s, "# {l}");
    }
    for c in cases {
        s.push('\n');
        s.push_str(&case_toml(c, &[]));
    }
    s
}
