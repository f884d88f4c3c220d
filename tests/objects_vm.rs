//! What test_loader.c checks beyond a verdict, on a real kernel: a clang-compiled object run with
//! `lockstep run --kernel debian:7.3` through the guest's libbpf loader.
//!
//! - `__retval(N)`: the program is run with `BPF_PROG_TEST_RUN` after its load; a program that
//!   returns another value is `not met` (the row says what it returned).
//! - `__msg` with a `{{regex}}` part is matched as test_loader.c matches it.
//! - A program without annotations takes its expectation from a `prog_tests.jsonl` sidecar
//!   beside the object (what `scripts/extract-prog-tests.py` writes), naming its source line.
//!
//! The expected kernel answers come from 7.3's verifier: `process_bpf_exit_full()` rejects an
//! exit with a held lock ("BPF_EXIT instruction in main prog cannot be used inside
//! bpf_spin_lock-ed region"), and a `tc` program's test run returns its r0.
//! Ignored unless built with `LOCKSTEP_VM_TESTS=1`; needs clang.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const SOURCE: &str = r#"
#include "lockstep.h"

struct val {
	int cnt;
	struct bpf_spin_lock lock;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, struct val);
} vals SEC(".maps");

#define __retval(v) __test_tag("test_retval=" #v)

SEC("tc")
__success __retval(7)
int returns_seven(struct __sk_buff *skb)
{
	return 7;
}

SEC("tc")
__success __retval(1)
int returns_two_not_one(struct __sk_buff *skb)
{
	return 2;
}

SEC("tc")
__failure __msg("BPF_EXIT instruction in {{(main|sub)}} prog cannot be used inside {{bpf_[a-z_]+}}-ed region")
int exit_locked_regex(struct __sk_buff *skb)
{
	int key = 0;
	struct val *v = bpf_map_lookup_elem(&vals, &key);

	if (!v)
		return 0;
	bpf_spin_lock(&v->lock);
	return 0;
}

SEC("tc")
int exit_locked_from_table(struct __sk_buff *skb)
{
	int key = 0;
	struct val *v = bpf_map_lookup_elem(&vals, &key);

	if (!v)
		return 0;
	bpf_spin_lock(&v->lock);
	return 0;
}

SEC("tc")
int no_expectation_anywhere(struct __sk_buff *skb)
{
	return 0;
}

char _license[] SEC("license") = "GPL";
"#;

const SIDECAR: &str = r#"{"object": "vm_expect.bpf.o", "program": "exit_locked_from_table", "verdict": "reject", "msgs": ["cannot be used inside bpf_spin_lock-ed region"], "retval": null, "source": "prog_tests/vm_expect.c:12", "how": "failure table t"}
"#;

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn retval_regex_and_table_expectations_on_debian_7_3() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("vm_expect.bpf.c");
    std::fs::write(&src, SOURCE).unwrap();
    let obj = dir.path().join("vm_expect.bpf.o");
    let cc = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-c"])
        .arg("-I")
        .arg(root().join("tests/c"))
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .output()
        .expect("clang (needed by this test)");
    assert!(cc.status.success(), "clang: {}", String::from_utf8_lossy(&cc.stderr));
    std::fs::write(dir.path().join("prog_tests.jsonl"), SIDECAR).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["run", "--kernel", "debian:7.3", "--no-testmod", "--json", "--accel", "auto"])
        .arg(&obj)
        .output()
        .expect("run lockstep");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    // returns_two_not_one misses its expectation: a disagreement, exit 1
    assert_eq!(out.status.code(), Some(1), "lockstep run exit code");
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect();
    let row =
        |case: &str| rows.iter().find(|r| r["case"] == case).unwrap_or_else(|| panic!("no row for {case}"));
    assert_eq!(rows.len(), 5, "one row per program");

    let r = row("returns_seven");
    assert_eq!(
        (r["kernel_verdict"].as_str(), r["retval"].as_str()),
        (Some("accept"), Some("met (7)")),
        "{r}"
    );
    assert_eq!(r["kernel_met"], "met", "{r}");

    let r = row("returns_two_not_one");
    assert_eq!(r["kernel_verdict"], "accept", "{r}");
    assert_eq!(r["retval"], "not met: returned 2, expected 1", "{r}");
    assert_eq!(r["kernel_met"], "not_met", "{r}");

    let r = row("exit_locked_regex");
    assert_eq!(
        (r["kernel_verdict"].as_str(), r["kernel_met"].as_str()),
        (Some("reject"), Some("met")),
        "{r}"
    );

    let r = row("exit_locked_from_table");
    assert_eq!(r["expected"]["source"], "prog_tests/vm_expect.c:12 (failure table t)", "{r}");
    assert_eq!(
        (r["kernel_verdict"].as_str(), r["kernel_met"].as_str()),
        (Some("reject"), Some("met")),
        "{r}"
    );

    let r = row("no_expectation_anywhere");
    assert!(r["expected"].is_null() && r["kernel_met"].is_null(), "{r}");
    assert_eq!(r["kernel_verdict"], "accept", "{r}");
}
