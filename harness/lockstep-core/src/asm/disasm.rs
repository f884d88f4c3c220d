//! The disassembler: the kernel verifier log's syntax (kernel/bpf/disasm.c `print_bpf_insn`
//! of 7.3, as called by the verifier with `N: ` prefixes), with symbolic forms for names the
//! kernel would print as addresses or BTF ids. Older kernels print the same text for every
//! instruction they know (6.12 lacks load_acquire/store_release/gotox and prints BUG_ for them).

use super::{Program, Reloc};
use crate::helpers::helper_name;
use crate::insn::*;

const ALU_STR: [Option<&str>; 16] = [
    Some("+="),
    Some("-="),
    Some("*="),
    Some("/="),
    Some("|="),
    Some("&="),
    Some("<<="),
    Some(">>="),
    Some("neg"),
    Some("%="),
    Some("^="),
    Some("="),
    Some("s>>="),
    Some("endian"),
    None,
    None,
];

const JMP_STR: [Option<&str>; 16] = [
    Some("jmp"),
    Some("=="),
    Some(">"),
    Some(">="),
    Some("&"),
    Some("!="),
    Some("s>"),
    Some("s>="),
    Some("call"),
    Some("exit"),
    Some("<"),
    Some("<="),
    Some("s<"),
    Some("s<="),
    None,
    None,
];

const ATOMIC_ALU_STR: [Option<&str>; 16] = {
    let mut t = [None; 16];
    t[(BPF_ADD >> 4) as usize] = Some("add");
    t[(BPF_AND >> 4) as usize] = Some("and");
    t[(BPF_OR >> 4) as usize] = Some("or");
    t[(BPF_XOR >> 4) as usize] = Some("xor");
    t
};

/// The kernel prints a NULL `%s` as `(null)`.
fn s(o: Option<&str>) -> &str {
    o.unwrap_or("(null)")
}

fn ldst(size: u8) -> &'static str {
    match size {
        BPF_W => "u32",
        BPF_H => "u16",
        BPF_B => "u8",
        _ => "u64",
    }
}

fn ldsx(size: u8) -> &'static str {
    match size {
        BPF_W => "s32",
        BPF_H => "s16",
        BPF_B => "s8",
        _ => "s64",
    }
}

/// One instruction as the verifier log prints it: `N: (xx) ...` (or `N: BUG_...` for encodings
/// the kernel cannot print). `idx` out of range gives `N: <none>`.
pub fn format_insn(prog: &Program, idx: usize) -> String {
    match prog.insns.get(idx) {
        Some(insn) => format!("{idx}: {}", body(prog, idx, insn)),
        None => format!("{idx}: <none>"),
    }
}

/// The whole program, one line per instruction (an `ld_imm64` takes one line and two indices).
pub fn disassemble(prog: &Program) -> String {
    let mut out = String::new();
    let mut idx = 0;
    while idx < prog.insns.len() {
        out.push_str(&format_insn(prog, idx));
        out.push('\n');
        idx += if prog.insns[idx].is_ld_imm64() { 2 } else { 1 };
    }
    out
}

fn body(prog: &Program, idx: usize, insn: &Insn) -> String {
    let code = insn.code;
    let cls = insn.class();
    let (d, sr, off, imm) = (insn.dst, insn.src, insn.off, insn.imm);
    let op = insn.op();
    match cls {
        BPF_ALU | BPF_ALU64 => {
            let w = if cls == BPF_ALU { 'w' } else { 'r' };
            if op == BPF_END {
                if cls == BPF_ALU64 {
                    format!("({code:02x}) r{d} = bswap{imm} r{d}")
                } else {
                    let be = if insn.source() == BPF_X { "be" } else { "le" };
                    format!("({code:02x}) r{d} = {be}{imm} r{d}")
                }
            } else if op == BPF_NEG {
                format!("({code:02x}) {w}{d} = -{w}{d}")
            } else if code == BPF_ALU64 | BPF_MOV | BPF_X && off == 1 {
                format!(
                    "({code:02x}) r{d} = addr_space_cast(r{sr}, {}, {})",
                    (imm as u32) >> 16,
                    imm as u32 as u16
                )
            } else if code == BPF_ALU64 | BPF_MOV | BPF_X && off == -1 {
                format!("({code:02x}) r{d} = &(void __percpu *)(r{sr})")
            } else {
                let sdiv = (op == BPF_DIV || op == BPF_MOD) && off == 1;
                let opstr = if sdiv {
                    if op == BPF_DIV {
                        "s/="
                    } else {
                        "s%="
                    }
                } else {
                    s(ALU_STR[(op >> 4) as usize])
                };
                if insn.source() == BPF_X {
                    let movsx = match (op, off) {
                        (BPF_MOV, 8) => "(s8)",
                        (BPF_MOV, 16) => "(s16)",
                        (BPF_MOV, 32) => "(s32)",
                        _ => "",
                    };
                    format!("({code:02x}) {w}{d} {opstr} {movsx}{w}{sr}")
                } else {
                    format!("({code:02x}) {w}{d} {opstr} {imm}")
                }
            }
        }
        BPF_STX => {
            let sz = ldst(insn.size());
            let is64 = if insn.size() == BPF_DW { "64" } else { "" };
            let mode = insn.mode();
            let aop = ((imm & 0xf0) >> 4) as usize;
            // BPF_PROBE_ATOMIC (0xe0, include/linux/filter.h) is verifier-internal (arena).
            let (mode, p) = if mode == 0xe0 { (BPF_ATOMIC, "probe ") } else { (mode, "") };
            if mode == BPF_MEM {
                format!("({code:02x}) *({sz} *)(r{d} {off:+}) = r{sr}")
            } else if mode == BPF_ATOMIC && [BPF_ADD, BPF_AND, BPF_OR, BPF_XOR].map(i32::from).contains(&imm)
            {
                format!("({code:02x}) {p}lock *({sz} *)(r{d} {off:+}) {} r{sr}", s(ALU_STR[aop]))
            } else if mode == BPF_ATOMIC
                && [BPF_ADD, BPF_AND, BPF_OR, BPF_XOR].map(|o| o as i32 | BPF_FETCH).contains(&imm)
            {
                format!(
                    "({code:02x}) {p}r{sr} = atomic{is64}_fetch_{}(({sz} *)(r{d} {off:+}), r{sr})",
                    s(ATOMIC_ALU_STR[aop])
                )
            } else if mode == BPF_ATOMIC && imm == BPF_CMPXCHG {
                format!("({code:02x}) {p}r0 = atomic{is64}_cmpxchg(({sz} *)(r{d} {off:+}), r0, r{sr})")
            } else if mode == BPF_ATOMIC && imm == BPF_XCHG {
                format!("({code:02x}) {p}r{sr} = atomic{is64}_xchg(({sz} *)(r{d} {off:+}), r{sr})")
            } else if mode == BPF_ATOMIC && imm == BPF_LOAD_ACQ {
                format!("({code:02x}) {p}r{d} = load_acquire(({sz} *)(r{sr} {off:+}))")
            } else if mode == BPF_ATOMIC && imm == BPF_STORE_REL {
                format!("({code:02x}) {p}store_release(({sz} *)(r{d} {off:+}), r{sr})")
            } else {
                format!("BUG_{code:02x}")
            }
        }
        BPF_ST => {
            if insn.mode() == BPF_MEM {
                format!("({code:02x}) *({} *)(r{d} {off:+}) = {imm}", ldst(insn.size()))
            } else if insn.mode() == 0xc0 {
                format!("({code:02x}) nospec")
            } else {
                format!("BUG_st_{code:02x}")
            }
        }
        BPF_LDX => match insn.mode() {
            BPF_MEM => format!("({code:02x}) r{d} = *({} *)(r{sr} {off:+})", ldst(insn.size())),
            BPF_MEMSX if insn.size() != BPF_DW => {
                format!("({code:02x}) r{d} = *({} *)(r{sr} {off:+})", ldsx(insn.size()))
            }
            _ => format!("BUG_ldx_{code:02x}"),
        },
        BPF_LD => {
            let sz = ldst(insn.size());
            match insn.mode() {
                BPF_ABS => format!("({code:02x}) r0 = *({sz} *)skb[{imm}]"),
                BPF_IND => format!("({code:02x}) r0 = *({sz} *)skb[r{sr} + {imm}]"),
                BPF_IMM if insn.size() == BPF_DW => {
                    format!("({code:02x}) r{d} = {}", ld_imm64(prog, idx, insn))
                }
                _ => format!("BUG_ld_{code:02x}"),
            }
        }
        _ => {
            // BPF_JMP and BPF_JMP32.
            let w = if cls == BPF_JMP32 { 'w' } else { 'r' };
            if op == BPF_CALL {
                if sr == BPF_PSEUDO_CALL {
                    format!("({code:02x}) call pc{imm:+}")
                } else {
                    format!("({code:02x}) call {}#{imm}", call_name(prog, idx, insn))
                }
            } else if code == BPF_JMP | BPF_JA {
                format!("({code:02x}) goto pc{off:+}")
            } else if code == BPF_JMP | BPF_JA | BPF_X {
                format!("({code:02x}) gotox r{d}")
            } else if code == BPF_JMP | BPF_JCOND && sr == 0 {
                format!("({code:02x}) may_goto pc{off:+}")
            } else if code == BPF_JMP32 | BPF_JA {
                format!("({code:02x}) gotol pc{imm:+}")
            } else if code == BPF_JMP | BPF_EXIT {
                format!("({code:02x}) exit")
            } else {
                let opstr = s(JMP_STR[(op >> 4) as usize]);
                if insn.source() == BPF_X {
                    format!("({code:02x}) if {w}{d} {opstr} {w}{sr} goto pc{off:+}")
                } else {
                    format!("({code:02x}) if {w}{d} {opstr} 0x{:x} goto pc{off:+}", imm as u32)
                }
            }
        }
    }
}

/// The callee name the verifier prints: helpers from the uapi table, kfuncs by name (our
/// relocation stands in for the kernel's BTF lookup), else `kernel-function` / `unknown`.
fn call_name(prog: &Program, idx: usize, insn: &Insn) -> String {
    if insn.src == 0 {
        if let Some(n) = helper_name(insn.imm) {
            return n.to_string();
        }
    }
    if insn.src == BPF_PSEUDO_KFUNC_CALL {
        if let Some(Reloc::Kfunc { name }) = prog.relocs.get(&idx) {
            return name.clone();
        }
        return "kernel-function".to_string();
    }
    "unknown".to_string()
}

/// The operand of an `ld_imm64`: `map[id:NAME]`, `map[id:NAME][0]+OFF`, `subprog[+N]`, or
/// the 64-bit constant in hex as the kernel prints it.
fn ld_imm64(prog: &Program, idx: usize, insn: &Insn) -> String {
    let hi = prog.insns.get(idx + 1).map_or(0, |n| n.imm);
    match (insn.src, prog.relocs.get(&idx)) {
        (BPF_PSEUDO_MAP_FD, Some(Reloc::Map { name })) => format!("map[id:{name}]"),
        (BPF_PSEUDO_MAP_FD, _) => format!("map[id:{}]", insn.imm),
        (BPF_PSEUDO_MAP_VALUE, Some(Reloc::MapValue { name, .. })) => {
            format!("map[id:{name}][0]+{}", hi as u32)
        }
        (BPF_PSEUDO_MAP_VALUE, _) => format!("map[id:{}][0]+{}", insn.imm, hi as u32),
        (BPF_PSEUDO_FUNC, _) => format!("subprog[{:+}]", insn.imm),
        _ => format!("0x{:x}", ((hi as u32 as u64) << 32) | insn.imm as u32 as u64),
    }
}
