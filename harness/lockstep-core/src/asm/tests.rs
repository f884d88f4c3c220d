//! Tests of the assembler and disassembler. Kernel strings are either copied from real
//! verifier logs (marked "real log") or built from the format strings of kernel/bpf/disasm.c.

use proptest::prelude::*;

use super::*;
use crate::insn::*;

fn syms() -> Symbols {
    Symbols {
        maps: vec!["map_spin_lock".into(), "map_hash_8b".into(), ".data".into(), "array".into()],
        kfuncs: vec!["bpf_obj_new_impl".into(), "bpf_list_pop_front".into(), "bpf_res_spin_lock".into()],
    }
}

fn asm(text: &str) -> Program {
    match assemble(text, &syms()) {
        Ok(p) => p,
        Err(e) => panic!("assembling {text:?}: {e}"),
    }
}

fn asm_err(text: &str) -> AsmError {
    match assemble(text, &syms()) {
        Ok(p) => panic!("{text:?} assembled to {p:?}"),
        Err(e) => e,
    }
}

fn one(text: &str) -> Insn {
    let p = asm(text);
    assert_eq!(p.insns.len(), 1, "{text:?}");
    p.insns[0]
}

/// Assembles a kernel-log line and checks that the disassembler prints it back unchanged
/// (apart from the `N:` index and the register-state comment).
fn kernel_round_trip(line: &str) -> Program {
    let p = asm(line);
    let body = line.split_once(": ").map_or(line, |(_, b)| b);
    let body = body.split(';').next().unwrap_or(body).trim_end();
    assert_eq!(format_insn(&p, 0), format!("0: {body}"), "line {line:?}");
    p
}

#[test]
fn real_log_lines_round_trip() {
    // Real logs (selftests rbtree/linked_list runs and user reports quoted on bpf@vger).
    let lines = [
        "0: (18) r1 = 0xffff888103c70320       ; R1_w=map_value(off=16,ks=4,vs=40,imm=0)",
        "2: (85) call bpf_spin_lock#93         ;",
        "6: (bf) r6 = r0                       ; R0_w=ptr_or_null_node_data(id=1,non_own_ref,off=16,imm=0)",
        "7: (b7) r0 = -1                       ; R0_w=-1",
        "8: (15) if r6 == 0x0 goto pc+14       ; R6_w=ptr_node_data(non_own_ref,off=16,imm=0)",
        "5: (71) r2 = *(u8 *)(r1 +0)           ; R1_w=map_value(off=0,ks=4,vs=1040,imm=0)",
        "6: (55) if r2 != 0x0 goto pc+9        ; R2_w=0",
        "29: (7b) *(u64 *)(r0 +0) = r1         ; R0=ptr_node_data(ref_obj_id=6) R1_w=1 refs=2,4,6",
        "8115: (7b) *(u64 *)(r10 -16) = r1     ; frame1:",
        "35: (07) r2 += 16                     ; R2_w=ptr_node_data(ref_obj_id=2,off=16) refs=2,4,6",
        "11: (85) call bpf_list_pop_front#25345        ;",
        "38: (18) r3 = 0x53                    ; R3_w=func() refs=2,4,6",
    ];
    for l in lines {
        kernel_round_trip(l);
    }
    let p = asm("30: (18) r1 = 0xff434b28008e3de8      ; R1_w=map_value(map=.data.A,ks=4,vs=72,off=16)");
    assert_eq!(
        p.insns,
        vec![Insn::new(0x18, 1, 0, 0, 0x008e3de8), Insn::new(0, 0, 0, 0, 0xff434b28u32 as i32)]
    );
    let p = asm("11: (85) call bpf_list_pop_front#25345");
    assert_eq!(p.insns[0], Insn::new(0x85, 0, BPF_PSEUDO_KFUNC_CALL, 0, 25345));
    assert_eq!(p.relocs[&0], Reloc::Kfunc { name: "bpf_list_pop_front".into() });
}

#[test]
fn kernel_format_forms_round_trip() {
    // Built from print_bpf_insn's format strings, one per branch.
    let lines = [
        "0: (b7) r0 = 0",
        "0: (b4) w0 = -5",
        "0: (bc) w1 = w2",
        "0: (0f) r1 += r2",
        "0: (1c) w1 -= w2",
        "0: (27) r1 *= 3",
        "0: (3f) r1 /= r2",
        "0: (3f) r1 s/= r2",
        "0: (97) r1 s%= 7",
        "0: (47) r1 |= 1",
        "0: (57) r1 &= 255",
        "0: (67) r1 <<= 2",
        "0: (77) r1 >>= 2",
        "0: (c7) r1 s>>= 63",
        "0: (a7) r1 ^= -1",
        "0: (87) r1 = -r1",
        "0: (84) w3 = -w3",
        "0: (dc) r1 = be16 r1",
        "0: (d4) r1 = le64 r1",
        "0: (d7) r1 = bswap32 r1",
        "0: (bf) r1 = (s8)r2",
        "0: (bf) r1 = (s16)r2",
        "0: (bf) r1 = (s32)r2",
        "0: (bc) w1 = (s8)w2",
        "0: (bf) r1 = addr_space_cast(r2, 0, 1)",
        "0: (63) *(u32 *)(r10 -4) = r1",
        "0: (6b) *(u16 *)(r1 +2) = r3",
        "0: (7a) *(u64 *)(r10 -8) = 0",
        "0: (62) *(u32 *)(r10 -4) = -1",
        "0: (61) r0 = *(u32 *)(r1 +0)",
        "0: (79) r0 = *(u64 *)(r10 -8)",
        "0: (91) r0 = *(s8 *)(r1 +3)",
        "0: (89) r0 = *(s16 *)(r1 +0)",
        "0: (81) r0 = *(s32 *)(r1 -4)",
        "0: (c3) lock *(u32 *)(r1 +0) += r2",
        "0: (db) lock *(u64 *)(r1 +8) &= r2",
        "0: (db) lock *(u64 *)(r1 +8) |= r2",
        "0: (c3) lock *(u32 *)(r1 +0) ^= r2",
        "0: (db) r2 = atomic64_fetch_add((u64 *)(r1 +0), r2)",
        "0: (c3) r2 = atomic_fetch_and((u32 *)(r1 +0), r2)",
        "0: (db) r3 = atomic64_fetch_or((u64 *)(r10 -8), r3)",
        "0: (c3) r2 = atomic_fetch_xor((u32 *)(r1 +0), r2)",
        "0: (db) r0 = atomic64_cmpxchg((u64 *)(r1 +0), r0, r2)",
        "0: (c3) r0 = atomic_cmpxchg((u32 *)(r1 +0), r0, r2)",
        "0: (db) r2 = atomic64_xchg((u64 *)(r1 +0), r2)",
        "0: (c3) r2 = atomic_xchg((u32 *)(r1 +0), r2)",
        "0: (d3) r0 = load_acquire((u8 *)(r1 +0))",
        "0: (cb) store_release((u16 *)(r1 +0), r2)",
        "0: (30) r0 = *(u8 *)skb[12]",
        "0: (48) r0 = *(u16 *)skb[r6 + 4]",
        "0: (40) r0 = *(u32 *)skb[r6 + -4]",
        "0: (18) r1 = 0x1234",
        "0: (18) r1 = 0xffffffffffffffff",
        "0: (18) r1 = map[id:map_spin_lock]",
        "0: (18) r2 = map[id:.data][0]+16",
        "0: (18) r2 = subprog[-1]",
        "0: (85) call bpf_spin_lock#93",
        "0: (85) call bpf_spin_unlock#94",
        "0: (85) call bpf_obj_new_impl#0",
        "0: (85) call kernel-function#1234",
        "0: (85) call unknown#999",
        "0: (85) call pc+5",
        "0: (85) call pc-1",
        "0: (05) goto pc+2",
        "0: (05) goto pc-3",
        "0: (06) gotol pc+100000",
        "0: (e5) may_goto pc+4",
        "0: (0d) gotox r3",
        "0: (95) exit",
        "0: (25) if r1 > 0x3 goto pc+2",
        "0: (a5) if r1 < 0xffffffff goto pc+0",
        "0: (5e) if w1 != w2 goto pc-3",
        "0: (c6) if w1 s< 0x0 goto pc+1",
        "0: (4d) if r1 & r2 goto pc+1",
        "0: (7d) if r1 s>= r2 goto pc+1",
        "0: (d5) if r1 s<= 0x5 goto pc+1",
    ];
    for l in lines {
        kernel_round_trip(l);
    }
}

#[test]
fn kernel_forms_encode_correctly() {
    assert_eq!(one("0: (63) *(u32 *)(r10 -4) = r1"), Insn::new(0x63, 10, 1, -4, 0));
    assert_eq!(one("(3f) r1 s/= r2"), Insn::new(0x3f, 1, 2, 1, 0));
    assert_eq!(one("r1 = (s16)r2"), Insn::new(0xbf, 1, 2, 16, 0));
    assert_eq!(one("if r1 > 0x3 goto pc+2"), Insn::new(0x25, 1, 0, 2, 3));
    assert_eq!(one("if w1 s< 0xffffffff goto pc+1"), Insn::new(0xc6, 1, 0, 1, -1));
    assert_eq!(one("r1 = be16 r1"), Insn::new(0xdc, 1, 0, 0, 16));
    assert_eq!(one("r1 = le32 r1"), Insn::new(0xd4, 1, 0, 0, 32));
    assert_eq!(one("r1 = bswap64 r1"), Insn::new(0xd7, 1, 0, 0, 64));
    assert_eq!(one("lock *(u32 *)(r1 +0) += r2"), Insn::new(0xc3, 1, 2, 0, 0));
    assert_eq!(one("r0 = atomic64_fetch_add((u64 *)(r1 +0), r0)"), Insn::new(0xdb, 1, 0, 0, 1));
    assert_eq!(one("r0 = atomic_cmpxchg((u32 *)(r1 +0), r0, r2)"), Insn::new(0xc3, 1, 2, 0, BPF_CMPXCHG));
    assert_eq!(one("r0 = load_acquire((u64 *)(r1 +0))"), Insn::new(0xdb, 0, 1, 0, BPF_LOAD_ACQ));
    assert_eq!(one("store_release((u32 *)(r1 +4), r2)"), Insn::new(0xc3, 1, 2, 4, BPF_STORE_REL));
    assert_eq!(one("r0 = *(u8 *)skb[12]"), Insn::new(0x30, 0, 0, 0, 12));
    assert_eq!(one("r0 = *(u16 *)skb[r1 + 2]"), Insn::new(0x48, 0, 1, 0, 2));
    assert_eq!(one("gotol pc+70000"), Insn::new(0x06, 0, 0, 0, 70000));
    assert_eq!(one("call 93"), Insn::new(0x85, 0, 0, 0, 93));
    assert_eq!(one("may_goto pc+1"), Insn::new(0xe5, 0, 0, 1, 0));
    let p = asm("r1 = map[id:map_hash_8b]");
    assert_eq!(p.insns, vec![Insn::new(0x18, 1, BPF_PSEUDO_MAP_FD, 0, 0), Insn::default()]);
    assert_eq!(p.relocs[&0], Reloc::Map { name: "map_hash_8b".into() });
    assert_eq!(p.lines, vec![1, 0]);
    let p = asm("r1 = map[id:array][0]+8");
    assert_eq!(p.insns, vec![Insn::new(0x18, 1, BPF_PSEUDO_MAP_VALUE, 0, 0), Insn::new(0, 0, 0, 0, 8)]);
    assert_eq!(p.relocs[&0], Reloc::MapValue { name: "array".into(), offset: 8 });
    // A raw map id (no name) is kept as the fd.
    let p = asm("r1 = map[id:7]");
    assert_eq!(p.insns[0], Insn::new(0x18, 1, BPF_PSEUDO_MAP_FD, 0, 7));
    assert!(p.relocs.is_empty());
}

#[test]
fn opcode_comment_decides_and_checks() {
    // `(18)` makes `r1 = 5` a 64-bit load; without it, a mov.
    assert_eq!(asm("0: (18) r1 = 0x5").insns.len(), 2);
    assert_eq!(one("0: r1 = 5"), Insn::new(0xb7, 1, 0, 0, 5));
    let e = asm_err("3: (bf) r1 += r2");
    assert_eq!((e.line, e.column), (1, 4));
    assert!(e.message.contains("(bf) does not match"), "{}", e.message);
}

#[test]
fn helpers_and_kfunc_calls() {
    for text in
        ["call bpf_spin_lock", "call spin_lock", "call %[bpf_spin_lock]", "call bpf_spin_lock#93", "call 93"]
    {
        let p = asm(text);
        assert_eq!(p.insns[0], Insn::new(0x85, 0, 0, 0, 93), "{text}");
        assert_eq!(p.relocs[&0], Reloc::Helper { name: "bpf_spin_lock".into() }, "{text}");
    }
    let p = asm("call bpf_obj_new_impl");
    assert_eq!(p.insns[0], Insn::new(0x85, 0, BPF_PSEUDO_KFUNC_CALL, 0, 0));
    assert_eq!(p.relocs[&0], Reloc::Kfunc { name: "bpf_obj_new_impl".into() });
    let e = asm_err("r0 = 0\n  call bpf_nope");
    assert_eq!((e.line, e.column, e.message.as_str()), (2, 8, "unknown helper or kfunc `bpf_nope`"));
    let e = asm_err("call bpf_spin_lock#94");
    assert!(e.message.contains("helper #93, not #94"), "{}", e.message);
}

const SPIN_LOCK_TEST1: &str = r#"
	r1 = 0;						\
	*(u32*)(r10 - 4) = r1;				\
	r2 = r10;					\
	r2 += -4;					\
	r1 = %[map_spin_lock] ll;			\
	call %[bpf_map_lookup_elem];			\
	if r0 != 0 goto l0_%=;				\
	exit;						\
l0_%=:	r6 = r0;					\
	r1 = r0;					\
	r1 += 4;					\
	call %[bpf_spin_lock];				\
	r1 = r6;					\
	r1 += 4;					\
	r0 = *(u32*)(r6 + 0);				\
	call %[bpf_spin_unlock];			\
	r0 = 0;						\
	exit;						\
"#;

const SPIN_LOCK_TEST1_LOG: &str = "\
0: (b7) r1 = 0
1: (63) *(u32 *)(r10 -4) = r1
2: (bf) r2 = r10
3: (07) r2 += -4
4: (18) r1 = map[id:map_spin_lock]
6: (85) call bpf_map_lookup_elem#1
7: (55) if r0 != 0x0 goto pc+1
8: (95) exit
9: (bf) r6 = r0
10: (bf) r1 = r0
11: (07) r1 += 4
12: (85) call bpf_spin_lock#93
13: (bf) r1 = r6
14: (07) r1 += 4
15: (61) r0 = *(u32 *)(r6 +0)
16: (85) call bpf_spin_unlock#94
17: (b7) r0 = 0
18: (95) exit
";

#[test]
fn selftest_spin_lock_test1() {
    // tools/testing/selftests/bpf/progs/verifier_spin_lock.c, "spin_lock: test1 success".
    let p = asm(SPIN_LOCK_TEST1);
    assert_eq!(disassemble(&p), SPIN_LOCK_TEST1_LOG);
    assert_eq!(p.labels.get(&9).map(String::as_str), Some("l0_%="));
    assert_eq!(p.lines[..6], [2, 3, 4, 5, 6, 0]);
    // And the kernel-log text assembles to the same program.
    let q = asm(SPIN_LOCK_TEST1_LOG);
    assert_eq!((q.insns, q.relocs), (p.insns, p.relocs));
}

#[test]
fn selftest_subprog_and_local_labels() {
    // verifier_spin_lock.c "test10 lock in subprog without unlock": main and subprog in one
    // text; `l0_%=` labels are local to each function.
    let text = r#"
main:
	r1 = 0;
	*(u32*)(r10 - 4) = r1;
	r2 = r10;
	r2 += -4;
	r1 = %[map_spin_lock] ll;
	call %[bpf_map_lookup_elem];
	if r0 != 0 goto l0_%=;
	exit;
l0_%=:	r6 = r0;
	r1 = r0;
	r1 += 4;
	call lock_in_subprog_without_unlock__1;
	r1 = r6;
	r1 += 4;
	call %[bpf_spin_unlock];
	r0 = 1;
	exit;
lock_in_subprog_without_unlock__1:
	if r1 == 0 goto l0_%=;
	call %[bpf_spin_lock];
l0_%=:	r0 = 0;
	exit;
"#;
    let p = asm(text);
    assert_eq!(p.insns[12], Insn::new(0x85, 0, BPF_PSEUDO_CALL, 0, 5));
    assert_eq!(p.relocs[&12], Reloc::Subprog { label: "lock_in_subprog_without_unlock__1".into() });
    assert_eq!(p.subprog_starts(), vec![0, 18]);
    assert_eq!(p.insns[18], Insn::new(0x15, 1, 0, 1, 0));
    assert_eq!(p.labels[&18], "lock_in_subprog_without_unlock__1");
    assert_eq!(p.labels[&0], "main");
    assert!(disassemble(&p).contains("12: (85) call pc+5\n"));
    // Reassembling the disassembly names the subprogram after the label... when it is known.
    let q = asm(&disassemble(&p));
    assert_eq!(q.insns, p.insns);
    assert_eq!(q.relocs[&12], Reloc::Subprog { label: "subprog_18".into() });
}

#[test]
fn selftest_block_comments_and_multiple_labels() {
    // From verifier_spin_lock.c "regsafe() check_ids() similar id mappings": C comments inside
    // the asm string, spanning lines that end in `\`.
    let text = "\
	r1 = 0;						\\
	/* if r6 > r7 goto +5      ; no new information about the state is derived from\\
	 *                         ; this check, thus produced verifier states differ\\
	 * goto unlock					\\
	 */						\\
	if r6 > r7 goto l2_%=;				\\
	goto l3_%=;					\\
l2_%=:	/* spin_lock(r9) */				\\
	r1 = r9;					\\
l3_%=:	/* spin_unlock(r9) */				\\
	r0 = 0;						\\
l1_%=:	exit;						\\
";
    let p = asm(text);
    assert_eq!(p.insns.len(), 6);
    assert_eq!(p.insns[1], Insn::new(0x2d, 6, 7, 1, 0));
    assert_eq!(p.insns[2], Insn::new(0x05, 0, 0, 1, 0));
    assert_eq!(p.lines, vec![1, 6, 7, 9, 11, 12]);
}

#[test]
fn llvm_forms() {
    assert_eq!(one("*(u32 *)(r10 - 4) = r1;"), Insn::new(0x63, 10, 1, -4, 0));
    assert_eq!(one("*(u32 *)(r10 - 4) = w1"), Insn::new(0x63, 10, 1, -4, 0));
    assert_eq!(one("*(u64 *)(r10 - 8) = 0;  \\"), Insn::new(0x7a, 10, 0, -8, 0));
    assert_eq!(one("w0 = *(u32 *)(r1 + 4);"), Insn::new(0x61, 0, 1, 4, 0));
    assert_eq!(one("r0 = *(s8 *)(r1 + 0)"), Insn::new(0x91, 0, 1, 0, 0));
    assert_eq!(one("w0 = 0;"), Insn::new(0xb4, 0, 0, 0, 0));
    assert_eq!(one("lock *(u64 *)(r1 + 0) += r2"), Insn::new(0xdb, 1, 2, 0, 0));
    assert_eq!(one("lock *(u32 *)(r1 + 0) += w2"), Insn::new(0xc3, 1, 2, 0, 0));
    assert_eq!(one("r2 = atomic_fetch_add((u64 *)(r1 + 0), r2)"), Insn::new(0xdb, 1, 2, 0, 1));
    assert_eq!(one("w2 = atomic_fetch_or((u32 *)(r1 + 0), w2)"), Insn::new(0xc3, 1, 2, 0, 0x41));
    assert_eq!(one("r2 = xchg_64(r1 + 8, r2)"), Insn::new(0xdb, 1, 2, 8, BPF_XCHG));
    assert_eq!(one("w2 = xchg32_32(r1 + 0, w2)"), Insn::new(0xc3, 1, 2, 0, BPF_XCHG));
    assert_eq!(one("r0 = cmpxchg_64(r1 + 0, r0, r2)"), Insn::new(0xdb, 1, 2, 0, BPF_CMPXCHG));
    assert_eq!(one("w0 = cmpxchg32_32(r1 + 0, w0, w2)"), Insn::new(0xc3, 1, 2, 0, BPF_CMPXCHG));
    assert_eq!(one("w0 = load_acquire((u8 *)(r1 + 0))"), Insn::new(0xd3, 0, 1, 0, BPF_LOAD_ACQ));
    assert_eq!(one("r0 = *(u8 *)skb[0];"), Insn::new(0x30, 0, 0, 0, 0));
    assert_eq!(one("r0 = *(u16 *)skb[r6]"), Insn::new(0x48, 0, 6, 0, 0));
    assert_eq!(one("goto +2"), Insn::new(0x05, 0, 0, 2, 0));
    assert_eq!(one("if r1 > 3 goto -1 <LBB0_1>"), Insn::new(0x25, 1, 0, -1, 3));
    assert_eq!(one("if w1 s> -1 goto +0"), Insn::new(0x66, 1, 0, 0, -1));
    assert_eq!(one("r1 = -r1"), Insn::new(0x87, 1, 0, 0, 0));
    assert_eq!(one("w1 s%= w2"), Insn::new(0x9c, 1, 2, 1, 0));
    let p = asm("r1 = 0x1234 ll");
    assert_eq!(p.insns, vec![Insn::new(0x18, 1, 0, 0, 0x1234), Insn::default()]);
    let p = asm("r1 = -2 ll");
    assert_eq!(p.insns, vec![Insn::new(0x18, 1, 0, 0, -2), Insn::new(0, 0, 0, 0, -1)]);
    for text in ["r1 = %[map_hash_8b] ll;", "r1 = map_hash_8b ll"] {
        let p = asm(text);
        assert_eq!(p.insns[0], Insn::new(0x18, 1, BPF_PSEUDO_MAP_FD, 0, 0));
        assert_eq!(p.relocs[&0], Reloc::Map { name: "map_hash_8b".into() });
    }
    let p = asm("r1 = array + 12 ll");
    assert_eq!(p.insns, vec![Insn::new(0x18, 1, BPF_PSEUDO_MAP_VALUE, 0, 0), Insn::new(0, 0, 0, 0, 12)]);
    assert_eq!(p.relocs[&0], Reloc::MapValue { name: "array".into(), offset: 12 });
    // A global section is addressed by value.
    let p = asm("r1 = .data ll");
    assert_eq!(p.relocs[&0], Reloc::MapValue { name: ".data".into(), offset: 0 });
    // Several statements on a line, a label followed by an instruction, comments.
    let p = asm("r0 = 0; r1 = 1 // two\nl1: exit # done\n; source line comment\n/* block */ goto l1");
    assert_eq!(p.insns.len(), 4);
    assert_eq!(p.insns[3], Insn::new(0x05, 0, 0, -2, 0));
    assert_eq!(p.lines, vec![1, 1, 2, 4]);
    // A callback address: `rX = label ll` is BPF_PSEUDO_FUNC.
    let p = asm("r2 = cb ll\nexit\ncb: r0 = 0\nexit");
    assert_eq!(p.insns[0], Insn::new(0x18, 2, BPF_PSEUDO_FUNC, 0, 2));
    assert_eq!(p.relocs[&0], Reloc::Subprog { label: "cb".into() });
}

#[test]
fn located_errors() {
    let cases: &[(&str, usize, usize, &str)] = &[
        ("r0 = 0\n  r1 = nomap ll", 2, 8, "unknown map `nomap`"),
        ("goto l9", 1, 6, "undefined label `l9`"),
        ("r11x = 0", 1, 1, "expected an instruction"),
        ("r1 += w2", 1, 7, "both registers must be"),
        ("r1 = 0x100000000", 1, 6, "does not fit in 32 bits (add `ll`"),
        ("*(u32 *)(r10 - 4) = ", 1, 21, "expected an immediate, found end of statement"),
        (".8byte %[insn]", 1, 1, "directive `.8byte` is not supported"),
        ("r6 = *(u32*)(r6 + %[__sk_buff_mark]);", 1, 19, "constants are not supported"),
        ("a:\na: exit", 2, 1, "label `a` is already defined on line 1"),
        ("exit /* open", 1, 6, "unterminated `/*` comment"),
        ("if r1 ?? r2 goto +1", 1, 7, "unexpected character `?`"),
        ("if r1 = r2 goto +1", 1, 7, "expected a comparison"),
        ("r1 = *(u128 *)(r2 + 0)", 1, 8, "expected a size"),
        (
            "r0 = atomic64_fetch_add((u32 *)(r1 + 0), r0)",
            1,
            26,
            "`atomic64_` operations take a `u64` operand",
        ),
        ("r2 = atomic_fetch_add((u64 *)(r1 + 0), r3)", 1, 40, "the old value goes to the source register"),
        ("r1 = be16 r2", 1, 11, "byte swaps work in place"),
        ("*(u32 *)(r10 - 40000) = r1", 1, 14, "offset -40000 does not fit in 16 bits"),
        ("w1 = 5 ll", 1, 6, "needs an `r` register"),
        ("r1 = 5 exit", 1, 8, "expected end of statement, found `exit`"),
        ("call pc", 1, 8, "expected `+` or `-` after `pc`"),
        ("r0 = *(u8 *)skb[-]", 1, 17, "expected an immediate"),
    ];
    for &(text, line, column, msg) in cases {
        let e = asm_err(text);
        assert!(e.message.contains(msg), "{text:?}: got {e}, want {msg:?}");
        assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
    }
}

#[test]
fn state_and_source_lines_are_skipped() {
    let log = "0: R1=ctx() R10=fp0\n; bpf_spin_lock(&glock); @ rbtree.c:216\n0: (b7) r0 = 0\n4: frame1: R10=fp0 cb\n1: (95) exit\n";
    assert_eq!(asm(log).insns.len(), 2);
}

#[test]
fn bug_forms_print_like_the_kernel() {
    // 0x83: STX with mode 0x80 (MEMSX is not a store mode).
    let p = Program { insns: vec![Insn::new(0x83, 0, 0, 0, 0)], ..Default::default() };
    assert_eq!(format_insn(&p, 0), "0: BUG_83");
    let p = Program { insns: vec![Insn::new(0x03 | BPF_ATOMIC, 1, 2, 0, 0x77)], ..Default::default() };
    assert_eq!(format_insn(&p, 0), "0: BUG_c3");
    let p = Program { insns: vec![Insn::new(0x21, 0, 0, 0, 0)], ..Default::default() };
    assert_eq!(format_insn(&p, 0), "0: BUG_ldx_21");
    let p = Program { insns: vec![Insn::new(0xe7, 1, 0, 0, 0)], ..Default::default() };
    assert_eq!(format_insn(&p, 0), "0: (e7) r1 (null) 0");
    assert_eq!(format_insn(&p, 3), "3: <none>");
    // 7.3 rejects a sign-extending 64-bit load, and prints probe atomics with a prefix.
    let p = Program {
        insns: vec![Insn::new(0x99, 1, 2, 0, 0), Insn::new(0xfb, 1, 2, 0, 1)],
        ..Default::default()
    };
    assert_eq!(format_insn(&p, 0), "0: BUG_ldx_99");
    assert_eq!(format_insn(&p, 1), "1: (fb) probe r2 = atomic64_fetch_add((u64 *)(r1 +0), r2)");
}

// ---- property tests ----

fn reg() -> impl Strategy<Value = u8> {
    0u8..=10
}

fn size() -> impl Strategy<Value = u8> {
    prop_oneof![Just(BPF_B), Just(BPF_H), Just(BPF_W), Just(BPF_DW)]
}

/// One generated instruction (one or two slots) and its relocation.
type Gen = (Vec<Insn>, Option<Reloc>);

fn single(i: Insn) -> Gen {
    (vec![i], None)
}

fn alu() -> impl Strategy<Value = Gen> {
    let cls = prop_oneof![Just(BPF_ALU), Just(BPF_ALU64)];
    let op = prop_oneof![
        Just(BPF_ADD),
        Just(BPF_SUB),
        Just(BPF_MUL),
        Just(BPF_DIV),
        Just(BPF_OR),
        Just(BPF_AND),
        Just(BPF_LSH),
        Just(BPF_RSH),
        Just(BPF_MOD),
        Just(BPF_XOR),
        Just(BPF_MOV),
        Just(BPF_ARSH)
    ];
    let plain = (cls.clone(), op, any::<bool>(), reg(), reg(), any::<i32>(), any::<bool>()).prop_map(
        |(c, op, x, d, s, imm, signed)| {
            let off = if signed && (op == BPF_DIV || op == BPF_MOD) { 1 } else { 0 };
            if x {
                single(Insn::new(c | op | BPF_X, d, s, off, 0))
            } else {
                single(Insn::new(c | op | BPF_K, d, 0, off, imm))
            }
        },
    );
    let special = (cls, reg(), reg(), prop_oneof![Just(16), Just(32), Just(64)], 0u8..5, any::<i32>())
        .prop_map(|(c, d, s, bits, kind, imm)| {
            single(match kind {
                0 => Insn::new(c | BPF_NEG, d, 0, 0, 0),
                1 if c == BPF_ALU => {
                    Insn::new(BPF_ALU | BPF_END | if imm & 1 == 0 { BPF_K } else { BPF_X }, d, 0, 0, bits)
                }
                1 => Insn::new(BPF_ALU64 | BPF_END, d, 0, 0, bits),
                2 => Insn::new(c | BPF_MOV | BPF_X, d, s, [8, 16, 32][(imm as u32 % 3) as usize], 0),
                3 => Insn::new(BPF_ALU64 | BPF_MOV | BPF_X, d, s, 1, imm),
                _ => Insn::new(c | BPF_MOV | BPF_K, d, 0, 0, imm),
            })
        });
    prop_oneof![plain, special]
}

fn jmp() -> impl Strategy<Value = Gen> {
    let cls = prop_oneof![Just(BPF_JMP), Just(BPF_JMP32)];
    let op = prop_oneof![
        Just(BPF_JEQ),
        Just(BPF_JGT),
        Just(BPF_JGE),
        Just(BPF_JSET),
        Just(BPF_JNE),
        Just(BPF_JSGT),
        Just(BPF_JSGE),
        Just(BPF_JLT),
        Just(BPF_JLE),
        Just(BPF_JSLT),
        Just(BPF_JSLE)
    ];
    let cond = (cls, op, any::<bool>(), reg(), reg(), any::<i16>(), any::<i32>()).prop_map(
        |(c, op, x, d, s, off, imm)| {
            single(if x {
                Insn::new(c | op | BPF_X, d, s, off, 0)
            } else {
                Insn::new(c | op | BPF_K, d, 0, off, imm)
            })
        },
    );
    let other = (0u8..5, reg(), any::<i16>(), any::<i32>()).prop_map(|(k, d, off, imm)| {
        single(match k {
            0 => Insn::new(BPF_JMP | BPF_JA, 0, 0, off, 0),
            1 => Insn::new(BPF_JMP32 | BPF_JA, 0, 0, 0, imm),
            2 => Insn::new(BPF_JMP | BPF_JCOND, 0, 0, off, 0),
            3 => Insn::new(BPF_JMP | BPF_JA | BPF_X, d, 0, 0, 0),
            _ => Insn::new(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        })
    });
    prop_oneof![cond, other]
}

fn mem() -> impl Strategy<Value = Gen> {
    let atomic_imm = prop_oneof![
        Just(0x00),
        Just(0x40),
        Just(0x50),
        Just(0xa0),
        Just(0x01),
        Just(0x41),
        Just(0x51),
        Just(0xa1),
        Just(BPF_XCHG),
        Just(BPF_CMPXCHG),
        Just(BPF_LOAD_ACQ),
        Just(BPF_STORE_REL)
    ];
    (0u8..7, size(), reg(), reg(), any::<i16>(), any::<i32>(), atomic_imm).prop_map(
        |(k, sz, d, s, off, imm, aimm)| {
            single(match k {
                0 => Insn::new(BPF_LDX | BPF_MEM | sz, d, s, off, 0),
                1 => Insn::new(BPF_LDX | BPF_MEMSX | if sz == BPF_DW { BPF_W } else { sz }, d, s, off, 0),
                2 => Insn::new(BPF_ST | BPF_MEM | sz, d, 0, off, imm),
                3 => Insn::new(BPF_STX | BPF_MEM | sz, d, s, off, 0),
                4 => Insn::new(BPF_STX | BPF_ATOMIC | sz, d, s, off, aimm),
                5 => Insn::new(BPF_LD | BPF_ABS | sz, 0, 0, 0, imm),
                _ => Insn::new(BPF_LD | BPF_IND | sz, 0, s, 0, imm),
            })
        },
    )
}

fn names() -> impl Strategy<Value = String> {
    prop_oneof![Just("map_spin_lock".to_string()), Just("array".to_string()), Just(".data".to_string())]
}

fn wide_and_calls() -> impl Strategy<Value = Gen> {
    (0u8..8, reg(), any::<i32>(), any::<i32>(), names(), 0i32..212, any::<u32>()).prop_map(
        |(k, d, lo, hi, name, hid, off)| {
            let ld = |src: u8, lo: i32, hi: i32| {
                vec![Insn::new(BPF_LD | BPF_DW | BPF_IMM, d, src, 0, lo), Insn::new(0, 0, 0, 0, hi)]
            };
            match k {
                0 => (ld(0, lo, hi), None),
                1 => (ld(BPF_PSEUDO_MAP_FD, 0, 0), Some(Reloc::Map { name })),
                2 => (ld(BPF_PSEUDO_MAP_VALUE, 0, off as i32), Some(Reloc::MapValue { name, offset: off })),
                3 => (ld(BPF_PSEUDO_MAP_FD, lo, 0), None),
                4 => {
                    let name = crate::helpers::helper_name(hid).unwrap_or("bpf_unspec").to_string();
                    (vec![Insn::new(BPF_JMP | BPF_CALL, 0, 0, 0, hid)], Some(Reloc::Helper { name }))
                }
                5 => {
                    let name =
                        ["bpf_obj_new_impl", "bpf_res_spin_lock"][(lo as u32 % 2) as usize].to_string();
                    (
                        vec![Insn::new(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_KFUNC_CALL, 0, hi & 0xffff)],
                        Some(Reloc::Kfunc { name }),
                    )
                }
                // Subprogram references get fixed up in `program()` once the index is known.
                6 => (
                    vec![Insn::new(BPF_JMP | BPF_CALL, 0, BPF_PSEUDO_CALL, 0, lo % 64)],
                    Some(Reloc::Subprog { label: String::new() }),
                ),
                _ => (ld(BPF_PSEUDO_FUNC, lo % 64, 0), Some(Reloc::Subprog { label: String::new() })),
            }
        },
    )
}

fn program() -> impl Strategy<Value = Program> {
    prop::collection::vec(prop_oneof![alu(), jmp(), mem(), wide_and_calls()], 1..40).prop_map(|gens| {
        let mut p = Program::default();
        for (insns, reloc) in gens {
            let idx = p.insns.len();
            let mut insns = insns;
            if let Some(Reloc::Subprog { .. }) = reloc {
                // Keep the target at or after the program start.
                let t = (idx as i64 + insns[0].imm as i64 + 1).max(0);
                insns[0].imm = (t - idx as i64 - 1) as i32;
                p.relocs.insert(idx, Reloc::Subprog { label: format!("subprog_{t}") });
            } else if let Some(r) = reloc {
                p.relocs.insert(idx, r);
            }
            p.insns.extend(insns);
        }
        p
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn disassembly_round_trips(p in program()) {
        let text = disassemble(&p);
        let q = assemble(&text, &syms()).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        prop_assert_eq!(&q.insns, &p.insns, "{}", text);
        prop_assert_eq!(&q.relocs, &p.relocs, "{}", text);
        prop_assert_eq!(disassemble(&q), text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..160)) {
        let insns = decode(&bytes[..bytes.len() / 8 * 8]).unwrap_or_default();
        let p = Program { insns, ..Default::default() };
        let text = disassemble(&p);
        for i in 0..p.insns.len() + 1 {
            let _ = format_insn(&p, i);
        }
        let _ = assemble(&text, &syms());
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = assemble(&text, &syms());
    }

    #[test]
    fn asm_like_text_never_panics(text in "([rw][0-9]{1,2}|[-+*/%&|^<>=!s ():;#\\[\\]]|0x[0-9a-f]{1,3}|[0-9]{1,3}|ll|goto|pc|call|exit|lock|map|id|skb|u32|s8|%\\[x\\]|l0_%=|\\\\|\n){0,40}") {
        let _ = assemble(&text, &syms());
    }

    #[test]
    fn mutated_programs_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, any::<char>()), 1..8),
        which in 0usize..2,
    ) {
        let mut chars: Vec<char> = [SPIN_LOCK_TEST1, SPIN_LOCK_TEST1_LOG][which].chars().collect();
        for (at, kind, c) in edits {
            let i = at.index(chars.len() + 1);
            match kind {
                0 => chars.insert(i, c),
                1 if i < chars.len() => { chars.remove(i); }
                _ if i < chars.len() => chars[i] = c,
                _ => {}
            }
        }
        let text: String = chars.into_iter().collect();
        if let Ok(p) = assemble(&text, &syms()) {
            let _ = disassemble(&p);
        }
    }
}
