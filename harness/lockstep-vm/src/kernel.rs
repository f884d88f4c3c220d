//! Kernels by name, whatever their origin: `debian:7.2` (a Debian package, [`crate::debian`]),
//! `build:<alias-or-hash>` (built from source, [`crate::kbuild`]) or a path (a kernel built
//! elsewhere, [`crate::local_kernel`]). [`KernelName`] parses a name; [`resolve`] turns it into a
//! [`ResolvedKernel`]: what a guest boots, what a test module is built against, and the `vmlinux`
//! whose BTF describes the kernel. Every command resolves kernel names through here.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::debian::{self, FetchParts, KernelCache, Progress};
use crate::kbuild::{BuildRecord, Kbuild, KbuildError};
use crate::local_kernel::{self, LocalKernel, LocalKernelError};

/// A kernel name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KernelName {
    /// `debian:<series>`, e.g. `debian:7.3`.
    Debian { series: String },
    /// `build:<alias>` (e.g. `build:7.2+kf-spin-lock-rfc-v2`) or `build:<hash prefix>`.
    Build { name: String },
    /// A path holding a `/`: a built kernel tree, or a bzImage with a vmlinux beside it.
    Local { path: PathBuf },
}

impl std::str::FromStr for KernelName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(series) = s.strip_prefix("debian:") {
            if debian::names::spec_for(s).is_none() {
                let known: Vec<_> = debian::KERNELS.iter().map(|k| k.name).collect();
                return Err(format!("unknown kernel {s:?} (known Debian kernels: {})", known.join(", ")));
            }
            return Ok(KernelName::Debian { series: series.to_string() });
        }
        if let Some(name) = s.strip_prefix("build:") {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                return Err(format!("bad build name {s:?} (want build:<alias> or build:<hash prefix>)"));
            }
            return Ok(KernelName::Build { name: name.to_string() });
        }
        if s.contains('/') {
            return Ok(KernelName::Local { path: PathBuf::from(s) });
        }
        Err(format!(
            "unknown kernel name {s:?} (want debian:<series>, build:<alias-or-hash>, or a path to a built \
             kernel tree or bzImage, e.g. ./linux)"
        ))
    }
}

impl std::fmt::Display for KernelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelName::Debian { series } => write!(f, "debian:{series}"),
            KernelName::Build { name } => write!(f, "build:{name}"),
            KernelName::Local { path } => write!(f, "{}", path.display()),
        }
    }
}

/// How to build an out-of-tree module for a kernel with `scripts/build-module.sh`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModuleTarget {
    /// `build-module.sh debian:<series>` (headers fetched by the script).
    Debian { name: String },
    /// `build-module.sh --tree <dir>` (a kernel build tree with `vmlinux` and `.config`).
    Tree { dir: PathBuf },
    /// No tree to build against (a bare bzImage): the reason.
    Unavailable { reason: String },
}

impl ModuleTarget {
    /// The arguments of `scripts/build-module.sh` for this kernel.
    pub fn build_module_args(&self) -> Vec<String> {
        match self {
            ModuleTarget::Debian { name } => vec![name.clone()],
            ModuleTarget::Tree { dir } => vec!["--tree".into(), dir.display().to_string()],
            ModuleTarget::Unavailable { .. } => Vec::new(),
        }
    }
}

/// A kernel ready to boot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedKernel {
    /// The canonical name: `debian:7.3`, or `build:<short hash>` for a build.
    pub name: String,
    /// The bootable image.
    pub vmlinuz: PathBuf,
    /// Its `.config`.
    pub config: PathBuf,
    /// What the test module is built against.
    pub module_target: ModuleTarget,
    /// `uname -r` in the guest (the agent's `Hello` must say the same).
    pub release: String,
    /// A package-version-like identity: the Debian package version, or
    /// `<source version>[+<series>]+lockstep.<short hash>` for a build.
    pub identity: String,
}

impl ResolvedKernel {
    /// From a cached Debian kernel.
    pub fn from_debian(k: &debian::KernelRef) -> Self {
        ResolvedKernel {
            name: k.name.clone(),
            vmlinuz: k.vmlinuz.clone(),
            config: k.config.clone(),
            module_target: ModuleTarget::Debian { name: k.name.clone() },
            release: k.release(),
            identity: k.package_version.clone(),
        }
    }

    /// From a finished build.
    pub fn from_build(r: &BuildRecord) -> Self {
        ResolvedKernel {
            name: r.name(),
            vmlinuz: r.bzimage.clone(),
            config: r.config.clone(),
            module_target: ModuleTarget::Tree { dir: r.tree.clone() },
            release: r.release.clone(),
            identity: r.identity.clone(),
        }
    }

    /// From a kernel found at a path.
    pub fn from_local(k: &LocalKernel) -> Self {
        ResolvedKernel {
            name: k.path.display().to_string(),
            vmlinuz: k.bzimage.clone(),
            config: k.config.clone(),
            module_target: match &k.module_tree {
                Some(dir) => ModuleTarget::Tree { dir: dir.clone() },
                None => ModuleTarget::Unavailable {
                    reason: format!(
                        "no configured, built kernel tree (Makefile, .config, vmlinux) around {} to build \
                         the test module against",
                        k.bzimage.display()
                    ),
                },
            },
            release: k.release.clone(),
            identity: k.identity.clone(),
        }
    }

    /// The `vmlinux` whose BTF (and `.BTF_ids`) describe this kernel, the base of the test
    /// module's BTF: a tree's own, or the BTF-only one of a Debian kernel's headers as unpacked
    /// by `scripts/build-module.sh` under `<root>/headers/` (none before the first module build).
    pub fn btf_vmlinux(&self, root: &Path) -> Option<PathBuf> {
        match &self.module_target {
            ModuleTarget::Tree { dir } => Some(dir.join("vmlinux")).filter(|p| p.is_file()),
            ModuleTarget::Debian { name } => headers_vmlinux(root, name),
            ModuleTarget::Unavailable { .. } => {
                let v = self.vmlinuz.parent()?.join("vmlinux");
                v.is_file().then_some(v)
            }
        }
    }
}

/// The newest `vmlinux` of Debian kernel `name`'s unpacked headers
/// (`<root>/headers/debian-7.2/<version>/root/usr/src/<dir>/vmlinux`).
pub fn headers_vmlinux(root: &Path, name: &str) -> Option<PathBuf> {
    let dir = root.join("headers").join(name.replace(':', "-"));
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

/// Errors of [`resolve`].
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Fetch(#[from] debian::FetchError),
    #[error(transparent)]
    Build(#[from] KbuildError),
    #[error(transparent)]
    Local(#[from] LocalKernelError),
    #[error("{0} is not in the cache (fetch it: `cargo run -p lockstep-vm --example fetch -- {0}`)")]
    NotCached(String),
}

impl ResolveError {
    /// Whether the name itself is wrong (unknown build, bad path, config lacking what the guest
    /// needs), as opposed to an infrastructure failure (network, disk).
    pub fn is_bad_input(&self) -> bool {
        match self {
            ResolveError::Build(b) => b.is_bad_input(),
            ResolveError::Local(l) => !matches!(l, LocalKernelError::Io { .. }),
            ResolveError::Fetch(debian::FetchError::UnknownKernel(_)) => true,
            _ => false,
        }
    }
}

/// Resolves a name in the cache at `root`. A Debian kernel is fetched when missing and `fetch`
/// is set; a build must exist (`lockstep kernel build` makes it); a path must hold a kernel.
pub fn resolve(name: &KernelName, root: &Path, fetch: bool) -> Result<ResolvedKernel, ResolveError> {
    let quiet: &dyn Fn(Progress) = &|_| {};
    resolve_with(name, root, fetch.then_some(quiet))
}

/// [`resolve`], fetching a missing Debian kernel when `on_fetch` is given (its progress goes there).
pub fn resolve_with(
    name: &KernelName,
    root: &Path,
    on_fetch: Option<&dyn Fn(Progress)>,
) -> Result<ResolvedKernel, ResolveError> {
    match name {
        KernelName::Debian { .. } => {
            let cache = KernelCache::new(root);
            let n = name.to_string();
            let k = match (cache.lookup(&n), on_fetch) {
                (Some(k), _) => k,
                (None, Some(on)) => cache.fetch(&n, FetchParts::default(), on)?,
                (None, None) => return Err(ResolveError::NotCached(n)),
            };
            Ok(ResolvedKernel::from_debian(&k))
        }
        KernelName::Build { name } => Ok(ResolvedKernel::from_build(&Kbuild::new(root).lookup(name)?)),
        KernelName::Local { path } => Ok(ResolvedKernel::from_local(&local_kernel::locate(path)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names() {
        assert_eq!("debian:7.2".parse::<KernelName>(), Ok(KernelName::Debian { series: "7.2".into() }));
        assert_eq!(
            "build:7.2+kf-spin-lock-rfc-v2".parse::<KernelName>(),
            Ok(KernelName::Build { name: "7.2+kf-spin-lock-rfc-v2".into() })
        );
        assert_eq!("build:0123abcd".parse::<KernelName>().unwrap().to_string(), "build:0123abcd");
        assert!("debian:9.9".parse::<KernelName>().unwrap_err().contains("debian:7.3"));
        assert!("build:".parse::<KernelName>().is_err());
        assert!("build:../x".parse::<KernelName>().is_err());
        assert!("7.2".parse::<KernelName>().unwrap_err().contains("debian:<series>"));
        assert_eq!("./linux".parse::<KernelName>(), Ok(KernelName::Local { path: "./linux".into() }));
        assert_eq!("/k/bzImage".parse::<KernelName>().unwrap().to_string(), "/k/bzImage");
    }

    #[test]
    fn module_target_arguments() {
        assert_eq!(ModuleTarget::Debian { name: "debian:7.3".into() }.build_module_args(), ["debian:7.3"]);
        assert_eq!(
            ModuleTarget::Tree { dir: "/c/builds/h/tree".into() }.build_module_args(),
            ["--tree", "/c/builds/h/tree"]
        );
    }

    #[test]
    fn resolves_cached_debian_kernels_and_builds() {
        let d = tempfile::tempdir().unwrap();
        // A cached Debian kernel entry.
        let kdir = d.path().join("kernels/debian:7.2/7.2.13-1");
        std::fs::create_dir_all(&kdir).unwrap();
        let k = debian::KernelRef {
            name: "debian:7.2".into(),
            suite: "sid".into(),
            abi: "7.2.13+deb14".into(),
            package_version: "7.2.13-1".into(),
            packages: vec![],
            dir: kdir.clone(),
            vmlinuz: kdir.join("vmlinuz"),
            config: kdir.join("config"),
            headers: None,
            manifest: Default::default(),
        };
        std::fs::write(kdir.join("kernel.json"), serde_json::to_string(&k).unwrap()).unwrap();
        let r = resolve(&"debian:7.2".parse().unwrap(), d.path(), false).unwrap();
        assert_eq!((r.release.as_str(), r.identity.as_str()), ("7.2.13+deb14-amd64", "7.2.13-1"));
        assert_eq!(r.module_target.build_module_args(), ["debian:7.2"]);
        assert_eq!(r.btf_vmlinux(d.path()), None, "no headers unpacked yet");
        let hdr = d.path().join("headers/debian-7.2/7.2.13-1/root/usr/src/linux-headers-7.2.13+deb14-amd64");
        std::fs::create_dir_all(&hdr).unwrap();
        std::fs::write(hdr.join("vmlinux"), b"btf").unwrap();
        assert_eq!(r.btf_vmlinux(d.path()), Some(hdr.join("vmlinux")));
        assert!(matches!(
            resolve(&"debian:7.3".parse().unwrap(), d.path(), false),
            Err(ResolveError::NotCached(_))
        ));
        // A build.
        let bdir = d.path().join("builds/0123456789abcdef");
        std::fs::create_dir_all(&bdir).unwrap();
        let rec = serde_json::json!({
            "hash": "0123456789abcdef", "aliases": ["7.2+s"],
            "source": {"spec": "debian-src:7.2", "version": "7.2.13-1", "kernel_version": "7.2.13", "short": "7.2"},
            "series": null, "user_fragments": [], "fragment": "", "compiler": "gcc", "pahole": "v1.30",
            "release": "7.2.13-lockstep", "identity": "7.2.13-1+s+lockstep.0123456789ab",
            "dir": bdir, "bzimage": bdir.join("bzImage"), "config": bdir.join("config"), "tree": bdir.join("tree"),
            "built_at_unix": 1, "timings": [], "make_steps": 0, "ccache": true
        });
        std::fs::write(bdir.join("build.json"), rec.to_string()).unwrap();
        let r = resolve(&"build:0123".parse().unwrap(), d.path(), false).unwrap();
        assert_eq!(r.name, "build:0123456789ab");
        assert_eq!(r.vmlinuz, bdir.join("bzImage"));
        assert_eq!(r.release, "7.2.13-lockstep");
        assert_eq!(r.module_target, ModuleTarget::Tree { dir: bdir.join("tree") });
        assert!(matches!(
            resolve(&"build:nope".parse().unwrap(), d.path(), false),
            Err(ResolveError::Build(KbuildError::NotFound(_)))
        ));
    }
}
