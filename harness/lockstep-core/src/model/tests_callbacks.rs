//! Unit tests for callback references and callback helpers (`model/callbacks.rs`). Expectations
//! from the 6.12, 7.2 and 7.3 verifier sources: `check_ld_imm()` for `BPF_PSEUDO_FUNC`, and
//! `do_check_insn()`'s rule for a helper call with a lock held, which runs before
//! `check_helper_call()` (so before the callback is looked at).

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, FieldKind, GlobalFunc, MapSpec, MapType, ProgType};
use crate::verdict::VerdictKind;

fn lock_map() -> MapSpec {
    cnt_lock_map("m", MapType::Hash, FieldKind::SpinLock, true)
}

/// A case over map `m`; with `func_info`, a global function `gsub` (called first) makes the
/// loader pass BTF func_info.
fn case(text: &str, func_info: bool) -> Case {
    let text = if func_info {
        format!("r1 = 0\ncall gsub\n{text}\ngsub:\n r0 = 0\n exit\n")
    } else {
        text.to_string()
    };
    let symbols = Symbols { maps: vec!["m".into()], kfuncs: vec![] };
    let program = assemble(&text, &symbols).expect("test program assembles");
    let mut c = Case { maps: vec![lock_map()], ..Case::new("t", ProgType::SchedCls, program, &text) };
    if func_info {
        c.globals = vec![GlobalFunc { label: "gsub".into(), args: 1, ctx_args: 0 }];
    }
    c
}

/// Takes the lock of element 0 of `m` (r6 = the element), runs `body`, unlocks; `cb` is a
/// static callback.
fn locked(body: &str) -> String {
    format!(
        "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n call bpf_map_lookup_elem\n \
         if r0 == 0 goto out\n r6 = r0\n r1 = r6\n r1 += 4\n call bpf_spin_lock\n{body}\n \
         r1 = r6\n r1 += 4\n call bpf_spin_unlock\nout:\n r0 = 0\n exit\ncb:\n r0 = 0\n exit"
    )
}

#[test]
fn callback_reference_without_func_info_is_refused_at_the_ld_imm64() {
    // check_ld_imm(): "missing btf func_info" at insn 12, the ld_imm64 after bpf_spin_lock
    // (debian:6.12, 7.2 and 7.3 say the same: tests/corpus/callbacks.toml).
    let c = case(&locked("r2 = cb ll"), false);
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v, Verdict::reject(Some(12), "missing btf func_info"), "{p}");
    }
}

#[test]
fn callback_reference_with_func_info_is_a_func_pointer() {
    // Loading a static callback's address under the lock is no call: accepted.
    let c = case(&locked("r2 = cb ll"), true);
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn callback_helpers_under_a_lock_are_refused_by_the_call_rule() {
    // do_check_insn(): the call is refused before check_helper_call(), at the call (insn 19:
    // the gsub call takes 2, the lock prologue 12, then r1 = 4, the ld_imm64, r3, r4).
    for helper in ["bpf_loop", "bpf_for_each_map_elem"] {
        let body = format!("r1 = 4\n r2 = cb ll\n r3 = 0\n r4 = 0\n call {helper}");
        let c = case(&locked(&body), true);
        for (p, v) in verdicts_on_all_profiles(&c) {
            assert_eq!(
                v,
                Verdict::reject(Some(19), "function calls are not allowed while holding a lock"),
                "{helper} on {p}"
            );
        }
    }
}

#[test]
fn callback_helpers_whose_bodies_are_not_walked_are_unsupported_by_name() {
    // bpf_loop and bpf_for_each_map_elem are walked (model/callback_walk.rs); bpf_find_vma not.
    let c = case(
        "r1 = 0\n r2 = 0\n r3 = cb ll\n r4 = 0\n r5 = 0\n call bpf_find_vma\n r0 = 0\n exit\ncb:\n r0 = 0\n exit",
        true,
    );
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
        assert!(
            v.message.as_deref().unwrap_or("").starts_with("helper bpf_find_vma: its callback"),
            "{p}: {v:?}"
        );
    }
}

#[test]
fn callback_reference_to_a_global_function_or_main_is_refused() {
    // check_ld_imm(): "callback function not static" for a global target.
    let c = case("r2 = gsub ll\n r0 = 0\n exit", true);
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v, Verdict::reject(Some(2), "callback function not static"), "{p}");
    }
}
