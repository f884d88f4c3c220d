//! Restored guests (`lockstep_vm::guest::snapshot`) on a real kernel: a guest restored from a
//! snapshot gives the same verdicts as a cold boot, and a corrupted snapshot falls back to a boot
//! (deleted, then saved afresh). VM tests: `LOCKSTEP_VM_TESTS=1`; each snapshot store is private.

use std::path::Path;
use std::process::{Command, Output};

const CASES: &str = "tests/corpus/gen-pairing.toml";

/// `lockstep run` on debian:7.3 with snapshots in `store` (None: `--no-snapshot`); its output and
/// the (case, verdict, message, insn) of each JSON row.
fn run(store: &Path, snapshots: bool, json: &Path) -> (Output, Vec<(String, String, String, String)>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lockstep"));
    cmd.current_dir(&root)
        .env("LOCKSTEP_SNAPSHOT_DIR", store)
        .env("RUST_LOG", "info")
        .args(["run", "-k", "debian:7.3", "--accel", "tcg", "--json"])
        .arg(json)
        .arg(root.join(CASES));
    if !snapshots {
        cmd.arg("--no-snapshot");
    }
    let out = cmd.output().expect("run lockstep");
    let rows = std::fs::read_to_string(json)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON row");
            let f = |k: &str| v.get(k).map(|x| x.to_string()).unwrap_or_default();
            (f("case"), f("kernel_verdict"), f("kernel_message"), f("kernel_insn"))
        })
        .collect();
    (out, rows)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The device streams of the snapshots saved in `store` (a snapshot is a directory holding the
/// guest's RAM image `ram` and QEMU's stream of the rest, `devices`).
fn snapshots(store: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(store).map_or(Vec::new(), |d| {
        d.flatten()
            .map(|e| e.path().join("devices"))
            .filter(|p| p.is_file() && p.with_file_name("ram").is_file())
            .collect()
    })
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn a_restored_guest_gives_the_verdicts_of_a_cold_boot_and_a_corrupt_snapshot_falls_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("snapshots");
    let (cold, cold_rows) = run(&store, false, &dir.path().join("cold.json"));
    assert!(snapshots(&store).is_empty(), "--no-snapshot saves nothing");
    assert!(!cold_rows.is_empty(), "{}", stderr(&cold));
    assert!(cold_rows.iter().all(|r| r.1 != "null"), "every case has a kernel verdict: {cold_rows:?}");

    let (saved, saved_rows) = run(&store, true, &dir.path().join("saved.json"));
    assert!(stderr(&saved).contains("guest snapshot saved"), "{}", stderr(&saved));
    // The booted guest is saved and gone; the run's guest is the first restore of its snapshot.
    assert!(stderr(&saved).contains("guest restored from snapshot"), "{}", stderr(&saved));
    assert_eq!(saved_rows, cold_rows);
    let files = snapshots(&store);
    assert_eq!(files.len(), 1, "{files:?}");

    let (restored, restored_rows) = run(&store, true, &dir.path().join("restored.json"));
    assert!(stderr(&restored).contains("guest restored from snapshot"), "{}", stderr(&restored));
    assert_eq!(restored.status.code(), cold.status.code(), "{}", stderr(&restored));
    assert_eq!(restored_rows, cold_rows);

    // Corrupt the device stream's header: QEMU refuses it, the run boots instead.
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[..4096].fill(0x5a);
    std::fs::write(&files[0], &bytes).unwrap();
    let (fallback, fallback_rows) = run(&store, true, &dir.path().join("fallback.json"));
    let err = stderr(&fallback);
    assert!(err.contains("did not restore") && err.contains("deleted; booting"), "{err}");
    assert!(err.contains("guest snapshot saved"), "a fresh snapshot replaces the corrupt one: {err}");
    assert_eq!(fallback.status.code(), cold.status.code(), "{err}");
    assert_eq!(fallback_rows, cold_rows);
    let fresh = std::fs::read(&files[0]).unwrap();
    assert_ne!(fresh[..4096], bytes[..4096]);
}
