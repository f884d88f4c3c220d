//! Kernel sources: `debian-src:<series>` (Debian's `linux-source-<series>`, fetched with a private
//! apt configuration) or a local kernel tree.
//!
//! Debian sources share `<cache>/debs/` with `scripts/fetch-kernel-source.sh`: the .deb, the
//! tarball `linux-source-<series>.tar.xz` and `linux-source-<series>.PACKAGE_VERSION`. With a
//! tarball there and no refresh asked for, no network is used.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::series::sha256_hex;
use super::KbuildError;
use crate::debian::{apt::PrivateApt, apt::SYSTEM_SOURCES, deb, names};

/// Where a kernel source comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    /// `debian-src:7.2`: Debian's `linux-source-7.2` from the suite that carries `debian:7.2`.
    DebianSrc { series: String },
    /// A local kernel tree (a directory with the top-level `Makefile`).
    Local(PathBuf),
}

impl std::str::FromStr for SourceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(series) = s.strip_prefix("debian-src:") {
            if names::spec_for(&format!("debian:{series}")).is_none() {
                let known: Vec<_> =
                    names::KERNELS.iter().map(|k| format!("debian-src:{}", k.series)).collect();
                return Err(format!(
                    "unknown source {s:?} (known: {}, or a kernel tree path)",
                    known.join(", ")
                ));
            }
            return Ok(SourceSpec::DebianSrc { series: series.to_string() });
        }
        if s.is_empty() {
            return Err("empty source".into());
        }
        if let Some((scheme, _)) = s.split_once(':') {
            if !scheme.contains('/') && !scheme.starts_with('.') {
                return Err(format!("unknown source scheme {scheme:?} in {s:?} (want debian-src:<series> or a kernel tree path)"));
            }
        }
        Ok(SourceSpec::Local(PathBuf::from(s)))
    }
}

impl std::fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceSpec::DebianSrc { series } => write!(f, "debian-src:{series}"),
            SourceSpec::Local(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The exact source a build used (enters the cache key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceId {
    /// As given: `debian-src:7.2` or the tree's absolute path.
    pub spec: String,
    /// Debian package version (`7.2.13-1`), or the tree's fingerprint (`git:<HEAD>[+dirty.<hash>]`
    /// or `files:<hash>`).
    pub version: String,
    /// `make kernelversion`, from the top-level Makefile (e.g. `7.2.13`).
    pub kernel_version: String,
    /// A short name for aliases: `7.2` for `debian-src:7.2`, the directory name for a tree.
    pub short: String,
}

impl SourceId {
    /// The name of this source's work directory (one build tree per source version).
    pub fn work_name(&self) -> String {
        if let Some(series) = self.spec.strip_prefix("debian-src:") {
            format!("debian-src-{series}_{}", self.version.replace([':', '/', '~'], "_"))
        } else {
            format!("tree-{}-{}", sanitize(&self.short), &sha256_hex(self.spec.as_bytes())[..8])
        }
    }
}

fn sanitize(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || "._+-".contains(c) { c } else { '_' }).collect()
}

/// `VERSION.PATCHLEVEL.SUBLEVEL[EXTRAVERSION]` from a top-level kernel `Makefile`.
pub fn makefile_version(makefile: &str) -> Option<String> {
    let get = |k: &str| {
        makefile.lines().take(20).find_map(|l| {
            let (a, b) = l.split_once('=')?;
            (a.trim() == k).then(|| b.trim().to_string())
        })
    };
    let (v, p) = (get("VERSION")?, get("PATCHLEVEL")?);
    let s = get("SUBLEVEL").unwrap_or_default();
    let e = get("EXTRAVERSION").unwrap_or_default();
    Some(if s.is_empty() { format!("{v}.{p}{e}") } else { format!("{v}.{p}.{s}{e}") })
}

/// The Debian source tarball of `series` in `<cache>/debs`, with its package version.
pub struct DebianTarball {
    pub tarball: PathBuf,
    pub package_version: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KbuildError + '_ {
    move |e| KbuildError::Io(path.to_path_buf(), e)
}

/// The cached tarball of `linux-source-<series>`, if any.
pub fn cached_tarball(cache_root: &Path, series: &str) -> Option<DebianTarball> {
    let debs = cache_root.join("debs");
    let version = fs::read_to_string(debs.join(format!("linux-source-{series}.PACKAGE_VERSION"))).ok()?;
    let tarball = fs::read_dir(&debs).ok()?.flatten().map(|e| e.path()).find(|p| {
        p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("linux-source-{series}.tar")))
    })?;
    Some(DebianTarball { tarball, package_version: version.trim().to_string() })
}

/// Fetches `linux-source-<series>` (the newest in its suite) into `<cache>/debs` unless a tarball
/// is cached and `refresh` is false.
pub fn fetch_debian(
    cache_root: &Path,
    series: &str,
    refresh: bool,
    log: &mut dyn FnMut(String),
) -> Result<DebianTarball, KbuildError> {
    if !refresh {
        if let Some(t) = cached_tarball(cache_root, series) {
            return Ok(t);
        }
    }
    let spec = names::spec_for(&format!("debian:{series}"))
        .ok_or_else(|| KbuildError::BadRequest(format!("unknown series {series}")))?;
    let sources = fs::read_to_string(SYSTEM_SOURCES).map_err(io(Path::new(SYSTEM_SOURCES)))?;
    let mirror = names::mirror_from_sources(&sources)
        .ok_or_else(|| KbuildError::BadRequest(format!("no mirror URI in {SYSTEM_SOURCES}")))?;
    let apt = PrivateApt::new(cache_root, spec.suite);
    log(format!("apt update ({})", spec.suite));
    apt.ensure_updated(&mirror, refresh)?;
    let pkg = format!("linux-source-{series}");
    let info = names::newest(&names::parse_show(&apt.show(std::slice::from_ref(&pkg))?), &pkg)
        .ok_or_else(|| KbuildError::BadRequest(format!("{pkg} not found in {}", spec.suite)))?;
    if let Some(t) = cached_tarball(cache_root, series) {
        if t.package_version == info.version {
            return Ok(t);
        }
    }
    let debs = cache_root.join("debs");
    log(format!("downloading {pkg} {} ({} MB)", info.version, info.size.unwrap_or(0) >> 20));
    let deb_path = apt.download(&pkg, &info.version, info.sha256.as_deref(), &debs)?;
    let x = debs.join(format!(".unpack-{pkg}"));
    let _ = fs::remove_dir_all(&x);
    log(format!("unpacking {}", deb_path.display()));
    deb::unpack_deb(&deb_path, &x, &mut |_| {}).map_err(io(&deb_path))?;
    let inner = fs::read_dir(x.join("usr/src"))
        .map_err(io(&x))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&format!("{pkg}.tar"))));
    let inner = inner.ok_or_else(|| {
        KbuildError::BadRequest(format!("no usr/src/{pkg}.tar.* in {}", deb_path.display()))
    })?;
    for e in fs::read_dir(&debs).map_err(io(&debs))?.flatten() {
        if e.file_name().to_string_lossy().starts_with(&format!("{pkg}.tar")) {
            let _ = fs::remove_file(e.path());
        }
    }
    let tarball = debs.join(inner.file_name().unwrap());
    fs::rename(&inner, &tarball).map_err(io(&tarball))?;
    let _ = fs::remove_dir_all(&x);
    let pv = debs.join(format!("{pkg}.PACKAGE_VERSION"));
    fs::write(&pv, format!("{}\n", info.version)).map_err(io(&pv))?;
    Ok(DebianTarball { tarball, package_version: info.version })
}

/// Extracts a source tarball into `dest` (its top directory stripped). `dest` must not exist.
pub fn extract_tarball(tarball: &Path, dest: &Path) -> Result<(), KbuildError> {
    let tmp = dest.with_extension("extracting");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    run(Command::new("tar").arg("-xf").arg(tarball).arg("-C").arg(&tmp).arg("--strip-components=1"))?;
    fs::rename(&tmp, dest).map_err(io(dest))
}

/// The fingerprint of a local tree: `git:<HEAD>` (plus `+dirty.<hash>` of `git status` and
/// `git diff HEAD`) for a git work tree, else `files:<hash>` of every file's path, size and mtime.
pub fn tree_fingerprint(tree: &Path) -> Result<String, KbuildError> {
    let git = |args: &[&str]| {
        Command::new("git").arg("-C").arg(tree).args(args).output().ok().filter(|o| o.status.success())
    };
    if let Some(head) = git(&["rev-parse", "HEAD"]) {
        let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
        let status =
            git(&["status", "--porcelain", "--untracked-files=normal"]).map(|o| o.stdout).unwrap_or_default();
        if status.is_empty() {
            return Ok(format!("git:{head}"));
        }
        let diff = git(&["diff", "HEAD", "--binary"]).map(|o| o.stdout).unwrap_or_default();
        let mut all = status;
        all.extend_from_slice(&diff);
        return Ok(format!("git:{head}+dirty.{}", &sha256_hex(&all)[..16]));
    }
    let mut entries = Vec::new();
    let mut stack = vec![tree.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).map_err(io(&d))?.flatten() {
            let p = e.path();
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                if e.file_name() != ".git" {
                    stack.push(p);
                }
            } else {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                entries.push(format!(
                    "{}\t{}\t{mtime}\n",
                    p.strip_prefix(tree).unwrap_or(&p).display(),
                    m.len()
                ));
            }
        }
    }
    entries.sort();
    Ok(format!("files:{}", &sha256_hex(entries.concat().as_bytes())[..16]))
}

/// Copies a local tree into `dest` (without `.git`), keeping modification times so that `make`
/// rebuilds only what changed since the previous snapshot.
pub fn snapshot_tree(tree: &Path, dest: &Path) -> Result<(), KbuildError> {
    let tmp = dest.with_extension("copying");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let script = "tar -C \"$1\" --exclude=./.git -cf - . | tar -C \"$2\" -xpf -";
    run(Command::new("sh").args(["-c", script, "sh"]).arg(tree).arg(&tmp))?;
    let _ = fs::remove_dir_all(dest);
    fs::rename(&tmp, dest).map_err(io(dest))
}

/// Runs a command; its output, or [`KbuildError::Command`].
pub(crate) fn run(cmd: &mut Command) -> Result<String, KbuildError> {
    let shown = format!("{cmd:?}");
    let out =
        cmd.output().map_err(|e| KbuildError::Command { command: shown.clone(), output: e.to_string() })?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(KbuildError::Command { command: shown, output: text });
    }
    Ok(text)
}

/// Writes a file atomically (temp file + rename).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KbuildError> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_source_specs() {
        assert_eq!(
            "debian-src:7.2".parse::<SourceSpec>(),
            Ok(SourceSpec::DebianSrc { series: "7.2".into() })
        );
        assert!("debian-src:9.9".parse::<SourceSpec>().unwrap_err().contains("debian-src:7.2"));
        assert_eq!("/src/linux".parse::<SourceSpec>(), Ok(SourceSpec::Local("/src/linux".into())));
        assert_eq!("../linux".parse::<SourceSpec>(), Ok(SourceSpec::Local("../linux".into())));
        assert!("debian:7.2".parse::<SourceSpec>().unwrap_err().contains("unknown source scheme"));
        assert_eq!(SourceSpec::DebianSrc { series: "7.3".into() }.to_string(), "debian-src:7.3");
    }

    #[test]
    fn reads_the_makefile_version() {
        let mk =
            "# SPDX\nVERSION = 7\nPATCHLEVEL = 2\nSUBLEVEL = 13\nEXTRAVERSION =\nNAME = Baby Opossum Posse\n";
        assert_eq!(makefile_version(mk).as_deref(), Some("7.2.13"));
        let rc = "VERSION = 7\nPATCHLEVEL = 3\nSUBLEVEL = 0\nEXTRAVERSION = -rc7\n";
        assert_eq!(makefile_version(rc).as_deref(), Some("7.3.0-rc7"));
        assert_eq!(makefile_version("all:\n"), None);
    }

    #[test]
    fn work_names_are_per_source_version() {
        let d = SourceId {
            spec: "debian-src:7.3".into(),
            version: "7.3.4-1~bpo13+1".into(),
            kernel_version: "7.3.4".into(),
            short: "7.3".into(),
        };
        assert_eq!(d.work_name(), "debian-src-7.3_7.3.4-1_bpo13+1");
        let t = SourceId {
            spec: "/home/me/linux".into(),
            version: "git:abc".into(),
            kernel_version: "7.4.0".into(),
            short: "linux".into(),
        };
        let t2 = SourceId { version: "git:def".into(), ..t.clone() };
        // One work tree per local path, whatever its state (make rebuilds what changed).
        assert_eq!(t.work_name(), t2.work_name());
        assert!(t.work_name().starts_with("tree-linux-"));
    }

    #[test]
    fn fingerprint_of_a_plain_tree_follows_content_changes() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("Makefile"), "VERSION = 1\n").unwrap();
        let a = tree_fingerprint(d.path()).unwrap();
        assert!(a.starts_with("files:"), "{a}");
        assert_eq!(a, tree_fingerprint(d.path()).unwrap());
        fs::write(d.path().join("Makefile"), "VERSION = 12\n").unwrap();
        assert_ne!(a, tree_fingerprint(d.path()).unwrap());
    }

    #[test]
    fn snapshot_skips_git_and_keeps_mtimes() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(src.join(".git")).unwrap();
        fs::create_dir_all(src.join("kernel")).unwrap();
        fs::write(src.join(".git/HEAD"), "x").unwrap();
        fs::write(src.join("kernel/a.c"), "int a;").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options().write(true).open(src.join("kernel/a.c")).unwrap().set_modified(old).unwrap();
        let dst = d.path().join("snap");
        snapshot_tree(&src, &dst).unwrap();
        assert_eq!(fs::read_to_string(dst.join("kernel/a.c")).unwrap(), "int a;");
        assert!(!dst.join(".git").exists());
        assert_eq!(fs::metadata(dst.join("kernel/a.c")).unwrap().modified().unwrap(), old);
    }
}
