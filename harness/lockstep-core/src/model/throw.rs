//! `bpf_throw` (7.x kfunc; also in 6.12): `check_kfunc_call()` checks the cookie (with the
//! default exception callback, `check_return_code(env, BPF_REG_1, "R1")`), then
//! `process_bpf_exit_full(env, NULL, true)`: `check_resource_leak()` with `exception_exit` and the
//! lock check on (`"bpf_throw cannot be used inside bpf_spin_lock-ed region"`, unreachable after
//! the call rule of `do_check_insn()` refused the call with a lock held), then the path ends.
//! Exception callbacks (`exception_callback:` decl tags) are not modelled.

use super::exec::{Flow, Machine};
use super::state::{Reg, State};
use super::{Step, Stop};
use crate::case::ProgType;
use crate::insn::{BPF_CALL, BPF_JMP, BPF_PSEUDO_KFUNC_CALL};

impl Machine<'_> {
    /// Whether the program calls `bpf_throw` anywhere (a global function that may throw ends its
    /// caller's path in an exception exit: `check_func_call()`'s `might_throw`).
    pub(super) fn program_throws(&self) -> bool {
        let p = &self.case.program;
        p.insns.iter().enumerate().any(|(i, insn)| {
            insn.code == (BPF_JMP | BPF_CALL)
                && insn.src == BPF_PSEUDO_KFUNC_CALL
                && p.call_name(i) == Some("bpf_throw")
        })
    }

    /// `bpf_throw(cookie)` at `pc`.
    pub(super) fn throw_call(&mut self, st: &mut State, pc: usize) -> Step<Flow> {
        let unsupported =
            |what: &str| Err(Stop::Unsupported(format!("kfunc bpf_throw: {what} is not modelled")));
        // return_retval_range() has no range for tc programs: check_return_code() only reads R1.
        if !matches!(self.case.prog_type, ProgType::SchedCls | ProgType::SchedAct) {
            return unsupported("the cookie's return-code check outside tc programs");
        }
        if !matches!(st.cur_ref().regs[1], Reg::Scalar(_)) {
            return unsupported("a cookie that is not a scalar");
        }
        if !st.locks.is_empty() {
            return self.reject(pc, "bpf_throw cannot be used inside bpf_spin_lock-ed region".into());
        }
        // check_reference_leak(env, exception_exit = true): every frame's references.
        if !st.refs.is_empty() {
            return unsupported(&format!("bpf_throw with {} (the leak message's ids)", st.refs_str()));
        }
        self.region_leak(st, pc, "bpf_throw")?;
        Ok(Flow::Done)
    }
}
