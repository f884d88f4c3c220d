//! Packet pointers (issue 14, item 4): `PTR_TO_PACKET` / `PTR_TO_PACKET_META` /
//! `PTR_TO_PACKET_END` from a ctx load of `__sk_buff->data` / `data_meta` / `data_end`
//! (`tc_cls_act_is_valid_access()`, sched_cls / sched_act) or `xdp_md->data` / `data_meta` /
//! `data_end` (`xdp_is_valid_access()`), as kernel/bpf/verifier.c of 7.2 and 7.3 treats them
//! (6.12 where it is the same; the tail call differs, the profile's `tail_call_frame_exit`):
//!
//! - a ctx load gives the pointer with id 0 and range 0 (`check_mem_access()`: no id for a
//!   type that cannot be NULL);
//! - `pkt += K` (a known constant K >= 0) keeps the id and the range, moves the offset
//!   (`adjust_ptr_min_max_vals()`; a range of `AT_PKT_END` / `BEYOND_PKT_END` is cleared);
//! - `if pkt' <op> pkt_end` (64-bit `JGT`/`JLT`/`JGE`/`JLE`, either order) gives every
//!   `PTR_TO_PACKET` of the same id the range `off` (or `off + 1`) in the branch where the access
//!   is safe (`try_match_pkt_pointers()` -> `find_good_pkt_pointers()`), and marks the compared
//!   register `AT_PKT_END` / `BEYOND_PKT_END` in the other (`mark_pkt_end()`);
//! - a load or store through `PTR_TO_PACKET` inside [0, range) (`check_packet_access()`);
//! - `clear_all_pkt_pointers()`: every packet pointer (registers and spills of every frame)
//!   becomes an unknown scalar (`mark_reg_invalid()`), after a helper that changes packet data
//!   (`bpf_helper_changes_pkt_data()`, net/core/filter.c: here `bpf_skb_pull_data`), the kfunc
//!   `bpf_xdp_pull_data` (`bpf_is_kfunc_pkt_changing()`), a tail call (see `tail_call_effects()`), and a
//!   global function call whose `subprog_info.changes_pkt_data` is set (cfg.c:
//!   `mark_subprog_changes_pkt_data()` for such a call in it, `merge_callee_effects()` from its
//!   callees, transitively).
//!
//! Outside this (a variable offset, subtraction, `pkt_meta` accesses and compares, an access
//! outside the range, a compare decided by `is_pkt_ptr_branch_taken()`, other program types):
//! `unsupported`, naming the construct.

use super::exec::{Flow, Machine};
use super::scalar::{CmpOp, Scalar};
use super::state::{Reg, State};
use super::{Step, Stop};
use crate::case::ProgType;
use crate::insn::{Insn, BPF_CALL, BPF_JMP, BPF_PSEUDO_KFUNC_CALL};

/// Which packet pointer a [`Reg::Packet`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PktKind {
    /// `PTR_TO_PACKET`.
    Data,
    /// `PTR_TO_PACKET_META`.
    Meta,
    /// `PTR_TO_PACKET_END`.
    End,
}

impl PktKind {
    /// `reg_type_str()`.
    pub fn type_str(self) -> &'static str {
        match self {
            PktKind::Data => "pkt",
            PktKind::Meta => "pkt_meta",
            PktKind::End => "pkt_end",
        }
    }
}

/// `MAX_PACKET_OFF` (include/linux/bpf_verifier.h).
const MAX_PACKET_OFF: i64 = 0xffff;
/// `AT_PKT_END` / `BEYOND_PKT_END` (verifier.c).
const AT_PKT_END: i32 = -1;
const BEYOND_PKT_END: i32 = -2;

/// `bpf_helper_changes_pkt_data()` (net/core/filter.c; the same list in 6.12, 7.2 and 7.3).
pub(crate) fn helper_changes_pkt_data(name: &str) -> bool {
    matches!(
        name,
        "bpf_clone_redirect"
            | "bpf_l3_csum_replace"
            | "bpf_l4_csum_replace"
            | "bpf_lwt_push_encap"
            | "bpf_lwt_seg6_action"
            | "bpf_lwt_seg6_adjust_srh"
            | "bpf_lwt_seg6_store_bytes"
            | "bpf_msg_pop_data"
            | "bpf_msg_pull_data"
            | "bpf_msg_push_data"
            | "bpf_skb_adjust_room"
            | "bpf_skb_change_head"
            | "bpf_skb_change_proto"
            | "bpf_skb_change_tail"
            | "bpf_skb_pull_data"
            | "bpf_skb_store_bytes"
            | "bpf_skb_vlan_pop"
            | "bpf_skb_vlan_push"
            | "bpf_store_hdr_opt"
            | "bpf_xdp_adjust_head"
            | "bpf_xdp_adjust_meta"
            | "bpf_xdp_adjust_tail"
            | "bpf_tail_call"
    )
}

/// `bpf_is_kfunc_pkt_changing()` (7.2, 7.3).
pub(crate) fn kfunc_changes_pkt_data(name: &str) -> bool {
    name == "bpf_xdp_pull_data"
}

/// Whether the program type's ctx loads give packet pointers the model follows.
pub(crate) fn pkt_prog_type(t: ProgType) -> bool {
    matches!(t, ProgType::SchedCls | ProgType::SchedAct | ProgType::Xdp)
}

/// `clear_all_pkt_pointers()`: every packet pointer becomes an unknown scalar.
pub(crate) fn clear_all_pkt_pointers(st: &mut State) {
    st.for_each_reg(|r| {
        if matches!(r, Reg::Packet { .. }) {
            *r = Reg::Scalar(Scalar::unknown());
        }
    });
}

impl Machine<'_> {
    /// `subprog_info[].changes_pkt_data` of the subprogram starting at `start` (cfg.c, as
    /// `subprog_might_throw()`): a helper of `bpf_helper_changes_pkt_data()` or the kfunc
    /// `bpf_xdp_pull_data` in it, or in a subprogram it calls or takes as a callback
    /// (`visit_func_call_insn()` -> `merge_callee_effects()` for both), transitively.
    pub(super) fn subprog_changes_pkt_data(&self, start: usize) -> bool {
        let p = &self.case.program;
        self.subprog_effect(start, true, |i, insn| {
            insn.code == (BPF_JMP | BPF_CALL)
                && match insn.src {
                    0 => crate::helpers::helper_name(insn.imm).is_some_and(helper_changes_pkt_data),
                    BPF_PSEUDO_KFUNC_CALL => p.call_name(i).is_some_and(kfunc_changes_pkt_data),
                    _ => false,
                }
        })
    }

    /// `adjust_ptr_min_max_vals()` on a packet pointer plus a scalar (`b`, already negated for a
    /// subtraction).
    pub(super) fn pkt_add(&self, pc: usize, p: &Reg, b: Scalar, sub: bool) -> Step<Reg> {
        let Reg::Packet { kind, off, range } = *p else { unreachable!("a packet pointer") };
        match b.konst() {
            Some(c) if kind == PktKind::Data && !sub && c >= 0 && off + c <= MAX_PACKET_OFF => {
                Ok(Reg::Packet { kind, off: off + c, range: range.max(0) })
            }
            _ => Err(Stop::Unsupported(format!(
                "packet pointer arithmetic on {} at {pc} (other than adding a known constant to pkt) is not modelled",
                kind.type_str()
            ))),
        }
    }

    /// `check_mem_access()` -> `check_packet_access()` through a packet pointer.
    pub(super) fn pkt_access(
        &self,
        pc: usize,
        base: &Reg,
        off: i64,
        size: u8,
        value: Option<&Reg>,
    ) -> Step<Reg> {
        let Reg::Packet { kind, off: poff, range } = *base else { unreachable!("a packet pointer") };
        if kind != PktKind::Data || !pkt_prog_type(self.case.prog_type) {
            return Err(Stop::Unsupported(format!("an access through {} is not modelled", kind.type_str())));
        }
        // BPF_F_STRICT_ALIGNMENT (1): check_pkt_ptr_alignment() is not modelled.
        if self.case.prog_flags & 1 != 0 {
            return Err(Stop::Unsupported(
                "a packet access with BPF_F_STRICT_ALIGNMENT is not modelled".into(),
            ));
        }
        if value.is_some_and(|v| v.is_pointer()) {
            return Err(Stop::Unsupported("storing a pointer into the packet is not modelled".into()));
        }
        let at = poff + off;
        if range < 0 || at < 0 || at + size as i64 > range as i64 {
            return Err(Stop::Unsupported(format!(
                "a packet access outside the checked range (off={at} size={size} r={range}) is not modelled"
            )));
        }
        let _ = pc;
        Ok(if value.is_some() { Reg::NotInit } else { Reg::Scalar(Scalar::of_size(size)) })
    }

    /// `check_cond_jmp_op()` with a packet pointer on either side.
    pub(super) fn pkt_cmp(
        &self,
        st: &mut State,
        pc: usize,
        insn: Insn,
        cmp: CmpOp,
        dst: Reg,
        src: Option<Reg>,
    ) -> Step<Flow> {
        let unsupported = || {
            Err(Stop::Unsupported(format!("a conditional jump on a packet pointer at {pc} is not modelled")))
        };
        let is32 = insn.class() != BPF_JMP;
        let Some(src) = src else { return unsupported() };
        if is32 {
            return unsupported();
        }
        // (the pkt register, whether it is the dst, its offset, its range)
        let (pkt_reg, pkt_is_dst, off, range) = match (dst, src) {
            (Reg::Packet { kind: PktKind::Data, off, range }, Reg::Packet { kind: PktKind::End, .. }) => {
                (insn.dst, true, off, range)
            }
            (Reg::Packet { kind: PktKind::End, .. }, Reg::Packet { kind: PktKind::Data, off, range }) => {
                (insn.src, false, off, range)
            }
            _ => return unsupported(),
        };
        // is_pkt_ptr_branch_taken(): decides on a pkt marked AT_PKT_END / BEYOND_PKT_END.
        if range < 0 {
            return unsupported();
        }
        // try_match_pkt_pointers(): (range in the taken branch?, right open, mark in the taken
        // branch?, mark open).
        let (find_taken, open, mark_taken, mark_open) = match (cmp, pkt_is_dst) {
            (CmpOp::Gt, true) => (false, false, true, true),
            (CmpOp::Gt, false) => (true, true, false, false),
            (CmpOp::Lt, true) => (true, true, false, false),
            (CmpOp::Lt, false) => (false, false, true, true),
            (CmpOp::Ge, true) => (false, true, true, false),
            (CmpOp::Ge, false) => (true, false, false, true),
            (CmpOp::Le, true) => (true, false, false, true),
            (CmpOp::Le, false) => (false, true, true, false),
            _ => return unsupported(),
        };
        let target = (pc as i64 + insn.off as i64 + 1) as usize;
        let mut taken = st.clone();
        {
            let b = if find_taken { &mut taken } else { &mut *st };
            find_good_pkt_pointers(b, off, open);
        }
        {
            let b = if mark_taken { &mut taken } else { &mut *st };
            if let Reg::Packet { kind: PktKind::Data, range, .. } = &mut b.cur().regs[pkt_reg as usize] {
                *range = if mark_open { BEYOND_PKT_END } else { AT_PKT_END };
            }
        }
        taken.pc = target;
        Ok(Flow::Branch(pc + 1, taken))
    }

    /// `bpf_skb_pull_data(skb, len)` (`bpf_skb_pull_data_proto`: `ARG_PTR_TO_CTX`,
    /// `ARG_ANYTHING`, `RET_INTEGER`; offered by `tc_cls_act_func_proto()`), then
    /// `clear_all_pkt_pointers()`.
    pub(super) fn skb_pull_data(&mut self, st: &mut State, pc: usize) -> Step<()> {
        if !matches!(self.case.prog_type, ProgType::SchedCls | ProgType::SchedAct) {
            return Err(Stop::Unsupported(
                "helper bpf_skb_pull_data in a program type other than sched_cls / sched_act is not modelled"
                    .into(),
            ));
        }
        let r1 = self.read_reg(st, pc, 1)?;
        if r1 != Reg::Ctx {
            return Err(Stop::Unsupported(format!(
                "helper bpf_skb_pull_data: R1 of type {} is not modelled",
                r1.type_str()
            )));
        }
        self.read_reg(st, pc, 2)?;
        clear_all_pkt_pointers(st);
        self.clobber(st, Reg::Scalar(Scalar::unknown()));
        Ok(())
    }

    /// The kfunc `int bpf_xdp_pull_data(struct xdp_md *x, u32 len)` (net/core/filter.c, 7.2 and
    /// 7.3; absent in 6.12: the profile's `absent_kfuncs`): no flags, registered for xdp
    /// programs (`bpf_kfunc_set_xdp`); R1 `KF_ARG_PTR_TO_CTX`, R2 a scalar; an unknown scalar in
    /// R0; then `clear_all_pkt_pointers()` (`bpf_is_kfunc_pkt_changing()`).
    pub(super) fn xdp_pull_data(&mut self, st: &mut State, pc: usize) -> Step<()> {
        let name = "kfunc bpf_xdp_pull_data";
        if self.case.prog_type != ProgType::Xdp {
            return Err(Stop::Unsupported(format!(
                "{name} in a program type other than xdp is not modelled"
            )));
        }
        let regs = st.cur_ref().regs;
        if regs[1] != Reg::Ctx || !matches!(regs[2], Reg::Scalar(_)) {
            return Err(Stop::Unsupported(format!(
                "{name} with R1 of type {} and R2 of type {} is not modelled",
                regs[1].type_str(),
                regs[2].type_str()
            )));
        }
        let _ = pc;
        clear_all_pkt_pointers(st);
        self.clobber(st, Reg::Scalar(Scalar::unknown()));
        Ok(())
    }

    /// `bpf_tail_call(ctx, prog_array, index)` after its argument and reference checks
    /// (`check_helper_call()`). 7.2 / 7.3 (`tail_call_frame_exit`): in the main frame it changes
    /// nothing (`changes_data = false`); in a subprogram's frame the path after the call is
    /// pushed, and the current one clears the packet pointers, gets an unknown R0 and returns
    /// from the frame (`prepare_func_exit()`). 6.12: `bpf_helper_changes_pkt_data()` holds for
    /// it, so the packet pointers are cleared and the path goes on.
    pub(super) fn tail_call_effects(&mut self, st: &mut State, pc: usize) -> Step<Flow> {
        if !self.profile.tail_call_frame_exit {
            clear_all_pkt_pointers(st);
            self.clobber(st, Reg::NotInit);
            return Ok(Flow::Next(pc + 1));
        }
        self.clobber(st, Reg::NotInit);
        if st.frames.len() == 1 {
            return Ok(Flow::Next(pc + 1));
        }
        if self.in_callback(st) {
            return Err(Stop::Unsupported("bpf_tail_call in a callback is not modelled".into()));
        }
        let mut branch = st.clone();
        branch.pc = pc + 1;
        clear_all_pkt_pointers(st);
        st.cur().regs[0] = Reg::Scalar(Scalar::unknown());
        match self.frame_exit(st, pc)? {
            Flow::Next(next) => Ok(Flow::Branch(next, branch)),
            _ => Err(Stop::Unsupported("bpf_tail_call leaving a frame in another way".into())),
        }
    }
}

/// `find_good_pkt_pointers()`: the range a compare of `pkt + off` against `pkt_end` proves,
/// given to every `PTR_TO_PACKET` of the same id (the model's are all id 0) in `st`.
fn find_good_pkt_pointers(st: &mut State, off: i64, right_open: bool) {
    // reg_umax(dst_reg): the constant offset (a negative one is above MAX_PACKET_OFF as u64).
    if off == 0 && right_open {
        return;
    }
    if !(0..=MAX_PACKET_OFF).contains(&off) {
        return;
    }
    let new_range = (off + right_open as i64) as i32;
    st.for_each_reg(|r| {
        if let Reg::Packet { kind: PktKind::Data, range, .. } = r {
            *range = (*range).max(new_range);
        }
    });
}
