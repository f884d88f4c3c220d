//! Variable offsets on an owned allocated object (`PTR_TO_BTF_ID | MEM_ALLOC`,
//! [`Reg::AllocVar`]). From kernel/bpf/verifier.c:
//!
//! - `adjust_ptr_min_max_vals()` allows `ptr_ += scalar` for PTR_TO_BTF_ID after
//!   `check_reg_sane_offset_scalar()` (the scalar's `smin`) and `check_reg_sane_offset_ptr()` (the
//!   pointer's `smin`), then `dst->var_off = tnum_add(ptr->var_off, off->var_off)` and
//!   `reg_bounds_sync()`. 7.2 / 7.3 keep the whole offset in `var_off` (a constant too: printed
//!   `(0x8; 0x7)` after `+= 8` and `+= x & 7`); 6.12 keeps known constants in `reg->off` and
//!   prints only the variable part (`(0x0; 0x7)`); `ptr_off_in_var_off` tells them apart.
//! - The model keeps no tnum for scalars, so it takes one only where the bounds fix it: a known
//!   constant, or `[0, 2^k - 1]` (a zero-extended `u32` load, `x & 0xff`): `reg_bounds_sync()`
//!   makes `umax = min(umax, value | mask)`, so a tnum with any known bit below 2^k would have
//!   narrowed those bounds. Anything else stays unsupported.
//! - Passed to a kfunc (`check_kfunc_args()`), `__check_func_arg_reg_off()` sends
//!   `PTR_TO_BTF_ID | MEM_ALLOC` to `__check_ptr_off_reg()`, whose first check is
//!   "variable ptr_ access var_off=%s disallowed" (`tnum_strn()`: "(%#llx; %#llx)"), -EACCES.
//!   The model answers that for the list kfuncs' head and node arguments (`graph.rs`) only.
//!
//! Every other use of such a register (loads, stores, compares, spills, other calls, exit) is
//! unsupported ([`Machine::alloc_var_use`]), as is one whose reference was released.

use super::access::BPF_MAX_VAR_OFF;
use super::exec::Machine;
use super::scalar::Scalar;
use super::state::{AllocOff, AllocVarOff, Reg, State};
use super::{Step, Stop};
use crate::insn::*;

/// A tnum (`struct tnum`): `value` the known bits, `mask` the unknown ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Tnum {
    pub value: u64,
    pub mask: u64,
}

impl Tnum {
    pub fn konst(v: i64) -> Tnum {
        Tnum { value: v as u64, mask: 0 }
    }
    /// `tnum_add()` (kernel/bpf/tnum.c).
    pub fn add(self, b: Tnum) -> Tnum {
        let sm = self.mask.wrapping_add(b.mask);
        let sv = self.value.wrapping_add(b.value);
        let sigma = sm.wrapping_add(sv);
        let chi = sigma ^ sv;
        let mu = chi | self.mask | b.mask;
        Tnum { value: sv & !mu, mask: mu }
    }
    /// `tnum_range()`.
    pub fn range(min: u64, max: u64) -> Tnum {
        let chi = min ^ max;
        let bits = 64 - chi.leading_zeros();
        if bits > 63 {
            return Tnum { value: 0, mask: u64::MAX };
        }
        let delta = (1u64 << bits) - 1;
        Tnum { value: min & !delta, mask: delta }
    }
    /// `tnum_intersect()`.
    pub fn intersect(self, b: Tnum) -> Tnum {
        let v = self.value | b.value;
        let mu = self.mask & b.mask;
        Tnum { value: v & !mu, mask: mu }
    }
    /// `tnum_strn()` of a tnum with unknown bits (kernel/bpf/tnum.c: "(%#llx; %#llx)"; the
    /// kernel's vsprintf prints 0 as "0x0", as the 7.2 / 7.3 runs show).
    pub fn to_kernel_string(self) -> String {
        format!("({:#x}; {:#x})", self.value, self.mask)
    }
}

/// The scalar's `var_off` where its bounds determine it (see the module comment), else None.
pub(crate) fn scalar_tnum(s: Scalar) -> Option<Tnum> {
    if let Some(c) = s.konst() {
        return Some(Tnum::konst(c));
    }
    let m = s.umax;
    let full = m != u64::MAX && (m + 1).is_power_of_two();
    (s.umin == 0 && s.smin == 0 && s.smax as u64 == m && full).then_some(Tnum { value: 0, mask: m })
}

/// `reg_bounds_sync()` of a pointer with 64-bit var_off `tn` and unsigned bounds `[lo, hi]`
/// below 2^63 (its 32-bit bounds are unbounded, `__mark_reg32_unbounded()`, so only the 64-bit
/// parts narrow): `__update_reg_bounds()`, `__reg_bound_offset()`, `__update_reg_bounds()`.
pub(crate) fn bounds_sync(tn: Tnum, lo: u64, hi: u64) -> (Tnum, u64, u64) {
    let upd = |tn: Tnum, lo: u64, hi: u64| (lo.max(tn.value), hi.min(tn.value | tn.mask));
    let (lo, hi) = upd(tn, lo, hi);
    let tn = tn.intersect(Tnum::range(lo, hi));
    let (lo, hi) = upd(tn, lo, hi);
    (tn, lo, hi)
}

fn unsupported<T>(what: &str) -> Step<T> {
    Err(Stop::Unsupported(format!("a variable offset on an allocated object (ptr_) {what} is not modelled")))
}

impl Machine<'_> {
    /// `adjust_ptr_min_max_vals()` for `ptr_ += scalar` (`b` already negated for `-=`) where the
    /// scalar is not a known constant, or where the pointer already has a variable offset.
    pub(super) fn alloc_var_add(&self, p: &Reg, b: Scalar) -> Step<Reg> {
        let v7 = self.profile.ptr_off_in_var_off;
        let Some(t) = scalar_tnum(b) else {
            return unsupported("from a scalar whose tnum the bounds do not fix");
        };
        // check_reg_sane_offset_scalar() (6.12: check_reg_sane_offset(off_reg)): a known value
        // within +-BPF_MAX_VAR_OFF, else smin (0 for a [0, 2^k - 1] range) within it.
        if b.konst().is_some_and(|c| c.abs() >= BPF_MAX_VAR_OFF) {
            return unsupported("plus a constant beyond BPF_MAX_VAR_OFF");
        }
        // 7.x: the whole offset is in var_off and the bounds (`off` stays 0); 6.12: `off` is
        // reg->off, var_off and the bounds are the variable part's.
        let (ty, id, off, tn, lo, hi) = match *p {
            Reg::Alloc { ty, off, id, null: false, percpu: false, non_owning: false } if v7 => {
                (ty, id, 0, Tnum::konst(off), off, off)
            }
            Reg::Alloc { ty, off, id, null: false, percpu: false, non_owning: false } => {
                (ty, id, off, Tnum::konst(0), 0, 0)
            }
            Reg::AllocVar { ty, id, var } => {
                let AllocVarOff { off, value, mask, lo, hi } = var.get();
                (ty, id, off, Tnum { value, mask }, lo, hi)
            }
            _ => return unsupported("of another kind"),
        };
        // check_reg_sane_offset_ptr() before (the pointer's smin; a known one is its value;
        // 6.12 also reg->off).
        if lo.abs() >= BPF_MAX_VAR_OFF || off.abs() >= BPF_MAX_VAR_OFF {
            return unsupported("at an offset beyond BPF_MAX_VAR_OFF");
        }
        if let (false, Some(c)) = (v7, b.konst()) {
            // 6.12: a known constant moves reg->off (the sum fits an s32 here), var_off stays.
            let off = off + c;
            if off.abs() >= BPF_MAX_VAR_OFF {
                return unsupported("whose reg->off reaches BPF_MAX_VAR_OFF");
            }
            let var = AllocOff::of(AllocVarOff { off, value: tn.value, mask: tn.mask, lo, hi });
            return Ok(Reg::AllocVar { ty, id, var });
        }
        // dst->r64 = cnum64_add(ptr->r64, off->r64) (6.12: smin/umax sums; BPF_SUB: tnum_sub()
        // of a constant is tnum_add() of its negation); kept to non-negative ranges without wrapping.
        let (lo, hi) = (lo + b.smin, hi.checked_add(b.smax).unwrap_or(-1));
        if lo < 0 || hi < lo {
            return unsupported("whose range would leave [0, 2^63)");
        }
        // check_reg_sane_offset_ptr(dst_reg) after.
        if lo >= BPF_MAX_VAR_OFF {
            return unsupported("whose minimum reaches BPF_MAX_VAR_OFF");
        }
        let (tn, lo, hi) = bounds_sync(tn.add(t), lo as u64, hi as u64);
        if tn.mask == 0 {
            return unsupported("that became a constant again");
        }
        let var =
            AllocOff::of(AllocVarOff { off, value: tn.value, mask: tn.mask, lo: lo as i64, hi: hi as i64 });
        Ok(Reg::AllocVar { ty, id, var })
    }

    /// `__check_ptr_off_reg()` for a [`Reg::AllocVar`] kfunc argument `r` (`check_kfunc_args()`:
    /// the NULL and release checks pass for an owned, non-null pointer whose reference is held).
    pub(super) fn alloc_var_kfunc_arg<T>(&self, st: &State, pc: usize, r: &Reg) -> Step<T> {
        let Reg::AllocVar { id, var, .. } = *r else {
            return unsupported("argument of another kind");
        };
        let AllocVarOff { off, value, mask, .. } = var.get();
        // 6.12's __check_ptr_off_reg() checks a negative reg->off first (not modelled).
        if off < 0 {
            return unsupported("argument with a negative reg->off");
        }
        if !st.refs.contains(&id) {
            return unsupported("whose reference was released");
        }
        let tn = Tnum { value, mask };
        self.reject(pc, format!("variable ptr_ access var_off={} disallowed", tn.to_kernel_string()))
    }

    /// Before each instruction, while some register may hold a [`Reg::AllocVar`]: every use but
    /// `+=` / `-=` of a scalar (`alloc_var_add`), a 64-bit copy and a list push's R1 / R2 is
    /// unsupported.
    pub(super) fn alloc_var_use(&self, st: &State, pc: usize, insn: &Insn) -> Step<()> {
        let regs = &st.cur_ref().regs;
        let is_var = |r: u8| matches!(regs.get(r as usize), Some(Reg::AllocVar { .. }));
        let class = insn.class();
        let x = insn.code & BPF_X != 0;
        let bad = match class {
            BPF_ALU64 if insn.op() == BPF_MOV && insn.off == 0 => false,
            BPF_ALU64
                if matches!(insn.op(), BPF_ADD | BPF_SUB) && !super::arena::is_addr_space_cast(insn) =>
            {
                x && is_var(insn.src)
            }
            BPF_ALU | BPF_ALU64 => is_var(insn.dst) || (x && is_var(insn.src)),
            BPF_LD if insn.is_ld_imm64() => false,
            BPF_LD => is_var(6) || is_var(insn.src),
            BPF_LDX => is_var(insn.src),
            BPF_JMP | BPF_JMP32 if insn.op() == BPF_CALL => {
                let push = insn.src == BPF_PSEUDO_KFUNC_CALL
                    && self
                        .case
                        .program
                        .call_name(pc)
                        .and_then(super::graph::GraphKfunc::of)
                        .is_some_and(|k| matches!(k, super::graph::GraphKfunc::Push { .. }));
                (if push { 3..=5 } else { 1..=5 }).any(is_var)
            }
            BPF_JMP | BPF_JMP32 if insn.op() == BPF_EXIT => is_var(0),
            BPF_JMP | BPF_JMP32 if insn.op() == BPF_JA => false,
            _ => is_var(insn.dst) || is_var(insn.src),
        };
        if bad {
            return Err(Stop::Unsupported(format!(
                "a variable-offset allocated object pointer (ptr_) used by {} at {pc} is not modelled",
                super::fields::describe(insn)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // (0..=0xffff) + 16 - 8: tnum_sub() alone would give (0x0; 0xffffffffffffffff); the
    // range [8, 0x10007] narrows it in reg_bounds_sync().
    #[test]
    fn bounds_sync_narrows_the_tnum() {
        let t = Tnum::konst(0).add(Tnum { value: 0, mask: 0xffff });
        let (t, lo, hi) = bounds_sync(t.add(Tnum::konst(16)), 16, 0xffff + 16);
        assert_eq!((t, lo, hi), (Tnum { value: 0, mask: 0x1ffff }, 16, 0x1000f));
        let (t, ..) = bounds_sync(t.add(Tnum::konst(-8)), 8, 0x10007);
        assert_eq!(t.to_kernel_string(), "(0x0; 0x1ffff)");
        assert_eq!(Tnum::range(8, 15), Tnum { value: 8, mask: 7 });
    }

    // The kernel's message for incorrect_node_var_off / incorrect_head_var_off2 (7.2, 7.3):
    // ptr_ + (u32 load) + 48 -> var_off=(0x0; 0x1ffffffff).
    #[test]
    fn u32_plus_constant_is_the_kernels_tnum() {
        let u32v =
            scalar_tnum(Scalar { smin: 0, smax: u32::MAX as i64, umin: 0, umax: u32::MAX as u64 }).unwrap();
        assert_eq!(u32v, Tnum { value: 0, mask: 0xffff_ffff });
        let t = Tnum::konst(0).add(u32v).add(Tnum::konst(48));
        assert_eq!(t.to_kernel_string(), "(0x0; 0x1ffffffff)");
        let t = Tnum::konst(0).add(u32v).add(Tnum::konst(24));
        assert_eq!(t.to_kernel_string(), "(0x0; 0x1ffffffff)");
    }

    #[test]
    fn only_full_low_ranges_fix_a_tnum() {
        assert_eq!(
            scalar_tnum(Scalar { smin: 0, smax: 0xff, umin: 0, umax: 0xff }),
            Some(Tnum { value: 0, mask: 0xff })
        );
        assert_eq!(scalar_tnum(Scalar { smin: 0, smax: 0xf0, umin: 0, umax: 0xf0 }), None);
        assert_eq!(scalar_tnum(Scalar { smin: 1, smax: 0xff, umin: 1, umax: 0xff }), None);
        assert_eq!(scalar_tnum(Scalar::unknown()), None);
        assert_eq!(scalar_tnum(Scalar::known(-8)), Some(Tnum::konst(-8)));
    }
}
