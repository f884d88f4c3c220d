//! The bodies of synchronous callbacks (`bpf_loop`, `bpf_for_each_map_elem`): the kernel's
//! `push_callback_call()` (the same in 6.12, 7.2 and 7.3) pushes a state entering the callback
//! as a new frame, and the caller goes on after the call; at the callback's `BPF_EXIT`,
//! `prepare_func_exit()` checks R0 and returns to the call instruction itself, so the callback
//! is verified again until `is_state_visited()` finds the caller's state at the call seen
//! before. The model keeps the states met at each such call (as for `bpf_iter_num_next`) and
//! stops a path that repeats one; a loop whose state keeps changing gives up (`unsupported`),
//! since `widen_imprecise_scalars()` is not modelled.
//!
//! After the walk, `check_max_stack_depth_subprog()` (7.3; the same rule in 6.12 and 7.2)
//! refuses a `bpf_throw` reached from a callback subprogram.

use super::exec::{Flow, Machine};
use super::scalar::Scalar;
use super::state::{Frame, Reg, State, VarOff};
use super::{Step, Stop};
use crate::case::MapType;
use crate::insn::*;

/// States kept per callback-calling helper call before the model gives up on convergence.
const MAX_CALLBACK_CHECKPOINTS: usize = 32;

/// The deepest call chain the verifier allows (`MAX_CALL_FRAMES`).
const MAX_CALL_FRAMES: usize = 8;

/// The synchronous callback helpers the model walks.
pub(crate) fn walks_callback(name: &str) -> bool {
    matches!(name, "bpf_loop" | "bpf_for_each_map_elem")
}

impl Machine<'_> {
    /// `check_helper_call()` for `bpf_loop` / `bpf_for_each_map_elem` at `pc`: the arguments
    /// (`check_func_arg()`, R1-R4 in order), then `push_callback_call()` with
    /// `set_loop_callback_state()` / `set_map_elem_callback_state()`.
    pub(super) fn sync_callback_call(&mut self, st: &mut State, pc: usize, name: &str) -> Step<Flow> {
        let unsupported = |what: String| Err(Stop::Unsupported(format!("helper {name}: {what}")));
        let mut args = Vec::with_capacity(4);
        for r in 1..=4u8 {
            args.push(self.read_reg(st, pc, r)?);
        }
        let map = match (name, &args[0]) {
            ("bpf_loop", Reg::Scalar(_)) => None,
            ("bpf_for_each_map_elem", Reg::MapPtr { map })
                if matches!(self.map(*map).map_type, MapType::Array | MapType::Hash) =>
            {
                Some(*map)
            }
            (_, other) => return unsupported(format!("R1 of type {}", other.type_str())),
        };
        let Reg::Func { start } = args[1] else {
            return unsupported(format!("R2 of type {} (not a callback)", args[1].type_str()));
        };
        // ARG_PTR_TO_STACK_OR_NULL: a stack pointer or NULL; ARG_ANYTHING flags.
        let ctx_ok = matches!(&args[2], Reg::Stack { .. })
            || matches!(&args[2], Reg::Scalar(s) if s.konst() == Some(0));
        if !ctx_ok || !matches!(args[3], Reg::Scalar(_)) {
            return unsupported("a callback context or flags outside the modelled subset".into());
        }
        // is_state_visited() at the call: a caller state seen here before is pruned. R0 is not
        // read by the call (dead); the callback's frame is gone when it comes back here.
        let mut key = st.clone();
        key.pc = pc;
        key.cur().regs[0] = Reg::NotInit;
        let seen = self.iter_seen.entry_or_default(pc);
        if seen.contains(&key) {
            return Ok(Flow::Done);
        }
        if seen.len() >= MAX_CALLBACK_CHECKPOINTS {
            return unsupported(format!(
                "callback loop at {pc} did not converge in {MAX_CALLBACK_CHECKPOINTS} iterations (the kernel's widening is not modelled)"
            ));
        }
        seen.push(key);
        if st.frames.len() >= MAX_CALL_FRAMES {
            return unsupported("call chain deeper than MAX_CALL_FRAMES".into());
        }
        let sub = self.subprogs.iter().position(|s| *s == start).unwrap_or(0);
        self.callback_subprogs.insert(sub);
        // push_stack(): the state entering the callback, before the call clobbers R0-R5.
        let mut callback = st.clone();
        let mut frame = Frame::new(callback.frames.len(), sub, pc);
        match map {
            // set_loop_callback_state(): R1 the index, R2 the context.
            None => {
                frame.regs[1] = Reg::Scalar(Scalar::unknown());
                frame.regs[2] = args[2].clone();
            }
            // map_set_for_each_callback_args(): R1 the map, R2 its key, R3 its value (a fresh id
            // in 7.3, 0 before), R4 the context.
            Some(map) => {
                let id = if self.profile.callback_value_id { self.fresh_id() } else { 0 };
                frame.regs[1] = Reg::MapPtr { map };
                frame.regs[2] = Reg::MapKey { map };
                frame.regs[3] = Reg::MapValue { map, off: 0, var: VarOff::NONE, id, null: false };
                frame.regs[4] = args[2].clone();
            }
        }
        callback.frames.push(frame);
        callback.pc = start;
        // The caller goes on: R0 an unknown integer (RET_INTEGER), R1-R5 cleared.
        self.clobber(st, Reg::Scalar(Scalar::unknown()));
        Ok(Flow::Branch(pc + 1, callback))
    }

    /// Whether the innermost frame of `st` is a synchronous callback's (its call site is a helper
    /// call, not a bpf-to-bpf call).
    pub(super) fn in_callback(&self, st: &State) -> bool {
        st.frames.len() > 1
            && (self.case.program.insns.get(st.cur_ref().callsite).is_some_and(|i| i.is_helper_call())
                || self.is_rbtree_add_call(st.cur_ref().callsite))
    }

    /// `prepare_func_exit()` for a callback frame (`callee->in_callback_fn`): R0 must be a scalar
    /// within the callback's return range [0, 1], then the walk goes back to the call.
    pub(super) fn callback_exit(&mut self, st: &mut State, pc: usize) -> Step<Flow> {
        match &st.cur_ref().regs[0] {
            Reg::Stack { .. } => return self.reject(pc, "cannot return stack pointer to the caller".into()),
            Reg::Scalar(s) if s.smin >= 0 && s.umax <= 1 => {}
            Reg::Scalar(_) => {
                return Err(Stop::Unsupported(
                    "a callback's R0 outside [0, 1] (verbose_invalid_scalar()'s message) is not modelled"
                        .into(),
                ))
            }
            _ => return self.reject(pc, "R0 not a scalar value".into()),
        }
        let callee = st.frames.pop().expect("callback frame");
        Ok(Flow::Next(callee.callsite))
    }

    /// The `bpf_throw` rule of `check_max_stack_depth_subprog()`, after the walk: from the main
    /// program, following bpf-to-bpf calls and callback references in instruction order, a
    /// `bpf_throw` call in a subprogram whose call chain holds a callback (`is_cb`, set when a
    /// verified path passed it to a callback helper) is refused; no instruction is printed.
    pub(super) fn check_throw_in_callbacks(&self) -> Step<()> {
        if self.callback_subprogs.is_empty() {
            return Ok(());
        }
        // check_max_stack_depth(): from the last subprogram down, each async callback is a root
        // of its own, the main program last.
        for &cb in self.async_callbacks.iter().rev() {
            self.throw_walk(&mut vec![cb])?;
        }
        let mut chain = vec![0usize];
        self.throw_walk(&mut chain)
    }

    fn throw_walk(&self, chain: &mut Vec<usize>) -> Step<()> {
        if chain.len() > MAX_CALL_FRAMES {
            return Err(Stop::Unsupported("call graph deeper than MAX_CALL_FRAMES".into()));
        }
        let idx = *chain.last().expect("a subprogram");
        let insns = &self.case.program.insns;
        let start = self.subprogs[idx];
        let end = self.subprogs.get(idx + 1).copied().unwrap_or(insns.len());
        for (i, insn) in insns.iter().enumerate().take(end).skip(start) {
            let is_kfunc = insn.code == (BPF_JMP | BPF_CALL) && insn.src == BPF_PSEUDO_KFUNC_CALL;
            if is_kfunc && insn.off == 0 && self.case.program.call_name(i) == Some("bpf_throw") {
                if chain.iter().any(|s| self.callback_subprogs.contains(s)) {
                    return Err(Stop::Reject(
                        None,
                        format!("bpf_throw kfunc (insn {i}) cannot be called from callback subprog {idx}"),
                    ));
                }
                continue;
            }
            let func_ref = insn.is_ld_imm64() && insn.src == BPF_PSEUDO_FUNC;
            if !(insn.is_pseudo_call() || func_ref) {
                continue;
            }
            let target = (i as i64 + insn.imm as i64 + 1) as usize;
            let Some(sidx) = self.subprogs.iter().position(|s| *s == target) else { continue };
            // An async callback's reference is not followed (walked as a root).
            if func_ref && self.async_callbacks.contains(&sidx) {
                continue;
            }
            // A bpf-to-bpf call to the exception callback (exception_cb.rs).
            if !func_ref && self.is_exception_cb(sidx) {
                return Err(Stop::Reject(None, format!("insn {i} cannot call exception cb directly")));
            }
            chain.push(sidx);
            self.throw_walk(chain)?;
            chain.pop();
        }
        Ok(())
    }
}
