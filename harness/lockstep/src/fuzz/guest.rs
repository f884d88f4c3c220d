//! A real kernel as the fuzzer's [`Oracle`]: one long-lived guest ([`KernelSession`]) per kernel
//! answers every batch; a crash or hang costs a reboot, not the campaign.

use lockstep_core::asm::Reloc;
use lockstep_core::case::Case;
use lockstep_core::fuzz::{Answer, Oracle, OracleError};
use lockstep_core::profile::ModuleKfuncs;
use lockstep_core::proto::ModuleStatus;

use crate::runner::{CaseEvent, KernelSession, KernelTarget, RunnerOptions};

/// A booted (on first use) guest of one kernel.
pub struct GuestOracle {
    name: String,
    session: Option<KernelSession>,
    /// The test module's kfuncs as the kernel sees them (from the built `.ko`).
    module: ModuleKfuncs,
    module_status: ModuleStatus,
    module_error: Option<String>,
}

impl GuestOracle {
    /// Starts the session for `target` (the guest boots on the first batch).
    pub fn start(target: &KernelTarget, opts: &RunnerOptions) -> anyhow::Result<GuestOracle> {
        let session = KernelSession::start(target, opts)?;
        Ok(GuestOracle {
            name: target.name.clone(),
            session: Some(session),
            module: target.module_kfuncs(),
            module_status: ModuleStatus::Absent,
            module_error: target.module_error.clone(),
        })
    }

    /// Whether `case` calls a test-module kfunc.
    fn uses_module(&self, case: &Case) -> bool {
        case.program
            .relocs
            .values()
            .any(|r| matches!(r, Reloc::Kfunc { name } if self.module.kfuncs.contains_key(name)))
    }
}

impl Oracle for GuestOracle {
    fn kernel(&self) -> &str {
        &self.name
    }

    fn run(&mut self, cases: &[Case]) -> Result<Vec<Answer>, OracleError> {
        let mut answers: Vec<Option<Answer>> = vec![None; cases.len()];
        let uses: Vec<bool> = cases.iter().map(|c| self.uses_module(c)).collect();
        let name = self.name.clone();
        let (status, module_error) = (&mut self.module_status, &self.module_error);
        let session = self.session.as_mut().ok_or_else(|| OracleError::Infra("session closed".into()))?;
        let ran = session.run(cases, false, &mut |ev| match ev {
                CaseEvent::Booted { release, module, boot_time, .. } => {
                    tracing::info!(kernel = %name, %release, ?module, boot_s = boot_time.as_secs_f64(), "guest booted");
                    *status = module;
                }
                CaseEvent::BootFailed { excerpt, will_retry } => tracing::warn!(kernel = %name, will_retry, "boot failed: {excerpt}"),
                CaseEvent::Retrying { index, excerpt } => {
                    tracing::warn!(kernel = %name, case = %cases[index].name, "crashed the guest; retrying in a fresh one: {excerpt}")
                }
                CaseEvent::Result { index, result, warnings } => {
                    answers[index] = Some(if !warnings.is_empty() {
                        Answer::Crashed(format!("kernel WARN while the case ran:\n{}", warnings.join("\n")))
                    } else if uses[index] && !matches!(status, ModuleStatus::Loaded { .. }) {
                        let why = match &*status {
                            ModuleStatus::Failed { error, .. } => error.clone(),
                            _ => module_error.clone().unwrap_or_else(|| "no module in the guest".into()),
                        };
                        Answer::NotRun(format!("needs the test module, which is not loaded: {why}"))
                    } else {
                        Answer::Result(result)
                    });
                }
                CaseEvent::Crashed { index, excerpt } => answers[index] = Some(Answer::Crashed(excerpt)),
                CaseEvent::NotRun { index, reason } => answers[index] = Some(Answer::NotRun(reason)),
                // No kernel evidence either way: inconclusive, not a crash.
                CaseEvent::Lost { index, excerpt } | CaseEvent::TimedOut { index, excerpt } => {
                    answers[index] = Some(Answer::NotRun(excerpt))
                }
            });
        // Interrupted (SIGINT/SIGTERM): the batch's answers so far are kept, its unrun programs
        // came as not run; the campaign claims no further batch. Anything else ends the oracle.
        if let Err(e) = ran {
            if e.downcast_ref::<crate::exit::Interrupted>().is_none() {
                return Err(OracleError::Infra(format!("{e:#}")));
            }
        }
        Ok(answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Answer::NotRun("no answer from the guest".into())))
            .collect())
    }
}

impl Drop for GuestOracle {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            s.close();
        }
    }
}
