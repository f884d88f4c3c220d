//! The pure part of `lockstep run`: which cases of which kernel each guest runs, how many guests run
//! at once, the stable order of the rows whatever guest finishes first, and what the rows mean for
//! the exit code. No I/O here: `run.rs` does the kernels, guests and files.

use std::collections::BTreeMap;

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

/// One guest's share of a run: some cases of one kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestWork {
    /// Index into the run's kernel list.
    pub kernel: usize,
    /// Which part of the kernel's cases this is (0-based) ...
    pub part: usize,
    /// ... of how many guests the kernel's cases are split over.
    pub parts: usize,
    /// The cases, as indices into the run's case list, in that list's order.
    pub positions: Vec<usize>,
}

impl GuestWork {
    /// The keys of this guest's rows, in order.
    pub fn keys(&self) -> impl Iterator<Item = RowKey> + '_ {
        self.positions.iter().map(|&position| RowKey { kernel: self.kernel, position })
    }

    /// `debian:7.3`, or `debian:7.3 2/3` for the second of three guests of one kernel.
    pub fn label(&self, kernel: &str) -> String {
        if self.parts == 1 {
            kernel.to_string()
        } else {
            format!("{kernel} {}/{}", self.part + 1, self.parts)
        }
    }
}

/// The fewest cases a kernel's cases are split down to per guest: below this an extra guest (a
/// boot or a restore, seconds) costs more than the cases it would take over (milliseconds each).
pub const MIN_CASES_PER_GUEST: usize = 16;

/// The positions of the cases that shard `shard` runs on `kernel` (all of them without a shard).
pub fn shard_positions(cases: &[Case], kernel: &str, shard: Option<Shard>) -> Vec<usize> {
    let shard = shard.unwrap_or(Shard::ALL);
    (0..cases.len()).filter(|&i| shard.owns_pair(&cases[i].name, kernel)).collect()
}

/// Splits the run into guests for `jobs` guests at a time: `cases_per_kernel[k]` are the case
/// positions kernel `k` runs (kernels without cases get no guest). Every kernel gets one guest,
/// except that the jobs a whole number of kernel rounds leaves idle are given to the kernels of the
/// last, partial round, whose cases are then split into contiguous parts (at least
/// [`MIN_CASES_PER_GUEST`] each). The guests are listed kernel by kernel, parts in order, which
/// is the order they should start in.
pub fn plan_guests(cases_per_kernel: &[Vec<usize>], jobs: usize) -> Vec<GuestWork> {
    let jobs = jobs.max(1);
    let live: Vec<usize> = (0..cases_per_kernel.len()).filter(|&k| !cases_per_kernel[k].is_empty()).collect();
    let last_round = live.len() % jobs;
    let first_of_last_round = live.len() - last_round;
    let mut out = Vec::new();
    for (rank, &k) in live.iter().enumerate() {
        let positions = &cases_per_kernel[k];
        let share = if rank < first_of_last_round {
            1
        } else {
            let r = rank - first_of_last_round;
            jobs / last_round + usize::from(r < jobs % last_round)
        };
        let parts = share.min(positions.len() / MIN_CASES_PER_GUEST).max(1);
        let n = positions.len();
        for part in 0..parts {
            let chunk = positions[part * n / parts..(part + 1) * n / parts].to_vec();
            out.push(GuestWork { kernel: k, part, parts, positions: chunk });
        }
    }
    out
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

    fn sizes(plan: &[GuestWork]) -> Vec<(usize, usize)> {
        plan.iter().map(|g| (g.kernel, g.positions.len())).collect()
    }

    #[test]
    fn one_job_is_one_guest_per_kernel_in_kernel_order() {
        let per_kernel = vec![(0..100).collect(), (0..100).collect(), (0..100).collect()];
        let plan = plan_guests(&per_kernel, 1);
        assert_eq!(sizes(&plan), vec![(0, 100), (1, 100), (2, 100)]);
        assert!(plan.iter().all(|g| g.parts == 1 && g.positions == (0..100).collect::<Vec<_>>()));
    }

    #[test]
    fn the_last_partial_round_of_kernels_is_split_over_the_idle_jobs() {
        let per_kernel: Vec<Vec<usize>> = vec![(0..266).collect(); 3];
        // Two kernels fill both jobs; the third would run alone: its cases go to two guests.
        let plan = plan_guests(&per_kernel, 2);
        assert_eq!(sizes(&plan), vec![(0, 266), (1, 266), (2, 133), (2, 133)]);
        assert_eq!((plan[3].part, plan[3].parts), (1, 2));
        assert_eq!(plan[2].positions, (0..133).collect::<Vec<_>>());
        assert_eq!(plan[3].positions, (133..266).collect::<Vec<_>>());
        // As many kernels as jobs: no split.
        assert_eq!(sizes(&plan_guests(&per_kernel[..2], 2)), vec![(0, 266), (1, 266)]);
        // One kernel, four jobs: four parts covering every case once, in order.
        let plan = plan_guests(&per_kernel[..1], 4);
        assert_eq!(sizes(&plan), vec![(0, 66), (0, 67), (0, 66), (0, 67)]);
        let all: Vec<usize> = plan.iter().flat_map(|g| g.positions.clone()).collect();
        assert_eq!(all, (0..266).collect::<Vec<_>>());
        // Two kernels, three jobs: the first gets two guests, the second one.
        assert_eq!(sizes(&plan_guests(&per_kernel[..2], 3)), vec![(0, 133), (0, 133), (1, 266)]);
    }

    #[test]
    fn few_cases_are_not_split_and_kernels_without_cases_get_no_guest() {
        let per_kernel = vec![vec![], (0..5).collect(), (0..2 * MIN_CASES_PER_GUEST + 1).collect()];
        let plan = plan_guests(&per_kernel, 8);
        assert_eq!(sizes(&plan), vec![(1, 5), (2, MIN_CASES_PER_GUEST), (2, MIN_CASES_PER_GUEST + 1)]);
        assert_eq!(plan_guests(&[vec![], vec![]], 2), vec![]);
        assert_eq!(plan[0].label("debian:7.3"), "debian:7.3");
        assert_eq!(plan[2].label("debian:7.3"), "debian:7.3 2/2");
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
