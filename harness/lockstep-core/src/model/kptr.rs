//! `bpf_kptr_xchg()` into a map value's referenced kptr field (issue 14, item 2, the part
//! modelled): `check_func_arg()` -> `process_kptr_func()` for R1 (`ARG_KPTR_XCHG_DEST`: a map
//! value pointing exactly at a `__kptr` field whose pointee is a local type), R2 an owned object
//! of that type or NULL (`ARG_PTR_TO_BTF_ID_OR_NULL | OBJ_RELEASE`), then `check_helper_call()`:
//! R2's reference is released (`release_reg()`), R0 is the field's old object,
//! `PTR_TO_BTF_ID | MEM_ALLOC | PTR_MAYBE_NULL` with an id for the NULL check and a new
//! reference (`is_acquire_function()`). The same in 6.12, 7.2 and 7.3. Error paths, kernel
//! pointees, per-cpu kptrs, kptrs inside allocated objects and kptr loads
//! (`check_map_kptr_access()`) are `unsupported`.

use super::exec::Machine;
use super::state::{Reg, State};
use super::{Step, Stop};
use crate::case::{FieldKind, FieldTarget};

impl Machine<'_> {
    fn kptr_unsupported<T>(&self, what: &str) -> Step<T> {
        Err(Stop::Unsupported(format!("bpf_kptr_xchg with {what} is not modelled")))
    }

    /// `bpf_kptr_xchg(dst, ptr)`: the new R0 (R1-R5 are cleared by the caller).
    pub(super) fn kptr_xchg(&mut self, st: &mut State, pc: usize) -> Step<Reg> {
        let r1 = self.read_reg(st, pc, 1)?;
        let r2 = self.read_reg(st, pc, 2)?;
        let Reg::MapValue { map, off, var, null: false, .. } = r1 else {
            return self.kptr_unsupported(&format!("R1 of type {}", r1.type_str()));
        };
        let spec = self.map(map);
        let Some(at) = (match var {
            None => Some(off),
            Some(v) => v.konst().map(|c| off + c),
        }) else {
            return self.kptr_unsupported("a variable offset");
        };
        let field = spec.value.fields.iter().find(|f| f.kind == FieldKind::Kptr && f.offset as i64 == at);
        let (Some(field), true) = (field, spec.btf) else {
            return self.kptr_unsupported("R1 not at a referenced kptr field");
        };
        let Some(FieldTarget::Pointee(pointee)) = &field.target else {
            return self.kptr_unsupported("a kptr without a pointee");
        };
        let Some(ty) = self.case.types.iter().position(|t| &t.name == pointee) else {
            return self.kptr_unsupported("a kernel pointee type");
        };
        match r2 {
            Reg::Scalar(s) if s.konst() == Some(0) => {}
            Reg::Alloc { ty: t2, off: 0, id, null: false, percpu: false, non_owning: false }
                if t2 == ty && st.refs.contains(&id) =>
            {
                // release_reg(): the reference goes, every copy of R2 becomes invalid.
                self.release_ref(st, id);
            }
            other => return self.kptr_unsupported(&format!("R2 of type {}", other.type_str())),
        }
        let _null_id = self.fresh_id();
        let id = self.acquire_ref(st, pc);
        Ok(Reg::Alloc { ty, off: 0, id, null: true, percpu: false, non_owning: false })
    }
}
