//! Acquire / release kfuncs on kernel objects (issue 14): `bpf_task_*`, `bpf_cgroup_*`
//! (kernel/bpf/helpers.c, `generic_kfunc_set`) and `bpf_cpumask_*` (kernel/bpf/cpumask.c), the
//! `PTR_TO_BTF_ID` registers they take and return ([`Reg::Kernel`]), and the helper
//! `bpf_get_current_task_btf`. The argument checks are `check_kfunc_args()`'s for
//! `KF_ARG_PTR_TO_BTF_ID` in its order (NULL, release of an unreferenced pointer, not a
//! `PTR_TO_BTF_ID`, `is_trusted_reg()` / `is_rcu_reg()`), with 7.3's messages (7.2's are the same
//! lines). 6.12 (`KF_TRUSTED_ARGS`, arguments named `arg#0`) is left unsupported. The struct ids
//! come from the kernel BTF the profile carries.

use super::exec::Machine;
use super::scalar::Scalar;
use super::state::{Reg, State, Trust};
use super::{Step, Stop};
use crate::case::ProgType;
use crate::profile::{KF_ACQUIRE, KF_RELEASE, KF_RET_NULL};

/// `KF_RCU` (include/linux/btf.h, 7.x).
const KF_RCU: u32 = 1 << 7;

/// A kernel-object kfunc: its flags (`BTF_ID_FLAGS()` in 7.2 / 7.3), the struct its pointer
/// argument R1 points to (None: R1 is a scalar, or no argument), how many arguments, and the
/// struct it returns (None: void).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KobjKfunc {
    flags: u32,
    arg: Option<&'static str>,
    nargs: u8,
    ret: Option<&'static str>,
    cpumask: bool,
}

impl KobjKfunc {
    /// The kfunc `name`, if it is one of these.
    pub(crate) fn of(name: &str) -> Option<KobjKfunc> {
        let k = |flags, arg, nargs, ret, cpumask| Some(KobjKfunc { flags, arg, nargs, ret, cpumask });
        let (task, cgroup, mask) = (Some("task_struct"), Some("cgroup"), Some("bpf_cpumask"));
        match name {
            "bpf_task_acquire" => k(KF_ACQUIRE | KF_RCU | KF_RET_NULL, task, 1, task, false),
            "bpf_task_release" => k(KF_RELEASE, task, 1, None, false),
            "bpf_task_from_pid" | "bpf_task_from_vpid" => k(KF_ACQUIRE | KF_RET_NULL, None, 1, task, false),
            "bpf_cgroup_acquire" => k(KF_ACQUIRE | KF_RCU | KF_RET_NULL, cgroup, 1, cgroup, false),
            "bpf_cgroup_release" => k(KF_RELEASE, cgroup, 1, None, false),
            "bpf_cgroup_from_id" => k(KF_ACQUIRE | KF_RET_NULL, None, 1, cgroup, false),
            "bpf_cpumask_create" => k(KF_ACQUIRE | KF_RET_NULL, None, 0, mask, true),
            "bpf_cpumask_acquire" => k(KF_ACQUIRE, mask, 1, mask, true),
            "bpf_cpumask_release" => k(KF_RELEASE, mask, 1, None, true),
            _ => None,
        }
    }

    /// Whether the kfunc's set is registered for `t` (`register_btf_kfunc_id_set()` calls, by
    /// `bpf_prog_type_to_kfunc_hook()`): the generic set for the tracing hook (tracing, LSM,
    /// tracepoint, raw tracepoint, perf event), tc, XDP, struct_ops, syscall and the cgroup hook;
    /// the cpumask set for the tracing hook, struct_ops and syscall.
    fn allowed_in(&self, t: ProgType) -> bool {
        let tracing_hook = matches!(
            t,
            ProgType::Tracing
                | ProgType::Lsm
                | ProgType::Tracepoint
                | ProgType::RawTracepoint
                | ProgType::PerfEvent
        );
        let common = tracing_hook || matches!(t, ProgType::StructOps | ProgType::Syscall);
        if self.cpumask {
            return common;
        }
        // The cgroup hook's other program types are not ProgTypes lockstep has.
        common || matches!(t, ProgType::SchedCls | ProgType::Xdp | ProgType::CgroupSkb | ProgType::CgroupSock)
    }
}

impl Machine<'_> {
    /// The kernel BTF id of a kptr field's pointee `name` that is no local type of the case:
    /// [`Self::kernel_struct`], saying which pointee when the kernel BTF lacks it (a program
    /// type the import did not read, as the kernel finds it in the program BTF).
    pub(super) fn kptr_kernel_pointee(&self, name: &str) -> Step<u32> {
        match self.kernel_struct(name) {
            Err(Stop::Unsupported(why)) if why.contains("is not in the kernel BTF") => Err(Stop::Unsupported(format!(
                "kptr pointee struct {name}: neither a local type lockstep read from the program BTF nor a kernel struct"
            ))),
            r => r,
        }
    }

    /// The local type a kptr field's pointee `name` is, or None for a kernel struct
    /// (`btf_parse_kptr()`: `bpf_find_btf_id()` takes vmlinux's or a loaded module's struct of
    /// that name first; only without one is the pointee the program's type, `MEM_ALLOC`). A type
    /// the import read only as a pointee ([`crate::case::ObjType::kptr_pointee_only`]) is local
    /// once the kernel BTF lacks it; module structs are not in the model's kernel BTF, so a
    /// pointee named for the selftests' module (`bpf_testmod_*`) stays unsupported. Other local
    /// types are taken as they are (the rule before this one).
    pub(super) fn local_pointee(&self, name: &str) -> Step<Option<usize>> {
        let Some(ty) = self.case.types.iter().position(|t| t.name == name) else { return Ok(None) };
        if !self.case.types[ty].kptr_pointee_only {
            return Ok(Some(ty));
        }
        match self.kernel_struct(name) {
            Ok(_) => Ok(None),
            Err(Stop::Unsupported(why)) if why.contains("is not in the kernel BTF") => {
                if name.starts_with("bpf_testmod") {
                    return Err(Stop::Unsupported(format!(
                        "kptr pointee struct {name}: a type of the test module's BTF (the model reads vmlinux's only)"
                    )));
                }
                Ok(Some(ty))
            }
            Err(e) => Err(e),
        }
    }

    /// The kernel BTF id of struct `name`, or why the model cannot type it.
    pub(super) fn kernel_struct(&self, name: &str) -> Step<u32> {
        let k = self.profile.kernel_btf.0.as_ref().ok_or_else(|| {
            Stop::Unsupported(format!(
                "a kernel-object pointer (struct {name}) needs the kernel's BTF, which profile {} was not given",
                self.profile.name
            ))
        })?;
        k.struct_id(name).ok_or_else(|| {
            Stop::Unsupported(format!("struct {name} is not in the kernel BTF ({})", k.source))
        })
    }

    /// `check_kfunc_call()` for a [`KobjKfunc`] (R0 set, R1-R5 cleared).
    pub(super) fn kobj_call(&mut self, st: &mut State, pc: usize, name: &str, k: KobjKfunc) -> Step<()> {
        if !self.profile.res_spin_lock {
            return Err(Stop::Unsupported(format!(
                "kfunc {name}: 6.12's argument rules (KF_TRUSTED_ARGS, arg#N messages) are not modelled"
            )));
        }
        // fetch_kfunc_meta(): the kfunc is not in a set registered for the program type.
        if !k.allowed_in(self.case.prog_type) {
            let args = [("name", name.to_string())];
            return self.reject(pc, self.msg(&self.profile.messages.kfunc_not_allowed, &args));
        }
        let released = match k.arg {
            Some(want) => self.kobj_arg(st, pc, name, want, k.flags)?,
            None => None,
        };
        if k.arg.is_none() && k.nargs == 1 && !matches!(self.read_reg(st, pc, 1)?, Reg::Scalar(_)) {
            return Err(Stop::Unsupported(format!("kfunc {name} with a pointer for its scalar R1")));
        }
        if let Some(ref_obj_id) = released {
            // release_reference(): the reference and every register carrying it go.
            st.refs.retain(|r| *r != ref_obj_id);
            st.for_each_reg(|r| {
                if matches!(r, Reg::Kernel { ref_obj_id: i, .. } if *i == ref_obj_id) {
                    *r = Reg::Scalar(Scalar::unknown());
                }
            });
        }
        let r0 = match k.ret {
            None => Reg::NotInit,
            Some(s) => {
                let btf_id = self.kernel_struct(s)?;
                let null = k.flags & KF_RET_NULL != 0;
                // is_kfunc_ret_null(): an id for the NULL check, then acquire_reference(); the
                // register carries the reference's id (as alloc.rs's objects do).
                if null {
                    self.fresh_id();
                }
                let id = self.acquire_ref(st, pc);
                Reg::Kernel { off: 0, btf_id, id, ref_obj_id: id, null, trust: Trust::Trusted }
            }
        };
        let cur = st.cur();
        for r in 1..=5 {
            cur.regs[r] = Reg::NotInit;
        }
        cur.regs[0] = r0;
        Ok(())
    }

    /// `check_kfunc_args()` for R1, a `KF_ARG_PTR_TO_BTF_ID` to struct `want`: the reference a
    /// release kfunc releases.
    fn kobj_arg(&self, st: &State, pc: usize, name: &str, want: &str, flags: u32) -> Step<Option<u32>> {
        let r1 = st.cur_ref().regs[1].clone();
        let is_null = matches!(&r1, Reg::Scalar(s) if s.konst() == Some(0));
        if is_null || r1.maybe_null() {
            return self.reject(pc, "Possibly NULL pointer passed to trusted R1".into());
        }
        // check_func_arg_reg_off(): a kernel pointer moved by a constant is not modelled.
        if r1.kernel_off() {
            return Err(Stop::Unsupported(format!(
                "kfunc {name} with R1, a kernel pointer at a non-zero offset"
            )));
        }
        let referenced = match &r1 {
            Reg::Kernel { ref_obj_id, .. } => *ref_obj_id != 0 && st.refs.contains(ref_obj_id),
            _ => false,
        };
        if flags & KF_RELEASE != 0 && !referenced {
            return self
                .reject(pc, format!("release kfunc {name} expects referenced PTR_TO_BTF_ID passed to R1"));
        }
        let Reg::Kernel { btf_id, trust, ref_obj_id, .. } = r1 else {
            // "%s is %s expected %s %s": not a PTR_TO_BTF_ID and no reg2btf_ids entry (these
            // structs have none).
            return match r1 {
                Reg::Stack { .. } | Reg::MapValue { .. } | Reg::Ctx | Reg::Scalar(_) => {
                    self.reject(pc, format!("R1 is {} expected STRUCT {want}", r1.type_str()))
                }
                other => Err(Stop::Unsupported(format!("kfunc {name} with R1 of type {}", other.type_str()))),
            };
        };
        // is_trusted_reg(): referenced, or PTR_TRUSTED; is_rcu_reg(): MEM_RCU.
        if !(referenced || trust == Trust::Trusted) {
            if flags & KF_RCU == 0 {
                return self.reject(pc, "R1 must be referenced or trusted".into());
            }
            if trust != Trust::Rcu {
                return self.reject(pc, "R1 must be a rcu pointer".into());
            }
        }
        // process_kf_arg_ptr_to_btf_id(): the struct must match (its message is not modelled).
        if btf_id != self.kernel_struct(want)? {
            return Err(Stop::Unsupported(format!(
                "kfunc {name} with R1 pointing to another struct than {want} (btf_struct_ids_match()) is not modelled"
            )));
        }
        Ok((flags & KF_RELEASE != 0).then_some(ref_obj_id))
    }

    /// `bpf_get_current_task_btf()`: `RET_PTR_TO_BTF_ID_TRUSTED` to `task_struct`, never NULL.
    /// `bpf_base_func_proto()` (helpers.c, CAP_PERFMON) has it; the model allows it in the
    /// tracing program types and in syscall programs (`syscall_prog_func_proto()` falls back to
    /// `tracing_prog_func_proto()`), and leaves the others unsupported.
    pub(super) fn current_task_btf(&mut self, st: &mut State) -> Step<()> {
        if !matches!(
            self.case.prog_type,
            ProgType::Tracing
                | ProgType::Lsm
                | ProgType::Kprobe
                | ProgType::Tracepoint
                | ProgType::RawTracepoint
                | ProgType::PerfEvent
                | ProgType::Syscall
        ) {
            return Err(Stop::Unsupported(format!(
                "helper bpf_get_current_task_btf in a {:?} program",
                self.case.prog_type
            )));
        }
        let btf_id = self.kernel_struct("task_struct")?;
        let cur = st.cur();
        for r in 1..=5 {
            cur.regs[r] = Reg::NotInit;
        }
        cur.regs[0] =
            Reg::Kernel { off: 0, btf_id, id: 0, ref_obj_id: 0, null: false, trust: Trust::Trusted };
        Ok(())
    }
}
