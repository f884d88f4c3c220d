//! Verdicts and their comparison.

use serde::{Deserialize, Serialize};

/// Accept, reject, or (model only) outside the modelled subset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    Accept,
    Reject,
    Unsupported,
}

impl VerdictKind {
    /// The lower-case name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Accept => "accept",
            VerdictKind::Reject => "reject",
            VerdictKind::Unsupported => "unsupported",
        }
    }
}

/// A verdict on one program: from the model or from a kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub verdict: VerdictKind,
    /// For a rejection: the instruction index the verifier was at (none for a rejection found
    /// before the main pass, e.g. map/program-type compatibility).
    pub insn: Option<usize>,
    /// For a rejection: the error line; for unsupported: the reason.
    pub message: Option<String>,
}

impl Verdict {
    /// An acceptance.
    pub fn accept() -> Self {
        Verdict { verdict: VerdictKind::Accept, insn: None, message: None }
    }
    /// A rejection at `insn` with `message`.
    pub fn reject(insn: Option<usize>, message: impl Into<String>) -> Self {
        Verdict { verdict: VerdictKind::Reject, insn, message: Some(message.into()) }
    }
    /// Outside the model's subset, with the reason.
    pub fn unsupported(reason: impl Into<String>) -> Self {
        Verdict { verdict: VerdictKind::Unsupported, insn: None, message: Some(reason.into()) }
    }
}

/// `EOPNOTSUPP`: the errno `map_check_btf()` (kernel/bpf/syscall.c) returns for a map type that
/// may not hold a special field it has (a `bpf_spin_lock` in a per-cpu or LRU map).
pub const EOPNOTSUPP: i32 = 95;

/// The message of a rejection at `BPF_MAP_CREATE` (before any program is loaded), as both the
/// model and the kernel loader report it: the map's name and the errno's symbolic name.
pub fn map_create_refused(map: &str, errno: i32) -> String {
    let name = match errno {
        EOPNOTSUPP => "EOPNOTSUPP".to_string(),
        n => format!("errno {n}"),
    };
    format!("BPF_MAP_CREATE refused map '{map}': {name}")
}
