//! Running many cases through as few guests as possible, surviving crashes.
//!
//! Cases run in order in one guest. When the guest dies (panic, or QEMU ending without one) while
//! case `i` runs, a fresh guest resumes at `i`; if `i` kills a guest a second time it is reported
//! ([`BatchEvent::Crashed`], with the outcome that tells a kernel crash from QEMU dying) and the
//! next guest resumes at `i + 1`. A case that outlives its time limit is reported as timed out at
//! once (running it again would only take as long) and a fresh guest resumes at `i + 1`. The run's
//! deadline and SIGINT/SIGTERM stop the batch: [`BatchSummary::stopped`]. Results are handed to the
//! callback as they arrive, so nothing streamed is lost. Boot failures are retried up to
//! `boot_attempts` times in a row.
//!
//! The agent writes results in batches, so a guest may end with several cases unanswered, some of
//! them finished, without saying which one it was running ([`super::pipeline::Stopped::exact`]).
//! Then no case is charged: a fresh guest runs those cases again one at a time (one in flight),
//! where a case that kills its guest or outlives its limit is alone in flight and is charged as
//! above, and the others get their verdicts.

use std::time::Duration;

use lockstep_core::case::Case;
use lockstep_core::proto::{KernelResult, KfuncListing, ModuleStatus};

use super::{GuestConfig, GuestError, GuestOutcome, GuestRun, Limit, Stage};

/// What a crash of case `i` means for the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashDecision {
    /// First crash: run it again in a fresh guest.
    Retry,
    /// Second crash: report it and move on.
    GiveUp,
}

/// The pure bookkeeping of a batch.
#[derive(Clone, Debug)]
pub struct BatchPlan {
    len: usize,
    next: usize,
    crashes: Vec<u8>,
    boot_failures_in_a_row: u32,
    max_boot_attempts: u32,
}

impl BatchPlan {
    /// A plan for `len` cases, retrying a failed boot up to `max_boot_attempts` times in a row.
    pub fn new(len: usize, max_boot_attempts: u32) -> Self {
        BatchPlan { len, next: 0, crashes: vec![0; len], boot_failures_in_a_row: 0, max_boot_attempts }
    }
    /// The next case to run.
    pub fn next_case(&self) -> Option<usize> {
        (self.next < self.len).then_some(self.next)
    }
    /// Case `i` produced a result, or timed out (it is not run again).
    pub fn completed(&mut self, i: usize) {
        debug_assert_eq!(i, self.next);
        self.next = i + 1;
    }
    /// A guest booted.
    pub fn booted(&mut self) {
        self.boot_failures_in_a_row = 0;
    }
    /// Case `i` killed its guest.
    pub fn crashed(&mut self, i: usize) -> CrashDecision {
        self.crashes[i] += 1;
        if self.crashes[i] >= 2 {
            self.next = i + 1;
            CrashDecision::GiveUp
        } else {
            CrashDecision::Retry
        }
    }
    /// A guest failed to boot; whether to try again.
    pub fn boot_failed(&mut self) -> bool {
        self.boot_failures_in_a_row += 1;
        self.boot_failures_in_a_row < self.max_boot_attempts
    }
    /// Cases not yet run.
    pub fn remaining(&self) -> std::ops::Range<usize> {
        self.next..self.len
    }
}

/// Options of [`run_batch`].
#[derive(Clone, Debug)]
pub struct BatchOptions {
    pub guest: GuestConfig,
    /// Ask the agent for full verifier logs.
    pub want_log: bool,
    /// Boot attempts in a row before giving up (a boot-time oops under TCG happens).
    pub boot_attempts: u32,
}

/// What happened, in order; handed to the callback of [`run_batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchEvent {
    /// A guest said `Hello`.
    Booted { release: String, module: ModuleStatus, extra_modules: Vec<ModuleStatus>, boot_time: Duration },
    /// A guest failed to boot (`will_retry` tells whether another attempt follows).
    BootFailed { outcome: GuestOutcome, will_retry: bool },
    /// Case `index` (into the slice given to `run_batch`) produced a result.
    Result { index: usize, result: KernelResult, warnings: Vec<String>, elapsed: Duration },
    /// Case `index` killed the guest for the first time; it will be retried in a fresh guest.
    Retrying { index: usize, outcome: GuestOutcome },
    /// Case `index` killed a guest twice: not retried. `outcome` tells a kernel crash
    /// ([`GuestOutcome::Panic`]) from QEMU ending without one ([`GuestOutcome::Exited`]).
    Crashed { index: usize, outcome: GuestOutcome },
    /// Case `index` outlived its time limit (or the run's): not retried.
    TimedOut { index: usize, outcome: GuestOutcome },
}

/// Totals of a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchSummary {
    pub results: usize,
    pub crashed: Vec<usize>,
    /// Cases never run (the guest could not be booted, or the batch stopped).
    pub unrun: Vec<usize>,
    /// Cases that outlived their time limit.
    pub timed_out: Vec<usize>,
    /// Why the batch stopped before its end: [`GuestOutcome::Interrupted`] or the run's
    /// deadline ([`GuestOutcome::Timeout`] with [`Limit::Run`]).
    pub stopped: Option<GuestOutcome>,
    pub boots: u32,
    /// How the last guest ended.
    pub last_outcome: Option<GuestOutcome>,
}

/// What one boot attempt of [`Session`] gave.
enum Boot {
    Live,
    Retry,
    GiveUp,
    /// Interrupted, or the run's deadline passed: boot nothing more.
    Stop(GuestOutcome),
}

impl GuestOutcome {
    /// Whether this ends the whole run rather than one guest (a signal, the run's deadline,
    /// lockstep's own stop).
    pub fn stops_the_run(&self) -> bool {
        matches!(
            self,
            GuestOutcome::Interrupted { .. }
                | GuestOutcome::Cancelled
                | GuestOutcome::Timeout { limit: Limit::Run, .. }
        )
    }
}

/// The reason not to boot another guest, if there is one.
fn stop_before_boot(cfg: &GuestConfig) -> Option<GuestOutcome> {
    if let Some(sig) = crate::interrupt::pending() {
        return Some(GuestOutcome::Interrupted { signal: sig as i32 });
    }
    if crate::interrupt::stop_requested() {
        return Some(GuestOutcome::Cancelled);
    }
    cfg.timeouts.run_deadline.filter(|&d| std::time::Instant::now() >= d).map(|_| GuestOutcome::Timeout {
        stage: Stage::Boot,
        limit: Limit::Run,
        after: Duration::ZERO,
        excerpt: String::new(),
    })
}

/// A guest kept alive across calls to [`Session::run`] (fuzzing, many batches on one kernel).
/// Crashes and boot failures are handled as in [`run_batch`]; a fresh guest is booted on demand.
pub struct Session {
    opts: BatchOptions,
    guest: Option<GuestRun>,
    hello: Option<super::Hello>,
    /// Shared with every guest the session starts ([`Session::share_workers`]).
    workers: Option<super::workers::WorkerCpus>,
}

impl Session {
    /// A session; no guest is booted until the first [`Session::run`].
    pub fn new(opts: BatchOptions) -> Self {
        Session { opts, guest: None, hello: None, workers: None }
    }

    /// Lets the session's guests (the live one and any started later) run cases on the vCPUs
    /// added to `workers` (a guest with several, [`super::GuestConfig::vcpus`]).
    pub fn share_workers(&mut self, workers: super::workers::WorkerCpus) {
        if let Some(g) = &mut self.guest {
            g.share_workers(workers.clone());
        }
        self.workers = Some(workers);
    }

    /// The greeting of the live guest, if one is booted.
    pub fn hello(&self) -> Option<&super::Hello> {
        self.hello.as_ref()
    }

    /// Boots a guest unless one is live (one attempt; `plan` counts failures in a row).
    fn boot(
        &mut self,
        plan: &mut BatchPlan,
        summary: &mut BatchSummary,
        on_event: &mut dyn FnMut(BatchEvent),
    ) -> Result<Boot, GuestError> {
        if self.guest.is_some() {
            return Ok(Boot::Live);
        }
        if let Some(o) = stop_before_boot(&self.opts.guest) {
            return Ok(Boot::Stop(o));
        }
        let started = match super::snapshot::start_guest(&self.opts.guest) {
            Ok(s) => s,
            Err(GuestError::Stopped(o)) => return Ok(Boot::Stop(o)),
            Err(e) => return Err(e),
        };
        let mut g = started.guest;
        if let Some(w) = &self.workers {
            g.share_workers(w.clone());
        }
        summary.boots += 1;
        match started.hello {
            Ok(h) => {
                plan.booted();
                on_event(BatchEvent::Booted {
                    release: h.release.clone(),
                    module: h.module.clone(),
                    extra_modules: h.extra_modules.clone(),
                    boot_time: h.boot_time,
                });
                self.hello = Some(h);
                self.guest = Some(g);
                Ok(Boot::Live)
            }
            Err(outcome) if outcome.stops_the_run() => Ok(Boot::Stop(outcome)),
            Err(outcome) => {
                let will_retry = plan.boot_failed();
                on_event(BatchEvent::BootFailed { outcome: outcome.clone(), will_retry });
                summary.last_outcome = Some(outcome);
                Ok(if will_retry { Boot::Retry } else { Boot::GiveUp })
            }
        }
    }

    /// Asks the live guest (booted if needed, with the usual boot retries) for the running
    /// kernel's kfuncs. `Ok(Err(outcome))`: no guest booted, or it died answering (it is then
    /// dropped; the next call boots a fresh one).
    pub fn list_kfuncs(
        &mut self,
        on_event: &mut dyn FnMut(BatchEvent),
    ) -> Result<Result<KfuncListing, GuestOutcome>, GuestError> {
        let mut plan = BatchPlan::new(1, self.opts.boot_attempts.max(1));
        let mut summary = BatchSummary::default();
        loop {
            match self.boot(&mut plan, &mut summary, on_event)? {
                Boot::Live => break,
                Boot::Retry => {}
                Boot::Stop(o) => return Ok(Err(o)),
                Boot::GiveUp => {
                    return Ok(Err(summary.last_outcome.unwrap_or(GuestOutcome::Timeout {
                        stage: Stage::Boot,
                        limit: Limit::Boot,
                        after: self.opts.guest.timeouts.boot,
                        excerpt: String::new(),
                    })))
                }
            }
        }
        let guest = self.guest.as_mut().expect("booted");
        let r = guest.list_kfuncs();
        if r.is_err() {
            self.guest = None;
            self.hello = None;
        }
        Ok(r)
    }

    /// Runs `cases` in the live guest, booting (again) when needed (see the module docs).
    pub fn run(
        &mut self,
        cases: &[Case],
        on_event: &mut dyn FnMut(BatchEvent),
    ) -> Result<BatchSummary, GuestError> {
        let mut plan = BatchPlan::new(cases.len(), self.opts.boot_attempts.max(1));
        let mut summary = BatchSummary::default();
        // Cases before this index run one at a time (after a guest ended with several unanswered).
        let mut solo_until = 0usize;
        while let Some(i) = plan.next_case() {
            match self.boot(&mut plan, &mut summary, on_event)? {
                Boot::Live => {}
                Boot::Retry => continue,
                Boot::GiveUp => {
                    summary.unrun = plan.remaining().collect();
                    return Ok(summary);
                }
                Boot::Stop(o) => {
                    summary.unrun = plan.remaining().collect();
                    summary.stopped = Some(o);
                    return Ok(summary);
                }
            }
            let guest = self.guest.as_mut().expect("booted");
            // Pipelined from case i on, or one case at a time up to `solo_until` (see below).
            let (window, end) =
                if i < solo_until { (1, solo_until) } else { (super::pipeline::DEFAULT_WINDOW, cases.len()) };
            let mut on_reply = |k: usize, r: super::CaseReply| {
                plan.completed(i + k);
                summary.results += 1;
                on_event(BatchEvent::Result {
                    index: i + k,
                    result: r.result,
                    warnings: r.warnings,
                    elapsed: r.elapsed,
                });
            };
            if let Err(stop) = guest.run_cases(&cases[i..end], self.opts.want_log, window, &mut on_reply) {
                let outcome = stop.outcome;
                let i = i + stop.index;
                self.guest = None;
                self.hello = None;
                summary.last_outcome = Some(outcome.clone());
                if let GuestOutcome::Interrupted { .. } | GuestOutcome::Cancelled = outcome {
                    summary.unrun = plan.remaining().collect();
                    summary.stopped = Some(outcome);
                    return Ok(summary);
                }
                if !stop.exact && !outcome.stops_the_run() {
                    // Several cases were unanswered and the agent may have finished some of them
                    // (it writes results in batches): run them again one at a time in a fresh
                    // guest, where a case that kills the guest or outlives its limit is alone in
                    // flight and charged, and the others get their verdicts.
                    solo_until = i + stop.in_flight;
                    tracing::warn!(
                        "the guest ended with {} cases unanswered ({}): running cases {i}..{solo_until} \
                         again one at a time",
                        stop.in_flight,
                        outcome_kind(&outcome),
                    );
                    continue;
                }
                if let GuestOutcome::Timeout { .. } = outcome {
                    plan.completed(i);
                    summary.timed_out.push(i);
                    on_event(BatchEvent::TimedOut { index: i, outcome: outcome.clone() });
                    if outcome.stops_the_run() {
                        summary.unrun = plan.remaining().collect();
                        summary.stopped = Some(outcome);
                        return Ok(summary);
                    }
                    continue;
                }
                match plan.crashed(i) {
                    CrashDecision::Retry => on_event(BatchEvent::Retrying { index: i, outcome }),
                    CrashDecision::GiveUp => {
                        summary.crashed.push(i);
                        on_event(BatchEvent::Crashed { index: i, outcome });
                    }
                }
            }
        }
        Ok(summary)
    }

    /// Shuts the live guest down; how it ended (None if no guest was running).
    pub fn close(mut self) -> Option<GuestOutcome> {
        self.hello = None;
        self.guest.take().map(GuestRun::shutdown)
    }
}

/// A word for how a guest ended (for the warning about running cases again).
fn outcome_kind(o: &GuestOutcome) -> &'static str {
    match o {
        GuestOutcome::Completed => "completed",
        GuestOutcome::Panic { .. } => "kernel panic",
        GuestOutcome::Exited { .. } => "QEMU ended",
        GuestOutcome::Timeout { .. } => "time limit",
        GuestOutcome::Interrupted { .. } => "interrupted",
        GuestOutcome::Cancelled => "cancelled",
        GuestOutcome::KvmFailure { .. } => "KVM failure",
        GuestOutcome::BootFailure { .. } => "boot failure",
    }
}

/// Runs `cases` in as few guests as possible (see the module docs), then shuts the guest down.
pub fn run_batch(
    cases: &[Case],
    opts: &BatchOptions,
    on_event: &mut dyn FnMut(BatchEvent),
) -> Result<BatchSummary, GuestError> {
    let mut session = Session::new(opts.clone());
    let mut summary = session.run(cases, on_event)?;
    if let Some(o) = session.close() {
        summary.last_outcome = Some(o);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_retries_a_crash_once_then_moves_on() {
        let mut p = BatchPlan::new(3, 3);
        assert_eq!(p.next_case(), Some(0));
        p.completed(0);
        assert_eq!(p.crashed(1), CrashDecision::Retry);
        assert_eq!(p.next_case(), Some(1), "resumes at the crashing case");
        assert_eq!(p.crashed(1), CrashDecision::GiveUp);
        assert_eq!(p.next_case(), Some(2));
        assert_eq!(p.crashed(2), CrashDecision::Retry);
        p.completed(2);
        assert_eq!(p.next_case(), None);
        assert!(p.remaining().is_empty());
    }

    #[test]
    fn plan_gives_up_after_boot_failures_in_a_row() {
        let mut p = BatchPlan::new(2, 3);
        assert!(p.boot_failed());
        p.booted();
        assert!(p.boot_failed());
        assert!(p.boot_failed());
        assert!(!p.boot_failed());
        assert_eq!(p.remaining(), 0..2);
    }
}
