//! The guest's sampling profile (`lockstep.profile=1`, `agent_profile`) on a real kernel: a
//! one-vCPU guest, whose case loop runs at a real-time priority, still gets samples. VM test:
//! `LOCKSTEP_VM_TESTS=1`; no snapshot is saved. The report comes whole although the host ends QEMU
//! at the agent's `Bye` rather than after the guest's power-off.

use std::path::Path;
use std::process::Command;

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn a_one_vcpu_guest_is_sampled_beside_its_real_time_case_loop() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .current_dir(&root)
        .args(["run", "-k", "debian:7.3", "--accel", "tcg", "--jobs", "1", "--no-snapshot"])
        .args(["--append", "lockstep.profile=1", "--console-dir"])
        .arg(dir.path())
        .arg("--json")
        .arg(dir.path().join("rows.json"))
        .arg(root.join("tests/corpus/gen-pairing.toml"))
        .output()
        .expect("run lockstep");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let console = std::fs::read_to_string(dir.path().join("console-debian-7.3.log")).unwrap_or_default();
    // `lockstep profile: <n> samples, kernel <k>, user <u>`, printed at the guest's shutdown.
    let head = console
        .lines()
        .find_map(|l| l.strip_prefix("lockstep profile: ").filter(|r| r.contains(" samples, kernel ")))
        .unwrap_or_else(|| panic!("no profile on the console:\n{console}\nstderr:\n{stderr}"));
    let numbers: Vec<u64> =
        head.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    let [samples, kernel, user] = numbers[..] else { panic!("not a profile line: {head}") };
    assert!(samples > 0 && kernel > 0, "the guest was not sampled: {head}");
    assert_eq!(samples, kernel + user, "{head}");
    // The agent's last console line follows the report: the host, which ends QEMU once it has
    // read that line and `Bye`, loses none of the report.
    let report_end = console.rfind("lockstep profile: ").expect("the report");
    let done = console.rfind(lockstep_core::proto::CONSOLE_DONE).unwrap_or_else(|| {
        panic!("no `{}` line on the console:\n{console}", lockstep_core::proto::CONSOLE_DONE)
    });
    assert!(done > report_end, "the console's last agent line came before the report's end:\n{console}");
}
