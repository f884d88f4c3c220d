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
//! `__ref` argument other than `Qdisc_ops.enqueue`'s, not sleepable, without global functions;
//! the calls of [`Machine::struct_ops_call_gate`] (helpers of `bpf_base_func_proto()`, the
//! generic graph and allocation kfuncs, the `qdisc_kfunc_ids` kfuncs with
//! `bpf_qdisc_kfunc_filter()`). Their ctx (`Qdisc_ops`: `bpf_qdisc_is_valid_access()` ->
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
//! for `.init`, `bpf_qdisc_reset_destroy_epilogue` for `.reset` / `.destroy`) are added by
//! `bpf_convert_ctx_accesses()` (kernel/bpf/fixups.c of 7.2 and 7.3), which `bpf_check()` calls
//! after `do_check_main()` / `do_check_subprogs()` and `check_max_stack_depth()`: the verifier
//! does not walk them, so they change neither the verdict nor the instruction indices of its
//! messages (the epilogue's 8 stack bytes for the saved ctx come after the stack-depth check;
//! `add_kfunc_in_insns()` fails only on allocation). Their kfuncs are in no member's filter set:
//! a program calling them itself is refused ([`qdisc_kfunc_allowed`]).

use super::exec::Machine;
use super::state::Trust;
use super::state::{Reg, State};
use super::{Step, Stop};
use crate::case::StructOpsMember;
use crate::insn::{Insn, BPF_PSEUDO_CALL, BPF_PSEUDO_KFUNC_CALL};
use crate::kernel_btf::{ArgKind, AttachProto};

/// The helpers `bpf_base_func_proto()` (kernel/bpf/helpers.c, 6.12 / 7.2 / 7.3) offers a struct_ops
/// program that the model judges the same in every program type: map lookups and updates, the
/// lock, `bpf_kptr_xchg`, the time and random scalars, and the two callback helpers.
pub(crate) const STRUCT_OPS_HELPERS: &[&str] = &[
    "bpf_map_lookup_elem",
    "bpf_map_update_elem",
    "bpf_map_delete_elem",
    "bpf_spin_lock",
    "bpf_spin_unlock",
    "bpf_kptr_xchg",
    "bpf_ktime_get_ns",
    "bpf_ktime_get_boot_ns",
    "bpf_get_prandom_u32",
    "bpf_get_smp_processor_id",
    "bpf_jiffies64",
    "bpf_loop",
    "bpf_for_each_map_elem",
];

/// `bpf_qdisc_kfunc_filter()` (net/sched/bpf_qdisc.c, the same in 7.2 and 7.3; 6.12 has no
/// bpf_qdisc) for a kfunc of `qdisc_kfunc_ids`: refused (-EACCES, "calling kernel function %s is
/// not allowed") outside a `Qdisc_ops` program; per member (`qdisc_ops_context_flags[]`):
/// `.enqueue` may call `qdisc_enqueue_kfunc_set` (`bpf_qdisc_skb_drop`,
/// `bpf_qdisc_watchdog_schedule`), `.dequeue` `qdisc_dequeue_kfunc_set`
/// (`bpf_qdisc_watchdog_schedule`, `bpf_qdisc_bstats_update`), every member
/// `qdisc_common_kfunc_set` (`bpf_skb_get_hash`, `bpf_kfree_skb`, `bpf_dynptr_from_skb`); the
/// prologue's and epilogue's kfuncs are in none of them.
pub(crate) fn qdisc_kfunc_allowed(member: Option<&StructOpsMember>, kfunc: &str) -> bool {
    let Some(m) = member.filter(|m| m.st == "Qdisc_ops") else { return false };
    let enqueue = ["bpf_qdisc_skb_drop", "bpf_qdisc_watchdog_schedule"];
    let dequeue = ["bpf_qdisc_watchdog_schedule", "bpf_qdisc_bstats_update"];
    let common = ["bpf_skb_get_hash", "bpf_kfree_skb", "bpf_dynptr_from_skb"];
    (m.member == "enqueue" && enqueue.contains(&kfunc))
        || (m.member == "dequeue" && dequeue.contains(&kfunc))
        || common.contains(&kfunc)
}

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
        if rules.struct_ops_refcounted.contains(&key) && key != "Qdisc_ops.enqueue" {
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
        Ok(())
    }

    /// A call in a struct_ops program (`Qdisc_ops`, the only type the profiles list), before
    /// `check_helper_call()` / `check_kfunc_call()`: which calls the model judges there.
    /// Helpers: `bpf_qdisc_verifier_ops.get_func_proto` is `bpf_base_func_proto()`
    /// (kernel/bpf/helpers.c; lockstep loads as root, so its CAP_BPF list too): the ones in
    /// [`STRUCT_OPS_HELPERS`], which the model judges as for any program type; the others stay
    /// unsupported. Kfuncs: the kernel-BTF kfuncs of the sets the model registers
    /// (`kfunc_btf.rs`, with `bpf_qdisc_kfunc_filter()`: [`qdisc_kfunc_allowed`]), the graph,
    /// allocation and refcount kfuncs of `generic_kfunc_set` (registered for
    /// BPF_PROG_TYPE_STRUCT_OPS, helpers.c) and the `bpf_iter_num_*` kfuncs of
    /// `common_kfunc_set` (BPF_PROG_TYPE_UNSPEC); others stay unsupported. bpf-to-bpf calls to
    /// static functions are walked as elsewhere.
    pub(crate) fn struct_ops_call_gate(&self, pc: usize, insn: Insn) -> Step<()> {
        let m = self.struct_ops_member().map_or_else(String::new, |m| format!("{}.{}", m.st, m.member));
        let unsupported =
            |what: String| Err(Stop::Unsupported(format!("{what} in struct_ops member {m} is not modelled")));
        match insn.src {
            BPF_PSEUDO_CALL => Ok(()),
            0 => {
                let h = crate::helpers::helper_name(insn.imm).unwrap_or("");
                if STRUCT_OPS_HELPERS.contains(&h) {
                    return Ok(());
                }
                unsupported(format!("helper {h}#{} (bpf_base_func_proto())", insn.imm))
            }
            BPF_PSEUDO_KFUNC_CALL => {
                let name = self.case.program.call_name(pc).unwrap_or("");
                let generic = super::alloc::AllocKfunc::of(name).is_some()
                    || super::graph::GraphKfunc::of(name).is_some()
                    || super::rbtree::RbKfunc::of(name).is_some()
                    || name.starts_with("bpf_iter_num_");
                if generic || self.btf_kfunc(name).is_some_and(|d| d.set == "qdisc_kfunc_ids") {
                    return Ok(());
                }
                unsupported(format!("kfunc {name} (its set's registration for STRUCT_OPS and filter)"))
            }
            s => unsupported(format!("a call with src_reg {s}")),
        }
    }

    /// Whether the `.filter` of kfunc set `set` refuses kfunc `name` to this program
    /// (`__btf_kfunc_is_allowed()`: every filter of the hook is asked; the other filters of the
    /// STRUCT_OPS hook (sched_ext's `scx_kfunc_context_filter()`, binfmt_misc's) let kfuncs outside
    /// their own sets through). Only `qdisc_kfunc_ids` of the sets the model registers has one.
    pub(crate) fn kfunc_filter_refuses(&self, set: &str, name: &str) -> bool {
        set == "qdisc_kfunc_ids" && !qdisc_kfunc_allowed(self.struct_ops_member(), name)
    }

    /// `do_check_common()` (7.2, 7.3): "Acquire references for struct_ops program arguments tagged
    /// with __ref" (the cfi stub's parameter name, `prepare_arg_info()`: the profile's
    /// `struct_ops_refcounted`), `acquire_reference(env, 0, ...)` before `do_check()`: the first
    /// id, taken at instruction 0. `Qdisc_ops.enqueue`'s `skb__ref` (net/sched/bpf_qdisc.c) is
    /// the only one the model knows; its id is what a load of argument 0 carries
    /// ([`Machine::struct_ops_ctx_ref`]).
    pub(crate) fn struct_ops_entry_refs(&mut self, st: &mut State) {
        if self.case.prog_type != crate::case::ProgType::StructOps {
            return;
        }
        let Some(m) = self.struct_ops_member() else { return };
        if m.st == "Qdisc_ops" && m.member == "enqueue" {
            self.struct_ops_ref = self.acquire_ref(st, 0);
        }
    }

    /// The reference id argument `arg` of the struct_ops member carries (`ctx_arg_info[i].ref_id`,
    /// given to the loaded register by `check_mem_access()`: `regs[value_regno].id =
    /// info.ref_id`), or 0.
    pub(crate) fn struct_ops_ctx_ref(&self, arg: usize) -> u32 {
        if arg == 0 && self.case.prog_type == crate::case::ProgType::StructOps {
            self.struct_ops_ref
        } else {
            0
        }
    }

    /// `bpf_qdisc_is_valid_access()` (net/sched/bpf_qdisc.c, 7.2 and 7.3): a read of
    /// `.enqueue`'s argument 2 (`btf_ctx_arg_idx()`: offsets 16 to 23) is `PTR_TO_BTF_ID |
    /// PTR_TRUSTED` to `struct bpf_sk_buff_ptr` (not the prototype's `struct sk_buff **`), before
    /// `bpf_tracing_btf_ctx_access()`'s checks. Modelled for the 8-byte load at offset 16; None
    /// for any other access (the tracing rules).
    pub(crate) fn qdisc_to_free_arg(&self, off: i64, size: u8, store: bool) -> Step<Option<Reg>> {
        let enqueue = self.struct_ops_member().is_some_and(|m| m.st == "Qdisc_ops" && m.member == "enqueue");
        if !enqueue || store || !(16..24).contains(&off) {
            return Ok(None);
        }
        if off != 16 || size != 8 {
            return Err(Stop::Unsupported(format!(
                "a {size}-byte load at ctx offset {off} of Qdisc_ops.enqueue (bpf_qdisc_is_valid_access(): to_free with any size) is not modelled"
            )));
        }
        let btf_id = self.kernel_struct("bpf_sk_buff_ptr")?;
        Ok(Some(Reg::Kernel { off: 0, btf_id, id: 0, ref_obj_id: 0, null: false, trust: Trust::Trusted }))
    }

    /// `bpf_qdisc_sk_buff_access()` (net/sched/bpf_qdisc.c, 7.2 and 7.3) for a store through a
    /// trusted `struct sk_buff *`: starting at `tstamp` (up to its end), or in the qdisc's private
    /// `cb` bytes (`offsetof(struct sk_buff, cb) + offsetof(struct qdisc_skb_cb, data[0 ..
    /// QDISC_CB_PRIV_LEN - 1])`, up to `data`'s end). Its refusals ("no write support to ...",
    /// "... beyond the member ...") are not modelled.
    fn qdisc_sk_buff_write(&self, btf_id: u32, off: i64, size: u8) -> Step<Reg> {
        let unsupported = |why: String| Err(Stop::Unsupported(why));
        let Some(kbtf) = &self.profile.kernel_btf.0 else {
            return unsupported("a store through a kernel pointer needs the kernel's BTF".into());
        };
        let (off, size) = (off as u32, size as u32);
        let tstamp = kbtf.member_offset(btf_id, "tstamp");
        let cb = kbtf.member_offset(btf_id, "cb");
        let data = kbtf.struct_id("qdisc_skb_cb").and_then(|q| kbtf.member_offset(q, "data"));
        let end = match (tstamp, cb, data) {
            (Some((t, ts)), _, _) if off == t => t + ts,
            (_, Some((c, _)), Some((d, ds))) if off >= c + d && off < c + d + ds => c + d + ds,
            _ => {
                return unsupported(format!(
                    "a store to struct sk_buff at off {off} (bpf_qdisc_sk_buff_access(): no write support) is not modelled"
                ))
            }
        };
        if off + size > end {
            return unsupported(format!(
                "a store to struct sk_buff at off {off} size {size} past its member's end {end} is not modelled"
            ));
        }
        Ok(Reg::NotInit)
    }

    /// `check_reference_leak()` at a struct_ops program's main exit (7.2, 7.3 alike): a reference
    /// whose id is R0's (`reg->id == state->refs[i].id`, whatever R0's type) is not a leak, "Type
    /// checks are performed later in check_return_code". R0 as a kernel pointer carrying its
    /// reference is modelled; another pointer holding a reference is not.
    pub(crate) fn struct_ops_reference_leak(&self, st: &State, pc: usize) -> Step<()> {
        let returned = match &st.cur_ref().regs[0] {
            Reg::Kernel { ref_obj_id, .. } if *ref_obj_id != 0 && st.refs.contains(ref_obj_id) => *ref_obj_id,
            r if r.is_pointer() && !st.refs.is_empty() => {
                return Err(Stop::Unsupported(format!(
                    "a struct_ops exit with R0 of type {} and {} (check_reference_leak() skips R0's id) is not modelled",
                    r.type_str(),
                    st.refs_str()
                )))
            }
            _ => return self.reference_leak(st, pc),
        };
        let mut rest = st.clone();
        rest.refs.retain(|r| *r != returned);
        self.reference_leak(&rest, pc)
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
        // A referenced kptr of the member's return type "in its unmodified form"
        // (`ret_type == reg_type && reg_is_referenced()`, then __check_ptr_off_reg(): offset 0),
        // NULL or not: returned to the kernel (7.2, 7.3).
        if let Reg::Kernel { btf_id, off, ref_obj_id, .. } = &st.cur_ref().regs[0] {
            if *ref_obj_id != 0 && st.refs.contains(ref_obj_id) {
                let ret = self.struct_ops_proto()?.ret;
                let same = matches!(&ret, ArgKind::StructPtr { btf_id: r, .. } if r == btf_id);
                if same && *off == 0 {
                    return Ok(());
                }
                return Err(Stop::Unsupported(format!(
                    "returning a referenced kernel pointer from struct_ops member {}.{} of another type or at an offset (check_return_code()) is not modelled",
                    m.st, m.member
                )));
            }
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
        if self.struct_ops_btf_ctx() && trust == Trust::Trusted && tname == "sk_buff" {
            return self.qdisc_sk_buff_write(btf_id, off, size);
        }
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
