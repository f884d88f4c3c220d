//! One guest: QEMU with an initramfs, the agent's `Hello`, cases one at a time, `Shutdown`.
//!
//! Three reader threads (console on QEMU's stdout, QEMU's stderr, the control socket) feed one
//! channel; [`GuestRun`] waits on it with deadlines, scans the console ([`crate::console`]) and
//! turns every way a guest can end into a [`GuestOutcome`].

pub mod batch;
pub mod kvm;
pub mod pipeline;
pub mod process;
pub mod snapshot;
pub mod workers;

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use lockstep_core::case::Case;
use lockstep_core::proto::{
    GuestMsg, HostMsg, KernelResult, KfuncListing, ModuleStatus, CONSOLE_DONE, PROTOCOL_VERSION,
};
use serde::{Deserialize, Serialize};

use crate::console::{self, ConsoleScanner};
use crate::qemu::{Accel, QemuArgs};
use crate::stream::{self, LineBuffer};

/// Time limits of one guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// From QEMU start to the agent's `Hello`.
    pub boot: Duration,
    /// From `Run` to its `Result`.
    pub case: Duration,
    /// From `Shutdown` to QEMU's exit.
    pub shutdown: Duration,
    /// The whole life of the guest.
    pub overall: Duration,
    /// After a panic/oops/BUG line, how long QEMU may take to exit by itself.
    pub after_fatal: Duration,
    /// Scale `case` per case with [`case_limit`] (the default); false: `case` as given.
    pub scale_case: bool,
    /// The end of the whole run, shared by every guest of it (`--timeout`): no guest boots or
    /// waits past it.
    pub run_deadline: Option<Instant>,
}

/// The excerpt of a guest that printed nothing.
const SILENT_CONSOLE: &str =
    "nothing on the console and nothing on QEMU's stderr (the kernel stopped before \
its console came up, or printed nothing at loglevel 5: `--append loglevel=8 earlyprintk=serial` shows more)";

/// Which time limit ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// [`Timeouts::boot`].
    Boot,
    /// The case's limit ([`Timeouts::case`], scaled by [`case_limit`] unless fixed).
    Case,
    /// [`Timeouts::shutdown`] (or [`Timeouts::after_fatal`] once the control port broke).
    Shutdown,
    /// [`Timeouts::overall`]: the life of one guest.
    Guest,
    /// [`Timeouts::run_deadline`]: the whole run.
    Run,
}

/// How much longer than at log level 1 a case may take at level 2 (every state is printed).
const LOG_LEVEL_2_FACTOR: u32 = 4;
/// Extra time per program instruction when the limit is scaled.
const PER_INSN: Duration = Duration::from_millis(20);

/// The time limit of one case: `base` as given when `scale` is false, else `base` times
/// [`LOG_LEVEL_2_FACTOR`] at verifier log level 2 (the case's `log_level`, or `--log`, which asks
/// for the full log), plus [`PER_INSN`] per instruction of the program.
pub fn case_limit(base: Duration, scale: bool, case: &Case, want_log: bool) -> Duration {
    if !scale {
        return base;
    }
    let level2 = case.log_level >= 2 || want_log;
    let factor = if level2 { LOG_LEVEL_2_FACTOR } else { 1 };
    base * factor + PER_INSN * case.program.insns.len() as u32
}

impl Default for Timeouts {
    /// Generous for TCG (a Debian kernel boots in 5-12 s there).
    fn default() -> Self {
        Timeouts {
            boot: Duration::from_secs(90),
            case: Duration::from_secs(60),
            shutdown: Duration::from_secs(20),
            overall: Duration::from_secs(3600),
            after_fatal: Duration::from_secs(5),
            scale_case: false,
            run_deadline: None,
        }
    }
}

/// How to start a guest.
#[derive(Clone, Debug)]
pub struct GuestConfig {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    pub accel: Accel,
    pub memory_mib: u32,
    /// Virtual CPUs; the agent runs a worker on each.
    pub vcpus: u32,
    /// Extra kernel parameters (after [`crate::qemu::BASE_CMDLINE`]).
    pub extra_cmdline: Vec<String>,
    pub timeouts: Timeouts,
    /// The console (and QEMU's stderr, prefixed `[qemu] `) is appended here.
    pub console_log: Option<PathBuf>,
    /// Directory for the control socket.
    pub run_dir: PathBuf,
    /// The QEMU binary.
    pub qemu: String,
    /// Restore guests from (and save them as) snapshots in this directory
    /// ([`snapshot::start_guest`]); None: always boot.
    pub snapshot_dir: Option<PathBuf>,
    /// A QMP monitor socket for QEMU (set by [`snapshot`]).
    pub qmp_socket: Option<PathBuf>,
    /// Guest RAM in a file (set by [`snapshot`]).
    pub ram_file: Option<crate::qemu::RamFile>,
    /// Wait for an incoming migration instead of booting (set by [`snapshot`]).
    pub incoming: bool,
}

/// Guest memory for an initramfs of `initramfs_bytes`: 512 MiB, or more when the archive is large.
/// The kernel holds the archive and its unpacked files at once while it unpacks it (plus itself),
/// and a short write there ("Initramfs unpacking failed: write error") leaves the last files - the
/// modules - truncated (`finit_module` then says ENOEXEC): a debug build's agent is ~155 MB.
pub fn memory_for_initramfs(initramfs_bytes: u64) -> u32 {
    let mib = initramfs_bytes.div_ceil(1 << 20);
    u32::try_from(384 + 2 * mib).unwrap_or(u32::MAX).max(512)
}

impl GuestConfig {
    /// Defaults: TCG, 512 MiB, default timeouts, no console log, sockets in the temp dir.
    pub fn new(kernel: impl Into<PathBuf>, initramfs: impl Into<PathBuf>) -> Self {
        GuestConfig {
            kernel: kernel.into(),
            initramfs: initramfs.into(),
            accel: Accel::Tcg,
            memory_mib: 512,
            vcpus: 1,
            extra_cmdline: Vec::new(),
            timeouts: Timeouts::default(),
            console_log: None,
            run_dir: std::env::temp_dir(),
            qemu: "qemu-system-x86_64".into(),
            snapshot_dir: None,
            qmp_socket: None,
            ram_file: None,
            incoming: false,
        }
    }
}

/// Where a guest was when it stopped answering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Stage {
    /// Before `Hello`.
    Boot,
    /// Running the case with this id.
    Case { id: u64 },
    /// Answering the request (`ListKfuncs`) with this id.
    Request { id: u64 },
    /// After `Shutdown`.
    Shutdown,
}

/// How a guest ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum GuestOutcome {
    /// Powered off after `Shutdown`.
    Completed,
    /// The kernel panicked, oopsed or hit a BUG after the agent said `Hello` (console evidence).
    Panic { excerpt: String },
    /// QEMU exited (or was killed from outside) after `Hello` without a panic, oops or BUG on
    /// the console: not evidence of a kernel crash.
    Exited { excerpt: String },
    /// No answer before `limit` ran out (`after` waiting at `stage`); QEMU was killed. Not
    /// evidence of a kernel crash either: a slow verification looks the same.
    /// `excerpt`: the console's last lines (or a note that it stayed silent) and QEMU's stderr.
    Timeout { stage: Stage, limit: Limit, after: Duration, excerpt: String },
    /// lockstep received `signal` (SIGINT, SIGTERM); QEMU was killed.
    Interrupted { signal: i32 },
    /// lockstep stopped the run itself ([`crate::interrupt::request_stop`]: bad input found
    /// while this guest ran); QEMU was killed.
    Cancelled,
    /// KVM could not run the guest ("KVM internal error"); QEMU was killed.
    KvmFailure { excerpt: String },
    /// The guest died before `Hello` (bad kernel, bad init, boot-time oops).
    BootFailure { excerpt: String },
}

/// Errors that are not guest behaviour.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("{what}: {err}")]
    Io { what: String, err: std::io::Error },
    #[error("QEMU did not connect to the control socket: {0}")]
    NoControl(String),
    /// A signal or the run's deadline stopped the start ([`GuestOutcome::stops_the_run`]).
    #[error("stopped while QEMU started: {0:?}")]
    Stopped(GuestOutcome),
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GuestError {
    let what = what.into();
    move |err| GuestError::Io { what, err }
}

/// The agent's greeting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// `uname -r` in the guest.
    pub release: String,
    pub module: ModuleStatus,
    /// The other modules shipped (`bpf_testmod`), in load order.
    pub extra_modules: Vec<ModuleStatus>,
    /// From the (first) QEMU start to `Hello`.
    pub boot_time: Duration,
    /// Restored from a snapshot saved earlier (false when this start booted, even if it then
    /// saved the guest and restored it).
    pub restored: bool,
}

/// One case's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseReply {
    pub result: KernelResult,
    /// `WARNING:` console lines printed while the case ran.
    pub warnings: Vec<String>,
    pub elapsed: Duration,
}

enum Event {
    Console(String),
    Stderr(String),
    Msg(GuestMsg),
    BadLine(String),
    ControlClosed,
    ConsoleClosed,
    /// A job joined the guest ([`workers::WorkerCpus::add`]): let its vCPU in now, not after the
    /// batch of results being waited for.
    Nudge,
    /// QEMU has ended (not reaped yet: [`spawn_exit_watcher`]).
    Exited,
}

/// A running guest. Dropping it kills QEMU.
pub struct GuestRun {
    child: Child,
    events: Receiver<Event>,
    control: UnixStream,
    scanner: ConsoleScanner,
    console_log: Option<File>,
    stderr_tail: Vec<String>,
    started: Instant,
    overall: Instant,
    timeouts: Timeouts,
    fatal_since: Option<Instant>,
    hello_seen: bool,
    outcome: Option<GuestOutcome>,
    socket: PathBuf,
    next_id: u64,
    /// The control socket reached its end (QEMU closed it).
    control_closed: bool,
    /// The console reached its end.
    console_closed: bool,
    /// The agent's [`GuestMsg::Bye`] came, and its [`CONSOLE_DONE`] line on the console: the
    /// guest has nothing more to say ([`GuestRun::shutdown`]).
    bye_seen: bool,
    console_done: bool,
    /// The case the agent last said it was running ([`GuestMsg::Busy`]).
    busy: Option<u64>,
    /// The vCPUs after the first that may run cases ([`workers`]), and how many of them the
    /// agent was told of.
    workers: Option<workers::WorkerCpus>,
    workers_applied: usize,
    /// Into the guest's own event channel ([`Event::Nudge`]).
    nudge: Sender<Event>,
}

impl GuestRun {
    /// Starts QEMU; returns once QEMU has connected the control port (the kernel is booting).
    pub fn start(cfg: &GuestConfig) -> Result<GuestRun, GuestError> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = cfg.run_dir.join(format!("lockstep-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket).map_err(io_err(format!("bind {}", socket.display())))?;
        let mut q = QemuArgs::new(&cfg.kernel, &cfg.initramfs, &socket);
        q.binary = cfg.qemu.clone();
        q.accel = cfg.accel;
        q.memory_mib = cfg.memory_mib;
        q.vcpus = cfg.vcpus;
        q.extra_cmdline = cfg.extra_cmdline.clone();
        q.qmp_socket = cfg.qmp_socket.clone();
        q.ram_file = cfg.ram_file.clone();
        q.incoming = cfg.incoming;
        let console_log = match &cfg.console_log {
            Some(p) => Some(
                File::options()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(io_err(format!("open {}", p.display())))?,
            ),
            None => None,
        };
        tracing::debug!(args = ?q.to_args(), "starting QEMU");
        let started = Instant::now();
        let mut child = process::spawn_guarded(
            Command::new(&q.binary)
                .args(q.to_args())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .map_err(io_err(format!("spawn {}", q.binary)))?;
        let (tx, rx) = channel();
        spawn_lines(
            child.stdout.take().expect("piped"),
            tx.clone(),
            Event::Console,
            Some(Event::ConsoleClosed),
        );
        spawn_lines(child.stderr.take().expect("piped"), tx.clone(), Event::Stderr, None);
        spawn_exit_watcher(child.id(), tx.clone());
        let control = match accept(&listener, &mut child, Duration::from_secs(15), cfg.timeouts.run_deadline)
        {
            Ok(s) => s,
            Err(Accept::Stopped(o)) => {
                process::kill_group(&mut child);
                let _ = std::fs::remove_file(&socket);
                return Err(GuestError::Stopped(o));
            }
            Err(Accept::Failed(e)) => {
                process::kill_group(&mut child);
                let _ = std::fs::remove_file(&socket);
                let mut err = String::new();
                while let Ok(ev) = rx.try_recv() {
                    if let Event::Stderr(l) = ev {
                        err.push_str(&l);
                        err.push('\n');
                    }
                }
                return Err(GuestError::NoControl(format!("{e}\n{err}")));
            }
        };
        let reader = control.try_clone().map_err(io_err("clone control socket"))?;
        let nudge = tx.clone();
        spawn_control_reader(reader, tx);
        Ok(GuestRun {
            child,
            events: rx,
            control,
            scanner: ConsoleScanner::new(),
            console_log,
            stderr_tail: Vec::new(),
            started,
            overall: started + cfg.timeouts.overall,
            timeouts: cfg.timeouts,
            fatal_since: None,
            hello_seen: false,
            outcome: None,
            socket,
            next_id: 1,
            control_closed: false,
            console_closed: false,
            bye_seen: false,
            console_done: false,
            busy: None,
            workers: None,
            workers_applied: 0,
            nudge,
        })
    }

    /// How the guest ended, once it has.
    pub fn outcome(&self) -> Option<&GuestOutcome> {
        self.outcome.as_ref()
    }

    /// Waits for the agent's `Hello`.
    pub fn wait_hello(&mut self) -> Result<Hello, GuestOutcome> {
        let deadline = self.started + self.timeouts.boot;
        let (release, module, extra_modules, protocol) =
            self.wait_for(deadline, Limit::Boot, Stage::Boot, |m| match m {
                GuestMsg::Hello { release, module, extra_modules, protocol } => {
                    Some((release, module, extra_modules, protocol))
                }
                _ => None,
            })?;
        if protocol != PROTOCOL_VERSION {
            // Never met in practice (the agent is this binary, and snapshots are keyed by it).
            self.kill();
            let excerpt = format!(
                "the agent speaks protocol {protocol}, this lockstep {PROTOCOL_VERSION} \
                 (an initramfs or snapshot of another lockstep build)"
            );
            return Err(self.set(GuestOutcome::BootFailure { excerpt }));
        }
        self.hello_seen = true;
        Ok(Hello { release, module, extra_modules, boot_time: self.started.elapsed(), restored: false })
    }

    /// Runs one case and waits for its result (ids are assigned here).
    pub fn run_case(&mut self, case: &Case, want_log: bool) -> Result<CaseReply, GuestOutcome> {
        let id = self.next_id;
        self.next_id += 1;
        let t = Instant::now();
        self.scanner.take_warnings();
        self.send(&HostMsg::Run { id, case: Box::new(case.clone()), want_log }, Stage::Case { id })?;
        let limit = case_limit(self.timeouts.case, self.timeouts.scale_case, case, want_log);
        let result = self.wait_for(t + limit, Limit::Case, Stage::Case { id }, |m| match m {
            GuestMsg::Result { id: rid, result } if rid == id => Some(result),
            _ => None,
        })?;
        Ok(CaseReply { result, warnings: self.scanner.take_warnings(), elapsed: t.elapsed() })
    }

    /// Asks the agent for the running kernel's kfuncs (`ListKfuncs`), within the case time limit.
    pub fn list_kfuncs(&mut self) -> Result<KfuncListing, GuestOutcome> {
        let id = self.next_id;
        self.next_id += 1;
        let t = Instant::now();
        self.send(&HostMsg::ListKfuncs { id }, Stage::Request { id })?;
        self.wait_for(t + self.timeouts.case, Limit::Case, Stage::Request { id }, |m| match m {
            GuestMsg::Kfuncs { id: rid, listing } if rid == id => Some(listing),
            _ => None,
        })
    }

    /// Asks the agent to power off and waits for QEMU to exit; or, once the agent's `Bye` and
    /// its [`CONSOLE_DONE`] line on the console have both come (the guest has nothing more to
    /// say), ends QEMU then rather than after the guest's power-off, ~25 ms later. The guest
    /// was restored from a snapshot or booted from an initramfs, with no disk: nothing of it is
    /// lost (docs/speed.md, session 24).
    pub fn shutdown(mut self) -> GuestOutcome {
        if let Some(o) = &self.outcome {
            return o.clone();
        }
        if let Err(o) = self.send(&HostMsg::Shutdown, Stage::Shutdown) {
            return o;
        }
        let sent = Instant::now();
        let deadline = sent + self.timeouts.shutdown;
        match self.wait_for(deadline, Limit::Shutdown, Stage::Shutdown, |_| None::<()>) {
            Ok(()) => unreachable!("no message completes the shutdown wait"),
            Err(o) => {
                tracing::debug!(secs = sent.elapsed().as_secs_f64(), "shutdown: QEMU ended");
                o
            }
        }
    }

    fn send(&mut self, msg: &HostMsg, stage: Stage) -> Result<(), GuestOutcome> {
        self.send_lines(&stream::encode_host(msg), stage)
    }

    /// Writes encoded messages (whole lines) in one write.
    fn send_lines(&mut self, lines: &[u8], stage: Stage) -> Result<(), GuestOutcome> {
        if let Some(o) = &self.outcome {
            return Err(o.clone());
        }
        if self.control.write_all(lines).and_then(|_| self.control.flush()).is_err() {
            // The guest is going away; let the event loop say how (bounded wait).
            let deadline = Instant::now() + self.timeouts.after_fatal;
            return match self.wait_for(deadline, Limit::Shutdown, stage, |_| None::<()>) {
                Ok(()) => unreachable!("no message is accepted"),
                Err(o) => Err(o),
            };
        }
        Ok(())
    }

    fn log(&mut self, line: &str) {
        if let Some(f) = &mut self.console_log {
            let _ = writeln!(f, "{line}");
        }
    }

    /// The event loop: returns when `want` accepts a message, or with the guest's outcome
    /// (`deadline` is `limit`'s; the guest's and the run's own limits apply too).
    fn wait_for<T>(
        &mut self,
        deadline: Instant,
        limit: Limit,
        stage: Stage,
        mut want: impl FnMut(GuestMsg) -> Option<T>,
    ) -> Result<T, GuestOutcome> {
        if let Some(o) = &self.outcome {
            return Err(o.clone());
        }
        let began = Instant::now();
        let (mut deadline, mut limit) = (deadline, limit);
        if self.overall < deadline {
            (deadline, limit) = (self.overall, Limit::Guest);
        }
        if let Some(run) = self.timeouts.run_deadline.filter(|&r| r < deadline) {
            (deadline, limit) = (run, Limit::Run);
        }
        loop {
            if let Some(sig) = crate::interrupt::pending() {
                self.kill();
                self.drain(Duration::from_millis(200));
                return Err(self.set(GuestOutcome::Interrupted { signal: sig as i32 }));
            }
            if crate::interrupt::stop_requested() {
                self.kill();
                self.drain(Duration::from_millis(200));
                return Err(self.set(GuestOutcome::Cancelled));
            }
            let now = Instant::now();
            match self.events.recv_timeout(Duration::from_millis(100)) {
                Ok(Event::Console(line)) => {
                    self.log(&line);
                    if self.scanner.push_line(&line).is_some_and(|m| m.is_fatal())
                        && self.fatal_since.is_none()
                    {
                        self.fatal_since = Some(now);
                    }
                    self.console_done |= line.contains(CONSOLE_DONE);
                }
                Ok(Event::Stderr(line)) => {
                    self.log(&format!("[qemu] {line}"));
                    self.stderr_tail.push(line.clone());
                    if console::is_kvm_failure(&line) {
                        // QEMU pauses instead of exiting: kill it.
                        self.kill();
                        let excerpt = self.excerpt();
                        return Err(self.set(GuestOutcome::KvmFailure { excerpt }));
                    }
                }
                Ok(Event::Msg(GuestMsg::Busy { id })) => self.busy = Some(id),
                Ok(Event::Msg(GuestMsg::Bye)) => self.bye_seen = true,
                Ok(Event::Msg(m)) => {
                    if let Some(t) = want(m) {
                        return Ok(t);
                    }
                }
                Ok(Event::BadLine(l)) => self.log(&format!("[control] {l}")),
                Ok(Event::ControlClosed) => self.control_closed = true,
                Ok(Event::ConsoleClosed) => self.console_closed = true,
                Ok(Event::Nudge) => self.apply_workers(stage)?,
                // Checked right below.
                Ok(Event::Exited) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => std::thread::sleep(Duration::from_millis(50)),
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                if let Some(t) = self.delivered(&mut want) {
                    return Ok(t);
                }
                return Err(self.finish_after_exit(stage));
            }
            if stage == Stage::Shutdown && self.bye_seen && self.console_done && self.fatal_since.is_none() {
                process::signal_group(&mut self.child);
                self.await_exited(Duration::from_secs(1));
                return Err(self.finish_after_exit(stage));
            }
            let now = Instant::now();
            if self.fatal_since.is_some_and(|t| now > t + self.timeouts.after_fatal) {
                self.kill();
                if let Some(t) = self.delivered(&mut want) {
                    return Ok(t);
                }
                return Err(self.finish_after_exit(stage));
            }
            if now > deadline {
                self.kill();
                self.drain(Duration::from_millis(200));
                let excerpt = self.excerpt_or_silence();
                return Err(self.set(GuestOutcome::Timeout { stage, limit, after: now - began, excerpt }));
            }
        }
    }

    /// QEMU has ended: the messages the control socket still delivers (up to its end, at most
    /// 1 s) count, as results written right before the guest died do. The first that `want`
    /// accepts, if any; console and stderr lines on the way are kept as usual.
    fn delivered<T>(&mut self, want: &mut impl FnMut(GuestMsg) -> Option<T>) -> Option<T> {
        let end = Instant::now() + Duration::from_secs(1);
        while !self.control_closed {
            let left = end.checked_duration_since(Instant::now())?;
            match self.events.recv_timeout(left) {
                Ok(Event::Msg(GuestMsg::Busy { id })) => self.busy = Some(id),
                Ok(Event::Msg(m)) => {
                    if let Some(t) = want(m) {
                        return Some(t);
                    }
                }
                Ok(Event::Console(l)) => self.keep_console(l),
                Ok(Event::Stderr(l)) => self.keep_stderr(l),
                Ok(Event::BadLine(l)) => self.log(&format!("[control] {l}")),
                Ok(Event::ControlClosed) => self.control_closed = true,
                Ok(Event::ConsoleClosed) => self.console_closed = true,
                Ok(Event::Nudge) | Ok(Event::Exited) => {}
                Err(_) => return None,
            }
        }
        None
    }

    /// A console line read while no case waits on it: logged and scanned for panics.
    fn keep_console(&mut self, l: String) {
        self.log(&l);
        self.scanner.push_line(&l);
    }

    /// A QEMU stderr line: logged and kept for the outcome's excerpt.
    fn keep_stderr(&mut self, l: String) {
        self.log(&format!("[qemu] {l}"));
        self.stderr_tail.push(l);
    }

    /// Waits (at most `max`) for the exit watcher's [`Event::Exited`] of a QEMU just signalled,
    /// not reaped, so that the watcher reads the CPU QEMU used before the reap erases it;
    /// console and stderr lines on the way are kept as usual.
    fn await_exited(&mut self, max: Duration) {
        let end = Instant::now() + max;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.events.recv_timeout(left) {
                Ok(Event::Exited) | Err(_) => return,
                Ok(Event::Console(l)) => self.keep_console(l),
                Ok(Event::Stderr(l)) => self.keep_stderr(l),
                Ok(Event::ControlClosed) => self.control_closed = true,
                Ok(Event::ConsoleClosed) => self.console_closed = true,
                Ok(_) => {}
            }
        }
    }

    /// QEMU has exited (or was killed after a fatal line): classify.
    fn finish_after_exit(&mut self, stage: Stage) -> GuestOutcome {
        if let Some(o) = &self.outcome {
            return o.clone();
        }
        let status = self.child.wait().map_or_else(|e| format!("status unknown: {e}"), |s| s.to_string());
        self.drain(Duration::from_secs(1));
        let fatal = self.scanner.fatal().is_some();
        let mut excerpt = self.excerpt_or_silence();
        if !fatal {
            excerpt = format!("QEMU ended ({status}); {excerpt}");
        }
        let o = if !self.hello_seen {
            GuestOutcome::BootFailure { excerpt }
        } else if fatal {
            GuestOutcome::Panic { excerpt }
        } else if stage == Stage::Shutdown {
            GuestOutcome::Completed
        } else {
            GuestOutcome::Exited { excerpt }
        };
        self.set(o)
    }

    /// Reads remaining output until the console closes or `max` passes.
    fn drain(&mut self, max: Duration) {
        let end = Instant::now() + max;
        while let Some(left) = end.checked_duration_since(Instant::now()).filter(|_| !self.console_closed) {
            match self.events.recv_timeout(left) {
                Ok(Event::Console(l)) => self.keep_console(l),
                Ok(Event::Stderr(l)) => self.keep_stderr(l),
                Ok(Event::ConsoleClosed) => {
                    self.console_closed = true;
                    break;
                }
                Err(_) => break,
                Ok(_) => {}
            }
        }
    }

    /// The console excerpt, followed by QEMU's last stderr lines if it wrote any.
    fn excerpt(&self) -> String {
        let mut s = self.scanner.excerpt();
        if !self.stderr_tail.is_empty() {
            let from = self.stderr_tail.len().saturating_sub(20);
            s.push_str("\n[qemu stderr]\n");
            s.push_str(&self.stderr_tail[from..].join("\n"));
        }
        s
    }

    /// [`GuestRun::excerpt`] introduced, or what an empty console means.
    fn excerpt_or_silence(&self) -> String {
        let excerpt = self.excerpt();
        if excerpt.trim().is_empty() {
            SILENT_CONSOLE.to_string()
        } else if self.scanner.fatal().is_some() {
            excerpt
        } else {
            format!("the console's last lines:\n{excerpt}")
        }
    }

    fn set(&mut self, o: GuestOutcome) -> GuestOutcome {
        self.outcome = Some(o.clone());
        o
    }

    fn kill(&mut self) {
        process::kill_group(&mut self.child);
    }
}

impl Drop for GuestRun {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Why [`accept`] gave up.
enum Accept {
    Failed(String),
    /// A signal, or the run's deadline.
    Stopped(GuestOutcome),
}

/// Accepts QEMU's connection, giving up if QEMU exits, `max` passes, a signal arrives or
/// `run_deadline` passes.
fn accept(
    listener: &UnixListener,
    child: &mut Child,
    max: Duration,
    run_deadline: Option<Instant>,
) -> Result<UnixStream, Accept> {
    let failed = |e: std::io::Error| Accept::Failed(e.to_string());
    listener.set_nonblocking(true).map_err(failed)?;
    let began = Instant::now();
    let end = began + max;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).map_err(failed)?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(failed(e)),
        }
        if let Ok(Some(st)) = child.try_wait() {
            return Err(Accept::Failed(format!("QEMU exited ({st})")));
        }
        if let Some(sig) = crate::interrupt::pending() {
            return Err(Accept::Stopped(GuestOutcome::Interrupted { signal: sig as i32 }));
        }
        if crate::interrupt::stop_requested() {
            return Err(Accept::Stopped(GuestOutcome::Cancelled));
        }
        let now = Instant::now();
        if run_deadline.is_some_and(|d| now >= d) {
            return Err(Accept::Stopped(GuestOutcome::Timeout {
                stage: Stage::Boot,
                limit: Limit::Run,
                after: now - began,
                excerpt: String::new(),
            }));
        }
        if now > end {
            return Err(Accept::Failed("timed out".into()));
        }
        // Up to 20 ms for the connection (QEMU makes it during its start), then the checks
        // above again; a connection is accepted as soon as it comes, not at the next tick.
        match crate::readable::readable_within(listener, nix::poll::PollTimeout::from(20u8)) {
            // EINTR: a signal, which the checks above see next.
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            // Never seen (the listener is ours and open); do not spin.
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Sends [`Event::Exited`] once QEMU (`pid`, a child of this process) has ended, without reaping
/// it (`waitid(WNOWAIT)`; [`GuestRun`] reaps it). QEMU closes its console and control socket a
/// few milliseconds before it is gone, so without this the event loop would see the end only at
/// its next 100 ms timeout: ~90 ms idle after every guest (docs/speed.md, session 18). If
/// QEMU was reaped first (killed), `waitid` fails and the thread ends.
fn spawn_exit_watcher(pid: u32, tx: Sender<Event>) {
    use nix::sys::wait::{waitid, Id, WaitPidFlag};
    std::thread::spawn(move || {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        if waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT).is_ok() {
            // Not reaped yet: its /proc entry still holds what it used.
            if let Some(secs) = process::cpu_secs(pid.as_raw()) {
                tracing::debug!(pid = pid.as_raw(), cpu_secs = secs, "QEMU ended");
            }
            let _ = tx.send(Event::Exited);
        }
    });
}

fn spawn_lines<R: Read + Send + 'static>(
    r: R,
    tx: Sender<Event>,
    wrap: fn(String) -> Event,
    at_eof: Option<Event>,
) {
    std::thread::spawn(move || {
        let mut r = r;
        let mut buf = LineBuffer::new();
        let mut chunk = [0u8; 8192];
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    for l in buf.push(&chunk[..n]) {
                        if tx.send(wrap(l)).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        let rest = buf.rest();
        if !rest.is_empty() {
            let _ = tx.send(wrap(rest));
        }
        if let Some(e) = at_eof {
            let _ = tx.send(e);
        }
    });
}

/// Reads the guest's messages: lines of bytes (a `Result` is binary, [`stream::write_guest`]).
fn spawn_control_reader(s: UnixStream, tx: Sender<Event>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(s);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let ev = match stream::decode_guest(line) {
                Ok(Some(m)) => Event::Msg(m),
                Ok(None) => continue,
                Err(_) => Event::BadLine(String::from_utf8_lossy(line).trim_end_matches('\r').to_string()),
            };
            if tx.send(ev).is_err() {
                return;
            }
        }
        let _ = tx.send(Event::ControlClosed);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_core::case::ProgType;

    fn case(log_level: u32, insns: usize) -> Case {
        let mut c = Case::new("c", ProgType::SocketFilter, Default::default(), "");
        c.log_level = log_level;
        c.program.insns = vec![lockstep_core::insn::Insn::default(); insns];
        c
    }

    #[test]
    fn the_default_case_limit_scales_with_log_level_and_size() {
        let base = Duration::from_secs(60);
        assert_eq!(case_limit(base, true, &case(1, 0), false), base);
        assert_eq!(case_limit(base, true, &case(2, 0), false), base * 4);
        assert_eq!(case_limit(base, true, &case(0, 0), true), base * 4, "--log asks for the full log");
        assert_eq!(case_limit(base, true, &case(1, 500), false), base + Duration::from_secs(10));
        assert_eq!(case_limit(base, false, &case(2, 500), true), base, "a limit given is kept");
    }

    #[test]
    fn only_signals_and_the_run_deadline_stop_a_run() {
        let t = |limit| GuestOutcome::Timeout {
            stage: Stage::Boot,
            limit,
            after: Duration::ZERO,
            excerpt: String::new(),
        };
        assert!(GuestOutcome::Interrupted { signal: 2 }.stops_the_run());
        // A release agent's initramfs (~20 MB) keeps 512 MiB; a debug one's (~160 MB) gets more.
        assert_eq!(memory_for_initramfs(20 << 20), 512);
        assert_eq!(memory_for_initramfs(160 << 20), 704);
        assert!(GuestOutcome::Cancelled.stops_the_run());
        assert!(t(Limit::Run).stops_the_run());
        assert!(!t(Limit::Case).stops_the_run());
        assert!(!t(Limit::Boot).stops_the_run());
        assert!(!GuestOutcome::Exited { excerpt: String::new() }.stops_the_run());
    }

    #[test]
    fn the_exit_watcher_reports_an_ended_child_and_leaves_it_to_be_reaped() {
        let (tx, rx) = channel();
        let mut child =
            Command::new("sh").args(["-c", "read line; exit 7"]).stdin(Stdio::piped()).spawn().unwrap();
        spawn_exit_watcher(child.id(), tx);
        assert!(
            matches!(rx.recv_timeout(Duration::from_millis(300)), Err(RecvTimeoutError::Timeout)),
            "nothing while the child runs"
        );
        drop(child.stdin.take()); // EOF: the child exits
        assert!(matches!(rx.recv_timeout(Duration::from_secs(30)), Ok(Event::Exited)));
        let status = child.try_wait().unwrap().expect("the watcher did not reap it: its status is ours");
        assert_eq!(status.code(), Some(7));
    }

    #[test]
    fn the_exit_watcher_of_a_child_reaped_first_ends_without_a_report() {
        let (tx, rx) = channel();
        let mut child = Command::new("true").spawn().unwrap();
        child.wait().unwrap();
        spawn_exit_watcher(child.id(), tx);
        // waitid fails (ECHILD): the thread ends and drops its sender without sending.
        assert!(matches!(rx.recv_timeout(Duration::from_secs(30)), Err(RecvTimeoutError::Disconnected)));
    }
}
