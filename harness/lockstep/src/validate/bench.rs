//! `lockstep bench validate`: `validate-series` wall time with a warm cache and, with `--cold`,
//! from an empty cache (source download and extraction, pahole, both kernel builds with an empty
//! ccache, both modules), each with the report's stage times: where the time goes.
//!
//! Each measurement runs `lockstep validate-series` as a child process, so a cold run differs from
//! a warm one only by `LOCKSTEP_CACHE` pointing at a fresh directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use serde::Serialize;

use crate::runner::AccelChoice;

/// Arguments of `bench validate`.
#[derive(Args, Debug)]
pub struct ValidateBenchArgs {
    /// The unpatched source.
    #[arg(long, default_value = "debian-src:7.2")]
    base: String,
    /// The series (default: the seed, `tests/series/kf-spin-lock-rfc-v2`).
    #[arg(long)]
    series: Option<PathBuf>,
    /// The profile the patched kernel should follow.
    #[arg(long, default_value = "7.2+kf-spin-lock")]
    profile: String,
    /// Warm runs (the cache as it is; the first one fills it when empty).
    #[arg(long, default_value_t = 1)]
    warm_runs: u32,
    /// First measure a cold run in a fresh cache (about 5 GB of disk and, on 2 cores, 15-20 minutes);
    /// the warm runs then use that cache too.
    #[arg(long)]
    cold: bool,
    /// Where the fresh cache of `--cold` is created (default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    cold_dir: Option<PathBuf>,
    /// Keep the fresh cache of `--cold` instead of deleting it.
    #[arg(long)]
    keep: bool,
    /// Accelerator for the guests.
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelChoice,
}

/// One measured `validate-series` run.
#[derive(Debug, Serialize)]
struct ValidateBench {
    bench: &'static str,
    /// `cold` (an empty cache) or `warm`.
    cache: &'static str,
    series: String,
    exit: Option<i32>,
    wall_s: f64,
    /// The report's stages in order (`build base kernel (built)`, its phases, modules, corpus runs,
    /// model, total), seconds.
    stages: Vec<(String, f64)>,
}

/// Runs `bench validate`; one JSON line per measured run on stdout.
pub fn run(a: ValidateBenchArgs) -> Result<u8> {
    let series = a.series.clone().unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/series/kf-spin-lock-rfc-v2")
    });
    let series = std::fs::canonicalize(&series).with_context(|| format!("series {}", series.display()))?;
    let fresh = if a.cold {
        let mut b = tempfile::Builder::new();
        b.prefix("lockstep-bench-cache-");
        let dir = match &a.cold_dir {
            Some(d) => b.tempdir_in(d),
            None => b.tempdir(),
        }
        .context("creating the fresh cache directory")?;
        Some(dir)
    } else {
        None
    };
    let cache = fresh.as_ref().map(|d| d.path().to_path_buf());
    let mut worst = 0u8;
    let mut runs: Vec<&'static str> = Vec::new();
    if a.cold {
        runs.push("cold");
    }
    runs.extend(std::iter::repeat_n("warm", a.warm_runs as usize));
    for kind in runs {
        let b = measure(&a, &series, cache.as_deref(), kind)?;
        println!("{}", serde_json::to_string(&b)?);
        if b.exit != Some(0) {
            worst = worst.max(crate::exit::EXIT_INFRA);
        }
    }
    if let Some(d) = fresh {
        if a.keep {
            eprintln!("kept the fresh cache {}", d.keep().display());
        }
    }
    Ok(worst)
}

fn measure(
    a: &ValidateBenchArgs,
    series: &Path,
    cache: Option<&Path>,
    kind: &'static str,
) -> Result<ValidateBench> {
    let report = tempfile::NamedTempFile::new()?;
    let exe = std::env::current_exe().context("locating the lockstep binary")?;
    let mut cmd = Command::new(exe);
    let accel = clap::ValueEnum::to_possible_value(&a.accel)
        .map(|v| v.get_name().to_string())
        .unwrap_or_else(|| "auto".into());
    cmd.args(["validate-series", "--base", &a.base, "--profile", &a.profile, "--accel", &accel])
        .arg("--series")
        .arg(series)
        .arg("--json")
        .arg(report.path())
        .stdout(std::process::Stdio::null());
    if let Some(c) = cache {
        cmd.env("LOCKSTEP_CACHE", c);
    }
    eprintln!(
        "bench validate: {kind} run{}",
        cache.map(|c| format!(" (cache {})", c.display())).unwrap_or_default()
    );
    let t = Instant::now();
    let status = cmd.status().context("running lockstep validate-series")?;
    let wall_s = t.elapsed().as_secs_f64();
    let stages = std::fs::read_to_string(report.path())
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| serde_json::from_value::<Vec<(String, f64)>>(v["timings"].clone()).ok())
        .unwrap_or_default();
    Ok(ValidateBench {
        bench: "validate",
        cache: kind,
        series: series.display().to_string(),
        exit: status.code(),
        wall_s,
        stages,
    })
}
