//! Plain helpers outside a lock (issue 14, item 1): `bpf_get_current_pid_tgid`,
//! `bpf_ktime_get_coarse_ns`, `bpf_this_cpu_ptr` and `bpf_trace_printk` (`check_helper_call()`). With a lock held the
//! gate of `do_check_insn()` refuses them first, in `calls.rs`. Only what the kernel sources
//! and real runs settle is modelled; the rest is `unsupported` naming the helper.

use super::exec::Machine;
use super::state::{Reg, State, VarOff};
use super::{Step, Stop};
use crate::case::ProgType;

/// The program types where `bpf_ktime_get_coarse_ns` has no proto: their `get_func_proto()` falls
/// through to `bpf_base_func_proto()` (kernel/bpf/helpers.c), which lacks it (it is offered by
/// cgroup.c and the networking protos only). Seen on debian:7.2 and 7.3
/// (`verifier_helper_restricted`: "program of this type cannot use helper ...#160" at the call).
const NO_KTIME_COARSE: [ProgType; 4] =
    [ProgType::Kprobe, ProgType::Tracepoint, ProgType::PerfEvent, ProgType::RawTracepoint];

/// `percpu_btf_ptr_types` (verifier.c), as `reg_type_str()` prints them: what
/// `ARG_PTR_TO_PERCPU_BTF_ID` accepts.
const PERCPU_BTF_PTR_TYPES: &str = "percpu_ptr_, percpu_rcu_ptr_, percpu_trusted_ptr_";

/// The program types whose `get_func_proto()` falls back to `bpf_base_func_proto()`
/// (kernel/bpf/helpers.c), in 6.12, 7.2 and 7.3 alike: `bpf_tracing_func_proto()` for the tracing
/// types, the networking protos otherwise; syscall programs through `syscall_prog_func_proto()`
/// (kernel/bpf/syscall.c) -> `tracing_prog_func_proto()` -> `raw_tp_prog_func_proto()` ->
/// `bpf_tracing_func_proto()`. It offers `BPF_FUNC_trace_printk` (`bpf_get_trace_printk_proto()`)
/// to a `CAP_PERFMON` loader such as lockstep's (root) and `BPF_FUNC_strncmp` to every loader (its
/// first, unprivileged list; `conststr.rs`).
pub(super) const BASE_FUNC_PROTO_TYPES: [ProgType; 10] = [
    ProgType::Tracing,
    ProgType::Kprobe,
    ProgType::Tracepoint,
    ProgType::RawTracepoint,
    ProgType::PerfEvent,
    ProgType::SchedCls,
    ProgType::SchedAct,
    ProgType::Xdp,
    ProgType::SocketFilter,
    ProgType::Syscall,
];

/// `BPF_F_WRONLY_PROG`: a map the program may not read (`check_map_access_type()`).
const BPF_F_WRONLY_PROG: u32 = 1 << 8;

impl Machine<'_> {
    /// `bpf_trace_printk(fmt, fmt_size, ...)` (kernel/trace/bpf_trace.c `bpf_trace_printk_proto`:
    /// `gpl_only` (lockstep loads as "GPL"), `ARG_PTR_TO_MEM | MEM_RDONLY`, `ARG_MEM_SIZE`, the
    /// other arguments `ARG_DONTCARE` and not read; `RET_INTEGER`). Modelled for the format string
    /// in a map value (`bpf_printk()`'s `static const char ___fmt[]` in `.rodata`) at a constant
    /// offset with a known constant size of at least 1 wholly inside the value and over no special
    /// field: `check_helper_mem_access()` -> `check_map_access_type()` (`BPF_READ`) and
    /// `check_map_access()` then pass. Anything else is `unsupported` naming the helper.
    pub(super) fn trace_printk(&mut self, st: &mut State, pc: usize) -> Step<()> {
        let name = "bpf_trace_printk";
        let unsupported =
            |what: &str| Err(Stop::Unsupported(format!("helper {name}: {what} is not modelled")));
        if !BASE_FUNC_PROTO_TYPES.contains(&self.case.prog_type) {
            return unsupported("this program type");
        }
        match self.map_value_read_arg(st, pc)? {
            Ok(()) => {}
            Err(MapValueArgGap::NotMapValue(_)) => {
                return unsupported("a format string other than a map value at a constant offset");
            }
            Err(MapValueArgGap::Size) => {
                return unsupported("a size that is not a known constant of at least 1")
            }
            Err(MapValueArgGap::WriteOnly) => return unsupported("a write-only map"),
            Err(MapValueArgGap::PastValue) => return unsupported("a format string past the map value"),
            Err(MapValueArgGap::OverField) => return unsupported("a format string over a special field"),
        }
        let cur = st.cur();
        for r in 1..=5 {
            cur.regs[r] = Reg::NotInit;
        }
        cur.regs[0] = Reg::Scalar(super::scalar::Scalar::unknown());
        Ok(())
    }

    /// R1 / R2 as a read-only memory argument with its size (`check_mem_size_reg()` ->
    /// `check_helper_mem_access()`, read pass) in the one shape the model judges: a map value at a
    /// constant offset, a known constant size of at least 1, not a write-only map, wholly inside
    /// the value and over no special field. `Err` names the first part outside that shape (the
    /// callers word it: `bpf_trace_printk`'s format, `bpf_strncmp`'s `s1`).
    pub(super) fn map_value_read_arg(&self, st: &State, pc: usize) -> Step<Result<(), MapValueArgGap>> {
        let r1 = self.read_reg(st, pc, 1)?;
        let Reg::MapValue { map, off, var: VarOff::NONE, null: false, .. } = r1 else {
            return Ok(Err(MapValueArgGap::NotMapValue(r1.type_str())));
        };
        let size = match self.read_reg(st, pc, 2)? {
            Reg::Scalar(s) => s.konst().filter(|k| *k >= 1),
            _ => None,
        };
        let Some(size) = size else { return Ok(Err(MapValueArgGap::Size)) };
        let spec = self.map(map);
        if spec.flags & BPF_F_WRONLY_PROG != 0 {
            return Ok(Err(MapValueArgGap::WriteOnly));
        }
        if off < 0 || off + size > spec.value.size as i64 {
            return Ok(Err(MapValueArgGap::PastValue));
        }
        let over_field = spec.value.fields.iter().any(|f| {
            f.kind != crate::case::FieldKind::Int
                && (f.offset as i64) < off + size
                && off < (f.offset + f.size) as i64
        });
        Ok(if over_field { Err(MapValueArgGap::OverField) } else { Ok(()) })
    }

    /// `bpf_ktime_get_coarse_ns()`: `bpf_get_helper_proto()` finds no proto in the tracing
    /// program types ("program of this type cannot use helper %s#%d"); elsewhere not modelled.
    pub(super) fn ktime_get_coarse_ns(&self, pc: usize) -> Step<Reg> {
        if NO_KTIME_COARSE.contains(&self.case.prog_type) {
            let args = [("name", "bpf_ktime_get_coarse_ns".to_string()), ("id", "160".to_string())];
            return self.reject(pc, self.msg(&self.profile.messages.helper_prog_type, &args));
        }
        Err(Stop::Unsupported(
            "helper bpf_ktime_get_coarse_ns outside kprobe, tracepoint, perf_event and raw_tracepoint programs is not modelled"
                .into(),
        ))
    }

    /// `bpf_this_cpu_ptr(percpu_ptr)`: `ARG_PTR_TO_PERCPU_BTF_ID` -> `check_reg_type()`, which
    /// refuses every register the model has that is not a per-cpu kernel pointer ("R1 type=%s
    /// expected=percpu_ptr_, percpu_rcu_ptr_, percpu_trusted_ptr_"; seen on debian:7.2 and 7.3
    /// for a map value and a `bpf_obj_new()` object, `test_spin_lock_fail` `lock_id_*`). A
    /// per-cpu object (`bpf_percpu_obj_new()`) and module kernel pointers (whose printed type
    /// depends on flags the model does not keep) are not modelled.
    pub(super) fn this_cpu_ptr(&self, st: &State, pc: usize) -> Step<Reg> {
        let r1 = self.read_reg(st, pc, 1)?;
        if let Reg::Percpu { btf_id } = r1 {
            // bpf_base_func_proto()'s CAP_PERFMON list, as bpf_per_cpu_ptr.
            if !BASE_FUNC_PROTO_TYPES.contains(&self.case.prog_type) {
                return Err(Stop::Unsupported(format!(
                    "helper bpf_this_cpu_ptr in a {} program (its get_func_proto()) is not modelled",
                    self.case.prog_type.name()
                )));
            }
            return self.percpu_ksym_ret("bpf_this_cpu_ptr", btf_id);
        }
        let refused = match &r1 {
            Reg::Alloc { percpu, non_owning, .. } => !percpu && !non_owning,
            Reg::Scalar(_) | Reg::Ctx | Reg::Stack { .. } | Reg::MapPtr { .. } | Reg::MapValue { .. } => true,
            _ => false,
        };
        if !refused {
            return Err(Stop::Unsupported(format!(
                "helper bpf_this_cpu_ptr with R1 of type {} is not modelled",
                r1.type_str()
            )));
        }
        let args = [
            ("reg", "R1".to_string()),
            ("type", r1.type_str().to_string()),
            ("expected", PERCPU_BTF_PTR_TYPES.into()),
        ];
        self.reject(pc, self.msg(&self.profile.messages.reg_type_mismatch, &args))
    }

    /// `bpf_per_cpu_ptr(percpu_ptr, cpu)` (helpers.c `bpf_per_cpu_ptr_proto`:
    /// `ARG_PTR_TO_PERCPU_BTF_ID`, `ARG_ANYTHING`, `RET_PTR_TO_MEM_OR_BTF_ID | PTR_MAYBE_NULL |
    /// MEM_RDONLY`), offered by `bpf_base_func_proto()` to a `CAP_PERFMON` loader (6.12, 7.2,
    /// 7.3 alike). R1 is checked as for `bpf_this_cpu_ptr()` (`check_reg_type()`), R2 must be
    /// readable (`check_reg_arg()`), then R0 as for `bpf_this_cpu_ptr()` with `PTR_MAYBE_NULL`
    /// and a fresh id (`check_helper_call()`: `regs[BPF_REG_0].id = ++env->id_gen`).
    pub(super) fn per_cpu_ptr(&mut self, st: &State, pc: usize) -> Step<Reg> {
        if !BASE_FUNC_PROTO_TYPES.contains(&self.case.prog_type) {
            return Err(Stop::Unsupported(format!(
                "helper bpf_per_cpu_ptr in a {} program (its get_func_proto()) is not modelled",
                self.case.prog_type.name()
            )));
        }
        let r1 = self.read_reg(st, pc, 1)?;
        let Reg::Percpu { btf_id } = r1 else {
            // check_reg_type() refuses R1 before R2 is read: the same rule as bpf_this_cpu_ptr.
            return match self.this_cpu_ptr(st, pc) {
                Err(Stop::Unsupported(_)) => Err(Stop::Unsupported(format!(
                    "helper bpf_per_cpu_ptr with R1 of type {} is not modelled",
                    r1.type_str()
                ))),
                other => other.map(|_| Reg::NotInit),
            };
        };
        self.read_reg(st, pc, 2)?;
        let Reg::Mem { size, rdonly, parent, .. } = self.percpu_ksym_ret("bpf_per_cpu_ptr", btf_id)? else {
            unreachable!("percpu_ksym_ret gives PTR_TO_MEM");
        };
        let id = self.fresh_id();
        Ok(Reg::Mem { size, rdonly, id, parent, null: true })
    }

    /// `check_helper_call()`'s `RET_PTR_TO_MEM_OR_BTF_ID` for a per-cpu `__ksym` variable of
    /// type `btf_id`: not a struct, `PTR_TO_MEM | MEM_RDONLY` of `btf_resolve_size()` bytes; a
    /// struct (`PTR_TO_BTF_ID`) is not modelled.
    fn percpu_ksym_ret(&self, name: &str, btf_id: u32) -> Step<Reg> {
        let kbtf = self.profile.kernel_btf.0.as_deref().ok_or_else(|| {
            Stop::Unsupported(format!("helper {name} without the kernel's BTF is not modelled"))
        })?;
        match kbtf.sized_type(btf_id) {
            (Some(size), false) => Ok(Reg::Mem { size, rdonly: true, id: 0, parent: 0, null: false }),
            _ => Err(Stop::Unsupported(format!(
                "helper {name} on a per-cpu variable of a struct or unsized type (PTR_TO_BTF_ID) is not modelled"
            ))),
        }
    }

    /// `bpf_get_local_storage(map, flags)` (kernel/bpf/cgroup.c `bpf_get_local_storage_proto`:
    /// `ARG_CONST_MAP_PTR`, `ARG_ANYTHING`, `RET_PTR_TO_MAP_VALUE`), offered to cgroup_skb programs
    /// by `cg_skb_func_proto()` -> `cgroup_common_func_proto()` (6.12, 7.2, 7.3 alike). After the
    /// arguments, `check_map_func_compatibility()` takes only a cgroup storage map ("cannot pass
    /// map_type %d into func %s#%d" both ways); then `check_helper_call()` wants R2 known zero
    /// ("get_local_storage() doesn't support non-zero flags", left unsupported) and R0 is a
    /// map value never NULL, with an id only when the value holds a lock (`++env->id_gen`).
    /// Modelled for cgroup_skb programs, a map pointer in R1 and a constant flags argument.
    pub(super) fn get_local_storage(&mut self, st: &mut State, pc: usize) -> Step<Reg> {
        let name = "bpf_get_local_storage";
        let unsupported =
            |what: String| Err(Stop::Unsupported(format!("helper {name}: {what} is not modelled")));
        if self.case.prog_type != ProgType::CgroupSkb {
            return unsupported("a program type other than cgroup_skb".into());
        }
        let r1 = self.read_reg(st, pc, 1)?;
        let Reg::MapPtr { map } = r1 else {
            return unsupported(format!("R1 of type {}", r1.type_str()));
        };
        let flags = match self.read_reg(st, pc, 2)? {
            Reg::Scalar(s) => s.konst(),
            _ => None,
        };
        let spec = self.map(map);
        if spec.map_type != crate::case::MapType::CgroupStorage {
            let msg = format!("cannot pass map_type {} into func {name}#81", spec.map_type.uapi());
            return self.reject(pc, msg);
        }
        if flags != Some(0) {
            return unsupported("flags other than a known 0".into());
        }
        let has_lock = spec.btf && spec.value.has_lock();
        let id = if has_lock { self.fresh_id() } else { 0 };
        Ok(Reg::MapValue { map, off: 0, var: VarOff::NONE, id, null: false })
    }
}

/// Why R1 / R2 are not the read-only map-value memory argument
/// [`Machine::map_value_read_arg`] judges.
pub(super) enum MapValueArgGap {
    /// R1 is not a map value at a constant offset (its type string).
    NotMapValue(&'static str),
    /// R2 is not a known constant of at least 1.
    Size,
    /// The map is `BPF_F_WRONLY_PROG`.
    WriteOnly,
    /// The span leaves the map value.
    PastValue,
    /// The span covers a special field.
    OverField,
}
