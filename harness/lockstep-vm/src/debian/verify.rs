//! Verifying cached artefacts before they are trusted: each downloaded .deb against the SHA256 of
//! its entry in the package index apt read (apt verified the index's signature), and each cache
//! entry against the manifest (SHA256 of the files lockstep uses) written beside it at fetch time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A file whose content is not what was recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: sha256 {} (recorded: {expected})", path.display(), actual.as_deref().unwrap_or("missing"))]
pub struct Mismatch {
    pub path: PathBuf,
    /// The recorded SHA256 (hex).
    pub expected: String,
    /// The file's SHA256, `None` when it cannot be read.
    pub actual: Option<String>,
}

/// The SHA256 of a file's content, hex (read every time: a cache entry's integrity check never
/// takes a remembered digest).
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    Ok(crate::digest::hex(&crate::digest::hash_file(path)?))
}

/// Checks `path` against `expected` (hex, any case).
pub fn check_file(path: &Path, expected: &str) -> Result<(), Mismatch> {
    let actual = sha256_file(path).ok();
    if actual.as_deref().is_some_and(|a| a.eq_ignore_ascii_case(expected)) {
        Ok(())
    } else {
        Err(Mismatch { path: path.to_path_buf(), expected: expected.to_string(), actual })
    }
}

/// The manifest of `files` (paths relative to `dir`): relative path -> SHA256.
pub fn manifest_of(dir: &Path, files: &[&str]) -> std::io::Result<BTreeMap<String, String>> {
    files.iter().map(|f| Ok((f.to_string(), sha256_file(&dir.join(f))?))).collect()
}

/// Checks every file of `manifest` under `dir`; an empty manifest (an entry written before
/// manifests existed) verifies nothing and is the caller's to judge.
pub fn check_manifest(dir: &Path, manifest: &BTreeMap<String, String>) -> Result<(), Vec<Mismatch>> {
    let bad: Vec<Mismatch> =
        manifest.iter().filter_map(|(f, sum)| check_file(&dir.join(f), sum).err()).collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `printf abc | sha256sum`
    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn a_file_matches_its_recorded_hash_or_is_a_mismatch() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("x.deb");
        std::fs::write(&p, "abc").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), ABC);
        assert!(check_file(&p, &ABC.to_uppercase()).is_ok());
        std::fs::write(&p, "abd").unwrap();
        let e = check_file(&p, ABC).unwrap_err();
        assert_eq!(e.expected, ABC);
        assert!(e.actual.is_some_and(|a| a != ABC));
        let gone = check_file(&t.path().join("none"), ABC).unwrap_err();
        assert_eq!(gone.actual, None);
        assert!(gone.to_string().contains("sha256 missing"), "{gone}");
    }

    #[test]
    fn a_manifest_catches_a_changed_or_missing_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("vmlinuz"), "kernel").unwrap();
        std::fs::write(t.path().join("config"), "CONFIG_BPF=y").unwrap();
        let m = manifest_of(t.path(), &["vmlinuz", "config"]).unwrap();
        assert_eq!(m.len(), 2);
        assert!(check_manifest(t.path(), &m).is_ok());
        std::fs::write(t.path().join("vmlinuz"), "kernel, changed").unwrap();
        std::fs::remove_file(t.path().join("config")).unwrap();
        let bad = check_manifest(t.path(), &m).unwrap_err();
        let names: Vec<_> = bad.iter().map(|b| b.path.file_name().unwrap().to_owned()).collect();
        assert_eq!(names, ["config", "vmlinuz"]);
        assert!(check_manifest(t.path(), &BTreeMap::new()).is_ok());
    }
}
