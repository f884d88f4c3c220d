//! Unit tests for ctx accesses (`model/ctx.rs`) and socket pointers (`model/sock.rs`).
//! Expectations: the kernel's verdicts on the 7.3 / 7.2 selftests `verifier_sock.c` (debian:7.3
//! and debian:7.2 runs, `/work/runs/st7{3,2}-final.json`, the same messages and instructions on
//! both), and net/core/filter.c's `*_is_valid_access()` (identical in 6.12, 7.2 and 7.3).

use super::ctx::{ctx_access, CtxAccess, CtxLoad};
use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, ProgType};
use crate::import::sec::AttachType;
use crate::verdict::VerdictKind;

use super::test_fixtures::{assert_text_on_all_profiles as assert_all, text_verdicts as verdicts};

/// `r1 = skb->sk; if r1 != 0 goto +2; r0 = 0; exit;` then `tail`.
fn after_sk_check(tail: &str) -> String {
    format!("r1 = *(u64 *)(r1 + 168)\n if r1 != 0 goto +2\n r0 = 0\n exit\n {tail}")
}

/// ... then `call bpf_sk_fullsock; if r0 != 0 goto +2; r0 = 0; exit;` then `tail`.
fn after_fullsock(tail: &str) -> String {
    after_sk_check(&format!("call bpf_sk_fullsock\n if r0 != 0 goto +2\n r0 = 0\n exit\n {tail}"))
}

#[test]
fn skb_sk_without_a_null_check_is_refused() {
    // verifier_sock: skb_sk_no_null_check (kernel: reject at 1).
    let text = "r1 = *(u64 *)(r1 + 168)\n r0 = *(u32 *)(r1 + 0)\n r0 = 0\n exit";
    assert_all(
        ProgType::CgroupSkb,
        text,
        &Verdict::reject(Some(1), "R1 invalid mem access 'sock_common_or_null'"),
    );
}

#[test]
fn sock_common_fields_and_fullsock_fields() {
    // sk_family_non_fullsock_field_1: accepted; sk_sk_type_fullsock_field_1: reject at 4.
    for (p, v) in verdicts(ProgType::CgroupSkb, &after_sk_check("r0 = *(u32 *)(r1 + 4)\n r0 = 0\n exit")) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    let text = after_sk_check("r0 = *(u32 *)(r1 + 8)\n r0 = 0\n exit");
    assert_all(
        ProgType::CgroupSkb,
        &text,
        &Verdict::reject(Some(4), "R1 invalid sock_common access off=8 size=4"),
    );
}

#[test]
fn fullsock_needs_a_checked_sock_common() {
    // sk_no_skb_sk_check_1: reject at 1.
    let text = "r1 = *(u64 *)(r1 + 168)\n call bpf_sk_fullsock\n r0 = 0\n exit";
    let want = Verdict::reject(
        Some(1),
        "R1 type=sock_common_or_null expected=sock_common, sock, tcp_sock, xdp_sock",
    );
    assert_all(ProgType::CgroupSkb, text, &want);
    // no_null_check_on_ret_1: reject at 5.
    let text = after_sk_check("call bpf_sk_fullsock\n r0 = *(u32 *)(r0 + 8)\n r0 = 0\n exit");
    assert_all(ProgType::CgroupSkb, &text, &Verdict::reject(Some(5), "R0 invalid mem access 'sock_or_null'"));
}

#[test]
fn bpf_sock_field_sizes() {
    // Accepted: type, state (narrow), dst_port word / half / byte, dst_ip6[0] second byte.
    for load in [
        "*(u32 *)(r0 + 8)",
        "*(u8 *)(r0 + 72)",
        "*(u32 *)(r0 + 48)",
        "*(u16 *)(r0 + 48)",
        "*(u8 *)(r0 + 49)",
        "*(u8 *)(r0 + 57)",
    ] {
        for (p, v) in verdicts(ProgType::CgroupSkb, &after_fullsock(&format!("r0 = {load}\n r0 = 0\n exit")))
        {
            assert_eq!(v.verdict, VerdictKind::Accept, "{load} on {p}: {v:?}");
        }
    }
    // dst_port_half_load_invalid_1, dst_port_byte_load_invalid, skb_sk_beyond_last_field_1: reject at 8.
    for (load, msg) in [
        ("*(u16 *)(r0 + 50)", "R0 invalid sock access off=50 size=2"),
        ("*(u8 *)(r0 + 50)", "R0 invalid sock access off=50 size=1"),
        ("*(u32 *)(r0 + 80)", "R0 invalid sock access off=80 size=4"),
    ] {
        let text = after_fullsock(&format!("r0 = {load}\n r0 = 0\n exit"));
        assert_all(ProgType::CgroupSkb, &text, &Verdict::reject(Some(8), msg));
    }
}

#[test]
fn tcp_sock_fields() {
    let tcp = |load: &str| {
        after_sk_check(&format!(
            "call bpf_tcp_sock\n if r0 != 0 goto +1\n exit\n r0 = {load}\n r0 = 0\n exit"
        ))
    };
    // skb_sk_tp_snd_cwnd_1, skb_sk_tp_bytes_acked: accepted; skb_sk_beyond_last_field_2: reject at 7.
    for load in ["*(u32 *)(r0 + 0)", "*(u64 *)(r0 + 88)"] {
        for (p, v) in verdicts(ProgType::CgroupSkb, &tcp(load)) {
            assert_eq!(v.verdict, VerdictKind::Accept, "{load} on {p}: {v:?}");
        }
    }
    assert_all(
        ProgType::CgroupSkb,
        &tcp("*(u64 *)(r0 + 96)"),
        &Verdict::reject(Some(7), "R0 invalid tcp_sock access off=96 size=8"),
    );
}

#[test]
fn releasing_an_unreferenced_socket_is_refused() {
    // bpf_sk_release_skb_sk: reject at 2 (7.x message; 6.12's check_func_arg() words it otherwise).
    let text = "r1 = *(u64 *)(r1 + 168)\n if r1 == 0 goto +1\n call bpf_sk_release\n r0 = 0\n exit";
    for (p, v) in verdicts(ProgType::SchedCls, text) {
        let msg = if p == "6.12" {
            "R1 must be referenced when passed to release function"
        } else {
            "release helper bpf_sk_release expects referenced PTR_TO_BTF_ID passed to R1"
        };
        assert_eq!(v, Verdict::reject(Some(2), msg), "{p}");
    }
}

#[test]
fn invalid_ctx_accesses_name_offset_and_size() {
    // sk_filter_is_valid_access(): tc_classid is not readable, only cb[] is writable.
    assert_all(
        ProgType::SocketFilter,
        "r0 = *(u32 *)(r1 + 72)\n exit",
        &Verdict::reject(Some(0), "invalid bpf_context access off=72 size=4"),
    );
    assert_all(
        ProgType::SocketFilter,
        "*(u32 *)(r1 + 8) = 1\n r0 = 0\n exit",
        &Verdict::reject(Some(0), "invalid bpf_context access off=8 size=4"),
    );
    // bpf_skb_is_valid_access(): __sk_buff->sk is a whole 8-byte read.
    assert_all(
        ProgType::SchedCls,
        "r0 = *(u32 *)(r1 + 168)\n r0 = 0\n exit",
        &Verdict::reject(Some(0), "invalid bpf_context access off=168 size=4"),
    );
}

#[test]
fn ctx_tables() {
    use CtxAccess::{Invalid, Valid};
    let scalar = Valid(CtxLoad::Scalar);
    let f = |t, off, size, write| ctx_access(t, None, None, off, size, write);
    // __sk_buff: narrow reads of len, cb[] writes, mark writes by type, tstamp_type byte reads.
    assert_eq!(f(ProgType::SocketFilter, 0, 1, false), scalar);
    assert_eq!(f(ProgType::SocketFilter, 0, 8, false), Invalid);
    assert_eq!(f(ProgType::SocketFilter, 56, 8, true), scalar);
    assert_eq!(f(ProgType::SocketFilter, 60, 8, true), Invalid);
    assert_eq!(f(ProgType::SocketFilter, 64, 8, false), Invalid);
    assert_eq!(f(ProgType::CgroupSkb, 8, 4, true), scalar);
    assert_eq!(f(ProgType::CgroupSkb, 0, 4, true), Invalid);
    assert_eq!(f(ProgType::SchedCls, 180, 1, false), scalar);
    assert_eq!(f(ProgType::SchedCls, 180, 4, false), Invalid);
    assert_eq!(f(ProgType::SchedCls, 88, 4, false), Invalid);
    assert_eq!(f(ProgType::SkSkb, 88, 4, false), scalar);
    assert_eq!(f(ProgType::SkSkb, 8, 4, false), Invalid);
    assert_eq!(f(ProgType::SchedCls, 168, 8, false), Valid(CtxLoad::SockCommonOrNull));
    assert_eq!(f(ProgType::SchedCls, 76, 4, false), Valid(CtxLoad::Packet("__sk_buff->data")));
    assert_eq!(f(ProgType::SocketFilter, 76, 4, false), Invalid);
    // xdp_md: 4-byte reads only, no writes, egress_ifindex only for devmap programs.
    assert_eq!(f(ProgType::Xdp, 12, 4, false), scalar);
    assert_eq!(f(ProgType::Xdp, 12, 2, false), Invalid);
    assert_eq!(f(ProgType::Xdp, 12, 4, true), Invalid);
    assert_eq!(ctx_access(ProgType::Xdp, None, Some("xdp"), 20, 4, false), Invalid);
    assert!(matches!(f(ProgType::Xdp, 20, 4, false), CtxAccess::Unsupported(_)));
    // struct bpf_sock of cgroup/sock programs by attach type (verifier_sock post_bind*,
    // sock_create: the kernel's "invalid bpf_context access off=28/16/24/44 size=2").
    let sock = |a, off, size| ctx_access(ProgType::CgroupSock, Some(a), None, off, size, false);
    assert_eq!(sock(AttachType::CgroupInet4PostBind, 28, 2), Invalid);
    assert_eq!(sock(AttachType::CgroupInet4PostBind, 16, 2), Invalid);
    assert_eq!(sock(AttachType::CgroupInet6PostBind, 24, 2), Invalid);
    assert_eq!(sock(AttachType::CgroupInetSockCreate, 44, 2), Invalid);
    assert_eq!(sock(AttachType::CgroupInet4PostBind, 24, 2), scalar);
    assert_eq!(sock(AttachType::CgroupInetSockCreate, 16, 4), scalar);
    assert!(matches!(ctx_access(ProgType::CgroupSock, None, None, 4, 4, false), CtxAccess::Unsupported(_)));
    // syscall programs: any aligned access below U16_MAX is a scalar.
    assert_eq!(f(ProgType::Syscall, 8, 4, false), scalar);
    assert_eq!(f(ProgType::Syscall, 65528, 4, true), scalar);
    assert!(matches!(f(ProgType::Syscall, 6, 4, false), CtxAccess::Unsupported(_)));
    assert!(matches!(f(ProgType::Syscall, 65532, 4, false), CtxAccess::Unsupported(_)));
}

fn sock_map(map_type: crate::case::MapType) -> crate::case::MapSpec {
    crate::case::MapSpec {
        inner: None,
        name: "socks".into(),
        map_type,
        key_size: 4,
        max_entries: 1,
        value: crate::case::ValueLayout { size: 4, fields: vec![] },
        btf: false,
        global_section: false,
        flags: 0,
    }
}

fn map_verdicts(prog_type: ProgType, map_type: crate::case::MapType, text: &str) -> Vec<(String, Verdict)> {
    let symbols = Symbols { maps: vec!["socks".into()], kfuncs: vec![] };
    let program = assemble(text, &symbols).expect("test program assembles");
    let c = Case { maps: vec![sock_map(map_type)], ..Case::new("t", prog_type, program, text) };
    verdicts_on_all_profiles(&c)
}

const LOOKUP: &str =
    "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = socks ll\n call bpf_map_lookup_elem\n";

#[test]
fn sockmap_lookups_take_a_reference() {
    use crate::case::MapType;
    // map_lookup_elem_sockmap_key / _sockhash_key (kernel: reject at 8, id 2: R0's own id, then
    // acquire_reference()'s).
    for t in [MapType::SockMap, MapType::SockHash] {
        for (p, v) in map_verdicts(ProgType::SchedCls, t, &format!("{LOOKUP} r0 = 0\n exit")) {
            assert_eq!(v, Verdict::reject(Some(8), "Unreleased reference id=2 alloc_insn=6"), "{t:?} on {p}");
        }
        // field_bpf_sk_release_sk_1 / _2: a full-socket field, then the release: accepted.
        let text = format!("{LOOKUP} if r0 != 0 goto +1\n exit\n r1 = r0\n r0 = *(u32 *)(r0 + 8)\n call bpf_sk_release\n exit");
        for (p, v) in map_verdicts(ProgType::SchedCls, t, &text) {
            assert_eq!(v.verdict, VerdictKind::Accept, "{t:?} on {p}: {v:?}");
        }
    }
    // An update of a sockmap takes a socket as its value (resolve_map_arg_type()): not modelled.
    let text = format!("{LOOKUP} r0 = 0\n exit")
        .replace("call bpf_map_lookup_elem", "r3 = r10\n r3 += -4\n r4 = 0\n call bpf_map_update_elem");
    for (p, v) in map_verdicts(ProgType::SchedCls, MapType::SockMap, &text) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
}

#[test]
fn xskmap_lookups_give_an_xdp_sock() {
    use crate::case::MapType;
    // xskmap_key_xs_queue_id: accepted; a store through it: "R0 cannot write into xdp_sock".
    let read = format!("{LOOKUP} if r0 != 0 goto +1\n exit\n r0 = *(u32 *)(r0 + 0)\n r0 = 0\n exit");
    for (p, v) in map_verdicts(ProgType::Xdp, MapType::XskMap, &read) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    let write = format!("{LOOKUP} if r0 != 0 goto +1\n exit\n *(u32 *)(r0 + 0) = 1\n r0 = 0\n exit");
    for (p, v) in map_verdicts(ProgType::Xdp, MapType::XskMap, &write) {
        assert_eq!(v, Verdict::reject(Some(9), "R0 cannot write into xdp_sock"), "{p}");
    }
    // check_map_func_compatibility(): a reuseport array takes only bpf_sk_select_reuseport.
    for (p, v) in
        map_verdicts(ProgType::SchedCls, MapType::ReuseportSockarray, &format!("{LOOKUP} r0 = 0\n exit"))
    {
        assert_eq!(
            v,
            Verdict::reject(Some(6), "cannot pass map_type 20 into func bpf_map_lookup_elem#1"),
            "{p}"
        );
    }
}

#[test]
fn sk_storage_get_arguments() {
    use crate::case::{FieldKind, MapType};
    let storage = crate::case::MapSpec {
        max_entries: 0,
        flags: 1,
        ..cnt_lock_map("socks", MapType::SkStorage, FieldKind::SpinLock, true)
    };
    let call = |r3: &str| {
        after_fullsock(&format!(
            "r4 = 1\n r3 = {r3}\n r2 = r0\n r1 = socks ll\n call bpf_sk_storage_get\n r0 = 0\n exit"
        ))
    };
    let symbols = Symbols { maps: vec!["socks".into()], kfuncs: vec![] };
    let run = |text: &str| {
        let program = assemble(text, &symbols).expect("test program assembles");
        verdicts_on_all_profiles(&Case {
            maps: vec![storage.clone()],
            ..Case::new("t", ProgType::SchedCls, program, text)
        })
    };
    // sk_null_0_value_null: accepted; sk_1_1_value_1: reject at 13, with 7.x's mem_types
    // ending in ctx and 6.12's without it (debian:6.12, 7.2, 7.3 runs; tests/corpus/ctx-access.toml).
    for (p, v) in run(&call("0")) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    for (p, v) in run(&call("1")) {
        let types = "fp, pkt, pkt_meta, map_key, map_value, mem, ringbuf_mem, buf, trusted_ptr_";
        let want = if p == "6.12" { types.to_string() } else { format!("{types}, ctx") };
        assert_eq!(v, Verdict::reject(Some(13), format!("R3 type=scalar expected={want}")), "{p}");
    }
}
