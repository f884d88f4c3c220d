//! Loads through a map pointer and through kernel (`PTR_TO_BTF_ID`) pointers (issue 14, items
//! 1 and 5): verifier.c's `check_ptr_to_map_access()` and `check_ptr_to_btf_access()`, both
//! typing the loaded register by `btf_struct_access()` over the kernel's BTF
//! ([`crate::kernel_btf::KernelBtf::struct_access`], `docs/kernel-btf.md`). The messages and the
//! walk are the same in 6.12, 7.2 and 7.3.
//!
//! Modelled: reads giving a scalar; a pointer member read through a map pointer (a plain
//! `PTR_TO_BTF_ID`) or through a non-null `PTR_TO_BTF_ID` of a non-sleepable program, typed as
//! `check_ptr_to_btf_access()` types it (`BTF_TYPE_SAFE_TRUSTED` -> `PTR_TRUSTED`, an untrusted
//! parent or a union walk -> `PTR_UNTRUSTED`, `BTF_TYPE_SAFE_RCU` -> `MEM_RCU`, others the legacy
//! `PTR_TO_BTF_ID`); writes (refused as the kernel refuses them). Left unsupported, each named:
//! maybe-null results (`__rcu` tags, `*_OR_NULL` lists), `bpf_rcu_read_unlock()` while a
//! `MEM_RCU` pointer is live (its invalidation differs by kernel), `__user` / `__percpu`
//! members, pointers to non-structs (`PTR_TO_MEM`), sleepable programs' walks, and program types
//! with their own `btf_struct_access` (tc, XDP).

use super::exec::Machine;
use super::scalar::Scalar;
use super::state::{Reg, Trust};
use super::{Step, Stop};
use crate::case::{MapType, ProgType};
use crate::kernel_btf::{KernelBtf, Walk};

/// The struct a map type's `ops->map_btf_id` names (arraymap.c, hashtab.c, arena.c); None for
/// the map types the model does not map (their structs are left unsupported).
pub(crate) fn map_btf_struct(t: MapType) -> Option<&'static str> {
    match t {
        MapType::Array | MapType::PercpuArray | MapType::ProgArray | MapType::ArrayOfMaps => {
            Some("bpf_array")
        }
        MapType::Hash | MapType::PercpuHash | MapType::LruHash | MapType::HashOfMaps => Some("bpf_htab"),
        MapType::Arena => Some("bpf_arena"),
        _ => None,
    }
}

impl Machine<'_> {
    fn kernel_btf_for(&self, what: &str) -> Step<&KernelBtf> {
        self.profile.kernel_btf.0.as_deref().ok_or_else(|| {
            Stop::Unsupported(format!(
                "{what} needs the kernel's BTF, which profile {} was not given",
                self.profile.name
            ))
        })
    }

    /// `check_mem_access()` on `CONST_PTR_TO_MAP`: `check_ptr_to_map_access()`.
    pub(super) fn map_ptr_access(
        &self,
        pc: usize,
        regno: u8,
        map: usize,
        off: i64,
        size: u8,
        write: bool,
    ) -> Step<Reg> {
        let spec = self.map(map);
        let sname = map_btf_struct(spec.map_type).ok_or_else(|| {
            Stop::Unsupported(format!(
                "memory access through map_ptr of a {:?} map (its map_btf_id) is not modelled",
                spec.map_type
            ))
        })?;
        let k = self.kernel_btf_for("memory access through map_ptr")?;
        let id = k.struct_id(sname).ok_or_else(|| {
            Stop::Unsupported(format!("struct {sname} is not in the kernel BTF ({})", k.source))
        })?;
        if off < 0 {
            return self.reject(pc, format!("R{regno} is {sname} invalid negative access: off={off}"));
        }
        if write {
            return self.reject(pc, format!("only read from {sname} is supported"));
        }
        match k.struct_access(id, off as u32, size as u32) {
            Err(msg) => self.reject(pc, msg),
            Ok(Walk::Scalar) => Ok(Reg::Scalar(Scalar::of_size(size))),
            // mark_btf_ld_reg(.., flag): the walk's own flags only (no trust).
            Ok(Walk::Ptr { btf_id, flags, .. }) if flags.tag.is_none() => {
                let trust = if flags.untrusted { Trust::Untrusted } else { Trust::Legacy };
                Ok(Reg::Kernel { off: 0, btf_id, id: 0, ref_obj_id: 0, null: false, trust })
            }
            Ok(w) => {
                Err(Stop::Unsupported(format!("a load of {w:?} through map_ptr ({sname}) is not modelled")))
            }
        }
    }

    /// `check_mem_access()` on a non-null `PTR_TO_BTF_ID` of a kernel struct:
    /// `check_ptr_to_btf_access()` (`off`: the instruction's plus the register's constant offset;
    /// `rcu_cs`: `in_rcu_cs()` at the access).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn btf_ptr_access(
        &self,
        pc: usize,
        regno: u8,
        btf_id: u32,
        trust: Trust,
        referenced: bool,
        off: i64,
        size: u8,
        write: bool,
        rcu_cs: bool,
    ) -> Step<Reg> {
        let k = self.kernel_btf_for("memory access through a kernel pointer")?;
        let tname = k.name_of(btf_id).to_string();
        // check_ptr_to_btf_access(): the licence before anything of the access (license.rs).
        self.btf_access_license(pc, &tname)?;
        if off < 0 {
            return self.reject(pc, format!("R{regno} is ptr_{tname} invalid negative access: off={off}"));
        }
        if write && self.case.prog_type == ProgType::StructOps {
            return self.struct_ops_write(btf_id, trust, off, size);
        }
        if write {
            // Only tc and XDP programs have ops->btf_struct_access (filter.c); for the others
            // both arms refuse a write to a kernel struct.
            if matches!(self.case.prog_type, ProgType::SchedCls | ProgType::Xdp) {
                return Err(Stop::Unsupported(format!(
                    "a store through {} of a {:?} program (ops->btf_struct_access) is not modelled",
                    trust.type_str(false),
                    self.case.prog_type
                )));
            }
            return self.reject(pc, "only read is supported".into());
        }
        let (target, field, flags) = match k.struct_access(btf_id, off as u32, size as u32) {
            Err(msg) => return self.reject(pc, msg),
            Ok(Walk::Scalar) => return Ok(Reg::Scalar(Scalar::of_size(size))),
            Ok(Walk::Ptr { btf_id, field, flags }) => (btf_id, field, flags),
            Ok(Walk::PtrToMem) => {
                return Err(Stop::Unsupported(format!(
                    "a load of a pointer to a non-struct member of struct {tname} (PTR_TO_MEM | PTR_UNTRUSTED) is not modelled"
                )))
            }
            Ok(Walk::Unmodelled(why)) => {
                return Err(Stop::Unsupported(format!("a load through struct {tname}: {why} is not modelled")))
            }
        };
        let unsupported = |why: &str| {
            Err(Stop::Unsupported(format!("the pointer {tname}.{field} ({why}) is not modelled")))
        };
        if flags.tag.is_some_and(|t| t != "rcu") {
            return unsupported("a __user / __percpu member");
        }
        // The `__safe_trusted` / `__safe_trusted_or_null` lists (BTF_TYPE_SAFE_TRUSTED*), which
        // check_ptr_to_btf_access() asks first inside and outside in_rcu_cs(): Ok(None) when the
        // member is on neither, Err(why) where the model stops.
        let safe_trusted = || -> Result<Option<Trust>, &'static str> {
            if k.nested_type_is_trusted(btf_id, &field, target, "__safe_trusted") {
                if flags.untrusted || flags.tag.is_some() {
                    return Err("a trusted member with other flags");
                }
                return Ok(Some(Trust::Trusted));
            }
            if k.nested_type_is_trusted(btf_id, &field, target, "__safe_trusted_or_null") {
                return Err("PTR_TRUSTED | PTR_MAYBE_NULL");
            }
            Ok(None)
        };
        let trust = match trust {
            Trust::Untrusted => Trust::Untrusted,
            // is_trusted_reg() || is_rcu_reg(), outside in_rcu_cs():
            // check_ptr_to_btf_access() outside in_rcu_cs() (a sleepable program, no RCU read
            // lock nor spin lock held; sleep.rs): a `__safe_trusted` member stays PTR_TRUSTED,
            // any other pointer is "aggressively" PTR_UNTRUSTED (`flag = PTR_UNTRUSTED`, its
            // tags and the union walk's flags dropped). The same in 6.12, 7.2 and 7.3; what
            // in_rcu_cs() counts differs (profile sleep.rcu_cs_all_regions).
            t if !rcu_cs && (referenced || matches!(t, Trust::Trusted | Trust::Rcu)) => {
                match safe_trusted() {
                    Err(why) => return unsupported(why),
                    Ok(Some(t)) => t,
                    Ok(None) => Trust::Untrusted,
                }
            }
            // is_trusted_reg() || is_rcu_reg(), inside in_rcu_cs().
            t if referenced || matches!(t, Trust::Trusted | Trust::Rcu) => {
                if self.case.sleepable {
                    return unsupported(
                        "walked in a sleepable program inside an RCU critical section: in_rcu_cs()",
                    );
                }
                match safe_trusted() {
                    Err(why) => return unsupported(why),
                    Ok(Some(t)) => t,
                    Ok(None) if k.nested_type_is_trusted(btf_id, &field, target, "__safe_rcu") => {
                        // in_rcu_cs() (a non-sleepable program) and a non-null parent: MEM_RCU
                        // (an `__rcu` tag ignored). rcu.rs leaves bpf_rcu_read_unlock()
                        // unsupported while such a pointer is live.
                        if flags.untrusted {
                            return unsupported("MEM_RCU after a union walk");
                        }
                        Trust::Rcu
                    }
                    Ok(None)
                        if flags.tag == Some("rcu")
                            || k.nested_type_is_trusted(btf_id, &field, target, "__safe_rcu_or_null") =>
                    {
                        // "__rcu tagged pointers can be NULL": MEM_RCU | PTR_MAYBE_NULL, an id
                        // for its NULL check given by the load (Machine::number_loaded_ptr).
                        // Judged in struct_ops programs (never sleepable here, structops.rs),
                        // where it was measured (bpf_qdisc_fq's skb->sk, `__safe_rcu_or_null`).
                        if self.case.prog_type == ProgType::StructOps && !flags.untrusted {
                            return Ok(Reg::Kernel {
                                off: 0,
                                btf_id: target,
                                id: 0,
                                ref_obj_id: 0,
                                null: true,
                                trust: Trust::Rcu,
                            });
                        }
                        return unsupported("MEM_RCU | PTR_MAYBE_NULL");
                    }
                    // clear_trusted_flags() leaves the union walk's PTR_UNTRUSTED.
                    Ok(None) if flags.untrusted => Trust::Untrusted,
                    Ok(None) => Trust::Legacy,
                }
            }
            // Old compat: clear_trusted_flags(), an `__rcu` tag dropped with MEM_RCU.
            _ if flags.untrusted => Trust::Untrusted,
            _ => Trust::Legacy,
        };
        Ok(Reg::Kernel { off: 0, btf_id: target, id: 0, ref_obj_id: 0, null: false, trust })
    }
}
