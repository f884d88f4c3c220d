//! Unit tests for RCU read-lock and preemption regions (`check_kfunc_call()`'s counters and
//! `check_resource_leak()`), from the 7.2 and 7.3 verifier sources.

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, ProgType};
use crate::verdict::VerdictKind;

const KFUNCS: [&str; 5] =
    ["bpf_rcu_read_lock", "bpf_rcu_read_unlock", "bpf_preempt_disable", "bpf_preempt_enable", "bpf_throw"];

fn case(body: &str) -> Case {
    let text = format!("{body}\n r0 = 0\n exit\n");
    let kfuncs: Vec<String> = KFUNCS.map(String::from).into_iter().collect();
    let program = assemble(&text, &Symbols { maps: vec![], kfuncs: kfuncs.clone() }).expect("assembles");
    let mut c = Case::new("t", ProgType::SchedCls, program, &text);
    c.extern_kfuncs = kfuncs;
    c
}

/// The verdicts on the 7.x profiles; 6.12 must say unsupported.
fn assert_7x(c: &Case, want: Verdict) {
    for (p, v) in verdicts_on_all_profiles(c) {
        if p == "6.12" {
            assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
        } else {
            assert_eq!(v, want, "{p}");
        }
    }
}

#[test]
fn balanced_nested_regions_are_accepted() {
    let body = "call bpf_rcu_read_lock\n call bpf_rcu_read_lock\n call bpf_preempt_disable\n \
                call bpf_preempt_enable\n call bpf_rcu_read_unlock\n call bpf_rcu_read_unlock";
    assert_7x(&case(body), Verdict::accept());
}

#[test]
fn unmatched_unlock_and_enable_are_refused() {
    assert_7x(
        &case("call bpf_rcu_read_unlock"),
        Verdict::reject(Some(0), "unmatched rcu read unlock (kernel function bpf_rcu_read_unlock)"),
    );
    assert_7x(
        &case("call bpf_preempt_enable"),
        Verdict::reject(
            Some(0),
            "unmatched attempt to enable preemption (kernel function bpf_preempt_enable)",
        ),
    );
}

#[test]
fn exit_and_throw_inside_a_region_are_refused_rcu_first() {
    let msg = "BPF_EXIT instruction in main prog cannot be used inside bpf_rcu_read_lock-ed region";
    assert_7x(&case("call bpf_preempt_disable\n call bpf_rcu_read_lock"), Verdict::reject(Some(3), msg));
    let msg = "bpf_throw cannot be used inside bpf_preempt_disable-ed region";
    assert_7x(&case("call bpf_preempt_disable\n r1 = 0\n call bpf_throw"), Verdict::reject(Some(2), msg));
}
