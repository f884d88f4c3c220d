//! Unit tests for allocated objects (`alloc.rs`): `bpf_obj_new()`, `bpf_obj_drop()`,
//! `bpf_refcount_acquire()`, loads and stores through the object, a `bpf_spin_lock` inside it and
//! the reference left at exit. Expected lines are the kernel's (verifier.c / btf.c of 6.12, 7.2,
//! 7.3); the cases the 7.3 selftests share were checked against debian:7.3 (`/work/runs`).

use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, Field, FieldKind, ObjType, ProgType, ValueLayout};
use crate::verdict::VerdictKind;

/// `struct obj { long key; struct bpf_spin_lock lock; struct bpf_refcount ref; }`, BTF id 30.
fn obj_type() -> ObjType {
    let fields = vec![
        Field::new("key", FieldKind::Int, 0, 8),
        Field::new("lock", FieldKind::SpinLock, 8, 4),
        Field::new("ref", FieldKind::Refcount, 12, 4),
    ];
    ObjType { btf_id: Some(30), ..ObjType::new("obj", ValueLayout { size: 16, fields }) }
}

const KFUNCS: [&str; 7] = [
    "bpf_throw",
    "bpf_obj_new_impl",
    "bpf_obj_drop_impl",
    "bpf_obj_new",
    "bpf_obj_drop",
    "bpf_refcount_acquire_impl",
    "bpf_percpu_obj_new_impl",
];

fn case(text: &str) -> Case {
    let kfuncs = KFUNCS.map(String::from).into_iter().collect();
    let symbols = Symbols { maps: vec![], kfuncs };
    let program = assemble(text, &symbols).expect("test program assembles");
    Case {
        types: vec![obj_type()],
        extern_kfuncs: KFUNCS.map(String::from).to_vec(),
        ..Case::new("t", ProgType::SchedCls, program, text.to_string())
    }
}

/// `r6 = bpf_obj_new_impl(obj, NULL)`, NULL-checked (insns 0-5: the call is insn 3).
const NEW6: &str = "r1 = 30 ll\n r2 = 0\n call bpf_obj_new_impl\n if r0 == 0 goto out\n r6 = r0\n";
const OUT: &str = "out:\n r0 = 0\n exit\n";

use super::test_fixtures::{
    assert_on_7x_unsupported_on_612 as assert_7x, assert_on_all_profiles as assert_all,
    verdicts_on_all_profiles as verdicts,
};

#[test]
fn new_then_drop_is_accepted() {
    let c = case(&format!("{NEW6} r1 = r6\n call bpf_obj_drop_impl\n{OUT}"));
    assert_all(&c, &Verdict::accept());
}

#[test]
fn an_object_never_dropped_leaks_its_reference() {
    // check_kfunc_call(): id 1 for the NULL check, acquire_reference() id 2 (the selftest
    // obj_new_acq: "Unreleased reference id=2 alloc_insn=2" on debian:7.3, its call at insn 2).
    let c = case(&format!("{NEW6}{OUT}"));
    assert_all(&c, &Verdict::reject(Some(7), "Unreleased reference id=2 alloc_insn=3"));
}

#[test]
fn a_load_before_the_null_check_is_refused() {
    let c = case("r1 = 30 ll\n r2 = 0\n call bpf_obj_new_impl\n r0 = *(u32 *)(r0 + 0)\n exit\n");
    assert_all(&c, &Verdict::reject(Some(4), "R0 invalid mem access 'ptr_or_null_'"));
}

#[test]
fn fields_read_as_scalars_and_special_fields_are_refused() {
    let ok = case(&format!(
        "{NEW6} r7 = *(u64 *)(r6 + 0)\n *(u32 *)(r6 + 4) = 1\n r1 = r6\n call bpf_obj_drop_impl\n{OUT}"
    ));
    assert_all(&ok, &Verdict::accept());
    let lock = case(&format!("{NEW6} r7 = *(u32 *)(r6 + 8)\n r1 = r6\n call bpf_obj_drop_impl\n{OUT}"));
    assert_all(&lock, &Verdict::reject(Some(6), "direct access to bpf_spin_lock is disallowed"));
    let rc = case(&format!("{NEW6} *(u32 *)(r6 + 12) = 0\n r1 = r6\n call bpf_obj_drop_impl\n{OUT}"));
    assert_all(&rc, &Verdict::reject(Some(6), "direct access to bpf_refcount is disallowed"));
}

#[test]
fn use_after_drop_reads_a_scalar() {
    // release_reference(): every copy of the dropped pointer becomes an unknown scalar.
    let c = case(&format!("{NEW6} r1 = r6\n call bpf_obj_drop_impl\n r0 = *(u32 *)(r6 + 0)\n{OUT}"));
    assert_all(&c, &Verdict::reject(Some(8), "R6 invalid mem access 'scalar'"));
}

#[test]
fn dropping_twice_or_at_an_offset_is_refused() {
    let twice =
        case(&format!("{NEW6} r1 = r6\n call bpf_obj_drop_impl\n r1 = r6\n call bpf_obj_drop_impl\n{OUT}"));
    assert_7x(
        &twice,
        &Verdict::reject(
            Some(9),
            "release kfunc bpf_obj_drop_impl expects referenced PTR_TO_BTF_ID passed to R1",
        ),
    );
    let off = case(&format!("{NEW6} r1 = r6\n r1 += 8\n call bpf_obj_drop_impl\n{OUT}"));
    assert_all(
        &off,
        &Verdict::reject(
            Some(8),
            "R1 must have zero offset when passed to release func or trusted arg to kfunc",
        ),
    );
}

#[test]
fn a_lock_inside_an_object_is_that_object_s_lock() {
    // process_spin_lock(): the lock is (prog BTF, reg->id); a second object's lock is another.
    let same = case(&format!(
        "{NEW6} r1 = r6\n r1 += 8\n call bpf_spin_lock\n r1 = r6\n r1 += 8\n call bpf_spin_unlock\n r1 = r6\n call bpf_obj_drop_impl\n{OUT}"
    ));
    assert_all(&same, &Verdict::accept());
    let two = format!(
        "{NEW6} r1 = 30 ll\n r2 = 0\n call bpf_obj_new_impl\n if r0 == 0 goto drop6\n r7 = r0\n\
         r1 = r6\n r1 += 8\n call bpf_spin_lock\n r1 = r7\n r1 += 8\n call bpf_spin_unlock\n\
         r1 = r7\n call bpf_obj_drop_impl\ndrop6:\n r1 = r6\n call bpf_obj_drop_impl\n{OUT}"
    );
    assert_all(&case(&two), &Verdict::reject(Some(17), "bpf_spin_unlock of different lock"));
    let wrong_off = case(&format!("{NEW6} r1 = r6\n call bpf_spin_lock\n{OUT}"));
    assert_all(
        &wrong_off,
        &Verdict::reject(Some(7), "off 0 doesn't point to 'struct bpf_spin_lock' that is at 8"),
    );
}

#[test]
fn refcount_acquire_takes_a_second_reference() {
    // The owning input makes R0 non-NULL (is_kfunc_ret_null()); its reference is id 3.
    let leak = case(&format!(
        "{NEW6} r1 = r6\n call bpf_refcount_acquire_impl\n r1 = r6\n call bpf_obj_drop_impl\n{OUT}"
    ));
    assert_7x(&leak, &Verdict::reject(Some(11), "Unreleased reference id=3 alloc_insn=7"));
}

#[test]
fn the_implicit_arg_names_exist_only_in_7x() {
    let c = case("r1 = 30 ll\n call bpf_obj_new\n if r0 == 0 goto out\n r1 = r0\n call bpf_obj_drop\nout:\n r0 = 0\n exit\n");
    assert_7x(&c, &Verdict::accept());
}

#[test]
fn a_leak_after_a_scalar_got_an_id_is_unsupported() {
    // assign_scalar_id_before_mov() numbers scalars from the same id_gen.
    let c = case(&format!("call bpf_get_prandom_u32\n r8 = r0\n{NEW6}{OUT}"));
    for (p, v) in verdicts(&c) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
}

#[test]
fn percpu_objects_must_be_plain_scalars() {
    let c = case("r1 = 30 ll\n r2 = 0\n call bpf_percpu_obj_new_impl\n r0 = 0\n exit\n");
    assert_all(
        &c,
        &Verdict::reject(Some(3), "bpf_percpu_obj_new type ID argument must not contain special fields"),
    );
}

/// `case()` plus map `km`: `{ struct obj __kptr *p; }` (array, one entry); r7 = its value.
fn kptr_case(body: &str) -> Case {
    use crate::case::{FieldTarget, MapSpec, MapType};
    let text = format!(
        "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = km ll\n call bpf_map_lookup_elem\n\
         if r0 == 0 goto out\n r7 = r0\n{NEW6}{body}{OUT}"
    );
    let kfuncs = KFUNCS.map(String::from).into_iter().collect();
    let program = assemble(&text, &Symbols { maps: vec!["km".into()], kfuncs }).expect("assembles");
    let p =
        Field { target: Some(FieldTarget::Pointee("obj".into())), ..Field::new("p", FieldKind::Kptr, 0, 8) };
    let map = MapSpec {
        name: "km".into(),
        map_type: MapType::Array,
        key_size: 4,
        max_entries: 1,
        value: ValueLayout { size: 8, fields: vec![p] },
        btf: true,
        global_section: false,
        flags: 0,
        inner: None,
    };
    Case {
        maps: vec![map],
        types: vec![obj_type()],
        extern_kfuncs: KFUNCS.map(String::from).to_vec(),
        ..Case::new("t", ProgType::SchedCls, program, text)
    }
}

#[test]
fn kptr_xchg_stashes_the_object_and_returns_the_old_one() {
    // The stashed object's reference goes with it; the old one (R0) must be dropped.
    let xchg = "r1 = r7\n r2 = r6\n call bpf_kptr_xchg\n";
    let ok = kptr_case(&format!("{xchg} if r0 == 0 goto out\n r1 = r0\n call bpf_obj_drop_impl\n"));
    assert_all(&ok, &Verdict::accept());
    // ids: the lookup 1 on 6.12 (7.x elides its NULL check: no id), obj_new two, the xchg two.
    let leak = kptr_case(xchg);
    for (p, v) in verdicts(&leak) {
        let id = if p == "6.12" { 5 } else { 4 };
        assert_eq!(
            v,
            Verdict::reject(Some(19), format!("Unreleased reference id={id} alloc_insn=17")),
            "{p}"
        );
    }
    let after = kptr_case(&format!("{xchg} r0 = *(u64 *)(r6 + 0)\n"));
    // R6 is invalid after the xchg, checked before the leak at exit.
    assert_all(&after, &Verdict::reject(Some(18), "R6 invalid mem access 'scalar'"));
}

/// `case()` as an fentry program (`BPF_PROG_TYPE_TRACING`, not sleepable) on `ty`.
fn fentry_case(text: &str, ty: ObjType) -> Case {
    let kfuncs = KFUNCS.map(String::from).into_iter().collect();
    let symbols = Symbols { maps: vec![], kfuncs };
    let mut c = super::test_fixtures::object_case_in("fentry/bpf_fentry_test1", text, &symbols);
    c.types = vec![ty];
    c.extern_kfuncs = KFUNCS.map(String::from).to_vec();
    c
}

#[test]
fn obj_drop_in_a_tracing_program_refuses_nmi_unsafe_fields() {
    // check_kfunc_call(): spin lock and refcount are NMI-safe (preempted_bpf_ma_op's fentry
    // programs drop such objects and load on debian:7.3); a graph node or a referenced kptr is
    // not (kptr-loads.toml on debian:7.2 / 7.3). 6.12 has no such check: the list node type is
    // dropped there (debian:6.12).
    let text = format!("{NEW6} r1 = r6\n call bpf_obj_drop_impl\n{OUT}");
    for (p, v) in verdicts(&fentry_case(&text, obj_type())) {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
    let mut node = obj_type();
    node.layout.size = 40;
    node.layout.fields.push(Field::new("node", FieldKind::ListNode, 16, 24));
    for (p, v) in verdicts(&fentry_case(&text, node)) {
        if p == "6.12" {
            assert_eq!(v, Verdict::accept(), "{p}");
        } else {
            let msg = "bpf_obj_drop_impl cannot be used in tracing programs on types with NMI unsafe fields";
            assert_eq!(v, Verdict::reject(Some(7), msg), "{p}");
        }
    }
}

#[test]
fn bpf_throw_with_an_object_held_leaks_its_reference() {
    // check_resource_leak(env, true, true, "bpf_throw"): the reference is reported at the throw
    // (insn 7), as at exit (exceptions_fail reject_with_reference on debian:7.2 / 7.3: "Unreleased
    // reference id=2 alloc_insn=2").
    let c = case(&format!("{NEW6} r1 = 0\n call bpf_throw\n{OUT}"));
    assert_all(&c, &Verdict::reject(Some(7), "Unreleased reference id=2 alloc_insn=3"));
    // Dropped first: the throw ends the path.
    let c = case(&format!("{NEW6} r1 = r6\n call bpf_obj_drop_impl\n r1 = 0\n call bpf_throw\n{OUT}"));
    assert_all(&c, &Verdict::accept());
}
