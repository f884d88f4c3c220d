//! Unit tests for `may_goto` (`model/loops.rs`). Expectations from `check_cond_jmp_op()` (the
//! target is walked first, the fall-through pushed) and `is_state_visited()` (a loop converges at
//! the `may_goto`), the same on debian:6.12, 7.2 and 7.3 (`tests/corpus/may-goto.toml`).

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, FieldKind, MapType, ProgType};
use crate::verdict::VerdictKind;

fn verdicts(text: &str) -> Vec<(String, Verdict)> {
    let m = cnt_lock_map("m", MapType::Hash, FieldKind::SpinLock, true);
    let symbols = Symbols { maps: vec!["m".into()], kfuncs: vec![] };
    let program = assemble(text, &symbols).expect("test program assembles");
    let c = Case { maps: vec![m], ..Case::new("t", ProgType::SchedCls, program, text) };
    verdicts_on_all_profiles(&c)
}

/// Lookup of element 0 into r6 (8 slots), then `body`, then `out: r0 = 0; exit`.
fn program(body: &str) -> String {
    format!(
        "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n call bpf_map_lookup_elem\n \
         if r0 == 0 goto out\n r6 = r0\n{body}\nout:\n r0 = 0\n exit"
    )
}

#[test]
fn may_goto_loop_around_a_locked_region_converges() {
    let body = "head:\n may_goto out\n r1 = r6\n r1 += 4\n call bpf_spin_lock\n r1 = r6\n r1 += 4\n \
                call bpf_spin_unlock\n goto head";
    for (p, v) in verdicts(&program(body)) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn may_goto_walks_its_target_first() {
    // The target (unlock with no lock held) is met before the loop body that takes the lock.
    let body = "head:\n may_goto done\n r1 = r6\n r1 += 4\n call bpf_spin_lock\n goto head\n\
                done:\n r1 = r6\n r1 += 4\n call bpf_spin_unlock";
    for (p, v) in verdicts(&program(body)) {
        assert_eq!(v, Verdict::reject(Some(16), "bpf_spin_unlock without taking a lock"), "{p}");
    }
}

/// `body` over a `bpf_iter_bits` iterator at fp-24 (16 bytes: two slots), in the program of
/// [`program`].
fn bits(body: &str) -> Vec<(String, Verdict)> {
    let m = cnt_lock_map("m", MapType::Hash, FieldKind::SpinLock, true);
    let kfuncs =
        ["bpf_iter_bits_new", "bpf_iter_bits_next", "bpf_iter_bits_destroy"].map(String::from).into();
    let symbols = Symbols { maps: vec!["m".into()], kfuncs };
    let text = program(body);
    let program = assemble(&text, &symbols).expect("test program assembles");
    let c = Case { maps: vec![m], ..Case::new("t", ProgType::SchedCls, program, &text) };
    verdicts_on_all_profiles(&c)
}

const BITS_NEW: &str = " r1 = r10\n r1 += -24\n r2 = 0\n r3 = 1\n call bpf_iter_bits_new\n";
const BITS_DESTROY: &str = " r1 = r10\n r1 += -24\n call bpf_iter_bits_destroy\n";

#[test]
fn bits_iterator_loop_around_a_locked_region_converges() {
    // process_iter_next_call(): as bpf_iter_num (loops.rs ITER_TYPES), its __ign argument NULL.
    let body = format!(
        "{BITS_NEW}head:\n r1 = r10\n r1 += -24\n call bpf_iter_bits_next\n if r0 == 0 goto done\n \
         r1 = r6\n r1 += 4\n call bpf_spin_lock\n r1 = r6\n r1 += 4\n call bpf_spin_unlock\n goto head\n\
         done:\n{BITS_DESTROY}"
    );
    for (p, v) in bits(&body) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn bits_iterator_holds_a_reference_and_two_slots() {
    // mark_stack_slots_iter(): acquire_reference() at the _new call (insn 13; ids: lookup 1).
    for (p, v) in bits(BITS_NEW) {
        assert_eq!(v, Verdict::reject(Some(15), "Unreleased reference id=2 alloc_insn=13"), "{p}");
    }
    // fp-16 is the iterator's second slot: a store there is not modelled.
    let over = format!("{BITS_NEW} r1 = 0\n *(u64 *)(r10 - 16) = r1\n{BITS_DESTROY}");
    for (p, v) in bits(&over) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
}

#[test]
fn next_or_destroy_without_an_iterator_is_refused() {
    // process_iter_arg() -> is_iter_reg_valid_init(): -EINVAL on zeroed or never-written slots
    // (verifier_bits_iter.c next_uninit / destroy_uninit); 6.12 names the argument "arg #0".
    let expect = |p: &str| {
        let arg = if p == "6.12" { "arg #0" } else { "R1" };
        Verdict::reject(Some(14), format!("expected an initialized iter_bits as {arg}"))
    };
    let zeroed = " r1 = 0\n *(u64 *)(r10 - 24) = r1\n *(u64 *)(r10 - 16) = r1\n r1 = r10\n r1 += -24\n \
                  call bpf_iter_bits_next\n";
    for (p, v) in bits(zeroed) {
        assert_eq!(v, expect(&p), "{p}");
    }
    let never = " r1 = 0\n r1 = 0\n r1 = 0\n r1 = r10\n r1 += -24\n call bpf_iter_bits_destroy\n";
    for (p, v) in bits(never) {
        assert_eq!(v, expect(&p), "{p}");
    }
    // A spilled pointer in the slot (its id; PTR_UNTRUSTED would be -EPROTO): not modelled.
    let spilled =
        " *(u64 *)(r10 - 24) = r6\n r1 = 0\n r1 = 0\n r1 = r10\n r1 += -24\n call bpf_iter_bits_next\n";
    for (p, v) in bits(spilled) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
}
