//! Loading case files from text: a path list is expanded by the caller (I/O lives at the edges);
//! this module turns file contents into cases and compares model verdicts with expectations.

use crate::case::parse::{parse_cases, CaseError};
use crate::case::{Case, Expectation};
use crate::profile::{KernelProfile, ModuleKfuncs};
use crate::verdict::{Verdict, VerdictKind};

/// Every kfunc name a case may call: the test module's, the vmlinux kfuncs the profiles know and
/// those the model handles by name.
pub fn known_kfuncs(module: &ModuleKfuncs) -> Vec<String> {
    let mut v: Vec<String> = module.kfuncs.keys().cloned().collect();
    v.extend(crate::model::modelled_kfuncs());
    for p in KernelProfile::all() {
        v.extend(p.kfuncs_under_lock.iter().cloned());
    }
    v.sort();
    v.dedup();
    v
}

/// A case file's bytes as text; invalid UTF-8 is an error at its line and column.
pub fn decode_utf8<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, CaseError> {
    std::str::from_utf8(bytes).map_err(|e| {
        let good = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
        let line = good.matches('\n').count() + 1;
        let column = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let byte = bytes.get(e.valid_up_to()).copied().unwrap_or(0);
        CaseError {
            file: file.to_string(),
            line,
            column,
            message: format!("invalid UTF-8 (byte 0x{byte:02x}); case files are UTF-8 text"),
        }
    })
}

/// Parses one file's text into cases.
pub fn load_text(file: &str, src: &str, module: &ModuleKfuncs) -> Result<Vec<Case>, CaseError> {
    parse_cases(file, src, &known_kfuncs(module))
}

/// Parses one file's bytes into cases, with `known_kfuncs` from [`known_kfuncs`] (computed once
/// for many files).
pub fn load_bytes(file: &str, bytes: &[u8], known_kfuncs: &[String]) -> Result<Vec<Case>, CaseError> {
    parse_cases(file, decode_utf8(file, bytes)?, known_kfuncs)
}

/// One model verdict with its expectation check.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CheckRow {
    pub case: String,
    pub file: String,
    pub line: usize,
    pub profile: String,
    pub verdict: VerdictKind,
    pub insn: Option<usize>,
    pub message: Option<String>,
    /// `None`: no expectation for this profile; `Some(false)`: the model disagrees with it.
    pub expected: Option<bool>,
}

/// The expectation of `case` for `profile`: its own entry, else the `"*"` entry.
pub fn expectation<'a>(case: &'a Case, profile: &str) -> Option<&'a Expectation> {
    case.expect.get(profile).or_else(|| case.expect.get("*"))
}

/// Whether `v` meets `case`'s expectation for `profile` (`None` if there is none). A `"*"` key
/// applies to every profile without its own entry. Messages compare on their first line.
///
/// `msgs` patterns (selftest `__msg`) are matched against the verdict's message with
/// [`msgs_match`] when a rejection is expected. When an acceptance is expected they can only be
/// verifier-log lines (`__msg("29: safe")` at `__log_level(2)`): a verdict has no log, so they
/// are left to [`kernel_meets_expectation`] and [`log_only_msgs`] reports them.
pub fn meets_expectation(case: &Case, profile: &str, v: &Verdict) -> Option<bool> {
    let e = expectation(case, profile)?;
    let msgs_ok = e.verdict != VerdictKind::Reject || msgs_match(&e.msgs, v.message.as_deref().unwrap_or(""));
    Some(meets_verdict(e, v) && msgs_ok)
}

/// Whether a kernel's result meets `case`'s expectation for `profile` (`None` if there is none):
/// as [`meets_expectation`], but when the result carries the verifier log (`want_log`) the
/// `msgs` patterns are matched against the whole log, as the selftests' `test_loader.c` does,
/// so log-only patterns of an expected acceptance are checked too.
/// An expectation of `unsupported` is about the model only (a kernel always decides): `None`.
pub fn kernel_meets_expectation(case: &Case, profile: &str, r: &crate::proto::KernelResult) -> Option<bool> {
    let e = expectation(case, profile)?;
    if e.verdict == VerdictKind::Unsupported {
        return None;
    }
    let retval_ok = !matches!(retval_met(e, r), RetvalMet::NotMet { .. });
    let Some(log) = &r.log else { return Some(meets_expectation(case, profile, &r.verdict)? && retval_ok) };
    Some(meets_verdict(e, &r.verdict) && msgs_match(&e.msgs, log) && retval_ok)
}

/// Whether a kernel result meets an expectation's `__retval` (test_loader.c: checked only when
/// the test run happened; a run the kernel refused is reported, not counted as a mismatch).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RetvalMet {
    /// No `__retval` expected.
    NotExpected,
    /// The program returned the expected value (or any value, for `POINTER_VALUE`).
    Met { retval: i64 },
    /// It returned another value.
    NotMet { retval: i64, expected: i64 },
    /// It was not run: why.
    NotRun(String),
}

impl RetvalMet {
    /// The row's text: `met (0)`, `not met: returned 1, expected 0`, `not run: ...`.
    pub fn describe(&self) -> Option<String> {
        match self {
            RetvalMet::NotExpected => None,
            RetvalMet::Met { retval } => Some(format!("met ({retval})")),
            RetvalMet::NotMet { retval, expected } => {
                Some(format!("not met: returned {retval}, expected {expected}"))
            }
            RetvalMet::NotRun(why) => Some(format!("not run: {why}")),
        }
    }
}

/// [`RetvalMet`] of kernel result `r` against expectation `e`. The return value is compared as
/// test_loader.c does: as a C `int` (`0xffffffff` is `-1`).
pub fn retval_met(e: &Expectation, r: &crate::proto::KernelResult) -> RetvalMet {
    use crate::proto::TestRun;
    let Some(expected) = e.retval else { return RetvalMet::NotExpected };
    match &r.test_run {
        Some(TestRun::Ran { retval }) => {
            let got = *retval as i32 as i64;
            let expected_int = expected as u32 as i32 as i64;
            if expected == crate::case::RETVAL_ANY || got == expected_int {
                RetvalMet::Met { retval: got }
            } else {
                RetvalMet::NotMet { retval: got, expected }
            }
        }
        Some(TestRun::Refused { errno, errno_name }) => {
            RetvalMet::NotRun(format!("BPF_PROG_TEST_RUN failed: {errno_name} ({errno})"))
        }
        None if r.verdict.verdict != VerdictKind::Accept => {
            RetvalMet::NotRun("the program did not load".into())
        }
        None => RetvalMet::NotRun("the loader ran no test (not an object program)".into()),
    }
}

/// Verdict, instruction and first message line (the parts a verdict always carries).
fn meets_verdict(e: &Expectation, v: &Verdict) -> bool {
    let first = |s: &Option<String>| s.as_deref().map(|m| m.lines().next().unwrap_or("").to_string());
    e.verdict == v.verdict
        && (e.insn.is_none() || e.insn == v.insn)
        && (e.message.is_none() || first(&e.message) == first(&v.message))
}

/// `msgs` patterns of `case`'s expectation for `profile` that a verdict alone cannot check (those
/// of an expected acceptance: verifier-log lines).
pub fn log_only_msgs<'a>(case: &'a Case, profile: &str) -> &'a [String] {
    match expectation(case, profile) {
        Some(e) if e.verdict != VerdictKind::Reject => &e.msgs,
        _ => &[],
    }
}

/// Whether every pattern occurs in `text`, in order, each after the end of the previous one
/// (`test_loader.c`'s `validate_msgs()`: plain substrings, or `{{regex}}` parts; see
/// [`crate::msgpat`]).
pub fn msgs_match(patterns: &[String], text: &str) -> bool {
    crate::msgpat::all_match_in_order(patterns, text)
}

/// Runs the model on every case for every profile.
pub fn check_all(cases: &[Case], profiles: &[KernelProfile], module: &ModuleKfuncs) -> Vec<CheckRow> {
    let mut rows = Vec::new();
    for c in cases {
        let prep = crate::model::Prepared::new(c);
        for p in profiles {
            let v = crate::model::check_prepared(&prep, p, module, &Default::default());
            rows.push(CheckRow {
                case: c.name.clone(),
                file: c.file.clone(),
                line: c.line,
                profile: p.name.clone(),
                expected: meets_expectation(c, &p.name, &v),
                verdict: v.verdict,
                insn: v.insn,
                message: v.message,
            });
        }
    }
    rows
}

/// The text the corpus snapshot test records for `rows`: one line per row,
/// `case [profile] verdict insn message` (`-` for no insn, newlines in messages as `\n`).
pub fn snapshot_text(rows: &[CheckRow]) -> String {
    let mut out = String::new();
    for r in rows {
        let insn = r.insn.map_or("-".to_string(), |i| i.to_string());
        let msg = r.message.as_deref().unwrap_or("").replace('\n', "\\n");
        out.push_str(&format!("{} [{}] {} {} {}\n", r.case, r.profile, r.verdict.as_str(), insn, msg));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::test_support::kernel_result;
    use crate::proto::KernelResult;

    fn case_with(verdict: VerdictKind, msgs: &[&str]) -> Case {
        let src = format!(
            "[[case]]\nname = \"c\"\nprog_type = \"sched_cls\"\ntext = \"r0 = 0\\nexit\"\n[case.expect.\"7.3\"]\nverdict = \"{}\"\nmsgs = [{}]\n",
            verdict.as_str(),
            msgs.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(", ")
        );
        crate::case::parse::parse_cases("t", &src, &[]).unwrap().remove(0)
    }

    #[test]
    fn invalid_utf8_is_located_by_line_and_column() {
        let e = decode_utf8("x.toml", b"[[case]]\nname = \"\xc3\xa9\xff\"\n").unwrap_err();
        assert_eq!((e.file.as_str(), e.line, e.column), ("x.toml", 2, 10), "{e}");
        assert!(e.message.contains("invalid UTF-8 (byte 0xff)"), "{e}");
        assert_eq!(decode_utf8("x", "é\n".as_bytes()).unwrap(), "é\n");
    }

    #[test]
    fn retvals_compare_as_c_ints() {
        use crate::proto::{KernelResult, TestRun};
        let e = |retval: i64| Expectation {
            verdict: VerdictKind::Accept,
            insn: None,
            message: None,
            source: None,
            msgs: vec![],
            retval: Some(retval),
        };
        let r = |t: Option<TestRun>| KernelResult {
            case: "c".into(),
            verdict: Verdict::accept(),
            errno: 0,
            log: None,
            verification_usec: None,
            insns_processed: None,
            setup_error: None,
            test_run: t,
        };
        let ran = |v: u32| r(Some(TestRun::Ran { retval: v }));
        assert_eq!(retval_met(&e(0), &ran(0)), RetvalMet::Met { retval: 0 });
        assert_eq!(retval_met(&e(-1), &ran(u32::MAX)), RetvalMet::Met { retval: -1 });
        assert_eq!(retval_met(&e(579), &ran(84)), RetvalMet::NotMet { retval: 84, expected: 579 });
        assert_eq!(retval_met(&e(crate::case::RETVAL_ANY), &ran(7)), RetvalMet::Met { retval: 7 });
        let refused = r(Some(TestRun::Refused { errno: 524, errno_name: "ENOTSUPP".into() }));
        assert!(matches!(retval_met(&e(0), &refused), RetvalMet::NotRun(w) if w.contains("ENOTSUPP")));
        let no_retval = Expectation { retval: None, ..e(0) };
        assert_eq!(retval_met(&no_retval, &ran(3)), RetvalMet::NotExpected);
        assert_eq!(
            RetvalMet::NotMet { retval: 84, expected: 579 }.describe().unwrap(),
            "not met: returned 84, expected 579"
        );
    }

    #[test]
    fn msgs_match_in_order() {
        let p = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(msgs_match(
            &p(&["calls are", "lock"]),
            "function calls are not allowed while holding a lock"
        ));
        assert!(!msgs_match(
            &p(&["lock", "calls are"]),
            "function calls are not allowed while holding a lock"
        ));
        assert!(msgs_match(&[], "anything"));
    }

    #[test]
    fn reject_msgs_are_checked_on_the_model_message() {
        let c = case_with(VerdictKind::Reject, &["unlock of different lock"]);
        assert_eq!(
            meets_expectation(&c, "7.3", &Verdict::reject(Some(3), "bpf_spin_unlock of different lock")),
            Some(true)
        );
        assert_eq!(
            meets_expectation(&c, "7.3", &Verdict::reject(Some(3), "bpf_spin_unlock without taking a lock")),
            Some(false)
        );
        assert_eq!(meets_expectation(&c, "6.12", &Verdict::accept()), None);
    }

    #[test]
    fn accept_msgs_are_log_only() {
        let c = case_with(VerdictKind::Accept, &["29: safe"]);
        assert_eq!(meets_expectation(&c, "7.3", &Verdict::accept()), Some(true));
        assert_eq!(log_only_msgs(&c, "7.3"), ["29: safe".to_string()]);
        let r = |log: Option<&str>| KernelResult {
            log: log.map(str::to_string),
            ..kernel_result("c", Verdict::accept())
        };
        assert_eq!(kernel_meets_expectation(&c, "7.3", &r(Some("28: (bf) r1 = r9\n29: safe\n"))), Some(true));
        assert_eq!(kernel_meets_expectation(&c, "7.3", &r(Some("28: (bf) r1 = r9\n"))), Some(false));
        assert_eq!(kernel_meets_expectation(&c, "7.3", &r(None)), Some(true));
    }

    #[test]
    fn an_unsupported_expectation_is_about_the_model_only() {
        let c = case_with(VerdictKind::Unsupported, &[]);
        let kernel = kernel_result("c", Verdict::accept());
        assert_eq!(kernel_meets_expectation(&c, "7.3", &kernel), None);
        assert_eq!(
            kernel_meets_expectation(&c, "7.3", &KernelResult { log: Some(String::new()), ..kernel }),
            None
        );
        assert_eq!(meets_expectation(&c, "7.3", &Verdict::unsupported("loops")), Some(true));
    }
}
