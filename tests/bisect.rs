//! `lockstep bisect` for real: a two-commit kernel tree (`scripts/make-bisect-tree.sh`: Debian's
//! linux-source-7.2, then the KF_SPIN_LOCK RFC as a commit), each end built with `lockstep kernel
//! build`'s local-tree path (ccache), booted through `--kernel PATH` with the test module built
//! against it, and `call_module_safe_syscall` (rejected on 7.2, accepted with the RFC: the
//! validate-series test names it an expected flip) judged. The bisection must name the RFC
//! commit; a second run must reuse the log and build nothing.
//!
//! Ignored unless built with `LOCKSTEP_VM_TESTS=1` and `LOCKSTEP_BISECT_TESTS=1`: the first run
//! builds two kernels from a new work tree (about 20-40 min of two cores, see docs/bisect.md).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cache() -> PathBuf {
    std::env::var_os("LOCKSTEP_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/lockstep"))
}

fn git(tree: &Path, args: &[&str]) -> String {
    let o = Command::new("git").arg("-C").arg(tree).args(args).output().unwrap();
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn bisect(tree: &Path, log: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["bisect", "--tree"])
        .arg(tree)
        .args(["--good", "HEAD~1", "--bad", "HEAD", "--log"])
        .arg(log)
        .arg("call_module_safe_syscall")
        .output()
        .expect("run lockstep");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
#[cfg_attr(
    not(all(lockstep_vm_tests, lockstep_bisect_tests)),
    ignore = "set LOCKSTEP_VM_TESTS=1 LOCKSTEP_BISECT_TESTS=1"
)]
fn bisect_between_7_2_and_the_rfc_names_the_rfc_commit() {
    let tree = cache().join("bisect/linux-7.2");
    let made =
        Command::new("bash").arg(root().join("scripts/make-bisect-tree.sh")).arg(&tree).status().unwrap();
    assert!(made.success());
    // The tree's branch tip is the RFC commit.
    let tip = git(&tree, &["rev-parse", "master"]);
    git(&tree, &["checkout", "-q", "master"]);
    assert_eq!(
        git(&tree, &["log", "-1", "--format=%s", &tip]),
        "bpf: Add KF_SPIN_LOCK flag for kfuncs under bpf_spin_lock"
    );
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("bisect.log");

    let (code, stdout, stderr) = bisect(&tree, &log);
    eprintln!("{stderr}");
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(
        stdout.lines().next().unwrap(),
        format!("first bad commit: {tip} bpf: Add KF_SPIN_LOCK flag for kfuncs under bpf_spin_lock")
    );
    assert!(stdout.contains("call_module_safe_syscall: accept where good is reject"), "{stdout}");
    // Both ends ran: one log line each, with the verdicts the kernels gave.
    let lines: Vec<serde_json::Value> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["verdicts"]["call_module_safe_syscall"], "reject");
    assert_eq!(lines[1]["commit"], tip.as_str());
    assert_eq!(lines[1]["verdicts"]["call_module_safe_syscall"], "accept");
    // git bisect was reset: back on the branch.
    assert_eq!(git(&tree, &["symbolic-ref", "HEAD"]), "refs/heads/master");

    // A re-run decides from the log alone: no build, no guest.
    let (code, stdout2, stderr) = bisect(&tree, &log);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout2, stdout);
    assert!(stderr.contains("2 recorded step(s) reused") && !stderr.contains("testing "), "{stderr}");
    assert_eq!(std::fs::read_to_string(&log).unwrap().lines().count(), 2);
}
