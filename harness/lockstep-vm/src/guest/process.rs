//! The QEMU process: in its own process group (a terminal's Ctrl-C reaches lockstep only, which
//! stops the guest in order), with a parent-death signal (it dies with lockstep even when lockstep
//! is SIGKILLed), and killed as a whole group.
//!
//! The parent-death signal follows the *thread* that spawned QEMU: guests are started from the
//! thread that runs them (lockstep's main thread), never from a short-lived helper thread.
//!
//! QEMU runs without transparent huge pages (`PR_SET_THP_DISABLE`). QEMU advises its guest RAM
//! `MADV_HUGEPAGE`, so with THP every page a restore writes (the snapshot's ~130 MiB, spread over
//! the guest's 512 MiB) faults in and zeroes a whole 2 MiB page first: in a `--jobs 2` run on
//! 3 kernels that zeroing (`clear_page_erms` under `do_huge_pmd_anonymous_page`) was a third of
//! all CPU time (`perf record -a`). With 4 KiB pages only the pages written are zeroed; see
//! docs/speed.md, "Session 12".

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Spawns `cmd` (QEMU) in a new process group with `PR_SET_PDEATHSIG = SIGKILL` and transparent
/// huge pages off (`PR_SET_THP_DISABLE`, kept across exec).
pub fn spawn_guarded(cmd: &mut Command) -> io::Result<Child> {
    let parent = std::process::id() as i32;
    cmd.process_group(0);
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system
    // calls (prctl, getppid); it does not allocate.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
            nix::sys::prctl::set_thp_disable(true).map_err(|e| io::Error::from_raw_os_error(e as i32))?;
            // The parent may have died before prctl: then nobody would kill us.
            if nix::unistd::getppid().as_raw() != parent {
                return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
    cmd.spawn()
}

/// Kills the process group of `child` (spawned by [`spawn_guarded`]) and reaps `child`.
pub fn kill_group(child: &mut Child) {
    signal_group(child);
    let _ = child.wait();
}

/// Sends `child`'s process group SIGKILL (if it still runs) and leaves the reap to the caller.
pub fn signal_group(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
        let _ = child.kill();
    }
}

/// The CPU time (user + system, all its threads) process `pid` has used, from
/// `/proc/<pid>/stat`; also of a process that ended and is not reaped yet. None when unreadable.
pub fn cpu_secs(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the `(comm)` field: state is field 3, utime and stime fields 14 and 15.
    let mut rest = stat[stat.rfind(')')? + 2..].split(' ');
    let ticks: u64 = rest.nth(11)?.parse::<u64>().ok()? + rest.next()?.parse::<u64>().ok()?;
    let per_sec = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok()??;
    Some(ticks as f64 / per_sec as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_secs_counts_a_busy_childs_time_until_it_is_reaped() {
        let mut child = Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        use nix::sys::wait::{waitid, Id, WaitPidFlag};
        waitid(Id::Pid(Pid::from_raw(pid)), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT).unwrap();
        let secs = cpu_secs(pid).expect("an unreaped child still has its stat");
        assert!(secs > 0.0, "a loop of 200k shell steps used no CPU: {secs}");
        child.wait().unwrap();
        assert_eq!(cpu_secs(pid), None);
        assert!(cpu_secs(std::process::id() as i32).is_some());
    }

    fn pgid_of(pid: u32) -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // After the `(comm)` field: state, ppid, pgrp.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        rest.split(' ').nth(2).unwrap().parse().unwrap()
    }

    #[test]
    fn a_guarded_child_leads_its_own_group_and_is_killed_with_it() {
        let mut c = spawn_guarded(Command::new("sleep").arg("30")).unwrap();
        assert_eq!(pgid_of(c.id()), c.id() as i32, "own process group");
        kill_group(&mut c);
        let st = c.try_wait().unwrap().expect("reaped");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    }

    #[test]
    fn a_signalled_group_ends_and_is_left_to_be_reaped() {
        let mut c = spawn_guarded(Command::new("sleep").arg("30")).unwrap();
        let pid = c.id() as i32;
        signal_group(&mut c);
        use nix::sys::wait::{waitid, Id, WaitPidFlag};
        waitid(Id::Pid(Pid::from_raw(pid)), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT).unwrap();
        // Ended, not reaped: what it used is still readable (the exit watcher logs it).
        assert!(cpu_secs(pid).is_some());
        let st = c.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
        assert_eq!(cpu_secs(pid), None);
    }

    #[test]
    fn a_guarded_child_runs_without_transparent_huge_pages() {
        let mut c = spawn_guarded(Command::new("sleep").arg("30")).unwrap();
        let status = std::fs::read_to_string(format!("/proc/{}/status", c.id())).unwrap();
        kill_group(&mut c);
        // `THP_enabled` is in /proc/PID/status since Linux 5.0: 0 after PR_SET_THP_DISABLE.
        let line = status.lines().find(|l| l.starts_with("THP_enabled:")).expect("THP_enabled in status");
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }

    #[test]
    fn a_guarded_child_dies_when_its_parent_thread_does() {
        // The parent-death signal fires when the spawning thread ends, as it would when lockstep dies.
        let mut c =
            std::thread::spawn(|| spawn_guarded(Command::new("sleep").arg("30")).unwrap()).join().unwrap();
        let st = c.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9), "{st:?}");
    }
}
