//! `struct bpf_timer` in map values and its helpers (`bpf_timer_init`, `bpf_timer_set_callback`,
//! `bpf_timer_start`, `bpf_timer_cancel`), the same rules in the 6.12, 7.2 and 7.3 verifiers:
//!
//! - `check_map_prog_compatibility()`: 6.12 refuses a map with a `bpf_timer` / `bpf_wq` in a
//!   tracing program ("tracing progs cannot use bpf_timer yet"); 7.2 and 7.3 allow it
//!   (the profile's `tracing_timer_refused`).
//! - `check_func_arg()` -> `ARG_PTR_TO_TIMER`: R1 must be a non-null `map_value`
//!   (`check_reg_type()`), then `process_timer_func()` -> `check_map_field_pointer()`: a constant
//!   offset equal to the map's `timer_off`, a map with BTF and a timer; `bpf_timer_init()`'s
//!   `ARG_CONST_MAP_PTR` must be the timer's map (`process_map_ptr_arg()`).
//! - `bpf_timer_set_callback()` -> `push_callback_call()` -> `push_async_cb()`: the callback is
//!   verified as a state of its own (frame 0 of the callback subprogram, no lock, reference or
//!   region held), pushed like a branch; `set_timer_callback_state()` gives it R1 the map, R2 a
//!   key pointer, R3 the value (a fresh id) and `callback_ret_range` [0, 0].
//! - Its `BPF_EXIT` is a main-program exit (`process_bpf_exit_full()`, `check_resource_leak()`),
//!   then `check_return_code()` with "At async callback return" and the range [0, 0].
//!
//! - `bpf_timer_cancel_async()` (a kfunc of 7.2 and 7.3): the same field checks on its R1
//!   through `check_kfunc_args()` (`KF_ARG_PTR_TO_TIMER`).
//!
//! - `bpf_wq_init(wq, map, flags)`, `bpf_wq_start(wq, flags)`, `bpf_wq_set_callback(wq, cb,
//!   flags)` (kfuncs; the profile's `wq_kfunc_checks`, 7.2 and 7.3): `check_kfunc_args()` on R1
//!   ("Possibly NULL pointer passed to trusted R1", then `KF_ARG_PTR_TO_WORKQUEUE` ->
//!   `check_map_field_pointer(..., BPF_WORKQUEUE, ...)`), `bpf_wq_init`'s map the wq's own (a
//!   `CONST_PTR_TO_MAP`), the flags scalars; R0 an unknown integer. The callback
//!   `bpf_wq_set_callback` pushes (`push_callback_call()` with `set_timer_callback_state()`) is a
//!   sleepable async callback (`is_async_cb_sleepable()`): walked as a timer callback's state
//!   whose `in_sleepable` is set (sleep.rs: sleepable helpers and kfuncs allowed). Other argument types and the map mismatch messages (which
//!   differ between 7.2's `KF_ARG_PTR_TO_MAP` and 7.3's `KF_ARG_CONST_MAP_PTR`) are `unsupported`.

use super::exec::{Flow, Machine};
use super::scalar::Scalar;
use super::state::{Frame, Reg, State, VarOff};
use super::{Step, Stop};
use crate::case::{FieldKind, MapSpec};

/// `check_map_prog_compatibility()`'s timer / workqueue rule for a map used by the program.
pub(crate) fn timer_prog_compat(spec: &MapSpec, tracing: bool, refused: bool) -> Step<()> {
    if !(spec.btf && tracing && refused) {
        return Ok(());
    }
    for (kind, msg) in [
        (FieldKind::Timer, "tracing progs cannot use bpf_timer yet"),
        (FieldKind::Wq, "tracing progs cannot use bpf_wq yet"),
    ] {
        if spec.value.field_of(kind).is_some() {
            return Err(Stop::Reject(None, msg.into()));
        }
    }
    Ok(())
}

/// The helpers whose R1 is a `struct bpf_timer *` (`ARG_PTR_TO_TIMER`).
pub(crate) fn is_timer_helper(name: &str) -> bool {
    matches!(name, "bpf_timer_init" | "bpf_timer_set_callback" | "bpf_timer_start" | "bpf_timer_cancel")
}

/// The `bpf_wq` kfuncs of [`Machine::wq_call`].
pub(crate) fn is_wq_kfunc(name: &str) -> bool {
    matches!(name, "bpf_wq_init" | "bpf_wq_start" | "bpf_wq_set_callback")
}

/// The `verbose_invalid_scalar()` text for `s`, or None where the model's bounds may not be the
/// kernel's (only a constant or a wholly unknown scalar is printed).
pub(crate) fn invalid_scalar_str(s: &Scalar) -> Option<String> {
    if let Some(k) = s.konst() {
        return Some(format!("smin={k} smax={k}"));
    }
    (s.smin == i64::MIN && s.smax == i64::MAX).then(|| "unknown scalar value".to_string())
}

impl Machine<'_> {
    /// `ARG_PTR_TO_TIMER` in R1 (`check_reg_type()`, then `check_map_field_pointer()`): the map.
    fn timer_arg(&self, st: &State, pc: usize) -> Step<usize> {
        let r1 = self.read_reg(st, pc, 1)?;
        let (map, off, var) = match &r1 {
            Reg::MapValue { map, off, var, null: false, .. } => (*map, *off, var.get()),
            other => {
                let args = [
                    ("reg", "R1".into()),
                    ("type", other.type_str().into()),
                    ("expected", "map_value".into()),
                ];
                return self.reject(pc, self.msg(&self.profile.messages.reg_type_mismatch, &args));
            }
        };
        self.map_field(pc, map, off, &var, FieldKind::Timer)
    }

    /// `check_map_field_pointer()` for the `kind` field (`bpf_timer`, `bpf_wq`) of R1, a map value
    /// pointer at `off` (+ `var`).
    fn map_field(
        &self,
        pc: usize,
        map: usize,
        off: i64,
        var: &Option<Scalar>,
        kind: FieldKind,
    ) -> Step<usize> {
        let spec = self.map(map);
        let name = self.kernel_map_name(spec);
        let field_name = kind.kernel_name().unwrap_or("?");
        if var.as_ref().is_some_and(|v| v.konst().is_none()) {
            return self.reject(
                pc,
                format!("R1 doesn't have constant offset. {field_name} has to be at the constant offset"),
            );
        }
        if !spec.btf {
            return self.reject(pc, format!("map '{name}' has to have BTF in order to use {field_name}"));
        }
        let Some(field) = spec.value.field_of(kind) else {
            return self.reject(pc, format!("map '{name}' has no valid {field_name}"));
        };
        let val = off + var.as_ref().and_then(|v| v.konst()).unwrap_or(0);
        if val != field.offset as i64 {
            return self.reject(
                pc,
                format!("off {val} doesn't point to 'struct {field_name}' that is at {}", field.offset),
            );
        }
        Ok(map)
    }

    /// `bpf_timer_init(timer, map, flags)`, `bpf_timer_start(timer, nsecs, flags)`,
    /// `bpf_timer_cancel(timer)`: the arguments in order; R0 an unknown integer, R1-R5 cleared.
    pub(super) fn timer_helper(&mut self, st: &mut State, pc: usize, name: &str) -> Step<()> {
        let map = self.timer_arg(st, pc)?;
        let scalars: &[u8] = match name {
            "bpf_timer_init" => {
                let r2 = self.read_reg(st, pc, 2)?;
                let Reg::MapPtr { map: m2 } = r2 else {
                    let args = [
                        ("reg", "R2".into()),
                        ("type", r2.type_str().into()),
                        ("expected", "map_ptr".into()),
                    ];
                    return self.reject(pc, self.msg(&self.profile.messages.reg_type_mismatch, &args));
                };
                if m2 != map {
                    // Maps of a case are never inner maps: map_uid is 0 on both sides.
                    return self.reject(
                        pc,
                        "timer pointer in R1 map_uid=0 doesn't match map pointer in R2 map_uid=0".into(),
                    );
                }
                &[3]
            }
            "bpf_timer_start" => &[2, 3],
            _ => &[],
        };
        for &r in scalars {
            // ARG_ANYTHING: only initialised (check_reg_arg()).
            self.read_reg(st, pc, r)?;
        }
        let cur = st.cur();
        for r in 1..=5 {
            cur.regs[r] = Reg::NotInit;
        }
        cur.regs[0] = Reg::Scalar(Scalar::unknown());
        Ok(())
    }

    /// `bpf_timer_cancel_async(struct bpf_timer *timer)` (kfunc, 7.2 and 7.3; absent from 6.12):
    /// `check_kfunc_args()` on R1: "Possibly NULL pointer passed to trusted R1" for a maybe-null
    /// pointer, then `KF_ARG_PTR_TO_TIMER` (a map value, else "R1 doesn't point to a map value",
    /// left unsupported here) and `process_timer_func()` -> `check_map_field_pointer()`; R0 an
    /// unknown integer.
    pub(super) fn timer_cancel_async(&mut self, st: &mut State, pc: usize) -> Step<()> {
        let (map, off, var) = match &st.cur_ref().regs[1] {
            Reg::MapValue { null: true, .. } => {
                return self.reject(pc, "Possibly NULL pointer passed to trusted R1".into())
            }
            Reg::MapValue { map, off, var, .. } => (*map, *off, var.get()),
            other => {
                return Err(Stop::Unsupported(format!(
                    "kfunc bpf_timer_cancel_async with R1 of type {} is not modelled",
                    other.type_str()
                )))
            }
        };
        self.map_field(pc, map, off, &var, FieldKind::Timer)?;
        self.clobber(st, Reg::Scalar(Scalar::unknown()));
        Ok(())
    }

    /// `bpf_wq_init`, `bpf_wq_start`, `bpf_wq_set_callback` (see the module's comment).
    pub(super) fn wq_call(&mut self, st: &mut State, pc: usize, name: &str) -> Step<Flow> {
        let unsupported =
            |what: &str| Err(Stop::Unsupported(format!("kfunc {name}: {what} is not modelled")));
        if !self.profile.wq_kfunc_checks {
            return Err(Stop::Unsupported(format!(
                "kfunc {name}: its argument checks in {} are not modelled",
                self.profile.name
            )));
        }
        let (map, off, var) = match &st.cur_ref().regs[1] {
            Reg::MapValue { null: true, .. } => {
                return self.reject(pc, "Possibly NULL pointer passed to trusted R1".into())
            }
            Reg::MapValue { map, off, var, .. } => (*map, *off, var.get()),
            other => return unsupported(&format!("R1 of type {}", other.type_str())),
        };
        self.map_field(pc, map, off, &var, FieldKind::Wq)?;
        let scalar = |st: &State, r: usize| matches!(st.cur_ref().regs[r], Reg::Scalar(_));
        match name {
            "bpf_wq_init" => {
                match st.cur_ref().regs[2] {
                    Reg::MapPtr { map: m2 } if m2 == map => {}
                    ref other => {
                        return unsupported(&format!(
                            "R2 of type {} (not the bpf_wq's map)",
                            other.type_str()
                        ))
                    }
                }
                if !scalar(st, 3) {
                    return unsupported("R3 that is not a scalar");
                }
            }
            "bpf_wq_start" => {
                if !scalar(st, 2) {
                    return unsupported("R2 that is not a scalar");
                }
            }
            _ => {
                // bpf_wq_set_callback: KF_ARG_PTR_TO_CALLBACK, then the flags.
                if !matches!(st.cur_ref().regs[2], Reg::Func { .. }) || !scalar(st, 3) {
                    return unsupported("an argument other than a callback and scalar flags");
                }
                let Reg::Func { start } = st.cur_ref().regs[2] else { unreachable!("a callback") };
                // check_kfunc_call() -> push_callback_call(.., set_timer_callback_state) ->
                // push_async_cb(.., is_async_cb_sleepable()): a bpf_wq callback is always
                // sleepable (7.2, 7.3: its state's in_sleepable), with the timer callback's
                // arguments (R1 the map of R1's value, R2 its key, R3 the value with a fresh id)
                // and return range [0, 0]; the caller goes on with R0 an unknown integer.
                let callback = self.async_callback_state(st, pc, map, start, true);
                self.clobber(st, Reg::Scalar(Scalar::unknown()));
                return Ok(Flow::Branch(pc + 1, callback));
            }
        }
        self.clobber(st, Reg::Scalar(Scalar::unknown()));
        Ok(Flow::Next(pc + 1))
    }

    /// `push_async_cb()` then `set_timer_callback_state()`: the callback's own state (frame 0 of
    /// the callback subprogram, nothing held), `in_sleepable` as `is_async_cb_sleepable()` says.
    fn async_callback_state(
        &mut self,
        st: &State,
        pc: usize,
        map: usize,
        start: usize,
        sleepable: bool,
    ) -> State {
        let sub = self.subprogs.iter().position(|s| *s == start).unwrap_or(0);
        self.callback_subprogs.insert(sub);
        self.async_callbacks.insert(sub);
        let mut frame = Frame::new(0, sub, pc);
        frame.regs[1] = Reg::MapPtr { map };
        frame.regs[2] = Reg::MapKey { map };
        let id = self.fresh_id();
        frame.regs[3] = Reg::MapValue { map, off: 0, var: VarOff::NONE, id, null: false };
        let mut callback = State::entry(frame, st.ids_exact, start);
        callback.sleepable = sleepable;
        callback
    }

    /// `bpf_timer_set_callback(timer, callback_fn)`: R1 the timer, R2 `ARG_PTR_TO_FUNC`, then
    /// `push_async_cb()` (the callback's state, pushed) and the caller goes on with R0 an unknown
    /// integer.
    pub(super) fn timer_set_callback(&mut self, st: &mut State, pc: usize) -> Step<Flow> {
        let map = self.timer_arg(st, pc)?;
        let r2 = self.read_reg(st, pc, 2)?;
        let Reg::Func { start } = r2 else {
            let args = [("reg", "R2".into()), ("type", r2.type_str().into()), ("expected", "func".into())];
            return self.reject(pc, self.msg(&self.profile.messages.reg_type_mismatch, &args));
        };
        // push_async_cb(): a bpf_timer callback is never sleepable (`is_async_cb_sleepable()`;
        // 6.12's in_sleepable() still takes the program's, sleep.rs).
        let callback = self.async_callback_state(st, pc, map, start, false);
        self.clobber(st, Reg::Scalar(Scalar::unknown()));
        Ok(Flow::Branch(pc + 1, callback))
    }

    /// Whether `st` is in an async callback's own state (`frame[0]->in_async_callback_fn`).
    pub(super) fn in_async_callback(&self, st: &State) -> bool {
        st.frames.len() == 1 && self.async_callbacks.contains(&st.frames[0].subprog)
    }

    /// `check_return_code()` at an async callback's exit (after the resource checks): R0 a
    /// scalar in [0, 0].
    pub(super) fn async_callback_return(&self, st: &State, pc: usize) -> Step<Flow> {
        let r0 = self.read_reg(st, pc, 0)?;
        let s = match r0 {
            Reg::Scalar(s) => s,
            // Loaded as root (allow_ptr_leaks): "... is not a known value (<type>)", not modelled.
            _ => return Err(Stop::Unsupported("an async callback returning a pointer".into())),
        };
        if s.konst() == Some(0) {
            return Ok(Flow::Done);
        }
        match invalid_scalar_str(&s) {
            Some(v) => self.reject(
                pc,
                format!("At async callback return the register R0 has {v} should have been in [0, 0]"),
            ),
            None => Err(Stop::Unsupported(
                "an async callback's R0 with bounds the model may not share with the kernel".into(),
            )),
        }
    }
}
