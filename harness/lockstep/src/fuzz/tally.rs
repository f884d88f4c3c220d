//! The pure bookkeeping of a fuzz campaign ([`super::campaign`] is the I/O loop around it): how
//! many programs the next batch takes, which of them go to the kernel, what became of each
//! program, the counts, and the summary's shares and reasons.

use std::collections::BTreeMap;
use std::time::Duration;

use lockstep_core::case::Case;
use lockstep_core::fuzz::{self, compare, Answer, Comparison, Signature};
use lockstep_core::verdict::{Verdict, VerdictKind};

use super::{Class, Limit, Times};

/// How many programs the batch starting `from` programs into the campaign takes (0: the campaign
/// is over).
pub(super) fn claim_len(limit: Limit, from: u64, batch: u64, elapsed: Duration) -> u64 {
    match limit {
        Limit::Count(c) => c.saturating_sub(from).min(batch),
        Limit::Time(d) if elapsed >= d => 0,
        Limit::Time(_) => batch,
    }
}

/// The programs of a batch sent to the kernel: those the model judges, or all of them.
pub(super) fn to_send(verdicts: &[Verdict], send_unsupported: bool) -> Vec<usize> {
    (0..verdicts.len())
        .filter(|&i| send_unsupported || verdicts[i].verdict != VerdictKind::Unsupported)
        .collect()
}

/// The kernel's answer of each program of a batch (None: not sent).
pub(super) fn answers_by_program<'a>(
    programs: usize,
    sent: &[usize],
    answers: &'a [Answer],
) -> Vec<Option<&'a Answer>> {
    let mut answer_of = vec![None; programs];
    for (k, &i) in sent.iter().enumerate() {
        answer_of[i] = Some(&answers[k]);
    }
    answer_of
}

/// What became of one program: exactly one of these.
#[derive(Debug, PartialEq)]
pub(super) enum Fate<'a> {
    /// It crashed the kernel (the console excerpt).
    Crashed(&'a str),
    /// Outside the model's subset.
    Unsupported,
    /// The kernel never ran it (why).
    NotRun(&'a str),
    /// Compared; the kernel's own verification time in seconds.
    Judged(Comparison, f64),
}

/// The fate of a program the model judged `verdict` and the kernel answered `answer`.
pub(super) fn fate<'a>(
    verdict: &Verdict,
    answer: Option<&'a Answer>,
    kernel: &str,
    profile: &str,
) -> Fate<'a> {
    if let Some(Answer::Crashed(excerpt)) = answer {
        return Fate::Crashed(excerpt);
    }
    if verdict.verdict == VerdictKind::Unsupported {
        return Fate::Unsupported;
    }
    match answer {
        Some(Answer::Result(r)) => {
            Fate::Judged(compare(kernel, profile, verdict, r), r.verification_usec.unwrap_or(0) as f64 / 1e6)
        }
        Some(Answer::NotRun(why)) => Fate::NotRun(why),
        _ => unreachable!("supported programs are always sent; crashes are handled above"),
    }
}

/// The campaign's counts so far.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Counts {
    pub programs: u64,
    pub supported: u64,
    pub agree: u64,
    pub disagree: u64,
    pub unsupported: u64,
    pub inconclusive: u64,
    pub crashes: u64,
    /// Unsupported programs per reason class.
    pub reasons: BTreeMap<String, u64>,
}

impl Counts {
    /// Adds another worker's counts.
    pub fn add(&mut self, o: Counts) {
        self.programs += o.programs;
        self.supported += o.supported;
        self.agree += o.agree;
        self.disagree += o.disagree;
        self.unsupported += o.unsupported;
        self.inconclusive += o.inconclusive;
        self.crashes += o.crashes;
        for (reason, n) in o.reasons {
            *self.reasons.entry(reason).or_default() += n;
        }
    }

    /// Counts one program's fate (`verdict`: the model's, for the unsupported reason).
    pub fn count(&mut self, fate: &Fate, verdict: &Verdict) {
        match fate {
            Fate::Crashed(_) => self.crashes += 1,
            Fate::Unsupported => {
                self.unsupported += 1;
                *self
                    .reasons
                    .entry(fuzz::reason_class(verdict.message.as_deref().unwrap_or("")))
                    .or_default() += 1;
            }
            Fate::NotRun(_) | Fate::Judged(Comparison::KernelInconclusive(_), _) => self.inconclusive += 1,
            Fate::Judged(Comparison::Agree, _) => self.agree += 1,
            Fate::Judged(Comparison::ModelUnsupported(_), _) => {}
            Fate::Judged(Comparison::Disagree(_), _) => self.disagree += 1,
        }
    }

    /// The progress line.
    pub fn progress_message(&self, classes: usize) -> String {
        format!(
            "agree {} · disagree {} ({classes} classes) · unsupported {} · inconclusive {}{}",
            self.agree,
            self.disagree,
            self.unsupported,
            self.inconclusive,
            if self.crashes > 0 { format!(" · CRASHES {}", self.crashes) } else { String::new() }
        )
    }
}

/// A new disagreement class, first seen on `case`, program `index` (not minimised, no file yet).
pub(super) fn new_class(sig: &Signature, case: &Case, index: u64) -> Class {
    Class {
        description: sig.describe(),
        signature: sig.clone(),
        count: 1,
        first_case: case.name.clone(),
        first_index: index,
        original_slots: case.program.insns.len(),
        minimized_slots: None,
        oracle_calls: None,
        file: None,
        explained: false,
    }
}

/// Share of the wall time per stage (none for a campaign that took no time).
pub(super) fn shares(t: &Times, seconds: f64) -> BTreeMap<&'static str, f64> {
    if seconds <= 0.0 {
        return BTreeMap::new();
    }
    BTreeMap::from([
        ("generate", t.generate / seconds),
        ("model", t.model / seconds),
        ("oracle", t.oracle / seconds),
        ("kernel_verification", t.kernel_verification / seconds),
        // For a guest: the oracle's time outside the verifier (transport, loading, agent).
        ("oracle_other", (t.oracle - t.kernel_verification).max(0.0) / seconds),
        ("minimize", t.minimize / seconds),
        ("write", t.write / seconds),
    ])
}

/// The end-to-end rate of a campaign beside the rate its guests answered at.
#[derive(Debug, Default, PartialEq, serde::Serialize)]
pub(super) struct Rates {
    /// Programs sent to the kernel per wall second, end to end.
    pub sent_per_second: f64,
    /// Programs the guests answered per second of their own time (the oracle's time, summed over
    /// workers, divided by the workers): the rate if the host side cost nothing.
    pub guest_per_second: f64,
    /// `sent_per_second / guest_per_second`: the share of the time the guests were busy.
    pub end_to_end_vs_guest: f64,
    /// Programs per second of the kernel's own verification time (over the workers).
    pub verifier_per_second: f64,
}

/// The rates of `sent` programs judged in `seconds` by `jobs` workers.
pub(super) fn rates(sent: u64, t: &Times, seconds: f64, jobs: usize) -> Rates {
    let jobs = jobs.max(1) as f64;
    let sent_per_second = ratio(sent as f64, seconds);
    let guest_per_second = ratio(sent as f64, t.oracle / jobs);
    Rates {
        sent_per_second,
        guest_per_second,
        end_to_end_vs_guest: ratio(sent_per_second, guest_per_second),
        verifier_per_second: ratio(sent as f64, t.kernel_verification / jobs),
    }
}

/// The twelve most frequent unsupported reasons, most frequent first (then by name).
pub(super) fn top_reasons(reasons: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut top: Vec<(String, u64)> = reasons.into_iter().collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(12);
    top
}

/// `part / whole`, 0 for nothing.
pub(super) fn ratio(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_core::proto::test_support::kernel_result;

    #[test]
    fn batches_stop_at_the_count_or_the_time() {
        assert_eq!(claim_len(Limit::Count(600), 0, 256, Duration::ZERO), 256);
        assert_eq!(claim_len(Limit::Count(600), 512, 256, Duration::ZERO), 88);
        assert_eq!(claim_len(Limit::Count(600), 600, 256, Duration::ZERO), 0);
        // A worker claiming past the end (another took the last batch) gets nothing.
        assert_eq!(claim_len(Limit::Count(600), 768, 256, Duration::ZERO), 0);
        let minute = Duration::from_secs(60);
        assert_eq!(claim_len(Limit::Time(minute), 9999, 256, Duration::from_secs(59)), 256);
        assert_eq!(claim_len(Limit::Time(minute), 0, 256, minute), 0);
    }

    #[test]
    fn rates_compare_the_end_to_end_rate_with_the_guests_own() {
        // Two guests, each busy 8 of 10 s (16 s summed), 800 programs sent.
        let t = Times { oracle: 16.0, kernel_verification: 2.0, ..Times::default() };
        let r = rates(800, &t, 10.0, 2);
        assert_eq!((r.sent_per_second, r.guest_per_second, r.verifier_per_second), (80.0, 100.0, 800.0));
        assert!((r.end_to_end_vs_guest - 0.8).abs() < 1e-12);
        assert_eq!(rates(0, &Times::default(), 0.0, 1), Rates::default());
    }

    #[test]
    fn every_program_has_one_fate_and_one_count() {
        let unsupported = Verdict::unsupported("a construct");
        let verdicts = [Verdict::accept(), unsupported.clone(), Verdict::accept(), Verdict::accept()];
        let sent = to_send(&verdicts, false);
        assert_eq!(sent, [0, 2, 3]);
        assert_eq!(to_send(&verdicts, true), [0, 1, 2, 3]);
        let rej = Verdict::reject(Some(3), "function calls are not allowed while holding a lock");
        let answers = [
            Answer::Result(kernel_result("a", Verdict::accept())),
            Answer::Crashed("BUG: x".into()),
            Answer::Result(kernel_result("d", rej)),
        ];
        let by = answers_by_program(4, &sent, &answers);
        assert!(by[1].is_none());
        let fates: Vec<Fate> = (0..4).map(|i| fate(&verdicts[i], by[i], "k", "7.3")).collect();
        assert_eq!(fates[0], Fate::Judged(Comparison::Agree, 0.0));
        assert_eq!(fates[1], Fate::Unsupported);
        assert_eq!(fates[2], Fate::Crashed("BUG: x"));
        assert!(matches!(fates[3], Fate::Judged(Comparison::Disagree(_), _)), "{:?}", fates[3]);
        assert_eq!(
            fate(&Verdict::accept(), Some(&Answer::NotRun("no guest".into())), "k", "7.3"),
            Fate::NotRun("no guest")
        );
        let mut c = Counts::default();
        for (f, v) in fates.iter().zip(&verdicts) {
            c.count(f, v);
        }
        assert_eq!((c.agree, c.disagree, c.unsupported, c.crashes, c.inconclusive), (1, 1, 1, 1, 0));
        assert_eq!(c.reasons.values().sum::<u64>(), 1);
        assert_eq!(
            c.progress_message(1),
            "agree 1 · disagree 1 (1 classes) · unsupported 1 · inconclusive 0 · CRASHES 1"
        );
    }

    #[test]
    fn shares_and_reasons() {
        let t = Times { generate: 1.0, oracle: 2.0, kernel_verification: 0.5, ..Times::default() };
        let s = shares(&t, 4.0);
        assert_eq!((s["generate"], s["oracle"], s["oracle_other"], s["write"]), (0.25, 0.5, 0.375, 0.0));
        assert!(shares(&t, 0.0).is_empty());
        let reasons: BTreeMap<String, u64> = (0..14).map(|i| (format!("r{i:02}"), i % 3)).collect();
        let top = top_reasons(reasons);
        assert_eq!(top.len(), 12);
        assert_eq!(top[0], ("r02".to_string(), 2));
        assert_eq!((ratio(1.0, 4.0), ratio(1.0, 0.0)), (0.25, 0.0));
    }
}
