//! Judging a patch series: which verdicts flip from the base kernel to the patched one, and
//! whether the model predicted each flip (pure).
//!
//! Per case there are four verdicts: the base and patched kernels', and the model's under the
//! base profile and under the profile the patched kernel is expected to follow. [`classify`] puts
//! the case in one [`FlipClass`]:
//!
//! | kernels | model (base -> patched profile) | class |
//! |---|---|---|
//! | flip | predicts the same flip | [`FlipClass::Expected`] |
//! | flip | anything else | [`FlipClass::Unexpected`] |
//! | flip | unsupported under either profile | [`FlipClass::Unjudged`] |
//! | no flip | predicts a flip | [`FlipClass::Missing`] (unchanged but should have) |
//! | no flip | predicts none (or cannot judge) | [`FlipClass::Unchanged`] |
//!
//! Setup failures (map, BTF or kfunc resolution before the verifier ran) are not verdicts: on
//! both kernels they are [`FlipClass::SetupError`], on one only [`FlipClass::SetupChanged`]. A
//! case without a result from a kernel (it crashed the guest) is [`FlipClass::NoResult`].

use serde::{Deserialize, Serialize};

use crate::proto::KernelResult;
use crate::verdict::{Verdict, VerdictKind};

/// The class of one case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlipClass {
    /// The kernels flip and the model predicts exactly that flip.
    Expected,
    /// The kernels flip and the model does not predict it.
    Unexpected,
    /// The model predicts a flip the kernels do not show.
    Missing,
    /// The kernels flip but the model cannot judge the case (unsupported under a profile).
    Unjudged,
    /// A setup failure on one kernel only.
    SetupChanged,
    /// A setup failure on both kernels.
    SetupError,
    /// No result from one of the kernels (crash or hang).
    NoResult,
    /// Same verdict on both kernels, and no flip predicted.
    Unchanged,
}

impl FlipClass {
    /// Every class, in report order.
    pub const ALL: [FlipClass; 8] = [
        FlipClass::Expected,
        FlipClass::Unexpected,
        FlipClass::Missing,
        FlipClass::Unjudged,
        FlipClass::SetupChanged,
        FlipClass::SetupError,
        FlipClass::NoResult,
        FlipClass::Unchanged,
    ];

    /// Whether this class makes the validation fail.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            FlipClass::Unexpected | FlipClass::Missing | FlipClass::SetupChanged | FlipClass::NoResult
        )
    }

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            FlipClass::Expected => "expected",
            FlipClass::Unexpected => "unexpected",
            FlipClass::Missing => "missing",
            FlipClass::Unjudged => "unjudged",
            FlipClass::SetupChanged => "setup-changed",
            FlipClass::SetupError => "setup-error",
            FlipClass::NoResult => "no-result",
            FlipClass::Unchanged => "unchanged",
        }
    }

    /// A one-line explanation for report legends.
    pub fn meaning(self) -> &'static str {
        match self {
            FlipClass::Expected => "the verdict flips and the model under the patched profile predicts it",
            FlipClass::Unexpected => "the verdict flips but the model does not predict this flip",
            FlipClass::Missing => "unchanged, but the model predicts a flip",
            FlipClass::Unjudged => "the verdict flips; the model cannot judge the case (unsupported)",
            FlipClass::SetupChanged => "the case could be set up on one kernel only",
            FlipClass::SetupError => "the case could not be set up on either kernel",
            FlipClass::NoResult => "a kernel gave no result (crash or hang)",
            FlipClass::Unchanged => "same verdict on both kernels, none predicted to change",
        }
    }
}

/// The four verdicts of one case.
#[derive(Clone, Copy, Debug)]
pub struct CaseVerdicts<'a> {
    pub kernel_base: Option<&'a KernelResult>,
    pub kernel_patched: Option<&'a KernelResult>,
    pub model_base: &'a Verdict,
    pub model_patched: &'a Verdict,
}

/// The class of a case and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub class: FlipClass,
    /// A short reason (empty for plain expected/unchanged).
    pub note: String,
}

fn kinds(v: &Verdict) -> &'static str {
    v.verdict.as_str()
}

/// Classifies one case (see the module table).
pub fn classify(c: CaseVerdicts<'_>) -> Judgement {
    let j = |class, note: String| Judgement { class, note };
    let (Some(kb), Some(kp)) = (c.kernel_base, c.kernel_patched) else {
        let which = if c.kernel_base.is_none() { "base" } else { "patched" };
        return j(FlipClass::NoResult, format!("no result from the {which} kernel"));
    };
    match (&kb.setup_error, &kp.setup_error) {
        (Some(a), Some(_)) => return j(FlipClass::SetupError, a.clone()),
        (Some(a), None) => return j(FlipClass::SetupChanged, format!("base: {a}")),
        (None, Some(b)) => return j(FlipClass::SetupChanged, format!("patched: {b}")),
        (None, None) => {}
    }
    let (k0, k1) = (kb.verdict.verdict, kp.verdict.verdict);
    let (m0, m1) = (c.model_base.verdict, c.model_patched.verdict);
    let judged = m0 != VerdictKind::Unsupported && m1 != VerdictKind::Unsupported;
    if k0 != k1 {
        if !judged {
            let why = if m0 == VerdictKind::Unsupported { c.model_base } else { c.model_patched };
            return j(
                FlipClass::Unjudged,
                format!("model: {}", why.message.as_deref().unwrap_or("unsupported")),
            );
        }
        if m0 == k0 && m1 == k1 {
            return j(FlipClass::Expected, String::new());
        }
        return j(
            FlipClass::Unexpected,
            format!(
                "kernels {} -> {}, model predicts {} -> {}",
                k0.as_str(),
                k1.as_str(),
                kinds(c.model_base),
                kinds(c.model_patched)
            ),
        );
    }
    if judged && m0 != m1 {
        return j(
            FlipClass::Missing,
            format!(
                "kernels stay {}, model predicts {} -> {}",
                k0.as_str(),
                kinds(c.model_base),
                kinds(c.model_patched)
            ),
        );
    }
    let mut note = String::new();
    if judged && m0 != k0 {
        note = format!("model says {} on both profiles, kernels {}", m0.as_str(), k0.as_str());
    } else if kb.verdict.message != kp.verdict.message {
        note = format!(
            "message changed: {:?} -> {:?}",
            kb.verdict.message.as_deref().unwrap_or(""),
            kp.verdict.message.as_deref().unwrap_or("")
        );
    }
    j(FlipClass::Unchanged, note)
}

/// Counts per class.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub counts: std::collections::BTreeMap<FlipClass, usize>,
    /// Cases in failing classes.
    pub failures: usize,
}

/// Summarises classes.
pub fn summarize(classes: impl IntoIterator<Item = FlipClass>) -> Summary {
    let mut s = Summary::default();
    for c in classes {
        *s.counts.entry(c).or_default() += 1;
        if c.is_failure() {
            s.failures += 1;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(v: Verdict) -> KernelResult {
        KernelResult {
            case: "c".into(),
            verdict: v,
            errno: 0,
            log: None,
            verification_usec: None,
            insns_processed: None,
            setup_error: None,
            test_run: None,
        }
    }
    fn acc() -> Verdict {
        Verdict::accept()
    }
    fn rej() -> Verdict {
        Verdict::reject(Some(12), "function calls are not allowed while holding a lock")
    }
    fn uns() -> Verdict {
        Verdict::unsupported("kfunc returns a pointer (not modelled)")
    }
    fn run(kb: Option<KernelResult>, kp: Option<KernelResult>, mb: Verdict, mp: Verdict) -> Judgement {
        classify(CaseVerdicts {
            kernel_base: kb.as_ref(),
            kernel_patched: kp.as_ref(),
            model_base: &mb,
            model_patched: &mp,
        })
    }

    #[test]
    fn predicted_flip_is_expected() {
        let j = run(Some(k(rej())), Some(k(acc())), rej(), acc());
        assert_eq!(j, Judgement { class: FlipClass::Expected, note: String::new() });
    }

    #[test]
    fn unpredicted_or_wrongly_predicted_flips_are_unexpected() {
        // The model predicts no change.
        let j = run(Some(k(acc())), Some(k(rej())), acc(), acc());
        assert_eq!(j.class, FlipClass::Unexpected);
        assert_eq!(j.note, "kernels accept -> reject, model predicts accept -> accept");
        // The model predicts the opposite flip.
        assert_eq!(run(Some(k(rej())), Some(k(acc())), acc(), rej()).class, FlipClass::Unexpected);
        // The model gets the patched side right but not the base.
        assert_eq!(run(Some(k(rej())), Some(k(acc())), acc(), acc()).class, FlipClass::Unexpected);
    }

    #[test]
    fn predicted_but_absent_flip_is_missing() {
        let j = run(Some(k(rej())), Some(k(rej())), rej(), acc());
        assert_eq!(j.class, FlipClass::Missing);
        assert_eq!(j.note, "kernels stay reject, model predicts reject -> accept");
    }

    #[test]
    fn unsupported_model_cannot_judge() {
        let j = run(Some(k(rej())), Some(k(acc())), rej(), uns());
        assert_eq!(j.class, FlipClass::Unjudged);
        assert!(j.note.contains("not modelled"), "{}", j.note);
        // Without a kernel flip, an unsupported prediction is just unchanged.
        assert_eq!(run(Some(k(rej())), Some(k(rej())), rej(), uns()).class, FlipClass::Unchanged);
    }

    #[test]
    fn unchanged_notes_model_disagreement_and_rewording() {
        let j = run(Some(k(rej())), Some(k(rej())), rej(), rej());
        assert_eq!(j, Judgement { class: FlipClass::Unchanged, note: String::new() });
        let j = run(Some(k(acc())), Some(k(acc())), rej(), rej());
        assert_eq!(
            (j.class, j.note.as_str()),
            (FlipClass::Unchanged, "model says reject on both profiles, kernels accept")
        );
        let j = run(Some(k(rej())), Some(k(Verdict::reject(Some(3), "other"))), rej(), rej());
        assert!(j.note.starts_with("message changed"), "{}", j.note);
    }

    #[test]
    fn setup_errors_and_missing_results() {
        let mut broken = k(rej());
        broken.setup_error = Some("kfunc lockstep_safe not found".into());
        assert_eq!(
            run(Some(broken.clone()), Some(broken.clone()), rej(), acc()).class,
            FlipClass::SetupError
        );
        let j = run(Some(k(rej())), Some(broken), rej(), acc());
        assert_eq!(
            (j.class, j.note.as_str()),
            (FlipClass::SetupChanged, "patched: kfunc lockstep_safe not found")
        );
        let j = run(Some(k(rej())), None, rej(), acc());
        assert_eq!((j.class, j.note.as_str()), (FlipClass::NoResult, "no result from the patched kernel"));
    }

    #[test]
    fn failures_are_counted() {
        let s = summarize([
            FlipClass::Expected,
            FlipClass::Expected,
            FlipClass::Unjudged,
            FlipClass::Missing,
            FlipClass::Unchanged,
        ]);
        assert_eq!(s.counts[&FlipClass::Expected], 2);
        assert_eq!(s.failures, 1);
        let failing: Vec<_> = FlipClass::ALL.iter().filter(|c| c.is_failure()).map(|c| c.as_str()).collect();
        assert_eq!(failing, ["unexpected", "missing", "setup-changed", "no-result"]);
    }
}
