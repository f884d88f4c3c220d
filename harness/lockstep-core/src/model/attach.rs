//! Programs of the attach-target / attach-type program types ([`ProgType::ATTACHED`]), which only
//! objects carry (the guest loads them through libbpf): what the model knows of them from their
//! section (`SEC("fentry/...")`, ...): `check_attach_btf_id()`'s deny lists, the return value
//! range of `check_return_code()`, and where the model stops (the attach function's BTF, which
//! the model does not have, decides the ctx and, for fexit / fmod_ret, the target's checks).
//!
//! Assumed, not checked: the attach target exists and its prototype is one the trampoline takes
//! (`bpf_check_attach_target()`); libbpf finds its BTF id by name before loading.

use super::exec::Machine;
use super::state::{Reg, State};
use super::{Step, Stop};
use crate::case::ProgType;
use crate::import::sec::{prog_type_of_section, AttachType, SecType};
use crate::profile::render;

/// What `check_return_code()` asks of R0 at the main program's exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReturnRule {
    /// The rule the model had before the attach types (the existing program types).
    Base,
    /// `return_retval_range()` returns false: any scalar.
    Any,
    /// R0 must be a scalar within `[lo, hi]`.
    Range(i64, i64),
    /// LSM (`BPF_LSM_MAC`): the range (or none, for a void hook) follows the hook's prototype
    /// (`get_func_retval_range()`, `program_returns_void()`); 0 is within every one.
    Lsm,
    /// struct_ops: the member's return type (`check_return_code()`, structops.rs).
    StructOps,
}

impl Machine<'_> {
    /// The section type of the case's object program (None for a case file, which carries no
    /// attach type).
    pub(crate) fn sec_type(&self) -> Option<SecType> {
        let sec = self.case.object.as_ref().map(|o| o.section.as_str()).filter(|s| !s.is_empty())?;
        prog_type_of_section(sec).ok()
    }

    /// Program types whose verification follows something the model does not have, said before
    /// any pass judges them (the map checks before this one do not depend on the program type).
    pub(crate) fn attach_unsupported(&self) -> Step<()> {
        let t = self.case.prog_type;
        if !ProgType::ATTACHED.contains(&t) {
            return Ok(());
        }
        let unsupported = |why: &str| Err(Stop::Unsupported(why.to_string()));
        let Some(sec) = self.sec_type() else {
            return unsupported("an attach-target program type without the object section naming its target");
        };
        match t {
            // check_struct_ops_btf_id(): the member's prototype gives the ctx, the return type and
            // (bpf_struct_ops get_func_proto / the struct_ops kfunc filter) the calls allowed.
            // check_struct_ops_btf_id(): the member's prototype gives the ctx, the return type and
            // (the type's get_func_proto / kfunc filter) the calls allowed: structops.rs.
            ProgType::StructOps => return self.struct_ops_unsupported(),
            // check_attach_btf_id(): an EXT program takes its target program's type and attach type.
            ProgType::Ext => {
                return unsupported(
                    "freplace programs (check_attach_btf_id(): the replaced program's type and ctx) are not modelled",
                )
            }
            _ => {}
        }
        // Sleepable fentry / fexit / fmod_ret / LSM programs: sleep.rs (can_be_sleepable(),
        // btf_id_allow_sleepable()). A sleepable tp_btf program that may be one meets
        // bpf_check_attach_target()'s faultable-tracepoint check.
        if self.case.sleepable && sec.attach == AttachType::TraceRawTp && self.profile.sleep.raw_tp {
            return unsupported(
                "sleepable tp_btf programs (bpf_check_attach_target(): tracepoint_is_faultable()) are not modelled",
            );
        }
        match sec.attach {
            // bpf_iter_prog_supported() (bpf_iter.c): the iterator target must be registered. The
            // model takes a target whose `bpf_iter_<target>` FUNC is in the kernel's BTF as
            // registered (DEFINE_BPF_ITER_FUNC() and bpf_iter_reg_target() come together); its ctx
            // is then that FUNC's arguments (tracing.rs).
            AttachType::TraceIter => self.iter_target(),
            // bpf_check_attach_target(): a >8-byte or struct return value is refused for fexit /
            // fmod_ret, which needs the target's BTF; the noreturn targets (void) pass it.
            AttachType::TraceFexit | AttachType::ModifyReturn
                if !self.noreturn_denied(sec.target.as_deref().unwrap_or("")) =>
            {
                unsupported("fexit/fmod_ret programs (bpf_check_attach_target(): the target's return type) are not modelled")
            }
            _ => Ok(()),
        }
    }

    /// Why a ctx access of this program type is not modelled (the fallback of `mem_access()`).
    pub(crate) fn ctx_unsupported(&self) -> Stop {
        Stop::Unsupported(match self.case.prog_type {
            // btf_ctx_access(): the ctx is the attach function's arguments, typed by its BTF.
            ProgType::Tracing | ProgType::Lsm => {
                "ctx access of a tracing/LSM program (btf_ctx_access(): the attach function's arguments) is not modelled".into()
            }
            // btf_ctx_access() on the member's prototype, then the struct_ops type's
            // is_valid_access (bpf_qdisc_is_valid_access()) and ctx_arg_info.
            ProgType::StructOps => format!(
                "ctx access of struct_ops member {} (btf_ctx_access(): the member's arguments) is not modelled",
                self.struct_ops_member().map_or_else(|| "?".to_string(), |m| format!("{}.{}", m.st, m.member))
            ),
            _ => "memory access through ctx is outside the modelled subset".into(),
        })
    }

    fn noreturn_denied(&self, target: &str) -> bool {
        self.profile.attach.noreturn_deny.iter().any(|f| f == target)
    }

    /// `check_attach_btf_id()` (6.12, 7.2, 7.3; after `check_cfg()`): a tracing program attached
    /// to a function of `btf_id_deny`, or an fexit / fmod_ret one to a function of
    /// `noreturn_deny`, is refused (no instruction). 6.12 logs nothing for `btf_id_deny`.
    pub(crate) fn check_attach_btf_id(&self) -> Step<()> {
        let Some(sec) = self.sec_type() else { return Ok(()) };
        // bpf_check_attach_target(): may the target sleep (sleep.rs), before the deny lists.
        self.sleepable_attach_target()?;
        let rules = &self.profile.attach;
        let target = sec.target.as_deref().unwrap_or("");
        // BPF_TRACE_RAW_TP and BPF_TRACE_ITER return before the deny lists; LSM programs meet
        // bpf_lsm_verify_prog() instead.
        let listed =
            matches!(sec.attach, AttachType::TraceFentry | AttachType::TraceFexit | AttachType::ModifyReturn);
        if sec.prog_type != ProgType::Tracing || !listed {
            return Ok(());
        }
        if rules.tracing_deny.iter().any(|f| f == target) {
            if rules.tracing_deny_message.is_empty() {
                return Err(Stop::Unsupported(format!(
                    "attach target {target} is in btf_id_deny, which {} refuses without a message",
                    self.profile.name
                )));
            }
            return Err(Stop::Reject(
                None,
                render(&rules.tracing_deny_message, &[("name", target.to_string())]),
            ));
        }
        if matches!(sec.attach, AttachType::TraceFexit | AttachType::ModifyReturn)
            && self.noreturn_denied(target)
        {
            return Err(Stop::Reject(
                None,
                render(&rules.noreturn_deny_message, &[("name", target.to_string())]),
            ));
        }
        Ok(())
    }

    /// `check_return_code()` / `return_retval_range()` (7.3; 6.12 and 7.2 the same for these
    /// types) for the program's type and attach type.
    pub(crate) fn return_rule(&self) -> ReturnRule {
        match self.case.prog_type {
            ProgType::Tracing => match self.sec_type().map(|s| s.attach) {
                Some(AttachType::TraceFentry | AttachType::TraceFexit) => ReturnRule::Range(0, 0),
                Some(AttachType::TraceRawTp | AttachType::ModifyReturn) => ReturnRule::Any,
                _ => ReturnRule::Range(0, 1),
            },
            ProgType::Lsm => ReturnRule::Lsm,
            ProgType::StructOps => ReturnRule::StructOps,
            ProgType::CgroupSock => ReturnRule::Range(0, 1),
            ProgType::SkSkb | ProgType::SkReuseport | ProgType::RawTracepointWritable => ReturnRule::Any,
            _ => ReturnRule::Base,
        }
    }

    /// The exit check of a [`ReturnRule`] other than `Base`: Ok where the kernel accepts, the
    /// model's `unsupported` where the kernel's message prints R0's bounds (not modelled).
    pub(crate) fn check_attach_return(&self, st: &State, pc: usize, rule: ReturnRule) -> Step<()> {
        if rule == ReturnRule::Lsm {
            // program_returns_void() skips even check_reg_arg(): R0 is not read for a void hook.
            return match &st.cur_ref().regs[0] {
                Reg::Scalar(s) if s.konst() == Some(0) => Ok(()),
                _ => Err(Stop::Unsupported(
                    "an LSM program's return value other than 0 (the hook's range) is not modelled".into(),
                )),
            };
        }
        if rule == ReturnRule::StructOps {
            return self.struct_ops_return(st, pc);
        }
        let r0 = self.read_reg(st, pc, 0)?;
        let Reg::Scalar(s) = r0 else {
            return Err(Stop::Unsupported("returning a pointer is not modelled".into()));
        };
        match rule {
            ReturnRule::Range(lo, hi) if !(s.smin >= lo && s.smax <= hi) => Err(Stop::Unsupported(format!(
                "a return value outside [{lo}, {hi}] (verbose_invalid_scalar()'s bounds) is not modelled"
            ))),
            _ => Ok(()),
        }
    }
}
