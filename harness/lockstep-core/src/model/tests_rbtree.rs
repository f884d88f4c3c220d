//! Unit tests for the rbtree API under its lock (`rbtree.rs`). Expected lines are the kernel's
//! (verifier.c of 6.12 / 7.2 / 7.3: `__process_kf_arg_ptr_to_graph_root()`, `check_kfunc_args()`;
//! the lock line as 7.3's rbtree_fail.c `__msg`s have it).

use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, Field, FieldKind, FieldTarget, MapSpec, MapType, ObjType, ProgType, ValueLayout};

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

/// [`case`] with `tail` (a callback subprogram) after the main program.
fn case_tail(body: &str, tail: &str) -> Case {
    let head = Field {
        target: Some(FieldTarget::Contains { type_name: "obj".into(), node: "node".into() }),
        ..Field::new("head", FieldKind::RbRoot, 8, 16)
    };
    let map = MapSpec {
        name: "m".into(),
        map_type: MapType::Array,
        key_size: 4,
        max_entries: 1,
        value: ValueLayout { size: 24, fields: vec![Field::new("lock", FieldKind::SpinLock, 0, 4), head] },
        btf: true,
        global_section: false,
        flags: 0,
        inner: None,
    };
    let obj = ObjType {
        btf_id: Some(30),
        ..ObjType::new(
            "obj",
            ValueLayout {
                size: 32,
                fields: vec![
                    Field::new("key", FieldKind::Int, 0, 8),
                    Field::new("node", FieldKind::RbNode, 8, 24),
                ],
            },
        )
    };
    // r7 = the map value (insns 0-7), r6 = a new obj (8-13).
    let text = format!(
        "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n call bpf_map_lookup_elem\n\
         if r0 == 0 goto out\n r7 = r0\n r1 = 30 ll\n r2 = 0\n call bpf_obj_new_impl\n\
         if r0 == 0 goto out\n r6 = r0\n{body}\nout:\n r0 = 0\n exit\n{tail}"
    );
    let symbols = Symbols { maps: vec!["m".into()], kfuncs: KFUNCS.map(String::from).into_iter().collect() };
    let program = assemble(&text, &symbols).expect("test program assembles");
    Case {
        maps: vec![map],
        types: vec![obj],
        extern_kfuncs: KFUNCS.map(String::from).to_vec(),
        ..Case::new("t", ProgType::SchedCls, program, text)
    }
}

const LOCK: &str = "r1 = r7\n call bpf_spin_lock\n";
const UNLOCK: &str = "r1 = r7\n call bpf_spin_unlock\n";
/// The same verdict on every profile (6.12's "arg#1" for 7.x's "R2" in the one line that differs).
fn assert_7x(c: &Case, want: &Verdict) {
    let module = crate::module_src::bundled();
    for p in KernelProfile::all() {
        let v = check(c, &p, &module);
        let mut want = want.clone();
        if !p.res_spin_lock && want.message.as_deref() == Some("R2 expected pointer to allocated object") {
            want.message = Some("arg#1 expected pointer to allocated object".into());
        }
        assert_eq!(v, want, "{}", p.name);
    }
}

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
