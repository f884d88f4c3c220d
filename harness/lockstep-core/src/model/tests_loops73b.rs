//! Unit tests for pruning at a loop's exit (`model/prune.rs`): a loop the walk unrolls reaches
//! its exit once per pass, each on its own path, and the kernel prunes those paths where their
//! states are equal (`is_state_visited()`). The programs are those of
//! `tests/corpus/loops73b-exits.toml` (real runs on debian:6.12, 7.2 and 7.3).

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, FieldKind, MapType, ProgType};
use crate::verdict::VerdictKind;

fn symbols() -> Symbols {
    Symbols { maps: vec!["m".into()], kfuncs: Default::default() }
}

fn verdicts(text: &str) -> Vec<(String, Verdict)> {
    let m = cnt_lock_map("m", MapType::Hash, FieldKind::SpinLock, true);
    let program = assemble(text, &symbols()).expect("test program assembles");
    let c = Case { maps: vec![m], ..Case::new("t", ProgType::SchedCls, program, text) };
    verdicts_on_all_profiles(&c)
}

/// Element 0 of `m` in r6, then three loops of 256 passes (the lock taken and released in each),
/// each left on a random zero into the next, then `tail`.
fn three_loops(tail: &str) -> String {
    let head = " r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n \
                call bpf_map_lookup_elem\n if r0 == 0 goto out\n r6 = r0\n";
    let body: String = (1..=3)
        .map(|k| {
            format!(
                " r7 = 256\nl{k}:\n r7 += -1\n if r7 == 0 goto out\n r1 = r6\n r1 += 4\n call bpf_spin_lock\n \
                 r1 = r6\n r1 += 4\n call bpf_spin_unlock\n call bpf_get_prandom_u32\n if r0 != 0 goto l{k}\n"
            )
        })
        .collect();
    format!("{head}{body}{tail}out:\n r0 = 0\n exit")
}

#[test]
fn a_loops_exit_is_a_prune_point() {
    let p = assemble(
        "r6 = 0\nl:\n r6 += 1\n call bpf_get_prandom_u32\n if r0 != 0 goto l\n r7 = 1\n r0 = r7\n exit",
        &symbols(),
    )
    .expect("assembles");
    let info = super::prune::prune_info(&p.insns).expect("a graph");
    // 1-3 are the loop (on a cycle), 4 (r7 = 1) its exit: one predecessor, on the cycle.
    assert!(!info.point(1) && !info.point(3));
    assert!(info.point(4));
    // 5 has one predecessor, on no cycle.
    assert!(!info.point(5));
}

#[test]
fn three_unrolled_loops_converge_at_their_exits() {
    // 256^3 paths without pruning at the exits (each has one predecessor, no join).
    for (p, v) in verdicts(&three_loops("")) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn an_error_past_the_exits_is_still_found() {
    // The lock held at the exit after the third loop: found on the first path there.
    let held = " r1 = r6\n r1 += 4\n call bpf_spin_lock\n r0 = 0\n exit\n";
    for (p, v) in verdicts(&three_loops(held)) {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
    }
    // Only when the third loop left with r7 == 3: r7 is live at that exit, its passes stay apart.
    let once = format!(" if r7 != 3 goto out\n{held}");
    for (p, v) in verdicts(&three_loops(&once)) {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
    }
}
