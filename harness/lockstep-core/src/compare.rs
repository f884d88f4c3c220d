//! Comparing a model verdict with a kernel's: the agreement classes of `lockstep run`.

use serde::{Deserialize, Serialize};

use crate::proto::KernelResult;
use crate::verdict::{Verdict, VerdictKind};

/// How a model verdict relates to a kernel result, in order of precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agreement {
    /// Same verdict; for a rejection also the same message and instruction index.
    Agree,
    /// Accept against reject.
    Verdict,
    /// Both reject, with different messages.
    Message,
    /// Both reject with the same message, at different instructions.
    Insn,
    /// The model does not cover the program (not a disagreement).
    Unsupported,
    /// The kernel gave no verifier verdict: setup failure, crash, hang, module not loaded.
    Infra,
    /// The program calls a kfunc this kernel does not have, and the model's profile says so too:
    /// it cannot be built for this kernel (neither a disagreement nor a harness failure).
    Absent,
}

impl Agreement {
    /// The lower-case name used in output.
    pub fn as_str(self) -> &'static str {
        match self {
            Agreement::Agree => "agree",
            Agreement::Verdict => "verdict",
            Agreement::Message => "message",
            Agreement::Insn => "insn",
            Agreement::Unsupported => "unsupported",
            Agreement::Infra => "infra",
            Agreement::Absent => "absent",
        }
    }

    /// Whether this is a real disagreement between the model and a kernel.
    pub fn is_disagreement(self) -> bool {
        matches!(self, Agreement::Verdict | Agreement::Message | Agreement::Insn)
    }
}

/// Classifies `model` against `kernel` (a kernel result with `setup_error` is [`Agreement::Infra`],
/// unless the kernel lacks a kfunc the model's profile also says is absent: [`Agreement::Absent`]).
pub fn classify(model: &Verdict, kernel: &KernelResult) -> Agreement {
    if let Some(name) = kernel.setup_error.as_deref().and_then(missing_kfunc) {
        let absent = model.verdict == VerdictKind::Unsupported
            && model.message.as_deref().is_some_and(|m| m.starts_with(&absent_kfunc_reason(name, "")));
        return if absent { Agreement::Absent } else { Agreement::Infra };
    }
    if kernel.setup_error.is_some() || kernel.verdict.verdict == VerdictKind::Unsupported {
        return Agreement::Infra;
    }
    classify_verdicts(model, &kernel.verdict)
}

/// The model's `unsupported` reason for a kfunc its profile says the kernel does not have.
pub fn absent_kfunc_reason(name: &str, profile: &str) -> String {
    format!("kfunc {name} does not exist in {profile}")
}

/// The kfunc a loader's setup error says the kernel does not have (`unknown kfunc NAME: ...`,
/// `lockstep_bpf`'s `UnknownKfunc`).
pub fn missing_kfunc(setup_error: &str) -> Option<&str> {
    let rest = setup_error.strip_prefix("unknown kfunc ")?;
    rest.split([':', ' ']).next().filter(|n| !n.is_empty())
}

/// Classifies two verdicts (`kernel` is a verifier verdict: accept or reject).
pub fn classify_verdicts(model: &Verdict, kernel: &Verdict) -> Agreement {
    match (model.verdict, kernel.verdict) {
        (VerdictKind::Unsupported, _) => Agreement::Unsupported,
        (_, VerdictKind::Unsupported) => Agreement::Infra,
        (a, b) if a != b => Agreement::Verdict,
        (VerdictKind::Accept, _) => Agreement::Agree,
        _ if !messages_match(&model.message, &kernel.message) => Agreement::Message,
        _ if model.insn != kernel.insn => Agreement::Insn,
        _ => Agreement::Agree,
    }
}

/// Messages match on their first line: the kernel's error is one log line (what follows it, e.g.
/// 7.3's "Verification failed" block or the global-call hint, is log context), while the model
/// keeps a multi-line message whole.
pub fn messages_match(model: &Option<String>, kernel: &Option<String>) -> bool {
    let (m, k) = (model.as_deref().map_or("", first_line), kernel.as_deref().map_or("", first_line));
    !m.is_empty() && m == k
}

/// The part of a message that is compared: its first line, trailing blanks trimmed.
pub fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or("").trim_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kr(v: Verdict) -> KernelResult {
        crate::proto::test_support::kernel_result("c", v)
    }

    #[test]
    fn classes_in_order_of_precedence() {
        let rej = |i, m: &str| Verdict::reject(Some(i), m);
        assert_eq!(classify(&Verdict::accept(), &kr(Verdict::accept())), Agreement::Agree);
        assert_eq!(classify(&Verdict::accept(), &kr(rej(3, "x"))), Agreement::Verdict);
        assert_eq!(classify(&rej(3, "x"), &kr(Verdict::accept())), Agreement::Verdict);
        assert_eq!(classify(&rej(3, "x"), &kr(rej(3, "y"))), Agreement::Message);
        assert_eq!(classify(&rej(3, "x"), &kr(rej(4, "x"))), Agreement::Insn);
        assert_eq!(classify(&rej(3, "x"), &kr(rej(3, "x"))), Agreement::Agree);
        assert_eq!(classify(&Verdict::unsupported("why"), &kr(rej(3, "x"))), Agreement::Unsupported);
        let mut setup = kr(Verdict::unsupported("setup error: map"));
        setup.setup_error = Some("map".into());
        assert_eq!(classify(&Verdict::accept(), &setup), Agreement::Infra);
        assert!(Agreement::Insn.is_disagreement() && !Agreement::Infra.is_disagreement());
    }

    #[test]
    fn a_kfunc_both_sides_call_absent_is_absent_else_infra() {
        let mut lacks = kr(Verdict::unsupported("setup error"));
        lacks.setup_error = Some(
            "unknown kfunc bpf_res_spin_lock: not a BTF function of vmlinux or any loaded module".into(),
        );
        assert_eq!(missing_kfunc(lacks.setup_error.as_deref().unwrap()), Some("bpf_res_spin_lock"));
        assert_eq!(missing_kfunc("map x: creation failed"), None);
        let absent = Verdict::unsupported(absent_kfunc_reason("bpf_res_spin_lock", "6.12"));
        assert_eq!(classify(&absent, &lacks), Agreement::Absent);
        // The model says another kfunc is absent, or judges the program: the kernel's missing
        // kfunc is then a harness/profile problem, shown as infra.
        let other = Verdict::unsupported(absent_kfunc_reason("bpf_res_spin_lock_irqsave", "6.12"));
        assert_eq!(classify(&other, &lacks), Agreement::Infra);
        assert_eq!(classify(&Verdict::accept(), &lacks), Agreement::Infra);
        assert!(!Agreement::Absent.is_disagreement());
    }

    #[test]
    fn messages_compare_on_their_first_line() {
        let k =
            Some("function calls are not allowed while holding a lock\nVerification failed: x".to_string());
        assert!(messages_match(&Some("function calls are not allowed while holding a lock".into()), &k));
        let two = Some(
            "global function calls are not allowed while holding a lock,\nuse static function instead"
                .to_string(),
        );
        assert!(messages_match(
            &two,
            &Some("global function calls are not allowed while holding a lock,".into())
        ));
        assert!(!messages_match(&two, &Some("function calls are not allowed while holding a lock".into())));
        assert!(!messages_match(&None, &None), "a rejection without a message never matches");
    }
}
