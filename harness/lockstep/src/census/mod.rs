//! `lockstep census`: which kfuncs each kernel lets a program call while it holds a
//! `bpf_spin_lock`, asked of the kernel itself, with the model's prediction beside it and the
//! differences between kernels.
//!
//! Per kernel, in one guest ([`KernelSession`]): list the kfuncs (`ListKfuncs`: functions tagged
//! `bpf_kfunc` in vmlinux and module BTF, [`lockstep_bpf::kfuncs`]), find a program type each is registered for
//! (registration probes, batch per type), then load the lock probe on that type and classify the
//! answer by the verifier's check order ([`probe`], `docs/census.md`).

pub mod plan;
pub mod probe;
pub mod report;
pub mod result;
pub mod static_flags;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lockstep_core::case::{Case, ProgType};
use lockstep_core::proto::{KernelResult, ModuleStatus};
use lockstep_vm::guest::Timeouts;

use crate::exit::{EXIT_CRASH, EXIT_DISAGREE, EXIT_INFRA};
use crate::output;
use crate::runner::{CaseEvent, GuestArgs, KernelArgs, KernelSession, KernelTarget, HOST};
use plan::Probing;
use probe::{LockStatus, Probe, Registration, LOCKABLE, UNLOCKABLE};
use result::{KernelCensus, KfuncRow, ModelView};

/// Arguments of `lockstep census`.
#[derive(Args, Clone, Debug)]
pub struct CensusArgs {
    #[command(flatten)]
    pub kernels: KernelArgs,
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Write the census as one JSON document to FILE, or to stdout instead of the table.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-", value_parser = output::report_path)]
    pub json: Option<PathBuf>,
    /// Write a Markdown report.
    #[arg(long, value_name = "FILE", value_parser = output::report_path)]
    pub markdown: Option<PathBuf>,
    /// Probe the lock on every lockable program type that registers a kfunc, not only the first.
    #[arg(long)]
    pub all_prog_types: bool,
    /// Only these kfuncs (repeatable); default: every kfunc the kernel lists.
    #[arg(long = "kfunc", value_name = "NAME")]
    pub only: Vec<String>,
    /// Seconds for the whole census (all kernels).
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
}

/// Everything a census produced.
pub struct CensusOutput {
    pub kernels: Vec<KernelCensus>,
    /// Kernels that could not be prepared, booted or asked, with the reason.
    pub infra: Vec<String>,
    /// Probes that crashed a guest twice.
    pub crashes: Vec<String>,
}

impl CensusOutput {
    /// The exit code: crash > infrastructure > model difference > success.
    pub fn exit_code(&self) -> u8 {
        if !self.crashes.is_empty() {
            EXIT_CRASH
        } else if !self.infra.is_empty() {
            EXIT_INFRA
        } else if self.kernels.iter().any(|k| k.counts.model_differences > 0) {
            EXIT_DISAGREE
        } else {
            0
        }
    }
}

/// What the guest said on boot.
struct Booted {
    release: String,
    module: ModuleStatus,
    /// Seconds from QEMU start to `Hello`, summed over boots.
    seconds: f64,
}

/// One kernel's session with what its guest said on boot.
struct Guest<'a> {
    session: KernelSession,
    name: &'a str,
    boot: Booted,
    probes: usize,
    crashes: Vec<String>,
    bar: &'a ProgressBar,
}

impl Guest<'_> {
    fn on_boot(boot: &mut Booted, bar: &ProgressBar, name: &str, ev: CaseEvent) {
        match ev {
            CaseEvent::Booted { release, module, boot_time, .. } => {
                bar.set_message(format!("booted {release} in {:.1}s", boot_time.as_secs_f64()));
                boot.release = release;
                boot.module = module;
                boot.seconds += boot_time.as_secs_f64();
            }
            CaseEvent::BootFailed { excerpt, will_retry } => {
                bar.suspend(|| {
                    eprintln!(
                        "lockstep: {name}: boot failed{}:\n{excerpt}",
                        if will_retry { " (retrying)" } else { "" }
                    )
                });
            }
            _ => {}
        }
    }

    /// Runs `cases` in the guest: the answers in order (Err: why a probe gave no answer).
    fn run(&mut self, cases: &[Case], what: &str) -> Result<Vec<Result<KernelResult, String>>> {
        let mut results: Vec<Result<KernelResult, String>> = vec![Err("no answer".into()); cases.len()];
        let (name, bar) = (self.name, self.bar);
        bar.set_message(format!("{what}: {} probes", cases.len()));
        let (boot, crashes) = (&mut self.boot, &mut self.crashes);
        self.session.run(cases, false, &mut |ev| match ev {
            CaseEvent::Result { index, result, warnings } => {
                if !warnings.is_empty() {
                    crashes.push(format!(
                        "{name}: {}: kernel WARN:\n{}",
                        cases[index].name,
                        warnings.join("\n")
                    ));
                }
                bar.inc(1);
                results[index] = Ok(result);
            }
            CaseEvent::Retrying { index, excerpt } => {
                bar.suspend(|| {
                    eprintln!(
                        "lockstep: {name}: {} crashed the guest; retrying:\n{excerpt}",
                        cases[index].name
                    )
                });
            }
            CaseEvent::Crashed { index, excerpt } => {
                crashes.push(format!("{name}: {} crashed the kernel twice:\n{excerpt}", cases[index].name));
                results[index] = Err(format!("crashed the kernel: {}", excerpt.lines().next().unwrap_or("")));
            }
            CaseEvent::NotRun { index, reason } => results[index] = Err(reason),
            CaseEvent::Lost { index, excerpt } | CaseEvent::TimedOut { index, excerpt } => {
                results[index] = Err(excerpt.lines().next().unwrap_or("").to_string())
            }
            ev => Guest::on_boot(boot, bar, name, ev),
        })?;
        self.probes += cases.len();
        Ok(results)
    }
}

/// What the probes found out about one kfunc so far.
/// Takes the census of one kernel in `session`.
fn census_kernel(
    target: &KernelTarget,
    session: KernelSession,
    args: &CensusArgs,
    bar: &ProgressBar,
) -> Result<(KernelCensus, Vec<String>)> {
    let t0 = Instant::now();
    let boot = Booted { release: String::new(), module: ModuleStatus::Absent, seconds: 0.0 };
    let mut g = Guest { session, name: &target.name, boot, probes: 0, crashes: Vec::new(), bar };
    bar.set_message("listing kfuncs");
    let listing = {
        let (boot, name) = (&mut g.boot, g.name);
        g.session.list_kfuncs(&mut |ev| Guest::on_boot(boot, bar, name, ev))?
    };
    let seconds_listing = t0.elapsed().as_secs_f64() - g.boot.seconds;
    // The module's kfuncs as the host read them from the .ko, when the guest's BTF lacks the tags;
    // compiled flags from the headers' vmlinux, also the kfunc list when vmlinux BTF has no tags.
    let module_kfuncs = target.module_kfuncs();
    let static_flags = static_flags::for_kernel(&target.name).map_err(|e| format!("{e:#}"));
    let (entries, mut warnings) =
        plan::kfunc_entries(&listing, &module_kfuncs, &g.boot.module, &static_flags, &args.only);
    let mut kf: Vec<Probing> = entries.into_iter().map(Probing::new).collect();

    let t1 = Instant::now();
    probe_registrations(&mut g, &mut kf, args.all_prog_types)?;
    probe_locks(&mut g, &mut kf, args.all_prog_types)?;
    let seconds_probes = t1.elapsed().as_secs_f64();

    let rows = kfunc_rows(kf, target, &module_kfuncs, &static_flags);
    warnings.extend(plan::type_dependence_warnings(&rows));
    let mut c = KernelCensus {
        kernel: target.name.clone(),
        package_version: target.package_version.clone(),
        release: g.boot.release.clone(),
        profile: target.profile.name.clone(),
        module: module_note(&g.boot.module, target),
        btf_objects: listing.sources.iter().map(|s| (s.object.clone(), (s.funcs, s.kfuncs))).collect(),
        warnings,
        rows,
        counts: Default::default(),
        probes: g.probes,
        seconds_boot: g.boot.seconds,
        seconds_listing,
        seconds_probes,
        seconds_total: 0.0,
    };
    c.count();
    g.session.close();
    c.seconds_total = t0.elapsed().as_secs_f64();
    Ok((c, g.crashes))
}

/// Registration probes: lockable types in order (all of them with `all_types`), then the
/// unlockable ones for the kfuncs no lockable type takes.
fn probe_registrations(g: &mut Guest, kf: &mut [Probing], all_types: bool) -> Result<()> {
    for t in LOCKABLE.into_iter().chain(UNLOCKABLE) {
        let todo: Vec<(usize, ProgType)> =
            plan::registration_round(kf, t, all_types).into_iter().map(|i| (i, t)).collect();
        if todo.is_empty() {
            continue;
        }
        let cases = plan::probe_cases(kf, &todo, Probe::Registration);
        g.bar.inc_length(cases.len() as u64);
        let results = g.run(&cases, &format!("registration on {}", t.name()))?;
        plan::record_answers(kf, &todo, &cases, results, Probe::Registration);
    }
    Ok(())
}

/// The lock probe, on the first (or every) lockable type that registers each kfunc.
fn probe_locks(g: &mut Guest, kf: &mut [Probing], all_types: bool) -> Result<()> {
    let todo = plan::lock_round(kf, all_types);
    let cases = plan::probe_cases(kf, &todo, Probe::Lock);
    g.bar.inc_length(cases.len() as u64);
    let results = g.run(&cases, "lock probes")?;
    plan::record_answers(kf, &todo, &cases, results, Probe::Lock);
    Ok(())
}

/// The rows of the probed kfuncs, with their compiled flags: the test module's from its `.ko`
/// (when it is loaded), the others' from the headers' vmlinux.
fn kfunc_rows(
    kf: Vec<Probing>,
    target: &KernelTarget,
    module_kfuncs: &lockstep_core::profile::ModuleKfuncs,
    static_flags: &Result<plan::StaticFlags, String>,
) -> Vec<KfuncRow> {
    kf.into_iter()
        .map(|k| {
            let mut row = to_row(k, target, module_kfuncs);
            if let Some(m) = module_kfuncs
                .kfuncs
                .get(&row.name)
                .filter(|_| row.module.is_some() && target.module.is_some())
            {
                row.compiled_flags.insert(module_kfuncs.module.clone(), m.flags);
            } else if let Ok(f) = static_flags {
                row.compiled_flags = f.get(&row.name).cloned().unwrap_or_default();
            }
            row
        })
        .collect()
}

/// The row of one kfunc: the lock probe's answer on the first registered type, or why none ran.
fn to_row(k: Probing, target: &KernelTarget, module: &lockstep_core::profile::ModuleKfuncs) -> KfuncRow {
    let first = k.per_type.iter().next().map(|(t, a)| (*t, a.clone()));
    let (status, prog_type, detail) = match first {
        Some((t, (s, d))) => (s, Some(t), d),
        None => (LockStatus::NotCallable, None, not_callable_reason(&k.registration)),
    };
    let model =
        ModelView::predict(&target.profile, module, &k.entry.name, prog_type.unwrap_or(ProgType::SchedCls));
    let agrees = model.agrees_with(status);
    KfuncRow {
        name: k.entry.name,
        module: k.entry.module,
        btf_id: k.entry.btf_id,
        status,
        prog_type,
        detail,
        registration: k.registration,
        per_type: k.per_type.into_iter().map(|(t, (s, _))| (t, s)).collect(),
        model,
        agrees,
        compiled_flags: BTreeMap::new(),
    }
}

/// Why no lock probe ran, from the registration answers.
fn not_callable_reason(reg: &BTreeMap<ProgType, Registration>) -> String {
    let tried = || {
        LOCKABLE
            .into_iter()
            .chain(UNLOCKABLE)
            .filter(|t| reg.contains_key(t))
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let registered: Vec<&str> =
        reg.iter().filter(|(_, r)| **r == Registration::Registered).map(|(t, _)| t.name()).collect();
    if !registered.is_empty() {
        return format!(
            "registered only for program types that cannot hold a bpf_spin_lock: {}",
            registered.join(", ")
        );
    }
    // Grouped by reason, each with its types in the order tried.
    let mut by_reason: Vec<(&str, Vec<&str>)> = Vec::new();
    for t in LOCKABLE.into_iter().chain(UNLOCKABLE) {
        if let Some(Registration::Refused(why)) = reg.get(&t) {
            match by_reason.iter_mut().find(|(w, _)| *w == why.as_str()) {
                Some((_, ts)) => ts.push(t.name()),
                None => by_reason.push((why.as_str(), vec![t.name()])),
            }
        }
    }
    if by_reason.is_empty() {
        return format!(
            "registered for none of the program types tried ({}): struct_ops, LSM, fentry or netfilter only?",
            tried()
        );
    }
    let parts: Vec<String> = by_reason
        .into_iter()
        .map(|(why, ts)| {
            if ts.len() == reg.len() {
                format!("{why} (every type tried)")
            } else {
                format!("{why} ({})", ts.join(", "))
            }
        })
        .collect();
    format!("refused before its registration was checked: {}", parts.join("; "))
}

fn module_note(status: &ModuleStatus, target: &KernelTarget) -> String {
    match status {
        ModuleStatus::Loaded { name, .. } => format!("{name} loaded"),
        ModuleStatus::Failed { name, error } => format!("{name} failed to load: {error}"),
        ModuleStatus::Absent => target.module_error.clone().unwrap_or_else(|| "no module".into()),
    }
}

/// Takes the census of every kernel of `args` (the engine of `lockstep census`, used by tests).
pub fn take_census(args: &CensusArgs) -> Result<CensusOutput> {
    let opts = args.guest.options(false, Timeouts::default().overall);
    let kernels = args.kernels.names();
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    let mut out = CensusOutput { kernels: Vec::new(), infra: Vec::new(), crashes: Vec::new() };
    for name in &kernels {
        bar.set_prefix(name.clone());
        bar.set_message("preparing");
        let target = match KernelTarget::prepare(name, args.kernels.profile.as_deref(), &opts) {
            Ok(t) => t,
            Err(e) if e.downcast_ref::<crate::exit::BadInput>().is_some() => return Err(e),
            Err(e) => {
                bar.suspend(|| eprintln!("lockstep: {name}: {e:#}"));
                out.infra.push(format!("{name}: {e:#}"));
                continue;
            }
        };
        let mut left = opts.clone();
        left.timeouts.overall = deadline.saturating_duration_since(Instant::now());
        let result = KernelSession::start(&target, &left).and_then(|s| census_kernel(&target, s, args, &bar));
        match result {
            Ok((c, crashes)) => {
                if !c.module.ends_with(" loaded") && !args.guest.no_module && name != HOST {
                    out.infra.push(format!("{name}: the test module is not in the census: {}", c.module));
                }
                out.crashes.extend(crashes);
                out.kernels.push(c);
            }
            Err(e) if e.downcast_ref::<crate::exit::Interrupted>().is_some() => return Err(e),
            Err(e) => {
                bar.suspend(|| eprintln!("lockstep: {name}: {e:#}"));
                out.infra.push(format!("{name}: {e:#}"));
            }
        }
    }
    bar.finish_and_clear();
    Ok(out)
}

/// `lockstep census`.
pub fn run(args: CensusArgs) -> Result<u8> {
    let out = take_census(&args)?;
    output::json_or_text(args.json.as_deref(), || report::json(&out.kernels), || report::text(&out.kernels))?;
    if let Some(p) = &args.markdown {
        output::write_file(p, &report::markdown(&out.kernels))?;
    }
    eprint!("{}", report::summary_lines(&out.kernels));
    for i in out.infra.iter().chain(&out.crashes) {
        eprintln!("{i}");
    }
    Ok(out.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_callable_reasons_name_the_types_or_the_shared_refusal() {
        let mut reg = BTreeMap::new();
        reg.insert(ProgType::SchedCls, Registration::NotRegistered);
        reg.insert(ProgType::RawTracepoint, Registration::Registered);
        assert_eq!(
            not_callable_reason(&reg),
            "registered only for program types that cannot hold a bpf_spin_lock: raw_tracepoint"
        );
        reg.insert(ProgType::RawTracepoint, Registration::NotRegistered);
        assert!(not_callable_reason(&reg)
            .starts_with("registered for none of the program types tried (sched_cls, raw_tracepoint)"));
        let why = "before the walk: metadata kfuncs require device-bound program".to_string();
        reg.insert(ProgType::SchedCls, Registration::Refused(why.clone()));
        reg.insert(ProgType::RawTracepoint, Registration::Refused(why.clone()));
        assert_eq!(
            not_callable_reason(&reg),
            format!("refused before its registration was checked: {why} (every type tried)")
        );
        reg.insert(ProgType::Xdp, Registration::NotRegistered);
        assert!(
            not_callable_reason(&reg).ends_with("program (sched_cls, raw_tracepoint)"),
            "{}",
            not_callable_reason(&reg)
        );
    }
}
