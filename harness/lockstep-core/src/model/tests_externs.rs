//! `extern ... __ksym` functions used as values (`ksym.rs`, issue 14 item 5: task_kfunc_success's
//! `bpf_ksym_exists()`), on the sample kernel BTF (`kernel_btf::fixture`: FUNC `free_task`,
//! prototype `int (struct task_struct *, int)`; no module BTF read).

use std::sync::Arc;

use super::test_fixtures::*;
use super::*;
use crate::asm::{Reloc, Symbols};
use crate::insn::BPF_PSEUDO_BTF_ID;
use crate::verdict::VerdictKind;

/// `r1 = &name; if r1 != 0 goto ok; r0 = r9 (uninitialised); exit; ok: r0 = 0; exit`: accepted
/// when the ksym resolves (a non-null `PTR_TO_MEM`), refused at insn 3 when it is the constant 0.
/// `with_btf`: the sample kernel BTF is given; `modules`: module BTF was read (none has a FUNC).
fn verdicts(name: &str, weak: bool, proto: &str, with_btf: bool, modules: bool) -> Vec<(String, Verdict)> {
    let text = "r1 = 0 ll\n if r1 != 0 goto +2\n r0 = r9\n exit\n r0 = 0\n exit\n";
    let mut c = object_case_in("socket", text, &Symbols::default());
    c.program.insns[0].src = BPF_PSEUDO_BTF_ID;
    c.program.relocs.insert(0, Reloc::KsymFunc { name: name.into(), weak, proto: proto.into() });
    let mut k = sample_kernel_btf();
    if modules {
        Arc::get_mut(&mut k).expect("not shared yet").module_funcs = Some(Default::default());
    }
    verdicts_with_kernel_btf(&c, with_btf.then_some(&k))
}

const FREE_TASK: &str = "proto(int;ptr(struct),int)";

#[test]
fn essential_names_drop_the_last_flavour() {
    assert_eq!(ksym::essential_name("bpf_task_acquire___one"), "bpf_task_acquire");
    assert_eq!(ksym::essential_name("a___b___c"), "a___b");
    assert_eq!(ksym::essential_name("bpf_task_acquire"), "bpf_task_acquire");
    assert_eq!(ksym::essential_name("a____b"), "a____b");
}

#[test]
fn a_resolved_ksym_function_is_a_non_null_pointer() {
    for (p, v) in verdicts("free_task", true, FREE_TASK, true, false) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    // A flavour resolves by its essential name.
    for (p, v) in verdicts("free_task___one", true, FREE_TASK, true, false) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn a_weak_unresolved_ksym_function_is_zero() {
    // Missing, and present with an incompatible prototype (bpf_core_types_are_compat()).
    for (name, proto) in
        [("no_such_func", FREE_TASK), ("free_task___two", "proto(int;ptr(struct),int,ptr(int))")]
    {
        for (p, v) in verdicts(name, true, proto, true, true) {
            assert_eq!((v.verdict, v.insn), (VerdictKind::Reject, Some(3)), "{p} {name}: {v:?}");
        }
    }
}

#[test]
fn unknowable_resolutions_stay_unsupported() {
    // Strong and unresolved: libbpf refuses the object; no kernel BTF: nothing to resolve in;
    // not in vmlinux and no module BTF read: perhaps a module's.
    for (name, weak, with_btf, modules) in [
        ("no_such_func", false, true, true),
        ("free_task", true, false, false),
        ("no_such_func", true, true, false),
    ] {
        for (p, v) in verdicts(name, weak, FREE_TASK, with_btf, modules) {
            assert_eq!(v.verdict, VerdictKind::Unsupported, "{p} {name}: {v:?}");
            assert!(v.message.as_deref().unwrap_or("").contains(name), "{p}: {v:?}");
        }
    }
}
