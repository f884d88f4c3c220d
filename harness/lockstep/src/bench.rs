//! `lockstep bench guest`: boot-to-first-verdict and kernel verdicts per second in one guest,
//! with the kernel's own verification time beside them, and the same kernel booted by virtme-ng
//! (`vng`) running a trivial command as the reference.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use lockstep_core::case::Case;
use lockstep_vm::guest::Timeouts;
use lockstep_vm::qemu::Accel;
use serde::Serialize;

use crate::cases;
use crate::runner::{AccelChoice, CaseEvent, KernelSession, KernelTarget, RunnerOptions};

/// Arguments of `bench guest`.
#[derive(Args, Clone, Debug)]
pub struct GuestBenchArgs {
    /// Kernels (default: debian:7.2 and debian:7.3).
    #[arg(long = "kernel", short = 'k')]
    pub kernels: Vec<String>,
    /// Passes over the corpus in the same guest.
    #[arg(long, default_value_t = 5)]
    pub iterations: u32,
    /// Accelerator.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelChoice,
    /// Skip the virtme-ng reference.
    #[arg(long)]
    pub no_vng: bool,
    /// Skip the restored-guest measurement.
    #[arg(long)]
    pub no_restore: bool,
    /// Extra kernel command-line parameters for the guests, e.g. `lockstep.timers=1` (the agent's
    /// time per phase of a case, printed on the console).
    #[arg(long, value_name = "PARAM")]
    pub append: Vec<String>,
    /// Append each guest's console to DIR/console-<kernel>.log.
    #[arg(long, value_name = "DIR")]
    pub console_dir: Option<std::path::PathBuf>,
}

/// One kernel's numbers.
#[derive(Debug, Serialize)]
struct GuestBench {
    bench: &'static str,
    kernel: String,
    package_version: String,
    accel: Option<Accel>,
    /// QEMU start to the agent's `Hello`.
    boot_to_hello_s: f64,
    /// QEMU start to the first kernel verdict.
    boot_to_first_verdict_s: f64,
    verdicts: u64,
    /// Verdicts per second once booted (whole passes over the corpus, same guest).
    verdicts_per_s: f64,
    /// Mean host-observed round trip per case (protocol + BTF + maps + load).
    mean_round_trip_ms: f64,
    /// Mean of the kernel's own `verification time` (log stats) per program.
    mean_kernel_verification_us: Option<f64>,
    /// Mean round trip over mean kernel verification time (1.0: no overhead at all).
    round_trip_over_verification: Option<f64>,
    /// A guest restored from its snapshot (`guest::snapshot`): QEMU start to the agent's fresh
    /// `Hello`, and to the first verdict.
    restore_to_hello_s: Option<f64>,
    restore_to_first_verdict_s: Option<f64>,
    /// Why there is no restore figure, or what happened to the snapshot.
    restore_note: Option<String>,
    /// virtme-ng booting the same kernel to run `true`, or why not.
    vng_boot_to_command_s: Option<f64>,
    vng_note: Option<String>,
}

/// Runs `bench guest`.
pub fn guest(a: GuestBenchArgs) -> Result<u8> {
    let module = lockstep_core::module_src::bundled();
    let corpus = cases::load(&[cases::default_corpus()], &module)?;
    let kernels = if a.kernels.is_empty() {
        crate::runner::DEFAULT_KERNELS.iter().map(|s| s.to_string()).collect()
    } else {
        a.kernels.clone()
    };
    let opts = RunnerOptions {
        accel: a.accel,
        timeouts: Timeouts::default(),
        want_log: false,
        module: true,
        snapshots: false,
        console_dir: a.console_dir.clone(),
        extra_cmdline: a.append.clone(),
        module_ko: None,
        testmod: Default::default(),
        vcpus: 1,
    };
    for k in &kernels {
        let target = KernelTarget::prepare(k, None, &opts)?;
        let mut session = KernelSession::start(&target, &opts)?;
        let start = Instant::now();
        let (mut hello, mut first) = (None::<Duration>, None::<Duration>);
        let mut verdicts = 0u64;
        let mut usec = (0u64, 0u64);
        let mut on = |ev: CaseEvent| match ev {
            CaseEvent::Booted { boot_time, .. } => hello = Some(boot_time),
            CaseEvent::Result { result, .. } => {
                first.get_or_insert(start.elapsed());
                verdicts += 1;
                if let Some(u) = result.verification_usec {
                    usec = (usec.0 + u, usec.1 + 1);
                }
            }
            _ => {}
        };
        // The first case boots the guest; the passes after it run in the booted guest.
        session.run(&corpus[..1], false, &mut on)?;
        let passes = Instant::now();
        for _ in 0..a.iterations {
            session.run(&corpus, false, &mut on)?;
        }
        let secs = passes.elapsed().as_secs_f64();
        let accel = session.accel;
        session.close();
        let in_passes = verdicts.saturating_sub(1);
        let restore =
            if a.no_restore { Err("skipped".into()) } else { restore(&target, &opts, &corpus[..1]) };
        let (vng_boot_to_command_s, vng_note) =
            if a.no_vng { (None, Some("skipped".into())) } else { vng(k, accel) };
        let b = GuestBench {
            bench: "guest",
            kernel: k.clone(),
            package_version: target.package_version.clone(),
            accel,
            boot_to_hello_s: hello.map_or(f64::NAN, |d| d.as_secs_f64()),
            boot_to_first_verdict_s: first.map_or(f64::NAN, |d| d.as_secs_f64()),
            verdicts,
            verdicts_per_s: in_passes as f64 / secs,
            mean_round_trip_ms: secs * 1000.0 / in_passes.max(1) as f64,
            mean_kernel_verification_us: (usec.1 > 0).then(|| usec.0 as f64 / usec.1 as f64),
            round_trip_over_verification: (usec.1 > 0 && usec.0 > 0)
                .then(|| secs * 1e6 / in_passes.max(1) as f64 / (usec.0 as f64 / usec.1 as f64)),
            restore_to_hello_s: restore.as_ref().ok().map(|r| r.0),
            restore_to_first_verdict_s: restore.as_ref().ok().map(|r| r.1),
            restore_note: restore.err(),
            vng_boot_to_command_s,
            vng_note,
        };
        println!("{}", serde_json::to_string(&b)?);
    }
    Ok(0)
}

/// A guest of `target` restored from its snapshot (saved first by a booted guest if the cache has
/// none): seconds from QEMU start to `Hello` and to the first verdict of `cases`.
fn restore(target: &KernelTarget, opts: &RunnerOptions, cases: &[Case]) -> Result<(f64, f64), String> {
    let opts = RunnerOptions { snapshots: true, ..opts.clone() };
    let mut measured = None;
    for _ in 0..2 {
        let mut session = KernelSession::start(target, &opts).map_err(|e| format!("{e:#}"))?;
        let start = Instant::now();
        let (mut hello, mut first) = (None::<f64>, None::<f64>);
        session
            .run(cases, false, &mut |ev| match ev {
                CaseEvent::Booted { boot_time, .. } => hello = Some(boot_time.as_secs_f64()),
                CaseEvent::Result { .. } => {
                    first.get_or_insert(start.elapsed().as_secs_f64());
                }
                _ => {}
            })
            .map_err(|e| format!("{e:#}"))?;
        let restored = session.restored();
        session.close();
        if restored {
            measured = hello.zip(first);
            break;
        }
    }
    measured.ok_or_else(|| "no guest was restored (the snapshot was not saved; see the warnings)".into())
}

/// Boots kernel `name` with virtme-ng to run `true`; the wall time, or why it could not.
fn vng(name: &str, accel: Option<Accel>) -> (Option<f64>, Option<String>) {
    let attempt = || -> Result<f64> {
        let cache = crate::kernel::cache()?;
        let k = cache.lookup(name).with_context(|| format!("{name} is not cached"))?;
        // vng finds the modules (its 9p root needs them) under <tree>/lib/modules/<release>.
        let kimg = cache.fetch_modules(&k, &|_| {}).context("fetching the kernel's modules for vng")?;
        let mut cmd = Command::new("vng");
        cmd.arg("--run").arg(&kimg).arg("--verbose");
        if accel != Some(Accel::Kvm) {
            cmd.arg("--disable-kvm");
        }
        cmd.args(["--", "true"]);
        let t = Instant::now();
        let out = cmd.output().context("running vng (pip install virtme-ng; scripts/setup.sh --with-vng)")?;
        let s = t.elapsed().as_secs_f64();
        // Debian's virtio_console is a module virtme's initramfs does not load, so vng falls back
        // to the console and cannot return the script's status (exit 255): read it from the log.
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() && !all.contains("script exited with code 0") {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(3).collect();
            anyhow::bail!(
                "vng exited {}: {}",
                out.status,
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        Ok(s)
    };
    match attempt() {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(format!("{e:#}"))),
    }
}
