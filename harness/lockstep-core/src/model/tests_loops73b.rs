//! Unit tests for pruning at a loop's exit (`model/prune.rs`): a loop the walk unrolls reaches
//! its exit once per pass, each on its own path, and the kernel prunes those paths where their
//! states are equal (`is_state_visited()`). The programs are those of
//! `tests/corpus/loops73b-exits.toml` (real runs on debian:6.12, 7.2 and 7.3). And an open-coded
//! iterator made over a slot holding a spilled register (`model/loops.rs`, the programs of
//! `tests/corpus/loops73b-iter-spill.toml`).

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, FieldKind, MapType, ProgType};
use crate::verdict::VerdictKind;

fn symbols() -> Symbols {
    let kfuncs = ["bpf_iter_num_new", "bpf_iter_num_next", "bpf_iter_num_destroy"].map(String::from).into();
    Symbols { maps: vec!["m".into()], kfuncs }
}

fn verdicts(text: &str) -> Vec<(String, Verdict)> {
    let m = cnt_lock_map("m", MapType::Hash, FieldKind::SpinLock, true);
    let program = assemble(text, &symbols()).expect("test program assembles");
    let c = Case { maps: vec![m], ..Case::new("t", ProgType::SchedCls, program, text) };
    verdicts_on_all_profiles(&c)
}

/// Element 0 of `m` in r6, then three loops of 24 passes (the lock taken and released in each),
/// each left on a random zero into the next, then `tail`.
fn three_loops(tail: &str) -> String {
    let head = " r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n \
                call bpf_map_lookup_elem\n if r0 == 0 goto out\n r6 = r0\n";
    let body: String = (1..=3)
        .map(|k| {
            format!(
                " r7 = 24\nl{k}:\n r7 += -1\n if r7 == 0 goto out\n r1 = r6\n r1 += 4\n call bpf_spin_lock\n \
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
    // 24^3 paths without pruning at the exits (each has one predecessor, no join).
    for (p, v) in verdicts(&three_loops("")) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn three_unrolled_loops_walk_no_more_than_the_kernel() {
    // The kernel processes 856 instructions of this program (debian:6.12, 7.2 and 7.3, the
    // `source` of tests/corpus/loops73b-exits.toml): each loop walked once, the later passes of
    // the one before pruned at its exit. The model keeps the first state at a loop's exit from
    // the first step (prune.rs), so it walks no more.
    let m = cnt_lock_map("m", MapType::Hash, FieldKind::SpinLock, true);
    let text = three_loops("");
    let program = assemble(&text, &symbols()).expect("test program assembles");
    let c = Case { maps: vec![m], ..Case::new("t", ProgType::SchedCls, program, &text) };
    let module = crate::module_src::bundled();
    let prep = Prepared::new(&c);
    for p in KernelProfile::all() {
        let opts = ModelOptions::default();
        let mut machine = super::exec::Machine::new(&prep, &p, &module, &opts);
        assert_eq!(machine.run(), Ok(()), "{}", p.name);
        assert!(machine.steps <= 856, "{}: {} instructions walked", p.name, machine.steps);
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

/// Element 0 of `m` in r6, `spill` (a store to fp-24), a `bpf_iter_num` over fp-24 whose loop
/// takes the lock and runs `body`, and the destroy.
fn iter_over(spill: &str, body: &str) -> String {
    format!(
        " r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n call bpf_map_lookup_elem\n \
         if r0 == 0 goto out\n r6 = r0\n{spill}\n r1 = r10\n r1 += -24\n r2 = 0\n r3 = 3\n call bpf_iter_num_new\n\
         head:\n r1 = r10\n r1 += -24\n call bpf_iter_num_next\n if r0 == 0 goto done\n r1 = r6\n r1 += 4\n \
         call bpf_spin_lock\n{body}\n goto head\ndone:\n r1 = r10\n r1 += -24\n call bpf_iter_num_destroy\n\
         out:\n r0 = 0\n exit"
    )
}

#[test]
fn an_iterator_over_a_spilled_register_scrubs_the_spill() {
    let unlock = " r1 = r6\n r1 += 4\n call bpf_spin_unlock";
    for (p, v) in verdicts(&iter_over(" *(u64 *)(r10 - 24) = r6", unlock)) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    // The lock kept across the loop's back edge: 6.12 refuses the next call under the lock,
    // 7.x the exit (process_bpf_exit_full()), as debian:6.12 / 7.2 / 7.3 do.
    for (p, v) in verdicts(&iter_over(" r7 = 7\n *(u64 *)(r10 - 24) = r7", "")) {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
        let (insn, msg) = if p == "6.12" {
            (18, "function calls are not allowed while holding a lock")
        } else {
            (28, "BPF_EXIT instruction in main prog cannot be used inside bpf_spin_lock-ed region")
        };
        assert_eq!((v.insn, v.message.as_deref()), (Some(insn), Some(msg)), "{p}: {v:?}");
    }
}
