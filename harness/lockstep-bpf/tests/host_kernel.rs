//! Loads real programs into the running kernel. Needs root and /sys/kernel/btf/vmlinux; skips
//! (with a printed reason) otherwise. Expected messages are what kernel 6.18 printed on the
//! development host (and agree with verifier.c of 6.12..7.3 for these checks).
//!
//! Set `LOCKSTEP_CAPTURE_DIR=<dir>` to write each case's full verifier log there (how the
//! fixtures under tests/fixtures/ were captured).

use std::sync::{Mutex, MutexGuard, OnceLock};

use lockstep_bpf::Loader;
use lockstep_core::asm::{assemble, Symbols};
use lockstep_core::case::{Case, Field, FieldKind, GlobalFunc, MapSpec, MapType, ProgType, ValueLayout};
use lockstep_core::proto::KernelResult;
use lockstep_core::verdict::VerdictKind;

/// The loader, or None (with the reason printed) when this host cannot load programs. The guard
/// serialises the tests (the fd-leak test counts this process's fds).
fn loader() -> Option<(MutexGuard<'static, ()>, &'static Loader)> {
    static SERIAL: Mutex<()> = Mutex::new(());
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static L: OnceLock<Result<Loader, String>> = OnceLock::new();
    let l = L.get_or_init(|| {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root".into());
        }
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
            return Err("no /sys/kernel/btf/vmlinux".into());
        }
        Loader::new().map_err(|e| e.to_string())
    });
    match l {
        Ok(l) => Some((guard, l)),
        Err(reason) => {
            eprintln!("SKIP: cannot load BPF programs on this host: {reason}");
            None
        }
    }
}

/// `{ u32 cnt; struct bpf_spin_lock lock; }`
fn lock_value() -> ValueLayout {
    ValueLayout {
        size: 8,
        fields: vec![
            Field { name: "cnt".into(), kind: FieldKind::Int, offset: 0, size: 4, target: None },
            Field { name: "lock".into(), kind: FieldKind::SpinLock, offset: 4, size: 4, target: None },
        ],
    }
}

fn map(name: &str, map_type: MapType, btf: bool) -> MapSpec {
    MapSpec {
        name: name.into(),
        map_type,
        key_size: 4,
        max_entries: 1,
        value: lock_value(),
        btf,
        global_section: false,
        flags: 0,
        inner: None,
    }
}

fn data_section() -> MapSpec {
    MapSpec {
        name: ".data".into(),
        map_type: MapType::Array,
        key_size: 4,
        max_entries: 1,
        value: lock_value(),
        btf: true,
        global_section: true,
        flags: 0,
        inner: None,
    }
}

fn case(name: &str, prog_type: ProgType, maps: Vec<MapSpec>, text: &str) -> Case {
    let symbols = Symbols { maps: maps.iter().map(|m| m.name.clone()).collect(), kfuncs: vec![] };
    let program = assemble(text, &symbols).unwrap_or_else(|e| panic!("{name}: {e}"));
    Case { file: file!().into(), maps, ..Case::new(name, prog_type, program, text) }
}

/// Looks up key 0 of map `m`; r6 = value (exits with 0 when NULL); r1 = &value->lock.
const LOOKUP: &str = "
    r1 = 0
    *(u32 *)(r10 - 4) = r1
    r2 = r10
    r2 += -4
    r1 = m ll
    call bpf_map_lookup_elem
    if r0 == 0 goto out
    r6 = r0
    r1 = r0
    r1 += 4
";

fn run(l: &Loader, c: &Case) -> KernelResult {
    let r = l.run_case(c, true);
    let log = r.log.as_deref().unwrap_or("");
    if let Ok(dir) = std::env::var("LOCKSTEP_CAPTURE_DIR") {
        std::fs::write(format!("{dir}/{}.log", c.name), log).expect("write capture");
    }
    eprintln!(
        "== {}: {:?} errno {} insn {:?} msg {:?} setup {:?}",
        c.name, r.verdict.verdict, r.errno, r.verdict.insn, r.verdict.message, r.setup_error
    );
    r
}

fn assert_reject(r: &KernelResult, insn: Option<usize>, message: &str) {
    assert_eq!(r.setup_error, None, "{}", r.log.as_deref().unwrap_or(""));
    assert_eq!(r.verdict.verdict, VerdictKind::Reject, "{}", r.log.as_deref().unwrap_or(""));
    assert_eq!(r.verdict.message.as_deref(), Some(message), "{}", r.log.as_deref().unwrap_or(""));
    assert_eq!(r.verdict.insn, insn);
    assert_ne!(r.errno, 0);
}

fn assert_accept(r: &KernelResult) {
    assert_eq!(r.setup_error, None);
    assert_eq!(r.verdict.verdict, VerdictKind::Accept, "{}", r.log.as_deref().unwrap_or(""));
    assert_eq!(r.errno, 0);
    assert!(r.insns_processed.is_some_and(|n| n > 0));
    assert!(r.verification_usec.is_some());
}

#[test]
fn lock_unlock_accepted() {
    let Some((_serial, l)) = loader() else { return };
    for t in [MapType::Array, MapType::Hash] {
        let text = format!(
            "{LOOKUP}call bpf_spin_lock\nr1 = r6\nr1 += 4\ncall bpf_spin_unlock\nout:\nr0 = 0\nexit\n"
        );
        let c = case(&format!("lock_unlock_{t:?}"), ProgType::SchedCls, vec![map("m", t, true)], &text);
        assert_accept(&run(l, &c));
    }
}

#[test]
fn lock_without_unlock_rejected() {
    let Some((_serial, l)) = loader() else { return };
    let text = format!("{LOOKUP}call bpf_spin_lock\nout:\nr0 = 0\nexit\n");
    let c = case("lock_no_unlock", ProgType::SchedCls, vec![map("m", MapType::Array, true)], &text);
    let r = run(l, &c);
    assert_reject(
        &r,
        Some(13),
        "BPF_EXIT instruction in main prog cannot be used inside bpf_spin_lock-ed region",
    );
}

#[test]
fn helper_call_under_lock_rejected() {
    let Some((_serial, l)) = loader() else { return };
    let text = format!(
        "{LOOKUP}call bpf_spin_lock\ncall bpf_get_prandom_u32\nr1 = r6\nr1 += 4\ncall bpf_spin_unlock\nout:\nr0 = 0\nexit\n"
    );
    let c = case("helper_under_lock", ProgType::SchedCls, vec![map("m", MapType::Array, true)], &text);
    let r = run(l, &c);
    assert_reject(&r, Some(12), "function calls are not allowed while holding a lock");
}

#[test]
fn map_without_btf_rejected() {
    let Some((_serial, l)) = loader() else { return };
    let text =
        format!("{LOOKUP}call bpf_spin_lock\nr1 = r6\nr1 += 4\ncall bpf_spin_unlock\nout:\nr0 = 0\nexit\n");
    let c = case("map_without_btf", ProgType::SchedCls, vec![map("m", MapType::Array, false)], &text);
    let r = run(l, &c);
    assert_reject(&r, Some(11), "map 'm' has to have BTF in order to use bpf_spin_lock");
}

#[test]
fn socket_filter_rejected() {
    let Some((_serial, l)) = loader() else { return };
    let text =
        format!("{LOOKUP}call bpf_spin_lock\nr1 = r6\nr1 += 4\ncall bpf_spin_unlock\nout:\nr0 = 0\nexit\n");
    let c = case("socket_filter_lock", ProgType::SocketFilter, vec![map("m", MapType::Array, true)], &text);
    let r = run(l, &c);
    assert_reject(&r, None, "socket filter progs cannot use bpf_spin_lock yet");
}

#[test]
fn global_data_lock() {
    let Some((_serial, l)) = loader() else { return };
    let ok = case(
        "global_lock",
        ProgType::SchedCls,
        vec![data_section()],
        "r1 = .data + 4 ll\ncall bpf_spin_lock\nr1 = .data + 4 ll\ncall bpf_spin_unlock\nr0 = 0\nexit\n",
    );
    assert_accept(&run(l, &ok));
    let bad = case(
        "global_lock_no_unlock",
        ProgType::SchedCls,
        vec![data_section()],
        "r1 = .data + 4 ll\ncall bpf_spin_lock\nr0 = 0\nexit\n",
    );
    let r = run(l, &bad);
    assert_reject(
        &r,
        Some(4),
        "BPF_EXIT instruction in main prog cannot be used inside bpf_spin_lock-ed region",
    );
}

#[test]
fn global_function_with_func_info() {
    let Some((_serial, l)) = loader() else { return };
    // A global function called with the lock held.
    let text = format!(
        "{LOOKUP}call bpf_spin_lock\nr1 = 1\ncall g\nr1 = r6\nr1 += 4\ncall bpf_spin_unlock\nout:\nr0 = 0\nexit\ng:\nr0 = r1\nexit\n"
    );
    let mut c = case("global_func_lock", ProgType::SchedCls, vec![map("m", MapType::Array, true)], &text);
    c.globals = vec![GlobalFunc { label: "g".into(), args: 1, ctx_args: 0 }];
    let r = run(l, &c);
    assert_eq!(r.setup_error, None);
    assert_eq!(r.verdict.verdict, VerdictKind::Reject, "{}", r.log.as_deref().unwrap_or(""));
    assert_eq!(r.verdict.insn, Some(13));
    // Without globals the same call is a static subprog call (verified inline).
    let mut s = c.clone();
    s.name = "static_func_lock".into();
    s.globals.clear();
    assert_accept(&run(l, &s));
}

#[test]
fn unlock_without_lock_on_second_branch() {
    let Some((_serial, l)) = loader() else { return };
    let text = format!(
        "{LOOKUP}r7 = *(u32 *)(r6 + 0)\nif r7 == 0 goto l1\ncall bpf_spin_lock\nr1 = r6\nr1 += 4\n\
         call bpf_spin_unlock\nr0 = 0\nexit\nl1:\nr1 = r6\nr1 += 4\ncall bpf_spin_unlock\nout:\nr0 = 0\nexit\n"
    );
    let c = case("unlock_no_lock_branch", ProgType::SchedCls, vec![map("m", MapType::Array, true)], &text);
    let r = run(l, &c);
    assert_reject(&r, Some(21), "bpf_spin_unlock without taking a lock");
}

/// `{ uN cnt; struct bpf_res_spin_lock lock; }` with the lock at `off`.
fn res_lock_map(off: u32) -> MapSpec {
    let mut m = map("m", MapType::Array, true);
    m.value = ValueLayout {
        size: off + 4,
        fields: vec![
            Field { name: "cnt".into(), kind: FieldKind::Int, offset: 0, size: off, target: None },
            Field { name: "lock".into(), kind: FieldKind::ResSpinLock, offset: off, size: 4, target: None },
        ],
    };
    m
}

fn res_lock_case(name: &str, off: u32) -> Case {
    let kfuncs = vec!["bpf_res_spin_lock".to_string(), "bpf_res_spin_unlock".to_string()];
    let text = format!(
        "{}call bpf_res_spin_lock\nif r0 != 0 goto out\nr1 = r6\nr1 += {off}\ncall bpf_res_spin_unlock\nout:\nr0 = 0\nexit\n",
        LOOKUP.replace("r1 += 4", &format!("r1 += {off}"))
    );
    let mut c = case(name, ProgType::SchedCls, vec![res_lock_map(off)], "r0 = 0\nexit\n");
    let symbols = Symbols { maps: vec!["m".into()], kfuncs };
    c.program = assemble(&text, &symbols).unwrap();
    c.text = text;
    c
}

#[test]
fn res_spin_lock_map_value() {
    let Some((_serial, l)) = loader() else { return };
    if l.kfunc_id("bpf_res_spin_lock").is_none() {
        eprintln!("SKIP: kernel has no bpf_res_spin_lock kfunc");
        return;
    }
    assert_accept(&run(l, &res_lock_case("res_lock_unlock", 4)));
    assert_accept(&run(l, &res_lock_case("res_lock_unlock_8", 8)));
    // struct bpf_res_spin_lock is 4-aligned: at offset 2 btf.c skips it, the verifier finds none.
    let r = run(l, &res_lock_case("res_lock_misaligned", 2));
    assert_reject(&r, Some(11), "map 'm' has no valid bpf_res_spin_lock");
}

#[test]
fn unknown_kfunc_is_a_setup_error() {
    let Some((_serial, l)) = loader() else { return };
    let symbols = Symbols { maps: vec![], kfuncs: vec!["no_such_kfunc_xyz".into()] };
    let mut c = case("unknown_kfunc", ProgType::SchedCls, vec![], "r0 = 0\nexit\n");
    c.program = assemble("call no_such_kfunc_xyz\nr0 = 0\nexit\n", &symbols).unwrap();
    let r = l.run_case(&c, false);
    assert!(r.setup_error.as_deref().is_some_and(|e| e.contains("no_such_kfunc_xyz")), "{r:?}");
    assert_ne!(r.verdict.verdict, VerdictKind::Accept);
}

#[test]
fn vmlinux_kfunc_resolves_and_loads() {
    let Some((_serial, l)) = loader() else { return };
    // bpf_rcu_read_lock/unlock are vmlinux kfuncs on every kernel with BTF since 6.2.
    let (id, module) = l.kfunc_id("bpf_rcu_read_lock").expect("bpf_rcu_read_lock in vmlinux BTF");
    assert!(id > 0);
    assert_eq!(module, None);
    let symbols =
        Symbols { maps: vec![], kfuncs: vec!["bpf_rcu_read_lock".into(), "bpf_rcu_read_unlock".into()] };
    let mut c = case("rcu_kfuncs", ProgType::SchedCls, vec![], "r0 = 0\nexit\n");
    c.program =
        assemble("call bpf_rcu_read_lock\ncall bpf_rcu_read_unlock\nr0 = 0\nexit\n", &symbols).unwrap();
    assert_accept(&run(l, &c));
}

#[test]
fn no_fd_leak_across_cases() {
    let Some((_serial, l)) = loader() else { return };
    let count = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let text =
        format!("{LOOKUP}call bpf_spin_lock\nr1 = r6\nr1 += 4\ncall bpf_spin_unlock\nout:\nr0 = 0\nexit\n");
    let c = case("fd_leak", ProgType::SchedCls, vec![map("m", MapType::Array, true), data_section()], &text);
    l.run_case(&c, false);
    let before = count();
    for _ in 0..50 {
        assert_eq!(l.run_case(&c, false).verdict.verdict, VerdictKind::Accept);
    }
    assert_eq!(count(), before);
}

#[test]
fn small_log_buffer_grows_on_enospc() {
    let Some((_serial, _)) = loader() else { return };
    let mut l = Loader::new().expect("loader");
    l.set_log_size(128);
    let text = format!("{LOOKUP}call bpf_spin_lock\nout:\nr0 = 0\nexit\n");
    let c = case("lock_no_unlock_small_log", ProgType::SchedCls, vec![map("m", MapType::Array, true)], &text);
    let r = run(&l, &c);
    assert_reject(
        &r,
        Some(13),
        "BPF_EXIT instruction in main prog cannot be used inside bpf_spin_lock-ed region",
    );
    assert!(r.log.as_deref().is_some_and(|log| log.starts_with("0: R1=ctx()")), "whole log after growing");
}

#[test]
fn every_prog_type_loads_a_trivial_program() {
    let Some((_serial, l)) = loader() else { return };
    for t in ProgType::ALL {
        let c = case(&format!("trivial_{}", t.name()), t, vec![], "r0 = 0\nexit\n");
        let r = run(l, &c);
        if t == ProgType::Syscall {
            // BPF_PROG_TYPE_SYSCALL must be loaded with BPF_F_SLEEPABLE.
            assert_reject(&r, None, "Syscall programs can only be sleepable");
        } else {
            assert_eq!(r.verdict.verdict, VerdictKind::Accept, "{}: {r:?}", t.name());
        }
    }
}

#[test]
fn sleepable_flag_reaches_the_kernel() {
    let Some((_serial, l)) = loader() else { return };
    let mut c = case("sleepable_syscall", ProgType::Syscall, vec![], "r0 = 0\nexit\n");
    c.sleepable = true;
    assert_accept(&run(l, &c));
    let mut c = case("sleepable_sched_cls", ProgType::SchedCls, vec![], "r0 = 0\nexit\n");
    c.sleepable = true;
    let r = run(l, &c);
    assert_eq!(r.verdict.verdict, VerdictKind::Reject, "{r:?}");
}

#[test]
fn load_module_reports_a_missing_file() {
    let st = lockstep_bpf::load_module(std::path::Path::new("/nonexistent/lockstep-test.ko"));
    match st {
        lockstep_core::proto::ModuleStatus::Failed { name, error } => {
            assert_eq!(name, "lockstep_test");
            assert!(error.contains("open"), "{error}");
        }
        other => panic!("{other:?}"),
    }
}
