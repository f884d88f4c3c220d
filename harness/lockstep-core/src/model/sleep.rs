//! Sleepable programs (`BPF_F_SLEEPABLE`, issue 14): which programs may be sleepable
//! (`can_be_sleepable()`), which attach targets may sleep (`bpf_check_attach_target()` ->
//! `btf_id_allow_sleepable()`), the map types they may use (`check_map_prog_compatibility()`), and
//! what `in_sleepable()` changes in the walk: helpers and kfuncs that may sleep outside a
//! sleepable context (`check_helper_call()`, `check_kfunc_call()`), a global function that may
//! sleep called there (`check_func_call()`, `subprog_info->might_sleep` from `check_cfg()`), the
//! RCU critical section (`in_rcu_cs()`) whose end turns `MEM_RCU` pointers untrusted
//! (`invalidate_rcu_protected_refs()`), and, in 7.3, a global function verified once per context
//! it is called in. Per-kernel differences are [`SleepRules`](crate::profile::SleepRules)
//! switches; each function names its verifier.c origin.
//!
//! Modelled helper / kfunc that may sleep: `bpf_copy_from_user` (a stack buffer of constant size)
//! and `bpf_copy_from_user_str` (up to its region check). The other `might_sleep` helpers and
//! `KF_SLEEPABLE` kfuncs are `unsupported`, naming them.

use super::exec::Machine;
use super::scalar::Scalar;
use super::state::{Reg, State, Trust};
use super::{Step, Stop};
use crate::case::{MapSpec, ProgType};
use crate::import::sec::AttachType;
use crate::insn::*;
use crate::profile::render;

/// `KF_SLEEPABLE` (include/linux/btf.h, the same bit in 6.12, 7.2 and 7.3).
pub(crate) const KF_SLEEPABLE: u32 = 1 << 5;

/// The helpers whose `bpf_func_proto` has `might_sleep` (every `.might_sleep = true` of the
/// 6.12, 7.2 and 7.3 trees: kernel/bpf/helpers.c, stackmap.c, syscall.c, btf.c, bpf_lsm.c).
/// `bpf_get_stack` / `bpf_get_task_stack` sleep only in the variant a sleepable program gets.
fn helper_may_sleep(name: &str) -> bool {
    matches!(
        name,
        "bpf_copy_from_user"
            | "bpf_copy_from_user_task"
            | "bpf_get_stack"
            | "bpf_get_task_stack"
            | "bpf_sys_bpf"
            | "bpf_sys_close"
            | "bpf_btf_find_by_name_kind"
            | "bpf_ima_inode_hash"
            | "bpf_ima_file_hash"
    )
}

/// The `KF_SLEEPABLE` kfuncs the model knows by name (kernel/bpf/helpers.c `common_btf_ids`,
/// registered for every program type; `KF_SLEEPABLE` in 6.12 and 7.2, `| KF_PERFMON` in 7.3).
pub(crate) fn is_sleepable_kfunc(name: &str) -> bool {
    matches!(name, "bpf_copy_from_user_str" | "bpf_copy_from_user_task_str")
}

impl Machine<'_> {
    /// `in_sleepable()`: the state's `in_sleepable`, or (6.12) the program's.
    pub(crate) fn in_sleepable(&self, st: &State) -> bool {
        st.sleepable || (self.profile.sleep.prog_sleepable_everywhere && self.case.sleepable)
    }

    /// `in_rcu_cs()`: an RCU read lock or a spin lock held (7.3: or preemption / IRQs off), or a
    /// program that does not sleep.
    pub(crate) fn in_rcu_cs(&self, st: &State) -> bool {
        st.rcu > 0
            || !st.locks.is_empty()
            || (self.profile.sleep.rcu_cs_all_regions && (st.preempt > 0 || !st.irq.is_empty()))
            || !self.in_sleepable(st)
    }

    /// `in_sleepable_context()` (7.2, 7.3: no region and `in_sleepable()`), or else
    /// `non_sleepable_context_description()`, in its order.
    pub(crate) fn non_sleepable_context(&self, st: &State) -> Option<&'static str> {
        if st.rcu > 0 {
            Some("rcu_read_lock region")
        } else if st.preempt > 0 {
            Some("non-preemptible region")
        } else if !st.irq.is_empty() {
            Some("IRQ-disabled region")
        } else if !st.locks.is_empty() {
            Some("lock region")
        } else if !self.in_sleepable(st) {
            Some("non-sleepable prog")
        } else {
            None
        }
    }

    /// `check_attach_btf_id()`: "Program of this type cannot be sleepable" (`can_be_sleepable()`),
    /// after the syscall check.
    pub(crate) fn can_be_sleepable(&self) -> Step<()> {
        if !self.case.sleepable {
            return Ok(());
        }
        let rules = &self.profile.sleep;
        let ok = match self.case.prog_type {
            ProgType::Syscall | ProgType::StructOps | ProgType::Lsm => true,
            ProgType::Tracing => match self.sec_type().map(|s| s.attach) {
                Some(
                    AttachType::TraceFentry
                    | AttachType::TraceFexit
                    | AttachType::ModifyReturn
                    | AttachType::TraceIter,
                ) => true,
                Some(AttachType::TraceRawTp) => rules.raw_tp,
                _ => false,
            },
            t => rules.prog_types.contains(&t),
        };
        if ok {
            return Ok(());
        }
        Err(Stop::Reject(None, rules.prog_type_message.clone()))
    }

    /// `bpf_check_attach_target()` for a sleepable fentry / fexit / fmod_ret or LSM program
    /// (`btf_id_allow_sleepable()`), before `check_attach_btf_id()`'s deny lists: "%s is not
    /// sleepable" for a target that may not sleep.
    pub(crate) fn sleepable_attach_target(&self) -> Step<()> {
        if !self.case.sleepable {
            return Ok(());
        }
        let Some(sec) = self.sec_type() else { return Ok(()) };
        let rules = &self.profile.sleep;
        let target = sec.target.as_deref().unwrap_or("");
        let (name, ok) = match (self.case.prog_type, sec.attach) {
            (
                ProgType::Tracing,
                AttachType::TraceFentry | AttachType::TraceFexit | AttachType::ModifyReturn,
            ) => {
                if rules.error_injection {
                    // check_attach_sleepable() -> within_error_injection_list(): the
                    // ALLOW_ERROR_INJECTION list is not in BTF.
                    return Err(Stop::Unsupported(format!(
                        "sleepable attach target {target}: whether it is on the error-injection list (ALLOW_ERROR_INJECTION, not in BTF) is not known to the model"
                    )));
                }
                // has_arch_syscall_prefix() (7.x, x86-64), then the fmodret sets' KF_SLEEPABLE.
                let syscall = rules.syscall_prefix && target.starts_with("__x64_");
                (target.to_string(), syscall || rules.fmodret_sleepable.iter().any(|f| f == target))
            }
            // bpf_lsm_is_sleepable_hook(); libbpf attaches lsm.s/<hook> to bpf_lsm_<hook>.
            (ProgType::Lsm, AttachType::LsmMac) => {
                let name = format!("bpf_lsm_{target}");
                let ok = rules.lsm_hooks.contains(&name);
                (name, ok)
            }
            _ => return Ok(()),
        };
        if ok {
            return Ok(());
        }
        Err(Stop::Reject(None, render(&rules.target_message, &[("name", name)])))
    }

    /// `check_map_prog_compatibility()`: a sleepable program may use only some map types (after
    /// the lock, graph, timer and struct_ops checks).
    pub(crate) fn sleepable_map_check(&self, m: &MapSpec) -> Step<()> {
        let rules = &self.profile.sleep;
        if self.case.sleepable && !rules.map_types.contains(&m.map_type) {
            return Err(Stop::Reject(None, rules.map_message.clone()));
        }
        Ok(())
    }

    /// `check_helper_call()`: a `might_sleep` helper (`{name}#{id}`) outside a sleepable context.
    /// 7.x: `in_sleepable_context()` with its description; 6.12: "helper call might sleep in a
    /// non-sleepable prog" (its RCU / preemption region lines: those regions are not modelled on
    /// 6.12, `rcu.rs`).
    fn helper_sleep_check(&self, st: &State, pc: usize, name: &str, id: i32) -> Step<()> {
        let rules = &self.profile.sleep;
        let where_ = if rules.sleepable_context {
            self.non_sleepable_context(st)
        } else if !self.in_sleepable(st) {
            Some("non-sleepable prog")
        } else if st.rcu > 0 || st.preempt > 0 || !st.irq.is_empty() {
            return Err(Stop::Unsupported(format!("helper {name} in a region on {}", self.profile.name)));
        } else {
            None
        };
        match where_ {
            None => Ok(()),
            Some(w) => {
                let args = [("name", name.to_string()), ("id", id.to_string()), ("where", w.to_string())];
                self.reject(pc, render(&rules.helper_message, &args))
            }
        }
    }

    /// `bpf_copy_from_user(dst, size, user_ptr)`: the proto (the tracing types' and syscall
    /// programs' `get_func_proto()`: bpf_tracing_func_proto() in 6.12, bpf_base_func_proto() for
    /// CAP_PERFMON in 7.x; seen on debian:6.12, 7.2, 7.3), the sleep check, then its arguments:
    /// `ARG_PTR_TO_UNINIT_MEM` (modelled: a stack buffer), `ARG_MEM_SIZE_OR_ZERO` (a constant),
    /// `ARG_ANYTHING`; the buffer's bytes become `STACK_MISC` (raw mode); R0 an integer.
    pub(super) fn copy_from_user(&mut self, st: &mut State, pc: usize) -> Step<Reg> {
        let name = "bpf_copy_from_user";
        if !self.copy_from_user_proto() {
            return Err(Stop::Unsupported(format!(
                "helper {name} in a {:?} program (its proto there) is not modelled",
                self.case.prog_type
            )));
        }
        self.helper_sleep_check(st, pc, name, 148)?;
        let r1 = self.read_reg(st, pc, 1)?;
        let r2 = self.read_reg(st, pc, 2)?;
        let (frame, off, size) = self.const_stack_buffer(st, name, &r1, &r2)?;
        self.read_reg(st, pc, 3)?;
        for i in 0..size {
            self.irq_slot_access(st, frame, off + i, 1, true)?;
            st.frames[frame].stack.write(off + i, 1, &Reg::NotInit);
        }
        Ok(Reg::Scalar(Scalar::unknown()))
    }

    /// Whether the program type's `get_func_proto()` gives `bpf_copy_from_user` where the model
    /// knows it: the tracing types and syscall programs (`syscall_prog_func_proto()` falls back to
    /// the tracing protos).
    fn copy_from_user_proto(&self) -> bool {
        matches!(
            self.case.prog_type,
            ProgType::Tracing
                | ProgType::Lsm
                | ProgType::Kprobe
                | ProgType::Tracepoint
                | ProgType::PerfEvent
                | ProgType::RawTracepoint
                | ProgType::Syscall
        )
    }

    /// A stack buffer `r1` of constant size `r2` inside its frame, with no iterator in it: (frame,
    /// offset, size); any other shape is not modelled.
    fn const_stack_buffer(&self, st: &State, name: &str, r1: &Reg, r2: &Reg) -> Step<(usize, i64, i64)> {
        let (Reg::Stack { frame, off }, Reg::Scalar(s)) = (r1, r2) else {
            return Err(Stop::Unsupported(format!(
                "{name} with R1 {} and R2 {} (only a stack buffer of constant size is modelled)",
                r1.type_str(),
                r2.type_str()
            )));
        };
        let size = s.konst().filter(|k| (1..=512).contains(k));
        let Some(size) = size.filter(|k| *off >= -512 && off + k <= 0) else {
            return Err(Stop::Unsupported(format!(
                "{name} with a size that is not a constant inside the stack frame"
            )));
        };
        let (frame, off) = (*frame, *off);
        if st.iters.keys().any(|(f, s)| *f == frame && off < s + 8 && *s < off + size) {
            return Err(Stop::Unsupported(format!("{name} over an iterator's stack slot")));
        }
        Ok((frame, off, size))
    }

    /// `check_kfunc_call()` for a `KF_SLEEPABLE` kfunc of [`is_sleepable_kfunc`]: "program must
    /// be sleepable to call sleepable kfunc %s" before the arguments, then (for
    /// `bpf_copy_from_user_str(dst, dst__sz, unsafe_ptr__ign, flags)`: a stack buffer of constant
    /// size, the ignored pointer, a scalar) the region check "kernel func %s is sleepable within
    /// %s" (7.x `in_sleepable_context()`; 6.12's RCU / preemption forms are not modelled). What
    /// the call does to the buffer is not modelled.
    pub(super) fn sleepable_kfunc_call(&mut self, st: &mut State, pc: usize, name: &str) -> Step<()> {
        let rules = &self.profile.sleep;
        if !self.in_sleepable(st) {
            return self.reject(pc, render(&rules.kfunc_prog_message, &[("name", name.to_string())]));
        }
        if name != "bpf_copy_from_user_str" {
            return Err(Stop::Unsupported(format!("kfunc {name}: its arguments are not modelled")));
        }
        let r1 = st.cur_ref().regs[1].clone();
        let r2 = st.cur_ref().regs[2].clone();
        self.const_stack_buffer(st, name, &r1, &r2)?;
        if !matches!(st.cur_ref().regs[4], Reg::Scalar(_)) {
            return Err(Stop::Unsupported(format!(
                "kfunc {name} with a flags argument that is not a scalar"
            )));
        }
        self.kfunc_sleep_region(st, pc, name)?;
        Err(Stop::Unsupported(format!(
            "kfunc {name}: what it writes to its buffer (KF_ARG_PTR_TO_MEM_SIZE) is not modelled"
        )))
    }

    /// `check_kfunc_call()` after the arguments of a `KF_SLEEPABLE` kfunc: "kernel func %s is
    /// sleepable within %s" outside a sleepable context (7.x `in_sleepable_context()`; 6.12's
    /// RCU / preemption forms are not modelled, rcu.rs).
    pub(super) fn kfunc_sleep_region(&self, st: &State, pc: usize, name: &str) -> Step<()> {
        let rules = &self.profile.sleep;
        let where_ = if rules.sleepable_context {
            self.non_sleepable_context(st)
        } else if st.rcu > 0 || st.preempt > 0 {
            return Err(Stop::Unsupported(format!("kfunc {name} in a region on {}", self.profile.name)));
        } else {
            None
        };
        match where_ {
            Some(w) => {
                let args = [("name", name.to_string()), ("where", w.to_string())];
                self.reject(pc, render(&rules.kfunc_region_message, &args))
            }
            None => Ok(()),
        }
    }

    /// `check_func_call()` for a global function at `target` (after the lock check): "sleepable
    /// global function %s() called in %s" where it may sleep outside a sleepable context (7.2,
    /// 7.3; 6.12 has no such check).
    pub(super) fn global_sleep_check(&self, st: &State, pc: usize, target: usize) -> Step<()> {
        let rules = &self.profile.sleep;
        if !rules.global_might_sleep {
            return Ok(());
        }
        let Some(w) = self.non_sleepable_context(st) else { return Ok(()) };
        if !self.subprog_might_sleep(target)? {
            return Ok(());
        }
        let Some(fname) = self.case.program.labels.get(&target) else {
            return Err(Stop::Unsupported("a sleepable global function without a name".into()));
        };
        let args = [("name", fname.clone()), ("where", w.to_string())];
        self.reject(pc, render(&rules.global_message, &args))
    }

    /// `subprog_info[]->might_sleep` of the subprogram starting at `start` (`check_cfg()` ->
    /// `visit_insn()`: a reachable call of a `might_sleep` helper whose proto the program type
    /// has, or of a `KF_SLEEPABLE` kfunc; `merge_callee_effects()` adds the functions it calls and
    /// the callbacks it takes the address of). A callee the model does not know is `unsupported`.
    pub(crate) fn subprog_might_sleep(&self, start: usize) -> Step<bool> {
        let insns = &self.case.program.insns;
        let mut seen_subs = std::collections::BTreeSet::new();
        let mut subs = vec![start];
        while let Some(sub) = subs.pop() {
            if !seen_subs.insert(sub) {
                continue;
            }
            // The instructions reachable from the subprogram's entry (within it).
            let mut seen = std::collections::BTreeSet::new();
            let mut todo = vec![sub];
            while let Some(pc) = todo.pop() {
                if pc >= insns.len() || !seen.insert(pc) {
                    continue;
                }
                let insn = insns[pc];
                if insn.is_ld_imm64() {
                    if insn.src == BPF_PSEUDO_FUNC {
                        subs.push((pc as i64 + insn.imm as i64 + 1) as usize);
                    }
                    todo.push(pc + 2);
                    continue;
                }
                let class = insn.class();
                if class != BPF_JMP && class != BPF_JMP32 {
                    todo.push(pc + 1);
                    continue;
                }
                match insn.op() {
                    BPF_EXIT => {}
                    BPF_CALL => {
                        if insn.is_pseudo_call() {
                            subs.push((pc as i64 + insn.imm as i64 + 1) as usize);
                        } else if self.call_may_sleep(pc, insn)? {
                            return Ok(true);
                        }
                        todo.push(pc + 1);
                    }
                    BPF_JA => {
                        if insn.source() == BPF_X {
                            return Err(Stop::Unsupported(
                                "a global function with an indirect jump (might_sleep)".into(),
                            ));
                        }
                        let off = if class == BPF_JMP32 { insn.imm as i64 } else { insn.off as i64 };
                        todo.push((pc as i64 + off + 1) as usize);
                    }
                    _ => {
                        todo.push(pc + 1);
                        todo.push((pc as i64 + insn.off as i64 + 1) as usize);
                    }
                }
            }
        }
        Ok(false)
    }

    /// Whether the helper or kfunc call at `pc` marks its subprogram `might_sleep`.
    fn call_may_sleep(&self, pc: usize, insn: Insn) -> Step<bool> {
        let name = self.case.program.call_name(pc);
        match insn.src {
            0 => {
                let h = crate::helpers::helper_name(insn.imm).unwrap_or("");
                if !helper_may_sleep(h) {
                    return Ok(false);
                }
                // bpf_get_helper_proto() must find the proto: bpf_copy_from_user where
                // copy_from_user() models it.
                if h == "bpf_copy_from_user" && self.copy_from_user_proto() {
                    Ok(true)
                } else {
                    Err(Stop::Unsupported(format!(
                        "helper {h} in a global function (whether its proto may sleep here) is not modelled"
                    )))
                }
            }
            BPF_PSEUDO_KFUNC_CALL => {
                let n = name.unwrap_or("");
                if is_sleepable_kfunc(n) {
                    return Ok(true);
                }
                // bpf_fetch_kfunc_arg_meta() finds a module kfunc's flags only in the set for
                // this program type.
                if let Some(k) = self.module.kfuncs.get(n) {
                    return Ok(k.prog_types.contains(&self.case.prog_type) && k.flags & KF_SLEEPABLE != 0);
                }
                // A kfunc the kernel's BTF describes (kfunc_btf.rs: vmlinux sets, bpf_testmod's):
                // fetch_kfunc_arg_meta() fails outside its hooks (not sleepable then).
                if let Some(k) = self.profile.kernel_btf.0.as_deref().and_then(|b| b.kfuncs.get(n)) {
                    return Ok(k.allowed_in(self.case.prog_type) && k.flags & KF_SLEEPABLE != 0);
                }
                let known = n.starts_with("bpf_iter_num_")
                    || n == "bpf_throw"
                    || super::irq::is_native_irq_kfunc(n)
                    || super::rcu::is_region_kfunc(n)
                    || n.starts_with("bpf_res_spin_")
                    || super::rbtree::RbKfunc::of(n).is_some()
                    || super::graph::GraphKfunc::of(n).is_some()
                    || super::alloc::AllocKfunc::of(n).is_some()
                    || super::kobj::KobjKfunc::of(n).is_some()
                    || super::pkt::kfunc_changes_pkt_data(n);
                if known {
                    return Ok(false);
                }
                if n.starts_with("bpf_arena_") && !self.profile.arena_kfuncs_sleepable {
                    return Ok(false);
                }
                Err(Stop::Unsupported(format!(
                    "kfunc {n} in a global function (whether it is KF_SLEEPABLE) is not modelled"
                )))
            }
            _ => Ok(false),
        }
    }

    /// `invalidate_rcu_protected_refs()`: `MEM_RCU` pointers become `PTR_UNTRUSTED` (and lose
    /// `PTR_MAYBE_NULL`) where a region ends outside the RCU critical section.
    pub(crate) fn invalidate_rcu_protected_refs(&self, st: &mut State) {
        st.for_each_reg(|r| {
            if let Reg::Kernel { trust, null, .. } = r {
                if *trust == Trust::Rcu {
                    *trust = Trust::Untrusted;
                    *null = false;
                }
            }
            // A local object loaded from a kptr field: MEM_ALLOC | PTR_UNTRUSTED (7.3 also drops
            // NON_OWN_REF, 7.2 keeps it; type_is_non_owning_ref() is false for both).
            if let Reg::AllocRcu { null, non_owning, untrusted, .. } = r {
                *untrusted = true;
                *null = false;
                *non_owning = false;
            }
        });
    }
}
