//! `tests/kernel-btf/`: the cases whose model verdict needs each kernel's BTF (loads through map
//! and kernel pointers, kernel-struct kptrs), kept out of `tests/corpus` because the corpus
//! snapshot test has no kernel BTF.
//!
//! 1. `lockstep check tests/kernel-btf` with the cached Debian headers' `vmlinux` (fetched here
//!    when missing, for 6.12, 7.2 and 7.3) meets every expectation: the model with the kernel's BTF.
//! 2. `lockstep run` of the same files on debian:7.2 and debian:7.3: every kernel verdict meets its
//!    expectation (they were written from real runs of these kernels) and no row is a
//!    disagreement between model and kernel.
//!
//! Ignored unless built with `LOCKSTEP_VM_TESTS=1` (first run: kernel headers, ~100 MB).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lockstep(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lockstep")).args(args).current_dir(root()).output().unwrap()
}

fn json_rows(text: &str) -> Vec<Value> {
    text.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// `scripts/build-module.sh ARGS` (a cache hit when built before): it fetches and unpacks the
/// kernel's headers, whose BTF-only `vmlinux` is the kernel BTF `check` reads.
fn build_module(args: &[&str]) {
    let o = Command::new("bash")
        .arg(root().join("scripts/build-module.sh"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "build-module.sh {args:?} failed:\n{}", String::from_utf8_lossy(&o.stderr));
}

/// The unpacked headers of every kernel whose profile the files carry expectations for: `check`
/// gives a profile without its kernel's `vmlinux` no kernel BTF, and those cases then stay
/// `unsupported` (a fresh machine's CI failed so on 6.12, whose module no earlier test builds;
/// `lockstep kernel fetch --headers` fetches the packages but does not unpack them).
/// Once per test binary (the tests run in parallel threads, and two `build-module.sh` of one
/// kernel at once would unpack into the same directory): the others wait for the first.
fn fetch_headers() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        for kernel in ["debian:6.12", "debian:7.2", "debian:7.3"] {
            build_module(&[kernel]);
        }
    });
}

/// `bpf_testmod.ko` built (cached) for debian:7.2 and 7.3: `check` reads a BPF object's `__ksym`
/// functions in its split BTF, and without any module BTF a name vmlinux lacks stays
/// `unsupported` (`model::ksym`). Built here, not left to whatever ran before on the machine.
fn build_testmods() {
    fetch_headers();
    for kernel in ["debian:7.2", "debian:7.3"] {
        build_module(&["--testmod", kernel]);
    }
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn the_model_with_each_kernels_btf_meets_the_kernel_btf_expectations() {
    fetch_headers();
    let o = lockstep(&["check", "--json", "tests/kernel-btf"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "check tests/kernel-btf: {:?}\n{stderr}", o.status);
    let rows = json_rows(&String::from_utf8_lossy(&o.stdout));
    for profile in ["7.2", "7.3"] {
        let of: Vec<&Value> = rows.iter().filter(|r| r["profile"] == profile).collect();
        let checked: Vec<&&Value> = of.iter().filter(|r| !r["expected"].is_null()).collect();
        assert!(!checked.is_empty(), "no expectation checked on {profile}:\n{stderr}");
        let missed: Vec<_> = checked.iter().filter(|r| r["expected"] == false).map(|r| &r["case"]).collect();
        assert!(missed.is_empty(), "expectations not met on {profile}: {missed:?}");
        // The cases are there because the model judges them with the kernel's BTF: a profile
        // whose headers were not found would leave them all unsupported.
        let judged = of.iter().filter(|r| r["verdict"] != "unsupported").count();
        assert!(judged * 2 > of.len(), "{profile}: only {judged} of {} rows judged:\n{stderr}", of.len());
    }
}

/// A case's verdict depends on the case alone, not on the files checked beside it: each file of
/// `tests/kernel-btf` checked by itself gives the rows it gives in the whole directory (until
/// session 10 `check` loaded the kernel BTF only when some case of the run had a map, so
/// `kfuncs-stream.toml` alone was unsupported).
#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn each_kernel_btf_file_checked_alone_gives_the_rows_it_gives_in_the_directory() {
    fetch_headers();
    let all = json_rows(&String::from_utf8_lossy(&lockstep(&["check", "--json", "tests/kernel-btf"]).stdout));
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("tests/kernel-btf"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() > 1, "tests/kernel-btf holds {} files", files.len());
    for f in &files {
        let rel = format!("tests/kernel-btf/{}", f.file_name().unwrap().to_str().unwrap());
        let alone = json_rows(&String::from_utf8_lossy(&lockstep(&["check", "--json", &rel]).stdout));
        let within: Vec<&Value> = all.iter().filter(|r| r["file"] == rel.as_str()).collect();
        assert!(!alone.is_empty(), "{rel}: no rows");
        assert_eq!(alone.iter().collect::<Vec<_>>(), within, "{rel}: alone vs in tests/kernel-btf");
    }
}

/// Each default kernel's cached headers `vmlinux` (fetched first when missing) and its bytes.
fn headers_vmlinuxes() -> Vec<(PathBuf, Vec<u8>)> {
    fetch_headers();
    let cache = lockstep_vm::cache_root::from_env().unwrap();
    ["debian:6.12", "debian:7.2", "debian:7.3"]
        .iter()
        .map(|kernel| {
            let v = lockstep_vm::kernel::headers_vmlinux(&cache, kernel)
                .unwrap_or_else(|| panic!("{kernel}: no cached headers vmlinux under {}", cache.display()));
            let bytes = std::fs::read(&v).unwrap();
            (v, bytes)
        })
        .collect()
}

/// The kfunc sets of a vmlinux named through its BTF parsed for the model (what `check` and `run`
/// read, `vmlinux_kfunc_sets_named`) are those of the `.BTF` walk of its own
/// (`vmlinux_kfunc_sets`, what `census` reads), on each cached kernel: same kfuncs, sets, flags.
#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn kfunc_sets_named_through_the_models_btf_are_those_of_the_btf_walk() {
    for (v, bytes) in headers_vmlinuxes() {
        let walked = lockstep_core::module_ko::vmlinux_kfunc_sets(&bytes).unwrap();
        let raw = lockstep_core::module_ko::elf_section(&bytes, ".BTF").unwrap().unwrap();
        let btf = lockstep_core::kernel_btf::KernelBtf::parse("vmlinux", raw).unwrap();
        let named =
            lockstep_core::module_ko::vmlinux_kfunc_sets_named(&bytes, &|id| btf.func_name(id)).unwrap();
        assert!(walked.len() > 100, "{}: {} kfuncs", v.display(), walked.len());
        assert_eq!(named, walked, "{}", v.display());
    }
}

/// Each kernel's BTF decoded type by type (`LazyBtf`, what the model reads) gives every type
/// the whole parse gives (`Btf::parse`), on each cached kernel's `vmlinux`, and the same names.
#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn each_kernels_btf_decoded_lazily_is_the_whole_parse() {
    use lockstep_core::import::btf::Btf;
    use lockstep_core::import::btf_lazy::LazyBtf;
    for (v, bytes) in headers_vmlinuxes() {
        let range = lockstep_core::module_ko::elf_section_range(&bytes, ".BTF").unwrap().unwrap();
        let whole = Btf::parse(&bytes[range.clone()]).unwrap();
        let lazy = LazyBtf::parse(bytes, range).unwrap();
        assert!(whole.types.len() > 100_000, "{}: {} types", v.display(), whole.types.len());
        assert_eq!(lazy.count() as usize, whole.types.len(), "{}", v.display());
        // Backwards: no type is decoded in the order the index met it.
        for id in (0..lazy.count()).rev() {
            assert_eq!(lazy.get(id), whole.get(id), "{} type {id}", v.display());
        }
        let mut named = 0usize;
        lazy.for_each_name(|id, name| {
            assert_eq!(whole.get(id).map(|t| t.name.as_str()), Some(name), "{} type {id}", v.display());
            named += 1;
        });
        assert_eq!(named, whole.types.iter().filter(|t| !t.name.is_empty()).count(), "{}", v.display());
    }
}

/// `lockstep run -k debian:7.2 -k debian:7.3 --jobs 1 --json FILE input`: its output and JSON rows.
fn run_on_7_2_and_7_3(input: &str) -> (std::process::Output, Vec<Value>) {
    // The modules `run` builds, built first by the one preparation (no two builds of a kernel's
    // module at once).
    fetch_headers();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("run.json");
    let json = json.to_str().unwrap();
    let o = lockstep(&["run", "-k", "debian:7.2", "-k", "debian:7.3", "--jobs", "1", "--json", json, input]);
    let rows = json_rows(&std::fs::read_to_string(json).unwrap_or_default());
    (o, rows)
}

#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn the_kernel_btf_cases_on_debian_7_2_and_7_3_meet_their_expectations_and_agree_with_the_model() {
    let (o, rows) = run_on_7_2_and_7_3("tests/kernel-btf");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!rows.is_empty(), "no rows: {:?}\n{stderr}", o.status);
    for kernel in ["debian:7.2", "debian:7.3"] {
        let of: Vec<&Value> = rows.iter().filter(|r| r["kernel"] == kernel).collect();
        assert!(!of.is_empty(), "no rows for {kernel}:\n{stderr}");
        for r in &of {
            assert_eq!(r["outcome"], "ran", "{kernel} {}: {r}", r["case"]);
            assert_ne!(
                r["kernel_met"], "not_met",
                "{kernel} {}: kernel misses the expectation: {r}",
                r["case"]
            );
            let a = r["agreement"].as_str().unwrap_or_default();
            assert!(
                matches!(a, "agree" | "unsupported"),
                "{kernel} {}: model and kernel disagree ({a}): {r}",
                r["case"]
            );
        }
        assert!(of.iter().any(|r| r["agreement"] == "agree"), "{kernel}: no agreement at all");
    }
    assert!(o.status.success(), "lockstep run: {:?}\n{stderr}", o.status);
}

/// `tests/externs/ksym_exists.bpf.c` (kept out of `tests/c`, whose test checks every profile
/// without kernel BTF): compiled with the system clang as a user would, checked by the model with
/// each kernel's cached BTF, and loaded into debian:7.2 and debian:7.3. Every expectation the C
/// file writes (`__success`, `__failure __msg`, from real runs) is met by the model and by each
/// kernel, and no row is a disagreement.
#[test]
#[cfg_attr(not(lockstep_vm_tests), ignore = "set LOCKSTEP_VM_TESTS=1")]
fn the_ksym_exists_object_meets_its_expectations_in_the_model_and_the_kernels() {
    build_testmods();
    let dir = tempfile::tempdir().unwrap();
    let obj = dir.path().join("ksym_exists.bpf.o");
    let src = root().join("tests/externs/ksym_exists.bpf.c");
    let st = Command::new("clang")
        .args(["-O2", "-g", "-target", "bpf", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .expect("clang (scripts/setup.sh installs it)");
    assert!(st.success(), "clang failed on {}", src.display());
    let obj = obj.to_str().unwrap();

    let o = lockstep(&["check", "--json", "--profile", "7.2", "--profile", "7.3", obj]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let rows = json_rows(&String::from_utf8_lossy(&o.stdout));
    assert_eq!(rows.len(), 4, "two programs x two profiles: {rows:?}\n{stderr}");
    for r in &rows {
        assert_eq!(r["expected"], true, "the model misses {} on {}: {r}", r["case"], r["profile"]);
    }
    assert!(o.status.success(), "lockstep check: {:?}\n{stderr}", o.status);

    let (o, rows) = run_on_7_2_and_7_3(obj);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(rows.len(), 4, "two programs x two kernels: {rows:?}\n{stderr}");
    for r in &rows {
        assert_eq!(r["outcome"], "ran", "{}: {r}", r["case"]);
        assert_eq!(r["kernel_met"], "met", "{} on {}: {r}", r["case"], r["kernel"]);
        let a = r["agreement"].as_str().unwrap_or_default();
        assert!(matches!(a, "agree" | "unsupported"), "{} on {}: {a}: {r}", r["case"], r["kernel"]);
    }
}
