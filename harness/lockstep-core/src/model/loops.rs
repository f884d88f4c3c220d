//! `may_goto` (`BPF_JMP | BPF_JCOND`, `check_cond_jmp_op()`): the walk goes on at the jump
//! target and pushes the fall-through (`push_stack()`, `may_goto_depth + 1`). A loop built on
//! `may_goto` converges where `is_state_visited()` meets, at the `may_goto`, a state equal to one
//! seen there before (the kernel ignores `may_goto_depth` in that comparison); the model keeps the
//! states met at each `may_goto` and stops a path that repeats one. The kernel's widening of
//! imprecise scalars (`widen_imprecise_scalars()`) is not modelled: a loop whose state keeps
//! changing gives up, `unsupported` naming `may_goto`.

use super::exec::{Flow, Machine};
use super::state::State;
use super::{Step, Stop};
use crate::insn::Insn;

/// States kept per `may_goto` before the model gives up on convergence.
const MAX_MAY_GOTO_CHECKPOINTS: usize = 32;

impl Machine<'_> {
    /// `check_cond_jmp_op()` for `may_goto` at `pc` (its fields were checked before the walk).
    pub(super) fn may_goto(&mut self, st: &mut State, pc: usize, insn: Insn) -> Step<Flow> {
        let mut key = st.clone();
        key.pc = pc;
        // The checkpoints share the map of bpf_iter_num_next's: keyed by instruction, and an
        // instruction is either a may_goto or a call.
        let seen = self.iter_seen.entry(pc).or_default();
        if seen.contains(&key) {
            return Ok(Flow::Done);
        }
        if seen.len() >= MAX_MAY_GOTO_CHECKPOINTS {
            return Err(Stop::Unsupported(format!(
                "may_goto loop at {pc} did not converge in {MAX_MAY_GOTO_CHECKPOINTS} iterations (the kernel's widening is not modelled)"
            )));
        }
        seen.push(key);
        let mut fall = st.clone();
        fall.pc = pc + 1;
        let target = (pc as i64 + insn.off as i64 + 1) as usize;
        Ok(Flow::Branch(target, fall))
    }
}
