//! Unit tests for sleepable programs (`model/sleep.rs`), from the 6.12, 7.2 and 7.3 verifier
//! sources: `can_be_sleepable()`, `btf_id_allow_sleepable()`, the sleepable map types, helpers
//! and kfuncs that may sleep outside a sleepable context, and global functions that may sleep.

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, GlobalFunc, MapSpec, MapType, ProgType, ValueLayout};
use crate::verdict::VerdictKind;

const KFUNCS: [&str; 7] = [
    "bpf_rcu_read_lock",
    "bpf_rcu_read_unlock",
    "bpf_preempt_disable",
    "bpf_preempt_enable",
    "bpf_local_irq_save",
    "bpf_local_irq_restore",
    "bpf_copy_from_user_str",
];

/// A case file's program of type `t` (`sleepable`), running `text`.
fn case(t: ProgType, sleepable: bool, text: &str) -> Case {
    let kfuncs: Vec<String> = KFUNCS.map(String::from).into_iter().collect();
    let symbols = Symbols { maps: vec!["m".into()], kfuncs: kfuncs.clone() };
    let program = assemble(text, &symbols).expect("test program assembles");
    let mut c = Case::new("t", t, program, text);
    c.sleepable = sleepable;
    c.extern_kfuncs = kfuncs;
    c
}

fn on(profile: &str, c: &Case) -> Verdict {
    verdicts_on_all_profiles(c).into_iter().find(|(p, _)| p == profile).expect("profile").1
}

fn object(sec: &str, text: &str) -> Case {
    object_case_in(sec, text, &Symbols::default())
}

/// bpf_copy_from_user(fp-8, 8, 0).
const COPY: &str = "r1 = r10\n r1 += -8\n r2 = 8\n r3 = 0\n call bpf_copy_from_user\n";
/// bpf_copy_from_user_str(fp-8, 8, 0, 0).
const COPY_STR: &str = "r1 = r10\n r1 += -8\n r2 = 8\n r3 = 0\n r4 = 0\n call bpf_copy_from_user_str\n";
const RET0: &str = "r0 = 0\n exit\n";

#[test]
fn can_be_sleepable_by_type() {
    let tc = case(ProgType::SchedCls, true, RET0);
    let tp = case(ProgType::Tracepoint, true, RET0);
    let kprobe = case(ProgType::Kprobe, true, RET0);
    let msg = "Program of this type cannot be sleepable";
    let msg_6_12 = "Only fentry/fexit/fmod_ret, lsm, iter, uprobe, and struct_ops programs can be sleepable";
    for p in ["6.12", "7.2", "7.3"] {
        let m = if p == "6.12" { msg_6_12 } else { msg };
        assert_eq!(on(p, &tc), Verdict::reject(None, m), "{p}");
        assert_eq!(on(p, &kprobe), Verdict::accept(), "{p}");
    }
    // 7.x added tracepoint and raw tracepoint programs.
    assert_eq!(on("6.12", &tp), Verdict::reject(None, msg_6_12));
    assert_eq!(on("7.3", &tp), Verdict::accept());
}

#[test]
fn sleepable_attach_targets() {
    let not = |n: &str| Verdict::reject(None, format!("{n} is not sleepable"));
    // No CONFIG_FUNCTION_ERROR_INJECTION: 7.x takes the syscall prefix, 6.12 nothing.
    let syscall = object("fentry.s/__x64_sys_getpgid", RET0);
    assert_eq!(on("7.3", &syscall), Verdict::accept());
    assert_eq!(on("7.2", &syscall), Verdict::accept());
    assert_eq!(on("6.12", &syscall), not("__x64_sys_getpgid"));
    // The fmodret set's KF_SLEEPABLE function, and one outside it.
    for p in ["6.12", "7.2", "7.3"] {
        assert_eq!(on(p, &object("fentry.s/bpf_fentry_test1", RET0)), Verdict::accept(), "{p}");
        assert_eq!(on(p, &object("fentry.s/bpf_fentry_test2", RET0)), not("bpf_fentry_test2"), "{p}");
        assert_eq!(on(p, &object("lsm.s/file_open", RET0)), Verdict::accept(), "{p}");
        assert_eq!(on(p, &object("lsm.s/task_free", RET0)), not("bpf_lsm_task_free"), "{p}");
    }
    // The sleepable check comes before btf_id_deny (bpf_check_attach_target() first).
    assert_eq!(on("7.3", &object("fentry.s/__rcu_read_lock", RET0)), not("__rcu_read_lock"));
}

#[test]
fn sleepable_map_types() {
    let map = |name: &str, t: MapType| MapSpec {
        name: name.into(),
        map_type: t,
        key_size: 4,
        max_entries: 1,
        value: ValueLayout { size: 4, fields: vec![] },
        btf: false,
        global_section: false,
        flags: 0,
        inner: None,
    };
    let with = |t: MapType| {
        let mut c = case(ProgType::Syscall, true, "r1 = m ll\n r0 = 0\n exit\n");
        c.maps = vec![map("m", t)];
        c
    };
    let msg = "Sleepable programs can only use array, hash, ringbuf and local storage maps";
    assert_eq!(on("7.3", &with(MapType::SockMap)), Verdict::reject(None, msg));
    assert_eq!(on("6.12", &with(MapType::SockMap)), Verdict::reject(None, msg));
    assert_eq!(on("7.3", &with(MapType::Hash)), Verdict::accept());
    // 6.12 lacks prog_array in its list.
    assert_eq!(on("7.3", &with(MapType::ProgArray)), Verdict::accept());
    assert_eq!(on("6.12", &with(MapType::ProgArray)), Verdict::reject(None, msg));
}

#[test]
fn copy_from_user_contexts() {
    let helper = |w: &str| format!("sleepable helper bpf_copy_from_user#148 in {w}");
    let plain = case(ProgType::Syscall, true, &format!("{COPY}{RET0}"));
    assert_eq!(on("7.3", &plain), Verdict::accept());
    assert_eq!(on("6.12", &plain), Verdict::accept());
    let rcu = case(ProgType::Syscall, true, &format!("call bpf_rcu_read_lock\n{COPY}{RET0}"));
    assert_eq!(on("7.3", &rcu), Verdict::reject(Some(5), helper("rcu_read_lock region")));
    assert_eq!(on("6.12", &rcu).verdict, VerdictKind::Unsupported);
    let preempt = case(ProgType::Syscall, true, &format!("call bpf_preempt_disable\n{COPY}{RET0}"));
    assert_eq!(on("7.2", &preempt), Verdict::reject(Some(5), helper("non-preemptible region")));
    let irq = format!("r1 = r10\n r1 += -16\n call bpf_local_irq_save\n{COPY}{RET0}");
    let irq = case(ProgType::Syscall, true, &irq);
    assert_eq!(on("7.3", &irq), Verdict::reject(Some(7), helper("IRQ-disabled region")));
    let kprobe = case(ProgType::Kprobe, false, &format!("{COPY}{RET0}"));
    assert_eq!(on("7.3", &kprobe), Verdict::reject(Some(4), helper("non-sleepable prog")));
    assert_eq!(
        on("6.12", &kprobe),
        Verdict::reject(Some(4), "helper call might sleep in a non-sleepable prog")
    );
    // The bytes it writes are STACK_MISC: readable after the call.
    let read = case(ProgType::Syscall, true, &format!("{COPY}r0 = *(u64 *)(r10 - 8)\n{RET0}"));
    assert_eq!(on("7.3", &read), Verdict::accept());
}

#[test]
fn sleepable_kfunc_contexts() {
    let kprobe = case(ProgType::Kprobe, false, &format!("{COPY_STR}{RET0}"));
    let msg = "program must be sleepable to call sleepable kfunc bpf_copy_from_user_str";
    for p in ["6.12", "7.2", "7.3"] {
        assert_eq!(on(p, &kprobe), Verdict::reject(Some(5), msg), "{p}");
    }
    let rcu = case(ProgType::Syscall, true, &format!("call bpf_rcu_read_lock\n{COPY_STR}{RET0}"));
    let msg = "kernel func bpf_copy_from_user_str is sleepable within rcu_read_lock region";
    assert_eq!(on("7.3", &rcu), Verdict::reject(Some(6), msg));
    // Where it may sleep, what it writes is not modelled.
    let plain = case(ProgType::Syscall, true, &format!("{COPY_STR}{RET0}"));
    assert_eq!(on("7.3", &plain).verdict, VerdictKind::Unsupported);
}

/// `main` calls global `gsub` (one int argument), which copies from user space when R1 != 0.
fn global_case(t: ProgType, sleepable: bool, before: &str) -> Case {
    let text = format!(
        "{before}r1 = 0\n call gsub\n r0 = 0\n exit\ngsub:\n if r1 == 0 goto gout\n {COPY}gout:\n r0 = 0\n exit\n"
    );
    let mut c = case(t, sleepable, &text);
    c.globals = vec![GlobalFunc { label: "gsub".into(), args: 1, ctx_args: 0 }];
    c
}

#[test]
fn global_functions_that_may_sleep() {
    let msg = |w: &str| format!("sleepable global function gsub() called in {w}");
    let rcu = global_case(ProgType::Syscall, true, "call bpf_rcu_read_lock\n");
    assert_eq!(on("7.3", &rcu), Verdict::reject(Some(2), msg("rcu_read_lock region")));
    assert_eq!(on("7.2", &rcu), Verdict::reject(Some(2), msg("rcu_read_lock region")));
    let ok = global_case(ProgType::Syscall, true, "");
    assert_eq!(on("7.3", &ok), Verdict::accept());
    // A program that does not sleep: 7.x at the call; 6.12 walks the function and meets the helper.
    let kprobe = global_case(ProgType::Kprobe, false, "");
    assert_eq!(on("7.3", &kprobe), Verdict::reject(Some(1), msg("non-sleepable prog")));
    assert_eq!(
        on("6.12", &kprobe),
        Verdict::reject(Some(9), "helper call might sleep in a non-sleepable prog")
    );
}

#[test]
fn global_function_context_in_7_3() {
    // 7.3 verifies the function in the context of the call (here inside an IRQ-disabled region:
    // not sleepable); its own bpf_copy_from_user is then refused only if reachable, which the
    // might_sleep mark already refused at the call. A function that does not sleep passes.
    let text = "r1 = r10\n r1 += -8\n call bpf_local_irq_save\n r1 = 0\n call gsub\n r1 = r10\n r1 += -8\n call bpf_local_irq_restore\n r0 = 0\n exit\ngsub:\n r0 = r1\n exit\n";
    let mut c = case(ProgType::Syscall, true, text);
    c.globals = vec![GlobalFunc { label: "gsub".into(), args: 1, ctx_args: 0 }];
    for p in ["7.2", "7.3"] {
        assert_eq!(on(p, &c), Verdict::accept(), "{p}");
    }
}

#[test]
fn module_kfunc_flagged_sleepable() {
    // A module kfunc with KF_SLEEPABLE (bpf_testmod's bpf_kfunc_call_test_sleepable is one):
    // refused in a program that does not sleep before its arguments, and in a region after them.
    let mut module = crate::module_src::bundled();
    let k = crate::profile::ModuleKfunc {
        name: "sleepy".into(),
        flags: super::sleep::KF_SLEEPABLE,
        prog_types: vec![ProgType::Kprobe, ProgType::Syscall],
        args: 0,
        returns_scalar: true,
        returns_void: false,
    };
    module.kfuncs.insert("sleepy".into(), k);
    let with = |t: ProgType, sleepable: bool, text: &str| {
        let symbols = Symbols { maps: vec![], kfuncs: vec!["sleepy".into(), "bpf_rcu_read_lock".into()] };
        let program = assemble(text, &symbols).expect("assembles");
        let mut c = Case::new("t", t, program, text);
        c.sleepable = sleepable;
        c.extern_kfuncs = vec!["bpf_rcu_read_lock".into()];
        c
    };
    let p = KernelProfile::by_name("7.3").expect("7.3");
    let kprobe = with(
        ProgType::Kprobe,
        false,
        "call sleepy
 r0 = 0
 exit
",
    );
    assert_eq!(
        check(&kprobe, &p, &module),
        Verdict::reject(Some(0), "program must be sleepable to call sleepable kfunc sleepy")
    );
    let rcu = with(
        ProgType::Syscall,
        true,
        "call bpf_rcu_read_lock
 call sleepy
 r0 = 0
 exit
",
    );
    assert_eq!(
        check(&rcu, &p, &module),
        Verdict::reject(Some(1), "kernel func sleepy is sleepable within rcu_read_lock region")
    );
    let ok = with(
        ProgType::Syscall,
        true,
        "call sleepy
 r0 = 0
 exit
",
    );
    assert_eq!(check(&ok, &p, &module), Verdict::accept());
}
