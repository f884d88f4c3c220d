//! The pure part of `lockstep run`: which cases of which kernel each guest runs, how many guests run
//! at once, the stable order of the rows whatever guest finishes first, and what the rows mean for
//! the exit code. No I/O here: `run.rs` does the kernels, guests and files.

use std::collections::BTreeMap;
use std::time::Duration;

use lockstep_core::case::Case;
use lockstep_core::compare::Agreement;
use lockstep_core::shard::Shard;

use crate::exit::{EXIT_CRASH, EXIT_DISAGREE, EXIT_INFRA, EXIT_TIMEOUT, EXIT_UNJUDGED};
use crate::report::{self, RunRow};

/// Where a row belongs in the run's reports: its kernel's place in the matrix, then its case's
/// place in the run's case list. Sorting by it gives the order of a serial run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RowKey {
    /// Index into the run's kernel list.
    pub kernel: usize,
    /// Index into the run's case list (the row's `index`).
    pub position: usize,
}

/// One guest of a run: a kernel, and which of the kernel's guests it is (its cases are claimed
/// from the kernel's queue as it goes, [`Scheduler::claim`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestSlot {
    /// Index into the run's kernel list.
    pub kernel: usize,
    /// The kernel's guests started before this one (0: its first).
    pub part: usize,
    /// The run's guests started before this one (orders the infrastructure messages).
    pub unit: usize,
    /// Its vCPUs: one while kernels no guest started on remain (its job moves on to them, and
    /// a guest with more pays for them even while one runs cases: with every guest at two vCPUs
    /// a 3-kernel `--jobs 2` run took more CPU than with one, docs/speed.md session 17) or when
    /// its kernel has too few cases for a join ([`MIN_CASES_TO_JOIN`] twice); else the
    /// scheduler's, for jobs to join.
    pub vcpus: usize,
}

impl GuestSlot {
    /// `debian:7.3`, or `debian:7.3 #2` for the kernel's second guest.
    pub fn label(&self, kernel: &str) -> String {
        if self.part == 0 {
            kernel.to_string()
        } else {
            format!("{kernel} #{}", self.part + 1)
        }
    }
}

/// The fewest unclaimed cases a kernel must have for a job with nothing else to do to start one
/// more guest on it while nothing was measured yet: below this an extra guest (a boot or a
/// restore, seconds) costs more than the cases it would take over (milliseconds each).
pub const MIN_CASES_PER_GUEST: usize = 16;

/// The fewest and most cases a guest claims at a time when other guests could share its kernel
/// (with one job a guest claims all its kernel's cases at once): small enough that the guests of
/// a kernel end within a few cases of each other, large enough that the pause between two claims
/// (the pipeline drains: about one round trip) stays rare.
pub const CHUNK: (usize, usize) = (8, 64);

/// The positions of the cases that shard `shard` runs on `kernel` (all of them without a shard).
pub fn shard_positions(cases: &[Case], kernel: &str, shard: Option<Shard>) -> Vec<usize> {
    let shard = shard.unwrap_or(Shard::ALL);
    (0..cases.len()).filter(|&i| shard.owns_pair(&cases[i].name, kernel)).collect()
}

/// What a job with nothing to do does next ([`Scheduler::next_work`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// Start this guest and run its cases.
    Start(GuestSlot),
    /// Give this running guest the job's CPU for one more of its vCPUs (a guest with several,
    /// [`Scheduler::with_vcpus`]), and wait until it ends.
    Join(GuestSlot),
}

/// The fewest unclaimed cases of a kernel for a job to join its running guest: a join costs no
/// start (the guest's vCPU is there, its translated code warm), so a chunk's worth is enough.
pub const MIN_CASES_TO_JOIN: usize = CHUNK.0;

/// A guest the scheduler started: its slot, the vCPUs no job runs cases on yet, whether it runs.
#[derive(Clone, Copy, Debug)]
struct StartedGuest {
    slot: GuestSlot,
    free_vcpus: usize,
    running: bool,
}

/// Which guest runs which cases, decided as the run goes (pure: the caller reports what it
/// measured). Each kernel's cases wait in a queue, in the run's order. A job with nothing to do
/// asks [`Scheduler::next_guest`]: the next kernel no guest has started on, in the run's order;
/// once every kernel has a guest, one more guest on the kernel whose unclaimed cases would take
/// longest, if they would take longer than two guest starts (measured in this run: the kernel's
/// latest start and its own time per case, else the run's; before the kernel's first guest
/// started, at least 2 x [`MIN_CASES_PER_GUEST`] cases). A guest claims its kernel's cases a chunk at a time
/// ([`Scheduler::claim`]), so the guests of a kernel, and with them the jobs, end together
/// whichever kernel is slower on this machine today. With one job this is the serial run:
/// kernel after kernel, each in one guest that claims all its cases at once.
#[derive(Clone, Debug)]
pub struct Scheduler {
    jobs: usize,
    /// vCPUs per guest ([`Scheduler::with_vcpus`]).
    vcpus: usize,
    /// Every guest started, by unit.
    guests: Vec<StartedGuest>,
    queues: Vec<std::collections::VecDeque<usize>>,
    /// Guests started per kernel, and of those the ones still running.
    started: Vec<usize>,
    running: Vec<usize>,
    units: usize,
    /// Per kernel: cases done and the guests' time spent on them (after their start).
    done: Vec<usize>,
    busy: Vec<Duration>,
    /// Per kernel: how long its latest guest took to start (boot or restore).
    start_cost: Vec<Option<Duration>>,
}

impl Scheduler {
    /// `cases_per_kernel[k]`: the case positions kernel `k` runs (kernels without cases get no
    /// guest); `jobs` guests at a time.
    pub fn new(cases_per_kernel: &[Vec<usize>], jobs: usize) -> Scheduler {
        let n = cases_per_kernel.len();
        Scheduler {
            jobs: jobs.max(1),
            vcpus: 1,
            guests: Vec::new(),
            queues: cases_per_kernel.iter().map(|p| p.iter().copied().collect()).collect(),
            started: vec![0; n],
            running: vec![0; n],
            units: 0,
            done: vec![0; n],
            busy: vec![Duration::ZERO; n],
            start_cost: vec![None; n],
        }
    }

    /// Guests with `vcpus` vCPUs each, which a job with nothing else to do joins
    /// ([`Scheduler::next_work`]) rather than start another guest of the same kernel.
    pub fn with_vcpus(mut self, vcpus: usize) -> Scheduler {
        self.vcpus = vcpus.max(1);
        self
    }

    /// The next work for a job with nothing to do, None when there is none worth doing (the job
    /// ends): a kernel no guest has started on, in the run's order; else a vCPU of a running
    /// guest nobody runs cases on yet, on the kernel whose unclaimed cases would take longest
    /// (at least [`MIN_CASES_TO_JOIN`] of them); else another guest, as [`Scheduler::next_guest`].
    pub fn next_work(&mut self) -> Option<Work> {
        if !(0..self.queues.len()).any(|k| self.unstarted(k)) {
            let join = (0..self.guests.len())
                .filter(|&u| {
                    let g = &self.guests[u];
                    g.running && g.free_vcpus > 0 && self.queues[g.slot.kernel].len() >= MIN_CASES_TO_JOIN
                })
                .max_by(|&a, &b| {
                    let (ka, kb) = (self.guests[a].slot.kernel, self.guests[b].slot.kernel);
                    self.left(ka).total_cmp(&self.left(kb)).then(b.cmp(&a))
                });
            if let Some(u) = join {
                self.guests[u].free_vcpus -= 1;
                return Some(Work::Join(self.guests[u].slot));
            }
        }
        self.next_guest().map(Work::Start)
    }

    /// Whether kernel `k` has cases and no guest started on it yet.
    fn unstarted(&self, k: usize) -> bool {
        self.started[k] == 0 && !self.queues[k].is_empty()
    }

    /// Guest `slot` ended: as [`Scheduler::guest_ended`], and no job joins it any more.
    pub fn guest_done(&mut self, slot: GuestSlot) -> Vec<usize> {
        if let Some(g) = self.guests.get_mut(slot.unit) {
            g.running = false;
        }
        self.guest_ended(slot.kernel)
    }

    /// The key of every row the run will have.
    pub fn keys(&self) -> Vec<RowKey> {
        let mut keys = Vec::new();
        for (kernel, q) in self.queues.iter().enumerate() {
            keys.extend(q.iter().map(|&position| RowKey { kernel, position }));
        }
        keys
    }

    /// The next guest for a job with nothing to do, None when no guest is worth starting (the
    /// job ends).
    pub fn next_guest(&mut self) -> Option<GuestSlot> {
        let n = self.queues.len();
        let fresh = (0..n).find(|&k| self.unstarted(k));
        let kernel = fresh.or_else(|| {
            (0..n)
                .filter(|&k| self.running[k] > 0 && self.worth_another_guest(k))
                // Fewest guests first (the kernel order among equals: the same choice at the
                // start of every run), then the most work left.
                .min_by(|&a, &b| {
                    self.running[a]
                        .cmp(&self.running[b])
                        .then(self.left(b).total_cmp(&self.left(a)))
                        .then(a.cmp(&b))
                })
        })?;
        let others_fresh = (0..n).any(|k| k != kernel && self.unstarted(k));
        let few = self.queues[kernel].len() < 2 * MIN_CASES_TO_JOIN;
        let vcpus = if others_fresh || few { 1 } else { self.vcpus };
        let slot = GuestSlot { kernel, part: self.started[kernel], unit: self.units, vcpus };
        self.guests.push(StartedGuest { slot, free_vcpus: vcpus - 1, running: true });
        self.started[kernel] += 1;
        self.running[kernel] += 1;
        self.units += 1;
        Some(slot)
    }

    /// The estimated seconds of kernel `k`'s unclaimed cases (its measured time per case, else
    /// the run's, else 0).
    fn left(&self, k: usize) -> f64 {
        self.queues[k].len() as f64 * self.per_case(k).unwrap_or(0.0)
    }

    /// Seconds per case on kernel `k` so far, else on all kernels so far.
    fn per_case(&self, k: usize) -> Option<f64> {
        let rate = |done: usize, busy: Duration| (done > 0).then(|| busy.as_secs_f64() / done as f64);
        rate(self.done[k], self.busy[k]).or_else(|| rate(self.done.iter().sum(), self.busy.iter().sum()))
    }

    fn worth_another_guest(&self, k: usize) -> bool {
        let left = self.queues[k].len();
        // One more guest of `k` would take as long to start as its latest one (a restore of the
        // same snapshot, in the page cache by then). Not another kernel's: the first starts of
        // a run, two at once, take several times as long as a later one alone.
        match (self.per_case(k), self.start_cost[k]) {
            (Some(_), Some(start)) => self.left(k) > 2.0 * start.as_secs_f64(),
            _ => left >= 2 * MIN_CASES_PER_GUEST,
        }
    }

    /// The next cases for a guest of `kernel`, in the run's order (empty: none left).
    pub fn claim(&mut self, kernel: usize) -> Vec<usize> {
        let q = &mut self.queues[kernel];
        let n = if self.jobs == 1 {
            q.len()
        } else {
            q.len().div_ceil(2 * self.jobs).clamp(CHUNK.0, CHUNK.1).min(q.len())
        };
        q.drain(..n).collect()
    }

    /// Every unclaimed case of `kernel`.
    pub fn claim_all(&mut self, kernel: usize) -> Vec<usize> {
        self.queues[kernel].drain(..).collect()
    }

    /// A guest of `kernel` started (booted or restored, and its first case, the slow one of a
    /// fresh TCG guest) in `took`.
    pub fn guest_started(&mut self, kernel: usize, took: Duration) {
        self.start_cost[kernel] = Some(took);
    }

    /// A guest of `kernel` spent `busy` on `cases` cases (from its start or its previous claim).
    pub fn measured(&mut self, kernel: usize, cases: usize, busy: Duration) {
        self.done[kernel] += cases;
        self.busy[kernel] += busy;
    }

    /// A guest of `kernel` ended; when it was the kernel's last one running, the cases nobody
    /// claimed (none, unless its guests could not go on), which no later guest will take.
    pub fn guest_ended(&mut self, kernel: usize) -> Vec<usize> {
        self.running[kernel] = self.running[kernel].saturating_sub(1);
        if self.running[kernel] == 0 {
            self.claim_all(kernel)
        } else {
            Vec::new()
        }
    }
}

/// What each guest is counted as in memory: its RAM and QEMU's own (TCG translation cache,
/// devices, I/O buffers), in MiB.
pub fn guest_footprint_mib(guest_ram_mib: u64) -> u64 {
    guest_ram_mib + 256
}

/// The guests that may run at once: `requested`, at most what `available_mib` (the host's
/// `MemAvailable`, None when unknown) holds at `per_guest_mib` each, and at least one; with the
/// reason when memory lowered it.
pub fn jobs_for_memory(
    requested: usize,
    available_mib: Option<u64>,
    per_guest_mib: u64,
) -> (usize, Option<String>) {
    let requested = requested.max(1);
    let Some(avail) = available_mib else { return (requested, None) };
    let fit = (avail / per_guest_mib.max(1)) as usize;
    if fit >= requested {
        return (requested, None);
    }
    let jobs = fit.max(1);
    let note = format!(
        "{requested} jobs lowered to {jobs}: {avail} MiB of memory available, {per_guest_mib} MiB per guest \
         (its RAM plus QEMU's own)"
    );
    (jobs, Some(note))
}

/// The CPU job `job` of `jobs` is pinned to, given the CPUs the process may use: its own when there
/// are as many jobs as CPUs (and more than one), else none (fewer jobs leave the scheduler free
/// to place them; more jobs than CPUs must share them anyway).
pub fn job_cpu(job: usize, jobs: usize, allowed: &[usize]) -> Option<usize> {
    (jobs > 1 && allowed.len() == jobs).then(|| allowed.get(job).copied()).flatten()
}

/// Rows arriving in any order, handed out in key order as soon as every row before them arrived:
/// the order of a serial run, for a consumer that cannot re-sort (JSON lines on stdout).
pub struct ReorderBuffer<T> {
    /// Every key expected, sorted.
    order: Vec<RowKey>,
    /// How many of `order` were handed out or skipped.
    next: usize,
    pending: BTreeMap<RowKey, T>,
    skipped: std::collections::BTreeSet<RowKey>,
}

impl<T> ReorderBuffer<T> {
    /// A buffer expecting a row for each of `keys`.
    pub fn new(keys: impl IntoIterator<Item = RowKey>) -> ReorderBuffer<T> {
        let mut order: Vec<RowKey> = keys.into_iter().collect();
        order.sort();
        ReorderBuffer { order, next: 0, pending: BTreeMap::new(), skipped: Default::default() }
    }

    /// Takes a row; returns the rows now ready, in order.
    pub fn push(&mut self, key: RowKey, row: T) -> Vec<T> {
        self.pending.insert(key, row);
        self.drain()
    }

    /// No row will come for `keys` (their kernel was never prepared); returns the rows now ready.
    pub fn skip(&mut self, keys: impl IntoIterator<Item = RowKey>) -> Vec<T> {
        self.skipped.extend(keys);
        self.drain()
    }

    /// Every row still held, in order (the run ended).
    pub fn finish(self) -> Vec<T> {
        self.pending.into_values().collect()
    }

    fn drain(&mut self) -> Vec<T> {
        let mut ready = Vec::new();
        while let Some(k) = self.order.get(self.next) {
            if let Some(row) = self.pending.remove(k) {
                ready.push(row);
            } else if !self.skipped.remove(k) {
                break;
            }
            self.next += 1;
        }
        ready
    }
}

/// Why a run stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT or SIGTERM (the signal number).
    Interrupted(i32),
    /// The run's time limit (`--timeout`).
    TimedOut,
}

/// The note of a case not run because the run stopped.
pub fn stop_reason(stop: Stop, timeout: u64) -> String {
    match stop {
        Stop::Interrupted(sig) => format!("not run ({})", crate::exit::Interrupted { signal: sig }),
        Stop::TimedOut => {
            format!("not run (timeout: the run's time limit, --timeout {timeout} s, ran out: raise it with --timeout SECS)")
        }
    }
}

/// Everything `run` produced, plus what it means for the exit code.
pub struct RunOutput {
    /// The rows, in [`RowKey`] order.
    pub rows: Vec<RunRow>,
    /// Kernels that could not be prepared or booted, with the reason.
    pub infra: Vec<String>,
    /// Programs of object inputs judged by neither side do not change the exit code.
    pub allow_skips: bool,
    /// Why the run stopped early, if it did.
    pub stopped: Option<Stop>,
}

impl RunOutput {
    /// The exit code: interrupted (128 + signal) > timeout > crash > infrastructure > programs
    /// of an object not judged at all (unless `allow_skips`) > disagreement (with the model, or a
    /// kernel missing a case's own expectation) > success.
    pub fn exit_code(&self) -> u8 {
        let s = report::summarize(&self.rows);
        let infra_row = |r: &RunRow| r.agreement == Agreement::Infra && !report::unjudged(r);
        if let Some(Stop::Interrupted(sig)) = self.stopped {
            (128 + sig) as u8
        } else if s.timeouts > 0 || self.stopped == Some(Stop::TimedOut) {
            EXIT_TIMEOUT
        } else if s.crashes > 0 || s.warnings > 0 {
            EXIT_CRASH
        } else if !self.infra.is_empty() || self.rows.iter().any(infra_row) {
            EXIT_INFRA
        } else if s.object_unjudged > 0 && !self.allow_skips {
            EXIT_UNJUDGED
        } else if self.rows.iter().any(|r| r.agreement.is_disagreement() || r.kernel_expected == Some(false))
        {
            EXIT_DISAGREE
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Outcome;
    use lockstep_core::verdict::VerdictKind;

    fn out(rows: Vec<RunRow>, stopped: Option<Stop>) -> RunOutput {
        RunOutput { rows, infra: Vec::new(), allow_skips: false, stopped }
    }

    fn with(outcome: Outcome, agreement: Agreement) -> RunRow {
        RunRow { outcome, ..report::test_row("c", "k", VerdictKind::Accept, agreement) }
    }

    /// Claims every case of `slot`'s kernel and ends the guest (its job is free again).
    fn finish(s: &mut Scheduler, slot: GuestSlot) {
        while !s.claim(slot.kernel).is_empty() {}
        assert!(s.guest_done(slot).is_empty());
    }

    fn started(w: Option<Work>) -> GuestSlot {
        match w {
            Some(Work::Start(slot)) => slot,
            other => panic!("not a start: {other:?}"),
        }
    }

    #[test]
    fn a_job_joins_the_last_kernels_guest_instead_of_starting_another() {
        let cases = vec![(0..100).collect::<Vec<_>>(); 3];
        let mut s = Scheduler::new(&cases, 2).with_vcpus(2);
        let (a, b) = (started(s.next_work()), started(s.next_work()));
        // Kernels 0 and 1 start while kernel 2 waits: one vCPU each (their jobs move on to it).
        assert_eq!((a.kernel, a.vcpus, b.kernel, b.vcpus), (0, 1, 1, 1));
        finish(&mut s, a);
        let c = started(s.next_work());
        assert_eq!((c.kernel, c.vcpus), (2, 2), "the last kernel's guest has a vCPU per job");
        s.claim(2);
        finish(&mut s, b);
        assert_eq!(s.next_work(), Some(Work::Join(c)), "the free job joins it");
        // A third job would find no vCPU left: another guest, as without joins.
        let d = started(s.next_work());
        assert_eq!((d.kernel, d.part), (2, 1));
    }

    #[test]
    fn one_kernel_runs_in_one_guest_that_every_job_joins() {
        let mut s = Scheduler::new(&[(0..100).collect()], 3).with_vcpus(3);
        let a = started(s.next_work());
        assert_eq!(a.vcpus, 3);
        assert_eq!(s.next_work(), Some(Work::Join(a)));
        assert_eq!(s.next_work(), Some(Work::Join(a)));
        // Once it ended nobody joins it, and no other guest starts for a kernel without cases.
        finish(&mut s, a);
        assert_eq!(s.next_work(), None);
    }

    #[test]
    fn no_join_without_cases_enough_or_vcpus() {
        // Too few cases: one vCPU, and neither a join nor a second guest.
        let mut s = Scheduler::new(&[(0..2 * MIN_CASES_TO_JOIN - 1).collect()], 2).with_vcpus(2);
        assert_eq!(started(s.next_work()).vcpus, 1);
        assert_eq!(s.next_work(), None);
        // Enough at the start, but fewer than a chunk's worth left by the time a job is free.
        let mut s = Scheduler::new(&[(0..40).collect()], 2).with_vcpus(2);
        assert_eq!(started(s.next_work()).vcpus, 2);
        let mut claimed = 0;
        while 40 - claimed >= MIN_CASES_TO_JOIN {
            claimed += s.claim(0).len();
        }
        assert_eq!(s.next_work(), None, "{} cases left", 40 - claimed);
        // One vCPU per guest (the default): the second job starts a guest of its own.
        let mut s = Scheduler::new(&[(0..100).collect()], 2);
        assert_eq!(started(s.next_work()).vcpus, 1);
        assert_eq!(started(s.next_work()).part, 1);
    }

    #[test]
    fn jobs_get_a_cpu_each_only_when_they_are_as_many_as_the_cpus() {
        assert_eq!(job_cpu(0, 2, &[0, 1]), Some(0));
        assert_eq!(job_cpu(1, 2, &[2, 5]), Some(5));
        assert_eq!(job_cpu(0, 1, &[0]), None, "one job on one CPU: nothing to choose");
        assert_eq!(job_cpu(0, 2, &[0, 1, 2, 3]), None, "fewer jobs than CPUs");
        assert_eq!(job_cpu(2, 3, &[0, 1]), None, "more jobs than CPUs");
    }

    #[test]
    fn exit_codes_name_what_happened() {
        let ok = with(Outcome::Ran, Agreement::Agree);
        assert_eq!(out(vec![ok.clone()], None).exit_code(), 0);
        let missed = RunRow { kernel_expected: Some(false), ..ok.clone() };
        assert_eq!(out(vec![ok.clone(), missed], None).exit_code(), EXIT_DISAGREE);
        let lost = with(Outcome::Infra, Agreement::Infra);
        assert_eq!(out(vec![ok.clone(), lost.clone()], None).exit_code(), EXIT_INFRA);
        let crash = with(Outcome::Crash, Agreement::Infra);
        assert_eq!(out(vec![lost, crash.clone()], None).exit_code(), EXIT_CRASH);
        let timeout = with(Outcome::Timeout, Agreement::Infra);
        assert_eq!(out(vec![crash.clone(), timeout], None).exit_code(), EXIT_TIMEOUT);
        assert_eq!(out(vec![ok.clone()], Some(Stop::TimedOut)).exit_code(), EXIT_TIMEOUT);
        assert_eq!(out(vec![crash], Some(Stop::Interrupted(15))).exit_code(), 143);
        assert_eq!(out(vec![ok], Some(Stop::Interrupted(2))).exit_code(), 130);
    }

    /// Runs a plan to its end the way `run.rs` does, a job at a time: (kernel, part, cases)
    /// of each claim, in claim order.
    fn claims(s: &mut Scheduler) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::new();
        while let Some(g) = s.next_guest() {
            loop {
                let c = s.claim(g.kernel);
                if c.is_empty() {
                    break;
                }
                out.push((g.kernel, g.part, c.len()));
            }
            s.guest_ended(g.kernel);
        }
        out
    }

    #[test]
    fn one_job_is_one_guest_per_kernel_in_kernel_order_claiming_everything() {
        let per_kernel: Vec<Vec<usize>> = vec![(0..100).collect(); 3];
        let mut s = Scheduler::new(&per_kernel, 1);
        assert_eq!(s.keys().len(), 300);
        let g = s.next_guest().unwrap();
        assert_eq!((g.kernel, g.part, g.unit), (0, 0, 0));
        assert_eq!(s.claim(0), (0..100).collect::<Vec<_>>());
        assert!(s.claim(0).is_empty());
        s.guest_ended(0);
        assert_eq!(claims(&mut s), vec![(1, 0, 100), (2, 0, 100)]);
    }

    #[test]
    fn every_kernel_gets_a_guest_first_then_idle_jobs_help_the_kernel_with_fewest_guests() {
        let per_kernel: Vec<Vec<usize>> = vec![(0..266).collect(); 3];
        let mut s = Scheduler::new(&per_kernel, 2);
        let (a, b) = (s.next_guest().unwrap(), s.next_guest().unwrap());
        assert_eq!((a.kernel, b.kernel), (0, 1));
        // Chunks: a quarter of what is left per job pair, within CHUNK.
        assert_eq!(s.claim(0), (0..64).collect::<Vec<_>>());
        assert_eq!(s.claim(0), (64..115).collect::<Vec<_>>());
        // Kernel 0's job is free first (its first guest ended): the fresh kernel 2.
        s.guest_started(0, Duration::from_millis(300));
        s.guest_started(1, Duration::from_millis(900));
        s.measured(0, 266, Duration::from_secs(1));
        s.claim_all(0);
        s.guest_ended(0);
        let c = s.next_guest().unwrap();
        assert_eq!((c.kernel, c.part, c.unit), (2, 0, 2));
        // Kernel 1's job is free next while kernel 2's first guest has not started yet: its
        // 202 cases left are more than 2 x MIN_CASES_PER_GUEST, a second guest on kernel 2.
        s.claim_all(1);
        s.guest_ended(1);
        s.claim(2);
        let d = s.next_guest().unwrap();
        assert_eq!((d.kernel, d.part, d.unit), (2, 1, 3));
        assert_eq!(d.label("debian:7.3"), "debian:7.3 #2");
        assert_eq!(c.label("debian:7.3"), "debian:7.3");
    }

    #[test]
    fn a_kernel_nearly_done_gets_no_more_guests() {
        let per_kernel: Vec<Vec<usize>> = vec![(0..300).collect(), (0..300).collect()];
        let mut s = Scheduler::new(&per_kernel, 2);
        let (_, _) = (s.next_guest().unwrap(), s.next_guest().unwrap());
        s.guest_started(0, Duration::from_millis(100));
        s.guest_started(1, Duration::from_millis(2000));
        s.guest_started(1, Duration::from_millis(500));
        assert_eq!(s.claim(1).len(), 64);
        s.measured(1, 100, Duration::from_millis(400));
        s.claim_all(0);
        s.guest_ended(0);
        // 236 cases x 4 ms = 0.94 s left on kernel 1, under two of its latest start (1 s): not
        // worth a guest.
        assert_eq!(s.next_guest(), None);
        // Measured slower: 236 x 10 ms = 2.4 s, worth one.
        s.measured(1, 0, Duration::from_millis(600));
        assert_eq!(s.next_guest().map(|g| (g.kernel, g.part)), Some((1, 1)));
    }

    #[test]
    fn before_any_measure_a_kernel_is_shared_from_twice_the_minimum_and_every_case_is_claimed_once() {
        // Two kernels on three jobs: the third job helps the first kernel (as the kernel order
        // says), not the second.
        let per_kernel: Vec<Vec<usize>> = vec![(0..50).collect(), (0..50).collect()];
        let mut s = Scheduler::new(&per_kernel, 3);
        let g: Vec<(usize, usize)> =
            (0..3).map(|_| s.next_guest().map(|g| (g.kernel, g.part)).unwrap()).collect();
        assert_eq!(g, vec![(0, 0), (1, 0), (0, 1)]);
        let mut all = Vec::new();
        loop {
            let c = s.claim(0);
            if c.is_empty() {
                break;
            }
            assert!(c.len() <= CHUNK.1);
            all.extend(c);
        }
        assert_eq!(all, (0..50).collect::<Vec<_>>(), "in order, each once");
        let few: Vec<Vec<usize>> = vec![vec![], (0..5).collect(), (0..2 * MIN_CASES_PER_GUEST - 1).collect()];
        let mut s = Scheduler::new(&few, 8);
        assert_eq!(claims(&mut s), vec![(1, 0, 5), (2, 0, 8), (2, 0, 8), (2, 0, 8), (2, 0, 7)]);
        assert_eq!(Scheduler::new(&[vec![], vec![]], 2).next_guest(), None);
    }

    #[test]
    fn the_last_guest_of_a_kernel_to_end_takes_what_nobody_claimed() {
        let mut s = Scheduler::new(&[(0..100).collect()], 2);
        let (a, b) = (s.next_guest().unwrap(), s.next_guest().unwrap());
        assert_eq!((a.part, b.part), (0, 1));
        assert_eq!(s.claim(0).len(), 25);
        // The first guest could not go on: the other still runs and will claim the rest.
        assert!(s.guest_ended(0).is_empty());
        assert_eq!(s.claim(0).len(), 19);
        assert_eq!(s.guest_ended(0), (44..100).collect::<Vec<_>>());
        assert_eq!(s.next_guest(), None, "no guest starts on a kernel with none running");
    }

    #[test]
    fn memory_caps_the_jobs_and_says_why() {
        assert_eq!(jobs_for_memory(2, Some(20_000), 768), (2, None));
        assert_eq!(jobs_for_memory(4, None, 768), (4, None));
        let (jobs, note) = jobs_for_memory(8, Some(2_000), 768);
        assert_eq!(jobs, 2);
        assert!(note.unwrap().contains("2000 MiB of memory available, 768 MiB per guest"));
        assert_eq!(jobs_for_memory(2, Some(100), 768).0, 1, "one guest runs whatever the memory");
        assert_eq!(jobs_for_memory(0, Some(20_000), 768), (1, None));
        assert_eq!(guest_footprint_mib(512), 768);
    }

    fn key(kernel: usize, position: usize) -> RowKey {
        RowKey { kernel, position }
    }

    #[test]
    fn the_reorder_buffer_hands_out_rows_in_serial_order() {
        let keys = [key(0, 0), key(0, 2), key(1, 0), key(1, 2)];
        let mut b = ReorderBuffer::new(keys.iter().rev().copied());
        assert_eq!(b.push(key(1, 0), "1.0"), Vec::<&str>::new(), "kernel 0 first");
        assert_eq!(b.push(key(0, 2), "0.2"), Vec::<&str>::new());
        assert_eq!(b.push(key(0, 0), "0.0"), vec!["0.0", "0.2", "1.0"]);
        assert_eq!(b.push(key(1, 2), "1.2"), vec!["1.2"]);
        assert!(b.finish().is_empty());
    }

    #[test]
    fn skipped_rows_release_the_ones_after_them_and_finish_flushes_the_rest() {
        let keys = [key(0, 0), key(0, 1), key(1, 0), key(2, 0)];
        let mut b = ReorderBuffer::new(keys);
        assert!(b.push(key(1, 0), "1.0").is_empty());
        assert_eq!(b.skip([key(0, 0), key(0, 1)]), vec!["1.0"]);
        assert!(b.push(key(2, 5), "2.5").is_empty(), "not expected: held until the end");
        assert_eq!(b.finish(), vec!["2.5"]);
    }
}
