//! `lockstep census` on the default matrix (debian:7.2, debian:7.3): every kfunc of each kernel,
//! probed in a QEMU guest with the test module loaded.
//!
//! Asserts what the kernel sources say (docs/census.md, docs/verifier-lock-rules.md §2.2):
//! the test module's flagged kfunc `lockstep_safe` is lock-safe exactly where the profile says
//! (7.3 yes, 7.2 no: no flag there), `lockstep_unsafe` never; the lock rule is checked before the
//! kfunc's arguments (the lock probe of `lockstep_safe_release`, whose zero argument is refused,
//! gets the argument error on 7.3 and the lock rule's error on 7.2); registration is found per
//! program type (`lockstep_xdp_only_safe` only on xdp); and each kernel's lock-safe vmlinux
//! kfuncs are exactly its profile's `kfuncs_under_lock` (the model agrees on every kfunc).
//!
//! Ignored unless built with `LOCKSTEP_VM_TESTS=1`. Takes about 75 s per kernel under TCG.

use std::collections::BTreeSet;
use std::process::Command;

use lockstep_core::profile::KernelProfile;
use serde_json::Value;

fn kernel<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kernel"] == name)
        .unwrap_or_else(|| panic!("no census of {name}"))
}

fn row<'a>(k: &'a Value, kfunc: &str) -> &'a Value {
    k["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == kfunc)
        .unwrap_or_else(|| panic!("{kfunc} not in the census of {}", k["kernel"]))
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn census_of_the_default_matrix() {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["census", "--kernel", "debian:7.2", "--kernel", "debian:7.3", "--json", "--accel", "auto"])
        .output()
        .expect("run lockstep census");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document on stdout");
    assert_eq!(out.status.code(), Some(0), "exit code (1: model differences, 3: infrastructure, 4: crash)");
    let (k72, k73) = (kernel(&doc, "debian:7.2"), kernel(&doc, "debian:7.3"));

    for k in [k72, k73] {
        assert!(k["module"].as_str().unwrap().ends_with(" loaded"), "{}", k["module"]);
        assert!(k["counts"]["kfuncs"].as_u64().unwrap() > 100, "vmlinux has hundreds of kfuncs");
        assert_eq!(k["counts"]["model_differences"], 0);
        // The flagged kfunc: the model's view and the kernel agree; unflagged: never lock-safe.
        let safe = row(k, "lockstep_safe");
        assert_eq!(safe["model"]["status"], safe["status"], "{safe}");
        assert_eq!(row(k, "lockstep_unsafe")["status"], "not_lock_safe");
        // Lock-safe vmlinux kfuncs = the profile's list.
        let profile = KernelProfile::by_name(k["profile"].as_str().unwrap()).unwrap();
        let kernel_safe: BTreeSet<&str> = k["rows"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["module"].is_null() && r["status"] == "lock_safe")
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        let listed: BTreeSet<&str> = profile.kfuncs_under_lock.iter().map(String::as_str).collect();
        assert_eq!(kernel_safe, listed, "{}", k["kernel"]);
        // Registration per program type: the xdp-only kfunc is refused by sched_cls.
        let xdp = row(k, "lockstep_xdp_only_safe");
        assert_eq!(xdp["registration"]["sched_cls"]["answer"], "not_registered");
        assert_eq!(xdp["registration"]["xdp"]["answer"], "registered");
        assert_eq!(xdp["prog_type"], "xdp");
    }
    assert_eq!(row(k73, "lockstep_safe")["status"], "lock_safe");
    assert_eq!(row(k72, "lockstep_safe")["status"], "not_lock_safe");
    assert_eq!(row(k73, "lockstep_xdp_only_safe")["status"], "lock_safe");

    // Check order: a zero (NULL) argument where lockstep_safe_release wants a pointer. 7.3 passes
    // the lock rule (flagged) and then refuses the argument at the call: lock-safe. 7.2 refuses the
    // same call with the lock rule: it is checked before the arguments.
    let rel73 = row(k73, "lockstep_safe_release");
    assert_eq!(rel73["status"], "lock_safe");
    let d = rel73["detail"].as_str().unwrap();
    // insn 17 is the kfunc call of the lock probe (census::probe), R1 its first argument.
    assert!(d.starts_with("past the lock rule, then rejected at insn 17:") && d.contains("R1"), "{d}");
    let rel72 = row(k72, "lockstep_safe_release");
    assert_eq!(rel72["status"], "not_lock_safe");
    assert_eq!(rel72["detail"], "function calls are not allowed while holding a lock");

    // The change between the kernels includes the module's flagged kfuncs.
    let changes = doc["changes"][0]["changes"].as_array().unwrap();
    let flip = changes.iter().find(|c| c["name"] == "lockstep_safe").expect("lockstep_safe changed");
    assert_eq!((flip["from"].as_str(), flip["to"].as_str()), (Some("not_lock_safe"), Some("lock_safe")));
    assert!(!changes.iter().any(|c| c["name"] == "lockstep_unsafe"));
}
