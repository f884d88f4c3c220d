//! The program's licence: `bpf_prog_load()` (syscall.c) keeps `prog->gpl_compatible =
//! license_is_gpl_compatible(license)` ([`crate::case::license_is_gpl_compatible`]; a case's
//! `license`, default "GPL"; an object's `license` section as libbpf passes it, "" without one),
//! and the verifier refuses a non-GPL program (the same messages in 6.12, 7.2 and 7.3):
//! - its first kfunc call: `bpf_add_kfunc_call()` ("cannot call kernel function from non-GPL
//!   compatible program", no instruction), in `add_subprog_and_kfunc()` (6.12, 7.2) or in
//!   `add_kfuncs()` after `check_and_resolve_insns()` (7.3): the profile's
//!   `kfunc_license_after_insns`;
//! - a call of a `gpl_only` helper: `check_helper_call()` right after the proto lookup ("cannot
//!   call GPL-restricted function from non-GPL compatible program", at the call);
//! - a load through a kernel `PTR_TO_BTF_ID`: `check_ptr_to_btf_access()` after the
//!   `allow_ptr_leaks` check ("Cannot access kernel 'struct %s' from non-GPL compatible
//!   program", at the load).
//!
//! `bpf_spin_lock_proto` / `bpf_spin_unlock_proto` are not `gpl_only` (helpers.c of 6.12, 7.2,
//! 7.3). A helper whose proto this module does not list is left unsupported in a non-GPL program.

use super::exec::Machine;
use super::{Step, Stop};
use crate::case::ProgType;

/// Helpers whose protos are `gpl_only = true` in every program type that has them (helpers.c,
/// kernel/trace/bpf_trace.c of 6.12, 7.2 and 7.3; all reached through `bpf_base_func_proto()`).
const GPL_ONLY: &[&str] = &[
    "bpf_probe_read_kernel",
    "bpf_probe_read_kernel_str",
    "bpf_trace_printk",
    "bpf_get_current_task_btf",
    "bpf_timer_init",
    "bpf_timer_set_callback",
    "bpf_timer_start",
    "bpf_timer_cancel",
    "bpf_snprintf",
];

/// Helpers whose protos are `gpl_only = false` in every program type (helpers.c, core.c).
const NOT_GPL_ONLY: &[&str] = &[
    "bpf_spin_lock",
    "bpf_spin_unlock",
    "bpf_map_lookup_elem",
    "bpf_map_update_elem",
    "bpf_map_delete_elem",
    "bpf_get_prandom_u32",
    "bpf_ktime_get_ns",
    "bpf_get_current_pid_tgid",
    "bpf_kptr_xchg",
    "bpf_tail_call",
];

pub(super) const KFUNC_MSG: &str = "cannot call kernel function from non-GPL compatible program";
pub(super) const HELPER_MSG: &str = "cannot call GPL-restricted function from non-GPL compatible program";

impl Machine<'_> {
    /// `env->prog->gpl_compatible`.
    pub(super) fn gpl_compatible(&self) -> bool {
        self.prep.gpl_compatible
    }

    /// Whether the program calls a kfunc (`bpf_pseudo_kfunc_call()` on any instruction).
    fn calls_kfunc(&self) -> bool {
        self.case.program.insns.iter().any(|i| i.is_kfunc_call())
    }

    /// `bpf_add_kfunc_call()` for the first kfunc call of a non-GPL program, at the pass of
    /// the profile (`after_insns`: called after `check_and_resolve_insns()`). For 6.12 / 7.2,
    /// `add_subprog_and_kfunc()` walks the instructions adding subprograms and kfuncs in one loop:
    /// a layout error of the case is not ordered against the kfunc and is left unsupported.
    pub(super) fn kfunc_license(&self, after_insns: bool) -> Step<()> {
        if self.gpl_compatible()
            || self.profile.kfunc_license_after_insns != after_insns
            || !self.calls_kfunc()
        {
            return Ok(());
        }
        if !after_insns && self.prep.layout().is_err() {
            return Err(Stop::Unsupported(
                "a kfunc call of a non-GPL program with a subprogram layout error (add_subprog_and_kfunc() order)"
                    .into(),
            ));
        }
        Err(Stop::Reject(None, KFUNC_MSG.into()))
    }

    /// LSM (`bpf_lsm_verify_prog()`) and struct_ops (`check_struct_ops_btf_id()`) programs
    /// must be GPL compatible, refused in `check_attach_btf_id()`: not modelled.
    pub(super) fn prog_type_license(&self) -> Step<()> {
        if !self.gpl_compatible() && matches!(self.case.prog_type, ProgType::Lsm | ProgType::StructOps) {
            return Err(Stop::Unsupported(format!(
                "a non-GPL {:?} program (check_attach_btf_id() licence check)",
                self.case.prog_type
            )));
        }
        Ok(())
    }

    /// `check_helper_call()`: a `gpl_only` helper in a non-GPL program.
    pub(super) fn helper_license(&self, pc: usize, name: &str) -> Step<()> {
        if self.gpl_compatible() || NOT_GPL_ONLY.contains(&name) {
            return Ok(());
        }
        if GPL_ONLY.contains(&name) {
            return self.reject(pc, HELPER_MSG.into());
        }
        Err(Stop::Unsupported(format!(
            "helper {name} in a non-GPL program (its proto's gpl_only is not modelled)"
        )))
    }

    /// `check_ptr_to_btf_access()`: a non-GPL program's access through a kernel struct pointer.
    pub(super) fn btf_access_license(&self, pc: usize, tname: &str) -> Step<()> {
        if self.gpl_compatible() {
            return Ok(());
        }
        self.reject(pc, format!("Cannot access kernel 'struct {tname}' from non-GPL compatible program"))
    }
}
