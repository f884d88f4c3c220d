//! Kernels by name, whatever their origin: `debian:7.2` (a Debian package, [`crate::debian`]) or
//! `build:<alias-or-hash>` (built from source, [`crate::kbuild`]). [`KernelName`] parses a name;
//! [`resolve`] turns it into a [`ResolvedKernel`]: what a guest boots and what a test module is
//! built against.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::debian::{self, FetchParts, KernelCache};
use crate::kbuild::{BuildRecord, Kbuild, KbuildError};

/// A kernel name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KernelName {
    /// `debian:<series>`, e.g. `debian:7.3`.
    Debian { series: String },
    /// `build:<alias>` (e.g. `build:7.2+kf-spin-lock-rfc-v2`) or `build:<hash prefix>`.
    Build { name: String },
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
        Err(format!("unknown kernel name {s:?} (want debian:<series> or build:<alias-or-hash>)"))
    }
}

impl std::fmt::Display for KernelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelName::Debian { series } => write!(f, "debian:{series}"),
            KernelName::Build { name } => write!(f, "build:{name}"),
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
}

impl ModuleTarget {
    /// The arguments of `scripts/build-module.sh` for this kernel.
    pub fn build_module_args(&self) -> Vec<String> {
        match self {
            ModuleTarget::Debian { name } => vec![name.clone()],
            ModuleTarget::Tree { dir } => vec!["--tree".into(), dir.display().to_string()],
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
}

/// Errors of [`resolve`].
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Fetch(#[from] debian::FetchError),
    #[error(transparent)]
    Build(#[from] KbuildError),
    #[error("{0} is not in the cache (fetch it: `cargo run -p lockstep-vm --example fetch -- {0}`)")]
    NotCached(String),
}

/// Resolves a name in the cache at `root`. A Debian kernel is fetched when missing and `fetch`
/// is set; a build must exist (`lockstep kernel build` makes it).
pub fn resolve(name: &KernelName, root: &Path, fetch: bool) -> Result<ResolvedKernel, ResolveError> {
    match name {
        KernelName::Debian { .. } => {
            let cache = KernelCache::new(root);
            let n = name.to_string();
            let k = match cache.lookup(&n) {
                Some(k) => k,
                None if fetch => cache.fetch(&n, FetchParts::default(), &|_| {})?,
                None => return Err(ResolveError::NotCached(n)),
            };
            Ok(ResolvedKernel::from_debian(&k))
        }
        KernelName::Build { name } => Ok(ResolvedKernel::from_build(&Kbuild::new(root).lookup(name)?)),
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
