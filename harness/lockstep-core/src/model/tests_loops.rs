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
