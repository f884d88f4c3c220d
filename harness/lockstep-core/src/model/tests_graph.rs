//! Unit tests for the list API under its lock (`graph.rs`). Expected lines are the kernel's
//! (verifier.c of 6.12 / 7.2 / 7.3; alloc-graph.toml has them from kernel runs); the shapes
//! are those of the 7.3 selftests `linked_list_fail.c` checked on debian:7.3 (`/work/runs`).

use super::test_fixtures::graph_case;
use super::*;
use crate::case::{Case, FieldKind};

const KFUNCS: [&str; 11] = [
    "bpf_obj_new_impl",
    "bpf_obj_drop_impl",
    "bpf_list_push_front",
    "bpf_list_pop_front",
    "bpf_list_front",
    "bpf_list_push_front_impl",
    "bpf_list_add",
    "bpf_list_del",
    "bpf_list_is_first",
    "bpf_list_is_last",
    "bpf_list_empty",
];

/// [`graph_case`] of a list: `struct bpf_list_head head`, `struct bpf_list_node node`.
fn case(body: &str) -> Case {
    graph_case(FieldKind::ListHead, FieldKind::ListNode, &KFUNCS, body, "")
}

const LOCK: &str = "r1 = r7\n call bpf_spin_lock\n";
const UNLOCK: &str = "r1 = r7\n call bpf_spin_unlock\n";
const PUSH: &str =
    "r1 = r7\n r1 += 8\n r2 = r6\n r2 += 8\n r3 = 0\n r4 = 0\n call bpf_list_push_front_impl\n";

use super::test_fixtures::assert_graph_verdict_7x as assert_7x;

#[test]
fn push_under_the_lock_hands_the_node_to_the_list() {
    assert_7x(&case(&format!("{LOCK}{PUSH}{UNLOCK}")), &Verdict::accept());
}

#[test]
fn push_without_the_lock_is_refused() {
    // check_reg_allocation_locked(): insn 21 is the push.
    let c = case(&format!("{PUSH}{LOCK}{UNLOCK}"));
    assert_7x(&c, &Verdict::reject(Some(21), "bpf_spin_lock at off=0 must be held for bpf_list_head"));
}

#[test]
fn a_pushed_node_is_non_owning_until_the_unlock() {
    // Readable under the lock; after bpf_spin_unlock, invalidate_non_owning_refs().
    let ok = case(&format!("{LOCK}{PUSH} r0 = *(u64 *)(r6 + 0)\n{UNLOCK}"));
    assert_7x(&ok, &Verdict::accept());
    let after = case(&format!("{LOCK}{PUSH}{UNLOCK} r0 = *(u64 *)(r6 + 0)\n"));
    assert_7x(&after, &Verdict::reject(Some(26), "R6 invalid mem access 'scalar'"));
    let twice = case(&format!("{LOCK}{PUSH}{PUSH}{UNLOCK}"));
    assert_7x(&twice, &Verdict::reject(Some(30), "R2 expected pointer to allocated object"));
}

#[test]
fn node_offsets_are_checked() {
    let c = case(&format!(
        "{LOCK} r1 = r7\n r1 += 8\n r2 = r6\n r3 = 0\n r4 = 0\n call bpf_list_push_front_impl\n{UNLOCK}"
    ));
    assert_7x(&c, &Verdict::reject(Some(22), "bpf_list_node not found at offset=0"));
    let head = case(&format!(
        "{LOCK} r1 = r7\n r2 = r6\n r2 += 8\n r3 = 0\n r4 = 0\n call bpf_list_push_front_impl\n{UNLOCK}"
    ));
    assert_7x(&head, &Verdict::reject(Some(22), "bpf_list_head not found at offset=0"));
}

#[test]
fn a_popped_node_is_owned_and_must_be_dropped() {
    let pop = "r1 = r7\n r1 += 8\n call bpf_list_pop_front\n r8 = r0\n";
    let ok = case(&format!(
        "{LOCK}{PUSH}{pop}{UNLOCK} if r8 == 0 goto out\n r1 = r8\n r1 += -8\n call bpf_obj_drop_impl\n"
    ));
    assert_7x(&ok, &Verdict::accept());
    // ids: lookup 1, obj_new 2 and 3 (the reference), pop 4 and 5.
    let leak = case(&format!("{LOCK}{PUSH}{pop}{UNLOCK}"));
    assert_7x(&leak, &Verdict::reject(Some(31), "Unreleased reference id=5 alloc_insn=26"));
}

/// The 7.2 / 7.3 verdict `want`; 6.12 has none of bpf_list_add/del/is_first/is_last/empty.
fn assert_7x_only(c: &Case, want: &Verdict) {
    let module = crate::module_src::bundled();
    for p in KernelProfile::all() {
        let v = check(c, &p, &module);
        if p.name == "6.12" {
            assert_eq!(v.verdict, crate::verdict::VerdictKind::Unsupported, "6.12: {v:?}");
        } else {
            assert_eq!(&v, want, "{}", p.name);
        }
    }
}

const PUSH_IMPLIED: &str = "r1 = r7\n r1 += 8\n r2 = r6\n r2 += 8\n call bpf_list_push_front\n";

#[test]
fn list_del_is_first_is_last_take_owned_or_non_owning_nodes() {
    // __nonown_allowed: the pushed (non-owning) node r6, then an owned, unlisted one.
    let nonown = case(&format!(
        "{LOCK}{PUSH_IMPLIED} r1 = r7\n r1 += 8\n r2 = r6\n r2 += 8\n call bpf_list_is_first\n \
         r1 = r7\n r1 += 8\n r2 = r6\n r2 += 8\n call bpf_list_is_last\n \
         r1 = r7\n r1 += 8\n call bpf_list_empty\n{UNLOCK}"
    ));
    assert_7x_only(&nonown, &Verdict::accept());
    let owned = case(&format!(
        "{LOCK} r1 = r7\n r1 += 8\n r2 = r6\n r2 += 8\n call bpf_list_del\n r8 = r0\n{UNLOCK} \
         r1 = r6\n call bpf_obj_drop_impl\n if r8 == 0 goto out\n r1 = r8\n r1 += -8\n call bpf_obj_drop_impl\n"
    ));
    assert_7x_only(&owned, &Verdict::accept());
    // bpf_list_del's result is an acquired reference (ids: lookup 1, obj_new 2/3, del 4/5).
    let leak = case(&format!(
        "{LOCK} r1 = r7\n r1 += 8\n r2 = r6\n r2 += 8\n call bpf_list_del\n{UNLOCK} r1 = r6\n call bpf_obj_drop_impl\n"
    ));
    assert_7x_only(&leak, &Verdict::reject(Some(27), "Unreleased reference id=5 alloc_insn=21"));
}

#[test]
fn list_add_wants_an_owned_new_node_and_checks_prev() {
    // new = the pushed (non-owning) r6: refused; prev may be non-owning but not NULL.
    let nonown_new = case(&format!(
        "{LOCK}{PUSH_IMPLIED} r1 = r7\n r1 += 8\n r2 = r6\n r2 += 8\n r3 = r6\n r3 += 8\n call bpf_list_add\n{UNLOCK}"
    ));
    assert_7x_only(&nonown_new, &Verdict::reject(Some(28), "R2 expected pointer to allocated object"));
    let null_prev = case(&format!(
        "{LOCK} r1 = r7\n r1 += 8\n call bpf_list_front\n r3 = r0\n r1 = r7\n r1 += 8\n r2 = r6\n r2 += 8\n \
         call bpf_list_add\n{UNLOCK}"
    ));
    assert_7x_only(&null_prev, &Verdict::reject(Some(25), "Possibly NULL pointer passed to trusted R3"));
}

#[test]
fn list_kfuncs_want_the_lock_and_the_node_offset() {
    let unlocked = case(" r1 = r7\n r1 += 8\n call bpf_list_empty\n r1 = r6\n call bpf_obj_drop_impl\n");
    assert_7x_only(
        &unlocked,
        &Verdict::reject(Some(17), "bpf_spin_lock at off=0 must be held for bpf_list_head"),
    );
    let offset = case(&format!("{LOCK} r1 = r7\n r1 += 8\n r2 = r6\n call bpf_list_is_first\n{UNLOCK}"));
    assert_7x_only(&offset, &Verdict::reject(Some(20), "bpf_list_node not found at offset=0"));
}
