//! GitHub Actions workflow commands: an `::error file=...,line=...::` annotation for every row
//! that disagrees (or crashed), pointing at the case's line in its case file, so the pull
//! request's diff shows it. Pure: the caller prints the lines.

use std::path::{Component, Path, PathBuf};

use crate::report::{Outcome, RunRow};

/// Prints the annotations of `rows` if [`wanted`]: on stdout, or on stderr when stdout carries
/// JSON (`json_on_stdout`); the runner reads workflow commands from both.
pub fn emit(flag: bool, json_on_stdout: bool, rows: &[RunRow]) {
    if !wanted(flag, std::env::var("GITHUB_ACTIONS").ok().as_deref()) {
        return;
    }
    let ws = std::env::var_os("GITHUB_WORKSPACE").map(PathBuf::from).or_else(|| std::env::current_dir().ok());
    let text = annotations(rows, ws.as_deref());
    if json_on_stdout {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

/// Whether annotations are wanted: `--github`, or running in GitHub Actions (`GITHUB_ACTIONS=true`).
pub fn wanted(flag: bool, github_actions_env: Option<&str>) -> bool {
    flag || github_actions_env == Some("true")
}

/// `%`, CR and LF escaped as GitHub wants in a command's message.
fn escape_data(s: &str) -> String {
    s.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
}

/// Additionally `:` and `,`, for a property value.
fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// `path` without `.`/`..` components (lexically), relative to `workspace` when under it.
pub fn repo_path(path: &str, workspace: Option<&Path>) -> String {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    match workspace.and_then(|w| out.strip_prefix(w).ok()) {
        Some(rel) => rel.display().to_string(),
        None => out.display().to_string(),
    }
}

/// The annotation of one row, if it needs one: disagreements and crashes are errors, kernel
/// WARNs warnings; agreements, unsupported cases and infrastructure problems get none (the
/// latter are the run's, not the case's).
pub fn annotation(r: &RunRow, workspace: Option<&Path>) -> Option<String> {
    let level = if r.outcome == Outcome::Crash {
        "error"
    } else if r.outcome == Outcome::Warn {
        "warning"
    } else if r.agreement.is_disagreement() {
        "error"
    } else {
        return None;
    };
    let what = match (r.outcome, r.agreement) {
        (Outcome::Crash, _) => "kernel crash".to_string(),
        (Outcome::Warn, _) => "kernel WARN".to_string(),
        (_, a) => format!("{} disagreement", a.as_str()),
    };
    let side = |v: Option<&str>, insn: Option<usize>, msg: Option<&str>| {
        let at = insn.map(|i| format!(" at insn {i}")).unwrap_or_default();
        format!("{}{at}{}", v.unwrap_or("-"), msg.map(|m| format!(": {m}")).unwrap_or_default())
    };
    let message = format!(
        "{} on {} (profile {}): kernel {}; model {}{}",
        r.case,
        r.kernel,
        r.profile,
        side(r.kernel_verdict.map(|v| v.as_str()), r.kernel_insn, r.kernel_message.as_deref()),
        side(Some(r.model_verdict.as_str()), r.model_insn, r.model_message.as_deref()),
        r.note.as_deref().map(|n| format!("\n{n}")).unwrap_or_default()
    );
    Some(format!(
        "::{level} file={},line={},title={}::{}",
        escape_property(&repo_path(&r.file, workspace)),
        r.line,
        escape_property(&format!("lockstep: {what}")),
        escape_data(&message)
    ))
}

/// The annotations of `rows`, one per line (`GITHUB_WORKSPACE` makes paths repository-relative).
pub fn annotations(rows: &[RunRow], workspace: Option<&Path>) -> String {
    rows.iter().filter_map(|r| annotation(r, workspace)).map(|a| a + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_row;
    use lockstep_core::compare::Agreement;
    use lockstep_core::verdict::VerdictKind;

    #[test]
    fn a_disagreement_points_at_the_case_line() {
        let r = RunRow {
            file: "/w/repo/harness/lockstep/../../tests/corpus/calls.toml".into(),
            line: 42,
            kernel_message: Some("function calls are not allowed while holding a lock".into()),
            kernel_insn: Some(5),
            ..test_row("call_a, b", "debian:7.3", VerdictKind::Reject, Agreement::Verdict)
        };
        let a = annotation(&r, Some(Path::new("/w/repo"))).unwrap();
        assert_eq!(
            a,
            "::error file=tests/corpus/calls.toml,line=42,title=lockstep%3A verdict disagreement::call_a, b on \
             debian:7.3 (profile 7.2): kernel reject at insn 5: function calls are not allowed while holding a \
             lock; model accept"
        );
    }

    #[test]
    fn only_disagreements_crashes_and_warnings_are_annotated() {
        let ok = test_row("a", "k", VerdictKind::Accept, Agreement::Agree);
        assert_eq!(annotation(&ok, None), None);
        assert_eq!(annotation(&test_row("u", "k", VerdictKind::Accept, Agreement::Unsupported), None), None);
        assert_eq!(annotation(&test_row("i", "k", VerdictKind::Accept, Agreement::Infra), None), None);
        let crash = RunRow {
            outcome: Outcome::Crash,
            note: Some("BUG: x\n100%".into()),
            ..test_row("c", "k", VerdictKind::Accept, Agreement::Infra)
        };
        let a = annotation(&crash, None).unwrap();
        assert!(a.starts_with("::error file=f.toml,line=1,title=lockstep%3A kernel crash::"), "{a}");
        assert!(a.ends_with("%0ABUG: x%0A100%25"), "{a}");
        let warn = RunRow { outcome: Outcome::Warn, ..ok.clone() };
        assert!(annotation(&warn, None).unwrap().starts_with("::warning "));
        assert_eq!(annotations(&[ok, crash], None).lines().count(), 1);
    }

    #[test]
    fn paths_and_switch() {
        assert_eq!(repo_path("./a/../b/c.toml", None), "b/c.toml");
        assert_eq!(repo_path("/x/y.toml", Some(Path::new("/w"))), "/x/y.toml");
        assert!(wanted(false, Some("true")) && wanted(true, None) && !wanted(false, Some("false")));
    }
}
