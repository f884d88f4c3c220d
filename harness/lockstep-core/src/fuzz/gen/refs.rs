//! Test-module kfunc reference patterns: the maybe-null pointer of a `KF_RET_NULL` kfunc, and a
//! reference taken by a `KF_ACQUIRE` kfunc, null-checked and released by a `KF_RELEASE` one.
//!
//! Without chaos a pattern is self-contained: the reference is released on the non-null path
//! before the pattern ends, so no other operation meets a live reference (nor a tail call,
//! `ld_abs` or global call, which the model leaves out with one). On the way the pointer may be
//! copied to `r2`..`r5`, spilled to `r10 - 32` and filled back, and (no lock held, the release
//! kfunc lock-safe) kept in the spill slot across a `bpf_spin_lock` region in which it is released. Rarely (tag
//! `kfunc-ref-leak`) only one arm of an unknown-scalar branch releases it.
//! Wild (tag `kfunc-ref-wild`): released twice, released without a null check, leaked,
//! dereferenced, or a pointer that carries no reference released.

use super::ops::mem;
use super::Builder;
use crate::module_src::LOCK_SAFE_FLAG;
use crate::profile::{ModuleKfunc, KF_ACQUIRE, KF_RELEASE, KF_RET_NULL};

/// The stack slot a referenced pointer is spilled to.
const REF_SLOT: &str = "*(u64 *)(r10 - 32)";

/// The kfuncs the patterns may call now.
struct RefKfuncs {
    ret_null: Option<String>,
    acquire: Option<String>,
    release: Option<String>,
}

/// Returns a maybe-null pointer without a reference.
fn is_ret_null(k: &ModuleKfunc) -> bool {
    k.flags & KF_RET_NULL != 0
        && k.flags & KF_ACQUIRE == 0
        && !k.returns_scalar
        && !k.returns_void
        && k.args <= 1
}

/// Returns a maybe-null pointer carrying a reference.
fn is_acquire(k: &ModuleKfunc) -> bool {
    k.flags & (KF_ACQUIRE | KF_RET_NULL) == KF_ACQUIRE | KF_RET_NULL
        && !k.returns_scalar
        && !k.returns_void
        && k.args <= 1
}

/// Releases the reference its only argument carries.
fn is_release(k: &ModuleKfunc) -> bool {
    k.flags & KF_RELEASE != 0 && k.args == 1
}

impl Builder<'_> {
    /// The reference kfuncs registered for the program type (and lock-safe when a lock is held),
    /// or when wild any of them.
    fn ref_kfuncs(&self, wild: bool) -> RefKfuncs {
        let fits = |k: &ModuleKfunc| wild || self.callable_here(k);
        let find = |p: fn(&ModuleKfunc) -> bool| {
            self.module.kfuncs.values().find(|k| p(k) && fits(k)).map(|k| k.name.clone())
        };
        RefKfuncs { ret_null: find(is_ret_null), acquire: find(is_acquire), release: find(is_release) }
    }

    /// Whether a reference pattern can be emitted now.
    pub(super) fn has_ref_kfuncs(&self, wild: bool) -> bool {
        let r = self.ref_kfuncs(wild);
        r.ret_null.is_some() || (r.acquire.is_some() && r.release.is_some())
    }

    /// A reference pattern (see the module doc).
    pub(super) fn kfunc_ref(&mut self, wild: bool) {
        let RefKfuncs { ret_null, acquire, release } = self.ref_kfuncs(wild);
        let pair = acquire.zip(release);
        match (ret_null, pair) {
            (n, Some((a, r))) if wild => self.ref_wild(&a, &r, n.as_deref()),
            (Some(n), p) if p.is_none() || self.rng.chance(30) => self.ret_null(&n),
            (_, Some((a, r))) => self.acquire_release(&a, &r),
            _ => {}
        }
    }

    /// `r1 = k; call <kfunc>` (the argument decides NULL at run time only).
    fn ref_call(&mut self, name: &str) {
        let arg = self.rng.range(0, 9);
        self.emit(&format!("r1 = {arg}"));
        self.emit(&format!("call {name}"));
    }

    /// A `KF_RET_NULL` kfunc's pointer: unused, or null-checked.
    fn ret_null(&mut self, name: &str) {
        self.tags.insert("kfunc-ret-null");
        self.ref_call(name);
        match self.rng.below(3) {
            0 => {}
            1 => {
                let l = self.label("null");
                self.emit(&format!("if r0 == 0 goto {l}"));
                let c = self.rng.range(2, 5);
                self.emit(&format!("r{c} = r0"));
                self.emit_label(&l);
            }
            _ => {
                let l = self.label("nonnull");
                self.emit(&format!("if r0 != 0 goto {l}"));
                self.emit("r0 = 0");
                self.emit_label(&l);
            }
        }
    }

    /// A slot whose map has a lock, to take around a release.
    fn lockable_slot(&self) -> Option<usize> {
        (0..2).find(|&s| self.slots[s].as_ref().is_some_and(|x| self.lock_off(x.map).is_some()))
    }

    /// Acquire, null check, copies / spill, release on the non-null path.
    fn acquire_release(&mut self, acquire: &str, release: &str) {
        self.tags.insert("kfunc-ref");
        let held = self.held.is_some();
        self.ref_call(acquire);
        let skip = self.label("noref");
        if self.rng.chance(25) {
            let l = self.label("ref");
            self.emit(&format!("if r0 != 0 goto {l}"));
            self.emit(&format!("goto {skip}"));
            self.emit_label(&l);
        } else {
            self.emit(&format!("if r0 == 0 goto {skip}"));
        }
        let mut src = "r0".to_string();
        if self.rng.chance(35) {
            let c = self.rng.range(2, 5);
            self.emit(&format!("r{c} = {src}"));
            src = format!("r{c}");
        }
        // Released inside a lock region only when the release kfunc is lock-safe.
        let safe = self.module.kfuncs.get(release).is_some_and(|k| k.flags & LOCK_SAFE_FLAG != 0);
        let cross = if held || !safe || !self.rng.chance(15) { None } else { self.lockable_slot() };
        // One arm of a branch on an unknown scalar releases: under a lock (no helper call) a map
        // field is the scalar.
        let leak = cross.is_none() && self.rng.chance(4);
        let field = match (leak, held, self.slots[0].clone()) {
            (true, true, Some(slot)) => self.int_field(slot.map).map(|(o, sz)| (o - slot.delta, sz)),
            _ => None,
        };
        let leak = leak && (!held || field.is_some());
        let spill = cross.is_some() || leak || self.rng.chance(25);
        if spill {
            self.emit(&format!("{REF_SLOT} = {src}"));
        }
        if let Some(s) = cross {
            self.tags.insert("kfunc-ref-lock");
            self.lock_call(s, false, true);
        }
        if leak {
            self.tags.insert("kfunc-ref-leak");
            match field {
                Some((o, sz)) => {
                    let ty = if sz == 8 { "u64" } else { "u32" };
                    self.emit(&format!("r0 = *({ty} *){}", mem(7, o)));
                }
                None => self.emit("call bpf_get_prandom_u32"),
            }
            let k = self.rng.range(0, 4);
            self.emit(&format!("if r0 > {k} goto {skip}"));
        }
        if spill {
            self.emit(&format!("r1 = {REF_SLOT}"));
        } else {
            self.emit(&format!("r1 = {src}"));
        }
        self.emit(&format!("call {release}"));
        if let Some(s) = cross {
            self.lock_call(s, true, true);
        }
        self.emit_label(&skip);
    }

    /// A pattern breaking a reference rule.
    fn ref_wild(&mut self, acquire: &str, release: &str, ret_null: Option<&str>) {
        self.tags.insert("kfunc-ref-wild");
        let skip = self.label("noref");
        match self.rng.below(5) {
            0 => {
                // Released twice: the second time R1 is what the release left in the spill slot.
                self.ref_call(acquire);
                self.emit(&format!("if r0 == 0 goto {skip}"));
                self.emit(&format!("{REF_SLOT} = r0"));
                self.emit("r1 = r0");
                self.emit(&format!("call {release}"));
                self.emit(&format!("r1 = {REF_SLOT}"));
                self.emit(&format!("call {release}"));
            }
            1 => {
                // Released without a null check.
                self.ref_call(acquire);
                self.emit("r1 = r0");
                self.emit(&format!("call {release}"));
            }
            2 => {
                // Leaked (null-checked or not).
                self.ref_call(acquire);
                if self.rng.chance(50) {
                    self.emit(&format!("if r0 == 0 goto {skip}"));
                    self.emit(&format!("{REF_SLOT} = r0"));
                }
            }
            3 => {
                // Dereferenced (`struct lockstep_obj`: refcount, then val at 4).
                self.ref_call(acquire);
                self.emit(&format!("if r0 == 0 goto {skip}"));
                self.emit("r2 = *(u32 *)(r0 + 4)");
                self.emit("r1 = r0");
                self.emit(&format!("call {release}"));
            }
            _ => {
                // A pointer without a reference released.
                self.ref_call(ret_null.unwrap_or(acquire));
                self.emit(&format!("if r0 == 0 goto {skip}"));
                self.emit("r1 = r0");
                self.emit(&format!("call {release}"));
            }
        }
        self.emit_label(&skip);
    }
}
