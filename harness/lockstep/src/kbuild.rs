//! `lockstep kernel build|show` and the builds in `lockstep kernel list`: kernels built from source
//! (lockstep_vm::kbuild) and kernels by name (lockstep_vm::kernel).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lockstep_vm::kbuild::{config, BuildEvent, BuildRecord, BuildRequest, Kbuild, KbuildError, Phase};
use lockstep_vm::kernel::{self, KernelName};

use crate::exit::BadInput;

/// Arguments of `lockstep kernel build`.
#[derive(Args, Clone, Debug)]
pub struct BuildArgs {
    /// debian-src:<series> (Debian's linux-source package) or a kernel tree path.
    #[arg(long)]
    pub source: String,
    /// A directory of `git format-patch` mails, applied in file-name order.
    #[arg(long)]
    pub series: Option<PathBuf>,
    /// Config fragments layered after lockstep's base (repeatable; lockstep's mandatory items win).
    #[arg(long = "config")]
    pub config: Vec<PathBuf>,
    /// Print the plan (source, patches, merged fragment, cache key) without building.
    #[arg(long)]
    pub dry_run: bool,
    /// make -j (default: number of CPUs).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Rebuild even when cached.
    #[arg(long)]
    pub force: bool,
    /// Re-resolve the Debian source package (network).
    #[arg(long)]
    pub refresh: bool,
    /// An extra name for the build (repeatable), e.g. build:7.2+kf-spin-lock.
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
    /// Print the build record as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl BuildArgs {
    /// The library request.
    pub fn request(&self) -> Result<BuildRequest> {
        let source = self.source.parse().map_err(BadInput)?;
        Ok(BuildRequest {
            source,
            series: self.series.clone(),
            fragments: self.config.clone(),
            jobs: self.jobs,
            refresh: self.refresh,
            force: self.force,
            aliases: self.aliases.clone(),
        })
    }
}

/// Maps a build error: bad input (exit 2) or infrastructure (exit 3).
pub fn map_err(e: KbuildError) -> anyhow::Error {
    if e.is_bad_input() {
        BadInput(e.to_string()).into()
    } else {
        anyhow::Error::new(e)
    }
}

/// Runs `lockstep kernel build`.
pub fn build_cmd(a: &BuildArgs) -> Result<u8> {
    let kb = crate::cache::kbuild()?;
    let req = a.request()?;
    if a.dry_run {
        let mut ui = Ui::new(&format!("plan {}", a.source));
        let plan = kb.plan(&req, &mut |e| ui.event(e)).map_err(map_err)?;
        ui.finish();
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "source:   {} {} (kernel {})",
            plan.source.spec, plan.source.version, plan.source.kernel_version
        )?;
        match &plan.series {
            Some(s) => {
                writeln!(out, "series:   {} ({})", s.name, s.dir.display())?;
                for p in &s.patches {
                    writeln!(out, "  {}  {}  sha256:{}", p.file_name, p.subject, &p.sha256[..16])?;
                }
            }
            None => writeln!(out, "series:   none")?,
        }
        writeln!(out, "compiler: {}", plan.compiler)?;
        writeln!(out, "pahole:   {} ({})", plan.pahole.version, plan.pahole.path.display())?;
        writeln!(
            out,
            "layers:   tinyconfig, {}",
            plan.layers.iter().map(|l| l.layer.as_str()).collect::<Vec<_>>().join(", ")
        )?;
        writeln!(out, "hash:     {}", plan.hash)?;
        writeln!(
            out,
            "name:     build:{} (aliases: {})",
            lockstep_vm::kbuild::key::short(&plan.hash),
            plan.aliases.iter().map(|a| format!("build:{a}")).collect::<Vec<_>>().join(", ")
        )?;
        match &plan.cached {
            Some(c) => writeln!(out, "cache:    hit ({})", c.dir.display())?,
            None => writeln!(out, "cache:    miss (would build)")?,
        }
        writeln!(out, "\n# merged fragment (applied after tinyconfig, then make olddefconfig)")?;
        write!(out, "{}", plan.merged.render_annotated())?;
        for m in plan.merged.overrides() {
            if m.layer == config::MANDATORY_LAYER {
                eprintln!(
                    "note: CONFIG_{} is mandatory for lockstep: {} overridden",
                    m.symbol,
                    m.overridden.iter().map(|(l, v)| format!("{v} from {l}")).collect::<Vec<_>>().join(", ")
                );
            }
        }
        return Ok(0);
    }
    let rec = build(&kb, &req)?.record;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rec)?);
    } else {
        print_record(&rec);
    }
    Ok(0)
}

/// Builds with a progress display on stderr; the record (a cache hit is reported as such).
/// A build as `build` returns it: the record, and whether the cache already had it.
pub struct Built {
    pub record: BuildRecord,
    pub cache_hit: bool,
}

pub fn build(kb: &Kbuild, req: &BuildRequest) -> Result<Built> {
    try_build(kb, req).map_err(map_err)
}

/// [`build`] with the library's error, for callers that tell a failed `make` (the tree's fault:
/// `lockstep bisect` skips that commit) from the machine's failures.
pub fn try_build(kb: &Kbuild, req: &BuildRequest) -> Result<Built, KbuildError> {
    let t = Instant::now();
    let mut ui = Ui::new(&req.source.to_string());
    let plan = kb.plan(req, &mut |e| ui.event(e))?;
    let hit = plan.cached.is_some() && !req.force;
    let rec = kb.build_plan(req, &plan, &mut |e| ui.event(e))?;
    ui.finish();
    let what = if hit { "cache hit" } else { "built" };
    eprintln!(
        "{what}: {} = build:{} ({}) in {:.1}s",
        rec.name(),
        rec.aliases.join(", build:"),
        rec.identity,
        t.elapsed().as_secs_f64()
    );
    Ok(Built { record: rec, cache_hit: hit })
}

fn print_record(r: &BuildRecord) {
    println!(
        "name:      {} (aliases: {})",
        r.name(),
        r.aliases.iter().map(|a| format!("build:{a}")).collect::<Vec<_>>().join(", ")
    );
    println!("identity:  {}", r.identity);
    println!("release:   {}", r.release);
    println!("bzImage:   {}", r.bzimage.display());
    println!("config:    {}", r.config.display());
    println!("tree:      {}  (scripts/build-module.sh --tree {})", r.tree.display(), r.tree.display());
    if let Some(s) = &r.series {
        println!("series:    {}", s.name);
        for p in &s.patches {
            println!("  {}  {}", p.file_name, p.subject);
        }
    }
    let t: Vec<String> = r.timings.iter().map(|p| format!("{:?} {:.1}s", p.phase, p.seconds)).collect();
    if !t.is_empty() {
        println!(
            "timings:   {} ({} make steps, ccache {})",
            t.join(", "),
            r.make_steps,
            if r.ccache { "on" } else { "off" }
        );
    }
}

/// Prints the built kernels (`lockstep kernel list`).
pub fn list_builds(json: bool) -> Result<u8> {
    let kb = crate::cache::kbuild()?;
    let mut out = std::io::stdout().lock();
    for r in kb.list() {
        if json {
            writeln!(
                out,
                "{}",
                serde_json::to_string(&lockstep_vm::kernel::ResolvedKernel::from_build(&r))?
            )?;
        } else {
            let series = r.series.as_ref().map_or("-".to_string(), |s| s.name.clone());
            writeln!(
                out,
                "{:<20} {:<40} {:<18} {}",
                r.name(),
                r.aliases.iter().map(|a| format!("build:{a}")).collect::<Vec<_>>().join(","),
                r.release,
                series
            )?;
        }
    }
    Ok(0)
}

/// Resolves and prints a kernel name (`lockstep kernel show`).
pub fn show(name: &str) -> Result<u8> {
    let n: KernelName = name.parse().map_err(BadInput)?;
    let root = crate::cache::cache_root()?;
    let k = kernel::resolve(&n, &root, false).map_err(|e| match e {
        kernel::ResolveError::Build(b) => map_err(b),
        e if e.is_bad_input() => BadInput(e.to_string()).into(),
        other => anyhow::Error::new(other),
    })?;
    println!("{}", serde_json::to_string_pretty(&k)?);
    Ok(0)
}

/// Progress display: phases as lines, make steps as a bar (or a spinner when the total is unknown).
struct Ui {
    bar: Option<ProgressBar>,
    label: String,
    phase_start: Instant,
}

impl Ui {
    fn new(label: &str) -> Self {
        Ui { bar: None, label: label.to_string(), phase_start: Instant::now() }
    }

    fn event(&mut self, e: BuildEvent) {
        match e {
            BuildEvent::Phase(p) => {
                self.finish();
                self.phase_start = Instant::now();
                if p == Phase::Make {
                    eprintln!("[{}] make", self.label);
                }
            }
            BuildEvent::Info(m) => self.line(&format!("[{}] {m}", self.label)),
            BuildEvent::Warning(m) => self.line(&format!("[{}] warning: {m}", self.label)),
            BuildEvent::Step { done, expected, line } => {
                let bar = self.bar.get_or_insert_with(|| {
                    let b = match expected {
                        Some(n) => {
                            let b = ProgressBar::new(n);
                            b.set_style(
                                ProgressStyle::with_template(
                                    "  {elapsed_precise} [{bar:30}] {pos}/{len} (~{eta}) {wide_msg}",
                                )
                                .unwrap()
                                .progress_chars("=> "),
                            );
                            b
                        }
                        None => {
                            let b = ProgressBar::new_spinner();
                            b.set_style(
                                ProgressStyle::with_template(
                                    "  {elapsed_precise} {spinner} {pos} steps {wide_msg}",
                                )
                                .unwrap(),
                            );
                            b
                        }
                    };
                    b.enable_steady_tick(Duration::from_millis(250));
                    b
                });
                if let Some(n) = expected {
                    if done > n {
                        bar.set_length(done);
                    }
                }
                bar.set_position(done);
                bar.set_message(line);
            }
        }
    }

    fn line(&self, s: &str) {
        match &self.bar {
            Some(b) => b.println(s),
            None => eprintln!("{s}"),
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            let n = b.position();
            b.finish_and_clear();
            eprintln!("[{}] make: {n} steps in {:.1}s", self.label, self.phase_start.elapsed().as_secs_f64());
        }
    }
}
