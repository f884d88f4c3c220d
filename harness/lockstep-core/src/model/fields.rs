//! Per-instruction encoding checks of `check_and_resolve_insns()` (7.x; `resolve_pseudo_ldimm64()`
//! before): the opcode must be in `bpf_opcode_in_insntable()` (kernel/bpf/core.c) and
//! `check_insn_fields()` refuses reserved fields. Pure functions returning the kernel's line.

use crate::insn::*;

/// `bpf_opcode_in_insntable()`: `BPF_INSN_MAP` plus the cBPF carry-overs (LD ABS/IND B/H/W),
/// `JMP|JA|X` (gotox, `gotox`: 7.x only) and `JMP|JCOND` (may_goto). Identical in the 7.2 and 7.3
/// sources; 6.12 lacks gotox. A table lookup, as the kernel's (`public_insntable`): the scans
/// before the walk ask it of every instruction of every check.
#[inline]
pub(crate) fn in_insntable(code: u8, gotox: bool) -> bool {
    INSNTABLE[code as usize] >> u8::from(gotox) & 1 != 0
}

/// [`insntable_entry`] of every opcode: bit 0 without gotox, bit 1 with it (a `static`: a `const`
/// array indexed at run time is copied to the stack at each use).
static INSNTABLE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut code = 0;
    while code < 256 {
        t[code] = insntable_entry(code as u8, false) as u8 | (insntable_entry(code as u8, true) as u8) << 1;
        code += 1;
    }
    t
};

/// Whether `bpf_opcode_in_insntable()` knows `code` (see [`in_insntable`]).
const fn insntable_entry(code: u8, gotox: bool) -> bool {
    let class = code & 0x07;
    let op = code & 0xf0;
    let src = code & 0x08;
    let size = code & 0x18;
    let mode = code & 0xe0;
    match class {
        BPF_ALU | BPF_ALU64 => match op {
            BPF_NEG => src == BPF_K,
            // BPF_TO_LE is BPF_K (0), BPF_TO_BE is BPF_X (8); ALU64 has TO_LE only (bswap).
            BPF_END => class == BPF_ALU || src == BPF_K,
            BPF_ADD | BPF_SUB | BPF_AND | BPF_OR | BPF_LSH | BPF_RSH | BPF_XOR | BPF_MUL | BPF_MOV
            | BPF_ARSH | BPF_DIV | BPF_MOD => true,
            _ => false,
        },
        BPF_JMP | BPF_JMP32 => match op {
            BPF_CALL | BPF_EXIT => class == BPF_JMP && src == BPF_K,
            BPF_JA => src == BPF_K || (class == BPF_JMP && gotox),
            BPF_JCOND => class == BPF_JMP && src == BPF_K,
            BPF_JEQ | BPF_JNE | BPF_JGT | BPF_JLT | BPF_JGE | BPF_JLE | BPF_JSGT | BPF_JSLT | BPF_JSGE
            | BPF_JSLE | BPF_JSET => true,
            _ => false,
        },
        BPF_STX => mode == BPF_ATOMIC || mode == BPF_MEM,
        BPF_ST => mode == BPF_MEM,
        BPF_LDX => mode == BPF_MEM || (mode == BPF_MEMSX && size != BPF_DW),
        BPF_LD => {
            (mode == BPF_IMM && size == BPF_DW) || (matches!(mode, BPF_ABS | BPF_IND) && size != BPF_DW)
        }
        _ => false,
    }
}

/// `check_alu_fields()`.
#[inline]
fn check_alu_fields(insn: &Insn) -> Result<(), String> {
    let (class, op, x) = (insn.class(), insn.op(), insn.source() == BPF_X);
    let bad = |what: &str| Err(format!("{what} uses reserved fields"));
    match op {
        BPF_NEG => {
            if x || insn.src != 0 || insn.off != 0 || insn.imm != 0 {
                return bad("BPF_NEG");
            }
        }
        BPF_END => {
            if insn.src != 0
                || insn.off != 0
                || !matches!(insn.imm, 16 | 32 | 64)
                || (class == BPF_ALU64 && x)
            {
                return bad("BPF_END");
            }
        }
        BPF_MOV => {
            if x {
                if class == BPF_ALU {
                    if !matches!(insn.off, 0 | 8 | 16) || insn.imm != 0 {
                        return bad("BPF_MOV");
                    }
                } else if insn.off == 1 {
                    // BPF_ADDR_SPACE_CAST
                    if insn.imm != 1 && insn.imm != 1 << 16 {
                        return Err(
                            "addr_space_cast insn can only convert between address space 1 and 0".into()
                        );
                    }
                } else if !matches!(insn.off, 0 | 8 | 16 | 32) || insn.imm != 0 {
                    return bad("BPF_MOV");
                }
            } else if insn.src != 0 || insn.off != 0 {
                return bad("BPF_MOV");
            }
        }
        _ => {
            let off_ok = insn.off == 0 || (insn.off == 1 && matches!(op, BPF_DIV | BPF_MOD));
            if (x && insn.imm != 0) || (!x && insn.src != 0) || !off_ok {
                return bad("BPF_ALU");
            }
        }
    }
    Ok(())
}

/// `check_jmp_fields()`.
#[inline]
fn check_jmp_fields(insn: &Insn) -> Result<(), String> {
    let (class, op, x) = (insn.class(), insn.op(), insn.source() == BPF_X);
    let bad = |what: &str| Err(format!("{what} uses reserved fields"));
    match op {
        BPF_CALL => {
            if x || (insn.src != BPF_PSEUDO_KFUNC_CALL && insn.off != 0)
                || !matches!(insn.src, 0 | BPF_PSEUDO_CALL | BPF_PSEUDO_KFUNC_CALL)
                || insn.dst != 0
                || class == BPF_JMP32
            {
                return bad("BPF_CALL");
            }
        }
        BPF_JA if x => {
            if insn.src != 0 || insn.imm != 0 || insn.off != 0 {
                return bad("BPF_JA|BPF_X");
            }
        }
        BPF_JA => {
            if insn.src != 0
                || insn.dst != 0
                || (class == BPF_JMP && insn.imm != 0)
                || (class == BPF_JMP32 && insn.off != 0)
            {
                return bad("BPF_JA");
            }
        }
        BPF_EXIT => {
            if x || insn.imm != 0 || insn.src != 0 || insn.dst != 0 || class == BPF_JMP32 {
                return bad("BPF_EXIT");
            }
        }
        BPF_JCOND => {
            // BPF_MAY_GOTO is src_reg 0.
            if insn.code != (BPF_JMP | BPF_JCOND) || insn.src != 0 || insn.dst != 0 || insn.imm != 0 {
                return Err(format!("invalid may_goto imm {}", insn.imm));
            }
        }
        _ => {
            if (x && insn.imm != 0) || (!x && insn.src != 0) {
                return bad("BPF_JMP/JMP32");
            }
        }
    }
    Ok(())
}

/// `resolve_pseudo_ldimm64()` (6.12): the one field check made before the walk there.
pub(crate) fn check_ldx_fields(insn: &Insn) -> Result<(), String> {
    if insn.class() == BPF_LDX && (!matches!(insn.mode(), BPF_MEM | BPF_MEMSX) || insn.imm != 0) {
        return Err("BPF_LDX uses reserved fields".into());
    }
    Ok(())
}

/// `check_insn_fields()` for one instruction other than an `ld_imm64`.
#[inline]
pub(crate) fn check_insn_fields(insn: &Insn) -> Result<(), String> {
    match insn.class() {
        BPF_ALU | BPF_ALU64 => check_alu_fields(insn),
        BPF_LDX if !matches!(insn.mode(), BPF_MEM | BPF_MEMSX) || insn.imm != 0 => {
            Err("BPF_LDX uses reserved fields".into())
        }
        BPF_STX if insn.mode() != BPF_ATOMIC && (insn.mode() != BPF_MEM || insn.imm != 0) => {
            Err("BPF_STX uses reserved fields".into())
        }
        BPF_ST if insn.mode() != BPF_MEM || insn.src != 0 => Err("BPF_ST uses reserved fields".into()),
        BPF_JMP | BPF_JMP32 => check_jmp_fields(insn),
        BPF_LD if matches!(insn.mode(), BPF_ABS | BPF_IND) => {
            if insn.dst != 0
                || insn.off != 0
                || insn.size() == BPF_DW
                || (insn.mode() == BPF_ABS && insn.src != 0)
            {
                Err("BPF_LD_[ABS|IND] uses reserved fields".into())
            } else {
                Ok(())
            }
        }
        BPF_LD if insn.mode() != BPF_IMM => Err("invalid BPF_LD mode".into()),
        _ => Ok(()),
    }
}

/// The checks `check_and_resolve_insns()` makes on an `ld_imm64` pair before resolving it
/// (`second` is the next slot, `None` at the end of the program).
pub(crate) fn check_ld_imm64(insn: &Insn, second: Option<&Insn>) -> Result<(), String> {
    match second {
        Some(s) if s.code == 0 && s.dst == 0 && s.src == 0 && s.off == 0 => {}
        _ => return Err("invalid bpf_ld_imm64 insn".into()),
    }
    if insn.off != 0 {
        return Err("BPF_LD_IMM64 uses reserved fields".into());
    }
    Ok(())
}

/// A name for the construct an instruction is, for `unsupported` reasons ("may_goto",
/// "BPF_ALU64 BPF_MUL", "sign-extending load (BPF_LDX | BPF_MEMSX)"), never a bare opcode.
pub(crate) fn describe(insn: &Insn) -> String {
    const ALU: [&str; 14] = [
        "BPF_ADD", "BPF_SUB", "BPF_MUL", "BPF_DIV", "BPF_OR", "BPF_AND", "BPF_LSH", "BPF_RSH", "BPF_NEG",
        "BPF_MOD", "BPF_XOR", "BPF_MOV", "BPF_ARSH", "BPF_END",
    ];
    const JMP: [&str; 15] = [
        "BPF_JA",
        "BPF_JEQ",
        "BPF_JGT",
        "BPF_JGE",
        "BPF_JSET",
        "BPF_JNE",
        "BPF_JSGT",
        "BPF_JSGE",
        "BPF_CALL",
        "BPF_EXIT",
        "BPF_JLT",
        "BPF_JLE",
        "BPF_JSLT",
        "BPF_JSLE",
        "may_goto (BPF_JCOND)",
    ];
    let op = (insn.op() >> 4) as usize;
    let class = insn.class();
    match class {
        BPF_ALU | BPF_ALU64 => {
            let c = if class == BPF_ALU { "BPF_ALU" } else { "BPF_ALU64" };
            format!("{c} {}", ALU.get(op).copied().unwrap_or("(unknown op)"))
        }
        _ if insn.code == (BPF_JMP | BPF_JA | BPF_X) => "indirect jump (gotox)".into(),
        BPF_JMP | BPF_JMP32 => {
            let c = if class == BPF_JMP { "BPF_JMP" } else { "BPF_JMP32" };
            format!("{c} {}", JMP.get(op).copied().unwrap_or("(unknown op)"))
        }
        BPF_LDX if insn.mode() == BPF_MEMSX => "sign-extending load (BPF_LDX | BPF_MEMSX)".into(),
        BPF_LDX => "BPF_LDX load".into(),
        BPF_STX if insn.mode() == BPF_ATOMIC => "atomic (BPF_STX | BPF_ATOMIC)".into(),
        BPF_STX => "BPF_STX store".into(),
        BPF_ST => "BPF_ST store".into(),
        _ => "BPF_LD".into(),
    }
}

#[cfg(test)]
mod insntable_tests {
    use super::*;

    #[test]
    fn table_answers_as_the_predicate() {
        for code in 0..=255u8 {
            for gotox in [false, true] {
                assert_eq!(in_insntable(code, gotox), insntable_entry(code, gotox), "{code:#x} {gotox}");
            }
        }
        assert!(
            in_insntable(BPF_JMP | BPF_JA | BPF_X, true) && !in_insntable(BPF_JMP | BPF_JA | BPF_X, false)
        );
        assert!(!in_insntable(0xff, true));
    }

    /// `Prepared::insn_scan` relies on it: the gotox table knows every opcode the other knows.
    #[test]
    fn gotox_table_is_a_superset() {
        for code in 0..=255u8 {
            assert!(!in_insntable(code, false) || in_insntable(code, true), "{code:#x}");
        }
    }

    /// And on this: what `check_ldx_fields()` refuses, `check_insn_fields()` refuses.
    #[test]
    fn ldx_fields_are_within_the_insn_fields() {
        for code in 0..=255u8 {
            for imm in [0, 1, -1] {
                let insn = Insn { code, dst: 1, src: 2, off: 0, imm };
                if check_ldx_fields(&insn).is_err() {
                    assert!(check_insn_fields(&insn).is_err(), "{code:#x} {imm}");
                }
            }
        }
    }
}
