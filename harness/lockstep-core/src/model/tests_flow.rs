//! Unit tests for the control-flow rules of issue 14 items 3-4: a failed `bpf_res_spin_lock()`'s
//! return value through 32-bit copies (`check_kfunc_call()`'s fork, `zext_32_to_64()`).

use super::scalar::{CmpOp, Scalar};

/// R0 of the failed-acquisition branch: `__mark_reg_s32_range(R0, -MAX_ERRNO, -1)`.
fn failed_r0() -> Scalar {
    Scalar { smin: -4095, smax: -1, umin: (-4095i64) as u64, umax: u64::MAX }
}

#[test]
fn zext_of_a_failed_res_lock_result_stays_non_zero() {
    let w = failed_r0().zext32();
    assert_eq!((w.umin, w.umax), (0xffff_f001, 0xffff_ffff));
    assert_eq!(CmpOp::Ne.decided32(&w, 0), Some(true));
    assert_eq!(CmpOp::Ne.decided(&w, 0), Some(true));
    // -EDEADLK is in the range: undecided.
    assert_eq!(CmpOp::Ne.decided32(&w, -35), None);
}

#[test]
fn zext_across_a_2_32_block_is_any_u32() {
    let s = Scalar { smin: 0, smax: 1 << 33, umin: 0, umax: 1 << 33 };
    assert_eq!(s.zext32(), Scalar::below(u32::MAX as u64));
}

mod callback_bodies {
    //! Synchronous callback bodies (`push_callback_call()`, `prepare_func_exit()`), and the
    //! `bpf_throw` rule of `check_max_stack_depth_subprog()`; from the 6.12, 7.2 and 7.3 sources.

    use super::super::test_fixtures::*;
    use super::super::*;
    use crate::asm::{assemble, Symbols};
    use crate::case::{Case, FieldKind, GlobalFunc, MapType, ProgType};
    use crate::verdict::VerdictKind;

    /// `main` then `cb`, over map `m`; a global function `gsub` called first makes the loader
    /// pass BTF func_info; `bpf_throw` is declared.
    fn case(main: &str, cb: &str) -> Case {
        let text = format!("r1 = 0\ncall gsub\n{main}\ncb:\n{cb}\ngsub:\n r0 = 0\n exit\n");
        let symbols = Symbols { maps: vec!["m".into()], kfuncs: vec!["bpf_throw".into()] };
        let program = assemble(&text, &symbols).expect("test program assembles");
        let map = cnt_lock_map("m", MapType::Hash, FieldKind::SpinLock, true);
        let mut c = Case { maps: vec![map], ..Case::new("t", ProgType::SchedCls, program, &text) };
        c.globals = vec![GlobalFunc { label: "gsub".into(), args: 1, ctx_args: 0 }];
        c.extern_kfuncs = vec!["bpf_throw".into()];
        c
    }

    const LOOP: &str = "r1 = 4\n r2 = cb ll\n r3 = 0\n r4 = 0\n call bpf_loop\n r0 = 0\n exit";
    const LOOKUP: &str = "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n \
                          call bpf_map_lookup_elem\n if r0 == 0 goto cbout\n r6 = r0\n";

    #[test]
    fn a_callback_taking_and_releasing_a_lock_is_accepted() {
        let cb = format!("{LOOKUP} r1 = r6\n r1 += 4\n call bpf_spin_lock\n r1 = r6\n r1 += 4\n call bpf_spin_unlock\ncbout:\n r0 = 0\n exit");
        for (p, v) in verdicts_on_all_profiles(&case(LOOP, &cb)) {
            assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
        }
    }

    #[test]
    fn a_lock_held_at_callback_exit_meets_the_call_rule_at_the_callsite() {
        // prepare_func_exit() checks no lock for a callback frame; back at the bpf_loop call
        // (insn 7: gsub's call takes 2, then r1, the ld_imm64, r3, r4) with the lock held.
        let cb = format!("{LOOKUP} r1 = r6\n r1 += 4\n call bpf_spin_lock\ncbout:\n r0 = 0\n exit");
        for (p, v) in verdicts_on_all_profiles(&case(LOOP, &cb)) {
            assert_eq!(
                v,
                Verdict::reject(Some(7), "function calls are not allowed while holding a lock"),
                "{p}"
            );
        }
    }

    #[test]
    fn a_callback_returning_nothing_is_refused() {
        // prepare_func_exit(): NOT_INIT is no SCALAR_VALUE (insn 10: the callback's exit).
        for (p, v) in verdicts_on_all_profiles(&case(LOOP, " exit")) {
            assert_eq!(v, Verdict::reject(Some(10), "R0 not a scalar value"), "{p}");
        }
    }

    #[test]
    fn bpf_throw_in_a_callback_is_refused_after_the_walk() {
        // check_max_stack_depth_subprog(): no instruction printed; subprog 1 is cb.
        let cb = " r1 = 0\n call bpf_throw\n r0 = 0\n exit";
        for (p, v) in verdicts_on_all_profiles(&case(LOOP, cb)) {
            assert_eq!(
                v,
                Verdict::reject(None, "bpf_throw kfunc (insn 11) cannot be called from callback subprog 1"),
                "{p}"
            );
        }
    }

    #[test]
    fn bpf_throw_under_a_lock_meets_the_call_rule() {
        // do_check_insn(): bpf_throw has no KF_SPINLOCK_SAFE (no flags at all), insn 15.
        let main = format!(
            "{LOOKUP} r1 = r6\n r1 += 4\n call bpf_spin_lock\n r1 = 0\n call bpf_throw\ncbout:\n {LOOP}"
        );
        for (p, v) in verdicts_on_all_profiles(&case(&main, " r0 = 0\n exit")) {
            assert_eq!(
                v,
                Verdict::reject(Some(15), "function calls are not allowed while holding a lock"),
                "{p}"
            );
        }
    }
}

mod global_ctx_args {
    //! Global functions taking the program's context (`btf_prepare_func_args()`:
    //! `ARG_PTR_TO_CTX`; `btf_check_func_arg_match()`: "R%d expects pointer to ctx").

    use super::super::test_fixtures::*;
    use super::super::*;
    use crate::asm::{assemble, Symbols};
    use crate::case::{Case, GlobalFunc, ProgType};
    use crate::verdict::VerdictKind;

    /// `main`, then a global `g(struct __sk_buff *ctx)` reading `ctx->len`.
    fn case(main: &str) -> Case {
        let text = format!("{main}\ng:\n r0 = *(u32 *)(r1 + 0)\n exit\n");
        let program = assemble(&text, &Symbols::default()).expect("assembles");
        let mut c = Case::new("t", ProgType::SchedCls, program, &text);
        c.globals = vec![GlobalFunc { label: "g".into(), args: 1, ctx_args: 1 }];
        c
    }

    #[test]
    fn the_context_passes_and_the_body_sees_ptr_to_ctx() {
        for (p, v) in verdicts_on_all_profiles(&case("call g\n r0 = 0\n exit")) {
            assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
        }
    }

    #[test]
    fn a_scalar_for_a_context_argument_is_refused() {
        for (p, v) in verdicts_on_all_profiles(&case("r1 = 0\n call g\n r0 = 0\n exit")) {
            assert_eq!(v, Verdict::reject(Some(1), "R1 expects pointer to ctx"), "{p}");
        }
    }
}

mod pointer_null_branches {
    //! `is_branch_taken()` -> `reg_not_null()` (verifier.c of 6.12, 7.2, 7.3): which non-null
    //! pointers a compare against 0 decides. Each branch that the kernel walks reads R9.

    use super::super::test_fixtures::*;
    use crate::asm::{assemble, Symbols};
    use crate::case::{Case, FieldKind, MapType, ProgType};
    use crate::verdict::VerdictKind;

    fn verdicts(text: &str, map: bool) -> Vec<(String, VerdictKind)> {
        let mut syms = Symbols::default();
        if map {
            syms.maps.push("m".into());
        }
        let mut c = Case::new("t", ProgType::SchedCls, assemble(text, &syms).unwrap(), text);
        if map {
            c.maps.push(cnt_lock_map("m", MapType::Hash, FieldKind::Int, true));
        }
        verdicts_on_all_profiles(&c).into_iter().map(|(p, v)| (p, v.verdict)).collect()
    }

    fn all(v: &[(String, VerdictKind)], k: VerdictKind) -> bool {
        v.iter().all(|(_, x)| *x == k)
    }

    #[test]
    fn ctx_and_stack_pointers_against_zero_walk_both_branches() {
        let ctx = verdicts("if r1 == 0 goto bad\nr0 = 0\nexit\nbad:\nr0 = r9\nexit\n", false);
        assert!(all(&ctx, VerdictKind::Reject), "{ctx:?}");
        let stack =
            verdicts("r2 = r10\nr2 += -8\nif r2 != 0 goto ok\nr0 = r9\nexit\nok:\nr0 = 0\nexit\n", false);
        assert!(all(&stack, VerdictKind::Reject), "{stack:?}");
    }

    const LOOKUP: &str = "r1 = 0\n*(u32 *)(r10 - 4) = r1\nr2 = r10\nr2 += -4\nr1 = m ll\ncall bpf_map_lookup_elem\nif r0 == 0 goto out\n";

    #[test]
    fn a_non_null_map_value_against_zero_is_decided_in_64_bits() {
        let v = verdicts(
            &format!("{LOOKUP}if r0 == 0 goto bad\nout:\nr0 = 0\nexit\nbad:\nr0 = r9\nexit\n"),
            true,
        );
        assert!(all(&v, VerdictKind::Accept), "{v:?}");
    }

    #[test]
    fn a_32_bit_compare_of_a_map_value_is_decided_only_on_6_12() {
        let v = verdicts(
            &format!("{LOOKUP}if w0 == 0 goto bad\nout:\nr0 = 0\nexit\nbad:\nr0 = r9\nexit\n"),
            true,
        );
        for (p, k) in &v {
            let want = if p == "6.12" { VerdictKind::Accept } else { VerdictKind::Reject };
            assert_eq!(*k, want, "{p}");
        }
    }
}
