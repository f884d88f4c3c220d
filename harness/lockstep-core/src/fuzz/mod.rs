//! Differential fuzzing, the pure parts: the program [`gen`]erator, the comparison of a model
//! verdict with a kernel's ([`compare`], [`Signature`]), the kernel side as a trait ([`Oracle`], with
//! the model itself as a pseudo-kernel in [`ModelOracle`]), the [`minimize`]r and the case-file /
//! snapshot [`write`]r. The driver (timing, progress, files, guests) lives in the `lockstep` binary.

pub mod cfg;
pub mod gen;
pub mod ir;
pub mod minimize;
pub mod oracle;
pub mod rng;
pub mod write;

pub use gen::Generator;
pub use minimize::{minimize, Minimized};
pub use oracle::{Answer, ModelOracle, Oracle, OracleError};

use serde::{Deserialize, Serialize};

use crate::compare::classify;
pub use crate::compare::Agreement;
use crate::proto::KernelResult;
use crate::verdict::{Verdict, VerdictKind};

/// A disagreement class: two disagreements with equal signatures are duplicates, and the
/// minimiser keeps shrinking while the signature stays the same.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Signature {
    /// The kernel (`debian:7.2`, `model:7.3`).
    pub kernel: String,
    /// The model's profile.
    pub profile: String,
    /// What differs: [`Agreement::Verdict`], [`Agreement::Message`] or [`Agreement::Insn`].
    pub mismatch: Agreement,
    pub model: VerdictKind,
    pub kernel_verdict: VerdictKind,
    /// The model's message, first line, numbers replaced by `N`.
    pub model_message: String,
    /// The kernel's message, first line, numbers replaced by `N`.
    pub kernel_message: String,
}

impl Signature {
    /// A short stable hex digest (FNV-1a 64 of the fields), for file names.
    pub fn digest(&self) -> String {
        let s = format!(
            "{}\0{}\0{:?}\0{:?}\0{:?}\0{}\0{}",
            self.kernel,
            self.profile,
            self.mismatch,
            self.model,
            self.kernel_verdict,
            self.model_message,
            self.kernel_message
        );
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in s.bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{:08x}", (h >> 32) as u32 ^ h as u32)
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        let side = |k: VerdictKind, m: &str| {
            if m.is_empty() {
                k.as_str().to_string()
            } else {
                format!("{} \"{m}\"", k.as_str())
            }
        };
        format!(
            "kernel {} vs model profile {}: {} mismatch: kernel {}, model {}",
            self.kernel,
            self.profile,
            self.mismatch.as_str(),
            side(self.kernel_verdict, &self.kernel_message),
            side(self.model, &self.model_message)
        )
    }
}

/// The first line of a message with every run of digits replaced by `N`.
pub fn normalize_message(m: Option<&str>) -> String {
    let first = m.unwrap_or("").lines().next().unwrap_or("").trim();
    let mut out = String::with_capacity(first.len());
    let mut in_digits = false;
    for c in first.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// How one program's two verdicts compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Comparison {
    Agree,
    Disagree(Signature),
    /// The model has no verdict (outside its subset): the reason.
    ModelUnsupported(String),
    /// The kernel's answer is not a verifier verdict (setup failed; a pseudo-kernel had none).
    KernelInconclusive(String),
}

/// Compares the model's verdict (on `profile`) with `kernel`'s result, with the agreement
/// classes of `lockstep run` ([`classify`]).
pub fn compare(kernel: &str, profile: &str, model: &Verdict, result: &KernelResult) -> Comparison {
    match classify(model, result) {
        Agreement::Agree => Comparison::Agree,
        Agreement::Unsupported => Comparison::ModelUnsupported(model.message.clone().unwrap_or_default()),
        // A kfunc absent from the kernel (and, per the profile, from the model's view): no
        // verifier verdict to compare, as for any other setup error.
        Agreement::Infra | Agreement::Absent => Comparison::KernelInconclusive(match &result.setup_error {
            Some(e) => format!("setup: {e}"),
            None => result.verdict.message.clone().unwrap_or_default(),
        }),
        mismatch => Comparison::Disagree(Signature {
            kernel: kernel.to_string(),
            profile: profile.to_string(),
            mismatch,
            model: model.verdict,
            kernel_verdict: result.verdict.verdict,
            model_message: normalize_message(model.message.as_deref()),
            kernel_message: normalize_message(result.verdict.message.as_deref()),
        }),
    }
}

/// The unsupported reason with numbers and names of instructions normalised, to group reasons.
pub fn reason_class(reason: &str) -> String {
    normalize_message(Some(reason))
}

#[cfg(test)]
mod tests;
