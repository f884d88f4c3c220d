//! The validate-series report: data (serialised as JSON) and its table and Markdown renderings.

use lockstep_core::case::Case;
use lockstep_core::flips::{self, CaseVerdicts, FlipClass, Summary};
use lockstep_core::proto::KernelResult;
use lockstep_core::verdict::Verdict;
use serde::{Deserialize, Serialize};

/// One patch of the series.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchInfo {
    pub file_name: String,
    pub subject: String,
}

/// The series under validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesInfo {
    pub name: String,
    pub dir: String,
    pub patches: Vec<PatchInfo>,
}

/// One side (base or patched).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Side {
    /// Kernel name (`build:<hash>`), identity and release.
    pub kernel: String,
    pub identity: String,
    pub release: String,
    /// The model profile for this side.
    pub profile: String,
    /// Test-module kfuncs carrying the lock-safe flag (1 << 17) in this side's built module.
    #[serde(default)]
    pub lock_safe_kfuncs: Vec<String>,
}

/// One case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub case: String,
    pub file: String,
    pub line: usize,
    pub class: FlipClass,
    pub note: String,
    pub kernel_base: Option<Verdict>,
    pub kernel_patched: Option<Verdict>,
    pub model_base: Verdict,
    pub model_patched: Verdict,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub series: SeriesInfo,
    pub base: Side,
    pub patched: Side,
    pub cases: usize,
    /// Every case (the table and Markdown show all but `unchanged`).
    pub rows: Vec<Row>,
    pub summary: Summary,
    /// Wall time per stage, seconds.
    pub timings: Vec<(String, f64)>,
}

impl Report {
    /// Whether any case is in a failing class.
    pub fn failed(&self) -> bool {
        self.summary.failures > 0
    }
}

/// Classifies every case; all slices are in the order of `cases` (`None`: no result).
pub fn judge(
    cases: &[Case],
    kernel_base: &[Option<KernelResult>],
    kernel_patched: &[Option<KernelResult>],
    model_base: &[Verdict],
    model_patched: &[Verdict],
) -> Vec<Row> {
    let mut rows: Vec<Row> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let kb = kernel_base.get(i).and_then(Option::as_ref);
            let kp = kernel_patched.get(i).and_then(Option::as_ref);
            let j = flips::classify(CaseVerdicts {
                kernel_base: kb,
                kernel_patched: kp,
                model_base: &model_base[i],
                model_patched: &model_patched[i],
            });
            Row {
                case: c.name.clone(),
                file: c.file.clone(),
                line: c.line,
                class: j.class,
                note: j.note,
                kernel_base: kb.map(|r| r.verdict.clone()),
                kernel_patched: kp.map(|r| r.verdict.clone()),
                model_base: model_base[i].clone(),
                model_patched: model_patched[i].clone(),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.class.cmp(&b.class).then_with(|| a.case.cmp(&b.case)));
    rows
}

fn kind(v: &Option<Verdict>) -> &'static str {
    v.as_ref().map_or("-", |v| v.verdict.as_str())
}

fn short_file(f: &str) -> &str {
    f.rsplit('/').next().unwrap_or(f)
}

/// The plain-text table (flips and problems; unchanged cases only counted).
pub fn render_table(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!("series {} ({} patches)\n", r.series.name, r.series.patches.len()));
    for p in &r.series.patches {
        s.push_str(&format!("  {}  {}\n", p.file_name, p.subject));
    }
    for (name, side) in [("base", &r.base), ("patched", &r.patched)] {
        s.push_str(&format!(
            "{name:<8}{} ({}, release {}), profile {}, lock-safe module kfuncs: {}\n",
            side.kernel,
            side.identity,
            side.release,
            side.profile,
            if side.lock_safe_kfuncs.is_empty() {
                "none".to_string()
            } else {
                side.lock_safe_kfuncs.join(" ")
            }
        ));
    }
    s.push('\n');
    s.push_str(&format!("{:<14} {:<44} {:<17} {:<17} note\n", "class", "case", "kernel b->p", "model b->p"));
    for row in r.rows.iter().filter(|x| x.class != FlipClass::Unchanged) {
        s.push_str(&format!(
            "{:<14} {:<44} {:<17} {:<17} {}\n",
            row.class.as_str(),
            row.case,
            format!("{}->{}", kind(&row.kernel_base), kind(&row.kernel_patched)),
            format!("{}->{}", row.model_base.verdict.as_str(), row.model_patched.verdict.as_str()),
            row.note
        ));
    }
    s.push('\n');
    s.push_str(&summary_line(r));
    s.push('\n');
    s
}

fn summary_line(r: &Report) -> String {
    let parts: Vec<String> = FlipClass::ALL
        .iter()
        .filter_map(|c| r.summary.counts.get(c).map(|n| format!("{n} {}", c.as_str())))
        .collect();
    format!(
        "{} cases: {}; {}",
        r.cases,
        parts.join(", "),
        if r.failed() {
            format!("FAILED ({} unexpected results)", r.summary.failures)
        } else {
            "OK".to_string()
        }
    )
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown report.
pub fn render_markdown(r: &Report) -> String {
    let mut s = String::new();
    s.push_str(&format!("# validate-series: {}\n\n", md_escape(&r.series.name)));
    s.push_str(&format!("**{}**\n\n", summary_line(r)));
    s.push_str("| patch | subject |\n|---|---|\n");
    for p in &r.series.patches {
        s.push_str(&format!("| `{}` | {} |\n", p.file_name, md_escape(&p.subject)));
    }
    s.push_str("\n| side | kernel | identity | release | model profile | lock-safe module kfuncs |\n|---|---|---|---|---|---|\n");
    for (name, side) in [("base", &r.base), ("patched", &r.patched)] {
        s.push_str(&format!(
            "| {name} | `{}` | `{}` | `{}` | `{}` | {} |\n",
            side.kernel,
            side.identity,
            side.release,
            side.profile,
            side.lock_safe_kfuncs.join(", ")
        ));
    }
    s.push_str("\n| class | case | file | kernel base → patched | model base → patched | note |\n|---|---|---|---|---|---|\n");
    for row in r.rows.iter().filter(|x| x.class != FlipClass::Unchanged) {
        s.push_str(&format!(
            "| {} | `{}` | {}:{} | {} → {} | {} → {} | {} |\n",
            row.class.as_str(),
            row.case,
            short_file(&row.file),
            row.line,
            kind(&row.kernel_base),
            kind(&row.kernel_patched),
            row.model_base.verdict.as_str(),
            row.model_patched.verdict.as_str(),
            md_escape(&row.note)
        ));
    }
    s.push_str("\n| class | meaning | cases |\n|---|---|---|\n");
    for c in FlipClass::ALL {
        s.push_str(&format!(
            "| {}{} | {} | {} |\n",
            c.as_str(),
            if c.is_failure() { " (fails)" } else { "" },
            c.meaning(),
            r.summary.counts.get(&c).copied().unwrap_or(0)
        ));
    }
    if !r.timings.is_empty() {
        s.push_str("\n| stage | seconds |\n|---|---|\n");
        for (k, v) in &r.timings {
            s.push_str(&format!("| {k} | {v:.1} |\n"));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_core::case::ProgType;

    fn case(name: &str) -> Case {
        Case {
            file: "tests/corpus/gen-calls.toml".into(),
            line: 7,
            ..Case::new(name, ProgType::SchedCls, Default::default(), "")
        }
    }
    fn kr(name: &str, v: Verdict) -> KernelResult {
        KernelResult {
            case: name.into(),
            verdict: v,
            errno: 0,
            log: None,
            verification_usec: None,
            insns_processed: None,
            setup_error: None,
            test_run: None,
        }
    }
    fn rej() -> Verdict {
        Verdict::reject(Some(9), "function calls are not allowed while holding a lock")
    }

    fn report() -> Report {
        let cases = vec![case("call_module_safe_sched_cls"), case("lock_unlock"), case("crashes")];
        let kb = vec![
            Some(kr("call_module_safe_sched_cls", rej())),
            Some(kr("lock_unlock", Verdict::accept())),
            Some(kr("crashes", Verdict::accept())),
        ];
        let kp = vec![
            Some(kr("call_module_safe_sched_cls", Verdict::accept())),
            Some(kr("lock_unlock", Verdict::accept())),
            None,
        ];
        let mb = vec![rej(), Verdict::accept(), Verdict::accept()];
        let mp = vec![Verdict::accept(), Verdict::accept(), Verdict::accept()];
        let rows = judge(&cases, &kb, &kp, &mb, &mp);
        let summary = flips::summarize(rows.iter().map(|r| r.class));
        Report {
            series: SeriesInfo {
                name: "kf-spin-lock-rfc-v2".into(),
                dir: "/s".into(),
                patches: vec![PatchInfo {
                    file_name: "0001-bpf-x.patch".into(),
                    subject: "[RFC v2 1/3] bpf: x | y".into(),
                }],
            },
            base: Side {
                kernel: "build:aaaa".into(),
                identity: "7.2.13-1+lockstep.aaaa".into(),
                release: "7.2.13-lockstep".into(),
                profile: "7.2".into(),
                lock_safe_kfuncs: vec![],
            },
            patched: Side {
                kernel: "build:bbbb".into(),
                identity: "7.2.13-1+kf+lockstep.bbbb".into(),
                release: "7.2.13-lockstep".into(),
                profile: "7.2+kf-spin-lock".into(),
                lock_safe_kfuncs: vec!["lockstep_safe".into()],
            },
            cases: 3,
            rows,
            summary,
            timings: vec![("build base".into(), 1.5)],
        }
    }

    #[test]
    fn judge_aligns_results_with_cases_and_sorts_by_class() {
        let r = report();
        let got: Vec<_> = r.rows.iter().map(|x| (x.class, x.case.as_str())).collect();
        assert_eq!(
            got,
            [
                (FlipClass::Expected, "call_module_safe_sched_cls"),
                (FlipClass::NoResult, "crashes"),
                (FlipClass::Unchanged, "lock_unlock")
            ]
        );
        assert!(r.failed());
        assert_eq!(r.summary.failures, 1);
    }

    #[test]
    fn table_lists_flips_and_names_patches() {
        let t = render_table(&report());
        assert!(t.contains("0001-bpf-x.patch  [RFC v2 1/3] bpf: x | y"), "{t}");
        assert!(t.contains("expected       call_module_safe_sched_cls"), "{t}");
        assert!(t.contains("reject->accept"), "{t}");
        assert!(!t.contains("lock_unlock"), "unchanged cases are only counted: {t}");
        assert!(
            t.contains("3 cases: 1 expected, 1 no-result, 1 unchanged; FAILED (1 unexpected results)"),
            "{t}"
        );
    }

    #[test]
    fn markdown_escapes_and_has_legend() {
        let m = render_markdown(&report());
        assert!(m.contains("| `0001-bpf-x.patch` | [RFC v2 1/3] bpf: x \\| y |"), "{m}");
        assert!(m.contains("| expected | `call_module_safe_sched_cls` | gen-calls.toml:7 | reject → accept | reject → accept |  |"), "{m}");
        assert!(m.contains("| no-result (fails) |"), "{m}");
        assert!(m.contains("| build base | 1.5 |"), "{m}");
    }

    #[test]
    fn json_round_trips() {
        let r = report();
        let j = serde_json::to_string(&r).unwrap();
        assert!(j.contains("\"class\":\"expected\""), "{j}");
        let back: Report = serde_json::from_str(&j).unwrap();
        assert_eq!(back, r);
    }
}
