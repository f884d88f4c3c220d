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
