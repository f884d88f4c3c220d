//! Renderings of a census: the table with both kernels side by side, the lock-safe sets, the
//! changes between consecutive kernels and the model's differences (text and Markdown), and one
//! JSON document. Pure formatting; files are written by the caller.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use lockstep_core::profile::{KernelProfile, KfuncLockRule};
use serde::Serialize;

use super::probe::LockStatus;
use super::result::{diff, Change, KernelCensus, KfuncRow, ModelView};

/// Changes between each pair of consecutive kernels.
fn changes(ks: &[KernelCensus]) -> Vec<(&KernelCensus, &KernelCensus, Vec<Change>)> {
    ks.windows(2).map(|w| (&w[0], &w[1], diff(&w[0], &w[1]))).collect()
}

/// All kfunc names, sorted.
fn names(ks: &[KernelCensus]) -> Vec<&str> {
    let set: BTreeSet<&str> = ks.iter().flat_map(|k| k.rows.iter().map(|r| r.name.as_str())).collect();
    set.into_iter().collect()
}

fn status_str(s: Option<LockStatus>) -> &'static str {
    s.map_or("absent", LockStatus::as_str)
}

/// The model column: `=` agrees, `≠ <model>` differs, `?` unknown, empty when not compared.
fn model_mark(r: &KfuncRow) -> String {
    match (r.agrees, &r.model) {
        (Some(true), _) => "=".into(),
        (Some(false), m) => format!("≠ {}", m.as_str()),
        (None, ModelView::Unknown(_)) if r.status != LockStatus::NotCallable => "?".into(),
        (None, m) => format!("({})", m.as_str()),
    }
}

/// Why the model and the kernel differ, from the compiled flags and the profile's rule.
pub fn explain(r: &KfuncRow, profile_name: &str) -> String {
    let Ok(p) = KernelProfile::by_name(profile_name) else { return String::new() };
    let listed = p.kfuncs_under_lock.iter().any(|k| k == &r.name);
    let sets = || r.compiled_flags.iter().map(|(s, f)| format!("{s}={f:#x}")).collect::<Vec<_>>().join(", ");
    match (&p.kfunc_rule, r.module.is_some()) {
        (_, true) => format!("module kfunc, compiled flags {}; the model reads the flags and the registered program types from the module", sets()),
        (KfuncLockRule::VmlinuxList, false) => format!(
            "profile {} decides by its hard-coded list (kfunc_spin_allowed()), which {} it",
            p.name,
            if listed { "has" } else { "lacks" }
        ),
        (_, false) => match r.compiled_lock_flag(&p) {
            Some(true) if !listed => format!("compiled with the lock-safe flag ({}), missing from profile {}'s kfuncs_under_lock", sets(), p.name),
            Some(false) if listed => format!("profile {} lists it, but no id set has the lock-safe flag ({})", p.name, sets()),
            Some(_) => format!("compiled flags ({}) agree with the profile's list: the difference is elsewhere (program type {:?})", sets(), r.prog_type),
            None => "compiled flags unknown".into(),
        },
    }
}

/// The text report: header per kernel, the side-by-side table, lock-safe sets, changes, model
/// differences.
pub fn text(ks: &[KernelCensus]) -> String {
    let mut s = String::new();
    for k in ks {
        let _ = writeln!(s, "# {}", header(k));
    }
    if ks.is_empty() {
        return s;
    }
    let w = names(ks).iter().map(|n| n.len()).max().unwrap_or(5).max(5);
    let _ = write!(s, "\n{:<w$}  {:<14}", "kfunc", "module");
    for k in ks {
        let _ = write!(s, "  {:<46}", k.kernel);
    }
    let _ = write!(s, "\n{:<w$}  {:<14}", "", "");
    for _ in ks {
        let _ = write!(s, "  {:<14} {:<16} {:<14}", "kernel", "model", "type");
    }
    s.push('\n');
    for n in names(ks) {
        let module =
            ks.iter().find_map(|k| k.row(n)).and_then(|r| r.module.clone()).unwrap_or_else(|| "-".into());
        let _ = write!(s, "{n:<w$}  {module:<14}");
        for k in ks {
            match k.row(n) {
                Some(r) => {
                    let t = r.prog_type.map_or("-", |t| t.name());
                    let _ = write!(s, "  {:<14} {:<16} {:<14}", r.status.as_str(), model_mark(r), t);
                }
                None => {
                    let _ = write!(s, "  {:<14} {:<16} {:<14}", "absent", "", "");
                }
            }
        }
        s.push('\n');
    }
    for k in ks {
        let safe = k.lock_safe();
        let _ = writeln!(
            s,
            "\nlock-safe on {} ({}): {}",
            k.kernel,
            safe.len(),
            safe.into_iter().collect::<Vec<_>>().join(" ")
        );
    }
    for (a, b, ch) in changes(ks) {
        let _ = writeln!(s, "\nchanged from {} to {} ({}):", a.kernel, b.kernel, ch.len());
        for c in &ch {
            let _ = writeln!(s, "  {:<w$}  {} -> {}", c.name, status_str(c.from), status_str(c.to));
        }
    }
    for k in ks {
        let diffs: Vec<&KfuncRow> = k.rows.iter().filter(|r| r.agrees == Some(false)).collect();
        let _ = writeln!(s, "\nmodel differences on {} (profile {}): {}", k.kernel, k.profile, diffs.len());
        for r in diffs {
            let _ = writeln!(
                s,
                "  {}: kernel {} ({}), model {}\n    {}",
                r.name,
                r.status.as_str(),
                r.detail,
                r.model.as_str(),
                explain(r, &k.profile)
            );
        }
    }
    s
}

fn header(k: &KernelCensus) -> String {
    let c = &k.counts;
    let objects: Vec<String> = k.btf_objects.iter().map(|(o, (_, n))| format!("{o} {n}")).collect();
    format!(
        "{} ({}, {}), profile {}: {} kfuncs ({}): {} lock-safe, {} not lock-safe, {} not callable; model differences {}, model unknown {}; {} probes, {:.1} s (boot {:.1} s, listing {:.1} s, probes {:.1} s); module: {}",
        k.kernel,
        k.package_version,
        k.release,
        k.profile,
        c.kfuncs,
        objects.join(", "),
        c.lock_safe,
        c.not_lock_safe,
        c.not_callable,
        c.model_differences,
        c.model_unknown,
        k.probes,
        k.seconds_total,
        k.seconds_boot,
        k.seconds_listing,
        k.seconds_probes,
        k.module
    )
}

/// One line per kernel (for stderr).
pub fn summary_lines(ks: &[KernelCensus]) -> String {
    let mut s = String::new();
    for k in ks {
        let _ = writeln!(s, "{}", header(k));
        for w in &k.warnings {
            let _ = writeln!(s, "  warning: {w}");
        }
    }
    s
}

#[derive(Serialize)]
struct JsonChange<'a> {
    from_kernel: &'a str,
    to_kernel: &'a str,
    changes: Vec<Change>,
}

#[derive(Serialize)]
struct JsonDoc<'a> {
    kernels: &'a [KernelCensus],
    changes: Vec<JsonChange<'a>>,
}

/// The census as one JSON document: `{"kernels": [...], "changes": [...]}`.
pub fn json(ks: &[KernelCensus]) -> String {
    let changes = changes(ks)
        .into_iter()
        .map(|(a, b, changes)| JsonChange { from_kernel: &a.kernel, to_kernel: &b.kernel, changes })
        .collect();
    serde_json::to_string_pretty(&JsonDoc { kernels: ks, changes }).expect("the census serialises")
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown report.
pub fn markdown(ks: &[KernelCensus]) -> String {
    let mut s = String::from("# kfunc lock-safety census\n\n");
    s.push_str("| kernel | package | profile | kfuncs | lock-safe | not lock-safe | not callable | model differences | probes | seconds |\n");
    s.push_str("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for k in ks {
        let c = &k.counts;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} |",
            k.kernel,
            k.package_version,
            k.profile,
            c.kfuncs,
            c.lock_safe,
            c.not_lock_safe,
            c.not_callable,
            c.model_differences,
            k.probes,
            k.seconds_total
        );
    }
    for k in ks {
        let safe = k.lock_safe();
        let _ = writeln!(s, "\n## Lock-safe on {} ({})\n", k.kernel, safe.len());
        let _ = writeln!(s, "{}", safe.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "));
    }
    for (a, b, ch) in changes(ks) {
        let _ = writeln!(s, "\n## Changed from {} to {} ({})\n", a.kernel, b.kernel, ch.len());
        if !ch.is_empty() {
            let _ = writeln!(s, "| kfunc | {} | {} |\n| --- | --- | --- |", a.kernel, b.kernel);
            for c in &ch {
                let _ = writeln!(s, "| `{}` | {} | {} |", c.name, status_str(c.from), status_str(c.to));
            }
        }
    }
    for k in ks {
        let diffs: Vec<&KfuncRow> = k.rows.iter().filter(|r| r.agrees == Some(false)).collect();
        let _ =
            writeln!(s, "\n## Model differences on {} (profile {}): {}\n", k.kernel, k.profile, diffs.len());
        if !diffs.is_empty() {
            s.push_str("| kfunc | kernel | model | kernel said | why |\n| --- | --- | --- | --- | --- |\n");
            for r in diffs {
                let _ = writeln!(
                    s,
                    "| `{}` | {} | {} | {} | {} |",
                    r.name,
                    r.status.as_str(),
                    r.model.as_str(),
                    md_escape(&r.detail),
                    md_escape(&explain(r, &k.profile))
                );
            }
        }
    }
    s.push_str("\n## All kfuncs\n\n| kfunc | module |");
    for k in ks {
        let _ = write!(s, " {} | model | type |", k.kernel);
    }
    s.push_str("\n| --- | --- |");
    for _ in ks {
        s.push_str(" --- | --- | --- |");
    }
    s.push('\n');
    for n in names(ks) {
        let module =
            ks.iter().find_map(|k| k.row(n)).and_then(|r| r.module.clone()).unwrap_or_else(|| "-".into());
        let _ = write!(s, "| `{n}` | {module} |");
        for k in ks {
            match k.row(n) {
                Some(r) => {
                    let _ = write!(
                        s,
                        " {} | {} | {} |",
                        r.status.as_str(),
                        md_escape(&model_mark(r)),
                        r.prog_type.map_or("-", |t| t.name())
                    );
                }
                None => s.push_str(" absent | | |"),
            }
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use lockstep_core::case::ProgType;

    use super::*;

    fn row(name: &str, status: LockStatus, model: ModelView, flags: &[(&str, u32)]) -> KfuncRow {
        let agrees = model.agrees_with(status);
        KfuncRow {
            name: name.into(),
            module: None,
            btf_id: 1,
            status,
            prog_type: Some(ProgType::SchedCls),
            detail: "accepted".into(),
            registration: BTreeMap::new(),
            per_type: BTreeMap::new(),
            model,
            agrees,
            compiled_flags: flags.iter().map(|(s, f)| (s.to_string(), *f)).collect(),
        }
    }

    fn census(kernel: &str, profile: &str, rows: Vec<KfuncRow>) -> KernelCensus {
        let mut k = KernelCensus {
            kernel: kernel.into(),
            package_version: "v".into(),
            release: "r".into(),
            profile: profile.into(),
            module: "lockstep_test loaded".into(),
            rows,
            ..Default::default()
        };
        k.count();
        k
    }

    #[test]
    fn reports_show_both_sets_the_change_and_the_explained_difference() {
        use LockStatus::*;
        // A vmlinux kfunc flagged lock-safe that the 7.3 profile does not list.
        let a = census("debian:7.2", "7.2", vec![row("bpf_new_flagged", LockSafe, ModelView::LockSafe, &[])]);
        let b = census(
            "debian:7.3",
            "7.3",
            vec![
                row("bpf_new_flagged", LockSafe, ModelView::NotLockSafe, &[("generic_btf_ids", 1 << 17 | 1)]),
                row("bpf_task_acquire", NotLockSafe, ModelView::NotLockSafe, &[("generic_btf_ids", 1)]),
            ],
        );
        let ks = [a, b];
        let t = text(&ks);
        assert!(t.contains("lock-safe on debian:7.2 (1): bpf_new_flagged"), "{t}");
        assert!(t.contains("changed from debian:7.2 to debian:7.3 (1):"), "{t}");
        assert!(t.contains("bpf_task_acquire  absent -> not-lock-safe"), "{t}");
        assert!(t.contains("model differences on debian:7.3 (profile 7.3): 1"), "{t}");
        assert!(t.contains("missing from profile 7.3's kfuncs_under_lock"), "{t}");
        let md = markdown(&ks);
        assert!(md.contains("| `bpf_task_acquire` | absent | not-lock-safe |"), "{md}");
        let j: serde_json::Value = serde_json::from_str(&json(&ks)).unwrap();
        assert_eq!(j["changes"][0]["changes"][0]["name"], "bpf_task_acquire");
        assert_eq!(j["kernels"][1]["rows"][0]["status"], "lock_safe");
        assert_eq!(j["kernels"][1]["counts"]["model_differences"], 1);
    }

    #[test]
    fn explanations_follow_the_profile_rule() {
        use LockStatus::*;
        let listed_unflagged =
            row("bpf_iter_num_new", NotLockSafe, ModelView::LockSafe, &[("common_btf_ids", 0)]);
        assert!(explain(&listed_unflagged, "7.3").contains("no id set has the lock-safe flag"));
        assert!(explain(&listed_unflagged, "7.2").contains("hard-coded list"));
    }
}
