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

use crate::runner::{CaseEvent, GuestArgs, KernelSession, KernelTarget, RunnerOptions};

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
pub fn default_runner(guest: GuestArgs) -> Box<dyn CorpusRunner> {
    Box::new(GuestRunner { guest })
}

/// Runs the cases in a QEMU guest with `crate::runner` (as `lockstep run` does).
pub struct GuestRunner {
    /// The shared guest flags (accelerator, time limits, consoles, extra parameters).
    pub guest: GuestArgs,
}

/// The runner options of one kernel: the guest flags, with the test module `module` always
/// loaded and no snapshots (built kernels change with every series: their snapshots would only
/// fill the cache).
fn options(guest: &GuestArgs, module: &Path) -> RunnerOptions {
    RunnerOptions {
        module: true,
        module_ko: Some(module.to_path_buf()),
        snapshots: false,
        ..guest.options(false, Timeouts::default().overall)
    }
}

/// One kernel's run as its events arrive: the results by case, the first reason the run cannot
/// count (the wrong kernel booted, the test module not loaded). Pure: events in, lines for
/// stderr out.
struct SideEvents<'a> {
    kernel: &'a ResolvedKernel,
    cases: &'a [Case],
    results: Vec<Option<KernelResult>>,
    problem: Option<String>,
}

impl<'a> SideEvents<'a> {
    fn new(kernel: &'a ResolvedKernel, cases: &'a [Case]) -> Self {
        SideEvents { kernel, cases, results: vec![None; cases.len()], problem: None }
    }

    /// Takes one event; what to tell the user about it, if anything.
    fn take(&mut self, ev: CaseEvent) -> Option<String> {
        let (kernel, cases) = (self.kernel, self.cases);
        let k = &kernel.name;
        let name = |index: usize| &cases[index].name;
        match ev {
            CaseEvent::Booted { release, module, boot_time, .. } => {
                if release != kernel.release {
                    self.problem
                        .get_or_insert(format!("the guest runs {release}, not {} ({k})", kernel.release));
                }
                if !matches!(module, ModuleStatus::Loaded { .. }) {
                    self.problem
                        .get_or_insert(format!("the test module is not loaded in the guest: {module:?}"));
                }
                Some(format!("{k}: booted {release} in {:.1}s, module {module:?}", boot_time.as_secs_f64()))
            }
            CaseEvent::BootFailed { excerpt, will_retry } => {
                Some(format!("{k}: boot failed{}:\n{excerpt}", if will_retry { " (retrying)" } else { "" }))
            }
            CaseEvent::Result { index, result, warnings } => {
                let line = (!warnings.is_empty())
                    .then(|| format!("{k}: kernel WARN during {}:\n{}", result.case, warnings.join("\n")));
                self.results[index] = Some(result);
                line
            }
            CaseEvent::Retrying { index, excerpt } => {
                Some(format!("{k}: {} crashed the guest, retrying:\n{excerpt}", name(index)))
            }
            CaseEvent::Crashed { index, excerpt } => {
                Some(format!("{k}: {} crashed the guest twice:\n{excerpt}", name(index)))
            }
            CaseEvent::Lost { index, excerpt } => {
                Some(format!("{k}: {} lost the guest twice:\n{excerpt}", name(index)))
            }
            CaseEvent::TimedOut { index, excerpt } => {
                Some(format!("{k}: {} timed out: {excerpt}", name(index)))
            }
            CaseEvent::NotRun { index, reason } => Some(format!("{k}: {} not run: {reason}", name(index))),
        }
    }
}

impl CorpusRunner for GuestRunner {
    fn run(
        &mut self,
        kernel: &ResolvedKernel,
        profile: &str,
        module: &Path,
        cases: &[Case],
    ) -> Result<Vec<Option<KernelResult>>> {
        let opts = options(&self.guest, module);
        let target = KernelTarget::prepare(&kernel.name, Some(profile), &opts)?;
        if let Some(e) = &target.module_error {
            bail!(crate::exit::InfraError(format!("{}: {e}", kernel.name)));
        }
        let mut session = KernelSession::start(&target, &opts)?;
        let mut side = SideEvents::new(kernel, cases);
        let started = std::time::Instant::now();
        session.run(cases, false, &mut |ev| {
            if let Some(line) = side.take(ev) {
                eprintln!("{line}");
            }
        })?;
        session.close();
        if let Some(p) = side.problem {
            bail!(crate::exit::InfraError(p));
        }
        eprintln!(
            "{}: {} of {} cases in {:.1}s",
            kernel.name,
            side.results.iter().flatten().count(),
            cases.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(side.results)
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

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_core::case::ProgType;
    use lockstep_core::proto::test_support::kernel_result;
    use lockstep_core::verdict::Verdict;
    use std::time::Duration;

    fn kernel() -> ResolvedKernel {
        serde_json::from_value(serde_json::json!({"name": "build:aaaaaaaaaaaa", "vmlinuz": "/x/bzImage",
            "config": "/x/config", "module_target": {"kind": "tree", "dir": "/x/tree"},
            "release": "7.2.13-lockstep", "identity": "7.2.13-1+lockstep.aaaaaaaaaaaa"}))
        .unwrap()
    }

    fn booted(release: &str, module: ModuleStatus) -> CaseEvent {
        CaseEvent::Booted {
            release: release.into(),
            module,
            extra_modules: vec![],
            boot_time: Duration::ZERO,
        }
    }

    #[test]
    fn results_land_at_their_case_and_the_wrong_kernel_or_no_module_is_a_problem() {
        let k = kernel();
        let cases = vec![
            Case::new("a", ProgType::SchedCls, Default::default(), ""),
            Case::new("b", ProgType::SchedCls, Default::default(), ""),
        ];
        let loaded = ModuleStatus::Loaded { name: "lockstep_test".into(), btf_id: 1 };
        let mut side = SideEvents::new(&k, &cases);
        assert!(side
            .take(booted("7.2.13-lockstep", loaded.clone()))
            .unwrap()
            .contains("booted 7.2.13-lockstep"));
        let r =
            CaseEvent::Result { index: 1, result: kernel_result("b", Verdict::accept()), warnings: vec![] };
        assert_eq!(side.take(r), None);
        let line = side.take(CaseEvent::Crashed { index: 0, excerpt: "BUG".into() }).unwrap();
        assert_eq!(line, "build:aaaaaaaaaaaa: a crashed the guest twice:\nBUG");
        assert_eq!(side.results, [None, Some(kernel_result("b", Verdict::accept()))]);
        assert_eq!(side.problem, None);

        let mut side = SideEvents::new(&k, &cases);
        side.take(booted("7.2.0-other", ModuleStatus::Absent));
        assert_eq!(
            side.problem.as_deref(),
            Some("the guest runs 7.2.0-other, not 7.2.13-lockstep (build:aaaaaaaaaaaa)")
        );
        let mut side = SideEvents::new(&k, &cases);
        side.take(booted("7.2.13-lockstep", ModuleStatus::Absent));
        assert_eq!(side.problem.as_deref(), Some("the test module is not loaded in the guest: Absent"));
    }

    #[test]
    fn the_built_module_is_always_loaded_and_no_snapshot_is_taken() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            guest: GuestArgs,
        }
        let g = Cli::parse_from(["x", "--accel", "tcg", "--boot-timeout", "7"]).guest;
        let o = options(&g, Path::new("/m.ko"));
        assert_eq!((o.module, o.module_ko.as_deref(), o.snapshots), (true, Some(Path::new("/m.ko")), false));
        assert_eq!((o.accel, o.timeouts.boot), (crate::runner::AccelChoice::Tcg, Duration::from_secs(7)));
        assert_eq!(o.timeouts.overall, Timeouts::default().overall);
    }
}
