//! The kernel's static control-flow checks (`check_subprogs()` and `check_cfg()`, kernel/bpf/cfg.c
//! in 7.x), which reject a program before any lock rule is looked at: jumps out of range or across
//! functions, a function whose last instruction is not `exit` or `goto`, and unreachable
//! instructions. The model does not implement them; the generator and the minimiser use this to
//! stay inside programs where those checks pass.

use crate::asm::Program;
use crate::insn::*;

/// Why the control flow is invalid (the kernel's message, without the verbose prefix).
pub fn check(p: &Program) -> Result<(), String> {
    let n = p.insns.len();
    if n == 0 {
        return Err("empty program".into());
    }
    let starts = p.subprog_starts();
    if let Some(&s) = starts.iter().find(|&&s| s >= n) {
        return Err(format!("call to {s}, past the end"));
    }
    // check_subprogs(): per function, jumps stay inside, the last insn is exit or goto.
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(n);
        let mut pc = start;
        while pc < end {
            let insn = p.insns[pc];
            if let Some(t) = jump_target(&insn, pc) {
                if t < start as i64 || t >= end as i64 {
                    return Err(format!("jump out of range from insn {pc} to {t}"));
                }
            }
            pc += if insn.is_ld_imm64() { 2 } else { 1 };
        }
        let last = p.insns[end - 1];
        let ld_hi = end >= 2 && p.insns[end - 2].is_ld_imm64() && (end - 2) >= start;
        if ld_hi || !(last.is_exit() || (last.op() == BPF_JA && matches!(last.class(), BPF_JMP | BPF_JMP32)))
        {
            return Err("last insn is not an exit or jmp".into());
        }
    }
    // check_cfg(): every instruction is reachable from insn 0 (calls reach their callee).
    let mut seen = vec![false; n];
    let mut stack = vec![0usize];
    while let Some(pc) = stack.pop() {
        if pc >= n || seen[pc] {
            continue;
        }
        seen[pc] = true;
        let insn = p.insns[pc];
        let next = pc + if insn.is_ld_imm64() { 2 } else { 1 };
        if insn.is_ld_imm64() {
            seen[pc + 1] = true;
            if insn.src == BPF_PSEUDO_FUNC {
                stack.push((pc as i64 + insn.imm as i64 + 1) as usize);
            }
        }
        if insn.is_exit() {
            continue;
        }
        if insn.is_pseudo_call() {
            stack.push((pc as i64 + insn.imm as i64 + 1) as usize);
        }
        match jump_target(&insn, pc) {
            Some(t) => {
                stack.push(t as usize);
                if insn.op() != BPF_JA {
                    stack.push(next);
                }
            }
            None => stack.push(next),
        }
    }
    match seen.iter().position(|s| !s) {
        Some(i) => Err(format!("unreachable insn {i}")),
        None => Ok(()),
    }
}

/// The target of a jump (not of a call), if `insn` is one.
fn jump_target(insn: &Insn, pc: usize) -> Option<i64> {
    if !matches!(insn.class(), BPF_JMP | BPF_JMP32) || insn.is_call() || insn.is_exit() {
        return None;
    }
    if insn.op() == BPF_JA && insn.source() == BPF_X {
        return None;
    }
    let off =
        if insn.class() == BPF_JMP32 && insn.op() == BPF_JA { insn.imm as i64 } else { insn.off as i64 };
    Some(pc as i64 + off + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::{assemble, Symbols};

    fn prog(text: &str) -> Program {
        assemble(text, &Symbols::default()).unwrap()
    }

    #[test]
    fn accepts_branches_and_subprograms() {
        assert_eq!(
            check(&prog("r0 = 0\nif r0 > 1 goto l\nr0 = 1\nl:\ncall f\nexit\nf:\nr0 = 0\nexit\n")),
            Ok(())
        );
    }

    #[test]
    fn rejects_unreachable_code() {
        assert_eq!(check(&prog("r0 = 0\nexit\nr0 = 1\nexit\n")), Err("unreachable insn 2".into()));
    }

    #[test]
    fn rejects_a_jump_into_another_function() {
        let e = check(&prog("call f\nif r0 > 1 goto g\nexit\nf:\nr0 = 0\ng:\nexit\n")).unwrap_err();
        assert!(e.starts_with("jump out of range from insn 1"), "{e}");
    }

    #[test]
    fn rejects_a_function_falling_off_its_end() {
        assert_eq!(
            check(&prog("call f\nr0 = 0\nf:\nr0 = 0\nexit\n")),
            Err("last insn is not an exit or jmp".into())
        );
    }
}
