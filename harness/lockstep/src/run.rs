//! `lockstep run`: the cases on real kernels, compared with the model. The plan (which guest
//! runs which cases, the rows' order, the exit code) is [`crate::run_plan`], the rows
//! [`crate::run_rows`]; here are the kernels, guests, threads and files.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use lockstep_core::case::Case;
use lockstep_core::proto::ModuleStatus;
use lockstep_core::shard::Shard;
use lockstep_vm::guest::workers::WorkerCpus;
use lockstep_vm::guest::Timeouts;

use crate::report::{self, Outcome, RunRow};
use crate::run_files::{self, RunFiles};
use crate::run_plan::{GuestSlot, ReorderBuffer, RowKey};
pub use crate::run_plan::{RunOutput, Stop};
use crate::run_rows::{self, GuestModules};
use crate::runner::{
    CaseEvent, GuestArgs, KernelArgs, KernelSession, KernelTarget, PendingBtf, RunnerOptions, TestmodChoice,
};
use crate::{cases, kernel_diff, run_plan};

/// Arguments of `lockstep run`.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub kernels: KernelArgs,
    #[command(flatten)]
    pub guest: GuestArgs,
    #[command(flatten)]
    pub output: crate::output::OutputArgs,
    /// Write the kernel-against-kernel differences (cases whose verdict differs between the
    /// kernels, each judged by the model) as text; stderr gets the count and the unexplained ones.
    #[arg(long, value_name = "FILE", value_parser = crate::output::report_path)]
    pub differences: Option<PathBuf>,
    /// Seconds for the whole run (all kernels, from start to report, boots included).
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub timeout: u64,
    /// Keep the full verifier log of every case (in the JSON output).
    #[arg(long)]
    pub log: bool,
    /// Programs of BPF object inputs that nothing judged (lockstep could not load them and the
    /// model cannot judge them) do not make the exit code 6.
    #[arg(long)]
    pub allow_skips: bool,
    /// Run only shard K of N (a stable split of cases x kernels by a hash of the case name and
    /// kernel name); `lockstep report merge` joins the shards' `--json` files.
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<Shard>,
    /// Print GitHub Actions `::error file=...,line=...::` annotations for disagreements and
    /// crashes, at the case's line (automatic when GITHUB_ACTIONS=true).
    #[arg(long)]
    pub github: bool,
    /// Jobs at a time: the kernels run in parallel guests, and a job with no kernel left to start
    /// joins a running guest on a vCPU of its own (the last kernel's guest has one per job, up to
    /// 4) or starts another guest of a kernel (default: the number of cores; lowered to what the
    /// available memory holds).
    #[arg(long, short = 'j', value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Case files or directories (default: the bundled corpus).
    pub paths: Vec<PathBuf>,
}

/// Parses `--shard K/N`.
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    s.parse().map_err(|e: lockstep_core::shard::ShardError| e.to_string())
}

/// Why the run must not go on, checked between kernels: a signal, or the deadline passed.
fn stop_now(deadline: Instant) -> Option<Stop> {
    if let Some(sig) = lockstep_vm::interrupt::pending() {
        return Some(Stop::Interrupted(sig as i32));
    }
    (Instant::now() >= deadline).then_some(Stop::TimedOut)
}

/// [`KernelTarget::prepare_for_guest`] (kernel fetch, test module build) started on a helper
/// thread: every kernel of a run is prepared at once when the run starts, beside the first guests'
/// starts, and its guests wait for it ([`wait_prepared`]); the kernel BTF only the model needs is
/// parsed from the kernel's first guest's start ([`ReadyKernel::start_btf`]) and awaited at its
/// first row ([`ReadyKernel::full`]). A fetch or build given up on goes on in the
/// background until lockstep exits, moments later.
fn spawn_prepare(
    name: &str,
    profile: Option<&str>,
    opts: &RunnerOptions,
) -> mpsc::Receiver<Result<Preparing>> {
    let (tx, rx) = mpsc::channel();
    let (name, profile, opts) = (name.to_string(), profile.map(str::to_string), opts.clone());
    std::thread::spawn(move || {
        let t = Instant::now();
        let r = KernelTarget::prepare_for_guest(&name, profile.as_deref(), &opts);
        tracing::debug!(kernel = %name, secs = t.elapsed().as_secs_f64(), ok = r.is_ok(), "kernel prepared");
        let _ = tx.send(r);
    });
    rx
}

/// Waits for a preparation, bounded by the run's deadline and SIGINT/SIGTERM: `Err` is why the
/// wait was given up.
fn wait_prepared(
    rx: &mpsc::Receiver<Result<Preparing>>,
    deadline: Instant,
) -> Result<Result<Preparing>, Stop> {
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(r) => return Ok(r),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Ok(Err(anyhow::anyhow!("preparing the kernel failed (the helper thread died)")))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(stop) = stop_now(deadline) {
                    return Err(stop);
                }
            }
        }
    }
}

/// What [`KernelTarget::prepare_for_guest`] gives: the kernel for its guests, and the model's
/// kernel BTF still being parsed.
type Preparing = (KernelTarget, PendingBtf);

/// A kernel ready for its guests; the model's view of it once its kernel BTF is parsed.
struct ReadyKernel {
    /// What a guest needs (the kernel, the modules): its profile may still lack the kernel BTF.
    guest: KernelTarget,
    btf: Mutex<Option<PendingBtf>>,
    full: OnceLock<KernelTarget>,
}

impl ReadyKernel {
    fn new((guest, btf): Preparing) -> ReadyKernel {
        ReadyKernel { guest, btf: Mutex::new(Some(btf)), full: OnceLock::new() }
    }

    /// Starts parsing the kernel BTF (its first guest is starting): beside that guest's restore
    /// rather than at the run's start, where the parses of kernels whose guests start later
    /// took the cores from the first guests (and their first rows waited for the wrong parse).
    fn start_btf(&self) {
        if let Some(btf) = self.btf.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            btf.start();
        }
    }

    /// The kernel with its profile's kernel BTF, for the model's rows (waits for the parse the
    /// first time: the kernel's first guest starts meanwhile and asks at its first verdict).
    fn full(&self) -> &KernelTarget {
        self.full.get_or_init(|| {
            let mut t = self.guest.clone();
            if let Some(btf) = self.btf.lock().unwrap_or_else(|e| e.into_inner()).take() {
                btf.finish(&mut t);
            }
            t
        })
    }
}

/// A kernel once prepared, shared by the guests its cases are split over.
enum Prepared {
    Ready(Box<ReadyKernel>),
    /// Not usable: the infrastructure message.
    Failed(String),
    /// The run stopped while it was being prepared.
    Stopped,
    /// Bad input (the error is the run's).
    Bad,
}

/// The jobs that joined a running guest: their CPUs for its vCPUs, and a sender each that the
/// guest's end drops (the job then looks for other work).
#[derive(Default)]
struct GuestJoins {
    cpus: WorkerCpus,
    joined: Vec<mpsc::Sender<()>>,
}

/// What a guest's worker hands the thread that collects the rows.
enum Report {
    Row(RowKey, Box<RunRow>),
    /// A guest is done: no more rows will come for these keys, the ones it claimed (those that
    /// did not come are missing because the run ended on bad input).
    Done(Vec<RowKey>),
    /// An infrastructure problem of guest `unit` (an index into the plan).
    Infra(usize, String),
}

/// What the guests of one run share: the inputs, the kernels prepared so far, and why the run
/// stops (a signal, the deadline, bad input).
struct Shared<'a> {
    args: &'a RunArgs,
    cases: &'a [Case],
    kernels: &'a [String],
    opts: RunnerOptions,
    deadline: Instant,
    /// The preparations started with the run, taken by the first guest of each kernel.
    preparing: Vec<Mutex<Option<mpsc::Receiver<Result<Preparing>>>>>,
    targets: Vec<OnceLock<Prepared>>,
    /// Which guest runs which cases, decided as the guests go.
    sched: Mutex<run_plan::Scheduler>,
    /// The running guests (by unit) other jobs may join ([`run_plan::Work::Join`]): an entry is
    /// made and joined with `sched` held, and dropped when the guest's job ends
    /// ([`ReleaseJoined`], after the scheduler was told), so a job never waits on a guest that
    /// ended (joining one whose entry is gone, it is let go at once).
    joins: Mutex<HashMap<usize, GuestJoins>>,
    stopped: Mutex<Option<Stop>>,
    fatal: Mutex<Option<anyhow::Error>>,
    progress: MultiProgress,
}

impl Shared<'_> {
    /// Why the run stops, if it does: recorded first, else a signal or the deadline now.
    fn stop(&self) -> Option<Stop> {
        let mut s = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
        if s.is_none() {
            *s = stop_now(self.deadline);
        }
        *s
    }

    fn set_stop(&self, stop: Stop) {
        self.stopped.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(stop);
    }

    fn has_fatal(&self) -> bool {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    fn say(&self, text: String) {
        self.progress.suspend(|| eprintln!("{text}"));
    }

    fn sched(&self) -> std::sync::MutexGuard<'_, run_plan::Scheduler> {
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn joins(&self) -> std::sync::MutexGuard<'_, HashMap<usize, GuestJoins>> {
        self.joins.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next work of a job pinned to `cpu`: a guest to run, or a guest it joined and waits for
    /// (None: nothing left).
    fn next_work(&self, cpu: Option<usize>) -> Option<Result<GuestSlot, mpsc::Receiver<()>>> {
        let mut sched = self.sched();
        match sched.next_work()? {
            run_plan::Work::Start(slot) => {
                self.joins().insert(slot.unit, GuestJoins::default());
                Some(Ok(slot))
            }
            run_plan::Work::Join(slot) => {
                let (tx, rx) = mpsc::channel();
                if let Some(g) = self.joins().get_mut(&slot.unit) {
                    tracing::debug!(kernel = %self.kernels[slot.kernel], part = slot.part, ?cpu, "job joins the guest");
                    g.cpus.add(cpu);
                    g.joined.push(tx);
                }
                Some(Err(rx))
            }
        }
    }

    /// Kernel `k`, as its preparation (started with the run) ended, awaited by the first guest
    /// that needs it (the others of the kernel wait). Its outcome counts from then on, as if it
    /// was prepared only then: bad input found while preparing a later kernel stops the run
    /// when that kernel's turn comes, as with `--jobs 1`.
    fn target(&self, k: usize) -> &Prepared {
        let name = &self.kernels[k];
        self.targets[k].get_or_init(|| {
            let rx = self.preparing[k].lock().unwrap_or_else(|e| e.into_inner()).take();
            let rx =
                rx.unwrap_or_else(|| spawn_prepare(name, self.args.kernels.profile.as_deref(), &self.opts));
            match wait_prepared(&rx, self.deadline) {
                Err(stop) => {
                    self.set_stop(stop);
                    Prepared::Stopped
                }
                Ok(Ok(t)) => Prepared::Ready(Box::new(ReadyKernel::new(t))),
                Ok(Err(e)) if e.downcast_ref::<crate::exit::BadInput>().is_some() => {
                    self.fatal.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(e);
                    // The guests already running stop now (QEMU killed, their rows so far kept),
                    // as with `--jobs 1`, where no other guest runs when bad input is found.
                    lockstep_vm::interrupt::request_stop();
                    Prepared::Bad
                }
                Ok(Err(e)) => {
                    self.say(format!("lockstep: {name}: {e:#}"));
                    Prepared::Failed(format!("{name}: {e:#}"))
                }
            }
        })
    }
}

/// Runs `cases` on every kernel of `args` until `deadline` (the engine of `lockstep run`, used by
/// tests too), `jobs` guests at a time ([`run_plan::Scheduler`]). Each row goes to `on_row` as
/// soon as it exists, or, with `ordered`, as soon as every row before it in the run's order did;
/// the returned rows are in the run's order (kernel, then case) whatever finished first.
pub fn run_cases(
    args: &RunArgs,
    cases: &[Case],
    jobs: usize,
    deadline: Instant,
    ordered: bool,
    on_row: &mut dyn FnMut(&RunRow),
) -> Result<RunOutput> {
    crate::runner::remove_stale_run_dirs(&std::env::temp_dir());
    lockstep_vm::interrupt::clear_stop();
    let mut opts = args.guest.options(args.log, Timeouts::default().overall);
    opts.timeouts.run_deadline = Some(deadline);
    if opts.testmod == TestmodChoice::Off && !args.guest.no_testmod {
        let called = run_rows::other_kfuncs_called(cases, &lockstep_core::module_src::bundled());
        if !called.is_empty() {
            opts.testmod = TestmodChoice::IfCalled(called);
        }
    }
    let kernels = args.kernels.names();
    let per_kernel: Vec<Vec<usize>> =
        kernels.iter().map(|k| run_plan::shard_positions(cases, k, args.shard)).collect();
    // The host's kernel is this process's: one loader, never split.
    let jobs = if args.kernels.host { 1 } else { jobs };
    opts.vcpus = guest_vcpus(jobs);
    let sched = run_plan::Scheduler::new(&per_kernel, jobs).with_vcpus(opts.vcpus as usize);
    let mut order = ReorderBuffer::new(sched.keys());
    let preparing = per_kernel
        .iter()
        .zip(&kernels)
        .map(|(p, name)| {
            let start = !p.is_empty() && stop_now(deadline).is_none();
            Mutex::new(start.then(|| spawn_prepare(name, args.kernels.profile.as_deref(), &opts)))
        })
        .collect();
    let shared = Shared {
        args,
        cases,
        kernels: &kernels,
        opts,
        deadline,
        preparing,
        targets: kernels.iter().map(|_| OnceLock::new()).collect(),
        sched: Mutex::new(sched),
        joins: Mutex::new(HashMap::new()),
        stopped: Mutex::new(None),
        fatal: Mutex::new(None),
        progress: MultiProgress::new(),
    };
    let mut rows: Vec<(RowKey, RunRow)> = Vec::new();
    let mut infra: Vec<(usize, String)> = Vec::new();
    let (tx, rx) = mpsc::channel::<Report>();
    std::thread::scope(|s| {
        for job in 0..jobs.max(1) {
            let (tx, shared) = (tx.clone(), &shared);
            s.spawn(move || {
                let cpu = pin_job(job, jobs);
                loop {
                    if shared.has_fatal() {
                        break;
                    }
                    match shared.next_work(cpu) {
                        None => break,
                        Some(Ok(slot)) => run_guest(shared, slot, &tx),
                        // Joined: until the guest ends (its owner drops the sender).
                        Some(Err(joined)) => while joined.recv().is_ok() {},
                    }
                }
            });
        }
        drop(tx);
        for report in rx {
            let ready = match report {
                Report::Row(key, row) => {
                    let row = run_rows::finish_row(*row, key.position);
                    let ready = if ordered { order.push(key, row.clone()) } else { vec![row.clone()] };
                    rows.push((key, row));
                    ready
                }
                Report::Done(keys) => order.skip(keys),
                Report::Infra(unit, text) => {
                    infra.push((unit, text));
                    Vec::new()
                }
            };
            ready.iter().for_each(&mut *on_row);
        }
    });
    if ordered {
        order.finish().iter().for_each(&mut *on_row);
    }
    shared.progress.clear().ok();
    if let Some(e) = shared.fatal.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    rows.sort_by_key(|(k, _)| *k);
    infra.sort_by_key(|(unit, _)| *unit);
    Ok(RunOutput {
        rows: rows.into_iter().map(|(_, r)| r).collect(),
        infra: infra.into_iter().map(|(_, t)| t).collect(),
        allow_skips: args.allow_skips,
        stopped: shared.stopped.into_inner().unwrap_or_else(|e| e.into_inner()),
    })
}

/// Pins job `job`'s thread to a CPU of its own when the run has as many jobs as this process may
/// use CPUs (`--jobs 2` on 2 cores, issue 16's case): the QEMUs the job starts inherit its
/// affinity (a child gets its forking thread's), so each guest's vCPU and main-loop threads and
/// the job's own reader threads stay on one core instead of being moved between the two by the
/// scheduler, and two guests never take turns on one core while the other idles. Measured
/// (docs/speed.md, session 14): the parallel 3-kernel run's CPU seconds 4.3-4.7 -> 3.6-4.1.
/// `LOCKSTEP_PIN_JOBS=0` leaves the jobs unpinned (for comparisons).
/// Returns the CPU the job was pinned to, if it was.
fn pin_job(job: usize, jobs: usize) -> Option<usize> {
    if std::env::var_os("LOCKSTEP_PIN_JOBS").is_some_and(|v| v == "0") {
        return None;
    }
    let cpus = allowed_cpus()?;
    let cpu = run_plan::job_cpu(job, jobs, &cpus)?;
    // This thread (the job's), whose children inherit the mask.
    let ok = lockstep_vm::affinity::pin_thread(0, cpu);
    tracing::debug!(job, cpu, ok, "job pinned");
    ok.then_some(cpu)
}

/// The most vCPUs a guest gets: each runs an agent worker with a loader of its own (vmlinux BTF
/// and a log buffer) in the guest's memory.
pub const MAX_GUEST_VCPUS: usize = 4;

/// vCPUs per guest for a run of `jobs` jobs: one per job up to [`MAX_GUEST_VCPUS`], so that a job
/// with nothing else to do joins a running guest (no start, the guest's translated code warm)
/// instead of starting another of the same kernel. `LOCKSTEP_JOIN_GUESTS=0`: one (for comparisons).
fn guest_vcpus(jobs: usize) -> u32 {
    if std::env::var_os("LOCKSTEP_JOIN_GUESTS").is_some_and(|v| v == "0") {
        return 1;
    }
    jobs.clamp(1, MAX_GUEST_VCPUS) as u32
}

/// The CPUs this thread may run on (None when the kernel does not say).
fn allowed_cpus() -> Option<Vec<usize>> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    Some((0..nix::sched::CpuSet::count()).filter(|&c| set.is_set(c).unwrap_or(false)).collect())
}

/// Runs guest `slot`: claims its kernel's cases a chunk at a time ([`run_plan::Scheduler::claim`])
/// and runs them in one guest (booted again after a crash), sending each row to `tx` as it
/// arrives. A kernel that could not be prepared or booted gives a `not_run` row per case and one
/// infrastructure message; when the guest cannot go on (the run stops, the guest does not boot),
/// the kernel's last guest to end gives the cases nobody claimed a `not_run` row with the reason.
fn run_guest(sh: &Shared, slot: GuestSlot, tx: &mpsc::Sender<Report>) {
    // Whatever way this ends (a panic too), the jobs that joined the guest are let go.
    let _release = ReleaseJoined(sh, slot.unit);
    let k = slot.kernel;
    let name = sh.kernels[k].as_str();
    let bar = sh.progress.add(ProgressBar::new(0));
    bar.set_style(
        ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    bar.set_prefix(slot.label(name));
    bar.set_message("preparing");
    let mut claimed: Vec<usize> = Vec::new();
    let leftover = guest_chunks(sh, slot, tx, &bar, &mut claimed);
    let left = sh.sched().guest_done(slot);
    if let Some((target, release, note)) = leftover {
        for &p in &left {
            let row =
                run_rows::unrun_row(&sh.cases[p], name, target, &release, Outcome::NotRun, note.clone());
            let _ = tx.send(Report::Row(RowKey { kernel: k, position: p }, Box::new(row)));
        }
    }
    claimed.extend(left);
    let _ =
        tx.send(Report::Done(claimed.into_iter().map(|position| RowKey { kernel: k, position }).collect()));
    bar.finish_and_clear();
}

/// Drops the senders of the jobs that joined guest `.1` (they wait for that).
struct ReleaseJoined<'a, 'b>(&'a Shared<'b>, usize);

impl Drop for ReleaseJoined<'_, '_> {
    fn drop(&mut self) {
        self.0.joins().remove(&self.1);
    }
}

/// Why the cases of a kernel nobody claimed did not run, for their rows: the kernel (when it was
/// prepared), the guest's release and the note. None: no rows (the run ended on bad input).
type Leftover<'a> = Option<(Option<&'a KernelTarget>, String, String)>;

/// The work of [`run_guest`]: the cases it claimed go to `claimed`.
fn guest_chunks<'a>(
    sh: &'a Shared,
    slot: GuestSlot,
    tx: &mpsc::Sender<Report>,
    bar: &ProgressBar,
    claimed: &mut Vec<usize>,
) -> Leftover<'a> {
    let k = slot.kernel;
    let name = sh.kernels[k].as_str();
    let send = |position: usize, row: RunRow| {
        bar.inc(1);
        let _ = tx.send(Report::Row(RowKey { kernel: k, position }, Box::new(row)));
    };
    let prepared = match sh.stop() {
        Some(_) => None,
        None => Some(sh.target(k)),
    };
    let ready = match prepared {
        Some(Prepared::Ready(t)) if sh.stop().is_none() => t,
        Some(Prepared::Bad) => return None,
        // The kernel's failure is reported once, by its first guest, and each of its cases gets
        // a row, so that a shard's JSON (and `report merge`) counts it too.
        Some(Prepared::Failed(text)) => {
            if slot.part == 0 {
                let _ = tx.send(Report::Infra(slot.unit, text.clone()));
            }
            let e = text.strip_prefix(&format!("{name}: ")).unwrap_or(text);
            return Some((None, String::new(), format!("not run: the kernel could not be prepared: {e}")));
        }
        // Stopped: the kernel's cases are accounted for, not silently dropped.
        _ => {
            return Some((
                None,
                String::new(),
                run_plan::stop_reason(sh.stop().expect("stopped"), sh.args.timeout),
            ))
        }
    };
    ready.start_btf();
    let mut left = sh.opts.clone();
    left.timeouts.overall = sh.deadline.saturating_duration_since(Instant::now());
    left.vcpus = slot.vcpus as u32;
    // The console of a kernel's second, third ... guest goes to a file of its own.
    let mut guest_target = ready.guest.clone();
    if slot.part > 0 {
        guest_target.name = format!("{name}.{}", slot.part + 1);
    }
    let mut session = match KernelSession::start(&guest_target, &left) {
        Ok(s) => s,
        Err(e) => {
            sh.say(format!("lockstep: {name}: {e:#}"));
            let _ = tx.send(Report::Infra(slot.unit, format!("{name}: {e:#}")));
            return Some((
                Some(ready.full()),
                String::new(),
                format!("not run: the guest could not be started: {e:#}"),
            ));
        }
    };
    if let Some(j) = sh.joins().get(&slot.unit) {
        session.share_workers(j.cpus.clone());
    }
    let module = ready.guest.module_kfuncs();
    let mut guest = GuestModules::default();
    let mut boot_problem: Option<String> = None;
    let mut unrun: Option<String> = None;
    let mut failure: Option<anyhow::Error> = None;
    let started = Instant::now();
    let mut verdicts = 0usize;
    let mut fresh: Option<Duration> = None;
    loop {
        if sh.has_fatal() || sh.stop().is_some() {
            break;
        }
        let chunk = sh.sched().claim(k);
        if chunk.is_empty() {
            break;
        }
        claimed.extend_from_slice(&chunk);
        bar.inc_length(chunk.len() as u64);
        let cases: Vec<Case> = chunk.iter().map(|&p| sh.cases[p].clone()).collect();
        let mut since = Instant::now();
        let mut results = 0usize;
        let result = session.run(&cases, sh.args.log, &mut |ev| match ev {
            CaseEvent::Booted { release: r, module: m, extra_modules, boot_time } => {
                tracing::info!(kernel = %name, part = slot.part, release = %r, module = ?m, extra = ?extra_modules, boot_s = boot_time.as_secs_f64(), "guest booted");
                bar.set_message(format!("booted {r} in {:.1}s", boot_time.as_secs_f64()));
                for e in &extra_modules {
                    if let ModuleStatus::Failed { name: m, error } = e {
                        sh.say(format!("lockstep: {name}: module {m} not loaded: {error}"));
                    }
                }
                fresh = Some(boot_time);
                since = Instant::now();
                guest = GuestModules { release: r, module: m, extra: extra_modules };
            }
            CaseEvent::BootFailed { excerpt, will_retry } => {
                sh.say(format!("lockstep: {name}: boot failed{}:\n{excerpt}", if will_retry { " (retrying)" } else { "" }));
                if !will_retry {
                    boot_problem = Some(excerpt);
                }
            }
            CaseEvent::Retrying { index, excerpt } => {
                sh.say(format!("lockstep: {name}: the guest ended while case {} ran; retrying it in a fresh one:\n{excerpt}", cases[index].name));
            }
            CaseEvent::Result { index, result, warnings } => {
                if verdicts == 0 {
                    tracing::debug!(kernel = %name, part = slot.part, secs = started.elapsed().as_secs_f64(), "first verdict");
                }
                verdicts += 1;
                // A guest's start is counted up to its first verdict: a restored TCG guest
                // translates the verifier's code anew, and its first case takes tenths of a
                // second whichever it is. The rate per case is measured after it.
                match fresh.take() {
                    Some(boot) => {
                        sh.sched().guest_started(k, boot + since.elapsed());
                        since = Instant::now();
                    }
                    None => results += 1,
                }
                send(chunk[index], run_rows::result_row(&cases[index], name, ready.full(), &module, &guest, result, &warnings, sh.args.log));
            }
            CaseEvent::Crashed { index, excerpt } => {
                send(chunk[index], run_rows::unrun_row(&cases[index], name, Some(ready.full()), &guest.release, Outcome::Crash, format!("the case crashed the kernel twice:\n{excerpt}")));
            }
            CaseEvent::Lost { index, excerpt } => {
                send(chunk[index], run_rows::unrun_row(&cases[index], name, Some(ready.full()), &guest.release, Outcome::Infra, format!("the guest ended twice while the case ran, the second time without a kernel message (not a kernel crash):\n{excerpt}")));
            }
            CaseEvent::TimedOut { index, excerpt } => {
                send(chunk[index], run_rows::unrun_row(&cases[index], name, Some(ready.full()), &guest.release, Outcome::Timeout, excerpt));
            }
            CaseEvent::NotRun { index, reason } => {
                unrun = Some(reason.clone());
                send(chunk[index], run_rows::unrun_row(&cases[index], name, Some(ready.full()), &guest.release, Outcome::NotRun, reason));
            }
        });
        sh.sched().measured(k, results, since.elapsed());
        if let Err(e) = result {
            failure = Some(e);
            break;
        }
        if unrun.is_some() {
            // The guest did not boot: it takes no more cases.
            break;
        }
    }
    session.close();
    tracing::debug!(kernel = %name, part = slot.part, cases = claimed.len(), secs = started.elapsed().as_secs_f64(), "guest done");
    if let Some(e) = failure {
        if let Some(i) = e.downcast_ref::<crate::exit::Interrupted>() {
            sh.set_stop(Stop::Interrupted(i.signal));
        } else if e.downcast_ref::<crate::exit::RunTimedOut>().is_some() {
            sh.set_stop(Stop::TimedOut);
        } else if e.downcast_ref::<crate::exit::Cancelled>().is_some() {
            // The run's error (bad input) is reported once, by the run.
        } else {
            sh.say(format!("lockstep: {name}: {e:#}"));
            let _ = tx.send(Report::Infra(slot.unit, format!("{name}: {e:#}")));
        }
    }
    if let Some(p) = boot_problem {
        let _ = tx.send(Report::Infra(slot.unit, format!("{name}: the guest did not boot:\n{p}")));
    }
    let note = unrun.unwrap_or_else(|| match sh.stop() {
        Some(stop) => run_plan::stop_reason(stop, sh.args.timeout),
        None => format!("not run ({})", crate::runner::excerpt(&lockstep_vm::guest::GuestOutcome::Cancelled)),
    });
    Some((Some(ready.full()), guest.release, note))
}

/// The guests to run at once: `--jobs` or the number of cores, at most what the available memory
/// holds (said on stderr when it lowers them).
pub fn jobs(requested: Option<u32>) -> usize {
    let requested =
        requested.map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |n| n as usize);
    let ram = lockstep_vm::guest::GuestConfig::new("", "").memory_mib;
    let (jobs, note) =
        run_plan::jobs_for_memory(requested, mem_available_mib(), run_plan::guest_footprint_mib(ram.into()));
    if let Some(n) = note {
        eprintln!("lockstep: {n}");
    }
    jobs
}

/// `MemAvailable` of `/proc/meminfo`, in MiB (None when unreadable).
fn mem_available_mib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// `lockstep run`: output files opened first, JSON lines streamed, reports written at the end
/// (also after SIGINT/SIGTERM or the run's time limit, with what was collected).
pub fn run(args: RunArgs) -> Result<u8> {
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    lockstep_vm::interrupt::install().context("installing the SIGINT/SIGTERM handlers")?;
    let module = lockstep_core::module_src::bundled();
    let paths = if args.paths.is_empty() { vec![cases::default_corpus()] } else { args.paths.clone() };
    let cases = cases::load(&paths, &module)?;
    let mut files = RunFiles::open(
        args.output.json.as_deref(),
        args.output.junit.as_deref(),
        args.output.markdown.as_deref(),
        args.differences.as_deref(),
        args.guest.console_dir.as_deref(),
    )?;
    let jobs = jobs(args.jobs);
    let mut streamed: Vec<(String, usize)> = Vec::new();
    let out = run_cases(&args, &cases, jobs, deadline, files.json_on_stdout(), &mut |row| {
        streamed.push((row.kernel.clone(), row.index));
        files.row(row)
    })?;
    let mut errors: Vec<anyhow::Error> = Vec::new();
    // Rows streamed as they came are put in the run's order (the order `--jobs 1` gives).
    let in_order = streamed
        .iter()
        .map(|(k, i)| (k.as_str(), *i))
        .eq(out.rows.iter().map(|r| (r.kernel.as_str(), r.index)));
    if !in_order {
        errors.extend(files.rewrite_json(&out.rows).err());
    }
    errors.extend(files.finish_json().err());
    if let Some(f) = files.junit.take() {
        errors.extend(f.write(&report::junit(&out.rows)).err());
    }
    let diffs = kernel_diff::differences(&out.rows);
    if let Some(f) = files.markdown.take() {
        errors.extend(f.write(&(report::markdown(&out.rows) + &report::markdown_differences(&diffs))).err());
    }
    if let Some(f) = files.differences.take() {
        errors.extend(f.write(&kernel_diff::render(&diffs)).err());
    }
    if !files.json_on_stdout() {
        errors.extend(run_files::print(&report::matrix(&out.rows)).err());
    }
    eprint!("{}", report::summary_lines(&out.rows));
    if out.rows.iter().any(|r| r.kernel != out.rows[0].kernel) {
        eprint!("{}", kernel_diff::render_unexplained(&diffs));
    }
    // Kernels that were not prepared or did not boot are reported once, below, not per case.
    let unbooted = |k: &str| out.infra.iter().any(|i| i.starts_with(&format!("{k}: ")));
    for r in out.rows.iter().filter(|r| r.agreement.is_disagreement() || r.outcome != Outcome::Ran) {
        if r.outcome == Outcome::NotRun && (unbooted(&r.kernel) || out.stopped.is_some()) {
            continue;
        }
        eprintln!(
            "{}: {} on {}: {} (kernel {} / model {}){}",
            if r.outcome == Outcome::Ran { r.agreement.as_str() } else { r.outcome.as_str() },
            r.case,
            r.kernel,
            r.file,
            r.kernel_message.as_deref().or(r.kernel_verdict.map(|v| v.as_str())).unwrap_or("-"),
            r.model_message.as_deref().unwrap_or(r.model_verdict.as_str()),
            r.note.as_deref().map(|n| format!("\n  {}", n.lines().next().unwrap_or(""))).unwrap_or_default()
        );
    }
    for i in &out.infra {
        eprintln!("infrastructure: {i}");
    }
    match out.stopped {
        Some(Stop::Interrupted(sig)) => eprintln!(
            "lockstep: {}: stopped; the {} results collected are written",
            crate::exit::Interrupted { signal: sig },
            out.rows.iter().filter(|r| r.outcome != Outcome::NotRun).count()
        ),
        Some(Stop::TimedOut) => eprintln!(
            "lockstep: timeout: the run's time limit (--timeout {} s) ran out; raise it with --timeout SECS",
            args.timeout
        ),
        None => {}
    }
    if let Some(e) = errors.into_iter().next() {
        return Err(e);
    }
    crate::github::emit(
        args.github,
        args.output.json.as_deref().is_some_and(|p| p.as_os_str() == "-"),
        &out.rows,
    );
    Ok(out.exit_code())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pinned_job_and_the_processes_it_starts_run_on_its_cpu_only() {
        let cpus = super::allowed_cpus().expect("sched_getaffinity");
        if cpus.len() < 2 {
            return; // one CPU: jobs are never pinned (run_plan::job_cpu's test covers the rule)
        }
        let n = cpus.len();
        std::thread::spawn(move || {
            super::pin_job(1, n);
            assert_eq!(super::allowed_cpus(), Some(vec![cpus[1]]));
            let out = std::process::Command::new("sh")
                .args(["-c", "grep Cpus_allowed_list /proc/self/status"])
                .output()
                .unwrap();
            let status = String::from_utf8_lossy(&out.stdout).to_string();
            assert_eq!(status.split_whitespace().nth(1), Some(cpus[1].to_string().as_str()), "{status}");
        })
        .join()
        .unwrap();
        assert_eq!(super::allowed_cpus().map(|c| c.len()), Some(n), "only the job's thread is pinned");
    }
}
