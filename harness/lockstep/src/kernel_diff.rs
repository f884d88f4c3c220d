//! Kernel against kernel: the cases of one `lockstep run` whose verdict (accept or reject, the
//! first line of the message, the instruction) differs between kernels, each judged by the
//! model: *explained* when every kernel agrees with the model under its own profile (the profiles
//! predict the difference), *unjudged* when the model says unsupported on some kernel, else
//! *unexplained*. Pure: rows in, a list and its text out.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use lockstep_core::compare::{classify_verdicts, first_line, Agreement};
use lockstep_core::verdict::{Verdict, VerdictKind};
use serde::Serialize;

use crate::run_row::RunRow;

/// How the model accounts for a difference between kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Judgement {
    Explained,
    Unjudged,
    Unexplained,
}

impl Judgement {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Judgement::Explained => "explained",
            Judgement::Unjudged => "unjudged",
            Judgement::Unexplained => "unexplained",
        }
    }
}

/// One kernel's side of a difference.
#[derive(Clone, Debug, Serialize)]
pub struct KernelSide {
    pub kernel: String,
    pub profile: String,
    pub verdict: Verdict,
    /// The model under `profile` against this kernel.
    pub agreement: Agreement,
}

/// A case whose verdict differs between kernels.
#[derive(Clone, Debug, Serialize)]
pub struct KernelDifference {
    pub case: String,
    pub file: String,
    pub line: usize,
    pub kernels: Vec<KernelSide>,
    pub judgement: Judgement,
}

fn kernel_verdict(r: &RunRow) -> Option<Verdict> {
    let verdict = r.kernel_verdict.filter(|v| *v != VerdictKind::Unsupported)?;
    let message = r.kernel_message.as_deref().map(|m| first_line(m).to_string());
    Some(Verdict { verdict, insn: r.kernel_insn, message })
}

/// A case's place: file, line, name.
type CaseKey<'a> = (&'a str, usize, &'a str);

/// The cases whose kernel verdicts differ, in case order. Rows without a kernel verdict (not run,
/// crashed, set-up errors) take no part.
pub fn differences(rows: &[RunRow]) -> Vec<KernelDifference> {
    let mut by_case: BTreeMap<CaseKey, Vec<(&RunRow, Verdict)>> = BTreeMap::new();
    for r in rows {
        if let Some(v) = kernel_verdict(r) {
            by_case.entry((r.file.as_str(), r.line, r.case.as_str())).or_default().push((r, v));
        }
    }
    let mut out = Vec::new();
    for ((file, line, case), per) in by_case {
        let first = &per[0].1;
        if per.iter().all(|(_, v)| classify_verdicts(first, v) == Agreement::Agree) {
            continue;
        }
        let judgement = if per.iter().all(|(r, _)| r.agreement == Agreement::Agree) {
            Judgement::Explained
        } else if per.iter().any(|(r, _)| r.agreement == Agreement::Unsupported) {
            Judgement::Unjudged
        } else {
            Judgement::Unexplained
        };
        let kernels = per
            .iter()
            .map(|(r, v)| KernelSide {
                kernel: r.kernel.clone(),
                profile: r.profile.clone(),
                verdict: v.clone(),
                agreement: r.agreement,
            })
            .collect();
        out.push(KernelDifference {
            case: case.to_string(),
            file: file.to_string(),
            line,
            kernels,
            judgement,
        });
    }
    out
}

fn verdict_text(v: &Verdict) -> String {
    match (v.verdict, v.insn) {
        (VerdictKind::Reject, Some(i)) => format!("reject at {i}: {}", v.message.as_deref().unwrap_or("")),
        (VerdictKind::Reject, None) => format!("reject: {}", v.message.as_deref().unwrap_or("")),
        (k, _) => k.as_str().to_string(),
    }
}

/// The differences as text: a count line, then a block per case with each kernel's verdict and
/// the model's agreement under that kernel's profile. Package versions are left out, so the text
/// changes only when a verdict or its explanation does.
pub fn render(diffs: &[KernelDifference]) -> String {
    render_some(diffs, |_| true)
}

/// The count line and the blocks of the differences the profiles do not explain (for stderr: a
/// matrix with 6.12 beside 7.x differs on every message 7.x reworded).
pub fn render_unexplained(diffs: &[KernelDifference]) -> String {
    render_some(diffs, |d| d.judgement != Judgement::Explained)
}

fn render_some(diffs: &[KernelDifference], show: impl Fn(&KernelDifference) -> bool) -> String {
    let count = |j: Judgement| diffs.iter().filter(|d| d.judgement == j).count();
    let mut s = format!(
        "{} cases differ between kernels: {} explained by the profiles, {} unjudged, {} unexplained\n",
        diffs.len(),
        count(Judgement::Explained),
        count(Judgement::Unjudged),
        count(Judgement::Unexplained)
    );
    for d in diffs.iter().filter(|d| show(d)) {
        let file = d.file.rsplit_once("tests/corpus/").map_or(d.file.as_str(), |(_, r)| r);
        let _ = writeln!(s, "\n{} ({file}): {}", d.case, d.judgement.as_str());
        for k in &d.kernels {
            let _ = writeln!(
                s,
                "  {} (profile {}, model {}): {}",
                k.kernel,
                k.profile,
                k.agreement.as_str(),
                verdict_text(&k.verdict)
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(case: &str, kernel: &str, v: VerdictKind, msg: Option<&str>, a: Agreement) -> RunRow {
        RunRow {
            file: "tests/corpus/gen-calls.toml".into(),
            profile: kernel.trim_start_matches("debian:").into(),
            kernel_message: msg.map(str::to_string),
            kernel_insn: msg.map(|_| 7),
            ..crate::run_row::test_row(case, kernel, v, a)
        }
    }

    #[test]
    fn same_verdicts_are_not_differences_and_a_flip_is_judged_by_the_model() {
        let lock = "function calls are not allowed while holding a lock";
        let rows = vec![
            row("same", "debian:7.2", VerdictKind::Accept, None, Agreement::Agree),
            row("same", "debian:7.3", VerdictKind::Accept, None, Agreement::Agree),
            // The message's first line is what counts (7.3 adds a block after it).
            row("block", "debian:7.2", VerdictKind::Reject, Some("x"), Agreement::Agree),
            row("block", "debian:7.3", VerdictKind::Reject, Some("x\nVerification failed"), Agreement::Agree),
            row("flip", "debian:7.2", VerdictKind::Reject, Some(lock), Agreement::Agree),
            row("flip", "debian:7.3", VerdictKind::Accept, None, Agreement::Agree),
            row("odd", "debian:7.2", VerdictKind::Reject, Some(lock), Agreement::Agree),
            row("odd", "debian:7.3", VerdictKind::Reject, Some("other"), Agreement::Message),
            row("unj", "debian:7.2", VerdictKind::Reject, Some(lock), Agreement::Agree),
            row("unj", "debian:7.3", VerdictKind::Accept, None, Agreement::Unsupported),
        ];
        let d = differences(&rows);
        let got: Vec<(&str, Judgement)> = d.iter().map(|d| (d.case.as_str(), d.judgement)).collect();
        assert_eq!(
            got,
            vec![
                ("flip", Judgement::Explained),
                ("odd", Judgement::Unexplained),
                ("unj", Judgement::Unjudged)
            ]
        );
        let text = render(&d);
        assert!(
            text.starts_with(
                "3 cases differ between kernels: 1 explained by the profiles, 1 unjudged, 1 unexplained"
            ),
            "{text}"
        );
        assert!(text.contains("flip (gen-calls.toml): explained\n  debian:7.2 (profile 7.2, model agree): reject at 7: function calls"), "{text}");
        let short = render_unexplained(&d);
        assert!(
            short.starts_with("3 cases differ")
                && !short.contains("flip (")
                && short.contains("odd (")
                && short.contains("unj ("),
            "{short}"
        );
    }

    #[test]
    fn rows_without_a_kernel_verdict_take_no_part() {
        let mut gone = row("c", "debian:7.3", VerdictKind::Accept, None, Agreement::Infra);
        gone.kernel_verdict = None;
        let rows = vec![row("c", "debian:7.2", VerdictKind::Reject, Some("m"), Agreement::Agree), gone];
        assert!(differences(&rows).is_empty());
    }
}
