//! Unit tests for variable offsets on an owned allocated object and on a list head argument
//! (`varoff.rs`). Expected lines are the kernel's (verifier.c of 6.12 / 7.2 / 7.3:
//! `adjust_ptr_min_max_vals()`, `__check_ptr_off_reg()`, `__process_kf_arg_ptr_to_graph_root()`),
//! as debian:6.12 / 7.2 / 7.3 print them for the corpus cases of `tests/corpus/loops73-varoff.toml`.

use super::test_fixtures::graph_case;
use super::*;
use crate::case::{Case, FieldKind};
use crate::verdict::VerdictKind;

const KFUNCS: [&str; 3] = ["bpf_obj_new_impl", "bpf_obj_drop_impl", "bpf_list_push_front_impl"];

fn case(body: &str) -> Case {
    graph_case(FieldKind::ListHead, FieldKind::ListNode, &KFUNCS, body, "")
}

/// `r8` = `bpf_get_prandom_u32() & mask` (before the lock), then the lock.
fn masked_then_lock(mask: u32) -> String {
    format!("call bpf_get_prandom_u32\n r0 &= {mask}\n r8 = r0\n r1 = r7\n call bpf_spin_lock\n")
}
const UNLOCK: &str = "r1 = r7\n call bpf_spin_unlock\n";
const PUSH_R6: &str = "r3 = 0\n r4 = 0\n call bpf_list_push_front_impl\n";

/// 7.x (whole offset in var_off): `want`; 6.12 (constants in reg->off): `want_612`.
fn assert_by(c: &Case, want: &Verdict, want_612: &Verdict) {
    let module = crate::module_src::bundled();
    for p in KernelProfile::all() {
        let v = check(c, &p, &module);
        assert_eq!(&v, if p.ptr_off_in_var_off { want } else { want_612 }, "{}", p.name);
    }
}

#[test]
fn a_variable_node_offset_is_printed_as_the_kernels_tnum() {
    // ptr_ + 8 + (x & 7): 7.x tnum_add((8; 0), (0; 7)) = (0x8; 0x7); 6.12 reg->off 8, (0x0; 0x7).
    let body = format!(
        "{} r6 += 8\n r6 += r8\n r1 = r7\n r1 += 8\n r2 = r6\n {PUSH_R6}{UNLOCK}",
        masked_then_lock(7)
    );
    let line = |t: &str| Verdict::reject(Some(27), format!("variable ptr_ access var_off={t} disallowed"));
    assert_by(&case(&body), &line("(0x8; 0x7)"), &line("(0x0; 0x7)"));
}

#[test]
fn a_variable_head_on_an_allocated_object_fails_the_offset_check_first() {
    // R1 = ptr_ + (x & 0xff): __check_func_arg_reg_off() before KF_ARG_PTR_TO_LIST_HEAD's checks.
    let body =
        format!("{} r1 = r6\n r1 += r8\n r2 = r6\n r2 += 8\n {PUSH_R6}{UNLOCK}", masked_then_lock(0xff));
    let want = Verdict::reject(Some(26), "variable ptr_ access var_off=(0x0; 0xff) disallowed");
    assert_by(&case(&body), &want, &want);
}

#[test]
fn other_uses_of_a_variable_offset_object_are_unsupported() {
    // A load through it (check_ptr_to_btf_access()'s var_off line is not modelled).
    let load = format!("{} r6 += r8\n r0 = *(u64 *)(r6 + 0)\n{UNLOCK}", masked_then_lock(7));
    for p in KernelProfile::all() {
        let v = check(&case(&load), &p, &crate::module_src::bundled());
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{}: {v:?}", p.name);
    }
    // A range whose tnum the bounds do not fix (x & 6: [0, 6]).
    let body = format!("{} r6 += r8\n r1 = r7\n r1 += 8\n r2 = r6\n {PUSH_R6}{UNLOCK}", masked_then_lock(6));
    for p in KernelProfile::all() {
        let v = check(&case(&body), &p, &crate::module_src::bundled());
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{}: {v:?}", p.name);
    }
}

#[test]
fn an_unused_variable_offset_copy_does_not_stop_the_program() {
    let body = format!(
        "{} r9 = r6\n r9 += r8\n r1 = r7\n r1 += 8\n r2 = r6\n r2 += 8\n {PUSH_R6}{UNLOCK}",
        masked_then_lock(7)
    );
    assert_by(&case(&body), &Verdict::accept(), &Verdict::accept());
}

#[test]
fn a_map_value_head_with_a_wide_variable_offset_wants_a_constant_offset() {
    // smax 2^32 - 1 >= BPF_MAX_VAR_OFF: check_reg_sane_offset_scalar() checks only smin.
    let body = "call bpf_get_prandom_u32\n r8 = r0\n r8 <<= 32\n r8 >>= 32\n r1 = r7\n call bpf_spin_lock\n \
                r1 = r7\n r1 += r8\n r1 += 8\n r2 = r6\n r2 += 8\n r3 = 0\n r4 = 0\n call bpf_list_push_front_impl\n \
                r1 = r7\n call bpf_spin_unlock\n";
    let want = Verdict::reject(
        Some(28),
        "R1 doesn't have constant offset. bpf_list_head has to be at the constant offset",
    );
    let module = crate::module_src::bundled();
    for p in KernelProfile::all() {
        assert_eq!(check(&case(body), &p, &module), want, "{}", p.name);
    }
}

#[test]
fn a_bounded_variable_subtrahend_from_a_map_value_is_unsupported() {
    // check_reg_sane_offset_scalar() checks `x & 7` itself (smin 0): debian:7.2 / 7.3 accept
    // `map_value -= x & 7` (loops73-varoff.toml); the model negates the scalar and cannot.
    let body = "call bpf_get_prandom_u32\n r0 &= 7\n r1 = r7\n r1 += 8\n r1 -= r0\n";
    let module = crate::module_src::bundled();
    for p in KernelProfile::all() {
        let v = check(&case(body), &p, &module);
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{}: {v:?}", p.name);
    }
    // An unbounded one is refused by its own smin, as before.
    let body = "call bpf_get_prandom_u32\n r1 = r7\n r1 -= r0\n";
    for p in KernelProfile::all() {
        let v = check(&case(body), &p, &module);
        assert_eq!(v.verdict, VerdictKind::Reject, "{}: {v:?}", p.name);
    }
}
