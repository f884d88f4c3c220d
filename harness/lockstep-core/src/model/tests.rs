//! Unit tests per rule: each program is checked on every profile and the expectation comes from
//! the verifier.c function named in the test.

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, FieldKind, MapSpec, MapType, ProgType};
use crate::verdict::VerdictKind;

fn lock_map(name: &str, btf: bool) -> MapSpec {
    cnt_lock_map(name, MapType::Array, FieldKind::SpinLock, btf)
}

fn case(prog_type: ProgType, maps: Vec<MapSpec>, text: &str) -> Case {
    let module = crate::module_src::bundled();
    let symbols = Symbols {
        maps: maps.iter().map(|m| m.name.clone()).collect(),
        kfuncs: module.kfuncs.keys().cloned().collect(),
    };
    let program = assemble(text, &symbols).expect("test program assembles");
    Case { maps, ..Case::new("t", prog_type, program, text) }
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
    let c = case(
        ProgType::SchedCls,
        vec![lock_map("m", true)],
        &with_prologue("call bpf_spin_lock\n r1 = r6\n r1 += 4\n call bpf_spin_unlock"),
    );
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn exit_with_lock_held_message_differs_by_kernel() {
    // 6.12 do_check(): "bpf_spin_unlock is missing"; 7.x process_bpf_exit_full() -> check_resource_leak().
    let c = case(
        ProgType::SchedCls,
        vec![lock_map("m", true)],
        &with_prologue("call bpf_spin_lock\n r0 = 0\n exit"),
    );
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}");
        assert_eq!(v.insn, Some(13), "{p}");
        let want = if p == "6.12" {
            "bpf_spin_unlock is missing"
        } else {
            "BPF_EXIT instruction in main prog cannot be used inside bpf_spin_lock-ed region"
        };
        assert_eq!(v.message.as_deref(), Some(want), "{p}");
    }
}

#[test]
fn helper_under_lock_is_rejected() {
    let c = case(
        ProgType::SchedCls,
        vec![lock_map("m", true)],
        &with_prologue("call bpf_spin_lock\n call bpf_get_prandom_u32"),
    );
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.message.as_deref(), Some("function calls are not allowed while holding a lock"), "{p}");
        assert_eq!(v.insn, Some(12), "{p}");
    }
}

#[test]
fn flagged_module_kfunc_under_lock_depends_on_profile() {
    let body = "call bpf_spin_lock\n r1 = 1\n call lockstep_safe\n r1 = r6\n r1 += 4\n call bpf_spin_unlock";
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue(body));
    for (p, v) in verdicts_on_all_profiles(&c) {
        let want = if p == "6.12" || p == "7.2" { VerdictKind::Reject } else { VerdictKind::Accept };
        assert_eq!(v.verdict, want, "{p}: {v:?}");
    }
    let c = case(
        ProgType::SchedCls,
        vec![lock_map("m", true)],
        &with_prologue(&body.replace("lockstep_safe", "lockstep_unsafe")),
    );
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
    }
    // Registered for XDP only: fetch_kfunc_meta() finds no flags for sched_cls.
    let c = case(
        ProgType::SchedCls,
        vec![lock_map("m", true)],
        &with_prologue(&body.replace("lockstep_safe", "lockstep_xdp_only_safe")),
    );
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.message.as_deref(), Some("function calls are not allowed while holding a lock"), "{p}");
    }
}

#[test]
fn double_lock_and_unlock_without_lock() {
    // do_check_insn(): bpf_spin_lock is not among the helpers allowed under a lock, so a second
    // bpf_spin_lock never reaches process_spin_lock()'s "Locking two bpf_spin_locks" check.
    let c = case(
        ProgType::SchedCls,
        vec![lock_map("m", true)],
        &with_prologue("call bpf_spin_lock\n r1 = r6\n r1 += 4\n call bpf_spin_lock"),
    );
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.message.as_deref(), Some("function calls are not allowed while holding a lock"), "{p}");
    }
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue("call bpf_spin_unlock"));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.message.as_deref(), Some("bpf_spin_unlock without taking a lock"), "{p}");
    }
}

#[test]
fn map_without_btf_and_wrong_offset() {
    let c = case(ProgType::SchedCls, vec![lock_map("m", false)], &with_prologue("call bpf_spin_lock"));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(
            v.message.as_deref(),
            Some("map 'm' has to have BTF in order to use bpf_spin_lock"),
            "{p}"
        );
    }
    let c =
        case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue("r1 = r6\n call bpf_spin_lock"));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(
            v.message.as_deref(),
            Some("off 0 doesn't point to 'struct bpf_spin_lock' that is at 4"),
            "{p}"
        );
    }
}

#[test]
fn prog_type_compatibility_is_checked_before_the_walk() {
    let c = case(ProgType::SocketFilter, vec![lock_map("m", true)], &with_prologue("call bpf_spin_lock"));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(
            (v.insn, v.message.as_deref()),
            (None, Some("socket filter progs cannot use bpf_spin_lock yet")),
            "{p}"
        );
    }
    let c = case(ProgType::Kprobe, vec![lock_map("m", true)], &with_prologue("call bpf_spin_lock"));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.message.as_deref(), Some("tracing progs cannot use bpf_spin_lock yet"), "{p}");
    }
}

#[test]
fn direct_access_to_the_lock_field() {
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue("r1 = *(u32 *)(r6 + 4)"));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(
            v.message.as_deref(),
            Some("bpf_spin_lock cannot be accessed directly by load/store"),
            "{p}"
        );
    }
}

#[test]
fn array_lookup_nullness_elision_changes_the_null_check_path() {
    // 7.x can_elide_value_nullness(): the lookup returns a non-null map_value, so the access
    // before any null check is accepted; 6.12 rejects it as map_value_or_null.
    let text = "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n call bpf_map_lookup_elem\n r1 = *(u32 *)(r0 + 0)\n r0 = 0\n exit";
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], text);
    for (p, v) in verdicts_on_all_profiles(&c) {
        if p == "6.12" {
            assert_eq!(v.message.as_deref(), Some("R0 invalid mem access 'map_value_or_null'"), "{p}");
        } else {
            assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
        }
    }
}

#[test]
fn unmodelled_helper_is_unsupported_not_guessed() {
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], "call bpf_get_numa_node_id\n r0 = 0\n exit");
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}");
    }
}

#[test]
fn switched_off_rules_are_skipped() {
    let module = crate::module_src::bundled();
    let p = KernelProfile::by_name("7.2").unwrap();
    let c = case(
        ProgType::SchedCls,
        vec![lock_map("m", true)],
        &with_prologue("call bpf_spin_lock\n call bpf_get_prandom_u32\n r0 = 0\n exit"),
    );
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
fn skb_ctx_reads_give_a_u32_and_packet_pointers_by_program_type() {
    // bpf_skb_is_valid_access(): __sk_buff->mark (offset 8) is readable in every skb type; the
    // loaded value is a scalar, so comparing it branches both ways.
    let body = "r7 = *(u32 *)(r9 + 8)\n if r7 == 0 goto skip\n call bpf_spin_lock\n r1 = r6\n r1 += 4\n call bpf_spin_unlock\nskip:";
    let c =
        case(ProgType::CgroupSkb, vec![lock_map("m", true)], &format!("r9 = r1\n{}", with_prologue(body)));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    // a scalar: no lock pointer can come from it
    let c = case(ProgType::SchedCls, vec![], "r1 = *(u32 *)(r1 + 8)\n call bpf_spin_lock\n r0 = 0\n exit");
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.message.as_deref(), Some("R1 type=scalar expected=map_value, ptr_"), "{p}");
    }
    // tc_cls_act_is_valid_access(): a 4-byte write of mark and a narrow read of it are valid
    // (model/ctx.rs; tests_ctx.rs has the tables).
    for text in ["r2 = 1\n *(u32 *)(r1 + 8) = r2\n r0 = 0\n exit", "r2 = *(u16 *)(r1 + 8)\n r0 = 0\n exit"] {
        for (p, v) in verdicts_on_all_profiles(&case(ProgType::SchedCls, vec![], text)) {
            assert_eq!(v.verdict, VerdictKind::Accept, "{p} {text}: {v:?}");
        }
    }
    // data (76) is a packet pointer: followed in sched_cls / xdp (pkt.rs, tests_pktmisc.rs), not
    // in cgroup_skb; a store into a kprobe's ctx is not modelled (its reads are: tests_tasks.rs)
    for (t, text) in [
        (ProgType::SchedCls, "r2 = *(u32 *)(r1 + 76)\n r0 = 0\n exit"),
        (ProgType::Xdp, "r2 = *(u32 *)(r1 + 8)\n r0 = 0\n exit"),
    ] {
        for (p, v) in verdicts_on_all_profiles(&case(t, vec![], text)) {
            assert_eq!(v.verdict, VerdictKind::Accept, "{p} {text}: {v:?}");
        }
    }
    for (t, text) in [
        (ProgType::CgroupSkb, "r2 = *(u32 *)(r1 + 76)\n r0 = 0\n exit"),
        (ProgType::Kprobe, "r2 = 0\n *(u64 *)(r1 + 8) = r2\n r0 = 0\n exit"),
    ] {
        for (p, v) in verdicts_on_all_profiles(&case(t, vec![], text)) {
            assert_eq!(v.verdict, VerdictKind::Unsupported, "{p} {text}: {v:?}");
        }
    }
}

/// check_map_prog_compatibility(): 7.2 refuses a map holding a `bpf_res_spin_lock` in a tracing
/// program (`BPF_SPIN_LOCK | BPF_RES_SPIN_LOCK`), 7.3 only one holding a `bpf_spin_lock`.
#[test]
fn res_spin_lock_map_in_a_tracing_program() {
    let mut m = lock_map("m", true);
    m.value.fields[1].kind = FieldKind::ResSpinLock;
    let c = case(ProgType::Kprobe, vec![m], "r1 = m ll\n r0 = 0\n exit");
    for (p, v) in verdicts_on_all_profiles(&c) {
        match p.as_str() {
            "7.2" | "7.2+kf-spin-lock" => {
                assert_eq!(v, Verdict::reject(None, "tracing progs cannot use bpf_spin_lock yet"), "{p}")
            }
            "7.3" => assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}"),
            _ => assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}"),
        }
    }
}

/// 7.x keeps a constant pointer offset in the bounds (check_mem_region_access(), 7.2): after
/// `r1 += -4` the access at +4 is "unbounded"; 6.12 (reg->off = -4) accepts it.
#[test]
fn negative_map_value_offset_then_access() {
    let c = case(
        ProgType::SchedCls,
        vec![lock_map("m", true)],
        &with_prologue("r1 = r6\n r1 += -4\n r2 = *(u32 *)(r1 + 4)"),
    );
    for (p, v) in verdicts_on_all_profiles(&c) {
        if p == "6.12" {
            assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
        } else {
            assert_eq!(
                v,
                Verdict::reject(
                    Some(13),
                    "R1 unbounded memory access, make sure to bounds check any such access"
                ),
                "{p}"
            );
        }
    }
    let c = case(
        ProgType::SchedCls,
        vec![lock_map("m", true)],
        &with_prologue("r1 = r6\n r1 += -4\n r2 = *(u32 *)(r1 + 0)"),
    );
    for (p, v) in verdicts_on_all_profiles(&c) {
        let want = if p == "6.12" {
            "invalid access to map value, value_size=8 off=-4 size=4"
        } else {
            "R1 min value is negative, either use unsigned index or do a if (index >=0) check."
        };
        assert_eq!(v, Verdict::reject(Some(13), want), "{p}");
    }
}

/// check_atomic_rmw() checks with strict alignment (check_generic_ptr_alignment()) before the
/// bounds and special-field checks; 6.12 prints `var_off+reg->off+off`, 7.x `var_off+off`.
#[test]
fn misaligned_atomic_on_a_map_value() {
    let c = case(
        ProgType::SchedCls,
        vec![lock_map("m", true)],
        &with_prologue("r1 = r6\n r1 += -4\n r2 = 1\n lock *(u32 *)(r1 + 10) += r2"),
    );
    for (p, v) in verdicts_on_all_profiles(&c) {
        let want = if p == "6.12" {
            "misaligned value access off 0+-4+10 size 4"
        } else {
            "misaligned value access off -4+10 size 4"
        };
        assert_eq!(v, Verdict::reject(Some(14), want), "{p}");
    }
}

/// is_scalar_branch_taken(): `if rX & 0` is never taken and `if w0 >= 0` always, so the
/// invalid load behind them is dead code (and the model rejects it where it is live).
#[test]
fn branches_decided_by_bounds_prune_dead_paths() {
    for cond in ["if r0 & 0 goto bad", "if w0 < 0 goto bad"] {
        let text = format!(
            "call bpf_get_prandom_u32\n {cond}\n r0 = 0\n exit\nbad:\n r1 = 0\n r0 = *(u32 *)(r1 + 0)\n exit"
        );
        let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &text);
        for (p, v) in verdicts_on_all_profiles(&c) {
            assert_eq!(v.verdict, VerdictKind::Accept, "{cond} on {p}: {v:?}");
        }
        let live = text.replace(" & 0 ", " & 1 ").replace("w0 < 0", "w0 < 1");
        for (p, v) in verdicts_on_all_profiles(&case(ProgType::SchedCls, vec![lock_map("m", true)], &live)) {
            assert_eq!(v, Verdict::reject(Some(5), "R1 invalid mem access 'scalar'"), "{live} on {p}");
        }
    }
}

/// do_check_subprogs(): a global function is verified only once a call to it was reached
/// (`if (!sub_aux->called || sub_aux->verified) continue;`); check_func_call() sets `called`.
/// The global function here exits with R0 unset (check_reg_arg(): "R0 !read_ok").
#[test]
fn global_functions_are_verified_only_when_called() {
    for (cond, called) in [("if r0 s> 6 goto do_call", false), ("if r0 s< 6 goto do_call", true)] {
        let text = format!("r0 = 0\n {cond}\n exit\ndo_call:\n call gsub\n exit\ngsub:\n exit");
        let mut c = case(ProgType::SchedCls, vec![], &text);
        c.globals = vec![crate::case::GlobalFunc { label: "gsub".into(), args: 0, ctx_args: 0 }];
        for (p, v) in verdicts_on_all_profiles(&c) {
            if called {
                assert_eq!(v, Verdict::reject(Some(5), "R0 !read_ok"), "{p}");
            } else {
                assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
            }
        }
    }
}

/// btf_check_subprog_call() -> btf_check_func_arg_match() logs "R%d is not a scalar" for an int
/// argument of a global function that is not a scalar (NOT_INIT after a helper call included)
/// before check_func_call() looks at the lock, so that line is the first error (debian:6.12 on
/// the fuzz finding fuzz-3ed19c61).
#[test]
fn global_function_argument_is_checked_before_the_lock() {
    let text = "r6 = .data ll\n r1 = r6\n r1 += 4\n call bpf_spin_lock\n call gsub\n r0 = 0\n exit\ngsub:\n r0 = 0\n exit";
    let mut data = lock_map(".data", true);
    data.global_section = true;
    let mut c = case(ProgType::SchedCls, vec![data], text);
    c.globals = vec![crate::case::GlobalFunc { label: "gsub".into(), args: 1, ctx_args: 0 }];
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v, Verdict::reject(Some(5), "R1 is not a scalar"), "{p}");
    }
    c.globals[0].args = 0;
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.insn, Some(5), "{p}: {v:?}");
        assert!(
            v.message
                .as_deref()
                .unwrap()
                .starts_with("global function calls are not allowed while holding a lock,"),
            "{p}: {v:?}"
        );
    }
}

/// Module kfunc references (check_kfunc_call(): KF_ACQUIRE takes a reference, KF_RET_NULL makes
/// the pointer maybe-null, KF_RELEASE releases the reference of its first argument;
/// mark_ptr_or_null_regs() drops the reference in the NULL branch).
const ACQUIRE_RELEASE: &str = "r1 = 1\n call lockstep_safe_acquire\n if r0 == 0 goto skip\n r1 = r0\n call lockstep_safe_release\nskip:";

#[test]
fn acquire_null_check_release_is_accepted_outside_a_lock_everywhere() {
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue(ACQUIRE_RELEASE));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn acquire_release_under_a_lock_follows_the_lock_rule() {
    let body = format!("call bpf_spin_lock\n {ACQUIRE_RELEASE}\n r1 = r6\n r1 += 4\n call bpf_spin_unlock");
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue(&body));
    for (p, v) in verdicts_on_all_profiles(&c) {
        if p == "6.12" || p == "7.2" {
            assert_eq!(
                (v.insn, v.message.as_deref()),
                (Some(13), Some("function calls are not allowed while holding a lock")),
                "{p}"
            );
        } else {
            assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
        }
    }
}

#[test]
fn a_maybe_null_return_left_unchecked_is_fine_and_a_leak_is_reported_with_its_ids() {
    // KF_RET_NULL without KF_ACQUIRE: no reference, nothing to release.
    let c = case(
        ProgType::SchedCls,
        vec![lock_map("m", true)],
        &with_prologue("r1 = 1\n call lockstep_safe_ret_null"),
    );
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    // An acquired reference still held at exit: check_reference_leak()'s "Unreleased reference
    // id=%d alloc_insn=%d". Ids follow env->id_gen: the lookup's map value 1, then
    // check_kfunc_call() takes 2 for the maybe-null return and acquire_reference() 3; the call
    // is insn 12, the exit insn 15.
    let leak = (Some(15), Some("Unreleased reference id=3 alloc_insn=12"));
    let c = case(
        ProgType::SchedCls,
        vec![lock_map("m", true)],
        &with_prologue("r1 = 1\n call lockstep_safe_acquire\n r7 = r0"),
    );
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!((v.insn, v.message.as_deref()), leak, "{p}: {v:?}");
    }
    // ... but only the non-null path holds it: the NULL branch released it.
    let c = case(
        ProgType::SchedCls,
        vec![lock_map("m", true)],
        &with_prologue("r1 = 1\n call lockstep_safe_acquire\n if r0 != 0 goto out"),
    );
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!((v.insn, v.message.as_deref()), leak, "{p}: {v:?}");
    }
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue("r1 = 1\n call lockstep_safe_acquire\n if r0 == 0 goto out\n r1 = r0\n call lockstep_safe_release"));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn a_released_pointer_is_no_longer_a_reference() {
    // release_reference() invalidates every copy (an unknown scalar with allow_ptr_leaks);
    // releasing the copy again is check_kfunc_args()'s "release kfunc ... expects referenced"
    // on 7.x (debian:7.2 / 7.3, tests/corpus/kfunc-release-args.toml), while 6.12's other order
    // ("R1 type=scalar expected=fp") is not modelled.
    let body = "r1 = 1\n call lockstep_safe_acquire\n if r0 == 0 goto out\n r7 = r0\n r1 = r0\n call lockstep_safe_release\n r1 = r7\n call lockstep_safe_release";
    let c = case(ProgType::SchedCls, vec![lock_map("m", true)], &with_prologue(body));
    for (p, v) in verdicts_on_all_profiles(&c) {
        if p == "6.12" {
            assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
        } else {
            assert_eq!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
            assert_eq!(
                v.message.as_deref(),
                Some("release kfunc lockstep_safe_release expects referenced PTR_TO_BTF_ID passed to R1"),
                "{p}"
            );
        }
    }
}

/// `check_reg_arg()`: a register past r10 is `R%d is invalid`, a write to r10 `frame pointer is
/// read only`; neither is modelled, but the message names the register the program wrote.
#[test]
fn a_write_to_r11_is_reported_as_r11_not_r10() {
    for (text, want) in [("r11 = 0\nr0 = 0\nexit", "r11"), ("r10 = 0\nr0 = 0\nexit", "r10")] {
        for (p, v) in verdicts_on_all_profiles(&case(ProgType::SocketFilter, vec![], text)) {
            assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {text}");
            let m = v.message.unwrap_or_default();
            assert!(m.contains(want) && !(want == "r11" && m.contains("r10")), "{p}: {m}");
        }
    }
}

/// `VarOff` (a map value's variable offset, interned so `Reg` stays 40 bytes): equal bounds give
/// equal handles, `get` gives the bounds back, `Debug` prints the `Option<Scalar>`.
#[test]
fn var_off_handles_compare_as_their_bounds() {
    use super::scalar::Scalar;
    use super::state::VarOff;
    let (a, b) = (Scalar::below(7), Scalar::below(15));
    assert_eq!(VarOff::of(Some(a)), VarOff::of(Some(a)));
    assert_ne!(VarOff::of(Some(a)), VarOff::of(Some(b)));
    assert_eq!(VarOff::of(None), VarOff::NONE);
    assert_ne!(VarOff::of(Some(Scalar::known(0))), VarOff::NONE);
    assert_eq!(VarOff::of(Some(b)).get(), Some(b));
    assert_eq!(VarOff::NONE.get(), None);
    assert_eq!(format!("{:?}", VarOff::of(Some(a))), format!("{:?}", Some(a)));
    assert_eq!(format!("{:?}", VarOff::NONE), "None");
}
