//! The decisions of a bisection, as pure bookkeeping over recorded step outcomes: which commit to
//! build and judge next, how a step's verdicts mark it (good, bad, skip), and when the bisection
//! is over. No git, no build, no guest here: [`super`] does those and feeds the outcomes back.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// What one case gave on one kernel, as far as bisection compares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseVerdict {
    /// The verifier accepted the program.
    Accept,
    /// The verifier rejected the program.
    Reject,
    /// The case could not be set up (maps, BTF, kfunc resolution): no verifier verdict.
    SetupError,
    /// No result: the case crashed or lost the guest, timed out, or never ran.
    NoResult,
}

impl CaseVerdict {
    /// Parses an `--expect` value (`accept` or `reject`).
    pub fn parse_expected(s: &str) -> Result<CaseVerdict, String> {
        match s {
            "accept" => Ok(CaseVerdict::Accept),
            "reject" => Ok(CaseVerdict::Reject),
            _ => Err(format!("expected verdict {s:?} is neither accept nor reject")),
        }
    }
}

impl std::fmt::Display for CaseVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CaseVerdict::Accept => "accept",
            CaseVerdict::Reject => "reject",
            CaseVerdict::SetupError => "setup-error",
            CaseVerdict::NoResult => "no-result",
        })
    }
}

/// The verdicts of the bisected cases on one kernel, by case name.
pub type Verdicts = BTreeMap<String, CaseVerdict>;

/// What testing one commit gave.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum StepOutcome {
    /// Built and booted: the cases' verdicts.
    Ran { verdicts: Verdicts },
    /// The kernel did not build (git bisect's `skip`).
    BuildFailed { error: String },
    /// Built, but the guest could not be prepared or booted, or the test module not built.
    BootFailed { error: String },
}

/// How a commit is marked in `git bisect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Good,
    Bad,
    Skip,
}

impl Mark {
    /// The `git bisect` subcommand.
    pub fn git_word(self) -> &'static str {
        match self {
            Mark::Good => "good",
            Mark::Bad => "bad",
            Mark::Skip => "skip",
        }
    }
}

/// Where `git bisect` stands after the last mark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GitStatus {
    /// Not every end is marked yet (or nothing was marked in this run).
    Waiting,
    /// git checked out this commit for testing.
    Test(String),
    /// git named the first bad commit.
    FirstBad(String),
    /// Only skipped commits are left: the first bad commit is one of these.
    OnlySkipped(Vec<String>),
}

/// The next thing to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Check out, build, boot and run the cases on this commit, then record the outcome.
    Test(String),
    /// Tell git how this commit is marked (its outcome is recorded already).
    Mark(String, Mark),
    /// The first bad commit.
    Done(String),
    /// The bisection cannot go on.
    Stop(Stopped),
}

/// Why a bisection stops without a first bad commit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    #[error("the --good revision {commit} did not give verdicts: {why}")]
    GoodUntestable { commit: String, why: String },
    #[error("the --good revision {commit} is not good: {}", differences(.diffs))]
    GoodIsNotGood { commit: String, diffs: Vec<Difference> },
    #[error("the --bad revision {commit} did not give verdicts: {why}")]
    BadUntestable { commit: String, why: String },
    #[error("the --bad revision {commit} is not bad: every case gives its good verdict there")]
    BadIsNotBad { commit: String },
    #[error("only skipped commits are left; the first bad commit is one of: {}", .0.join(", "))]
    OnlySkipped(Vec<String>),
}

/// A case whose verdict differs from the good one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub case: String,
    pub good: CaseVerdict,
    pub got: CaseVerdict,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} where good is {}", self.case, self.got, self.good)
    }
}

fn differences(d: &[Difference]) -> String {
    d.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("; ")
}

/// A bisection's inputs and the outcomes recorded so far (from the log, and from this run).
#[derive(Clone, Debug)]
pub struct Plan {
    /// The bisected cases, by name.
    pub cases: Vec<String>,
    /// `--expect CASE=VERDICT`: the good verdict of a case, instead of the one at `--good`.
    pub expect: BTreeMap<String, CaseVerdict>,
    /// The `--good` commit (full hash).
    pub good: String,
    /// The `--bad` commit (full hash).
    pub bad: String,
    outcomes: BTreeMap<String, StepOutcome>,
}

impl Plan {
    /// A bisection of `cases` between `good` and `bad` (full hashes), nothing recorded yet.
    pub fn new(cases: Vec<String>, expect: BTreeMap<String, CaseVerdict>, good: String, bad: String) -> Self {
        Plan { cases, expect, good, bad, outcomes: BTreeMap::new() }
    }

    /// Records the outcome of testing `commit` (a later record replaces an earlier one).
    pub fn record(&mut self, commit: &str, outcome: StepOutcome) {
        self.outcomes.insert(commit.to_string(), outcome);
    }

    /// The recorded outcome of `commit`, if it can stand for these cases: a run that judged
    /// every case, or a build failure (which does not depend on the cases).
    pub fn usable(&self, commit: &str) -> Option<&StepOutcome> {
        match self.outcomes.get(commit)? {
            o @ StepOutcome::Ran { verdicts } => {
                self.cases.iter().all(|c| verdicts.contains_key(c)).then_some(o)
            }
            o @ StepOutcome::BuildFailed { .. } => Some(o),
            // A boot failure may be the machine's (load, a full disk): tried again on a re-run.
            StepOutcome::BootFailed { .. } => None,
        }
    }

    /// The good verdicts: the `--good` commit's, overridden by `--expect`. `None` until the
    /// `--good` commit has run.
    pub fn reference(&self) -> Option<Verdicts> {
        let StepOutcome::Ran { verdicts } = self.usable(&self.good)? else { return None };
        Some(
            self.cases
                .iter()
                .map(|c| (c.clone(), self.expect.get(c).or_else(|| verdicts.get(c)).copied().unwrap()))
                .collect(),
        )
    }

    /// How a step's outcome marks its commit, against the good verdicts: any case without a
    /// verdict, or a kernel that did not build or boot, is `skip`; all cases as good is `good`;
    /// else `bad`.
    pub fn judge(reference: &Verdicts, outcome: &StepOutcome) -> Mark {
        let StepOutcome::Ran { verdicts } = outcome else { return Mark::Skip };
        let got = |c: &str| verdicts.get(c).copied().unwrap_or(CaseVerdict::NoResult);
        if reference.keys().any(|c| got(c) == CaseVerdict::NoResult) {
            return Mark::Skip;
        }
        if reference.iter().all(|(c, v)| got(c) == *v) {
            Mark::Good
        } else {
            Mark::Bad
        }
    }

    /// The cases of `outcome` whose verdicts differ from the good ones.
    pub fn differences(reference: &Verdicts, outcome: &StepOutcome) -> Vec<Difference> {
        let StepOutcome::Ran { verdicts } = outcome else { return vec![] };
        reference
            .iter()
            .filter_map(|(c, good)| {
                let got = verdicts.get(c).copied().unwrap_or(CaseVerdict::NoResult);
                (got != *good).then(|| Difference { case: c.clone(), good: *good, got })
            })
            .collect()
    }

    /// What to do next, given the commits already marked in git during this run and where git
    /// stands. The ends come first: `--good` must run and be good (its verdicts meet every
    /// `--expect`), `--bad` must be bad; then each commit git checks out is tested once and
    /// marked (a recorded outcome is reused, not rebuilt).
    pub fn next(&self, marked: &BTreeSet<String>, git: &GitStatus) -> Next {
        // The good end.
        if !marked.contains(&self.good) {
            let Some(outcome) = self.usable(&self.good) else { return Next::Test(self.good.clone()) };
            let StepOutcome::Ran { verdicts } = outcome else {
                return Next::Stop(Stopped::GoodUntestable { commit: self.good.clone(), why: why(outcome) });
            };
            let reference = self.reference().expect("the good end ran");
            let ran = StepOutcome::Ran { verdicts: verdicts.clone() };
            return match Self::judge(&reference, &ran) {
                Mark::Good => Next::Mark(self.good.clone(), Mark::Good),
                Mark::Skip => Next::Stop(Stopped::GoodUntestable {
                    commit: self.good.clone(),
                    why: differences(&Self::differences(&reference, &ran)),
                }),
                Mark::Bad => Next::Stop(Stopped::GoodIsNotGood {
                    commit: self.good.clone(),
                    diffs: Self::differences(&reference, &ran),
                }),
            };
        }
        let reference = self.reference().expect("the good end was marked after it ran");
        // The bad end.
        if !marked.contains(&self.bad) {
            let Some(outcome) = self.usable(&self.bad) else { return Next::Test(self.bad.clone()) };
            return match Self::judge(&reference, outcome) {
                Mark::Bad => Next::Mark(self.bad.clone(), Mark::Bad),
                Mark::Good => Next::Stop(Stopped::BadIsNotBad { commit: self.bad.clone() }),
                Mark::Skip => Next::Stop(Stopped::BadUntestable {
                    commit: self.bad.clone(),
                    why: match outcome {
                        StepOutcome::Ran { .. } => differences(&Self::differences(&reference, outcome)),
                        o => why(o),
                    },
                }),
            };
        }
        match git {
            GitStatus::Test(c) => match self.usable(c) {
                Some(o) => Next::Mark(c.clone(), Self::judge(&reference, o)),
                None => Next::Test(c.clone()),
            },
            GitStatus::FirstBad(c) => Next::Done(c.clone()),
            GitStatus::OnlySkipped(v) => Next::Stop(Stopped::OnlySkipped(v.clone())),
            // Both ends are marked: git always says where it stands then.
            GitStatus::Waiting => Next::Stop(Stopped::OnlySkipped(vec![])),
        }
    }
}

fn why(o: &StepOutcome) -> String {
    match o {
        StepOutcome::Ran { .. } => "ran".into(),
        StepOutcome::BuildFailed { error } => format!("the build failed: {error}"),
        StepOutcome::BootFailed { error } => format!("the guest failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "c0";
    const BAD: &str = "c9";

    fn v(pairs: &[(&str, CaseVerdict)]) -> StepOutcome {
        StepOutcome::Ran { verdicts: pairs.iter().map(|(c, v)| (c.to_string(), *v)).collect() }
    }

    fn plan() -> Plan {
        Plan::new(vec!["a".into(), "b".into()], BTreeMap::new(), GOOD.into(), BAD.into())
    }

    fn set(xs: &[&str]) -> BTreeSet<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    use CaseVerdict::*;

    /// A fake linear history c0..c9 whose cases flip at `first_bad`, bisected the way git does
    /// (midpoint of the untested range; skipped commits stepped over); the plan decides every
    /// step. Returns the commits tested, in order, and how it ended.
    fn simulate(first_bad: usize, unbuildable: &[usize]) -> (Vec<String>, Next) {
        let commits: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
        let mut plan = plan();
        let mut marked = BTreeSet::new();
        let mut marks: BTreeMap<usize, Mark> = BTreeMap::new();
        let mut tested = Vec::new();
        let mut git = GitStatus::Waiting;
        for _ in 0..40 {
            match plan.next(&marked, &git) {
                Next::Test(c) => {
                    let i: usize = c[1..].parse().unwrap();
                    tested.push(c.clone());
                    let outcome = if unbuildable.contains(&i) {
                        StepOutcome::BuildFailed { error: "make failed".into() }
                    } else if i >= first_bad {
                        v(&[("a", Reject), ("b", Accept)])
                    } else {
                        v(&[("a", Accept), ("b", Accept)])
                    };
                    plan.record(&c, outcome);
                }
                Next::Mark(c, m) => {
                    let i: usize = c[1..].parse().unwrap();
                    marked.insert(c);
                    marks.insert(i, m);
                    if !(marks.values().any(|m| *m == Mark::Good) && marks.values().any(|m| *m == Mark::Bad))
                    {
                        continue;
                    }
                    // git: the range between the last good and the first bad.
                    let lo = *marks.iter().filter(|(_, m)| **m == Mark::Good).map(|(i, _)| i).max().unwrap();
                    let hi = *marks.iter().filter(|(_, m)| **m == Mark::Bad).map(|(i, _)| i).min().unwrap();
                    let left: Vec<usize> = (lo + 1..hi).filter(|i| !marks.contains_key(i)).collect();
                    git = if left.is_empty() {
                        let skipped: Vec<usize> = (lo + 1..hi).collect();
                        if skipped.is_empty() {
                            GitStatus::FirstBad(commits[hi].clone())
                        } else {
                            GitStatus::OnlySkipped(
                                skipped.iter().chain([&hi]).map(|i| commits[*i].clone()).collect(),
                            )
                        }
                    } else {
                        GitStatus::Test(commits[left[left.len() / 2]].clone())
                    };
                }
                end => return (tested, end),
            }
        }
        panic!("no end after 40 decisions");
    }

    #[test]
    fn tests_both_ends_first_then_finds_the_first_bad_commit() {
        for first_bad in 1..10 {
            let (tested, end) = simulate(first_bad, &[]);
            assert_eq!(end, Next::Done(format!("c{first_bad}")), "first bad c{first_bad}");
            assert_eq!(&tested[..2], &["c0".to_string(), "c9".to_string()]);
            // Binary search: at most ceil(log2(9)) = 4 steps between the ends.
            assert!(tested.len() <= 6, "{tested:?}");
        }
    }

    #[test]
    fn adjacent_ends_need_no_step_between_them() {
        // The two-commit tree of docs/bisect.md: base, then the RFC.
        let mut p = plan();
        p.record(GOOD, v(&[("a", Accept), ("b", Accept)]));
        p.record(BAD, v(&[("a", Reject), ("b", Accept)]));
        assert_eq!(p.next(&set(&[]), &GitStatus::Waiting), Next::Mark(GOOD.into(), Mark::Good));
        assert_eq!(p.next(&set(&[GOOD]), &GitStatus::Waiting), Next::Mark(BAD.into(), Mark::Bad));
        assert_eq!(p.next(&set(&[GOOD, BAD]), &GitStatus::FirstBad(BAD.into())), Next::Done(BAD.into()));
    }

    #[test]
    fn a_build_failure_is_skipped_and_the_bisection_goes_on() {
        // c3 is the second step (c0, c9, c5, then c3): skipped, and its neighbour decides.
        let (tested, end) = simulate(5, &[3]);
        assert_eq!(end, Next::Done("c5".into()));
        assert!(tested.contains(&"c3".to_string()), "{tested:?}");
        // The commit right before the first bad one does not build: it may be the culprit.
        let (_, end) = simulate(5, &[4]);
        assert!(matches!(&end, Next::Stop(Stopped::OnlySkipped(v)) if v == &["c4", "c5"]), "{end:?}");
        // Every commit between the ends up to the first bad one fails to build: git can only
        // narrow it down to those.
        let (_, end) = simulate(5, &[4, 3, 2, 1]);
        assert!(
            matches!(&end, Next::Stop(Stopped::OnlySkipped(v)) if v.len() == 5 && v[4] == "c5"),
            "{end:?}"
        );
        let (_, end) = simulate(5, &[5]);
        assert!(matches!(&end, Next::Stop(Stopped::OnlySkipped(v)) if v == &["c5", "c6"]), "{end:?}");
    }

    #[test]
    fn recorded_outcomes_are_reused_not_retested() {
        let mut p = plan();
        p.record(GOOD, v(&[("a", Accept), ("b", Accept)]));
        p.record(BAD, v(&[("a", Reject), ("b", Accept)]));
        p.record("c4", v(&[("a", Reject), ("b", Accept)]));
        p.record("c2", StepOutcome::BuildFailed { error: "x".into() });
        p.record("c3", StepOutcome::BootFailed { error: "no QEMU".into() });
        let m = set(&[GOOD, BAD]);
        assert_eq!(p.next(&m, &GitStatus::Test("c4".into())), Next::Mark("c4".into(), Mark::Bad));
        assert_eq!(p.next(&m, &GitStatus::Test("c2".into())), Next::Mark("c2".into(), Mark::Skip));
        // A boot failure may be the machine's: tested again.
        assert_eq!(p.next(&m, &GitStatus::Test("c3".into())), Next::Test("c3".into()));
        assert_eq!(p.next(&m, &GitStatus::Test("c5".into())), Next::Test("c5".into()));
    }

    #[test]
    fn a_record_missing_a_case_is_tested_again() {
        let mut p = plan();
        p.record(GOOD, v(&[("a", Accept)]));
        assert_eq!(p.next(&set(&[]), &GitStatus::Waiting), Next::Test(GOOD.into()));
    }

    #[test]
    fn the_ends_must_be_what_they_claim() {
        let mut p = plan();
        p.record(GOOD, v(&[("a", Accept), ("b", Accept)]));
        p.record(BAD, v(&[("a", Accept), ("b", Accept)]));
        assert_eq!(
            p.next(&set(&[GOOD]), &GitStatus::Waiting),
            Next::Stop(Stopped::BadIsNotBad { commit: BAD.into() })
        );

        let mut p = plan();
        p.record(GOOD, StepOutcome::BuildFailed { error: "make all failed".into() });
        let Next::Stop(s) = p.next(&set(&[]), &GitStatus::Waiting) else { panic!() };
        assert!(s.to_string().contains("did not give verdicts: the build failed: make all failed"), "{s}");

        let mut p = plan();
        p.record(GOOD, v(&[("a", Accept), ("b", NoResult)]));
        assert!(matches!(p.next(&set(&[]), &GitStatus::Waiting), Next::Stop(Stopped::GoodUntestable { .. })));

        let mut p = plan();
        p.record(GOOD, v(&[("a", Accept), ("b", Accept)]));
        p.record(BAD, StepOutcome::BootFailed { error: "boot timed out".into() });
        // A boot failure is tried again, once the run is re-run.
        assert_eq!(p.next(&set(&[GOOD]), &GitStatus::Waiting), Next::Test(BAD.into()));
    }

    #[test]
    fn expectations_override_the_good_end() {
        let mut p = plan();
        p.expect.insert("a".into(), Reject);
        p.record(GOOD, v(&[("a", Accept), ("b", Accept)]));
        let Next::Stop(s) = p.next(&set(&[]), &GitStatus::Waiting) else { panic!() };
        assert_eq!(
            s.to_string(),
            format!("the --good revision {GOOD} is not good: a: accept where good is reject")
        );
        // With the expectation met at --good, a commit that loses it is bad.
        p.record(GOOD, v(&[("a", Reject), ("b", Accept)]));
        let r = p.reference().unwrap();
        assert_eq!(Plan::judge(&r, &v(&[("a", Accept), ("b", Accept)])), Mark::Bad);
        assert_eq!(Plan::judge(&r, &v(&[("a", Reject), ("b", Accept)])), Mark::Good);
        assert_eq!(Plan::judge(&r, &v(&[("a", Reject), ("b", SetupError)])), Mark::Bad);
        assert_eq!(Plan::judge(&r, &v(&[("a", Reject)])), Mark::Skip);
    }
}
