//! `lockstep validate-series`: build the base and patched kernels, build the test module for
//! both, run the corpus on both (through [`runner::CorpusRunner`]) and through the model under
//! both profiles, and judge every verdict flip ([`lockstep_core::flips`]).

pub mod bench;
pub mod report;
pub mod runner;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use lockstep_core::profile::KernelProfile;
use lockstep_core::verdict::Verdict;
use lockstep_vm::kbuild::{series, BuildRequest};
use lockstep_vm::kernel::ResolvedKernel;

use crate::cases;
use crate::exit::BadInput;
use crate::runner::AccelChoice;
use report::{PatchInfo, Report, SeriesInfo, Side};
use runner::CorpusRunner;

/// Arguments of `lockstep validate-series`.
#[derive(Args)]
pub struct ValidateArgs {
    /// The unpatched source: debian-src:<series> or a kernel tree path.
    #[arg(long)]
    base: String,
    /// The series: a directory of `git format-patch` mails.
    #[arg(long)]
    series: PathBuf,
    /// The model profile the patched kernel should follow (e.g. 7.2+kf-spin-lock).
    #[arg(long)]
    profile: String,
    /// The model profile of the base kernel (default: the Debian series, e.g. 7.2).
    #[arg(long)]
    base_profile: Option<String>,
    /// Extra config fragments for both kernels (repeatable).
    #[arg(long = "config")]
    config: Vec<PathBuf>,
    /// Case files or directories (default: the bundled corpus).
    #[arg(long = "cases")]
    cases: Vec<PathBuf>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Also write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write the Markdown report here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Save the kernels' results (base.jsonl, patched.jsonl) in this directory.
    #[arg(long)]
    save_results: Option<PathBuf>,
    /// Judge results saved with --save-results instead of building and running kernels.
    #[arg(long)]
    results_from: Option<PathBuf>,
    /// make -j for the kernel builds.
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// Accelerator for the guests.
    #[arg(long, value_enum, default_value = "auto")]
    accel: AccelChoice,
    /// Append each guest's console to DIR/console-<kernel>.log.
    #[arg(long, value_name = "DIR")]
    console_dir: Option<PathBuf>,
}

/// Report formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Markdown,
}

/// The profile a source's base kernel follows by default.
fn default_base_profile(source: &str) -> Option<String> {
    source.strip_prefix("debian-src:").map(str::to_string)
}

fn profile(name: &str) -> Result<KernelProfile> {
    KernelProfile::by_name(name).map_err(|e| BadInput(e.to_string()).into())
}

/// Records a kernel build's wall time as a stage, and when it was built now (not a cache hit)
/// its phases (`build base kernel: make`, ...) after it, so the report shows where a cold or
/// incremental build spent its time.
fn lap_build(side: &str, b: &crate::kbuild::Built, t: &mut Instant, timings: &mut Vec<(String, f64)>) {
    let what = if b.cache_hit { "cache hit" } else { "built" };
    lap(&format!("build {side} kernel ({what})"), t, timings);
    if !b.cache_hit {
        for p in &b.record.timings {
            timings.push((
                format!("build {side} kernel: {}", format!("{:?}", p.phase).to_lowercase()),
                p.seconds,
            ));
        }
    }
}

/// Records the time since `t` as stage `what` and restarts `t`.
fn lap(what: &str, t: &mut Instant, timings: &mut Vec<(String, f64)>) {
    timings.push((what.to_string(), t.elapsed().as_secs_f64()));
    *t = Instant::now();
}

/// Runs `lockstep validate-series`.
pub fn run(a: ValidateArgs) -> Result<u8> {
    let mut r = runner::default_runner(a.accel, a.console_dir.clone());
    run_with(a, &mut *r)
}

/// `validate-series` with an explicit runner (the replay runner with `--results-from`).
pub fn run_with(a: ValidateArgs, runner: &mut dyn CorpusRunner) -> Result<u8> {
    let t0 = Instant::now();
    let mut timings: Vec<(String, f64)> = Vec::new();
    let mut t = Instant::now();
    let series = series::load(&a.series).map_err(|e| BadInput(e.to_string()))?;
    let base_profile_name = a
        .base_profile
        .clone()
        .or_else(|| default_base_profile(&a.base))
        .ok_or_else(|| BadInput("--base-profile is needed for a local tree".into()))?;
    let (p_base, p_patched) = (profile(&base_profile_name)?, profile(&a.profile)?);
    let module_src = lockstep_core::module_src::bundled();
    let paths = if a.cases.is_empty() { vec![cases::default_corpus()] } else { a.cases.clone() };
    let cases = cases::load(&paths, &module_src)?;

    let mut replay;
    let (runner, kernels): (&mut dyn CorpusRunner, [ResolvedKernel; 2]) = match &a.results_from {
        Some(dir) => {
            let meta = std::fs::read_to_string(dir.join("kernels.json"))
                .with_context(|| format!("reading {}/kernels.json", dir.display()))?;
            let k: [ResolvedKernel; 2] = serde_json::from_str(&meta).context("kernels.json")?;
            replay = runner::Replay::new(dir.clone());
            (&mut replay, k)
        }
        None => {
            let kb = crate::kernel::kbuild()?;
            let source: lockstep_vm::kbuild::source::SourceSpec = a.base.parse().map_err(BadInput)?;
            let mut req = BuildRequest::new(source);
            req.fragments = a.config.clone();
            req.jobs = a.jobs;
            // A series that does not apply is reported before the base kernel is built.
            let mut patched_req = req.clone();
            patched_req.series = Some(a.series.clone());
            kb.check_series(&patched_req, &mut |_| {}).map_err(crate::kbuild::map_err)?;
            let base = crate::kbuild::build(&kb, &req)?;
            lap_build("base", &base, &mut t, &mut timings);
            req.series = Some(a.series.clone());
            let patched = crate::kbuild::build(&kb, &req)?;
            lap_build("patched", &patched, &mut t, &mut timings);
            (runner, [ResolvedKernel::from_build(&base.record), ResolvedKernel::from_build(&patched.record)])
        }
    };
    let [k_base, k_patched] = kernels;

    let mut results = Vec::new();
    let mut modules = Vec::new();
    for (side, k, p) in [("base", &k_base, &p_base), ("patched", &k_patched, &p_patched)] {
        // The test module for this kernel, and the kfuncs with its compiled flags (the model's view).
        let built = if a.results_from.is_some() {
            crate::kernel::BuiltModule { ko: PathBuf::new(), kfuncs: module_src.clone() }
        } else {
            let m = crate::kernel::build_module(k)?;
            lap(&format!("build module ({side})"), &mut t, &mut timings);
            eprintln!("module for {side} ({}): {}", k.name, m.ko.display());
            m
        };
        let r = runner
            .run(k, &p.name, &built.ko, &cases)
            .map_err(|e| e.context(format!("running the corpus on the {side} kernel {}", k.name)))?;
        lap(&format!("run corpus ({side})"), &mut t, &mut timings);
        if let Some(dir) = &a.save_results {
            std::fs::create_dir_all(dir)?;
            runner::write_results(&dir.join(format!("{side}.jsonl")), &r)?;
        }
        results.push(r);
        modules.push(built);
    }
    if let Some(dir) = &a.save_results {
        std::fs::write(dir.join("kernels.json"), serde_json::to_string_pretty(&[&k_base, &k_patched])?)?;
    }

    let model = |p: &KernelProfile, m: &lockstep_core::profile::ModuleKfuncs| -> Vec<Verdict> {
        cases.iter().map(|c| lockstep_core::model::check(c, p, m)).collect()
    };
    let (m_base, m_patched) = (model(&p_base, &modules[0].kfuncs), model(&p_patched, &modules[1].kfuncs));
    lap("model", &mut t, &mut timings);
    let rows = report::judge(&cases, &results[0], &results[1], &m_base, &m_patched);
    let summary = lockstep_core::flips::summarize(rows.iter().map(|r| r.class));
    timings.push(("total".into(), t0.elapsed().as_secs_f64()));
    let side = |k: &ResolvedKernel, p: &KernelProfile, m: &crate::kernel::BuiltModule| Side {
        kernel: k.name.clone(),
        identity: k.identity.clone(),
        release: k.release.clone(),
        profile: p.name.clone(),
        lock_safe_kfuncs: m
            .kfuncs
            .kfuncs
            .values()
            .filter(|f| f.flags & lockstep_core::module_src::LOCK_SAFE_FLAG != 0)
            .map(|f| f.name.clone())
            .collect(),
    };
    let rep = Report {
        series: SeriesInfo {
            name: series.name.clone(),
            dir: series.dir.display().to_string(),
            patches: series
                .patches
                .iter()
                .map(|p| PatchInfo { file_name: p.file_name.clone(), subject: p.subject.clone() })
                .collect(),
        },
        base: side(&k_base, &p_base, &modules[0]),
        patched: side(&k_patched, &p_patched, &modules[1]),
        cases: cases.len(),
        rows,
        summary,
        timings,
    };
    // A patched kernel that validates answers to the kernel name its profile gives
    // (`build:7.2+kf-spin-lock`), so `lockstep run --kernel <that name>` boots it.
    if !rep.failed() && a.results_from.is_none() {
        if let Some(name) = p_patched.kernel.as_deref().filter(|k| k.starts_with("build:")) {
            let hash = k_patched.name.trim_start_matches("build:");
            let kb = crate::kernel::kbuild()?;
            let full = kb.lookup(hash).map_err(crate::kbuild::map_err)?.hash;
            kb.set_alias(name, &full).map_err(crate::kbuild::map_err)?;
            eprintln!("{name} is now {}", k_patched.name);
        }
    }
    if let Some(p) = &a.json {
        crate::output::write_file(p, &serde_json::to_string_pretty(&rep)?)?;
    }
    if let Some(p) = &a.markdown {
        crate::output::write_file(p, &report::render_markdown(&rep))?;
    }
    match a.format {
        Format::Table => print!("{}", report::render_table(&rep)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&rep)?),
        Format::Markdown => print!("{}", report::render_markdown(&rep)),
    }
    Ok(if rep.failed() { crate::exit::EXIT_DISAGREE } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_profile_defaults_to_the_debian_series() {
        assert_eq!(default_base_profile("debian-src:7.2").as_deref(), Some("7.2"));
        assert_eq!(default_base_profile("/src/linux"), None);
    }
}
