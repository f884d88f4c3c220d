//! Exit codes and the error kinds that map onto them (stable, for CI; documented in the README).
//!
//! - 0: success (all verdicts agree / all expectations met)
//! - 1: disagreement (model vs expectation, model vs kernel, kernel vs kernel)
//! - 2: bad input (malformed case file, unknown profile, unknown helper or kfunc)
//! - 3: infrastructure failure (no kernel, no QEMU, boot failure, setup error)
//! - 4: kernel crash (panic, oops, WARN or hang in a guest)
//! - 5: programs of a BPF object input were not judged at all (`check`: the model cannot judge
//!   them; `run`: lockstep could not load them and the model cannot judge them), unless
//!   `--allow-skips`; 2-4 take precedence over it, it takes precedence over 1

/// Exit code: disagreement.
pub const EXIT_DISAGREE: u8 = 1;
/// Exit code: bad input.
pub const EXIT_BAD_INPUT: u8 = 2;
/// Exit code: infrastructure failure.
pub const EXIT_INFRA: u8 = 3;
/// Exit code: kernel crash.
pub const EXIT_CRASH: u8 = 4;

/// Exit code: programs of an object input not judged at all (see the module doc).
pub const EXIT_UNJUDGED: u8 = 5;

/// A user-input error (malformed case file, unknown name, bad path): exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadInput(pub String);

/// An infrastructure failure (no QEMU, a dynamically linked binary, ...): exit code 3.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InfraError(pub String);

/// The exit code of a command that failed with `e`.
pub fn code_of(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<BadInput>().is_some() {
        EXIT_BAD_INPUT
    } else {
        EXIT_INFRA
    }
}
