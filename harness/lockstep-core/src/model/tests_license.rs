//! Unit tests for the licence rules (`model/license.rs`). Expectations from verifier.c's
//! bpf_add_kfunc_call(), check_helper_call() and check_ptr_to_btf_access() (6.12, 7.2, 7.3) and
//! the real runs of tests/corpus/license.toml and tests/kernel-btf/license.toml.

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{license_is_gpl_compatible, Case, FieldKind, MapType, ProgType};
use crate::verdict::VerdictKind;

fn case(text: &str, license: &str) -> Case {
    let kfuncs = vec!["bpf_rcu_read_lock".to_string(), "bpf_rcu_read_unlock".to_string()];
    let symbols = Symbols { maps: vec!["m".into()], kfuncs: kfuncs.clone() };
    let program = assemble(text, &symbols).expect("test program assembles");
    let m = cnt_lock_map("m", MapType::Array, FieldKind::SpinLock, true);
    Case {
        maps: vec![m],
        extern_kfuncs: kfuncs,
        license: license.into(),
        ..Case::new("t", ProgType::SchedCls, program, text)
    }
}

#[test]
fn gpl_compatible_licences_are_the_kernels_six_strings() {
    for l in ["GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL", "Dual MIT/GPL", "Dual MPL/GPL"] {
        assert!(license_is_gpl_compatible(l), "{l}");
    }
    for l in ["", "gpl", "GPL ", "GPLv2", "Proprietary", "Dual BSD/GPL\n"] {
        assert!(!license_is_gpl_compatible(l), "{l:?}");
    }
}

#[test]
fn a_non_gpl_kfunc_call_is_refused_before_the_walk() {
    let text = "call bpf_rcu_read_lock\n call bpf_rcu_read_unlock\n r0 = 0\n exit";
    for (p, v) in verdicts_on_all_profiles(&case(text, "Proprietary")) {
        assert_eq!(
            v,
            Verdict::reject(None, "cannot call kernel function from non-GPL compatible program"),
            "{p}"
        );
    }
    for (p, v) in verdicts_on_all_profiles(&case(text, "Dual MIT/GPL")) {
        assert_ne!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
    }
}

#[test]
fn a_non_gpl_gpl_only_helper_is_refused_at_the_call() {
    let text = "r0 = 0\n call bpf_get_current_task_btf\n r0 = 0\n exit";
    for (p, v) in verdicts_on_all_profiles(&case(text, "")) {
        let want = "cannot call GPL-restricted function from non-GPL compatible program";
        assert_eq!(v, Verdict::reject(Some(1), want), "{p}");
    }
    // Not gpl_only: the lock helpers and the map helpers.
    let text = "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n \
                call bpf_map_lookup_elem\n if r0 == 0 goto out\n r6 = r0\n r1 = r0\n r1 += 4\n \
                call bpf_spin_lock\n r1 = r6\n r1 += 4\n call bpf_spin_unlock\n out:\n r0 = 0\n exit";
    for (p, v) in verdicts_on_all_profiles(&case(text, "Proprietary")) {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
    // A helper whose proto the model does not list: unsupported, named.
    let text = "call bpf_get_current_task\n r0 = 0\n exit";
    for (p, v) in verdicts_on_all_profiles(&case(text, "Proprietary")) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
        assert!(v.message.as_deref().unwrap_or("").contains("bpf_get_current_task"), "{p}: {v:?}");
    }
}

#[test]
fn a_non_gpl_load_through_a_kernel_pointer_is_refused() {
    // The sample BTF's bpf_map.inner_map_meta (offset 8): a PTR_TO_BTF_ID of struct bpf_map.
    let text = "r1 = m ll\n r2 = *(u64 *)(r1 + 8)\n r0 = *(u32 *)(r2 + 0)\n r0 = 0\n exit";
    let symbols = Symbols { maps: vec!["m".into()], kfuncs: vec![] };
    let program = assemble(text, &symbols).expect("test program assembles");
    let maps = vec![cnt_lock_map("m", MapType::Array, FieldKind::Int, false)];
    let c =
        Case { maps, license: "Proprietary".into(), ..Case::new("t", ProgType::SocketFilter, program, text) };
    let want = "Cannot access kernel 'struct bpf_map' from non-GPL compatible program";
    for (profile, verdict) in verdicts_with_kernel_btf(&c, Some(&sample_kernel_btf())) {
        assert_eq!(verdict, Verdict::reject(Some(3), want), "{profile}");
    }
}
