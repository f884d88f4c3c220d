//! One case on one kernel: [`RunRow`], the JSON line of `lockstep run --json`, with how the case
//! ended ([`Outcome`]) and whether it met its expectation ([`ExpectationMet`]). Below both the
//! renderings (`report`) and the kernel-against-kernel comparison (`kernel_diff`).

use lockstep_core::case::Expectation;
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
    /// The case killed the guest twice with a panic, oops or BUG on the console.
    Crash,
    /// The case outlived its time limit, or the run's (`--timeout`) ran out while it ran.
    Timeout,
    /// The guest ended twice while the case ran without a kernel message (QEMU died or was
    /// killed, KVM failed): no evidence about the kernel.
    Infra,
    /// Never ran: no kernel, boot failure, interruption, the run's time limit, or the test
    /// module it needs is not loaded.
    NotRun,
}

impl Outcome {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ran => "ran",
            Outcome::Warn => "warn",
            Outcome::Crash => "crash",
            Outcome::Timeout => "timeout",
            Outcome::Infra => "infra",
            Outcome::NotRun => "not_run",
        }
    }
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
    /// What the case expects on this profile (verdict, instruction, message, `__msg` patterns
    /// matched in order over the full log), if anything.
    pub expected: Option<Expectation>,
    /// Whether the kernel met [`RunRow::expected`]: `met`, `not_met`, or `not_judged` (no verdict).
    pub kernel_met: Option<ExpectationMet>,
    /// Whether the model met it (`not_judged`: the model says unsupported).
    pub model_met: Option<ExpectationMet>,
    /// The case is a program of a BPF object (loaded in the guest through libbpf).
    pub from_object: bool,
    /// The expectation's `__retval` against `BPF_PROG_TEST_RUN`: `met (N)`, `not met: returned
    /// N, expected M`, or `not run: why` (None: no `__retval` expected).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retval: Option<String>,
    /// Why there is no kernel verdict, the console excerpt of a crash, or a setup error.
    pub note: Option<String>,
    pub verification_usec: Option<u64>,
    pub insns_processed: Option<u64>,
    /// The full verifier log, when asked for (`--log`) or when a load failed unexpectedly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// Whether a verdict met a case's expectation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpectationMet {
    Met,
    NotMet,
    /// There was no verdict to compare (unsupported, setup error, crash, not run).
    NotJudged,
}

impl ExpectationMet {
    /// From whether a verdict met the expectation (None: no verdict); None without an expectation.
    pub fn of(has_expectation: bool, met: Option<bool>) -> Option<ExpectationMet> {
        has_expectation.then_some(match met {
            Some(true) => ExpectationMet::Met,
            Some(false) => ExpectationMet::NotMet,
            None => ExpectationMet::NotJudged,
        })
    }
}

/// Whether `r` is a program of an object input that was not judged at all: lockstep could not
/// load it (no kernel verdict) and the model cannot judge it.
pub fn unjudged(r: &RunRow) -> bool {
    r.from_object && r.agreement == Agreement::Infra && r.model_verdict == VerdictKind::Unsupported
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
        expected: None,
        kernel_met: None,
        model_met: None,
        from_object: false,
        retval: None,
        note: None,
        verification_usec: None,
        insns_processed: None,
        log: None,
    }
}
