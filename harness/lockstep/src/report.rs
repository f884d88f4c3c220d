//! Rows of `lockstep run` (one per case and kernel) and their renderings: the verdict matrix,
//! JSON lines, JUnit XML and Markdown. Pure formatting; files are written by the caller.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use lockstep_core::compare::Agreement;
use lockstep_core::verdict::VerdictKind;
use serde::{Deserialize, Serialize};

/// How a case ended on a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The verifier gave a verdict (or the case could not be set up: see `setup_error`).
    Ran,
    /// The kernel printed a WARN while the case ran (the verdict is kept).
    Warn,
    /// The case killed the guest twice (panic, oops, hang).
    Crash,
    /// Never ran: no kernel, boot failure, or the test module it needs is not loaded.
    NotRun,
}

/// One case on one kernel (a JSON line of `lockstep run --json`, read back by `report merge`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    /// The case's position in the run's case list (the same in every shard of a run).
    #[serde(default)]
    pub index: usize,
    pub case: String,
    pub file: String,
    pub line: usize,
    pub kernel: String,
    /// Exact version of the kernel package (or `uname -r` in host mode).
    pub package_version: String,
    /// `uname -r` in the guest.
    pub release: String,
    pub profile: String,
    pub outcome: Outcome,
    pub kernel_verdict: Option<VerdictKind>,
    pub kernel_message: Option<String>,
    pub kernel_insn: Option<usize>,
    pub kernel_errno: Option<i32>,
    pub model_verdict: VerdictKind,
    pub model_message: Option<String>,
    pub model_insn: Option<usize>,
    pub agreement: Agreement,
    /// Whether the kernel met the case's own expectation for this profile (e.g. an imported
    /// selftest's annotation); None without an expectation or a kernel verdict.
    pub kernel_expected: Option<bool>,
    /// Whether the model met it.
    pub model_expected: Option<bool>,
    /// Why there is no kernel verdict, the console excerpt of a crash, or a setup error.
    pub note: Option<String>,
    pub verification_usec: Option<u64>,
    pub insns_processed: Option<u64>,
    /// The full verifier log, when asked for (`--log`) or when a load failed unexpectedly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// Counts per agreement class and outcome.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub rows: usize,
    pub by_agreement: BTreeMap<&'static str, usize>,
    pub crashes: usize,
    pub warnings: usize,
    pub not_run: usize,
}

/// Totals of `rows`.
pub fn summarize(rows: &[RunRow]) -> Summary {
    let mut s = Summary { rows: rows.len(), ..Default::default() };
    for r in rows {
        *s.by_agreement.entry(r.agreement.as_str()).or_default() += 1;
        match r.outcome {
            Outcome::Crash => s.crashes += 1,
            Outcome::Warn => s.warnings += 1,
            Outcome::NotRun => s.not_run += 1,
            Outcome::Ran => {}
        }
    }
    s
}

fn short(v: Option<VerdictKind>, insn: Option<usize>) -> String {
    match (v, insn) {
        (Some(VerdictKind::Reject), Some(i)) => format!("reject@{i}"),
        (Some(k), _) => k.as_str().to_string(),
        (None, _) => "-".to_string(),
    }
}

fn cell(r: &RunRow) -> String {
    let k = match r.outcome {
        Outcome::Crash => "CRASH".to_string(),
        Outcome::NotRun => "not-run".to_string(),
        _ => short(r.kernel_verdict, r.kernel_insn),
    };
    let m = short(Some(r.model_verdict), r.model_insn);
    let mark = match r.agreement {
        Agreement::Agree => "ok",
        Agreement::Unsupported => "~",
        Agreement::Infra => "!",
        _ => "DIFF",
    };
    format!("{k} / {m} {mark}")
}

/// Kernels in first-seen order.
fn kernels(rows: &[RunRow]) -> Vec<String> {
    let mut ks: Vec<String> = Vec::new();
    for r in rows {
        if !ks.contains(&r.kernel) {
            ks.push(r.kernel.clone());
        }
    }
    ks
}

/// The verdict matrix: one line per case, one column per kernel ("kernel / model agree?").
pub fn matrix(rows: &[RunRow]) -> String {
    let ks = kernels(rows);
    let mut by_case: BTreeMap<(&str, usize, &str), BTreeMap<&str, &RunRow>> = BTreeMap::new();
    for r in rows {
        by_case.entry((r.file.as_str(), r.line, r.case.as_str())).or_default().insert(r.kernel.as_str(), r);
    }
    let width = by_case.keys().map(|(_, _, c)| c.len()).max().unwrap_or(4).clamp(4, 60);
    let mut out = format!("{:<width$}", "case");
    for k in &ks {
        let _ = write!(out, "  {:<30}", format!("{k} (kernel / model)"));
    }
    out.push('\n');
    for ((_, _, case), per) in &by_case {
        let _ = write!(out, "{:<width$}", case);
        for k in &ks {
            let c = per.get(k.as_str()).map_or("-".to_string(), |r| cell(r));
            let _ = write!(out, "  {c:<30}");
        }
        out.push('\n');
    }
    out
}

/// One line of summary per kernel.
pub fn summary_lines(rows: &[RunRow]) -> String {
    let mut out = String::new();
    for k in kernels(rows) {
        let mine: Vec<RunRow> = rows.iter().filter(|r| r.kernel == k).cloned().collect();
        let s = summarize(&mine);
        let pv = mine.first().map_or("", |r| r.package_version.as_str());
        let classes: Vec<String> = s.by_agreement.iter().map(|(c, n)| format!("{c} {n}")).collect();
        let _ = writeln!(
            out,
            "{k} ({pv}, profile {}): {} cases: {}; crashes {}, warnings {}, not run {}",
            mine.first().map_or("", |r| r.profile.as_str()),
            s.rows,
            classes.join(", "),
            s.crashes,
            s.warnings,
            s.not_run
        );
        let with = mine.iter().filter(|r| r.model_expected.is_some()).count();
        if with > 0 {
            let kernel = mine.iter().filter(|r| r.kernel_expected == Some(true)).count();
            let model = mine.iter().filter(|r| r.model_expected == Some(true)).count();
            let _ = writeln!(
                out,
                "  own expectations ({with} cases): kernel meets {kernel}, model meets {model}"
            );
            for r in mine.iter().filter(|r| r.kernel_expected == Some(false)) {
                let _ =
                    writeln!(out, "  kernel misses the expectation of {} ({}:{})", r.case, r.file, r.line);
            }
        }
    }
    out
}

/// JSON lines, one per row.
pub fn json_lines(rows: &[RunRow]) -> String {
    rows.iter().map(|r| serde_json::to_string(r).expect("rows serialise") + "\n").collect()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn describe(r: &RunRow) -> String {
    format!(
        "kernel {} ({}): {} at {:?}: {}\nmodel {}: {} at {:?}: {}\n{}",
        r.kernel,
        r.package_version,
        r.kernel_verdict.map_or("-", |v| v.as_str()),
        r.kernel_insn,
        r.kernel_message.as_deref().unwrap_or(""),
        r.profile,
        r.model_verdict.as_str(),
        r.model_insn,
        r.model_message.as_deref().unwrap_or(""),
        r.note.as_deref().unwrap_or("")
    )
}

/// JUnit XML: a test suite per kernel, a test case per case; disagreements are failures, crashes
/// and infrastructure problems errors, unsupported cases skipped.
pub fn junit(rows: &[RunRow]) -> String {
    let mut out =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"lockstep run\">\n");
    for k in kernels(rows) {
        let mine: Vec<&RunRow> = rows.iter().filter(|r| r.kernel == k).collect();
        let failures = mine.iter().filter(|r| r.agreement.is_disagreement()).count();
        let errors =
            mine.iter().filter(|r| r.agreement == Agreement::Infra || r.outcome == Outcome::Crash).count();
        let skipped = mine.iter().filter(|r| r.agreement == Agreement::Unsupported).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\">",
            xml_escape(&k),
            mine.len()
        );
        for r in mine {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\"",
                xml_escape(&r.file),
                xml_escape(&r.case)
            );
            let body = xml_escape(&describe(r));
            if r.outcome == Outcome::Crash || r.agreement == Agreement::Infra {
                let _ = writeln!(
                    out,
                    ">\n      <error message=\"{}\">{body}</error>\n    </testcase>",
                    r.agreement.as_str()
                );
            } else if r.agreement.is_disagreement() {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{} disagreement\">{body}</failure>\n    </testcase>",
                    r.agreement.as_str()
                );
            } else if r.agreement == Agreement::Unsupported {
                let _ = writeln!(out, ">\n      <skipped message=\"model: unsupported\"/>\n    </testcase>");
            } else {
                out.push_str("/>\n");
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', "<br>")
}

/// Markdown: the summary per kernel and a table of every row that is not an agreement.
pub fn markdown(rows: &[RunRow]) -> String {
    let mut out = String::from("# lockstep run\n\n");
    for l in summary_lines(rows).lines() {
        let _ = writeln!(out, "- {}", md(l));
    }
    let odd: Vec<&RunRow> = rows.iter().filter(|r| r.agreement != Agreement::Agree).collect();
    if odd.is_empty() {
        out.push_str("\nEvery case agrees with the model on every kernel.\n");
        return out;
    }
    out.push_str(
        "\n| case | kernel | class | kernel verdict | model verdict | note |\n|---|---|---|---|---|---|\n",
    );
    for r in odd {
        let k = format!(
            "{} {}",
            short(r.kernel_verdict, r.kernel_insn),
            r.kernel_message.as_deref().unwrap_or("")
        );
        let m = format!(
            "{} {}",
            short(Some(r.model_verdict), r.model_insn),
            r.model_message.as_deref().unwrap_or("")
        );
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            md(&r.case),
            md(&r.kernel),
            r.agreement.as_str(),
            md(k.trim()),
            md(m.trim()),
            md(r.note.as_deref().unwrap_or(""))
        );
    }
    out
}

/// Markdown: the kernel-against-kernel differences (empty when there are none).
pub fn markdown_differences(diffs: &[crate::kernel_diff::KernelDifference]) -> String {
    if diffs.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n## Kernel against kernel\n\n| case | judgement | verdicts (kernel, profile: verdict, model) |\n|---|---|---|\n");
    for d in diffs {
        let sides: Vec<String> = d
            .kernels
            .iter()
            .map(|k| {
                format!(
                    "{} ({}): {} {} ({})",
                    k.kernel,
                    k.profile,
                    short(Some(k.verdict.verdict), k.verdict.insn),
                    k.verdict.message.as_deref().unwrap_or(""),
                    k.agreement.as_str()
                )
            })
            .collect();
        let _ = writeln!(out, "| {} | {} | {} |", md(&d.case), d.judgement.as_str(), md(&sides.join("\n")));
    }
    out
}

/// A row for unit tests: `case` on `kernel` (profile 7.2, file `f.toml`), the kernel's verdict
/// `v` without message, the model accepting, classified `a`.
#[cfg(test)]
pub(crate) fn test_row(case: &str, kernel: &str, v: VerdictKind, a: Agreement) -> RunRow {
    RunRow {
        index: 0,
        case: case.into(),
        file: "f.toml".into(),
        line: 1,
        kernel: kernel.into(),
        package_version: "1.0".into(),
        release: "r".into(),
        profile: "7.2".into(),
        outcome: Outcome::Ran,
        kernel_verdict: Some(v),
        kernel_message: None,
        kernel_insn: None,
        kernel_errno: None,
        model_verdict: VerdictKind::Accept,
        model_message: None,
        model_insn: None,
        agreement: a,
        kernel_expected: None,
        model_expected: None,
        note: None,
        verification_usec: None,
        insns_processed: None,
        log: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(case: &str, kernel: &str, a: Agreement, o: Outcome) -> RunRow {
        RunRow {
            outcome: o,
            kernel_message: Some("a <b> & c".into()),
            kernel_insn: Some(3),
            kernel_errno: Some(13),
            ..test_row(case, kernel, VerdictKind::Reject, a)
        }
    }

    #[test]
    fn junit_counts_and_escapes() {
        let rows = vec![
            row("a", "k1", Agreement::Verdict, Outcome::Ran),
            row("b", "k1", Agreement::Agree, Outcome::Ran),
            row("c", "k1", Agreement::Infra, Outcome::Crash),
            row("d", "k1", Agreement::Unsupported, Outcome::Ran),
        ];
        let x = junit(&rows);
        assert!(x.contains("tests=\"4\" failures=\"1\" errors=\"1\" skipped=\"1\""), "{x}");
        assert!(x.contains("a &lt;b&gt; &amp; c"));
        assert!(!x.contains("a <b>"));
    }

    #[test]
    fn matrix_has_a_column_per_kernel_and_marks_differences() {
        let rows = vec![
            row("a", "k1", Agreement::Verdict, Outcome::Ran),
            row("a", "k2", Agreement::Infra, Outcome::NotRun),
        ];
        let m = matrix(&rows);
        let lines: Vec<&str> = m.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("k1") && lines[0].contains("k2"));
        assert!(lines[1].contains("reject@3 / accept DIFF") && lines[1].contains("not-run"));
        let s = summarize(&rows);
        assert_eq!((s.not_run, s.by_agreement["verdict"]), (1, 1));
    }

    #[test]
    fn markdown_lists_only_non_agreements() {
        let rows = vec![
            row("a|b", "k1", Agreement::Message, Outcome::Ran),
            row("ok", "k1", Agreement::Agree, Outcome::Ran),
        ];
        let m = markdown(&rows);
        assert!(m.contains("a\\|b") && !m.contains("| ok |"));
        let all_ok = markdown(&[row("ok", "k1", Agreement::Agree, Outcome::Ran)]);
        assert!(all_ok.contains("Every case agrees"));
    }
}
