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

// bpf_trace_printk_proto (kernel/trace/bpf_trace.c): ARG_PTR_TO_MEM | MEM_RDONLY, ARG_MEM_SIZE,
// RET_INTEGER; R3-R5 are not read. A format string in a map value's integer bytes passes
// check_map_access(); a size over the lock or zero is not modelled.
#[test]
fn trace_printk_reads_a_map_value_of_known_size() {
    let call = |size: i64| {
        format!(
            "{LOOKUP} r1 = r0\n r2 = {size}\n call bpf_trace_printk\n r0 &= 1\n exit\n out:\n r0 = 0\n exit"
        )
    };
    // (A kprobe over this map is refused on 6.12 for its lock; the corpus has kprobe cases.)
    for (p, v) in verdicts(&call(4), ProgType::SchedCls) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    for size in [0, 8, 9] {
        for (p, v) in verdicts(&call(size), ProgType::SchedCls) {
            assert_eq!(v.verdict, VerdictKind::Unsupported, "size {size} on {p}: {v:?}");
            assert!(v.message.as_deref().unwrap_or("").contains("bpf_trace_printk"), "{p}: {v:?}");
        }
    }
    // R1 clobbered: reading it after the call is refused.
    let text =
        format!("{LOOKUP} r1 = r0\n r2 = 4\n call bpf_trace_printk\n r0 = r1\n exit\n out:\n r0 = 0\n exit");
    for (p, v) in verdicts(&text, ProgType::SchedCls) {
        assert_eq!(v, Verdict::reject(Some(11), "R1 !read_ok"), "{p}");
    }
}

fn percpu_verdicts(text: &str, map_type: MapType) -> Vec<(String, Verdict)> {
    let symbols = Symbols { maps: vec!["m".into()], kfuncs: vec![] };
    let program = assemble(text, &symbols).expect("test program assembles");
    let m = cnt_lock_map("m", map_type, FieldKind::Int, true);
    let c = Case { maps: vec![m], ..Case::new("t", ProgType::SchedCls, program, text) };
    verdicts_on_all_profiles(&c)
}

// bpf_map_lookup_percpu_elem_proto (helpers.c): RET_PTR_TO_MAP_VALUE_OR_NULL, never elided (only
// BPF_FUNC_map_lookup_elem's nullness is), so a constant key in a per-cpu array still needs the
// null check; R3 (ARG_ANYTHING) must be initialised.
#[test]
fn map_lookup_percpu_elem_returns_a_value_or_null() {
    let head = "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n r3 = 0\n \
                call bpf_map_lookup_percpu_elem\n";
    let checked = format!("{head} if r0 == 0 goto out\n r0 = *(u32 *)(r0 + 0)\n exit\n out:\n r0 = 0\n exit");
    let unchecked = format!("{head} r0 = *(u32 *)(r0 + 0)\n exit");
    for t in [MapType::PercpuArray, MapType::PercpuHash] {
        for (p, v) in percpu_verdicts(&checked, t) {
            assert_eq!(v.verdict, VerdictKind::Accept, "{t:?} on {p}: {v:?}");
        }
        for (p, v) in percpu_verdicts(&unchecked, t) {
            assert_eq!(
                v,
                Verdict::reject(Some(8), "R0 invalid mem access 'map_value_or_null'"),
                "{t:?} on {p}"
            );
        }
    }
    // R3 not initialised.
    let text = "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n \
                call bpf_map_lookup_percpu_elem\n r0 = 0\n exit";
    for (p, v) in percpu_verdicts(text, MapType::PercpuHash) {
        assert_eq!(v, Verdict::reject(Some(6), "R3 !read_ok"), "{p}");
    }
    // check_map_func_compatibility() refuses a plain array: not modelled.
    for (p, v) in percpu_verdicts(&checked, MapType::Array) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
}
