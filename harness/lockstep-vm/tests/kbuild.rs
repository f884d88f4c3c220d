//! Kernels built from source (Debian's linux-source-7.2 + the seed series), booted under QEMU.
//! Ignored unless built with `LOCKSTEP_VM_TESTS=1`. The first run fetches the source and a private
//! pahole and builds the kernel (about 11 minutes on 2 cores); later runs are cache hits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use lockstep_vm::guest::{GuestConfig, GuestOutcome, GuestRun};
use lockstep_vm::initramfs::{self, InitramfsSpec};
use lockstep_vm::kbuild::{config, BuildEvent, BuildRecord, BuildRequest, Kbuild, KbuildError};
use lockstep_vm::kernel::{self, KernelName, ModuleTarget};
use lockstep_vm::qemu::Accel;

mod common;
use common::agent;

/// One kernel build at a time (they share the work tree and two cores).
static SERIAL: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn request(series: Option<&str>) -> BuildRequest {
    let mut r = BuildRequest::new("debian-src:7.2".parse().unwrap());
    r.series = series.map(|s| repo().join("tests/series").join(s));
    r
}

fn log_event(e: BuildEvent) {
    match e {
        BuildEvent::Step { done, line, .. } if done % 250 == 0 => eprintln!("  step {done}: {line}"),
        BuildEvent::Step { .. } => {}
        other => eprintln!("{other:?}"),
    }
}

fn build(series: Option<&str>) -> BuildRecord {
    let t = std::time::Instant::now();
    let r = Kbuild::open_default()
        .expect("cache directory")
        .build(&request(series), &mut log_event)
        .expect("kernel build");
    eprintln!(
        "build {:?}: {} in {:.1}s (timings {:?})",
        series,
        r.name(),
        t.elapsed().as_secs_f64(),
        r.timings
    );
    r
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn seed_series_kernel_builds_boots_and_takes_the_lock_safe_module() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let rec = build(Some("kf-spin-lock-rfc-v2"));

    // The series is in the build: the KF_SPIN_LOCK flag exists in the module build tree's headers.
    let btf_h = std::fs::read_to_string(rec.tree.join("include/linux/btf.h")).unwrap();
    assert!(btf_h.contains("#define KF_SPIN_LOCK    (1 << 17)"), "series not applied");
    assert_eq!(rec.series.as_ref().unwrap().patches.len(), 1);
    assert_eq!(rec.release, format!("{}-lockstep", rec.source.kernel_version));

    // Every item lockstep needs made it into the final .config, with a new enough pahole.
    let final_config = std::fs::read_to_string(&rec.config).unwrap();
    let mandatory = config::merge(&[config::mandatory_fragment()]);
    assert_eq!(config::check(&final_config, &mandatory), vec![], "mandatory items missing");
    let have = config::parse_dotconfig(&final_config);
    assert!(have["PAHOLE_VERSION"].parse::<u32>().unwrap() >= 130, "{}", have["PAHOLE_VERSION"]);

    // An unchanged request is a cache hit with the same hash, resolvable by name.
    let plan = Kbuild::open_default()
        .expect("cache directory")
        .plan(&request(Some("kf-spin-lock-rfc-v2")), &mut |_| {})
        .unwrap();
    assert_eq!(plan.hash, rec.hash);
    assert_eq!(plan.cached.as_ref().map(|c| &c.hash), Some(&rec.hash));
    let root = lockstep_vm::debian::KernelCache::default_root().expect("cache directory");
    for name in ["build:7.2+kf-spin-lock-rfc-v2".to_string(), rec.name()] {
        let k = kernel::resolve(&name.parse::<KernelName>().unwrap(), &root, false).unwrap();
        assert_eq!(k.vmlinuz, rec.bzimage);
        assert_eq!(k.module_target, ModuleTarget::Tree { dir: rec.tree.clone() });
    }

    // It boots under TCG and the agent reports the build's release.
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initramfs.cpio");
    initramfs::build(&InitramfsSpec { init: agent(), ..Default::default() }, &initrd).unwrap();
    let mut cfg = GuestConfig::new(&rec.bzimage, &initrd);
    cfg.accel = Accel::Tcg;
    cfg.run_dir = dir.path().to_path_buf();
    cfg.console_log = Some(dir.path().join("console.log"));
    let mut g = GuestRun::start(&cfg).unwrap();
    let hello = g.wait_hello().unwrap_or_else(|o| {
        panic!(
            "no Hello: {o:?}\n{}",
            std::fs::read_to_string(dir.path().join("console.log")).unwrap_or_default()
        )
    });
    eprintln!("{}: boot-to-Hello {:.2}s under TCG", rec.name(), hello.boot_time.as_secs_f64());
    assert_eq!(hello.release, rec.release);
    assert_eq!(g.shutdown(), GuestOutcome::Completed);

    // The test module builds against the tree, and its kfunc set carries the lock-safe flag.
    let script = repo().join("scripts/build-module.sh");
    let out = Command::new("bash").arg(&script).args(["--tree"]).arg(&rec.tree).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ko = String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim().to_string();
    let flags = Command::new("bash")
        .arg(&script)
        .arg("--flags")
        .arg(&ko)
        .arg(rec.tree.join("vmlinux"))
        .output()
        .unwrap();
    let flags = String::from_utf8_lossy(&flags.stdout).to_string();
    eprintln!("{ko}:\n{flags}");
    let flag_of = |f: &str| {
        flags
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(f))
            .and_then(|l| l.split_whitespace().nth(2))
            .map(str::to_string)
    };
    assert_eq!(flag_of("lockstep_safe").as_deref(), Some("0x20000"), "{flags}");
    assert_eq!(flag_of("lockstep_unsafe").as_deref(), Some("0x0"), "{flags}");
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn a_hunk_that_does_not_apply_names_the_patch_and_the_hunk() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let e = Kbuild::open_default()
        .expect("cache directory")
        .build(&request(Some("broken-hunk")), &mut log_event)
        .unwrap_err();
    match e {
        KbuildError::PatchDoesNotApply { patch, detail, .. } => {
            assert_eq!(patch, "0001-bpf-Add-KF_SPIN_LOCK-flag-for-kfuncs-under-bpf_spin_lock.patch");
            assert!(detail.starts_with("kernel/bpf/verifier.c: hunk #2 does not apply"), "{detail}");
            assert!(detail.contains("BPF_FUNC_kptr_swap"), "the failing hunk's text is shown: {detail}");
        }
        other => panic!("want PatchDoesNotApply, got {other}"),
    }
}
