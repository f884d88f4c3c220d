//! The kernel tree's own `bpf_testmod.ko` in a guest: `lockstep run --kernel debian:7.3 --testmod`
//! builds it from Debian's linux-source-7.3 (cached), loads it beside lockstep's test module, and
//! runs `tests/corpus/testmod/kfunc_call.toml`, whose cases call its kfuncs
//! (`bpf_testmod_test_mod_kfunc`, `bpf_kfunc_trigger_ctx_check`, `bpf_kfunc_call_test4`).
//!
//! The kernel verdicts asserted here are the selftests' own: linux-source-7.3's
//! `tools/testing/selftests/bpf/prog_tests/kfunc_call.c` table (`TC_TEST` = loads, `TC_FAIL` =
//! fails with the message) for the programs of `progs/kfunc_call_test.c` / `kfunc_call_fail.c`
//! the cases are written after. The model cannot judge bpf_testmod's kfuncs on 7.3 (their flags
//! are not in its module description), so the corpus expects `unsupported` of it there.
//!
//! Ignored unless built with `LOCKSTEP_VM_TESTS=1` (first run: fetches linux-source-7.3, ~170 MB).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// (case, kernel verdict, message) from prog_tests/kfunc_call.c of linux-source-7.3.
const SELFTEST_EXPECTATIONS: [(&str, &str, Option<&str>); 3] = [
    // TC_TEST(kfunc_call_test_spin_lock_safe, 0)
    ("kfunc_call_test_spin_lock_safe", "accept", None),
    // TC_FAIL(kfunc_call_test_spin_lock_unsafe, 0, "function calls are not allowed while holding a lock")
    (
        "kfunc_call_test_spin_lock_unsafe",
        "reject",
        Some("function calls are not allowed while holding a lock"),
    ),
    // TC_TEST(kfunc_call_test4, -1234)
    ("kfunc_call_test4", "accept", None),
];

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn bpf_testmod_kfuncs_load_as_the_selftests_expect_on_debian_7_3() {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["run", "--kernel", "debian:7.3", "--testmod", "--json", "--accel", "auto"])
        .arg(root().join("tests/corpus/testmod/kfunc_call.toml"))
        .output()
        .expect("run lockstep");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        matches!(out.status.code(), Some(0) | Some(1)),
        "lockstep run exited {:?} (3: infrastructure, 4: crash)",
        out.status.code()
    );
    assert!(!stderr.contains("module bpf_testmod not loaded"), "bpf_testmod failed to load");
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect();
    assert_eq!(rows.len(), SELFTEST_EXPECTATIONS.len(), "one row per case");
    for (case, verdict, message) in SELFTEST_EXPECTATIONS {
        let row = rows.iter().find(|r| r["case"] == case).unwrap_or_else(|| panic!("no row for {case}"));
        // A kfunc that did not resolve (bpf_testmod not loaded) is a setup error: outcome not `ran`
        // or no kernel verdict.
        assert_eq!(row["outcome"], "ran", "{case}: {}", row["note"]);
        assert_eq!(row["kernel_verdict"], verdict, "{case}: {row}");
        if let Some(m) = message {
            assert_eq!(row["kernel_message"], m, "{case}: {row}");
        }
        assert_ne!(row["agreement"], "infra", "{case}: {}", row["note"]);
    }
}
