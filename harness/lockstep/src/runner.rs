//! Running cases on one kernel: a QEMU guest whose `/init` is this very (static) binary in agent
//! mode, or the host's own kernel. [`KernelTarget::prepare`] resolves a kernel name (fetch, test
//! module build, model profile); [`KernelSession`] keeps a guest alive across calls to
//! [`KernelSession::run`] (and [`KernelSession::list_kfuncs`]), so `run`, `fuzz` and `census`
//! share one path.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lockstep_core::case::Case;
use lockstep_core::kernel_btf::KernelBtf;
use lockstep_core::profile::{KernelProfile, ModuleKfuncs};
use lockstep_core::proto::{KernelResult, KfuncListing, ModuleStatus};
use lockstep_vm::guest::batch::{BatchEvent, BatchOptions, Session};
use lockstep_vm::guest::{kvm, GuestConfig, GuestOutcome, Limit, Timeouts};
use lockstep_vm::initramfs::{self, InitramfsSpec};
use lockstep_vm::qemu::Accel;

use crate::kernel::{self, BuiltModule, BuiltTestmod};

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

/// Whether a guest gets the kernel tree's `bpf_testmod.ko` beside the test module.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TestmodChoice {
    /// No.
    #[default]
    Off,
    /// Always (`--testmod`).
    On,
    /// When one of these kfuncs (called by the cases; not the test module's) is not a vmlinux
    /// kfunc of the kernel but one of `bpf_testmod`'s (which is built, cached, to find out).
    IfCalled(BTreeSet<String>),
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
    /// Whether to build and load the kernel tree's `bpf_testmod` too.
    pub testmod: TestmodChoice,
    /// Restore guests from snapshots in the cache (saved after a first boot).
    pub snapshots: bool,
    /// vCPUs per guest (1 but in `run --jobs N`, whose jobs join each other's guests).
    pub vcpus: u32,
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
    /// Seconds per case (program, probe). Default: 60, four times that at verifier log level 2
    /// (a case's `log_level = 2`, or `--log`), plus 20 ms per instruction of the program.
    #[arg(long, value_name = "SECS")]
    pub case_timeout: Option<u64>,
    /// Use this built test module (.ko) instead of building one for each kernel.
    #[arg(long, value_name = "KO", conflicts_with = "no_module")]
    pub module_ko: Option<PathBuf>,
    /// Do not build or load the test module (the cases calling its kfuncs are reported as not run).
    #[arg(long)]
    pub no_module: bool,
    /// Also build (from the kernel's Debian linux-source, cached) and load the kernel tree's own
    /// bpf_testmod.ko, whose kfuncs (bpf_kfunc_call_test_*, ...) the BPF selftests call. Without
    /// it, `run` loads it only when a case calls a kfunc that vmlinux lacks and bpf_testmod has.
    #[arg(long, conflicts_with = "no_testmod")]
    pub testmod: bool,
    /// Never load bpf_testmod (the cases calling its kfuncs fail to set up: unknown kfunc).
    #[arg(long)]
    pub no_testmod: bool,
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
                case: Duration::from_secs(self.case_timeout.unwrap_or(DEFAULT_CASE_TIMEOUT)),
                scale_case: self.case_timeout.is_none(),
                overall,
                ..Timeouts::default()
            },
            want_log,
            module: !self.no_module,
            console_dir: self.console_dir.clone(),
            extra_cmdline: self.append.clone(),
            module_ko: self.module_ko.clone(),
            testmod: if self.testmod { TestmodChoice::On } else { TestmodChoice::Off },
            snapshots: !self.no_snapshot,
            vcpus: 1,
        }
    }
}

/// The base of the scaled default case time limit, in seconds.
pub const DEFAULT_CASE_TIMEOUT: u64 = 60;

/// Which kernels a command runs on (`run`, `census`).
#[derive(clap::Args, Clone, Debug)]
pub struct KernelArgs {
    /// Kernels: debian:6.12|7.2|7.3, build:<alias-or-hash>, or a PATH to a built kernel tree (or a
    /// bzImage with vmlinux beside it); default: debian:7.2 and debian:7.3.
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
    /// `config`: the kernel's `.config` and the release it goes under in the guest
    /// (`/boot/config-<release>`, where libbpf reads it for `__kconfig` externs).
    Guest {
        vmlinuz: PathBuf,
        config: Option<(String, PathBuf)>,
    },
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
    /// The kernel tree's `bpf_testmod` built for it, when wanted.
    pub testmod: Option<BuiltTestmod>,
    /// Why `bpf_testmod` is missing, when it was wanted.
    pub testmod_error: Option<String>,
    place: Place,
}

impl KernelTarget {
    /// Resolves `name` (`debian:X`, `build:<alias-or-hash>`, a path, or [`HOST`]) through
    /// [`kernel::resolve`]: fetches the kernel, builds the test module (or reads `--module-ko`'s,
    /// with the kernel's vmlinux as its BTF base), picks the profile (`profile` overrides the
    /// default of the name).
    pub fn prepare(name: &str, profile: Option<&str>, opts: &RunnerOptions) -> Result<KernelTarget> {
        let (mut target, btf) = Self::prepare_for_guest(name, profile, opts)?;
        btf.finish(&mut target);
        Ok(target)
    }

    /// [`KernelTarget::prepare`] up to what a guest needs (the kernel and its modules); the
    /// profile's kernel BTF, which only the model needs, may still be being parsed: it joins the
    /// profile with [`PendingBtf::finish`] (`lockstep run` starts the kernel's first guest
    /// meanwhile, and waits for it at the first verdict).
    pub fn prepare_for_guest(
        name: &str,
        profile: Option<&str>,
        opts: &RunnerOptions,
    ) -> Result<(KernelTarget, PendingBtf)> {
        if name == HOST {
            let Some(p) = profile else {
                return Err(crate::exit::BadInput(
                    "--host needs --profile (the profile the host kernel should follow)".into(),
                )
                .into());
            };
            let release =
                std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
            let target = KernelTarget {
                name: HOST.into(),
                package_version: release,
                profile: kernel::profile(p)?,
                module: None,
                module_error: Some(
                    "host mode: lockstep does not load modules on the host (insmod lockstep_test.ko first)"
                        .into(),
                ),
                testmod: None,
                testmod_error: None,
                place: Place::Host,
            };
            return Ok((target, PendingBtf(None)));
        }
        let kname = kernel::parse(name)?;
        // The timeline of `-v`: how long each step took.
        let lap = |what: &str, t: Instant| {
            tracing::debug!(kernel = %name, secs = t.elapsed().as_secs_f64(), "prepared: {what}");
        };
        // The kernel first: a path that holds no kernel is named before a missing --profile.
        let t = Instant::now();
        let resolved = kernel::resolve(name)?;
        lap("kernel resolved", t);
        let pname = match profile.map(str::to_string).or_else(|| kernel::default_profile(&kname)) {
            Some(p) => p,
            None => {
                return Err(crate::exit::BadInput(format!(
                    "no default profile for kernel {name}: pass --profile (`lockstep profiles` lists them)"
                ))
                .into())
            }
        };
        let profile = kernel::profile(&pname)?;
        let vmlinux = kernel::kernel_vmlinux(&resolved);
        let ((module, module_error), (testmod, testmod_error)) = std::thread::scope(|s| {
            // The two modules' cache checks side by side (bpf_testmod's also reads vmlinux's kfuncs).
            let testmod = s.spawn(|| {
                let t = Instant::now();
                let r = prepare_testmod(name, &opts.testmod);
                lap("bpf_testmod", t);
                r
            });
            let t = Instant::now();
            let module = if opts.module {
                let built = match &opts.module_ko {
                    Some(ko) => kernel::module_from_ko(ko, vmlinux.as_deref()),
                    None => kernel::build_module(&resolved),
                };
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
            lap("test module", t);
            (module, testmod.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
        });
        let target = KernelTarget {
            name: name.into(),
            package_version: resolved.identity.clone(),
            profile,
            module,
            module_error,
            testmod,
            testmod_error,
            place: Place::Guest {
                vmlinuz: resolved.vmlinuz.clone(),
                config: resolved
                    .config
                    .is_file()
                    .then(|| (resolved.release.clone(), resolved.config.clone())),
            },
        };
        // The booted kernel's own BTF types tracing / LSM programs' ctx for the model
        // (docs/kernel-btf.md); without it the model says which BTF is missing.
        Ok((target, PendingBtf(vmlinux.map(|v| (name.to_string(), BtfParse::Waiting(v))))))
    }

    /// The kfuncs the model assumes: the built module's flags, else the module source's.
    pub fn module_kfuncs(&self) -> ModuleKfuncs {
        self.module.as_ref().map_or_else(lockstep_core::module_src::bundled, |m| m.kfuncs.clone())
    }
}

/// The kernel BTF of a [`KernelTarget::prepare_for_guest`]: parsed on a thread of its own once
/// [`PendingBtf::start`]ed (`lockstep run`: when the kernel's first guest starts, so that the
/// parse runs beside that guest's restore, not beside the other kernels' at the run's start),
/// else by [`PendingBtf::finish`].
pub struct PendingBtf(Option<(String, BtfParse)>);

/// Where a [`PendingBtf`] is.
enum BtfParse {
    /// Not started: the vmlinux to read it from.
    Waiting(PathBuf),
    Parsing(std::thread::JoinHandle<Result<Arc<KernelBtf>>>),
}

impl PendingBtf {
    /// Starts the parse on a thread of its own (nothing when it started already or there is no
    /// vmlinux to read).
    pub fn start(&mut self) {
        let Some((name, parse)) = &mut self.0 else { return };
        if let BtfParse::Waiting(vmlinux) = parse {
            let (name, vmlinux) = (name.clone(), std::mem::take(vmlinux));
            *parse = BtfParse::Parsing(std::thread::spawn(move || {
                let t = Instant::now();
                let r = crate::kernel_btf::load(&vmlinux);
                tracing::debug!(kernel = %name, secs = t.elapsed().as_secs_f64(), "kernel BTF parsed");
                r
            }));
        }
    }

    /// Waits for the parse (started here when it was not) and gives it to `target`'s profile (a
    /// file that could not be read or parsed is a warning: the model then says which BTF is
    /// missing).
    pub fn finish(mut self, target: &mut KernelTarget) {
        self.start();
        let Some((name, BtfParse::Parsing(handle))) = self.0 else { return };
        match handle.join().unwrap_or_else(|p| std::panic::resume_unwind(p)) {
            Ok(k) => target.profile.kernel_btf = lockstep_core::kernel_btf::KernelBtfRef(Some(k)),
            Err(e) => tracing::warn!("{name}: {e:#}"),
        }
    }
}

/// The kfuncs of `kernel`'s vmlinux, from its headers' BTF-only vmlinux (empty when unknown).
/// Remembered in `<cache>/vmlinux-kfuncs/` per vmlinux contents and lockstep binary (whose code
/// reads them): parsing vmlinux's BTF for them is most of the `bpf_testmod` check, which the
/// kernel's first guest waits for (0.1-0.2 s per kernel; docs/speed.md, session 14).
fn vmlinux_kfuncs(kernel: &str) -> BTreeSet<String> {
    let Some(v) = kernel::headers_vmlinux(kernel) else { return BTreeSet::new() };
    let memo = vmlinux_kfuncs_memo(&v);
    if let Some(text) = memo.as_ref().and_then(|m| std::fs::read_to_string(m).ok()) {
        if let Some(names) = text.strip_prefix(VMLINUX_KFUNCS_HEADER) {
            return names.lines().map(str::to_string).collect();
        }
    }
    let Some(names) = std::fs::read(&v)
        .ok()
        .and_then(|b| lockstep_core::module_ko::vmlinux_kfunc_sets(&b).ok())
        .map(|sets| sets.into_keys().collect::<BTreeSet<String>>())
    else {
        return BTreeSet::new();
    };
    if let Some(m) = memo {
        let text: String = std::iter::once(VMLINUX_KFUNCS_HEADER.to_string())
            .chain(names.iter().map(|n| format!("{n}\n")))
            .collect();
        kernel::remember_in_memo(&m, &text, 32);
    }
    names
}

/// The first line of a [`vmlinux_kfuncs`] memo, then one kfunc name per line.
const VMLINUX_KFUNCS_HEADER: &str = "lockstep vmlinux kfuncs 1\n";

/// Where [`vmlinux_kfuncs`] remembers the kfuncs of `vmlinux` (None without a cache or digests).
fn vmlinux_kfuncs_memo(vmlinux: &Path) -> Option<PathBuf> {
    kernel::binary_memo("vmlinux-kfuncs", &[Some(vmlinux)])
}

/// Builds `bpf_testmod` for `kernel` when `choice` asks for it; a failed build is a warning and
/// the reason, not an error (the cases that need it say so).
fn prepare_testmod(kernel: &str, choice: &TestmodChoice) -> (Option<BuiltTestmod>, Option<String>) {
    let wanted: Option<BTreeSet<String>> = match choice {
        TestmodChoice::Off => return (None, None),
        TestmodChoice::On => None,
        TestmodChoice::IfCalled(names) => {
            let vmlinux = vmlinux_kfuncs(kernel);
            let rest: BTreeSet<String> = names.difference(&vmlinux).cloned().collect();
            if rest.is_empty() {
                return (None, None);
            }
            Some(rest)
        }
    };
    match kernel::build_testmod(kernel) {
        Ok(t) => match wanted {
            Some(w) if !w.iter().any(|k| t.kfuncs.contains_key(k)) => (None, None),
            _ => (Some(t), None),
        },
        Err(e) => {
            tracing::warn!("{kernel}: {e:#}");
            (None, Some(format!("bpf_testmod not built: {e:#}")))
        }
    }
}

/// What happened to one case, handed to the callback of [`KernelSession::run`].
#[derive(Clone, Debug)]
pub enum CaseEvent {
    /// A guest booted (or host mode started).
    Booted { release: String, module: ModuleStatus, extra_modules: Vec<ModuleStatus>, boot_time: Duration },
    /// A guest failed to boot.
    BootFailed { excerpt: String, will_retry: bool },
    /// The kernel's answer; `warnings` are WARN lines printed meanwhile.
    Result { index: usize, result: KernelResult, warnings: Vec<String> },
    /// The case crashed a guest; it will be retried once.
    Retrying { index: usize, excerpt: String },
    /// The case crashed guests twice, with a panic, oops or BUG on the console.
    Crashed { index: usize, excerpt: String },
    /// The guest ended twice while the case ran, without a kernel message the second time (QEMU
    /// died or was killed, KVM failed): an infrastructure problem, not a kernel crash.
    Lost { index: usize, excerpt: String },
    /// The case outlived its time limit (or the run's); the excerpt names the limit and its flag.
    TimedOut { index: usize, excerpt: String },
    /// The case never ran.
    NotRun { index: usize, reason: String },
}

enum Backend {
    Guest { session: Box<Session>, _dir: tempfile::TempDir },
    Host { loader: Result<Box<lockstep_bpf::Loader>, String> },
}

/// A kernel with its guest (booted on first use, kept across calls).
pub struct KernelSession {
    backend: Backend,
    /// The accelerator the guest runs with (None in host mode).
    pub accel: Option<Accel>,
}

/// What happened to a guest, for people: a timeout names its limit and the flag that raises it.
pub fn excerpt(o: &GuestOutcome) -> String {
    match o {
        GuestOutcome::Panic { excerpt }
        | GuestOutcome::Exited { excerpt }
        | GuestOutcome::KvmFailure { excerpt }
        | GuestOutcome::BootFailure { excerpt } => excerpt.clone(),
        GuestOutcome::Timeout { stage, limit, after, excerpt } => {
            let secs = after.as_secs_f64();
            let what = match limit {
                Limit::Case => format!(
                    "timeout: no answer within the case time limit ({secs:.0} s; a slow verification, \
                     e.g. at log level 2, looks the same as a hang): raise it with --case-timeout SECS"
                ),
                Limit::Boot => format!(
                    "timeout: the guest did not boot within the boot time limit ({secs:.0} s): raise it \
                     with --boot-timeout SECS"
                ),
                Limit::Run => "timeout: the run's time limit ran out: raise it with --timeout SECS".into(),
                Limit::Guest => format!("timeout: the guest's lifetime limit ran out at {stage:?}"),
                Limit::Shutdown => format!("timeout: the guest did not power off within {secs:.0} s"),
            };
            // A case's console is the verifier's business; a boot's tells why it did not finish.
            match (limit, excerpt.is_empty()) {
                (Limit::Boot, false) => format!("{what}\n{excerpt}"),
                _ => what,
            }
        }
        GuestOutcome::Interrupted { signal } => format!("interrupted by {}", signal_name(*signal)),
        GuestOutcome::Cancelled => "stopped: the run ended on bad input".to_string(),
        GuestOutcome::Completed => String::new(),
    }
}

fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal).map_or_else(|_| format!("signal {signal}"), |s| s.to_string())
}

/// The error a stopped batch ends a command with: [`crate::exit::Interrupted`] (exit 128 +
/// signal) or [`crate::exit::RunTimedOut`] (exit 5).
fn stop_error(o: &GuestOutcome) -> anyhow::Error {
    match o {
        GuestOutcome::Interrupted { signal } => crate::exit::Interrupted { signal: *signal }.into(),
        GuestOutcome::Cancelled => crate::exit::Cancelled.into(),
        other => crate::exit::RunTimedOut(excerpt(other)).into(),
    }
}

impl KernelSession {
    /// Prepares the guest (initramfs with this binary as `/init` and the module; accelerator).
    pub fn start(target: &KernelTarget, opts: &RunnerOptions) -> Result<KernelSession> {
        let (vmlinuz, config) = match &target.place {
            Place::Host => {
                let loader = lockstep_bpf::Loader::new().map(Box::new).map_err(|e| e.to_string());
                return Ok(KernelSession { backend: Backend::Host { loader }, accel: None });
            }
            Place::Guest { vmlinuz, config } => (vmlinuz.clone(), config.clone()),
        };
        lockstep_vm::interrupt::install().context("installing the SIGINT/SIGTERM handlers")?;
        let exe = std::env::current_exe().context("finding the lockstep binary")?;
        // Once per process (the binary is read whole): every guest of a run starts from it.
        static STATIC_OK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !STATIC_OK.load(std::sync::atomic::Ordering::Relaxed) {
            ensure_static(&exe)?;
            STATIC_OK.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        remove_stale_run_dirs(&std::env::temp_dir());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{RUN_DIR_PREFIX}{}-", std::process::id()))
            .tempdir()
            .context("creating a run directory")?;
        let initrd = dir.path().join("initramfs.cpio");
        let spec = InitramfsSpec {
            init: exe,
            module: target.module.as_ref().map(|m| m.ko.clone()),
            extra_modules: target.testmod.iter().map(|t| t.ko.clone()).collect(),
            // As on a Debian system: libbpf resolves `__kconfig` externs from /boot/config-$(uname -r).
            extra: config
                .into_iter()
                .map(|(release, path)| (format!("boot/config-{release}"), path))
                .collect(),
        };
        // Built once per inputs into the cache and hard-linked here (`initramfs::build_cached`).
        initramfs::build_cached(&spec, &kernel::cache_root()?.join("initramfs"), &initrd)
            .with_context(|| format!("building {}", initrd.display()))?;
        let mut cfg = GuestConfig::new(&vmlinuz, &initrd);
        let initrd_bytes = std::fs::metadata(&initrd).map(|m| m.len()).unwrap_or(0);
        cfg.memory_mib = lockstep_vm::guest::memory_for_initramfs(initrd_bytes);
        cfg.timeouts = opts.timeouts;
        cfg.vcpus = opts.vcpus.max(1);
        cfg.extra_cmdline = opts.extra_cmdline.clone();
        cfg.run_dir = dir.path().to_path_buf();
        if let Some(d) = &opts.console_dir {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        cfg.console_log = opts
            .console_dir
            .as_ref()
            .map(|d| d.join(format!("console-{}.log", target.name.replace([':', '/'], "-"))));
        if lockstep_vm::qemu::find_binary("qemu-system-x86_64").is_none() {
            bail!(crate::exit::InfraError("qemu-system-x86_64 not found (run scripts/setup.sh)".into()));
        }
        cfg.accel = match opts.accel {
            AccelChoice::Tcg => Accel::Tcg,
            AccelChoice::Kvm => Accel::Kvm,
            AccelChoice::Auto => {
                let p = kvm::probe_kvm(&cfg, &crate::kernel::cache_root()?, false);
                // Once per process: with several kernels or `--jobs` every guest would repeat it.
                static TCG_WARNING: std::sync::Once = std::sync::Once::new();
                if p.accel == Accel::Tcg {
                    TCG_WARNING.call_once(|| {
                        tracing::warn!("KVM not usable here ({}): using TCG (slower)", p.reason)
                    });
                }
                p.accel
            }
        };
        if opts.snapshots {
            // LOCKSTEP_SNAPSHOT_DIR: another store (tests use a private one).
            cfg.snapshot_dir = match std::env::var_os("LOCKSTEP_SNAPSHOT_DIR") {
                Some(d) => Some(PathBuf::from(d)),
                None => Some(kernel::cache_root()?.join("snapshots")),
            };
        }
        let batch = BatchOptions { guest: cfg, want_log: opts.want_log, boot_attempts: 3 };
        let accel = Some(batch.guest.accel);
        Ok(KernelSession {
            backend: Backend::Guest { session: Box::new(Session::new(batch)), _dir: dir },
            accel,
        })
    }

    /// Runs `cases`, reporting each as it completes. SIGINT/SIGTERM and the run's deadline stop
    /// it: the cases not run are reported [`CaseEvent::NotRun`], then the error is
    /// [`crate::exit::Interrupted`] or [`crate::exit::RunTimedOut`].
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
                on(CaseEvent::Booted {
                    release,
                    module,
                    extra_modules: Vec::new(),
                    boot_time: Duration::ZERO,
                });
                for (index, c) in cases.iter().enumerate() {
                    if let Some(sig) = lockstep_vm::interrupt::pending() {
                        for index in index..cases.len() {
                            on(CaseEvent::NotRun {
                                index,
                                reason: format!("not run (interrupted by {sig})"),
                            });
                        }
                        return Err(crate::exit::Interrupted { signal: sig as i32 }.into());
                    }
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
                    BatchEvent::Booted { release, module, extra_modules, boot_time } => {
                        on(CaseEvent::Booted { release, module, extra_modules, boot_time })
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
                    BatchEvent::Crashed { index, outcome: o @ GuestOutcome::Panic { .. } } => {
                        on(CaseEvent::Crashed { index, excerpt: excerpt(&o) })
                    }
                    BatchEvent::Crashed { index, outcome } => {
                        on(CaseEvent::Lost { index, excerpt: excerpt(&outcome) })
                    }
                    BatchEvent::TimedOut { index, outcome } => {
                        on(CaseEvent::TimedOut { index, excerpt: excerpt(&outcome) })
                    }
                })?;
                let reason = match &summary.stopped {
                    Some(o) => format!("not run ({})", excerpt(o)),
                    None => {
                        let why = summary.last_outcome.as_ref().map(excerpt).unwrap_or_default();
                        format!("the guest did not boot: {why}")
                    }
                };
                for index in summary.unrun {
                    on(CaseEvent::NotRun { index, reason: reason.clone() });
                }
                match &summary.stopped {
                    Some(o) => Err(stop_error(o)),
                    None => Ok(()),
                }
            }
        }
    }

    /// Lets this session's guests run cases on the vCPUs added to `workers` (a guest started
    /// with several, [`RunnerOptions::vcpus`]); nothing on the host.
    pub fn share_workers(&mut self, workers: lockstep_vm::guest::workers::WorkerCpus) {
        if let Backend::Guest { session, .. } = &mut self.backend {
            session.share_workers(workers);
        }
    }

    /// The running kernel's kfuncs (`ListKfuncs`), from the live guest (booted if needed; it stays
    /// up for the next [`KernelSession::run`]) or, in host mode, from this machine's sysfs.
    /// Boot events go to `on` as in `run`.
    pub fn list_kfuncs(&mut self, on: &mut dyn FnMut(CaseEvent)) -> Result<KfuncListing> {
        match &mut self.backend {
            Backend::Host { loader } => Ok(lockstep_bpf::kfuncs::list_kfuncs(
                Path::new(lockstep_bpf::kfuncs::SYS_BTF),
                loader.as_deref().ok(),
            )),
            Backend::Guest { session, .. } => {
                let r = session.list_kfuncs(&mut |ev| match ev {
                    BatchEvent::Booted { release, module, extra_modules, boot_time } => {
                        on(CaseEvent::Booted { release, module, extra_modules, boot_time })
                    }
                    BatchEvent::BootFailed { outcome, will_retry } => {
                        on(CaseEvent::BootFailed { excerpt: excerpt(&outcome), will_retry })
                    }
                    _ => {}
                })?;
                r.map_err(|o| {
                    if o.stops_the_run() {
                        return stop_error(&o);
                    }
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

/// Run directories are `<temp>/lockstep-run-<pid>-<random>`.
const RUN_DIR_PREFIX: &str = "lockstep-run-";

/// The pid in a run directory's name, if it is one.
fn run_dir_pid(name: &str) -> Option<u32> {
    name.strip_prefix(RUN_DIR_PREFIX)?.split('-').next()?.parse().ok()
}

/// Removes the run directories of lockstep processes that no longer exist (a SIGKILLed lockstep
/// cannot remove its own). Directories of live processes, whoever they are, are left alone.
pub fn remove_stale_run_dirs(temp: &Path) {
    let Ok(entries) = std::fs::read_dir(temp) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = run_dir_pid(&name.to_string_lossy()) else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::debug!("removing {} (its lockstep, pid {pid}, is gone)", e.path().display());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Fails unless `exe` is a static ELF (no `PT_INTERP`): it becomes the guest's `/init`.
fn ensure_static(exe: &Path) -> Result<()> {
    let data = elf_head(exe).with_context(|| format!("reading {}", exe.display()))?;
    if has_interpreter(&data) {
        bail!(crate::exit::InfraError(format!(
            "{} is dynamically linked and cannot be the guest's /init; build it with this repository's \
             .cargo/config.toml (static, target x86_64-unknown-linux-gnu)",
            exe.display()
        )));
    }
    Ok(())
}

/// The start of an ELF64 file up to the end of its program headers (what [`has_interpreter`]
/// reads), not the whole ~15 MiB binary: read before the first guest of every run starts.
fn elf_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let prefix = |n: u64| -> std::io::Result<Vec<u8>> {
        let mut b = Vec::new();
        std::fs::File::open(path)?.take(n).read_to_end(&mut b)?;
        Ok(b)
    };
    let head = prefix(64 * 1024)?;
    let le =
        |o: usize, n: usize| head.get(o..o + n).map(|b| b.iter().rev().fold(0u64, |v, &x| v << 8 | x as u64));
    // e_phoff, e_phentsize, e_phnum
    let end = match (le(0x20, 8), le(0x36, 2), le(0x38, 2)) {
        (Some(off), Some(size), Some(num)) => off.saturating_add(size * num),
        _ => 0,
    };
    if end > head.len() as u64 {
        prefix(end)
    } else {
        Ok(head)
    }
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
    fn run_dirs_of_dead_processes_are_removed_and_others_kept() {
        let t = tempfile::tempdir().unwrap();
        // pid_max is at most 2^22: this pid cannot exist.
        let dead = t.path().join("lockstep-run-99999999-abc");
        let mine = t.path().join(format!("lockstep-run-{}-abc", std::process::id()));
        let init = t.path().join("lockstep-run-1-abc");
        let other = t.path().join("lockstep-run-xyz");
        for d in [&dead, &mine, &init, &other] {
            std::fs::create_dir(d).unwrap();
        }
        remove_stale_run_dirs(t.path());
        assert!(!dead.exists());
        assert!(mine.exists() && init.exists() && other.exists());
        assert_eq!(run_dir_pid("lockstep-run-42-Xy1"), Some(42));
        assert_eq!(run_dir_pid("lockstep-run-Xy1abc"), None);
    }

    #[test]
    fn this_test_binary_is_static_and_a_dynamic_one_is_seen() {
        let exe = std::env::current_exe().unwrap();
        let me = elf_head(&exe).unwrap();
        assert!(!has_interpreter(&me), "test binaries are built static by .cargo/config.toml");
        assert!(!has_interpreter(&std::fs::read(&exe).unwrap()));
        // Only the headers are read, not the binary.
        assert!(me.len() <= 64 * 1024 && (me.len() as u64) < std::fs::metadata(&exe).unwrap().len());
        for sh in [elf_head(Path::new("/bin/sh")).unwrap(), std::fs::read("/bin/sh").unwrap()] {
            assert!(has_interpreter(&sh), "/bin/sh is dynamic on Debian");
        }
        // Program headers past the first 64 KiB are read too.
        let dir = tempfile::tempdir().unwrap();
        let far = dir.path().join("far");
        let mut elf = std::fs::read("/bin/sh").unwrap()[..64].to_vec();
        elf[0x20..0x28].copy_from_slice(&(70_000u64).to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf.resize(70_000, 0);
        elf.extend_from_slice(&3u32.to_le_bytes());
        elf.resize(80_000, 0);
        std::fs::write(&far, &elf).unwrap();
        let head = elf_head(&far).unwrap();
        assert_eq!(head.len(), 70_056);
        assert!(has_interpreter(&head));
    }
}
