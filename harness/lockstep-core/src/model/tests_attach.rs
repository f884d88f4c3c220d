//! Unit tests for the attach-target program types of objects (`model/attach.rs`):
//! `check_attach_btf_id()`'s deny lists, `check_return_code()`'s ranges, and where the model
//! says `unsupported`.

use super::test_fixtures::*;
use super::*;
use crate::asm::Symbols;
use crate::case::{Case, FieldKind, MapType};
use crate::verdict::VerdictKind;

/// A case of an object program in section `sec` (type and sleepable from it) running `text`,
/// with map `m` (`{ int cnt; bpf_spin_lock lock; }`, hash).
fn object_case(sec: &str, text: &str) -> Case {
    let symbols = Symbols { maps: vec!["m".into()], kfuncs: Default::default() };
    let mut c = object_case_in(sec, text, &symbols);
    c.maps = vec![cnt_lock_map("m", MapType::Hash, FieldKind::SpinLock, true)];
    c
}

fn on(profile: &str, c: &Case) -> Verdict {
    verdicts_on_all_profiles(c).into_iter().find(|(p, _)| p == profile).expect("profile").1
}

const RET0: &str = "r0 = 0\nexit\n";

/// Takes and releases m's lock, then returns `ret`.
fn locked(ret: i64) -> String {
    format!(
        "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n call bpf_map_lookup_elem\n if r0 == 0 goto out\n r6 = r0\n r1 = r6\n r1 += 4\n call bpf_spin_lock\n r1 = r6\n r1 += 4\n call bpf_spin_unlock\nout:\n r0 = {ret}\n exit\n"
    )
}

#[test]
fn fentry_uses_spin_locks() {
    // is_tracing_prog_type() does not name BPF_PROG_TYPE_TRACING: fentry programs may lock
    // (measured on debian:7.3: tracing_failure's ?fentry/bpf_spin_lock program loads).
    for (p, v) in verdicts_on_all_profiles(&object_case("fentry/bpf_fentry_test1", &locked(0))) {
        assert_eq!(v, Verdict::accept(), "{p}");
    }
}

#[test]
fn raw_tp_writable_is_a_tracing_type_for_the_lock() {
    let c = object_case("raw_tp.w/xyz", &locked(0));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v, Verdict::reject(None, "tracing progs cannot use bpf_spin_lock yet"), "{p}");
    }
}

#[test]
fn btf_id_deny() {
    let c = object_case("?fentry/__rcu_read_lock", RET0);
    let msg = "Attaching tracing programs to function '__rcu_read_lock' is rejected.";
    assert_eq!(on("7.3", &c), Verdict::reject(None, msg));
    assert_eq!(on("7.2", &c), Verdict::reject(None, msg));
    // 6.12 returns -EINVAL without a message.
    assert_eq!(on("6.12", &c).verdict, VerdictKind::Unsupported);
    // ___migrate_enable joined the list after 6.12.
    let c = object_case("fentry/___migrate_enable", RET0);
    assert_eq!(on("7.3", &c).verdict, VerdictKind::Reject);
    assert_eq!(on("6.12", &c), Verdict::accept());
    // tp_btf programs return before the deny list.
    assert_eq!(on("7.3", &object_case("tp_btf/__rcu_read_lock", RET0)), Verdict::accept());
}

#[test]
fn noreturn_deny() {
    let c = object_case("?fexit/do_exit", RET0);
    let msg = "Attaching fexit/fsession/fmod_ret to __noreturn function 'do_exit' is rejected.";
    assert_eq!(on("7.3", &c), Verdict::reject(None, msg));
    assert_eq!(
        on("6.12", &c),
        Verdict::reject(None, "Attaching fexit/fmod_ret to __noreturn functions is rejected.")
    );
    // Another fexit target: its return type (not modelled) decides bpf_check_attach_target().
    assert_eq!(on("7.3", &object_case("fexit/bpf_fentry_test1", RET0)).verdict, VerdictKind::Unsupported);
    // fentry is not checked against noreturn_deny.
    assert_eq!(on("7.3", &object_case("fentry/do_exit", RET0)), Verdict::accept());
}

#[test]
fn return_ranges() {
    // fentry / fexit: [0, 0]; the message for another value prints its bounds (not modelled).
    assert_eq!(on("7.3", &object_case("fentry/f", "r0 = 1\nexit\n")).verdict, VerdictKind::Unsupported);
    // tp_btf and fmod_ret: no range; cgroup sock: [0, 1]; sk_skb: none.
    assert_eq!(on("7.3", &object_case("tp_btf/task_newtask", "r0 = 7\nexit\n")), Verdict::accept());
    assert_eq!(on("7.3", &object_case("cgroup/sock_create", "r0 = 1\nexit\n")), Verdict::accept());
    assert_eq!(
        on("7.3", &object_case("cgroup/sock_create", "r0 = 2\nexit\n")).verdict,
        VerdictKind::Unsupported
    );
    assert_eq!(on("7.3", &object_case("sk_skb", "r0 = 9\nexit\n")), Verdict::accept());
    // LSM: 0 is within every hook's range; R0 is not read for a void hook (not modelled).
    assert_eq!(on("7.3", &object_case("lsm/task_free", RET0)), Verdict::accept());
    assert_eq!(on("7.3", &object_case("lsm/task_free", "exit\n")).verdict, VerdictKind::Unsupported);
    // R0 must be readable where a range applies: check_reg_arg() first.
    assert_eq!(on("7.3", &object_case("fentry/f", "exit\n")).verdict, VerdictKind::Reject);
}

#[test]
fn not_modelled_types_say_why() {
    let why = |sec: &str, text: &str| match on("7.3", &object_case(sec, text)) {
        v if v.verdict == VerdictKind::Unsupported => v.message.unwrap_or_default(),
        v => panic!("{sec}: {v:?}"),
    };
    assert!(why("struct_ops/bpf_fifo_enqueue", RET0).contains("struct_ops"));
    assert!(why("freplace/handle_kprobe", RET0).contains("freplace"));
    assert!(why("iter.s/cgroup", RET0).contains("iterator"));
    assert!(why("iter/cgroup", RET0).contains("iterator"));
    assert!(why("fentry/f", "r0 = *(u64 *)(r1 + 0)\nexit\n").contains("btf_ctx_access"));
    // A case file's program has no section: an attach type there is not judged.
    let mut c = object_case("fentry/f", RET0);
    c.object = None;
    assert_eq!(on("7.3", &c).verdict, VerdictKind::Unsupported);
}
