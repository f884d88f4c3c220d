//! `lockstep validate-series --results-from DIR`: the whole judging path of the command (series,
//! profiles, corpus, model, classification, reports, exit code) on saved kernel results, without
//! kernels. The kernel results here are synthetic: they stand for what a kernel would answer in
//! each scenario (the real-kernel runs are the VM tests').

use std::path::{Path, PathBuf};
use std::process::Command;

use lockstep_core::case::Case;
use lockstep_core::profile::KernelProfile;
use lockstep_core::proto::KernelResult;
use lockstep_core::verdict::{Verdict, VerdictKind};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn corpus() -> Vec<Case> {
    let module = lockstep_core::module_src::bundled();
    let mut out = Vec::new();
    // As the binary reads the default corpus: every .toml below tests/corpus, sorted by path.
    let mut files = Vec::new();
    let mut stack = vec![repo().join("tests/corpus")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "toml") {
                files.push(p);
            }
        }
    }
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        out.extend(lockstep_core::corpus::load_text(&f.display().to_string(), &text, &module).unwrap());
    }
    out
}

fn model(cases: &[Case], profile: &str) -> Vec<Verdict> {
    let p = KernelProfile::by_name(profile).unwrap();
    let m = lockstep_core::module_src::bundled();
    cases.iter().map(|c| lockstep_core::model::check(c, &p, &m)).collect()
}

fn result(case: &str, v: Verdict) -> KernelResult {
    KernelResult {
        case: case.into(),
        verdict: v,
        errno: 0,
        log: None,
        verification_usec: None,
        insns_processed: None,
        setup_error: None,
        test_run: None,
    }
}

/// Kernel results that follow the model where it judges; `fallback` answers where it does not.
fn as_kernel(cases: &[Case], verdicts: &[Verdict], fallback: &[Verdict]) -> Vec<Option<KernelResult>> {
    cases
        .iter()
        .zip(verdicts.iter().zip(fallback))
        .map(|(c, (v, f))| {
            let v = if v.verdict == VerdictKind::Unsupported { f } else { v };
            let v = if v.verdict == VerdictKind::Unsupported { &Verdict::accept() } else { v };
            Some(result(&c.name, v.clone()))
        })
        .collect()
}

fn write(dir: &Path, base: &[Option<KernelResult>], patched: &[Option<KernelResult>]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, rs) in [("base.jsonl", base), ("patched.jsonl", patched)] {
        let text: String = rs.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect();
        std::fs::write(dir.join(name), text).unwrap();
    }
    let k = |name: &str, id: &str| {
        serde_json::json!({"name": name, "vmlinuz": "/x/bzImage", "config": "/x/config",
            "module_target": {"kind": "tree", "dir": "/x/tree"}, "release": "7.2.13-lockstep", "identity": id})
    };
    let meta = serde_json::json!([
        k("build:aaaaaaaaaaaa", "7.2.13-1+lockstep.aaaaaaaaaaaa"),
        k("build:bbbbbbbbbbbb", "7.2.13-1+s+lockstep.bbbbbbbbbbbb")
    ]);
    std::fs::write(dir.join("kernels.json"), meta.to_string()).unwrap();
}

fn validate(dir: &Path, series: &str) -> (i32, serde_json::Value, String) {
    let md = dir.join("report.md");
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args([
            "validate-series",
            "--base",
            "debian-src:7.2",
            "--profile",
            "7.2+kf-spin-lock",
            "--format",
            "json",
        ])
        .arg("--series")
        .arg(repo().join("tests/series").join(series))
        .arg("--results-from")
        .arg(dir)
        .arg("--markdown")
        .arg(&md)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), json, std::fs::read_to_string(md).unwrap())
}

fn cases_in(json: &serde_json::Value, class: &str) -> Vec<String> {
    let mut v: Vec<String> = json["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["class"] == class)
        .map(|r| r["case"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn the_seed_flips_exactly_the_flagged_module_kfunc_cases() {
    let cases = corpus();
    let (m72, mkf) = (model(&cases, "7.2"), model(&cases, "7.2+kf-spin-lock"));
    // Where the model cannot judge a case under the RFC (the vmlinux kfuncs' own argument checks),
    // the kernel is taken to accept it.
    let accept_all: Vec<Verdict> = cases.iter().map(|_| Verdict::accept()).collect();
    let d = tempfile::tempdir().unwrap();
    write(d.path(), &as_kernel(&cases, &m72, &m72), &as_kernel(&cases, &mkf, &accept_all));
    let (code, json, md) = validate(d.path(), "kf-spin-lock-rfc-v2");
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(
        cases_in(&json, "expected"),
        [
            "call_module_safe_acquire_release",
            "call_module_safe_ret_null",
            "call_module_safe_sched_cls",
            "call_module_safe_syscall",
            "call_module_xdp_only_safe_xdp"
        ]
    );
    // The kfuncs the model does not cover under the RFC (vmlinux kfuncs past the lock rule) are
    // reported, not judged.
    let unjudged = cases_in(&json, "unjudged");
    for c in &unjudged {
        let i = cases.iter().position(|x| &x.name == c).unwrap();
        assert_eq!(mkf[i].verdict, VerdictKind::Unsupported, "{c}");
    }
    assert!(cases_in(&json, "unexpected").is_empty() && cases_in(&json, "missing").is_empty());
    assert_eq!(
        json["series"]["patches"][0]["file_name"],
        "0001-bpf-Add-KF_SPIN_LOCK-flag-for-kfuncs-under-bpf_spin_lock.patch"
    );
    assert_eq!(json["cases"].as_u64().unwrap() as usize, cases.len());
    assert!(md.contains("[RFC v2 1/3] bpf: Add KF_SPIN_LOCK flag for kfuncs under bpf_spin_lock"), "{md}");
    assert!(md.contains("| expected | `call_module_safe_sched_cls` |"), "{md}");
}

#[test]
fn a_series_that_rejects_all_module_kfuncs_fails() {
    let cases = corpus();
    let (m72, _) = (model(&cases, "7.2"), ());
    let base = as_kernel(&cases, &m72, &m72);
    // The patched kernel rejects every program that calls a test-module kfunc.
    let patched: Vec<Option<KernelResult>> = cases
        .iter()
        .zip(&base)
        .map(|(c, b)| {
            if c.text.contains("call lockstep_") {
                Some(result(&c.name, Verdict::reject(Some(0), "kernel module function calls are disabled")))
            } else {
                b.clone()
            }
        })
        .collect();
    let d = tempfile::tempdir().unwrap();
    write(d.path(), &base, &patched);
    let (code, json, _) = validate(d.path(), "reject-module-kfuncs");
    assert_eq!(code, 1, "{json:#}");
    // The flagged kfuncs never become callable under the lock...
    assert_eq!(
        cases_in(&json, "missing"),
        [
            "call_module_safe_acquire_release",
            "call_module_safe_ret_null",
            "call_module_safe_sched_cls",
            "call_module_safe_syscall",
            "call_module_xdp_only_safe_xdp"
        ]
    );
    // ...and any module kfunc call the base kernel accepted now fails (the corpus calls module
    // kfuncs only under a lock today, where 7.2 rejects them anyway, so this may be empty).
    let unexpected = cases_in(&json, "unexpected");
    for c in &unexpected {
        let case = cases.iter().find(|x| &x.name == c).unwrap();
        assert!(case.text.contains("call lockstep_"), "{c}");
    }
    assert_eq!(json["summary"]["failures"].as_u64().unwrap() as usize, unexpected.len() + 5);
}

#[test]
fn a_case_without_a_result_fails() {
    let cases = corpus();
    let m72 = model(&cases, "7.2");
    let base = as_kernel(&cases, &m72, &m72);
    let mut patched = base.clone();
    let dropped = patched[5].take().unwrap().case;
    let d = tempfile::tempdir().unwrap();
    write(d.path(), &base, &patched);
    let (code, json, _) = validate(d.path(), "kf-spin-lock-rfc-v2");
    assert_eq!(code, 1);
    assert_eq!(cases_in(&json, "no-result"), [dropped]);
}
