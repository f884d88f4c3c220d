//! Loading case files from text: a path list is expanded by the caller (I/O lives at the edges);
//! this module turns file contents into cases and compares model verdicts with expectations.

use crate::case::parse::{parse_cases, CaseError};
use crate::case::Case;
use crate::profile::{KernelProfile, ModuleKfuncs};
use crate::verdict::{Verdict, VerdictKind};

/// Every kfunc name a case may call: the test module's, and the vmlinux kfuncs the profiles know.
pub fn known_kfuncs(module: &ModuleKfuncs) -> Vec<String> {
    let mut v: Vec<String> = module.kfuncs.keys().cloned().collect();
    for p in KernelProfile::all() {
        v.extend(p.kfuncs_under_lock.iter().cloned());
    }
    v.sort();
    v.dedup();
    v
}

/// Parses one file's text into cases.
pub fn load_text(file: &str, src: &str, module: &ModuleKfuncs) -> Result<Vec<Case>, CaseError> {
    parse_cases(file, src, &known_kfuncs(module))
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

/// Whether `v` meets `case`'s expectation for `profile` (`None` if there is none). A `"*"` key
/// applies to every profile without its own entry. Messages compare on their first line.
pub fn meets_expectation(case: &Case, profile: &str, v: &Verdict) -> Option<bool> {
    let e = case.expect.get(profile).or_else(|| case.expect.get("*"))?;
    let first = |s: &Option<String>| s.as_deref().map(|m| m.lines().next().unwrap_or("").to_string());
    Some(
        e.verdict == v.verdict
            && (e.insn.is_none() || e.insn == v.insn)
            && (e.message.is_none() || first(&e.message) == first(&v.message)),
    )
}

/// Runs the model on every case for every profile.
pub fn check_all(cases: &[Case], profiles: &[KernelProfile], module: &ModuleKfuncs) -> Vec<CheckRow> {
    let mut rows = Vec::new();
    for c in cases {
        for p in profiles {
            let v = crate::model::check(c, p, module);
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
