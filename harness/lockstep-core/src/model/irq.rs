//! IRQ flags (7.2, 7.3; 6.12 has no irq kfuncs): `bpf_local_irq_save` / `bpf_local_irq_restore`
//! and the flag argument of `bpf_res_spin_lock_irqsave` / `bpf_res_spin_unlock_irqrestore`
//! (`process_irq_flag()`): the flag is an 8-byte stack slot marked `STACK_IRQ_FLAG` with the id
//! of an IRQ reference (`mark_stack_slot_irq_flag()`, `acquire_irq_state()`); a restore needs
//! such a slot (`is_irq_flag_reg_valid_init()`), of the same kfunc class
//! (`unmark_stack_slot_irq_flag()`), and the most recent save (`release_irq_state()`). A plain
//! store into the slot scrubs it (`scrub_special_slot()`) and leaves the reference. A main program
//! exit with one held: `check_resource_leak()`'s "BPF_EXIT instruction in main prog cannot be
//! used inside bpf_local_irq_save-ed region" (after the lock and reference checks; rcu.rs).
//!
//! Not modelled (`unsupported`): the out-of-order message where the model's ids may differ from
//! `env->id_gen` (which also numbers scalars the model does not track; `State::ids_exact`), a flag
//! slot over a spilled register or over an iterator other than a one-slot one at the same offset
//! (which the flag's write scrubs, its reference left acquired). Sleepable helpers, kfuncs and global functions in
//! an IRQ-disabled region are `sleep.rs`'s.

use super::exec::{Flow, Machine};
use super::state::{IrqFlag, Reg, StackByte, State};
use super::{Step, Stop};

/// `bpf_local_irq_save` and `bpf_local_irq_restore`.
pub(crate) fn is_native_irq_kfunc(name: &str) -> bool {
    matches!(name, "bpf_local_irq_save" | "bpf_local_irq_restore")
}

impl Machine<'_> {
    /// `bpf_local_irq_save(&flags)` / `bpf_local_irq_restore(&flags)` at `pc`.
    pub(super) fn native_irq_call(&mut self, st: &mut State, pc: usize, name: &str) -> Step<Flow> {
        if !self.profile.res_spin_lock {
            return Err(Stop::Unsupported(format!("kfunc {name} does not exist in {}", self.profile.name)));
        }
        let r1 = st.cur_ref().regs[1].clone();
        self.irq_flag_arg(st, pc, 1, &r1, name == "bpf_local_irq_save", true)?;
        let cur = st.cur();
        for r in 1..=5 {
            cur.regs[r] = Reg::NotInit;
        }
        cur.regs[0] = Reg::NotInit;
        Ok(Flow::Next(pc + 1))
    }

    /// `check_kfunc_args()` for a `KF_ARG_PTR_TO_IRQ_FLAG` argument in `R{regno}`, then
    /// `process_irq_flag()`; `native`: the `bpf_local_irq_*` class, else the res-lock class.
    pub(super) fn irq_flag_arg(
        &mut self,
        st: &mut State,
        pc: usize,
        regno: u8,
        reg: &Reg,
        save: bool,
        native: bool,
    ) -> Step<()> {
        let arg = format!("R{regno}");
        let Reg::Stack { frame, off } = *reg else {
            if matches!(reg, Reg::NotInit) {
                return Err(Stop::Unsupported(format!("an uninitialised irq flag argument {arg}")));
            }
            return self.reject(pc, format!("{arg} doesn't point to an irq flag on stack"));
        };
        // stack_slot_obj_get_spi(): the messages for a misaligned slot are not modelled.
        if off % 8 != 0 || !(-512..=-8).contains(&off) {
            return Err(Stop::Unsupported("a misaligned or out-of-range irq flag slot".into()));
        }
        let live = st.irq.iter().position(|f| f.slot == Some((frame, off)));
        let special = st.frames[frame].stack.spills.contains_key(&off)
            || st.iter_overlaps(frame, off, 8)
            || st.frames[frame].stack.bytes.range(off..off + 8).any(|(_, b)| *b == StackByte::Spill);
        if save {
            // is_irq_flag_reg_valid_uninit(), then check_mem_access() (an 8-byte stack write).
            if live.is_some() {
                return self.reject(pc, format!("expected uninitialized irq flag as {arg}"));
            }
            if special {
                // check_mem_access()'s 8-byte write -> check_stack_write_fixed_off() ->
                // scrub_special_slot() (7.2, 7.3): a one-slot iterator exactly at the flag's slot
                // becomes STACK_MISC and its reference stays acquired (the exit's leak check
                // reports it; irq.c irq_save_iter). Other iterators and spilled registers are not
                // modelled.
                let spilled = st.frames[frame].stack.spills.contains_key(&off)
                    || st.frames[frame].stack.bytes.range(off..off + 8).any(|(_, b)| *b == StackByte::Spill);
                let one_slot = st.iters.get(&(frame, off)).is_some_and(|it| it.slots == 1);
                if spilled || !one_slot {
                    return Err(Stop::Unsupported(
                        "an irq flag saved over a spilled register or iterator".into(),
                    ));
                }
                st.iters.remove(&(frame, off));
            }
            let id = self.fresh_id();
            // Bytes misc, no spill: the slot's marking is st.irq.
            st.frames[frame].stack.write(off, 8, &Reg::NotInit);
            st.irq.push(IrqFlag { id, insn: pc, slot: Some((frame, off)), native });
            return Ok(());
        }
        // is_irq_flag_reg_valid_init().
        let Some(i) = live else {
            return self.reject(pc, format!("expected an initialized irq flag as {arg}"));
        };
        // unmark_stack_slot_irq_flag(): the kfunc class, then release_irq_state().
        if st.irq[i].native != native {
            let class = |n: bool| if n { "native" } else { "lock" };
            return self.reject(
                pc,
                format!(
                    "irq flag acquired by {} kfuncs cannot be restored with {} kfuncs",
                    class(st.irq[i].native),
                    class(native)
                ),
            );
        }
        // release_irq_state(): not the active (last) flag. The message names the active one's id,
        // which follows env->id_gen: printed only where the model's ids are the kernel's.
        if i + 1 != st.irq.len() {
            let active = st.irq[st.irq.len() - 1];
            if !st.ids_exact || !st.refs.is_empty() || !st.iters.is_empty() {
                return Err(Stop::Unsupported(
                    "an irq restore out of order (the message's ids follow env->id_gen, not modelled here)"
                        .into(),
                ));
            }
            return self.reject(
                pc,
                format!(
                    "cannot restore irq state out of order, expected id={} acquired at insn_idx={}",
                    active.id, active.insn
                ),
            );
        }
        st.irq.pop();
        // process_irq_flag() (7.3): a restore that leaves the RCU critical section.
        if self.profile.sleep.rcu_cs_all_regions && !self.in_rcu_cs(st) {
            self.invalidate_rcu_protected_refs(st);
        }
        Ok(())
    }

    /// A load or store of `size` bytes at `at` in `frame`'s stack touching an irq flag slot: a
    /// store scrubs the slot (`scrub_special_slot()`: the reference stays), a load is not
    /// modelled.
    pub(super) fn irq_slot_access(
        &self,
        st: &mut State,
        frame: usize,
        at: i64,
        size: u8,
        store: bool,
    ) -> Step<()> {
        for f in st.irq.iter_mut() {
            let Some((fr, off)) = f.slot else { continue };
            if fr == frame && at < off + 8 && off < at + size as i64 {
                if !store {
                    return Err(Stop::Unsupported("a load from an irq flag stack slot".into()));
                }
                f.slot = None;
            }
        }
        Ok(())
    }
}
