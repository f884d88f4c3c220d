//! Loads through a map pointer and through kernel pointers (`btf_access.rs`) on the sample
//! kernel BTF (`kernel_btf::fixture`: `struct bpf_array { struct bpf_map map; u32 elem_size; }`,
//! `struct bpf_map { u32 map_type; u32 max_entries; struct bpf_map *inner_map_meta; }`,
//! `struct task_struct { u32 pid; char comm[16]; struct task_struct *group_leader, *real_parent; }`
//! with `group_leader` in `task_struct__safe_trusted`). Messages from verifier.c's
//! check_ptr_to_map_access() / check_ptr_to_btf_access() / adjust_ptr_min_max_vals() and btf.c's
//! btf_struct_walk() (7.3 source; the same lines in 6.12 and 7.2).

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, FieldKind, MapType, ProgType};
use crate::import::sec::prog_type_of_section;
use crate::verdict::VerdictKind;

fn with_btf(c: &Case, btf: bool) -> Vec<(String, Verdict)> {
    verdicts_with_kernel_btf(c, btf.then(sample_kernel_btf).as_ref())
}

/// A socket filter with an array map `m` (`bpf_array`).
fn map_case(text: &str) -> Case {
    let maps = vec![cnt_lock_map("m", MapType::Array, FieldKind::Int, false)];
    let symbols = Symbols { maps: vec!["m".into()], kfuncs: vec![] };
    let program = assemble(text, &symbols).expect("test program assembles");
    Case { maps, ..Case::new("t", ProgType::SocketFilter, program, text) }
}

fn map_all(text: &str) -> Vec<(String, Verdict)> {
    with_btf(&map_case(text), true)
}

#[test]
fn map_ptr_fields_load_as_scalars_and_pointers() {
    // bpf_array.map.max_entries: a u32 scalar (its bounds let the branch go both ways).
    let text = "r1 = m ll\n r0 = *(u32 *)(r1 + 4)\n if r0 > 10 goto out\n r0 = 0\nout:\n r0 = 0\n exit\n";
    for (p, v) in map_all(text) {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
    // A pointer member is a plain PTR_TO_BTF_ID ("ptr_"): a store through it is refused.
    let text = "r1 = m ll\n r2 = *(u64 *)(r1 + 8)\n *(u32 *)(r2 + 0) = 1\n r0 = 0\n exit\n";
    for (p, v) in map_all(text) {
        assert_eq!(v, Verdict::reject(Some(3), "only read is supported"), "{p}");
    }
}

#[test]
fn map_ptr_accesses_the_kernel_refuses() {
    let cases = [
        ("r1 = m ll\n *(u32 *)(r1 + 4) = 1\n r0 = 0\n exit\n", 2, "only read from bpf_array is supported"),
        ("r1 = m ll\n r0 = *(u32 *)(r1 - 4)\n exit\n", 2, "R1 is bpf_array invalid negative access: off=-4"),
        (
            "r1 = m ll\n r0 = *(u32 *)(r1 + 8)\n exit\n",
            2,
            "cannot access ptr member inner_map_meta with moff 8 in struct bpf_map with off 8 size 4",
        ),
        ("r1 = m ll\n r0 = *(u32 *)(r1 + 24)\n exit\n", 2, "access beyond struct bpf_array at off 24 size 4"),
        ("r1 = m ll\n r1 += 8\n r0 = 0\n exit\n", 2, "R1 pointer arithmetic on map_ptr prohibited"),
        ("r1 = m ll\n r2 = 0\n r1 -= r2\n r0 = 0\n exit\n", 3, "R1 pointer arithmetic on map_ptr prohibited"),
    ];
    for (text, insn, msg) in cases {
        for (p, v) in map_all(text) {
            assert_eq!(v, Verdict::reject(Some(insn), msg), "{p}: {text}");
        }
    }
    // `+= 0` keeps the map pointer (adjust_ptr_min_max_vals(): known zero, BPF_ADD).
    for (p, v) in map_all("r1 = m ll\n r2 = 0\n r1 += r2\n r0 = *(u32 *)(r1 + 16)\n exit\n") {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
}

#[test]
fn map_ptr_loads_without_kernel_btf_or_for_other_map_types_stay_unsupported() {
    for (p, v) in with_btf(&map_case("r1 = m ll\n r0 = *(u32 *)(r1 + 4)\n exit\n"), false) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}");
        assert!(v.message.as_deref().unwrap_or("").contains("needs the kernel's BTF"), "{p}: {v:?}");
    }
    let mut c = map_case("r1 = m ll\n r0 = *(u32 *)(r1 + 4)\n exit\n");
    c.maps[0].map_type = MapType::SkStorage;
    for (p, v) in with_btf(&c, true) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}");
    }
}

fn tp_case(text: &str) -> Case {
    let st = prog_type_of_section("tp_btf/task_newtask").expect("a section libbpf knows");
    let symbols =
        Symbols { maps: vec![], kfuncs: vec!["bpf_task_acquire".into(), "bpf_task_release".into()] };
    let program = assemble(text, &symbols).expect("test program assembles");
    let mut c = object_case_in("tp_btf/task_newtask", "r0 = 0\nexit\n", &symbols);
    c.prog_type = st.prog_type;
    c.program = program;
    c.text = text.into();
    c.extern_kfuncs = symbols.kfuncs.clone();
    c
}

fn tp_all(text: &str) -> Vec<(String, Verdict)> {
    with_btf(&tp_case(text), true)
}

#[test]
fn trusted_pointer_fields_load_as_scalars() {
    // task->pid and a byte of task->comm: scalars of their size.
    let text = "r1 = *(u64 *)(r1 + 0)\n r0 = *(u32 *)(r1 + 0)\n r2 = *(u8 *)(r1 + 9)\n r0 = 0\n exit\n";
    for (p, v) in tp_all(text) {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
}

#[test]
fn trusted_pointer_accesses_the_kernel_refuses() {
    let cases = [
        ("r1 = *(u64 *)(r1 + 0)\n *(u32 *)(r1 + 0) = 1\n r0 = 0\n exit\n", 1, "only read is supported"),
        (
            "r1 = *(u64 *)(r1 + 0)\n r0 = *(u32 *)(r1 - 8)\n r0 = 0\n exit\n",
            1,
            "R1 is ptr_task_struct invalid negative access: off=-8",
        ),
        (
            "r1 = *(u64 *)(r1 + 0)\n r0 = *(u32 *)(r1 + 22)\n r0 = 0\n exit\n",
            1,
            "access beyond the end of member comm (mend:24) in struct task_struct with off 22 size 4",
        ),
    ];
    for (text, insn, msg) in cases {
        for (p, v) in tp_all(text) {
            assert_eq!(v, Verdict::reject(Some(insn), msg), "{p}: {text}");
        }
    }
}

#[test]
fn walked_pointers_take_the_safe_lists_trust() {
    // task->group_leader is BTF_TYPE_SAFE_TRUSTED: bpf_task_acquire takes it (7.x).
    let text = "r1 = *(u64 *)(r1 + 0)\n r1 = *(u64 *)(r1 + 24)\n call bpf_task_acquire\n \
                if r0 == 0 goto out\n r1 = r0\n call bpf_task_release\nout:\n r0 = 0\n exit\n";
    for (p, v) in tp_all(text).into_iter().filter(|(p, _)| p != "6.12") {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
    // task->parent is on no list: a legacy PTR_TO_BTF_ID, neither trusted nor MEM_RCU.
    let text = "r1 = *(u64 *)(r1 + 0)\n r1 = *(u64 *)(r1 + 40)\n call bpf_task_acquire\n r0 = 0\n exit\n";
    for (p, v) in tp_all(text).into_iter().filter(|(p, _)| p != "6.12") {
        assert_eq!(v, Verdict::reject(Some(2), "R1 must be a rcu pointer"), "{p}");
    }
}

#[test]
fn safe_rcu_members_are_mem_rcu_and_survive_an_rcu_unlock_unused() {
    // task->real_parent is BTF_TYPE_SAFE_RCU: MEM_RCU in a non-sleepable program, which
    // bpf_task_acquire (KF_RCU) takes.
    let acquire = "r1 = *(u64 *)(r1 + 0)\n r1 = *(u64 *)(r1 + 32)\n call bpf_task_acquire\n \
                   if r0 == 0 goto out\n r1 = r0\n call bpf_task_release\nout:\n r0 = 0\n exit\n";
    for (p, v) in tp_all(acquire).into_iter().filter(|(p, _)| p != "6.12") {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
    // It is a pointer the kernel types as rcu_ptr_: a store through it is refused.
    let store = "r1 = *(u64 *)(r1 + 0)\n r1 = *(u64 *)(r1 + 32)\n *(u32 *)(r1 + 0) = 0\n r0 = 0\n exit\n";
    for (p, v) in tp_all(store) {
        assert_eq!(v, Verdict::reject(Some(2), "only read is supported"), "{p}");
    }
    let mut c = tp_case("r1 = *(u64 *)(r1 + 0)\n r0 = 0\n exit\n");
    let symbols =
        Symbols { maps: vec![], kfuncs: vec!["bpf_rcu_read_lock".into(), "bpf_rcu_read_unlock".into()] };
    let text = "r6 = *(u64 *)(r1 + 0)\n call bpf_rcu_read_lock\n r7 = *(u64 *)(r6 + 32)\n \
                call bpf_rcu_read_unlock\n r0 = 0\n exit\n";
    c.program = assemble(text, &symbols).expect("test program assembles");
    c.text = text.into();
    c.extern_kfuncs = symbols.kfuncs.clone();
    // bpf_rcu_read_unlock with it live: invalidate_rcu_protected_refs() turns it untrusted (7.2
    // at count 0; 7.3 not in a non-sleepable program), unused afterwards: accepted.
    for (p, v) in with_btf(&c, true).into_iter().filter(|(p, _)| p != "6.12") {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
}
