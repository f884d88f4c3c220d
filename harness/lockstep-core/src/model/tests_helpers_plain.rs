//! Unit tests for the plain helpers (`model/helpers_plain.rs`). Expectations from the verifier
//! sources (`bpf_base_func_proto()`, `check_reg_type()`) and the real debian:7.2 / 7.3 runs over
//! the compiled selftests (`verifier_helper_restricted`, `test_spin_lock_fail` `lock_id_*`).

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, FieldKind, MapType, ProgType};
use crate::verdict::VerdictKind;

fn verdicts(text: &str, prog_type: ProgType) -> Vec<(String, Verdict)> {
    let symbols = Symbols { maps: vec!["m".into()], kfuncs: vec![] };
    let program = assemble(text, &symbols).expect("test program assembles");
    let m = cnt_lock_map("m", MapType::Array, FieldKind::SpinLock, true);
    let c = Case { maps: vec![m], ..Case::new("t", prog_type, program, text) };
    verdicts_on_all_profiles(&c)
}

const LOOKUP: &str = "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n \
                      call bpf_map_lookup_elem\n if r0 == 0 goto out\n";

#[test]
fn ktime_get_coarse_ns_has_no_proto_in_tracing_programs() {
    let text = "call bpf_ktime_get_coarse_ns\n r0 = 0\n exit";
    for t in [ProgType::Kprobe, ProgType::Tracepoint, ProgType::PerfEvent, ProgType::RawTracepoint] {
        for (p, v) in verdicts(text, t) {
            let want = "program of this type cannot use helper bpf_ktime_get_coarse_ns#160";
            assert_eq!(v, Verdict::reject(Some(0), want), "{t:?} on {p}");
        }
    }
    // Offered to tc programs by the networking protos, which lockstep has not read: unsupported.
    for (p, v) in verdicts(text, ProgType::SchedCls) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
}

#[test]
fn get_current_pid_tgid_is_a_scalar_everywhere_but_under_a_lock() {
    let text = "call bpf_get_current_pid_tgid\n r0 &= 1\n exit";
    for t in [ProgType::SchedCls, ProgType::Kprobe] {
        for (p, v) in verdicts(text, t) {
            assert_eq!(v.verdict, VerdictKind::Accept, "{t:?} on {p}: {v:?}");
        }
    }
    // The gate of do_check_insn() comes first: not a helper allowed under a lock.
    let text = format!(
        "{LOOKUP} r6 = r0\n r1 = r0\n r1 += 4\n call bpf_spin_lock\n call bpf_get_current_pid_tgid\n \
         r1 = r6\n r1 += 4\n call bpf_spin_unlock\n out:\n r0 = 0\n exit"
    );
    for (p, v) in verdicts(&text, ProgType::SchedCls) {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
        assert_eq!(v.insn, Some(12), "{p}: {v:?}");
    }
}

#[test]
fn this_cpu_ptr_refuses_what_is_not_a_percpu_kernel_pointer() {
    let expected = "expected=percpu_ptr_, percpu_rcu_ptr_, percpu_trusted_ptr_";
    let text = format!("{LOOKUP} r1 = r0\n call bpf_this_cpu_ptr\n out:\n r0 = 0\n exit");
    for (p, v) in verdicts(&text, ProgType::SchedCls) {
        assert_eq!(v, Verdict::reject(Some(9), format!("R1 type=map_value {expected}")), "{p}");
    }
    let text = "r1 = 0\n call bpf_this_cpu_ptr\n r0 = 0\n exit";
    for (p, v) in verdicts(text, ProgType::SchedCls) {
        assert_eq!(v, Verdict::reject(Some(1), format!("R1 type=scalar {expected}")), "{p}");
    }
}
