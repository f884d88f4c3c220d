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

#[test]
fn a_bad_kernel_btf_file_is_bad_input_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-vmlinux");
    let o = lockstep(&["check", "--profile", "7.3", "--kernel-btf", missing.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no-such-vmlinux"), "{}", stderr(&o));
    // A file that is neither raw BTF nor an ELF with .BTF.
    let junk = dir.path().join("junk.btf");
    std::fs::write(&junk, b"not btf at all").unwrap();
    let o = lockstep(&["check", "--profile", "7.3", "--kernel-btf", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("junk.btf"), "{}", stderr(&o));
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

/// Runs lockstep with stdout read by a pipe that is closed after the first line (`| head -1`).
fn with_stdout_closed_early(args: &[&str]) -> (Option<i32>, String) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lockstep");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    assert!(!first.is_empty(), "no output at all");
    // The reader (and the pipe's only read end) is dropped here.
    let o = child.wait_with_output().unwrap();
    (o.status.code(), stderr(&o))
}

#[test]
fn a_closed_stdout_pipe_ends_quietly() {
    for args in [&["disasm"][..], &["check"], &["check", "--json"]] {
        let (code, err) = with_stdout_closed_early(args);
        assert_eq!(code, Some(141), "{args:?}: {err}");
        assert!(!err.contains("panicked") && !err.contains("Broken pipe"), "{args:?}: {err}");
    }
}

#[test]
fn a_full_disk_is_a_clear_error_not_a_panic() {
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full");
    for args in [&["disasm"][..], &["check"], &["profiles"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .args(args)
            .stdout(full.try_clone().unwrap())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(3), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("writing to stdout: No space left on device"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
}

/// `lockstep args`, killed (and the test failed) if it runs for more than 60 s.
fn lockstep_bounded(args: &[&str]) -> Output {
    use std::time::{Duration, Instant};
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run lockstep");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("lockstep {args:?} hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

const ONE_CASE: &str = "[[case]]\nname = \"one\"\nprog_type = \"socket_filter\"\ntext = '''\nr0 = 0\nexit\n'''\n[case.expect.\"*\"]\nverdict = \"accept\"\n";

#[test]
fn a_fifo_named_like_a_case_file_is_bad_input_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("x.toml");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for arg in [&fifo, dir.path()] {
        let o = lockstep_bounded(&["check", arg.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(&format!("{}: not a regular file", fifo.display())), "{}", stderr(&o));
    }
}

#[test]
fn a_directory_symlink_loop_loads_each_file_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), ONE_CASE).unwrap();
    std::os::unix::fs::symlink(".", dir.path().join("loop")).unwrap();
    std::os::unix::fs::symlink("a.toml", dir.path().join("b.toml")).unwrap();
    let o = lockstep_bounded(&["check", "--json", "-p", "7.3", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).starts_with("1 cases x 1 profiles"), "{}", stderr(&o));
}

#[test]
fn an_empty_directory_is_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a case").unwrap();
    let o = lockstep(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("no cases found in {}", dir.path().display())), "{}", stderr(&o));
}

#[test]
fn an_expectation_for_an_unknown_profile_is_bad_input_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("p.toml");
    std::fs::write(&f, ONE_CASE.replace("\"*\"", "\"9.9\"")).unwrap();
    let o = lockstep(&["check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("p.toml:8:1: case `one`: expectation for unknown profile `9.9`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn invalid_utf8_is_bad_input_at_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("u.toml");
    std::fs::write(&f, b"[[case]]\nname = \"\xff\"\n").unwrap();
    let o = lockstep(&["check", f.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("u.toml:2:9: invalid UTF-8 (byte 0xff)"), "{}", stderr(&o));
}

#[test]
fn without_home_the_cache_is_bad_input_asking_for_lockstep_cache() {
    let o = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["kernel", "list"])
        .env_remove("HOME")
        .env_remove("XDG_CACHE_HOME")
        .env_remove("LOCKSTEP_CACHE")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("set LOCKSTEP_CACHE"), "{}", stderr(&o));
}

/// `lockstep bisect` in a git tree that is not a kernel: the `--good` end cannot build, which is
/// recorded in the log and named (exit 2), and git's bisection is reset.
#[test]
fn bisect_of_a_tree_that_is_no_kernel_names_the_unbuildable_good_end() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    std::fs::create_dir(&tree).unwrap();
    let git = |args: &[&str]| {
        let o = std::process::Command::new("git")
            .arg("-C")
            .arg(&tree)
            .args(["-c", "user.name=t", "-c", "user.email=t@t"])
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    git(&["init", "-q", "-b", "main"]);
    for i in 0..2 {
        std::fs::write(tree.join("Makefile"), format!("all:\n\t@echo {i}\n")).unwrap();
        git(&["add", "Makefile"]);
        git(&["commit", "-q", "-m", &format!("change {i}")]);
    }
    let good = git(&["rev-parse", "HEAD~1"]);
    let log = d.path().join("bisect.log");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .env("LOCKSTEP_CACHE", d.path().join("cache"))
        .args(["bisect", "--tree", tree.to_str().unwrap(), "--good", "HEAD~1", "--bad", "HEAD"])
        .args(["--log", log.to_str().unwrap(), "call_module_safe_syscall"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("the --good revision {good} did not give verdicts: the build failed"))
            && stderr(&o).contains("is not a kernel tree"),
        "{}",
        stderr(&o)
    );
    let line: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&log).unwrap()).unwrap();
    assert_eq!(
        (line["commit"].as_str(), line["outcome"].as_str()),
        (Some(good.as_str()), Some("build_failed"))
    );
    assert_eq!(git(&["symbolic-ref", "HEAD"]), "refs/heads/main", "git bisect was reset");
}
