//! struct_ops programs (`BPF_PROG_TYPE_STRUCT_OPS`, `SEC("struct_ops/...")`): what the model
//! knows of them without the struct_ops type's own rules.
//!
//! libbpf loads a struct_ops program with `attach_btf_id` = the kernel's `<type>` (e.g.
//! `Qdisc_ops`) and `expected_attach_type` = the index of the member a `.struct_ops` /
//! `.struct_ops.link` map of the object points at it (the import reads it:
//! [`crate::case::StructOpsMember`]). `check_struct_ops_btf_id()` (verifier.c, 7.2 and 7.3 alike
//! for what is modelled here) then takes the member's prototype: the ctx is its arguments
//! (`btf_ctx_access()` and the type's `is_valid_access`), the calls are the type's
//! `get_func_proto` and kfunc filter (`bpf_qdisc_kfunc_filter()`), the return value follows the
//! member's return type (`check_return_code()`), and a `__ref` stub argument is a reference
//! the program holds from its first instruction (`do_check_common()`).
//!
//! Modelled: members the profile lists (`attach.struct_ops_members`, per kernel), without a
//! `__ref` argument, not sleepable, whose program calls no helper or kfunc and has no global
//! function. Their ctx (`Qdisc_ops`: `bpf_qdisc_is_valid_access()` ->
//! `bpf_tracing_btf_ctx_access()`) is read as a tracing program's (tracing.rs), the member's
//! prototype taken from the kernel's BTF, every pointer argument `PTR_TRUSTED`
//! (`prog_args_trusted()`); a store through a trusted `struct Qdisc *` goes to
//! `bpf_qdisc_btf_struct_access()` ([`Machine::struct_ops_write`]). (`btf_ctx_access()` switches
//! on `expected_attach_type`, which is the member index here: Qdisc_ops' modelled members,
//! dequeue 6 to destroy 10, are none of BPF_TRACE_RAW_TP (23), BPF_TRACE_FEXIT (25),
//! BPF_MODIFY_RETURN (26), BPF_LSM_MAC (27), so an access past the arguments is refused as for
//! fentry.) The return value:
//! - a `void` member: `program_returns_void()`, R0 is not read;
//! - a scalar member: `check_reg_arg()` on R0 (it must be written), any scalar
//!   (`if (prog_type == BPF_PROG_TYPE_STRUCT_OPS && !ret_type) return 0;`);
//! - a pointer member (`Qdisc_ops.dequeue` returns `struct sk_buff *`): a referenced kptr of
//!   the type is returned as it is (not modelled), else `return_retval_range()` gives [0, 0].
//!
//! The type's `gen_prologue` / `gen_epilogue` (bpf_qdisc's calls to `bpf_qdisc_init_prologue`
//! and `bpf_qdisc_reset_destroy_epilogue`) are added by `convert_ctx_accesses()`, after
//! `do_check()`: they change neither the verdict nor the instruction indices of its messages.

use super::exec::Machine;
use super::state::Trust;
use super::state::{Reg, State};
use super::{Step, Stop};
use crate::case::StructOpsMember;
use crate::insn::BPF_PSEUDO_CALL;
use crate::kernel_btf::AttachProto;

impl Machine<'_> {
    /// The struct_ops member the program implements (None without a `.struct_ops` map
    /// pointing at it).
    pub(crate) fn struct_ops_member(&self) -> Option<&StructOpsMember> {
        self.case.object.as_ref().and_then(|o| o.struct_ops.as_ref())
    }

    /// `check_struct_ops_btf_id()`: where the model stops for a struct_ops program (said before
    /// any pass judges it, as [`Machine::attach_unsupported`]).
    pub(crate) fn struct_ops_unsupported(&self) -> Step<()> {
        let unsupported = |why: String| Err(Stop::Unsupported(why));
        let Some(m) = self.struct_ops_member() else {
            return unsupported(
                "a struct_ops program no .struct_ops map member points at (libbpf's expected_attach_type: the member index) is not modelled"
                    .into(),
            );
        };
        let key = format!("{}.{}", m.st, m.member);
        let rules = &self.profile.attach;
        if !rules.struct_ops_members.contains(&key) {
            return unsupported(format!(
                "struct_ops member {key} (check_struct_ops_btf_id(): a struct_ops type or member the model does not know in {}) is not modelled",
                self.profile.name
            ));
        }
        if rules.struct_ops_refcounted.contains(&key) {
            return unsupported(format!(
                "struct_ops member {key} has a __ref argument (do_check_common() acquires a reference for it; btf_ctx_access()) : not modelled"
            ));
        }
        if self.case.sleepable {
            return unsupported(format!("sleepable struct_ops program ({key}) is not modelled"));
        }
        if !self.case.globals.is_empty() {
            return unsupported(format!(
                "global functions of a struct_ops program ({key}: btf_prepare_func_args() for struct_ops) are not modelled"
            ));
        }
        let prog = &self.case.program;
        for (pc, insn) in prog.insns.iter().enumerate() {
            if !insn.is_call() || insn.src == BPF_PSEUDO_CALL {
                continue;
            }
            let name = prog.call_name(pc).map_or_else(|| format!("call imm {}", insn.imm), str::to_string);
            return unsupported(format!(
                "call to {name} in struct_ops member {key} (the struct_ops type's get_func_proto and kfunc filter, e.g. bpf_qdisc_kfunc_filter()) is not modelled"
            ));
        }
        Ok(())
    }

    /// `check_return_code()` for a struct_ops program at the main program's exit.
    pub(crate) fn struct_ops_return(&self, st: &State, pc: usize) -> Step<()> {
        let Some(m) = self.struct_ops_member() else {
            return Err(Stop::Unsupported("a struct_ops program without its member".into()));
        };
        // program_returns_void(): `!prog->aux->attach_func_proto->type`, R0 is not read.
        if m.ret == "void" {
            return Ok(());
        }
        let r0 = self.read_reg(st, pc, 0)?;
        let Reg::Scalar(s) = r0 else {
            return Err(Stop::Unsupported(format!(
                "returning a pointer from struct_ops member {}.{} (check_return_code(): a referenced kptr of the return type) is not modelled",
                m.st, m.member
            )));
        };
        // A pointer return type: return_retval_range() gives [0, 0] for BPF_PROG_TYPE_STRUCT_OPS.
        if m.ret == "ptr" && s.konst() != Some(0) {
            return Err(Stop::Unsupported(format!(
                "a return value other than 0 (NULL) from struct_ops member {}.{} (verbose_invalid_scalar()'s bounds) is not modelled",
                m.st, m.member
            )));
        }
        Ok(())
    }

    /// Whether the program's ctx is read by `btf_ctx_access()` as the model does it for tracing
    /// programs: a `Qdisc_ops` member (bpf_qdisc_verifier_ops' is_valid_access).
    pub(crate) fn struct_ops_btf_ctx(&self) -> bool {
        self.case.prog_type == crate::case::ProgType::StructOps
            && self.struct_ops_member().is_some_and(|m| m.st == "Qdisc_ops")
    }

    /// The member's prototype in the kernel's BTF (`prog->aux->attach_func_proto`).
    pub(crate) fn struct_ops_proto(&self) -> Step<AttachProto> {
        let Some(m) = self.struct_ops_member() else {
            return Err(Stop::Unsupported("a struct_ops program without its member".into()));
        };
        // bpf_qdisc_is_valid_access(): enqueue's third argument is a trusted
        // struct bpf_sk_buff_ptr (not its BTF type).
        if m.st == "Qdisc_ops" && m.member == "enqueue" {
            return Err(Stop::Unsupported(
                "ctx of Qdisc_ops.enqueue (bpf_qdisc_is_valid_access(): to_free as struct bpf_sk_buff_ptr) is not modelled".into(),
            ));
        }
        let Some(kbtf) = &self.profile.kernel_btf.0 else {
            return Err(Stop::Unsupported(format!(
                "ctx access of struct_ops member {}.{} (btf_ctx_access(): the member's arguments) needs the kernel's BTF, which profile {} was not given",
                m.st, m.member, self.profile.name
            )));
        };
        kbtf.struct_ops_proto(&m.st, &m.member).map_err(|e| {
            Stop::Unsupported(format!("struct_ops member {}.{}: {e} ({})", m.st, m.member, kbtf.source))
        })
    }

    /// A store through a kernel pointer of a struct_ops program: `check_ptr_to_btf_access()`
    /// calls the type's `btf_struct_access` for a write (`env->ops->btf_struct_access && atype ==
    /// BPF_WRITE`, not an allocated object); 7.3 first refuses a pointer that may fault
    /// (`bpf_may_fault_on_deref()`: plain PTR_TO_BTF_ID or PTR_UNTRUSTED), so only a trusted
    /// pointer is modelled. `bpf_qdisc_btf_struct_access()` -> `bpf_qdisc_qdisc_access()` for
    /// `struct Qdisc` (net/sched/bpf_qdisc.c, 7.2 and 7.3 alike): a write starting at `limit`,
    /// at `q.qlen`, or anywhere in `qstats`, not past the member's end. What it refuses ("no
    /// write support to ...", "... beyond the member ...") and `struct sk_buff` writes are not
    /// modelled. The value stored is not looked at (the loader has allow_ptr_leaks).
    pub(crate) fn struct_ops_write(&self, btf_id: u32, trust: Trust, off: i64, size: u8) -> Step<Reg> {
        let unsupported = |why: String| Err(Stop::Unsupported(why));
        let Some(kbtf) = &self.profile.kernel_btf.0 else {
            return unsupported("a store through a kernel pointer needs the kernel's BTF".into());
        };
        let tname = kbtf.name_of(btf_id);
        if !self.struct_ops_btf_ctx() || trust != Trust::Trusted || tname != "Qdisc" {
            return unsupported(format!(
                "a store through {} struct {tname} in a struct_ops program (its btf_struct_access) is not modelled",
                trust.type_str(false)
            ));
        }
        let (off, size) = (off as u32, size as u32);
        let member = |path: &str| kbtf.member_offset(btf_id, path);
        let end = match (member("limit"), member("q.qlen"), member("qstats")) {
            (Some((l, ls)), _, _) if off == l => l + ls,
            (_, Some((q, qs)), _) if off == q => q + qs,
            (_, _, Some((s, ss))) if off >= s && off < s + ss => s + ss,
            _ => {
                return unsupported(format!(
                    "a store to struct Qdisc at off {off} (bpf_qdisc_qdisc_access(): no write support) is not modelled"
                ))
            }
        };
        if off + size > end {
            return unsupported(format!(
                "a store to struct Qdisc at off {off} size {size} past its member's end {end} is not modelled"
            ));
        }
        Ok(Reg::NotInit)
    }
}
