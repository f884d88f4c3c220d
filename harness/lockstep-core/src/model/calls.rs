//! `BPF_CALL`: the lock rule for calls (`do_check_insn()`), then helpers (`check_helper_call()`),
//! kfuncs (`check_kfunc_call()`) and bpf-to-bpf calls (`check_func_call()`).

use super::exec::{Flow, Machine};
use super::scalar::Scalar;
use super::state::{ActiveLock, Frame, LockKind, Reg, State, VarOff};
use super::{Rule, Step, Stop};
use crate::case::{FieldKind, MapType};
use crate::insn::*;
use crate::profile::{KfuncLockRule, KF_ACQUIRE, KF_RELEASE, KF_RET_NULL};

/// The deepest call chain the verifier allows (`MAX_CALL_FRAMES`).
const MAX_CALL_FRAMES: usize = 8;

/// The lock rule for a kfunc call made while a lock is held (`do_check_insn()` and
/// `kfunc_spin_allowed()`): whether `profile` lets kfunc `name` through in a program of type
/// `prog_type`. Module kfuncs (in `module`) are called with `insn->off != 0` and judged by their
/// flags for the program type; vmlinux kfuncs by the profile's list. `extern_declared`: the case
/// declares the kfunc as unknown to the model, so under a flag rule its (unlisted) flags are
/// unknown: `Err` with the reason.
pub fn kfunc_allowed_under_lock(
    profile: &crate::profile::KernelProfile,
    module: &crate::profile::ModuleKfuncs,
    name: &str,
    prog_type: crate::case::ProgType,
    extern_declared: bool,
) -> Result<bool, String> {
    let listed = profile.kfuncs_under_lock.iter().any(|k| k == name);
    match module.kfuncs.get(name) {
        // A module kfunc: insn->off != 0.
        Some(k) => Ok(match profile.kfunc_rule {
            KfuncLockRule::VmlinuxList => false,
            KfuncLockRule::ListOrFlag | KfuncLockRule::Flag => {
                // fetch_kfunc_meta() finds flags only in the set for this program type.
                let flag = profile.kfunc_flag.unwrap_or(0);
                k.prog_types.contains(&prog_type) && k.flags & flag != 0
            }
        }),
        None if extern_declared && !listed && profile.kfunc_rule != KfuncLockRule::VmlinuxList => {
            Err(format!("flags of vmlinux kfunc {name} are unknown to the model"))
        }
        None => Ok(listed),
    }
}

impl Machine<'_> {
    pub(super) fn call(&mut self, st: &mut State, pc: usize, insn: Insn) -> Step<Flow> {
        let case = self.case;
        // Only a kfunc call's name is looked at (`call_allowed_under_lock` and the kfunc
        // dispatch below): a helper is known by its id, a static call by its target.
        let mut name = if insn.src == BPF_PSEUDO_KFUNC_CALL { case.program.call_name(pc) } else { None };
        // A kfunc called by its `___flavour` name is the kfunc libbpf resolved it to (ksym.rs).
        // Only cases that declare such a name resolve one (`Prepared::flavoured_kfuncs`): a kfunc
        // call is on the walk's hot path.
        if name.is_some() && self.prep.flavoured_kfuncs {
            name = super::ksym::resolved_kfunc_name(self.profile, &case.program, name)?;
        }
        if !st.locks.is_empty()
            && self.on(Rule::CallUnderLock)
            && !self.call_allowed_under_lock(insn, name)?
        {
            return self.reject(pc, self.profile.messages.call_under_lock.clone());
        }
        if case.prog_type == crate::case::ProgType::StructOps {
            self.struct_ops_call_gate(pc, insn)?;
        }
        match insn.src {
            BPF_PSEUDO_CALL => self.subprog_call(st, pc, insn),
            BPF_PSEUDO_KFUNC_CALL => {
                let name =
                    name.ok_or_else(|| Stop::Unsupported(format!("kfunc call at {pc} without a name")))?;
                if let Some((ty, op)) = super::loops::iter_kfunc(name) {
                    return self.iter_call(st, pc, name, ty, op);
                }
                if super::timer::is_wq_kfunc(name) {
                    return self.wq_call(st, pc, name);
                }
                if name == "bpf_timer_cancel_async" {
                    self.timer_cancel_async(st, pc)?;
                    return Ok(Flow::Next(pc + 1));
                }
                if name == "bpf_throw" {
                    return self.throw_call(st, pc);
                }
                if super::irq::is_native_irq_kfunc(name) {
                    return self.native_irq_call(st, pc, name);
                }
                if super::rcu::is_region_kfunc(name) {
                    return self.region_call(st, pc, name);
                }
                if self.profile.res_spin_lock && name.starts_with("bpf_res_spin_") {
                    if self.in_rbtree_cb(st) {
                        // check_kfunc_args(): a non-NULL map value passes the generic checks
                        // (__check_func_arg_reg_off() takes any PTR_TO_MAP_VALUE), then
                        // KF_ARG_PTR_TO_RES_SPIN_LOCK refuses the call first thing (7.2, 7.3).
                        if matches!(st.cur_ref().regs[1], Reg::MapValue { null: false, .. }) {
                            return self.reject(pc, "can't res_spin_{lock,unlock} in rbtree cb".into());
                        }
                        return Err(Stop::Unsupported("a bpf_res_spin_lock call in an rbtree cb".into()));
                    }
                    return self.res_spin_lock_call(st, pc, name);
                }
                if let Some(k) = super::rbtree::RbKfunc::of(name) {
                    return self.rbtree_call(st, pc, name, k);
                }
                if let Some(k) = super::graph::GraphKfunc::of(name) {
                    self.graph_call(st, pc, name, k)?;
                    return Ok(Flow::Next(pc + 1));
                }
                if let Some((k, implied)) = super::alloc::AllocKfunc::of(name) {
                    if !implied && !self.profile.res_spin_lock {
                        return Err(Stop::Unsupported(format!(
                            "kfunc {name} does not exist in {}",
                            self.profile.name
                        )));
                    }
                    self.alloc_call(st, pc, name, k)?;
                    return Ok(Flow::Next(pc + 1));
                }
                if let Some(r0) = self.arena_kfunc_call(st, pc, name)? {
                    self.clobber(st, r0);
                    return Ok(Flow::Next(pc + 1));
                }
                if let Some(k) = super::kobj::KobjKfunc::of(name) {
                    self.kobj_call(st, pc, name, k)?;
                    return Ok(Flow::Next(pc + 1));
                }
                if super::sleep::is_sleepable_kfunc(name) && !self.module.kfuncs.contains_key(name) {
                    self.sleepable_kfunc_call(st, pc, name)?;
                    return Ok(Flow::Next(pc + 1));
                }
                if super::pkt::kfunc_changes_pkt_data(name) {
                    self.xdp_pull_data(st, pc)?;
                    return Ok(Flow::Next(pc + 1));
                }
                if let Some(d) = self.btf_kfunc(name) {
                    self.btf_kfunc_call(st, pc, name, &d)?;
                    return Ok(Flow::Next(pc + 1));
                }
                self.kfunc_call(st, pc, name)?;
                Ok(Flow::Next(pc + 1))
            }
            // check_helper_call(): gpl_only protos in a non-GPL program (license.rs).
            0 if !self.gpl_compatible() && crate::helpers::helper_name(insn.imm).is_some() => {
                let h = crate::helpers::helper_name(insn.imm).unwrap_or_default();
                self.helper_license(pc, h)?;
                self.call_helper_insn(st, pc, insn.imm)
            }
            0 => self.call_helper_insn(st, pc, insn.imm),
            s => Err(Stop::Unsupported(format!("call with src_reg {s} at {pc}"))),
        }
    }

    /// A helper call instruction (`imm`: the helper id), by the helper.
    fn call_helper_insn(&mut self, st: &mut State, pc: usize, imm: i32) -> Step<Flow> {
        match imm {
            hid::LOOP | hid::FOR_EACH_MAP_ELEM => {
                let h = crate::helpers::helper_name(imm).expect("in the table");
                debug_assert!(super::callback_walk::walks_callback(h));
                self.sync_callback_call(st, pc, h)
            }
            hid::TIMER_SET_CALLBACK => self.timer_set_callback(st, pc),
            // The arguments and reference checks here, the rest in pkt.rs.
            hid::TAIL_CALL => {
                self.helper_call(st, pc, imm)?;
                self.tail_call_effects(st, pc)
            }
            _ => {
                self.helper_call(st, pc, imm)?;
                Ok(Flow::Next(pc + 1))
            }
        }
    }

    /// The lock rule for a call made while a lock is held (`do_check_insn()` / `do_check()`, and
    /// `kfunc_spin_allowed()`).
    fn call_allowed_under_lock(&self, insn: Insn, name: Option<&str>) -> Step<bool> {
        let p = self.profile;
        match insn.src {
            0 => {
                let h = crate::helpers::helper_name(insn.imm).unwrap_or("");
                Ok(p.helpers_under_lock.iter().any(|a| a == h))
            }
            BPF_PSEUDO_CALL => Ok(p.static_calls_under_lock),
            // bpf_throw, the irq, rcu and preempt kfuncs: BTF_ID_FLAGS(func, ...) with no flags
            // (7.x), in no 6.12 list.
            BPF_PSEUDO_KFUNC_CALL
                if name.is_some_and(|n| {
                    n == "bpf_throw" || super::irq::is_native_irq_kfunc(n) || super::rcu::is_region_kfunc(n)
                }) =>
            {
                Ok(false)
            }
            BPF_PSEUDO_KFUNC_CALL => {
                let name = name.unwrap_or("");
                if let Some(d) = self.btf_kfunc(name) {
                    // kfunc_spin_allowed(): the flags fetch_kfunc_meta() finds for the program
                    // type (the kfunc's BTF_ID_FLAGS word, kfunc_btf.rs).
                    let listed = p.kfuncs_under_lock.iter().any(|k| k == name);
                    let flagged =
                        d.allowed_in(self.case.prog_type) && d.flags & p.kfunc_flag.unwrap_or(0) != 0;
                    return Ok(match p.kfunc_rule {
                        KfuncLockRule::VmlinuxList => !d.module && listed,
                        KfuncLockRule::ListOrFlag => (!d.module && listed) || flagged,
                        KfuncLockRule::Flag => flagged,
                    });
                }
                let extern_declared = self.case.extern_kfuncs.iter().any(|k| k == name);
                kfunc_allowed_under_lock(p, self.module, name, self.case.prog_type, extern_declared)
                    .map_err(Stop::Unsupported)
            }
            _ => Ok(false),
        }
    }

    fn subprog_call(&mut self, st: &mut State, pc: usize, insn: Insn) -> Step<Flow> {
        let target = (pc as i64 + insn.imm as i64 + 1) as usize;
        if let Some(&args) = self.globals.get(&target) {
            // check_func_call(): a global function is verified on its own; here only the call.
            // btf_check_subprog_call() -> btf_check_func_arg_match() runs first and logs
            // "R%d is not a scalar" for an int argument that is not (also NOT_INIT: no
            // check_reg_arg() here); its error is returned after the lock check, but its line
            // comes first in the log.
            let ctx = self.global_ctx_args.get(&target).copied().unwrap_or(0);
            for r in 1..=args {
                // ARG_PTR_TO_CTX: "R%d expects pointer to ctx" (the model's ctx is at offset 0).
                if ctx & (1 << (r - 1)) != 0 {
                    if st.cur_ref().regs[r as usize] != Reg::Ctx {
                        return self.reject(pc, format!("R{r} expects pointer to ctx"));
                    }
                    continue;
                }
                if !matches!(st.cur_ref().regs[r as usize], Reg::Scalar(_)) {
                    let msg =
                        self.msg(&self.profile.messages.global_arg_not_scalar, &[("reg", format!("R{r}"))]);
                    return self.reject(pc, msg);
                }
            }
            if !st.locks.is_empty() && self.on(Rule::GlobalCallUnderLock) {
                return self.reject(pc, self.profile.messages.global_call_under_lock.clone());
            }
            self.global_sleep_check(st, pc, target)?;
            // check_func_call() (6.12, 7.2, 7.3) checks no reference for a global function: the
            // caller's references stay acquired across the call and meet the leak check at its
            // exit. A global function that may throw ends the caller's path in an exception exit
            // (7.2, 7.3: throw.rs); 6.12 has no might_throw: not modelled there.
            if self.profile.global_call_might_throw {
                if self.subprog_might_throw(target) {
                    self.global_call_exception_exit(st, pc)?;
                }
            } else if !st.refs.is_empty() && self.program_throws() {
                return Err(Stop::Unsupported(format!(
                    "global function call with {} in a program that may throw",
                    st.refs_str()
                )));
            }
            // check_func_call(): "mark global subprog for verifying after main prog", in the
            // caller's context (7.3: `sub_aux->called[in_sleepable_context(env)]`).
            let ctx = if self.profile.sleep.global_contexts {
                self.non_sleepable_context(st).is_none()
            } else {
                self.case.sleepable
            };
            self.called.insert((target, ctx));
            // check_func_call(): clear_all_pkt_pointers() when the callee's
            // subprog_info.changes_pkt_data (cfg.c; 6.12, 7.2, 7.3), before R1-R5 are cleared.
            if self.subprog_changes_pkt_data(target) {
                super::pkt::clear_all_pkt_pointers(st);
            }
            let cur = st.cur();
            cur.regs[0] = Reg::Scalar(Scalar::unknown());
            for r in 1..=5 {
                cur.regs[r] = Reg::NotInit;
            }
            return Ok(Flow::Next(pc + 1));
        }
        if st.frames.len() >= MAX_CALL_FRAMES {
            return Err(Stop::Unsupported("call chain deeper than MAX_CALL_FRAMES".into()));
        }
        let sub = self.subprogs.iter().position(|s| *s == target).unwrap_or(0);
        let mut frame = Frame::new(st.frames.len(), sub, pc);
        for r in 1..=5 {
            frame.regs[r] = st.cur_ref().regs[r].clone();
        }
        st.frames.push(frame);
        Ok(Flow::Next(target))
    }

    fn kfunc_call(&mut self, st: &mut State, pc: usize, name: &str) -> Step<()> {
        let module = self.module;
        let Some(k) = module.kfuncs.get(name) else {
            return Err(Stop::Unsupported(format!(
                "kfunc {name}: its arguments and return value are not modelled (only the lock rule for it)"
            )));
        };
        if !k.prog_types.contains(&self.case.prog_type) {
            return self.reject(
                pc,
                self.msg(&self.profile.messages.kfunc_not_allowed, &[("name", name.to_string())]),
            );
        }
        // check_kfunc_call(): a KF_SLEEPABLE kfunc in a program that does not sleep, before the
        // arguments (sleep.rs).
        let sleepable = k.flags & super::sleep::KF_SLEEPABLE != 0;
        if sleepable && !self.in_sleepable(st) {
            let args = [("name", name.to_string())];
            return self.reject(pc, crate::profile::render(&self.profile.sleep.kfunc_prog_message, &args));
        }
        let release = k.flags & KF_RELEASE != 0;
        // check_kfunc_args(): a KF_RELEASE kfunc's first argument is the referenced pointer
        // (only a non-null one carrying a live reference is modelled), the others scalars.
        let mut released = None;
        for r in 1..=k.args {
            match self.read_reg(st, pc, r) {
                Ok(Reg::BtfPtr { null: false, ref_obj_id, .. })
                    if release && r == 1 && ref_obj_id != 0 && st.refs.contains(&ref_obj_id) =>
                {
                    released = Some(ref_obj_id);
                }
                Ok(Reg::Scalar(_)) if !(release && r == 1) => {}
                Ok(reg) if release && r == 1 => return self.release_arg_refused(pc, name, &reg),
                _ => {
                    return Err(Stop::Unsupported(format!(
                        "kfunc {name} argument R{r} is outside the modelled subset"
                    )))
                }
            }
        }
        if sleepable {
            // After the arguments: "kernel func %s is sleepable within %s".
            self.kfunc_sleep_region(st, pc, name)?;
        }
        if let Some(ref_obj_id) = released {
            // release_reference(): the reference goes, and every register holding it is
            // invalidated (mark_reg_invalid(): unknown scalar, lockstep loads with allow_ptr_leaks).
            st.refs.retain(|r| *r != ref_obj_id);
            st.for_each_reg(|r| {
                if matches!(r, Reg::BtfPtr { ref_obj_id: i, .. } if *i == ref_obj_id) {
                    *r = Reg::Scalar(Scalar::unknown());
                }
            });
        }
        let r0 = if k.returns_scalar {
            Reg::Scalar(Scalar::unknown())
        } else if k.returns_void {
            Reg::NotInit
        } else if k.flags & KF_RET_NULL != 0 {
            // check_kfunc_call(): PTR_TO_BTF_ID | PTR_MAYBE_NULL with id = ++id_gen; an acquire
            // kfunc then takes a reference (acquire_reference(): ++id_gen again) whose id the
            // register carries as both id and ref_obj_id.
            let mut id = self.fresh_id();
            let mut ref_obj_id = 0;
            if k.flags & KF_ACQUIRE != 0 {
                // acquire_reference(env, insn_idx): the call is the leak message's alloc_insn.
                id = self.acquire_ref(st, pc);
                ref_obj_id = id;
            }
            Reg::BtfPtr { id, ref_obj_id, null: true }
        } else {
            return Err(Stop::Unsupported(format!(
                "kfunc {name} returns a pointer that is never NULL (not modelled)"
            )));
        };
        self.clobber(st, r0);
        Ok(())
    }

    /// check_kfunc_args() (7.2, 7.3) on a `KF_RELEASE` kfunc's first argument when it carries no
    /// live reference, in the kernel's order: a NULL or maybe-NULL pointer is "Possibly NULL
    /// pointer passed to trusted R1" (the argument has no `__nullable` suffix), then an argument
    /// without a reference (`!reg_is_referenced()`: a pointer of a `KF_RET_NULL` kfunc, a scalar
    /// such as what a first release left in a copy of the pointer) is "release kfunc %s expects
    /// referenced PTR_TO_BTF_ID passed to R1", both before the argument's type is checked.
    /// 6.12 checks NULL only for `KF_TRUSTED_ARGS` / `KF_RCU` kfuncs and the reference later
    /// (check_func_arg_reg_off()): its profile has no `kfunc_release_unreferenced`, so unsupported.
    fn release_arg_refused(&self, pc: usize, name: &str, reg: &Reg) -> Step<()> {
        let m = &self.profile.messages;
        let maybe_null = match reg {
            Reg::Scalar(s) => s.konst() == Some(0),
            Reg::BtfPtr { null, .. } => *null,
            _ => {
                return Err(Stop::Unsupported(format!(
                    "kfunc {name} argument R1 of type {} is outside the modelled subset",
                    reg.type_str()
                )))
            }
        };
        let args = [("reg", "R1".to_string()), ("name", name.to_string())];
        let msg = if maybe_null { &m.kfunc_arg_maybe_null } else { &m.kfunc_release_unreferenced };
        if msg.is_empty() || m.kfunc_release_unreferenced.is_empty() {
            return Err(Stop::Unsupported(format!(
                "kfunc {name}: a release argument without a reference in this profile (check_kfunc_args()) is not modelled"
            )));
        }
        self.reject(pc, self.msg(msg, &args))
    }

    /// After a call: R1-R5 cleared (`NOT_INIT`), R0 as given.
    pub(super) fn clobber(&self, st: &mut State, r0: Reg) {
        let cur = st.cur();
        for r in 1..=5 {
            cur.regs[r] = Reg::NotInit;
        }
        cur.regs[0] = r0;
    }

    fn helper_call(&mut self, st: &mut State, pc: usize, id: i32) -> Step<()> {
        let name = crate::helpers::helper_name(id).ok_or_else(|| {
            Stop::Unsupported(format!("helper call #{id} (not in lockstep's helper table)"))
        })?;
        match id {
            hid::SPIN_LOCK | hid::SPIN_UNLOCK => {
                let r1 = self.read_reg(st, pc, 1)?;
                if self.in_rbtree_cb(st) {
                    // check_func_arg(): ARG_PTR_TO_SPIN_LOCK, after R1's type check.
                    if !matches!(r1, Reg::MapValue { null: false, .. } | Reg::Alloc { null: false, .. }) {
                        return Err(Stop::Unsupported("a lock argument in an rbtree cb".into()));
                    }
                    return self.reject(pc, "can't spin_{lock,unlock} in rbtree cb".into());
                }
                self.spin_lock_arg(st, pc, &r1, id == hid::SPIN_LOCK)?;
                self.clobber(st, Reg::NotInit);
            }
            hid::MAP_LOOKUP_ELEM => {
                let r0 = self.map_lookup(st, pc)?;
                self.clobber(st, r0);
            }
            hid::MAP_LOOKUP_PERCPU_ELEM => {
                let r0 = self.map_lookup_percpu(st, pc)?;
                self.clobber(st, r0);
            }
            hid::MAP_UPDATE_ELEM | hid::MAP_DELETE_ELEM => self.map_update_delete(st, pc, name)?,
            hid::PROBE_READ_KERNEL => self.probe_read_kernel(st, pc)?,
            hid::TRACE_PRINTK => self.trace_printk(st, pc)?,
            hid::STRNCMP => self.strncmp(st, pc)?,
            hid::KPTR_XCHG => {
                let r0 = self.kptr_xchg(st, pc)?;
                self.clobber(st, r0);
            }
            hid::GET_CURRENT_TASK_BTF => self.current_task_btf(st)?,
            hid::GET_LOCAL_STORAGE => {
                let r0 = self.get_local_storage(st, pc)?;
                self.clobber(st, r0);
            }
            hid::COPY_FROM_USER => {
                let r0 = self.copy_from_user(st, pc)?;
                self.clobber(st, r0);
            }
            // bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns: in bpf_base_func_proto()'s unprivileged
            // list beside bpf_ktime_get_ns (6.12, 7.2, 7.3 helpers.c).
            hid::GET_PRANDOM_U32
            | hid::KTIME_GET_NS
            | hid::KTIME_GET_BOOT_NS
            | hid::GET_SMP_PROCESSOR_ID
            | hid::GET_CURRENT_PID_TGID => {
                self.clobber(st, Reg::Scalar(Scalar::unknown()));
            }
            // bpf_jiffies64: bpf_base_func_proto()'s CAP_BPF list (6.12, 7.2, 7.3 helpers.c),
            // RET_INTEGER, no arguments; judged in struct_ops programs (whose get_func_proto is
            // bpf_base_func_proto(), structops.rs), measured there (bpf_qdisc_fq).
            hid::JIFFIES64 if self.case.prog_type == crate::case::ProgType::StructOps => {
                self.clobber(st, Reg::Scalar(Scalar::unknown()));
            }
            hid::KTIME_GET_COARSE_NS => {
                let r0 = self.ktime_get_coarse_ns(pc)?;
                self.clobber(st, r0);
            }
            hid::THIS_CPU_PTR => {
                let r0 = self.this_cpu_ptr(st, pc)?;
                self.clobber(st, r0);
            }
            hid::PER_CPU_PTR => {
                let r0 = self.per_cpu_ptr(st, pc)?;
                self.clobber(st, r0);
            }
            hid::TAIL_CALL => {
                let r1 = self.read_reg(st, pc, 1)?;
                let r2 = self.read_reg(st, pc, 2)?;
                let r3 = self.read_reg(st, pc, 3)?;
                let prog_array =
                    matches!(r2, Reg::MapPtr { map } if self.map(map).map_type == MapType::ProgArray);
                if r1 != Reg::Ctx || !prog_array || !matches!(r3, Reg::Scalar(_)) {
                    return Err(Stop::Unsupported("bpf_tail_call with other argument types".into()));
                }
                // check_reference_leak(env, false): "Unreleased reference id=%d alloc_insn=%d" per
                // reference, the log's first line on every profile ("tail_call would lead to
                // reference leak" follows: check_resource_leak() on 7.x, check_helper_call() on
                // 6.12). Only in the main frame (a subprogram's frame returns 0 there); 6.12 also
                // checks a callback's own references, which the model leaves unsupported.
                if !st.refs.is_empty() {
                    if st.frames.len() > 1 || self.in_callback(st) {
                        return Err(Stop::Unsupported(format!(
                            "bpf_tail_call with {} in a subprogram or callback",
                            st.refs_str()
                        )));
                    }
                    self.reference_leak(st, pc)?;
                }
                // check_resource_leak(env, false, true, "tail_call"), after the references.
                self.region_leak(st, pc, "tail_call")?;
            }
            hid::SKB_PULL_DATA => self.skb_pull_data(st, pc)?,
            hid::SK_STORAGE_GET => {
                let r0 = self.sk_storage_get(st, pc)?;
                self.clobber(st, r0);
            }
            hid::SK_SELECT_REUSEPORT => {
                let r0 = self.sk_select_reuseport(st, pc)?;
                self.clobber(st, r0);
            }
            _ if super::sock::is_sock_helper(name) => {
                let r0 = self.sock_helper(st, pc, name)?;
                self.clobber(st, r0);
            }
            _ if super::timer::is_timer_helper(name) => self.timer_helper(st, pc, name)?,
            _ if super::callbacks::takes_callback(name) => {
                return Err(super::callbacks::callback_unsupported(name))
            }
            _ => return Err(Stop::Unsupported(format!("helper {name} is outside the modelled subset"))),
        }
        Ok(())
    }

    /// `bpf_res_spin_lock` / `bpf_res_spin_unlock` (7.x, `check_kfunc_call()`): the lock kfuncs
    /// fork first, before their argument is checked: a pushed state continues after the call with
    /// R0 in [-MAX_ERRNO, -1] (`__mark_reg_s32_range()`), R1-R5 cleared and no lock taken; on
    /// this path `check_kfunc_args()` -> `KF_ARG_PTR_TO_RES_SPIN_LOCK` -> `process_spin_lock()`
    /// takes the lock and R0 is 0. The `_irqsave` / `_irqrestore` forms take the lock as
    /// `REF_TYPE_RES_LOCK_IRQ`, then save / restore the flag in R2 (`process_irq_flag()`, irq.rs).
    fn res_spin_lock_call(&mut self, st: &mut State, pc: usize, name: &str) -> Step<Flow> {
        let (is_lock, irq) = match name {
            "bpf_res_spin_lock" => (true, false),
            "bpf_res_spin_unlock" => (false, false),
            "bpf_res_spin_lock_irqsave" => (true, true),
            "bpf_res_spin_unlock_irqrestore" => (false, true),
            _ => return Err(Stop::Unsupported(format!("kfunc {name} is not modelled"))),
        };
        let mut failed = None;
        if is_lock {
            let mut branch = st.clone();
            let regs = &mut branch.cur().regs;
            for r in regs.iter_mut().take(6) {
                *r = Reg::NotInit;
            }
            regs[0] = Reg::Scalar(Scalar { smin: -4095, smax: -1, umin: (-4095i64) as u64, umax: u64::MAX });
            branch.pc = pc + 1;
            failed = Some(branch);
        }
        // check_kfunc_args() does not check_reg_arg() its arguments: an uninitialised R1 meets
        // other checks (a fuzz finding: "variable ? access var_off=... disallowed" on 7.3), which
        // the model leaves unsupported.
        let r1 = st.cur_ref().regs[1].clone();
        match &r1 {
            Reg::MapValue { null: false, .. } => {}
            // KF_ARG_PTR_TO_RES_SPIN_LOCK: exactly PTR_TO_BTF_ID | MEM_ALLOC (an owning object,
            // no MEM_PERCPU / NON_OWN_REF), then process_spin_lock() on its type's record
            // (alloc_lock_arg(): "local 'kptr' has no valid bpf_res_spin_lock"; 7.2 and 7.3).
            // That record is the type's btf_struct_meta, which btf_parse_struct_metas() (btf.c)
            // makes only for a struct with a member among alloc_obj_fields (bpf_res_spin_lock is
            // not one: debian:7.2 / 7.3 refuse a type holding only it) or a kptr: a type with a
            // bpf_res_spin_lock is not modelled, one without is "no valid" either way.
            Reg::Alloc { ty, null: false, percpu: false, non_owning: false, off, .. }
                if *off >= 0 && self.case.types[*ty].layout.field_of(FieldKind::ResSpinLock).is_none() => {}
            Reg::MapValue { null: true, .. } => {
                let args = [("reg", "R1".to_string())];
                return self.reject(pc, self.msg(&self.profile.messages.kfunc_arg_maybe_null, &args));
            }
            other => {
                return Err(Stop::Unsupported(format!(
                    "kfunc {name} with R1 of type {} is not modelled",
                    other.type_str()
                )))
            }
        }
        self.lock_arg(st, pc, &r1, is_lock, if irq { LockKind::ResIrq } else { LockKind::Res })?;
        if irq {
            let r2 = st.cur_ref().regs[2].clone();
            self.irq_flag_arg(st, pc, 2, &r2, is_lock, false)?;
        }
        self.clobber(st, if is_lock { Reg::Scalar(Scalar::known(0)) } else { Reg::NotInit });
        Ok(match failed {
            Some(b) => Flow::Branch(pc + 1, b),
            None => Flow::Next(pc + 1),
        })
    }

    /// `check_func_arg()` for `ARG_PTR_TO_SPIN_LOCK`: `check_reg_type()` then `process_spin_lock()`.
    fn spin_lock_arg(&mut self, st: &mut State, pc: usize, r1: &Reg, is_lock: bool) -> Step<()> {
        self.lock_arg(st, pc, r1, is_lock, LockKind::Spin)
    }

    /// `process_spin_lock()` for a `bpf_spin_lock` (`kind` Spin) or `bpf_res_spin_lock` (Res) argument.
    fn lock_arg(&mut self, st: &mut State, pc: usize, r1: &Reg, is_lock: bool, kind: LockKind) -> Step<()> {
        let m = &self.profile.messages;
        if let Reg::Alloc { .. } = r1 {
            return self.alloc_lock_arg(st, pc, r1, is_lock, kind);
        }
        let Reg::MapValue { map, off, var, id, null: false } = r1 else {
            if matches!(
                r1,
                Reg::MapValue { .. } | Reg::Scalar(_) | Reg::Stack { .. } | Reg::Ctx | Reg::MapPtr { .. }
            ) {
                return self.reject(
                    pc,
                    self.msg(
                        &m.reg_type_mismatch,
                        &[
                            ("reg", "R1".into()),
                            ("type", r1.type_str().into()),
                            ("expected", "map_value, ptr_".into()),
                        ],
                    ),
                );
            }
            return Err(Stop::Unsupported(format!("spin lock argument of type {}", r1.type_str())));
        };
        // Strings for the messages are built only when one is printed.
        let lock = || if kind == LockKind::Spin { "bpf_spin" } else { "bpf_res_spin" }.to_string();
        let field_kind = if kind == LockKind::Spin { FieldKind::SpinLock } else { FieldKind::ResSpinLock };
        let var = var.get();
        if var.is_some_and(|v| v.konst().is_none()) && self.on(Rule::LockOffset) {
            return self.reject(pc, self.msg(&m.non_const_offset, &[("reg", "R1".into()), ("lock", lock())]));
        }
        let total = off + var.and_then(|v| v.konst()).unwrap_or(0);
        let spec = self.map(*map);
        let mname = || self.kernel_map_name(spec);
        if !spec.btf {
            return self.reject(pc, self.msg(&m.map_without_btf, &[("map", mname()), ("lock", lock())]));
        }
        let Some(field) = spec.value.field_of(field_kind) else {
            return self.reject(pc, self.msg(&m.no_lock_in_map, &[("map", mname()), ("lock", lock())]));
        };
        if field.offset as i64 != total && self.on(Rule::LockOffset) {
            return self.reject(
                pc,
                self.msg(
                    &m.wrong_lock_offset,
                    &[("off", total.to_string()), ("lock", lock()), ("lock_off", field.offset.to_string())],
                ),
            );
        }
        self.lock_state(st, pc, ActiveLock { map: *map, id: *id, kind }, is_lock)
    }

    /// `process_spin_lock()` once the lock is resolved: take it (`acquire_lock_state()`) or
    /// release it (`find_lock_state()` and the LIFO check), with the kernel's messages.
    pub(super) fn lock_state(
        &mut self,
        st: &mut State,
        pc: usize,
        this: ActiveLock,
        is_lock: bool,
    ) -> Step<()> {
        let m = &self.profile.messages;
        let kind = this.kind;
        let lock = || if kind == LockKind::Spin { "bpf_spin" } else { "bpf_res_spin" }.to_string();
        if is_lock {
            // 6.12 keeps one active_lock: any second lock is refused. 7.x: a second bpf_spin_lock
            // while one is held; a res lock that is already held (same id and map), as an AA deadlock.
            let spin_held = st.locks.iter().any(|l| l.kind == LockKind::Spin);
            let double = match kind {
                LockKind::Spin => spin_held || (!self.profile.res_spin_lock && !st.locks.is_empty()),
                LockKind::Res | LockKind::ResIrq => false,
            };
            if double && self.on(Rule::DoubleLock) {
                return self.reject(pc, m.double_lock.clone());
            }
            if kind != LockKind::Spin
                && st.locks.iter().any(|l| l.kind != LockKind::Spin && l.map == this.map && l.id == this.id)
            {
                return self.reject(pc, m.aa_deadlock.clone());
            }
            st.locks.push(this);
        } else {
            // find_lock_state(cur, type, id, ptr), then the LIFO check against active_lock_id/ptr.
            let found = st.locks.iter().rposition(|l| *l == this);
            match (st.locks.last(), found) {
                (None, _) if self.on(Rule::UnlockWithoutLock) => {
                    return self.reject(pc, self.msg(&m.unlock_without_lock, &[("lock", lock())]))
                }
                (Some(_), None) if self.on(Rule::UnlockDifferentLock) => {
                    return self.reject(pc, self.msg(&m.unlock_different_lock, &[("lock", lock())]))
                }
                (Some(last), Some(_)) if (last.map, last.id) != (this.map, this.id) => {
                    return self.reject(pc, self.msg(&m.unlock_out_of_order, &[("lock", lock())]))
                }
                (_, Some(i)) => {
                    st.locks.remove(i);
                }
                _ => {
                    st.locks.pop();
                }
            }
            // invalidate_non_owning_refs() after every unlock (6.12, 7.x: process_spin_lock()), and
            // invalidate_rcu_protected_refs() where the unlock leaves the RCU critical section
            // (7.2: `was_in_rcu_cs && !in_rcu_cs()`, 7.3: `!in_rcu_cs()`; a held lock is inside it).
            super::graph::invalidate_non_owning(st);
            if !self.in_rcu_cs(st) {
                self.invalidate_rcu_protected_refs(st);
            }
        }
        Ok(())
    }

    /// `bpf_map_lookup_elem()`: map pointer and key checks, and the returned map value.
    /// `bpf_map_lookup_percpu_elem(map, key, cpu)` (helpers.c `bpf_map_lookup_percpu_elem_proto`,
    /// in `bpf_base_func_proto()` for every loader): `ARG_CONST_MAP_PTR`, `ARG_PTR_TO_MAP_KEY`,
    /// `ARG_ANYTHING` (read: it must be initialised; lockstep loads as root, so a pointer is no
    /// leak), `RET_PTR_TO_MAP_VALUE_OR_NULL` with a fresh id. The nullness is never elided
    /// (`check_helper_call()` elides it for `BPF_FUNC_map_lookup_elem` only). Modelled for the
    /// per-cpu maps `check_map_func_compatibility()` lets it take (`PERCPU_ARRAY`, `PERCPU_HASH`);
    /// another map type (refused there with "cannot pass map_type ...") is `unsupported`.
    fn map_lookup_percpu(&mut self, st: &mut State, pc: usize) -> Step<Reg> {
        let name = "bpf_map_lookup_percpu_elem";
        let unsupported =
            |what: String| Err(Stop::Unsupported(format!("helper {name}: {what} is not modelled")));
        let r1 = self.read_reg(st, pc, 1)?;
        let Reg::MapPtr { map } = r1 else {
            return unsupported(format!("R1 of type {}", r1.type_str()));
        };
        let spec = self.map(map);
        if !matches!(spec.map_type, MapType::PercpuArray | MapType::PercpuHash) {
            return unsupported(format!("a {} map", spec.map_type.name()));
        }
        let r2 = self.read_reg(st, pc, 2)?;
        let Reg::Stack { off, .. } = r2 else {
            return unsupported(format!("a map key in {}", r2.type_str()));
        };
        if off + (spec.key_size as i64) > 0 || off < -512 {
            return unsupported("a map key outside the stack".into());
        }
        self.read_reg(st, pc, 3)?;
        Ok(Reg::MapValue { map, off: 0, var: VarOff::NONE, id: self.fresh_id(), null: true })
    }

    fn map_lookup(&mut self, st: &mut State, pc: usize) -> Step<Reg> {
        let r1 = self.read_reg(st, pc, 1)?;
        let Reg::MapPtr { map } = r1 else {
            return self.reject(
                pc,
                self.msg(
                    &self.profile.messages.reg_type_mismatch,
                    &[("reg", "R1".into()), ("type", r1.type_str().into()), ("expected", "map_ptr".into())],
                ),
            );
        };
        let r2 = self.read_reg(st, pc, 2)?;
        let Reg::Stack { frame, off } = r2 else {
            return Err(Stop::Unsupported(format!("map key in {}", r2.type_str())));
        };
        let spec = self.map(map);
        if off + (spec.key_size as i64) > 0 || off < -512 {
            return Err(Stop::Unsupported("map key outside the stack".into()));
        }
        let elide = self.profile.elide_array_lookup_null
            && matches!(spec.map_type, MapType::Array | MapType::PercpuArray)
            && st.frames[frame]
                .stack
                .constant_key(off, spec.key_size)
                .is_some_and(|k| k >= 0 && k < spec.max_entries as i64);
        if let Some(msg) = super::map_compat::map_func_incompatible(spec.map_type, "bpf_map_lookup_elem", 1) {
            return self.reject(pc, msg);
        }
        if super::sock::is_sock_map(spec.map_type) {
            return self.sock_map_lookup(st, pc, spec.map_type);
        }
        let has_lock = spec.btf && spec.value.has_lock();
        let id = if !elide || has_lock { self.fresh_id() } else { 0 };
        Ok(Reg::MapValue { map, off: 0, var: VarOff::NONE, id, null: !elide })
    }
}

/// The helper ids `helper_call()` dispatches on, by name (`crate::helpers::id_of`, at compile
/// time): an integer compare per arm instead of a string compare.
mod hid {
    use crate::helpers::id_of;
    pub const LOOP: i32 = id_of("bpf_loop");
    pub const FOR_EACH_MAP_ELEM: i32 = id_of("bpf_for_each_map_elem");
    pub const TIMER_SET_CALLBACK: i32 = id_of("bpf_timer_set_callback");
    pub const SPIN_LOCK: i32 = id_of("bpf_spin_lock");
    pub const SPIN_UNLOCK: i32 = id_of("bpf_spin_unlock");
    pub const MAP_LOOKUP_ELEM: i32 = id_of("bpf_map_lookup_elem");
    pub const MAP_LOOKUP_PERCPU_ELEM: i32 = id_of("bpf_map_lookup_percpu_elem");
    pub const MAP_UPDATE_ELEM: i32 = id_of("bpf_map_update_elem");
    pub const MAP_DELETE_ELEM: i32 = id_of("bpf_map_delete_elem");
    pub const PROBE_READ_KERNEL: i32 = id_of("bpf_probe_read_kernel");
    pub const TRACE_PRINTK: i32 = id_of("bpf_trace_printk");
    pub const STRNCMP: i32 = id_of("bpf_strncmp");
    pub const KPTR_XCHG: i32 = id_of("bpf_kptr_xchg");
    pub const GET_CURRENT_TASK_BTF: i32 = id_of("bpf_get_current_task_btf");
    pub const GET_LOCAL_STORAGE: i32 = id_of("bpf_get_local_storage");
    pub const COPY_FROM_USER: i32 = id_of("bpf_copy_from_user");
    pub const GET_PRANDOM_U32: i32 = id_of("bpf_get_prandom_u32");
    pub const KTIME_GET_NS: i32 = id_of("bpf_ktime_get_ns");
    pub const KTIME_GET_BOOT_NS: i32 = id_of("bpf_ktime_get_boot_ns");
    pub const GET_SMP_PROCESSOR_ID: i32 = id_of("bpf_get_smp_processor_id");
    pub const GET_CURRENT_PID_TGID: i32 = id_of("bpf_get_current_pid_tgid");
    pub const JIFFIES64: i32 = id_of("bpf_jiffies64");
    pub const KTIME_GET_COARSE_NS: i32 = id_of("bpf_ktime_get_coarse_ns");
    pub const THIS_CPU_PTR: i32 = id_of("bpf_this_cpu_ptr");
    pub const PER_CPU_PTR: i32 = id_of("bpf_per_cpu_ptr");
    pub const TAIL_CALL: i32 = id_of("bpf_tail_call");
    pub const SKB_PULL_DATA: i32 = id_of("bpf_skb_pull_data");
    pub const SK_STORAGE_GET: i32 = id_of("bpf_sk_storage_get");
    pub const SK_SELECT_REUSEPORT: i32 = id_of("bpf_sk_select_reuseport");
}
