//! The rbtree graph API under its lock (issue 14, item 2): `bpf_rbtree_first`,
//! `bpf_rbtree_remove`, `bpf_rbtree_root/left/right` (7.x) and the argument checks of
//! `bpf_rbtree_add(_impl)`. From kernel/bpf/verifier.c: `check_kfunc_args()`
//! (`KF_ARG_PTR_TO_RB_ROOT` / `_RB_NODE`), `__process_kf_arg_ptr_to_graph_root()` with
//! `check_reg_allocation_locked()` ("bpf_spin_lock at off=N must be held for bpf_rb_root"),
//! `__process_kf_arg_ptr_to_graph_node()` (the `__contains` type and node offset) and
//! `mark_reg_graph_node()` for what remove / first / root / left / right return (remove:
//! `KF_ACQUIRE`, an owning node; the others a non-owning one).
//!
//! `bpf_rbtree_add`'s `less` callback is walked (`push_callback_call()` with
//! `set_rbtree_add_callback_state()`); in it (`in_rbtree_lock_required_cb()`) lock calls and
//! remove / left / right are refused. 6.12 names arguments by index (`arg#1`), has only `bpf_rbtree_add_impl`,
//! `_remove` and `_first`, and its remove takes only a non-owning node ("rbtree_remove node
//! input must be non-owning ref"); its NULL and reference lines are left unsupported.

use super::exec::{Flow, Machine};
use super::graph::{GraphRoot, RootKind};
use super::scalar::Scalar;
use super::state::{Frame, Reg, State};
use super::{Step, Stop};
use crate::insn::{BPF_CALL, BPF_JMP, BPF_PSEUDO_KFUNC_CALL};

/// States kept per `bpf_rbtree_add` call before the model gives up on convergence.
const MAX_ADD_CHECKPOINTS: usize = 32;

/// The deepest call chain the verifier allows (`MAX_CALL_FRAMES`).
const MAX_CALL_FRAMES: usize = 8;

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

impl Machine<'_> {
    fn rb_unsupported<T>(&self, what: &str) -> Step<T> {
        Err(Stop::Unsupported(format!("{what} (rbtree API) is not modelled")))
    }

    /// `check_kfunc_call()` for an rbtree kfunc.
    pub(super) fn rbtree_call(&mut self, st: &mut State, pc: usize, name: &str, k: RbKfunc) -> Step<Flow> {
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
    fn rbtree_call_args(&mut self, st: &mut State, pc: usize, name: &str, k: RbKfunc) -> Step<Flow> {
        let root = self.graph_root_arg(st, pc, RootKind::RbRoot)?;
        let r0 = match k {
            RbKfunc::Add { implied } => return self.rbtree_add(st, pc, name, &root, implied),
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
        Ok(Flow::Next(pc + 1))
    }

    /// `bpf_rbtree_add(_impl)` after its root: the node (R2), the `less` callback (R3), then
    /// `push_callback_call()` with `set_rbtree_add_callback_state()` (R1 and R2 non-owning nodes of
    /// the root's `__contains` type, R3-R5 not initialised; the state is the caller's before the
    /// call's effects), then `ref_convert_owning_non_owning()` of the node in the caller. The
    /// callback comes back to the call as for `bpf_loop` (`callback_walk.rs`).
    fn rbtree_add(
        &mut self,
        st: &mut State,
        pc: usize,
        name: &str,
        root: &GraphRoot,
        implied: bool,
    ) -> Step<Flow> {
        let id = self.rb_node_arg(st, pc, name, root, true)?;
        let Reg::Func { start } = st.cur_ref().regs[3] else {
            return self
                .rb_unsupported(&format!("a less callback R3 of type {}", st.cur_ref().regs[3].type_str()));
        };
        if !implied && !matches!(&st.cur_ref().regs[5], Reg::Scalar(s) if s.konst().is_some()) {
            return self.rb_unsupported("an add whose off is not a known constant");
        }
        // is_state_visited() at the call (as callback_walk.rs keys it).
        let mut key = st.clone();
        key.pc = pc;
        key.cur().regs[0] = Reg::NotInit;
        let seen = self.iter_seen.entry_or_default(pc);
        if seen.contains(&key) {
            return Ok(Flow::Done);
        }
        if seen.len() >= MAX_ADD_CHECKPOINTS {
            return self.rb_unsupported("a less callback whose states did not converge");
        }
        seen.push(key);
        if st.frames.len() >= MAX_CALL_FRAMES {
            return self.rb_unsupported("a less callback deeper than MAX_CALL_FRAMES");
        }
        let sub = self.subprogs.iter().position(|s| *s == start).unwrap_or(0);
        self.callback_subprogs.insert(sub);
        let mut callback = st.clone();
        let mut frame = Frame::new(callback.frames.len(), sub, pc);
        let node = Reg::Alloc {
            ty: root.ty,
            off: root.node_off,
            id: 0,
            null: false,
            percpu: false,
            non_owning: true,
        };
        frame.regs[1] = node.clone();
        frame.regs[2] = node;
        callback.frames.push(frame);
        callback.pc = start;
        // ref_convert_owning_non_owning(), as after a list push.
        st.refs.retain(|r| *r != id);
        st.for_each_reg(|r| {
            if let Reg::Alloc { id: i, non_owning, .. } = r {
                if *i == id {
                    *i = 0;
                    *non_owning = true;
                }
            }
        });
        self.clobber(st, Reg::Scalar(Scalar::unknown()));
        Ok(Flow::Branch(pc + 1, callback))
    }

    /// `in_rbtree_lock_required_cb()`: whether a frame of `st` was entered from a
    /// `bpf_rbtree_add(_impl)` call (its `less` callback).
    pub(super) fn in_rbtree_cb(&self, st: &State) -> bool {
        st.frames.iter().skip(1).any(|f| self.is_rbtree_add_call(f.callsite))
    }

    /// Whether instruction `pc` is a kfunc call to `bpf_rbtree_add(_impl)`.
    pub(super) fn is_rbtree_add_call(&self, pc: usize) -> bool {
        let p = &self.case.program;
        p.insns.get(pc).is_some_and(|i| i.code == (BPF_JMP | BPF_CALL) && i.src == BPF_PSEUDO_KFUNC_CALL)
            && matches!(p.call_name(pc), Some("bpf_rbtree_add" | "bpf_rbtree_add_impl"))
    }

    /// R2: `KF_ARG_PTR_TO_RB_NODE` (`add`: an owned allocated object; remove / left / right: a
    /// non-owning or referenced node), then `__process_kf_arg_ptr_to_graph_node()`.
    fn rb_node_arg(&self, st: &State, pc: usize, name: &str, root: &GraphRoot, add: bool) -> Step<u32> {
        let r2 = st.cur_ref().regs[2].clone();
        if r2.maybe_null() {
            return self.reject(pc, "Possibly NULL pointer passed to trusted R2".into());
        }
        let (ty, off, id, non_owning) = match &r2 {
            Reg::Alloc { ty, off, id, percpu: false, non_owning, .. } => (*ty, *off, *id, *non_owning),
            Reg::MapValue { .. } if add => {
                return self.reject(pc, "R2 expected pointer to allocated object".into())
            }
            // A non-NULL scalar (a node invalidated at an unlock) is neither non-owning nor
            // referenced: the 7.x line (7.3's rbtree_fail.c *_release_unlock_escape).
            Reg::Scalar(v) if !add && self.profile.res_spin_lock && v.konst() != Some(0) => {
                return self.reject(
                    pc,
                    format!("{name} can only take non-owning or refcounted bpf_rb_node pointer"),
                );
            }
            // A kptr-loaded local object after the RCU section ended (MEM_ALLOC | PTR_UNTRUSTED):
            // type_is_non_owning_ref() is false for an untrusted pointer, and it has no reference
            // (7.2, 7.3; 6.12 has no such loads).
            Reg::AllocRcu { untrusted: true, .. } if !add && self.profile.res_spin_lock => {
                return self.reject(
                    pc,
                    format!("{name} can only take non-owning or refcounted bpf_rb_node pointer"),
                );
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
        if !add && self.in_rbtree_cb(st) {
            let what = if self.profile.res_spin_lock { name } else { "rbtree_remove" };
            return self.reject(pc, format!("{what} not allowed in rbtree cb"));
        }
        self.graph_node_at(pc, RootKind::RbRoot, root, ty, off)?;
        Ok(id)
    }
}
