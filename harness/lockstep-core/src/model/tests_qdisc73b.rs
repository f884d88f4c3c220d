//! Unit tests for the `bpf_qdisc` struct_ops rules of branch qdisc73b (`model/structops.rs`):
//! the calls a `Qdisc_ops` program may make (`bpf_base_func_proto()`, `bpf_qdisc_kfunc_filter()`
//! of net/sched/bpf_qdisc.c, the same file in 7.2 and 7.3), `.enqueue`'s `skb__ref` argument (a
//! reference from the first instruction, `do_check_common()`) and its `to_free` argument
//! (`bpf_qdisc_is_valid_access()`), and a referenced `struct sk_buff *` returned by `.dequeue`
//! (`check_reference_leak()` / `check_return_code()`). Measured: bpf_qdisc_fifo's five programs
//! (`bpf_fifo_enqueue` and `bpf_fifo_dequeue` among them, compiled from Debian's linux-source-7.3
//! and -7.2) load on debian:7.2 and debian:7.3 (docs/selftests-7.3.md, "kernel accept").

use std::sync::Arc;

use super::test_fixtures::*;
use super::*;
use crate::asm::Symbols;
use crate::case::{Case, StructOpsMember};
use crate::kernel_btf::{fixture::sample, KernelBtf, KernelBtfRef};
use crate::kfunc_btf::{Hook, KfArg, KfRet, KfuncDesc};
use crate::profile::KF_RELEASE;
use crate::verdict::VerdictKind;

/// The qdisc kfuncs of the fixture's BTF (ids of kernel_btf::fixture: 27 struct Qdisc, 39 struct
/// sk_buff, 41 struct bpf_sk_buff_ptr), flags as `BTF_ID_FLAGS()` in net/sched/bpf_qdisc.c.
fn qdisc_kfuncs() -> Vec<(&'static str, KfuncDesc)> {
    let st = |name: &str, kid| KfArg::Struct { name: name.into(), kid, scalar_size: None };
    let desc = |flags, args| KfuncDesc {
        flags,
        set: "qdisc_kfunc_ids".into(),
        module: false,
        hooks: vec![Hook::StructOps],
        args,
        ret: KfRet::Void,
    };
    vec![
        ("bpf_kfree_skb", desc(KF_RELEASE, vec![st("sk_buff", 39)])),
        ("bpf_qdisc_skb_drop", desc(KF_RELEASE, vec![st("sk_buff", 39), st("bpf_sk_buff_ptr", 41)])),
        ("bpf_qdisc_bstats_update", desc(0, vec![st("Qdisc", 27), st("sk_buff", 39)])),
        ("bpf_qdisc_reset_destroy_epilogue", desc(0, vec![st("Qdisc", 27)])),
    ]
}

/// A struct_ops program implementing `Qdisc_ops.<member>` (return type `ret`) running `text`.
fn qdisc_case(member: &str, ret: &str, text: &str) -> Case {
    let kfuncs = qdisc_kfuncs().into_iter().map(|(n, _)| n.to_string()).collect();
    let mut c = object_case_in("struct_ops", text, &Symbols { maps: vec![], kfuncs });
    if let Some(o) = c.object.as_mut() {
        o.struct_ops =
            Some(StructOpsMember { st: "Qdisc_ops".into(), member: member.into(), ret: ret.into() });
    }
    c
}

/// `c`'s verdict on `profile` given the fixture's kernel BTF and its qdisc kfuncs.
fn on(profile: &str, c: &Case) -> Verdict {
    let module = crate::module_src::bundled();
    let mut k = KernelBtf::parse("sample", &sample()).expect("sample BTF parses");
    k.kfuncs.extend(qdisc_kfuncs().into_iter().map(|(n, d)| (n.to_string(), d)));
    let mut p = KernelProfile::all().into_iter().find(|p| p.name == profile).expect("profile");
    p.kernel_btf = KernelBtfRef(Some(Arc::new(k)));
    check(c, &p, &module)
}

fn why(profile: &str, c: &Case) -> String {
    match on(profile, c) {
        v if v.verdict == VerdictKind::Unsupported => v.message.unwrap_or_default(),
        v => panic!("{profile}: {v:?}"),
    }
}

/// bpf_fifo_enqueue's drop path: `bpf_qdisc_skb_drop(skb, to_free)` releases the `__ref` skb.
const ENQUEUE_DROP: &str =
    "r2 = *(u64 *)(r1 + 16)\n r1 = *(u64 *)(r1 + 0)\n call bpf_qdisc_skb_drop\n r0 = 1\n exit\n";

#[test]
fn enqueue_releases_its_ref_skb() {
    for p in ["7.2", "7.3"] {
        assert_eq!(on(p, &qdisc_case("enqueue", "scalar", ENQUEUE_DROP)), Verdict::accept(), "{p}");
        // bpf_kfree_skb (qdisc_common_kfunc_set) releases it as well.
        let c =
            qdisc_case("enqueue", "scalar", "r1 = *(u64 *)(r1 + 0)\n call bpf_kfree_skb\n r0 = 0\n exit\n");
        assert_eq!(on(p, &c), Verdict::accept(), "{p}");
        // Not released: check_reference_leak() names the id do_check_common() took first, at 0.
        let c = qdisc_case("enqueue", "scalar", "r0 = 0\n exit\n");
        assert_eq!(on(p, &c), Verdict::reject(Some(1), "Unreleased reference id=1 alloc_insn=0"), "{p}");
        // Read again after the release: __check_ctx_access() refuses the ctx load.
        let again =
            "r6 = r1\n r1 = *(u64 *)(r6 + 0)\n call bpf_kfree_skb\n r1 = *(u64 *)(r6 + 0)\n r0 = 0\n exit\n";
        assert_eq!(
            on(p, &qdisc_case("enqueue", "scalar", again)),
            Verdict::reject(Some(3), "invalid bpf_context access off=0. Reference may already be released"),
            "{p}"
        );
        // Released twice through a copy: release_reference() made the copy an unknown scalar
        // (allow_ptr_leaks), whose check the model does not judge.
        let twice = "r6 = *(u64 *)(r1 + 0)\n r1 = r6\n call bpf_kfree_skb\n r1 = r6\n call bpf_kfree_skb\n r0 = 0\n exit\n";
        assert!(why(p, &qdisc_case("enqueue", "scalar", twice)).contains("scalar of unknown value"), "{p}");
    }
}

#[test]
fn enqueue_to_free_is_a_trusted_bpf_sk_buff_ptr() {
    // bpf_qdisc_is_valid_access(): argument 2 read whole at offset 16; other sizes are not judged.
    assert!(why("7.3", &qdisc_case("enqueue", "scalar", "r2 = *(u32 *)(r1 + 16)\n r0 = 0\n exit\n"))
        .contains("to_free"));
    // A store into the ctx: bpf_tracing_btf_ctx_access() refuses it.
    let c = qdisc_case("enqueue", "scalar", "*(u64 *)(r1 + 16) = r1\n r0 = 0\n exit\n");
    assert_eq!(on("7.3", &c), Verdict::reject(Some(0), "invalid bpf_context access off=16 size=8"));
}

#[test]
fn kfunc_filter_per_member() {
    for p in ["7.2", "7.3"] {
        // bpf_qdisc_skb_drop is in qdisc_enqueue_kfunc_set only: refused to .dequeue (after a
        // NULL return the program would be fine).
        let c = qdisc_case("dequeue", "ptr", "r1 = 0\n r2 = 0\n call bpf_qdisc_skb_drop\n r0 = 0\n exit\n");
        assert_eq!(
            on(p, &c),
            Verdict::reject(Some(2), "calling kernel function bpf_qdisc_skb_drop is not allowed"),
            "{p}"
        );
        // bpf_qdisc_bstats_update is .dequeue's: refused to .destroy, judged in .dequeue.
        let bstats = "r1 = *(u64 *)(r1 + 0)\n r2 = 0\n call bpf_qdisc_bstats_update\n r0 = 0\n exit\n";
        assert_eq!(
            on(p, &qdisc_case("destroy", "void", bstats)),
            Verdict::reject(Some(2), "calling kernel function bpf_qdisc_bstats_update is not allowed"),
            "{p}"
        );
        assert_eq!(on(p, &qdisc_case("dequeue", "ptr", bstats)).verdict, VerdictKind::Reject, "{p}: R2 NULL");
        // The epilogue's kfunc is in no member's set.
        let c = qdisc_case(
            "destroy",
            "void",
            "r1 = *(u64 *)(r1 + 0)\n call bpf_qdisc_reset_destroy_epilogue\n exit\n",
        );
        assert_eq!(
            on(p, &c),
            Verdict::reject(
                Some(1),
                "calling kernel function bpf_qdisc_reset_destroy_epilogue is not allowed"
            ),
            "{p}"
        );
    }
}

#[test]
fn pure_filter_table() {
    let m =
        |member: &str| StructOpsMember { st: "Qdisc_ops".into(), member: member.into(), ret: String::new() };
    use super::structops::qdisc_kfunc_allowed as allowed;
    assert!(allowed(Some(&m("enqueue")), "bpf_qdisc_skb_drop"));
    assert!(allowed(Some(&m("enqueue")), "bpf_qdisc_watchdog_schedule"));
    assert!(!allowed(Some(&m("enqueue")), "bpf_qdisc_bstats_update"));
    assert!(allowed(Some(&m("dequeue")), "bpf_qdisc_bstats_update"));
    assert!(allowed(Some(&m("dequeue")), "bpf_qdisc_watchdog_schedule"));
    assert!(!allowed(Some(&m("init")), "bpf_qdisc_watchdog_schedule"));
    for member in ["enqueue", "dequeue", "init", "reset", "destroy"] {
        assert!(allowed(Some(&m(member)), "bpf_kfree_skb"), "{member}");
        assert!(allowed(Some(&m(member)), "bpf_skb_get_hash"), "{member}");
        assert!(!allowed(Some(&m(member)), "bpf_qdisc_init_prologue"), "{member}");
    }
    // Outside a Qdisc_ops program: -EACCES.
    let other =
        StructOpsMember { st: "tcp_congestion_ops".into(), member: "init".into(), ret: String::new() };
    assert!(!allowed(Some(&other), "bpf_kfree_skb"));
    assert!(!allowed(None, "bpf_kfree_skb"));
}

#[test]
fn returns_and_helpers() {
    // .dequeue returning NULL: return_retval_range() [0, 0].
    assert_eq!(on("7.3", &qdisc_case("dequeue", "ptr", "r0 = 0\n exit\n")), Verdict::accept());
    // check_reference_leak() skips R0's reference at a struct_ops exit; an int member then takes
    // any R0 (`!ret_type`), which the model does not judge for a pointer.
    let c = qdisc_case("enqueue", "scalar", "r0 = *(u64 *)(r1 + 0)\n exit\n");
    assert!(why("7.3", &c).contains("check_return_code"));
    // A helper outside bpf_base_func_proto()'s list the model judges stays unsupported.
    assert!(why("7.3", &qdisc_case("dequeue", "ptr", "call bpf_get_current_task_btf\n r0 = 0\n exit\n"))
        .contains("bpf_base_func_proto"));
    // bpf_jiffies64 and bpf_ktime_get_ns: RET_INTEGER.
    let c = qdisc_case("destroy", "void", "call bpf_jiffies64\n call bpf_ktime_get_ns\n exit\n");
    for p in ["7.2", "7.3"] {
        assert_eq!(on(p, &c), Verdict::accept(), "{p}");
    }
}

#[test]
fn sk_buff_stores() {
    // bpf_qdisc_sk_buff_access(): tstamp through the trusted skb (bpf_fq_enqueue's
    // `skb->tstamp = ...`); elsewhere "no write support", not modelled.
    for (at, judged) in [(0, true), (8, false)] {
        let text =
            format!("r1 = *(u64 *)(r1 + 0)\n r2 = 5\n *(u64 *)(r1 + {at}) = r2\n call bpf_kfree_skb\n r0 = 0\n exit\n");
        let c = qdisc_case("enqueue", "scalar", &text);
        for p in ["7.2", "7.3"] {
            if judged {
                assert_eq!(on(p, &c), Verdict::accept(), "{p}: {at}");
            } else {
                assert!(why(p, &c).contains("no write support"), "{p}: {at}");
            }
        }
    }
}
