//! The campaign loop of `lockstep fuzz`: batches of generated programs claimed in index order by
//! one worker per kernel oracle (a guest each with `--jobs N`, or the model), their fates folded
//! into one set of findings as each batch ends, then every new disagreement class minimised from
//! its lowest-index program, spread over the same oracles. Which worker judged which batch changes
//! nothing in the summary: the counts are sums and a class keeps its first program by index, so
//! the findings are those of one worker.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use lockstep_core::case::Case;
use lockstep_core::fuzz::{Comparison, Generator, Oracle, Signature};
use lockstep_core::model::{check_with, ModelOptions};
use lockstep_core::profile::{KernelProfile, ModuleKfuncs};
use lockstep_core::verdict::{Verdict, VerdictKind};

use super::{known_digests, minimize_with, tally, write_finding, Class, Limit, Params, Summary, Times};

/// The campaign's progress bar (over all workers).
fn progress_bar(limit: Limit, show: bool) -> ProgressBar {
    let bar = match (show, limit) {
        (false, _) => ProgressBar::hidden(),
        (true, Limit::Count(n)) => ProgressBar::new(n),
        (true, Limit::Time(_)) => ProgressBar::new_spinner(),
    };
    let template = match limit {
        Limit::Count(_) => "{elapsed_precise} [{bar:30}] {pos}/{len} {per_sec} {msg}",
        Limit::Time(_) => "{elapsed_precise} {spinner} {pos} programs {per_sec} {msg}",
    };
    bar.set_style(ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "));
    bar
}

/// What a campaign has found so far (one batch's, or the whole campaign's).
#[derive(Default)]
struct Findings {
    counts: tally::Counts,
    /// Programs sent to the kernel.
    sent: u64,
    classes: BTreeMap<Signature, Class>,
    times: Times,
    /// Why a kernel stopped answering, if one did (the first such reason).
    infra_error: Option<String>,
}

impl Findings {
    /// Adds another worker's batch: counts and times summed, a class keeps its lowest-index
    /// first program.
    fn absorb(&mut self, other: Findings) {
        self.counts.add(other.counts);
        self.sent += other.sent;
        for (sig, class) in other.classes {
            match self.classes.get_mut(&sig) {
                Some(c) => {
                    c.count += class.count;
                    if class.first_index < c.first_index {
                        (c.first_index, c.first_case, c.original_slots) =
                            (class.first_index, class.first_case, class.original_slots);
                    }
                }
                None => {
                    self.classes.insert(sig, class);
                }
            }
        }
        self.times.add(&other.times);
        if self.infra_error.is_none() {
            self.infra_error = other.infra_error;
        }
    }
}

/// What every worker of a campaign shares.
struct Shared<'a> {
    kernel: String,
    profile: &'a KernelProfile,
    module: &'a ModuleKfuncs,
    opts: &'a ModelOptions,
    p: &'a Params,
    gen: Generator,
    /// Findings files already in `--out`: digest -> explained.
    known: BTreeMap<String, bool>,
    bar: ProgressBar,
    started: Instant,
    /// The next batch to claim (batch k holds indices `start + k * batch ..`).
    next_batch: AtomicU64,
    /// Set when a kernel stopped answering: no worker claims another batch.
    stop: AtomicBool,
    findings: Mutex<Findings>,
    /// New classes waiting to be minimised: signature and first program index.
    to_minimize: Mutex<Vec<(Signature, u64)>>,
}

/// Runs a campaign on `oracles` (one worker each, in parallel when there are several; all of the
/// same kernel), then builds its summary.
pub(super) fn run(
    mut oracles: Vec<&mut (dyn Oracle + Send)>,
    profile: &KernelProfile,
    module: &ModuleKfuncs,
    opts: &ModelOptions,
    p: &Params,
    command: &'static str,
) -> Result<Summary> {
    let kernel = oracles.first().map(|o| o.kernel().to_string()).unwrap_or_default();
    let jobs = oracles.len().max(1);
    let sh = Shared {
        kernel,
        profile,
        module,
        opts,
        p,
        gen: Generator::new(module),
        known: p.out.as_deref().map(known_digests).unwrap_or_default(),
        bar: progress_bar(p.limit, p.progress),
        started: Instant::now(),
        next_batch: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        findings: Mutex::new(Findings::default()),
        to_minimize: Mutex::new(Vec::new()),
    };
    on_each(&mut oracles, |o| sh.pass(o));
    sh.plan_minimization();
    on_each(&mut oracles, |o| sh.minimize_queued(o));
    sh.bar.finish_and_clear();
    let mut f = sh.findings.into_inner().unwrap_or_else(|e| e.into_inner());
    if let (None, Some(sig)) = (&f.infra_error, lockstep_vm::interrupt::pending()) {
        f.infra_error = Some(format!(
            "interrupted by {sig}: the batches in flight are counted, their unrun programs inconclusive"
        ));
    }
    if let Some(e) = &f.infra_error {
        tracing::error!("campaign stopped after {} programs: {e}", f.counts.programs);
    }
    let seconds = sh.started.elapsed().as_secs_f64();
    Ok(summary(&sh.kernel, profile, opts, p, command, f, seconds, jobs))
}

/// Runs `work` on every oracle, each in its own thread when there are several.
fn on_each(oracles: &mut [&mut (dyn Oracle + Send)], work: impl Fn(&mut dyn Oracle) + Sync) {
    if let [only] = oracles {
        return work(&mut **only);
    }
    std::thread::scope(|s| {
        for o in oracles.iter_mut() {
            let work = &work;
            s.spawn(move || work(&mut **o));
        }
    });
}

impl Shared<'_> {
    /// The next batch to judge (first index, length), None when the campaign is over, a kernel
    /// stopped answering or a signal came.
    fn claim(&self) -> Option<(u64, u64)> {
        if self.stop.load(Ordering::SeqCst) || lockstep_vm::interrupt::pending().is_some() {
            return None;
        }
        let batch = self.p.batch.max(1) as u64;
        let from = self.next_batch.fetch_add(1, Ordering::SeqCst) * batch;
        let len = tally::claim_len(self.p.limit, from, batch, self.started.elapsed());
        (len > 0).then_some((self.p.start + from, len))
    }

    /// One worker's first phase: batches until none is left.
    fn pass(&self, oracle: &mut dyn Oracle) {
        while let Some((first, n)) = self.claim() {
            let mut f = Findings::default();
            let t0 = Instant::now();
            let cases: Vec<Case> = (first..first + n).map(|i| self.gen.case(self.p.seed, i)).collect();
            f.times.generate += t0.elapsed().as_secs_f64();
            match self.batch(oracle, &cases, first, &mut f) {
                Ok(true) => f.counts.programs += n,
                Ok(false) => self.stop.store(true, Ordering::SeqCst),
                Err(e) => {
                    f.infra_error = Some(format!("{e:#}"));
                    self.stop.store(true, Ordering::SeqCst);
                }
            }
            let counted = f.counts.programs;
            let mut all = self.findings.lock().unwrap_or_else(|e| e.into_inner());
            all.absorb(f);
            self.bar.inc(counted);
            self.bar.set_message(all.counts.progress_message(all.classes.len()));
        }
    }

    /// Judges one batch (`cases[k]` is program `first + k`) with the model, sends it to the
    /// kernel and takes each program's fate; false when the kernel could not answer (the batch is
    /// not counted).
    fn batch(&self, oracle: &mut dyn Oracle, cases: &[Case], first: u64, f: &mut Findings) -> Result<bool> {
        let t1 = Instant::now();
        let verdicts: Vec<Verdict> =
            cases.iter().map(|c| check_with(c, self.profile, self.module, self.opts)).collect();
        let t2 = Instant::now();
        f.times.model += (t2 - t1).as_secs_f64();
        let send = tally::to_send(&verdicts, self.p.send_unsupported);
        let batch: Vec<Case> = send.iter().map(|&i| cases[i].clone()).collect();
        let answers = match oracle.run(&batch) {
            Ok(a) if a.len() == batch.len() => a,
            Ok(a) => {
                let why = format!("kernel {}: {} answers for {} programs", self.kernel, a.len(), batch.len());
                f.infra_error = Some(why);
                return Ok(false);
            }
            Err(e) => {
                // Stop, but keep what was found so far (the summary says why it stopped).
                f.infra_error = Some(format!("kernel {}: {e}", self.kernel));
                return Ok(false);
            }
        };
        f.times.oracle += t2.elapsed().as_secs_f64();
        f.sent += batch.len() as u64;
        f.counts.supported +=
            verdicts.iter().filter(|v| v.verdict != VerdictKind::Unsupported).count() as u64;
        let answer_of = tally::answers_by_program(cases.len(), &send, &answers);
        for (i, case) in cases.iter().enumerate() {
            let fate = tally::fate(&verdicts[i], answer_of[i], &self.kernel, &self.profile.name);
            f.counts.count(&fate, &verdicts[i]);
            match fate {
                tally::Fate::Crashed(excerpt) => self.save_crash(case, excerpt)?,
                tally::Fate::NotRun(why) => tracing::warn!("{} did not run: {why}", case.name),
                tally::Fate::Judged(cmp, seconds) => {
                    f.times.kernel_verification += seconds;
                    if let Comparison::Disagree(sig) = cmp {
                        match f.classes.get_mut(&sig) {
                            Some(class) => class.count += 1,
                            None => {
                                let class = tally::new_class(&sig, case, first + i as u64);
                                f.classes.insert(sig, class);
                            }
                        }
                    }
                }
                tally::Fate::Unsupported => {}
            }
        }
        Ok(true)
    }

    /// Logs a program that crashed the kernel and writes it to `<out>/crashes/`.
    fn save_crash(&self, case: &Case, excerpt: &str) -> Result<()> {
        tracing::error!("kernel crash on {}: {excerpt}", case.name);
        let Some(out) = &self.p.out else { return Ok(()) };
        let dir = out.join("crashes");
        std::fs::create_dir_all(&dir)?;
        let header =
            format!("A program that crashed kernel {} during lockstep fuzz:\n{excerpt}", self.kernel);
        std::fs::write(
            dir.join(format!("{}.toml", case.name)),
            lockstep_core::case::write::case_file(&header, std::slice::from_ref(case)),
        )?;
        Ok(())
    }

    /// After the pass: classes with a file in `--out` already take its state; the others are
    /// queued for minimisation (none without `--out`, or after a signal).
    fn plan_minimization(&self) {
        let Some(out) = &self.p.out else { return };
        let mut f = self.findings.lock().unwrap_or_else(|e| e.into_inner());
        let mut queue = Vec::new();
        for (sig, class) in f.classes.iter_mut() {
            let digest = sig.digest();
            if let Some(&explained) = self.known.get(&digest) {
                class.explained = explained;
                class.file = Some(out.join(format!("fuzz-{digest}.toml")).display().to_string());
            } else if lockstep_vm::interrupt::pending().is_none() {
                queue.push((sig.clone(), class.first_index));
            }
        }
        // Popped from the end: the lowest first index first.
        queue.reverse();
        *self.to_minimize.lock().unwrap_or_else(|e| e.into_inner()) = queue;
    }

    /// One worker's second phase: minimises and writes queued classes until none is left.
    fn minimize_queued(&self, oracle: &mut dyn Oracle) {
        let Some(out) = &self.p.out else { return };
        loop {
            let next = self.to_minimize.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some((sig, index)) = next else { return };
            if lockstep_vm::interrupt::pending().is_some() {
                return;
            }
            let case = self.gen.case(self.p.seed, index);
            self.bar.set_message(format!("minimising {}", case.name));
            let mut times = Times::default();
            let tm = Instant::now();
            let (profile, module, opts) = (self.profile, self.module, self.opts);
            let min = minimize_with(oracle, profile, module, opts, &self.kernel, &case, self.p.min_budget);
            times.minimize += tm.elapsed().as_secs_f64();
            let tw = Instant::now();
            let written = write_finding(out, oracle, &sig, &case, &min, profile, module, opts, self.p);
            times.write += tw.elapsed().as_secs_f64();
            let mut f = self.findings.lock().unwrap_or_else(|e| e.into_inner());
            f.times.add(&times);
            match written {
                Ok(file) => {
                    let class = f.classes.get_mut(&sig).expect("a queued class is in the findings");
                    class.minimized_slots = Some(min.slots_after);
                    class.oracle_calls = Some(min.oracle_calls);
                    class.file = Some(file.display().to_string());
                }
                Err(e) => {
                    let why = format!("writing the finding of {}: {e:#}", case.name);
                    f.infra_error.get_or_insert(why);
                }
            }
        }
    }
}

/// The campaign's report; `jobs` workers shared `seconds` of wall time.
#[allow(clippy::too_many_arguments)]
fn summary(
    kernel: &str,
    profile: &KernelProfile,
    opts: &ModelOptions,
    p: &Params,
    command: &'static str,
    f: Findings,
    seconds: f64,
    jobs: usize,
) -> Summary {
    let c = f.counts;
    let mut classes: Vec<Class> = f.classes.into_values().collect();
    classes.sort_by_key(|c| std::cmp::Reverse(c.count));
    let rates = tally::rates(f.sent, &f.times, seconds, jobs);
    Summary {
        command,
        kernel: kernel.to_string(),
        profile: profile.name.clone(),
        disabled_rules: opts.disabled.iter().map(|r| r.name()).collect(),
        seed: p.seed,
        start: p.start,
        jobs,
        programs: c.programs,
        supported: c.supported,
        supported_share: tally::ratio(c.supported as f64, c.programs as f64),
        agree: c.agree,
        disagree: c.disagree,
        unsupported: c.unsupported,
        inconclusive: c.inconclusive,
        crashes: c.crashes,
        sent: f.sent,
        seconds,
        programs_per_second: tally::ratio(c.programs as f64, seconds),
        rates,
        // Each stage's share of the workers' summed wall time.
        shares: tally::shares(&f.times, seconds * jobs as f64),
        times: f.times,
        unsupported_reasons: tally::top_reasons(c.reasons),
        classes,
        infra_error: f.infra_error,
    }
}

/// Whether `out` can take findings: created if missing, and a file can be written in it.
pub(super) fn check_out_dir(out: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(out)?;
    let probe = out.join(format!(".lockstep-write-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}
