//! `lockstep validate-series`: build the base and patched kernels, build the test module for
//! both, run the corpus on both (through [`runner::CorpusRunner`]) and through the model under
//! both profiles, and judge every verdict flip ([`lockstep_core::flips`]).

pub mod bench;
pub mod report;
pub mod runner;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use lockstep_core::case::Case;
use lockstep_core::profile::{KernelProfile, ModuleKfuncs};
use lockstep_core::proto::KernelResult;
use lockstep_core::verdict::Verdict;
use lockstep_vm::kbuild::series::Series;
use lockstep_vm::kbuild::{series, BuildRequest, PhaseTime};
use lockstep_vm::kernel::ResolvedKernel;

use crate::cases;
use crate::exit::BadInput;
use crate::kernel::BuiltModule;
use crate::output::{self, OutputArgs};
use crate::runner::GuestArgs;
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
    #[command(flatten)]
    guest: GuestArgs,
    #[command(flatten)]
    output: OutputArgs,
    /// The old spelling of the stdout format (`--format json`: `--json` alone; `--format
    /// markdown`: `--markdown -`), kept for one release.
    #[arg(long, value_enum, hide = true)]
    format: Option<Format>,
    /// Save the kernels' results (base.jsonl, patched.jsonl) in this directory.
    #[arg(long)]
    save_results: Option<PathBuf>,
    /// Judge results saved with --save-results instead of building and running kernels.
    #[arg(long)]
    results_from: Option<PathBuf>,
    /// make -j for the kernel builds.
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
}

/// What the report looks like on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Markdown,
}

/// The stdout format: the hidden `--format` when given, else `--json` alone (JSON), else
/// `--markdown -` (Markdown), else the table.
fn stdout_format(format: Option<Format>, output: &OutputArgs) -> Format {
    format.unwrap_or(if output::is_stdout(output.json.as_deref()) {
        Format::Json
    } else if output::is_stdout(output.markdown.as_deref()) {
        Format::Markdown
    } else {
        Format::Table
    })
}

/// The report files asked for (`-` is stdout, not a file): JSON, Markdown.
fn report_files(output: &OutputArgs) -> [Option<&Path>; 2] {
    [output.json.as_deref(), output.markdown.as_deref()].map(|p| p.filter(|p| !output::is_stdout(Some(p))))
}

/// Shared flags that mean nothing here, as the bad-input message naming them: validate-series
/// builds and loads its own test module for each kernel and writes no JUnit report.
fn refused_flags(guest: &GuestArgs, output: &OutputArgs) -> Option<String> {
    let refused: Vec<&str> = [
        (guest.no_module, "--no-module"),
        (guest.module_ko.is_some(), "--module-ko"),
        (output.junit.is_some(), "--junit"),
    ]
    .into_iter()
    .filter_map(|(given, flag)| given.then_some(flag))
    .collect();
    (!refused.is_empty()).then(|| {
        format!(
            "validate-series does not take {}: it builds the test module for each kernel and writes \
             its report with --json / --markdown",
            refused.join(", ")
        )
    })
}

/// The profile a source's base kernel follows by default.
fn default_base_profile(source: &str) -> Option<String> {
    source.strip_prefix("debian-src:").map(str::to_string)
}

fn profile(name: &str) -> Result<KernelProfile> {
    KernelProfile::by_name(name).map_err(|e| BadInput(e.to_string()).into())
}

/// The stage times of the report, in the order the stages ran.
struct Stages {
    start: Instant,
    lap_start: Instant,
    timings: Vec<(String, f64)>,
}

impl Stages {
    fn new() -> Self {
        Stages { start: Instant::now(), lap_start: Instant::now(), timings: Vec::new() }
    }

    /// Records the time since the last lap as stage `what`.
    fn lap(&mut self, what: &str) {
        self.timings.push((what.to_string(), self.lap_start.elapsed().as_secs_f64()));
        self.lap_start = Instant::now();
    }

    /// Records a kernel build's wall time, and when it was built now its phases after it.
    fn lap_build(&mut self, side: &str, b: &crate::kbuild::Built) {
        let what = if b.cache_hit { "cache hit" } else { "built" };
        self.lap(&format!("build {side} kernel ({what})"));
        if !b.cache_hit {
            self.timings.extend(build_phases(side, &b.record.timings));
        }
    }

    /// The timings with the total last.
    fn finish(mut self) -> Vec<(String, f64)> {
        self.timings.push(("total".into(), self.start.elapsed().as_secs_f64()));
        self.timings
    }
}

/// A fresh build's phases as stages (`build base kernel: make`, ...), so the report shows where
/// a cold or incremental build spent its time.
fn build_phases(side: &str, phases: &[PhaseTime]) -> Vec<(String, f64)> {
    phases
        .iter()
        .map(|p| (format!("build {side} kernel: {}", format!("{:?}", p.phase).to_lowercase()), p.seconds))
        .collect()
}

/// What the command reads before any kernel: the series, both profiles, the cases.
struct Inputs {
    series: Series,
    profiles: [KernelProfile; 2],
    module_src: ModuleKfuncs,
    cases: Vec<Case>,
}

fn load_inputs(a: &ValidateArgs) -> Result<Inputs> {
    if let Some(why) = refused_flags(&a.guest, &a.output) {
        return Err(BadInput(why).into());
    }
    let series = series::load(&a.series).map_err(|e| BadInput(e.to_string()))?;
    let base_profile_name = a
        .base_profile
        .clone()
        .or_else(|| default_base_profile(&a.base))
        .ok_or_else(|| BadInput("--base-profile is needed for a local tree".into()))?;
    let profiles = [profile(&base_profile_name)?, profile(&a.profile)?];
    let module_src = lockstep_core::module_src::bundled();
    let paths = if a.cases.is_empty() { vec![cases::default_corpus()] } else { a.cases.clone() };
    let cases = cases::load(&paths, &module_src)?;
    Ok(Inputs { series, profiles, module_src, cases })
}

/// The two kernels of `--results-from DIR` (`DIR/kernels.json`).
fn saved_kernels(dir: &Path) -> Result<[ResolvedKernel; 2]> {
    let meta = std::fs::read_to_string(dir.join("kernels.json"))
        .with_context(|| format!("reading {}/kernels.json", dir.display()))?;
    serde_json::from_str(&meta).context("kernels.json")
}

/// Builds (or finds cached) the base and the patched kernel; a series that does not apply is
/// reported before the base kernel is built.
fn build_kernels(a: &ValidateArgs, stages: &mut Stages) -> Result<[ResolvedKernel; 2]> {
    let kb = crate::cache::kbuild()?;
    let source: lockstep_vm::kbuild::source::SourceSpec = a.base.parse().map_err(BadInput)?;
    let mut req = BuildRequest::new(source);
    req.fragments = a.config.clone();
    req.jobs = a.jobs;
    let mut patched_req = req.clone();
    patched_req.series = Some(a.series.clone());
    kb.check_series(&patched_req, &mut |_| {}).map_err(crate::kbuild::map_err)?;
    let base = crate::kbuild::build(&kb, &req)?;
    stages.lap_build("base", &base);
    let patched = crate::kbuild::build(&kb, &patched_req)?;
    stages.lap_build("patched", &patched);
    Ok([ResolvedKernel::from_build(&base.record), ResolvedKernel::from_build(&patched.record)])
}

/// One side's kernel results and the module whose kfuncs the model sees.
struct SideRun {
    results: Vec<Option<KernelResult>>,
    module: BuiltModule,
}

/// Builds the test module for one side's kernel (replayed: the bundled source's kfuncs), runs the
/// cases on it, and saves the results when asked.
fn run_side(
    a: &ValidateArgs,
    runner: &mut dyn CorpusRunner,
    inputs: &Inputs,
    (side, k, p): (&str, &ResolvedKernel, &KernelProfile),
    stages: &mut Stages,
) -> Result<SideRun> {
    let module = if a.results_from.is_some() {
        BuiltModule { ko: PathBuf::new(), kfuncs: inputs.module_src.clone() }
    } else {
        let m = crate::kernel::build_module(k)?;
        stages.lap(&format!("build module ({side})"));
        eprintln!("module for {side} ({}): {}", k.name, m.ko.display());
        m
    };
    let results = runner
        .run(k, &p.name, &module.ko, &inputs.cases)
        .map_err(|e| e.context(format!("running the corpus on the {side} kernel {}", k.name)))?;
    stages.lap(&format!("run corpus ({side})"));
    if let Some(dir) = &a.save_results {
        std::fs::create_dir_all(dir)?;
        runner::write_results(&dir.join(format!("{side}.jsonl")), &results)?;
    }
    Ok(SideRun { results, module })
}

/// The report's view of one side.
fn side_info(k: &ResolvedKernel, p: &KernelProfile, kfuncs: &ModuleKfuncs) -> Side {
    Side {
        kernel: k.name.clone(),
        identity: k.identity.clone(),
        release: k.release.clone(),
        profile: p.name.clone(),
        lock_safe_kfuncs: kfuncs
            .kfuncs
            .values()
            .filter(|f| f.flags & lockstep_core::module_src::LOCK_SAFE_FLAG != 0)
            .map(|f| f.name.clone())
            .collect(),
    }
}

/// The report's view of the series.
fn series_info(series: &Series) -> SeriesInfo {
    SeriesInfo {
        name: series.name.clone(),
        dir: series.dir.display().to_string(),
        patches: series
            .patches
            .iter()
            .map(|p| PatchInfo { file_name: p.file_name.clone(), subject: p.subject.clone() })
            .collect(),
    }
}

/// The kernel alias a validated patched kernel gets: the `build:` kernel name its profile gives
/// (`build:7.2+kf-spin-lock`), so `lockstep run --kernel <that name>` boots it; none for a failed
/// or replayed validation.
fn validated_alias(failed: bool, patched: &KernelProfile, replayed: bool) -> Option<&str> {
    if failed || replayed {
        return None;
    }
    patched.kernel.as_deref().filter(|k| k.starts_with("build:"))
}

/// Points `name` at the patched kernel's build.
fn set_alias(name: &str, k_patched: &ResolvedKernel) -> Result<()> {
    let hash = k_patched.name.trim_start_matches("build:");
    let kb = crate::cache::kbuild()?;
    let full = kb.lookup(hash).map_err(crate::kbuild::map_err)?.hash;
    kb.set_alias(name, &full).map_err(crate::kbuild::map_err)?;
    eprintln!("{name} is now {}", k_patched.name);
    Ok(())
}

/// Writes the report files and prints the report on stdout.
fn write_report(a: &ValidateArgs, rep: &Report) -> Result<()> {
    let [json, markdown] = report_files(&a.output);
    if let Some(p) = json {
        output::write_file(p, &serde_json::to_string_pretty(rep)?)?;
    }
    if let Some(p) = markdown {
        output::write_file(p, &report::render_markdown(rep))?;
    }
    match stdout_format(a.format, &a.output) {
        Format::Table => print!("{}", report::render_table(rep)),
        Format::Json => println!("{}", serde_json::to_string_pretty(rep)?),
        Format::Markdown => print!("{}", report::render_markdown(rep)),
    }
    Ok(())
}

/// Runs `lockstep validate-series`.
pub fn run(a: ValidateArgs) -> Result<u8> {
    let mut r = runner::default_runner(a.guest.clone());
    run_with(a, &mut *r)
}

/// `validate-series` with an explicit runner (the replay runner with `--results-from`).
pub fn run_with(a: ValidateArgs, runner: &mut dyn CorpusRunner) -> Result<u8> {
    let mut stages = Stages::new();
    let inputs = load_inputs(&a)?;
    let mut replay;
    let (runner, [k_base, k_patched]): (&mut dyn CorpusRunner, _) = match &a.results_from {
        Some(dir) => {
            let kernels = saved_kernels(dir)?;
            replay = runner::Replay::new(dir.clone());
            (&mut replay, kernels)
        }
        None => (runner, build_kernels(&a, &mut stages)?),
    };
    let [p_base, p_patched] = &inputs.profiles;
    let base = run_side(&a, runner, &inputs, ("base", &k_base, p_base), &mut stages)?;
    let patched = run_side(&a, runner, &inputs, ("patched", &k_patched, p_patched), &mut stages)?;
    if let Some(dir) = &a.save_results {
        std::fs::write(dir.join("kernels.json"), serde_json::to_string_pretty(&[&k_base, &k_patched])?)?;
    }
    let model = |p: &KernelProfile, m: &ModuleKfuncs| -> Vec<Verdict> {
        inputs.cases.iter().map(|c| lockstep_core::model::check(c, p, m)).collect()
    };
    let (m_base, m_patched) = (model(p_base, &base.module.kfuncs), model(p_patched, &patched.module.kfuncs));
    stages.lap("model");
    let rows = report::judge(&inputs.cases, &base.results, &patched.results, &m_base, &m_patched);
    let summary = lockstep_core::flips::summarize(rows.iter().map(|r| r.class));
    let rep = Report {
        series: series_info(&inputs.series),
        base: side_info(&k_base, p_base, &base.module.kfuncs),
        patched: side_info(&k_patched, p_patched, &patched.module.kfuncs),
        cases: inputs.cases.len(),
        rows,
        summary,
        timings: stages.finish(),
    };
    if let Some(name) = validated_alias(rep.failed(), p_patched, a.results_from.is_some()) {
        set_alias(name, &k_patched)?;
    }
    write_report(&a, &rep)?;
    Ok(if rep.failed() { crate::exit::EXIT_DISAGREE } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use lockstep_vm::kbuild::Phase;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: ValidateArgs,
    }

    fn parse(extra: &[&str]) -> ValidateArgs {
        let base = ["x", "--base", "debian-src:7.2", "--series", "s", "--profile", "7.2+kf-spin-lock"];
        Cli::try_parse_from(base.iter().chain(extra)).unwrap_or_else(|e| panic!("{extra:?}: {e}")).a
    }

    #[test]
    fn base_profile_defaults_to_the_debian_series() {
        assert_eq!(default_base_profile("debian-src:7.2").as_deref(), Some("7.2"));
        assert_eq!(default_base_profile("/src/linux"), None);
    }

    #[test]
    fn the_old_format_spelling_and_the_shared_flags_ask_for_the_same_stdout() {
        let fmt = |extra: &[&str]| {
            let a = parse(extra);
            (stdout_format(a.format, &a.output), report_files(&a.output).map(|p| p.map(Path::to_path_buf)))
        };
        assert_eq!(fmt(&[]), (Format::Table, [None, None]));
        assert_eq!(fmt(&["--format", "json"]), fmt(&["--json"]));
        assert_eq!(fmt(&["--json"]).0, Format::Json);
        assert_eq!(fmt(&["--format", "markdown"]), fmt(&["--markdown", "-"]));
        assert_eq!(fmt(&["--markdown", "-"]).0, Format::Markdown);
        assert_eq!(fmt(&["--format", "table"]), fmt(&[]));
        // Files still go to files beside any stdout format, as before.
        let (f, files) = fmt(&["--format", "json", "--json", "r.json", "--markdown", "r.md"]);
        assert_eq!((f, files), (Format::Json, [Some("r.json".into()), Some("r.md".into())]));
        let (f, files) = fmt(&["--json", "r.json"]);
        assert_eq!((f, files), (Format::Table, [Some("r.json".into()), None]));
    }

    #[test]
    fn the_guest_flags_are_the_shared_ones() {
        let a = parse(&["--accel", "tcg", "--console-dir", "c", "--boot-timeout", "30", "--append", "x=1"]);
        assert_eq!(a.guest.accel, crate::runner::AccelChoice::Tcg);
        assert_eq!(a.guest.console_dir.as_deref(), Some(Path::new("c")));
        assert_eq!((a.guest.boot_timeout, a.guest.append.as_slice()), (30, &["x=1".to_string()][..]));
        assert!(Cli::try_parse_from([
            "x",
            "--base",
            "b",
            "--series",
            "s",
            "--profile",
            "p",
            "--format",
            "xml"
        ])
        .is_err());
    }

    #[test]
    fn flags_that_mean_nothing_here_are_refused_by_name() {
        let a = parse(&[]);
        assert_eq!(refused_flags(&a.guest, &a.output), None);
        let a = parse(&["--no-module", "--junit", "j.xml"]);
        let why = refused_flags(&a.guest, &a.output).unwrap();
        assert!(why.starts_with("validate-series does not take --no-module, --junit:"), "{why}");
        let a = parse(&["--module-ko", "m.ko"]);
        assert!(refused_flags(&a.guest, &a.output).unwrap().contains("--module-ko"));
    }

    #[test]
    fn build_phases_are_stages_named_after_the_side() {
        let phases =
            [PhaseTime { phase: Phase::Make, seconds: 2.5 }, PhaseTime { phase: Phase::Link, seconds: 1.0 }];
        assert_eq!(
            build_phases("base", &phases),
            [("build base kernel: make".to_string(), 2.5), ("build base kernel: link".to_string(), 1.0)]
        );
    }

    #[test]
    fn only_a_validated_built_kernel_gets_its_profile_alias() {
        let kf = KernelProfile::by_name("7.2+kf-spin-lock").unwrap();
        assert_eq!(validated_alias(false, &kf, false), Some("build:7.2+kf-spin-lock"));
        assert_eq!(validated_alias(true, &kf, false), None);
        assert_eq!(validated_alias(false, &kf, true), None);
        assert_eq!(validated_alias(false, &KernelProfile::by_name("7.2").unwrap(), false), None);
    }
}
