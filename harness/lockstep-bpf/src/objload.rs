//! Loading a program of a BPF object through libbpf, as the selftests' `test_loader.c` does:
//! the object opened from memory under libbpf's own name for it, only the program under test
//! autoloaded, its verifier log at the case's level in a buffer of its own.

use lockstep_core::case::{Case, ObjectSource};
use lockstep_core::proto::{KernelResult, TestRun};
use lockstep_core::verdict::{Verdict, VerdictKind};

use crate::log::parse_verifier_log;
use crate::sys::object::{BpfObject, LibbpfError};

/// Largest verifier log buffer tried (the load is retried with a bigger one on `ENOSPC`).
const MAX_LOG_SIZE: usize = 256 << 20;
/// `BPF_LOG_STATS`: adds `verification time` and `processed N insns` (never changes a verdict).
const BPF_LOG_STATS: u32 = 4;

/// The name libbpf gives an object opened from file `file_name`: its base name up to the first
/// `.` (`bpf_object__new()`), so that `x.bpf.o`'s maps are `x.bss`, `x.data`, ...
pub fn libbpf_object_name(file_name: &str) -> &str {
    let base = file_name.rsplit('/').next().unwrap_or(file_name);
    base.split('.').next().unwrap_or(base)
}

/// libbpf messages that report a bpf() call the kernel refused (map creation, BTF, program
/// load without a verifier log): such a failure is the kernel's verdict, not lockstep's.
const KERNEL_REFUSALS: &[&str] = &[
    "failed to create",
    "failed to create inner map",
    "BPF program load failed",
    "Error loading .BTF into kernel",
    "failed to set initial contents",
    "failed to freeze as read-only",
    "failed to initialize slot",
    "failed to mmap arena",
];

/// libbpf's messages without the verifier log it repeats between `BEGIN` and `END PROG LOAD LOG`.
fn messages_without_log(messages: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut in_log = false;
    for l in messages.lines() {
        if l.contains("-- BEGIN PROG LOAD LOG --") {
            in_log = true;
        } else if l.contains("-- END PROG LOAD LOG --") {
            in_log = false;
        } else if !in_log && !l.trim().is_empty() {
            out.push(l.trim_end());
        }
    }
    out
}

/// The first libbpf message that reports a kernel refusal, without the `libbpf: ` prefix.
pub fn kernel_refusal(messages: &str) -> Option<String> {
    messages_without_log(messages)
        .into_iter()
        .find(|l| KERNEL_REFUSALS.iter().any(|k| l.contains(k)))
        .map(|l| l.strip_prefix("libbpf: ").unwrap_or(l).to_string())
}

/// A result that is not the verifier's: lockstep (or libbpf) could not load the object.
fn infra(case: &Case, why: String, errno: i32, log: Option<String>) -> KernelResult {
    KernelResult {
        case: case.name.clone(),
        verdict: Verdict::unsupported(format!("setup error: {why}")),
        errno,
        log,
        verification_usec: None,
        insns_processed: None,
        setup_error: Some(why),
        test_run: None,
    }
}

/// Loads `case`'s object program (see the module doc) and reports what the kernel said; when
/// the case asks for it (`__retval`), runs the loaded program once (`BPF_PROG_TEST_RUN`).
///
/// The log comes back when asked for, and always when the case has `__msg` patterns: they are
/// matched against the whole log, as `test_loader.c` does.
pub fn run_object(case: &Case, src: &ObjectSource, want_log: bool, first_log_size: usize) -> KernelResult {
    let want_log = want_log || case.expect.values().any(|e| !e.msgs.is_empty());
    let mut log_size = first_log_size;
    loop {
        match try_load(src, log_size) {
            Attempt::Loaded { log, test_run } => {
                let parsed = parse_verifier_log(&log);
                return KernelResult {
                    case: case.name.clone(),
                    verdict: Verdict::accept(),
                    errno: 0,
                    log: want_log.then_some(log),
                    verification_usec: parsed.verification_usec,
                    insns_processed: parsed.insns_processed,
                    setup_error: None,
                    test_run,
                };
            }
            Attempt::Failed { err, log } if err.errno == libc_enospc() && log_size < MAX_LOG_SIZE => {
                let _ = (err, log);
                log_size = (log_size * 4).min(MAX_LOG_SIZE);
            }
            Attempt::Failed { err, log } => return failed(case, src, want_log, err, log),
            Attempt::Setup(why, errno) => return infra(case, why, errno, None),
        }
    }
}

/// `EINVAL`, `ENOTSUPP` (the kernel's 524, which libc does not name), ...
fn errno_name(errno: i32) -> String {
    match errno {
        524 => "ENOTSUPP".to_string(),
        e => format!("{:?}", nix::errno::Errno::from_raw(e)),
    }
}

fn libc_enospc() -> i32 {
    nix::errno::Errno::ENOSPC as i32
}

/// One try at loading the object with a log buffer of `log_size` bytes.
enum Attempt {
    Loaded {
        log: String,
        /// `BPF_PROG_TEST_RUN`'s answer, when the case asks for a test run.
        test_run: Option<TestRun>,
    },
    Failed {
        err: LibbpfError,
        log: String,
    },
    /// Lockstep could not get as far as `bpf_object__load` (reason, errno).
    Setup(String, i32),
}

fn try_load(src: &ObjectSource, log_size: usize) -> Attempt {
    let mut obj = match BpfObject::open_mem(src.bytes.clone(), libbpf_object_name(&src.file_name)) {
        Ok(o) => o,
        Err(e) => return Attempt::Setup(format!("libbpf cannot open {}: {e}", src.file_name), e.errno),
    };
    let names = obj.program_names();
    if let Some(missing) = src.autoload.iter().find(|p| !names.contains(p)) {
        return Attempt::Setup(
            format!(
                "libbpf finds no program `{missing}` in {} (it has: {})",
                src.file_name,
                names.join(", ")
            ),
            0,
        );
    }
    if let Err(e) =
        obj.set_autoload(&src.autoload, src.log_level.max(1) | BPF_LOG_STATS, log_size, src.prog_flags)
    {
        return Attempt::Setup(format!("{e}"), e.errno);
    }
    match obj.load() {
        Ok(()) => Attempt::Loaded {
            log: obj.log_of(&src.program),
            test_run: src.test_run.then(|| match obj.test_run(&src.program) {
                Ok(retval) => TestRun::Ran { retval },
                Err(errno) => TestRun::Refused { errno, errno_name: errno_name(errno) },
            }),
        },
        Err(err) => Attempt::Failed { log: obj.log_of(&src.program), err },
    }
}

/// The result of a failed `bpf_object__load`: the verifier's rejection when the program got a
/// log, the kernel's refusal of a map or BTF as libbpf reports it, else an infra failure naming
/// libbpf's reason.
fn failed(case: &Case, src: &ObjectSource, want_log: bool, err: LibbpfError, log: String) -> KernelResult {
    let parsed = parse_verifier_log(&log);
    if let Some(error) = parsed.error.clone() {
        return KernelResult {
            case: case.name.clone(),
            verdict: Verdict { verdict: VerdictKind::Reject, insn: parsed.insn, message: Some(error) },
            errno: err.errno,
            log: want_log.then_some(log),
            verification_usec: parsed.verification_usec,
            insns_processed: parsed.insns_processed,
            setup_error: None,
            test_run: None,
        };
    }
    let libbpf_log = messages_without_log(&err.messages).join("\n");
    match kernel_refusal(&err.messages) {
        Some(line) => KernelResult {
            case: case.name.clone(),
            verdict: Verdict { verdict: VerdictKind::Reject, insn: None, message: Some(line) },
            errno: err.errno,
            log: Some(if log.is_empty() { libbpf_log } else { format!("{log}\n{libbpf_log}") }),
            verification_usec: None,
            insns_processed: None,
            setup_error: None,
            test_run: None,
        },
        None => infra(
            case,
            format!(
                "libbpf could not load program {} of {}: {} ({})",
                src.program,
                src.file_name,
                messages_without_log(&err.messages).first().copied().unwrap_or("no message"),
                err.errno_name
            ),
            err.errno,
            Some(libbpf_log),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_libbpfs() {
        assert_eq!(libbpf_object_name("linked_list.bpf.o"), "linked_list");
        assert_eq!(libbpf_object_name("/x/y/map_lock.bpf.o"), "map_lock");
        assert_eq!(libbpf_object_name("plain"), "plain");
    }

    #[test]
    fn kernel_refusals_are_told_from_libbpf_failures() {
        let map = "libbpf: map 'inner': failed to create: -EINVAL\nlibbpf: failed to load object 'x'\n";
        assert_eq!(kernel_refusal(map).as_deref(), Some("map 'inner': failed to create: -EINVAL"));
        let ksym = "libbpf: extern (func ksym) 'bpf_foo': not found in kernel or module BTFs\n\
                    libbpf: failed to load object 'x'\n";
        assert_eq!(kernel_refusal(ksym), None);
        let logged =
            "libbpf: prog 'p': -- BEGIN PROG LOAD LOG --\nfailed to create\n-- END PROG LOAD LOG --\n";
        assert_eq!(kernel_refusal(logged), None);
    }
}
