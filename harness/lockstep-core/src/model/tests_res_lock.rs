//! Unit tests for `bpf_res_spin_lock` / `bpf_res_spin_unlock` (7.2, 7.3: `process_spin_lock()`
//! with `PROCESS_RES_LOCK`, the failed-acquisition fork of `check_kfunc_call()`).

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, FieldKind, MapSpec, MapType, ProgType};
use crate::verdict::VerdictKind;

fn res_map(name: &str, kind: FieldKind) -> MapSpec {
    cnt_lock_map(name, MapType::Hash, kind, true)
}

/// Looks up element 0 of `a` into r6 and of `b` into r7, then runs `body`.
fn res_case(body: &str) -> Case {
    let mut text = String::new();
    for (m, r) in [("a", "r6"), ("b", "r7")] {
        text += &format!(
            "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = {m} ll\n call bpf_map_lookup_elem\n if r0 == 0 goto out\n {r} = r0\n"
        );
    }
    text += body;
    text += "\nout:\n r0 = 0\n exit\n";
    let maps = vec![res_map("a", FieldKind::ResSpinLock), res_map("b", FieldKind::ResSpinLock)];
    let kfuncs = ["bpf_res_spin_lock", "bpf_res_spin_unlock"].map(String::from).into_iter().collect();
    let symbols = Symbols { maps: vec!["a".into(), "b".into()], kfuncs };
    let program = assemble(&text, &symbols).expect("test program assembles");
    Case { maps, ..Case::new("t", ProgType::SchedCls, program, text) }
}

/// Verdicts on the profiles that have res locks.
fn verdicts(c: &Case) -> Vec<(String, Verdict)> {
    let module = crate::module_src::bundled();
    KernelProfile::all()
        .iter()
        .filter(|p| p.res_spin_lock)
        .map(|p| (p.name.clone(), check(c, p, &module)))
        .collect()
}

fn lock(r: &str) -> String {
    format!("r1 = {r}\n r1 += 4\n call bpf_res_spin_lock\n")
}
fn unlock(r: &str) -> String {
    format!("r1 = {r}\n r1 += 4\n call bpf_res_spin_unlock\n")
}

fn assert_reject(c: &Case, msg: &str) {
    let v = verdicts(c);
    assert!(!v.is_empty());
    for (p, v) in v {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
        assert_eq!(v.message.as_deref(), Some(msg), "{p}");
    }
}

#[test]
fn checked_lock_and_unlock_is_accepted() {
    let c = res_case(&format!("{}if r0 != 0 goto out\n{}", lock("r6"), unlock("r6")));
    for (p, v) in verdicts(&c) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn failed_acquisition_is_a_path_without_the_lock() {
    // check_kfunc_call(): the pushed state has R0 in [-MAX_ERRNO, -1] and no lock.
    let c = res_case(&format!("{}{}", lock("r6"), unlock("r6")));
    assert_reject(&c, "bpf_res_spin_unlock without taking a lock");
}

#[test]
fn same_lock_twice_is_an_aa_deadlock() {
    let c = res_case(&format!("{}if r0 != 0 goto out\n{}", lock("r6"), lock("r6")));
    assert_reject(&c, "Acquiring the same lock again, AA deadlock detected");
}

#[test]
fn two_locks_unlock_last_in_first_out() {
    let ok = format!(
        "{}if r0 != 0 goto out\n{}if r0 != 0 goto fail\n{}{}goto out\nfail:\n{}",
        lock("r6"),
        lock("r7"),
        unlock("r7"),
        unlock("r6"),
        unlock("r6")
    );
    for (p, v) in verdicts(&res_case(&ok)) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    let bad = format!(
        "{}if r0 != 0 goto out\n{}if r0 != 0 goto fail\n{}{}goto out\nfail:\n{}",
        lock("r6"),
        lock("r7"),
        unlock("r6"),
        unlock("r7"),
        unlock("r6")
    );
    assert_reject(&res_case(&bad), "bpf_res_spin_unlock cannot be out of order");
}

#[test]
fn exit_and_calls_see_a_res_lock_as_a_lock() {
    let c = res_case(&format!("{}if r0 != 0 goto out\n r0 = 0\n exit\n", lock("r6")));
    assert_reject(&c, "BPF_EXIT instruction in main prog cannot be used inside bpf_spin_lock-ed region");
    let c = res_case(&format!("{}if r0 != 0 goto out\n call bpf_ktime_get_ns\n{}", lock("r6"), unlock("r6")));
    assert_reject(&c, "function calls are not allowed while holding a lock");
}
