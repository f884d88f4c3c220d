//! `bpf_kptr_xchg()` into a map value's referenced or per-cpu kptr field (issue 14, items 1-2,
//! the part modelled): `check_func_arg()` -> `check_reg_type()` for R1 (`kptr_xchg_dest_types`:
//! anything else is "R1 type=... expected=...", the list longer in 7.x), `process_kptr_func()`
//! (`ARG_KPTR_XCHG_DEST`: a map value pointing exactly at a `__kptr` / `__percpu_kptr` field whose
//! pointee is a local type), R2 an owned object of that type or NULL
//! (`ARG_PTR_TO_BTF_ID_OR_NULL | OBJ_RELEASE`, `map_kptr_match_type()`: "invalid kptr access, R2
//! type=... expected=ptr_<pointee>" for a per-cpu object into a plain field or another type), then
//! `check_helper_call()`: R2's reference is released (`release_reg()`), R0 is the field's old
//! object, `PTR_TO_BTF_ID | MEM_ALLOC | PTR_MAYBE_NULL` (`| MEM_PERCPU` for a per-cpu field) with
//! an id for the NULL check and a new reference (`is_acquire_function()`). The same in 6.12, 7.2
//! and 7.3. R1 may also point into an owning allocated object (its type's record). Kernel
//! pointees: R2 NULL or a referenced pointer to the same struct, R0 a referenced
//! `PTR_TO_BTF_ID | PTR_MAYBE_NULL` ([`Machine::kptr_xchg_kernel`]). Error paths of
//! `process_kptr_func()`, a plain object into a per-cpu field on 6.12 (7.x refuses it:
//! `kptr_percpu_match`) and non-owning destinations on 6.12 (7.x lists them in
//! `kptr_xchg_dest_types`) are `unsupported`.

use super::exec::Machine;
use super::scalar::Scalar;
use super::state::{Reg, State, Trust};
use super::{Step, Stop};
use crate::case::{FieldKind, FieldTarget};

impl Machine<'_> {
    fn kptr_unsupported<T>(&self, what: &str) -> Step<T> {
        Err(Stop::Unsupported(format!("bpf_kptr_xchg with {what} is not modelled")))
    }

    /// `bpf_kptr_xchg(dst, ptr)`: the new R0 (R1-R5 are cleared by the caller).
    pub(super) fn kptr_xchg(&mut self, st: &mut State, pc: usize) -> Step<Reg> {
        let r1 = self.read_reg(st, pc, 1)?;
        if kptr_xchg_dest_refused(&r1) {
            // check_func_arg() -> check_reg_type() for ARG_KPTR_XCHG_DEST, before R2 is read.
            let args = [
                ("reg", "R1".to_string()),
                ("type", r1.type_str().to_string()),
                ("expected", self.profile.kptr_xchg_dest_types.clone()),
            ];
            return self.reject(pc, self.msg(&self.profile.messages.reg_type_mismatch, &args));
        }
        // process_kptr_func(): the record is the map's, or the allocated object's type's
        // (type_is_ptr_alloc_obj(): an owning or a non-owning object).
        let case = self.case;
        let (fields, off, var, btf) = match &r1 {
            Reg::MapValue { map, off, var, null: false, .. } => {
                let spec = self.map(*map);
                (&spec.value.fields, *off, var.get(), spec.btf)
            }
            // A non-owning one (NON_OWN_REF, a node a graph kfunc gave under a lock) where
            // kptr_xchg_dest_types lists it (7.2, 7.3: "map_value, ptr_, ptr_, rcu_ptr_"; 6.12:
            // "map_value, ptr_", left unsupported there); process_kptr_func() is then the same.
            Reg::Alloc { ty, off, null: false, percpu: false, non_owning, .. }
                if !non_owning || self.profile.kptr_xchg_dest_types.contains("rcu_ptr_") =>
            {
                (&case.types[*ty].layout.fields, *off, None, true)
            }
            _ => return self.kptr_unsupported(&format!("R1 of type {}", r1.type_str())),
        };
        let r2 = self.read_reg(st, pc, 2)?;
        let Some(at) = (match var {
            None => Some(off),
            Some(v) => v.konst().map(|c| off + c),
        }) else {
            return self.kptr_unsupported("a variable offset");
        };
        let field = fields
            .iter()
            .find(|f| matches!(f.kind, FieldKind::Kptr | FieldKind::PercpuKptr) && f.offset as i64 == at);
        let (Some(field), true) = (field, btf) else {
            return self.kptr_unsupported("R1 not at a referenced kptr field");
        };
        let percpu = field.kind == FieldKind::PercpuKptr;
        let Some(FieldTarget::Pointee(pointee)) = &field.target else {
            return self.kptr_unsupported("a kptr without a pointee");
        };
        let Some(ty) = self.local_pointee(pointee)? else {
            return self.kptr_xchg_kernel(st, pc, pointee, percpu);
        };
        match r2 {
            Reg::Scalar(s) if s.konst() == Some(0) => {}
            Reg::Alloc { ty: t2, off: 0, id, null: false, percpu: p2, non_owning: false }
                if st.refs.contains(&id) && (p2 || !percpu || self.profile.kptr_percpu_match) =>
            {
                // map_kptr_match_type(): MEM_PERCPU only for a per-cpu field, and (7.x,
                // kptr_percpu_match) exactly for one: a plain object into a per-cpu field
                // (percpu_alloc_fail's reject_plain_alloc_into_percpu_kptr) is refused too, with
                // reg_name still empty; then the strict type match (btf_struct_ids_match()).
                let reg_name = if p2 != percpu {
                    Some("")
                } else if t2 != ty {
                    Some(self.case.types[t2].name.as_str())
                } else {
                    None
                };
                if let Some(reg_name) = reg_name {
                    let msg = format!(
                        "invalid kptr access, R2 type={}{reg_name} expected=ptr_{pointee}",
                        r2.type_str()
                    );
                    return self.reject(pc, msg);
                }
                // release_reg(): the reference goes, every copy of R2 becomes invalid.
                self.release_ref(st, id);
            }
            other => return self.kptr_unsupported(&format!("R2 of type {}", other.type_str())),
        }
        let _null_id = self.fresh_id();
        let id = self.acquire_ref(st, pc);
        Ok(Reg::Alloc { ty, off: 0, id, null: true, percpu, non_owning: false })
    }

    /// `bpf_kptr_xchg()` into a field whose pointee is kernel struct `pointee`: R2 NULL, or
    /// `map_kptr_match_type()` on a `PTR_TO_BTF_ID` of the kernel's BTF (flags within
    /// `PTR_MAYBE_NULL | PTR_TRUSTED | MEM_RCU`, `MEM_PERCPU` exactly when the field is per-cpu
    /// (`kptr_percpu_match`, 7.x), which no kernel pointer the model has carries: "invalid kptr
    /// access, R2 type=... expected=ptr_<pointee>" with an empty register type name), then the
    /// strict type match.
    /// R0 is `PTR_TO_BTF_ID | PTR_MAYBE_NULL` to the pointee (no `MEM_ALLOC`: a kernel type),
    /// carrying a new reference. Other R2 (unreferenced, another struct) stay unsupported.
    fn kptr_xchg_kernel(&mut self, st: &mut State, pc: usize, pointee: &str, percpu: bool) -> Step<Reg> {
        let btf_id = self.kptr_kernel_pointee(pointee)?;
        let r2 = self.read_reg(st, pc, 2)?;
        match r2 {
            Reg::Scalar(s) if s.konst() == Some(0) => {}
            // A kernel pointer moved by a constant (check_func_arg_reg_off()) is not modelled.
            Reg::Kernel { off, .. } if off != 0 => {
                return self.kptr_unsupported("a kernel pointee and R2 at a non-zero offset");
            }
            // check_reg_type() lets a trusted / RCU / plain PTR_TO_BTF_ID through to
            // map_kptr_match_type() (PTR_UNTRUSTED meets its type list first: not modelled).
            Reg::Kernel { null: false, trust, .. }
                if percpu && trust != Trust::Untrusted && self.profile.kptr_percpu_match =>
            {
                let msg = format!("invalid kptr access, R2 type={} expected=ptr_{pointee}", r2.type_str());
                return self.reject(pc, msg);
            }
            Reg::Kernel { btf_id: b2, ref_obj_id, null: false, .. }
                if b2 == btf_id && ref_obj_id != 0 && st.refs.contains(&ref_obj_id) =>
            {
                // release_reg(): the reference and every register carrying it go.
                st.refs.retain(|r| *r != ref_obj_id);
                st.for_each_reg(|r| {
                    if matches!(r, Reg::Kernel { ref_obj_id: i, .. } if *i == ref_obj_id) {
                        *r = Reg::Scalar(Scalar::unknown());
                    }
                });
            }
            other => {
                return self
                    .kptr_unsupported(&format!("a kernel pointee and R2 of type {}", other.type_str()))
            }
        }
        let _null_id = self.fresh_id();
        let id = self.acquire_ref(st, pc);
        Ok(Reg::Kernel { off: 0, btf_id, id, ref_obj_id: id, null: true, trust: Trust::Legacy })
    }
}

/// Whether `check_reg_type()` refuses `r1` as `bpf_kptr_xchg()`'s destination
/// (`kptr_xchg_dest_types`: a map value or an allocated object, never `PTR_MAYBE_NULL` or
/// `MEM_PERCPU`). Kernel pointers (`BtfPtr`, whose flags the model does not keep) are left to the
/// caller.
fn kptr_xchg_dest_refused(r1: &Reg) -> bool {
    match r1 {
        Reg::Scalar(_)
        | Reg::Ctx
        | Reg::Stack { .. }
        | Reg::MapPtr { .. }
        | Reg::MapKey { .. }
        | Reg::Func { .. }
        | Reg::Sock { .. }
        | Reg::Arena
        | Reg::Packet { .. }
        // An iterator's `_next` memory (rdonly_mem, no parent reference).
        | Reg::Mem { rdonly: true, parent: 0, null: false, .. } => true,
        Reg::MapValue { null, .. } => *null,
        Reg::Alloc { null, percpu, .. } => *null || *percpu,
        // A kfunc's PTR_TO_MEM and a kptr-loaded local object: not modelled (left to the caller).
        Reg::NotInit
        | Reg::BtfPtr { .. }
        | Reg::Kernel { .. }
        | Reg::Mem { .. }
        | Reg::AllocRcu { .. }
        | Reg::AllocVar { .. }
        | Reg::Percpu { .. } => false,
    }
}
