//! Unit tests for arenas (`model/arena.rs`). Expectations from the verifier sources of each
//! profile (`~/.cache/lockstep/src/{6.12,7.2,7.3}/kernel/bpf/verifier.c`, arena.c): the function is
//! named at each test.

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, MapSpec, MapType, ProgType, ValueLayout};
use crate::verdict::VerdictKind;

/// An arena of 4 pages as `arena_map_alloc()` takes it (`BPF_F_MMAPABLE`, no key or value).
fn arena_map() -> MapSpec {
    MapSpec {
        inner: None,
        name: "arena".into(),
        map_type: MapType::Arena,
        key_size: 0,
        max_entries: 4,
        value: ValueLayout { size: 0, fields: vec![] },
        btf: false,
        global_section: false,
        flags: 1 << 10,
    }
}

fn case(text: &str, maps: Vec<MapSpec>) -> Case {
    let symbols = Symbols {
        maps: maps.iter().map(|m| m.name.clone()).collect(),
        kfuncs: vec!["bpf_arena_alloc_pages".into(), "bpf_arena_free_pages".into()],
    };
    let program = assemble(text, &symbols).expect("test program assembles");
    Case { maps, ..Case::new("t", ProgType::SchedCls, program, text) }
}

fn on_all(text: &str, maps: Vec<MapSpec>) -> Vec<(String, Verdict)> {
    verdicts_on_all_profiles(&case(text, maps))
}

#[test]
fn loads_stores_and_arithmetic_through_a_cast_pointer_are_accepted() {
    // check_alu_op(): addr_space_cast(r, 0, 1) makes PTR_TO_ARENA; check_mem_access() checks no
    // bounds for it; adjust_reg_min_max_vals() allows any arithmetic on it (6.12, 7.2, 7.3).
    let text = "r1 = arena ll\n r2 = 4096\n r2 = addr_space_cast(r2, 0, 1)\n r3 = *(u64 *)(r2 + 0)\n \
                *(u64 *)(r2 + 8) = r3\n r2 += 100000\n r2 &= 255\n *(u32 *)(r2 + 0) = 1\n r0 = 0\n exit";
    for (p, v) in on_all(text, vec![arena_map()]) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn a_cast_without_an_arena_is_refused() {
    // check_alu_op(): "addr_space_cast insn can only be used in a program that has an associated
    // arena", before the source register is read.
    let text = "r2 = 4096\n r2 = addr_space_cast(r2, 0, 1)\n r0 = 0\n exit";
    for (p, v) in on_all(text, vec![]) {
        assert_eq!(
            v,
            Verdict::reject(
                Some(1),
                "addr_space_cast insn can only be used in a program that has an associated arena"
            ),
            "{p}"
        );
    }
}

#[test]
fn a_cast_to_address_space_one_is_a_scalar() {
    // check_alu_op(): imm 1 << 16 (as(0) -> as(1)) marks the register unknown: a load through it
    // is "R2 invalid mem access 'scalar'" (check_mem_access()).
    let text =
        "r1 = arena ll\n r2 = 4096\n r2 = addr_space_cast(r2, 1, 0)\n r3 = *(u64 *)(r2 + 0)\n r0 = 0\n exit";
    for (p, v) in on_all(text, vec![arena_map()]) {
        assert_ne!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn an_alu64_insn_with_and_without_an_arena_pointer_is_refused_on_7_3() {
    // adjust_reg_min_max_vals() (7.3 only): needs_zext from the first path (fall-through: the
    // cast), prevent_zext checked on the second. 6.12 and 7.2 have no such check.
    let text = "r1 = arena ll\n call bpf_get_prandom_u32\n r2 = 4096\n if r0 == 0 goto l\n \
                r2 = addr_space_cast(r2, 0, 1)\n l: r2 += 8\n r0 = 0\n exit";
    for (p, v) in on_all(text, vec![arena_map()]) {
        if p == "7.3" {
            assert_eq!(
                v,
                Verdict::reject(Some(6), "same insn cannot be used with and without arena pointer")
            );
        } else {
            assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
        }
    }
}

#[test]
fn a_load_through_an_arena_and_a_stack_pointer_is_refused() {
    // save_aux_ptr_type() after check_mem_access(): PTR_TO_ARENA may not mix with another
    // pointer type on one instruction (reg_type_mismatch_ok(), every profile).
    let text = "r1 = arena ll\n call bpf_get_prandom_u32\n r2 = r10\n r2 += -8\n *(u64 *)(r10 - 8) = r0\n \
                if r0 == 0 goto l\n r2 = 4096\n r2 = addr_space_cast(r2, 0, 1)\n l: r3 = *(u64 *)(r2 + 0)\n r0 = 0\n exit";
    for (p, v) in on_all(text, vec![arena_map()]) {
        assert_eq!(v, Verdict::reject(Some(9), "same insn cannot be used with different pointers"), "{p}");
    }
}

#[test]
fn arena_alloc_pages_is_sleepable_only_on_6_12() {
    // arena.c: 6.12 flags bpf_arena_alloc_pages KF_SLEEPABLE (check_kfunc_call(): "program must
    // be sleepable to call sleepable kfunc %s"); 7.2 and 7.3 have non-sleepable variants. It
    // returns `void *`: a scalar (check_kfunc_call()), cast into the arena to be used.
    let text = "r1 = arena ll\n r2 = 0\n r3 = 1\n r4 = -1\n r5 = 0\n call bpf_arena_alloc_pages\n \
                r0 = addr_space_cast(r0, 0, 1)\n *(u64 *)(r0 + 0) = 1\n r0 = 0\n exit";
    for (p, v) in on_all(text, vec![arena_map()]) {
        match p.as_str() {
            "6.12" => assert_eq!(
                v,
                Verdict::reject(
                    Some(6),
                    "program must be sleepable to call sleepable kfunc bpf_arena_alloc_pages"
                )
            ),
            _ => assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}"),
        }
    }
}

#[test]
fn an_arena_the_kernel_refuses_to_create_is_not_judged() {
    // arena_map_alloc(): key and value size 0, pages > 0, BPF_F_MMAPABLE set, else -EINVAL.
    let text = "r1 = arena ll\n r0 = 0\n exit";
    for bad in [MapSpec { flags: 0, ..arena_map() }, MapSpec { key_size: 4, ..arena_map() }] {
        for (p, v) in on_all(text, vec![bad.clone()]) {
            assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
        }
    }
    for (p, v) in on_all(text, vec![arena_map()]) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn an_atomic_through_a_stack_and_an_arena_pointer_is_refused_on_7x() {
    // verifier_arena's mixed_arena_stack_atomic: check_atomic_rmw() saves the pointer type of
    // each path (save_aux_ptr_type(): the stack path first, then the arena path refused, 7.2 and
    // 7.3); 6.12's check_atomic() saves it only for an arena pointer, so both paths pass.
    let text = "r1 = arena ll\n r6 = r10\n r6 += -8\n r9 = 0\n *(u64 *)(r6 + 0) = r9\n r7 = 8192\n \
                r7 = addr_space_cast(r7, 0, 1)\n call bpf_get_prandom_u32\n if w0 != 0 goto +2\n r8 = r6\n \
                goto +1\n r8 = r7\n r9 = 1\n lock *(u64 *)(r8 + 0) += r9\n r0 = 0\n exit";
    for (p, v) in on_all(text, vec![arena_map()]) {
        if p == "6.12" {
            assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
        } else {
            assert_eq!(
                v,
                Verdict::reject(Some(14), "same insn cannot be used with different pointers"),
                "{p}"
            );
        }
    }
}

#[test]
fn load_acquire_and_store_release_through_an_arena_pointer() {
    // check_atomic_load() / check_atomic_store() (7.2, 7.3): atomic_ptr_type_ok() lets an arena
    // pointer through (x86-64 bpf_jit_supports_insn()), then the load / store as LDX / STX: an
    // unknown u32 (stream.bpf.o's stream_arena_load_acquire_fault). 6.12 has no such opcode.
    let text = "r1 = arena ll\n r2 = 4096\n r2 = addr_space_cast(r2, 0, 1)\n r3 = 7\n \
                store_release((u8 *)(r2 + 3), r3)\n r0 = load_acquire((u32 *)(r2 + 32767))\n \
                if r0 s< 0 goto +1\n exit\n r0 = r9\n exit";
    for (p, v) in on_all(text, vec![arena_map()]) {
        let want = if p == "6.12" { VerdictKind::Unsupported } else { VerdictKind::Accept };
        assert_eq!(v.verdict, want, "{p}: {v:?}");
    }
    // Through a stack pointer: not modelled (is_load_acq_unsafe(), alignment).
    let text = "r1 = 0\n *(u64 *)(r10 - 8) = r1\n r2 = r10\n r0 = load_acquire((u64 *)(r2 - 8))\n exit";
    for (p, v) in on_all(text, vec![]) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
}
