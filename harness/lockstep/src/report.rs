//! Rows of `lockstep run` (one per case and kernel) and their renderings: the verdict matrix,
//! JSON lines, JUnit XML and Markdown. Pure formatting; files are written by the caller. The rows
//! themselves live in [`crate::run_row`] (which `kernel_diff` reads too).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use lockstep_core::compare::Agreement;
use lockstep_core::verdict::VerdictKind;
use serde::Serialize;

pub use crate::run_row::{unjudged, ExpectationMet, Outcome, RunRow};

/// Counts per agreement class and outcome.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub rows: usize,
    pub by_agreement: BTreeMap<&'static str, usize>,
    pub crashes: usize,
    pub warnings: usize,
    pub timeouts: usize,
    /// Guests lost without a kernel message.
    pub infra: usize,
    pub not_run: usize,
    /// Programs of object inputs the model cannot judge (`unsupported`) and those lockstep
    /// could not load (`infra`), and those neither judged ([`unjudged`]).
    pub object_unsupported: usize,
    pub object_infra: usize,
    pub object_unjudged: usize,
}

/// Totals of `rows`.
pub fn summarize(rows: &[RunRow]) -> Summary {
    let mut s = Summary { rows: rows.len(), ..Default::default() };
    for r in rows {
        *s.by_agreement.entry(r.agreement.as_str()).or_default() += 1;
        if r.from_object {
            s.object_unsupported += (r.model_verdict == VerdictKind::Unsupported) as usize;
            s.object_infra += (r.agreement == Agreement::Infra) as usize;
            s.object_unjudged += unjudged(r) as usize;
        }
        match r.outcome {
            Outcome::Crash => s.crashes += 1,
            Outcome::Warn => s.warnings += 1,
            Outcome::Timeout => s.timeouts += 1,
            Outcome::Infra => s.infra += 1,
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
        Outcome::Timeout => "TIMEOUT".to_string(),
        Outcome::Infra => "infra".to_string(),
        Outcome::NotRun => "not-run".to_string(),
        _ => short(r.kernel_verdict, r.kernel_insn),
    };
    let m = short(Some(r.model_verdict), r.model_insn);
    let mark = match r.agreement {
        Agreement::Agree => "ok",
        Agreement::Unsupported => "~",
        Agreement::Infra => "!",
        Agreement::Absent => "n/a",
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
            "{k} ({pv}, profile {}): {} cases: {}; crashes {}, warnings {}, timeouts {}, guests lost {}, not run {}",
            mine.first().map_or("", |r| r.profile.as_str()),
            s.rows,
            classes.join(", "),
            s.crashes,
            s.warnings,
            s.timeouts,
            s.infra,
            s.not_run
        );
        if mine.iter().any(|r| r.from_object) {
            let _ = writeln!(
                out,
                "  object programs: model cannot judge {}, lockstep could not load {}, judged by neither {}",
                s.object_unsupported, s.object_infra, s.object_unjudged
            );
        }
        let with = mine.iter().filter(|r| r.model_expected.is_some()).count();
        if with > 0 {
            let kernel_with = mine.iter().filter(|r| r.kernel_expected.is_some()).count();
            let kernel = mine.iter().filter(|r| r.kernel_expected == Some(true)).count();
            let model = mine.iter().filter(|r| r.model_expected == Some(true)).count();
            // An expectation of `unsupported`, or a case without a kernel verdict, has nothing
            // for the kernel to meet.
            let _ = writeln!(
                out,
                "  own expectations ({with} cases): kernel meets {kernel} of {kernel_with}, model meets {model} of {with}"
            );
            for r in mine.iter().filter(|r| r.kernel_expected == Some(false)) {
                let _ = writeln!(
                    out,
                    "  kernel misses the expectation of {} ({}:{}): a disagreement (exit 1)",
                    r.case, r.file, r.line
                );
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

/// Whether a row is a JUnit error (no usable kernel verdict: crash, timeout, lost guest, not run).
fn is_error(r: &RunRow) -> bool {
    r.agreement == Agreement::Infra || matches!(r.outcome, Outcome::Crash | Outcome::Timeout | Outcome::Infra)
}

/// JUnit XML: a test suite per kernel, a test case per case; disagreements are failures, crashes
/// and infrastructure problems errors, unsupported cases and kfuncs absent from the kernel skipped.
pub fn junit(rows: &[RunRow]) -> String {
    let mut out =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"lockstep run\">\n");
    for k in kernels(rows) {
        let mine: Vec<&RunRow> = rows.iter().filter(|r| r.kernel == k).collect();
        let failures = mine.iter().filter(|r| r.agreement.is_disagreement()).count();
        let errors = mine.iter().filter(|r| is_error(r)).count();
        let skipped =
            mine.iter().filter(|r| matches!(r.agreement, Agreement::Unsupported | Agreement::Absent)).count();
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
            if is_error(r) {
                let what = if r.outcome == Outcome::Ran { r.agreement.as_str() } else { r.outcome.as_str() };
                let _ = writeln!(out, ">\n      <error message=\"{what}\">{body}</error>\n    </testcase>");
            } else if r.agreement.is_disagreement() {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{} disagreement\">{body}</failure>\n    </testcase>",
                    r.agreement.as_str()
                );
            } else if r.agreement == Agreement::Unsupported {
                let _ = writeln!(out, ">\n      <skipped message=\"model: unsupported\"/>\n    </testcase>");
            } else if r.agreement == Agreement::Absent {
                let _ = writeln!(
                    out,
                    ">\n      <skipped message=\"kfunc absent from this kernel\">{body}</skipped>\n    </testcase>"
                );
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

#[cfg(test)]
pub(crate) use crate::run_row::test_row;

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
            row("e", "k1", Agreement::Infra, Outcome::Timeout),
            row("f", "k1", Agreement::Absent, Outcome::Ran),
        ];
        let x = junit(&rows);
        assert!(x.contains("tests=\"6\" failures=\"1\" errors=\"2\" skipped=\"2\""), "{x}");
        assert!(x.contains("<skipped message=\"kfunc absent from this kernel\">"), "{x}");
        assert!(x.contains("<error message=\"timeout\">") && x.contains("<error message=\"crash\">"), "{x}");
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
    fn object_programs_judged_by_neither_side_are_counted_apart() {
        let obj = |case: &str, a: Agreement, model: VerdictKind| RunRow {
            from_object: true,
            retval: None,
            model_verdict: model,
            ..row(case, "k1", a, Outcome::Ran)
        };
        let rows = vec![
            obj("both", Agreement::Agree, VerdictKind::Reject),
            obj("kernel_only", Agreement::Unsupported, VerdictKind::Unsupported),
            obj("neither", Agreement::Infra, VerdictKind::Unsupported),
            obj("model_only", Agreement::Infra, VerdictKind::Accept),
            row("text", "k1", Agreement::Infra, Outcome::Ran),
        ];
        let s = summarize(&rows);
        assert_eq!((s.object_unsupported, s.object_infra, s.object_unjudged), (2, 2, 1));
        assert!(summary_lines(&rows)
            .contains("model cannot judge 2, lockstep could not load 2, judged by neither 1"));
        assert_eq!(ExpectationMet::of(true, None), Some(ExpectationMet::NotJudged));
        assert_eq!(ExpectationMet::of(true, Some(false)), Some(ExpectationMet::NotMet));
        assert_eq!(ExpectationMet::of(false, Some(true)), None);
    }

    #[test]
    fn summary_counts_kernel_expectations_apart_from_the_model_only_ones() {
        let mut unsupported = row("u", "k1", Agreement::Unsupported, Outcome::Ran);
        unsupported.model_expected = Some(true);
        let mut met = row("m", "k1", Agreement::Agree, Outcome::Ran);
        (met.model_expected, met.kernel_expected) = (Some(true), Some(true));
        let mut missed = row("x", "k1", Agreement::Agree, Outcome::Ran);
        (missed.model_expected, missed.kernel_expected) = (Some(true), Some(false));
        let s = summary_lines(&[unsupported, met, missed]);
        assert!(s.contains("own expectations (3 cases): kernel meets 1 of 2, model meets 3 of 3"), "{s}");
        assert!(s.contains("kernel misses the expectation of x (f.toml:1): a disagreement (exit 1)"), "{s}");
        assert!(!s.contains("of u "), "{s}");
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
