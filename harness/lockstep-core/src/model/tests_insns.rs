//! Unit tests for the instruction-level passes: `check_subprogs()`, `check_abnormal_return()`,
//! `check_cfg()`, `check_and_resolve_insns()` (opcode table, reserved fields) and the constant
//! operand checks of `check_alu_op()`. Expectations from the 6.12, 7.2 and 7.3 verifier sources.

use super::test_fixtures::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, ProgType};
use crate::insn::*;
use crate::verdict::VerdictKind;

fn text_case(prog_type: ProgType, text: &str) -> Case {
    let program = assemble(text, &Symbols::default()).expect("test program assembles");
    Case::new("t", prog_type, program, text)
}

fn raw_case(insns: Vec<Insn>) -> Case {
    let program = crate::asm::Program { insns, ..Default::default() };
    Case::new("t", ProgType::SchedCls, program, "")
}

fn assert_all(c: &Case, insn: Option<usize>, msg: &str) {
    for (p, v) in verdicts_on_all_profiles(c) {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
        assert_eq!(v.message.as_deref(), Some(msg), "{p}");
        assert_eq!(v.insn, insn, "{p}");
    }
}

#[test]
fn jump_out_of_range_is_rejected_before_the_walk() {
    // check_subprogs(): "jump out of range from insn %d to %d".
    assert_all(
        &text_case(ProgType::SchedCls, "r0 = 0\n goto pc+5\n exit"),
        None,
        "jump out of range from insn 1 to 7",
    );
    assert_all(
        &text_case(ProgType::SchedCls, "r0 = 0\n if r0 == 0 goto pc-3\n exit"),
        None,
        "jump out of range from insn 1 to -1",
    );
}

#[test]
fn jump_into_another_subprogram_is_out_of_range() {
    let text = "r0 = 0\n call sub\n goto l\n exit\nsub:\n l: r0 = 1\n exit";
    assert_all(&text_case(ProgType::SchedCls, text), None, "jump out of range from insn 2 to 4");
}

#[test]
fn fall_through_past_the_end_is_rejected() {
    // check_subprogs(): the last insn of each subprogram must be exit or ja.
    assert_all(
        &text_case(ProgType::SchedCls, "r0 = 0\n exit\n r0 = 1"),
        None,
        "last insn is not an exit or jmp",
    );
    let text = "r0 = 0\n call sub\n exit\nsub:\n r0 = 1";
    assert_all(&text_case(ProgType::SchedCls, text), None, "last insn is not an exit or jmp");
}

#[test]
fn fall_through_into_the_next_subprogram_is_rejected() {
    let text = "r0 = 0\n call sub\n r0 = 2\nsub:\n r0 = 1\n exit";
    assert_all(&text_case(ProgType::SchedCls, text), None, "last insn is not an exit or jmp");
}

#[test]
fn unreachable_insn_is_rejected() {
    // check_cfg(): every insn reached by the depth-first walk.
    assert_all(&text_case(ProgType::SchedCls, "r0 = 0\n exit\n r0 = 1\n exit"), None, "unreachable insn 2");
    assert_all(
        &text_case(ProgType::SchedCls, "r0 = 0\n goto pc+1\n r0 = 1\n exit"),
        None,
        "unreachable insn 2",
    );
}

#[test]
fn jump_into_ld_imm64_is_rejected() {
    let text = "r0 = 0\n if r0 == 0 goto pc+1\n r1 = 0x1234 ll\n r0 = 0\n exit";
    assert_all(&text_case(ProgType::SchedCls, text), None, "jump into the middle of ldimm64 insn 2");
}

#[test]
fn back_edges_are_allowed_for_a_privileged_loader() {
    // push_insn(): env->bpf_capable accepts a back-edge; a bounded loop verifies.
    let text = "r1 = 0\nl:\n r1 += 1\n if r1 < 3 goto l\n r0 = 0\n exit";
    for (p, v) in verdicts_on_all_profiles(&text_case(ProgType::SchedCls, text)) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn ld_abs_and_tail_call_in_a_static_subprog_without_btf() {
    // check_btf_info() -> check_abnormal_return(): no func_info without global functions.
    let text = "r6 = r1\n call sub\n exit\nsub:\n r0 = *(u8 *)skb[0]\n exit";
    assert_all(&text_case(ProgType::SchedCls, text), None, "LD_ABS is not allowed in subprogs without BTF");
}

#[test]
fn division_by_constant_zero_is_rejected_at_the_insn() {
    // check_alu_op(): "div by zero" for BPF_K with imm 0, after the operands are read.
    let c = text_case(ProgType::SchedCls, "r0 = 5\n r0 /= 0\n exit");
    assert_all(&c, Some(1), "div by zero");
    let c = text_case(ProgType::SchedCls, "w0 = 5\n w0 %= 0\n exit");
    assert_all(&c, Some(1), "div by zero");
    // An uninitialised dst is reported first.
    let c = text_case(ProgType::SchedCls, "r3 /= 0\n r0 = 0\n exit");
    assert_all(&c, Some(0), "R3 !read_ok");
}

#[test]
fn division_by_a_zero_register_is_allowed() {
    // Defined at run time (result 0); the verifier does not refuse it.
    let c = text_case(ProgType::SchedCls, "r0 = 5\n r1 = 0\n r0 /= r1\n r0 %= r1\n exit");
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn constant_shift_of_the_width_or_more_is_rejected() {
    // check_alu_op(): "invalid shift %d" when imm < 0 or imm >= 64 (ALU64) / 32 (ALU).
    assert_all(&text_case(ProgType::SchedCls, "r0 = 1\n r0 <<= 200\n exit"), Some(1), "invalid shift 200");
    assert_all(&text_case(ProgType::SchedCls, "w0 = 1\n w0 >>= 32\n exit"), Some(1), "invalid shift 32");
    let ok = text_case(ProgType::SchedCls, "r0 = 1\n r0 s>>= 63\n w0 <<= 31\n exit");
    for (p, v) in verdicts_on_all_profiles(&ok) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

const EXIT: Insn = Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
const MOV0: Insn = Insn::new(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0);

#[test]
fn unknown_opcode_is_rejected_before_the_walk() {
    // check_and_resolve_insns() / resolve_pseudo_ldimm64(): bpf_opcode_in_insntable().
    let c = raw_case(vec![MOV0, Insn::new(BPF_ALU64 | 0xe0, 0, 0, 0, 0), EXIT]);
    assert_all(&c, None, "unknown opcode e7");
    let c = raw_case(vec![MOV0, Insn::new(BPF_LD | BPF_MEM | BPF_W, 0, 0, 0, 0), EXIT]);
    assert_all(&c, None, "unknown opcode 60");
}

#[test]
fn reserved_fields_before_the_walk_on_7x_and_at_the_insn_on_6_12() {
    // 7.x check_and_resolve_insns() -> check_insn_fields(); 6.12 check_alu_op() when reached.
    let c = raw_case(vec![MOV0, Insn::new(BPF_ALU64 | BPF_ADD | BPF_K, 0, 3, 0, 1), EXIT]);
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.message.as_deref(), Some("BPF_ALU uses reserved fields"), "{p}");
        assert_eq!(v.insn, if p == "6.12" { Some(1) } else { None }, "{p}");
    }
    let c = raw_case(vec![MOV0, Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 7)]);
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.message.as_deref(), Some("BPF_EXIT uses reserved fields"), "{p}");
    }
    let c = raw_case(vec![MOV0, Insn::new(BPF_ALU64 | BPF_NEG, 0, 0, 0, 1), EXIT]);
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.message.as_deref(), Some("BPF_NEG uses reserved fields"), "{p}");
    }
}

#[test]
fn a_program_ending_in_ld_imm64() {
    // 7.3 bpf_check(): "invalid bpf_ld_imm64 insn" first; 7.2 / 6.12 check_subprogs() sees the
    // last insn is not an exit.
    let c = raw_case(vec![MOV0, EXIT, Insn::new(BPF_LD | BPF_DW | BPF_IMM, 1, 0, 0, 0)]);
    for (p, v) in verdicts_on_all_profiles(&c) {
        let want = if p == "7.3" { "invalid bpf_ld_imm64 insn" } else { "last insn is not an exit or jmp" };
        assert_eq!(v.message.as_deref(), Some(want), "{p}");
    }
}

#[test]
fn static_subprog_r0_is_checked_where_the_caller_reads_it() {
    // prepare_func_exit(): no R0 check for a static subprogram; the caller's read fails.
    let unread = text_case(ProgType::SchedCls, "call sub\n r0 = 0\n exit\nsub:\n exit");
    for (p, v) in verdicts_on_all_profiles(&unread) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    let read = text_case(ProgType::SchedCls, "call sub\n exit\nsub:\n exit");
    assert_all(&read, Some(1), "R0 !read_ok");
    let stack = text_case(ProgType::SchedCls, "call sub\n r0 = 0\n exit\nsub:\n r0 = r10\n exit");
    assert_all(&stack, Some(4), "cannot return stack pointer to the caller");
}

fn iter_case(body: &str) -> Case {
    let text = format!(
        "r6 = 0\n r1 = r10\n r1 += -24\n r2 = 0\n r3 = 3\n call bpf_iter_num_new\nhead:\n r1 = r10\n r1 += -24\n call bpf_iter_num_next\n if r0 == 0 goto done\n{body}\n goto head\ndone:\n r1 = r10\n r1 += -24\n call bpf_iter_num_destroy\n r0 = 0\n exit"
    );
    let kfuncs = ["bpf_iter_num_new", "bpf_iter_num_next", "bpf_iter_num_destroy"].map(String::from).into();
    let program = assemble(&text, &Symbols { maps: vec![], kfuncs }).expect("test program assembles");
    Case::new("t", ProgType::SchedCls, program, text)
}

#[test]
fn iter_num_loop_converges_at_the_next_call() {
    // process_iter_next_call() + is_state_visited(): the second visit of bpf_iter_num_next with an
    // equal state is pruned, so the loop is judged, not cut off by the step budget.
    for (p, v) in verdicts_on_all_profiles(&iter_case("r6 = 1")) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    // A counter that grows every iteration never meets an equal state: unsupported, never a guess.
    for (p, v) in verdicts_on_all_profiles(&iter_case("r6 += 1")) {
        assert_ne!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
    }
}
