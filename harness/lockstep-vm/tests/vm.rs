//! End-to-end: real Debian kernels under QEMU (TCG) with the transport-only test agent.
//! Ignored unless built with `LOCKSTEP_VM_TESTS=1`. Needs network on first run (kernel fetch) and
//! builds the static agent with cargo (`LOCKSTEP_TEST_AGENT=<path>` skips that).

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lockstep_core::case::{Case, ProgType};
use lockstep_vm::debian::{FetchParts, KernelCache, KernelRef};
use lockstep_vm::guest::batch::{run_batch, BatchEvent, BatchOptions};
use lockstep_vm::guest::kvm::probe_kvm;
use lockstep_vm::guest::{GuestConfig, GuestOutcome, GuestRun, Limit, Stage};
use lockstep_vm::initramfs::{self, InitramfsSpec};
use lockstep_vm::qemu::Accel;

mod common;
use common::agent;

/// QEMU guests share two cores: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn kernel(name: &str) -> KernelRef {
    KernelCache::open_default()
        .expect("cache directory")
        .fetch(name, FetchParts::default(), &|_| {})
        .expect("fetch kernel")
}

fn setup(name: &str, dir: &Path) -> (KernelRef, GuestConfig) {
    let k = kernel(name);
    let initrd = dir.join("initramfs.cpio");
    initramfs::build(&InitramfsSpec { init: agent(), ..Default::default() }, &initrd).unwrap();
    let mut cfg = GuestConfig::new(&k.vmlinuz, &initrd);
    cfg.accel = Accel::Tcg;
    cfg.run_dir = dir.to_path_buf();
    cfg.console_log = Some(dir.join("console.log"));
    (k, cfg)
}

fn case(name: &str) -> Case {
    Case::new(name, ProgType::SocketFilter, Default::default(), "")
}

fn round_trip(name: &str) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (k, cfg) = setup(name, dir.path());
    let mut g = GuestRun::start(&cfg).unwrap();
    let hello = g.wait_hello().unwrap_or_else(|o| panic!("{name}: no Hello: {o:?}"));
    eprintln!(
        "{name} ({} {}): boot-to-Hello {:.2}s under TCG",
        k.abi,
        k.package_version,
        hello.boot_time.as_secs_f64()
    );
    assert_eq!(hello.release, k.release());
    for n in ["one", "two", "three"] {
        let r = g.run_case(&case(n), false).unwrap();
        assert_eq!(r.result.case, n);
        assert!(r.result.setup_error.is_some(), "the test agent must not claim a verdict");
        eprintln!("{name}: round trip {n} {:.1} ms", r.elapsed.as_secs_f64() * 1e3);
    }
    let t = Instant::now();
    assert_eq!(g.shutdown(), GuestOutcome::Completed);
    eprintln!("{name}: shutdown {:.2}s", t.elapsed().as_secs_f64());
    let log = std::fs::read_to_string(dir.path().join("console.log")).unwrap();
    assert!(!log.contains("Kernel panic"), "{log}");
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn debian_7_3_boots_and_round_trips() {
    round_trip("debian:7.3");
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn debian_7_2_boots_and_round_trips() {
    round_trip("debian:7.2");
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn debian_6_12_boots_and_round_trips() {
    round_trip("debian:6.12");
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn bad_init_is_a_boot_failure_not_a_hang() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (_, mut cfg) = setup("debian:7.3", dir.path());
    cfg.extra_cmdline = vec!["init=/nonexistent".into(), "rdinit=/nonexistent".into()];
    cfg.timeouts.boot = Duration::from_secs(120);
    let t = Instant::now();
    let mut g = GuestRun::start(&cfg).unwrap();
    let o = g.wait_hello().expect_err("no agent, no Hello");
    eprintln!("bad init: {:.2}s", t.elapsed().as_secs_f64());
    match o {
        GuestOutcome::BootFailure { excerpt } => assert!(excerpt.contains("Kernel panic"), "{excerpt}"),
        other => panic!("want BootFailure, got {other:?}"),
    }
    assert!(t.elapsed() < Duration::from_secs(60), "took {:?}", t.elapsed());
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn batch_resumes_after_panic_and_hang() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (_, mut cfg) = setup("debian:7.3", dir.path());
    cfg.timeouts.case = Duration::from_secs(5);
    let cases: Vec<Case> =
        ["a", "lockstep-test:panic", "b", "lockstep-test:hang", "c"].iter().map(|n| case(n)).collect();
    let opts = BatchOptions { guest: cfg, want_log: false, boot_attempts: 3 };
    let mut events = Vec::new();
    let t = Instant::now();
    let s = run_batch(&cases, &opts, &mut |e| {
        eprintln!("{e:?}");
        events.push(e)
    })
    .unwrap();
    eprintln!("batch: {} boots in {:.1}s", s.boots, t.elapsed().as_secs_f64());
    let results: Vec<usize> = events
        .iter()
        .filter_map(|e| match e {
            BatchEvent::Result { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    assert_eq!(results, [0, 2, 4]);
    assert_eq!(s.crashed, [1], "only the panic is a crash");
    assert_eq!(s.timed_out, [3], "the hang is a timeout, not retried");
    // The panic leaves four cases unanswered (a finished one among them could have been held
    // back by an agent that writes in batches): a fresh guest runs them one at a time, where the
    // panic crashes twice alone (two more guests), then b and the hang (a timeout), then c.
    assert_eq!(s.boots, 5);
    let crash = events
        .iter()
        .find_map(|e| match e {
            BatchEvent::Crashed { index: 1, outcome } => Some(outcome),
            _ => None,
        })
        .unwrap();
    assert!(matches!(crash, GuestOutcome::Panic { excerpt } if excerpt.contains("sysrq")), "{crash:?}");
    let hang = events
        .iter()
        .find_map(|e| match e {
            BatchEvent::TimedOut { index: 3, outcome } => Some(outcome),
            _ => None,
        })
        .unwrap();
    assert!(
        matches!(hang, GuestOutcome::Timeout { stage: Stage::Case { .. }, limit: Limit::Case, .. }),
        "{hang:?}"
    );
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn kvm_probe_answers_quickly() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let (_, cfg) = setup("debian:7.3", dir.path());
    let t = Instant::now();
    let p = probe_kvm(&cfg, dir.path(), true);
    eprintln!("kvm probe: {:?} in {:.2}s: {}", p.accel, t.elapsed().as_secs_f64(), p.reason);
    assert!(t.elapsed() < Duration::from_secs(70));
    let again = probe_kvm(&cfg, dir.path(), false);
    assert!(again.cached && again.accel == p.accel);
}
