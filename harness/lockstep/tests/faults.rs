//! Fault injection: the real `lockstep` binary on debian:7.3 (TCG) with QEMU killed, lockstep
//! interrupted or killed, a case or the whole run out of time, a boot that panics and an output
//! path that cannot be written. Each test checks the exit code, that every result collected before
//! the fault is in the JSON file, and that no QEMU is left (no process anywhere whose command line
//! names the test's own temporary directory, where lockstep's run directory and so QEMU's
//! initramfs live).
//!
//! Every run has `--jobs 2` (its five cases are too few to split, so one guest runs them; the
//! workers, the collecting thread and the stop they share are those of parallel runs).
//!
//! Ignored unless built with `LOCKSTEP_VM_TESTS=1`; needs debian:7.3 in the cache (the first run
//! fetches it). About 10 guest boots in all.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Guests share two cores with everything else: one lockstep at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Four quick cases (sorted first), then one whose verification takes minutes under TCG: a
/// 2M-iteration loop at verifier log level 2 (measured: over 60 s on debian:7.3; the verifier gives
/// up at 1M processed instructions, printing every state on the way).
const QUICK: &str = r#"
[[case]]
name = "accept_r0"
prog_type = "sched_cls"
text = '''
    r0 = 0
    exit
'''

[[case]]
name = "reject_r0_unread"
prog_type = "sched_cls"
text = '''
    exit
'''

[[case]]
name = "accept_socket_filter"
prog_type = "socket_filter"
text = '''
    r0 = 0
    exit
'''

[[case]]
name = "accept_xdp"
prog_type = "xdp"
text = '''
    r0 = 2
    exit
'''
"#;
const QUICK_CASES: usize = 4;

const SLOW: &str = r#"
[[case]]
name = "slow_loop"
prog_type = "sched_cls"
log_level = 2
text = '''
    r1 = 0
loop:
    r1 += 1
    if r1 < 2000000 goto loop
    r0 = 0
    exit
'''
"#;

/// One `lockstep run` in its own directory (also its TMPDIR).
struct Run {
    child: Child,
    dir: tempfile::TempDir,
    started: Instant,
}

impl Run {
    fn start(extra: &[&str]) -> Run {
        Run::start_with(extra, Some(SLOW), None)
    }

    /// `slow`: the slow case file's text, written as `z-slow.toml` beside `a-quick.toml` so its
    /// cases always come last (cases run in path order); `stdout`: where lockstep's stdout goes
    /// (default: a file).
    fn start_with(extra: &[&str], slow: Option<&str>, stdout: Option<&Path>) -> Run {
        Run::start_jobs(extra, slow, stdout, "2")
    }

    /// [`Run::start_with`] with `--jobs jobs`.
    fn start_jobs(extra: &[&str], slow: Option<&str>, stdout: Option<&Path>, jobs: &str) -> Run {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a-quick.toml"), QUICK).unwrap();
        std::fs::create_dir(dir.path().join("tmp")).unwrap();
        let mut args: Vec<String> =
            ["run", "--kernel", "debian:7.3", "--no-module", "--accel", "tcg", "--jobs", jobs, "--json"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        args.push(dir.path().join("r.json").display().to_string());
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(dir.path().join("a-quick.toml").display().to_string());
        if let Some(slow) = slow {
            std::fs::write(dir.path().join("z-slow.toml"), slow).unwrap();
            args.push(dir.path().join("z-slow.toml").display().to_string());
        }
        let stdout = match stdout {
            Some(p) => std::fs::OpenOptions::new().write(true).open(p).unwrap(),
            None => std::fs::File::create(dir.path().join("stdout")).unwrap(),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_lockstep"))
            .args(&args)
            .env("TMPDIR", dir.path().join("tmp"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(std::fs::File::create(dir.path().join("stderr")).unwrap())
            .spawn()
            .unwrap();
        Run { child, dir, started: Instant::now() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The JSON rows written so far.
    fn rows(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("r.json"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
            .collect()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("stderr")).unwrap_or_default()
    }

    /// Waits until `n` rows are in the JSON file (lockstep streams them).
    fn wait_rows(&mut self, n: usize, max: Duration) -> Vec<Value> {
        let end = Instant::now() + max;
        loop {
            let rows = self.rows();
            if rows.len() >= n {
                return rows;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("lockstep ended ({st}) with {} rows:\n{}", rows.len(), self.stderr());
            }
            assert!(Instant::now() < end, "no {n} rows after {max:?}:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The QEMU processes whose command line names this run's directory.
    fn qemus(&self) -> Vec<i32> {
        qemu_processes_naming(self.dir.path())
    }

    fn signal(&self, sig: i32) {
        let st = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status().unwrap();
        assert!(st.success());
    }

    /// Waits for lockstep to end (at most `max`): its exit code (None: killed by a signal).
    fn wait(&mut self, max: Duration) -> Option<i32> {
        let end = Instant::now() + max;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                eprintln!(
                    "lockstep ended ({st}) after {:.1}s; stderr:\n{}",
                    self.started.elapsed().as_secs_f64(),
                    self.stderr()
                );
                return st.code();
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("lockstep still running after {max:?}:\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// No QEMU of this run is left (allowing a moment for the kernel to deliver the parent-death
    /// signal) and, unless lockstep was SIGKILLed, no run directory either.
    fn assert_clean(&self, temp_dirs_removed: bool) {
        let end = Instant::now() + Duration::from_secs(5);
        while !self.qemus().is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(self.qemus(), Vec::<i32>::new(), "QEMU outlived lockstep");
        if temp_dirs_removed {
            let left: Vec<String> = std::fs::read_dir(self.path("tmp"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("lockstep-run-"))
                .collect();
            assert!(left.is_empty(), "temporary directories left: {left:?}");
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Live (not zombie) processes whose command line contains `dir`, and whose name is QEMU's.
fn qemu_processes_naming(dir: &Path) -> Vec<i32> {
    let needle = dir.display().to_string();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(close) = stat.rfind(')') else { continue };
        let comm = &stat[stat.find('(').unwrap_or(0) + 1..close];
        let state = stat[close + 2..].chars().next().unwrap_or('?');
        if !comm.starts_with("qemu-system") || state == 'Z' {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            out.push(pid);
        }
    }
    out
}

/// The quick cases' rows are all there with real verdicts.
fn assert_quick_results(rows: &[Value]) {
    for name in ["accept_r0", "reject_r0_unread", "accept_socket_filter", "accept_xdp"] {
        let r = rows.iter().find(|r| r["case"] == name).unwrap_or_else(|| panic!("{name} missing: {rows:?}"));
        assert_eq!(r["outcome"], "ran", "{r}");
        assert!(r["kernel_verdict"].is_string(), "{r}");
    }
}

fn row<'a>(rows: &'a [Value], case: &str) -> &'a Value {
    rows.iter().find(|r| r["case"] == case).unwrap_or_else(|| panic!("{case} missing: {rows:?}"))
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn sigint_mid_run_writes_what_was_collected_and_exits_130() {
    signalled(2, 130);
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn sigterm_mid_run_writes_what_was_collected_and_exits_143() {
    signalled(15, 143);
}

fn signalled(sig: i32, code: i32) {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let junit = tempfile::NamedTempFile::new().unwrap();
    let mut run = Run::start(&["--junit", junit.path().to_str().unwrap()]);
    run.wait_rows(QUICK_CASES, Duration::from_secs(300));
    std::thread::sleep(Duration::from_secs(1)); // the slow case is in the verifier now
    assert_eq!(run.qemus().len(), 1, "one guest running the slow case");
    run.signal(sig);
    assert_eq!(run.wait(Duration::from_secs(30)), Some(code));
    let rows = run.rows();
    assert_quick_results(&rows);
    assert_eq!(row(&rows, "slow_loop")["outcome"], "not_run", "{rows:?}");
    let x = std::fs::read_to_string(junit.path()).unwrap();
    assert_eq!(x.matches("<testcase ").count(), QUICK_CASES + 1, "JUnit from the collected rows:\n{x}");
    assert!(run.stderr().contains("interrupted by"), "{}", run.stderr());
    run.assert_clean(true);
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn sigint_stops_every_parallel_guest() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Two kernels, two jobs: a guest each, both in the slow case when the signal comes.
    let mut run = Run::start(&["--kernel", "debian:7.2"]);
    run.wait_rows(2 * QUICK_CASES, Duration::from_secs(300));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(run.qemus().len(), 2, "one guest per kernel, at the same time");
    run.signal(2);
    assert_eq!(run.wait(Duration::from_secs(30)), Some(130));
    let rows = run.rows();
    assert_eq!(rows.len(), 2 * (QUICK_CASES + 1), "{rows:?}");
    for kernel in ["debian:7.3", "debian:7.2"] {
        let mine: Vec<Value> = rows.iter().filter(|r| r["kernel"] == kernel).cloned().collect();
        assert_quick_results(&mine);
        assert_eq!(row(&mine, "slow_loop")["outcome"], "not_run", "{mine:?}");
    }
    // The file is in the run's order (kernel as given, then case), whichever guest was first.
    let order: Vec<(String, u64)> = rows
        .iter()
        .map(|r| (r["kernel"].as_str().unwrap().to_string(), r["index"].as_u64().unwrap()))
        .collect();
    let mut sorted = order.clone();
    sorted.sort_by_key(|(k, i)| (k != "debian:7.3", *i));
    assert_eq!(order, sorted);
    run.assert_clean(true);
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn sigkill_of_lockstep_takes_qemu_with_it() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = Run::start(&[]);
    run.wait_rows(QUICK_CASES, Duration::from_secs(300));
    assert_eq!(run.qemus().len(), 1);
    run.signal(9);
    assert_eq!(run.wait(Duration::from_secs(10)), None, "killed by the signal");
    assert_quick_results(&run.rows());
    // Nothing can remove the run directory of a SIGKILLed process; QEMU dies by its parent-death
    // signal. The next lockstep removes the directory (its owner is gone).
    run.assert_clean(false);
    let left = || {
        std::fs::read_dir(run.path("tmp"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("lockstep-run-"))
            .count()
    };
    assert_eq!(left(), 1, "the SIGKILLed run's directory");
    let next = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["run", "--kernel", "debian:7.3", "--no-module", "--accel", "tcg", "--timeout", "5"])
        .arg(run.path("a-quick.toml"))
        .env("TMPDIR", run.path("tmp"))
        .output()
        .unwrap();
    // A restored guest may finish the four cases within the 5 s (exit 0); a cold boot runs out
    // of time (exit 5). Either way the run ended by itself and cleaned up.
    assert!(
        matches!(next.status.code(), Some(0) | Some(5)),
        "{:?}: {}",
        next.status.code(),
        String::from_utf8_lossy(&next.stderr)
    );
    assert_eq!(left(), 0, "the next run removed the dead run's directory, and its own");
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn qemu_killed_mid_case_is_not_a_crash() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = Run::start(&["--case-timeout", "15"]);
    run.wait_rows(QUICK_CASES, Duration::from_secs(300));
    std::thread::sleep(Duration::from_secs(1));
    let q = run.qemus();
    assert_eq!(q.len(), 1);
    assert!(Command::new("kill").arg("-9").arg(q[0].to_string()).status().unwrap().success());
    // The case is retried in a fresh guest, where it outlives its 15 s.
    assert_eq!(run.wait(Duration::from_secs(300)), Some(5), "timeout");
    let rows = run.rows();
    assert_quick_results(&rows);
    assert_eq!(rows.len(), QUICK_CASES + 1, "{rows:?}");
    assert_eq!(row(&rows, "slow_loop")["outcome"], "timeout");
    let err = run.stderr();
    assert!(err.contains("QEMU ended (signal: 9"), "the kill is reported as what it was:\n{err}");
    assert!(!err.contains("crashed"), "{err}");
    assert!(err.contains("--case-timeout"), "{err}");
    run.assert_clean(true);
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn a_case_over_its_time_limit_is_a_timeout_naming_the_flag() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = Run::start(&["--case-timeout", "2"]);
    assert_eq!(run.wait(Duration::from_secs(300)), Some(5));
    let rows = run.rows();
    assert_quick_results(&rows);
    let slow = row(&rows, "slow_loop");
    assert_eq!(slow["outcome"], "timeout", "{slow}");
    assert!(slow["note"].as_str().unwrap().contains("--case-timeout"), "{slow}");
    assert!(rows.iter().all(|r| r["outcome"] != "crash"), "{rows:?}");
    assert!(run.stderr().contains("crashes 0"), "{}", run.stderr());
    run.assert_clean(true);
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn the_run_timeout_bounds_the_whole_run() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = Run::start(&["--timeout", "45"]);
    assert_eq!(run.wait(Duration::from_secs(45 + 30)), Some(5));
    let took = run.started.elapsed();
    assert!(took < Duration::from_secs(45 + 15), "--timeout 45 took {took:?}");
    // Every case is accounted for; on a loaded machine the boot alone may take most of the 45 s,
    // so the quick cases may be "not_run" too, but never without the reason.
    let rows = run.rows();
    assert_eq!(rows.len(), QUICK_CASES + 1, "{rows:?}");
    for r in &rows {
        match r["outcome"].as_str().unwrap() {
            "ran" => assert!(r["kernel_verdict"].is_string(), "{r}"),
            "timeout" | "not_run" => assert!(r["note"].as_str().unwrap().contains("--timeout"), "{r}"),
            other => panic!("{other}: {r}"),
        }
    }
    assert_ne!(row(&rows, "slow_loop")["outcome"], "ran");
    run.assert_clean(true);
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn a_boot_panic_is_infrastructure_with_the_console() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = Run::start(&["--append", "rdinit=/nonexistent"]);
    assert_eq!(run.wait(Duration::from_secs(300)), Some(3));
    let rows = run.rows();
    assert_eq!(rows.len(), QUICK_CASES + 1, "every case accounted for: {rows:?}");
    assert!(rows.iter().all(|r| r["outcome"] == "not_run"), "{rows:?}");
    assert!(run.stderr().contains("Kernel panic"), "{}", run.stderr());
    run.assert_clean(true);
}

/// A case debian:7.2 rejects at once (a tracing program with a map holding a
/// `bpf_res_spin_lock`: "tracing progs cannot use bpf_spin_lock yet", before the walk) and
/// debian:7.3 takes over a minute on (the map check passes, then [`SLOW`]'s loop).
const SLOW_ON_7_3: &str = r#"
[[case]]
name = "slow_on_7_3"
prog_type = "raw_tracepoint"
log_level = 2
text = '''
    r2 = vals ll
    r1 = 0
loop:
    r1 += 1
    if r1 < 2000000 goto loop
    r0 = 0
    exit
'''

[[case.map]]
name = "vals"
type = "array"
key_size = 4
max_entries = 1
btf = true
value_size = 8
fields = [{ name = "a", kind = "int", size = 4, offset = 0 }, { name = "lock", kind = "res_spin_lock", offset = 4 }]
"#;

/// Bad input found while a guest runs: three kernels on two jobs, the third a path that holds no
/// kernel. debian:7.3 and debian:7.2 run first; debian:7.2 is done in seconds (it rejects
/// [`SLOW_ON_7_3`] at once), so the third kernel is prepared while debian:7.3's guest is in that
/// case (or, on a loaded machine, still booting), and its bad input stops that guest at once
/// (QEMU killed, the case `not_run` saying why).
/// Exit 2 as with `--jobs 1` (which runs both kernels first), the rows collected are in the JSON
/// file, and no QEMU or run directory is left.
#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn bad_input_found_while_a_guest_runs_stops_it_with_the_serial_exit_code() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bad = ["--kernel", "debian:7.2", "--kernel", "/nonexistent/kernel"];
    let mut serial = Run::start_jobs(&bad, None, None, "1");
    assert_eq!(serial.wait(Duration::from_secs(600)), Some(2), "--jobs 1");
    assert!(serial.stderr().contains("/nonexistent/kernel"), "names the path: {}", serial.stderr());
    assert_eq!(serial.rows().len(), 8, "the quick cases of both kernels before the bad one");
    serial.assert_clean(true);

    // The slow case sits beside the quick ones so it runs last: a file in another temporary
    // directory sorted first or last by that directory's random name.
    let mut run = Run::start_with(&bad, Some(SLOW_ON_7_3), None);
    let code = run.wait(Duration::from_secs(600));
    let rows = run.rows();
    assert_eq!(code, Some(2), "--jobs 2");
    assert!(run.stderr().contains("/nonexistent/kernel"), "names the path: {}", run.stderr());
    run.assert_clean(true);
    let ran = |kernel: &str| rows.iter().filter(|r| r["kernel"] == kernel && r["outcome"] == "ran").count();
    assert_eq!(ran("debian:7.2"), 5, "debian:7.2 ran everything: {rows:?}");
    // debian:7.3's guest is stopped wherever it is: in the slow case, or (a loaded machine, a cold
    // boot) still booting, when debian:7.2 is done first; each of its quick cases ran or says why not.
    for r in rows.iter().filter(|r| r["kernel"] == "debian:7.3" && r["case"] != "slow_on_7_3") {
        match r["outcome"].as_str() {
            Some("ran") => assert!(r["kernel_verdict"].is_string(), "{r}"),
            Some("not_run") => assert!(r["note"].as_str().unwrap_or_default().contains("bad input"), "{r}"),
            _ => panic!("a quick case of debian:7.3 neither ran nor was stopped: {r}"),
        }
    }
    assert_eq!(rows.iter().filter(|r| r["kernel"] == "debian:7.3").count(), 5, "{rows:?}");
    let stopped = rows
        .iter()
        .find(|r| r["case"] == "slow_on_7_3" && r["kernel"] == "debian:7.3")
        .unwrap_or_else(|| panic!("no debian:7.3 row of slow_on_7_3: {rows:?}"));
    assert_eq!(stopped["outcome"], "not_run", "{stopped}");
    let note = stopped["note"].as_str().unwrap_or_default();
    assert!(note.contains("bad input"), "the stopped case says why: {stopped}");
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn an_unwritable_output_path_is_bad_input_before_any_boot() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for (flag, path) in [
        ("--junit", "/nonexistent/dir/r.xml"),
        ("--markdown", "/dev/null/r.md"),
        ("--differences", "/nonexistent/d.txt"),
        ("--console-dir", "/dev/null/consoles"),
    ] {
        let mut run = Run::start(&[flag, path]);
        assert_eq!(run.wait(Duration::from_secs(30)), Some(2), "{flag} {path}");
        let err = run.stderr();
        assert!(err.contains(&format!("{flag} {path}")), "names the path: {err}");
        assert!(run.rows().is_empty());
        assert!(!run.path("tmp").read_dir().unwrap().any(|_| true), "nothing started");
        run.assert_clean(true);
    }
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn a_full_stdout_is_an_error_not_a_panic_and_keeps_the_json() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = Run::start_with(&[], None, Some(Path::new("/dev/full")));
    assert_eq!(run.wait(Duration::from_secs(300)), Some(3));
    let err = run.stderr();
    assert!(err.contains("writing to stdout") && !err.contains("panicked"), "{err}");
    let rows = run.rows();
    assert_eq!(rows.len(), QUICK_CASES);
    assert_quick_results(&rows);
    run.assert_clean(true);
}

/// A case the agent crashes the kernel at (`--append lockstep.test_crash_case=crash_here`: sysrq
/// `c` instead of loading it), then a quick one.
const CRASH: &str = r#"
[[case]]
name = "crash_here"
prog_type = "sched_cls"
text = '''
    r0 = 0
    exit
'''

[[case]]
name = "accept_after_crash"
prog_type = "sched_cls"
text = '''
    r0 = 1
    exit
'''
"#;

/// The agent writes results in batches: the quick cases finish and their results are held back
/// while the crashing case (sent with them) runs, so the guest dies with several cases
/// unanswered, finished ones among them. None is charged for that: a fresh guest runs them again one
/// at a time, the quick cases get their verdicts, only the crashing case is charged (crashed
/// twice when alone in flight: a crash row), and the case after it runs.
#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn a_crash_after_results_held_back_is_charged_to_the_crashing_case_only() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = Run::start_with(&["--append", "lockstep.test_crash_case=crash_here"], Some(CRASH), None);
    assert_eq!(run.wait(Duration::from_secs(600)), Some(4), "a crash");
    let rows = run.rows();
    assert_eq!(rows.len(), QUICK_CASES + 2, "{rows:?}");
    assert_quick_results(&rows);
    let crash = row(&rows, "crash_here");
    assert_eq!(crash["outcome"], "crash", "{crash}");
    assert!(crash["note"].as_str().unwrap_or_default().contains("sysrq"), "{crash}");
    let after = row(&rows, "accept_after_crash");
    assert_eq!(after["outcome"], "ran", "{after}");
    let err = run.stderr();
    // "running cases K..6 again one at a time": quick cases (index < 4) among them had finished,
    // their results held back (the first one may have been written before the others arrived).
    let again = err
        .split("running cases ")
        .nth(1)
        .and_then(|t| t.split("..").next())
        .and_then(|k| k.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no cases run again one at a time: {err}"));
    assert!(again < QUICK_CASES && err.contains("again one at a time"), "held-back results: {err}");
    // Charged only when alone in flight: retried once, then a crash; no quick case was retried.
    assert_eq!(err.matches("retrying it in a fresh one").count(), 1, "{err}");
    assert!(err.contains("case crash_here ran; retrying"), "{err}");
    run.assert_clean(true);
}

/// [`CRASH`] among enough quick cases for `--jobs 2` to run them in one guest with two vCPUs,
/// joined by the second job from the start: the crashing case runs beside another on the other
/// vCPU, so the guest dies with several unanswered and no `Busy` (the agent cannot name one
/// case). Again only the crashing case is charged: the cases in flight run again one at a time.
#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn a_crash_in_a_guest_running_two_cases_at_once_is_charged_to_the_crashing_case_only() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const PAD: usize = 24;
    let pad = |from: usize| -> String {
        (from..from + PAD / 2)
            .map(|i| format!("[[case]]\nname = \"pad_{i:02}\"\nprog_type = \"sched_cls\"\ntext = '''\n    r0 = 0\n    exit\n'''\n\n"))
            .collect()
    };
    let cases = format!("{}{CRASH}\n{}", pad(0), pad(PAD / 2));
    // Warnings stay on: the batch says "again one at a time" as one.
    std::env::set_var("RUST_LOG", "warn,lockstep::run=debug");
    let mut run = Run::start_with(&["--append", "lockstep.test_crash_case=crash_here"], Some(&cases), None);
    std::env::remove_var("RUST_LOG");
    assert_eq!(run.wait(Duration::from_secs(600)), Some(4), "a crash: {}", run.stderr());
    let rows = run.rows();
    assert_eq!(rows.len(), QUICK_CASES + PAD + 2, "{rows:?}");
    assert_quick_results(&rows);
    for r in rows.iter().filter(|r| r["case"] != "crash_here") {
        assert_eq!(r["outcome"], "ran", "{r}");
    }
    let crash = row(&rows, "crash_here");
    assert_eq!(crash["outcome"], "crash", "{crash}");
    let err = run.stderr();
    assert!(err.contains("job joins the guest"), "the second job joined the guest: {err}");
    assert!(err.contains("again one at a time"), "{err}");
    assert_eq!(err.matches("retrying it in a fresh one").count(), 1, "{err}");
    run.assert_clean(true);
}
