//! Exception callbacks (`__exception_cb(f)`: the decl tag `exception_callback:f` on the main
//! program), from the BTF declaration of `f`:
//!
//! - `add_subprog_and_kfunc()` -> `find_exception_callback_insn_off()` (before the walk, no
//!   instruction): "multiple exception callback tags for main subprog", "exception callback
//!   '%s' must have global linkage" (6.12, 7.2, 7.3).
//! - `do_check_subprogs()` verifies the callback after the main program (it is marked called),
//!   `do_check_common()` -> `btf_prepare_func_args()` first: a return type neither void nor a
//!   scalar is "Global function %s() return value not void or scalar. Only those are
//!   supported." (7.2, 7.3); then "exception cb cannot return void" (7.2, 7.3) and "exception
//!   cb only supports single integer argument" (every profile). No instruction is printed: the
//!   main program's verified paths were dropped from the log.
//!
//! The callback's body: libbpf appends it to the program after the program's callees
//! (`bpf_object__relocate()`; import/elf.rs), unless a call appended it before. Then:
//!
//! - `check_cfg()` walks it as a second root (`ex_insn_beg`), `add_subprog_and_kfunc()` makes it
//!   a subprogram (`is_cb`, `is_async_cb`, `is_exception_cb`: `bpf_mark_subprog_exc_cb()`);
//! - `do_check_subprogs()` marks it called in the main program's context and verifies it in
//!   subprogram order among the global functions, R1 a scalar; its `BPF_EXIT` is the main
//!   program's (`in_exception_callback_fn`: `check_return_code(env, BPF_REG_0, "R0")`, the
//!   program type's range, "At program exit the register R0 has ... should have been in [lo, hi]");
//! - `check_max_stack_depth()`: it is a root of its own (an async callback), a `bpf_throw` in it
//!   is "bpf_throw kfunc (insn %d) cannot be called from callback subprog %d", a bpf-to-bpf call
//!   to it "insn %d cannot call exception cb directly" (no newline, no instruction printed).
//!
//! Seen on debian:7.2 and 7.3 (exceptions_fail: reject_exception_cb_type_4,
//! reject_throwing_exception_cb, reject_exception_cb_call_{global,static}_func,
//! reject_set_exception_cb_bad_ret1). Without its body in the program (a case file), a callback
//! that passes the declaration checks stays `unsupported`.

use super::attach::ReturnRule;
use super::exec::Machine;
use super::state::{Reg, State};
use super::{Step, Stop};
use crate::case::CbReturn;

impl Machine<'_> {
    /// `find_exception_callback_insn_off()`, in `add_subprog_and_kfunc()`.
    pub(super) fn exception_cb_tags(&self) -> Step<()> {
        let Some(cb) = &self.case.exception_cb else { return Ok(()) };
        if cb.tags > 1 {
            return Err(Stop::Reject(None, "multiple exception callback tags for main subprog".into()));
        }
        if !cb.global {
            return Err(Stop::Unsupported(format!(
                "exception callback `{}` not found as a global function in the BTF",
                cb.name
            )));
        }
        Ok(())
    }

    /// The exception callback's turn in `do_check_subprogs()`: its declaration's checks.
    pub(super) fn exception_cb_checks(&self) -> Step<()> {
        let Some(cb) = &self.case.exception_cb else { return Ok(()) };
        let body = self.prep.exception_cb_start.is_some();
        if !body && !self.case.globals.is_empty() {
            return Err(Stop::Unsupported(
                "an exception callback beside other global functions (their order) is not modelled".into(),
            ));
        }
        if !cb.args_scalar {
            return Err(Stop::Unsupported(format!(
                "exception callback `{}` with a non-integer argument (btf_prepare_func_args())",
                cb.name
            )));
        }
        let returns = self.profile.exception_cb_return_checks;
        match cb.ret {
            CbReturn::Other if returns => {
                return Err(Stop::Reject(
                    None,
                    format!(
                        "Global function {}() return value not void or scalar. Only those are supported.",
                        cb.name
                    ),
                ));
            }
            CbReturn::Void if returns => {
                return Err(Stop::Reject(None, "exception cb cannot return void".into()));
            }
            CbReturn::Scalar => {}
            _ => {
                return Err(Stop::Unsupported(format!(
                    "exception callback `{}`'s return type on {} is not modelled",
                    cb.name, self.profile.name
                )))
            }
        }
        if cb.args != 1 {
            return Err(Stop::Reject(None, "exception cb only supports single integer argument".into()));
        }
        if body {
            return Ok(());
        }
        Err(Stop::Unsupported(format!(
            "the body of exception callback `{}` (libbpf appends it) is not walked",
            cb.name
        )))
    }

    /// The subprogram index of the exception callback, when the program holds its body.
    fn exception_cb_sub(&self) -> Option<usize> {
        let start = self.prep.exception_cb_start?;
        self.subprogs.iter().position(|s| *s == start)
    }

    /// `bpf_mark_subprog_exc_cb()`: `is_cb` and `is_async_cb`, for `check_max_stack_depth()`
    /// after the walk (set after it here: during the walk the model reads `async_callbacks` as
    /// the frames of `bpf_timer` callbacks, which an exception callback's is not).
    pub(super) fn mark_exception_cb(&mut self) {
        if let Some(sub) = self.exception_cb_sub() {
            self.callback_subprogs.insert(sub);
            self.async_callbacks.insert(sub);
        }
    }

    /// Whether `sidx` is the exception callback (`check_max_stack_depth_subprog()`: a call to it
    /// is refused).
    pub(super) fn is_exception_cb(&self, sidx: usize) -> bool {
        self.exception_cb_sub() == Some(sidx)
    }

    /// `check_return_code(env, BPF_REG_0, "R0")` at the exception callback's `BPF_EXIT`
    /// (`in_exception_callback_fn`: the main program's rule): a scalar R0 outside the program
    /// type's range is refused with verbose_invalid_scalar()'s line, where the model prints the
    /// kernel's bounds (a constant, or an unknown scalar).
    pub(super) fn exception_cb_return(&self, st: &State, pc: usize, rule: ReturnRule) -> Step<()> {
        let ReturnRule::Range(lo, hi) = rule else { return Ok(()) };
        if st.frames.len() != 1 || !self.is_exception_cb(st.frames[0].subprog) {
            return Ok(());
        }
        let Reg::Scalar(s) = self.read_reg(st, pc, 0)? else { return Ok(()) };
        if s.smin >= lo && s.smax <= hi {
            return Ok(());
        }
        let Some(v) = super::timer::invalid_scalar_str(&s) else {
            return Err(Stop::Unsupported(format!(
                "exception callback's R0 outside [{lo}, {hi}] with bounds the model may not share with the kernel"
            )));
        };
        self.reject(pc, format!("At program exit the register R0 has {v} should have been in [{lo}, {hi}]"))
    }
}
