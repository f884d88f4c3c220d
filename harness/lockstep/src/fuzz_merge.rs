//! Joining the summaries of a fuzz campaign's shards (`lockstep fuzz --shard K/N`, each printing
//! one JSON line or writing `summary.json`): counts summed, disagreement classes deduplicated by
//! signature (the same finding in two shards is one class, its counts summed). Pure.

use std::collections::BTreeMap;

use lockstep_core::fuzz::Signature;
use serde::{Deserialize, Serialize};

/// One class of a shard's summary (the fields the merge keeps).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShardClass {
    pub signature: Signature,
    pub description: String,
    pub count: u64,
    pub first_case: String,
    pub file: Option<String>,
    pub explained: bool,
}

/// A shard's summary (the fields the merge keeps), and the merged summary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FuzzSummary {
    pub command: String,
    pub kernel: String,
    pub profile: String,
    pub disabled_rules: Vec<String>,
    pub seed: u64,
    pub start: u64,
    pub programs: u64,
    pub supported: u64,
    pub agree: u64,
    pub disagree: u64,
    pub unsupported: u64,
    pub inconclusive: u64,
    pub crashes: u64,
    /// Wall time: the sum over shards after a merge (machine time, not elapsed time).
    pub seconds: f64,
    pub classes: Vec<ShardClass>,
    pub infra_error: Option<String>,
    /// Shards joined (1 for a shard's own summary).
    #[serde(default = "one")]
    pub shards: u32,
}

fn one() -> u32 {
    1
}

impl FuzzSummary {
    /// The exit code `lockstep fuzz` gives for this summary.
    pub fn exit_code(&self) -> u8 {
        crate::exit::fuzz_exit_code(
            self.crashes,
            self.infra_error.is_some(),
            self.classes.iter().any(|c| !c.explained),
        )
    }
}

/// Whether a JSON line looks like a fuzz summary rather than a `lockstep run` row.
pub fn is_fuzz_summary(line: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(line)
        .is_ok_and(|v| v.get("command").and_then(|c| c.as_str()) == Some("fuzz"))
}

/// Joins shard summaries of one campaign (same kernel, profile, seed and rules, else an error).
pub fn merge(names: &[String], parts: Vec<FuzzSummary>) -> Result<FuzzSummary, String> {
    let mut parts: Vec<(String, FuzzSummary)> = names.iter().cloned().zip(parts).collect();
    parts.sort_by_key(|(_, p)| p.start);
    let mut it = parts.into_iter();
    let (first_name, mut m) = it.next().ok_or("no summaries to merge")?;
    let mut classes: BTreeMap<Signature, ShardClass> = BTreeMap::new();
    let mut add = |cs: Vec<ShardClass>| {
        for c in cs {
            match classes.get_mut(&c.signature) {
                Some(have) => {
                    have.count += c.count;
                    have.explained |= c.explained;
                    if have.file.is_none() {
                        have.file = c.file;
                    }
                }
                None => {
                    classes.insert(c.signature.clone(), c);
                }
            }
        }
    };
    add(std::mem::take(&mut m.classes));
    for (name, p) in it {
        let same = |a: &str, b: &str, what: &str| {
            if a == b {
                Ok(())
            } else {
                Err(format!("{name}: {what} {b} differs from {first_name}'s {a}: not shards of one campaign"))
            }
        };
        same(&m.kernel, &p.kernel, "kernel")?;
        same(&m.profile, &p.profile, "profile")?;
        same(&m.seed.to_string(), &p.seed.to_string(), "seed")?;
        same(&m.disabled_rules.join(","), &p.disabled_rules.join(","), "disabled rules")?;
        m.programs += p.programs;
        m.supported += p.supported;
        m.agree += p.agree;
        m.disagree += p.disagree;
        m.unsupported += p.unsupported;
        m.inconclusive += p.inconclusive;
        m.crashes += p.crashes;
        m.seconds += p.seconds;
        m.shards += p.shards;
        if let Some(e) = p.infra_error {
            m.infra_error = Some(match m.infra_error.take() {
                Some(prev) => format!("{prev}; {name}: {e}"),
                None => format!("{name}: {e}"),
            });
        }
        add(p.classes);
    }
    let mut classes: Vec<ShardClass> = classes.into_values().collect();
    classes.sort_by_key(|c| std::cmp::Reverse(c.count));
    m.classes = classes;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_core::compare::Agreement;
    use lockstep_core::verdict::VerdictKind;

    fn sig(msg: &str) -> Signature {
        Signature {
            kernel: "debian:7.3".into(),
            profile: "7.3".into(),
            mismatch: Agreement::Message,
            model: VerdictKind::Reject,
            kernel_verdict: VerdictKind::Reject,
            model_message: msg.into(),
            kernel_message: "k".into(),
        }
    }

    fn class(msg: &str, count: u64, explained: bool) -> ShardClass {
        ShardClass {
            signature: sig(msg),
            description: msg.into(),
            count,
            first_case: format!("fuzz_{msg}"),
            file: None,
            explained,
        }
    }

    fn part(start: u64, programs: u64, classes: Vec<ShardClass>) -> FuzzSummary {
        FuzzSummary {
            command: "fuzz".into(),
            kernel: "debian:7.3".into(),
            profile: "7.3".into(),
            disabled_rules: vec![],
            seed: 1,
            start,
            programs,
            supported: programs - 1,
            agree: programs - 2,
            disagree: 1,
            unsupported: 1,
            inconclusive: 0,
            crashes: 0,
            seconds: 2.0,
            classes,
            infra_error: None,
            shards: 1,
        }
    }

    #[test]
    fn counts_add_up_and_findings_are_deduplicated() {
        let a = part(0, 50, vec![class("x", 1, false)]);
        let b = part(50, 50, vec![class("x", 2, true), class("y", 1, false)]);
        let m = merge(&["b".into(), "a".into()], vec![b, a]).unwrap();
        assert_eq!((m.start, m.programs, m.agree, m.disagree, m.shards), (0, 100, 96, 2, 2));
        assert_eq!(m.classes.len(), 2);
        assert_eq!(
            (m.classes[0].description.as_str(), m.classes[0].count, m.classes[0].explained),
            ("x", 3, true)
        );
        assert_eq!(m.exit_code(), crate::exit::EXIT_DISAGREE, "y is not explained");
        let text = serde_json::to_string(&m).unwrap();
        assert!(is_fuzz_summary(&text));
        assert_eq!(serde_json::from_str::<FuzzSummary>(&text).unwrap(), m);
    }

    #[test]
    fn shards_of_other_campaigns_are_refused() {
        let a = part(0, 10, vec![]);
        let b = FuzzSummary { seed: 2, ..part(10, 10, vec![]) };
        let e = merge(&["a.json".into(), "b.json".into()], vec![a, b]).unwrap_err();
        assert!(e.contains("b.json: seed 2 differs from a.json's 1"), "{e}");
    }
}
