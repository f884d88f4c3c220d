//! Running the corpus on a kernel: the one seam between `validate-series` and the guest runner.
//!
//! [`default_runner`] is the wiring point: it returns [`GuestRunner`], which boots the kernel in
//! a QEMU guest through `crate::runner` (the engine of `lockstep run`: this static binary as
//! `/init`, the test module in the initramfs) and collects one [`KernelResult`] per case. A case
//! that crashed the guest twice, or never ran, is absent (reported as `no-result`). [`Replay`]
//! reads saved results instead (`--results-from`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use lockstep_core::case::Case;
use lockstep_core::proto::{KernelResult, ModuleStatus};
use lockstep_vm::guest::Timeouts;
use lockstep_vm::kernel::ResolvedKernel;

use crate::runner::{AccelChoice, CaseEvent, KernelSession, KernelTarget, RunnerOptions};

/// Runs cases on a kernel.
pub trait CorpusRunner {
    /// Boots `kernel` with the test module `module` loaded and runs `cases`; `profile` is the
    /// model profile that should predict this kernel. One entry per case, in the order of
    /// `cases` (`None`: no result, e.g. the case crashed the guest twice).
    fn run(
        &mut self,
        kernel: &ResolvedKernel,
        profile: &str,
        module: &Path,
        cases: &[Case],
    ) -> Result<Vec<Option<KernelResult>>>;
}

/// WIRING POINT: the runner `lockstep validate-series` uses.
pub fn default_runner(accel: AccelChoice, console_dir: Option<PathBuf>) -> Box<dyn CorpusRunner> {
    Box::new(GuestRunner { accel, timeouts: Timeouts::default(), console_dir })
}

/// Runs the cases in a QEMU guest with `crate::runner` (as `lockstep run` does).
pub struct GuestRunner {
    pub accel: AccelChoice,
    pub timeouts: Timeouts,
    /// Append each guest's console to a file in this directory.
    pub console_dir: Option<PathBuf>,
}

impl CorpusRunner for GuestRunner {
    fn run(
        &mut self,
        kernel: &ResolvedKernel,
        profile: &str,
        module: &Path,
        cases: &[Case],
    ) -> Result<Vec<Option<KernelResult>>> {
        let opts = RunnerOptions {
            accel: self.accel,
            timeouts: self.timeouts,
            want_log: false,
            module: true,
            console_dir: self.console_dir.clone(),
            extra_cmdline: Vec::new(),
            module_ko: Some(module.to_path_buf()),
            testmod: Default::default(),
            // Built kernels change with every series: their snapshots would only fill the cache.
            snapshots: false,
        };
        let target = KernelTarget::prepare(&kernel.name, Some(profile), &opts)?;
        if let Some(e) = &target.module_error {
            bail!(crate::exit::InfraError(format!("{}: {e}", kernel.name)));
        }
        let mut session = KernelSession::start(&target, &opts)?;
        let mut results: Vec<Option<KernelResult>> = vec![None; cases.len()];
        let mut problem: Option<String> = None;
        let started = std::time::Instant::now();
        session.run(cases, false, &mut |ev| match ev {
            CaseEvent::Booted { release, module, boot_time, .. } => {
                eprintln!(
                    "{}: booted {release} in {:.1}s, module {module:?}",
                    kernel.name,
                    boot_time.as_secs_f64()
                );
                if release != kernel.release {
                    problem.get_or_insert(format!(
                        "the guest runs {release}, not {} ({})",
                        kernel.release, kernel.name
                    ));
                }
                if !matches!(module, ModuleStatus::Loaded { .. }) {
                    problem.get_or_insert(format!("the test module is not loaded in the guest: {module:?}"));
                }
            }
            CaseEvent::BootFailed { excerpt, will_retry } => {
                eprintln!(
                    "{}: boot failed{}:\n{excerpt}",
                    kernel.name,
                    if will_retry { " (retrying)" } else { "" }
                );
            }
            CaseEvent::Result { index, result, warnings } => {
                if !warnings.is_empty() {
                    eprintln!(
                        "{}: kernel WARN during {}:\n{}",
                        kernel.name,
                        result.case,
                        warnings.join("\n")
                    );
                }
                results[index] = Some(result);
            }
            CaseEvent::Retrying { index, excerpt } => {
                eprintln!("{}: {} crashed the guest, retrying:\n{excerpt}", kernel.name, cases[index].name)
            }
            CaseEvent::Crashed { index, excerpt } => {
                eprintln!("{}: {} crashed the guest twice:\n{excerpt}", kernel.name, cases[index].name)
            }
            CaseEvent::Lost { index, excerpt } => {
                eprintln!("{}: {} lost the guest twice:\n{excerpt}", kernel.name, cases[index].name)
            }
            CaseEvent::TimedOut { index, excerpt } => {
                eprintln!("{}: {} timed out: {excerpt}", kernel.name, cases[index].name)
            }
            CaseEvent::NotRun { index, reason } => {
                eprintln!("{}: {} not run: {reason}", kernel.name, cases[index].name)
            }
        })?;
        session.close();
        if let Some(p) = problem {
            bail!(crate::exit::InfraError(p));
        }
        eprintln!(
            "{}: {} of {} cases in {:.1}s",
            kernel.name,
            results.iter().flatten().count(),
            cases.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(results)
    }
}

/// Replays results saved by `--save-results` (`<dir>/base.jsonl`, `<dir>/patched.jsonl`: one line
/// per case in corpus order, a [`KernelResult`] or `null`; `<dir>/kernels.json`: the two kernels):
/// for re-judging a run, and for testing the whole command without kernels.
pub struct Replay {
    pub dir: PathBuf,
    /// Which file the next call reads (`base`, then `patched`).
    next: usize,
}

impl Replay {
    /// Replays from `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Replay { dir, next: 0 }
    }
}

/// Reads JSON lines of [`KernelResult`] or `null`.
pub fn read_results(path: &Path) -> Result<Vec<Option<KernelResult>>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: not a kernel result", path.display(), i + 1))
        })
        .collect()
}

/// Writes JSON lines of [`KernelResult`] or `null`.
pub fn write_results(path: &Path, results: &[Option<KernelResult>]) -> Result<()> {
    let mut s = String::new();
    for r in results {
        s.push_str(&serde_json::to_string(r)?);
        s.push('\n');
    }
    std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))
}

impl CorpusRunner for Replay {
    fn run(
        &mut self,
        _kernel: &ResolvedKernel,
        _profile: &str,
        _module: &Path,
        cases: &[Case],
    ) -> Result<Vec<Option<KernelResult>>> {
        let name = ["base.jsonl", "patched.jsonl"].get(self.next).context("replay: more than two runs")?;
        self.next += 1;
        let path = self.dir.join(name);
        let r = read_results(&path)?;
        if r.len() != cases.len() {
            bail!(crate::exit::BadInput(format!(
                "{}: {} results for {} cases (saved with another corpus?)",
                path.display(),
                r.len(),
                cases.len()
            )));
        }
        for (c, r) in cases.iter().zip(&r) {
            if let Some(r) = r {
                if r.case != c.name {
                    bail!(crate::exit::BadInput(format!(
                        "{}: result for {:?} where case {:?} was expected",
                        path.display(),
                        r.case,
                        c.name
                    )));
                }
            }
        }
        Ok(r)
    }
}
