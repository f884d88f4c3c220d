//! `lockstep fuzz` and `lockstep bench fuzz`: generate programs, judge them with the model on the
//! host, send the ones inside the model's subset to a kernel in batches, compare, and minimise
//! each new disagreement class into a case file plus the corpus snapshot it would get.
//!
//! The kernel side is a [`lockstep_core::fuzz::Oracle`]: a real kernel in one long-lived guest
//! ([`guest::GuestOracle`]), or `model:<profile>[:-rule,...]`, the model as a pseudo-kernel.

mod campaign;
mod guest;
mod tally;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use lockstep_core::case::{Case, Expectation};
use lockstep_core::fuzz::{
    self, compare, minimize, Answer, Comparison, Minimized, ModelOracle, Oracle, Signature,
};
use lockstep_core::model::{check_with, ModelOptions, Rule};
use lockstep_core::profile::{KernelProfile, ModuleKfuncs};
use lockstep_core::verdict::{Verdict, VerdictKind};
use serde::Serialize;

use crate::exit::BadInput;
use crate::runner::{GuestArgs, KernelTarget};

/// Arguments of `lockstep fuzz`.
#[derive(Args)]
pub struct FuzzArgs {
    #[command(flatten)]
    common: Common,
    /// Programs to generate (default 10000 unless --duration is given).
    #[arg(long, conflicts_with = "duration")]
    count: Option<u64>,
    /// Run for this long instead: `90s`, `10m`, `2h` (a bare number is seconds).
    #[arg(long)]
    duration: Option<String>,
    /// Where minimised disagreements go (`<stem>.toml`, `snapshots/model__<stem>.snap`,
    /// `original/<stem>.toml`) with `summary.json`. Signatures with a file there already are
    /// counted, not minimised again.
    #[arg(long, default_value_os_t = default_out())]
    out: PathBuf,
    /// Oracle calls allowed per minimisation.
    #[arg(long, default_value_t = 2000)]
    min_budget: usize,
    /// Do not minimise or write disagreements (count them only).
    #[arg(long)]
    no_minimize: bool,
    /// Run only shard K of N: a contiguous, disjoint part of the campaign's program indices
    /// (`lockstep report merge` joins the shards' summaries, findings deduplicated).
    #[arg(long, value_name = "K/N", value_parser = crate::run::parse_shard)]
    shard: Option<lockstep_core::shard::Shard>,
}

/// Arguments of `lockstep bench fuzz`.
#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    common: Common,
    /// Programs to generate.
    #[arg(long, default_value_t = 20_000)]
    count: u64,
}

/// Options of both commands.
#[derive(Args)]
struct Common {
    /// The kernel: `model:<profile>[:-rule,...]` (the model as a pseudo-kernel, rules switched
    /// off with `-name`) or `debian:<version>` (a booted guest).
    #[arg(long)]
    kernel: String,
    /// The model's profile (default: the one that predicts the kernel).
    #[arg(long, short = 'p')]
    profile: Option<String>,
    /// Campaign seed: case i of seed s is always the same program.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Index of the first case (to resume or shard a campaign).
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Switch a model rule off (repeatable): call_under_lock, exit_with_lock, ...
    #[arg(long = "disable-rule")]
    disable_rule: Vec<String>,
    /// Programs per batch sent to the kernel.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Also send programs the model cannot judge to the kernel (counted, never compared).
    #[arg(long)]
    send_unsupported: bool,
    /// Guests (or model oracles) sharing the campaign, each taking the next batch of program
    /// indices; default: the cores, lowered to what the available memory holds (as `run --jobs`).
    #[arg(long, short = 'j')]
    jobs: Option<u32>,
    #[command(flatten)]
    guest: GuestArgs,
}

fn default_out() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz")
}

/// When a campaign stops.
#[derive(Clone, Copy, Debug)]
enum Limit {
    Count(u64),
    Time(Duration),
}

/// How a campaign runs.
struct Params {
    seed: u64,
    start: u64,
    limit: Limit,
    batch: usize,
    send_unsupported: bool,
    /// Minimise and write new disagreements here.
    out: Option<PathBuf>,
    min_budget: usize,
    progress: bool,
}

/// Seconds spent per stage.
#[derive(Debug, Default, Serialize)]
struct Times {
    generate: f64,
    model: f64,
    /// Time in the oracle (for a guest: transport and verification).
    oracle: f64,
    /// The kernel's own `verification time` summed over results that report it.
    kernel_verification: f64,
    minimize: f64,
    write: f64,
}

impl Times {
    /// Adds another worker's times.
    fn add(&mut self, o: &Times) {
        self.generate += o.generate;
        self.model += o.model;
        self.oracle += o.oracle;
        self.kernel_verification += o.kernel_verification;
        self.minimize += o.minimize;
        self.write += o.write;
    }
}

/// One disagreement class of a campaign.
#[derive(Serialize)]
struct Class {
    signature: Signature,
    description: String,
    /// Programs of the campaign with this signature.
    count: u64,
    /// The first program with it.
    first_case: String,
    /// That program's index in the campaign.
    #[serde(skip)]
    first_index: u64,
    /// Slots before and after minimisation (when minimised in this run).
    original_slots: usize,
    minimized_slots: Option<usize>,
    oracle_calls: Option<usize>,
    /// The case file, if written (or already there).
    file: Option<String>,
    /// Its file was there already, with an explanation written into its description.
    explained: bool,
}

/// The campaign's report (printed as one JSON line, written to `summary.json`).
#[derive(Serialize)]
struct Summary {
    command: &'static str,
    kernel: String,
    profile: String,
    disabled_rules: Vec<&'static str>,
    seed: u64,
    start: u64,
    /// Guests (or model oracles) that shared the campaign.
    jobs: usize,
    programs: u64,
    /// Programs the model judged (not unsupported), whatever the kernel did.
    supported: u64,
    supported_share: f64,
    agree: u64,
    disagree: u64,
    /// Programs outside the model's subset (and not crashing the kernel).
    unsupported: u64,
    /// The kernel gave no verifier verdict (setup error, or the program never ran).
    inconclusive: u64,
    /// Programs that crashed the kernel (written to `crashes/`).
    crashes: u64,
    /// Programs sent to the kernel (the model judged them, or `--send-unsupported`).
    sent: u64,
    seconds: f64,
    programs_per_second: f64,
    /// The end-to-end rate of programs sent against what the guests alone answered.
    rates: tally::Rates,
    times: Times,
    /// Share of the workers' summed wall time per stage.
    shares: BTreeMap<&'static str, f64>,
    unsupported_reasons: Vec<(String, u64)>,
    classes: Vec<Class>,
    /// Why the campaign stopped early (the kernel could not answer), if it did.
    infra_error: Option<String>,
}

/// Parses `90s`, `10m`, `2h`, `1d` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86_400),
        _ => (s, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| format!("bad duration `{s}` (e.g. 90s, 10m, 2h)"))?;
    if n <= 0.0 {
        return Err(format!("bad duration `{s}`: must be positive"));
    }
    Ok(Duration::from_secs_f64(n * mult as f64))
}

fn rules(names: &[String]) -> Result<ModelOptions> {
    let mut opts = ModelOptions::default();
    for n in names {
        let r = Rule::by_name(n).ok_or_else(|| {
            BadInput(format!(
                "unknown rule `{n}` (known: {})",
                Rule::ALL.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
            ))
        })?;
        opts.disabled.push(r);
    }
    Ok(opts)
}

/// The oracles of a campaign on `--kernel` (one per job), the model's profile, and the test
/// module's kfuncs as that kernel sees them.
type Oracles = (Vec<Box<dyn Oracle + Send>>, KernelProfile, ModuleKfuncs);

/// Opens `--jobs` oracles for `--kernel`: model oracles, or guests of one prepared kernel (each
/// boots on its first batch).
fn open_oracles(c: &Common) -> Result<Oracles> {
    if c.kernel.starts_with("model:") {
        let module = lockstep_core::module_src::bundled();
        let o = ModelOracle::parse(&c.kernel, &module).map_err(BadInput)?;
        let name = c.profile.clone().unwrap_or_else(|| o.profile().name.clone());
        let profile = KernelProfile::by_name(&name).map_err(|e| BadInput(e.to_string()))?;
        let jobs = c
            .jobs
            .map_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()), |n| n as usize);
        let oracles = (0..jobs.max(1)).map(|_| Box::new(o.clone()) as Box<dyn Oracle + Send>).collect();
        return Ok((oracles, profile, module));
    }
    let jobs = crate::run::jobs(c.jobs);
    let opts = c.guest.options(false, Duration::from_secs(30 * 86_400));
    let target = KernelTarget::prepare(&c.kernel, c.profile.as_deref(), &opts)?;
    let module = target.module_kfuncs();
    let profile = target.profile.clone();
    let mut oracles: Vec<Box<dyn Oracle + Send>> = Vec::new();
    for _ in 0..jobs {
        oracles.push(Box::new(guest::GuestOracle::start(&target, &opts)?));
    }
    Ok((oracles, profile, module))
}

/// The oracles as the campaign takes them.
fn borrowed(oracles: &mut [Box<dyn Oracle + Send>]) -> Vec<&mut (dyn Oracle + Send)> {
    oracles.iter_mut().map(|o| &mut **o as &mut (dyn Oracle + Send)).collect()
}

/// Runs `lockstep fuzz`: exit 0 when every disagreement is of an explained class (a file in
/// `--out` whose description has its explanation), 1 otherwise, 3 if the kernel stopped
/// answering, 4 on a kernel crash.
pub fn run(a: FuzzArgs) -> Result<u8> {
    let opts = rules(&a.common.disable_rule)?;
    let params = fuzz_params(&a)?;
    if let Some(out) = &params.out {
        campaign::check_out_dir(out)
            .map_err(|e| BadInput(format!("--out {}: cannot write findings there: {e}", out.display())))?;
    }
    let (mut oracles, profile, module) = open_oracles(&a.common)?;
    let summary = campaign::run(borrowed(&mut oracles), &profile, &module, &opts, &params, "fuzz")?;
    drop(oracles);
    let line = serde_json::to_string(&summary)?;
    println!("{line}");
    if let Some(out) = &params.out {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        std::fs::write(out.join("summary.json"), serde_json::to_string_pretty(&summary)? + "\n")?;
    }
    eprint!("{}", summary_text(&summary));
    Ok(exit_code(&summary))
}

/// The campaign `lockstep fuzz` asks for: `--count` (10000 by default) or `--duration`, narrowed
/// to `--shard`'s part of the program indices.
fn fuzz_params(a: &FuzzArgs) -> Result<Params> {
    let count = a.duration.is_none().then(|| a.count.unwrap_or(10_000));
    let (start, count) =
        a.shard.unwrap_or(lockstep_core::shard::Shard::ALL).index_range(a.common.start, count);
    let limit = match (&a.duration, count) {
        (Some(d), _) => Limit::Time(parse_duration(d).map_err(BadInput)?),
        (None, c) => Limit::Count(c.unwrap_or(10_000)),
    };
    Ok(Params {
        seed: a.common.seed,
        start,
        limit,
        batch: a.common.batch.max(1),
        send_unsupported: a.common.send_unsupported,
        out: (!a.no_minimize).then(|| a.out.clone()),
        min_budget: a.min_budget,
        progress: true,
    })
}

/// The campaign for people (stderr): the counts, then one line per class.
fn summary_text(summary: &Summary) -> String {
    let mut out = format!(
        "{} programs in {:.1}s ({:.0}/s): {} agree, {} disagree in {} classes, {} unsupported ({:.1}% supported), {} inconclusive, {} crashes\n",
        summary.programs,
        summary.seconds,
        summary.programs_per_second,
        summary.agree,
        summary.disagree,
        summary.classes.len(),
        summary.unsupported,
        summary.supported_share * 100.0,
        summary.inconclusive,
        summary.crashes
    );
    for c in &summary.classes {
        let state = if c.explained {
            "explained"
        } else if c.minimized_slots.is_some() {
            "NEW"
        } else {
            "unexplained"
        };
        let file = c.file.as_deref().map(|f| format!(" -> {f}")).unwrap_or_default();
        out += &format!("  {:>6} x [{state}] {}{file}\n", c.count, c.description);
    }
    if let Some(e) = &summary.infra_error {
        out += &format!("lockstep: stopped early: {e}\n");
    }
    out
}

/// The exit code of a campaign ([`crate::exit::fuzz_exit_code`]).
fn exit_code(summary: &Summary) -> u8 {
    crate::exit::fuzz_exit_code(
        summary.crashes,
        summary.infra_error.is_some(),
        summary.classes.iter().any(|c| !c.explained),
    )
}

/// Runs `lockstep bench fuzz`: the pipeline without minimisation, one JSON line.
pub fn bench(a: BenchArgs) -> Result<u8> {
    let opts = rules(&a.common.disable_rule)?;
    let (mut oracles, profile, module) = open_oracles(&a.common)?;
    let params = Params {
        seed: a.common.seed,
        start: a.common.start,
        limit: Limit::Count(a.count),
        batch: a.common.batch.max(1),
        send_unsupported: a.common.send_unsupported,
        out: None,
        min_budget: 0,
        progress: false,
    };
    let mut summary = campaign::run(borrowed(&mut oracles), &profile, &module, &opts, &params, "bench fuzz")?;
    drop(oracles);
    summary.classes.truncate(0);
    println!("{}", serde_json::to_string(&summary)?);
    Ok(0)
}

/// The text that marks a finding as not explained yet (in the case's description).
const UNEXPLAINED: &str = "Explanation: to be written.";

/// The disagreement files already in `out` (`fuzz-<digest>.toml`): digest -> explained (the
/// description no longer says "Explanation: to be written.").
fn known_digests(out: &Path) -> BTreeMap<String, bool> {
    let Ok(rd) = std::fs::read_dir(out) else { return BTreeMap::new() };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            let digest = name.strip_prefix("fuzz-")?.strip_suffix(".toml")?.to_string();
            let text = std::fs::read_to_string(e.path()).ok()?;
            Some((digest, !text.contains(UNEXPLAINED)))
        })
        .collect()
}

/// Runs a campaign on one oracle (see [`campaign::run`] for several).
#[cfg(test)]
fn campaign(
    oracle: &mut (dyn Oracle + Send),
    profile: &KernelProfile,
    module: &ModuleKfuncs,
    opts: &ModelOptions,
    p: &Params,
    command: &'static str,
) -> Result<Summary> {
    campaign::run(vec![oracle], profile, module, opts, p, command)
}

/// The signature of one case (None: agreement, unsupported, or no answer).
fn signature_of(
    oracle: &mut dyn Oracle,
    profile: &KernelProfile,
    module: &ModuleKfuncs,
    opts: &ModelOptions,
    kernel: &str,
    c: &Case,
) -> Option<Signature> {
    let v = check_with(c, profile, module, opts);
    if v.verdict == VerdictKind::Unsupported {
        return None;
    }
    let answer = oracle.run(std::slice::from_ref(c)).ok()?.pop()?;
    match compare(kernel, &profile.name, &v, answer.result()?) {
        Comparison::Disagree(s) => Some(s),
        _ => None,
    }
}

fn minimize_with(
    oracle: &mut dyn Oracle,
    profile: &KernelProfile,
    module: &ModuleKfuncs,
    opts: &ModelOptions,
    kernel: &str,
    c: &Case,
    budget: usize,
) -> Minimized {
    minimize(c, |cand: &Case| signature_of(oracle, profile, module, opts, kernel, cand), budget)
}

/// Writes a minimised disagreement: `<stem>.toml` (the minimised case, the kernel's verdict as its
/// expectation), `snapshots/model__<stem>.snap` and `original/<stem>.toml`.
#[allow(clippy::too_many_arguments)]
fn write_finding(
    out: &Path,
    oracle: &mut dyn Oracle,
    sig: &Signature,
    original: &Case,
    min: &Minimized,
    profile: &KernelProfile,
    module: &ModuleKfuncs,
    opts: &ModelOptions,
    p: &Params,
) -> Result<PathBuf> {
    let stem = format!("fuzz-{}", sig.digest());
    let name = stem.replace('-', "_");
    let mut case = min.case.clone();
    case.name = name.clone();
    // The kernel's verdict on the minimised case becomes its expectation (none if it gave none).
    let answer = oracle.run(std::slice::from_ref(&case)).ok().and_then(|mut a| a.pop());
    let kr = answer.as_ref().and_then(Answer::result);
    let model = check_with(&case, profile, module, opts);
    let rules: String = opts.disabled.iter().map(|r| format!(" --disable-rule {}", r.name())).collect();
    case.description = Some(format!(
        "{}. Model: {}. Found by `lockstep fuzz --kernel {} --profile {} --seed {}{rules}` as {} ({} instructions), minimised to {} in {} kernel runs. {UNEXPLAINED}",
        sig.describe(),
        verdict_text(&model),
        oracle.kernel(),
        profile.name,
        p.seed,
        original.name,
        min.slots_before,
        min.slots_after,
        min.oracle_calls
    ));
    case.tags = vec!["fuzz".into()];
    case.expect.clear();
    match kr {
        Some(kr) => {
            case.expect.insert(profile.name.clone(), kernel_expectation(kr, oracle.kernel()));
        }
        None => tracing::warn!("{stem}: the kernel gave no verdict on the minimised case ({answer:?}); written without an expectation"),
    }
    write_finding_files(out, &stem, sig, &case, original, module)?;
    Ok(out.join(format!("{stem}.toml")))
}

/// The expectation a finding gets: `kernel`'s verdict on it (a rejection's instruction and the
/// first line of its message).
fn kernel_expectation(kr: &lockstep_core::proto::KernelResult, kernel: &str) -> Expectation {
    let reject = kr.verdict.verdict == VerdictKind::Reject;
    Expectation {
        verdict: kr.verdict.verdict,
        insn: if reject { kr.verdict.insn } else { None },
        message: if reject {
            kr.verdict.message.as_deref().map(|s| s.lines().next().unwrap_or("").to_string())
        } else {
            None
        },
        source: Some(format!("{kernel} (lockstep fuzz)")),
        msgs: Vec::new(),
        retval: None,
    }
}

/// Writes a finding: `<stem>.toml` (the minimised `case`), its model snapshot, and the original
/// program under `original/`.
fn write_finding_files(
    out: &Path,
    stem: &str,
    sig: &Signature,
    case: &Case,
    original: &Case,
    module: &ModuleKfuncs,
) -> Result<()> {
    std::fs::create_dir_all(out.join("snapshots")).with_context(|| format!("creating {}", out.display()))?;
    std::fs::create_dir_all(out.join("original"))?;
    let header = format!(
        "Minimised disagreement found by lockstep fuzz: {}.\nThe expectation is the kernel's verdict; snapshots/model__{stem}.snap holds the model's.\nTo add it to the corpus: move this file to tests/corpus/ and the snapshot to tests/snapshots/.",
        sig.describe()
    );
    let file = out.join(format!("{stem}.toml"));
    std::fs::write(&file, lockstep_core::case::write::case_file(&header, std::slice::from_ref(case)))?;
    std::fs::write(
        out.join("snapshots").join(format!("model__{stem}.snap")),
        fuzz::write::snapshot_file(std::slice::from_ref(case), module),
    )?;
    let mut orig = original.clone();
    orig.expect.clear();
    std::fs::write(
        out.join("original").join(format!("{stem}.toml")),
        lockstep_core::case::write::case_file("The program the fuzzer found, before minimisation.", &[orig]),
    )?;
    Ok(())
}

fn verdict_text(v: &Verdict) -> String {
    match (&v.verdict, &v.message) {
        (VerdictKind::Reject, Some(m)) => format!(
            "reject at {} \"{}\"",
            v.insn.map_or("-".into(), |i| i.to_string()),
            m.lines().next().unwrap_or("")
        ),
        (k, _) => k.as_str().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_flags_give_the_campaign_parameters() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            a: FuzzArgs,
        }
        let params = |extra: &[&str]| {
            let argv = ["x", "--kernel", "model:7.3"].iter().chain(extra).copied();
            fuzz_params(&Cli::try_parse_from(argv).unwrap().a).unwrap()
        };
        let p = params(&[]);
        assert!(matches!(p.limit, Limit::Count(10_000)));
        assert_eq!((p.start, p.batch, p.out.is_some()), (0, 256, true));
        let p = params(&["--count", "1000", "--shard", "2/4", "--batch", "0", "--no-minimize"]);
        assert!(matches!(p.limit, Limit::Count(250)), "{:?}", p.limit);
        assert_eq!((p.start, p.batch, p.out.is_some()), (250, 1, false));
        assert!(
            matches!(params(&["--duration", "2m"]).limit, Limit::Time(d) if d == Duration::from_secs(120))
        );
        let bad = Cli::try_parse_from(["x", "--kernel", "model:7.3", "--duration", "soon"]).unwrap().a;
        assert!(fuzz_params(&bad).is_err());
    }

    #[test]
    fn a_finding_expects_the_kernel_verdict_and_the_exit_code_ranks_crashes_first() {
        use lockstep_core::proto::test_support::kernel_result;
        let rej = kernel_result("c", Verdict::reject(Some(4), "calls are not allowed\nmore"));
        let e = kernel_expectation(&rej, "debian:7.3");
        assert_eq!(
            (e.verdict, e.insn, e.message.as_deref()),
            (VerdictKind::Reject, Some(4), Some("calls are not allowed"))
        );
        assert_eq!(e.source.as_deref(), Some("debian:7.3 (lockstep fuzz)"));
        let acc = kernel_expectation(&kernel_result("c", Verdict::accept()), "k");
        assert_eq!((acc.verdict, acc.insn, acc.message), (VerdictKind::Accept, None, None));

        let module = lockstep_core::module_src::bundled();
        let profile = KernelProfile::by_name("7.3").unwrap();
        let mut oracle = ModelOracle::parse("model:7.3", &module).unwrap();
        let opts = ModelOptions { disabled: vec![Rule::CallUnderLock] };
        let p = Params {
            seed: 7,
            start: 0,
            limit: Limit::Count(300),
            batch: 100,
            send_unsupported: false,
            out: None,
            min_budget: 0,
            progress: false,
        };
        let mut s = campaign(&mut oracle, &profile, &module, &opts, &p, "fuzz").unwrap();
        assert!(!s.classes.is_empty());
        assert_eq!(exit_code(&s), crate::exit::EXIT_DISAGREE);
        let text = summary_text(&s);
        assert!(text.starts_with("300 programs in "), "{text}");
        assert!(text.contains(" x [unexplained] "), "{text}");
        s.infra_error = Some("gone".into());
        assert_eq!(exit_code(&s), crate::exit::EXIT_INFRA);
        assert!(summary_text(&s).ends_with("lockstep: stopped early: gone\n"));
        s.crashes = 1;
        assert_eq!(exit_code(&s), crate::exit::EXIT_CRASH);
        s.crashes = 0;
        s.infra_error = None;
        s.classes.iter_mut().for_each(|c| c.explained = true);
        assert_eq!(exit_code(&s), 0);
    }

    /// The same campaign on one, two and three workers: the same counts, the same classes with
    /// the same first programs and counts, and the same minimised files.
    #[test]
    fn a_campaign_over_several_workers_finds_what_one_finds() {
        let module = lockstep_core::module_src::bundled();
        let profile = KernelProfile::by_name("7.3").unwrap();
        let opts = ModelOptions { disabled: vec![Rule::CallUnderLock] };
        let run = |jobs: usize| {
            let dir = tempfile::tempdir().unwrap();
            let p = Params {
                seed: 11,
                start: 5,
                limit: Limit::Count(1000),
                batch: 64,
                send_unsupported: false,
                out: Some(dir.path().to_path_buf()),
                min_budget: 500,
                progress: false,
            };
            let mut oracles: Vec<Box<dyn Oracle + Send>> = (0..jobs)
                .map(|_| {
                    Box::new(ModelOracle::parse("model:7.3", &module).unwrap()) as Box<dyn Oracle + Send>
                })
                .collect();
            let s = campaign::run(borrowed(&mut oracles), &profile, &module, &opts, &p, "fuzz").unwrap();
            let mut files: Vec<(String, String)> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|f| f.is_file())
                .map(|f| {
                    (f.file_name().unwrap().to_string_lossy().into(), std::fs::read_to_string(&f).unwrap())
                })
                .collect();
            files.sort();
            (s, files)
        };
        let (one, one_files) = run(1);
        assert_eq!(one.jobs, 1);
        assert_eq!(one.programs, 1000);
        assert!(one.disagree > 0 && one.classes.len() > 1, "{}", summary_text(&one));
        assert!(!one_files.is_empty());
        let key = |s: &Summary| {
            let classes: Vec<_> = s
                .classes
                .iter()
                .map(|c| (c.signature.clone(), c.count, c.first_case.clone(), c.minimized_slots))
                .collect();
            (s.programs, s.supported, s.agree, s.disagree, s.unsupported, s.inconclusive, s.sent, classes)
        };
        for jobs in [2, 3] {
            let (s, files) = run(jobs);
            assert_eq!(s.jobs, jobs);
            assert_eq!(key(&s), key(&one), "{jobs} workers");
            assert_eq!(s.unsupported_reasons, one.unsupported_reasons);
            assert_eq!(files, one_files, "{jobs} workers wrote other findings");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("0s").is_err());
    }

    /// A whole campaign against the model with a rule switched off: disagreements are found,
    /// minimised, written as a case file that parses back and keeps the disagreement, and a
    /// second run finds the files and does not minimise again.
    #[test]
    fn campaign_finds_minimises_and_writes_disagreements() {
        let module = lockstep_core::module_src::bundled();
        let profile = KernelProfile::by_name("7.3").unwrap();
        let mut oracle = ModelOracle::parse("model:7.3", &module).unwrap();
        let opts = ModelOptions { disabled: vec![Rule::CallUnderLock] };
        let dir = tempfile::tempdir().unwrap();
        let p = Params {
            seed: 7,
            start: 0,
            limit: Limit::Count(600),
            batch: 100,
            send_unsupported: false,
            out: Some(dir.path().to_path_buf()),
            min_budget: 2000,
            progress: false,
        };
        let s = campaign(&mut oracle, &profile, &module, &opts, &p, "fuzz").unwrap();
        assert_eq!(s.programs, 600);
        assert_eq!(s.agree + s.disagree + s.unsupported + s.inconclusive, 600);
        assert!(s.disagree > 0 && !s.classes.is_empty());
        for c in &s.classes {
            let file = PathBuf::from(c.file.as_ref().unwrap());
            let src = std::fs::read_to_string(&file).unwrap();
            let cases = lockstep_core::corpus::load_text("f", &src, &module).unwrap();
            assert_eq!(cases.len(), 1);
            // The written case still shows the disagreement it was minimised for.
            let sig = signature_of(&mut oracle, &profile, &module, &opts, "model:7.3", &cases[0]);
            assert_eq!(sig.as_ref(), Some(&c.signature), "{}", file.display());
            // Its expectation is the kernel's verdict, which the normal model meets.
            assert_eq!(
                lockstep_core::corpus::meets_expectation(
                    &cases[0],
                    "7.3",
                    &lockstep_core::model::check(&cases[0], &profile, &module)
                ),
                Some(true)
            );
            let stem = file.file_stem().unwrap().to_str().unwrap();
            assert!(dir.path().join("snapshots").join(format!("model__{stem}.snap")).is_file());
            assert!(c.minimized_slots.unwrap() < c.original_slots);
        }
        let again = campaign(&mut oracle, &profile, &module, &opts, &p, "fuzz").unwrap();
        assert_eq!(again.disagree, s.disagree, "same seed, same programs");
        assert!(
            again.classes.iter().all(|c| c.minimized_slots.is_none() && c.file.is_some()),
            "known classes are not minimised again"
        );
        assert!(again.classes.iter().all(|c| !c.explained), "nothing is explained yet");
        // Writing an explanation into one file makes that class explained.
        let f = again.classes[0].file.clone().unwrap();
        let text = std::fs::read_to_string(&f)
            .unwrap()
            .replace(UNEXPLAINED, "Explanation: the model has call_under_lock off.");
        std::fs::write(&f, text).unwrap();
        let third = campaign(&mut oracle, &profile, &module, &opts, &p, "fuzz").unwrap();
        assert_eq!(third.classes.iter().filter(|c| c.explained).count(), 1);
    }

    /// A kernel that crashes on some programs and never runs others.
    struct Flaky(ModelOracle);

    impl Oracle for Flaky {
        fn kernel(&self) -> &str {
            "flaky"
        }
        fn run(&mut self, cases: &[Case]) -> Result<Vec<Answer>, lockstep_core::fuzz::OracleError> {
            Ok(cases
                .iter()
                .map(|c| {
                    match c.name.rsplit('_').next().and_then(|i| i.parse::<u64>().ok()).map(|i| i % 10) {
                        Some(3) => Answer::Crashed("BUG: oops".into()),
                        Some(5) => Answer::NotRun("guest did not boot".into()),
                        _ => Answer::Result(self.0.result(c)),
                    }
                })
                .collect())
        }
    }

    /// A kernel whose guest dies for good after its first batch.
    struct Dies(ModelOracle, u32);

    impl Oracle for Dies {
        fn kernel(&self) -> &str {
            "dies"
        }
        fn run(&mut self, cases: &[Case]) -> Result<Vec<Answer>, lockstep_core::fuzz::OracleError> {
            self.1 += 1;
            if self.1 > 1 {
                return Err(lockstep_core::fuzz::OracleError::Infra("QEMU is gone".into()));
            }
            self.0.run(cases)
        }
    }

    #[test]
    fn a_dead_kernel_stops_the_campaign_with_its_findings_kept() {
        let module = lockstep_core::module_src::bundled();
        let profile = KernelProfile::by_name("7.2").unwrap();
        let mut oracle = Dies(ModelOracle::parse("model:7.2", &module).unwrap(), 0);
        let p = Params {
            seed: 1,
            start: 0,
            limit: Limit::Count(500),
            batch: 100,
            send_unsupported: false,
            out: None,
            min_budget: 0,
            progress: false,
        };
        let s = campaign(&mut oracle, &profile, &module, &ModelOptions::default(), &p, "fuzz").unwrap();
        assert_eq!(s.programs, 100, "only the first batch was judged");
        assert_eq!(s.infra_error.as_deref(), Some("kernel dies: QEMU is gone"));
    }

    #[test]
    fn crashes_are_counted_and_written_and_unrun_programs_are_inconclusive() {
        let module = lockstep_core::module_src::bundled();
        let profile = KernelProfile::by_name("7.2").unwrap();
        let mut oracle = Flaky(ModelOracle::parse("model:7.2", &module).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let p = Params {
            seed: 3,
            start: 0,
            limit: Limit::Count(100),
            batch: 30,
            send_unsupported: true,
            out: Some(dir.path().to_path_buf()),
            min_budget: 100,
            progress: false,
        };
        let s = campaign(&mut oracle, &profile, &module, &ModelOptions::default(), &p, "fuzz").unwrap();
        assert_eq!((s.crashes, s.disagree), (10, 0));
        // Every program the kernel never ran (index % 10 == 5) that the model judges is inconclusive.
        let gen = lockstep_core::fuzz::Generator::new(&module);
        let unrun_judged = (0..100u64)
            .filter(|i| i % 10 == 5)
            .filter(|&i| {
                lockstep_core::model::check(&gen.case(3, i), &profile, &module).verdict
                    != lockstep_core::verdict::VerdictKind::Unsupported
            })
            .count();
        assert!(unrun_judged > 0);
        assert_eq!(s.inconclusive, unrun_judged as u64);
        assert_eq!(s.agree + s.unsupported + s.inconclusive + s.crashes, 100);
        assert_eq!(std::fs::read_dir(dir.path().join("crashes")).unwrap().count(), 10);
        assert!(dir.path().join("crashes/fuzz_3_13.toml").is_file());
    }
}
