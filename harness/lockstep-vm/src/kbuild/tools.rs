//! Build tools: the compiler's identity, ccache, and a pahole new enough for the kernel's BTF.
//!
//! pahole must be >= [`MIN_PAHOLE`] (older ones emit no `bpf_kfunc` decl tags, so kfuncs with
//! implicit arguments break). Bookworm ships 1.24: unless `$PAHOLE` or the `pahole` on `PATH` is
//! new enough, the newest pahole of [`PAHOLE_SUITE`] is fetched with a private apt configuration
//! together with the closure of its library dependencies (that suite's glibc included) into
//! `<cache>/tools/pahole/<version>/`, and run through a wrapper calling that tree's `ld-linux`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::source::run;
use super::KbuildError;
use crate::debian::{apt::PrivateApt, apt::SYSTEM_SOURCES, deb, names, version};

/// The oldest pahole that works for lockstep's kernels.
pub const MIN_PAHOLE: (u32, u32) = (1, 30);
/// The suite a private pahole comes from (a stable release: its pahole does not move).
pub const PAHOLE_SUITE: &str = "trixie";

/// A tool to run: its path and `--version` line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tool {
    pub path: PathBuf,
    pub version: String,
}

/// Parses `v1.30` / `1.30` into (1, 30).
pub fn parse_pahole_version(s: &str) -> Option<(u32, u32)> {
    let s = s.trim().trim_start_matches('v');
    let (a, b) = s.split_once('.')?;
    let b: String = b.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn version_of(path: &Path) -> Option<String> {
    let out = Command::new(path).arg("--version").output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The compiler identity for the cache key: `gcc --version` and `ld --version` first lines.
pub fn compiler_identity(cc: &str) -> Result<String, KbuildError> {
    let first = |cmd: &str| -> Result<String, KbuildError> {
        let out = run(Command::new(cmd).arg("--version"))?;
        Ok(out.lines().next().unwrap_or("").trim().to_string())
    };
    Ok(format!("{}; {}", first(cc)?, first("ld")?))
}

/// `ccache` if it is on `PATH`.
pub fn ccache() -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join("ccache")).find(|p| p.is_file())
}

/// Finds or fetches a pahole >= [`MIN_PAHOLE`].
pub fn pahole(cache_root: &Path, refresh: bool, log: &mut dyn FnMut(String)) -> Result<Tool, KbuildError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    for var in ["LOCKSTEP_PAHOLE", "PAHOLE"] {
        if let Some(p) = std::env::var_os(var) {
            let p = PathBuf::from(p);
            let v = version_of(&p)
                .ok_or_else(|| KbuildError::BadRequest(format!("${var}={} does not run", p.display())))?;
            check_version(&v, &p)?;
            return Ok(Tool { path: p, version: v });
        }
    }
    if let Some(p) = std::env::var_os("PATH").and_then(|p| p.to_str().map(|s| s.to_string())) {
        candidates.extend(p.split(':').map(|d| Path::new(d).join("pahole")));
    }
    let private = cache_root.join("tools/pahole");
    if !refresh {
        let mut cached: Vec<PathBuf> = fs::read_dir(&private)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join(".ready").exists())
            .collect();
        cached.sort_by(|a, b| {
            version::compare(
                &b.file_name().unwrap().to_string_lossy(),
                &a.file_name().unwrap().to_string_lossy(),
            )
        });
        candidates.extend(cached.into_iter().map(|d| d.join("bin/pahole")));
    }
    for c in candidates {
        if !c.is_file() {
            continue;
        }
        if let Some(v) = version_of(&c) {
            if parse_pahole_version(&v).is_some_and(|x| x >= MIN_PAHOLE) {
                return Ok(Tool { path: c, version: v });
            }
        }
    }
    fetch_pahole(cache_root, log)
}

fn check_version(v: &str, p: &Path) -> Result<(), KbuildError> {
    match parse_pahole_version(v) {
        Some(x) if x >= MIN_PAHOLE => Ok(()),
        _ => Err(KbuildError::BadRequest(format!(
            "{} is pahole {v}; lockstep needs >= {}.{}",
            p.display(),
            MIN_PAHOLE.0,
            MIN_PAHOLE.1
        ))),
    }
}

/// One stanza of `apt-cache show` with its dependencies (first alternative of each, no versions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DepInfo {
    pub package: String,
    pub version: String,
    pub depends: Vec<String>,
    /// SHA256 of the .deb from the package index.
    pub sha256: Option<String>,
}

/// Parses `Package`, `Version`, `Depends` and `Pre-Depends` of `apt-cache show` output.
pub fn parse_depends(show: &str) -> Vec<DepInfo> {
    let mut out = Vec::new();
    for stanza in show.split("\n\n") {
        let (mut package, mut ver, mut deps, mut sha256) = (None, None, Vec::new(), None);
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                package = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                ver = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("SHA256: ") {
                sha256 = Some(v.trim().to_string());
            } else if let Some(v) =
                line.strip_prefix("Depends: ").or_else(|| line.strip_prefix("Pre-Depends: "))
            {
                for d in v.split(',') {
                    let first = d.split('|').next().unwrap_or("").trim();
                    let name = first.split([' ', '(', ':']).next().unwrap_or("").trim();
                    if !name.is_empty() {
                        deps.push(name.to_string());
                    }
                }
            }
        }
        if let (Some(package), Some(version)) = (package, ver) {
            out.push(DepInfo { package, version, depends: deps, sha256 });
        }
    }
    out
}

/// The dependency closure of `root` (newest version of each package), sorted by name.
/// Packages not in `infos` are returned in the error.
pub fn closure(infos: &[DepInfo], root: &str) -> Result<Vec<DepInfo>, Vec<String>> {
    let mut newest: BTreeMap<&str, &DepInfo> = BTreeMap::new();
    for i in infos {
        match newest.get(i.package.as_str()) {
            Some(cur) if version::compare(&cur.version, &i.version) != std::cmp::Ordering::Less => {}
            _ => {
                newest.insert(&i.package, i);
            }
        }
    }
    let mut seen = BTreeSet::new();
    let mut missing = Vec::new();
    let mut stack = vec![root.to_string()];
    let mut out = Vec::new();
    while let Some(p) = stack.pop() {
        if !seen.insert(p.clone()) {
            continue;
        }
        match newest.get(p.as_str()) {
            Some(i) => {
                out.push((*i).clone());
                stack.extend(i.depends.iter().cloned());
            }
            None => missing.push(p),
        }
    }
    if !missing.is_empty() {
        missing.sort();
        return Err(missing);
    }
    out.sort_by(|a, b| a.package.cmp(&b.package));
    Ok(out)
}

/// Fetches pahole and its library closure from [`PAHOLE_SUITE`] and writes the wrapper.
fn fetch_pahole(cache_root: &Path, log: &mut dyn FnMut(String)) -> Result<Tool, KbuildError> {
    let sources =
        fs::read_to_string(SYSTEM_SOURCES).map_err(|e| KbuildError::Io(SYSTEM_SOURCES.into(), e))?;
    let mirror = names::mirror_from_sources(&sources)
        .ok_or_else(|| KbuildError::BadRequest(format!("no mirror URI in {SYSTEM_SOURCES}")))?;
    let apt = PrivateApt::new(cache_root, PAHOLE_SUITE);
    log(format!("fetching pahole from {PAHOLE_SUITE} (private apt)"));
    apt.ensure_updated(&mirror, false)?;
    // Walk the dependency graph level by level with `apt-cache show`.
    let mut infos: Vec<DepInfo> = Vec::new();
    let mut asked: BTreeSet<String> = BTreeSet::new();
    let mut want: Vec<String> = vec!["pahole".into()];
    while !want.is_empty() {
        want.retain(|p| asked.insert(p.clone()));
        if want.is_empty() {
            break;
        }
        let show = apt.show(&want).unwrap_or_default();
        let got = parse_depends(&show);
        want = got.iter().flat_map(|i| i.depends.iter().cloned()).filter(|d| !asked.contains(d)).collect();
        want.sort();
        want.dedup();
        infos.extend(got);
    }
    let pkgs = closure(&infos, "pahole").map_err(|m| {
        KbuildError::BadRequest(format!("pahole dependencies not found in {PAHOLE_SUITE}: {}", m.join(", ")))
    })?;
    let pahole_version =
        pkgs.iter().find(|p| p.package == "pahole").map(|p| p.version.clone()).unwrap_or_default();
    let dir = cache_root.join("tools/pahole").join(&pahole_version);
    let sys = dir.join("sys");
    let _ = fs::remove_dir_all(&dir);
    let debs = dir.join("debs");
    for p in &pkgs {
        log(format!("  {} {}", p.package, p.version));
        let deb_path = apt.download(&p.package, &p.version, p.sha256.as_deref(), &debs)?;
        deb::unpack_deb(&deb_path, &sys, &mut |_| {}).map_err(|e| KbuildError::Io(deb_path.clone(), e))?;
    }
    let _ = fs::remove_dir_all(&debs);
    let ldso = [
        "usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
        "usr/lib64/ld-linux-x86-64.so.2",
    ]
    .iter()
    .map(|r| sys.join(r))
    .find(|p| p.exists())
    .ok_or_else(|| KbuildError::BadRequest(format!("no ld-linux-x86-64.so.2 in {}", sys.display())))?;
    let libs = format!(
        "{}:{}",
        sys.join("usr/lib/x86_64-linux-gnu").display(),
        sys.join("lib/x86_64-linux-gnu").display()
    );
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).map_err(|e| KbuildError::Io(bin.clone(), e))?;
    let wrapper = bin.join("pahole");
    let script = format!(
        "#!/bin/sh\n# pahole {pahole_version} from {PAHOLE_SUITE}, run with that suite's glibc (written by lockstep).\nexec \"{}\" --library-path \"{libs}\" --argv0 \"$0\" \"{}\" \"$@\"\n",
        ldso.display(),
        sys.join("usr/bin/pahole").display()
    );
    fs::write(&wrapper, script).map_err(|e| KbuildError::Io(wrapper.clone(), e))?;
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))
        .map_err(|e| KbuildError::Io(wrapper.clone(), e))?;
    let v = version_of(&wrapper)
        .ok_or_else(|| KbuildError::BadRequest(format!("{} does not run", wrapper.display())))?;
    check_version(&v, &wrapper)?;
    fs::write(dir.join(".ready"), &v).map_err(|e| KbuildError::Io(dir.clone(), e))?;
    log(format!("pahole {v} ready: {}", wrapper.display()));
    Ok(Tool { path: wrapper, version: v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pahole_versions() {
        assert_eq!(parse_pahole_version("v1.30"), Some((1, 30)));
        assert_eq!(parse_pahole_version("v1.24\n"), Some((1, 24)));
        assert_eq!(parse_pahole_version("1.32-rc1"), Some((1, 32)));
        assert!(parse_pahole_version("v1.24").unwrap() < MIN_PAHOLE);
        assert!(parse_pahole_version("v1.100").unwrap() > MIN_PAHOLE);
        assert_eq!(parse_pahole_version("pahole"), None);
    }

    const SHOW: &str = "Package: pahole\nVersion: 1.30-1\nDepends: libbpf1 (>= 1:1.5.0), libc6 (>= 2.38), libdw1t64 (>= 0.157) | libdw1, zlib1g:any\n\n\
        Package: libdw1t64\nVersion: 0.192-4\nDepends: libelf1t64 (= 0.192-4), libc6\n\n\
        Package: libdw1t64\nVersion: 0.196-1~bpo13+2\nDepends: libelf1t64 (= 0.196-1~bpo13+2), libc6, libzstd1\n\n\
        Package: libbpf1\nVersion: 1:1.5.0-3\nDepends: libc6 (>= 2.38), libelf1t64\n\n\
        Package: libelf1t64\nVersion: 0.192-4\nDepends: libc6\n\n\
        Package: libc6\nVersion: 2.41-12\nPre-Depends: libgcc-s1\n\n\
        Package: libgcc-s1\nVersion: 14.2.0-19\nDepends: libc6 (>= 2.35)\n\n\
        Package: zlib1g\nVersion: 1:1.3\nDepends: libc6\n";

    #[test]
    fn dependency_closure_takes_first_alternatives_and_newest() {
        let infos = parse_depends(SHOW);
        assert_eq!(infos[0].depends, ["libbpf1", "libc6", "libdw1t64", "zlib1g"]);
        let c = closure(&infos, "pahole").unwrap_err();
        // The newest libdw1t64 pulls in libzstd1, which this index lacks.
        assert_eq!(c, ["libzstd1"]);
        let mut with_zstd = infos.clone();
        with_zstd.push(DepInfo {
            package: "libzstd1".into(),
            version: "1.5.7".into(),
            depends: vec!["libc6".into()],
            sha256: None,
        });
        let c = closure(&with_zstd, "pahole").unwrap();
        let names: Vec<_> = c.iter().map(|i| (i.package.as_str(), i.version.as_str())).collect();
        assert_eq!(
            names,
            [
                ("libbpf1", "1:1.5.0-3"),
                ("libc6", "2.41-12"),
                ("libdw1t64", "0.196-1~bpo13+2"),
                ("libelf1t64", "0.192-4"),
                ("libgcc-s1", "14.2.0-19"),
                ("libzstd1", "1.5.7"),
                ("pahole", "1.30-1"),
                ("zlib1g", "1:1.3"),
            ]
        );
    }
}
