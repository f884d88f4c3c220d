//! Unit tests of branch "loops" (issue 14, item 4): `bpf_tail_call` with a reference held,
//! `bpf_ktime_get_boot_ns`, a timer callback's key as a map helper's key, `bpf_trace_printk` in
//! syscall programs, `bpf_get_local_storage`, the `bpf_wq` callback walked as a sleepable async
//! callback, loads through `bpf_iter_num_next()`'s `int *`, and global functions that may throw.
//! The cases are tests/corpus/loops-callbacks.toml's, whose expectations come from real
//! debian:6.12 / 7.2 / 7.3 runs; here the model's verdict per profile.

use super::test_fixtures::*;
use crate::case::Case;
use crate::verdict::{Verdict, VerdictKind};

const CORPUS: &str = include_str!("../../../../tests/corpus/loops-callbacks.toml");

fn corpus_case(name: &str) -> Case {
    let module = crate::module_src::bundled();
    let cases = crate::corpus::load_text("loops-callbacks.toml", CORPUS, &module).expect("corpus parses");
    cases.into_iter().find(|c| c.name == name).unwrap_or_else(|| panic!("case {name}"))
}

/// The model's verdict per profile name.
fn verdict_on(name: &str, profile: &str) -> Verdict {
    let c = corpus_case(name);
    verdicts_on_all_profiles(&c)
        .into_iter()
        .find(|(p, _)| p == profile)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("profile {profile}"))
}

fn assert_accept(name: &str, profiles: &[&str]) {
    for p in profiles {
        let v = verdict_on(name, p);
        assert_eq!(v.verdict, VerdictKind::Accept, "{name} on {p}: {v:?}");
    }
}

fn assert_reject(name: &str, profiles: &[&str], insn: usize, message: &str) {
    for p in profiles {
        let v = verdict_on(name, p);
        assert_eq!(v, Verdict::reject(Some(insn), message), "{name} on {p}");
    }
}

const ALL: [&str; 3] = ["6.12", "7.2", "7.3"];
const SEVEN: [&str; 2] = ["7.2", "7.3"];

#[test]
fn tail_call_with_a_reference_is_a_leak() {
    // check_reference_leak() at the call, the log's first line on every profile.
    assert_reject("loops_tail_call_with_reference", &ALL, 11, "Unreleased reference id=2 alloc_insn=4");
}

#[test]
fn ktime_get_boot_ns_is_a_base_helper() {
    assert_accept("loops_ktime_get_boot_ns_tc", &ALL);
    assert_accept("loops_ktime_get_boot_ns_kprobe", &ALL);
}

#[test]
fn a_timer_callback_key_is_a_map_key() {
    assert_accept("loops_timer_cb_delete_own_key", &ALL);
    assert_accept("loops_timer_cb_update_other_map", &ALL);
}

#[test]
fn trace_printk_in_syscall_programs() {
    assert_accept("loops_trace_printk_syscall", &ALL);
}

#[test]
fn get_local_storage_in_cgroup_skb() {
    assert_accept("loops_get_local_storage_lock", &ALL);
    assert_reject(
        "loops_get_local_storage_hash_map",
        &ALL,
        3,
        "cannot pass map_type 1 into func bpf_get_local_storage#81",
    );
}

#[test]
fn wq_callback_is_walked() {
    assert_accept("loops_wq_callback_ok", &SEVEN);
    let v = verdict_on("loops_wq_callback_returns_one", "7.3");
    assert_eq!(v.verdict, VerdictKind::Reject, "{v:?}");
    assert_eq!(
        v.message.as_deref(),
        Some("At async callback return the register R0 has smin=1 smax=1 should have been in [0, 0]")
    );
    // 6.12: the wq kfuncs' checks are not modelled.
    assert_eq!(verdict_on("loops_wq_callback_ok", "6.12").verdict, VerdictKind::Unsupported);
}

#[test]
fn iter_num_next_gives_readable_memory() {
    assert_accept("loops_iter_num_next_load", &ALL);
}

#[test]
fn global_function_that_may_throw() {
    assert_reject(
        "loops_global_may_throw_with_reference",
        &SEVEN,
        7,
        "Unreleased reference id=2 alloc_insn=3",
    );
    assert_eq!(verdict_on("loops_global_may_throw_with_reference", "6.12").verdict, VerdictKind::Unsupported);
    assert_accept("loops_global_may_throw_no_reference", &SEVEN);
}

#[test]
fn irq_flag_saved_over_a_one_slot_iterator() {
    // The flag's write scrubs the iterator's slot; its reference (id 1, taken at 5) leaks at exit.
    assert_reject("loops_irq_save_over_iter", &SEVEN, 11, "Unreleased reference id=1 alloc_insn=5");
}
