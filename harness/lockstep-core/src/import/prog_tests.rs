//! Expectations that the selftests keep in their user-space half, `prog_tests/NAME.c`, instead
//! of decl tags: `{ "prog_name", "expected message" }` failure tables (linked_list.c,
//! spin_lock.c), lists of programs that must load (task_kfunc.c), kfunc_call.c's tables.
//! `scripts/extract-prog-tests.py` reads them from the kernel tree at build time into a
//! sidecar beside the objects ([`SIDECAR`], one JSON object a line); this module parses it and
//! gives the programs without annotations their table's expectation, naming the table's line.

use serde::Deserialize;

use crate::case::{Case, Expectation};
use crate::verdict::VerdictKind;

/// The sidecar's file name, in the directory of the objects it describes.
pub const SIDECAR: &str = "prog_tests.jsonl";

/// One table entry: what `prog_tests/*.c` expects of one program of one object.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct TableEntry {
    /// The object's file name (`linked_list_fail.bpf.o`).
    pub object: String,
    /// The program (function) name.
    pub program: String,
    /// `accept` or `reject`.
    pub verdict: String,
    /// Patterns the verifier log must contain, in order ([`crate::msgpat`] syntax).
    #[serde(default)]
    pub msgs: Vec<String>,
    /// The return value the test expects of a test run, as written (not checked here).
    #[serde(default)]
    pub retval: Option<String>,
    /// `prog_tests/FILE.c:LINE` of the entry.
    pub source: String,
    /// Which kind of table it came from.
    #[serde(default)]
    pub how: String,
}

/// A sidecar line that is not a table entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct SidecarError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

/// Parses a sidecar's text (`file` names it in errors): one entry per non-empty line, each with
/// a known verdict and patterns that compile.
pub fn parse(file: &str, text: &str) -> Result<Vec<TableEntry>, SidecarError> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let err = |reason: String| SidecarError { file: file.to_string(), line: i + 1, reason };
        let e: TableEntry = serde_json::from_str(l).map_err(|e| err(e.to_string()))?;
        if e.verdict != "accept" && e.verdict != "reject" {
            return Err(err(format!("verdict `{}` is neither accept nor reject", e.verdict)));
        }
        crate::msgpat::validate(&e.msgs).map_err(|x| err(x.to_string()))?;
        out.push(e);
    }
    Ok(out)
}

/// Gives each program of object `object_file_name` among `cases` that has no expectation of
/// its own (no annotations) the expectation of its table entry. Returns how many it gave.
pub fn apply(cases: &mut [Case], object_file_name: &str, entries: &[TableEntry]) -> usize {
    let mut given = 0;
    for c in cases.iter_mut().filter(|c| c.expect.is_empty()) {
        let Some(obj) = &c.object else { continue };
        if obj.file_name != object_file_name {
            continue;
        }
        let Some(e) = entries.iter().find(|e| e.object == obj.file_name && e.program == obj.program) else {
            continue;
        };
        let verdict = if e.verdict == "reject" { VerdictKind::Reject } else { VerdictKind::Accept };
        let how = if e.how.is_empty() { String::new() } else { format!(" ({})", e.how) };
        c.expect.insert(
            "*".to_string(),
            Expectation {
                verdict,
                insn: None,
                message: None,
                source: Some(format!("{}{how}", e.source)),
                msgs: e.msgs.clone(),
                retval: None,
            },
        );
        if let Some(r) = &e.retval {
            c.tags.push(format!("retval:{r}"));
        }
        given += 1;
    }
    given
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::ObjectSource;

    const SIDECAR_TEXT: &str = concat!(
        r#"{"object": "linked_list_fail.bpf.o", "program": "kptr_missing_lock_push_front", "verdict": "reject", "msgs": ["bpf_spin_lock at off=40 must be held for bpf_list_head"], "retval": null, "source": "prog_tests/linked_list.c:27", "how": "failure table linked_list_fail_tests"}"#,
        "\n",
        r#"{"object": "test_spin_lock_fail.bpf.o", "program": "lock_id_global_zero", "verdict": "reject", "msgs": ["{{; R1=map_value\\(map=\\.data\\.A,ks=4,vs=4\\)\n2: \\(85\\) call bpf_this_cpu_ptr#154\nR1 type=map_value expected=percpu_ptr_}}"], "retval": null, "source": "prog_tests/spin_lock.c:20", "how": "failure table spin_lock_fail_tests"}"#,
        "\n",
        r#"{"object": "kfunc_call_test.bpf.o", "program": "kfunc_call_test4", "verdict": "accept", "msgs": [], "retval": "- 1234", "source": "prog_tests/kfunc_call.c:80", "how": "table kfunc_tests"}"#,
        "\n"
    );

    fn object_case(file: &str, prog: &str) -> Case {
        let mut c = Case::new(prog, crate::case::ProgType::SchedCls, Default::default(), "");
        c.object = Some(ObjectSource {
            file_name: file.to_string(),
            bytes: std::sync::Arc::from(&[][..]),
            program: prog.to_string(),
            section: String::new(),
            func_info: false,
            autoload: vec![prog.to_string()],
            log_level: 1,
            prog_flags: 0,
            test_run: false,
            struct_ops: None,
        });
        c
    }

    #[test]
    fn entries_become_expectations_of_unannotated_programs_only() {
        let entries = parse("prog_tests.jsonl", SIDECAR_TEXT).unwrap();
        assert_eq!(entries.len(), 3);
        let mut cases = vec![
            object_case("linked_list_fail.bpf.o", "kptr_missing_lock_push_front"),
            object_case("linked_list_fail.bpf.o", "not_in_the_table"),
            object_case("kfunc_call_test.bpf.o", "kfunc_call_test4"),
        ];
        // an annotated program keeps its own expectation
        let mut annotated = object_case("test_spin_lock_fail.bpf.o", "lock_id_global_zero");
        annotated.expect.insert(
            "*".into(),
            Expectation {
                verdict: VerdictKind::Accept,
                insn: None,
                message: None,
                source: None,
                retval: None,
                msgs: vec![],
            },
        );
        cases.push(annotated);
        assert_eq!(apply(&mut cases, "linked_list_fail.bpf.o", &entries), 1);
        assert_eq!(apply(&mut cases, "kfunc_call_test.bpf.o", &entries), 1);
        assert_eq!(apply(&mut cases, "test_spin_lock_fail.bpf.o", &entries), 0);
        let e = &cases[0].expect["*"];
        assert_eq!(e.verdict, VerdictKind::Reject);
        assert_eq!(e.msgs, vec!["bpf_spin_lock at off=40 must be held for bpf_list_head"]);
        assert_eq!(
            e.source.as_deref(),
            Some("prog_tests/linked_list.c:27 (failure table linked_list_fail_tests)")
        );
        assert!(cases[1].expect.is_empty(), "no table entry: stays without annotation");
        assert_eq!(cases[2].expect["*"].verdict, VerdictKind::Accept);
        assert_eq!(cases[2].tags, vec!["retval:- 1234"]);
        assert_eq!(cases[3].expect["*"].verdict, VerdictKind::Accept);
    }

    #[test]
    fn spin_lock_table_regex_spans_lines() {
        let entries = parse("p", SIDECAR_TEXT).unwrap();
        let log = "1: (18) r1 = 0xffff\n; R1=map_value(map=.data.A,ks=4,vs=4)\n2: (85) call bpf_this_cpu_ptr#154\nR1 type=map_value expected=percpu_ptr_\nprocessed 3 insns";
        assert!(crate::corpus::msgs_match(&entries[1].msgs, log));
        assert!(!crate::corpus::msgs_match(&entries[1].msgs, &log.replace("#154", "#155")));
    }

    #[test]
    fn bad_lines_name_their_line() {
        let e = parse("d/prog_tests.jsonl", "\n{\"object\": 1}\n").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("d/prog_tests.jsonl", 2));
        let bad = r#"{"object": "o", "program": "p", "verdict": "maybe", "source": "s"}"#;
        assert!(parse("f", bad).unwrap_err().reason.contains("neither accept nor reject"));
        let bad = r#"{"object": "o", "program": "p", "verdict": "reject", "msgs": ["{{("], "source": "s"}"#;
        assert!(parse("f", bad).unwrap_err().reason.contains("closing"));
    }
}
