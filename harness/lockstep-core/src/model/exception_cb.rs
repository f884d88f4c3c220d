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
//! The callback's body (which libbpf appends to the program) is not imported: a callback that
//! passes these checks is `unsupported`, and so is one beside other global functions (the order
//! of `do_check_subprogs()` over them is not modelled).

use super::exec::Machine;
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
        if !self.case.globals.is_empty() {
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
        Err(Stop::Unsupported(format!(
            "the body of exception callback `{}` (libbpf appends it) is not walked",
            cb.name
        )))
    }
}
