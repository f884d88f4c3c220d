//! More helpers outside a lock: `bpf_map_update_elem`, `bpf_map_delete_elem` and
//! `bpf_probe_read_kernel` (`check_helper_call()` -> `check_func_arg()` per argument, in order;
//! with a lock held the gate
//! of `do_check_insn()` refuses them first, in `calls.rs`). Only the argument shapes the lock
//! programs use are modelled: anything else is `unsupported` naming the helper.

use super::exec::Machine;
use super::scalar::Scalar;
use super::state::{Reg, StackByte, State};
use super::{Step, Stop};
use crate::case::ProgType;

impl Machine<'_> {
    /// `bpf_map_update_elem(map, key, value, flags)` / `bpf_map_delete_elem(map, key)`:
    /// `ARG_CONST_MAP_PTR` (anything but a map pointer: "R1 type=... expected=map_ptr"),
    /// `ARG_PTR_TO_MAP_KEY` and `ARG_PTR_TO_MAP_VALUE` as stack pointers with the whole key /
    /// value inside the stack (lockstep loads as root: `allow_uninit_stack`, so the bytes need
    /// not be written), `ARG_ANYTHING` flags. R0 is an unknown scalar, R1-R5 are cleared.
    pub(super) fn map_update_delete(&mut self, st: &mut State, pc: usize, name: &str) -> Step<()> {
        let unsupported =
            |what: String| Err(Stop::Unsupported(format!("helper {name}: {what} is not modelled")));
        let r1 = self.read_reg(st, pc, 1)?;
        let Reg::MapPtr { map } = r1 else {
            let args = [("reg", "R1".into()), ("type", r1.type_str().into()), ("expected", "map_ptr".into())];
            return self.reject(pc, self.msg(&self.profile.messages.reg_type_mismatch, &args));
        };
        let spec = self.map(map);
        if super::sock::is_sock_map(spec.map_type) {
            return unsupported(format!(
                "a {} map (resolve_map_arg_type(), may_update_sockmap())",
                spec.map_type.name()
            ));
        }
        let update = name == "bpf_map_update_elem";
        let sizes = [(2u8, spec.key_size), (3, spec.value.size)];
        for &(r, size) in &sizes[..if update { 2 } else { 1 }] {
            match self.read_reg(st, pc, r)? {
                Reg::Stack { off, .. } if off >= -512 && off + size as i64 <= 0 => {}
                // ARG_PTR_TO_MAP_KEY with a PTR_TO_MAP_KEY (a timer or for_each callback's key):
                // in map_key_value_types (check_reg_type()), then check_helper_mem_access() ->
                // check_mem_region_access() reads the target map's key_size bytes within the
                // register's own map's key (6.12, 7.2, 7.3 alike; the register has no offset).
                // A key too small for the target map is refused with a message not modelled.
                Reg::MapKey { map: own } if r == 2 && size <= self.map(own).key_size => {}
                other => {
                    return unsupported(format!("R{r} of type {} (or out of the stack)", other.type_str()))
                }
            }
        }
        if update && !matches!(self.read_reg(st, pc, 4)?, Reg::Scalar(_)) {
            return unsupported("flags in R4 that are not a scalar".into());
        }
        // check_map_func_compatibility(), after the arguments: prog_array, cgroup and sk storage
        // take their own helpers only.
        let id = if update { 2 } else { 3 };
        if let Some(msg) = super::map_compat::map_func_incompatible(spec.map_type, name, id) {
            return self.reject(pc, msg);
        }
        let cur = st.cur();
        for r in 1..=5 {
            cur.regs[r] = Reg::NotInit;
        }
        cur.regs[0] = Reg::Scalar(Scalar::unknown());
        Ok(())
    }

    /// `bpf_probe_read_kernel(dst, size, unsafe_ptr)`: `ARG_PTR_TO_UNINIT_MEM` + `ARG_CONST_SIZE_OR_ZERO`
    /// (`check_helper_mem_access()` marks the bytes written: `STACK_MISC`, spills in them gone),
    /// `ARG_ANYTHING`. Modelled for a stack buffer wholly inside the stack and a constant size
    /// of at least 1, in sched_cls, kprobe, tracing and syscall programs (where debian:6.12, 7.2 and
    /// 7.3 were asked); a trusted kernel pointer as `dst` is refused (`kmem_arg.rs`); a buffer past
    /// the stack is refused with a message that differs between kernels
    /// ("invalid indirect access to stack" in 6.12, "invalid write to stack" in 7.x): not modelled.
    pub(super) fn probe_read_kernel(&mut self, st: &mut State, pc: usize) -> Step<()> {
        let name = "bpf_probe_read_kernel";
        let unsupported =
            |what: &str| Err(Stop::Unsupported(format!("helper {name}: {what} is not modelled")));
        // Tracing programs (fentry / tp_btf): bpf_tracing_func_proto() gives the same proto
        // (task_kfunc_failure's tp_btf programs read `&task->pid` with it on debian:7.3).
        // Syscall programs: syscall_prog_func_proto() -> tracing_prog_func_proto() (6.12, 7.2,
        // 7.3), the same proto (task_kfunc_success test_task_xchg_release on debian:7.3).
        if !matches!(
            self.case.prog_type,
            ProgType::SchedCls | ProgType::Kprobe | ProgType::Tracing | ProgType::Syscall
        ) {
            return unsupported("a program type other than sched_cls, kprobe, tracing and syscall");
        }
        let r1 = self.read_reg(st, pc, 1)?;
        if matches!(r1, Reg::Kernel { .. }) {
            // ARG_PTR_TO_UNINIT_MEM is not MEM_RDONLY: a trusted kernel pointer is refused
            // (kmem_arg.rs), others are not in mem_types.
            self.kernel_mem_arg_type(pc, 1, &r1, name, false)?;
            return unsupported("a kernel pointer destination");
        }
        let Reg::Stack { frame, off } = r1 else {
            return unsupported("a destination other than a stack pointer");
        };
        let size = match self.read_reg(st, pc, 2)? {
            Reg::Scalar(s) => s.konst().filter(|k| *k >= 1),
            _ => None,
        };
        let Some(size) = size else {
            return unsupported("a size that is not a known constant of at least 1");
        };
        if off < -512 || off + size > 0 {
            return unsupported("a buffer past the stack");
        }
        if st.iter_overlaps(frame, off, size) {
            return unsupported("a buffer over an iterator's stack slot");
        }
        self.read_reg(st, pc, 3)?;
        let stack = &mut st.frames[frame].stack;
        let first = off.div_euclid(8) * 8;
        for slot in (first..off + size).step_by(8) {
            if stack.spills.remove(&slot).is_some() {
                for b in slot..slot + 8 {
                    if stack.bytes.get(&b) == Some(&StackByte::Spill) {
                        stack.bytes.insert(b, StackByte::Misc);
                    }
                }
            }
        }
        for b in off..off + size {
            stack.bytes.insert(b, StackByte::Misc);
        }
        let cur = st.cur();
        for r in 1..=5 {
            cur.regs[r] = Reg::NotInit;
        }
        cur.regs[0] = Reg::Scalar(Scalar::unknown());
        Ok(())
    }
}
