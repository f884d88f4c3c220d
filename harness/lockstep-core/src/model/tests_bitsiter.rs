//! Unit tests for the widening of imprecise scalars at an iterator's `_next`
//! (`widen_imprecise_scalars()`, `model/loops.rs`) and the precision analysis it relies on
//! (`model/precise.rs`). Expectations as in `tests/corpus/bitsiter-widen.toml` (debian:6.12,
//! 7.2 and 7.3).

use super::precise::precise_live;
use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, FieldKind, MapType, ProgType};
use crate::verdict::VerdictKind;

fn symbols() -> Symbols {
    let kfuncs =
        ["bpf_iter_bits_new", "bpf_iter_bits_next", "bpf_iter_bits_destroy"].map(String::from).into();
    Symbols { maps: vec!["m".into()], kfuncs }
}

/// A lookup of element 0 into r6, a bits iterator at fp-24 over the word at fp-32, r7 = 0, then
/// a loop whose body takes and releases the lock and runs `body`, and the destroy.
fn looped(body: &str) -> String {
    format!(
        "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n call bpf_map_lookup_elem\n \
         if r0 == 0 goto out\n r6 = r0\n r1 = 255\n *(u64 *)(r10 - 32) = r1\n r1 = r10\n r1 += -24\n \
         r2 = r10\n r2 += -32\n r3 = 1\n call bpf_iter_bits_new\n r7 = 0\n\
         head:\n r1 = r10\n r1 += -24\n call bpf_iter_bits_next\n if r0 == 0 goto done\n \
         r1 = r6\n r1 += 4\n call bpf_spin_lock\n r1 = r6\n r1 += 4\n call bpf_spin_unlock\n{body}\n goto head\n\
         done:\n r1 = r10\n r1 += -24\n call bpf_iter_bits_destroy\nout:\n r0 = 0\n exit"
    )
}

fn verdicts(text: &str) -> Vec<(String, Verdict)> {
    let m = cnt_lock_map("m", MapType::Hash, FieldKind::SpinLock, true);
    let program = assemble(text, &symbols()).expect("test program assembles");
    let c = Case { maps: vec![m], ..Case::new("t", ProgType::SchedCls, program, text) };
    verdicts_on_all_profiles(&c)
}

#[test]
fn a_counter_never_read_is_widened_and_the_loop_converges() {
    for (p, v) in verdicts(&looped(" r7 += 1")) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    // A copy (a move links both by a scalar id) read by no jump: both widened.
    for (p, v) in verdicts(&looped(" r7 += 2\n r8 = r7")) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn a_counter_that_may_be_precise_is_not_widened() {
    // A comparison with a constant (decided on each iteration: mark_chain_precision()).
    for (p, v) in verdicts(&looped(" if r7 > 40 goto done\n r7 += 1")) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
        let msg = v.message.as_deref().unwrap_or("");
        assert!(
            msg.contains("bpf_iter_bits loop") && msg.contains("R7 changes between iterations"),
            "{p}: {v:?}"
        );
    }
    // A copy compared later: the jump's linked registers include the counter.
    for (p, v) in verdicts(&looped(" r7 += 1\n r8 = r7\n if r8 > 40 goto done")) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
    // A counter spilled to the stack: the model widens no stack slot.
    let spilled = " r7 = *(u64 *)(r10 - 40)\n r7 += 1\n *(u64 *)(r10 - 40) = r7";
    let text = looped(spilled).replace(" r7 = 0\n", " r7 = 0\n *(u64 *)(r10 - 40) = r7\n");
    for (p, v) in verdicts(&text) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
        assert!(v.message.as_deref().unwrap_or("").contains("a stack slot that changes"), "{p}: {v:?}");
    }
}

#[test]
fn precision_liveness_follows_moves_alu_spills_and_links() {
    let live = |text: &str, checked: bool| {
        let p = assemble(text, &symbols()).expect("test program assembles");
        precise_live(&p.insns, checked).expect("the analysis follows the program")
    };
    // r6 flows into r0: live where the exit checks the return value, not otherwise.
    let ret = "r6 = 1\n r6 += 1\n r0 = r6\n exit";
    assert!(live(ret, true)[1].has_reg(6));
    assert!(!live(ret, false)[1].has_reg(6));
    // Through a spill and a fill into a jump.
    let spill =
        "r6 = 1\n *(u64 *)(r10 - 8) = r6\n r7 = *(u64 *)(r10 - 8)\n if r7 > 3 goto l\n l:\n r0 = 0\n exit";
    assert!(live(spill, false)[1].has_reg(6));
    // A linked copy: the jump on r7 marks r6 (same id), whose value at insn 2 is r6's own.
    let linked = "r6 = 1\n r7 = r6\n r6 += 1\n if r7 > 3 goto l\n l:\n r0 = 0\n exit";
    assert!(live(linked, false)[2].has_reg(6));
    // A jump on a call's result: no link, r6 is not read.
    let unlinked = "r6 = 1\n call bpf_ktime_get_ns\n r6 += 1\n if r0 > 3 goto l\n l:\n r0 = 0\n exit";
    assert!(!live(unlinked, false)[2].has_reg(6));
    // A store through r6, a pointer that a call's argument makes live: no effect on r7.
    let store = "r6 = r10\n r7 = 1\n *(u64 *)(r6 - 8) = r7\n r7 += 1\n r1 = r6\n call bpf_ktime_get_ns\n r0 = 0\n exit";
    assert!(!live(store, false)[3].has_reg(7));
    // A bpf-to-bpf call: no answer.
    let p = assemble("call f\n r0 = 0\n exit\nf:\n r0 = 0\n exit", &symbols()).expect("assembles");
    assert!(precise_live(&p.insns, false).is_none());
}

/// `n` diamonds: a random value tested, r7 set on one side only, read by no one.
fn diamonds(n: usize) -> String {
    (0..n).map(|k| format!(" call bpf_get_prandom_u32\n if r0 == 0 goto d{k}\n r7 = r0\nd{k}:\n")).collect()
}

#[test]
fn joins_in_equal_states_are_pruned() {
    // 2^24 paths without pruning; each join's states differ only in r0 / r7, not live there.
    let lock =
        " r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n call bpf_map_lookup_elem\n \
                if r0 == 0 goto out\n r6 = r0\n r1 = r6\n r1 += 4\n call bpf_spin_lock\n";
    let unlock = " r1 = r6\n r1 += 4\n call bpf_spin_unlock\n";
    let text = format!(" r7 = 0\n{}{lock}{unlock}out:\n r0 = 0\n exit", diamonds(24));
    for (p, v) in verdicts(&text) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    // A flag live to the end keeps its two sides apart: the exit with the lock held is found on
    // the side walked last.
    let text = format!(
        " r7 = 0\n r8 = 0\n call bpf_get_prandom_u32\n if r0 == 0 goto set\n goto first\nset:\n r8 = 1\nfirst:\n\
         {}{lock} if r8 != 0 goto out\n{unlock}out:\n r0 = 0\n exit",
        diamonds(23)
    );
    for (p, v) in verdicts(&text) {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
    }
}

#[test]
fn prune_points_are_joins_on_no_cycle() {
    let p = assemble(
        "r7 = 0\n call bpf_get_prandom_u32\n if r0 == 0 goto j\n r7 = 1\nj:\n r6 = 0\nl:\n r6 += 1\n \
         if r6 < 3 goto l\n r0 = r7\n exit",
        &symbols(),
    )
    .expect("assembles");
    let info = super::prune::prune_info(&p.insns).expect("a graph");
    // insn 4 (j) joins two paths on no cycle; insn 5 has one predecessor; insn 6 (l) is a loop head.
    assert!(info.point(4));
    assert!(!info.point(5));
    assert!(!info.point(6));
    // r7 is read at the exit (r0 = r7): live at the join, r0 is not (written before read).
    assert!(info.live_at(4) & (1 << 7) != 0);
    assert!(info.live_at(4) & 1 == 0);
}
