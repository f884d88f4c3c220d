//! Typed `extern <type> name __ksym` variables (`ksym.rs` `ksym_var_reg()`, issue 14:
//! kfunc_call_test_subprog's `bpf_prog_active`) and `bpf_per_cpu_ptr()` / `bpf_this_cpu_ptr()`
//! on them (`helpers_plain.rs`), on the sample kernel BTF (`kernel_btf::fixture`: VAR
//! `bpf_prog_active` of the 8-byte `int`, listed in `.data..percpu`; VAR `some_counter` of the
//! 4-byte `u32`, not per-cpu).

use super::test_fixtures::*;
use super::*;
use crate::asm::{Reloc, Symbols};
use crate::insn::BPF_PSEUDO_BTF_ID;
use crate::verdict::VerdictKind;

/// The verdict on every profile of `text` (a sched_cls program whose first instruction is the
/// `ld_imm64` of the variable `name`), with the sample kernel BTF when `with_btf`.
fn verdicts(text: &str, name: &str, weak: bool, shape: &str, with_btf: bool) -> Vec<(String, Verdict)> {
    let mut c = object_case_in("tc", text, &Symbols::default());
    c.program.insns[0].src = BPF_PSEUDO_BTF_ID;
    c.program.relocs.insert(0, Reloc::KsymVar { name: name.into(), weak, shape: shape.into() });
    let k = sample_kernel_btf();
    verdicts_with_kernel_btf(&c, with_btf.then_some(&k))
}

fn assert_all(text: &str, name: &str, weak: bool, with_btf: bool, want: (VerdictKind, Option<usize>)) {
    for (p, v) in verdicts(text, name, weak, "int", with_btf) {
        let got = (v.verdict, if v.verdict == VerdictKind::Reject { v.insn } else { None });
        assert_eq!(got, want, "{p} {name}: {v:?}\n{text}");
    }
}

const PER_CPU: &str = "r1 = 0 ll\n r2 = 0\n call bpf_per_cpu_ptr\n";

#[test]
fn per_cpu_ptr_of_a_percpu_ksym_is_rdonly_mem_or_null() {
    // Checked against NULL, the 8 bytes read: accepted.
    let ok = format!("{PER_CPU} if r0 == 0 goto +1\n r0 = *(u64 *)(r0 + 0)\n r0 = 0\n exit\n");
    assert_all(&ok, "bpf_prog_active", false, true, (VerdictKind::Accept, None));
    // Not checked: the kernel says "R0 invalid mem access 'rdonly_mem_or_null'"; mem_access()
    // leaves a load through a maybe-null PTR_TO_MEM unsupported (as for a kfunc's).
    let unchecked = format!("{PER_CPU} r0 = *(u32 *)(r0 + 0)\n r0 = 0\n exit\n");
    assert_all(&unchecked, "bpf_prog_active", false, true, (VerdictKind::Unsupported, None));
    // Past mem_size (8): check_mem_region_access().
    let past = format!("{PER_CPU} if r0 == 0 goto +1\n r0 = *(u32 *)(r0 + 8)\n r0 = 0\n exit\n");
    assert_all(&past, "bpf_prog_active", false, true, (VerdictKind::Reject, Some(5)));
    // MEM_RDONLY: a store is refused.
    let store = format!("{PER_CPU} if r0 == 0 goto +1\n *(u32 *)(r0 + 0) = 1\n r0 = 0\n exit\n");
    assert_all(&store, "bpf_prog_active", false, true, (VerdictKind::Reject, Some(5)));
}

#[test]
fn this_cpu_ptr_of_a_percpu_ksym_is_never_null() {
    let text = "r1 = 0 ll\n call bpf_this_cpu_ptr\n r0 = *(u64 *)(r0 + 0)\n r0 = 0\n exit\n";
    assert_all(text, "bpf_prog_active", false, true, (VerdictKind::Accept, None));
}

#[test]
fn a_plain_ksym_variable_is_rdonly_mem_of_its_size() {
    let read = "r1 = 0 ll\n r0 = *(u32 *)(r1 + 0)\n r0 = 0\n exit\n";
    assert_all(read, "some_counter", false, true, (VerdictKind::Accept, None));
    let past = "r1 = 0 ll\n r0 = *(u32 *)(r1 + 4)\n r0 = 0\n exit\n";
    assert_all(past, "some_counter", false, true, (VerdictKind::Reject, Some(2)));
    // Not per-cpu: bpf_per_cpu_ptr's R1 check refuses it... which the model leaves to
    // this_cpu_ptr()'s list (PTR_TO_MEM is not in it): unsupported, not a wrong verdict.
    let per_cpu = format!("{PER_CPU} r0 = 0\n exit\n");
    assert_all(&per_cpu, "some_counter", false, true, (VerdictKind::Unsupported, None));
}

#[test]
fn unresolved_or_unknowable_ksym_variables() {
    // Weak and not in vmlinux: the constant 0, which bpf_per_cpu_ptr's R1 check refuses.
    let per_cpu = format!("{PER_CPU} r0 = 0\n exit\n");
    assert_all(&per_cpu, "no_such_var", true, true, (VerdictKind::Reject, Some(3)));
    // Strong and not in vmlinux (a module's, or libbpf refuses the object); no kernel BTF; a
    // local type other than the kernel's.
    assert_all(&per_cpu, "no_such_var", false, true, (VerdictKind::Unsupported, None));
    assert_all(&per_cpu, "bpf_prog_active", false, false, (VerdictKind::Unsupported, None));
    for (p, v) in verdicts(&per_cpu, "bpf_prog_active", false, "struct", true) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
}
