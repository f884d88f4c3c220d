//! A kernel that fails to prepare is in every shard's JSON (one `not_run` / `infra` row per case
//! of the shard), so `lockstep report merge` of the shards gives the unsharded run's rows and exit
//! code (3). The kernel is a real `--kernel PATH` tree whose `.config` cannot be read as text (an
//! I/O failure while resolving it, not bad input); no guest boots, so no VM is needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs lockstep; its exit code and stderr.
fn lockstep(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep")).args(args).output().expect("run lockstep");
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn rows(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn shards_of_a_run_with_an_unprepared_kernel_merge_to_the_unsharded_report() {
    let d = tempfile::tempdir().unwrap();
    // A kernel tree whose parts are all there, but whose .config is not text.
    let tree = d.path().join("linux");
    std::fs::create_dir_all(tree.join("arch/x86/boot")).unwrap();
    std::fs::write(tree.join("arch/x86/boot/bzImage"), b"not a kernel").unwrap();
    std::fs::write(tree.join("vmlinux"), b"\x7fELF").unwrap();
    std::fs::write(tree.join("Makefile"), "VERSION = 7\n").unwrap();
    std::fs::write(tree.join(".config"), b"CONFIG_BPF=y\n\xff\xfe\n").unwrap();
    let kernel = tree.display().to_string();
    let corpus = root().join("tests/corpus/gen-pairing.toml").display().to_string();
    let p = |n: &str| d.path().join(n).display().to_string();
    let run = |extra: &[&str], json: &str| {
        let mut args = vec!["run", "--kernel", &kernel, "--profile", "7.2", "--json", json];
        args.extend_from_slice(extra);
        args.push(&corpus);
        lockstep(&args)
    };
    let (all_code, all_err) = run(&[], &p("all.jsonl"));
    assert_eq!(all_code, Some(3), "{all_err}");
    assert!(all_err.contains(".config"), "the failure names the file: {all_err}");
    let (c1, e1) = run(&["--shard", "1/2"], &p("s1.jsonl"));
    let (c2, e2) = run(&["--shard", "2/2"], &p("s2.jsonl"));
    assert_eq!((c1, c2), (Some(3), Some(3)), "{e1}\n{e2}");
    let (merge_code, merge_err) =
        lockstep(&["report", "merge", &p("s2.jsonl"), &p("s1.jsonl"), "--json", &p("merged.jsonl")]);
    assert_eq!(merge_code, all_code, "{merge_err}");

    let (all, s1, s2) =
        (rows(Path::new(&p("all.jsonl"))), rows(Path::new(&p("s1.jsonl"))), rows(Path::new(&p("s2.jsonl"))));
    let (check_code, _) = lockstep(&["check", "-p", "7.2", &corpus]);
    assert!(matches!(check_code, Some(0 | 1)));
    let cases = {
        let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .args(["check", "-p", "7.2", "--json", &corpus])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).lines().count()
    };
    assert_eq!(all.len(), cases, "one row per case for the unprepared kernel");
    assert!(!s1.is_empty() && !s2.is_empty() && s1.len() + s2.len() == all.len());
    assert!(all.iter().all(|r| r["outcome"] == "not_run" && r["agreement"] == "infra"), "{all:?}");
    assert!(all[0]["note"].as_str().unwrap().contains("could not be prepared"), "{:?}", all[0]);
    assert_eq!(rows(Path::new(&p("merged.jsonl"))), all, "merged rows equal the unsharded run's");
    // The counts printed at the end are the same too.
    let summary = |s: &str| s.lines().filter(|l| l.contains("infra")).map(str::to_string).collect::<Vec<_>>();
    let merged_summary = summary(&merge_err);
    assert!(!merged_summary.is_empty(), "{merge_err}");
    assert!(merged_summary.iter().all(|l| all_err.contains(l.as_str())), "{merge_err}\nvs\n{all_err}");
}
