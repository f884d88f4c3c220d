//! The kernel side of a fuzz run as a trait: a real kernel in a long-lived guest implements it in
//! the binary; [`ModelOracle`] is the model under another profile or with rules switched off, a
//! pseudo-kernel that runs everywhere (and gives the minimiser a disagreement to catch).

use crate::case::Case;
use crate::model::{check_with, ModelOptions, Rule};
use crate::profile::{KernelProfile, ModuleKfuncs};
use crate::proto::KernelResult;

/// What a kernel did with one case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The verifier's verdict (or a setup error, in [`KernelResult::setup_error`]).
    Result(KernelResult),
    /// The case crashed the kernel (panic, oops, hang), every time it was tried: an excerpt.
    Crashed(String),
    /// The case never ran (e.g. the guest did not boot): why.
    NotRun(String),
}

impl Answer {
    /// The verdict, if the kernel gave one.
    pub fn result(&self) -> Option<&KernelResult> {
        match self {
            Answer::Result(r) => Some(r),
            _ => None,
        }
    }
}

/// Why an oracle could not answer at all.
#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    /// No kernel, boot failure, transport.
    #[error("{0}")]
    Infra(String),
}

/// Something that says what a kernel's verifier does with programs.
pub trait Oracle {
    /// The kernel's name in signatures and reports (`debian:7.2`, `model:7.3`).
    fn kernel(&self) -> &str;
    /// One answer per case, in order. A long-lived guest answers many batches.
    fn run(&mut self, cases: &[Case]) -> Result<Vec<Answer>, OracleError>;
}

/// The model as a kernel: `model:<profile>[:-rule,-rule...]`.
#[derive(Clone, Debug)]
pub struct ModelOracle {
    name: String,
    profile: KernelProfile,
    module: ModuleKfuncs,
    opts: ModelOptions,
}

impl ModelOracle {
    /// The model on `profile` with `opts`, named like its spec.
    pub fn new(profile: KernelProfile, module: ModuleKfuncs, opts: ModelOptions) -> Self {
        let mut name = format!("model:{}", profile.name);
        if !opts.disabled.is_empty() {
            name.push(':');
            name.push_str(
                &opts.disabled.iter().map(|r| format!("-{}", r.name())).collect::<Vec<_>>().join(","),
            );
        }
        ModelOracle { name, profile, module, opts }
    }

    /// Parses `model:<profile>[:-rule,...]` (rules by [`Rule::name`]).
    pub fn parse(spec: &str, module: &ModuleKfuncs) -> Result<ModelOracle, String> {
        let rest = spec
            .strip_prefix("model:")
            .ok_or_else(|| format!("`{spec}` is not a model pseudo-kernel (model:<profile>[:-rule,...])"))?;
        let (prof, rules) = match rest.split_once(':') {
            Some((p, r)) => (p, Some(r)),
            None => (rest, None),
        };
        let profile = KernelProfile::by_name(prof).map_err(|e| e.to_string())?;
        let mut opts = ModelOptions::default();
        for r in rules.into_iter().flat_map(|r| r.split(',')).filter(|r| !r.is_empty()) {
            let name = r
                .strip_prefix('-')
                .ok_or_else(|| format!("rule `{r}` must be written `-{r}` (switched off)"))?;
            let rule = Rule::by_name(name).ok_or_else(|| {
                format!(
                    "unknown rule `{name}` (known: {})",
                    Rule::ALL.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
                )
            })?;
            opts.disabled.push(rule);
        }
        Ok(ModelOracle::new(profile, module.clone(), opts))
    }

    /// The verdict on one case (what [`Oracle::run`] answers per case).
    pub fn result(&self, case: &Case) -> KernelResult {
        let v = check_with(case, &self.profile, &self.module, &self.opts);
        KernelResult {
            case: case.name.clone(),
            errno: if v.verdict == crate::verdict::VerdictKind::Accept { 0 } else { 13 },
            verdict: v,
            log: None,
            verification_usec: None,
            insns_processed: None,
            setup_error: None,
            test_run: None,
        }
    }

    /// The profile it runs.
    pub fn profile(&self) -> &KernelProfile {
        &self.profile
    }
}

impl Oracle for ModelOracle {
    fn kernel(&self) -> &str {
        &self.name
    }

    fn run(&mut self, cases: &[Case]) -> Result<Vec<Answer>, OracleError> {
        Ok(cases.iter().map(|c| Answer::Result(self.result(c))).collect())
    }
}
