//! `lockstep fuzz --jobs N` on a real kernel (debian:7.3 under TCG): one campaign over one and over
//! two guests gives the same counts, classes and unsupported reasons; SIGINT stops both guests and
//! the summary of what was collected is still printed (exit 130, no QEMU left); an `--out` that
//! cannot be written is bad input before any guest boots.
//!
//! The VM tests are ignored unless built with `LOCKSTEP_VM_TESTS=1`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The summary's fields that must not depend on how many guests judged the campaign.
fn counts(s: &Value) -> Value {
    let mut v = serde_json::Map::new();
    for k in ["programs", "supported", "agree", "disagree", "unsupported", "inconclusive", "crashes", "sent"]
    {
        v.insert(k.into(), s[k].clone());
    }
    v.insert("unsupported_reasons".into(), s["unsupported_reasons"].clone());
    let classes: Vec<Value> = s["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| serde_json::json!([c["signature"], c["count"], c["first_case"]]))
        .collect();
    v.insert("classes".into(), classes.into());
    v.into()
}

fn fuzz(jobs: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["fuzz", "--kernel", "debian:7.3", "--accel", "tcg", "--count", "640", "--batch", "64"])
        .args(["--no-minimize", "--seed", "5", "--jobs", jobs])
        .output()
        .expect("lockstep fuzz");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 1)), "jobs {jobs}: {:?}\n{stderr}", out.status);
    let line = String::from_utf8_lossy(&out.stdout);
    let s: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}\n{stderr}"));
    assert_eq!(s["jobs"], jobs.parse::<u64>().unwrap(), "{stderr}");
    assert_eq!(s["infra_error"], Value::Null, "{stderr}");
    s
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn one_guest_and_two_guests_give_the_same_campaign() {
    let one = fuzz("1");
    let two = fuzz("2");
    assert_eq!(one["programs"], 640);
    assert!(one["agree"].as_u64().unwrap() > 0, "{one}");
    assert_eq!(counts(&one), counts(&two));
}

/// Live QEMU processes whose command line names `dir`.
fn qemus_naming(dir: &Path) -> usize {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            stat.contains("(qemu-system")
                && !stat.contains(") Z ")
                && String::from_utf8_lossy(&cmdline).contains(&needle)
        })
        .count()
}

fn wait(child: &mut Child, max: Duration) -> Option<i32> {
    let end = Instant::now() + max;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("lockstep fuzz still running after {max:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn sigint_stops_every_guest_and_keeps_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["fuzz", "--kernel", "debian:7.3", "--accel", "tcg", "--count", "1000000", "--batch", "16"])
        .args(["--no-minimize", "--jobs", "2"])
        .env("TMPDIR", &tmp)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(300);
    while qemus_naming(&tmp) < 2 {
        assert!(Instant::now() < end, "two guests never ran at once");
        assert!(child.try_wait().unwrap().is_none(), "lockstep ended early");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Time for some batches to come back.
    std::thread::sleep(Duration::from_secs(60));
    assert!(Command::new("kill").arg("-INT").arg(child.id().to_string()).status().unwrap().success());
    let code = wait(&mut child, Duration::from_secs(120));
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap();
    assert_eq!(code, Some(130), "{stderr}");
    let end = Instant::now() + Duration::from_secs(5);
    while qemus_naming(&tmp) > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(qemus_naming(&tmp), 0, "QEMU outlived lockstep");
    let line = std::fs::read_to_string(dir.path().join("stdout")).unwrap();
    let s: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}\n{stderr}"));
    let n = |k: &str| s[k].as_u64().unwrap();
    assert!(n("programs") > 0, "no batch was counted: {s}\n{stderr}");
    assert_eq!(
        n("agree") + n("disagree") + n("unsupported") + n("inconclusive") + n("crashes"),
        n("programs"),
        "every collected program is counted once"
    );
    assert_eq!(n("programs") % 16, 0, "whole batches are counted, in flight ones too: {s}");
    assert!(n("agree") > 0, "the kernel's answers before SIGINT are kept: {s}");
    assert!(s["infra_error"].as_str().unwrap().starts_with("interrupted by SIGINT"), "{s}");
}

#[test]
fn an_unwritable_out_directory_is_bad_input_before_any_guest() {
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["fuzz", "--kernel", "debian:7.3", "--count", "10", "--out", "/proc/lockstep-no-such-dir"])
        .output()
        .expect("lockstep fuzz");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/proc/lockstep-no-such-dir"), "{stderr}");
    assert!(!stderr.contains("booted"), "{stderr}");
}
