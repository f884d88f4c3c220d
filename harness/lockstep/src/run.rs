//! `lockstep run`: the cases on real kernels, compared with the model.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lockstep_core::asm::Reloc;
use lockstep_core::case::Case;
use lockstep_core::compare::{classify, Agreement};
use lockstep_core::proto::ModuleStatus;
use lockstep_core::verdict::Verdict;
use lockstep_vm::guest::Timeouts;

use crate::exit::{EXIT_CRASH, EXIT_DISAGREE, EXIT_INFRA};
use crate::report::{self, Outcome, RunRow};
use crate::runner::{CaseEvent, GuestArgs, KernelArgs, KernelSession, KernelTarget};
use crate::{cases, jobs, kernel_diff, output};

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
    /// Seconds for the whole run (all kernels).
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    /// Keep the full verifier log of every case (in the JSON output).
    #[arg(long)]
    pub log: bool,
    /// Kernels run at the same time, each in its own guest (default: the number of cores).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(usize))]
    pub jobs: Option<usize>,
    /// Case files or directories (default: the bundled corpus).
    pub paths: Vec<PathBuf>,
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

/// Everything `run` produced, plus what it means for the exit code.
pub struct RunOutput {
    pub rows: Vec<RunRow>,
    /// Kernels that could not be prepared or booted, with the reason.
    pub infra: Vec<String>,
}

impl RunOutput {
    /// The exit code: crash > infrastructure > disagreement > success.
    pub fn exit_code(&self) -> u8 {
        let s = report::summarize(&self.rows);
        if s.crashes > 0 || s.warnings > 0 {
            EXIT_CRASH
        } else if !self.infra.is_empty() || self.rows.iter().any(|r| r.agreement == Agreement::Infra) {
            EXIT_INFRA
        } else if self.rows.iter().any(|r| r.agreement.is_disagreement()) {
            EXIT_DISAGREE
        } else {
            0
        }
    }
}

/// Runs `cases` on every kernel of `args` (the engine of `lockstep run`, used by tests too): up
/// to `--jobs` kernels at a time, each in its own guest; the rows come out in kernel order, then
/// case order, whatever the parallelism.
pub fn run_cases(args: &RunArgs, cases: &[Case]) -> Result<RunOutput> {
    let opts = args.guest.options(args.log, Timeouts::default().overall);
    let kernels = args.kernels.names();
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let bar = ProgressBar::new((cases.len() * kernels.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_prefix(if kernels.len() == 1 {
        kernels[0].clone()
    } else {
        format!("{} kernels", kernels.len())
    });
    let jobs = args.jobs.unwrap_or_else(jobs::default_jobs);
    let per_kernel =
        jobs::map_ordered(&kernels, jobs, |name| run_kernel(name, args, cases, &opts, deadline, &bar));
    let mut out = RunOutput { rows: Vec::new(), infra: Vec::new() };
    for k in per_kernel {
        let k = k?;
        out.rows.extend(k.rows);
        out.infra.extend(k.infra);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// Runs `cases` on kernel `name` in one guest (booted again after a crash).
fn run_kernel(
    name: &str,
    args: &RunArgs,
    cases: &[Case],
    opts: &crate::runner::RunnerOptions,
    deadline: Instant,
    bar: &ProgressBar,
) -> Result<RunOutput> {
    let mut out = RunOutput { rows: Vec::new(), infra: Vec::new() };
    bar.set_message("preparing");
    let target = match KernelTarget::prepare(name, args.kernels.profile.as_deref(), opts) {
        Ok(t) => t,
        Err(e) if e.downcast_ref::<crate::exit::BadInput>().is_some() => return Err(e),
        Err(e) => {
            bar.suspend(|| eprintln!("lockstep: {name}: {e:#}"));
            out.infra.push(format!("{name}: {e:#}"));
            bar.inc(cases.len() as u64);
            return Ok(out);
        }
    };
    let mut left = opts.clone();
    left.timeouts.overall = deadline.saturating_duration_since(Instant::now());
    let mut session = match KernelSession::start(&target, &left) {
        Ok(s) => s,
        Err(e) => {
            bar.suspend(|| eprintln!("lockstep: {name}: {e:#}"));
            out.infra.push(format!("{name}: {e:#}"));
            bar.inc(cases.len() as u64);
            return Ok(out);
        }
    };
    let module = target.module_kfuncs();
    let mut release = String::new();
    let mut module_status = ModuleStatus::Absent;
    let mut rows: Vec<Option<RunRow>> = vec![None; cases.len()];
    let mut boot_problem: Option<String> = None;
    session.run(cases, args.log, &mut |ev| match ev {
        CaseEvent::Booted { release: r, module: m, boot_time } => {
            tracing::info!(kernel = %name, release = %r, module = ?m, boot_s = boot_time.as_secs_f64(), "guest booted");
            bar.set_message(format!("{name}: booted {r} in {:.1}s", boot_time.as_secs_f64()));
            release = r;
            module_status = m;
        }
        CaseEvent::BootFailed { excerpt, will_retry } => {
            bar.suspend(|| eprintln!("lockstep: {name}: boot failed{}:\n{excerpt}", if will_retry { " (retrying)" } else { "" }));
            if !will_retry {
                boot_problem = Some(excerpt);
            }
        }
        CaseEvent::Retrying { index, excerpt } => {
            bar.suspend(|| eprintln!("lockstep: {name}: case {} crashed the guest; retrying in a fresh one:\n{excerpt}", cases[index].name));
        }
        CaseEvent::Result { index, result, warnings } => {
            let c = &cases[index];
            let model = lockstep_core::model::check(c, &target.profile, &module);
            let used = module_kfuncs_used(c, &module);
            let module_missing = !used.is_empty() && !matches!(module_status, ModuleStatus::Loaded { .. });
            let mut agreement = classify(&model, &result);
            let mut note = result.setup_error.clone();
            let mut outcome = Outcome::Ran;
            if module_missing {
                agreement = Agreement::Infra;
                outcome = Outcome::NotRun;
                note = Some(format!("needs the test module ({}), which is not loaded: {}", used.join(", "), module_note(&module_status, &target)));
            }
            if !warnings.is_empty() {
                outcome = Outcome::Warn;
                note = Some(format!("kernel WARN while the case ran:\n{}", warnings.join("\n")));
            }
            bar.inc(1);
            let mut row = base_row(c, name, &target, &release, model, outcome, agreement, note);
            if result.setup_error.is_none() && outcome != Outcome::NotRun {
                row.kernel_verdict = Some(result.verdict.verdict);
                row.kernel_expected = lockstep_core::corpus::kernel_meets_expectation(c, &target.profile.name, &result);
            }
            row.kernel_message = result.verdict.message;
            row.kernel_insn = result.verdict.insn;
            row.kernel_errno = Some(result.errno);
            row.verification_usec = result.verification_usec;
            row.insns_processed = result.insns_processed;
            row.log = result.log;
            rows[index] = Some(row);
        }
        CaseEvent::Crashed { index, excerpt } => {
            bar.inc(1);
            rows[index] = Some(unrun_row(&cases[index], name, &target, &release, Outcome::Crash, format!("the case crashed the kernel twice:\n{excerpt}")));
        }
        CaseEvent::NotRun { index, reason } => {
            bar.inc(1);
            rows[index] = Some(unrun_row(&cases[index], name, &target, &release, Outcome::NotRun, reason));
        }
    })?;
    session.close();
    if let Some(p) = boot_problem {
        out.infra.push(format!("{name}: the guest did not boot:\n{p}"));
    }
    out.rows.extend(rows.into_iter().flatten());
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
        note,
        verification_usec: None,
        insns_processed: None,
        log: None,
    }
}

/// A case without a kernel verdict (crashed, or never ran).
fn unrun_row(
    c: &Case,
    kernel: &str,
    target: &KernelTarget,
    release: &str,
    outcome: Outcome,
    note: String,
) -> RunRow {
    let model = lockstep_core::model::check(c, &target.profile, &target.module_kfuncs());
    base_row(c, kernel, target, release, model, outcome, Agreement::Infra, Some(note))
}

/// `lockstep run`.
pub fn run(args: RunArgs) -> Result<u8> {
    let module = lockstep_core::module_src::bundled();
    let paths = if args.paths.is_empty() { vec![cases::default_corpus()] } else { args.paths.clone() };
    let cases = cases::load(&paths, &module)?;
    let out = run_cases(&args, &cases)?;
    output::json_or_text(
        args.json.as_deref(),
        || report::json_lines(&out.rows),
        || report::matrix(&out.rows),
    )?;
    if let Some(p) = &args.junit {
        output::write_file(p, &report::junit(&out.rows))?;
    }
    let diffs = kernel_diff::differences(&out.rows);
    if let Some(p) = &args.markdown {
        output::write_file(p, &(report::markdown(&out.rows) + &report::markdown_differences(&diffs)))?;
    }
    if let Some(p) = &args.differences {
        output::write_file(p, &kernel_diff::render(&diffs))?;
    }
    eprint!("{}", report::summary_lines(&out.rows));
    if out.rows.iter().any(|r| r.kernel != out.rows[0].kernel) {
        eprint!("{}", kernel_diff::render_unexplained(&diffs));
    }
    // Kernels that did not boot are reported once, below, not per case.
    let unbooted = |k: &str| out.infra.iter().any(|i| i.starts_with(&format!("{k}: the guest did not boot")));
    for r in out.rows.iter().filter(|r| r.agreement.is_disagreement() || r.outcome != Outcome::Ran) {
        if r.outcome == Outcome::NotRun && unbooted(&r.kernel) {
            continue;
        }
        eprintln!(
            "{}: {} on {}: {} (kernel {} / model {}){}",
            r.agreement.as_str(),
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
    Ok(out.exit_code())
}
