//! Allocated objects (issue 14, item 1): `bpf_obj_new()` / `bpf_percpu_obj_new()` and their
//! `_impl` forms, `bpf_obj_drop()` / `bpf_percpu_obj_drop()`, `bpf_refcount_acquire()`, the
//! `PTR_TO_BTF_ID | MEM_ALLOC` pointer they return ([`Reg::Alloc`]), loads and stores through it
//! (`check_ptr_to_btf_access()` -> `btf_struct_access()`), a `bpf_spin_lock` inside an allocated
//! object (`process_spin_lock()`: the lock is the object's reference id, its owner the program
//! BTF), and the references they take (`acquire_reference()`) and leave (`check_reference_leak()`).
//!
//! The rules are those of kernel/bpf/verifier.c and btf.c in the 6.12, 7.2 and 7.3 sources. The
//! argument messages of `check_kfunc_args()` name registers (`R1`) in 7.x and arguments (`arg#0`)
//! in 6.12; the model gives the 7.x ones and says `unsupported` for those paths on 6.12. The
//! non-`_impl` names (`KF_IMPLICIT_ARGS`) exist only in 7.x.

use super::exec::Machine;
use super::scalar::Scalar;
use super::state::{ActiveLock, LockKind, Reg, State};
use super::{Rule, Step, Stop};
use crate::case::{FieldKind, ProgType};

/// The lock owner of a `bpf_spin_lock` inside an allocated object (`process_spin_lock()`:
/// `ptr = reg->btf`, the program BTF), in [`super::ActiveLock::map`]'s place.
pub(crate) const ALLOC_LOCK_OWNER: usize = usize::MAX;

/// `BPF_GLOBAL_PERCPU_MA_MAX_SIZE` (include/linux/bpf_mem_alloc.h in 6.12 / 7.x: 512).
const PERCPU_MAX_SIZE: u32 = 512;

/// An allocation kfunc of this module, by the name the program calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AllocKfunc {
    /// `bpf_obj_new_impl` / `bpf_obj_new` (`percpu`: `bpf_percpu_obj_new*`).
    New { percpu: bool },
    /// `bpf_obj_drop_impl` / `bpf_obj_drop` (`percpu`: `bpf_percpu_obj_drop*`).
    Drop { percpu: bool },
    /// `bpf_refcount_acquire_impl` / `bpf_refcount_acquire`.
    RefcountAcquire,
}

impl AllocKfunc {
    /// The kfunc `name` is, and whether it is an `_impl` form.
    pub(crate) fn of(name: &str) -> Option<(AllocKfunc, bool)> {
        let (base, implied) = match name.strip_suffix("_impl") {
            Some(b) => (b, true),
            None => (name, false),
        };
        let k = match base {
            "bpf_obj_new" => AllocKfunc::New { percpu: false },
            "bpf_percpu_obj_new" => AllocKfunc::New { percpu: true },
            "bpf_obj_drop" => AllocKfunc::Drop { percpu: false },
            "bpf_percpu_obj_drop" => AllocKfunc::Drop { percpu: true },
            "bpf_refcount_acquire" => AllocKfunc::RefcountAcquire,
            _ => return None,
        };
        Some((k, implied))
    }
}

/// Whether `check_kfunc_call()` applies its NMI-unsafe field check to `bpf_obj_drop()` /
/// `bpf_percpu_obj_drop()` in a program of this type: `is_tracing_prog_type()`, and
/// `BPF_PROG_TYPE_TRACING` unless it is sleepable and not an iterator (`obj_drop()`).
/// `btf_field_is_nmi_safe()` (include/linux/bpf.h, the same in 7.2 and 7.3) for the fields a
/// local type's record holds; integers are no field of the record.
fn nmi_safe(k: FieldKind) -> bool {
    match k {
        FieldKind::Int
        | FieldKind::SpinLock
        | FieldKind::ResSpinLock
        | FieldKind::Timer
        | FieldKind::Wq
        | FieldKind::KptrUntrusted
        | FieldKind::Refcount => true,
        FieldKind::ListHead
        | FieldKind::ListNode
        | FieldKind::RbRoot
        | FieldKind::RbNode
        | FieldKind::Kptr
        | FieldKind::PercpuKptr => false,
    }
}

fn tracing(p: ProgType) -> bool {
    matches!(
        p,
        ProgType::Kprobe
            | ProgType::Tracepoint
            | ProgType::PerfEvent
            | ProgType::RawTracepoint
            | ProgType::RawTracepointWritable
            | ProgType::Tracing
    )
}

impl Machine<'_> {
    /// `acquire_reference()`: a new reference id (`++env->id_gen`), recorded with the instruction
    /// that took it (`alloc_insn` of the leak message).
    pub(super) fn acquire_ref(&mut self, st: &mut State, pc: usize) -> u32 {
        let id = self.fresh_id();
        st.refs.push(id);
        self.ref_insns.insert(id, pc);
        id
    }

    /// Whether the verifier names arguments by register (7.x: `R1`) rather than by index (6.12).
    fn regs_named(&self) -> bool {
        self.profile.res_spin_lock
    }

    fn not_on_6_12<T>(&self, what: &str) -> Step<T> {
        Err(Stop::Unsupported(format!("{what}: the {} message is not modelled", self.profile.name)))
    }

    /// `check_kfunc_call()` for the allocation kfuncs (R0 set, R1-R5 cleared).
    pub(super) fn alloc_call(&mut self, st: &mut State, pc: usize, name: &str, k: AllocKfunc) -> Step<()> {
        let r0 = match k {
            AllocKfunc::New { percpu } => self.obj_new(st, pc, name, percpu)?,
            AllocKfunc::Drop { percpu } => {
                self.obj_drop(st, pc, name, percpu)?;
                Reg::NotInit
            }
            AllocKfunc::RefcountAcquire => self.refcount_acquire(st, pc)?,
        };
        let cur = st.cur();
        for r in 1..=5 {
            cur.regs[r] = Reg::NotInit;
        }
        cur.regs[0] = r0;
        Ok(())
    }

    /// `bpf_obj_new(local_type_id__k)`: `check_kfunc_args()` (a constant), then
    /// `check_special_kfunc()` (the type, the per-cpu limits), then `is_kfunc_ret_null()` (an id
    /// for the null check) and `acquire_reference()` (the id R0 carries from then on).
    fn obj_new(&mut self, st: &mut State, pc: usize, name: &str, percpu: bool) -> Step<Reg> {
        let r1 = st.cur_ref().regs[1].clone();
        let Some(value) = (match &r1 {
            Reg::Scalar(s) => s.konst(),
            _ => None,
        }) else {
            return Err(Stop::Unsupported(format!(
                "kfunc {name} with a type id that is not a known constant ({})",
                r1.type_str()
            )));
        };
        let m = |s: &str| Err(Stop::Reject(Some(pc), s.to_string()));
        if u32::try_from(value).is_err() {
            return m("local type ID argument must be in range [0, U32_MAX]");
        }
        // check_special_kfunc() (6.12, 7.2, 7.3): `btf_type_by_id(prog BTF, id)` must be a
        // BTF_KIND_STRUCT (`__btf_type_is_struct()`): an `int`, a union or a typedef is refused.
        if self.case.non_struct_type_ids.contains(&(value as u32)) {
            return m("bpf_obj_new/bpf_percpu_obj_new type ID argument must be of a struct");
        }
        let Some(ty) = self.case.types.iter().position(|t| t.btf_id == Some(value as u32)) else {
            return Err(Stop::Unsupported(format!(
                "kfunc {name}: type id {value} is not a struct lockstep read from the program BTF"
            )));
        };
        let t = &self.case.types[ty];
        if percpu {
            if t.layout.size > PERCPU_MAX_SIZE {
                return m(&format!(
                    "bpf_percpu_obj_new type size ({}) is greater than {PERCPU_MAX_SIZE}",
                    t.layout.size
                ));
            }
            if !t.pointers.is_empty() || t.layout.fields.iter().any(|f| f.kind.is_kptr()) {
                return m("bpf_percpu_obj_new type ID argument must be of a struct of scalars");
            }
            if t.layout.fields.iter().any(|f| f.kind != FieldKind::Int) {
                return m("bpf_percpu_obj_new type ID argument must not contain special fields");
            }
        }
        let _null_id = self.fresh_id();
        let id = self.acquire_ref(st, pc);
        Ok(Reg::Alloc { ty, off: 0, id, null: true, percpu, non_owning: false })
    }

    /// `bpf_obj_drop(p__alloc)`: `check_kfunc_args()` on R1 in its order (NULL, referenced, zero
    /// offset, `KF_ARG_PTR_TO_ALLOC_BTF_ID`), then `release_reg()`: the reference goes and every
    /// register carrying it becomes an unknown scalar (`mark_reg_invalid()` with allow_ptr_leaks).
    fn obj_drop(&mut self, st: &mut State, pc: usize, name: &str, percpu: bool) -> Step<()> {
        // check_kfunc_call() (7.2, 7.3) leaves a sleepable BPF_PROG_TYPE_TRACING program that is
        // not an iterator out of the NMI-unsafe field check below (`!env->prog->sleepable`).
        let sleepable_tracing = self.case.prog_type == ProgType::Tracing
            && self.case.sleepable
            && self.sec_type().is_some_and(|s| s.attach != crate::import::sec::AttachType::TraceIter);
        let r1 = st.cur_ref().regs[1].clone();
        let named = self.regs_named();
        match &r1 {
            Reg::Alloc { null: true, .. } | Reg::Scalar(Scalar { umin: 0, umax: 0, .. }) => {
                if !named {
                    return self.not_on_6_12("a NULL pointer to a release kfunc");
                }
                return self.reject(pc, "Possibly NULL pointer passed to trusted R1".into());
            }
            Reg::Scalar(_) => {
                if !named {
                    return self.not_on_6_12("a scalar passed to a release kfunc");
                }
                return self.reject(
                    pc,
                    format!("release kfunc {name} expects referenced PTR_TO_BTF_ID passed to R1"),
                );
            }
            Reg::Alloc { .. } => {}
            other => {
                return Err(Stop::Unsupported(format!("kfunc {name} with R1 of type {}", other.type_str())))
            }
        }
        let Reg::Alloc { ty, off, id, percpu: p, .. } = r1 else { unreachable!("matched above") };
        if !st.refs.contains(&id) {
            return Err(Stop::Unsupported(format!(
                "kfunc {name} on an allocated object without a reference"
            )));
        }
        if off != 0 {
            return self.reject(
                pc,
                "R1 must have zero offset when passed to release func or trusted arg to kfunc".into(),
            );
        }
        if p != percpu {
            if !named {
                return self.not_on_6_12("a per-cpu object to bpf_obj_drop or back");
            }
            let which = if p { "bpf_percpu_obj_drop" } else { "bpf_obj_drop" };
            return self.reject(pc, format!("R1 expected for {which}()"));
        }
        // check_kfunc_call(), after check_kfunc_args(): in a tracing program, a type whose
        // struct meta record (btf_parse_struct_metas(): locks, graph fields, refcount, kptrs)
        // holds a field btf_field_is_nmi_safe() does not list (graph roots and nodes, referenced
        // and per-cpu kptrs) may not be dropped. 7.2 and 7.3 (`obj_drop_nmi_check`); 6.12 has
        // no such check (a list node type dropped in a tracepoint program loads on debian:6.12).
        if tracing(self.case.prog_type)
            && !sleepable_tracing
            && self.profile.obj_drop_nmi_check
            && self.case.types[ty].layout.fields.iter().any(|f| !nmi_safe(f.kind))
        {
            return self.reject(
                pc,
                format!("{name} cannot be used in tracing programs on types with NMI unsafe fields"),
            );
        }
        self.release_ref(st, id);
        Ok(())
    }

    /// `release_reference()`: drops reference `id` and turns every register carrying it into an
    /// unknown scalar.
    pub(super) fn release_ref(&mut self, st: &mut State, id: u32) {
        st.refs.retain(|r| *r != id);
        st.for_each_reg(|r| {
            if matches!(r, Reg::Alloc { id: i, .. } if *i == id) {
                *r = Reg::Scalar(Scalar::unknown());
            }
        });
    }

    /// `bpf_refcount_acquire(p__refcounted_kptr)`: NULL, the offset (`__check_func_arg_reg_off()`
    /// with `btf_id_fixed_off_ok = false`), an allocated object with a `bpf_refcount`; R0 is a
    /// new owning reference to the same type, not NULL-checked when R1 owned one
    /// (`is_kfunc_ret_null()`).
    fn refcount_acquire(&mut self, st: &mut State, pc: usize) -> Step<Reg> {
        let r1 = st.cur_ref().regs[1].clone();
        // check_kfunc_args(), KF_ARG_PTR_TO_REFCOUNTED_KPTR: a pointer that is no allocated
        // object (`!type_is_ptr_alloc_obj()`) after the NULL check and the offset check (the ctx
        // at offset 0, any stack or map-value offset and a scalar pass them), or a scalar that is
        // not the constant 0 (`register_is_null()`). "R1 ..." in 7.2 / 7.3, "arg#0 ..." in 6.12
        // (measured on debian:6.12, 7.2, 7.3 with the ctx, a stack pointer and a scalar).
        let not_alloc = match &r1 {
            Reg::Ctx | Reg::Stack { .. } | Reg::MapValue { null: false, .. } => true,
            Reg::Scalar(s) => s.konst() != Some(0),
            // A kptr-loaded local object after its RCU section (MEM_ALLOC | PTR_UNTRUSTED):
            // type_is_ptr_alloc_obj() is false for PTR_UNTRUSTED (7.2, 7.3).
            Reg::AllocRcu { untrusted: true, .. } => true,
            _ => false,
        };
        if not_alloc {
            let arg = if self.regs_named() { "R1" } else { "arg#0" };
            return self.reject(pc, format!("{arg} is neither owning or non-owning ref"));
        }
        if !self.regs_named() {
            return self.not_on_6_12("bpf_refcount_acquire");
        }
        // A kptr-loaded local object in its RCU section (MEM_ALLOC | MEM_RCU, NON_OWN_REF or
        // not): an allocated object without a reference, so meta->arg_owning_ref stays false
        // and R0 is maybe-null (is_kfunc_ret_null()). Its offset is 0 (no arithmetic on it is
        // modelled).
        if let Reg::AllocRcu { ty, null, .. } = r1 {
            if null {
                return self.reject(pc, "Possibly NULL pointer passed to trusted R1".into());
            }
            if self.case.types[ty].layout.field_of(FieldKind::Refcount).is_none() {
                return self.reject(pc, "R1 doesn't point to a type with bpf_refcount field".into());
            }
            self.fresh_id();
            let id = self.acquire_ref(st, pc);
            return Ok(Reg::Alloc { ty, off: 0, id, null: true, percpu: false, non_owning: false });
        }
        let Reg::Alloc { ty, off, id, null, percpu: false, non_owning } = r1 else {
            return Err(Stop::Unsupported(format!("bpf_refcount_acquire with R1 of type {}", r1.type_str())));
        };
        if null {
            return self.reject(pc, "Possibly NULL pointer passed to trusted R1".into());
        }
        if off != 0 {
            return self.reject(pc, format!("dereference of modified ptr_ ptr R1 off={off} disallowed"));
        }
        if self.case.types[ty].layout.field_of(FieldKind::Refcount).is_none() {
            return self.reject(pc, "R1 doesn't point to a type with bpf_refcount field".into());
        }
        let owning = !non_owning && st.refs.contains(&id);
        if !owning && !non_owning {
            return Err(Stop::Unsupported("bpf_refcount_acquire of a released object".into()));
        }
        // is_kfunc_ret_null(): not for an owning argument.
        if !owning {
            self.fresh_id();
        }
        let id = self.acquire_ref(st, pc);
        Ok(Reg::Alloc { ty, off: 0, id, null: !owning, percpu: false, non_owning: false })
    }

    /// `check_ptr_to_btf_access()` -> `btf_struct_access()` for an allocated object: the special
    /// fields of its record may not be touched ("direct access to ..."), nor bytes past its end; a
    /// load of an integer member is an unknown scalar. Variable offsets, per-cpu objects, pointer
    /// members, padding and flexible arrays are `unsupported`.
    pub(super) fn alloc_access(
        &self,
        regno: u8,
        base: &Reg,
        insn_off: i64,
        size: u8,
        value: Option<&Reg>,
        pc: usize,
    ) -> Step<Reg> {
        let Reg::Alloc { ty, off, null, percpu, .. } = base else { unreachable!("an allocated object") };
        if *null {
            let args = [("reg", format!("R{regno}")), ("type", base.type_str().to_string())];
            return self.reject(pc, self.msg(&self.profile.messages.invalid_mem_access, &args));
        }
        if *percpu {
            return Err(Stop::Unsupported(
                "loads and stores through a per-cpu object are not modelled".into(),
            ));
        }
        let t = &self.case.types[*ty];
        let at = off + insn_off;
        if at < 0 {
            return Err(Stop::Unsupported("a negative offset into an allocated object".into()));
        }
        let end = at + size as i64;
        for f in t.layout.fields.iter().filter(|f| f.kind != FieldKind::Int) {
            let (lo, hi) = (f.offset as i64, f.offset as i64 + f.size as i64);
            if at < hi && lo < end {
                let kind = f.kind.kernel_name().expect("a special field");
                return self.reject(pc, format!("direct access to {kind} is disallowed"));
            }
        }
        // btf_struct_access() -> btf_struct_walk(.., walk_flex_arrays = !type_is_alloc()): past
        // the end of the type, even into a trailing flexible array (7.2, 7.3). The walk starts at
        // the top-level struct, so this comes before any member is looked at.
        if end > t.layout.size as i64 && self.profile.alloc_no_flex_walk {
            return self.reject(pc, format!("access beyond struct {} at off {at} size {size}", t.name));
        }
        if end > t.layout.size as i64 {
            return Err(Stop::Unsupported(format!(
                "an access past the end of struct {} (flexible arrays are not modelled)",
                t.name
            )));
        }
        if t.pointers.iter().any(|p| at < *p as i64 + 8 && (*p as i64) < end) {
            return Err(Stop::Unsupported(
                "a load or store of a pointer member of an allocated object".into(),
            ));
        }
        let inside = t.layout.fields.iter().any(|f| {
            f.kind == FieldKind::Int && f.offset as i64 <= at && end <= f.offset as i64 + f.size as i64
        });
        if !inside {
            return Err(Stop::Unsupported(
                "an access to an allocated object outside its integer members".into(),
            ));
        }
        match value {
            Some(v) if v.is_pointer() => {
                Err(Stop::Unsupported("a store of a pointer into an allocated object".into()))
            }
            Some(_) => Ok(Reg::NotInit),
            None => Ok(Reg::Scalar(Scalar::of_size(size))),
        }
    }

    /// `check_func_arg()` (`check_reg_type()`: a maybe-null object is not `ptr_`) and
    /// `process_spin_lock()` for a lock inside an allocated object: the field must be in the
    /// object's type ("local 'kptr' has no valid ..."), at the pointer's offset; the lock is
    /// (`reg->btf`, `reg->id`), so locking one object and unlocking another is "... of different
    /// lock".
    pub(super) fn alloc_lock_arg(
        &mut self,
        st: &mut State,
        pc: usize,
        r1: &Reg,
        is_lock: bool,
        kind: LockKind,
    ) -> Step<()> {
        let Reg::Alloc { ty, off, id, null, percpu, .. } = *r1 else { unreachable!("an allocated object") };
        let m = &self.profile.messages;
        if percpu {
            return Err(Stop::Unsupported("a lock argument in a per-cpu object".into()));
        }
        if null {
            let args = [
                ("reg", "R1".to_string()),
                ("type", r1.type_str().to_string()),
                ("expected", "map_value, ptr_".to_string()),
            ];
            return self.reject(pc, self.msg(&m.reg_type_mismatch, &args));
        }
        let lock = || if kind == LockKind::Spin { "bpf_spin" } else { "bpf_res_spin" }.to_string();
        let field_kind = if kind == LockKind::Spin { FieldKind::SpinLock } else { FieldKind::ResSpinLock };
        let Some(field) = self.case.types[ty].layout.field_of(field_kind) else {
            return self.reject(pc, format!("local 'kptr' has no valid {}_lock", lock()));
        };
        if field.offset as i64 != off && self.on(Rule::LockOffset) {
            let args = [("off", off.to_string()), ("lock", lock()), ("lock_off", field.offset.to_string())];
            return self.reject(pc, self.msg(&m.wrong_lock_offset, &args));
        }
        self.lock_state(st, pc, ActiveLock { map: ALLOC_LOCK_OWNER, id, kind }, is_lock)
    }

    /// `check_reference_leak()` at the main program's exit: "Unreleased reference id=%d
    /// alloc_insn=%d" for the first reference still held (the first line of the log). Its id
    /// follows `env->id_gen`, which the kernel also bumps for scalar ids the model does not
    /// track (`assign_scalar_id_before_mov()`): once one may have been given, `unsupported`.
    pub(super) fn reference_leak(&self, st: &State, pc: usize) -> Step<()> {
        let Some(&id) = st.refs.first() else { return Ok(()) };
        let Some(&insn) = self.ref_insns.get(&id) else {
            return Err(Stop::Unsupported(format!(
                "exit with {} unreleased (the message's ids are not modelled)",
                st.refs_str()
            )));
        };
        if self.scalar_ids.get() {
            return Err(Stop::Unsupported(
                "exit with an unreleased reference after a scalar got an id (its id is not modelled)".into(),
            ));
        }
        // Found by `lockstep fuzz` on debian:7.2 / 7.3 (fuzz_1_56551, seed 1): the kernel's id was
        // one lower after an iterator loop the model walked twice where the kernel pruned.
        if self.iter_loop_ids.get() {
            return Err(Stop::Unsupported(
                "exit with an unreleased reference after an iterator loop the model walked again (its id is not modelled)"
                    .into(),
            ));
        }
        // Found by `lockstep fuzz` on debian:7.3 (fuzz_1_26410, seed 1, generator with pointer
        // branches): two paths of one branch each took an id before joining; the kernel pruned
        // the second at the join (is_state_visited(): equal but for dead registers), so the
        // reference acquired on the path walked after them was numbered one lower.
        if self.sibling_ids {
            return Err(Stop::Unsupported(
                "exit with an unreleased reference acquired after other paths took ids (the kernel may have pruned them: its id is not modelled)"
                    .into(),
            ));
        }
        // prune.rs: a pruned subtree takes no ids here, where the kernel's own pruning (other
        // prune points, states kept only now and then) may have walked it.
        if self.pruned_paths.get() {
            return Err(Stop::Unsupported(
                "exit with an unreleased reference after the walk pruned a path (its id is not modelled)"
                    .into(),
            ));
        }
        self.reject(pc, format!("Unreleased reference id={id} alloc_insn={insn}"))
    }
}
