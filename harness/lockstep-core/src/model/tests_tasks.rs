//! task_struct kfunc programs (issue 14: task_kfunc_failure / task_kfunc_success on 7.3), on the
//! sample kernel BTF (`kernel_btf::fixture`: `struct task_struct { u32 pid; char comm[16] at 8;
//! *group_leader at 24 (trusted); *real_parent at 32 (RCU); *parent at 40 }`): a constant added
//! to a `PTR_TO_BTF_ID` (adjust_ptr_min_max_vals()) and the loads through it
//! (check_ptr_to_btf_access()), reg_not_null() for kernel pointers against 0, two kernel pointers
//! compared, a kprobe's `struct pt_regs` ctx (kprobe_prog_is_valid_access()), and a task kptr
//! loaded in a sleepable program (btf_ld_kptr_type(), in_rcu_cs()). Messages from the 7.3 source
//! (the same lines in 6.12 and 7.2).

use super::test_fixtures::*;
use super::*;
use crate::asm::Symbols;
use crate::case::{Case, FieldKind, MapSpec};
use crate::verdict::VerdictKind;

const KFUNCS: [&str; 4] =
    ["bpf_task_acquire", "bpf_task_release", "bpf_rcu_read_lock", "bpf_rcu_read_unlock"];

/// Map `m`: an array of `{ long cnt; struct task_struct __kptr *task; }`.
fn task_map() -> MapSpec {
    super::test_fixtures::task_kptr_map(FieldKind::Kptr)
}

fn case(sec: &str, text: &str) -> Case {
    let kfuncs: Vec<String> = KFUNCS.map(String::from).to_vec();
    let symbols = Symbols { maps: vec!["m".into()], kfuncs: kfuncs.clone() };
    let mut c = object_case_in(sec, text, &symbols);
    c.extern_kfuncs = kfuncs;
    if text.contains("= m ll") {
        c.maps = vec![task_map()];
    }
    c
}

/// `text`'s verdict on every profile, given the sample kernel BTF.
fn verdicts(sec: &str, text: &str) -> Vec<(String, Verdict)> {
    verdicts_with_kernel_btf(&case(sec, text), Some(&sample_kernel_btf()))
}

const TP: &str = "tp_btf/task_newtask";

#[test]
fn a_constant_moves_a_trusted_pointer_and_loads_add_it() {
    // task->comm[15] through `&task->comm`: a byte scalar.
    let text = "r1 = *(u64 *)(r1 + 0)\n r1 += 8\n r0 = *(u8 *)(r1 + 15)\n r0 = 0\n exit\n";
    for (p, v) in verdicts(TP, text) {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
    let cases = [
        // task_access_comm1/2's btf_struct_walk() message, at the sum of both offsets.
        (
            "r1 = *(u64 *)(r1 + 0)\n r1 += 8\n r0 = *(u32 *)(r1 + 14)\n r0 = 0\n exit\n",
            "access beyond the end of member comm (mend:24) in struct task_struct with off 22 size 4",
        ),
        (
            "r1 = *(u64 *)(r1 + 0)\n r1 += -16\n r0 = *(u32 *)(r1 + 8)\n r0 = 0\n exit\n",
            "R1 is ptr_task_struct invalid negative access: off=-8",
        ),
        (
            "r1 = *(u64 *)(r1 + 0)\n r1 -= 16\n r0 = *(u32 *)(r1 + 8)\n r0 = 0\n exit\n",
            "R1 is ptr_task_struct invalid negative access: off=-8",
        ),
    ];
    for (text, msg) in cases {
        for (p, v) in verdicts(TP, text) {
            assert_eq!(v, Verdict::reject(Some(2), msg), "{p}: {text}");
        }
    }
}

#[test]
fn a_moved_kernel_pointer_passed_to_a_kfunc_is_not_judged() {
    let text = "r1 = *(u64 *)(r1 + 0)\n r1 += 8\n call bpf_task_acquire\n r0 = 0\n exit\n";
    for (p, v) in verdicts(TP, text) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
}

#[test]
fn arithmetic_on_a_maybe_null_kernel_pointer_is_refused() {
    let text = "r1 = *(u64 *)(r1 + 0)\n call bpf_task_acquire\n r0 += 8\n r0 = 0\n exit\n";
    for (p, v) in verdicts(TP, text).into_iter().filter(|(p, _)| p != "6.12") {
        let msg = "R0 pointer arithmetic on trusted_ptr_or_null_ prohibited, null-check it first";
        assert_eq!(v, Verdict::reject(Some(2), msg), "{p}");
    }
}

#[test]
fn only_a_trusted_kernel_pointer_is_known_non_null() {
    // task->parent is a legacy PTR_TO_BTF_ID: reg_not_null() is false, both branches are walked
    // (the NULL one reads an uninitialised register).
    let text = "r1 = *(u64 *)(r1 + 0)\n r6 = *(u64 *)(r1 + 40)\n if r6 != 0 goto out\n r0 = r7\n\
                out:\n r0 = 0\n exit\n";
    for (p, v) in verdicts(TP, text) {
        assert_eq!(v, Verdict::reject(Some(3), "R7 !read_ok"), "{p}");
    }
    // The trusted tp_btf argument: the branch is decided.
    let text = "r6 = *(u64 *)(r1 + 0)\n if r6 != 0 goto out\n r0 = r7\nout:\n r0 = 0\n exit\n";
    for (p, v) in verdicts(TP, text) {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
    // Two kernel pointers compared: both branches.
    let text = "r6 = *(u64 *)(r1 + 0)\n r7 = *(u64 *)(r6 + 24)\n if r6 != r7 goto out\n r0 = r8\n\
                out:\n r0 = 0\n exit\n";
    for (p, v) in verdicts(TP, text) {
        assert_eq!(v, Verdict::reject(Some(3), "R8 !read_ok"), "{p}");
    }
}

#[test]
fn kprobe_ctx_reads_inside_pt_regs() {
    for sec in ["kprobe/free_task", "kretprobe/free_task"] {
        for (p, v) in verdicts(sec, "r0 = *(u64 *)(r1 + 160)\n r0 = 0\n exit\n") {
            assert_eq!(v, Verdict::accept(), "{p}");
        }
        for (text, msg) in [
            ("r0 = *(u64 *)(r1 + 168)\n r0 = 0\n exit\n", "invalid bpf_context access off=168 size=8"),
            ("r0 = *(u32 *)(r1 + 2)\n r0 = 0\n exit\n", "invalid bpf_context access off=2 size=4"),
            ("r0 = *(u64 *)(r1 - 8)\n r0 = 0\n exit\n", "invalid bpf_context access off=-8 size=8"),
        ] {
            for (p, v) in verdicts(sec, text) {
                assert_eq!(v, Verdict::reject(Some(0), msg), "{p}: {text}");
            }
        }
        for (p, v) in verdicts(sec, "r2 = 0\n *(u64 *)(r1 + 0) = r2\n r0 = 0\n exit\n") {
            assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
        }
    }
}

/// Looks up `m`'s value into r6 (insns 0-7).
const LOOKUP: &str = "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n \
     call bpf_map_lookup_elem\n if r0 == 0 goto out\n r6 = r0\n";

#[test]
fn a_task_kptr_in_a_sleepable_program_is_rcu_only_inside_the_rcu_lock() {
    let sec = "fentry.s/__x64_sys_getpgid";
    // Outside any region: PTR_UNTRUSTED (btf_ld_kptr_type(), !in_rcu_cs()), which
    // bpf_task_acquire (KF_RCU) refuses.
    let outside = format!(
        "{LOOKUP} r1 = *(u64 *)(r6 + 8)\n if r1 == 0 goto out\n call bpf_task_acquire\n \
         if r0 == 0 goto out\n r1 = r0\n call bpf_task_release\nout:\n r0 = 0\n exit\n"
    );
    // Inside bpf_rcu_read_lock(): MEM_RCU.
    let inside = format!(
        "{LOOKUP} call bpf_rcu_read_lock\n r1 = *(u64 *)(r6 + 8)\n if r1 == 0 goto unlock\n \
         call bpf_task_acquire\n if r0 == 0 goto unlock\n r1 = r0\n call bpf_task_release\n\
         unlock:\n call bpf_rcu_read_unlock\nout:\n r0 = 0\n exit\n"
    );
    // (6.12 cannot attach a sleepable program to the syscall: tests_sleep.rs.)
    for (p, v) in verdicts(sec, &outside).into_iter().filter(|(p, _)| p != "6.12") {
        assert_eq!(v, Verdict::reject(Some(11), "R1 must be a rcu pointer"), "{p}");
    }
    for (p, v) in verdicts(sec, &inside).into_iter().filter(|(p, _)| p != "6.12") {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
}
