//! The operations a program body is made of, chosen by the lock state the generator tracks.
//!
//! Without chaos a program follows every rule: locks are taken when none is held and released on
//! the same pointer, calls under a lock are the ones every profile allows (static subprograms
//! that make no call), every branch arm and loop body ends in the lock state it began with, and
//! what `r7`, `r8` and the spill slot hold changes only outside branches and loops.
//! Each "wild" decision (probability = the program's chaos) breaks one rule.
//!
//! Every block is statically reachable (the kernel's `check_cfg()` rejects unreachable
//! instructions, a rule outside the lock model): an `exit` only ends a branch arm, and an arm
//! that exits is not followed by a `goto` over the other arm.

use super::{global_section, prog_array, Builder, Sub, SubKind};
use crate::case::{GlobalFunc, ProgType};
use crate::module_src::LOCK_SAFE_FLAG;

/// The operations of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Lock,
    Unlock,
    Helper,
    Kfunc,
    KfuncRef,
    StaticCall,
    GlobalCall,
    LdAbs,
    TailCall,
    Branch,
    Loop,
    IterLoop,
    Shift,
    Spill,
    Fill,
    Access,
    Copy,
    Relookup,
    Exit,
    ResLock,
    MayGoto,
    MapWrite,
}

/// The forms of the lock argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ArgForm {
    /// `r1 = rS; r1 += off`.
    Direct,
    /// A wrong constant offset.
    WrongOff,
    /// The offset added in two steps.
    Split,
    /// Added past the lock, then subtracted back.
    Sub,
    /// Plus a scalar masked from a map field (to zero, or wild: to a range).
    VarOff,
    /// Filled from the spill slot.
    Spilled,
}

const HELPERS: &[&str] = &["bpf_get_prandom_u32", "bpf_ktime_get_ns", "bpf_get_smp_processor_id"];
const CMPS: &[&str] = &["==", "!=", ">", "<", ">=", "s>", "&"];

/// A memory operand `(rN + off)` / `(rN - off)`.
pub(super) fn mem(reg: usize, off: i32) -> String {
    if off < 0 {
        format!("(r{reg} - {})", -off)
    } else {
        format!("(r{reg} + {off})")
    }
}

impl Builder<'_> {
    /// Emits `n` operations at nesting `depth`; returns whether the block ends with `exit`.
    pub(super) fn block(&mut self, n: usize, depth: u32, in_loop: bool, allow_exit: bool) -> bool {
        let mut ended = false;
        for i in 0..n {
            ended = self.op(depth, in_loop, allow_exit && i + 1 == n);
        }
        ended
    }

    /// Brings the lock state back to `before` (lock or unlock on a slot holding the lock).
    pub(super) fn restore(&mut self, before: Option<u32>) {
        if self.held == before {
            return;
        }
        if let Some(h) = self.held {
            if let Some(s) = self.slot_with(h) {
                self.lock_call(s, true, true);
            }
        }
        if let Some(b) = before {
            if let Some(s) = self.slot_with(b) {
                self.lock_call(s, false, true);
            }
        }
    }

    fn op(&mut self, depth: u32, in_loop: bool, may_exit: bool) -> bool {
        let held = self.held.is_some();
        let wild = self.wild();
        let nest = depth < 2;
        let skb = matches!(self.prog_type, ProgType::SchedCls | ProgType::SchedAct | ProgType::SocketFilter);
        let free = !held || wild; // calls and exits that the lock forbids
                                  // Ops that change what r7, r8 and the spill slot hold only at the top level (or wild):
                                  // inside a branch arm or loop body the change would hold on some paths only.
        let top = (depth == 0 && !in_loop) || wild;
        let w = |on: bool, wt: u32| if on { wt } else { 0 };
        let table = [
            (w(!held || wild, if held { 4 } else { 30 }), Op::Lock),
            (w(held || wild, if held { 30 } else { 3 }), Op::Unlock),
            (w(free, 6), Op::Helper),
            (6, Op::Kfunc),
            (w(self.has_ref_kfuncs(wild), 4), Op::KfuncRef),
            (6, Op::StaticCall),
            (w(free, 3), Op::GlobalCall),
            (w(free && (skb || wild), 4), Op::LdAbs),
            (w(free, 2), Op::TailCall),
            (w(nest, 10), Op::Branch),
            (w(nest && !in_loop, 3), Op::Loop),
            (w(nest && !in_loop && free, 1), Op::IterLoop),
            (w(top, 3), Op::Shift),
            (w(top, 4), Op::Spill),
            (w(top && self.spilled.is_some(), 2), Op::Fill),
            (8, Op::Access),
            (w(top, 2), Op::Copy),
            (w(top && free, 2), Op::Relookup),
            (w(may_exit && free, 10), Op::Exit),
            (w(top && (!held || wild), 3), Op::ResLock),
            (w(nest && !in_loop, 2), Op::MayGoto),
            (w(free, 3), Op::MapWrite),
        ];
        match *self.rng.weighted(&table) {
            Op::Lock => {
                let s = self.pick_slot();
                self.lock_call(s, false, false);
            }
            Op::Unlock => {
                let s = match self.held.and_then(|h| self.slot_with(h)) {
                    Some(s) if !wild => s,
                    _ => self.pick_slot(),
                };
                self.lock_call(s, true, false);
            }
            Op::Helper => {
                let h = *self.rng.pick(HELPERS);
                self.tags.insert("helper");
                self.emit(&format!("call {h}"));
            }
            Op::Kfunc => self.kfunc(wild),
            Op::KfuncRef => self.kfunc_ref(wild),
            Op::StaticCall => self.static_call(wild),
            Op::GlobalCall => self.global_call(wild),
            Op::LdAbs => self.ld_abs(),
            Op::TailCall => self.tail_call(),
            Op::Branch => return self.branch(depth, in_loop, wild),
            Op::Loop => self.counted_loop(depth, wild),
            Op::IterLoop => self.iter_loop(depth, wild),
            Op::Shift => {
                let s = self.pick_slot();
                if let Some(slot) = self.slots[s].as_mut() {
                    let d = *self.rng.pick(&[-8, -4, 2, 4, 8]);
                    slot.delta += d;
                    self.tags.insert("ptr-arith");
                    self.emit(&format!("r{} += {d}", 7 + s));
                }
            }
            Op::Spill => self.spill(wild),
            Op::Fill => {
                if let Some(sp) = self.spilled.clone() {
                    if wild || !self.sole_holder(1) {
                        self.tags.insert("spill");
                        self.emit("r8 = *(u64 *)(r10 - 16)");
                        self.slots[1] = Some(sp);
                    }
                }
            }
            Op::Access => self.access(wild),
            Op::Copy => {
                let (d, s) = if self.rng.chance(70) { (1, 0) } else { (0, 1) };
                if let Some(src) = self.slots[s].clone() {
                    if wild || !self.sole_holder(d) {
                        self.tags.insert("copy");
                        self.emit(&format!("r{} = r{}", 7 + d, 7 + s));
                        self.slots[d] = Some(src);
                    }
                }
            }
            Op::Relookup => {
                let m = self.slots[0].as_ref().map(|s| s.map).filter(|m| !self.maps[*m].global_section);
                if let Some(m) = m {
                    if wild || !self.sole_holder(1) {
                        self.tags.insert("second-element");
                        let slot = self.lookup(m, "r8");
                        self.slots[1] = Some(slot);
                    }
                }
            }
            Op::ResLock => self.res_lock_section(wild),
            Op::MayGoto => self.may_goto_block(depth, wild),
            Op::MapWrite => self.map_write(),
            Op::Exit => {
                self.tags.insert("early-exit");
                let r0 = self.rng.range(0, 1);
                self.emit(&format!("r0 = {r0}"));
                self.emit("exit");
                return true;
            }
        }
        false
    }

    /// A slot: `r7` mostly, `r8` when it is set.
    fn pick_slot(&mut self) -> usize {
        if self.slots[1].is_some() && self.rng.chance(35) {
            1
        } else {
            0
        }
    }

    /// `bpf_spin_lock` / `bpf_spin_unlock` on slot `s`'s lock, the argument in one of several forms
    /// (`plain`: the direct, correct form).
    pub(super) fn lock_call(&mut self, s: usize, unlock: bool, plain: bool) {
        let Some(slot) = self.slots[s].clone() else { return };
        let reg = 7 + s;
        let off = self.lock_off(slot.map).unwrap_or(0) - slot.delta;
        let wild = !plain && self.wild();
        let spill_ok = self.spilled.as_ref().is_some_and(|sp| wild || sp.ident == slot.ident);
        let forms = [
            (60, ArgForm::Direct),
            (if wild { 15 } else { 0 }, ArgForm::WrongOff),
            (8, ArgForm::Split),
            (4, ArgForm::Sub),
            (7, ArgForm::VarOff),
            (if spill_ok { 14 } else { 0 }, ArgForm::Spilled),
        ];
        let form = if plain { ArgForm::Direct } else { *self.rng.weighted(&forms) };
        let mut ident = slot.ident;
        match form {
            ArgForm::Direct => {
                self.emit(&format!("r1 = r{reg}"));
                if off != 0 || self.rng.chance(30) {
                    self.emit(&format!("r1 += {off}"));
                }
            }
            ArgForm::WrongOff => {
                self.tags.insert("wrong-offset");
                let d = *self.rng.pick(&[-4, -2, 1, 2, 4, 8]);
                self.emit(&format!("r1 = r{reg}"));
                self.emit(&format!("r1 += {}", off + d));
            }
            ArgForm::Split => {
                self.tags.insert("ptr-arith");
                let a = self.rng.range(-8, 8) as i32;
                self.emit(&format!("r1 = r{reg}"));
                self.emit(&format!("r1 += {a}"));
                self.emit(&format!("r1 += {}", off - a));
            }
            ArgForm::Sub => {
                self.tags.insert("ptr-arith");
                self.emit(&format!("r1 = r{reg}"));
                self.emit(&format!("r1 += {}", off + 4));
                self.emit("r1 -= 4");
            }
            ArgForm::VarOff => {
                self.tags.insert("var-offset");
                match self.int_field(slot.map) {
                    Some((ioff, size)) => {
                        let sz = if size == 8 { "u64" } else { "u32" };
                        let mask = if wild { *self.rng.pick(&[4, 7, 0xff]) } else { 0 };
                        self.emit(&format!("r2 = *({sz} *){}", mem(reg, ioff - slot.delta)));
                        self.emit(&format!("r2 &= {mask}"));
                        self.emit(&format!("r1 = r{reg}"));
                        self.emit("r1 += r2");
                        self.emit(&format!("r1 += {off}"));
                    }
                    None => {
                        self.emit(&format!("r1 = r{reg}"));
                        self.emit(&format!("r1 += {off}"));
                    }
                }
            }
            ArgForm::Spilled => {
                self.tags.insert("spill");
                let sp = self.spilled.clone().expect("weighted only when spilled");
                let soff = self.lock_off(sp.map).unwrap_or(0) - sp.delta;
                self.emit("r1 = *(u64 *)(r10 - 16)");
                self.emit(&format!("r1 += {soff}"));
                ident = sp.ident;
            }
        }
        if unlock {
            self.emit("call bpf_spin_unlock");
            self.held = None;
        } else {
            self.emit("call bpf_spin_lock");
            if self.held.is_none() {
                self.held = Some(ident);
            } else {
                self.tags.insert("double-lock");
            }
        }
    }

    /// Whether a rule-following program may call test-module kfunc `k` here: registered for the
    /// program type, and lock-safe when a lock is held.
    pub(super) fn callable_here(&self, k: &crate::profile::ModuleKfunc) -> bool {
        k.prog_types.contains(&self.prog_type) && (self.held.is_none() || k.flags & LOCK_SAFE_FLAG != 0)
    }

    /// A test-module kfunc: one registered for the program type (and lock-safe under a lock), or
    /// when wild any of them.
    fn kfunc(&mut self, wild: bool) {
        let held = self.held.is_some();
        let names: Vec<String> = self
            .module
            .kfuncs
            .values()
            .filter(|k| wild || (k.returns_scalar && self.callable_here(k)))
            .filter(|k| k.args <= 1)
            .map(|k| k.name.clone())
            .collect();
        if names.is_empty() {
            if !held {
                self.emit("call bpf_get_prandom_u32");
            }
            return;
        }
        let k = self.rng.pick(&names).clone();
        self.tags.insert("kfunc-module");
        let arg = self.rng.range(0, 9);
        self.emit(&format!("r1 = {arg}"));
        self.emit(&format!("call {k}"));
    }

    /// Spills a lock pointer to `r10 - 16`, or (wild) overwrites the spill with a scalar.
    fn spill(&mut self, wild: bool) {
        self.tags.insert("spill");
        if self.spilled.is_some() && wild {
            let st = if self.rng.chance(50) { "*(u32 *)(r10 - 16) = 0" } else { "*(u64 *)(r10 - 16) = 0" };
            self.emit(st);
            self.spilled = None;
            return;
        }
        let s = self.pick_slot();
        if let Some(slot) = self.slots[s].clone() {
            self.emit(&format!("*(u64 *)(r10 - 16) = r{}", 7 + s));
            self.spilled = Some(slot);
        }
    }

    /// A load, store or atomic through a lock pointer next to the lock, or (wild) onto it or out
    /// of bounds.
    fn access(&mut self, wild: bool) {
        let s = self.pick_slot();
        let Some(slot) = self.slots[s].clone() else { return };
        let reg = 7 + s;
        let size = self.maps[slot.map].value.size as i32;
        let int = self.int_field(slot.map);
        let lock = self.lock_off(slot.map);
        let (off, sz) = match (wild, int, lock) {
            (false, Some((o, sz)), _) => (o, sz),
            (false, None, _) => return,
            (true, _, Some(l)) if self.rng.chance(75) => {
                self.tags.insert("lock-access");
                (l + self.rng.range(0, 1) as i32 * 2, if self.rng.chance(70) { 4 } else { 2 })
            }
            (true, _, _) => {
                self.tags.insert("oob");
                (size, 4)
            }
        };
        self.tags.insert("access");
        let ty = match sz {
            8 => "u64",
            2 => "u16",
            _ => "u32",
        };
        let at = mem(reg, off - slot.delta);
        match self.rng.below(3) {
            0 => self.emit(&format!("r0 = *({ty} *){at}")),
            1 => self.emit(&format!("*({ty} *){at} = 7")),
            _ if sz >= 4 => {
                self.emit("r1 = 1");
                self.emit(&format!("lock *({ty} *){at} += r1"));
            }
            _ => self.emit(&format!("r0 = *({ty} *){at}")),
        }
    }

    /// Whether calling static subprogram `kind` now keeps the rules: with a lock held only those
    /// that make no call (or release it); without one, not a release; a lock taker needs a slot
    /// of its map.
    fn sub_fits(&self, kind: SubKind) -> bool {
        match (self.held, kind) {
            (Some(h), SubKind::Unlock { map, .. }) => {
                self.slot_with(h).is_some_and(|s| self.slots[s].as_ref().is_some_and(|x| x.map == map))
            }
            (Some(_), k) => k.fine_under_lock() && !matches!(k, SubKind::Unlock { .. }),
            (None, SubKind::Unlock { .. }) => false,
            (None, SubKind::Lock { map, .. }) => self.slots.iter().flatten().any(|x| x.map == map),
            (None, _) => true,
        }
    }

    /// A call to a static subprogram (a new one, or one made before).
    fn static_call(&mut self, wild: bool) {
        let existing: Vec<usize> = (0..self.subs.len())
            .filter(|&i| self.subs[i].global.is_none() && (wild || self.sub_fits(self.subs[i].kind)))
            .collect();
        let (idx, new) = if !existing.is_empty() && (self.subs.len() >= 4 || self.rng.chance(40)) {
            (*self.rng.pick(&existing), false)
        } else if self.subs.len() < 6 {
            (self.new_static_sub(wild), true)
        } else {
            return;
        };
        if !wild && !self.sub_fits(self.subs[idx].kind) {
            if new {
                // Never called: the kernel would reject it as unreachable code.
                self.subs.pop();
            }
            return;
        }
        self.tags.insert("static-call");
        let kind = self.subs[idx].kind;
        let label = self.subs[idx].label.clone();
        match kind {
            SubKind::Lock { map, off } | SubKind::Unlock { map, off } => {
                let unlock = matches!(kind, SubKind::Unlock { .. });
                // The held lock's slot to release, else a slot of the map (wild: any slot).
                let want = if unlock { self.held.and_then(|h| self.slot_with(h)) } else { None };
                let of_map = (0..2).find(|&s| self.slots[s].as_ref().is_some_and(|x| x.map == map));
                let s = match (want.or(of_map), wild) {
                    (Some(s), false) => s,
                    _ => self.pick_slot(),
                };
                let Some(slot) = self.slots[s].clone() else { return };
                self.emit(&format!("r1 = r{}", 7 + s));
                let adj = self.lock_off(slot.map).unwrap_or(0) - slot.delta - off;
                if adj != 0 && !wild {
                    self.emit(&format!("r1 += {adj}"));
                }
                self.emit(&format!("call {label}"));
                if unlock {
                    self.held = None;
                } else if self.held.is_none() {
                    self.held = Some(slot.ident);
                }
                self.tags.insert(if unlock { "subprog-unlock" } else { "subprog-lock" });
            }
            SubKind::Branchy => {
                let k = self.rng.range(0, 6);
                self.emit(&format!("r1 = {k}"));
                self.emit(&format!("call {label}"));
            }
            _ => self.emit(&format!("call {label}")),
        }
    }

    fn new_static_sub(&mut self, wild: bool) -> usize {
        let held = self.held.is_some();
        let leaf = |k: SubKind| matches!(k, SubKind::Plain | SubKind::Branchy);
        let plain_callees: Vec<String> = self
            .subs
            .iter()
            .filter(|s| s.global.is_none() && leaf(s.kind))
            .map(|s| s.label.clone())
            .collect();
        let call_callees: Vec<String> = self
            .subs
            .iter()
            .filter(|s| s.global.is_none() && matches!(s.kind, SubKind::Helper | SubKind::Kfunc))
            .map(|s| s.label.clone())
            .collect();
        let ok = |under_lock: bool| wild || !held || under_lock;
        let table = [
            (20, SubKind::Plain),
            (if ok(false) { 15 } else { 0 }, SubKind::Helper),
            (if ok(false) { 10 } else { 0 }, SubKind::Kfunc),
            (10, SubKind::Branchy),
            (if ok(false) { 15 } else { 0 }, SubKind::Lock { map: 0, off: 0 }),
            (if held || wild { 25 } else { 0 }, SubKind::Unlock { map: 0, off: 0 }),
            (if plain_callees.is_empty() { 0 } else { 8 }, SubKind::NestedPlain),
            (if call_callees.is_empty() || !ok(false) { 0 } else { 8 }, SubKind::NestedCall),
        ];
        let kind = *self.rng.weighted(&table);
        let label = self.label("sub");
        let (kind, body) = match kind {
            SubKind::Plain => (kind, "    r0 = 0\n    exit\n".to_string()),
            SubKind::Helper => (kind, format!("    call {}\n    exit\n", self.rng.pick(HELPERS))),
            SubKind::Kfunc => {
                let pt = self.prog_type;
                let names: Vec<String> = self
                    .module
                    .kfuncs
                    .values()
                    .filter(|k| k.returns_scalar && k.args <= 1 && k.prog_types.contains(&pt))
                    .map(|k| k.name.clone())
                    .collect();
                match names.is_empty() {
                    true => (SubKind::Plain, "    r0 = 0\n    exit\n".to_string()),
                    false => (kind, format!("    r1 = 1\n    call {}\n    exit\n", self.rng.pick(&names))),
                }
            }
            SubKind::Branchy => {
                let l = self.label("ret");
                (kind, format!("    if r1 > 3 goto {l}\n    r0 = 1\n    exit\n{l}:\n    r0 = 0\n    exit\n"))
            }
            SubKind::Lock { .. } | SubKind::Unlock { .. } => {
                let unlock = matches!(kind, SubKind::Unlock { .. });
                let s = match self.held.and_then(|h| self.slot_with(h)) {
                    Some(s) if unlock => s,
                    _ => self.pick_slot(),
                };
                let slot = self.slots[s].clone().expect("slot 0 is always set");
                let off = self.lock_off(slot.map).unwrap_or(0);
                let call = if unlock { "bpf_spin_unlock" } else { "bpf_spin_lock" };
                let k = if unlock {
                    SubKind::Unlock { map: slot.map, off }
                } else {
                    SubKind::Lock { map: slot.map, off }
                };
                (k, format!("    r1 += {off}\n    call {call}\n    r0 = 0\n    exit\n"))
            }
            SubKind::NestedPlain => {
                let callee = self.rng.pick(&plain_callees).clone();
                (kind, format!("    r1 = 2\n    call {callee}\n    exit\n"))
            }
            _ => {
                let callee = self.rng.pick(&call_callees).clone();
                (SubKind::NestedCall, format!("    call {callee}\n    exit\n"))
            }
        };
        self.subs.push(Sub { label, body, kind, global: None });
        self.subs.len() - 1
    }

    /// A call to a global function (scalar arguments only).
    fn global_call(&mut self, wild: bool) {
        self.tags.insert("global-call");
        let existing: Vec<usize> = (0..self.subs.len())
            .filter(|&i| {
                self.subs[i].global.is_some() && (wild || self.subs[i].kind != SubKind::GlobalExitLocked)
            })
            .collect();
        let idx = if !existing.is_empty() && (existing.len() >= 2 || self.rng.chance(40)) {
            *self.rng.pick(&existing)
        } else {
            self.new_global_sub(wild)
        };
        let args = self.subs[idx].global.unwrap_or(0);
        for r in 1..=args {
            let v = self.rng.range(0, 9);
            self.emit(&format!("r{r} = {v}"));
        }
        let label = self.subs[idx].label.clone();
        self.emit(&format!("call {label}"));
    }

    fn new_global_sub(&mut self, wild: bool) -> usize {
        let label = self.label("gsub");
        let args = self.rng.range(0, 2) as u8;
        let kinds = [
            (50, SubKind::Plain),
            (15, SubKind::Helper),
            (25, SubKind::GlobalLockPair),
            (if wild { 25 } else { 0 }, SubKind::GlobalExitLocked),
        ];
        let kind = *self.rng.weighted(&kinds);
        let body = match kind {
            SubKind::Plain => "    r0 = 0\n    exit\n".to_string(),
            SubKind::Helper => "    call bpf_get_prandom_u32\n    exit\n".to_string(),
            _ => {
                self.tags.insert("global-data");
                let spec = global_section(&mut self.rng, ".data");
                let m = self.add_map(spec);
                let off = self.lock_off(m).unwrap_or(0);
                let mut b =
                    format!("    r6 = .data ll\n    r1 = r6\n    r1 += {off}\n    call bpf_spin_lock\n");
                if kind == SubKind::GlobalLockPair {
                    b.push_str(&format!("    r1 = r6\n    r1 += {off}\n    call bpf_spin_unlock\n"));
                }
                b.push_str("    r0 = 0\n    exit\n");
                b
            }
        };
        self.globals.push(GlobalFunc { label: label.clone(), args, ctx_args: 0 });
        self.subs.push(Sub { label, body, kind, global: Some(args) });
        self.subs.len() - 1
    }

    /// `BPF_LD_ABS` / `BPF_LD_IND` (r6 holds the ctx).
    fn ld_abs(&mut self) {
        self.tags.insert("ld_abs");
        let sz = *self.rng.pick(&["u8", "u16", "u32"]);
        let k = *self.rng.pick(&[0, 12, 14]);
        if self.rng.chance(70) {
            self.emit(&format!("r0 = *({sz} *)skb[{k}]"));
        } else {
            self.emit("r2 = 1");
            self.emit(&format!("r0 = *({sz} *)skb[r2 + {k}]"));
        }
    }

    /// `bpf_tail_call(ctx, &jmp, 0)` (program types with the helper; others get a plain helper call).
    fn tail_call(&mut self) {
        if !matches!(self.prog_type, ProgType::SchedCls | ProgType::SchedAct | ProgType::Xdp) {
            self.emit("call bpf_get_prandom_u32");
            return;
        }
        self.tags.insert("tail-call");
        self.add_map(prog_array());
        self.emit("r1 = r6");
        self.emit("r2 = jmp ll");
        self.emit("r3 = 0");
        self.emit("call bpf_tail_call");
    }

    /// `if <cond> goto else; then-arm; [goto end; else: else-arm;] end:`. Each arm ends
    /// in the lock state the branch began with, unless wild. `<cond>`: a scalar against a constant
    /// (`scalar_cond`) or, in about one branch of eight, a pointer against 0 (`pointer_cond`).
    fn branch(&mut self, depth: u32, in_loop: bool, wild: bool) -> bool {
        self.tags.insert("branch");
        let slot = self.slots.iter().enumerate().find_map(|(i, s)| s.clone().map(|s| (i, s)));
        let int = slot.as_ref().and_then(|(_, s)| {
            let m = s.map;
            self.maps[m]
                .value
                .fields
                .iter()
                .find(|f| f.kind == crate::case::FieldKind::Int)
                .map(|f| (f.offset as i32 - s.delta, f.size))
        });
        let cond = if self.rng.chance(12) {
            self.pointer_cond(slot.as_ref().map(|(i, _)| *i))
        } else {
            self.scalar_cond(int, slot.as_ref().map(|(i, _)| *i), wild)
        };
        let l_else = self.label("else");
        self.emit(&format!("if {cond} goto {l_else}"));
        let before = self.held;
        let n = self.rng.range(1, 3) as usize;
        let may_exit = !in_loop && self.rng.chance(35);
        let then_exit = self.block(n, depth + 1, in_loop, may_exit);
        if !then_exit && !wild {
            self.restore(before);
        }
        let after_then = self.held;
        if self.rng.chance(40) {
            let l_end = self.label("end");
            if !then_exit {
                self.emit(&format!("goto {l_end}"));
            }
            self.emit_label(&l_else);
            self.held = before;
            let n = self.rng.range(1, 2) as usize;
            let may_exit = !then_exit && !in_loop && self.rng.chance(25);
            let else_exit = self.block(n, depth + 1, in_loop, may_exit);
            if !else_exit && !wild {
                self.restore(before);
            }
            self.emit_label(&l_end);
            if else_exit {
                self.held = after_then;
            }
        } else {
            self.emit_label(&l_else);
            if then_exit {
                self.held = before;
            }
        }
        false
    }

    /// `<r0|w0> <cmp> K` after loading r0 from the slot's int field, a helper or a constant.
    fn scalar_cond(&mut self, int: Option<(i32, u32)>, slot: Option<usize>, wild: bool) -> String {
        let held = self.held.is_some();
        match (self.rng.below(100), int, slot) {
            (0..=54, Some((o, size)), Some(i)) => {
                let ty = if size == 8 { "u64" } else { "u32" };
                self.emit(&format!("r0 = *({ty} *){}", mem(7 + i, o)));
            }
            (55..=89, _, _) if !held || wild => self.emit("call bpf_get_prandom_u32"),
            _ => {
                let k = self.rng.range(0, 4);
                self.emit(&format!("r0 = {k}"));
            }
        }
        let reg = if self.rng.chance(80) { "r0" } else { "w0" };
        let cmp = *self.rng.pick(CMPS);
        let k = self.rng.range(0, 8);
        format!("{reg} {cmp} {k}")
    }

    /// A non-null pointer against 0 (`is_branch_taken()` -> `reg_not_null()`): the lock slot's map
    /// value (decided, but not in a 32-bit compare on 7.x), the ctx or a stack pointer (both
    /// branches walked), in 64 or 32 bits.
    fn pointer_cond(&mut self, slot: Option<usize>) -> String {
        self.tags.insert("ptr-null-branch");
        let reg = match (self.rng.below(3), slot) {
            (0, Some(i)) => 7 + i,
            (1, _) => {
                self.emit("r0 = r10");
                self.emit("r0 += -8");
                0
            }
            _ => 6,
        };
        let w = if self.rng.chance(30) { "w" } else { "r" };
        let cmp = if self.rng.chance(50) { "==" } else { "!=" };
        format!("{w}{reg} {cmp} 0")
    }

    /// A bounded loop on a counter in `r9`; the body ends in the lock state it began with
    /// unless wild.
    fn counted_loop(&mut self, depth: u32, wild: bool) {
        self.tags.insert("loop");
        let head = self.label("loop");
        let n = self.rng.range(2, 4);
        self.emit("r9 = 0");
        self.emit_label(&head);
        let before = self.held;
        let ops = self.rng.range(1, 2) as usize;
        self.block(ops, depth + 1, true, false);
        if !wild {
            self.restore(before);
        }
        self.emit("r9 += 1");
        self.emit(&format!("if r9 < {n} goto {head}"));
    }

    /// An open-coded `bpf_iter_num` loop (iterator at `r10 - 24`).
    fn iter_loop(&mut self, depth: u32, wild: bool) {
        self.tags.insert("iter-loop");
        let head = self.label("iter");
        let done = self.label("done");
        let n = self.rng.range(1, 4);
        self.emit("r1 = r10");
        self.emit("r1 += -24");
        self.emit("r2 = 0");
        self.emit(&format!("r3 = {n}"));
        self.emit("call bpf_iter_num_new");
        self.emit_label(&head);
        self.emit("r1 = r10");
        self.emit("r1 += -24");
        self.emit("call bpf_iter_num_next");
        self.emit(&format!("if r0 == 0 goto {done}"));
        let before = self.held;
        let ops = self.rng.range(1, 2) as usize;
        self.block(ops, depth + 1, true, false);
        if !wild {
            self.restore(before);
        }
        self.emit(&format!("goto {head}"));
        self.emit_label(&done);
        self.emit("r1 = r10");
        self.emit("r1 += -24");
        self.emit("call bpf_iter_num_destroy");
    }
}
