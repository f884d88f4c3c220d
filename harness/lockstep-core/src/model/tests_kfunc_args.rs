//! Kfuncs described by BTF (`kfunc_args.rs`, `kfunc_btf.rs`): hand-made descriptions on the
//! sample kernel BTF (`kernel_btf::fixture`: struct task_struct is id 2), judged on 7.3 (the
//! profile with `kfunc_btf_args`) as check_kfunc_call() / check_kfunc_args() of 7.3 judge them;
//! the messages are 7.3's verifier.c lines. Other profiles leave such a kfunc unsupported.

use std::sync::Arc;

use super::test_fixtures::cnt_lock_map;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, FieldKind, MapType, ProgType};
use crate::kernel_btf::{fixture::sample, KernelBtf, KernelBtfRef};
use crate::kfunc_btf::{Hook, KfArg, KfRet, KfuncDesc};
use crate::profile::{KF_ACQUIRE, KF_RELEASE, KF_RET_NULL};
use crate::verdict::VerdictKind;

const KFUNCS: [&str; 7] = ["t_scalar", "t_acquire", "t_release", "t_ctx", "t_acq_mem", "t_safe", "t_sleep"];

fn desc(flags: u32, args: Vec<KfArg>, ret: KfRet) -> KfuncDesc {
    KfuncDesc { flags, set: "s".into(), module: true, hooks: vec![Hook::Tc], args, ret }
}

fn btf() -> Arc<KernelBtf> {
    let mut k = KernelBtf::parse("sample", &sample()).expect("sample BTF parses");
    let task = || KfArg::Struct { name: "task_struct".into(), kid: 2, scalar_size: None };
    let ret_task = KfRet::Struct { name: "task_struct".into(), kid: 2 };
    let size = KfArg::AllocSize { rdonly: true };
    k.kfuncs.insert("t_scalar".into(), desc(0, vec![KfArg::Anything, KfArg::Anything], KfRet::Scalar));
    k.kfuncs.insert(
        "t_acquire".into(),
        desc(KF_ACQUIRE | KF_RET_NULL, vec![KfArg::FixedMem { size: 8 }], ret_task),
    );
    k.kfuncs.insert("t_release".into(), desc(KF_RELEASE, vec![task()], KfRet::Void));
    k.kfuncs.insert(
        "t_ctx".into(),
        desc(0, vec![KfArg::Struct { name: "__sk_buff".into(), kid: 99, scalar_size: None }], KfRet::Void),
    );
    k.kfuncs.insert("t_acq_mem".into(), desc(KF_ACQUIRE | KF_RET_NULL, vec![task(), size], KfRet::Mem));
    k.kfuncs.insert("t_safe".into(), desc(1 << 17, vec![KfArg::Anything], KfRet::Scalar));
    k.kfuncs.insert("t_sleep".into(), desc(1 << 5, vec![], KfRet::Void));
    Arc::new(k)
}

/// `body` then `out: r0 = 0; exit` in a sched_cls program, with map `a` (a bpf_spin_lock at 4).
fn case(prog_type: ProgType, body: &str) -> Case {
    let text = format!("{body}\nout:\n r0 = 0\n exit\n");
    let kfuncs: Vec<String> = KFUNCS.map(String::from).into_iter().collect();
    let symbols = Symbols { maps: vec!["a".into()], kfuncs: kfuncs.clone() };
    let program = assemble(&text, &symbols).expect("test program assembles");
    let map = cnt_lock_map("a", MapType::Array, FieldKind::SpinLock, true);
    let mut c = Case { maps: vec![map], ..Case::new("t", prog_type, program, &text) };
    c.extern_kfuncs = kfuncs;
    c
}

/// Each profile's verdict with the descriptions.
fn verdicts(c: &Case) -> Vec<(String, Verdict)> {
    let module = crate::module_src::bundled();
    let k = btf();
    KernelProfile::all()
        .into_iter()
        .map(|mut p| {
            p.kernel_btf = KernelBtfRef(Some(k.clone()));
            (p.name.clone(), check(c, &p, &module))
        })
        .collect()
}

/// The 7.3 verdict with the descriptions.
fn on_7_3(c: &Case) -> Verdict {
    verdicts(c).into_iter().find(|(p, _)| p == "7.3").expect("a 7.3 profile").1
}

const ACQUIRE: &str =
    "r1 = 0\n *(u64 *)(r10 - 8) = r1\n r1 = r10\n r1 += -8\n call t_acquire\n if r0 == 0 goto out\n";

#[test]
fn scalar_arguments_and_return() {
    let c = case(ProgType::SchedCls, "r1 = 1\n r2 = 2\n call t_scalar\n r0 &= 1");
    for (p, v) in verdicts(&c) {
        if p == "7.3" {
            assert_eq!(v, Verdict::accept());
        } else {
            // Profiles without kfunc_btf_args: unsupported, naming the kfunc.
            assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
            assert!(v.message.as_deref().unwrap_or("").contains("t_scalar"), "{p}: {v:?}");
        }
    }
}

#[test]
fn a_kfunc_outside_its_sets_program_types_is_not_allowed() {
    let v = on_7_3(&case(ProgType::Xdp, "r1 = 1\n r2 = 2\n call t_scalar"));
    assert_eq!(v, Verdict::reject(Some(2), "calling kernel function t_scalar is not allowed"));
}

#[test]
fn acquire_with_stack_memory_then_release() {
    let body = format!("{ACQUIRE} r1 = r0\n call t_release");
    assert_eq!(on_7_3(&case(ProgType::SchedCls, &body)), Verdict::accept());
    // Without the release: the reference leaks (acquire_reference() after the NULL-check id).
    let v = on_7_3(&case(ProgType::SchedCls, ACQUIRE.trim_end()));
    assert_eq!(v.verdict, VerdictKind::Reject, "{v:?}");
    assert!(
        v.message.as_deref().unwrap_or("").starts_with("Unreleased reference id=2 alloc_insn=4"),
        "{v:?}"
    );
    // The released pointer is an unknown scalar afterwards (mark_reg_invalid()): debian:7.3 says
    // "release kfunc ... expects referenced PTR_TO_BTF_ID passed to R1", but the model's bounds
    // may miss a zero the kernel knows ("Possibly NULL ..."), so it does not judge it.
    let body = format!("{ACQUIRE} r6 = r0\n r1 = r0\n call t_release\n r1 = r6\n call t_release");
    let v = on_7_3(&case(ProgType::SchedCls, &body));
    assert_eq!(v.verdict, VerdictKind::Unsupported, "{v:?}");
}

#[test]
fn null_and_unchecked_pointers_are_refused() {
    let v = on_7_3(&case(ProgType::SchedCls, "r1 = 0\n call t_release"));
    assert_eq!(v, Verdict::reject(Some(1), "Possibly NULL pointer passed to trusted R1"));
    let body =
        "r1 = 0\n *(u64 *)(r10 - 8) = r1\n r1 = r10\n r1 += -8\n call t_acquire\n r1 = r0\n call t_release";
    let v = on_7_3(&case(ProgType::SchedCls, body));
    assert_eq!(v, Verdict::reject(Some(6), "Possibly NULL pointer passed to trusted R1"));
}

#[test]
fn ctx_arguments() {
    assert_eq!(on_7_3(&case(ProgType::SchedCls, "call t_ctx")), Verdict::accept());
    let v = on_7_3(&case(ProgType::SchedCls, "r1 = 10\n call t_ctx"));
    assert_eq!(v, Verdict::reject(Some(1), "R1 expected pointer to ctx, but got scalar"));
}

#[test]
fn an_acquire_kfunc_returning_memory_and_size_arguments() {
    let body = format!("{ACQUIRE} r1 = r0\n r2 = 8\n call t_acq_mem");
    let v = on_7_3(&case(ProgType::SchedCls, &body));
    assert_eq!(v, Verdict::reject(Some(8), "acquire kernel function does not return PTR_TO_BTF_ID"));
    let body = format!("{ACQUIRE} r1 = r0\n r2 = -192 ll\n call t_acq_mem");
    let v = on_7_3(&case(ProgType::SchedCls, &body));
    assert_eq!(v, Verdict::reject(Some(9), "R2 allocation size exceeds u32 max"));
}

#[test]
fn uninitialised_stack_memory_and_unknown_flags_stay_unsupported() {
    let v = on_7_3(&case(ProgType::SchedCls, "r1 = r10\n r1 += -8\n call t_acquire"));
    assert_eq!(v.verdict, VerdictKind::Unsupported, "{v:?}");
    // KF_SLEEPABLE: check_kfunc_call() refuses it outside a sleepable state, before the arguments.
    let v = on_7_3(&case(ProgType::SchedCls, "call t_sleep"));
    assert_eq!(v, Verdict::reject(Some(0), "program must be sleepable to call sleepable kfunc t_sleep"));
}

#[test]
fn the_lock_rule_reads_the_flags() {
    // kfunc_spin_allowed(): KF_SPINLOCK_SAFE (1 << 17) in the kfunc's flags.
    let lookup = "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = a ll\n call bpf_map_lookup_elem\n if r0 == 0 goto out\n r6 = r0\n";
    let body = format!("{lookup} r1 = r6\n r1 += 4\n call bpf_spin_lock\n r1 = 1\n call t_safe\n r1 = r6\n r1 += 4\n call bpf_spin_unlock");
    assert_eq!(on_7_3(&case(ProgType::SchedCls, &body)), Verdict::accept());
    let body = format!("{lookup} r1 = r6\n r1 += 4\n call bpf_spin_lock\n r1 = 1\n r2 = 2\n call t_scalar\n r1 = r6\n r1 += 4\n call bpf_spin_unlock");
    let v = on_7_3(&case(ProgType::SchedCls, &body));
    assert_eq!(v, Verdict::reject(Some(14), "function calls are not allowed while holding a lock"));
}
