//! Exit codes and the error kinds that map onto them (stable, for CI; documented in the README).
//!
//! - 0: success (all verdicts agree / all expectations met)
//! - 1: disagreement (model vs expectation, model vs kernel, kernel vs kernel)
//! - 2: bad input (malformed case file, unknown profile, unknown helper or kfunc)
//! - 3: infrastructure failure (no kernel, no QEMU, boot failure, setup error)
//! - 4: kernel crash (panic, oops, BUG or WARN on a guest's console)
//! - 5: timeout (a case outlived its time limit, or the whole run its `--timeout`)
//! - 6: programs of a BPF object input were not judged at all (`check`: the model cannot judge
//!   them; `run`: lockstep could not load them and the model cannot judge them), unless
//!   `--allow-skips`; 2-5 take precedence over it, it takes precedence over 1
//! - 130 / 143: interrupted by SIGINT / SIGTERM (what was collected is written first)
//! - 141: stdout's reader went away (`lockstep check | head`): quietly, as a shell reports a
//!   process killed by SIGPIPE

/// Exit code: disagreement.
pub const EXIT_DISAGREE: u8 = 1;
/// Exit code: bad input.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code: infrastructure failure.
pub const EXIT_INFRA: u8 = 3;
/// Exit code: kernel crash.
pub const EXIT_CRASH: u8 = 4;
/// Exit code: a case or the whole run timed out.
pub const EXIT_TIMEOUT: u8 = 5;

/// Exit code: programs of an object input not judged at all (see the module doc).
pub const EXIT_UNJUDGED: u8 = 6;

/// Exit code: stdout is a closed pipe (128 + SIGPIPE); no message is printed.
pub const EXIT_BROKEN_PIPE: u8 = 141;

/// The exit code of a fuzz campaign (`lockstep fuzz`, and `report merge` of its shards): a kernel
/// crash, else the kernel stopping (infrastructure), else an unexplained disagreement class, else 0.
pub fn fuzz_exit_code(crashes: u64, stopped_early: bool, unexplained_class: bool) -> u8 {
    if crashes > 0 {
        EXIT_CRASH
    } else if stopped_early {
        EXIT_INFRA
    } else if unexplained_class {
        EXIT_DISAGREE
    } else {
        0
    }
}

/// A user-input error (malformed case file, unknown name, bad path): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// An infrastructure failure (no QEMU, a dynamically linked binary, ...): exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InfraError(pub String);

/// lockstep received `signal` (SIGINT, SIGTERM): exit 128 + signal.
#[derive(Debug, thiserror::Error)]
#[error("interrupted by {}", nix::sys::signal::Signal::try_from(*.signal).map_or_else(|_| format!("signal {}", .signal), |s| s.to_string()))]
pub struct Interrupted {
    pub signal: i32,
}

/// lockstep stopped a guest itself because the run ends on an error found elsewhere (bad
/// input); that error, not this one, gives the exit code.
#[derive(Debug, thiserror::Error)]
#[error("stopped: the run ended on bad input")]
pub struct Cancelled;

/// The run's time limit (`--timeout`) ran out: exit code 5.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RunTimedOut(pub String);

/// The exit code of a command that failed with `e`.
pub fn code_of(e: &anyhow::Error) -> u8 {
    if is_broken_pipe(e) {
        EXIT_BROKEN_PIPE
    } else if e.downcast_ref::<BadInput>().is_some() {
        EXIT_BAD_INPUT
    } else if let Some(i) = e.downcast_ref::<Interrupted>() {
        (128 + i.signal) as u8
    } else if e.downcast_ref::<RunTimedOut>().is_some() {
        EXIT_TIMEOUT
    } else {
        EXIT_INFRA
    }
}

/// Whether `e` is (or was caused by) a write to a pipe whose reader is gone.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn exit_codes_follow_the_error_kind() {
        let pipe =
            Err::<(), _>(std::io::Error::from(std::io::ErrorKind::BrokenPipe)).context("writing to stdout");
        assert_eq!(code_of(&pipe.unwrap_err()), EXIT_BROKEN_PIPE);
        let full = Err::<(), _>(std::io::Error::from_raw_os_error(28)).context("writing to stdout");
        assert_eq!(code_of(&full.unwrap_err()), EXIT_INFRA);
        assert_eq!(code_of(&BadInput("x".into()).into()), 2);
        assert_eq!(code_of(&InfraError("x".into()).into()), 3);
        assert_eq!(code_of(&RunTimedOut("x".into()).into()), 5);
        assert_eq!(code_of(&Interrupted { signal: 2 }.into()), 130);
        assert_eq!(code_of(&Interrupted { signal: 15 }.into()), 143);
        assert_eq!(code_of(&anyhow::Error::from(Interrupted { signal: 15 }).context("running")), 143);
    }

    #[test]
    fn a_fuzz_crash_outranks_a_stop_which_outranks_an_unexplained_class() {
        assert_eq!(fuzz_exit_code(1, true, true), EXIT_CRASH);
        assert_eq!(fuzz_exit_code(0, true, true), EXIT_INFRA);
        assert_eq!(fuzz_exit_code(0, false, true), EXIT_DISAGREE);
        assert_eq!(fuzz_exit_code(0, false, false), 0);
    }
}
