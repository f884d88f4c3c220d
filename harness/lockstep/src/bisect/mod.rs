//! `lockstep bisect --tree PATH --good REV --bad REV CASE...`: drives `git bisect` in a kernel
//! tree. Each step builds the checked-out commit incrementally (`lockstep kernel build --source
//! TREE`: one work tree per tree path, ccache), boots the built tree through `--kernel PATH`
//! (its `O=` directory, with the test module built against it), runs the cases and marks the
//! commit: `good` when every case gives its verdict at `--good` (or `--expect`'s), `bad` when one
//! differs, `skip` when the kernel does not build or a case gives no verdict. Every tested commit
//! is a line of the log (`.git/lockstep-bisect.log`, or `--log`); a re-run reuses those lines and
//! builds only the commits not decided yet. Decisions: [`plan`] (pure); git: [`git`]; the log:
//! [`log`]; building and booting: [`KernelStep`]. Recipe: docs/bisect.md.

pub mod git;
pub mod log;
pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use lockstep_core::case::Case;
use lockstep_core::proto::KernelResult;
use lockstep_core::verdict::VerdictKind;
use lockstep_vm::kbuild::source::SourceSpec;
use lockstep_vm::kbuild::{BuildRequest, Kbuild, KbuildError};

use crate::exit::{BadInput, InfraError};
use crate::runner::{AccelChoice, CaseEvent, KernelSession, KernelTarget, RunnerOptions, TestmodChoice};
use git::{GitError, Tree};
use log::LogEntry;
use plan::{CaseVerdict, GitStatus, Next, Plan, StepOutcome, Stopped, Verdicts};

/// Arguments of `lockstep bisect`.
#[derive(Args, Clone, Debug)]
pub struct BisectArgs {
    /// The kernel git tree (its top directory; the work tree must be clean).
    #[arg(long)]
    pub tree: PathBuf,
    /// A revision where the cases give their good verdicts.
    #[arg(long)]
    pub good: String,
    /// A later revision where at least one case gives another verdict.
    #[arg(long)]
    pub bad: String,
    /// Cases: names of cases in the bundled corpus, or case files / directories.
    #[arg(required = true, value_name = "CASE")]
    pub cases: Vec<String>,
    /// CASE=accept|reject: the good verdict of a case, instead of the one at --good (repeatable;
    /// --good must then give it too).
    #[arg(long = "expect", value_name = "CASE=VERDICT")]
    pub expect: Vec<String>,
    /// The resumable log (default: <tree>/.git/lockstep-bisect.log).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// Config fragments for every step's build (as `kernel build --config`).
    #[arg(long = "config")]
    pub config: Vec<PathBuf>,
    /// make -j (default: number of CPUs).
    #[arg(long, short = 'j')]
    pub jobs: Option<usize>,
    /// Accelerator.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: AccelChoice,
}

/// Tests one commit (checked out in the tree): its outcome and the build that was booted.
/// `Err` is the machine's failure (no QEMU, a full disk, an interrupt): the bisection stops.
pub trait StepTester {
    /// Tests the commit checked out.
    fn test(&mut self, commit: &str) -> Result<(StepOutcome, Option<String>)>;
}

/// How a bisection ended.
#[derive(Debug)]
pub enum Ending {
    /// The first bad commit, its subject, and how its verdicts differ from the good ones.
    FirstBad { commit: String, subject: String, differences: Vec<plan::Difference> },
    /// It could not go on.
    Stopped(Stopped),
}

fn git_err(e: GitError) -> anyhow::Error {
    match e {
        GitError::BadTree { .. } => BadInput(e.to_string()).into(),
        GitError::Failed { .. } => InfraError(e.to_string()).into(),
    }
}

/// Drives `git bisect` in `tree` for `plan`: replays the log's outcomes, tests what is not
/// decided (appending each outcome to the log), and resets the bisection at the end.
pub fn drive(tree: &Tree, plan: &mut Plan, log_path: &Path, tester: &mut dyn StepTester) -> Result<Ending> {
    let shown = log_path.display().to_string();
    let bad_log = |e: log::LogError| -> anyhow::Error {
        match e {
            log::LogError::BadLine { .. } => BadInput(e.to_string()).into(),
            log::LogError::Io { .. } => InfraError(e.to_string()).into(),
        }
    };
    let entries = log::read(log_path).map_err(bad_log)?;
    let reused = entries.len();
    for e in entries {
        plan.record(&e.commit, e.outcome);
    }
    if reused > 0 {
        eprintln!("{shown}: {reused} recorded step(s) reused");
    }
    tree.check_clean().map_err(git_err)?;
    tree.bisect_start().map_err(git_err)?;
    let result = steps(tree, plan, log_path, tester);
    let reset = tree.bisect_reset();
    let ending = result?;
    reset.map_err(git_err)?;
    Ok(ending)
}

fn steps(tree: &Tree, plan: &mut Plan, log_path: &Path, tester: &mut dyn StepTester) -> Result<Ending> {
    let mut marked = BTreeSet::new();
    let mut git = GitStatus::Waiting;
    loop {
        if let Some(signal) = lockstep_vm::interrupt::pending() {
            bail!(crate::exit::Interrupted { signal: signal as i32 });
        }
        match plan.next(&marked, &git) {
            Next::Test(c) => {
                let subject = tree.subject(&c).map_err(git_err)?;
                eprintln!("testing {} {subject}", &c[..12]);
                tree.checkout(&c).map_err(git_err)?;
                let t = Instant::now();
                let (outcome, build) = tester.test(&c)?;
                let entry = LogEntry {
                    commit: c.clone(),
                    subject,
                    outcome,
                    build,
                    seconds: t.elapsed().as_secs_f64(),
                };
                log::append(log_path, &entry).map_err(|e| InfraError(e.to_string()))?;
                plan.record(&c, entry.outcome);
            }
            Next::Mark(c, m) => {
                let subject = tree.subject(&c).map_err(git_err)?;
                eprintln!("{} {} {subject}", m.git_word(), &c[..12]);
                git = tree.mark(&c, m).map_err(git_err)?;
                marked.insert(c);
            }
            Next::Done(c) => {
                let subject = tree.subject(&c).map_err(git_err)?;
                let reference = plan.reference().expect("both ends were marked");
                let differences =
                    plan.usable(&c).map(|o| Plan::differences(&reference, o)).unwrap_or_default();
                return Ok(Ending::FirstBad { commit: c, subject, differences });
            }
            Next::Stop(s) => return Ok(Ending::Stopped(s)),
        }
    }
}

/// Parses `--expect CASE=VERDICT` values.
pub fn parse_expect(values: &[String]) -> Result<BTreeMap<String, CaseVerdict>, String> {
    values
        .iter()
        .map(|v| {
            let (case, verdict) =
                v.split_once('=').ok_or_else(|| format!("--expect {v:?}: expected CASE=accept|reject"))?;
            Ok((
                case.to_string(),
                CaseVerdict::parse_expected(verdict).map_err(|e| format!("--expect {v:?}: {e}"))?,
            ))
        })
        .collect()
}

/// A case's verdict as bisection compares it.
pub fn case_verdict(r: &KernelResult) -> CaseVerdict {
    if r.setup_error.is_some() {
        return CaseVerdict::SetupError;
    }
    match r.verdict.verdict {
        VerdictKind::Accept => CaseVerdict::Accept,
        VerdictKind::Reject => CaseVerdict::Reject,
        VerdictKind::Unsupported => CaseVerdict::NoResult,
    }
}

/// The cases named on the command line: paths are read as case files or directories, other
/// words are case names in the bundled corpus.
fn select_cases(words: &[String]) -> Result<Vec<Case>> {
    let module = lockstep_core::module_src::bundled();
    let mut out: Vec<Case> = Vec::new();
    let mut names = Vec::new();
    for w in words {
        if Path::new(w).exists() {
            out.extend(crate::cases::load(&[PathBuf::from(w)], &module)?);
        } else {
            names.push(w.clone());
        }
    }
    if !names.is_empty() {
        let corpus = crate::cases::load(&[crate::cases::default_corpus()], &module)?;
        for n in &names {
            match corpus.iter().find(|c| &c.name == n) {
                Some(c) => out.push(c.clone()),
                None => {
                    return Err(BadInput(format!(
                        "{n}: no such case in the bundled corpus ({}), and no such file",
                        crate::cases::default_corpus().display()
                    ))
                    .into())
                }
            }
        }
    }
    let mut seen = BTreeSet::new();
    out.retain(|c| seen.insert(c.name.clone()));
    Ok(out)
}

/// Builds the commit checked out in the tree, boots the built tree through `--kernel PATH` and
/// runs the cases.
pub struct KernelStep {
    pub kbuild: Kbuild,
    pub request: BuildRequest,
    pub cases: Vec<Case>,
    pub accel: AccelChoice,
}

impl KernelStep {
    /// The `O=` directory the build of `record` used: a built kernel tree for `--kernel PATH`.
    fn obj_dir(&self, record: &lockstep_vm::kbuild::BuildRecord) -> PathBuf {
        self.kbuild.builds_dir().join("work").join(record.source.work_name()).join("obj")
    }
}

impl StepTester for KernelStep {
    fn test(&mut self, _commit: &str) -> Result<(StepOutcome, Option<String>)> {
        let built = crate::kbuild::try_build(&self.kbuild, &self.request);
        // Ctrl-C reaches make too: its failure is then the interrupt's, not the commit's.
        if let Some(signal) = lockstep_vm::interrupt::pending() {
            bail!(crate::exit::Interrupted { signal: signal as i32 });
        }
        let built = match built {
            Ok(b) => b,
            // The commit's fault: make failed, the config lost a mandatory item, no kernel Makefile.
            Err(e @ (KbuildError::Make { .. } | KbuildError::Config(_) | KbuildError::BadRequest(_))) => {
                eprintln!("build failed: {e}");
                return Ok((StepOutcome::BuildFailed { error: first_lines(&e.to_string(), 12) }, None));
            }
            Err(e) => return Err(crate::kbuild::map_err(e)).context("building the commit"),
        };
        let name = built.record.name();
        let obj = self.obj_dir(&built.record);
        // Every commit of the tree builds in the same work tree: after a cache hit its `O=`
        // directory may hold another commit's kernel, and then the cached build is booted.
        let kernel = if obj_holds(&obj, &built.record) { obj.display().to_string() } else { name.clone() };
        Ok((run_on_tree(&kernel, &name, &self.cases, self.accel)?, Some(name)))
    }
}

/// Whether the `O=` directory `obj` still holds the kernel of `record`: its `vmlinux` is the
/// one the build copied into its module tree.
fn obj_holds(obj: &Path, record: &lockstep_vm::kbuild::BuildRecord) -> bool {
    let (a, b) = (obj.join("vmlinux"), record.tree.join("vmlinux"));
    match (a.metadata(), b.metadata()) {
        (Ok(ma), Ok(mb)) if ma.len() == mb.len() => std::fs::read(&a).ok() == std::fs::read(&b).ok(),
        _ => false,
    }
}

/// Boots `kernel` (a built kernel tree for `--kernel PATH`, or a `build:` name), the test module
/// built against it, and runs `cases`: their verdicts, or why the guest could not give them.
/// `Err` only for the machine's failures and interrupts.
pub fn run_on_tree(kernel: &str, name: &str, cases: &[Case], accel: AccelChoice) -> Result<StepOutcome> {
    let opts = RunnerOptions {
        accel,
        timeouts: Default::default(),
        want_log: false,
        module: true,
        console_dir: None,
        extra_cmdline: Vec::new(),
        module_ko: None,
        testmod: TestmodChoice::Off,
        // Every step is another kernel: a snapshot would only fill the cache.
        snapshots: false,
        vcpus: 1,
    };
    // The model is not consulted: any profile satisfies the runner.
    let target = match KernelTarget::prepare(kernel, Some("7.2"), &opts) {
        Ok(t) => t,
        Err(e) => return Ok(StepOutcome::BootFailed { error: format!("{kernel}: {e:#}") }),
    };
    if let Some(e) = &target.module_error {
        return Ok(StepOutcome::BootFailed { error: format!("{kernel}: {e}") });
    }
    let mut session = KernelSession::start(&target, &opts)?;
    let mut verdicts: Verdicts = cases.iter().map(|c| (c.name.clone(), CaseVerdict::NoResult)).collect();
    let mut boot_error: Option<String> = None;
    let ran = session.run(cases, false, &mut |ev| match ev {
        CaseEvent::Booted { release, boot_time, .. } => {
            eprintln!("{name}: booted {release} from {kernel} in {:.1}s", boot_time.as_secs_f64())
        }
        CaseEvent::BootFailed { excerpt, will_retry: false } => boot_error = Some(excerpt),
        CaseEvent::Result { index, result, .. } => {
            let v = case_verdict(&result);
            let message = result.verdict.message.as_deref().map_or(String::new(), |m| format!(" ({m})"));
            eprintln!("  {}: {v}{message}", cases[index].name);
            verdicts.insert(cases[index].name.clone(), v);
        }
        CaseEvent::Crashed { index, excerpt }
        | CaseEvent::Lost { index, excerpt }
        | CaseEvent::TimedOut { index, excerpt } => {
            eprintln!("  {}: no result: {}", cases[index].name, first_lines(&excerpt, 3))
        }
        CaseEvent::NotRun { index, reason } => eprintln!("  {}: not run: {reason}", cases[index].name),
        _ => {}
    });
    session.close();
    if let Some(signal) = lockstep_vm::interrupt::pending() {
        bail!(crate::exit::Interrupted { signal: signal as i32 });
    }
    if let Err(e) = ran {
        return Ok(StepOutcome::BootFailed { error: format!("{e:#}") });
    }
    if let Some(e) = boot_error {
        return Ok(StepOutcome::BootFailed { error: first_lines(&e, 12) });
    }
    Ok(StepOutcome::Ran { verdicts })
}

fn first_lines(s: &str, n: usize) -> String {
    s.lines().take(n).collect::<Vec<_>>().join("\n")
}

/// Runs `lockstep bisect`. Exit: 0 with the first bad commit; 1 when only skipped commits are
/// left; 2 bad input (tree, revisions, cases, an end that is not what it claims, a bad log
/// line); 3 the machine (build tools, QEMU).
pub fn run(a: BisectArgs) -> Result<u8> {
    let tree = Tree::open(&a.tree).map_err(git_err)?;
    let good = tree.resolve(&a.good).map_err(git_err)?;
    let bad = tree.resolve(&a.bad).map_err(git_err)?;
    if good == bad || !tree.is_ancestor(&good, &bad) {
        return Err(BadInput(format!("--good {} is not an ancestor of --bad {}", a.good, a.bad)).into());
    }
    let expect = parse_expect(&a.expect).map_err(BadInput)?;
    let cases = select_cases(&a.cases)?;
    for c in expect.keys() {
        if !cases.iter().any(|x| &x.name == c) {
            return Err(
                BadInput(format!("--expect names {c}, which is not one of the bisected cases")).into()
            );
        }
    }
    let log_path = match &a.log {
        Some(p) => p.clone(),
        None => tree.git_dir().map_err(git_err)?.join("lockstep-bisect.log"),
    };
    let mut plan = Plan::new(cases.iter().map(|c| c.name.clone()).collect(), expect, good, bad);
    lockstep_vm::interrupt::install().context("installing the SIGINT/SIGTERM handlers")?;
    let mut step = KernelStep {
        kbuild: crate::kernel::kbuild()?,
        request: BuildRequest {
            fragments: a.config.clone(),
            jobs: a.jobs,
            ..BuildRequest::new(SourceSpec::Local(tree.path.clone()))
        },
        cases,
        accel: a.accel,
    };
    eprintln!(
        "bisecting {} case(s) in {} (log: {})",
        plan.cases.len(),
        tree.path.display(),
        log_path.display()
    );
    match drive(&tree, &mut plan, &log_path, &mut step)? {
        Ending::FirstBad { commit, subject, differences } => {
            println!("first bad commit: {commit} {subject}");
            for d in differences {
                println!("  {d}");
            }
            Ok(0)
        }
        Ending::Stopped(s @ Stopped::OnlySkipped(_)) => {
            println!("{s}");
            Ok(crate::exit::EXIT_DISAGREE)
        }
        Ending::Stopped(s) => Err(BadInput(s.to_string()).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A git repo with commits c0..c{n-1}, each writing its index to `version`.
    fn repo(n: usize) -> (tempfile::TempDir, Tree, Vec<String>) {
        let d = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let o = Command::new("git")
                .arg("-C")
                .arg(d.path())
                .args(["-c", "user.name=t", "-c", "user.email=t@t"])
                .args(args)
                .output()
                .unwrap();
            assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        };
        git(&["init", "-q", "-b", "main"]);
        let mut commits = Vec::new();
        for i in 0..n {
            std::fs::write(d.path().join("version"), format!("{i}\n")).unwrap();
            git(&["add", "version"]);
            git(&["commit", "-q", "-m", &format!("change {i}")]);
            commits.push(git(&["rev-parse", "HEAD"]));
        }
        let tree = Tree::open(d.path()).unwrap();
        (d, tree, commits)
    }

    /// Reads the checked-out `version`: case `a` is rejected from `first_bad` on; `broken`
    /// versions do not build. Counts the builds.
    struct Fake {
        dir: PathBuf,
        first_bad: usize,
        broken: Vec<usize>,
        tested: Vec<usize>,
    }

    impl StepTester for Fake {
        fn test(&mut self, _commit: &str) -> Result<(StepOutcome, Option<String>)> {
            let i: usize = std::fs::read_to_string(self.dir.join("version")).unwrap().trim().parse().unwrap();
            self.tested.push(i);
            if self.broken.contains(&i) {
                return Ok((StepOutcome::BuildFailed { error: "make all failed".into() }, None));
            }
            let a = if i >= self.first_bad { CaseVerdict::Reject } else { CaseVerdict::Accept };
            Ok((StepOutcome::Ran { verdicts: [("a".to_string(), a)].into() }, Some(format!("build:{i}"))))
        }
    }

    fn plan_for(commits: &[String]) -> Plan {
        Plan::new(vec!["a".into()], BTreeMap::new(), commits[0].clone(), commits[commits.len() - 1].clone())
    }

    #[test]
    fn real_git_bisect_names_the_first_bad_commit_and_a_rerun_builds_nothing() {
        let (d, tree, commits) = repo(12);
        let log_path = d.path().join(".git/lockstep-bisect.log");
        let mut fake = Fake { dir: d.path().into(), first_bad: 7, broken: vec![], tested: vec![] };
        let mut plan = plan_for(&commits);
        let Ending::FirstBad { commit, subject, differences } =
            drive(&tree, &mut plan, &log_path, &mut fake).unwrap()
        else {
            panic!("no first bad commit")
        };
        assert_eq!((commit.as_str(), subject.as_str()), (commits[7].as_str(), "change 7"));
        assert_eq!(differences.len(), 1);
        assert_eq!(&fake.tested[..2], &[0, 11]);
        assert!(fake.tested.len() <= 2 + 4, "{:?}", fake.tested);
        // git bisect was reset: back on the branch.
        assert_eq!(tree.git(&["symbolic-ref", "HEAD"]).unwrap().trim(), "refs/heads/main");
        let lines = std::fs::read_to_string(&log_path).unwrap().lines().count();
        assert_eq!(lines, fake.tested.len());

        // Re-run: every step is in the log; nothing is built again, the answer is the same.
        let mut again = Fake { tested: vec![], ..fake };
        let mut plan = plan_for(&commits);
        let Ending::FirstBad { commit, .. } = drive(&tree, &mut plan, &log_path, &mut again).unwrap() else {
            panic!()
        };
        assert_eq!(commit, commits[7]);
        assert!(again.tested.is_empty(), "{:?}", again.tested);
    }

    #[test]
    fn an_interrupted_bisection_resumes_from_its_log() {
        let (d, tree, commits) = repo(12);
        let log_path = d.path().join(".git/bisect.log");
        // A first run that stops after three tests (the machine failed).
        struct Dying(Fake);
        impl StepTester for Dying {
            fn test(&mut self, c: &str) -> Result<(StepOutcome, Option<String>)> {
                if self.0.tested.len() == 3 {
                    bail!(InfraError("QEMU went away".into()));
                }
                self.0.test(c)
            }
        }
        let mut dying = Dying(Fake { dir: d.path().into(), first_bad: 3, broken: vec![], tested: vec![] });
        let e = drive(&tree, &mut plan_for(&commits), &log_path, &mut dying).unwrap_err();
        assert_eq!(crate::exit::code_of(&e), 3);
        assert!(!tree.git_dir().unwrap().join("BISECT_START").exists(), "bisection left in progress");
        let first = dying.0.tested.clone();
        assert_eq!(first.len(), 3);
        let mut rest = Fake { tested: vec![], ..dying.0 };
        let Ending::FirstBad { commit, .. } =
            drive(&tree, &mut plan_for(&commits), &log_path, &mut rest).unwrap()
        else {
            panic!()
        };
        assert_eq!(commit, commits[3]);
        assert!(rest.tested.iter().all(|i| !first.contains(i)), "retested: {first:?} then {:?}", rest.tested);
    }

    #[test]
    fn a_commit_that_does_not_build_is_skipped() {
        let (d, tree, commits) = repo(12);
        let log_path = d.path().join(".git/bisect.log");
        let mut fake = Fake { dir: d.path().into(), first_bad: 6, broken: vec![5, 6], tested: vec![] };
        let ending = drive(&tree, &mut plan_for(&commits), &log_path, &mut fake).unwrap();
        let Ending::Stopped(Stopped::OnlySkipped(v)) = ending else { panic!("{ending:?}") };
        let mut v = v;
        v.sort();
        let mut want = vec![commits[5].clone(), commits[6].clone(), commits[7].clone()];
        want.sort();
        assert_eq!(v, want);
        let log = std::fs::read_to_string(&log_path).unwrap();
        assert!(log.contains(r#""outcome":"build_failed""#), "{log}");
    }

    #[test]
    fn a_dirty_tree_is_refused() {
        let (d, tree, commits) = repo(3);
        std::fs::write(d.path().join("version"), "edited\n").unwrap();
        let mut fake = Fake { dir: d.path().into(), first_bad: 1, broken: vec![], tested: vec![] };
        let e = drive(&tree, &mut plan_for(&commits), &d.path().join(".git/l"), &mut fake).unwrap_err();
        assert_eq!(crate::exit::code_of(&e), 2);
        assert!(e.to_string().contains("the work tree has changes"), "{e}");
    }

    #[test]
    fn parses_expectations() {
        let e = parse_expect(&["a=accept".into(), "b=reject".into()]).unwrap();
        assert_eq!(e["a"], CaseVerdict::Accept);
        assert_eq!(e["b"], CaseVerdict::Reject);
        assert!(parse_expect(&["a".into()]).unwrap_err().contains("CASE=accept|reject"));
        assert!(parse_expect(&["a=maybe".into()]).unwrap_err().contains("neither accept nor reject"));
    }
}
