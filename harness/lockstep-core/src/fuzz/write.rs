//! Writing a case back as case-file TOML (the format of `tests/corpus/README.md`) and as the insta
//! snapshot the corpus test (`tests/model_corpus.rs`) would record for it, so a minimised
//! disagreement can join the corpus by moving two files.

use std::fmt::Write;

use crate::case::{Case, FieldKind, MapSpec, MapType, ValueLayout};
use crate::corpus::{check_all, snapshot_text};
use crate::profile::{KernelProfile, ModuleKfuncs};

fn map_type_name(t: MapType) -> &'static str {
    match t {
        MapType::Hash => "hash",
        MapType::Array => "array",
        MapType::ProgArray => "prog_array",
        MapType::PercpuHash => "percpu_hash",
        MapType::PercpuArray => "percpu_array",
        MapType::LruHash => "lru_hash",
        MapType::CgroupStorage => "cgroup_storage",
        MapType::SkStorage => "sk_storage",
    }
}

/// A TOML basic string.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

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
            FieldKind::SpinLock => {
                format!("{{ name = {}, kind = \"spin_lock\", offset = {} }}", q(&f.name), f.offset)
            }
            FieldKind::ResSpinLock => {
                format!("{{ name = {}, kind = \"res_spin_lock\", offset = {} }}", q(&f.name), f.offset)
            }
        })
        .collect();
    format!("[{}]", fs.join(", "))
}

fn map_table(m: &MapSpec) -> String {
    let mut s = String::new();
    if m.global_section {
        let _ = writeln!(s, "\n[[case.global]]\nsection = {}\nfields = {}", q(&m.name), fields(&m.value));
        return s;
    }
    let _ = writeln!(s, "\n[[case.map]]\nname = {}\ntype = \"{}\"", q(&m.name), map_type_name(m.map_type));
    let _ = writeln!(s, "key_size = {}\nmax_entries = {}\nbtf = {}", m.key_size, m.max_entries, m.btf);
    if m.flags != 0 {
        let _ = writeln!(s, "flags = {}", m.flags);
    }
    if m.map_type != MapType::ProgArray {
        let _ = writeln!(s, "value_size = {}\nfields = {}", m.value.size, fields(&m.value));
    }
    s
}

/// `case` as a `[[case]]` table (keys, then maps, global sections and expectations).
pub fn case_toml(case: &Case) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "[[case]]\nname = {}\nprog_type = \"{}\"", q(&case.name), case.prog_type.name());
    if case.sleepable {
        let _ = writeln!(s, "sleepable = true");
    }
    if case.prog_flags != 0 {
        let names: Vec<String> = crate::case::PROG_FLAGS
            .iter()
            .filter(|(_, b)| case.prog_flags & b != 0)
            .map(|(n, _)| q(n))
            .collect();
        let _ = writeln!(s, "prog_flags = [{}]", names.join(", "));
    }
    if case.log_level != 0 {
        let _ = writeln!(s, "log_level = {}", case.log_level);
    }
    if let Some(d) = &case.description {
        let _ = writeln!(s, "description = {}", q(d));
    }
    if !case.tags.is_empty() {
        let _ = writeln!(s, "tags = [{}]", case.tags.iter().map(|t| q(t)).collect::<Vec<_>>().join(", "));
    }
    if !case.globals.is_empty() {
        let g: Vec<String> = case
            .globals
            .iter()
            .map(|g| format!("{{ label = {}, args = {} }}", q(&g.label), g.args))
            .collect();
        let _ = writeln!(s, "globals = [{}]", g.join(", "));
    }
    if !case.extern_kfuncs.is_empty() {
        let _ = writeln!(
            s,
            "kfuncs = [{}]",
            case.extern_kfuncs.iter().map(|k| q(k)).collect::<Vec<_>>().join(", ")
        );
    }
    let _ = writeln!(s, "text = '''\n{}\n'''", case.text.trim_end_matches('\n').trim_start_matches('\n'));
    for m in case.maps.iter().filter(|m| !m.global_section) {
        s.push_str(&map_table(m));
    }
    for m in case.maps.iter().filter(|m| m.global_section) {
        s.push_str(&map_table(m));
    }
    for (profile, e) in &case.expect {
        let _ = writeln!(s, "\n[case.expect.{}]\nverdict = \"{}\"", q(profile), e.verdict.as_str());
        if let Some(i) = e.insn {
            let _ = writeln!(s, "insn = {i}");
        }
        if let Some(m) = &e.message {
            let _ = writeln!(s, "message = {}", q(m));
        }
        if let Some(src) = &e.source {
            let _ = writeln!(s, "source = {}", q(src));
        }
        if !e.msgs.is_empty() {
            let _ = writeln!(s, "msgs = [{}]", e.msgs.iter().map(|m| q(m)).collect::<Vec<_>>().join(", "));
        }
    }
    s
}

/// A whole case file holding `cases`, with a header comment.
pub fn case_file(header: &str, cases: &[Case]) -> String {
    let mut s = String::new();
    for l in header.lines() {
        let _ = writeln!(s, "# {l}");
    }
    for c in cases {
        s.push('\n');
        s.push_str(&case_toml(c));
    }
    s
}

/// The insta snapshot file `tests/model_corpus.rs` records for a corpus file named `stem` holding
/// `cases` (the model's verdicts on every profile).
pub fn snapshot_file(cases: &[Case], module: &ModuleKfuncs) -> String {
    let rows = check_all(cases, &KernelProfile::all(), module);
    format!(
        "---\nsource: harness/lockstep-core/../../tests/model_corpus.rs\nexpression: out\n---\n{}",
        snapshot_text(&rows)
    )
}
