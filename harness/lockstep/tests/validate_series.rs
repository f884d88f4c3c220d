//! `lockstep validate-series` on real kernels: Debian's linux-source-7.2 built with and without
//! the seed series (tests/series/kf-spin-lock-rfc-v2, a copy of ../shared/series), booted in QEMU
//! guests with the test module, the corpus run on both and judged against the model.
//!
//! Ignored unless built with `LOCKSTEP_VM_TESTS=1`. The first run fetches the source and a
//! private pahole and builds the kernels (cold, 2 cores: about 10 minutes for the first kernel and
//! 5 for the second, which reuses the work tree); later runs are cache hits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use serde_json::Value;

/// One kernel build at a time (they share a work tree and two cores).
static SERIAL: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs validate-series on `series`: exit code, JSON report (if any), stderr.
fn validate(series: &str) -> (i32, Option<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args([
            "validate-series",
            "--base",
            "debian-src:7.2",
            "--profile",
            "7.2+kf-spin-lock",
            "--format",
            "json",
        ])
        .arg("--series")
        .arg(repo().join("tests/series").join(series))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    eprintln!("{stderr}");
    (out.status.code().unwrap(), serde_json::from_slice(&out.stdout).ok(), stderr)
}

fn cases_in(report: &Value, class: &str) -> Vec<String> {
    let mut v: Vec<String> = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["class"] == class)
        .map(|r| r["case"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

fn row<'a>(report: &'a Value, case: &str) -> &'a Value {
    report["rows"].as_array().unwrap().iter().find(|r| r["case"] == case).unwrap()
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn the_seed_series_flips_exactly_the_flagged_module_kfunc_cases() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (code, report, stderr) = validate("kf-spin-lock-rfc-v2");
    let r = report.unwrap_or_else(|| panic!("no report:\n{stderr}"));
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(
        r["series"]["patches"][0]["subject"],
        "[RFC v2 1/3] bpf: Add KF_SPIN_LOCK flag for kfuncs under bpf_spin_lock"
    );
    // 7.2 has no KF_SPIN_LOCK: the base module carries no lock-safe flag; the patched one does.
    assert_eq!(r["base"]["lock_safe_kfuncs"], serde_json::json!([]));
    let flagged: Vec<String> = serde_json::from_value(r["patched"]["lock_safe_kfuncs"].clone()).unwrap();
    assert!(
        flagged.contains(&"lockstep_safe".to_string()) && !flagged.contains(&"lockstep_unsafe".to_string()),
        "{flagged:?}"
    );
    // The model predicts these flips and both kernels show them.
    assert_eq!(
        cases_in(&r, "expected"),
        [
            "call_module_safe_acquire_release",
            "call_module_safe_ret_null",
            "call_module_safe_sched_cls",
            "call_module_safe_syscall",
            "call_module_xdp_only_safe_xdp"
        ]
    );
    for c in cases_in(&r, "expected") {
        assert_eq!(
            row(&r, &c)["kernel_base"]["message"],
            "function calls are not allowed while holding a lock",
            "{c}"
        );
    }
    // Every case whose verdict flips calls a flagged module kfunc under the lock (a flip the model
    // could not judge would be listed as unjudged, not hidden): nothing else changed.
    for c in cases_in(&r, "unjudged") {
        assert!(c.starts_with("call_module_safe_"), "{c}");
        assert_eq!(
            (
                row(&r, &c)["kernel_base"]["verdict"].as_str(),
                row(&r, &c)["kernel_patched"]["verdict"].as_str()
            ),
            (Some("reject"), Some("accept")),
            "{c}"
        );
    }
    for class in ["unexpected", "missing", "setup-changed", "no-result"] {
        assert_eq!(cases_in(&r, class), Vec::<String>::new(), "{class}");
    }
    // The unflagged kfunc stays rejected under the lock.
    assert_eq!(row(&r, "call_module_unsafe_sched_cls")["class"], "unchanged");
    assert_eq!(row(&r, "call_module_unsafe_sched_cls")["kernel_patched"]["verdict"], "reject");
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn a_hunk_that_does_not_apply_exits_2_naming_patch_and_hunk() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (code, _, stderr) = validate("broken-hunk");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("patch 0001-bpf-Add-KF_SPIN_LOCK-flag-for-kfuncs-under-bpf_spin_lock.patch"),
        "{stderr}"
    );
    assert!(stderr.contains("kernel/bpf/verifier.c: hunk #2 does not apply"), "{stderr}");
    assert!(stderr.contains("BPF_FUNC_kptr_swap"), "the failing hunk is shown: {stderr}");
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn a_series_that_rejects_every_module_kfunc_fails_validation() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (code, report, stderr) = validate("reject-module-kfuncs");
    let r = report.unwrap_or_else(|| panic!("no report:\n{stderr}"));
    assert_eq!(code, 1, "{r:#}");
    assert_eq!(r["series"]["patches"][1]["file_name"], "0002-bpf-reject-every-kernel-module-kfunc.patch");
    // The flagged kfuncs never become callable under the lock.
    assert_eq!(
        cases_in(&r, "missing"),
        [
            "call_module_safe_acquire_release",
            "call_module_safe_ret_null",
            "call_module_safe_sched_cls",
            "call_module_safe_syscall",
            "call_module_xdp_only_safe_xdp"
        ]
    );
    // Module kfuncs called outside a lock, accepted by 7.2, are now rejected, by the bad patch.
    let unexpected = cases_in(&r, "unexpected");
    for c in [
        "call_module_acquire_release_outside_lock",
        "call_module_release_in_non_null_branch",
        "call_module_safe_outside_lock",
        "call_module_unsafe_outside_lock",
    ] {
        assert!(unexpected.iter().any(|u| u == c), "{c} not in {unexpected:?}");
    }
    for c in &unexpected {
        let x = row(&r, c);
        assert_eq!(
            (x["kernel_base"]["verdict"].as_str(), x["kernel_patched"]["verdict"].as_str()),
            (Some("accept"), Some("reject")),
            "{c}"
        );
        assert_eq!(x["kernel_patched"]["message"], "kernel module function calls are disabled", "{c}");
    }
}
