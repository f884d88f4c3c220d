//! Kfuncs described by BTF (`kfunc_args.rs`, `kfunc_btf.rs`): hand-made descriptions on the
//! sample kernel BTF (`kernel_btf::fixture`: struct task_struct is id 2), judged on 7.3 (the
//! profile with `kfunc_btf_args`) as check_kfunc_call() / check_kfunc_args() of 7.3 judge them;
//! the messages are 7.3's verifier.c lines (7.2's where they differ). 6.12 leaves such a kfunc
//! unsupported.

use std::sync::Arc;

use super::test_fixtures::{cnt_lock_map, verdicts_with_kernel_btf};
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, FieldKind, MapType, ProgType};
use crate::kernel_btf::{fixture::sample, KernelBtf};
use crate::kfunc_btf::{Hook, KfArg, KfRet, KfuncDesc};
use crate::profile::{KF_ACQUIRE, KF_RELEASE, KF_RET_NULL};
use crate::verdict::VerdictKind;

const KFUNCS: [&str; 10] = [
    "t_scalar",
    "t_acquire",
    "t_release",
    "t_ctx",
    "t_acq_mem",
    "t_safe",
    "t_sleep",
    "t_get_mem",
    "t_get_ro",
    "t_implicit",
];

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
    // bpf_kfunc_call_test_get_rdwr_mem / get_rdonly_mem (KF_RET_NULL, PTR_TO_MEM returns).
    let rdwr = KfArg::AllocSize { rdonly: false };
    k.kfuncs.insert("t_get_mem".into(), desc(KF_RET_NULL, vec![task(), rdwr], KfRet::Mem));
    k.kfuncs.insert(
        "t_get_ro".into(),
        desc(KF_RET_NULL, vec![task(), KfArg::AllocSize { rdonly: true }], KfRet::Mem),
    );
    // bpf_stream_print_stack: KF_IMPLICIT_ARGS | KF_SPINLOCK_SAFE | KF_PERFMON, the visible prototype.
    k.kfuncs.insert(
        "t_implicit".into(),
        desc((1 << 16) | (1 << 17) | (1 << 18), vec![KfArg::Anything], KfRet::Scalar),
    );
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
    verdicts_with_kernel_btf(c, Some(&btf()))
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
        if p != "6.12" {
            // 7.3, 7.2 and 7.2+kf-spin-lock have kfunc_btf_args.
            assert_eq!(v, Verdict::accept(), "{p}");
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
    // 7.2's check_kfunc_args() words it differently (debian:7.2, testmod/kfunc_args.toml).
    for (p, v) in verdicts(&case(ProgType::SchedCls, &body)) {
        match p.as_str() {
            "7.2" | "7.2+kf-spin-lock" => {
                assert_eq!(v, Verdict::reject(Some(9), "R2 rdonly/rdwr_buf_size exceeds u32 max"), "{p}")
            }
            "7.3" => assert_eq!(v, Verdict::reject(Some(9), "R2 allocation size exceeds u32 max")),
            _ => assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}"),
        }
    }
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

/// ACQUIRE, then `r6` = the task, `r7` = `{kfunc}(r6, {size})`, `body` on the non-NULL path,
/// the release at `rel`, then `after`.
fn get_mem(kfunc: &str, size: i64, body: &str, after: &str) -> String {
    format!(
        "{ACQUIRE} r6 = r0\n r1 = r6\n r2 = {size}\n call {kfunc}\n r7 = r0\n if r0 == 0 goto rel\n{body}\nrel:\n r1 = r6\n call t_release\n{after}"
    )
}

#[test]
fn memory_returns() {
    // check_kfunc_call(): PTR_TO_MEM of the rdwr_buf_size constant; loads and stores inside it.
    let ok = get_mem("t_get_mem", 8, " r1 = 42\n *(u32 *)(r7 + 0) = r1\n r0 = *(u32 *)(r7 + 4)", "");
    for (p, v) in verdicts(&case(ProgType::SchedCls, &ok)) {
        if p != "6.12" {
            assert_eq!(v, Verdict::accept(), "{p}");
        }
    }
    // MEM_RDONLY (rdonly_buf_size): check_mem_access() refuses the store (pc 13).
    let ro = get_mem("t_get_ro", 8, " r1 = 42\n *(u32 *)(r7 + 0) = r1", "");
    let v = on_7_3(&case(ProgType::SchedCls, &ro));
    assert_eq!(v, Verdict::reject(Some(13), "R7 cannot write into rdonly_mem"));
    // __check_mem_access(): past mem_size.
    let oob = get_mem("t_get_ro", 8, " r0 = *(u32 *)(r7 + 8)", "");
    let v = on_7_3(&case(ProgType::SchedCls, &oob));
    assert_eq!(v, Verdict::reject(Some(12), "invalid access to memory, mem_size=8 off=8 size=4"));
    // release_reference(): the memory goes with its parent (R7 is 0 on the NULL path too).
    let uaf = get_mem("t_get_mem", 8, "", " r0 = *(u32 *)(r7 + 0)");
    let v = on_7_3(&case(ProgType::SchedCls, &uaf));
    assert_eq!(v, Verdict::reject(Some(14), "R7 invalid mem access 'scalar'"));
    // A zero size: 7.3 a zero-sized buffer; 7.2 sizes it by the pointee type (not modelled).
    let zero = get_mem("t_get_mem", 0, " r0 = *(u32 *)(r7 + 0)", "");
    for (p, v) in verdicts(&case(ProgType::SchedCls, &zero)) {
        if p == "7.3" {
            assert_eq!(v, Verdict::reject(Some(12), "invalid access to memory, mem_size=0 off=0 size=4"));
        } else {
            assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
        }
    }
}

#[test]
fn implicit_arguments_and_perfmon() {
    // KF_IMPLICIT_ARGS: the visible prototype; KF_PERFMON passes as root; lock-safe (7.3's flag).
    assert_eq!(on_7_3(&case(ProgType::SchedCls, "r1 = 1\n call t_implicit\n r0 = 0")), Verdict::accept());
}
