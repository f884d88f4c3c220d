//! A private apt configuration per suite under `<cache>/apt/<suite>/`: its own `sources.list`,
//! state, cache and status file. The system sources are never read or changed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{names, verify, FetchError};

/// The keyring shipped by Debian 12's `debian-archive-keyring`.
pub const SYSTEM_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";
/// Where the mirror URI is read from.
pub const SYSTEM_SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";
/// The suite a newer `debian-archive-keyring` is taken from when the system keyring is too old.
pub const KEYRING_SUITE: &str = "trixie";

/// One private apt tree.
pub struct PrivateApt {
    pub dir: PathBuf,
    pub suite: String,
}

impl PrivateApt {
    /// The tree for `suite` under `<cache>/apt/`.
    pub fn new(cache_root: &Path, suite: &str) -> Self {
        PrivateApt { dir: cache_root.join("apt").join(suite), suite: suite.to_string() }
    }

    fn keyring(&self) -> PathBuf {
        let private = self.dir.join("keyring.gpg");
        if private.exists() {
            private
        } else {
            PathBuf::from(SYSTEM_KEYRING)
        }
    }

    /// The `-o` options that make apt use only this tree.
    pub fn options(&self) -> Vec<String> {
        let d = &self.dir;
        vec![
            format!("Dir::Etc::SourceList={}", d.join("sources.list").display()),
            "Dir::Etc::SourceParts=/dev/null".into(),
            format!("Dir::State={}", d.join("state").display()),
            format!("Dir::State::status={}", d.join("state/status").display()),
            format!("Dir::Cache={}", d.join("cache").display()),
            "Acquire::Languages=none".into(),
            "APT::Get::List-Cleanup=false".into(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_string(), o])
        .collect()
    }

    fn write_sources(&self, mirror: &str) -> Result<(), FetchError> {
        for sub in ["state/lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(self.dir.join(sub)).map_err(|e| FetchError::io(&self.dir, e))?;
        }
        let status = self.dir.join("state/status");
        if !status.exists() {
            fs::write(&status, "").map_err(|e| FetchError::io(&status, e))?;
        }
        let text = names::sources_list(mirror, &self.suite, &self.keyring().display().to_string());
        let path = self.dir.join("sources.list");
        fs::write(&path, text).map_err(|e| FetchError::io(&path, e))
    }

    fn has_lists(&self) -> bool {
        fs::read_dir(self.dir.join("state/lists"))
            .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with("InRelease")))
            .unwrap_or(false)
    }

    /// Runs `apt-get update` unless lists exist (or `force`); fetches a newer keyring when the
    /// system one cannot verify the suite (never falls back to an unverified repository).
    pub fn ensure_updated(&self, mirror: &str, force: bool) -> Result<(), FetchError> {
        self.write_sources(mirror)?;
        if self.has_lists() && !force {
            return Ok(());
        }
        let out = self.update()?;
        if !names::update_has_key_problem(&out) {
            return Ok(());
        }
        if self.dir.join("keyring.gpg").exists() {
            return Err(FetchError::Unverified { suite: self.suite.clone(), output: out });
        }
        tracing::warn!(suite = %self.suite, "system keyring cannot verify the suite; fetching a newer debian-archive-keyring");
        self.bootstrap_keyring(mirror)?;
        self.write_sources(mirror)?;
        let out = self.update()?;
        if names::update_has_key_problem(&out) {
            return Err(FetchError::Unverified { suite: self.suite.clone(), output: out });
        }
        Ok(())
    }

    /// `apt-get update`: its output; a failure that is not a key problem is an error.
    fn update(&self) -> Result<String, FetchError> {
        match run(Command::new("apt-get").arg("-q").args(self.options()).arg("update")) {
            Ok(out) => Ok(out),
            Err(FetchError::Command { output, .. }) if names::update_has_key_problem(&output) => Ok(output),
            Err(e) => Err(e),
        }
    }

    /// Downloads `debian-archive-keyring` from [`KEYRING_SUITE`] (verified with the system keyring)
    /// and installs its keyring as this tree's `keyring.gpg`.
    fn bootstrap_keyring(&self, mirror: &str) -> Result<(), FetchError> {
        let root = self.dir.parent().and_then(Path::parent).unwrap_or(&self.dir);
        let boot = PrivateApt::new(root, KEYRING_SUITE);
        boot.write_sources(mirror)?;
        let out = boot.update()?;
        if names::update_has_key_problem(&out) {
            return Err(FetchError::Unverified { suite: KEYRING_SUITE.into(), output: out });
        }
        let show = boot.show(&["debian-archive-keyring".to_string()])?;
        let info = names::newest(&names::parse_show(&show), "debian-archive-keyring").ok_or_else(|| {
            FetchError::NotFound { what: "debian-archive-keyring".into(), suite: KEYRING_SUITE.into() }
        })?;
        let debs = boot.dir.join("debs");
        let deb = boot.download(&info.package, &info.version, info.sha256.as_deref(), &debs)?;
        let x = boot.dir.join("keyring-x");
        let _ = fs::remove_dir_all(&x);
        super::deb::unpack_deb(&deb, &x, &mut |_| {}).map_err(|e| FetchError::io(&deb, e))?;
        let src = ["gpg", "pgp"]
            .iter()
            .map(|ext| x.join(format!("usr/share/keyrings/debian-archive-keyring.{ext}")))
            .find(|p| p.exists())
            .ok_or_else(|| FetchError::NotFound {
                what: "keyring file in debian-archive-keyring".into(),
                suite: KEYRING_SUITE.into(),
            })?;
        let dst = self.dir.join("keyring.gpg");
        fs::copy(&src, &dst).map_err(|e| FetchError::io(&dst, e))?;
        Ok(())
    }

    /// `apt-cache pkgnames <prefix>`.
    pub fn pkgnames(&self, prefix: &str) -> Result<String, FetchError> {
        run(Command::new("apt-cache").args(self.options()).args(["pkgnames", prefix]))
    }

    /// `apt-cache show <packages>` (all versions).
    pub fn show(&self, packages: &[String]) -> Result<String, FetchError> {
        run(Command::new("apt-cache").args(self.options()).arg("show").args(packages))
    }

    /// `apt-get download package=version` into `dir`; returns the .deb path. With `sha256` (from
    /// the package index), a .deb already in `dir` is used only if it matches (else it is
    /// downloaded again, with a warning), and a downloaded one must match.
    pub fn download(
        &self,
        package: &str,
        version: &str,
        sha256: Option<&str>,
        dir: &Path,
    ) -> Result<PathBuf, FetchError> {
        fs::create_dir_all(dir).map_err(|e| FetchError::io(dir, e))?;
        let path = dir.join(names::deb_file_name(package, version, "amd64"));
        let all = dir.join(names::deb_file_name(package, version, "all"));
        for p in [&path, &all] {
            if p.exists() {
                match sha256.map(|s| verify::check_file(p, s)) {
                    None | Some(Ok(())) => return Ok(p.clone()),
                    Some(Err(m)) => {
                        tracing::warn!(
                            "cached .deb does not match the package index, fetching it again: {m}"
                        );
                        fs::remove_file(p).map_err(|e| FetchError::io(p, e))?;
                    }
                }
            }
        }
        run(Command::new("apt-get")
            .current_dir(dir)
            .arg("-q")
            .args(self.options())
            .arg("download")
            .arg(format!("{package}={version}")))?;
        let got = [path, all].into_iter().find(|p| p.exists()).ok_or_else(|| FetchError::NotFound {
            what: format!("{package}={version} (downloaded file)"),
            suite: self.suite.clone(),
        })?;
        if let Some(s) = sha256 {
            verify::check_file(&got, s).map_err(FetchError::Mismatch)?;
        }
        Ok(got)
    }
}

/// Runs a command; its stdout and stderr together, or an error with both.
fn run(cmd: &mut Command) -> Result<String, FetchError> {
    let shown = format!("{cmd:?}");
    let out =
        cmd.output().map_err(|e| FetchError::Command { command: shown.clone(), output: e.to_string() })?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(FetchError::Command { command: shown, output: text });
    }
    Ok(text)
}
