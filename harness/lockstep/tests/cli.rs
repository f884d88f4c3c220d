//! The `lockstep` binary's exit codes and messages on bad input (no kernel or QEMU needed).

use std::process::{Command, Output};

fn lockstep(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockstep")).args(args).output().expect("run lockstep")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn an_unknown_kernel_is_bad_input_naming_it() {
    let o = lockstep(&["run", "--kernel", "debian:9.9", "--no-module"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("debian:9.9"), "{}", stderr(&o));
}

#[test]
fn host_mode_needs_a_profile() {
    let o = lockstep(&["run", "--host"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--profile"), "{}", stderr(&o));
}

#[test]
fn an_unknown_profile_is_bad_input() {
    let o = lockstep(&["run", "--host", "--profile", "9.9"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("9.9"), "{}", stderr(&o));
}

#[test]
fn a_malformed_case_file_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.toml");
    std::fs::write(&f, "[[case]]\nname = \"x\"\nprog_type = \"sched_cls\"\ntext = '''\n    r0 = 0\n    call no_such_helper\n    exit\n'''\n").unwrap();
    let o = lockstep(&["run", "--kernel", "debian:7.3", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("bad.toml:6"), "{}", stderr(&o));
}

/// Runs `sh -c script lockstep` (or `lockstep args` when `script` is empty) in a fresh user, pid and
/// mount namespace: a broken agent guard could then neither power this machine off nor mount over
/// its /proc.
fn in_namespaces(script: &str, args: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_lockstep");
    let mut c = Command::new("unshare");
    c.args(["--user", "--map-root-user", "--pid", "--fork", "--mount", "--"]);
    if script.is_empty() {
        c.arg(bin).args(args);
    } else {
        c.args(["sh", "-c", script, bin]);
    }
    c.output().expect("run unshare (util-linux)")
}

#[test]
fn the_agent_refuses_to_run_unless_pid_1() {
    // sh is pid 1 of the namespace, lockstep its child: the host situation.
    let script = r#"before=$(cat /proc/self/mountinfo); "$0" agent; rc=$?;
        after=$(cat /proc/self/mountinfo); [ "$before" = "$after" ] && echo "rc=$rc mounts unchanged""#;
    let o = in_namespaces(script, &[]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(out.trim(), "rc=2 mounts unchanged", "{}", stderr(&o));
    assert!(stderr(&o).contains("refusing to run") && stderr(&o).contains("this is pid "), "{}", stderr(&o));
}

#[test]
fn the_agent_refuses_pid_1_without_the_guest_marker() {
    // lockstep is pid 1, but this kernel was not booted with `lockstep.guest=1`.
    let o = in_namespaces("", &["agent"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no `lockstep.guest=1`"), "{}", stderr(&o));
    // pid 1 without the marker is the plain CLI, not the agent.
    let o = in_namespaces("", &["profiles"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("7.2+kf-spin-lock"));
}
