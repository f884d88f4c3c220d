//! `--kernel PATH` on a tree `lockstep kernel build` built gives the same kernel verdicts as
//! `--kernel build:<hash>` of that build, on the whole bundled corpus. The tree is a work tree's
//! `O=` directory under `~/.cache/lockstep/builds/work/*/obj`, matched to its build by an equal
//! `vmlinux` (the build's `tree/vmlinux` is a copy of it); the module is built against each.
//!
//! Ignored unless built with `LOCKSTEP_VM_TESTS=1`. Uses a cached build whose work tree was not
//! rebuilt since; with none, it first runs `lockstep kernel build --source debian-src:7.2`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn cache() -> PathBuf {
    std::env::var_os("LOCKSTEP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/lockstep"))
}

/// (the `O=` tree, `build:<hash12>`) of a build whose work tree still holds it.
fn built_tree() -> Option<(PathBuf, String)> {
    let builds = cache().join("builds");
    let same = |a: &Path, b: &Path| {
        let (Ok(ma), Ok(mb)) = (a.metadata(), b.metadata()) else { return false };
        ma.len() == mb.len() && std::fs::read(a).ok() == std::fs::read(b).ok()
    };
    let mut works: Vec<PathBuf> =
        std::fs::read_dir(builds.join("work")).ok()?.flatten().map(|e| e.path()).collect();
    works.sort();
    for work in works {
        let obj = work.join("obj");
        if !obj.join("vmlinux").is_file() {
            continue;
        }
        for b in std::fs::read_dir(&builds).ok()?.flatten() {
            let name = b.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && same(&obj.join("vmlinux"), &b.path().join("tree/vmlinux")) {
                return Some((obj, format!("build:{}", &name[..12])));
            }
        }
    }
    None
}

/// The exit code and rows of `lockstep run --kernel K` on the corpus, without what names the
/// kernel or times it. Exit 3 is allowed: the `bpf_testmod` cases cannot be set up on a built
/// kernel (no Debian linux-source to build it from), which both runs must show alike.
fn run(kernel: &str, json: &Path) -> (Option<i32>, Vec<Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["run", "--kernel", kernel, "--profile", "7.2", "--no-snapshot", "--json"])
        .arg(json)
        .output()
        .expect("run lockstep");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0 | 1 | 3)),
        "--kernel {kernel}: exit {:?}\n{stderr}",
        out.status
    );
    let rows = std::fs::read_to_string(json)
        .unwrap()
        .lines()
        .map(|l| {
            // Notes may name the kernel (`bpf_testmod is built for Debian kernels only, not K`).
            let mut v: Value = serde_json::from_str(&l.replace(kernel, "KERNEL")).unwrap();
            for k in ["kernel", "package_version", "verification_usec"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        })
        .collect();
    (out.status.code(), rows)
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn a_built_tree_by_path_gives_the_verdicts_of_its_build() {
    // On a fresh machine nothing is built yet: build Debian's 7.2 (the base kernel that
    // validate-series builds too, so the build is a cache hit there).
    if built_tree().is_none() {
        let st = Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .args(["kernel", "build", "--source", "debian-src:7.2"])
            .status()
            .expect("run lockstep kernel build");
        assert!(st.success(), "lockstep kernel build --source debian-src:7.2: {st}");
    }
    let (obj, build) = built_tree().expect(
        "no work tree under ~/.cache/lockstep/builds/work holds a cached build (after `lockstep kernel build --source debian-src:7.2`)",
    );
    eprintln!("{} is {build}", obj.display());
    let d = tempfile::tempdir().unwrap();
    let (path_code, by_path) = run(&obj.display().to_string(), &d.path().join("path.jsonl"));
    let (name_code, by_name) = run(&build, &d.path().join("build.jsonl"));
    assert_eq!(path_code, name_code, "exit codes");
    assert!(by_path.len() > 200, "the whole corpus: {} rows", by_path.len());
    assert!(
        by_path.iter().any(|r| r["kernel_verdict"] == "reject")
            && by_path.iter().any(|r| r["kernel_verdict"] == "accept")
    );
    let ran = by_path.iter().filter(|r| r["outcome"] == "ran").count();
    assert!(ran > 200, "{ran} cases ran");
    assert_eq!(by_path.len(), by_name.len());
    for (p, n) in by_path.iter().zip(&by_name) {
        assert_eq!(p, n, "{} differs between --kernel PATH and --kernel {build}", p["case"]);
    }
    eprintln!(
        "{} rows, {ran} ran: the same on --kernel {} and --kernel {build}",
        by_path.len(),
        obj.display()
    );
}
