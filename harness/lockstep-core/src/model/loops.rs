//! `may_goto` (`BPF_JMP | BPF_JCOND`, `check_cond_jmp_op()`): the walk goes on at the jump
//! target and pushes the fall-through (`push_stack()`, `may_goto_depth + 1`). A loop built on
//! `may_goto` converges where `is_state_visited()` meets, at the `may_goto`, a state equal to one
//! seen there before (the kernel ignores `may_goto_depth` in that comparison); the model keeps the
//! states met at each `may_goto` and stops a path that repeats one. The kernel's widening of
//! imprecise scalars (`widen_imprecise_scalars()`) is not modelled: a loop whose state keeps
//! changing gives up, `unsupported` naming `may_goto`.
//!
//! Open-coded iterators (`is_iter_kfunc()`: `KF_ITER_NEW` / `KF_ITER_NEXT` / `KF_ITER_DESTROY`),
//! the same in 6.12, 7.2 and 7.3 for the shapes modelled: `process_iter_arg()` takes R1 as an
//! 8-aligned stack pointer to the iterator struct (`nr_slots` = its size / 8); `_new` wants the
//! slots uninitialised (`is_iter_reg_valid_uninit()`) and marks them `STACK_ITER` with a
//! reference (`mark_stack_slots_iter()`), `_destroy` releases it (`unmark_stack_slots_iter()`),
//! `_next` on an ACTIVE iterator pushes the state that continues the loop (ACTIVE, R0 a non-null
//! pointer) and goes on DRAINED with R0 = 0 (`process_iter_next_call()`); the loop converges where
//! `is_state_visited()` finds the same state at the call again (here: equal in everything the
//! call does not overwrite, R0 and R2-R5 being dead there). The iterator types are a table
//! ([`ITER_TYPES`]: the struct's size and `_new`'s arguments from kernel/bpf/helpers.c); other
//! shapes and the messages for a bad iterator argument are `unsupported`.

use super::exec::{Flow, Machine};
use super::scalar::Scalar;
use super::state::{IterSlot, Reg, StackByte, State};
use super::{Step, Stop};
use crate::case::ProgType;
use crate::insn::Insn;
use crate::profile::render;

/// States kept per iterator `_next` call before the model gives up on convergence.
const MAX_ITER_CHECKPOINTS: usize = 32;

/// What `bpf_iter_<type>_new()` takes after the iterator (`check_kfunc_args()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IterArg {
    /// A scalar argument (`KF_ARG_ANYTHING`): "is not a scalar" for anything else, not modelled.
    Scalar,
    /// An `__ign` argument (`is_kfunc_arg_ignore()`): skipped, whatever the register holds.
    Ignored,
}

/// An open-coded iterator type: `struct bpf_iter_<name>` and its three kfuncs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct IterType {
    pub(crate) name: &'static str,
    /// `sizeof(struct bpf_iter_<name>) / 8`.
    pub(crate) slots: u8,
    /// `_new`'s arguments from R2 on.
    pub(crate) new_args: &'static [IterArg],
}

/// The iterator types modelled, from kernel/bpf/helpers.c (6.12, 7.2, 7.3 alike):
/// `bpf_iter_num_new(struct bpf_iter_num *it, int start, int end)` (`__u64 __opaque[1]`),
/// `bpf_iter_bits_new(struct bpf_iter_bits *it, const u64 *unsafe_ptr__ign, u32 nr_words)`
/// (`__u64 __opaque[2]`).
pub(crate) const ITER_TYPES: &[IterType] = &[
    IterType { name: "num", slots: 1, new_args: &[IterArg::Scalar, IterArg::Scalar] },
    IterType { name: "bits", slots: 2, new_args: &[IterArg::Ignored, IterArg::Scalar] },
];

/// Which iterator kfunc a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IterOp {
    New,
    Next,
    Destroy,
}

/// `is_iter_kfunc()` for the types of [`ITER_TYPES`]: the type and the operation of kfunc `name`.
pub(crate) fn iter_kfunc(name: &str) -> Option<(&'static IterType, IterOp)> {
    let rest = name.strip_prefix("bpf_iter_")?;
    ITER_TYPES.iter().find_map(|t| {
        let op = match rest.strip_prefix(t.name)?.strip_prefix('_')? {
            "new" => IterOp::New,
            "next" => IterOp::Next,
            "destroy" => IterOp::Destroy,
            _ => return None,
        };
        Some((t, op))
    })
}

/// The part of `st` an iterator's `_next` call at `pc` keeps: R0 and R2-R5 are overwritten by
/// the call without being read, so they are dead at the checkpoint.
fn iter_checkpoint(st: &State, pc: usize) -> State {
    let mut key = st.clone();
    key.pc = pc;
    let cur = key.cur();
    for r in [0usize, 2, 3, 4, 5] {
        cur.regs[r] = Reg::NotInit;
    }
    key
}

/// States kept per `may_goto` before the model gives up on convergence.
const MAX_MAY_GOTO_CHECKPOINTS: usize = 32;

impl Machine<'_> {
    /// `check_cond_jmp_op()` for `may_goto` at `pc` (its fields were checked before the walk).
    pub(super) fn may_goto(&mut self, st: &mut State, pc: usize, insn: Insn) -> Step<Flow> {
        let mut key = st.clone();
        key.pc = pc;
        // The checkpoints share the map of bpf_iter_num_next's: keyed by instruction, and an
        // instruction is either a may_goto or a call.
        let seen = self.iter_seen.entry_or_default(pc);
        let k = key.quick_key();
        if seen.contains_keyed(&key, k) {
            return Ok(Flow::Done);
        }
        if seen.len() >= MAX_MAY_GOTO_CHECKPOINTS {
            return Err(Stop::Unsupported(format!(
                "may_goto loop at {pc} did not converge in {MAX_MAY_GOTO_CHECKPOINTS} iterations (the kernel's widening is not modelled)"
            )));
        }
        seen.push_keyed(std::sync::Arc::new(key), k);
        let mut fall = st.clone();
        fall.pc = pc + 1;
        let target = (pc as i64 + insn.off as i64 + 1) as usize;
        Ok(Flow::Branch(target, fall))
    }

    /// `widen_imprecise_scalars()` (verifier.c, 6.12 / 7.2 / 7.3 alike) on the state `cur` queued
    /// at the iterator `_next` at `pc`, against `prev`, the path's previous visit there
    /// (`find_prev_entry()`): R6-R9 scalars that differ (`maybe_widen_reg()`) and cannot be
    /// precise ([`super::precise::precise_live`] after the call) become unknown. R0-R5 are the call's
    /// (another type in `cur`: not widened). Left as before (no widening, the loop may then not
    /// converge) for a loop in a called frame, a stack that differs (spilled scalars are widened
    /// too, the model's spills of narrow stores are not the kernel's), a register that may be
    /// precise, or a program the analysis does not follow.
    fn widen_imprecise_scalars(&mut self, prev: &State, cur: &mut State, pc: usize) {
        match self.imprecise_changed(prev, cur, pc) {
            Ok(regs) => {
                self.widen_refused.remove(&pc);
                for r in regs {
                    cur.frames[0].regs[r] = Reg::Scalar(Scalar::unknown());
                }
            }
            Err(why) => {
                self.widen_refused.insert(pc, why);
            }
        }
    }

    /// The registers [`Self::widen_imprecise_scalars`] widens, or why it widens none.
    fn imprecise_changed(&self, prev: &State, cur: &State, pc: usize) -> Result<Vec<usize>, String> {
        if prev.frames.len() != 1 || cur.frames.len() != 1 {
            return Err("a loop in a called frame".into());
        }
        if prev.frames[0].stack != cur.frames[0].stack {
            return Err("a stack slot that changes between iterations".into());
        }
        let checked = self.case.prog_type != ProgType::Syscall;
        let Some(after) = self.prep.precise_live(checked).and_then(|l| l.get(pc + 1)) else {
            return Err("a program the precision analysis does not follow".into());
        };
        let mut widen = vec![];
        for r in 6..=9 {
            if let (Reg::Scalar(a), Reg::Scalar(b)) = (prev.frames[0].regs[r], cur.frames[0].regs[r]) {
                if a != b {
                    if after.has_reg(r) {
                        return Err(format!("R{r} changes between iterations and may be precise"));
                    }
                    widen.push(r);
                }
            }
        }
        Ok(widen)
    }

    /// Whether the stack slots `[off, off + size)` of `frame` hold data only: bytes, or spilled
    /// scalars (whose `spilled_ptr` is never `PTR_UNTRUSTED`), no spilled pointer.
    fn only_data_in(&self, st: &State, frame: usize, off: i64, size: i64) -> bool {
        let stack = &st.frames[frame].stack;
        (off..off + size).step_by(8).all(|slot| {
            let spilled = stack.bytes.range(slot..slot + 8).any(|(_, b)| *b == StackByte::Spill);
            match stack.spills.get(&slot) {
                Some((r, _)) => matches!(r, Reg::Scalar(_)),
                None => !spilled,
            }
        })
    }

    /// An open-coded iterator kfunc (`process_iter_arg()`, `process_iter_next_call()`; see the
    /// module's comment).
    pub(super) fn iter_call(
        &mut self,
        st: &mut State,
        pc: usize,
        name: &str,
        ty: &IterType,
        op: IterOp,
    ) -> Step<Flow> {
        let unsupported =
            |what: &str| Err(Stop::Unsupported(format!("kfunc {name}: {what} is not modelled")));
        let Reg::Stack { frame, off } = st.cur_ref().regs[1].clone() else {
            return unsupported("an iterator argument other than a stack pointer");
        };
        let size = 8 * ty.slots as i64;
        if off % 8 != 0 || off < -512 || off + size > 0 {
            return unsupported("a misaligned or out-of-range iterator slot");
        }
        let slot = (frame, off);
        let it = st.iters.get(&slot).copied().filter(|it| it.slots == ty.slots);
        match (op, it) {
            (IterOp::New, None) => {
                if st.iter_overlaps(frame, off, size) {
                    return unsupported("an iterator over another iterator's slots");
                }
                for (i, arg) in ty.new_args.iter().enumerate() {
                    let r = i + 2;
                    if *arg == IterArg::Scalar && !matches!(st.cur_ref().regs[r], Reg::Scalar(_)) {
                        return unsupported(&format!("R{r} that is not a scalar"));
                    }
                }
                // process_iter_arg(): check_mem_access() writes each slot (BPF_DW, no value
                // register) before mark_stack_slots_iter(), which scrubs a spill there (the loader
                // has allow_ptr_leaks: no "attempt to corrupt spilled pointer"); 6.12, 7.2, 7.3
                // alike.
                if st
                    .irq
                    .iter()
                    .any(|f| matches!(f.slot, Some((fr, o)) if fr == frame && (off..off + size).contains(&o)))
                {
                    return unsupported("an iterator over an irq flag's slot");
                }
                for slot in (off..off + size).step_by(8) {
                    st.frames[frame].stack.scrub_spill(slot);
                }
                // mark_stack_slots_iter(): acquire_reference(env, insn_idx), the leak message's
                // alloc_insn.
                let id = self.acquire_ref(st, pc);
                st.iters.insert(slot, IterSlot { id, active: true, slots: ty.slots });
                self.clobber(st, Reg::Scalar(Scalar::unknown()));
                Ok(Flow::Next(pc + 1))
            }
            (IterOp::Destroy, Some(it)) => {
                st.iters.remove(&slot);
                st.refs.retain(|r| *r != it.id);
                self.clobber(st, Reg::NotInit);
                Ok(Flow::Next(pc + 1))
            }
            (IterOp::Next, Some(it)) => {
                if !it.active {
                    // KF_RET_NULL: R0's id (++env->id_gen) before process_iter_next_call().
                    self.fresh_id();
                    self.clobber(st, Reg::Scalar(Scalar::known(0)));
                    return Ok(Flow::Next(pc + 1));
                }
                let key = iter_checkpoint(st, pc);
                let seen = self.iter_seen.entry_or_default(pc);
                let k = key.quick_key();
                if seen.contains_keyed(&key, k) {
                    return Ok(Flow::Done);
                }
                if seen.len() >= MAX_ITER_CHECKPOINTS {
                    let why = self.widen_refused.get(&pc).map(|w| format!(": {w}")).unwrap_or_default();
                    return Err(Stop::Unsupported(format!(
                        "bpf_iter_{} loop at {pc} did not converge in {MAX_ITER_CHECKPOINTS} iterations (the kernel's widening is not modelled{why})",
                        ty.name
                    )));
                }
                if !seen.is_empty() {
                    self.iter_loop_ids.set(true);
                }
                // The checkpoint kept and the loop head are one state (its loop heads dropped:
                // `LoopHeads` compare equal whatever they hold).
                let mut head = key;
                head.loop_heads = Default::default();
                let head = std::sync::Arc::new(head);
                seen.push_keyed(head.clone(), k);
                let prev = st.loop_heads.get(pc);
                // check_kfunc_call(): `int *` (not a struct) is PTR_TO_MEM | MEM_RDONLY of the
                // int's size, KF_RET_NULL gives it PTR_MAYBE_NULL and an id (++env->id_gen, on
                // both paths); process_iter_next_call() then marks the pushed state's R0 not null
                // and the current one's a constant 0 (6.12, 7.2, 7.3 alike).
                self.fresh_id();
                let mut more = st.clone();
                more.iters.insert(slot, IterSlot { active: true, ..it });
                self.clobber(&mut more, Reg::Mem { size: 4, rdonly: true, id: 0, parent: 0, null: false });
                more.pc = pc + 1;
                if let Some(prev) = prev {
                    self.widen_imprecise_scalars(&prev, &mut more, pc);
                }
                more.loop_heads.set(pc, head.clone());
                st.loop_heads.set(pc, head);
                st.iters.insert(slot, IterSlot { active: false, ..it });
                self.clobber(st, Reg::Scalar(Scalar::known(0)));
                Ok(Flow::Branch(pc + 1, more))
            }
            // process_iter_arg() -> is_iter_reg_valid_init() (6.12, 7.2, 7.3): next / destroy on
            // slots that hold no iterator (no STACK_ITER, spilled_ptr.id 0 or no iter btf_id) is
            // -EINVAL; only a spilled PTR_UNTRUSTED pointer there is -EPROTO ("expected an RCU
            // CS"), so slots with a spilled pointer, or another iterator's slots, stay
            // unsupported, as does a second new (is_iter_reg_valid_uninit()).
            (IterOp::Next | IterOp::Destroy, None)
                if !self.profile.messages.iter_uninit.is_empty()
                    && !st.iter_overlaps(frame, off, size)
                    && self.only_data_in(st, frame, off, size) =>
            {
                let msg = render(
                    &self.profile.messages.iter_uninit,
                    &[("name", ty.name.to_string()), ("reg", "R1".into()), ("arg", "0".into())],
                );
                self.reject(pc, msg)
            }
            _ => unsupported("an iterator slot in this state (uninitialised, or re-initialised)"),
        }
    }
}
