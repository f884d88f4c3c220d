//! `lockstep profiles derive` on real kernel sources: Debian's linux-source-7.2, the same with the
//! KF_SPIN_LOCK RFC (tests/series/kf-spin-lock-rfc-v2) and linux-source-7.3, as extracted by
//! `scripts/fetch-kernel-source.sh` into `~/.cache/lockstep/src/<version>/`. The derived lock rule
//! (kfunc rule, flag, kfuncs and helpers allowed under a lock) equals the hand-written profile's,
//! and the model gives the same verdict on every corpus case under both.
//!
//! Ignored unless built with `LOCKSTEP_VM_TESTS=1` (the first run downloads the sources).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use lockstep_core::case::Case;
use lockstep_core::profile::KernelProfile;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus() -> Vec<Case> {
    let module = lockstep_core::module_src::bundled();
    let mut dirs = vec![root().join("tests/corpus")];
    let mut files = Vec::new();
    while let Some(d) = dirs.pop() {
        for p in std::fs::read_dir(d).unwrap().flatten().map(|e| e.path()) {
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "toml") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            let src = std::fs::read_to_string(f).unwrap();
            lockstep_core::corpus::load_text(&f.display().to_string(), &src, &module).unwrap()
        })
        .collect()
}

/// The extracted source of `version`, fetched when missing.
fn source(version: &str) -> PathBuf {
    let cache = std::env::var_os("LOCKSTEP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/lockstep"));
    let dir = cache.join("src").join(version);
    if !dir.join("PACKAGE_VERSION").is_file() {
        let st = Command::new("bash")
            .arg(root().join("scripts/fetch-kernel-source.sh"))
            .arg(version)
            .env("SERIES_DIR", root().join("tests/series/kf-spin-lock-rfc-v2"))
            .status()
            .expect("fetch-kernel-source.sh");
        assert!(st.success(), "fetching the {version} source");
    }
    dir
}

fn derive(version: &str) -> KernelProfile {
    let out = tempfile::NamedTempFile::new().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["profiles", "derive"])
        .arg(source(version))
        .args(["--base", version, "--out"])
        .arg(out.path())
        .output()
        .expect("lockstep profiles derive");
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    KernelProfile::from_toml("derived", &std::fs::read_to_string(out.path()).unwrap()).unwrap()
}

fn set(v: &[String]) -> BTreeSet<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn derived_profiles_match_the_hand_written_ones() {
    let cases = corpus();
    let module = lockstep_core::module_src::bundled();
    let verdicts = |p: &KernelProfile| -> Vec<_> {
        cases.iter().map(|c| lockstep_core::model::check(c, p, &module)).collect()
    };
    let mut derived = Vec::new();
    for version in ["7.2", "7.2+kf-spin-lock", "7.3"] {
        let bundled = KernelProfile::by_name(version).unwrap();
        let d = derive(version);
        assert_eq!(d.kfunc_rule, bundled.kfunc_rule, "{version}: kfunc rule");
        assert_eq!(d.kfunc_flag, bundled.kfunc_flag, "{version}: flag value");
        assert_eq!(
            set(&d.kfuncs_under_lock),
            set(&bundled.kfuncs_under_lock),
            "{version}: kfuncs under a lock"
        );
        assert_eq!(
            set(&d.helpers_under_lock),
            set(&bundled.helpers_under_lock),
            "{version}: helpers under a lock"
        );
        let (vd, vb) = (verdicts(&d), verdicts(&bundled));
        for ((c, a), b) in cases.iter().zip(&vd).zip(&vb) {
            assert_eq!(a, b, "{version}: {} ({}:{})", c.name, c.file, c.line);
        }
        derived.push(vd);
    }
    // The comparison has teeth: the derived 7.2 and 7.2+kf-spin-lock rules judge the module's
    // lock-safe kfunc calls differently.
    let flips = derived[0].iter().zip(&derived[1]).filter(|(a, b)| a != b).count();
    assert!(flips >= 5, "the RFC's lock rule flips the lock-safe module kfunc calls ({flips} flips)");
}
