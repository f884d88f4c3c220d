//! Unit tests for the rbtree API under its lock (`rbtree.rs`). Expected lines are the kernel's
//! (verifier.c of 6.12 / 7.2 / 7.3: `__process_kf_arg_ptr_to_graph_root()`, `check_kfunc_args()`;
//! the lock line as 7.3's rbtree_fail.c `__msg`s have it).

use super::test_fixtures::graph_case;
use super::*;
use crate::case::{Case, FieldKind};

const KFUNCS: [&str; 6] = [
    "bpf_obj_new_impl",
    "bpf_obj_drop_impl",
    "bpf_rbtree_add_impl",
    "bpf_rbtree_first",
    "bpf_rbtree_remove",
    "bpf_res_spin_unlock",
];

/// Map `m`: `{ struct bpf_spin_lock lock; struct bpf_rb_root root __contains(obj, node); }`
/// (head at 8); `struct obj { long key; struct bpf_rb_node node; }` (node at 8), BTF id 30.
fn case(body: &str) -> Case {
    case_tail(body, "")
}

/// [`case`] with `tail` (a callback subprogram) after the main program: [`graph_case`] of an
/// rbtree (`struct bpf_rb_root head`, `struct bpf_rb_node node`).
fn case_tail(body: &str, tail: &str) -> Case {
    graph_case(FieldKind::RbRoot, FieldKind::RbNode, &KFUNCS, body, tail)
}

const LOCK: &str = "r1 = r7\n call bpf_spin_lock\n";
const UNLOCK: &str = "r1 = r7\n call bpf_spin_unlock\n";
use super::test_fixtures::assert_graph_verdict_7x as assert_7x;

const FIRST: &str = "r1 = r7\n r1 += 8\n call bpf_rbtree_first\n";
const ADD: &str =
    "r1 = r7\n r1 += 8\n r2 = r6\n r2 += 8\n r3 = 0\n r4 = 0\n r5 = 0\n call bpf_rbtree_add_impl\n";
const DROP6: &str = "r1 = r6\n call bpf_obj_drop_impl\n";

#[test]
fn first_without_the_lock_is_refused() {
    // check_reg_allocation_locked(): insn 17 is the call.
    let c = case(&format!("{FIRST}{DROP6}"));
    assert_7x(&c, &Verdict::reject(Some(17), "bpf_spin_lock at off=0 must be held for bpf_rb_root"));
}

#[test]
fn first_then_remove_gives_an_owned_node_to_drop() {
    let body = format!(
        "{DROP6}{LOCK}{FIRST} if r0 == 0 goto unl\n r1 = r7\n r1 += 8\n r2 = r0\n call bpf_rbtree_remove\n r8 = r0\n\
         {UNLOCK} if r8 == 0 goto out\n r1 = r8\n r1 += -8\n call bpf_obj_drop_impl\n goto out\nunl:\n{UNLOCK}"
    );
    assert_7x(&case(&body), &Verdict::accept());
    // Without the drop: the removed node's reference leaks (ids: lookup 1, obj_new 2 and 3,
    // first 4, remove 5 and 6; the remove is insn 26).
    let leak = format!(
        "{DROP6}{LOCK}{FIRST} if r0 == 0 goto unl\n r1 = r7\n r1 += 8\n r2 = r0\n call bpf_rbtree_remove\n\
         unl:\n{UNLOCK}"
    );
    assert_7x(&case(&leak), &Verdict::reject(Some(30), "Unreleased reference id=6 alloc_insn=26"));
}

#[test]
fn a_node_from_first_is_invalid_after_the_unlock() {
    let c = case(&format!(
        "{DROP6}{LOCK}{FIRST} r8 = r0\n{UNLOCK} if r8 == 0 goto out\n r0 = *(u64 *)(r8 - 8)\n"
    ));
    assert_7x(&c, &Verdict::reject(Some(26), "R8 invalid mem access 'scalar'"));
}

#[test]
fn add_checks_its_arguments_then_is_unsupported() {
    let nolock = case(ADD);
    assert_7x(&nolock, &Verdict::reject(Some(22), "bpf_spin_lock at off=0 must be held for bpf_rb_root"));
    let locked = case(&format!("{LOCK}{ADD}{UNLOCK}"));
    for p in KernelProfile::all() {
        let v = check(&locked, &p, &crate::module_src::bundled());
        assert_eq!(v.verdict, crate::verdict::VerdictKind::Unsupported, "{}: {v:?}", p.name);
    }
}

#[test]
fn add_walks_its_less_callback_and_the_node_becomes_non_owning() {
    let add =
        "r1 = r7\n r1 += 8\n r2 = r6\n r2 += 8\n r3 = less ll\n r4 = 0\n r5 = 0\n call bpf_rbtree_add_impl\n";
    let less = "less:\n r0 = 0\n exit\n";
    let ok = case_tail(&format!("{LOCK}{add} r0 = *(u64 *)(r6 + 0)\n{UNLOCK}"), less);
    assert_7x(&ok, &Verdict::accept());
    // After the unlock the node is gone (invalidate_non_owning_refs()): insn 28 reads it.
    let after = case_tail(&format!("{LOCK}{add}{UNLOCK} r0 = *(u64 *)(r6 + 0)\n"), less);
    assert_7x(&after, &Verdict::reject(Some(28), "R6 invalid mem access 'scalar'"));
}

#[test]
fn a_res_lock_kfunc_in_the_less_callback() {
    // 7.3's rbtree_api_add_bad_cb_res_spin_unlock: KF_ARG_PTR_TO_RES_SPIN_LOCK refuses any res
    // lock kfunc in an rbtree callback (calls.rs); insn 32 is the cb's bpf_res_spin_unlock.
    let add =
        "r1 = r7\n r1 += 8\n r2 = r6\n r2 += 8\n r3 = less ll\n r4 = 0\n r5 = 0\n call bpf_rbtree_add_impl\n";
    let less = "less:\n r1 = map[id:m][0]+0\n call bpf_res_spin_unlock\n r0 = 0\n exit\n";
    let c = case_tail(&format!("{LOCK}{add}{UNLOCK}"), less);
    let module = crate::module_src::bundled();
    for p in KernelProfile::all().iter().filter(|p| p.res_spin_lock) {
        let want = Verdict::reject(Some(32), "can't res_spin_{lock,unlock} in rbtree cb");
        assert_eq!(check(&c, p, &module), want, "{}", p.name);
    }
}
