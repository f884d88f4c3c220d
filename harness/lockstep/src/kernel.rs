//! `lockstep kernel fetch|list`, and resolving a kernel name into what `run` boots: the image,
//! its exact package version, the model profile that should predict it, and the test module
//! built for it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use lockstep_core::profile::{KernelProfile, ModuleKfuncs};
use lockstep_vm::debian::{FetchParts, KernelCache, KernelRef, Progress, KERNELS};

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
        /// Kernel name, e.g. debian:7.3.
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
            let m = build_module(&name)?;
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

/// Bad input unless `name` is a kernel lockstep knows: a Debian kernel, or a build
/// (`build:<alias-or-hash>`, see `lockstep kernel build`).
pub fn known_kernel(name: &str) -> Result<()> {
    if name.starts_with("build:") {
        return built(name).map(|_| ());
    }
    if lockstep_vm::debian::names::spec_for(name).is_none() {
        return Err(BadInput(format!(
            "unknown kernel {name:?} (known: {}, build:<alias-or-hash>, or --host)",
            known_names()
        ))
        .into());
    }
    Ok(())
}

/// The kernel cache ([`lockstep_vm::cache_root`]); no cache directory is bad input asking for
/// `LOCKSTEP_CACHE`.
pub fn cache() -> Result<KernelCache> {
    Ok(KernelCache::new(cache_root()?))
}

/// The cache root; no cache directory is bad input asking for `LOCKSTEP_CACHE`.
pub fn cache_root() -> Result<PathBuf> {
    lockstep_vm::cache_root::from_env().map_err(|e| crate::exit::BadInput(e.to_string()).into())
}

/// The cache of kernels built from source, at [`cache_root`].
pub fn kbuild() -> Result<lockstep_vm::kbuild::Kbuild> {
    Ok(lockstep_vm::kbuild::Kbuild::new(cache_root()?))
}

/// A kernel built from source, by name (bad input if there is none).
pub fn built(name: &str) -> Result<lockstep_vm::kbuild::BuildRecord> {
    kbuild()?.lookup(name).map_err(crate::kbuild::map_err)
}

/// The bootable image of kernel `name` and its exact identity (package version, or for a build
/// `<source version>[+<series>]+lockstep.<hash>`); Debian kernels are fetched when missing.
pub fn image(name: &str) -> Result<(PathBuf, String)> {
    if name.starts_with("build:") {
        let r = built(name)?;
        return Ok((r.bzimage, r.identity));
    }
    let k = fetch(&cache()?, name, FetchParts::default())?;
    Ok((k.vmlinuz, k.package_version))
}

/// Fetches (or finds in the cache) kernel `name`, with a progress bar on stderr.
pub fn fetch(cache: &KernelCache, name: &str, parts: FetchParts) -> Result<KernelRef> {
    known_kernel(name)?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} {wide_msg} {bytes}/{total_bytes}")
            .expect("template"),
    );
    bar.set_prefix(name.to_string());
    let on = |p: Progress| match p {
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
    };
    let k = cache.fetch(name, parts, &on).with_context(|| format!("fetching kernel {name}"))?;
    bar.finish_and_clear();
    Ok(k)
}

/// The profile that should predict a kernel: `debian:7.2` -> `7.2`. For a build: the profile whose
/// `kernel` is one of the build's names (`build:7.2+kf-spin-lock` -> `7.2+kf-spin-lock`), else for
/// an unpatched Debian source the series' own (`debian-src:7.2` -> `7.2`).
pub fn default_profile(kernel: &str) -> Option<String> {
    if let Some(series) = kernel.strip_prefix("debian:") {
        return Some(series.to_string());
    }
    let r = built(kernel).ok()?;
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

/// Runs `scripts/build-module.sh ARGS` with a spinner saying `what`; the `.ko` path it printed.
fn run_build_module(args: &[String], what: &str) -> Result<PathBuf> {
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
    Ok(PathBuf::from(stdout.lines().last().unwrap_or("").trim()))
}

/// Builds (or finds cached) the test module for `kernel` with `scripts/build-module.sh`, and
/// reads its kfunc flags from the `.ko`'s `.BTF_ids`.
pub fn build_module(kernel: &str) -> Result<BuiltModule> {
    // A build is built against its own tree (`--tree`), a Debian kernel against its headers.
    let args = if kernel.starts_with("build:") {
        vec!["--tree".to_string(), built(kernel)?.tree.display().to_string()]
    } else {
        vec![kernel.to_string()]
    };
    let ko = run_build_module(&args, &format!("the test module for {kernel}"))?;
    // After the build: a Debian kernel's headers (and their vmlinux) are unpacked by it.
    module_from_ko(&ko, kernel_vmlinux(kernel)?.as_deref())
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
    if !kernel.starts_with("debian:") {
        return Err(BadInput(format!(
            "bpf_testmod is built for Debian kernels (debian:<version>) only, not {kernel}"
        ))
        .into());
    }
    known_kernel(kernel)?;
    let ko = run_build_module(&["--testmod".into(), kernel.into()], &format!("bpf_testmod for {kernel}"))?;
    let bytes = std::fs::read(&ko).with_context(|| format!("reading {}", ko.display()))?;
    let vmlinux = match headers_vmlinux(kernel) {
        Some(v) => Some(std::fs::read(&v).with_context(|| format!("reading {}", v.display()))?),
        None => None,
    };
    let base = match &vmlinux {
        Some(v) => lockstep_core::module_ko::elf_section(v, ".BTF")?,
        None => None,
    };
    let kfuncs =
        lockstep_core::module_ko::kfunc_flags(&bytes, base).with_context(|| format!("{}", ko.display()))?;
    Ok(BuiltTestmod { ko, kfuncs })
}

/// The `vmlinux` whose BTF and `.BTF_ids` describe `kernel`: a build's own (in its module build
/// tree), a Debian kernel's BTF-only one from its headers (see [`headers_vmlinux`]).
pub fn kernel_vmlinux(kernel: &str) -> Result<Option<PathBuf>> {
    if kernel.starts_with("build:") {
        return Ok(Some(built(kernel)?.tree.join("vmlinux")).filter(|p| p.is_file()));
    }
    Ok(headers_vmlinux(kernel))
}

/// The BTF-only `vmlinux` of a Debian kernel's headers, as unpacked by `build-module.sh`
/// (the base of module BTF when the `.ko` carries no distilled `.BTF.base`).
pub fn headers_vmlinux(kernel: &str) -> Option<PathBuf> {
    let dir = cache_root().ok()?.join("headers").join(kernel.replace(':', "-"));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|v| std::fs::read_dir(v.path().join("root/usr/src")).ok())
        .flat_map(|d| d.flatten().map(|e| e.path().join("vmlinux")))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// The model's view of a built module: the bundled source's kfuncs with the `.ko`'s flags
/// (`vmlinux`: the kernel's vmlinux, whose BTF is the base when the `.ko` has no `.BTF.base`).
pub fn module_from_ko(ko: &Path, vmlinux: Option<&Path>) -> Result<BuiltModule> {
    let bytes = std::fs::read(ko).with_context(|| format!("reading {}", ko.display()))?;
    let vmlinux_bytes = match vmlinux {
        Some(v) => Some(std::fs::read(v).with_context(|| format!("reading {}", v.display()))?),
        None => None,
    };
    let base = match &vmlinux_bytes {
        Some(v) => lockstep_core::module_ko::elf_section(v, ".BTF")?,
        None => None,
    };
    let flags =
        lockstep_core::module_ko::kfunc_flags(&bytes, base).with_context(|| format!("{}", ko.display()))?;
    let mut kfuncs = lockstep_core::module_src::bundled();
    let missing = kfuncs.apply_ko_flags(&flags);
    if !missing.is_empty() {
        tracing::warn!(?missing, ko = %ko.display(), "kfuncs of the module source are missing from the built module");
    }
    Ok(BuiltModule { ko: ko.to_path_buf(), kfuncs })
}
