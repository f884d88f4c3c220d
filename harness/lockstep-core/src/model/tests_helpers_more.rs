//! Unit tests for `bpf_map_update_elem` / `bpf_map_delete_elem` (`model/helpers_more.rs`).
//! Expectations from the verifier sources (`check_func_arg()`: `ARG_CONST_MAP_PTR` ->
//! `check_reg_type()` "R1 type=%s expected=%s"; `do_check_insn()`'s gate under a lock), the
//! same on debian:6.12, 7.2 and 7.3 (`tests/corpus/helpers-more.toml`).

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, FieldKind, MapSpec, MapType, ProgType};
use crate::verdict::VerdictKind;

fn map(map_type: MapType) -> MapSpec {
    cnt_lock_map("m", map_type, FieldKind::SpinLock, true)
}

fn verdicts(text: &str, m: MapSpec) -> Vec<(String, Verdict)> {
    let symbols = Symbols { maps: vec!["m".into()], kfuncs: vec![] };
    let program = assemble(text, &symbols).expect("test program assembles");
    let c = Case { maps: vec![m], ..Case::new("t", ProgType::SchedCls, program, text) };
    verdicts_on_all_profiles(&c)
}

const UPDATE: &str = "r1 = 0\n *(u32 *)(r10 - 4) = r1\n *(u64 *)(r10 - 16) = r1\n r2 = r10\n r2 += -4\n \
                      r3 = r10\n r3 += -16\n r1 = m ll\n r4 = 0\n call bpf_map_update_elem\n r0 = 0\n exit";

#[test]
fn map_update_and_delete_outside_a_lock_are_accepted() {
    let delete = "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n call bpf_map_delete_elem\n r0 = 0\n exit";
    for text in [UPDATE, delete] {
        for (p, v) in verdicts(text, map(MapType::Hash)) {
            assert_eq!(v.verdict, VerdictKind::Accept, "{text} on {p}: {v:?}");
        }
    }
}

#[test]
fn map_delete_without_a_map_pointer_is_a_type_mismatch() {
    let text =
        "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n call bpf_map_delete_elem\n r0 = 0\n exit";
    for (p, v) in verdicts(text, map(MapType::Hash)) {
        assert_eq!(v, Verdict::reject(Some(4), "R1 type=scalar expected=map_ptr"), "{p}");
    }
}

#[test]
fn map_update_of_a_prog_array_is_refused_by_map_type() {
    // A prog_array (without BTF: map_check_btf() refuses one with a lock) takes no helper but
    // bpf_tail_call: check_map_func_compatibility(), after the arguments (verifier.c, 6.12 / 7.2
    // / 7.3: "cannot pass map_type %d into func %s#%d"), at the call.
    let prog_array = MapSpec { btf: false, ..map(MapType::ProgArray) };
    for (p, v) in verdicts(UPDATE, prog_array) {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
        assert_eq!(
            v.message.as_deref(),
            Some("cannot pass map_type 3 into func bpf_map_update_elem#2"),
            "{p}"
        );
    }
}

#[test]
fn probe_read_kernel_into_the_stack() {
    // Accepted on debian:6.12, 7.2 and 7.3 (tests/corpus/helpers-more.toml); the buffer's bytes
    // are written (STACK_MISC), so a later 8-byte load of it is an unknown scalar.
    let text = "r1 = r10\n r1 += -8\n r2 = 8\n r3 = 0\n call bpf_probe_read_kernel\n r0 = *(u64 *)(r10 - 8)\n r0 = 0\n exit";
    for (p, v) in verdicts(text, map(MapType::Hash)) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    // A buffer past the stack: the kernels' messages differ (6.12 "invalid indirect access to
    // stack", 7.x "invalid write to stack"), not modelled.
    let text = "r1 = r10\n r1 += -8\n r2 = 16\n r3 = 0\n call bpf_probe_read_kernel\n r0 = 0\n exit";
    for (p, v) in verdicts(text, map(MapType::Hash)) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
        assert!(v.message.as_deref().unwrap_or("").contains("bpf_probe_read_kernel"), "{p}: {v:?}");
    }
}
