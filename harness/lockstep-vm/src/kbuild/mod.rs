//! Building kernels from source: a Debian source package or a local tree, plus a patch series,
//! configured as a minimal QEMU x86-64 kernel, built with progress, cached by content hash.
//!
//! ```text
//! <cache>/builds/<hash>/          one finished build (hash: key::KeyInputs)
//!     build.json                  the BuildRecord (written last)
//!     bzImage  config  System.map
//!     tree/                       an external-module build tree (install-extmod-build + .config
//!                                 + vmlinux): `scripts/build-module.sh --tree <tree>`
//!     build.log
//! <cache>/builds/names/<alias>    the hash of the newest build with that alias
//! <cache>/builds/work/<source>/   one work tree per source version (see [`work`]): the series is
//!                                 switched in place and `make` rebuilds incrementally
//! <cache>/ccache/                 ccache's directory (when ccache is installed)
//! <cache>/tools/pahole/<ver>/     a private pahole (see [`tools`])
//! ```
//!
//! Pure logic, unit-tested: [`config`] (fragment layering), [`series`] (patch mails, `patch`
//! output), [`key`] (the cache key), [`progress`] (make output). I/O: [`source`], [`tools`],
//! [`work`] and [`Kbuild`].

pub mod config;
pub mod key;
pub mod progress;
pub mod recipe;
pub mod series;
pub mod source;
pub mod tools;
pub mod work;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use config::{Fragment, Merged, Mismatch};
use source::{SourceId, SourceSpec};

/// Errors of a kernel build.
#[derive(Debug, thiserror::Error)]
pub enum KbuildError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Fragment(#[from] config::FragmentError),
    #[error(transparent)]
    Series(#[from] series::SeriesError),
    #[error("patch {patch} ({subject}) does not apply:\n{detail}")]
    PatchDoesNotApply { patch: String, subject: String, detail: String },
    #[error("the final .config lacks lockstep's mandatory items:\n{}", .0.iter().map(|m| format!("  {m}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<Mismatch>),
    #[error("make {target} failed (full log: {}):\n{tail}", .log.display())]
    Make { target: String, log: PathBuf, tail: String },
    #[error("{command} failed:\n{output}")]
    Command { command: String, output: String },
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error(transparent)]
    Fetch(#[from] crate::debian::FetchError),
    #[error("no build named {0:?} (see `lockstep kernel list`)")]
    NotFound(String),
    #[error("{name:?} is ambiguous: {}", .matches.join(", "))]
    Ambiguous { name: String, matches: Vec<String> },
}

impl KbuildError {
    /// Whether the request itself is wrong (a fragment, the series, a patch that does not apply),
    /// as opposed to the machine or the network.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            KbuildError::BadRequest(_)
                | KbuildError::Fragment(_)
                | KbuildError::Series(_)
                | KbuildError::PatchDoesNotApply { .. }
                | KbuildError::Config(_)
                | KbuildError::NotFound(_)
                | KbuildError::Ambiguous { .. }
        )
    }
}

/// What to build.
#[derive(Clone, Debug)]
pub struct BuildRequest {
    pub source: SourceSpec,
    /// A directory of `git format-patch` mails.
    pub series: Option<PathBuf>,
    /// User config fragments, layered after lockstep's base and before its mandatory items.
    pub fragments: Vec<PathBuf>,
    /// `make -j` (default: the number of CPUs).
    pub jobs: Option<usize>,
    /// Re-resolve the Debian source package (network) instead of using a cached tarball.
    pub refresh: bool,
    /// Rebuild even if the cache has this build.
    pub force: bool,
    /// Extra names for the build (besides `<source>[+<series>]` and the short hash), e.g. the
    /// `kernel` a profile names (`build:7.2+kf-spin-lock`); with or without `build:`.
    pub aliases: Vec<String>,
}

impl BuildRequest {
    /// A request for `source` with nothing else.
    pub fn new(source: SourceSpec) -> Self {
        BuildRequest {
            source,
            series: None,
            fragments: vec![],
            jobs: None,
            refresh: false,
            force: false,
            aliases: vec![],
        }
    }
}

/// Stages of a build, for progress display and timings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Source,
    Tools,
    Series,
    Configure,
    /// make, up to the link of `vmlinux.o` (mostly compiling).
    Make,
    /// make, from the link of `vmlinux.o`: objtool, BTF (pahole, resolve_btfids), kallsyms
    /// passes, bzImage.
    Link,
    Install,
}

/// Progress of a build.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BuildEvent {
    Phase(Phase),
    /// Something worth a line (a download, a patch being applied, ...).
    Info(String),
    Warning(String),
    /// One `make` step: `done` so far of `expected` (when known), and the line.
    Step {
        done: u64,
        expected: Option<u64>,
        line: String,
    },
}

/// One patch of a built series.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchRecord {
    pub file_name: String,
    pub subject: String,
    pub sha256: String,
}

/// The series of a build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesRecord {
    pub name: String,
    pub dir: PathBuf,
    pub patches: Vec<PatchRecord>,
}

/// Time spent in one phase.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PhaseTime {
    pub phase: Phase,
    pub seconds: f64,
}

/// A finished build (`build.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    /// The content hash (64 hex digits).
    pub hash: String,
    /// Names besides `build:<short hash>`, e.g. `7.2+kf-spin-lock-rfc-v2` (without `build:`).
    pub aliases: Vec<String>,
    pub source: SourceId,
    pub series: Option<SeriesRecord>,
    /// User fragment paths, in order.
    pub user_fragments: Vec<String>,
    /// The merged fragment that was applied.
    pub fragment: String,
    pub compiler: String,
    pub pahole: String,
    /// `uname -r` of the booted kernel.
    pub release: String,
    /// A package-version-like identity: `<source version>[+<series>]+lockstep.<short hash>`.
    pub identity: String,
    pub dir: PathBuf,
    pub bzimage: PathBuf,
    pub config: PathBuf,
    /// The external-module build tree (`scripts/build-module.sh --tree <tree>`).
    pub tree: PathBuf,
    pub built_at_unix: u64,
    pub timings: Vec<PhaseTime>,
    /// make steps run (a measure of how incremental the build was).
    pub make_steps: u64,
    pub ccache: bool,
}

impl BuildRecord {
    /// `build:<short hash>`.
    pub fn name(&self) -> String {
        format!("build:{}", key::short(&self.hash))
    }
}

/// A resolved request: everything that determines the build, before building.
#[derive(Clone, Debug)]
pub struct Plan {
    pub source: SourceId,
    pub series: Option<series::Series>,
    pub layers: Vec<Fragment>,
    pub merged: Merged,
    pub compiler: String,
    pub pahole: tools::Tool,
    pub key: key::KeyInputs,
    pub hash: String,
    /// The cached build with this hash, if any.
    pub cached: Option<BuildRecord>,
    /// The aliases this build gets: `<source>[+<series>]`, then the requested ones.
    pub aliases: Vec<String>,
}

/// The build cache.
#[derive(Clone, Debug)]
pub struct Kbuild {
    root: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KbuildError + '_ {
    move |e| KbuildError::Io(path.to_path_buf(), e)
}

impl Kbuild {
    /// A cache rooted at `root` (the same root as [`crate::debian::KernelCache`]).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Kbuild { root: root.into() }
    }

    /// The cache at [`crate::debian::KernelCache::default_root`].
    pub fn open_default() -> Result<Self, crate::cache_root::NoCacheRoot> {
        Ok(Self::new(crate::debian::KernelCache::default_root()?))
    }

    /// `<cache>/builds`.
    pub fn builds_dir(&self) -> PathBuf {
        self.root.join("builds")
    }

    /// Every finished build, newest first.
    pub fn list(&self) -> Vec<BuildRecord> {
        let mut v: Vec<BuildRecord> = fs::read_dir(self.builds_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| read_record(&e.path().join("build.json")))
            .collect();
        v.sort_by(|a, b| b.built_at_unix.cmp(&a.built_at_unix).then_with(|| a.hash.cmp(&b.hash)));
        v
    }

    /// A build by alias (`7.2+kf-spin-lock-rfc-v2`) or hash prefix (at least 4 hex digits);
    /// `build:` in front is accepted.
    pub fn lookup(&self, name: &str) -> Result<BuildRecord, KbuildError> {
        let n = name.strip_prefix("build:").unwrap_or(name);
        if let Ok(hash) = fs::read_to_string(self.builds_dir().join("names").join(n)) {
            if let Some(r) = read_record(&self.builds_dir().join(hash.trim()).join("build.json")) {
                return Ok(r);
            }
        }
        if n.len() >= 4 && n.chars().all(|c| c.is_ascii_hexdigit()) {
            let matches: Vec<BuildRecord> =
                self.list().into_iter().filter(|r| r.hash.starts_with(&n.to_ascii_lowercase())).collect();
            match matches.len() {
                1 => return Ok(matches.into_iter().next().unwrap()),
                0 => {}
                _ => {
                    return Err(KbuildError::Ambiguous {
                        name: name.into(),
                        matches: matches.iter().map(|r| r.name()).collect(),
                    })
                }
            }
        }
        Err(KbuildError::NotFound(name.to_string()))
    }

    /// Resolves a request: source version, series, fragments, tools, cache key. May fetch the
    /// source tarball and pahole (network) when they are not cached.
    pub fn plan(
        &self,
        req: &BuildRequest,
        on_event: &mut dyn FnMut(BuildEvent),
    ) -> Result<Plan, KbuildError> {
        on_event(BuildEvent::Phase(Phase::Source));
        let source = self.source_id(req, on_event)?;
        let series = req.series.as_deref().map(series::load).transpose()?;
        let mut user = Vec::new();
        for f in &req.fragments {
            let text = fs::read_to_string(f).map_err(io(f))?;
            user.push(config::parse_fragment(&f.display().to_string(), &text)?);
        }
        let layers = config::layers(user);
        let merged = config::merge(&layers);
        on_event(BuildEvent::Phase(Phase::Tools));
        let compiler = tools::compiler_identity(recipe::CC)?;
        let pahole = tools::pahole(&self.root, false, &mut |m| on_event(BuildEvent::Info(m)))?;
        let key = key::KeyInputs {
            source_spec: source.spec.clone(),
            source_version: source.version.clone(),
            patches: series
                .iter()
                .flat_map(|s| s.patches.iter())
                .map(|p| (p.file_name.clone(), p.sha256.clone()))
                .collect(),
            fragment: merged.render(),
            compiler: compiler.clone(),
            pahole: pahole.version.clone(),
            make_vars: vec![],
        };
        let hash = key.hash();
        let cached = read_record(&self.builds_dir().join(&hash).join("build.json"));
        let mut aliases = vec![match &series {
            Some(s) => format!("{}+{}", source.short, s.name),
            None => source.short.clone(),
        }];
        for a in &req.aliases {
            let a = a.strip_prefix("build:").unwrap_or(a);
            if a.is_empty() || a.contains('/') || a.starts_with('.') {
                return Err(KbuildError::BadRequest(format!("bad alias {a:?}")));
            }
            if !aliases.iter().any(|x| x == a) {
                aliases.push(a.to_string());
            }
        }
        Ok(Plan { source, series, layers, merged, compiler, pahole, key, hash, cached, aliases })
    }

    fn source_id(
        &self,
        req: &BuildRequest,
        on_event: &mut dyn FnMut(BuildEvent),
    ) -> Result<SourceId, KbuildError> {
        match &req.source {
            SourceSpec::DebianSrc { series } => {
                let t = source::fetch_debian(&self.root, series, req.refresh, &mut |m| {
                    on_event(BuildEvent::Info(m))
                })?;
                let kernel_version = t.package_version.split('-').next().unwrap_or("").to_string();
                Ok(SourceId {
                    spec: req.source.to_string(),
                    version: t.package_version,
                    kernel_version,
                    short: series.clone(),
                })
            }
            SourceSpec::Local(p) => {
                let abs = fs::canonicalize(p).map_err(io(p))?;
                let mk = fs::read_to_string(abs.join("Makefile")).map_err(io(&abs))?;
                let kernel_version = source::makefile_version(&mk).ok_or_else(|| {
                    KbuildError::BadRequest(format!(
                        "{} is not a kernel tree (no VERSION in its Makefile)",
                        abs.display()
                    ))
                })?;
                let version = source::tree_fingerprint(&abs)?;
                let short = abs
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "tree".into());
                Ok(SourceId { spec: abs.display().to_string(), version, kernel_version, short })
            }
        }
    }

    /// Builds (or finds in the cache) the kernel of `req`.
    pub fn build(
        &self,
        req: &BuildRequest,
        on_event: &mut dyn FnMut(BuildEvent),
    ) -> Result<BuildRecord, KbuildError> {
        let plan = self.plan(req, on_event)?;
        self.build_plan(req, &plan, on_event)
    }

    /// Builds a [`Plan`] (a cache hit returns the cached record).
    pub fn build_plan(
        &self,
        req: &BuildRequest,
        plan: &Plan,
        on_event: &mut dyn FnMut(BuildEvent),
    ) -> Result<BuildRecord, KbuildError> {
        if let (Some(c), false) = (&plan.cached, req.force) {
            for a in &plan.aliases {
                self.set_alias(a, &c.hash)?;
            }
            return Ok(read_record(&c.dir.join("build.json")).unwrap_or_else(|| c.clone()));
        }
        let mut timings = Vec::new();
        let mut t = Instant::now();
        let (work, _lock, mut state) = self.open_work(req, plan, on_event)?;
        lap(&mut timings, Phase::Source, &mut t);
        on_event(BuildEvent::Phase(Phase::Series));
        if recipe::needs_switch(&plan.key.patches, state.applied.as_ref(), plan.series.is_some()) {
            work.switch(&mut state, plan.series.as_ref(), &mut |p| {
                on_event(BuildEvent::Info(format!("applying {} ({})", p.file_name, p.title())))
            })?;
        }
        lap(&mut timings, Phase::Series, &mut t);
        let ccache = tools::ccache().is_some();
        let make = self.make_cmd(req, plan, &work, ccache);
        let mut log = BuildLog::create(work.dir.join("build.log"))?;
        configure(&make, &mut log, plan, on_event)?;
        lap(&mut timings, Phase::Configure, &mut t);
        let steps = make_all(&make, &work, &mut state, &mut log, &mut timings, on_event)?;
        t = Instant::now();
        let (tmp, release) = self.install(&make, plan, log, on_event)?;
        lap(&mut timings, Phase::Install, &mut t);
        let dir = self.builds_dir().join(&plan.hash);
        let record = recipe::record(
            req,
            plan,
            recipe::Outcome {
                release,
                dir: dir.clone(),
                timings,
                make_steps: steps,
                ccache,
                built_at_unix: SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            },
        );
        self.commit(&tmp, &dir, plan, record)
    }

    /// How `make` runs for `plan` in `work` (ccache's directory under the cache root unless the
    /// environment names one).
    fn make_cmd(&self, req: &BuildRequest, plan: &Plan, work: &work::Work, ccache: bool) -> recipe::MakeCmd {
        recipe::MakeCmd {
            src: work.src(),
            obj: work.obj(),
            jobs: req.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
            pahole: plan.pahole.path.clone(),
            cc: recipe::compiler(ccache),
            extra_env: recipe::ccache_env(
                ccache,
                std::env::var_os("CCACHE_DIR").is_some(),
                std::env::var_os("CCACHE_MAXSIZE").is_some(),
                &self.root,
                &work.dir,
            ),
        }
    }

    /// Writes `record` into the installed `tmp`, moves it to `dir` (replacing an older build of the
    /// same hash) and points the plan's aliases at it.
    fn commit(
        &self,
        tmp: &Path,
        dir: &Path,
        plan: &Plan,
        record: BuildRecord,
    ) -> Result<BuildRecord, KbuildError> {
        source::write_atomic(
            &tmp.join("build.json"),
            &serde_json::to_vec_pretty(&record).expect("record serialises"),
        )?;
        let _ = fs::remove_dir_all(dir);
        fs::rename(tmp, dir).map_err(io(dir))?;
        for a in &plan.aliases {
            self.set_alias(a, &plan.hash)?;
        }
        Ok(read_record(&dir.join("build.json")).unwrap_or(record))
    }

    /// Installs the build into `<builds>/<hash>.tmp` (the image, the config, `System.map`, the
    /// external-module tree, the log); its kernel release.
    fn install(
        &self,
        make: &recipe::MakeCmd,
        plan: &Plan,
        mut log: BuildLog,
        on_event: &mut dyn FnMut(BuildEvent),
    ) -> Result<(PathBuf, String), KbuildError> {
        on_event(BuildEvent::Phase(Phase::Install));
        let tmp = self.builds_dir().join(format!("{}.tmp", plan.hash));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let cmd = format!("$(srctree)/scripts/package/install-extmod-build {}", tmp.join("tree").display());
        let run_command = format!("KBUILD_RUN_COMMAND={cmd}");
        log.run(
            make.command(&["run-command", &run_command]),
            "run-command (install-extmod-build)",
            &mut |_| {},
        )?;
        for (from, to) in recipe::install_copies(&make.obj, &tmp) {
            fs::copy(&from, &to).map_err(io(&from))?;
        }
        let log_path = log.path;
        drop(log.file);
        fs::copy(&log_path, tmp.join("build.log")).map_err(io(&log_path))?;
        let release_path = make.obj.join("include/config/kernel.release");
        let release = fs::read_to_string(&release_path).map_err(io(&release_path))?.trim().to_string();
        Ok((tmp, release))
    }

    /// Locks the work tree of `plan`'s source and makes its `src/` hold that source.
    fn open_work(
        &self,
        req: &BuildRequest,
        plan: &Plan,
        on_event: &mut dyn FnMut(BuildEvent),
    ) -> Result<(work::Work, nix::fcntl::Flock<fs::File>, work::WorkState), KbuildError> {
        let work = work::Work { dir: self.builds_dir().join("work").join(plan.source.work_name()) };
        fs::create_dir_all(&work.dir).map_err(io(&work.dir))?;
        let lock = fs::File::create(work.dir.join(".lock")).map_err(io(&work.dir))?;
        on_event(BuildEvent::Info(format!("work tree {}", work.dir.display())));
        let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| KbuildError::Io(work.dir.clone(), e.into()))?;
        let mut state = work.state();
        on_event(BuildEvent::Phase(Phase::Source));
        if state.source_version.as_deref() != Some(plan.source.version.as_str())
            || !work.src().join("Makefile").exists()
        {
            work.forget_series(&mut state)?;
            match &req.source {
                SourceSpec::DebianSrc { series } => {
                    let t = source::cached_tarball(&self.root, series)
                        .ok_or_else(|| KbuildError::BadRequest(format!("no tarball for {series}")))?;
                    on_event(BuildEvent::Info(format!("extracting {}", t.tarball.display())));
                    let _ = fs::remove_dir_all(work.src());
                    source::extract_tarball(&t.tarball, &work.src())?;
                }
                SourceSpec::Local(_) => {
                    on_event(BuildEvent::Info(format!("copying {}", plan.source.spec)));
                    source::snapshot_tree(Path::new(&plan.source.spec), &work.src())?;
                }
            }
            state.source_version = Some(plan.source.version.clone());
            work.save(&state)?;
        }
        Ok((work, lock, state))
    }

    /// Checks that the series of `req` applies to its source, without building or changing the
    /// work tree's state (fails fast, before a long build of another kernel).
    pub fn check_series(
        &self,
        req: &BuildRequest,
        on_event: &mut dyn FnMut(BuildEvent),
    ) -> Result<(), KbuildError> {
        let plan = self.plan(req, on_event)?;
        let Some(series) = &plan.series else { return Ok(()) };
        if plan.cached.is_some() {
            return Ok(());
        }
        let (work, _lock, state) = self.open_work(req, &plan, on_event)?;
        work.check(&state, series)
    }

    /// Points `alias` (with or without `build:`) at the build `hash`, taking it from the build
    /// that had it; both records' `aliases` are updated.
    pub fn set_alias(&self, alias: &str, hash: &str) -> Result<(), KbuildError> {
        let alias = alias.strip_prefix("build:").unwrap_or(alias);
        let names = self.builds_dir().join("names");
        fs::create_dir_all(&names).map_err(io(&names))?;
        let previous = fs::read_to_string(names.join(alias)).ok().map(|h| h.trim().to_string());
        source::write_atomic(&names.join(alias), format!("{hash}\n").as_bytes())?;
        for (h, add) in [(previous.as_deref(), false), (Some(hash), true)] {
            let Some(h) = h else { continue };
            let path = self.builds_dir().join(h).join("build.json");
            let Some(mut r) = read_record(&path) else { continue };
            let had = r.aliases.iter().any(|a| a == alias);
            if add && !had {
                r.aliases.push(alias.to_string());
            } else if !add && had && h != hash {
                r.aliases.retain(|a| a != alias);
            } else {
                continue;
            }
            source::write_atomic(&path, &serde_json::to_vec_pretty(&r).expect("record serialises"))?;
        }
        Ok(())
    }
}

fn read_record(path: &Path) -> Option<BuildRecord> {
    serde_json::from_str(&fs::read_to_string(path).ok()?).ok()
}

/// Records the time since `t` as `phase` and restarts `t`.
fn lap(timings: &mut Vec<PhaseTime>, phase: Phase, t: &mut Instant) {
    timings.push(PhaseTime { phase, seconds: t.elapsed().as_secs_f64() });
    *t = Instant::now();
}

/// A build's log file, which every `make` of the build appends to.
struct BuildLog {
    path: PathBuf,
    file: fs::File,
}

impl BuildLog {
    fn create(path: PathBuf) -> Result<Self, KbuildError> {
        let file = fs::File::create(&path).map_err(io(&path))?;
        Ok(BuildLog { path, file })
    }

    /// Runs `cmd` with its output in the log ([`run_logged`]).
    fn run(&mut self, cmd: Command, target: &str, on_line: &mut dyn FnMut(&str)) -> Result<(), KbuildError> {
        run_logged(cmd, &mut self.file, &self.path, target, on_line)
    }
}

/// `tinyconfig`, the plan's merged fragments on top, `olddefconfig`; a mandatory option that did
/// not stick stops the build, another is a warning.
fn configure(
    make: &recipe::MakeCmd,
    log: &mut BuildLog,
    plan: &Plan,
    on_event: &mut dyn FnMut(BuildEvent),
) -> Result<(), KbuildError> {
    on_event(BuildEvent::Phase(Phase::Configure));
    fs::create_dir_all(&make.obj).map_err(io(&make.obj))?;
    log.run(make.command(&["tinyconfig"]), "tinyconfig", &mut |_| {})?;
    let dot = make.obj.join(".config");
    let tiny = fs::read_to_string(&dot).map_err(io(&dot))?;
    fs::write(&dot, config::apply(&tiny, &plan.merged)).map_err(io(&dot))?;
    log.run(make.command(&["olddefconfig"]), "olddefconfig", &mut |_| {})?;
    let final_config = fs::read_to_string(&dot).map_err(io(&dot))?;
    let (fatal, warn) = recipe::split_mismatches(config::check(&final_config, &plan.merged));
    for m in &warn {
        on_event(BuildEvent::Warning(m.to_string()));
    }
    if !fatal.is_empty() {
        return Err(KbuildError::Config(fatal));
    }
    Ok(())
}

/// `make all` with progress (the expected steps from the last full build); its make and link
/// phases go to `timings`; the steps it took.
fn make_all(
    make: &recipe::MakeCmd,
    work: &work::Work,
    state: &mut work::WorkState,
    log: &mut BuildLog,
    timings: &mut Vec<PhaseTime>,
    on_event: &mut dyn FnMut(BuildEvent),
) -> Result<u64, KbuildError> {
    on_event(BuildEvent::Phase(Phase::Make));
    let cold = !make.obj.join("vmlinux").exists();
    let expected = progress::expected_steps(state.last_full_steps, !cold);
    let mut steps = 0u64;
    let make_start = Instant::now();
    let mut link_start: Option<Instant> = None;
    log.run(make.command(&["all"]), "all", &mut |line| {
        if let progress::MakeLine::Step { target, .. } = progress::classify(line) {
            if target == "vmlinux.o" && link_start.is_none() {
                link_start = Some(Instant::now());
            }
            steps += 1;
            on_event(BuildEvent::Step { done: steps, expected, line: line.trim().to_string() });
        }
    })?;
    if cold {
        state.last_full_steps = Some(steps);
        work.save(state)?;
    }
    let link = link_start.map_or(0.0, |l| l.elapsed().as_secs_f64());
    timings.push(PhaseTime { phase: Phase::Make, seconds: make_start.elapsed().as_secs_f64() - link });
    timings.push(PhaseTime { phase: Phase::Link, seconds: link });
    Ok(steps)
}

/// Runs `cmd` with stdout and stderr merged into `log`, each line passed to `on_line`; on failure
/// the error carries the diagnostics and the last lines.
fn run_logged(
    mut cmd: Command,
    log: &mut fs::File,
    log_path: &Path,
    target: &str,
    on_line: &mut dyn FnMut(&str),
) -> Result<(), KbuildError> {
    let (reader, writer) = std::io::pipe().map_err(io(log_path))?;
    let writer2 = writer.try_clone().map_err(io(log_path))?;
    cmd.stdin(Stdio::null()).stdout(writer).stderr(writer2);
    let _ = writeln!(log, "$ {cmd:?}");
    let mut child = cmd
        .spawn()
        .map_err(|e| KbuildError::Command { command: format!("{cmd:?}"), output: e.to_string() })?;
    drop(cmd); // closes our copies of the pipe's write end
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut diags: Vec<String> = Vec::new();
    for line in BufReader::new(reader).lines() {
        let Ok(line) = line else { break };
        let _ = writeln!(log, "{line}");
        if let progress::MakeLine::Diagnostic(d) = progress::classify(&line) {
            if d.contains("error") || d.contains("Error") {
                diags.push(d.to_string());
            }
        }
        on_line(&line);
        tail.push_back(line);
        if tail.len() > 30 {
            tail.pop_front();
        }
    }
    let status = child.wait().map_err(io(log_path))?;
    if status.success() {
        return Ok(());
    }
    let mut text = String::new();
    if !diags.is_empty() {
        text.push_str("errors:\n");
        for d in diags.iter().take(20) {
            text.push_str(&format!("  {d}\n"));
        }
        text.push_str("last lines:\n");
    }
    for l in tail {
        text.push_str(&format!("  {l}\n"));
    }
    Err(KbuildError::Make { target: target.to_string(), log: log_path.to_path_buf(), tail: text })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(root: &Path, hash: &str, alias: &str, t: u64) -> BuildRecord {
        let dir = root.join("builds").join(hash);
        fs::create_dir_all(&dir).unwrap();
        let r = BuildRecord {
            hash: hash.into(),
            aliases: vec![alias.into()],
            source: SourceId {
                spec: "debian-src:7.2".into(),
                version: "7.2.13-1".into(),
                kernel_version: "7.2.13".into(),
                short: "7.2".into(),
            },
            series: None,
            user_fragments: vec![],
            fragment: String::new(),
            compiler: "gcc".into(),
            pahole: "v1.30".into(),
            release: "7.2.13-lockstep".into(),
            identity: format!("7.2.13-1+lockstep.{}", key::short(hash)),
            dir: dir.clone(),
            bzimage: dir.join("bzImage"),
            config: dir.join("config"),
            tree: dir.join("tree"),
            built_at_unix: t,
            timings: vec![],
            make_steps: 0,
            ccache: false,
        };
        fs::write(dir.join("build.json"), serde_json::to_string(&r).unwrap()).unwrap();
        let k = Kbuild::new(root);
        k.set_alias(alias, hash).unwrap();
        r
    }

    #[test]
    fn lookup_by_alias_and_hash_prefix() {
        let d = tempfile::tempdir().unwrap();
        let a = record(d.path(), "abcd1234aaaa0000", "7.2", 1);
        let b = record(d.path(), "abcd9999bbbb0000", "7.2+kf-spin-lock-rfc-v2", 2);
        let k = Kbuild::new(d.path());
        assert_eq!(
            k.list().iter().map(|r| r.hash.as_str()).collect::<Vec<_>>(),
            [b.hash.as_str(), a.hash.as_str()]
        );
        assert_eq!(k.lookup("build:7.2").unwrap().hash, a.hash);
        assert_eq!(k.lookup("7.2+kf-spin-lock-rfc-v2").unwrap().hash, b.hash);
        assert_eq!(k.lookup("build:abcd12").unwrap().hash, a.hash);
        assert!(matches!(k.lookup("build:abcd"), Err(KbuildError::Ambiguous { .. })));
        assert!(matches!(k.lookup("build:7.3"), Err(KbuildError::NotFound(_))));
        assert!(matches!(k.lookup("build:abc"), Err(KbuildError::NotFound(_))), "too short for a prefix");
        // An alias moves to the newest build with it; the records say who has it.
        record(d.path(), "ffff000011112222", "7.2", 3);
        assert_eq!(k.lookup("build:7.2").unwrap().hash, "ffff000011112222");
        assert_eq!(k.lookup("build:abcd12").unwrap().aliases, Vec::<String>::new());
        k.set_alias("build:7.2+kf-spin-lock", "ffff000011112222").unwrap();
        assert_eq!(k.lookup("build:7.2+kf-spin-lock").unwrap().aliases, ["7.2", "7.2+kf-spin-lock"]);
        assert_eq!(a.name(), "build:abcd1234aaaa");
    }

    #[test]
    fn run_logged_streams_lines_and_reports_failures() {
        let d = tempfile::tempdir().unwrap();
        let log_path = d.path().join("log");
        let mut log = fs::File::create(&log_path).unwrap();
        let mut seen = vec![];
        let mut c = Command::new("sh");
        c.args(["-c", "echo '  CC      a.o'; echo 'a.c:1:1: error: boom' >&2; echo '  LD      b'; exit 2"]);
        let e = run_logged(c, &mut log, &log_path, "all", &mut |l| seen.push(l.to_string())).unwrap_err();
        assert_eq!(seen.len(), 3);
        assert!(seen.contains(&"a.c:1:1: error: boom".to_string()));
        match e {
            KbuildError::Make { target, tail, .. } => {
                assert_eq!(target, "all");
                assert!(tail.starts_with("errors:\n  a.c:1:1: error: boom\n"), "{tail}");
            }
            other => panic!("{other:?}"),
        }
        let text = fs::read_to_string(&log_path).unwrap();
        assert!(text.contains("  LD      b"));
        let mut ok = Command::new("true");
        ok.arg("x");
        run_logged(ok, &mut log, &log_path, "t", &mut |_| {}).unwrap();
    }
}
