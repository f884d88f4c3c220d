//! Unit tests for packet pointers (`model/pkt.rs`). Expectations: the kernels' verdicts on
//! `tests/corpus/pktmisc-packet.toml` (debian:6.12, 7.2 and 7.3 runs) and on the 7.3 / 7.2
//! selftests `verifier_sock.c` `invalidate_*pkt_pointers*` (`/work/runs/st7{3,2}-kernel.json`).

use super::test_fixtures::*;
use super::*;
use crate::asm::Symbols;
use crate::case::{FieldKind, MapSpec, MapType, ProgType, ValueLayout};
use crate::verdict::VerdictKind;

use super::test_fixtures::{assert_text_on_all_profiles as assert_all, text_verdicts as verdicts};

/// data_end in r2, data in r7, `if data + 4 > data_end goto out`, then `body`, `out: r0 = 0; exit`.
fn checked(data_end: i16, data: i16, body: &str) -> String {
    format!(
        "r6 = r1\n r2 = *(u32 *)(r6 + {data_end})\n r7 = *(u32 *)(r6 + {data})\n r3 = r7\n r3 += 4\n \
         if r3 > r2 goto out\n {body}\nout:\n r0 = 0\n exit"
    )
}

#[test]
fn accesses_inside_the_checked_range() {
    assert_all(ProgType::SchedCls, &checked(80, 76, "r0 = *(u32 *)(r7 + 0)"), &Verdict::accept());
    assert_all(ProgType::Xdp, &checked(4, 0, "*(u16 *)(r7 + 2) = 1"), &Verdict::accept());
    // Past the range (4 bytes): not modelled.
    for (p, v) in verdicts(ProgType::SchedCls, &checked(80, 76, "r0 = *(u32 *)(r7 + 1)")) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
}

#[test]
fn a_copy_gets_the_range_and_the_compared_pointer_is_marked() {
    let text = "r2 = *(u32 *)(r1 + 80)\n r3 = *(u32 *)(r1 + 76)\n r5 = r3\n r4 = r3\n r4 += 8\n \
                if r4 > r2 goto out\n r0 = *(u64 *)(r5 + 0)\nout:\n r0 = 0\n exit";
    assert_all(ProgType::SchedCls, text, &Verdict::accept());
    // if data_end >= data + 8 goto ok: the taken branch has the range.
    let text = "r2 = *(u32 *)(r1 + 80)\n r3 = *(u32 *)(r1 + 76)\n r4 = r3\n r4 += 8\n \
                if r2 >= r4 goto ok\n r0 = 2\n exit\nok:\n r0 = *(u64 *)(r3 + 0)\n r0 = 0\n exit";
    assert_all(ProgType::SchedCls, text, &Verdict::accept());
}

#[test]
fn helpers_that_change_packet_data_invalidate() {
    // bpf_skb_pull_data: the pointer is an unknown scalar (verifier_sock.c invalidate_*).
    let text = checked(80, 76, "r1 = r6\n r2 = 0\n call bpf_skb_pull_data\n *(u32 *)(r7 + 0) = 42");
    assert_all(ProgType::SchedCls, &text, &Verdict::reject(Some(9), "R7 invalid mem access 'scalar'"));
    // A spilled one too.
    let text = checked(
        80,
        76,
        "*(u64 *)(r10 - 8) = r7\n r1 = r6\n r2 = 0\n call bpf_skb_pull_data\n r7 = *(u64 *)(r10 - 8)\n \
         *(u32 *)(r7 + 0) = 42",
    );
    assert_all(ProgType::SchedCls, &text, &Verdict::reject(Some(11), "R7 invalid mem access 'scalar'"));
}

#[test]
fn tail_calls_by_frame_and_profile() {
    let syms = Symbols { maps: vec!["jmp".into()], ..Symbols::default() };
    let main = checked(80, 76, "r1 = r6\n r2 = jmp ll\n r3 = 0\n call bpf_tail_call\n *(u32 *)(r7 + 0) = 42");
    let sub = format!(
        "{}\nsub:\n r2 = jmp ll\n r3 = 0\n call bpf_tail_call\n r0 = 0\n exit",
        checked(80, 76, "r1 = r6\n call sub\n *(u32 *)(r7 + 0) = 42")
    );
    for (text, main_frame) in [(main, true), (sub, false)] {
        // An object's program (with func_info: a tail call in a subprogram needs BTF).
        let mut c = object_case_in("tc", &text, &syms);
        let jmp = cnt_lock_map("jmp", MapType::ProgArray, FieldKind::Int, false);
        c.maps = vec![MapSpec { value: ValueLayout { size: 4, fields: vec![] }, ..jmp }];
        for (p, v) in verdicts_on_all_profiles(&c) {
            // 7.2 / 7.3: kept in the main frame; in a subprogram the path returns with them
            // cleared. 6.12: cleared in any frame.
            let kept = main_frame && p != "6.12";
            if kept {
                assert_eq!(v, Verdict::accept(), "{text} on {p}");
            } else {
                let at = if main_frame { 11 } else { 8 };
                assert_eq!(v, Verdict::reject(Some(at), "R7 invalid mem access 'scalar'"), "{text} on {p}");
            }
        }
    }
}

/// `text` in a `tp_btf/task_newtask` program on every profile, given the sample kernel BTF
/// (`kernel_btf::fixture`: `struct task_struct { u32 pid; char comm[16] at 8; ...; *parent at
/// 40 (legacy) }`).
fn task_verdicts(text: &str) -> Vec<(String, Verdict)> {
    let c = object_case_in("tp_btf/task_newtask", text, &Symbols::default());
    verdicts_with_kernel_btf(&c, Some(&sample_kernel_btf()))
}

#[test]
fn a_kernel_pointer_as_helper_memory() {
    // task_access_comm1: bpf_strncmp(task->comm, 17, ..) walks past comm (kmem_arg.rs).
    let text = "r1 = *(u64 *)(r1 + 0)\n r1 += 8\n r2 = 17\n r3 = 0\n call bpf_strncmp\n r0 = 0\n exit\n";
    let msg = "access beyond the end of member comm (mend:24) in struct task_struct with off 8 size 17";
    for (p, v) in task_verdicts(text) {
        assert_eq!(v, Verdict::reject(Some(4), msg), "{p}");
    }
    // task_access_comm3: bpf_probe_read_kernel's dst is not MEM_RDONLY.
    let text =
        "r1 = *(u64 *)(r1 + 0)\n r3 = r1\n r1 += 8\n r2 = 16\n call bpf_probe_read_kernel\n r0 = 0\n exit\n";
    let msg = "bpf_probe_read_kernel() may write into memory pointed by R1 type=trusted_ptr_";
    for (p, v) in task_verdicts(text) {
        assert_eq!(v, Verdict::reject(Some(4), msg), "{p}");
    }
    // task_access_comm4: a legacy PTR_TO_BTF_ID (task->parent) is not in mem_types (7.x lists ctx).
    let text = "r1 = *(u64 *)(r1 + 0)\n r1 = *(u64 *)(r1 + 40)\n r2 = 4\n r3 = 0\n call bpf_strncmp\n r0 = 0\n exit\n";
    for (p, v) in task_verdicts(text) {
        let types =
            KernelProfile::all().into_iter().find(|q| q.name == p).expect("profile").messages.mem_types;
        assert_eq!(v, Verdict::reject(Some(4), format!("R1 type=ptr_ expected={types}")), "{p}");
    }
}
