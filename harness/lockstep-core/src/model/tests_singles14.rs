//! Session 14's singles (issue 14): a kfunc called by its libbpf `___flavour` name (ksym.rs
//! `flavoured_kfunc()`, task_kfunc_success's `test_task_kfunc_flavor_relo`) and atomics on a
//! stack slot (exec.rs `stack_atomic()`, verifier_arena's `mixed_arena_stack_atomic`).

use super::test_fixtures::*;
use super::*;
use crate::asm::{Reloc, Symbols};
use crate::case::{Case, ProgType};
use crate::insn::BPF_PSEUDO_BTF_ID;
use crate::verdict::VerdictKind;

/// The sample kernel BTF's `free_task` prototype (`Btf::compat_shape`).
const FREE_TASK: &str = "proto(int;ptr(struct),int)";

/// `r2 = &name (ld_imm64, when `proto` is given); call name; r0 = 0; exit` on the sample kernel
/// BTF, whose FUNC `free_task` the model has no rule for: the call's unsupported reason names
/// the kfunc the model judged.
fn flavoured_call(name: &str, proto: Option<&str>) -> Vec<(String, Verdict)> {
    verdicts_with_kernel_btf(&flavoured_case(name, proto), Some(&sample_kernel_btf()))
}

/// The case of [`flavoured_call`], from an object.
fn flavoured_case(name: &str, proto: Option<&str>) -> Case {
    let syms = Symbols { kfuncs: vec![name.into()], ..Default::default() };
    let text = format!("r2 = 0 ll\n call {name}\n r0 = 0\n exit\n");
    let mut c = object_case_in("socket", &text, &syms);
    c.extern_kfuncs = vec![name.into()];
    if let Some(proto) = proto {
        c.program.insns[0].src = BPF_PSEUDO_BTF_ID;
        c.program.relocs.insert(0, Reloc::KsymFunc { name: name.into(), weak: true, proto: proto.into() });
    }
    c
}

#[test]
fn flavour_separators() {
    assert!(ksym::has_flavour_separator("bpf_task_acquire___one"));
    assert!(ksym::has_flavour_separator("a____b"));
    assert!(!ksym::has_flavour_separator("bpf_task_acquire"));
    assert!(!ksym::has_flavour_separator("a__b_c__"));
}

#[test]
fn a_flavoured_kfunc_is_judged_as_the_kfunc_libbpf_resolves() {
    for (p, v) in flavoured_call("free_task___one", Some(FREE_TASK)) {
        let msg = v.message.clone().unwrap_or_default();
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
        assert!(msg.starts_with("kfunc free_task:"), "{p}: {msg}");
    }
    // A prototype libbpf finds incompatible: the call is poisoned (weak) or the load fails.
    for (p, v) in flavoured_call("free_task___two", Some("proto(int;ptr(struct),int,ptr(int))")) {
        let msg = v.message.clone().unwrap_or_default();
        assert!(msg.contains("`free_task___two` (a ___flavour name): not resolved"), "{p}: {msg}");
    }
    // No ld_imm64 of the extern: its local prototype is unknown.
    for (p, v) in flavoured_call("free_task___one", None) {
        let msg = v.message.clone().unwrap_or_default();
        assert!(msg.contains("no ld_imm64 of the extern"), "{p}: {msg}");
    }
    // A text case: lockstep's loader looks kfunc names up as written (no libbpf), so the
    // flavoured name is the call.
    let mut c = flavoured_case("free_task___one", Some(FREE_TASK));
    c.object = None;
    for (p, v) in verdicts_with_kernel_btf(&c, Some(&sample_kernel_btf())) {
        let msg = v.message.clone().unwrap_or_default();
        assert!(msg.starts_with("kfunc free_task___one:"), "{p}: {msg}");
    }
    // A name without a flavour is the call itself.
    for (p, v) in flavoured_call("free_task", Some(FREE_TASK)) {
        let msg = v.message.clone().unwrap_or_default();
        assert!(msg.starts_with("kfunc free_task:"), "{p}: {msg}");
    }
}

fn reject_at(insn: usize, message: &str) -> Verdict {
    Verdict { verdict: VerdictKind::Reject, message: Some(message.into()), insn: Some(insn) }
}

#[test]
fn a_stack_atomic_fetches_the_slot_then_leaves_it_unknown() {
    // The fetch fills r1 with the spilled 0 (4 is dead); the slot reads unknown afterwards, so
    // the uninitialised r9 at 7 is reached.
    let text = "*(u64 *)(r10 -8) = 0\n r1 = 1\n r1 = atomic_fetch_add((u64 *)(r10 -8), r1)\n \
                if r1 == 0 goto +1\n r0 = r8\n r2 = *(u64 *)(r10 -8)\n if r2 == 0 goto +1\n \
                r0 = r9\n r0 = 0\n exit\n";
    assert_text_on_all_profiles(ProgType::SocketFilter, text, &reject_at(7, "R9 !read_ok"));
    // cmpxchg: R0 gets the old value (the spilled 5), the slot is unknown.
    let text = "*(u64 *)(r10 -8) = 5\n r0 = 0\n r1 = 1\n r0 = atomic_cmpxchg((u64 *)(r10 -8), r0, r1)\n \
                if r0 == 5 goto +1\n r0 = r8\n r2 = *(u64 *)(r10 -8)\n if r2 == 5 goto +1\n \
                r0 = r9\n r0 = 0\n exit\n";
    assert_text_on_all_profiles(ProgType::SocketFilter, text, &reject_at(8, "R9 !read_ok"));
    // A non-fetching add under the lock's rules: nothing but the slot changes.
    let text = "r1 = 1\n *(u64 *)(r10 -8) = r1\n lock *(u64 *)(r10 -8) += r1\n r0 = 0\n exit\n";
    for (p, v) in text_verdicts(ProgType::SocketFilter, text) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn stack_atomics_the_model_leaves_alone() {
    // A fetch into the base register, a pointer operand, a spilled pointer in the slot.
    for text in [
        "r1 = r10\n r1 += -8\n *(u64 *)(r10 -8) = 0\n r1 = atomic_fetch_add((u64 *)(r1 +0), r1)\n r0 = 0\n exit\n",
        "r1 = r10\n *(u64 *)(r10 -8) = 0\n lock *(u64 *)(r10 -8) += r1\n r0 = 0\n exit\n",
        "r1 = r10\n *(u64 *)(r10 -8) = r1\n r2 = 1\n lock *(u64 *)(r10 -8) += r2\n r0 = 0\n exit\n",
    ] {
        for (p, v) in text_verdicts(ProgType::SocketFilter, text) {
            assert_eq!(v.verdict, VerdictKind::Unsupported, "{text} on {p}: {v:?}");
        }
    }
}
