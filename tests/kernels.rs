//! The bundled corpus on real kernels (the default matrix, debian:7.2 and debian:7.3) through
//! `lockstep run`: QEMU guests, the static `lockstep` binary as `/init`, the test module loaded.
//!
//! Every row that is not an agreement with the model, or whose kernel verdict misses the corpus
//! expectation (taken from the kernel source), becomes an insta snapshot
//! `tests/snapshots/kernels/kernels__<kernel>__<corpus file>__<case>.snap` holding the program, both verdicts and a log
//! excerpt. A new or changed disagreement is a snapshot diff (`cargo insta review`); a snapshot
//! whose disagreement went away fails the test until it is deleted. No snapshot for a kernel
//! means full agreement on it.
//!
//! Ignored unless built with `LOCKSTEP_VM_TESTS=1` (needs network on first run: kernels, headers).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use lockstep_core::case::Case;
use lockstep_core::corpus::meets_expectation;
use lockstep_core::verdict::{Verdict, VerdictKind};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A case's key: its file relative to `tests/corpus` without `.toml` (`/` as `__`), and its name.
fn key(file: &str, name: &str) -> (String, String) {
    let rel = file.rsplit_once("tests/corpus/").map_or(file, |(_, r)| r);
    (rel.trim_end_matches(".toml").replace('/', "__"), name.to_string())
}

/// Every corpus case (subdirectories included), by [`key`].
fn corpus() -> BTreeMap<(String, String), Case> {
    let module = lockstep_core::module_src::bundled();
    let mut out = BTreeMap::new();
    let mut dirs = vec![root().join("tests/corpus")];
    let mut files = Vec::new();
    while let Some(d) = dirs.pop() {
        for p in std::fs::read_dir(d).unwrap().flatten().map(|e| e.path()) {
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "toml") {
                files.push(p);
            }
        }
    }
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        for c in lockstep_core::corpus::load_text(&f.display().to_string(), &src, &module).unwrap() {
            out.insert(key(&c.file, &c.name), c);
        }
    }
    out
}

fn kernel_verdict(row: &Value) -> Option<Verdict> {
    let kind: VerdictKind = serde_json::from_value(row["kernel_verdict"].clone()).ok()?;
    Some(Verdict {
        verdict: kind,
        insn: row["kernel_insn"].as_u64().map(|i| i as usize),
        message: row["kernel_message"].as_str().map(str::to_string),
    })
}

/// Lines of the verifier log around the error (the last 12 lines before the statistics), with
/// kernel addresses (different at every boot) masked.
fn log_excerpt(log: &str) -> String {
    let lines: Vec<String> = log
        .lines()
        .filter(|l| !l.starts_with("processed ") && !l.starts_with("verification time"))
        .map(mask_addresses)
        .collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

/// Replaces 16-digit kernel addresses (`0xffff...`) by `0x<addr>`.
fn mask_addresses(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(i) = rest.find("0xff") {
        let hex = rest[i + 2..].chars().take_while(|c| c.is_ascii_hexdigit()).count();
        out.push_str(&rest[..i]);
        if hex == 16 {
            out.push_str("0x<addr>");
        } else {
            out.push_str(&rest[i..i + 2 + hex]);
        }
        rest = &rest[i + 2 + hex..];
    }
    out.push_str(rest);
    out
}

fn snapshot_text(row: &Value, case: &Case) -> String {
    let mut s = String::new();
    let f = |k: &str| row[k].to_string();
    let _ = writeln!(
        s,
        "case: {} ({}:{})",
        case.name,
        Path::new(&case.file).file_name().unwrap().to_string_lossy(),
        case.line
    );
    let _ = writeln!(s, "kernel: {} (profile {})", f("kernel"), f("profile"));
    let _ = writeln!(s, "class: {}", f("agreement"));
    let _ = writeln!(
        s,
        "kernel verdict: {} at {} : {}",
        f("kernel_verdict"),
        f("kernel_insn"),
        f("kernel_message")
    );
    let _ =
        writeln!(s, "model verdict:  {} at {} : {}", f("model_verdict"), f("model_insn"), f("model_message"));
    let expected = case.expect.get(row["profile"].as_str().unwrap()).or_else(|| case.expect.get("*"));
    if let Some(e) = expected {
        let _ = writeln!(
            s,
            "corpus expects: {} at {:?} : {:?} ({})",
            e.verdict.as_str(),
            e.insn,
            e.message,
            e.source.as_deref().unwrap_or("")
        );
    }
    let _ = writeln!(s, "note: {}", row["note"].as_str().unwrap_or(""));
    let _ = writeln!(s, "\nprogram:\n{}", lockstep_core::asm::disassemble(&case.program));
    // The log excerpt is the kernel's words; package-version-specific noise (timings) is left out.
    let _ = writeln!(s, "log excerpt:\n{}", log_excerpt(row["log"].as_str().unwrap_or("")));
    s
}

fn run_matrix(kernels: &[&str]) {
    let bin = env!("CARGO_BIN_EXE_lockstep");
    let differences = tempfile::NamedTempFile::new().unwrap();
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--json", "--log", "--accel", "auto", "--differences"]).arg(differences.path());
    for k in kernels {
        cmd.args(["--kernel", k]);
    }
    let out = cmd.output().expect("run lockstep");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    let code = out.status.code();
    assert!(
        matches!(code, Some(0) | Some(1)),
        "lockstep run exited {code:?} (3: infrastructure, 4: crash):\n{stderr}"
    );
    let rows: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON row"))
        .collect();
    let corpus = corpus();
    assert_eq!(rows.len(), corpus.len() * kernels.len(), "one row per case and kernel");

    let snap_dir = root().join("tests/snapshots/kernels");
    let mut failures = Vec::new();
    let mut expected_snaps = Vec::new();
    for row in &rows {
        let case = &corpus[&key(row["file"].as_str().unwrap(), row["case"].as_str().unwrap())];
        let kernel = row["kernel"].as_str().unwrap();
        assert_ne!(row["outcome"], "not_run", "{} did not run on {kernel}: {}", case.name, row["note"]);
        assert_ne!(row["agreement"], "infra", "{} on {kernel}: {}", case.name, row["note"]);
        let profile = row["profile"].as_str().unwrap();
        // An `unsupported` expectation is about the model only.
        let for_kernel = case
            .expect
            .get(profile)
            .or_else(|| case.expect.get("*"))
            .is_some_and(|e| e.verdict != VerdictKind::Unsupported);
        let meets =
            kernel_verdict(row).filter(|_| for_kernel).and_then(|v| meets_expectation(case, profile, &v));
        let disagrees = !matches!(row["agreement"].as_str(), Some("agree" | "unsupported"));
        if disagrees || meets == Some(false) {
            let (file, _) = key(&case.file, &case.name);
            let name = format!("{}__{file}__{}", kernel.replace(':', "-"), case.name);
            expected_snaps.push(format!("kernels__{name}.snap"));
            failures.push(name.clone());
            let mut settings = insta::Settings::clone_current();
            settings.set_snapshot_path(&snap_dir);
            settings.set_prepend_module_to_snapshot(false);
            settings.bind(|| insta::assert_snapshot!(format!("kernels__{name}"), snapshot_text(row, case)));
        }
    }
    // A snapshot whose disagreement is gone must be deleted: the set of snapshots is the set of
    // known disagreements.
    for k in kernels {
        let prefix = format!("kernels__{}__", k.replace(':', "-"));
        for e in std::fs::read_dir(&snap_dir).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with(&prefix) && n.ends_with(".snap") && !expected_snaps.contains(&n) {
                panic!("{n}: this disagreement no longer occurs; delete the snapshot");
            }
        }
    }
    eprintln!(
        "known disagreements (snapshotted): {}",
        if failures.is_empty() { "none".to_string() } else { failures.join(", ") }
    );

    // Kernel against kernel: the cases whose verdict differs between the kernels, each judged by
    // the model under each kernel's profile. A kernel update that changes a verdict, or a profile
    // change that stops explaining one, is a diff of this snapshot.
    let text = std::fs::read_to_string(differences.path()).unwrap();
    let name = format!(
        "kernels__differences__{}",
        kernels.iter().map(|k| k.replace(':', "-")).collect::<Vec<_>>().join("__")
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(&snap_dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(name, text));
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn corpus_on_the_default_matrix() {
    run_matrix(&["debian:7.2", "debian:7.3"]);
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn a_guest_that_panics_at_boot_is_reported_not_hung() {
    // A later rdinit= wins over lockstep's: the kernel finds no init and panics.
    let out = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args([
            "run",
            "--kernel",
            "debian:7.3",
            "--accel",
            "tcg",
            "--boot-timeout",
            "60",
            "--append",
            "rdinit=/nonexistent",
        ])
        .arg(root().join("tests/corpus/gen-pairing.toml"))
        .output()
        .expect("run lockstep");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "a boot failure is an infrastructure failure:\n{stderr}");
    assert!(stderr.contains("boot failed"), "{stderr}");
    assert!(stderr.contains("Kernel panic"), "the console excerpt is shown:\n{stderr}");
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn a_module_that_fails_to_load_marks_its_cases_not_run() {
    let bin = env!("CARGO_BIN_EXE_lockstep");
    // The module built for 7.2 does not load into 7.3 (vermagic).
    let built =
        Command::new(bin).args(["kernel", "module", "debian:7.2"]).output().expect("build the 7.2 module");
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let stdout = String::from_utf8_lossy(&built.stdout);
    let ko = stdout.lines().next().and_then(|l| l.strip_prefix("# ")).expect("the .ko path");
    let out = Command::new(bin)
        .args(["run", "--kernel", "debian:7.3", "--json", "--module-ko", ko])
        .arg(root().join("tests/corpus/gen-calls.toml"))
        .output()
        .expect("run lockstep");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let module_rows: Vec<&Value> =
        rows.iter().filter(|r| r["case"].as_str().unwrap().starts_with("call_module_")).collect();
    assert!(!module_rows.is_empty());
    for r in &module_rows {
        assert_eq!(r["outcome"], "not_run", "{r}");
        assert_eq!(r["agreement"], "infra", "{r}");
        assert!(r["note"].as_str().unwrap().contains("finit_module"), "the load failure is named: {r}");
    }
    let others = rows.iter().filter(|r| !r["case"].as_str().unwrap().starts_with("call_module_"));
    assert!(others.clone().all(|r| r["outcome"] == "ran"), "the other cases still run");
}
