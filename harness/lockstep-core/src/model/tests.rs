//! Unit tests per rule: each program is checked on every profile and the expectation comes from
//! the verifier.c function named in the test.

use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, Field, FieldKind, MapSpec, MapType, ProgType, ValueLayout};
use crate::verdict::VerdictKind;

fn lock_map(name: &str, btf: bool) -> MapSpec {
    MapSpec {
        name: name.into(),
        map_type: MapType::Array,
        key_size: 4,
        max_entries: 1,
        value: ValueLayout {
            size: 8,
            fields: vec![
                Field { name: "cnt".into(), kind: FieldKind::Int, offset: 0, size: 4 },
                Field { name: "lock".into(), kind: FieldKind::SpinLock, offset: 4, size: 4 },
            ],
        },
        btf,
        global_section: false,
        flags: 0,
    }
}

fn case(prog_type: ProgType, maps: Vec<MapSpec>, text: &str) -> Case {
    let module = crate::module_src::bundled();
    let symbols = Symbols { maps: maps.iter().map(|m| m.name.clone()).collect(), kfuncs: module.kfuncs.keys().cloned().collect() };
    let program = assemble(text, &symbols).expect("test program assembles");
    Case { maps, ..Case::new("t", prog_type, program, text) }
}

fn verdicts(c: &Case) -> Vec<(String, Verdict)> {
    let module = crate::module_src::bundled();
    KernelProfile::all().iter().map(|p| (p.name.clone(), check(c, p, &module))).collect()
}

/// Looks up element 0 of `m` into r0 (null-checked), r1 = &lock.
const PROLOGUE: &str = "
    r1 = 0
    *(u32 *)(r10 - 4) = r1
    r2 = r10
    r2 += -4
    r1 = m ll
    call bpf_map_lookup_elem
    if r0 == 0 goto out
    r6 = r0
    r1 = r6
    r1 += 4
";

fn with_prologue(body: &str) -> String {
    format!("{PROLOGUE}{body}\nout:\n    r0 = 0\n    exit\n")
}

#[test]
fn lock_then_unlock_is_accepted_everywhere() {
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue("call bpf_spin_lock\n r1 = r6\n r1 += 4\n call bpf_spin_unlock"));
    for (p, v) in verdicts(&c) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn exit_with_lock_held_message_differs_by_kernel() {
    // 6.12 do_check(): "bpf_spin_unlock is missing"; 7.x process_bpf_exit_full() -> check_resource_leak().
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue("call bpf_spin_lock\n r0 = 0\n exit"));
    for (p, v) in verdicts(&c) {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}");
        assert_eq!(v.insn, Some(13), "{p}");
        let want = if p == "6.12" { "bpf_spin_unlock is missing" } else { "BPF_EXIT instruction in main prog cannot be used inside bpf_spin_lock-ed region" };
        assert_eq!(v.message.as_deref(), Some(want), "{p}");
    }
}

#[test]
fn helper_under_lock_is_rejected() {
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue("call bpf_spin_lock\n call bpf_get_prandom_u32"));
    for (p, v) in verdicts(&c) {
        assert_eq!(v.message.as_deref(), Some("function calls are not allowed while holding a lock"), "{p}");
        assert_eq!(v.insn, Some(12), "{p}");
    }
}

#[test]
fn flagged_module_kfunc_under_lock_depends_on_profile() {
    let body = "call bpf_spin_lock\n r1 = 1\n call lockstep_safe\n r1 = r6\n r1 += 4\n call bpf_spin_unlock";
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue(body));
    for (p, v) in verdicts(&c) {
        let want = if p == "6.12" || p == "7.2" { VerdictKind::Reject } else { VerdictKind::Accept };
        assert_eq!(v.verdict, want, "{p}: {v:?}");
    }
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue(&body.replace("lockstep_safe", "lockstep_unsafe")));
    for (p, v) in verdicts(&c) {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
    }
    // Registered for XDP only: fetch_kfunc_meta() finds no flags for sched_cls.
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue(&body.replace("lockstep_safe", "lockstep_xdp_only_safe")));
    for (p, v) in verdicts(&c) {
        assert_eq!(v.message.as_deref(), Some("function calls are not allowed while holding a lock"), "{p}");
    }
}

#[test]
fn double_lock_and_unlock_without_lock() {
    // do_check_insn(): bpf_spin_lock is not among the helpers allowed under a lock, so a second
    // bpf_spin_lock never reaches process_spin_lock()'s "Locking two bpf_spin_locks" check.
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue("call bpf_spin_lock\n r1 = r6\n r1 += 4\n call bpf_spin_lock"));
    for (p, v) in verdicts(&c) {
        assert_eq!(v.message.as_deref(), Some("function calls are not allowed while holding a lock"), "{p}");
    }
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue("call bpf_spin_unlock"));
    for (p, v) in verdicts(&c) {
        assert_eq!(v.message.as_deref(), Some("bpf_spin_unlock without taking a lock"), "{p}");
    }
}

#[test]
fn map_without_btf_and_wrong_offset() {
    let c = case(ProgType::SchedCls, vec![lock_map("m", false)], &with_prologue("call bpf_spin_lock"));
    for (p, v) in verdicts(&c) {
        assert_eq!(v.message.as_deref(), Some("map 'm' has to have BTF in order to use bpf_spin_lock"), "{p}");
    }
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue("r1 = r6\n call bpf_spin_lock"));
    for (p, v) in verdicts(&c) {
        assert_eq!(v.message.as_deref(), Some("off 0 doesn't point to 'struct bpf_spin_lock' that is at 4"), "{p}");
    }
}

#[test]
fn prog_type_compatibility_is_checked_before_the_walk() {
    let c = case(ProgType::SocketFilter, vec![lock_map("m", true)], &with_prologue("call bpf_spin_lock"));
    for (p, v) in verdicts(&c) {
        assert_eq!((v.insn, v.message.as_deref()), (None, Some("socket filter progs cannot use bpf_spin_lock yet")), "{p}");
    }
    let c = case(ProgType::Kprobe, vec![lock_map("m", true)], &with_prologue("call bpf_spin_lock"));
    for (p, v) in verdicts(&c) {
        assert_eq!(v.message.as_deref(), Some("tracing progs cannot use bpf_spin_lock yet"), "{p}");
    }
}

#[test]
fn direct_access_to_the_lock_field() {
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue("r1 = *(u32 *)(r6 + 4)"));
    for (p, v) in verdicts(&c) {
        assert_eq!(v.message.as_deref(), Some("bpf_spin_lock cannot be accessed directly by load/store"), "{p}");
    }
}

#[test]
fn array_lookup_nullness_elision_changes_the_null_check_path() {
    // 7.x can_elide_value_nullness(): the lookup returns a non-null map_value, so the access
    // before any null check is accepted; 6.12 rejects it as map_value_or_null.
    let text = "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n call bpf_map_lookup_elem\n r1 = *(u32 *)(r0 + 0)\n r0 = 0\n exit";
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], text);
    for (p, v) in verdicts(&c) {
        if p == "6.12" {
            assert_eq!(v.message.as_deref(), Some("R0 invalid mem access 'map_value_or_null'"), "{p}");
        } else {
            assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
        }
    }
}

#[test]
fn unmodelled_helper_is_unsupported_not_guessed() {
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], "call bpf_get_current_pid_tgid\n r0 = 0\n exit");
    for (p, v) in verdicts(&c) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}");
    }
}

#[test]
fn switched_off_rules_are_skipped() {
    let module = crate::module_src::bundled();
    let p = KernelProfile::by_name("7.2").unwrap();
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue("call bpf_spin_lock\n call bpf_get_prandom_u32\n r0 = 0\n exit"));
    let off = |rules: &[Rule]| check_with(&c, &p, &module, &ModelOptions { disabled: rules.to_vec() });
    assert_eq!(off(&[]), check(&c, &p, &module));
    assert_eq!(off(&[]).message.as_deref(), Some("function calls are not allowed while holding a lock"));
    // Without the call rule the walk reaches the exit with the lock held; without both, it passes.
    assert_eq!(off(&[Rule::CallUnderLock]).message.as_deref(), Some(p.messages.exit_with_lock.as_str()));
    assert_eq!(off(&[Rule::CallUnderLock, Rule::ExitWithLock]).verdict, VerdictKind::Accept);
    for r in Rule::ALL {
        assert_eq!(Rule::by_name(r.name()), Some(r));
    }
}

#[test]
fn skb_ctx_reads_give_a_u32_and_the_rest_of_ctx_is_unsupported() {
    // bpf_skb_is_valid_access(): __sk_buff->mark (offset 8) is readable in every skb type; the
    // loaded value is a scalar, so comparing it branches both ways.
    let body = "r7 = *(u32 *)(r9 + 8)\n if r7 == 0 goto skip\n call bpf_spin_lock\n r1 = r6\n r1 += 4\n call bpf_spin_unlock\nskip:";
    let c = case(ProgType::CgroupSkb, vec![lock_map("m", true)], &format!("r9 = r1\n{}", with_prologue(body)));
    for (p, v) in verdicts(&c) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    // a scalar: no lock pointer can come from it
    let c = case(ProgType::SchedCls, vec![], "r1 = *(u32 *)(r1 + 8)\n call bpf_spin_lock\n r0 = 0\n exit");
    for (p, v) in verdicts(&c) {
        assert_eq!(v.message.as_deref(), Some("R1 type=scalar expected=map_value, ptr_"), "{p}");
    }
    // data (76) is a packet pointer, writes and other program types are not modelled
    for (t, text) in [
        (ProgType::SchedCls, "r2 = *(u32 *)(r1 + 76)\n r0 = 0\n exit"),
        (ProgType::SchedCls, "r2 = 1\n *(u32 *)(r1 + 8) = r2\n r0 = 0\n exit"),
        (ProgType::SchedCls, "r2 = *(u16 *)(r1 + 8)\n r0 = 0\n exit"),
        (ProgType::Xdp, "r2 = *(u32 *)(r1 + 8)\n r0 = 0\n exit"),
    ] {
        for (p, v) in verdicts(&case(t, vec![], text)) {
            assert_eq!(v.verdict, VerdictKind::Unsupported, "{p} {text}: {v:?}");
        }
    }
}
