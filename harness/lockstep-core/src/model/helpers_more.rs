//! More helpers outside a lock: `bpf_map_update_elem` and `bpf_map_delete_elem`
//! (`check_helper_call()` -> `check_func_arg()` per argument, in order; with a lock held the gate
//! of `do_check_insn()` refuses them first, in `calls.rs`). Only the argument shapes the lock
//! programs use are modelled: anything else is `unsupported` naming the helper.

use super::exec::Machine;
use super::scalar::Scalar;
use super::state::{Reg, State};
use super::{Step, Stop};
use crate::case::MapType;

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
        // check_map_func_compatibility(): a prog_array takes no helper but bpf_tail_call; the
        // other map types' rules are not modelled.
        if !matches!(
            spec.map_type,
            MapType::Hash | MapType::Array | MapType::PercpuHash | MapType::PercpuArray | MapType::LruHash
        ) {
            return unsupported(format!("a map of type {}", spec.map_type.name()));
        }
        let update = name == "bpf_map_update_elem";
        let sizes = [(2u8, spec.key_size), (3, spec.value.size)];
        for &(r, size) in &sizes[..if update { 2 } else { 1 }] {
            match self.read_reg(st, pc, r)? {
                Reg::Stack { off, .. } if off >= -512 && off + size as i64 <= 0 => {}
                other => {
                    return unsupported(format!("R{r} of type {} (or out of the stack)", other.type_str()))
                }
            }
        }
        if update && !matches!(self.read_reg(st, pc, 4)?, Reg::Scalar(_)) {
            return unsupported("flags in R4 that are not a scalar".into());
        }
        let cur = st.cur();
        for r in 1..=5 {
            cur.regs[r] = Reg::NotInit;
        }
        cur.regs[0] = Reg::Scalar(Scalar::unknown());
        Ok(())
    }
}
