//! Iterator ctx arguments (`tracing.rs` iter_ctx_arg(): `bpf_iter_reg.ctx_arg_info`), pointer
//! walks outside an RCU critical section of a sleepable program (`btf_access.rs`:
//! check_ptr_to_btf_access()) and `p__map` given a kernel `struct bpf_map *` (`arena.rs`), on the
//! sample kernel BTF's `bpf_iter_bpf_map(struct bpf_iter_meta *meta, struct bpf_map *map)` and its
//! 16-byte struct bpf_map (`max_entries` at 4, `inner_map_meta` at 8). The same rules in 6.12, 7.2
//! and 7.3 (map_iter.c's bpf_map_reg_info, btf_ctx_access(), check_kfunc_args()).

use super::*;
use crate::asm::Symbols;
use crate::case::Case;
use crate::verdict::VerdictKind;

fn iter_case(sec: &str, text: &str) -> Case {
    let symbols = Symbols { maps: vec![], kfuncs: vec!["bpf_arena_alloc_pages".into()] };
    super::test_fixtures::object_case_in(sec, text, &symbols)
}

fn verdicts(c: &Case) -> Vec<(String, Verdict)> {
    let k = super::test_fixtures::sample_kernel_btf();
    super::test_fixtures::verdicts_with_kernel_btf(c, Some(&k))
}

/// `r1 = ctx->map`, NULL-checked, then `tail`.
fn with_map(tail: &str) -> String {
    format!("r1 = *(u64 *)(r1 + 8)\n if r1 == 0 goto out\n {tail}\nout:\n r0 = 0\n exit\n")
}

#[test]
fn the_bpf_map_iterator_argument_is_a_trusted_pointer_or_null() {
    // btf_ctx_access(): ctx_arg_info's PTR_TO_BTF_ID_OR_NULL | PTR_TRUSTED; a field read after
    // the NULL check.
    let text = with_map("r0 = *(u32 *)(r1 + 4)");
    for (p, v) in verdicts(&iter_case("iter/bpf_map", &text)) {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
    // Without the NULL check: check_mem_access() on a maybe-NULL pointer.
    let text = "r1 = *(u64 *)(r1 + 8)\n r0 = *(u32 *)(r1 + 4)\n r0 = 0\n exit\n";
    for (p, v) in verdicts(&iter_case("iter/bpf_map", text)) {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
        assert_eq!(v.insn, Some(1), "{p}: {v:?}");
        assert!(v.message.as_deref().unwrap_or("").contains("trusted_ptr_or_null_"), "{p}: {v:?}");
    }
    // btf_ctx_access(): a pointer argument is read whole.
    let text = "r1 = *(u32 *)(r1 + 8)\n r0 = 0\n exit\n";
    for (p, v) in verdicts(&iter_case("iter/bpf_map", text)) {
        let want = "func 'bpf_iter_bpf_map' size 4 must be 8\ninvalid bpf_context access off=8 size=4";
        assert_eq!(v, Verdict::reject(Some(0), want), "{p}");
    }
}

#[test]
fn an_iterator_map_goes_to_an_arena_kfunc_while_trusted() {
    // iter_maps1 (verifier_arena.c): the trusted map for p__map.
    let call =
        "r6 = r1\n r3 = *(u32 *)(r6 + 4)\n r1 = r6\n r2 = 0\n r4 = 0\n r5 = 0\n call bpf_arena_alloc_pages";
    for (p, v) in verdicts(&iter_case("iter.s/bpf_map", &with_map(call))) {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
    // iter_maps3: map->inner_map_meta walked outside in_rcu_cs() (a sleepable program) is
    // PTR_UNTRUSTED; check_kfunc_args() refuses it.
    let call = "r3 = *(u32 *)(r1 + 4)\n r1 = *(u64 *)(r1 + 8)\n r2 = 0\n r4 = 0\n r5 = 0\n call bpf_arena_alloc_pages";
    for (p, v) in verdicts(&iter_case("iter.s/bpf_map", &with_map(call))) {
        assert_eq!(v, Verdict::reject(Some(7), "R1 must be referenced or trusted"), "{p}");
    }
}

#[test]
fn a_walk_in_a_sleepable_program_outside_rcu_is_untrusted() {
    // check_ptr_to_btf_access(): not in_rcu_cs(), not __safe_trusted: PTR_UNTRUSTED, whose load
    // stays allowed (a probe read); the same walk in a non-sleepable program is the legacy
    // PTR_TO_BTF_ID, also readable.
    let walk = "r1 = *(u64 *)(r1 + 8)\n r0 = *(u32 *)(r1 + 4)";
    for sec in ["iter.s/bpf_map", "iter/bpf_map"] {
        for (p, v) in verdicts(&iter_case(sec, &with_map(walk))) {
            assert_eq!(v, Verdict::accept(), "{sec} on {p}");
        }
    }
}

#[test]
fn another_struct_for_p_map_is_refused_on_7x() {
    // iter_maps2: process_kf_arg_ptr_to_btf_id(): struct bpf_iter_meta does not start with a
    // bpf_map (its first member a scalar: btf_struct_walk() logs nothing). 6.12 words the line
    // with args#0: not modelled.
    let text = "r1 = *(u64 *)(r1 + 0)\n r2 = 0\n r3 = 1\n r4 = 0\n r5 = 0\n call bpf_arena_alloc_pages\n r0 = 0\n exit\n";
    for (p, v) in verdicts(&iter_case("iter.s/bpf_map", text)) {
        if p == "6.12" {
            assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
            continue;
        }
        let want = "kernel function bpf_arena_alloc_pages R1 expected pointer to STRUCT bpf_map but R1 has a pointer to STRUCT bpf_iter_meta";
        assert_eq!(v, Verdict::reject(Some(5), want), "{p}");
    }
}
