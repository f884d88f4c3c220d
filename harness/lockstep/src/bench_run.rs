//! `lockstep bench run`: the wall time of `lockstep run` with `--jobs N` against `--jobs 1` on the
//! same kernels and cases, repeated, with the machine's load beside each figure (the guests share
//! the cores with whatever else runs).

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use crate::run::{self, RunArgs};
use crate::runner::KernelArgs;

/// Arguments of `bench run`: those of `run` (`--jobs N`: the parallel side, default the cores)
/// and how often to measure.
#[derive(Args, Clone, Debug)]
pub struct RunBenchArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Pairs of runs (`--jobs 1` and `--jobs N`, alternating which goes first).
    #[arg(long, default_value_t = 3)]
    pub repeat: u32,
    /// Do not run once unmeasured first (which fetches, builds modules and saves snapshots).
    #[arg(long)]
    pub no_warmup: bool,
}

/// The kernels `bench run` uses without `--kernel`.
pub const BENCH_KERNELS: [&str; 3] = ["debian:6.12", "debian:7.2", "debian:7.3"];

/// One measured run.
#[derive(Debug, Serialize)]
struct RunMeasure {
    bench: &'static str,
    kernels: Vec<String>,
    cases: usize,
    jobs: usize,
    wall_s: f64,
    /// CPU seconds (user + system) of lockstep's own threads and of its children (the QEMUs,
    /// the preparation scripts) during the run: on a machine others load too, the wall time
    /// follows their load and this does not.
    lockstep_cpu_s: f64,
    children_cpu_s: f64,
    rows: usize,
    exit_code: u8,
    /// 1-minute load average before and after the run (`/proc/loadavg`).
    load_before: Option<f64>,
    load_after: Option<f64>,
}

/// The pairs summed up.
#[derive(Debug, Serialize, PartialEq)]
struct RunBenchSummary {
    bench: &'static str,
    jobs: usize,
    serial_s: Vec<f64>,
    parallel_s: Vec<f64>,
    /// parallel / serial wall time of each pair.
    ratios: Vec<f64>,
    /// CPU seconds (lockstep and its children) of each run.
    serial_cpu_s: Vec<f64>,
    parallel_cpu_s: Vec<f64>,
    median_ratio: f64,
    min_ratio: f64,
    max_ratio: f64,
}

/// The summary of pairs of (serial, parallel) wall times, with the CPU seconds of each run.
fn summarize(jobs: usize, pairs: &[(f64, f64)], cpu: &[(f64, f64)]) -> RunBenchSummary {
    let ratios: Vec<f64> = pairs.iter().map(|(s, p)| p / s).collect();
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    let median = match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    };
    RunBenchSummary {
        bench: "run-summary",
        jobs,
        serial_s: pairs.iter().map(|p| p.0).collect(),
        parallel_s: pairs.iter().map(|p| p.1).collect(),
        median_ratio: median,
        min_ratio: sorted.first().copied().unwrap_or(f64::NAN),
        max_ratio: sorted.last().copied().unwrap_or(f64::NAN),
        ratios,
        serial_cpu_s: cpu.iter().map(|c| c.0).collect(),
        parallel_cpu_s: cpu.iter().map(|c| c.1).collect(),
    }
}

/// CPU seconds (user + system) used so far by this process and by its children waited for.
fn cpu_seconds() -> (f64, f64) {
    use nix::sys::resource::{getrusage, UsageWho};
    let secs = |who| {
        getrusage(who).map_or(0.0, |u| {
            let t = |v: nix::sys::time::TimeVal| v.tv_sec() as f64 + v.tv_usec() as f64 / 1e6;
            t(u.user_time()) + t(u.system_time())
        })
    };
    (secs(UsageWho::RUSAGE_SELF), secs(UsageWho::RUSAGE_CHILDREN))
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// Runs `bench run`: a JSON line per measured run, then one with the ratios.
pub fn run(a: RunBenchArgs) -> Result<u8> {
    let mut args = a.run.clone();
    if args.kernels.kernels.is_empty() && !args.kernels.host {
        args.kernels =
            KernelArgs { kernels: BENCH_KERNELS.iter().map(|s| s.to_string()).collect(), ..args.kernels };
    }
    lockstep_vm::interrupt::install()?;
    let module = lockstep_core::module_src::bundled();
    let paths = if args.paths.is_empty() { vec![crate::cases::default_corpus()] } else { args.paths.clone() };
    let cases = crate::cases::load(&paths, &module)?;
    let parallel = run::jobs(args.jobs);
    let once = |jobs: usize| -> Result<RunMeasure> {
        let load_before = load_average();
        let cpu_before = cpu_seconds();
        let t = Instant::now();
        let deadline = t + Duration::from_secs(args.timeout);
        let out = run::run_cases(&args, &cases, jobs, deadline, false, &mut |_| {})?;
        let wall_s = t.elapsed().as_secs_f64();
        let cpu_after = cpu_seconds();
        let m = RunMeasure {
            bench: "run",
            kernels: args.kernels.names(),
            cases: cases.len(),
            jobs,
            wall_s,
            lockstep_cpu_s: cpu_after.0 - cpu_before.0,
            children_cpu_s: cpu_after.1 - cpu_before.1,
            rows: out.rows.len(),
            exit_code: out.exit_code(),
            load_before,
            load_after: load_average(),
        };
        println!("{}", serde_json::to_string(&m)?);
        if let Some(stop) = out.stopped {
            anyhow::bail!("the run stopped ({stop:?}): no figure");
        }
        Ok(m)
    };
    if !a.no_warmup {
        eprintln!("lockstep: warm-up run (not measured)");
        run::run_cases(
            &args,
            &cases,
            parallel,
            Instant::now() + Duration::from_secs(args.timeout),
            false,
            &mut |_| {},
        )?;
    }
    let mut pairs = Vec::new();
    let mut cpu = Vec::new();
    let total = |m: &RunMeasure| m.lockstep_cpu_s + m.children_cpu_s;
    for i in 0..a.repeat {
        let (s, p) = if i % 2 == 0 {
            let s = once(1)?;
            (s, once(parallel)?)
        } else {
            let p = once(parallel)?;
            (once(1)?, p)
        };
        pairs.push((s.wall_s, p.wall_s));
        cpu.push((total(&s), total(&p)));
    }
    println!("{}", serde_json::to_string(&summarize(parallel, &pairs, &cpu))?);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_has_each_pairs_ratio_and_their_median_and_spread() {
        let s = summarize(2, &[(100.0, 60.0), (90.0, 45.0), (120.0, 84.0)], &[(9.0, 8.5)]);
        assert_eq!(s.ratios, vec![0.6, 0.5, 0.7]);
        assert_eq!((s.median_ratio, s.min_ratio, s.max_ratio), (0.6, 0.5, 0.7));
        assert_eq!((s.serial_cpu_s, s.parallel_cpu_s), (vec![9.0], vec![8.5]));
        assert_eq!(summarize(2, &[(10.0, 5.0), (10.0, 7.0)], &[]).median_ratio, 0.6);
        assert!(summarize(2, &[], &[]).median_ratio.is_nan());
    }
}
