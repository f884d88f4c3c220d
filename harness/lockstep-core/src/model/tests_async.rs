//! Unit tests of the async callback rules (`model/timer.rs`). Expectations from the 6.12, 7.2 and
//! 7.3 verifier sources (`check_map_field_pointer()`, `process_map_ptr_arg()`,
//! `set_timer_callback_state()`, `check_return_code()`, `check_map_prog_compatibility()`) and the
//! kernel runs of `test_helper_restricted.bpf.o` / `exceptions_fail.bpf.o`
//! (`reject_async_callback_throw`) on debian:7.2 and 7.3.

use super::test_fixtures::*;
use super::*;
use crate::asm::{assemble, Symbols};
use crate::case::{Case, Field, FieldKind, GlobalFunc, MapSpec, MapType, ProgType, ValueLayout};
use crate::verdict::VerdictKind;

/// Map `t`: `{ int cnt; <pad>; struct bpf_timer timer; }` (the timer at offset 8), array, one entry.
fn timer_map(name: &str, btf: bool) -> MapSpec {
    MapSpec {
        inner: None,
        name: name.into(),
        map_type: MapType::Array,
        key_size: 4,
        max_entries: 1,
        value: ValueLayout {
            size: 24,
            fields: vec![
                Field { name: "cnt".into(), kind: FieldKind::Int, offset: 0, size: 4, target: None },
                Field { name: "timer".into(), kind: FieldKind::Timer, offset: 8, size: 16, target: None },
            ],
        },
        btf,
        global_section: false,
        flags: 0,
    }
}

/// A case of `prog_type` over maps `t` (timer), `u` (a second timer map) and `m` (a lock, no
/// timer); a global function `gsub` makes the loader pass BTF func_info (for the callback
/// reference).
fn case(prog_type: ProgType, text: &str) -> Case {
    let text = format!("r1 = 0\ncall gsub\n{text}\ngsub:\n r0 = 0\n exit\n");
    let symbols = Symbols {
        maps: vec!["t".into(), "u".into(), "m".into()],
        kfuncs: ["bpf_throw", "bpf_timer_cancel_async", "bpf_wq_init", "bpf_wq_start", "bpf_wq_set_callback"]
            .map(String::from)
            .into(),
    };
    let program = assemble(&text, &symbols).expect("test program assembles");
    let maps = vec![
        timer_map("t", true),
        timer_map("u", true),
        cnt_lock_map("m", MapType::Array, FieldKind::SpinLock, true),
    ];
    let mut c = Case { maps, ..Case::new("t", prog_type, program, &text) };
    c.globals = vec![GlobalFunc { label: "gsub".into(), args: 1, ctx_args: 0 }];
    c
}

/// Looks up element 0 of map `map` into r6 (null-checked), runs `body`, returns 0; `cb` (when
/// `cb_body` is not empty: an unreferenced subprogram is "unreachable insn") runs `cb_body`.
fn with_value(map: &str, body: &str, cb_body: &str) -> String {
    let cb = if cb_body.is_empty() { String::new() } else { format!("cb:\n{cb_body}\n exit") };
    format!(
        "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = {map} ll\n call bpf_map_lookup_elem\n \
         if r0 == 0 goto out\n r6 = r0\n{body}\nout:\n r0 = 0\n exit\n{cb}"
    )
}

/// test_helper_restricted.c's `timer_work()`: init, set_callback, start, cancel.
const TIMER_WORK: &str = " r1 = r6\n r1 += 8\n r2 = t ll\n r3 = 1\n call bpf_timer_init\n \
     r1 = r6\n r1 += 8\n r2 = cb ll\n call bpf_timer_set_callback\n \
     r1 = r6\n r1 += 8\n r2 = 1000\n r3 = 0\n call bpf_timer_start\n \
     r1 = r6\n r1 += 8\n call bpf_timer_cancel";

fn on(c: &Case, profile: &str) -> Verdict {
    verdicts_on_all_profiles(c).into_iter().find(|(p, _)| p == profile).expect("profile").1
}

#[test]
fn timer_helpers_on_the_timer_field_are_accepted() {
    let c = case(ProgType::SchedCls, &with_value("t", TIMER_WORK, " r0 = 0"));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
}

#[test]
fn tracing_programs_may_use_timers_since_7_2_only() {
    // debian:7.2 and 7.3 accept test_helper_restricted's *_timer programs (kprobe, tracepoint,
    // raw_tp, perf_event); 6.12's check_map_prog_compatibility() refuses the map.
    let c = case(ProgType::Kprobe, &with_value("t", TIMER_WORK, " r0 = 0"));
    assert_eq!(on(&c, "6.12"), Verdict::reject(None, "tracing progs cannot use bpf_timer yet"));
    assert_eq!(on(&c, "7.2").verdict, VerdictKind::Accept);
    assert_eq!(on(&c, "7.3").verdict, VerdictKind::Accept);
}

#[test]
fn timer_argument_checks_follow_check_map_field_pointer() {
    // The timer's offset is 8: R1 at offset 4 is refused at the init call (insn 16).
    let c = case(
        ProgType::SchedCls,
        &with_value("t", " r1 = r6\n r1 += 4\n r2 = t ll\n r3 = 1\n call bpf_timer_init", ""),
    );
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(
            v,
            Verdict::reject(Some(16), "off 4 doesn't point to 'struct bpf_timer' that is at 8"),
            "{p}"
        );
    }
    // A map value without a timer.
    let c =
        case(ProgType::SchedCls, &with_value("m", " r1 = r6\n r2 = m ll\n r3 = 1\n call bpf_timer_init", ""));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v, Verdict::reject(Some(15), "map 'm' has no valid bpf_timer"), "{p}");
    }
    // The timer of `t` with the map pointer of `u`.
    let c = case(
        ProgType::SchedCls,
        &with_value("t", " r1 = r6\n r1 += 8\n r2 = u ll\n r3 = 1\n call bpf_timer_init", ""),
    );
    for (p, v) in verdicts_on_all_profiles(&c) {
        let msg = "timer pointer in R1 map_uid=0 doesn't match map pointer in R2 map_uid=0";
        assert_eq!(v, Verdict::reject(Some(16), msg), "{p}");
    }
    // A stack pointer as the timer.
    let c = case(ProgType::SchedCls, &with_value("t", " r1 = r10\n r1 += -8\n call bpf_timer_cancel", ""));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
        assert!(v.message.as_deref().unwrap_or("").contains("expected=map_value"), "{p}: {v:?}");
    }
}

#[test]
fn bpf_timer_cancel_async_takes_the_timer_field_on_7x_only() {
    // A kfunc of 7.2 and 7.3 (check_kfunc_args(): KF_ARG_PTR_TO_TIMER -> process_timer_func()),
    // absent from 6.12 (tests/corpus/async-callbacks.toml on debian:6.12 / 7.2 / 7.3).
    let ok =
        case(ProgType::SchedCls, &with_value("t", " r1 = r6\n r1 += 8\n call bpf_timer_cancel_async", ""));
    let off = case(ProgType::SchedCls, &with_value("t", " r1 = r6\n call bpf_timer_cancel_async", ""));
    let none = case(ProgType::SchedCls, &with_value("m", " r1 = r6\n call bpf_timer_cancel_async", ""));
    for p in ["7.2", "7.3"] {
        assert_eq!(on(&ok, p).verdict, VerdictKind::Accept, "{p}");
        let want = Verdict::reject(Some(12), "off 0 doesn't point to 'struct bpf_timer' that is at 8");
        assert_eq!(on(&off, p), want, "{p}");
        assert_eq!(on(&none, p), Verdict::reject(Some(12), "map 'm' has no valid bpf_timer"), "{p}");
    }
    assert_eq!(on(&ok, "6.12").verdict, VerdictKind::Unsupported);
}

#[test]
fn bpf_wq_kfuncs_check_the_wq_field_on_7x() {
    // Map `u` with its timer field read as a bpf_wq (same offset 8, same size).
    let mut c = case(
        ProgType::SchedCls,
        &with_value("u", " r1 = r6\n r1 += 8\n r2 = u ll\n r3 = 0\n call bpf_wq_init\n r1 = r6\n r1 += 8\n r2 = 0\n call bpf_wq_start", ""),
    );
    c.maps[1].value.fields[1].kind = FieldKind::Wq;
    for p in ["7.2", "7.3"] {
        assert_eq!(on(&c, p).verdict, VerdictKind::Accept, "{p}");
    }
    assert_eq!(on(&c, "6.12").verdict, VerdictKind::Unsupported);
    // check_map_field_pointer(..., BPF_WORKQUEUE, ...): the value's start, a map without a bpf_wq.
    let mut off = case(ProgType::SchedCls, &with_value("u", " r1 = r6\n r2 = 0\n call bpf_wq_start", ""));
    off.maps[1].value.fields[1].kind = FieldKind::Wq;
    let none = case(ProgType::SchedCls, &with_value("m", " r1 = r6\n r2 = 0\n call bpf_wq_start", ""));
    for p in ["7.2", "7.3"] {
        let want = Verdict::reject(Some(13), "off 0 doesn't point to 'struct bpf_wq' that is at 8");
        assert_eq!(on(&off, p), want, "{p}");
        assert_eq!(on(&none, p), Verdict::reject(Some(13), "map 'm' has no valid bpf_wq"), "{p}");
    }
    // The callback bpf_wq_set_callback pushes: walked as a sleepable async callback (timer.rs).
    let mut cb = case(
        ProgType::SchedCls,
        &with_value("u", " r1 = r6\n r1 += 8\n r2 = cb ll\n r3 = 0\n call bpf_wq_set_callback", " r0 = 0"),
    );
    cb.maps[1].value.fields[1].kind = FieldKind::Wq;
    assert_eq!(on(&cb, "7.3").verdict, VerdictKind::Accept);
}

#[test]
fn the_async_callback_must_return_zero() {
    // set_timer_callback_state(): callback_ret_range [0, 0]; the callback's exit is insn 33.
    let c = case(ProgType::SchedCls, &with_value("t", TIMER_WORK, " r0 = 1"));
    for (p, v) in verdicts_on_all_profiles(&c) {
        let msg = "At async callback return the register R0 has smin=1 smax=1 should have been in [0, 0]";
        assert_eq!(v, Verdict::reject(Some(33), msg), "{p}");
    }
}

#[test]
fn the_async_callback_starts_without_the_callers_lock_and_may_not_exit_with_one() {
    // The callback locks `m`'s element and exits holding it: the main program's exit rule
    // (process_bpf_exit_full() -> check_resource_leak() with "BPF_EXIT instruction in main prog").
    let cb =
        " r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n call bpf_map_lookup_elem\n \
              if r0 == 0 goto cbout\n r1 = r0\n r1 += 4\n call bpf_spin_lock\ncbout:\n r0 = 0";
    let c = case(ProgType::SchedCls, &with_value("t", TIMER_WORK, cb));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Reject, "{p}: {v:?}");
        let prof = KernelProfile::all().into_iter().find(|q| q.name == p).expect("profile");
        assert_eq!(v.message.as_deref(), Some(prof.messages.exit_with_lock.as_str()), "{p}");
    }
}

#[test]
fn bpf_throw_in_an_async_callback_is_refused_after_the_walk() {
    // exceptions_fail.c reject_async_callback_throw: "bpf_throw kfunc (insn N) cannot be called
    // from callback subprog 1" (debian:7.2 and 7.3; check_max_stack_depth() walks the async
    // callbacks as roots in 6.12 too), no instruction printed. bpf_throw is insn 33.
    let c = case(ProgType::SchedCls, &with_value("t", TIMER_WORK, " r1 = 0\n call bpf_throw\n r0 = 0"));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(
            v,
            Verdict::reject(None, "bpf_throw kfunc (insn 33) cannot be called from callback subprog 1"),
            "{p}"
        );
    }
}

/// A tc program that throws (`bpf_throw(0)`), with the exception callback `cb` declared as given.
fn throwing_with_cb(tags: u8, ret: crate::case::CbReturn, args: u8) -> Case {
    let text = "r1 = 0\ncall bpf_throw\nr0 = 0\nexit\n";
    let symbols = Symbols { maps: vec![], kfuncs: vec!["bpf_throw".into()] };
    let program = assemble(text, &symbols).expect("test program assembles");
    let mut c = Case::new("t", ProgType::SchedCls, program, text);
    c.exception_cb = Some(crate::case::ExceptionCb {
        name: "cb".into(),
        tags,
        global: true,
        ret,
        args,
        args_scalar: true,
    });
    c
}

#[test]
fn exception_callback_declarations_are_checked_as_the_kernel_orders_them() {
    use crate::case::CbReturn;
    // exceptions_fail.c reject_multiple_exception_cb (debian:7.2 and 7.3; the same check in 6.12).
    for (p, v) in verdicts_on_all_profiles(&throwing_with_cb(2, CbReturn::Scalar, 1)) {
        assert_eq!(v, Verdict::reject(None, "multiple exception callback tags for main subprog"), "{p}");
    }
    // reject_exception_cb_type_1 (a `void *` return), type_5 (void), type_2 / type_3 (0 or 2
    // parameters): debian:7.2 and 7.3; 6.12's return-type checks differ (not modelled).
    let other = throwing_with_cb(1, CbReturn::Other, 1);
    let void = throwing_with_cb(1, CbReturn::Void, 1);
    for p in ["7.2", "7.3"] {
        let msg = "Global function cb() return value not void or scalar. Only those are supported.";
        assert_eq!(on(&other, p), Verdict::reject(None, msg), "{p}");
        assert_eq!(on(&void, p), Verdict::reject(None, "exception cb cannot return void"), "{p}");
    }
    assert_eq!(on(&other, "6.12").verdict, VerdictKind::Unsupported);
    for args in [0, 2] {
        for (p, v) in verdicts_on_all_profiles(&throwing_with_cb(1, CbReturn::Scalar, args)) {
            assert_eq!(v, Verdict::reject(None, "exception cb only supports single integer argument"), "{p}");
        }
    }
    // A well-declared callback: its body is not imported, so no verdict.
    for (p, v) in verdicts_on_all_profiles(&throwing_with_cb(1, CbReturn::Scalar, 1)) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
    }
}

// check_mem_access() for PTR_TO_MAP_KEY: the timer callback's R2 (the key, 4 bytes) may be read
// inside the key (timer.bpf.o timer_cb1 reads `*key`); a load past it is not modelled.
#[test]
fn timer_callback_reads_its_key() {
    let c = case(ProgType::SchedCls, &with_value("t", TIMER_WORK, " r0 = *(u32 *)(r2 + 0)\n r0 = 0"));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Accept, "{p}: {v:?}");
    }
    let c = case(ProgType::SchedCls, &with_value("t", TIMER_WORK, " r0 = *(u32 *)(r2 + 4)\n r0 = 0"));
    for (p, v) in verdicts_on_all_profiles(&c) {
        assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
        assert!(v.message.as_deref().unwrap_or("").contains("map_key"), "{p}: {v:?}");
    }
}
