//! `lockstep report merge`: the `--json` files of a run's shards (`lockstep run --shard K/N`)
//! joined into the report one unsharded run gives: the same rows in the same order (kernels in
//! the run's order, cases in corpus order), hence the same agreement classes, summary and
//! kernel-difference section. [`parse_rows`] and [`merge_rows`] are pure; [`run`] is the file edge.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use crate::exit::BadInput;
use crate::report::{self, RunRow};
use crate::{fuzz_merge, kernel_diff, output};

/// `lockstep report ...`.
#[derive(Subcommand)]
pub enum ReportCmd {
    /// Join the `--json` files of `lockstep run --shard K/N` runs into one report (or the
    /// summaries of `lockstep fuzz --shard K/N`, findings deduplicated).
    Merge(MergeArgs),
}

/// Arguments of `lockstep report merge`.
#[derive(Args, Clone, Debug)]
pub struct MergeArgs {
    /// The shards' JSON-lines files (`lockstep run --shard K/N --json FILE`).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[command(flatten)]
    pub output: output::OutputArgs,
    /// Print GitHub Actions annotations for disagreements (automatic when GITHUB_ACTIONS=true).
    #[arg(long)]
    pub github: bool,
    /// As `run --allow-skips`: programs of BPF object inputs that nothing judged do not make the
    /// exit code 6.
    #[arg(long)]
    pub allow_skips: bool,
}

/// Reads one shard's JSON lines; an error names `name:line`.
pub fn parse_rows(name: &str, text: &str) -> Result<Vec<RunRow>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| format!("{name}:{}: not a row of `lockstep run --json`: {e}", i + 1))
        })
        .collect()
}

/// The kernels in run order: each shard lists its kernels in the run's order (a shard may lack
/// some), so the order is the one consistent with every shard, first-seen among the free ones.
fn kernel_order(shards: &[Vec<RunRow>]) -> Vec<String> {
    let lists: Vec<Vec<&str>> = shards
        .iter()
        .map(|rows| {
            let mut ks: Vec<&str> = Vec::new();
            for r in rows {
                if !ks.contains(&r.kernel.as_str()) {
                    ks.push(&r.kernel);
                }
            }
            ks
        })
        .collect();
    let mut seen: Vec<&str> = Vec::new();
    for k in lists.iter().flatten() {
        if !seen.contains(k) {
            seen.push(k);
        }
    }
    let mut order: Vec<String> = Vec::new();
    while order.len() < seen.len() {
        let placed = |k: &str| order.iter().any(|o| o == k);
        let free = seen.iter().find(|k| {
            !placed(k)
                && lists.iter().all(|l| {
                    let at = l.iter().position(|x| x == *k);
                    at.is_none_or(|i| l[..i].iter().all(|p| placed(p)))
                })
        });
        // Inconsistent orders (not shards of one run) fall back to first-seen.
        let k = free.or_else(|| seen.iter().find(|k| !placed(k))).expect("an unplaced kernel");
        order.push(k.to_string());
    }
    order
}

/// Joins shards: rows ordered by kernel (run order) then case position. A (case, kernel) pair in
/// two shards is an error naming both (the files are not disjoint shards of one run).
pub fn merge_rows(names: &[String], shards: Vec<Vec<RunRow>>) -> Result<Vec<RunRow>, String> {
    let order = kernel_order(&shards);
    let rank = |k: &str| order.iter().position(|o| o == k).expect("every kernel is ordered");
    let mut by_key: BTreeMap<(usize, usize, String), (usize, RunRow)> = BTreeMap::new();
    for (f, rows) in shards.into_iter().enumerate() {
        for r in rows {
            let key = (rank(&r.kernel), r.index, r.case.clone());
            if let Some((g, _)) = by_key.get(&key) {
                return Err(format!(
                    "{} on {} is in both {} and {}: not disjoint shards of one run",
                    r.case, r.kernel, names[*g], names[f]
                ));
            }
            by_key.insert(key, (f, r));
        }
    }
    Ok(by_key.into_values().map(|(_, r)| r).collect())
}

/// Runs `lockstep report merge`: the exit code is the one the unsharded run would have had.
pub fn run(cmd: ReportCmd) -> Result<u8> {
    let ReportCmd::Merge(a) = cmd;
    let mut names = Vec::new();
    let mut texts = Vec::new();
    for f in &a.files {
        let name = f.display().to_string();
        texts.push(std::fs::read_to_string(f).map_err(|e| BadInput(format!("{name}: {e}")))?);
        names.push(name);
    }
    if texts.iter().all(|t| fuzz_merge::is_fuzz_summary(t)) {
        return merge_fuzz(&a, &names, &texts);
    }
    let shards = names.iter().zip(&texts).map(|(n, t)| parse_rows(n, t)).collect::<Result<Vec<_>, _>>();
    let shards = shards.map_err(BadInput)?;
    let rows = merge_rows(&names, shards).map_err(BadInput)?;
    output::json_or_text(a.output.json.as_deref(), || report::json_lines(&rows), || report::matrix(&rows))?;
    if let Some(p) = &a.output.junit {
        output::write_file(p, &report::junit(&rows))?;
    }
    let diffs = kernel_diff::differences(&rows);
    if let Some(p) = &a.output.markdown {
        output::write_file(p, &(report::markdown(&rows) + &report::markdown_differences(&diffs)))
            .context("writing the merged Markdown")?;
    }
    eprint!("{}", report::summary_lines(&rows));
    if rows.iter().any(|r| r.kernel != rows[0].kernel) {
        eprint!("{}", kernel_diff::render_unexplained(&diffs));
    }
    crate::github::emit(a.github, output::is_stdout(a.output.json.as_deref()), &rows);
    let out = crate::run::RunOutput { rows, infra: Vec::new(), allow_skips: a.allow_skips, stopped: None };
    Ok(out.exit_code())
}

/// `report merge` of fuzz summaries: the merged summary as one JSON line (or to `--json FILE`).
fn merge_fuzz(a: &MergeArgs, names: &[String], texts: &[String]) -> Result<u8> {
    let parts = names
        .iter()
        .zip(texts)
        .map(|(n, t)| serde_json::from_str(t).map_err(|e| format!("{n}: not a fuzz summary: {e}")))
        .collect::<Result<Vec<fuzz_merge::FuzzSummary>, _>>()
        .map_err(BadInput)?;
    let m = fuzz_merge::merge(names, parts).map_err(BadInput)?;
    let line = serde_json::to_string(&m)? + "\n";
    match a.output.json.as_deref() {
        Some(p) if p.as_os_str() != "-" => output::write_file(p, &line)?,
        _ => print!("{line}"),
    }
    eprintln!(
        "{} shards, {} programs: {} agree, {} disagree in {} classes ({} not explained), {} crashes",
        m.shards,
        m.programs,
        m.agree,
        m.disagree,
        m.classes.len(),
        m.classes.iter().filter(|c| !c.explained).count(),
        m.crashes
    );
    Ok(m.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_row;
    use lockstep_core::compare::Agreement;
    use lockstep_core::shard::Shard;
    use lockstep_core::verdict::VerdictKind;

    /// An unsharded run: 7 cases on two kernels, kernel-major, cases in corpus order.
    fn unsharded() -> Vec<RunRow> {
        let mut rows = Vec::new();
        for k in ["debian:7.3", "debian:7.2"] {
            for i in 0..7 {
                let a = if i == 3 && k == "debian:7.2" { Agreement::Verdict } else { Agreement::Agree };
                let v = if i % 2 == 0 { VerdictKind::Accept } else { VerdictKind::Reject };
                rows.push(RunRow { index: i, line: 10 * i + 1, ..test_row(&format!("c{i}"), k, v, a) });
            }
        }
        rows
    }

    fn split(rows: &[RunRow], n: u32) -> Vec<Vec<RunRow>> {
        (1..=n)
            .map(|k| {
                let s = Shard { index: k, count: n };
                rows.iter().filter(|r| s.owns_pair(&r.case, &r.kernel)).cloned().collect()
            })
            .collect()
    }

    #[test]
    fn merged_shards_equal_the_unsharded_run() {
        let all = unsharded();
        for n in 1..=4 {
            let shards = split(&all, n);
            let names: Vec<String> = (1..=n).map(|k| format!("s{k}.jsonl")).collect();
            // Through the JSON-lines text, as the files carry them.
            let reread: Vec<Vec<RunRow>> = shards
                .iter()
                .zip(&names)
                .map(|(s, name)| parse_rows(name, &report::json_lines(s)).unwrap())
                .collect();
            let mut merged = merge_rows(&names, reread.clone()).unwrap();
            assert_eq!(merged, all, "{n} shards");
            assert_eq!(report::json_lines(&merged), report::json_lines(&all));
            assert_eq!(report::markdown(&merged), report::markdown(&all));
            // File order does not matter.
            let (mut rev_names, mut rev) = (names.clone(), reread);
            rev_names.reverse();
            rev.reverse();
            merged = merge_rows(&rev_names, rev).unwrap();
            assert_eq!(merged, all, "{n} shards, reversed");
        }
        assert_eq!(
            kernel_diff::render(&kernel_diff::differences(
                &merge_rows(&["a".into()], split(&all, 1)).unwrap()
            )),
            kernel_diff::render(&kernel_diff::differences(&all))
        );
    }

    #[test]
    fn a_kernel_missing_from_one_shard_keeps_its_place() {
        let all = unsharded();
        let first: Vec<RunRow> = all.iter().filter(|r| r.index < 3).cloned().collect();
        let second: Vec<RunRow> =
            all.iter().filter(|r| r.index >= 3 && r.kernel == "debian:7.2").cloned().collect();
        let third: Vec<RunRow> =
            all.iter().filter(|r| r.index >= 3 && r.kernel == "debian:7.3").cloned().collect();
        let merged = merge_rows(&["2".into(), "3".into(), "1".into()], vec![second, third, first]).unwrap();
        assert_eq!(merged, all);
    }

    #[test]
    fn allow_skips_means_what_it_means_for_run() {
        // Shard 1: an object program nothing judged (lockstep could not load it, the model cannot
        // judge it); shard 2: an agreeing case.
        let unjudged = RunRow {
            from_object: true,
            outcome: report::Outcome::NotRun,
            kernel_verdict: None,
            model_verdict: VerdictKind::Unsupported,
            ..test_row("prog", "debian:7.3", VerdictKind::Accept, Agreement::Infra)
        };
        let agree =
            RunRow { index: 1, ..test_row("c1", "debian:7.3", VerdictKind::Accept, Agreement::Agree) };
        let d = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = [("s1.jsonl", vec![unjudged.clone()]), ("s2.jsonl", vec![agree.clone()])]
            .into_iter()
            .map(|(n, rows)| {
                let p = d.path().join(n);
                std::fs::write(&p, report::json_lines(&rows)).unwrap();
                p
            })
            .collect();
        let merge = |allow_skips: bool| {
            run(ReportCmd::Merge(MergeArgs {
                files: files.clone(),
                output: crate::output::OutputArgs {
                    json: Some(d.path().join("merged.jsonl")),
                    junit: None,
                    markdown: None,
                },
                github: false,
                allow_skips,
            }))
            .unwrap()
        };
        let unsharded = |allow_skips: bool| {
            crate::run::RunOutput {
                rows: vec![unjudged.clone(), agree.clone()],
                infra: vec![],
                allow_skips,
                stopped: None,
            }
            .exit_code()
        };
        assert_eq!(merge(false), crate::exit::EXIT_UNJUDGED);
        assert_eq!(merge(false), unsharded(false));
        assert_eq!(merge(true), 0);
        assert_eq!(merge(true), unsharded(true));
    }

    #[test]
    fn overlapping_files_and_bad_lines_are_named() {
        let all = unsharded();
        let e = merge_rows(&["a.jsonl".into(), "b.jsonl".into()], vec![all.clone(), all[..1].to_vec()])
            .unwrap_err();
        assert!(e.contains("c0 on debian:7.3 is in both a.jsonl and b.jsonl"), "{e}");
        let text = report::json_lines(&all[..2]) + "{\"case\": 1}\n";
        let e = parse_rows("s.jsonl", &text).unwrap_err();
        assert!(e.starts_with("s.jsonl:3: not a row"), "{e}");
    }
}
