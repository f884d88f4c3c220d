//! Debian kernels by name (`debian:6.12`, `debian:7.2`, `debian:7.3`), fetched with a private apt
//! configuration and unpacked in Rust into `<cache>/kernels/<name>/<package-version>/`.
//!
//! Layout of one cached kernel:
//! ```text
//! <cache>/kernels/debian:7.3/7.3.4-1~bpo13+1/
//!     kernel.json            the KernelRef (written last: its presence marks a complete entry)
//!     root/                  the unpacked packages (as `dpkg-deb -x` would)
//!     vmlinuz, config        copies of the image and its config
//! <cache>/kernels/.debian_7.3.lock   held (flock) while a process fetches that name
//! ```

pub(crate) mod apt;
pub mod deb;
mod modules;
pub mod names;
pub mod verify;
pub mod version;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

pub use names::{KernelSpec, KERNELS};

/// Errors of kernel fetching.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("unknown kernel {0:?} (known: debian:6.12, debian:7.2, debian:7.3)")]
    UnknownKernel(String),
    #[error("no mirror URI in {0}")]
    NoMirror(String),
    #[error("{what} not found in {suite}")]
    NotFound { what: String, suite: String },
    #[error("cannot verify the signature of suite {suite}:\n{output}")]
    Unverified { suite: String, output: String },
    #[error("{command} failed:\n{output}")]
    Command { command: String, output: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    #[error("a downloaded package does not match the package index: {0}")]
    Mismatch(verify::Mismatch),
}

impl FetchError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        FetchError::Io { path: path.to_path_buf(), source }
    }
}

/// Which parts to fetch. The kernel image and config are always fetched.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchParts {
    /// Also `linux-headers-<abi>-amd64`, `linux-headers-<abi>-common` and `linux-kbuild-<abi>`.
    pub headers: bool,
}

/// Progress of a fetch, for a progress bar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// A cached kernel satisfies the request: no network.
    CacheHit { name: String, package_version: String },
    /// Running `apt-get update` for the private tree of `suite`.
    Updating { suite: String },
    /// Resolved the newest ABI and package version.
    Resolved { name: String, abi: String, package_version: String },
    /// Downloading one package (`size` from the package index).
    Downloading { package: String, version: String, size: Option<u64> },
    /// Unpacking one package: `done` of `total` bytes of its .deb.
    Unpacking { package: String, done: u64, total: u64 },
    /// The entry is complete.
    Done,
}

/// One exact package in a cached kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageRecord {
    pub package: String,
    pub version: String,
    /// SHA256 of the .deb from the package index, checked at download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Header packages unpacked next to a kernel (for building an out-of-tree module).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadersRef {
    pub packages: Vec<PackageRecord>,
    /// `root/usr/src/linux-headers-<abi>-amd64` (pass as `O=`; ships a BTF-only `vmlinux`).
    pub amd64_dir: PathBuf,
    /// `root/usr/src/linux-headers-<abi>-common` (its Makefile is the one to call).
    pub common_dir: PathBuf,
    /// `root/usr/lib/linux-kbuild-<...>` (modpost, objtool, resolve_btfids: need glibc >= 2.38).
    pub kbuild_dir: PathBuf,
}

/// A kernel in the cache (serialised as `kernel.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRef {
    /// The kernel name, e.g. `debian:7.3`.
    pub name: String,
    pub suite: String,
    /// Debian ABI, e.g. `7.3.4+deb13`; `uname -r` in the guest is `<abi>-amd64`.
    pub abi: String,
    /// Version of the image package, e.g. `7.3.4-1~bpo13+1`.
    pub package_version: String,
    /// The image packages with exact versions.
    pub packages: Vec<PackageRecord>,
    /// The entry directory.
    pub dir: PathBuf,
    /// The bootable image.
    pub vmlinuz: PathBuf,
    /// The kernel's `.config`.
    pub config: PathBuf,
    /// Present when headers were fetched.
    pub headers: Option<HeadersRef>,
    /// SHA256 of the files lockstep uses from the entry ([`ENTRY_FILES`], relative to `dir`),
    /// recorded at fetch and checked before the entry is trusted ([`verify::check_manifest`]).
    /// Empty in entries written before manifests existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub manifest: BTreeMap<String, String>,
}

/// The files of a cache entry its manifest covers: the image QEMU boots and its config.
pub const ENTRY_FILES: [&str; 2] = ["vmlinuz", "config"];

impl KernelRef {
    /// The release string the booted kernel reports (`uname -r`).
    pub fn release(&self) -> String {
        format!("{}-amd64", self.abi)
    }
}

/// The kernel cache.
#[derive(Clone, Debug)]
pub struct KernelCache {
    root: PathBuf,
    refresh: bool,
}

impl KernelCache {
    /// A cache rooted at `root` (holds `apt/` and `kernels/`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        KernelCache { root: root.into(), refresh: false }
    }

    /// `$LOCKSTEP_CACHE`, else `$XDG_CACHE_HOME/lockstep`, else `$HOME/.cache/lockstep`
    /// ([`crate::cache_root`]); never a shared temporary path.
    pub fn default_root() -> Result<PathBuf, crate::cache_root::NoCacheRoot> {
        crate::cache_root::from_env()
    }

    /// The cache at [`KernelCache::default_root`].
    pub fn open_default() -> Result<Self, crate::cache_root::NoCacheRoot> {
        Ok(Self::new(Self::default_root()?))
    }

    /// With `refresh`, `fetch` re-reads the package index and fetches a newer version if there is one
    /// (without it, any cached version of the name is a hit and no network is used).
    pub fn refresh(mut self, refresh: bool) -> Self {
        self.refresh = refresh;
        self
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn kernels_dir(&self) -> PathBuf {
        self.root.join("kernels")
    }

    /// Every complete cached kernel, sorted by name then newest version first.
    pub fn list(&self) -> Vec<KernelRef> {
        let mut out = Vec::new();
        let Ok(names) = fs::read_dir(self.kernels_dir()) else { return out };
        for n in names.flatten() {
            let Ok(versions) = fs::read_dir(n.path()) else { continue };
            for v in versions.flatten() {
                if let Ok(k) = read_ref(&v.path().join("kernel.json")) {
                    out.push(k);
                }
            }
        }
        out.sort_by(|a, b| {
            a.name.cmp(&b.name).then_with(|| names::cmp_newest_first(&a.package_version, &b.package_version))
        });
        out
    }

    /// The newest cached version of `name`, if its files match its manifest
    /// ([`trusted`]); a mismatch is a warning and `None` (so `fetch` fetches it again).
    pub fn lookup(&self, name: &str) -> Option<KernelRef> {
        self.list().into_iter().find(|k| k.name == name).filter(trusted)
    }

    /// Fetches `name` (idempotent: a cached entry with the requested parts means no network).
    pub fn fetch(
        &self,
        name: &str,
        parts: FetchParts,
        progress: &dyn Fn(Progress),
    ) -> Result<KernelRef, FetchError> {
        let spec = names::spec_for(name).ok_or_else(|| FetchError::UnknownKernel(name.to_string()))?;
        let _lock = self.fetch_lock(name)?;
        if !self.refresh {
            if let Some(k) = self.lookup(name) {
                if k.headers.is_some() || !parts.headers {
                    progress(Progress::CacheHit {
                        name: k.name.clone(),
                        package_version: k.package_version.clone(),
                    });
                    return Ok(k);
                }
                // Headers for the cached version only.
                let apt = self.apt(spec, false, progress)?;
                return self.fetch_headers(&apt, spec, k, progress);
            }
        }
        let apt = self.apt(spec, self.refresh, progress)?;
        let pkgnames = apt.pkgnames(match spec.scheme {
            names::Scheme::ImageUnsigned => "linux-image-",
            names::Scheme::BinaryUnsigned => "linux-binary-unsigned-",
        })?;
        let abi = spec.abis(&pkgnames).into_iter().next().ok_or_else(|| FetchError::NotFound {
            what: format!("a {} kernel image package", spec.series),
            suite: spec.suite.to_string(),
        })?;
        let packages = self.resolve(&apt, &spec.image_packages(&abi))?;
        let package_version = packages[0].version.clone();
        progress(Progress::Resolved {
            name: name.to_string(),
            abi: abi.clone(),
            package_version: package_version.clone(),
        });
        let dir = self.kernels_dir().join(name).join(&package_version);
        if let Some(k) = read_ref(&dir.join("kernel.json")).ok().filter(trusted) {
            if k.headers.is_some() || !parts.headers {
                progress(Progress::CacheHit {
                    name: k.name.clone(),
                    package_version: k.package_version.clone(),
                });
                return Ok(k);
            }
            return self.fetch_headers(&apt, spec, k, progress);
        }
        let root = dir.join("root");
        self.download_unpack(&apt, &packages, &dir, &root, progress)?;
        let (vm_rel, cfg_rel) = spec.image_paths(&abi);
        let (vmlinuz, config) = (dir.join("vmlinuz"), dir.join("config"));
        for (from, to) in [(root.join(&vm_rel), &vmlinuz), (root.join(&cfg_rel), &config)] {
            fs::copy(&from, to).map_err(|e| FetchError::io(&from, e))?;
        }
        let k = KernelRef {
            name: name.to_string(),
            suite: spec.suite.to_string(),
            abi,
            package_version,
            packages: packages
                .into_iter()
                .map(|p| PackageRecord { package: p.package, version: p.version, sha256: p.sha256 })
                .collect(),
            dir: dir.clone(),
            vmlinuz,
            config,
            headers: None,
            manifest: verify::manifest_of(&dir, &ENTRY_FILES).map_err(|e| FetchError::io(&dir, e))?,
        };
        if parts.headers {
            return self.fetch_headers(&apt, spec, k, progress);
        }
        write_ref(&k)?;
        progress(Progress::Done);
        Ok(k)
    }

    /// The cache's fetch lock of kernel `name`, held until dropped: two lockstep processes
    /// fetching one kernel (two CI jobs, a run beside the VM tests) would otherwise unpack into
    /// the same directory and write the same `kernel.json.tmp`. The second waits, then finds the
    /// first one's entry in the cache.
    fn fetch_lock(&self, name: &str) -> Result<Flock<fs::File>, FetchError> {
        let dir = self.kernels_dir();
        fs::create_dir_all(&dir).map_err(|e| FetchError::io(&dir, e))?;
        let path = dir.join(format!(".{}.lock", name.replace(['/', ':'], "_")));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| FetchError::io(&path, e))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| FetchError::io(&path, errno.into()))
    }

    fn apt(
        &self,
        spec: &KernelSpec,
        force_update: bool,
        progress: &dyn Fn(Progress),
    ) -> Result<apt::PrivateApt, FetchError> {
        let sources = fs::read_to_string(apt::SYSTEM_SOURCES)
            .map_err(|e| FetchError::io(Path::new(apt::SYSTEM_SOURCES), e))?;
        let mirror = names::mirror_from_sources(&sources)
            .ok_or_else(|| FetchError::NoMirror(apt::SYSTEM_SOURCES.into()))?;
        let apt = apt::PrivateApt::new(&self.root, spec.suite);
        progress(Progress::Updating { suite: spec.suite.to_string() });
        apt.ensure_updated(&mirror, force_update)?;
        Ok(apt)
    }

    /// The newest version of each package (all from the same source upload).
    fn resolve(
        &self,
        apt: &apt::PrivateApt,
        packages: &[String],
    ) -> Result<Vec<names::PackageInfo>, FetchError> {
        let infos = names::parse_show(&apt.show(packages)?);
        packages
            .iter()
            .map(|p| {
                names::newest(&infos, p)
                    .ok_or_else(|| FetchError::NotFound { what: p.clone(), suite: apt.suite.clone() })
            })
            .collect()
    }

    fn download_unpack(
        &self,
        apt: &apt::PrivateApt,
        packages: &[names::PackageInfo],
        dir: &Path,
        root: &Path,
        progress: &dyn Fn(Progress),
    ) -> Result<(), FetchError> {
        let debs = dir.join("debs");
        for p in packages {
            progress(Progress::Downloading {
                package: p.package.clone(),
                version: p.version.clone(),
                size: p.size,
            });
            let deb = apt.download(&p.package, &p.version, p.sha256.as_deref(), &debs)?;
            let total = fs::metadata(&deb).map(|m| m.len()).unwrap_or(0);
            let mut last = 0u64;
            deb::unpack_deb(&deb, root, &mut |done| {
                // Report about every 4 MiB.
                if done - last >= 4 << 20 || done == total {
                    last = done;
                    progress(Progress::Unpacking { package: p.package.clone(), done, total });
                }
            })
            .map_err(|e| FetchError::io(&deb, e))?;
        }
        let _ = fs::remove_dir_all(&debs);
        Ok(())
    }

    fn fetch_headers(
        &self,
        apt: &apt::PrivateApt,
        spec: &KernelSpec,
        mut k: KernelRef,
        progress: &dyn Fn(Progress),
    ) -> Result<KernelRef, FetchError> {
        let mut packages = self.resolve(apt, &spec.header_packages(&k.abi))?;
        // Headers must come from the same upload as the image.
        for p in &mut packages {
            if p.version != k.package_version {
                let infos = names::parse_show(&apt.show(std::slice::from_ref(&p.package))?);
                let same =
                    infos.into_iter().find(|i| i.package == p.package && i.version == k.package_version);
                *p = same.ok_or_else(|| FetchError::NotFound {
                    what: format!("{}={}", p.package, k.package_version),
                    suite: apt.suite.clone(),
                })?;
            }
        }
        let root = k.dir.join("root");
        self.download_unpack(apt, &packages, &k.dir, &root, progress)?;
        let kbuild_dir = fs::read_dir(root.join("usr/lib"))
            .ok()
            .and_then(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("linux-kbuild-")))
            })
            .unwrap_or_else(|| root.join(format!("usr/lib/linux-kbuild-{}", k.abi)));
        k.headers = Some(HeadersRef {
            packages: packages
                .into_iter()
                .map(|p| PackageRecord { package: p.package, version: p.version, sha256: p.sha256 })
                .collect(),
            amd64_dir: root.join(format!("usr/src/linux-headers-{}-amd64", k.abi)),
            common_dir: root.join(format!("usr/src/linux-headers-{}-common", k.abi)),
            kbuild_dir,
        });
        write_ref(&k)?;
        progress(Progress::Done);
        Ok(k)
    }
}

/// Whether a cache entry may be used: its files match its manifest. A mismatch is logged as a
/// warning (the caller fetches the entry again); an entry without a manifest (written before
/// manifests existed) is used with a warning.
fn trusted(k: &KernelRef) -> bool {
    if k.manifest.is_empty() {
        tracing::warn!(
            "{} {}: cache entry has no manifest (an older lockstep wrote it); used unverified \
             (remove {} to fetch it again with a manifest)",
            k.name,
            k.package_version,
            k.dir.display()
        );
        return true;
    }
    match verify::check_manifest(&k.dir, &k.manifest) {
        Ok(()) => true,
        Err(bad) => {
            for m in bad {
                tracing::warn!(
                    "{} {}: cache entry changed, fetching it again: {m}",
                    k.name,
                    k.package_version
                );
            }
            false
        }
    }
}

fn read_ref(path: &Path) -> Result<KernelRef, FetchError> {
    let text = fs::read_to_string(path).map_err(|e| FetchError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| FetchError::Json { path: path.to_path_buf(), source: e })
}

/// Writes `kernel.json` atomically.
fn write_ref(k: &KernelRef) -> Result<(), FetchError> {
    let path = k.dir.join("kernel.json");
    let tmp = k.dir.join("kernel.json.tmp");
    let text =
        serde_json::to_string_pretty(k).map_err(|e| FetchError::Json { path: path.clone(), source: e })?;
    fs::write(&tmp, text).map_err(|e| FetchError::io(&tmp, e))?;
    fs::rename(&tmp, &path).map_err(|e| FetchError::io(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(root: &Path, name: &str, ver: &str) -> KernelRef {
        let dir = root.join("kernels").join(name).join(ver);
        fs::create_dir_all(&dir).unwrap();
        let k = KernelRef {
            name: name.into(),
            suite: "sid".into(),
            abi: "7.2.13+deb14".into(),
            package_version: ver.into(),
            packages: vec![],
            dir: dir.clone(),
            vmlinuz: dir.join("vmlinuz"),
            config: dir.join("config"),
            headers: None,
            manifest: BTreeMap::new(),
        };
        write_ref(&k).unwrap();
        k
    }

    #[test]
    fn an_entry_whose_files_changed_is_not_trusted() {
        let t = tempfile::tempdir().unwrap();
        let mut k = fake(t.path(), "debian:7.3", "7.3.4-1");
        fs::write(&k.vmlinuz, "image").unwrap();
        fs::write(&k.config, "CONFIG_BPF=y").unwrap();
        k.manifest = verify::manifest_of(&k.dir, &ENTRY_FILES).unwrap();
        write_ref(&k).unwrap();
        let c = KernelCache::new(t.path());
        assert_eq!(c.lookup("debian:7.3").map(|k| k.manifest.len()), Some(2));
        fs::write(&k.vmlinuz, "image, replaced").unwrap();
        assert!(c.lookup("debian:7.3").is_none(), "a changed vmlinuz must not be trusted");
        // Listing still shows it (kernel list); only lookup/fetch refuse to use it.
        assert_eq!(c.list().len(), 1);
    }

    #[test]
    fn list_and_lookup_newest_and_cache_hit() {
        let t = tempfile::tempdir().unwrap();
        fake(t.path(), "debian:7.2", "7.2.9-1");
        fake(t.path(), "debian:7.2", "7.2.13-1");
        fake(t.path(), "debian:7.3", "7.3.4-1~bpo13+1");
        fs::create_dir_all(t.path().join("kernels/debian:7.3/7.3.5-1")).unwrap(); // incomplete: ignored
        let c = KernelCache::new(t.path());
        let all: Vec<_> = c.list().into_iter().map(|k| (k.name, k.package_version)).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], ("debian:7.2".to_string(), "7.2.13-1".to_string()));
        assert_eq!(c.lookup("debian:7.3").unwrap().package_version, "7.3.4-1~bpo13+1");
        assert!(c.lookup("debian:6.12").is_none());
        // A cached entry is returned without touching apt (this test has no network).
        let seen = std::cell::RefCell::new(vec![]);
        let k = c.fetch("debian:7.2", FetchParts::default(), &|p| seen.borrow_mut().push(p)).unwrap();
        assert_eq!(k.package_version, "7.2.13-1");
        assert!(matches!(seen.borrow()[0], Progress::CacheHit { .. }));
        assert!(matches!(
            c.fetch("debian:1.0", FetchParts::default(), &|_| {}),
            Err(FetchError::UnknownKernel(_))
        ));
        assert_eq!(k.release(), "7.2.13+deb14-amd64");
    }

    #[test]
    fn a_fetch_waits_for_another_fetch_of_the_same_kernel() {
        let t = tempfile::tempdir().unwrap();
        fake(t.path(), "debian:7.2", "7.2.13-1");
        let c = KernelCache::new(t.path());
        let held = c.fetch_lock("debian:7.2").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let root = t.path().to_path_buf();
        let waiter = std::thread::spawn(move || {
            let k = KernelCache::new(root).fetch("debian:7.2", FetchParts::default(), &|_| {});
            tx.send(k.map(|k| k.package_version)).unwrap();
        });
        // Another kernel's lock is independent.
        drop(c.fetch_lock("debian:7.3").unwrap());
        assert!(rx.recv_timeout(std::time::Duration::from_millis(300)).is_err(), "fetch did not wait");
        drop(held);
        let got =
            rx.recv_timeout(std::time::Duration::from_secs(10)).expect("fetch ran once the lock was free");
        assert_eq!(got.unwrap(), "7.2.13-1");
        waiter.join().unwrap();
        assert!(t.path().join("kernels/.debian_7.2.lock").exists());
        assert_eq!(c.list().len(), 1, "the lock file is not a kernel");
    }
}
