//! The program-layout passes that run before `do_check()`: `add_subprogs()` (call targets),
//! `check_subprogs()` (jumps stay inside their subprogram, no fall-through into the next),
//! `check_abnormal_return()` (LD_ABS / tail calls in subprograms without BTF func_info) and
//! `check_cfg()` (every instruction reachable, no jump into an `ld_imm64`'s second slot).
//!
//! Pure functions of the instructions; each returns the kernel's error line. None of them prints
//! an instruction index (`Stop::Reject(None, ..)`).

use super::{Step, Stop};
use crate::helpers::helper_id;
use crate::insn::*;

/// The jump target of a JA / conditional jump (`bpf_jmp_offset()`: JMP32 JA uses `imm`).
pub(super) fn jump_target(pc: usize, insn: &Insn) -> i64 {
    let off = if insn.code == (BPF_JMP32 | BPF_JA) { insn.imm as i64 } else { insn.off as i64 };
    pc as i64 + off + 1
}

fn reject<T>(msg: String) -> Step<T> {
    Err(Stop::Reject(None, msg))
}

/// `add_subprogs()` -> `add_subprog()`: a bpf-to-bpf call or a `BPF_PSEUDO_FUNC` load whose
/// target lies outside the program (`Insn::subprog_target()`; found in `Prepared::new()`'s pass
/// over the instructions).
pub(crate) fn invalid_call_destination() -> Step<()> {
    reject("call to invalid destination".into())
}

/// `check_subprogs()`: every jump of a subprogram lands inside it, and its last instruction is an
/// exit or an unconditional jump. `starts` are the subprogram starts (main first).
pub(crate) fn check_subprogs(insns: &[Insn], starts: &[usize]) -> Step<()> {
    let mut cur = 0;
    let end_of = |cur: usize| starts.get(cur + 1).copied().unwrap_or(insns.len());
    let (mut start, mut end) = (starts[0], end_of(0));
    for (i, insn) in insns.iter().enumerate() {
        let code = insn.code;
        let jmp = matches!(insn.class(), BPF_JMP | BPF_JMP32);
        let gotox = code == (BPF_JMP | BPF_JA | BPF_X);
        if jmp && !matches!(insn.op(), BPF_CALL | BPF_EXIT) && !gotox {
            let off = jump_target(i, insn);
            if off < start as i64 || off >= end as i64 {
                return reject(format!("jump out of range from insn {i} to {off}"));
            }
        }
        if i == end - 1 {
            if code != (BPF_JMP | BPF_EXIT)
                && code != (BPF_JMP32 | BPF_JA)
                && code != (BPF_JMP | BPF_JA)
                && !gotox
            {
                return reject("last insn is not an exit or jmp".into());
            }
            cur += 1;
            start = end;
            end = end_of(cur);
        }
    }
    Ok(())
}

/// `check_abnormal_return()` (from `check_btf_info()` when the program is loaded without
/// func_info, as lockstep loads a case without global functions): LD_ABS/IND or a tail call in a
/// subprogram other than the main program.
pub(crate) fn check_abnormal_return(insns: &[Insn], starts: &[usize]) -> Step<()> {
    if starts.len() < 2 {
        return Ok(());
    }
    let tail_call = helper_id("bpf_tail_call");
    for (n, &s) in starts.iter().enumerate().skip(1) {
        let end = starts.get(n + 1).copied().unwrap_or(insns.len());
        let body = &insns[s.min(end)..end];
        if body.iter().any(|i| i.class() == BPF_LD && matches!(i.mode(), BPF_ABS | BPF_IND)) {
            return reject("LD_ABS is not allowed in subprogs without BTF".into());
        }
        if body.iter().any(|i| i.is_helper_call() && Some(i.imm) == tail_call) {
            return reject("tail_call is not allowed in subprogs without BTF".into());
        }
    }
    Ok(())
}

/// No successor (`Succ` slot unused).
const NONE: i64 = i64::MIN;

/// The instructions `visit_insn()` pushes after `pc` (fall-through and branch targets): up to
/// two, [`NONE`] for an unused slot (two scalars, no allocation: this runs on every check); None
/// for an indirect jump (gotox), which the model does not follow.
#[inline]
fn successors(insns: &[Insn], pc: usize) -> Option<(i64, i64)> {
    let insn = &insns[pc];
    let next = pc as i64 + 1;
    let callee = pc as i64 + insn.imm as i64 + 1;
    if insn.is_ld_imm64() {
        return Some(if insn.src == BPF_PSEUDO_FUNC { (next + 1, callee) } else { (next + 1, NONE) });
    }
    if !matches!(insn.class(), BPF_JMP | BPF_JMP32) {
        return Some((next, NONE));
    }
    Some(match insn.op() {
        BPF_EXIT => (NONE, NONE),
        BPF_CALL if insn.is_pseudo_call() => (next, callee),
        BPF_CALL => (next, NONE),
        BPF_JA if insn.source() == BPF_X => return None,
        BPF_JA => (jump_target(pc, insn), NONE),
        _ => (next, jump_target(pc, insn)),
    })
}

/// `check_cfg()`: a depth-first walk from insn 0 (callees and callbacks included); every
/// instruction must be reached ("unreachable insn N"), no jump may land on the second slot of an
/// `ld_imm64` ("jump into the middle of ldimm64 insn N"). Back-edges are allowed: lockstep loads
/// with CAP_BPF (`env->bpf_capable`). The exception callback (`ex_insn_beg`, 6.12, 7.2, 7.3) is
/// walked after, from its start, when the walk from insn 0 did not reach it.
pub(crate) fn check_cfg(insns: &[Insn], exception_cb: Option<usize>) -> Step<()> {
    // Programs up to CFG_INLINE instructions walk with buffers on the stack (no allocation: this
    // runs on every check); each instruction is pushed at most once, so `n` slots suffice.
    const CFG_INLINE: usize = 256;
    let n = insns.len();
    let (mut seen_inline, mut todo_inline) = ([false; CFG_INLINE], [0u32; CFG_INLINE]);
    let (mut seen_heap, mut todo_heap) = (Vec::new(), Vec::new());
    let (seen, todo): (&mut [bool], &mut [u32]) = if n <= CFG_INLINE {
        (&mut seen_inline[..n], &mut todo_inline[..n])
    } else {
        seen_heap.resize(n, false);
        todo_heap.resize(n, 0);
        (&mut seen_heap, &mut todo_heap)
    };
    seen[0] = true;
    let mut depth = 1;
    let mut ex_root = exception_cb.filter(|&s| s > 0 && s < n);
    loop {
        if depth == 0 {
            match ex_root.take() {
                Some(s) if !seen[s] => {
                    seen[s] = true;
                    todo[0] = s as u32;
                    depth = 1;
                }
                _ => break,
            }
        }
        depth -= 1;
        let t = todo[depth] as usize;
        let Some((first, second)) = successors(insns, t) else {
            return Err(Stop::Unsupported(format!("indirect jump (gotox) at {t}")));
        };
        for w in [first, second] {
            if w == NONE {
                continue;
            }
            if w < 0 || w >= n as i64 {
                return reject(format!("jump out of range from insn {t} to {w}"));
            }
            let w = w as usize;
            if !seen[w] {
                seen[w] = true;
                todo[depth] = w as u32;
                depth += 1;
            }
        }
    }
    let mut i = 0;
    while i < n {
        if !seen[i] {
            return reject(format!("unreachable insn {i}"));
        }
        if insns[i].is_ld_imm64() {
            if seen.get(i + 1).copied().unwrap_or(false) {
                return reject(format!("jump into the middle of ldimm64 insn {i}"));
            }
            i += 1;
        }
        i += 1;
    }
    Ok(())
}
