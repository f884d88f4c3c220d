//! Running the corpus on a kernel: the one seam between `validate-series` and the guest runner.
//!
//! # Wiring the real runner
//! [`default_runner`] is the only place to change: return a [`CorpusRunner`] that boots
//! `kernel.vmlinuz` in QEMU with the guest agent and `module` in the initramfs, runs every case and
//! returns one [`KernelResult`] per case it got a verdict for (a case that crashed the guest
//! twice is simply absent: it is reported as `no-result`). Everything else — kernel builds,
//! module builds, the model, flip classification and the reports — is already done by the caller.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use lockstep_core::case::Case;
use lockstep_core::proto::KernelResult;
use lockstep_vm::kernel::ResolvedKernel;

/// Runs cases on a kernel.
pub trait CorpusRunner {
    /// Boots `kernel` with the test module `module` loaded and runs `cases`; the results, each
    /// naming its case (`KernelResult::case`), in any order, missing cases allowed.
    fn run(&mut self, kernel: &ResolvedKernel, module: &Path, cases: &[Case]) -> Result<Vec<KernelResult>>;
}

/// The runner `lockstep validate-series` uses.
///
/// WIRING POINT: replace `NotWired` with the real runner (e.g. a struct wrapping the `runner`
/// module's run function) once `lockstep run` exists.
pub fn default_runner() -> Box<dyn CorpusRunner> {
    Box::new(NotWired)
}

/// Placeholder until the real-kernel runner is wired in [`default_runner`].
pub struct NotWired;

impl CorpusRunner for NotWired {
    fn run(&mut self, kernel: &ResolvedKernel, _module: &Path, _cases: &[Case]) -> Result<Vec<KernelResult>> {
        bail!(
            "running cases on {} ({}) needs the real-kernel runner, which is not wired yet \
             (harness/lockstep/src/validate/runner.rs: default_runner); the kernels and modules are built",
            kernel.name,
            kernel.identity
        )
    }
}

/// Replays results saved by `--save-results` (`<dir>/base.jsonl`, `<dir>/patched.jsonl`): for
/// re-judging a run, and for testing the whole command without kernels.
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

/// Reads JSON lines of [`KernelResult`].
pub fn read_results(path: &Path) -> Result<Vec<KernelResult>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).with_context(|| format!("{}:{}: not a kernel result", path.display(), i + 1)))
        .collect()
}

/// Writes JSON lines of [`KernelResult`].
pub fn write_results(path: &Path, results: &[KernelResult]) -> Result<()> {
    let mut s = String::new();
    for r in results {
        s.push_str(&serde_json::to_string(r)?);
        s.push('\n');
    }
    std::fs::write(path, s).with_context(|| format!("writing {}", path.display()))
}

impl CorpusRunner for Replay {
    fn run(&mut self, _kernel: &ResolvedKernel, _module: &Path, _cases: &[Case]) -> Result<Vec<KernelResult>> {
        let name = ["base.jsonl", "patched.jsonl"].get(self.next).context("replay: more than two runs")?;
        self.next += 1;
        read_results(&self.dir.join(name))
    }
}
