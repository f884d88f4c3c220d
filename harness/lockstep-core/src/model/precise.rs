//! Which scalars the kernel may mark precise, for the widening of an open-coded iterator loop
//! (`widen_imprecise_scalars()`, called by `process_iter_next_call()`; 6.12, 7.2 and 7.3 alike).
//!
//! At an iterator's `_next` with an ACTIVE iterator, the kernel looks for the previous visit of
//! that instruction on the current path (`find_prev_entry()`) and, in the state it queues for the
//! next iteration, forgets the range of every scalar register or spilled scalar that differs
//! from that visit and is not precise (`maybe_widen_reg()`). Precision comes from backtracking
//! (`bpf_mark_chain_precision()`, kernel/bpf/backtrack.c in 7.3) from a use that needs the value:
//! a decided conditional jump (`check_cond_jmp_op()`, with its linked registers), a helper or
//! kfunc argument, pointer arithmetic, the program's return value where `check_return_code()`
//! has a range. The current state is never marked (`bpf_mark_chain_precision()` marks parents).
//!
//! The model does not track precision. It computes, once per program, an over-approximation:
//! the registers and stack slots whose value at an instruction may flow (backwards through
//! moves, ALU operations, spills and fills, the way `backtrack_insn()` walks) into such a use on
//! some path ([`precise_live`]). A scalar outside that set can never be marked precise, and its
//! value decides no check and no branch the model or the kernel makes, so widening it is exact.
//! Conditional jumps count as uses whether or not they are decided, every call argument counts,
//! and a jump on a register that may share a scalar id (`assign_scalar_id_before_mov()`: a move,
//! spill or fill) counts as a use of every location that may share one (`collect_linked_regs()`).
//! Constructs the analysis does not follow (bpf-to-bpf calls, callbacks, atomics, LD_ABS/IND,
//! `gotox`, a register subtraction) give no answer: the loop is then left as before (no widening).

use super::prune::{successors, Succs};
use crate::insn::*;

/// A set of locations of the program's frame: R0-R9 and the 64 stack slots (slot `i` holds
/// `[-512 + 8i, -504 + 8i)`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Locs {
    regs: u16,
    slots: u64,
}

impl Locs {
    pub(crate) fn has_reg(&self, r: usize) -> bool {
        r < 10 && self.regs & (1 << r) != 0
    }
    fn add_reg(&mut self, r: u8) {
        if r < 10 {
            self.regs |= 1 << r;
        }
    }
    fn del_reg(&mut self, r: u8) {
        if r < 10 {
            self.regs &= !(1 << r);
        }
    }
    fn union(&mut self, o: Locs) {
        self.regs |= o.regs;
        self.slots |= o.slots;
    }
}

/// The slots covering `[off, off + size)` of the stack, None outside it.
fn slot_mask(off: i64, size: u8) -> Option<u64> {
    let end = off + size as i64;
    if off < -512 || end > 0 || size == 0 {
        return None;
    }
    let (a, b) = ((off + 512) / 8, (end - 1 + 512) / 8);
    Some((a..=b).fold(0u64, |m, i| m | 1 << i))
}

/// An 8-byte aligned access of 8 bytes: a store of it overwrites the whole slot.
fn whole_slot(off: i64, size: u8) -> bool {
    size == 8 && off % 8 == 0
}

/// Whether the analysis follows `insn` (see the module's comment).
fn followed(insn: &Insn) -> bool {
    if insn.is_pseudo_call() || (insn.is_ld_imm64() && insn.src == BPF_PSEUDO_FUNC) {
        return false;
    }
    // A register subtracted from another: may be a pointer difference (see the stores).
    if matches!(insn.class(), BPF_ALU | BPF_ALU64) && insn.op() == BPF_SUB && insn.source() == BPF_X {
        return false;
    }
    if insn.dst > 10 || insn.src > 10 && !insn.is_call() && !insn.is_ld_imm64() {
        return false;
    }
    match insn.class() {
        BPF_LD => insn.is_ld_imm64(),
        BPF_LDX => matches!(insn.mode(), BPF_MEM | BPF_MEMSX),
        BPF_ST | BPF_STX => insn.mode() == BPF_MEM,
        _ => true,
    }
}

/// Forward: the locations that may hold a scalar with an id (a move, spill or fill took part in
/// making their value) before each instruction.
fn may_link(insns: &[Insn], succ: &[Succs]) -> Vec<Locs> {
    let n = insns.len();
    let mut at = vec![Locs::default(); n];
    let mut seen = vec![false; n];
    let mut work = vec![0usize];
    seen[0] = true;
    while let Some(pc) = work.pop() {
        let insn = insns[pc];
        let mut c = at[pc];
        let (d, s, off) = (insn.dst, insn.src, insn.off as i64);
        match insn.class() {
            BPF_ALU | BPF_ALU64 if insn.op() == BPF_MOV => {
                c.del_reg(d);
                if insn.source() == BPF_X {
                    c.add_reg(d);
                    c.add_reg(s);
                }
            }
            BPF_LD => c.del_reg(d),
            BPF_LDX => {
                c.add_reg(d);
                match slot_mask(off, insn.size_bytes()).filter(|_| s == 10) {
                    Some(m) => c.slots |= m,
                    None if s == 10 => {}
                    None => c.slots = u64::MAX,
                }
            }
            BPF_ST if d == 10 && whole_slot(off, insn.size_bytes()) => {
                c.slots &= !slot_mask(off, 8).unwrap_or(0);
            }
            BPF_STX => {
                c.add_reg(s);
                match slot_mask(off, insn.size_bytes()).filter(|_| d == 10) {
                    Some(m) => c.slots |= m,
                    None => c.slots = u64::MAX,
                }
            }
            BPF_JMP | BPF_JMP32 if insn.op() == BPF_CALL => {
                for r in 0..=5 {
                    c.del_reg(r);
                }
            }
            _ => {}
        }
        for &t in &succ[pc] {
            if t >= n {
                continue;
            }
            let mut u = at[t];
            u.union(c);
            if u != at[t] || !seen[t] {
                at[t] = u;
                seen[t] = true;
                work.push(t);
            }
        }
    }
    at
}

/// Backward: the locations whose value before each instruction may become precise (see the
/// module's comment), or None where the program has a construct the analysis does not follow.
/// `return_checked`: whether `check_return_code()` marks R0 precise at the main program's exit.
pub(crate) fn precise_live(insns: &[Insn], return_checked: bool) -> Option<Vec<Locs>> {
    let n = insns.len();
    if n == 0 {
        return None;
    }
    let mut succ = Vec::with_capacity(n);
    let mut pc = 0;
    while pc < n {
        if !followed(&insns[pc]) {
            return None;
        }
        succ.push(successors(insns, pc)?);
        if insns[pc].is_ld_imm64() {
            succ.push(Succs::default());
            pc += 1;
        }
        pc += 1;
    }
    succ.truncate(n);
    let links = may_link(insns, &succ);
    let mut live = vec![Locs::default(); n];
    loop {
        let mut changed = false;
        for pc in (0..n).rev() {
            let insn = insns[pc];
            if pc > 0 && insns[pc - 1].is_ld_imm64() {
                continue;
            }
            let mut o = Locs::default();
            for &t in &succ[pc] {
                if let Some(l) = live.get(t) {
                    o.union(*l);
                }
            }
            let (d, s, off) = (insn.dst, insn.src, insn.off as i64);
            match insn.class() {
                BPF_ALU | BPF_ALU64 => match (insn.op(), insn.source()) {
                    (BPF_MOV, BPF_X) if o.has_reg(d as usize) => {
                        o.del_reg(d);
                        o.add_reg(s);
                    }
                    // A move into a register not wanted, or of a constant: nothing wanted before.
                    (BPF_MOV, _) => o.del_reg(d),
                    (BPF_NEG | BPF_END, _) => {}
                    // Pointer arithmetic marks the scalar; a scalar destination passes its mark on.
                    (_, BPF_X) => o.add_reg(s),
                    _ => {}
                },
                BPF_LD => o.del_reg(d),
                BPF_LDX => {
                    if o.has_reg(d as usize) {
                        o.del_reg(d);
                        match slot_mask(off, insn.size_bytes()).filter(|_| s == 10) {
                            Some(m) => o.slots |= m,
                            None => o.slots = u64::MAX,
                        }
                    }
                }
                BPF_ST | BPF_STX => {
                    // A store's base is a pointer (precision needs a scalar); only a pointer
                    // difference (`BPF_SUB | BPF_X`, refused below) can carry a mark to it, where
                    // backtrack_insn() gives up (-ENOTSUPP) and every scalar becomes precise.
                    if d == 10 {
                        let m = slot_mask(off, insn.size_bytes())?;
                        if o.slots & m != 0 {
                            if insn.class() == BPF_STX {
                                o.add_reg(s);
                            }
                            if whole_slot(off, insn.size_bytes()) {
                                o.slots &= !m;
                            }
                        }
                    } else if insn.class() == BPF_STX {
                        o.add_reg(s);
                    }
                }
                _ => match insn.op() {
                    BPF_CALL => {
                        for r in 0..=5 {
                            o.del_reg(r);
                        }
                        for r in 1..=5 {
                            o.add_reg(r);
                        }
                    }
                    BPF_EXIT => o = Locs::default(),
                    BPF_JA => {}
                    // may_goto reads no register.
                    0xe0 => {}
                    _ => {
                        let mut used = vec![d];
                        if insn.source() == BPF_X {
                            used.push(s);
                        }
                        for r in used {
                            o.add_reg(r);
                            if links[pc].has_reg(r as usize) {
                                o.union(links[pc]);
                            }
                        }
                    }
                },
            }
            if insn.is_exit() && return_checked {
                o.add_reg(0);
            }
            if o != live[pc] {
                live[pc] = o;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // What is left at instruction 0 (R2-R5 of a call's arguments never written, say) is no
    // scalar of the kernel's: only scalars enter backtracking, and R2-R9 cannot be read there.
    Some(live)
}
