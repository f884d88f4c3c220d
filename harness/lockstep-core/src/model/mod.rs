//! The spin-lock verifier model: an abstract interpreter over a documented subset of eBPF that
//! follows the verifier's exploration order (fall-through first, pushed branches popped last-in
//! first-out) and predicts its verdict on the lock rules for one [`KernelProfile`].
//!
//! Outside the subset it answers [`VerdictKind::Unsupported`](crate::verdict::VerdictKind) with
//! the reason, never a guess. The subset and each rule's source function are listed in
//! `docs/model.md`.

mod calls;
mod exec;
mod scalar;
mod state;

pub use calls::kfunc_allowed_under_lock;
pub use scalar::{CmpOp, Scalar};
pub use state::{ActiveLock, Frame, Reg, Stack, State};

use crate::case::Case;
use crate::profile::{KernelProfile, ModuleKfuncs};
use crate::verdict::Verdict;

/// Why a path stopped early.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stop {
    /// The verifier rejects at this instruction (None: before the main walk).
    Reject(Option<usize>, String),
    /// Outside the modelled subset.
    Unsupported(String),
}

pub(crate) type Step<T> = Result<T, Stop>;

/// At most this many instructions are walked over all paths before the model gives up.
pub const STEP_BUDGET: usize = 50_000;

/// Predicts the verdict of `profile`'s verifier on `case`. `module` holds the test module's kfuncs.
pub fn check(case: &Case, profile: &KernelProfile, module: &ModuleKfuncs) -> Verdict {
    match exec::Machine::new(case, profile, module).run() {
        Ok(()) => Verdict::accept(),
        Err(Stop::Reject(insn, msg)) => Verdict::reject(insn, msg),
        Err(Stop::Unsupported(why)) => Verdict::unsupported(why),
    }
}

#[cfg(test)]
mod tests;
