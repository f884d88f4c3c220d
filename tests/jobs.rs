//! `lockstep run --jobs N` on real kernels: debian:7.2 and debian:7.3 with a few cases (those of
//! gen-pairing and gen-calls), run with `--jobs 1` (one guest at a time), `--jobs 2` (both kernels at
//! once, the job done first joining debian:7.3's guest) and `--jobs 3` (the third job joins
//! debian:7.3's guest, which has a vCPU per job, from the start), give the same rows in
//! the same order (the JSON file rewritten in the run's order, JSON lines on stdout held back until
//! the rows before them came), the same JUnit and Markdown reports and the same exit code.
//!
//! Ignored unless built with `LOCKSTEP_VM_TESTS=1`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[path = "support/rows.rs"]
mod rows;
use rows::rows_without_timings as rows;

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn parallel_guests_give_the_serial_run_reports() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n).display().to_string();
    let corpus: Vec<String> = ["gen-pairing.toml", "gen-calls.toml"]
        .iter()
        .map(|f| root().join("tests/corpus").join(f).display().to_string())
        .collect();
    // (exit code, stdout, stderr) of `lockstep run` on both kernels with `extra`.
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .env("RUST_LOG", "warn,lockstep::run=debug")
            .args(["run", "--kernel", "debian:7.2", "--kernel", "debian:7.3"])
            .args(extra)
            .args(&corpus)
            .output()
            .expect("run lockstep");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(matches!(out.status.code(), Some(0 | 1)), "{extra:?} exited {:?}:\n{stderr}", out.status);
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    };
    let read = |n: &str| std::fs::read_to_string(p(n)).unwrap();

    let serial =
        run(&["--jobs", "1", "--json", &p("1.jsonl"), "--junit", &p("1.xml"), "--markdown", &p("1.md")]);
    let two =
        run(&["--jobs", "2", "--json", &p("2.jsonl"), "--junit", &p("2.xml"), "--markdown", &p("2.md")]);
    let consoles = p("consoles");
    let three = run(&["--jobs", "3", "--json", "-", "--console-dir", &consoles]);

    let one = rows(&read("1.jsonl"));
    let cases = corpus_cases(&corpus);
    assert_eq!(one.len(), 2 * cases, "one row per case and kernel");
    assert!(one[..cases].iter().all(|r| r["kernel"] == "debian:7.2"), "kernel order, then case order");
    assert!(one.iter().any(|r| r["agreement"] == "agree" && r["outcome"] == "ran"), "real verdicts");
    assert_eq!(rows(&read("2.jsonl")), one, "--jobs 2: the JSON file has the serial rows, in order");
    assert_eq!(rows(&three.1), one, "--jobs 3: the JSON lines on stdout come in the serial order");
    assert_eq!(read("2.xml"), read("1.xml"), "JUnit");
    assert_eq!(read("2.md"), read("1.md"), "Markdown");
    assert_eq!((two.0, three.0), (serial.0, serial.0), "exit codes");
    // --jobs 3: debian:7.3's guest (the last kernel to start, a vCPU per job) was joined by the
    // third job instead of a second guest starting. A job free later may start one more guest on
    // a kernel whose cases left outweigh two guest starts as measured (on a loaded machine): its
    // console is the kernel's next.
    assert!(three.2.contains("job joins the guest"), "{}", three.2);
    assert!(!serial.2.contains("job joins the guest"), "one job joins nothing");
    let mut logs: Vec<String> = std::fs::read_dir(&consoles)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    logs.sort();
    let first = ["console-debian-7.2.log", "console-debian-7.3.log"];
    let more = ["console-debian-7.2.2.log", "console-debian-7.3.2.log"];
    assert!(first.iter().all(|f| logs.iter().any(|l| l == f)), "{logs:?}");
    assert!(logs.iter().all(|l| first.contains(&l.as_str()) || more.contains(&l.as_str())), "{logs:?}");
}

/// How many cases the files hold (`lockstep check` under one profile: one line per case).
fn corpus_cases(files: &[String]) -> usize {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["check", "-p", "7.3", "--json"])
        .args(files)
        .output()
        .expect("lockstep check");
    String::from_utf8_lossy(&out.stdout).lines().count()
}
