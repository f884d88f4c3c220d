//! Unit tests for exception callbacks whose body the program holds (exception_cb.rs): libbpf
//! appends it, check_cfg() walks it as a second root, do_check_subprogs() verifies it, then
//! check_max_stack_depth() refuses a bpf_throw in it and a call to it. Kernel verdicts:
//! exceptions_fail.bpf.o and tests/c/exception_cb.bpf.c on debian:6.12, 7.2 and 7.3.

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{CbReturn, ExceptionCb, GlobalFunc, ProgType};
use crate::verdict::VerdictKind;

/// A tc program `text` whose exception callback is the global function at label `cb` (one
/// integer argument, an integer return); `globals` are the other global functions (label, args).
fn with_cb(text: &str, globals: &[(&str, u8)]) -> Case {
    let symbols = Symbols { maps: vec![], kfuncs: vec!["bpf_throw".into()] };
    let program = assemble(text, &symbols).expect("test program assembles");
    let mut c = Case::new("t", ProgType::SchedCls, program, text);
    c.exception_cb = Some(ExceptionCb {
        name: "cb".into(),
        tags: 1,
        global: true,
        ret: CbReturn::Scalar,
        args: 1,
        args_scalar: true,
    });
    c.globals =
        globals.iter().map(|(l, a)| GlobalFunc { label: (*l).into(), args: *a, ctx_args: 0 }).collect();
    c.globals.push(GlobalFunc { label: "cb".into(), args: 1, ctx_args: 0 });
    c
}

#[test]
fn an_appended_exception_callback_is_walked_not_unreachable() {
    // exceptions_fail reject_exception_cb_type_4: nothing calls the callback (check_cfg()'s
    // `ex_insn_beg`), the program throws, the callback returns 0.
    let c = with_cb("r1 = 0\ncall bpf_throw\nr0 = 0\nexit\ncb:\nr0 = 0\nexit\n", &[]);
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    // Its R1 is a scalar: reading it as a pointer is refused in the callback.
    let c = with_cb("r0 = 0\nexit\ncb:\nr0 = *(u32 *)(r1 + 0)\nexit\n", &[]);
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
        assert_eq!(v.insn, Some(2), "{p}: {v:?}");
    }
}

#[test]
fn bpf_throw_in_the_exception_callback_is_refused_after_the_walk() {
    // reject_throwing_exception_cb (debian:7.2 / 7.3): the callback is subprogram 1, is_cb.
    let c = with_cb("r0 = 0\nexit\ncb:\nr1 = 0\ncall bpf_throw\nr0 = 0\nexit\n", &[]);
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(
            v,
            Verdict::reject(None, "bpf_throw kfunc (insn 3) cannot be called from callback subprog 1"),
            "{p}"
        );
    }
}

#[test]
fn a_call_to_the_exception_callback_is_refused_after_the_walk() {
    // reject_exception_cb_call_global_func: main -> gsub -> cb (debian:7.2 / 7.3, "insn 3" there).
    let c = with_cb("call gsub\nexit\ngsub:\nr1 = 0\ncall cb\nexit\ncb:\nr0 = r1\nexit\n", &[("gsub", 0)]);
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v, Verdict::reject(None, "insn 3 cannot call exception cb directly"), "{p}");
    }
    // Beside another global function that does not call it: accepted.
    let c = with_cb("call gsub\nexit\ngsub:\nr0 = 0\nexit\ncb:\nr0 = r1\nexit\n", &[("gsub", 0)]);
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}
