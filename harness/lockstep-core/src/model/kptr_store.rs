//! Stores into a map value's kptr field (issue 14, item 1): `check_mem_access()` ->
//! `check_map_kptr_access()` after `check_map_access()` found a well-formed 8-byte access at the
//! field. The same in 6.12, 7.2 and 7.3: only `BPF_MEM` mode; no store at all into a referenced
//! (`__kptr`) or per-cpu (`__percpu_kptr`) field; into an unreferenced (`__kptr_untrusted`) one a
//! `BPF_ST` of 0 or a `BPF_STX` of a NULL register. A load of a field whose pointee is a kernel
//! struct gives `PTR_TO_BTF_ID | PTR_MAYBE_NULL` with `MEM_RCU` or `PTR_UNTRUSTED`
//! (`btf_ld_kptr_type()`, see [`Machine::kptr_field_load`]); a referenced field whose pointee
//! is a local type gives `MEM_ALLOC | MEM_RCU` in an RCU section ([`Reg::AllocRcu`]); other
//! loads of local pointees, loads of per-cpu pointees and `BPF_STX` of a pointer into an
//! unreferenced field (`map_kptr_match_type()`) are `unsupported`.

use super::exec::Machine;
use super::state::{Reg, State, Trust};
use super::{Step, Stop};
use crate::case::{FieldKind, FieldTarget, MapSpec};
use crate::insn::*;

impl Machine<'_> {
    /// `check_map_kptr_access()` for the store at `pc` of `value` into the kptr field at offset
    /// `at` of a value of `spec` (`Ok(())`: the store is allowed).
    pub(super) fn kptr_field_store(&self, pc: usize, spec: &MapSpec, at: u32, value: &Reg) -> Step<()> {
        let unsupported = |what: &str| {
            Err(Stop::Unsupported(format!(
                "{what} into the kptr field at offset {at} (check_map_kptr_access) is not modelled"
            )))
        };
        let Some(insn) = self.case.program.insns.get(pc).copied() else {
            return unsupported("a store");
        };
        if insn.mode() != BPF_MEM {
            // Atomics reach check_mem_access() twice (a read, then a write): not modelled.
            return unsupported("an atomic");
        }
        let Some(field) = spec.value.fields.iter().find(|f| f.offset == at && f.kind.is_kptr()) else {
            return unsupported("a store");
        };
        match field.kind {
            FieldKind::Kptr | FieldKind::PercpuKptr => {
                self.reject(pc, "store to referenced kptr disallowed".to_string())
            }
            _ if insn.class() == BPF_ST && insn.imm != 0 => {
                self.reject(pc, format!("BPF_ST imm must be 0 when storing to kptr at off={at}"))
            }
            _ if insn.class() == BPF_ST => Ok(()),
            // register_is_null(): a known-zero scalar passes without a type match.
            _ if matches!(value, Reg::Scalar(s) if s.konst() == Some(0)) => Ok(()),
            _ => unsupported("a BPF_STX of a value that is not NULL (map_kptr_match_type)"),
        }
    }

    /// `check_map_kptr_access()` for a `BPF_LDX` at `pc` of the kptr field at offset `at` of a
    /// value of `spec`: `mark_btf_ld_reg(PTR_TO_BTF_ID, btf_ld_kptr_type())`. The loaded
    /// register is `PTR_MAYBE_NULL` (its id, `++env->id_gen`, is given by the caller:
    /// `number_loaded_ptr()`); `btf_ld_kptr_type()` adds `MEM_RCU` when the field is
    /// `rcu_safe_kptr()` (a referenced kptr to a struct of `rcu_protected_types`, or a per-cpu
    /// kptr) and `in_rcu_cs()`, else `PTR_UNTRUSTED`. Only kernel pointees are modelled (a local
    /// pointee would be `MEM_ALLOC`, with `NON_OWN_REF` for graph nodes; a per-cpu one
    /// `MEM_PERCPU`); a profile without `kptr_rcu_types` (6.12) leaves loads unsupported.
    pub(super) fn kptr_field_load(&self, st: &State, pc: usize, spec: &MapSpec, at: u32) -> Step<Reg> {
        let unsupported = |what: &str| {
            Err(Stop::Unsupported(format!(
                "load of the kptr field at offset {at} (check_map_kptr_access) {what} is not modelled"
            )))
        };
        let Some(insn) = self.case.program.insns.get(pc).copied() else {
            return unsupported("outside the program");
        };
        if insn.mode() != BPF_MEM {
            return unsupported("with a mode other than BPF_MEM");
        }
        let Some(field) = spec.value.fields.iter().find(|f| f.offset == at && f.kind.is_kptr()) else {
            return unsupported("of an unknown field");
        };
        let Some(FieldTarget::Pointee(pointee)) = &field.target else {
            return unsupported("of a kptr without a pointee");
        };
        if self.profile.kptr_rcu_types.is_empty() {
            return unsupported(&format!("on profile {}", self.profile.name));
        }
        if field.kind == FieldKind::PercpuKptr {
            return unsupported("of a per-cpu kptr (MEM_PERCPU)");
        }
        if let Some(ty) = self.local_pointee(pointee)? {
            // btf_ld_kptr_type() (7.2 and 7.3 alike): rcu_protected_object() holds for every
            // program-BTF type, so a referenced kptr loaded in_rcu_cs() is `MEM_RCU | MEM_ALLOC`,
            // with `NON_OWN_REF` when the pointee's record has a graph node
            // (kptr_pointee_btf_record()). Outside the RCU section (PTR_UNTRUSTED without
            // MEM_ALLOC) and an unreferenced kptr stay unsupported.
            if field.kind != FieldKind::Kptr || !self.in_rcu_cs(st) {
                return unsupported(&format!(
                    "of a local type {pointee} outside an RCU section (PTR_UNTRUSTED)"
                ));
            }
            let non_owning = self.case.types[ty]
                .layout
                .fields
                .iter()
                .any(|f| matches!(f.kind, FieldKind::ListNode | FieldKind::RbNode));
            return Ok(Reg::AllocRcu { ty, id: 0, null: true, non_owning, untrusted: false });
        }
        let btf_id = self.kptr_kernel_pointee(pointee)?;
        // rcu_safe_kptr(): BPF_KPTR_REF to a rcu_protected_object(); BPF_KPTR_UNREF never.
        let rcu_safe =
            field.kind == FieldKind::Kptr && self.profile.kptr_rcu_types.iter().any(|t| t == pointee);
        // In a sleepable program in_rcu_cs() holds inside bpf_rcu_read_lock(), a spin lock and
        // (7.3, profile sleep.rcu_cs_all_regions) a non-preemptible or IRQ-disabled region; the
        // end of each that leaves it turns the MEM_RCU pointer untrusted
        // (invalidate_rcu_protected_refs(): rcu.rs, calls.rs's spin unlock, irq.rs), which
        // task_kfunc_failure's `acquire_after_*` programs then pass to bpf_task_acquire().
        let trust = if rcu_safe && self.in_rcu_cs(st) { Trust::Rcu } else { Trust::Untrusted };
        Ok(Reg::Kernel { off: 0, btf_id, id: 0, ref_obj_id: 0, null: true, trust })
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_fixtures::verdicts_on_all_profiles;
    use crate::asm::{assemble, Symbols};
    use crate::case::{Case, Field, FieldKind, FieldTarget, MapSpec, MapType, ProgType, ValueLayout};
    use crate::verdict::{Verdict, VerdictKind};

    fn kptr_map(kind: FieldKind) -> MapSpec {
        let ptr = FieldTarget::Pointee("task_struct".into());
        MapSpec {
            inner: None,
            name: "m".into(),
            map_type: MapType::Array,
            key_size: 4,
            max_entries: 1,
            value: ValueLayout {
                size: 16,
                fields: vec![
                    Field { name: "cnt".into(), kind: FieldKind::Int, offset: 0, size: 8, target: None },
                    Field { name: "ptr".into(), kind, offset: 8, size: 8, target: Some(ptr) },
                ],
            },
            btf: true,
            global_section: false,
            flags: 0,
        }
    }

    fn verdicts(store: &str, kind: FieldKind) -> Vec<(String, Verdict)> {
        let text = format!(
            "r1 = 0\n *(u32 *)(r10 - 4) = r1\n r2 = r10\n r2 += -4\n r1 = m ll\n \
             call bpf_map_lookup_elem\n if r0 == 0 goto out\n {store}\n out:\n r0 = 0\n exit"
        );
        let symbols = Symbols { maps: vec!["m".into()], kfuncs: vec![] };
        let program = assemble(&text, &symbols).expect("test program assembles");
        let c = Case { maps: vec![kptr_map(kind)], ..Case::new("t", ProgType::SchedCls, program, &text) };
        verdicts_on_all_profiles(&c)
    }

    #[test]
    fn no_store_into_a_referenced_or_percpu_kptr() {
        for kind in [FieldKind::Kptr, FieldKind::PercpuKptr] {
            for store in ["*(u64 *)(r0 + 8) = 0", "r1 = 0\n *(u64 *)(r0 + 8) = r1"] {
                for (p, v) in verdicts(store, kind) {
                    let pc = if store.starts_with('r') { 9 } else { 8 };
                    assert_eq!(v, Verdict::reject(Some(pc), "store to referenced kptr disallowed"), "{p}");
                }
            }
        }
    }

    #[test]
    fn an_unreferenced_kptr_takes_null_only_from_the_model() {
        for store in ["*(u64 *)(r0 + 8) = 0", "r1 = 0\n *(u64 *)(r0 + 8) = r1"] {
            for (p, v) in verdicts(store, FieldKind::KptrUntrusted) {
                assert_eq!(v.verdict, VerdictKind::Accept, "{store} on {p}: {v:?}");
            }
        }
        for (p, v) in verdicts("*(u64 *)(r0 + 8) = 1", FieldKind::KptrUntrusted) {
            assert_eq!(
                v,
                Verdict::reject(Some(8), "BPF_ST imm must be 0 when storing to kptr at off=8"),
                "{p}"
            );
        }
        // A pointer needs map_kptr_match_type(): not modelled.
        for (p, v) in verdicts("*(u64 *)(r0 + 8) = r10", FieldKind::KptrUntrusted) {
            assert_eq!(v.verdict, VerdictKind::Unsupported, "{p}: {v:?}");
        }
    }
}
