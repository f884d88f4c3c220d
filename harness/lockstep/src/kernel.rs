//! `lockstep kernel fetch|list|module`, and the binary's side of kernel names: [`resolve`] (through
//! `lockstep_vm::kernel`, the one resolver), the model profile that should predict a kernel, and
//! the test module built for it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use lockstep_core::profile::{KernelProfile, ModuleKfuncs};
use lockstep_vm::debian::{FetchParts, KernelCache, KernelRef, Progress, KERNELS};
use lockstep_vm::kernel::{KernelName, ModuleTarget, ResolvedKernel};

pub use crate::cache::{cache_root, kbuild};
use crate::exit::BadInput;

/// `lockstep kernel ...`.
#[derive(Subcommand)]
pub enum KernelCmd {
    /// Fetch Debian's prebuilt kernel images (private apt configuration, cached outside the repo).
    Fetch {
        /// Kernel names: debian:6.12, debian:7.2, debian:7.3.
        #[arg(required = true)]
        names: Vec<String>,
        /// Also fetch the headers and kbuild packages (needed to build the test module).
        #[arg(long)]
        headers: bool,
        /// Re-read the package index and fetch a newer version if there is one.
        #[arg(long)]
        refresh: bool,
    },
    /// Build (or find cached) the test module for a kernel and print its kfuncs' compiled flags.
    Module {
        /// Kernel name, e.g. debian:7.3, build:<alias>, or a path to a built kernel tree.
        name: String,
        /// The kernel tree's own bpf_testmod.ko instead, from Debian's linux-source of that kernel
        /// (what the BPF selftests' bpf_kfunc_call_test_* and friends live in).
        #[arg(long)]
        testmod: bool,
    },
    /// Build a kernel from source: a Debian source package or a tree, plus a patch series
    /// (cached by content hash; the result is named build:<hash> and build:<source>+<series>).
    Build(crate::kbuild::BuildArgs),
    /// Resolve a kernel name (debian:7.3, build:<alias-or-hash>) to its image, config, release and
    /// module build target (JSON).
    Show { name: String },
    /// List the cached kernels with their exact package versions (and the kernels built from source).
    List {
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

/// Runs `kernel fetch|list`.
pub fn run(cmd: KernelCmd) -> Result<u8> {
    match cmd {
        KernelCmd::Fetch { names, headers, refresh } => {
            let cache = cache()?.refresh(refresh);
            for n in &names {
                let k = fetch(&cache, n, FetchParts { headers })?;
                println!("{}\t{}\t{}", k.name, k.package_version, k.vmlinuz.display());
            }
            Ok(0)
        }
        KernelCmd::Module { name, testmod: true } => {
            let m = build_testmod(&name)?;
            println!("# {}", m.ko.display());
            for (name, k) in &m.kfuncs {
                println!("{:<48} {:#07x} {}", name, k.flags, k.set);
            }
            Ok(0)
        }
        KernelCmd::Module { name, testmod: false } => {
            let m = build_module(&resolve(&name)?)?;
            println!("# {}", m.ko.display());
            for k in m.kfuncs.kfuncs.values() {
                let safe =
                    if k.flags & lockstep_core::module_src::LOCK_SAFE_FLAG != 0 { "lock-safe" } else { "-" };
                println!("{:<24} {:#07x} {:<10} {:?}", k.name, k.flags, safe, k.prog_types);
            }
            Ok(0)
        }
        KernelCmd::Build(a) => crate::kbuild::build_cmd(&a),
        KernelCmd::Show { name } => crate::kbuild::show(&name),
        KernelCmd::List { json } => {
            crate::kbuild::list_builds(json)?;
            let cache = cache()?;
            let list = cache.list();
            for k in &list {
                if json {
                    println!("{}", serde_json::to_string(k)?);
                } else {
                    let h = if k.headers.is_some() { "headers" } else { "-" };
                    println!(
                        "{:<12} {:<22} {:<20} {:<8} {}",
                        k.name,
                        k.package_version,
                        k.release(),
                        h,
                        k.vmlinuz.display()
                    );
                }
            }
            if list.is_empty() && !json {
                eprintln!("no kernels cached in {} (known: {})", cache.root().display(), known_names());
            }
            Ok(0)
        }
    }
}

fn known_names() -> String {
    KERNELS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

/// Parses a kernel name (bad input unless it is `debian:<series>`, `build:<alias-or-hash>` or a path).
pub fn parse(name: &str) -> Result<KernelName> {
    name.parse::<KernelName>().map_err(|e| BadInput(format!("{e} (or --host)")).into())
}

/// Resolves a kernel name through [`lockstep_vm::kernel::resolve_with`], the one place kernel
/// names are resolved: a Debian kernel is fetched when missing (progress on stderr), a build must
/// exist, a path must hold a kernel whose config has what the guest needs. Bad names, unknown
/// builds and unfit configs are bad input (exit 2).
pub fn resolve(name: &str) -> Result<ResolvedKernel> {
    let n = parse(name)?;
    let bar = fetch_bar(name);
    let on = |p: Progress| show_progress(&bar, p);
    let r = lockstep_vm::kernel::resolve_with(&n, &cache_root()?, Some(&on));
    bar.finish_and_clear();
    r.map_err(|e| {
        if e.is_bad_input() {
            BadInput(e.to_string()).into()
        } else {
            anyhow::Error::new(e).context(format!("resolving kernel {name}"))
        }
    })
}

/// The kernel cache ([`lockstep_vm::cache_root`]); no cache directory is bad input asking for
/// `LOCKSTEP_CACHE`.
pub fn cache() -> Result<KernelCache> {
    Ok(KernelCache::new(cache_root()?))
}

/// A kernel built from source, by name (bad input if there is none).
pub fn built(name: &str) -> Result<lockstep_vm::kbuild::BuildRecord> {
    kbuild()?.lookup(name).map_err(crate::kbuild::map_err)
}

/// Fetches (or finds in the cache) Debian kernel `name`, with a progress bar on stderr.
pub fn fetch(cache: &KernelCache, name: &str, parts: FetchParts) -> Result<KernelRef> {
    if !matches!(parse(name)?, KernelName::Debian { .. }) {
        return Err(BadInput(format!("{name} is not a Debian kernel (known: {})", known_names())).into());
    }
    let bar = fetch_bar(name);
    let k = cache
        .fetch(name, parts, &|p| show_progress(&bar, p))
        .with_context(|| format!("fetching kernel {name}"));
    bar.finish_and_clear();
    k
}

fn fetch_bar(name: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} {wide_msg} {bytes}/{total_bytes}")
            .expect("template"),
    );
    bar.set_prefix(name.to_string());
    bar
}

fn show_progress(bar: &ProgressBar, p: Progress) {
    match p {
        Progress::CacheHit { package_version, .. } => bar.set_message(format!("cached {package_version}")),
        Progress::Updating { suite } => bar.set_message(format!("reading the {suite} package index")),
        Progress::Resolved { package_version, .. } => bar.set_message(format!("version {package_version}")),
        Progress::Downloading { package, version, size } => {
            bar.set_length(size.unwrap_or(0));
            bar.set_position(0);
            bar.set_message(format!("downloading {package} {version}"));
        }
        Progress::Unpacking { package, done, total } => {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(format!("unpacking {package}"));
        }
        Progress::Done => {}
    }
}

/// The profile that should predict a kernel: `debian:7.2` -> `7.2`. For a build: the profile whose
/// `kernel` is one of the build's names (`build:7.2+kf-spin-lock` -> `7.2+kf-spin-lock`), else for
/// an unpatched Debian source the series' own (`debian-src:7.2` -> `7.2`). A kernel at a path has
/// none (`--profile` names it).
pub fn default_profile(kernel: &KernelName) -> Option<String> {
    let r = match kernel {
        KernelName::Debian { series } => return Some(series.clone()),
        KernelName::Local { .. } => return None,
        KernelName::Build { name } => built(name).ok()?,
    };
    let names: Vec<String> =
        std::iter::once(r.name()).chain(r.aliases.iter().map(|a| format!("build:{a}"))).collect();
    if let Some(p) =
        KernelProfile::all().into_iter().find(|p| p.kernel.as_ref().is_some_and(|k| names.contains(k)))
    {
        return Some(p.name);
    }
    (r.series.is_none() && r.source.spec.starts_with("debian-src:")).then(|| r.source.short.clone())
}

/// Looks a profile up by name (bad input if unknown).
pub fn profile(name: &str) -> Result<KernelProfile> {
    KernelProfile::by_name(name).map_err(|e| BadInput(e.to_string()).into())
}

/// The test module built for one kernel, and the kfuncs the model should assume.
#[derive(Clone, Debug)]
pub struct BuiltModule {
    pub ko: PathBuf,
    /// The module source's kfuncs with the `.ko`'s compiled flags.
    pub kfuncs: ModuleKfuncs,
}

fn scripts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts")
}

/// Runs `scripts/build-module.sh ARGS` with a spinner saying `what`; the `.ko` path it printed
/// (or, for a Debian kernel whose inputs did not change since, the one it printed then:
/// [`crate::module_memo`]).
fn run_build_module(args: &[String], what: &str) -> Result<PathBuf> {
    let cache = cache_root().ok();
    if let Some(ko) = cache.as_deref().and_then(|c| crate::module_memo::cached_ko(args, &scripts_dir(), c)) {
        return Ok(ko);
    }
    let script = scripts_dir().join("build-module.sh");
    let bar = ProgressBar::new_spinner();
    bar.set_message(format!("building {what}"));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let out = Command::new("bash")
        .arg(&script)
        .args(args)
        .output()
        .with_context(|| format!("running {}", script.display()));
    bar.finish_and_clear();
    let out = out?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        anyhow::bail!("building {what} failed ({}):\n{}", out.status, tail.join("\n"));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let ko = PathBuf::from(stdout.lines().last().unwrap_or("").trim());
    if let Some(c) = &cache {
        crate::module_memo::remember(args, &scripts_dir(), c, &ko);
    }
    Ok(ko)
}

/// Builds (or finds cached) the test module for `kernel` with `scripts/build-module.sh` (against
/// a Debian kernel's headers or a built tree), and reads its kfunc flags from the `.ko`'s `.BTF_ids`.
pub fn build_module(kernel: &ResolvedKernel) -> Result<BuiltModule> {
    if let ModuleTarget::Unavailable { reason } = &kernel.module_target {
        anyhow::bail!("{}: {reason}", kernel.name);
    }
    let ko = run_build_module(
        &kernel.module_target.build_module_args(),
        &format!("the test module for {}", kernel.name),
    )?;
    // After the build: a Debian kernel's headers (and their vmlinux) are unpacked by it.
    module_from_ko(&ko, kernel_vmlinux(kernel).as_deref())
}

/// The kernel tree's own `bpf_testmod.ko`, built for one kernel, and its kfuncs.
#[derive(Clone, Debug)]
pub struct BuiltTestmod {
    pub ko: PathBuf,
    /// Its kfuncs (from `.BTF_ids`, named from its BTF), with their set and compiled flags.
    pub kfuncs: std::collections::BTreeMap<String, lockstep_core::module_ko::KoKfunc>,
}

/// Builds (or finds cached) the kernel tree's `bpf_testmod.ko` for a Debian kernel from its
/// `linux-source` package (`scripts/build-module.sh --testmod`), and reads its kfuncs.
pub fn build_testmod(kernel: &str) -> Result<BuiltTestmod> {
    if !matches!(parse(kernel)?, KernelName::Debian { .. }) {
        return Err(BadInput(format!(
            "bpf_testmod is built for Debian kernels (debian:<version>) only, not {kernel}"
        ))
        .into());
    }
    let ko = run_build_module(&["--testmod".into(), kernel.into()], &format!("bpf_testmod for {kernel}"))?;
    let kfuncs = ko_kfuncs(&ko, headers_vmlinux(kernel).as_deref())?;
    Ok(BuiltTestmod { ko, kfuncs })
}

/// The kfuncs of module `ko` ([`lockstep_core::module_ko::kfunc_flags`]; `vmlinux`: the kernel's
/// vmlinux, whose BTF is the base when the `.ko` has no `.BTF.base`), remembered in
/// `<cache>/ko-kfuncs/` per contents of the two files and of the lockstep binary (whose code
/// reads them): else every run reads each kernel's 6-7 MB vmlinux twice, for the test module and
/// for `bpf_testmod`, before its first guest starts.
fn ko_kfuncs(
    ko: &Path,
    vmlinux: Option<&Path>,
) -> Result<std::collections::BTreeMap<String, lockstep_core::module_ko::KoKfunc>> {
    use lockstep_core::module_ko::{kfunc_flags, kfuncs_from_text, kfuncs_text};
    let memo = ko_kfuncs_memo(ko, vmlinux);
    if let Some(k) =
        memo.as_ref().and_then(|m| std::fs::read_to_string(m).ok()).and_then(|t| kfuncs_from_text(&t))
    {
        return Ok(k);
    }
    let bytes = std::fs::read(ko).with_context(|| format!("reading {}", ko.display()))?;
    let vmlinux_bytes = match vmlinux {
        Some(v) => Some(std::fs::read(v).with_context(|| format!("reading {}", v.display()))?),
        None => None,
    };
    let base = match &vmlinux_bytes {
        Some(v) => lockstep_core::module_ko::elf_section(v, ".BTF")?,
        None => None,
    };
    let kfuncs = kfunc_flags(&bytes, base).with_context(|| format!("{}", ko.display()))?;
    if let Some(m) = memo {
        remember_in_memo(&m, &kfuncs_text(&kfuncs), 64);
    }
    Ok(kfuncs)
}

/// Where [`ko_kfuncs`] remembers the kfuncs of `ko` on `vmlinux` (None without a cache or digests).
fn ko_kfuncs_memo(ko: &Path, vmlinux: Option<&Path>) -> Option<PathBuf> {
    binary_memo("ko-kfuncs", &[Some(ko), vmlinux])
}

/// A memo file in `<cache>/<dir>/` for what this lockstep binary reads from `inputs`: named by
/// the SHA-256 of each input (`none` for an absent one) and of the binary (None without a cache
/// or a digest).
pub(crate) fn binary_memo(dir: &str, inputs: &[Option<&Path>]) -> Option<PathBuf> {
    use lockstep_vm::digest::{file_sha256, hex};
    let exe = std::env::current_exe().ok()?;
    let mut name = String::new();
    for input in inputs {
        match input {
            Some(p) => name.push_str(&hex(&file_sha256(p).ok()?)),
            None => name.push_str("none"),
        }
        name.push('-');
    }
    name.push_str(&hex(&file_sha256(&exe).ok()?)[..16]);
    Some(cache_root().ok()?.join(dir).join(name))
}

/// Writes memo `file` ([`binary_memo`]) and keeps the newest `keep` of its directory (a failed
/// write only costs the work again later).
pub(crate) fn remember_in_memo(file: &Path, text: &str, keep: usize) {
    if lockstep_vm::digest::write_cache_entry(file, text.as_bytes()) {
        lockstep_vm::digest::prune(file.parent().expect("in a directory"), keep);
    }
}

/// The BTF-only `vmlinux` of Debian kernel `kernel`'s unpacked headers (none when not unpacked).
pub fn headers_vmlinux(kernel: &str) -> Option<PathBuf> {
    lockstep_vm::kernel::headers_vmlinux(&cache_root().ok()?, kernel)
}

/// The `vmlinux` whose BTF and `.BTF_ids` describe `kernel` ([`ResolvedKernel::btf_vmlinux`]).
pub fn kernel_vmlinux(kernel: &ResolvedKernel) -> Option<PathBuf> {
    kernel.btf_vmlinux(&cache_root().ok()?)
}

/// The model's view of a built module: the bundled source's kfuncs with the `.ko`'s flags
/// (`vmlinux`: the kernel's vmlinux, whose BTF is the base when the `.ko` has no `.BTF.base`).
pub fn module_from_ko(ko: &Path, vmlinux: Option<&Path>) -> Result<BuiltModule> {
    let flags = ko_kfuncs(ko, vmlinux)?;
    let mut kfuncs = lockstep_core::module_src::bundled();
    let missing = kfuncs.apply_ko_flags(&flags);
    if !missing.is_empty() {
        tracing::warn!(?missing, ko = %ko.display(), "kfuncs of the module source are missing from the built module");
    }
    Ok(BuiltModule { ko: ko.to_path_buf(), kfuncs })
}
