//! `lockstep run`: the cases on real kernels, compared with the model.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lockstep_core::asm::Reloc;
use lockstep_core::case::Case;
use lockstep_core::compare::{classify, Agreement};
use lockstep_core::proto::ModuleStatus;
use lockstep_core::shard::Shard;
use lockstep_core::verdict::Verdict;
use lockstep_vm::guest::Timeouts;

use crate::exit::{EXIT_CRASH, EXIT_DISAGREE, EXIT_INFRA, EXIT_TIMEOUT, EXIT_UNJUDGED};
use crate::report::{self, Outcome, RunRow};
use crate::run_files::{self, RunFiles};
use crate::runner::{
    CaseEvent, GuestArgs, KernelArgs, KernelSession, KernelTarget, RunnerOptions, TestmodChoice,
};
use crate::{cases, kernel_diff};

/// Arguments of `lockstep run`.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub kernels: KernelArgs,
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Write JSON lines (one per case and kernel) to FILE, or to stdout instead of the matrix.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub json: Option<PathBuf>,
    /// Write a JUnit XML report.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a Markdown report.
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write the kernel-against-kernel differences (cases whose verdict differs between the
    /// kernels, each judged by the model) as text; stderr gets the count and the unexplained ones.
    #[arg(long, value_name = "FILE")]
    pub differences: Option<PathBuf>,
    /// Seconds for the whole run (all kernels, from start to report, boots included).
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub timeout: u64,
    /// Keep the full verifier log of every case (in the JSON output).
    #[arg(long)]
    pub log: bool,
    /// Programs of BPF object inputs that nothing judged (lockstep could not load them and the
    /// model cannot judge them) do not make the exit code 6.
    #[arg(long)]
    pub allow_skips: bool,
    /// Run only shard K of N (a stable split of cases x kernels by a hash of the case name and
    /// kernel name); `lockstep report merge` joins the shards' `--json` files.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Print GitHub Actions `::error file=...,line=...::` annotations for disagreements and
    /// crashes, at the case's line (automatic when GITHUB_ACTIONS=true).
    #[arg(long)]
    pub github: bool,
    /// Case files or directories (default: the bundled corpus).
    pub paths: Vec<PathBuf>,
}

/// Parses `--shard K/N`.
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    s.parse().map_err(|e: lockstep_core::shard::ShardError| e.to_string())
}

/// The cases of `cases` that shard `shard` runs on `kernel`, with their positions in `cases`.
fn shard_cases(cases: &[Case], kernel: &str, shard: Option<Shard>) -> (Vec<usize>, Vec<Case>) {
    let shard = shard.unwrap_or(Shard::ALL);
    (0..cases.len())
        .filter(|&i| shard.owns_pair(&cases[i].name, kernel))
        .map(|i| (i, cases[i].clone()))
        .unzip()
}

/// The names of the module kfuncs a case calls.
fn module_kfuncs_used(case: &Case, module: &lockstep_core::profile::ModuleKfuncs) -> Vec<String> {
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
fn other_kfuncs_called(cases: &[Case], module: &lockstep_core::profile::ModuleKfuncs) -> BTreeSet<String> {
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

/// Why a run stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT or SIGTERM (the signal number).
    Interrupted(i32),
    /// The run's time limit (`--timeout`).
    TimedOut,
}

/// Everything `run` produced, plus what it means for the exit code.
pub struct RunOutput {
    pub rows: Vec<RunRow>,
    /// Kernels that could not be prepared or booted, with the reason.
    pub infra: Vec<String>,
    /// Programs of object inputs judged by neither side do not change the exit code.
    pub allow_skips: bool,
    /// Why the run stopped early, if it did.
    pub stopped: Option<Stop>,
}

impl RunOutput {
    /// The exit code: interrupted (128 + signal) > timeout > crash > infrastructure > programs
    /// of an object not judged at all (unless `allow_skips`) > disagreement (with the model, or a
    /// kernel missing a case's own expectation) > success.
    pub fn exit_code(&self) -> u8 {
        let s = report::summarize(&self.rows);
        let infra_row = |r: &RunRow| r.agreement == Agreement::Infra && !report::unjudged(r);
        if let Some(Stop::Interrupted(sig)) = self.stopped {
            (128 + sig) as u8
        } else if s.timeouts > 0 || self.stopped == Some(Stop::TimedOut) {
            EXIT_TIMEOUT
        } else if s.crashes > 0 || s.warnings > 0 {
            EXIT_CRASH
        } else if !self.infra.is_empty() || self.rows.iter().any(infra_row) {
            EXIT_INFRA
        } else if s.object_unjudged > 0 && !self.allow_skips {
            EXIT_UNJUDGED
        } else if self.rows.iter().any(|r| r.agreement.is_disagreement() || r.kernel_expected == Some(false))
        {
            EXIT_DISAGREE
        } else {
            0
        }
    }
}

/// Why the run must not go on, checked between kernels: a signal, or the deadline passed.
fn stop_now(deadline: Instant) -> Option<Stop> {
    if let Some(sig) = lockstep_vm::interrupt::pending() {
        return Some(Stop::Interrupted(sig as i32));
    }
    (Instant::now() >= deadline).then_some(Stop::TimedOut)
}

fn stop_reason(stop: Stop, timeout: u64) -> String {
    match stop {
        Stop::Interrupted(sig) => format!("not run ({})", crate::exit::Interrupted { signal: sig }),
        Stop::TimedOut => {
            format!("not run (timeout: the run's time limit, --timeout {timeout} s, ran out: raise it with --timeout SECS)")
        }
    }
}

/// [`KernelTarget::prepare`] (kernel fetch, test module build) on a helper thread, so that the
/// run's deadline and SIGINT/SIGTERM bound it too: `Err` is why the wait was given up. A fetch or
/// build given up on goes on in the background until lockstep exits, moments later.
fn prepare_bounded(
    name: &str,
    profile: Option<&str>,
    opts: &RunnerOptions,
    deadline: Instant,
) -> Result<Result<KernelTarget>, Stop> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (name, profile, opts) = (name.to_string(), profile.map(str::to_string), opts.clone());
    std::thread::spawn(move || {
        let _ = tx.send(KernelTarget::prepare(&name, profile.as_deref(), &opts));
    });
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => return Ok(r),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return Ok(Err(anyhow::anyhow!("preparing the kernel failed (the helper thread died)")))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if let Some(stop) = stop_now(deadline) {
                    return Err(stop);
                }
            }
        }
    }
}

/// Runs `cases` on every kernel of `args` until `deadline` (the engine of `lockstep run`, used by
/// tests too), handing each row to `on_row` as soon as it exists.
pub fn run_cases(
    args: &RunArgs,
    cases: &[Case],
    deadline: Instant,
    on_row: &mut dyn FnMut(&RunRow),
) -> Result<RunOutput> {
    crate::runner::remove_stale_run_dirs(&std::env::temp_dir());
    let mut opts = args.guest.options(args.log, Timeouts::default().overall);
    opts.timeouts.run_deadline = Some(deadline);
    if opts.testmod == TestmodChoice::Off && !args.guest.no_testmod {
        let called = other_kfuncs_called(cases, &lockstep_core::module_src::bundled());
        if !called.is_empty() {
            opts.testmod = TestmodChoice::IfCalled(called);
        }
    }
    let kernels = args.kernels.names();
    let all_cases = cases;
    let pairs: usize = kernels.iter().map(|k| shard_cases(all_cases, k, args.shard).0.len()).sum();
    let bar = ProgressBar::new(pairs as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    let mut out =
        RunOutput { rows: Vec::new(), infra: Vec::new(), allow_skips: args.allow_skips, stopped: None };
    // `pos`: the case's position in all the cases (rows of shards merge back in that order).
    let mut emit = |out: &mut RunOutput, mut row: RunRow, pos: usize| {
        row.index = pos;
        let has = row.expected.is_some();
        row.kernel_met = report::ExpectationMet::of(has, row.kernel_expected);
        let model_judged = row.model_verdict != lockstep_core::verdict::VerdictKind::Unsupported;
        row.model_met = report::ExpectationMet::of(has, row.model_expected.filter(|_| model_judged));
        on_row(&row);
        out.rows.push(row);
    };
    for name in &kernels {
        // This shard's cases on this kernel (all of them without --shard).
        let (positions, mine) = shard_cases(all_cases, name, args.shard);
        if mine.is_empty() {
            continue;
        }
        let cases = &mine[..];
        bar.set_prefix(name.clone());
        bar.set_message("preparing");
        if out.stopped.is_none() {
            out.stopped = stop_now(deadline);
        }
        let target = if out.stopped.is_some() {
            None
        } else {
            match prepare_bounded(name, args.kernels.profile.as_deref(), &opts, deadline) {
                Err(stop) => {
                    out.stopped = Some(stop);
                    None
                }
                Ok(Ok(t)) => Some(t),
                Ok(Err(e)) if e.downcast_ref::<crate::exit::BadInput>().is_some() => return Err(e),
                Ok(Err(e)) => {
                    bar.suspend(|| eprintln!("lockstep: {name}: {e:#}"));
                    out.infra.push(format!("{name}: {e:#}"));
                    bar.inc(cases.len() as u64);
                    // One row per case, so that a shard's JSON (and `report merge`) counts it too.
                    let why = format!("not run: the kernel could not be prepared: {e:#}");
                    for (i, c) in cases.iter().enumerate() {
                        emit(
                            &mut out,
                            unrun_row(c, name, None, "", Outcome::NotRun, why.clone()),
                            positions[i],
                        );
                    }
                    continue;
                }
            }
        };
        if out.stopped.is_none() {
            out.stopped = stop_now(deadline);
        }
        let (Some(target), None) = (target, out.stopped) else {
            // Stopped: the kernel's cases are accounted for, not silently dropped.
            let reason = stop_reason(out.stopped.expect("stopped"), args.timeout);
            for (i, c) in cases.iter().enumerate() {
                emit(&mut out, unrun_row(c, name, None, "", Outcome::NotRun, reason.clone()), positions[i]);
            }
            continue;
        };
        let mut left = opts.clone();
        left.timeouts.overall = deadline.saturating_duration_since(Instant::now());
        let mut session = match KernelSession::start(&target, &left) {
            Ok(s) => s,
            Err(e) => {
                bar.suspend(|| eprintln!("lockstep: {name}: {e:#}"));
                out.infra.push(format!("{name}: {e:#}"));
                bar.inc(cases.len() as u64);
                let why = format!("not run: the guest could not be started: {e:#}");
                for (i, c) in cases.iter().enumerate() {
                    emit(
                        &mut out,
                        unrun_row(c, name, Some(&target), "", Outcome::NotRun, why.clone()),
                        positions[i],
                    );
                }
                continue;
            }
        };
        let module = target.module_kfuncs();
        let mut release = String::new();
        let mut module_status = ModuleStatus::Absent;
        let mut extra_status: Vec<ModuleStatus> = Vec::new();
        let mut boot_problem: Option<String> = None;
        let target = &target;
        let result = session.run(cases, args.log, &mut |ev| match ev {
            CaseEvent::Booted { release: r, module: m, extra_modules, boot_time } => {
                tracing::info!(kernel = %name, release = %r, module = ?m, extra = ?extra_modules, boot_s = boot_time.as_secs_f64(), "guest booted");
                bar.set_message(format!("booted {r} in {:.1}s", boot_time.as_secs_f64()));
                for e in &extra_modules {
                    if let ModuleStatus::Failed { name: m, error } = e {
                        bar.suspend(|| eprintln!("lockstep: {name}: module {m} not loaded: {error}"));
                    }
                }
                release = r;
                module_status = m;
                extra_status = extra_modules;
            }
            CaseEvent::BootFailed { excerpt, will_retry } => {
                bar.suspend(|| eprintln!("lockstep: {name}: boot failed{}:\n{excerpt}", if will_retry { " (retrying)" } else { "" }));
                if !will_retry {
                    boot_problem = Some(excerpt);
                }
            }
            CaseEvent::Retrying { index, excerpt } => {
                bar.suspend(|| eprintln!("lockstep: {name}: the guest ended while case {} ran; retrying it in a fresh one:\n{excerpt}", cases[index].name));
            }
            CaseEvent::Result { index, result, warnings } => {
                let c = &cases[index];
                let model = lockstep_core::model::check(c, &target.profile, &module);
                let used = module_kfuncs_used(c, &module);
                let module_missing = !used.is_empty() && !matches!(module_status, ModuleStatus::Loaded { .. });
                let mut agreement = classify(&model, &result);
                let mut note = result.setup_error.clone();
                if let Some(e) = result.setup_error.as_deref().filter(|e| e.starts_with("unknown kfunc")) {
                    note = Some(format!("{e} ({})", testmod_note(&extra_status, target)));
                }
                let mut outcome = Outcome::Ran;
                if module_missing {
                    agreement = Agreement::Infra;
                    outcome = Outcome::NotRun;
                    note = Some(format!("needs the test module ({}), which is not loaded: {}", used.join(", "), module_note(&module_status, target)));
                }
                if !warnings.is_empty() {
                    outcome = Outcome::Warn;
                    note = Some(format!("kernel WARN while the case ran:\n{}", warnings.join("\n")));
                }
                bar.inc(1);
                let mut row = base_row(c, name, target, &release, model, outcome, agreement, note);
                if result.setup_error.is_none() && outcome != Outcome::NotRun {
                    row.kernel_verdict = Some(result.verdict.verdict);
                    // An `unsupported` expectation is about the model only (the kernel always judges).
                    let model_only = lockstep_core::corpus::expectation(c, &target.profile.name)
                        .is_some_and(|e| e.verdict == lockstep_core::verdict::VerdictKind::Unsupported);
                    row.kernel_expected = if model_only {
                        None
                    } else {
                        lockstep_core::corpus::kernel_meets_expectation(c, &target.profile.name, &result)
                    };
                }
                row.kernel_message = result.verdict.message;
                row.kernel_insn = result.verdict.insn;
                row.kernel_errno = Some(result.errno);
                row.verification_usec = result.verification_usec;
                row.insns_processed = result.insns_processed;
                // An object program's log comes back for its __msg patterns: kept only when asked.
                row.log = result.log.filter(|_| args.log || !row.from_object || result.setup_error.is_some());
                emit(&mut out, row, positions[index]);
            }
            CaseEvent::Crashed { index, excerpt } => {
                bar.inc(1);
                emit(&mut out, unrun_row(&cases[index], name, Some(target), &release, Outcome::Crash, format!("the case crashed the kernel twice:\n{excerpt}")), positions[index]);
            }
            CaseEvent::Lost { index, excerpt } => {
                bar.inc(1);
                emit(&mut out, unrun_row(&cases[index], name, Some(target), &release, Outcome::Infra, format!("the guest ended twice while the case ran, the second time without a kernel message (not a kernel crash):\n{excerpt}")), positions[index]);
            }
            CaseEvent::TimedOut { index, excerpt } => {
                bar.inc(1);
                emit(&mut out, unrun_row(&cases[index], name, Some(target), &release, Outcome::Timeout, excerpt), positions[index]);
            }
            CaseEvent::NotRun { index, reason } => {
                bar.inc(1);
                emit(&mut out, unrun_row(&cases[index], name, Some(target), &release, Outcome::NotRun, reason), positions[index]);
            }
        });
        session.close();
        match result {
            Ok(()) => {}
            Err(e) => {
                if let Some(i) = e.downcast_ref::<crate::exit::Interrupted>() {
                    out.stopped = Some(Stop::Interrupted(i.signal));
                } else if e.downcast_ref::<crate::exit::RunTimedOut>().is_some() {
                    out.stopped = Some(Stop::TimedOut);
                } else {
                    bar.suspend(|| eprintln!("lockstep: {name}: {e:#}"));
                    out.infra.push(format!("{name}: {e:#}"));
                }
            }
        }
        if let Some(p) = boot_problem {
            out.infra.push(format!("{name}: the guest did not boot:\n{p}"));
        }
    }
    bar.finish_and_clear();
    Ok(out)
}

fn module_note(status: &ModuleStatus, target: &KernelTarget) -> String {
    match status {
        ModuleStatus::Failed { error, .. } => error.clone(),
        _ => target.module_error.clone().unwrap_or_else(|| "no module in the guest".into()),
    }
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
        note,
        verification_usec: None,
        insns_processed: None,
        log: None,
    }
}

/// A case without a kernel verdict (crashed, timed out, or never ran); `target` is None for a
/// kernel never prepared (the model then judges under the kernel's default profile, if known).
fn unrun_row(
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
            model_verdict: lockstep_core::verdict::VerdictKind::Unsupported,
            model_message: Some("not judged: the kernel was never prepared".into()),
            model_insn: None,
            agreement: Agreement::Infra,
            kernel_expected: None,
            model_expected: None,
            expected: None,
            kernel_met: None,
            model_met: None,
            from_object: c.object.is_some(),
            note: Some(note),
            verification_usec: None,
            insns_processed: None,
            log: None,
        },
    }
}

/// `lockstep run`: output files opened first, JSON lines streamed, reports written at the end
/// (also after SIGINT/SIGTERM or the run's time limit, with what was collected).
pub fn run(args: RunArgs) -> Result<u8> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    lockstep_vm::interrupt::install().context("installing the SIGINT/SIGTERM handlers")?;
    let module = lockstep_core::module_src::bundled();
    let paths = if args.paths.is_empty() { vec![cases::default_corpus()] } else { args.paths.clone() };
    let cases = cases::load(&paths, &module)?;
    let mut files = RunFiles::open(
        args.json.as_deref(),
        args.junit.as_deref(),
        args.markdown.as_deref(),
        args.differences.as_deref(),
        args.guest.console_dir.as_deref(),
    )?;
    let out = run_cases(&args, &cases, deadline, &mut |row| files.row(row))?;
    let mut errors: Vec<anyhow::Error> = Vec::new();
    errors.extend(files.finish_json().err());
    if let Some(f) = files.junit.take() {
        errors.extend(f.write(&report::junit(&out.rows)).err());
    }
    let diffs = kernel_diff::differences(&out.rows);
    if let Some(f) = files.markdown.take() {
        errors.extend(f.write(&(report::markdown(&out.rows) + &report::markdown_differences(&diffs))).err());
    }
    if let Some(f) = files.differences.take() {
        errors.extend(f.write(&kernel_diff::render(&diffs)).err());
    }
    if !files.json_on_stdout() {
        errors.extend(run_files::print(&report::matrix(&out.rows)).err());
    }
    eprint!("{}", report::summary_lines(&out.rows));
    if out.rows.iter().any(|r| r.kernel != out.rows[0].kernel) {
        eprint!("{}", kernel_diff::render_unexplained(&diffs));
    }
    // Kernels that were not prepared or did not boot are reported once, below, not per case.
    let unbooted = |k: &str| out.infra.iter().any(|i| i.starts_with(&format!("{k}: ")));
    for r in out.rows.iter().filter(|r| r.agreement.is_disagreement() || r.outcome != Outcome::Ran) {
        if r.outcome == Outcome::NotRun && (unbooted(&r.kernel) || out.stopped.is_some()) {
            continue;
        }
        eprintln!(
            "{}: {} on {}: {} (kernel {} / model {}){}",
            if r.outcome == Outcome::Ran { r.agreement.as_str() } else { r.outcome.as_str() },
            r.case,
            r.kernel,
            r.file,
            r.kernel_message.as_deref().or(r.kernel_verdict.map(|v| v.as_str())).unwrap_or("-"),
            r.model_message.as_deref().unwrap_or(r.model_verdict.as_str()),
            r.note.as_deref().map(|n| format!("\n  {}", n.lines().next().unwrap_or(""))).unwrap_or_default()
        );
    }
    for i in &out.infra {
        eprintln!("infrastructure: {i}");
    }
    match out.stopped {
        Some(Stop::Interrupted(sig)) => eprintln!(
            "lockstep: {}: stopped; the {} results collected are written",
            crate::exit::Interrupted { signal: sig },
            out.rows.iter().filter(|r| r.outcome != Outcome::NotRun).count()
        ),
        Some(Stop::TimedOut) => eprintln!(
            "lockstep: timeout: the run's time limit (--timeout {} s) ran out; raise it with --timeout SECS",
            args.timeout
        ),
        None => {}
    }
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    crate::github::emit(args.github, args.json.as_deref().is_some_and(|p| p.as_os_str() == "-"), &out.rows);
    Ok(out.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_core::verdict::VerdictKind;

    fn out(rows: Vec<RunRow>, stopped: Option<Stop>) -> RunOutput {
        RunOutput { rows, infra: Vec::new(), allow_skips: false, stopped }
    }

    fn with(outcome: Outcome, agreement: Agreement) -> RunRow {
        RunRow { outcome, ..report::test_row("c", "k", VerdictKind::Accept, agreement) }
    }

    #[test]
    fn exit_codes_name_what_happened() {
        let ok = with(Outcome::Ran, Agreement::Agree);
        assert_eq!(out(vec![ok.clone()], None).exit_code(), 0);
        let missed = RunRow { kernel_expected: Some(false), ..ok.clone() };
        assert_eq!(out(vec![ok.clone(), missed], None).exit_code(), EXIT_DISAGREE);
        let lost = with(Outcome::Infra, Agreement::Infra);
        assert_eq!(out(vec![ok.clone(), lost.clone()], None).exit_code(), EXIT_INFRA);
        let crash = with(Outcome::Crash, Agreement::Infra);
        assert_eq!(out(vec![lost, crash.clone()], None).exit_code(), EXIT_CRASH);
        let timeout = with(Outcome::Timeout, Agreement::Infra);
        assert_eq!(out(vec![crash.clone(), timeout], None).exit_code(), EXIT_TIMEOUT);
        assert_eq!(out(vec![ok.clone()], Some(Stop::TimedOut)).exit_code(), EXIT_TIMEOUT);
        assert_eq!(out(vec![crash], Some(Stop::Interrupted(15))).exit_code(), 143);
        assert_eq!(out(vec![ok], Some(Stop::Interrupted(2))).exit_code(), 130);
    }
}
