//! Running cases on one kernel: a QEMU guest whose `/init` is this very (static) binary in agent
//! mode, or the host's own kernel. [`KernelTarget::prepare`] resolves a kernel name (fetch, test
//! module build, model profile); [`KernelSession`] keeps a guest alive across calls to
//! [`KernelSession::run`] (and [`KernelSession::list_kfuncs`]), so `run`, `fuzz` and `census`
//! share one path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use lockstep_core::case::Case;
use lockstep_core::profile::{KernelProfile, ModuleKfuncs};
use lockstep_core::proto::{KernelResult, KfuncListing, ModuleStatus};
use lockstep_vm::debian::KernelCache;
use lockstep_vm::guest::batch::{BatchEvent, BatchOptions, Session};
use lockstep_vm::guest::{kvm, GuestConfig, GuestOutcome, Timeouts};
use lockstep_vm::initramfs::{self, InitramfsSpec};
use lockstep_vm::qemu::Accel;

use crate::kernel::{self, BuiltModule};

/// The kernel name of host mode.
pub const HOST: &str = "host";

/// How to pick the accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AccelChoice {
    /// KVM if a probe shows it really runs a kernel (cached per machine), else TCG.
    Auto,
    Kvm,
    Tcg,
}

/// Options shared by everything that runs cases on kernels.
#[derive(Clone, Debug)]
pub struct RunnerOptions {
    pub accel: AccelChoice,
    pub timeouts: Timeouts,
    /// Ask for the full verifier log of every case.
    pub want_log: bool,
    /// Build and load the test module.
    pub module: bool,
    /// Append the guests' consoles to files in this directory.
    pub console_dir: Option<PathBuf>,
    /// Extra kernel parameters.
    pub extra_cmdline: Vec<String>,
    /// A prebuilt test module to use instead of building one.
    pub module_ko: Option<PathBuf>,
    /// Restore guests from snapshots in the cache (saved after a first boot).
    pub snapshots: bool,
}

/// The guest options of every command that boots kernels (`run`, `census`, `fuzz`), flattened
/// into each command's arguments.
#[derive(clap::Args, Clone, Debug)]
pub struct GuestArgs {
    /// Accelerator.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelChoice,
    /// Seconds from QEMU start to the agent's greeting.
    #[arg(long, default_value_t = 120)]
    pub boot_timeout: u64,
    /// Seconds per case (program, probe).
    #[arg(long, default_value_t = 60)]
    pub case_timeout: u64,
    /// Use this built test module (.ko) instead of building one for each kernel.
    #[arg(long, value_name = "KO", conflicts_with = "no_module")]
    pub module_ko: Option<PathBuf>,
    /// Do not build or load the test module (the cases calling its kfuncs are reported as not run).
    #[arg(long)]
    pub no_module: bool,
    /// Extra kernel command-line parameters for the guests (later ones win).
    #[arg(long, value_name = "PARAM")]
    pub append: Vec<String>,
    /// Append each guest's console to DIR/console-<kernel>.log.
    #[arg(long, value_name = "DIR")]
    pub console_dir: Option<PathBuf>,
    /// Always boot guests: neither restore them from nor save them as snapshots
    /// (`~/.cache/lockstep/snapshots/`).
    #[arg(long)]
    pub no_snapshot: bool,
}

impl GuestArgs {
    /// The runner options these arguments ask for (`overall`: the life of one guest).
    pub fn options(&self, want_log: bool, overall: Duration) -> RunnerOptions {
        RunnerOptions {
            accel: self.accel,
            timeouts: Timeouts {
                boot: Duration::from_secs(self.boot_timeout),
                case: Duration::from_secs(self.case_timeout),
                overall,
                ..Timeouts::default()
            },
            want_log,
            module: !self.no_module,
            console_dir: self.console_dir.clone(),
            extra_cmdline: self.append.clone(),
            module_ko: self.module_ko.clone(),
            snapshots: !self.no_snapshot,
        }
    }
}

/// Which kernels a command runs on (`run`, `census`).
#[derive(clap::Args, Clone, Debug)]
pub struct KernelArgs {
    /// Kernels (debian:6.12, debian:7.2, debian:7.3); default: debian:7.2 and debian:7.3.
    #[arg(long = "kernel", short = 'k')]
    pub kernels: Vec<String>,
    /// This machine's own kernel instead (root only; needs --profile).
    #[arg(long, conflicts_with = "kernels")]
    pub host: bool,
    /// The model profile to compare with (default: the kernel's own, e.g. 7.2 for debian:7.2).
    #[arg(long)]
    pub profile: Option<String>,
}

/// The default kernel matrix.
pub const DEFAULT_KERNELS: [&str; 2] = ["debian:7.2", "debian:7.3"];

impl KernelArgs {
    /// The kernel names: [`HOST`], the ones given, or [`DEFAULT_KERNELS`].
    pub fn names(&self) -> Vec<String> {
        if self.host {
            vec![HOST.into()]
        } else if self.kernels.is_empty() {
            DEFAULT_KERNELS.iter().map(|s| s.to_string()).collect()
        } else {
            self.kernels.clone()
        }
    }
}

/// Where cases run.
#[derive(Clone, Debug)]
enum Place {
    Guest { vmlinuz: PathBuf },
    Host,
}

/// A kernel ready to run cases on, and how the model should see it.
#[derive(Clone, Debug)]
pub struct KernelTarget {
    /// `debian:7.2`, or [`HOST`].
    pub name: String,
    /// Exact package version of the image (host mode: `uname -r`).
    pub package_version: String,
    /// The profile that should predict this kernel.
    pub profile: KernelProfile,
    /// The test module built for it, if any.
    pub module: Option<BuiltModule>,
    /// Why the module is missing, when it was wanted.
    pub module_error: Option<String>,
    place: Place,
}

impl KernelTarget {
    /// Resolves `name` (`debian:X`, `build:<alias-or-hash>` or [`HOST`]): fetches the kernel, builds the test module, picks
    /// the profile (`profile` overrides the default of the name).
    pub fn prepare(name: &str, profile: Option<&str>, opts: &RunnerOptions) -> Result<KernelTarget> {
        if name == HOST {
            let Some(p) = profile else {
                return Err(crate::exit::BadInput(
                    "--host needs --profile (the profile the host kernel should follow)".into(),
                )
                .into());
            };
            let release =
                std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
            return Ok(KernelTarget {
                name: HOST.into(),
                package_version: release,
                profile: kernel::profile(p)?,
                module: None,
                module_error: Some(
                    "host mode: lockstep does not load modules on the host (insmod lockstep_test.ko first)"
                        .into(),
                ),
                place: Place::Host,
            });
        }
        kernel::known_kernel(name)?;
        let pname = match profile.map(str::to_string).or_else(|| kernel::default_profile(name)) {
            Some(p) => p,
            None => {
                return Err(crate::exit::BadInput(format!(
                    "no default profile for kernel {name}: pass --profile"
                ))
                .into())
            }
        };
        let profile = kernel::profile(&pname)?;
        let (vmlinuz, package_version) = kernel::image(name)?;
        let built = match &opts.module_ko {
            Some(ko) => kernel::module_from_ko(ko, None),
            None => kernel::build_module(name),
        };
        let (module, module_error) = if opts.module {
            match built {
                Ok(m) => (Some(m), None),
                Err(e) => {
                    tracing::warn!("{name}: {e:#}");
                    (None, Some(format!("test module not built: {e:#}")))
                }
            }
        } else {
            (None, Some("test module disabled (--no-module)".into()))
        };
        Ok(KernelTarget {
            name: name.into(),
            package_version,
            profile,
            module,
            module_error,
            place: Place::Guest { vmlinuz },
        })
    }

    /// The kfuncs the model assumes: the built module's flags, else the module source's.
    pub fn module_kfuncs(&self) -> ModuleKfuncs {
        self.module.as_ref().map_or_else(lockstep_core::module_src::bundled, |m| m.kfuncs.clone())
    }
}

/// What happened to one case, handed to the callback of [`KernelSession::run`].
#[derive(Clone, Debug)]
pub enum CaseEvent {
    /// A guest booted (or host mode started).
    Booted { release: String, module: ModuleStatus, boot_time: Duration },
    /// A guest failed to boot.
    BootFailed { excerpt: String, will_retry: bool },
    /// The kernel's answer; `warnings` are WARN lines printed meanwhile.
    Result { index: usize, result: KernelResult, warnings: Vec<String> },
    /// The case crashed a guest; it will be retried once.
    Retrying { index: usize, excerpt: String },
    /// The case crashed guests twice.
    Crashed { index: usize, excerpt: String },
    /// The case never ran.
    NotRun { index: usize, reason: String },
}

enum Backend {
    Guest { session: Box<Session>, _dir: tempfile::TempDir },
    Host { loader: Result<lockstep_bpf::Loader, String> },
}

/// A kernel with its guest (booted on first use, kept across calls).
pub struct KernelSession {
    backend: Backend,
    /// The accelerator the guest runs with (None in host mode).
    pub accel: Option<Accel>,
}

fn excerpt(o: &GuestOutcome) -> String {
    match o {
        GuestOutcome::Panic { excerpt }
        | GuestOutcome::KvmFailure { excerpt }
        | GuestOutcome::BootFailure { excerpt } => excerpt.clone(),
        GuestOutcome::Hang { stage } => format!("no answer in time (hang) at {stage:?}"),
        GuestOutcome::Completed => String::new(),
    }
}

impl KernelSession {
    /// Prepares the guest (initramfs with this binary as `/init` and the module; accelerator).
    pub fn start(target: &KernelTarget, opts: &RunnerOptions) -> Result<KernelSession> {
        let vmlinuz = match &target.place {
            Place::Host => {
                let loader = lockstep_bpf::Loader::new().map_err(|e| e.to_string());
                return Ok(KernelSession { backend: Backend::Host { loader }, accel: None });
            }
            Place::Guest { vmlinuz } => vmlinuz.clone(),
        };
        let exe = std::env::current_exe().context("finding the lockstep binary")?;
        ensure_static(&exe)?;
        let dir =
            tempfile::Builder::new().prefix("lockstep-run-").tempdir().context("creating a run directory")?;
        let initrd = dir.path().join("initramfs.cpio");
        let spec = InitramfsSpec {
            init: exe,
            module: target.module.as_ref().map(|m| m.ko.clone()),
            extra: Vec::new(),
        };
        initramfs::build(&spec, &initrd).with_context(|| format!("building {}", initrd.display()))?;
        let mut cfg = GuestConfig::new(&vmlinuz, &initrd);
        cfg.timeouts = opts.timeouts;
        cfg.extra_cmdline = opts.extra_cmdline.clone();
        cfg.run_dir = dir.path().to_path_buf();
        if let Some(d) = &opts.console_dir {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        cfg.console_log = opts
            .console_dir
            .as_ref()
            .map(|d| d.join(format!("console-{}.log", target.name.replace([':', '/'], "-"))));
        if !which("qemu-system-x86_64") {
            bail!(crate::exit::InfraError("qemu-system-x86_64 not found (run scripts/setup.sh)".into()));
        }
        cfg.accel = match opts.accel {
            AccelChoice::Tcg => Accel::Tcg,
            AccelChoice::Kvm => Accel::Kvm,
            AccelChoice::Auto => {
                let p = kvm::probe_kvm(&cfg, &KernelCache::default_root(), false);
                if p.accel == Accel::Tcg {
                    tracing::warn!("KVM not usable here ({}): using TCG (slower)", p.reason);
                }
                p.accel
            }
        };
        if opts.snapshots {
            // LOCKSTEP_SNAPSHOT_DIR: another store (tests use a private one).
            cfg.snapshot_dir = Some(
                std::env::var_os("LOCKSTEP_SNAPSHOT_DIR")
                    .map(PathBuf::from)
                    .unwrap_or_else(|| KernelCache::default_root().join("snapshots")),
            );
        }
        let batch = BatchOptions { guest: cfg, want_log: opts.want_log, boot_attempts: 3 };
        let accel = Some(batch.guest.accel);
        Ok(KernelSession {
            backend: Backend::Guest { session: Box::new(Session::new(batch)), _dir: dir },
            accel,
        })
    }

    /// Runs `cases`, reporting each as it completes.
    pub fn run(&mut self, cases: &[Case], want_log: bool, on: &mut dyn FnMut(CaseEvent)) -> Result<()> {
        match &mut self.backend {
            Backend::Host { loader } => {
                let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .unwrap_or_default()
                    .trim()
                    .to_string();
                // A test module the user loaded on the host is used; lockstep never loads one there.
                let module = match lockstep_bpf::module_status("lockstep_test") {
                    m @ ModuleStatus::Loaded { .. } => m,
                    _ => ModuleStatus::Absent,
                };
                on(CaseEvent::Booted { release, module, boot_time: Duration::ZERO });
                for (index, c) in cases.iter().enumerate() {
                    match loader {
                        Ok(l) => on(CaseEvent::Result {
                            index,
                            result: l.run_case(c, want_log),
                            warnings: Vec::new(),
                        }),
                        Err(e) => on(CaseEvent::NotRun { index, reason: format!("host kernel BTF: {e}") }),
                    }
                }
                Ok(())
            }
            Backend::Guest { session, .. } => {
                let summary = session.run(cases, &mut |ev| match ev {
                    BatchEvent::Booted { release, module, boot_time } => {
                        on(CaseEvent::Booted { release, module, boot_time })
                    }
                    BatchEvent::BootFailed { outcome, will_retry } => {
                        on(CaseEvent::BootFailed { excerpt: excerpt(&outcome), will_retry })
                    }
                    BatchEvent::Result { index, result, warnings, .. } => {
                        on(CaseEvent::Result { index, result, warnings })
                    }
                    BatchEvent::Retrying { index, outcome } => {
                        on(CaseEvent::Retrying { index, excerpt: excerpt(&outcome) })
                    }
                    BatchEvent::Crashed { index, outcome } => {
                        on(CaseEvent::Crashed { index, excerpt: excerpt(&outcome) })
                    }
                })?;
                let reason = summary.last_outcome.as_ref().map(excerpt).unwrap_or_default();
                for index in summary.unrun {
                    on(CaseEvent::NotRun { index, reason: format!("the guest did not boot: {reason}") });
                }
                Ok(())
            }
        }
    }

    /// The running kernel's kfuncs (`ListKfuncs`), from the live guest (booted if needed; it stays
    /// up for the next [`KernelSession::run`]) or, in host mode, from this machine's sysfs.
    /// Boot events go to `on` as in `run`.
    pub fn list_kfuncs(&mut self, on: &mut dyn FnMut(CaseEvent)) -> Result<KfuncListing> {
        match &mut self.backend {
            Backend::Host { loader } => Ok(crate::census::list::list_kfuncs(
                Path::new(crate::census::list::SYS_BTF),
                loader.as_ref().ok(),
            )),
            Backend::Guest { session, .. } => {
                let r = session.list_kfuncs(&mut |ev| match ev {
                    BatchEvent::Booted { release, module, boot_time } => {
                        on(CaseEvent::Booted { release, module, boot_time })
                    }
                    BatchEvent::BootFailed { outcome, will_retry } => {
                        on(CaseEvent::BootFailed { excerpt: excerpt(&outcome), will_retry })
                    }
                    _ => {}
                })?;
                r.map_err(|o| {
                    anyhow::anyhow!(crate::exit::InfraError(format!(
                        "listing kfuncs: the guest ended: {}",
                        excerpt(&o)
                    )))
                })
            }
        }
    }

    /// Whether the live guest was restored from a snapshot rather than booted.
    pub fn restored(&self) -> bool {
        match &self.backend {
            Backend::Guest { session, .. } => session.hello().is_some_and(|h| h.restored),
            Backend::Host { .. } => false,
        }
    }

    /// Shuts the guest down.
    pub fn close(self) {
        if let Backend::Guest { session, .. } = self.backend {
            if let Some(o) = session.close() {
                tracing::debug!(?o, "guest closed");
            }
        }
    }
}

fn which(bin: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
}

/// Fails unless `exe` is a static ELF (no `PT_INTERP`): it becomes the guest's `/init`.
fn ensure_static(exe: &Path) -> Result<()> {
    let data = std::fs::read(exe).with_context(|| format!("reading {}", exe.display()))?;
    if has_interpreter(&data) {
        bail!(crate::exit::InfraError(format!(
            "{} is dynamically linked and cannot be the guest's /init; build it with this repository's \
             .cargo/config.toml (static, target x86_64-unknown-linux-gnu)",
            exe.display()
        )));
    }
    Ok(())
}

/// Whether an ELF64 little-endian image has a `PT_INTERP` program header.
fn has_interpreter(elf: &[u8]) -> bool {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u64_at = |o: usize| elf.get(o..o + 8).map(|b| u64::from_le_bytes(b.try_into().expect("8")) as usize);
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..phnum)
        .any(|i| elf.get(phoff + i * phentsize..phoff + i * phentsize + 4) == Some(&3u32.to_le_bytes()[..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_static_and_a_dynamic_one_is_seen() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!has_interpreter(&me), "test binaries are built static by .cargo/config.toml");
        let sh = std::fs::read("/bin/sh").unwrap();
        assert!(has_interpreter(&sh), "/bin/sh is dynamic on Debian");
    }
}
