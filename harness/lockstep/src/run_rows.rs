//! The rows of `lockstep run`, built from what a guest reported about a case and the model's
//! verdict: pure functions of their arguments (the model is pure too), no I/O.

use std::collections::BTreeSet;

use lockstep_core::asm::Reloc;
use lockstep_core::case::Case;
use lockstep_core::compare::{classify, Agreement};
use lockstep_core::profile::ModuleKfuncs;
use lockstep_core::proto::{KernelResult, ModuleStatus};
use lockstep_core::verdict::{Verdict, VerdictKind};

use crate::report::{self, Outcome, RunRow};
use crate::runner::KernelTarget;

/// What a guest said about its modules when it booted.
#[derive(Clone, Debug)]
pub struct GuestModules {
    /// The kernel release the guest reported.
    pub release: String,
    /// The test module.
    pub module: ModuleStatus,
    /// The other modules (`bpf_testmod`).
    pub extra: Vec<ModuleStatus>,
}

impl Default for GuestModules {
    fn default() -> Self {
        GuestModules { release: String::new(), module: ModuleStatus::Absent, extra: Vec::new() }
    }
}

/// The names of the module kfuncs a case calls.
pub fn module_kfuncs_used(case: &Case, module: &ModuleKfuncs) -> Vec<String> {
    case.program
        .relocs
        .values()
        .filter_map(|r| match r {
            Reloc::Kfunc { name } if module.kfuncs.contains_key(name) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// The kfuncs the cases call that the test module does not have (vmlinux's, `bpf_testmod`'s, ...).
pub fn other_kfuncs_called(cases: &[Case], module: &ModuleKfuncs) -> BTreeSet<String> {
    cases
        .iter()
        .flat_map(|c| c.program.relocs.values())
        .filter_map(|r| match r {
            Reloc::Kfunc { name } if !module.kfuncs.contains_key(name) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// Why a kfunc the kernel did not know may be missing: what happened to `bpf_testmod`.
fn testmod_note(extra: &[ModuleStatus], target: &KernelTarget) -> String {
    let failed = extra.iter().find_map(|m| match m {
        ModuleStatus::Failed { name, error } if name == "bpf_testmod" => Some(error.clone()),
        _ => None,
    });
    match (failed, &target.testmod, &target.testmod_error) {
        (Some(e), _, _) => format!("bpf_testmod failed to load: {e}"),
        (None, _, Some(e)) => e.clone(),
        (None, Some(_), None) => "bpf_testmod is loaded and has no such kfunc".into(),
        (None, None, None) => "bpf_testmod not loaded (--testmod loads it)".into(),
    }
}

fn module_note(status: &ModuleStatus, target: &KernelTarget) -> String {
    match status {
        ModuleStatus::Failed { error, .. } => error.clone(),
        _ => target.module_error.clone().unwrap_or_else(|| "no module in the guest".into()),
    }
}

/// The row of a case the kernel answered: its verdict beside the model's (`module`: the kfuncs
/// the model assumes), or why the answer does not count (module missing, WARN, setup error).
/// `want_log`: `--log` (an object program's log is kept only then or on a setup error).
#[allow(clippy::too_many_arguments)]
pub fn result_row(
    c: &Case,
    kernel: &str,
    target: &KernelTarget,
    module: &ModuleKfuncs,
    guest: &GuestModules,
    result: KernelResult,
    warnings: &[String],
    want_log: bool,
) -> RunRow {
    let model = lockstep_core::model::check(c, &target.profile, module);
    let used = module_kfuncs_used(c, module);
    let module_missing = !used.is_empty() && !matches!(guest.module, ModuleStatus::Loaded { .. });
    let mut agreement = classify(&model, &result);
    let mut note = result.setup_error.clone();
    if let Some(e) = result.setup_error.as_deref().filter(|e| e.starts_with("unknown kfunc")) {
        note = Some(format!("{e} ({})", testmod_note(&guest.extra, target)));
    }
    let mut outcome = Outcome::Ran;
    if module_missing {
        agreement = Agreement::Infra;
        outcome = Outcome::NotRun;
        note = Some(format!(
            "needs the test module ({}), which is not loaded: {}",
            used.join(", "),
            module_note(&guest.module, target)
        ));
    }
    if !warnings.is_empty() {
        outcome = Outcome::Warn;
        note = Some(format!("kernel WARN while the case ran:\n{}", warnings.join("\n")));
    }
    let mut row = base_row(c, kernel, target, &guest.release, model, outcome, agreement, note);
    if result.setup_error.is_none() && outcome != Outcome::NotRun {
        row.kernel_verdict = Some(result.verdict.verdict);
        // An `unsupported` expectation is about the model only (the kernel always judges).
        let model_only = lockstep_core::corpus::expectation(c, &target.profile.name)
            .is_some_and(|e| e.verdict == VerdictKind::Unsupported);
        row.kernel_expected = if model_only {
            None
        } else {
            lockstep_core::corpus::kernel_meets_expectation(c, &target.profile.name, &result)
        };
    }
    row.retval = lockstep_core::corpus::expectation(c, &target.profile.name)
        .and_then(|e| lockstep_core::corpus::retval_met(e, &result).describe());
    row.kernel_message = result.verdict.message;
    row.kernel_insn = result.verdict.insn;
    row.kernel_errno = Some(result.errno);
    row.verification_usec = result.verification_usec;
    row.insns_processed = result.insns_processed;
    // An object program's log comes back for its __msg patterns: kept only when asked.
    row.log = result.log.filter(|_| want_log || !row.from_object || result.setup_error.is_some());
    row
}

/// A row with the case, kernel and model filled in and no kernel verdict yet.
#[allow(clippy::too_many_arguments)]
fn base_row(
    c: &Case,
    kernel: &str,
    target: &KernelTarget,
    release: &str,
    model: Verdict,
    outcome: Outcome,
    agreement: Agreement,
    note: Option<String>,
) -> RunRow {
    let model_expected = lockstep_core::corpus::meets_expectation(c, &target.profile.name, &model);
    RunRow {
        index: 0,
        case: c.name.clone(),
        file: c.file.clone(),
        line: c.line,
        kernel: kernel.into(),
        package_version: target.package_version.clone(),
        release: release.into(),
        profile: target.profile.name.clone(),
        outcome,
        kernel_verdict: None,
        kernel_message: None,
        kernel_insn: None,
        kernel_errno: None,
        model_verdict: model.verdict,
        model_message: model.message,
        model_insn: model.insn,
        agreement,
        kernel_expected: None,
        model_expected,
        expected: lockstep_core::corpus::expectation(c, &target.profile.name).cloned(),
        kernel_met: None,
        model_met: None,
        from_object: c.object.is_some(),
        retval: None,
        note,
        verification_usec: None,
        insns_processed: None,
        log: None,
    }
}

/// A case without a kernel verdict (crashed, timed out, or never ran); `target` is None for a
/// kernel never prepared (the model then does not judge it).
pub fn unrun_row(
    c: &Case,
    kernel: &str,
    target: Option<&KernelTarget>,
    release: &str,
    outcome: Outcome,
    note: String,
) -> RunRow {
    match target {
        Some(t) => {
            let model = lockstep_core::model::check(c, &t.profile, &t.module_kfuncs());
            base_row(c, kernel, t, release, model, outcome, Agreement::Infra, Some(note))
        }
        None => RunRow {
            index: 0,
            case: c.name.clone(),
            file: c.file.clone(),
            line: c.line,
            kernel: kernel.into(),
            package_version: String::new(),
            release: String::new(),
            profile: String::new(),
            outcome,
            kernel_verdict: None,
            kernel_message: None,
            kernel_insn: None,
            kernel_errno: None,
            model_verdict: VerdictKind::Unsupported,
            model_message: Some("not judged: the kernel was never prepared".into()),
            model_insn: None,
            agreement: Agreement::Infra,
            kernel_expected: None,
            model_expected: None,
            expected: None,
            kernel_met: None,
            model_met: None,
            from_object: c.object.is_some(),
            retval: None,
            note: Some(note),
            verification_usec: None,
            insns_processed: None,
            log: None,
        },
    }
}

/// The row as reported: at case position `position`, with whether each side met the case's
/// expectation (a model that did not judge has not met or missed it).
pub fn finish_row(mut row: RunRow, position: usize) -> RunRow {
    row.index = position;
    let has = row.expected.is_some();
    row.kernel_met = report::ExpectationMet::of(has, row.kernel_expected);
    let model_judged = row.model_verdict != VerdictKind::Unsupported;
    row.model_met = report::ExpectationMet::of(has, row.model_expected.filter(|_| model_judged));
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_row_has_its_position_and_whether_each_side_met_the_expectation() {
        let row = report::test_row("c", "k", VerdictKind::Accept, Agreement::Agree);
        let bare = finish_row(row.clone(), 7);
        assert_eq!(bare.index, 7);
        assert_eq!((bare.kernel_met, bare.model_met), (None, None), "no expectation: nothing met");
        let expected = lockstep_core::case::Expectation {
            verdict: VerdictKind::Accept,
            message: None,
            insn: None,
            source: None,
            msgs: Vec::new(),
            retval: None,
        };
        let judged = RunRow {
            expected: Some(expected.clone()),
            kernel_expected: Some(true),
            model_expected: Some(false),
            ..row.clone()
        };
        let f = finish_row(judged, 0);
        assert_eq!(f.kernel_met, Some(report::ExpectationMet::Met));
        assert_eq!(f.model_met, Some(report::ExpectationMet::NotMet));
        let unjudged = RunRow {
            expected: Some(expected),
            model_verdict: VerdictKind::Unsupported,
            model_expected: Some(false),
            ..row
        };
        assert_eq!(finish_row(unjudged, 0).model_met, Some(report::ExpectationMet::NotJudged));
    }

    #[test]
    fn a_row_of_a_kernel_never_prepared_is_infrastructure_with_its_reason() {
        let src = "[[case]]\nname = \"a\"\nprog_type = \"xdp\"\ntext = '''\nr0 = 2\nexit\n'''\n";
        let module = lockstep_core::module_src::bundled();
        let case = lockstep_core::corpus::load_text("t.toml", src, &module).unwrap().remove(0);
        let r = unrun_row(&case, "debian:7.3", None, "", Outcome::NotRun, "not run (why)".into());
        assert_eq!((r.agreement, r.outcome, r.kernel_verdict), (Agreement::Infra, Outcome::NotRun, None));
        assert_eq!(r.note.as_deref(), Some("not run (why)"));
        assert_eq!(r.model_verdict, VerdictKind::Unsupported);
    }
}
