//! A global function called with an acquired reference: `check_func_call()` (6.12, 7.2, 7.3)
//! checks the lock, the sleepable context and the arguments, no reference; the reference stays
//! acquired across the call. Only a program that may throw keeps the call `unsupported`.
//! And an atomic on a map value not checked against NULL: `check_atomic_rmw()` /
//! `check_atomic()` refuse it in `check_mem_access()`, as a load through it.

use super::test_fixtures::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, GlobalFunc, ProgType};
use crate::verdict::{Verdict, VerdictKind};

/// Acquire a module reference, call global `g` with it held in r7, then `tail` (a release, or
/// nothing); `g`'s body is `g_body`.
fn case(tail: &str, g_body: &str) -> Case {
    let text = format!(
        "r1 = 1\ncall lockstep_safe_acquire\nif r0 == 0 goto out\nr7 = r0\nr1 = 0\ncall g\n{tail}\n\
         out:\nr0 = 0\nexit\ng:\n{g_body}\nr0 = 0\nexit\n"
    );
    let module = crate::module_src::bundled();
    let mut kfuncs: Vec<String> = module.kfuncs.keys().cloned().collect();
    kfuncs.push("bpf_throw".into());
    let program = assemble(&text, &Symbols { maps: vec![], kfuncs }).expect("test program assembles");
    let mut c = Case::new("t", ProgType::SchedCls, program, &text);
    c.globals = vec![GlobalFunc { label: "g".into(), args: 1, ctx_args: 0 }];
    c.extern_kfuncs = vec!["bpf_throw".into()];
    c
}

#[test]
fn a_reference_held_across_a_global_call_and_released_after_it_is_accepted() {
    let c = case("r1 = r7\ncall lockstep_safe_release", "");
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn a_global_call_with_a_reference_to_a_function_that_may_throw() {
    // 7.2 / 7.3: check_func_call()'s might_throw ends the path in an exception exit at the call
    // (throw.rs); 6.12 has no might_throw: not modelled there.
    let c = case("r1 = r7\ncall lockstep_safe_release", "if r1 != 0 goto +2\nr1 = 0\ncall bpf_throw");
    for (p, v) in verdicts_on_all_profiles(&c) {
        if p == "6.12" {
            assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
            assert!(v.message.as_deref().unwrap_or("").contains("may throw"), "{p}: {v:?}");
        } else {
            assert_eq!(v, Verdict::reject(Some(5), "Unreleased reference id=2 alloc_insn=1"), "{p}");
        }
    }
}

/// Looks up hash map `m` into r0 without a null check (a hash lookup may return NULL on every
/// profile), then `access`.
fn unchecked_lookup(access: &str) -> Case {
    let text = format!(
        "r1 = 0\n*(u32 *)(r10 - 4) = r1\nr2 = r10\nr2 += -4\nr1 = m ll\ncall bpf_map_lookup_elem\n\
         r1 = 1\n{access}\nr0 = 0\nexit\n"
    );
    let program = assemble(&text, &Symbols { maps: vec!["m".into()], kfuncs: vec![] }).expect("assembles");
    let map = cnt_lock_map("m", crate::case::MapType::Hash, crate::case::FieldKind::SpinLock, true);
    Case { maps: vec![map], ..Case::new("t", ProgType::SchedCls, program, &text) }
}

#[test]
fn an_atomic_on_an_unchecked_map_value_is_refused_as_a_load_through_it_is() {
    let atomic = verdicts_on_all_profiles(&unchecked_lookup("lock *(u32 *)(r0 + 0) += r1"));
    let load = verdicts_on_all_profiles(&unchecked_lookup("r2 = *(u32 *)(r0 + 0)"));
    for ((p, a), (_, l)) in atomic.iter().zip(&load) {
        assert_eq!(a.verdict, VerdictKind::Reject, "{p}: {a:?}");
        assert_eq!((a.insn, &a.message), (l.insn, &l.message), "{p}");
        assert!(a.message.as_deref().unwrap_or("").contains("map_value_or_null"), "{p}: {a:?}");
    }
    // A misaligned one (check_ptr_alignment() first) stays outside the model.
    for (p, v) in verdicts_on_all_profiles(&unchecked_lookup("lock *(u32 *)(r0 + 2) += r1")) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
}
