//! The rbtree graph API under its lock (issue 14, item 2): `bpf_rbtree_first`,
//! `bpf_rbtree_remove`, `bpf_rbtree_root/left/right` (7.x) and the argument checks of
//! `bpf_rbtree_add(_impl)`. From kernel/bpf/verifier.c: `check_kfunc_args()`
//! (`KF_ARG_PTR_TO_RB_ROOT` / `_RB_NODE`), `__process_kf_arg_ptr_to_graph_root()` with
//! `check_reg_allocation_locked()` ("bpf_spin_lock at off=N must be held for bpf_rb_root"),
//! `__process_kf_arg_ptr_to_graph_node()` (the `__contains` type and node offset) and
//! `mark_reg_graph_node()` for what remove / first / root / left / right return (remove:
//! `KF_ACQUIRE`, an owning node; the others a non-owning one).
//!
//! `bpf_rbtree_add`'s `less` callback (`push_callback_call()` with
//! `set_rbtree_add_callback_state()`) is not walked: an add whose arguments pass is
//! `unsupported`. 6.12 names arguments by index (`arg#1`), has only `bpf_rbtree_add_impl`,
//! `_remove` and `_first`, and its remove takes only a non-owning node ("rbtree_remove node
//! input must be non-owning ref"); its NULL and reference lines are left unsupported.

use super::alloc::ALLOC_LOCK_OWNER;
use super::exec::Machine;
use super::graph::covered;
use super::state::{Reg, State};
use super::{Step, Stop};
use crate::case::{FieldKind, FieldTarget, ValueLayout};

/// An rbtree kfunc of this module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RbKfunc {
    /// `bpf_rbtree_add` (`implied`: the `KF_IMPLICIT_ARGS` name, 7.x) or `bpf_rbtree_add_impl`.
    Add { implied: bool },
    /// `bpf_rbtree_remove`: `KF_ACQUIRE | KF_RET_NULL`, an owning node.
    Remove,
    /// `bpf_rbtree_first` and 7.x's `bpf_rbtree_root`: `KF_RET_NULL`, a non-owning node.
    Peek { x7_only: bool },
    /// `bpf_rbtree_left/right` (7.x): a node argument, `KF_RET_NULL`, a non-owning node.
    Child,
}

impl RbKfunc {
    /// The rbtree kfunc `name` is.
    pub(crate) fn of(name: &str) -> Option<RbKfunc> {
        Some(match name {
            "bpf_rbtree_add" => RbKfunc::Add { implied: true },
            "bpf_rbtree_add_impl" => RbKfunc::Add { implied: false },
            "bpf_rbtree_remove" => RbKfunc::Remove,
            "bpf_rbtree_first" => RbKfunc::Peek { x7_only: false },
            "bpf_rbtree_root" => RbKfunc::Peek { x7_only: true },
            "bpf_rbtree_left" | "bpf_rbtree_right" => RbKfunc::Child,
            _ => return None,
        })
    }

    fn x7_only(self) -> bool {
        matches!(self, RbKfunc::Add { implied: true } | RbKfunc::Peek { x7_only: true } | RbKfunc::Child)
    }
}

/// The tree root a call works on: the type and node offset its `__contains` names.
struct Root {
    /// Index of the contained type in `Case::types`.
    ty: usize,
    /// The node's offset in it (`graph_root.node_offset`).
    node_off: i64,
}

impl Machine<'_> {
    fn rb_unsupported<T>(&self, what: &str) -> Step<T> {
        Err(Stop::Unsupported(format!("{what} (rbtree API) is not modelled")))
    }

    /// `check_kfunc_call()` for an rbtree kfunc.
    pub(super) fn rbtree_call(&mut self, st: &mut State, pc: usize, name: &str, k: RbKfunc) -> Step<()> {
        let x7 = self.profile.res_spin_lock;
        if !x7 && k.x7_only() {
            return Err(Stop::Unsupported(format!("kfunc {name} does not exist in {}", self.profile.name)));
        }
        if x7 {
            return self.rbtree_call_args(st, pc, name, k);
        }
        // 6.12 (seen in its verifier.c): "arg#1" for "R2"; its NULL and reference lines differ.
        match self.rbtree_call_args(st, pc, name, k) {
            Err(Stop::Reject(at, m)) if m == "R2 expected pointer to allocated object" => {
                Err(Stop::Reject(at, "arg#1 expected pointer to allocated object".into()))
            }
            Err(Stop::Reject(_, m))
                if m.starts_with("Possibly NULL") || m.starts_with("allocated object must be referenced") =>
            {
                self.rb_unsupported(&format!("6.12's line for \"{m}\""))
            }
            other => other,
        }
    }

    /// [`Machine::rbtree_call`]'s argument checks and effects, with the 7.x lines.
    fn rbtree_call_args(&mut self, st: &mut State, pc: usize, name: &str, k: RbKfunc) -> Step<()> {
        let root = self.rb_root_arg(st, pc)?;
        let r0 = match k {
            RbKfunc::Add { .. } => {
                self.rb_node_arg(st, pc, name, &root, true)?;
                return self
                    .rb_unsupported("the less callback of bpf_rbtree_add (set_rbtree_add_callback_state())");
            }
            RbKfunc::Remove => {
                self.rb_node_arg(st, pc, name, &root, false)?;
                // mark_reg_graph_node(), PTR_MAYBE_NULL with id = ++id_gen, then
                // acquire_reference(): R0 carries the reference's id.
                self.fresh_id();
                let id = self.acquire_ref(st, pc);
                Reg::Alloc {
                    ty: root.ty,
                    off: root.node_off,
                    id,
                    null: true,
                    percpu: false,
                    non_owning: false,
                }
            }
            RbKfunc::Peek { .. } | RbKfunc::Child => {
                if k == RbKfunc::Child {
                    self.rb_node_arg(st, pc, name, &root, false)?;
                }
                // ref_set_non_owning() on the maybe-null node (its id for the NULL check).
                let id = self.fresh_id();
                Reg::Alloc {
                    ty: root.ty,
                    off: root.node_off,
                    id,
                    null: true,
                    percpu: false,
                    non_owning: true,
                }
            }
        };
        let cur = st.cur();
        for r in 1..=5 {
            cur.regs[r] = Reg::NotInit;
        }
        cur.regs[0] = r0;
        Ok(())
    }

    /// R1: `KF_ARG_PTR_TO_RB_ROOT` (a map value or an owned allocated object), then
    /// `__process_kf_arg_ptr_to_graph_root()`.
    fn rb_root_arg(&self, st: &State, pc: usize) -> Step<Root> {
        let r1 = st.cur_ref().regs[1].clone();
        if r1.maybe_null() {
            return self.reject(pc, "Possibly NULL pointer passed to trusted R1".into());
        }
        let (layout, lock, off): (&ValueLayout, (usize, u32), i64) = match &r1 {
            Reg::MapValue { map, off, var, id, .. } => {
                let spec = self.map(*map);
                if !spec.btf {
                    return self.rb_unsupported("an rbtree root in a map without BTF");
                }
                let Some(total) = (match var {
                    None => Some(*off),
                    Some(v) => v.konst().map(|c| off + c),
                }) else {
                    return self.reject(
                        pc,
                        "R1 doesn't have constant offset. bpf_rb_root has to be at the constant offset"
                            .into(),
                    );
                };
                (&spec.value, (*map, *id), total)
            }
            Reg::Alloc { ty, off, id, non_owning: false, percpu: false, .. } if st.refs.contains(id) => {
                (&self.case.types[*ty].layout, (ALLOC_LOCK_OWNER, *id), *off)
            }
            other => {
                return self.rb_unsupported(&format!("an rbtree root argument of type {}", other.type_str()))
            }
        };
        let Some(field) =
            layout.fields.iter().find(|f| f.kind == FieldKind::RbRoot && f.offset as i64 == off)
        else {
            if !covered(layout, off) {
                return self.rb_unsupported("an rbtree root at an offset the import did not read");
            }
            return self.reject(pc, format!("bpf_rb_root not found at offset={off}"));
        };
        let spin_lock_off = layout.field_of(FieldKind::SpinLock).map_or(-1, |f| f.offset as i64);
        // check_reg_allocation_locked(): a lock with this (ptr, id), of any kind.
        if !st.locks.iter().any(|l| (l.map, l.id) == lock) {
            if !st.locks.is_empty() {
                return self.rb_unsupported("an rbtree root under another lock");
            }
            return self
                .reject(pc, format!("bpf_spin_lock at off={spin_lock_off} must be held for bpf_rb_root"));
        }
        let Some(FieldTarget::Contains { type_name, node }) = &field.target else {
            return self.rb_unsupported("an rbtree root without __contains");
        };
        let Some(ty) = self.case.types.iter().position(|t| &t.name == type_name) else {
            return self.rb_unsupported("an rbtree root whose __contains type was not read");
        };
        let Some(n) = self.case.types[ty].layout.fields.iter().find(|f| &f.name == node) else {
            return self.rb_unsupported("an rbtree root whose __contains node was not read");
        };
        Ok(Root { ty, node_off: n.offset as i64 })
    }

    /// R2: `KF_ARG_PTR_TO_RB_NODE` (`add`: an owned allocated object; remove / left / right: a
    /// non-owning or referenced node), then `__process_kf_arg_ptr_to_graph_node()`.
    fn rb_node_arg(&self, st: &State, pc: usize, name: &str, root: &Root, add: bool) -> Step<()> {
        let r2 = st.cur_ref().regs[2].clone();
        if r2.maybe_null() {
            return self.reject(pc, "Possibly NULL pointer passed to trusted R2".into());
        }
        let (ty, off, id, non_owning) = match &r2 {
            Reg::Alloc { ty, off, id, percpu: false, non_owning, .. } => (*ty, *off, *id, *non_owning),
            Reg::MapValue { .. } if add => {
                return self.reject(pc, "R2 expected pointer to allocated object".into())
            }
            other => {
                return self.rb_unsupported(&format!("an rbtree node argument of type {}", other.type_str()))
            }
        };
        let referenced = !non_owning && st.refs.contains(&id);
        if add {
            if non_owning {
                return self.reject(pc, "R2 expected pointer to allocated object".into());
            }
            if !referenced {
                return self.reject(pc, "allocated object must be referenced".into());
            }
        } else if !self.profile.res_spin_lock {
            // 6.12: remove takes only a non-owning node.
            if !non_owning {
                return self.reject(pc, "rbtree_remove node input must be non-owning ref".into());
            }
        } else if !non_owning && !referenced {
            return self
                .reject(pc, format!("{name} can only take non-owning or refcounted bpf_rb_node pointer"));
        }
        let t = &self.case.types[ty];
        if !t.layout.fields.iter().any(|f| f.kind == FieldKind::RbNode && f.offset as i64 == off) {
            if !covered(&t.layout, off) {
                return self.rb_unsupported("an rbtree node at an offset the import did not read");
            }
            return self.reject(pc, format!("bpf_rb_node not found at offset={off}"));
        }
        let want = &self.case.types[root.ty].name;
        if ty != root.ty {
            return self.reject(
                pc,
                format!(
                    "operation on bpf_rb_root expects arg#1 bpf_rb_node at offset={} in struct {want}, but arg is at offset={off} in struct {}",
                    root.node_off, t.name
                ),
            );
        }
        if off != root.node_off {
            return self.reject(
                pc,
                format!(
                    "arg#1 offset={off}, but expected bpf_rb_node at offset={} in struct {want}",
                    root.node_off
                ),
            );
        }
        Ok(())
    }
}
