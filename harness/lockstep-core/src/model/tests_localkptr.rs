//! Unit tests for the allocated-object rules of the localkptr branch (alloc.rs): a
//! `bpf_obj_new()` type id that names no struct, `bpf_refcount_acquire()` of a pointer that is
//! no allocated object, an access past the end of an allocated object (a flexible array). The
//! expected lines are the kernel's (verifier.c / btf.c of 6.12, 7.2, 7.3), as debian:7.2 / 7.3
//! print them for the selftests obj_new_no_composite, obj_new_no_struct, obj_new_flex_array and
//! refcount_acquire_non_object (`/work/runs`).

use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, Field, FieldKind, ObjType, ProgType, ValueLayout};
use crate::verdict::VerdictKind;

const KFUNCS: [&str; 4] =
    ["bpf_obj_new_impl", "bpf_obj_drop_impl", "bpf_refcount_acquire_impl", "bpf_obj_new"];

/// `struct flex { int hdr; struct { int lo; int hi; } cells[]; }` (size 4), BTF id 31.
fn flex_type() -> ObjType {
    let fields = vec![Field::new("hdr", FieldKind::Int, 0, 4)];
    ObjType { btf_id: Some(31), ..ObjType::new("flex", ValueLayout { size: 4, fields }) }
}

fn case(text: &str) -> Case {
    let symbols = Symbols { maps: vec![], kfuncs: KFUNCS.map(String::from).into_iter().collect() };
    let program = assemble(text, &symbols).expect("test program assembles");
    Case {
        types: vec![flex_type()],
        extern_kfuncs: KFUNCS.map(String::from).to_vec(),
        non_struct_type_ids: vec![2],
        ..Case::new("t", ProgType::SchedCls, program, text.to_string())
    }
}

use super::test_fixtures::{
    assert_on_7x_unsupported_on_612 as assert_7x, verdicts_on_all_profiles as verdicts,
};

#[test]
fn obj_new_of_a_type_id_that_is_no_struct_is_refused() {
    // check_special_kfunc(): `bpf_core_type_id_local(int)` (obj_new_no_composite) or a union
    // (obj_new_no_struct); the same line on 6.12, 7.2 and 7.3.
    let want =
        Verdict::reject(Some(3), "bpf_obj_new/bpf_percpu_obj_new type ID argument must be of a struct");
    for text in ["r1 = 2 ll\n r2 = 0\n call bpf_obj_new_impl\n r0 = 0\n exit\n"] {
        for (p, v) in verdicts(&case(text)) {
            assert_eq!(v, want, "{p}");
        }
    }
    // An id the object's BTF has no word on stays unsupported.
    for (p, v) in verdicts(&case("r1 = 7 ll\n r2 = 0\n call bpf_obj_new_impl\n r0 = 0\n exit\n")) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
}

#[test]
fn refcount_acquire_of_no_allocated_object_is_refused() {
    // check_kfunc_args(), KF_ARG_PTR_TO_REFCOUNTED_KPTR: `!type_is_ptr_alloc_obj()`
    // (refcount_acquire_non_object passes the ctx: "R1 is neither owning or non-owning ref" at
    // insn 0 on debian:7.3); 6.12 names the argument (`arg#0`, debian:6.12).
    for (text, insn) in [
        ("call bpf_refcount_acquire_impl\n r0 = 0\n exit\n", 0),
        ("r1 = r10\n r1 += -8\n call bpf_refcount_acquire_impl\n r0 = 0\n exit\n", 2),
        ("r1 = 5\n r2 = 0\n call bpf_refcount_acquire_impl\n r0 = 0\n exit\n", 2),
    ] {
        for (p, v) in verdicts(&case(text)) {
            let arg = if p == "6.12" { "arg#0" } else { "R1" };
            assert_eq!(
                v,
                Verdict::reject(Some(insn), format!("{arg} is neither owning or non-owning ref")),
                "{p}"
            );
        }
    }
}

#[test]
fn an_access_past_an_allocated_object_s_end_is_refused_on_7x() {
    // btf_struct_access() -> btf_struct_walk(.., walk_flex_arrays = false) for MEM_ALLOC
    // (obj_new_flex_array: "access beyond struct obj_new_flex at off 8 size 4" on debian:7.3);
    // 6.12 walks the flexible array: unsupported there.
    let new = "r1 = 31 ll\n r2 = 0\n call bpf_obj_new_impl\n if r0 == 0 goto out\n r6 = r0\n";
    let want = Verdict::reject(Some(6), "access beyond struct flex at off 8 size 4");
    assert_7x(&case(&format!("{new} *(u32 *)(r6 + 8) = 42\nout:\n r0 = 0\n exit\n")), &want);
    let want = Verdict::reject(Some(7), "access beyond struct flex at off 6 size 2");
    assert_7x(&case(&format!("{new} r1 = r6\n r0 = *(u16 *)(r1 + 6)\nout:\n r0 = 0\n exit\n")), &want);
}

/// Map `km`: `{ struct <pointee> __kptr *p; }`, the pointee a type read only as such (`loc`, or
/// `task_struct`, which the sample kernel BTF has); the program stashes a new `flex` object in it.
fn stash_case(pointee: &str) -> Case {
    use crate::case::{FieldTarget, MapSpec, MapType};
    let text =
        "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = km ll\n call bpf_map_lookup_elem\n\
         if r0 == 0 goto out\n r7 = r0\n r1 = 31 ll\n r2 = 0\n call bpf_obj_new_impl\n if r0 == 0 goto out\n\
         r6 = r0\n r1 = r7\n r2 = r6\n call bpf_kptr_xchg\n if r0 == 0 goto out\n r1 = r0\n\
         call bpf_obj_drop_impl\nout:\n r0 = 0\n exit\n";
    let kfuncs = KFUNCS.map(String::from).into_iter().collect();
    let program = assemble(text, &Symbols { maps: vec!["km".into()], kfuncs }).expect("assembles");
    let p = Field {
        target: Some(FieldTarget::Pointee(pointee.into())),
        ..Field::new("p", FieldKind::Kptr, 0, 8)
    };
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
    let loc = ValueLayout { size: 4, fields: vec![Field::new("data", FieldKind::Int, 0, 4)] };
    Case {
        maps: vec![map],
        types: vec![flex_type(), ObjType { kptr_pointee_only: true, ..ObjType::new(pointee, loc) }],
        extern_kfuncs: KFUNCS.map(String::from).to_vec(),
        ..Case::new("t", ProgType::SchedCls, program, text.to_string())
    }
}

fn verdicts_with_kernel_btf(c: &Case) -> Vec<(String, Verdict)> {
    super::test_fixtures::verdicts_with_kernel_btf(c, Some(&super::test_fixtures::sample_kernel_btf()))
}

#[test]
fn a_pointee_read_only_as_such_is_local_when_the_kernel_lacks_it() {
    // btf_parse_kptr(): no kernel struct `loc`, so the field holds the program's type
    // (MEM_ALLOC) and map_kptr_match_type() refuses another local type (local_kptr_stash_fail's
    // stash_rb_nodes: "invalid kptr access, R2 type=ptr_node_data2 expected=ptr_node_data").
    let c = stash_case("loc");
    for (p, v) in verdicts_with_kernel_btf(&c) {
        assert_eq!(
            v,
            Verdict::reject(Some(17), "invalid kptr access, R2 type=ptr_flex expected=ptr_loc"),
            "{p}"
        );
    }
    // Without the kernel's BTF the model cannot tell.
    for (p, v) in verdicts(&c) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
    // A kernel struct of that name wins: the kernel path, which leaves an allocated R2 alone.
    for (p, v) in verdicts_with_kernel_btf(&stash_case("task_struct")) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
}
