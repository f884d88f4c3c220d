//! The guest side of the transport, for the static `/init` agent: mounts, the control port, and
//! power-off. Built without the `host` feature too (`default-features = false`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lockstep_core::proto::{GuestMsg, CONSOLE_DONE, CONTROL_PORT_NAME, GUEST_CMDLINE_MARKER};

/// Why this process is not the agent of a lockstep guest (it then must touch nothing).
#[derive(Debug, thiserror::Error)]
pub enum NotAGuest {
    /// Not pid 1: run by hand on a host (or anywhere but as a guest's `/init`).
    #[error(
        "refusing to run: the agent is the /init of a lockstep guest (pid 1), this is pid {0}; \
         nothing was mounted or powered off"
    )]
    NotPid1(u32),
    /// pid 1, but of a kernel booted without the marker (a container, another machine's init).
    #[error(
        "refusing to run: pid 1, but the kernel command line has no `{GUEST_CMDLINE_MARKER}` \
         (not a lockstep guest); nothing was mounted or powered off"
    )]
    NoMarker,
    /// pid 1, and `/proc/cmdline` could not be read even after mounting proc.
    #[error("refusing to run: cannot read /proc/cmdline: {0}")]
    Unreadable(io::Error),
}

/// Whether the kernel command line `cmdline` carries [`GUEST_CMDLINE_MARKER`] (as a whole word).
pub fn has_guest_marker(cmdline: &str) -> bool {
    has_param(cmdline, GUEST_CMDLINE_MARKER)
}

/// Whether the kernel command line `cmdline` carries `param` as a whole word (`name=value`
/// written out, as the agent's switches are).
pub fn has_param(cmdline: &str, param: &str) -> bool {
    cmdline.split_whitespace().any(|w| w == param)
}

/// Checks, before anything is touched, that this process is pid 1 of a kernel booted with
/// [`GUEST_CMDLINE_MARKER`]. `/proc` is mounted (if `/proc/cmdline` is missing) only once pid 1
/// is established.
pub fn check_lockstep_guest() -> Result<(), NotAGuest> {
    let pid = std::process::id();
    if pid != 1 {
        return Err(NotAGuest::NotPid1(pid));
    }
    let cmdline = match fs::read_to_string("/proc/cmdline") {
        Ok(s) => s,
        Err(_) => {
            use nix::mount::{mount, MsFlags};
            let _ = fs::create_dir_all("/proc");
            let _ = mount(Some("proc"), "/proc", Some("proc"), MsFlags::empty(), None::<&str>);
            fs::read_to_string("/proc/cmdline").map_err(NotAGuest::Unreadable)?
        }
    };
    if has_guest_marker(&cmdline) {
        Ok(())
    } else {
        Err(NotAGuest::NoMarker)
    }
}

/// Mounts proc, sysfs, devtmpfs and (if the kernel has it) the bpf filesystem. Already-mounted
/// filesystems are fine.
pub fn mount_basics() -> io::Result<()> {
    use nix::mount::{mount, MsFlags};
    for (src, target, fstype, required) in [
        ("proc", "/proc", "proc", true),
        ("sysfs", "/sys", "sysfs", true),
        ("devtmpfs", "/dev", "devtmpfs", false),
        ("bpf", "/sys/fs/bpf", "bpf", false),
    ] {
        let _ = fs::create_dir_all(target);
        match mount(Some(src), target, Some(fstype), MsFlags::empty(), None::<&str>) {
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            Err(e) if required => return Err(io::Error::other(format!("mount {target}: {e}"))),
            Err(_) => {}
        }
    }
    Ok(())
}

/// A virtio port found in sysfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Device name, e.g. `vport0p1` (the node is `/dev/<name>`).
    pub device: String,
    pub major: u32,
    pub minor: u32,
}

/// Finds the port called `name` under `<sys>/class/virtio-ports/*/name`.
pub fn find_port(sys: &Path, name: &str) -> Option<PortInfo> {
    let dir = fs::read_dir(sys.join("class/virtio-ports")).ok()?;
    for e in dir.flatten() {
        let p = e.path();
        let Ok(n) = fs::read_to_string(p.join("name")) else { continue };
        if n.trim() != name {
            continue;
        }
        let dev = fs::read_to_string(p.join("dev")).ok()?;
        let (maj, min) = dev.trim().split_once(':')?;
        return Some(PortInfo {
            device: e.file_name().to_string_lossy().into_owned(),
            major: maj.parse().ok()?,
            minor: min.parse().ok()?,
        });
    }
    None
}

/// Opens the control port ([`CONTROL_PORT_NAME`]) for reading and writing, waiting up to 10 s
/// for it to appear; creates `/dev/<vportNpM>` with mknod when devtmpfs did not.
pub fn open_control_port() -> io::Result<(BufReader<File>, File)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let info = loop {
        if let Some(i) = find_port(Path::new("/sys"), CONTROL_PORT_NAME) {
            break i;
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no virtio port named {CONTROL_PORT_NAME}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let node = PathBuf::from("/dev").join(&info.device);
    if !node.exists() {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        mknod(
            &node,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o600),
            makedev(info.major.into(), info.minor.into()),
        )
        .map_err(|e| io::Error::other(format!("mknod {}: {e}", node.display())))?;
    }
    let f = OpenOptions::new().read(true).write(true).open(&node)?;
    let w = f.try_clone()?;
    // Large enough for several pipelined cases per read.
    Ok((BufReader::with_capacity(1 << 16, f), w))
}

/// Writes one message as a line ([`crate::stream::write_guest`]) and flushes it.
pub fn send(w: &mut File, msg: &GuestMsg) -> io::Result<()> {
    w.write_all(&crate::stream::encode_guest(msg))?;
    w.flush()
}

/// Grows this process's fd table so that fds below `n` need no further growth: an fd is
/// duplicated to `n - 1` and closed again (the kernel never shrinks a table).
///
/// Why: the kernel grows a process's fd table when an fd past its size is opened
/// (`expand_fdtable()`, 64 -> 128 -> 256 ...), and while the table is shared by several
/// threads it waits for an RCU grace period first, with every other thread that opens an fd
/// in the meantime waiting too. On a guest with one CPU that wait is nothing; with two it is
/// several ticks (14-18 ms under TCG), the whole guest idle (docs/speed.md, session 19). Done
/// before the agent starts its threads, the growth costs no grace period either.
pub fn grow_fd_table(n: usize) -> io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let Some(last) = n.checked_sub(1) else { return Ok(()) };
    let last = i32::try_from(last).map_err(|_| io::Error::other(format!("{n} fds: past any fd table")))?;
    let any = File::open("/")?;
    let dup = nix::fcntl::fcntl(any.as_raw_fd(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(last))
        .map_err(io::Error::from)?;
    // SAFETY: `dup` is a new fd of this process, owned by nothing else.
    drop(unsafe { OwnedFd::from_raw_fd(dup) });
    Ok(())
}

/// Moves the guest kernel's housekeeping to CPU 0, on a guest with several vCPUs whose others
/// stay idle until the host lets the agent's workers onto them: the unbound workqueues'
/// cpumask, and every process that may be moved (kernel threads such as `rcu_preempt` or
/// `kdamond`; per-CPU ones refuse, and the agent, pid 1, places its own threads). Left where
/// the kernel put them, they wake an idle vCPU hundreds of times a second (and the scheduler's
/// idle balancing kicks it), and under TCG that vCPU's thread shares a host core with the one
/// running cases: a fifth of that core before the join (docs/speed.md, session 19). Returns
/// how many processes were moved. Does nothing (0) but as pid 1: on a host it would move the
/// host's own threads.
pub fn housekeeping_to_cpu0() -> usize {
    if std::process::id() != 1 {
        return 0;
    }
    // Best effort: a kernel without the file keeps its unbound work where it was.
    let _ = fs::write("/sys/devices/virtual/workqueue/cpumask", "1");
    let Ok(dir) = fs::read_dir("/proc") else { return 0 };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != 1 && crate::affinity::pin_thread(pid, 0))
        .count()
}

/// The real-time priority (`SCHED_FIFO`) of the agent's case loop (with several vCPUs, of each
/// worker): above every task of the fair class, so the kernel's own work that a case leaves
/// behind (the kworker freeing a rejected program, RCU's threads) waits until the loop blocks
/// (for the host, or in the kernel) or the fair class's reserved share comes round
/// (`sched_rt_runtime_us` / the fair server: 50 ms a second), and is then done in bulk, instead
/// of a context switch to it and back after nearly every case: under TCG, 1.4 ms -> 1.04-1.2 ms
/// a case (docs/speed.md, session 22).
pub const CASE_LOOP_PRIORITY: i32 = 1;

/// The priority of the agent's threads that must preempt the case loop when they wake (the
/// outbox's watchdog, which reports a long case while it runs; with several vCPUs, the reader
/// that hands cases to the workers).
pub const ABOVE_CASE_LOOP_PRIORITY: i32 = CASE_LOOP_PRIORITY + 1;

/// Makes thread `tid` (0: the calling thread) `SCHED_FIFO` at `priority`. Only as pid 1 of a
/// guest: anywhere else it refuses (a real-time thread on a host could take a core from
/// everything else there).
pub fn run_fifo(tid: i32, priority: i32) -> io::Result<()> {
    if std::process::id() != 1 {
        return Err(io::Error::other("real-time scheduling is only for the guest's agent (pid 1)"));
    }
    let param = nix::libc::sched_param { sched_priority: priority };
    // SAFETY: a valid sched_param; sched_setscheduler(2) takes a thread id.
    if unsafe { nix::libc::sched_setscheduler(tid, nix::libc::SCHED_FIFO, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> io::Result<String> {
    Ok(fs::read_to_string("/proc/sys/kernel/osrelease")?.trim().to_string())
}

/// Marks the end of what the guest has printed, before `Bye`: waits until the console has sent
/// the agent's own output (stderr, e.g. the profile's report), then writes [`CONSOLE_DONE`] to
/// the kernel log, which the console prints after every kernel line before it. The host ends
/// QEMU once it has read that line and `Bye` (a console that never prints it, `loglevel=0` say,
/// leaves the host waiting for the power-off as before).
pub fn mark_console_done() {
    use std::os::fd::AsFd;
    let _ = nix::sys::termios::tcdrain(io::stderr().as_fd());
    if let Ok(mut kmsg) = OpenOptions::new().write(true).open("/dev/kmsg") {
        // Level 4 (warning): printed under the guest's `loglevel=5`.
        let _ = kmsg.write_all(format!("<4>{CONSOLE_DONE}\n").as_bytes());
    }
}

/// Syncs and powers the machine off (QEMU exits).
pub fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // Not reached as pid 1; as any other process, exiting is the best we can do.
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_time_scheduling_is_refused_outside_the_guest() {
        // The test runs on a host (not as pid 1): the thread stays in the fair class.
        assert!(run_fifo(0, CASE_LOOP_PRIORITY).is_err());
        // SAFETY: sched_getscheduler(2) of the calling thread.
        assert_eq!(unsafe { nix::libc::sched_getscheduler(0) }, nix::libc::SCHED_OTHER);
    }

    #[test]
    fn housekeeping_is_left_alone_outside_a_guest() {
        let mask = || nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
        let before = mask();
        assert_eq!(housekeeping_to_cpu0(), 0);
        assert_eq!(mask(), before);
    }

    #[test]
    fn a_grown_fd_table_leaves_no_fd_open() {
        // The table's size (other tests of this process open fds meanwhile: only fds this test
        // owns are looked at).
        let fd_size = || {
            let status = fs::read_to_string("/proc/self/status").unwrap();
            let line = status.lines().find_map(|l| l.strip_prefix("FDSize:")).unwrap().trim().to_string();
            line.parse::<usize>().unwrap()
        };
        grow_fd_table(300).unwrap();
        assert!(fd_size() >= 300, "FDSize {} after growing to 300", fd_size());
        // The fd it used is closed again.
        let open = |fd: i32| nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_ok();
        assert!(!open(299));
        // Past the process's fd limit, or any fd number, it fails instead of doing nothing.
        assert!(grow_fd_table(i32::MAX as usize).is_err());
        assert!(grow_fd_table(usize::MAX).is_err());
        assert!(grow_fd_table(0).is_ok());
    }

    #[test]
    fn the_marker_is_a_whole_word_of_the_command_line() {
        assert!(has_guest_marker("console=ttyS0 rdinit=/init lockstep.guest=1 init=/x\n"));
        assert!(!has_guest_marker("console=ttyS0 quiet rdinit=/init"));
        assert!(!has_guest_marker("lockstep.guest=10 xlockstep.guest=1 lockstep.guest"));
        assert!(!has_guest_marker(""));
    }

    #[test]
    fn a_test_process_is_not_a_guest() {
        // The test runner is never pid 1: refused before /proc/cmdline is even read.
        assert!(matches!(check_lockstep_guest(), Err(NotAGuest::NotPid1(p)) if p != 1));
    }

    #[test]
    fn finds_the_named_port() {
        let t = tempfile::tempdir().unwrap();
        for (dev, name, nums) in [("vport0p0", "other", "250:0"), ("vport1p1", "lockstep.0", "250:3")] {
            let d = t.path().join("class/virtio-ports").join(dev);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("name"), format!("{name}\n")).unwrap();
            fs::write(d.join("dev"), format!("{nums}\n")).unwrap();
        }
        let p = find_port(t.path(), "lockstep.0").unwrap();
        assert_eq!(p, PortInfo { device: "vport1p1".into(), major: 250, minor: 3 });
        assert!(find_port(t.path(), "nope").is_none());
        assert!(find_port(&t.path().join("missing"), "lockstep.0").is_none());
    }
}
