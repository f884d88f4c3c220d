//! The linked-list graph API under its lock (issue 14, item 3): `bpf_list_push_front/back`
//! (and `_impl`), `bpf_list_pop_front/back`, `bpf_list_front/back`. From kernel/bpf/verifier.c:
//! `check_kfunc_args()` (`KF_ARG_PTR_TO_LIST_HEAD` / `_LIST_NODE`),
//! `__process_kf_arg_ptr_to_graph_root()` with `check_reg_allocation_locked()` ("bpf_spin_lock at
//! off=N must be held for bpf_list_head"), `__process_kf_arg_ptr_to_graph_node()` (the
//! `__contains` type and node offset), `ref_convert_owning_non_owning()` after a push,
//! `mark_reg_graph_node()` for what pop / front / back return and `invalidate_non_owning_refs()`
//! at every unlock. The same in 6.12, 7.2 and 7.3 except some argument messages (`R2` in 7.x,
//! `arg#1` in 6.12; 6.12's NULL and reference lines are `unsupported`) and `bpf_list_front/back`
//! and the non-`_impl` push names, which only 7.x has. The rbtree kfuncs are in `rbtree.rs`.

use super::alloc::ALLOC_LOCK_OWNER;
use super::exec::Machine;
use super::scalar::Scalar;
use super::state::{Reg, State};
use super::{Step, Stop};
use crate::case::{FieldKind, FieldTarget, ValueLayout};

/// A list kfunc of this module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GraphKfunc {
    /// `bpf_list_push_front/back` (`implied`: the `KF_IMPLICIT_ARGS` name, 7.x) or `_impl`.
    Push { implied: bool },
    /// `bpf_list_pop_front/back`: `KF_ACQUIRE | KF_RET_NULL`, an owning node.
    Pop,
    /// `bpf_list_front/back` (7.x): `KF_RET_NULL`, a non-owning node.
    Peek,
    /// `bpf_list_add(head, new, prev__nonown_allowed)` (7.2, 7.3; `KF_IMPLICIT_ARGS`): a push
    /// after `prev` (`is_bpf_list_push_kfunc()`), R0 an integer.
    Add,
    /// `bpf_list_del(head, node__nonown_allowed)` (7.2, 7.3): `KF_ACQUIRE | KF_RET_NULL`, an
    /// owning node, as a pop.
    Del,
    /// `bpf_list_is_first/is_last(head, node__nonown_allowed)` (7.2, 7.3): R0 an integer (bool).
    IsEdge,
    /// `bpf_list_empty(head)` (7.2, 7.3): R0 an integer (bool).
    Empty,
}

impl GraphKfunc {
    /// The list kfunc `name` is.
    pub(crate) fn of(name: &str) -> Option<GraphKfunc> {
        Some(match name {
            "bpf_list_push_front" | "bpf_list_push_back" => GraphKfunc::Push { implied: true },
            "bpf_list_push_front_impl" | "bpf_list_push_back_impl" => GraphKfunc::Push { implied: false },
            "bpf_list_pop_front" | "bpf_list_pop_back" => GraphKfunc::Pop,
            "bpf_list_front" | "bpf_list_back" => GraphKfunc::Peek,
            "bpf_list_add" => GraphKfunc::Add,
            "bpf_list_del" => GraphKfunc::Del,
            "bpf_list_is_first" | "bpf_list_is_last" => GraphKfunc::IsEdge,
            "bpf_list_empty" => GraphKfunc::Empty,
            _ => return None,
        })
    }
}

/// `invalidate_non_owning_refs()`: every non-owning reference becomes an unknown scalar
/// (`mark_reg_invalid()` with allow_ptr_leaks).
pub(crate) fn invalidate_non_owning(st: &mut State) {
    st.for_each_reg(|r| {
        if matches!(
            r,
            Reg::Alloc { non_owning: true, .. } | Reg::AllocRcu { non_owning: true, untrusted: false, .. }
        ) {
            *r = Reg::Scalar(Scalar::unknown());
        }
    });
}

/// Whether byte `off` lies in a field of `layout` the import read (elsewhere an array or nested
/// struct may hold fields the model does not know).
pub(super) fn covered(layout: &ValueLayout, off: i64) -> bool {
    layout.fields.iter().any(|f| f.offset as i64 <= off && off < f.offset as i64 + f.size as i64)
}

/// The graph root (list head or rbtree root) a call works on: the type and node offset its
/// `__contains` names.
pub(super) struct GraphRoot {
    /// Index of the contained type in `Case::types`.
    pub(super) ty: usize,
    /// The node's offset in it (`graph_root.node_offset`).
    pub(super) node_off: i64,
}

/// Which graph root a kfunc's R1 is (`KF_ARG_PTR_TO_LIST_HEAD` / `KF_ARG_PTR_TO_RB_ROOT`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum RootKind {
    ListHead,
    RbRoot,
}

impl RootKind {
    fn field(self) -> FieldKind {
        match self {
            RootKind::ListHead => FieldKind::ListHead,
            RootKind::RbRoot => FieldKind::RbRoot,
        }
    }

    /// The kernel's type name in messages.
    fn c_name(self) -> &'static str {
        match self {
            RootKind::ListHead => "bpf_list_head",
            RootKind::RbRoot => "bpf_rb_root",
        }
    }

    /// What an `unsupported` reason calls it.
    fn what(self) -> &'static str {
        match self {
            RootKind::ListHead => "a list head",
            RootKind::RbRoot => "an rbtree root",
        }
    }

    fn unsupported<T>(self, why: &str) -> Step<T> {
        Err(Stop::Unsupported(format!("{} {why} ({}) is not modelled", self.what(), self.api())))
    }

    /// What an `unsupported` reason calls the API.
    fn api(self) -> &'static str {
        match self {
            RootKind::ListHead => "graph API",
            RootKind::RbRoot => "rbtree API",
        }
    }

    /// The node field of this root's graph.
    fn node_field(self) -> FieldKind {
        match self {
            RootKind::ListHead => FieldKind::ListNode,
            RootKind::RbRoot => FieldKind::RbNode,
        }
    }

    /// The kernel's node type name in messages.
    fn node_c_name(self) -> &'static str {
        match self {
            RootKind::ListHead => "bpf_list_node",
            RootKind::RbRoot => "bpf_rb_node",
        }
    }

    /// What an `unsupported` reason calls a node.
    fn node_what(self) -> &'static str {
        match self {
            RootKind::ListHead => "a list node",
            RootKind::RbRoot => "an rbtree node",
        }
    }
}

impl Machine<'_> {
    fn graph_unsupported<T>(&self, what: &str) -> Step<T> {
        Err(Stop::Unsupported(format!("{what} (graph API) is not modelled")))
    }

    /// `check_kfunc_call()` for a list kfunc.
    pub(super) fn graph_call(&mut self, st: &mut State, pc: usize, name: &str, k: GraphKfunc) -> Step<()> {
        let x7 = self.profile.res_spin_lock;
        // bpf_list_add/del/is_first/is_last/empty are in 6.12's absent_kfuncs (its helpers.c has
        // none of them), so only 7.x reaches them here.
        if !x7 && matches!(k, GraphKfunc::Peek | GraphKfunc::Push { implied: true }) {
            return Err(Stop::Unsupported(format!("kfunc {name} does not exist in {}", self.profile.name)));
        }
        if x7 {
            return self.graph_call_args(st, pc, k);
        }
        // 6.12's check_kfunc_args() names arguments by index and checks NULL only for
        // KF_TRUSTED_ARGS kfuncs: its lines that differ are left unsupported; "R2 expected pointer
        // to allocated object" is "arg#1 ..." there (seen on debian:6.12).
        match self.graph_call_args(st, pc, k) {
            Err(Stop::Reject(at, m)) if m == "R2 expected pointer to allocated object" => {
                Err(Stop::Reject(at, "arg#1 expected pointer to allocated object".into()))
            }
            Err(Stop::Reject(_, m))
                if m.starts_with("Possibly NULL") || m.starts_with("allocated object must be referenced") =>
            {
                self.graph_unsupported(&format!("6.12's line for \"{m}\""))
            }
            other => other,
        }
    }

    /// [`Machine::graph_call`]'s argument checks and effects, with the 7.x lines.
    fn graph_call_args(&mut self, st: &mut State, pc: usize, k: GraphKfunc) -> Step<()> {
        let head = self.graph_root_arg(st, pc, RootKind::ListHead)?;
        let r0 = match k {
            GraphKfunc::Push { .. } | GraphKfunc::Add => {
                let id = self.list_node_arg(st, pc, &head, 2, false)?;
                if k == (GraphKfunc::Push { implied: false })
                    && !matches!(&st.cur_ref().regs[4], Reg::Scalar(s) if s.konst().is_some())
                {
                    return self.graph_unsupported("a push whose off__k is not a known constant");
                }
                if k == GraphKfunc::Add {
                    // prev__nonown_allowed: KF_ARG_PTR_TO_LIST_NODE, after `new` (check_kfunc_args()
                    // takes the arguments in order).
                    self.list_node_arg(st, pc, &head, 3, true)?;
                }
                // ref_convert_owning_non_owning(): the reference goes (release_reference_nomark())
                // and each register holding the node keeps pointing at it, non-owning, id 0.
                st.refs.retain(|r| *r != id);
                st.for_each_reg(|r| {
                    if let Reg::Alloc { id: i, non_owning, .. } = r {
                        if *i == id {
                            *i = 0;
                            *non_owning = true;
                        }
                    }
                });
                Reg::Scalar(Scalar::unknown())
            }
            GraphKfunc::Pop | GraphKfunc::Del => {
                if k == GraphKfunc::Del {
                    // The node stays where it is: bpf_list_del() is no release kfunc.
                    self.list_node_arg(st, pc, &head, 2, true)?;
                }
                // mark_reg_graph_node(), then PTR_MAYBE_NULL with id = ++id_gen, then
                // acquire_reference(): R0 carries the reference's id.
                self.fresh_id();
                let id = self.acquire_ref(st, pc);
                Reg::Alloc {
                    ty: head.ty,
                    off: head.node_off,
                    id,
                    null: true,
                    percpu: false,
                    non_owning: false,
                }
            }
            GraphKfunc::IsEdge | GraphKfunc::Empty => {
                if k == GraphKfunc::IsEdge {
                    self.list_node_arg(st, pc, &head, 2, true)?;
                }
                // check_kfunc_call(): a scalar return type is mark_reg_unknown() (bool too).
                Reg::Scalar(Scalar::unknown())
            }
            GraphKfunc::Peek => {
                // ref_set_non_owning() on the maybe-null node (its id for the NULL check).
                let id = self.fresh_id();
                Reg::Alloc {
                    ty: head.ty,
                    off: head.node_off,
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

    /// R1 of a graph kfunc: `KF_ARG_PTR_TO_LIST_HEAD` / `KF_ARG_PTR_TO_RB_ROOT` (a map value or an
    /// owned allocated object), then `__process_kf_arg_ptr_to_graph_root()`.
    pub(super) fn graph_root_arg(&self, st: &State, pc: usize, kind: RootKind) -> Step<GraphRoot> {
        let c_name = kind.c_name();
        let r1 = st.cur_ref().regs[1].clone();
        if r1.maybe_null() {
            return self.reject(pc, "Possibly NULL pointer passed to trusted R1".into());
        }
        let (layout, lock, off): (&ValueLayout, (usize, u32), i64) = match &r1 {
            // __check_func_arg_reg_off() -> __check_ptr_off_reg(), before the head checks.
            Reg::AllocVar { .. } => return self.alloc_var_kfunc_arg(st, pc, &r1),
            Reg::MapValue { map, off, var, id, .. } => {
                let spec = self.map(*map);
                if !spec.btf {
                    return kind.unsupported("in a map without BTF");
                }
                let Some(total) = (match var.get() {
                    None => Some(*off),
                    Some(v) => v.konst().map(|c| off + c),
                }) else {
                    return self.reject(
                        pc,
                        format!("R1 doesn't have constant offset. {c_name} has to be at the constant offset"),
                    );
                };
                (&spec.value, (*map, *id), total)
            }
            Reg::Alloc { ty, off, id, non_owning: false, percpu: false, .. } if st.refs.contains(id) => {
                (&self.case.types[*ty].layout, (ALLOC_LOCK_OWNER, *id), *off)
            }
            other => return kind.unsupported(&format!("argument of type {}", other.type_str())),
        };
        let Some(field) = layout.fields.iter().find(|f| f.kind == kind.field() && f.offset as i64 == off)
        else {
            if !covered(layout, off) {
                // An array of heads, a nested struct: btf.c finds fields there the import skips.
                return kind.unsupported("at an offset the import did not read");
            }
            return self.reject(pc, format!("{c_name} not found at offset={off}"));
        };
        let spin_lock_off = layout.field_of(FieldKind::SpinLock).map_or(-1, |f| f.offset as i64);
        // check_reg_allocation_locked(): a lock with this (ptr, id), of any kind.
        if !st.locks.iter().any(|l| (l.map, l.id) == lock) {
            if st.locks.is_empty() {
                return self
                    .reject(pc, format!("bpf_spin_lock at off={spin_lock_off} must be held for {c_name}"));
            }
            return match kind {
                RootKind::ListHead => {
                    self.reject(pc, "held lock and object are not in the same allocation".into())
                }
                RootKind::RbRoot => kind.unsupported("under another lock"),
            };
        }
        let Some(FieldTarget::Contains { type_name, node }) = &field.target else {
            return kind.unsupported("without __contains");
        };
        let Some(ty) = self.case.types.iter().position(|t| &t.name == type_name) else {
            return kind.unsupported("whose __contains type was not read");
        };
        let Some(n) = self.case.types[ty].layout.fields.iter().find(|f| &f.name == node) else {
            return kind.unsupported("whose __contains node was not read");
        };
        Ok(GraphRoot { ty, node_off: n.offset as i64 })
    }

    /// A list node argument in `reg` (R2 of a push, R2 / R3 of the 7.x list kfuncs):
    /// `KF_ARG_PTR_TO_LIST_NODE` (an owned allocated object; with `nonown_allowed`, the
    /// `__nonown_allowed` suffix, also a non-owning reference that holds no reference), then
    /// `__process_kf_arg_ptr_to_graph_node()`. Returns the node's reference id (0 for a
    /// non-owning node).
    fn list_node_arg(
        &self,
        st: &State,
        pc: usize,
        head: &GraphRoot,
        reg: u8,
        nonown_allowed: bool,
    ) -> Step<u32> {
        let r = st.cur_ref().regs[reg as usize].clone();
        if r.maybe_null() {
            return self.reject(pc, format!("Possibly NULL pointer passed to trusted R{reg}"));
        }
        let (ty, off, id) = match &r {
            // __check_func_arg_reg_off() -> __check_ptr_off_reg(), before the node checks.
            Reg::AllocVar { .. } => return self.alloc_var_kfunc_arg(st, pc, &r),
            // check_kfunc_args(): type_is_non_owning_ref() && !reg_is_referenced() -> check_ok.
            Reg::Alloc { ty, off, id, non_owning: true, percpu: false, .. }
                if nonown_allowed && !st.refs.contains(id) =>
            {
                (*ty, *off, None)
            }
            Reg::Alloc { non_owning: true, .. } | Reg::MapValue { .. } => {
                return self.reject(pc, format!("R{reg} expected pointer to allocated object"))
            }
            Reg::Alloc { ty, off, id, percpu: false, .. } => (*ty, *off, Some(*id)),
            other => {
                return self.graph_unsupported(&format!("a list node argument of type {}", other.type_str()))
            }
        };
        if id.is_some_and(|id| !st.refs.contains(&id)) {
            return self.reject(pc, "allocated object must be referenced".into());
        }
        self.graph_node_at(pc, RootKind::ListHead, head, ty, off)?;
        Ok(id.unwrap_or(0))
    }
}

impl Machine<'_> {
    /// The tail of `__process_kf_arg_ptr_to_graph_node()`, lists and rbtrees alike: the node
    /// argument at offset `off` of the allocated type `ty` must be a `kind` node field, and the
    /// very node `root`'s `__contains` names (same type, same offset).
    pub(super) fn graph_node_at(
        &self,
        pc: usize,
        kind: RootKind,
        root: &GraphRoot,
        ty: usize,
        off: i64,
    ) -> Step<()> {
        let t = &self.case.types[ty];
        let node = kind.node_c_name();
        if !t.layout.fields.iter().any(|f| f.kind == kind.node_field() && f.offset as i64 == off) {
            if !covered(&t.layout, off) {
                return Err(Stop::Unsupported(format!(
                    "{} at an offset the import did not read ({}) is not modelled",
                    kind.node_what(),
                    kind.api()
                )));
            }
            return self.reject(pc, format!("{node} not found at offset={off}"));
        }
        let want = &self.case.types[root.ty].name;
        if ty != root.ty {
            return self.reject(
                pc,
                format!(
                    "operation on {} expects arg#1 {node} at offset={} in struct {want}, but arg is at offset={off} in struct {}",
                    kind.c_name(),
                    root.node_off,
                    t.name
                ),
            );
        }
        if off != root.node_off {
            return self.reject(
                pc,
                format!(
                    "arg#1 offset={off}, but expected {node} at offset={} in struct {want}",
                    root.node_off
                ),
            );
        }
        Ok(())
    }
}
