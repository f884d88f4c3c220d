//! `lockstep run --shard K/N` and `lockstep report merge` on a real kernel: two shards of a small
//! corpus subset on debian:7.3, merged, give the rows (same cases, same kernel and model verdicts,
//! same agreement classes, same order) and the same Markdown report as one unsharded run.
//!
//! Ignored unless built with `LOCKSTEP_VM_TESTS=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `lockstep <args>`, asserting exit 0 or 1 (agreement or disagreement, not infrastructure).
fn lockstep(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep")).args(args).output().expect("run lockstep");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(matches!(out.status.code(), Some(0 | 1)), "lockstep {args:?} exited {:?}:\n{stderr}", out.status);
    stderr
}

#[path = "support/rows.rs"]
mod rows;

fn rows(path: &Path) -> Vec<Value> {
    rows::rows_without_timings(&std::fs::read_to_string(path).unwrap())
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn two_shards_merged_equal_the_unsharded_run() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n).display().to_string();
    let corpus: Vec<String> = ["gen-pairing.toml", "gen-calls.toml"]
        .iter()
        .map(|f| root().join("tests/corpus").join(f).display().to_string())
        .collect();
    let run = |extra: &[&str], json: &str, md: &str| {
        let mut args = vec!["run", "--kernel", "debian:7.3", "--json", json, "--markdown", md];
        args.extend_from_slice(extra);
        args.extend(corpus.iter().map(String::as_str));
        lockstep(&args)
    };
    run(&[], &p("all.jsonl"), &p("all.md"));
    run(&["--shard", "1/2"], &p("s1.jsonl"), &p("s1.md"));
    run(&["--shard", "2/2"], &p("s2.jsonl"), &p("s2.md"));
    lockstep(&[
        "report",
        "merge",
        &p("s2.jsonl"),
        &p("s1.jsonl"),
        "--json",
        &p("merged.jsonl"),
        "--markdown",
        &p("merged.md"),
    ]);

    let (all, s1, s2) =
        (rows(Path::new(&p("all.jsonl"))), rows(Path::new(&p("s1.jsonl"))), rows(Path::new(&p("s2.jsonl"))));
    let check = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["check", "-p", "7.3", "--json"])
        .args(&corpus)
        .output()
        .expect("lockstep check");
    let cases = String::from_utf8_lossy(&check.stdout).lines().count();
    assert_eq!(all.len(), cases, "one row per case on one kernel");
    assert!(!s1.is_empty() && !s2.is_empty(), "both shards have work: {} + {}", s1.len(), s2.len());
    assert_eq!(s1.len() + s2.len(), all.len(), "the shards are disjoint and cover the run");
    assert!(all.iter().any(|r| r["agreement"] == "agree"));
    let merged = rows(Path::new(&p("merged.jsonl")));
    assert_eq!(merged, all, "merged rows equal the unsharded run's");
    let md = |n: &str| std::fs::read_to_string(p(n)).unwrap();
    assert_eq!(md("merged.md"), md("all.md"), "the merged Markdown report equals the unsharded one");
}
