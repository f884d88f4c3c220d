//! `lockstep check`, `lockstep bench model`, `lockstep profiles`, `lockstep disasm`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use lockstep_core::case::Case;
use lockstep_core::corpus::check_all;
use lockstep_core::profile::KernelProfile;
use lockstep_core::verdict::VerdictKind;

use crate::cases;
use crate::exit::BadInput;
use crate::kernel_btf::CheckProfiles;

/// Arguments of `lockstep check`.
#[derive(Args)]
pub struct CheckArgs {
    /// Profiles to check against (repeatable; default: all).
    #[arg(long = "profile", short = 'p')]
    profiles: Vec<String>,
    /// JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// Also print, per profile, how many cases have an expectation and how many of those the
    /// model meets (e.g. on imported selftests: the model against the tests' own annotations).
    #[arg(long)]
    matrix: bool,
    /// Programs of BPF object inputs that the model cannot judge on any profile do not make
    /// the exit code 5.
    #[arg(long)]
    allow_skips: bool,
    /// The kernel BTF (a vmlinux with `.BTF`, or raw BTF) typing tracing / LSM programs' ctx, for
    /// every profile; default: each profile's cached Debian kernel headers' `vmlinux`.
    #[arg(long, value_name = "FILE")]
    kernel_btf: Option<PathBuf>,
    /// Case files or directories (default: the bundled corpus).
    paths: Vec<PathBuf>,
}

/// Arguments of `lockstep bench model`.
#[derive(Args)]
pub struct BenchArgs {
    /// Passes over the corpus.
    #[arg(long, default_value_t = 20)]
    iterations: u32,
    /// Case files or directories (default: the bundled corpus).
    paths: Vec<PathBuf>,
}

fn profiles_of(names: &[String]) -> Result<Vec<KernelProfile>> {
    if names.is_empty() {
        return Ok(KernelProfile::all());
    }
    names.iter().map(|n| KernelProfile::by_name(n).map_err(|e| BadInput(e.to_string()).into())).collect()
}

fn paths_or_corpus(paths: &[PathBuf]) -> Vec<PathBuf> {
    if paths.is_empty() {
        vec![cases::default_corpus()]
    } else {
        paths.to_vec()
    }
}

/// Runs `check`: exit 0 when every expectation is met, 1 otherwise.
pub fn run(a: CheckArgs) -> Result<u8> {
    let module = lockstep_core::module_src::bundled();
    let cases = cases::load(&paths_or_corpus(&a.paths), &module)?;
    let sets = CheckProfiles::new(profiles_of(&a.profiles)?, &cases, a.kernel_btf.as_deref())?;
    // Each case with the kernel BTF it reads itself (`BtfNeed`), whatever else is in the run.
    let rows: Vec<_> =
        cases.iter().flat_map(|c| check_all(std::slice::from_ref(c), sets.for_case(c), &module)).collect();
    let profiles = sets.names();
    write_rows(&mut std::io::stdout().lock(), &rows, a.json).context("writing to stdout")?;
    let count = |k| rows.iter().filter(|r| r.verdict == k).count();
    let missed: Vec<_> = rows.iter().filter(|r| r.expected == Some(false)).collect();
    eprintln!(
        "{} cases x {} profiles: {} accept, {} reject, {} unsupported; {} expectations checked, {} not met",
        cases.len(),
        profiles.len(),
        count(VerdictKind::Accept),
        count(VerdictKind::Reject),
        count(VerdictKind::Unsupported),
        rows.iter().filter(|r| r.expected.is_some()).count(),
        missed.len()
    );
    if a.matrix {
        eprint!("{}", matrix(&cases, &rows, profiles));
    }
    for r in &missed {
        eprintln!("expectation not met: {}:{}: {} on {}", r.file, r.line, r.case, r.profile);
    }
    // Programs of object inputs the model judges on no profile.
    let unjudged: Vec<&Case> = cases
        .iter()
        .filter(|c| c.object.is_some())
        .filter(|c| {
            rows.iter()
                .filter(|r| r.case == c.name && r.file == c.file)
                .all(|r| r.verdict == VerdictKind::Unsupported)
        })
        .collect();
    let objects = cases.iter().filter(|c| c.object.is_some()).count();
    if objects > 0 {
        eprintln!("object programs: {objects}, not judged by the model on any profile: {}", unjudged.len());
    }
    for c in &unjudged {
        let why = c.model_unsupported.clone().unwrap_or_else(|| {
            rows.iter().find(|r| r.case == c.name).and_then(|r| r.message.clone()).unwrap_or_default()
        });
        eprintln!("not judged: {}: {}: {why}", c.file, c.name);
    }
    Ok(if !unjudged.is_empty() && !a.allow_skips {
        crate::exit::EXIT_UNJUDGED
    } else if missed.is_empty() {
        0
    } else {
        crate::exit::EXIT_DISAGREE
    })
}

/// The rows as a table or JSON lines.
fn write_rows(out: &mut impl Write, rows: &[lockstep_core::corpus::CheckRow], json: bool) -> Result<()> {
    if json {
        for r in rows {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        }
    } else {
        writeln!(out, "{:<48} {:<17} {:<12} {:>5}  message", "case", "profile", "verdict", "insn")?;
        for r in rows {
            let mark = match r.expected {
                Some(false) => " (!= expected)",
                _ => "",
            };
            let insn = r.insn.map_or("-".to_string(), |i| i.to_string());
            let msg = r.message.as_deref().unwrap_or("").replace('\n', " ");
            writeln!(
                out,
                "{:<48} {:<17} {:<12} {:>5}  {msg}{mark}",
                r.case,
                r.profile,
                r.verdict.as_str(),
                insn
            )?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The per-profile agreement table: cases with an expectation for the profile (its own or `*`),
/// how many the model meets, how many it does not (of which unsupported), and how many
/// expectations carry verifier-log patterns a verdict cannot check.
fn matrix(
    cases: &[lockstep_core::case::Case],
    rows: &[lockstep_core::corpus::CheckRow],
    profiles: &[KernelProfile],
) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<18} {:>6} {:>9} {:>6} {:>9} {:>12} {:>9}",
        "profile", "cases", "expected", "met", "not met", "unsupported", "log-only"
    );
    for p in profiles {
        let pr: Vec<_> = rows.iter().filter(|r| r.profile == p.name).collect();
        let expected = pr.iter().filter(|r| r.expected.is_some()).count();
        let met = pr.iter().filter(|r| r.expected == Some(true)).count();
        let unsupported =
            pr.iter().filter(|r| r.expected == Some(false) && r.verdict == VerdictKind::Unsupported).count();
        let log_only =
            cases.iter().filter(|c| !lockstep_core::corpus::log_only_msgs(c, &p.name).is_empty()).count();
        let _ = writeln!(
            o,
            "{:<18} {:>6} {:>9} {:>6} {:>9} {:>12} {:>9}",
            p.name,
            pr.len(),
            expected,
            met,
            expected - met,
            unsupported,
            log_only
        );
    }
    o
}

/// Runs `bench model`: programs checked per second, measured twice. First as `check` checks a
/// corpus (`corpus::check_all`): each case prepared once (`model::Prepared`: the passes that do
/// not depend on the profile) and checked under every profile in a row. Then one `model::check`
/// per (profile, case), profile by profile, each check preparing its case again: what a fuzz
/// campaign or `run` on one kernel does per program (`single_*`).
pub fn bench(a: BenchArgs) -> Result<u8> {
    use lockstep_core::model::{check, check_prepared, ModelOptions, Prepared};
    let profiles = KernelProfile::all();
    let module = lockstep_core::module_src::bundled();
    let load = Instant::now();
    let cases = cases::load(&paths_or_corpus(&a.paths), &module)?;
    let load_secs = load.elapsed().as_secs_f64();
    let opts = ModelOptions::default();
    let per_case = measure(|| {
        let mut n = 0u64;
        for _ in 0..a.iterations {
            for c in &cases {
                let prep = Prepared::new(c);
                for p in &profiles {
                    std::hint::black_box(check_prepared(&prep, p, &module, &opts));
                    n += 1;
                }
            }
        }
        n
    });
    let single = measure(|| {
        let mut n = 0u64;
        for _ in 0..a.iterations {
            for p in &profiles {
                for c in &cases {
                    std::hint::black_box(check(c, p, &module));
                    n += 1;
                }
            }
        }
        n
    });
    writeln!(
        std::io::stdout(),
        "{{\"bench\":\"model\",\"cases\":{},\"load_seconds\":{load_secs:.4},\"profiles\":{},{},{}}}",
        cases.len(),
        profiles.len(),
        per_case.json(""),
        single.json("single_"),
    )
    .context("writing to stdout")?;
    Ok(0)
}

/// One timed loop of `bench model`: checks, wall seconds and (where /proc tells it) the thread's
/// CPU seconds.
struct Measured {
    checks: u64,
    seconds: f64,
    cpu_seconds: Option<f64>,
}

/// Times `run`, which returns the number of checks it made.
fn measure(run: impl FnOnce() -> u64) -> Measured {
    let start = Instant::now();
    let cpu_start = thread_cpu_seconds();
    let checks = run();
    let seconds = start.elapsed().as_secs_f64();
    // On a shared machine the wall clock also counts other processes' turns; the thread's own
    // CPU time does not (null where /proc does not tell it).
    let cpu_seconds = match (cpu_start, thread_cpu_seconds()) {
        (Some(a), Some(b)) if b > a => Some(b - a),
        _ => None,
    };
    Measured { checks, seconds, cpu_seconds }
}

impl Measured {
    /// The JSON fields, each name after `prefix`.
    fn json(&self, prefix: &str) -> String {
        let n = self.checks as f64;
        let cpu = match self.cpu_seconds {
            Some(c) => {
                format!("\"{prefix}cpu_seconds\":{c:.4},\"{prefix}checks_per_cpu_second\":{:.0}", n / c)
            }
            None => format!("\"{prefix}cpu_seconds\":null,\"{prefix}checks_per_cpu_second\":null"),
        };
        format!(
            "\"{prefix}checks\":{},\"{prefix}seconds\":{:.4},\"{prefix}checks_per_second\":{:.0},{cpu}",
            self.checks,
            self.seconds,
            n / self.seconds
        )
    }
}

/// The calling thread's CPU time so far (`/proc/thread-self/schedstat`: nanoseconds on a CPU).
fn thread_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

/// Lists the profiles.
pub fn profiles() -> Result<u8> {
    let mut out = std::io::stdout().lock();
    let mut write = || -> std::io::Result<()> {
        for p in KernelProfile::all() {
            writeln!(out, "{:<18} {:<24} {}", p.name, p.kernel.as_deref().unwrap_or("-"), p.source)?;
        }
        out.flush()
    };
    write().context("writing to stdout")?;
    Ok(0)
}

/// Disassembles each case.
pub fn disasm(paths: &[PathBuf]) -> Result<u8> {
    let module = lockstep_core::module_src::bundled();
    let cases = cases::load(&paths_or_corpus(paths), &module)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut write = || -> std::io::Result<()> {
        for c in &cases {
            writeln!(out, "# {} ({}:{})", c.name, c.file, c.line)?;
            write!(out, "{}", lockstep_core::asm::disassemble(&c.program))?;
        }
        out.flush()
    };
    write().context("writing to stdout")?;
    Ok(0)
}
