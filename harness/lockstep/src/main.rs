//! `lockstep`: differential test harness for the Linux BPF verifier's spin-lock rules.
//! Exit codes: [`exit`].

mod agent;
mod agent_profile;
mod agent_workers;
mod bench;
mod bench_run;
mod bisect;
mod cache;
mod cases;
mod census;
mod check;
mod derive;
mod exit;
mod fuzz;
mod fuzz_merge;
mod github;
mod import;
mod kbuild;
mod kernel;
mod kernel_btf;
mod kernel_diff;
mod merge;
mod module_memo;
mod output;
mod report;
mod run;
mod run_files;
mod run_plan;
mod run_row;
mod run_rows;
mod runner;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lockstep",
    version,
    about = "Differential test harness for the BPF verifier's spin-lock rules"
)]
struct Cli {
    /// More logging (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Model verdicts per case and profile.
    Check(check::CheckArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCmd,
    },
    /// List the built-in kernel profiles (`profiles derive PATH`: derive one from a source tree).
    Profiles {
        #[command(subcommand)]
        cmd: Option<derive::ProfilesCmd>,
    },
    /// Differential fuzzing: generated programs, model vs kernel, minimised disagreements.
    Fuzz(fuzz::FuzzArgs),
    /// Run cases on real kernels in QEMU guests (or the host kernel) and compare with the model.
    Run(run::RunArgs),
    /// Which kfuncs each kernel lets a program call while holding a bpf_spin_lock, beside the model's view.
    Census(census::CensusArgs),
    /// Build a base and a patched kernel, run the corpus on both and judge every verdict flip.
    ValidateSeries(validate::ValidateArgs),
    /// git bisect in a kernel tree: build and boot each step, judge the given cases' verdicts.
    Bisect(bisect::BisectArgs),
    /// Reports of earlier runs: `report merge` joins the JSON of `run --shard K/N` runs.
    Report {
        #[command(subcommand)]
        cmd: merge::ReportCmd,
    },
    /// Fetch, build and list kernels.
    Kernel {
        #[command(subcommand)]
        cmd: kernel::KernelCmd,
    },
    /// The guest agent (what `/init` runs in a lockstep guest; it powers the machine off).
    Agent,
    /// Convert the kernel's naked-asm spin-lock selftests into case files.
    ImportSelftests(import::ImportArgs),
    /// Print a case's program in the kernel's verifier-log syntax.
    Disasm {
        /// Case files or directories.
        paths: Vec<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Programs checked per second by the model on the corpus.
    Model(check::BenchArgs),
    /// Boot-to-first-verdict and kernel verdicts per second in one guest (virtme-ng as reference).
    Guest(bench::GuestBenchArgs),
    /// Fuzz pipeline throughput and time shares (generation, model, kernel).
    Fuzz(fuzz::BenchArgs),
    /// validate-series wall time, warm and (--cold) from an empty cache, with its stage times.
    Validate(validate::bench::ValidateBenchArgs),
    /// `run` wall time with --jobs N (default: the cores) against --jobs 1, repeated, with the load.
    Run(bench_run::RunBenchArgs),
}

fn main() -> ExitCode {
    // As the /init of a lockstep guest (pid 1, marker on the kernel command line) the binary is
    // the agent, whatever its arguments; pid 1 anywhere else (a container) is the plain CLI.
    if std::process::id() == 1 && lockstep_vm::agent_io::check_lockstep_guest().is_ok() {
        agent::main();
    }
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.cmd {
        Cmd::Check(a) => check::run(a),
        Cmd::Bench { what: BenchCmd::Model(a) } => check::bench(a),
        Cmd::Bench { what: BenchCmd::Guest(a) } => bench::guest(a),
        Cmd::Bench { what: BenchCmd::Fuzz(a) } => fuzz::bench(a),
        Cmd::Bench { what: BenchCmd::Validate(a) } => validate::bench::run(a),
        Cmd::Bench { what: BenchCmd::Run(a) } => bench_run::run(a),
        Cmd::Fuzz(a) => fuzz::run(a),
        Cmd::Profiles { cmd } => derive::run(cmd),
        Cmd::Run(a) => run::run(a),
        Cmd::Census(a) => census::run(a),
        Cmd::Kernel { cmd } => kernel::run(cmd),
        Cmd::Report { cmd } => merge::run(cmd),
        Cmd::Agent => agent::main(),
        Cmd::Disasm { paths } => check::disasm(&paths),
        Cmd::ImportSelftests(a) => import::run(a),
        Cmd::ValidateSeries(a) => validate::run(a),
        Cmd::Bisect(a) => bisect::run(a),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => {
            if !exit::is_broken_pipe(&e) {
                eprintln!("lockstep: {e:#}");
            }
            exit::code_of(&e)
        }
    };
    // Every command that boots guests records SIGINT/SIGTERM (the runner installs the handler)
    // and stops early; however its own result reads, the exit status says so.
    match lockstep_vm::interrupt::pending() {
        Some(sig) if code != lockstep_vm::interrupt::exit_status(sig) => {
            eprintln!("lockstep: interrupted by {sig}");
            ExitCode::from(lockstep_vm::interrupt::exit_status(sig))
        }
        _ => ExitCode::from(code),
    }
}
