//! `bpf_throw` (7.x kfunc; also in 6.12): `check_kfunc_call()` checks the cookie (with the
//! default exception callback, `check_return_code(env, BPF_REG_1, "R1")`), then
//! `process_bpf_exit_full(env, NULL, true)`: `check_resource_leak()` with `exception_exit` and the
//! lock check on (`"bpf_throw cannot be used inside bpf_spin_lock-ed region"`, unreachable after
//! the call rule of `do_check_insn()` refused the call with a lock held), then the path ends.
//! The cookie's range is checked in tc programs (none) and tracing programs (their exit's range).
//! Exception callbacks (`exception_callback:` decl tags): see exception_cb.rs.

use super::exec::{Flow, Machine};
use super::state::{Reg, State};
use super::{Step, Stop};
use crate::case::ProgType;
use crate::insn::{BPF_CALL, BPF_JMP, BPF_PSEUDO_CALL, BPF_PSEUDO_FUNC, BPF_PSEUDO_KFUNC_CALL};

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

    /// `subprog_info[].might_throw` of the subprogram starting at `start` (check_cfg() in cfg.c,
    /// 7.2 and 7.3: `mark_subprog_might_throw()` for a `bpf_throw` call in it, then
    /// `merge_callee_effects()` from every callee of a `BPF_PSEUDO_CALL`, transitively).
    pub(super) fn subprog_might_throw(&self, start: usize) -> bool {
        let p = &self.case.program;
        self.subprog_effect(start, false, |i, insn| {
            insn.code == (BPF_JMP | BPF_CALL)
                && insn.src == BPF_PSEUDO_KFUNC_CALL
                && p.call_name(i) == Some("bpf_throw")
        })
    }

    /// Whether `has(pc, insn)` holds for an instruction of the subprogram starting at `start` or
    /// of a subprogram it calls (`BPF_PSEUDO_CALL`) or, with `callbacks`, takes as a callback
    /// (a `BPF_PSEUDO_FUNC` ld_imm64), transitively: a `subprog_info[]` effect as check_cfg()'s
    /// `merge_callee_effects()` gathers it (cfg.c). Every instruction of a verified program is
    /// reachable (check_cfg()'s "unreachable insn"), so the instructions of a subprogram are what
    /// its DFS visits.
    pub(super) fn subprog_effect(
        &self,
        start: usize,
        callbacks: bool,
        has: impl Fn(usize, &crate::insn::Insn) -> bool,
    ) -> bool {
        let p = &self.case.program;
        let n = p.insns.len();
        let range = |s: usize| {
            let end = self.subprogs.iter().copied().filter(|x| *x > s).min().unwrap_or(n);
            s..end
        };
        let mut seen = std::collections::BTreeSet::new();
        let mut todo = vec![start];
        while let Some(s) = todo.pop() {
            if !seen.insert(s) {
                continue;
            }
            for i in range(s) {
                let Some(insn) = p.insns.get(i) else { break };
                if has(i, insn) {
                    return true;
                }
                let callee = insn.code == (BPF_JMP | BPF_CALL) && insn.src == BPF_PSEUDO_CALL;
                let callback = callbacks && insn.is_ld_imm64() && insn.src == BPF_PSEUDO_FUNC;
                if callee || callback {
                    let target = i as i64 + insn.imm as i64 + 1;
                    if target >= 0 {
                        todo.push(target as usize);
                    }
                }
            }
        }
        false
    }

    /// `check_func_call()` for a global function that may throw (the profile's
    /// `global_call_might_throw`): the path after the call is pushed, the current one ends in
    /// `process_bpf_exit_full(env, NULL, true)`, `bpf_throw`'s checks (the reference leak, then
    /// the IRQ, RCU and preemption regions; a lock was refused before). The model checks them on
    /// the current state, then goes on after the call as the popped state would.
    pub(super) fn global_call_exception_exit(&mut self, st: &mut State, pc: usize) -> Step<()> {
        if !st.refs.is_empty() {
            if st.refs.iter().any(|r| st.iters.values().any(|it| it.id == *r)) {
                return Err(Stop::Unsupported(
                    "a global function that may throw called with a live open-coded iterator (the leak message's ids)"
                        .into(),
                ));
            }
            self.reference_leak(st, pc)?;
        }
        self.region_leak(st, pc, "bpf_throw")?;
        // The path goes on from a pushed state (push_stack()).
        st.ids_exact = false;
        Ok(())
    }

    /// `bpf_throw(cookie)` at `pc`.
    pub(super) fn throw_call(&mut self, st: &mut State, pc: usize) -> Step<Flow> {
        let unsupported =
            |what: &str| Err(Stop::Unsupported(format!("kfunc bpf_throw: {what} is not modelled")));
        // return_retval_range() has no range for tc programs: check_return_code() only reads R1.
        // A tracing program's range is the one its exit has (fentry / fexit: [0, 0]); a cookie
        // outside it is refused at the call with verbose_invalid_scalar()'s line, "At program
        // exit" even in a global function (debian:7.2 / 7.3, exceptions_fail
        // reject_set_exception_cb_bad_ret2, reject_out_of_range_global_throw).
        let range = match (self.case.prog_type, self.return_rule()) {
            (ProgType::SchedCls | ProgType::SchedAct, _) => None,
            // Only with the default exception callback (no `exception_callback:` tag).
            (ProgType::Tracing, super::attach::ReturnRule::Range(lo, hi))
                if self.case.exception_cb.is_none() =>
            {
                Some((lo, hi))
            }
            _ => return unsupported("the cookie's return-code check outside tc and fentry/fexit programs"),
        };
        let Reg::Scalar(cookie) = st.cur_ref().regs[1] else {
            return unsupported("a cookie that is not a scalar");
        };
        // In an async callback check_return_code() uses the callback's range and "At async
        // callback return" (the throw is refused after the walk, callback_walk.rs): only a
        // cookie of 0, inside every range, is modelled there.
        if self.async_callbacks.contains(&st.frames[0].subprog) && cookie.konst() != Some(0) {
            return unsupported("a cookie other than 0 in an async callback");
        }
        if let Some((lo, hi)) = range {
            if !(cookie.smin >= lo && cookie.smax <= hi) {
                let Some(v) = super::timer::invalid_scalar_str(&cookie) else {
                    return unsupported("a cookie with bounds the model may not share with the kernel");
                };
                let msg = format!("At program exit the register R1 has {v} should have been in [{lo}, {hi}]");
                return self.reject(pc, msg);
            }
        }
        if !st.locks.is_empty() {
            return self.reject(pc, "bpf_throw cannot be used inside bpf_spin_lock-ed region".into());
        }
        // check_resource_leak(env, true, true, "bpf_throw") -> check_reference_leak(env,
        // exception_exit = true): every reference of the state, whatever frame took it (7.x keeps
        // them in the verifier state; 6.12 copies the caller's into the callee frame), logged as
        // at the main program's exit ("Unreleased reference id=%d alloc_insn=%d", the first one
        // first). Seen on debian:7.2 and 7.3 (exceptions_fail reject_with_reference,
        // reject_with_cb_reference, reject_with_subprog_reference). An iterator's reference is
        // not modelled here.
        if !st.refs.is_empty() {
            if st.refs.iter().any(|r| st.iters.values().any(|it| it.id == *r)) {
                return unsupported("bpf_throw with a live open-coded iterator (the leak message's ids)");
            }
            self.reference_leak(st, pc)?;
        }
        self.region_leak(st, pc, "bpf_throw")?;
        Ok(Flow::Done)
    }
}
