//! Scalar bounds: the part of `struct bpf_reg_state`'s min/max tracking the lock rules need.

/// A scalar's signed and unsigned 64-bit bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Scalar {
    pub smin: i64,
    pub smax: i64,
    pub umin: u64,
    pub umax: u64,
}

impl Scalar {
    /// A known constant.
    pub fn known(v: i64) -> Self {
        Scalar { smin: v, smax: v, umin: v as u64, umax: v as u64 }
    }
    /// Nothing known.
    pub fn unknown() -> Self {
        Scalar { smin: i64::MIN, smax: i64::MAX, umin: 0, umax: u64::MAX }
    }
    /// A value in `[0, max]`.
    pub fn below(max: u64) -> Self {
        if max > i64::MAX as u64 {
            return Scalar { smin: i64::MIN, smax: i64::MAX, umin: 0, umax: max };
        }
        Scalar { smin: 0, smax: max as i64, umin: 0, umax: max }
    }
    /// An unknown value of `bytes` bytes, zero-extended (a load).
    pub fn of_size(bytes: u8) -> Self {
        if bytes >= 8 {
            Scalar::unknown()
        } else {
            Scalar::below((1u64 << (bytes as u32 * 8)) - 1)
        }
    }
    /// The constant, if known.
    pub fn konst(&self) -> Option<i64> {
        (self.umin == self.umax).then_some(self.umin as i64)
    }
    fn sync(mut self) -> Option<Self> {
        // Signed range within non-negative values tightens the unsigned one and vice versa.
        if self.smin >= 0 {
            self.umin = self.umin.max(self.smin as u64);
            self.umax = self.umax.min(self.smax as u64);
        }
        if self.umax <= i64::MAX as u64 {
            self.smin = self.smin.max(self.umin as i64);
            self.smax = self.smax.min(self.umax as i64);
        }
        (self.smin <= self.smax && self.umin <= self.umax).then_some(self)
    }
    /// Truncates to 32 bits, zero-extended (`w` register results). A 64-bit unsigned range
    /// within one 2^32 block keeps its low halves (`zext_32_to_64()` keeps the u32 bounds: a
    /// failed `bpf_res_spin_lock()`'s R0 in [-4095, -1] copied with `w8 = w0` stays non-zero).
    pub fn zext32(self) -> Self {
        match self.konst() {
            Some(v) => Scalar::known(v as u32 as i64),
            None if self.umax <= u32::MAX as u64 => self,
            None if self.umin >> 32 == self.umax >> 32 => {
                let (lo, hi) = (self.umin as u32 as u64, self.umax as u32 as u64);
                Scalar { smin: lo as i64, smax: hi as i64, umin: lo, umax: hi }
            }
            None => Scalar::below(u32::MAX as u64),
        }
    }
    /// Refines `self` knowing `self OP k` holds (unsigned and signed comparisons against a
    /// constant). Returns `None` when the condition cannot hold.
    pub fn refine(self, op: CmpOp, k: i64) -> Option<Scalar> {
        let mut r = self;
        let ku = k as u64;
        match op {
            CmpOp::Eq => return (self.contains(k)).then(|| Scalar::known(k)),
            CmpOp::Ne => {
                if self.konst() == Some(k) {
                    return None;
                }
                if r.umin == ku {
                    r.umin += 1;
                }
                if r.umax == ku {
                    r.umax -= 1;
                }
            }
            CmpOp::Gt => r.umin = r.umin.max(ku.checked_add(1)?),
            CmpOp::Ge => r.umin = r.umin.max(ku),
            CmpOp::Lt => r.umax = r.umax.min(ku.checked_sub(1)?),
            CmpOp::Le => r.umax = r.umax.min(ku),
            CmpOp::Sgt => r.smin = r.smin.max(k.checked_add(1)?),
            CmpOp::Sge => r.smin = r.smin.max(k),
            CmpOp::Slt => r.smax = r.smax.min(k.checked_sub(1)?),
            CmpOp::Sle => r.smax = r.smax.min(k),
            CmpOp::Set | CmpOp::NotSet => {}
        }
        r.sync()
    }

    fn contains(&self, k: i64) -> bool {
        self.smin <= k && k <= self.smax && self.umin <= k as u64 && k as u64 <= self.umax
    }
}

/// A conditional jump's comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Sgt,
    Sge,
    Slt,
    Sle,
    Set,
    NotSet,
}

impl CmpOp {
    /// The comparison of a jump opcode's operation bits.
    pub fn from_op(op: u8) -> Option<CmpOp> {
        use crate::insn::*;
        Some(match op {
            BPF_JEQ => CmpOp::Eq,
            BPF_JNE => CmpOp::Ne,
            BPF_JGT => CmpOp::Gt,
            BPF_JGE => CmpOp::Ge,
            BPF_JLT => CmpOp::Lt,
            BPF_JLE => CmpOp::Le,
            BPF_JSGT => CmpOp::Sgt,
            BPF_JSGE => CmpOp::Sge,
            BPF_JSLT => CmpOp::Slt,
            BPF_JSLE => CmpOp::Sle,
            BPF_JSET => CmpOp::Set,
            _ => return None,
        })
    }
    /// The negation (the fall-through condition).
    pub fn negate(self) -> CmpOp {
        match self {
            CmpOp::Eq => CmpOp::Ne,
            CmpOp::Ne => CmpOp::Eq,
            CmpOp::Gt => CmpOp::Le,
            CmpOp::Ge => CmpOp::Lt,
            CmpOp::Lt => CmpOp::Ge,
            CmpOp::Le => CmpOp::Gt,
            CmpOp::Sgt => CmpOp::Sle,
            CmpOp::Sge => CmpOp::Slt,
            CmpOp::Slt => CmpOp::Sge,
            CmpOp::Sle => CmpOp::Sgt,
            CmpOp::Set => CmpOp::NotSet,
            CmpOp::NotSet => CmpOp::Set,
        }
    }
    /// Evaluates on constants.
    pub fn eval(self, a: i64, b: i64) -> bool {
        let (ua, ub) = (a as u64, b as u64);
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Gt => ua > ub,
            CmpOp::Ge => ua >= ub,
            CmpOp::Lt => ua < ub,
            CmpOp::Le => ua <= ub,
            CmpOp::Sgt => a > b,
            CmpOp::Sge => a >= b,
            CmpOp::Slt => a < b,
            CmpOp::Sle => a <= b,
            CmpOp::Set => a & b != 0,
            CmpOp::NotSet => a & b == 0,
        }
    }
    /// Whether the outcome of `s OP k` is decided by the bounds (`is_scalar_branch_taken()` with a
    /// constant `reg2`), on the 64-bit values or, for `is32` (`BPF_JMP32`), on the low 32 bits.
    /// `k` is the immediate as the instruction holds it (sign-extended). The known bits the kernel
    /// tests for `BPF_JSET` are those of `tnum_range(umin, umax)` (the kernel's `var_off` is at
    /// least as precise, so a decision here is one the kernel makes too).
    pub fn decided(self, s: &Scalar, k: i64) -> Option<bool> {
        self.decide(&View::of(s), &View::of(&Scalar::known(k)))
    }

    /// [`CmpOp::decided`] for a 32-bit compare (`tnum_subreg()`, `reg_u32_min()`, ...).
    pub fn decided32(self, s: &Scalar, k: i64) -> Option<bool> {
        self.decide(&View::of32(s), &View::of32(&Scalar::known(k)))
    }

    fn decide(self, a: &View, b: &View) -> Option<bool> {
        let (umin1, umax1, smin1, smax1) = (a.umin, a.umax, a.smin, a.smax);
        let (umin2, umax2, smin2, smax2) = (b.umin, b.umax, b.smin, b.smax);
        match self {
            CmpOp::Eq | CmpOp::Ne => {
                let ne = if let (Some(x), Some(y)) = (a.konst(), b.konst()) {
                    Some(x != y)
                } else if !a.tnum_overlap(b)
                    || umin1 > umax2
                    || umax1 < umin2
                    || smin1 > smax2
                    || smax1 < smin2
                {
                    Some(true)
                } else {
                    None
                };
                ne.map(|ne| ne == (self == CmpOp::Ne))
            }
            CmpOp::Set | CmpOp::NotSet => {
                let k = b.konst()?;
                let (value, mask) = a.tnum();
                let set = if (!mask & value) & k != 0 {
                    Some(true)
                } else if (mask | value) & k == 0 {
                    Some(false)
                } else {
                    None
                };
                set.map(|set| set == (self == CmpOp::Set))
            }
            CmpOp::Gt => (umin1 > umax2).then_some(true).or((umax1 <= umin2).then_some(false)),
            CmpOp::Sgt => (smin1 > smax2).then_some(true).or((smax1 <= smin2).then_some(false)),
            CmpOp::Lt => (umax1 < umin2).then_some(true).or((umin1 >= umax2).then_some(false)),
            CmpOp::Slt => (smax1 < smin2).then_some(true).or((smin1 >= smax2).then_some(false)),
            CmpOp::Ge => (umin1 >= umax2).then_some(true).or((umax1 < umin2).then_some(false)),
            CmpOp::Sge => (smin1 >= smax2).then_some(true).or((smax1 < smin2).then_some(false)),
            CmpOp::Le => (umax1 <= umin2).then_some(true).or((umin1 > umax2).then_some(false)),
            CmpOp::Sle => (smax1 <= smin2).then_some(true).or((smin1 > smax2).then_some(false)),
        }
    }
}

/// The bounds `is_scalar_branch_taken()` reads of one operand: the 64-bit ones, or the 32-bit
/// subregister's (zero-extended unsigned, sign-extended signed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct View {
    umin: u64,
    umax: u64,
    smin: i64,
    smax: i64,
}

impl View {
    fn of(s: &Scalar) -> View {
        View { umin: s.umin, umax: s.umax, smin: s.smin, smax: s.smax }
    }

    /// The low 32 bits: exact when the 64-bit unsigned range stays within one 2^32 block,
    /// otherwise every u32; the s32 range follows from the u32 one when it does not cross 2^31.
    fn of32(s: &Scalar) -> View {
        let (lo, hi) =
            if s.umin >> 32 == s.umax >> 32 { (s.umin as u32, s.umax as u32) } else { (0, u32::MAX) };
        let (smin, smax) =
            if (lo as i32) <= (hi as i32) { (lo as i32, hi as i32) } else { (i32::MIN, i32::MAX) };
        View { umin: lo as u64, umax: hi as u64, smin: smin as i64, smax: smax as i64 }
    }

    fn konst(&self) -> Option<u64> {
        (self.umin == self.umax).then_some(self.umin)
    }

    /// `tnum_range(umin, umax)` as (value, mask).
    fn tnum(&self) -> (u64, u64) {
        let chi = self.umin ^ self.umax;
        let bits = 64 - chi.leading_zeros();
        if bits > 63 {
            return (0, u64::MAX);
        }
        let delta = (1u64 << bits) - 1;
        (self.umin & !delta, delta)
    }

    /// `tnum_overlap()`: no known bit differs.
    fn tnum_overlap(&self, o: &View) -> bool {
        let ((v1, m1), (v2, m2)) = (self.tnum(), o.tnum());
        (v1 ^ v2) & !(m1 | m2) == 0
    }
}

/// `self + other` (`BPF_ADD` bounds), unknown on possible overflow.
impl std::ops::Add for Scalar {
    type Output = Scalar;
    fn add(self, o: Scalar) -> Scalar {
        let s = (self.smin.checked_add(o.smin), self.smax.checked_add(o.smax));
        let u = (self.umin.checked_add(o.umin), self.umax.checked_add(o.umax));
        let mut r = Scalar::unknown();
        if let (Some(a), Some(b)) = s {
            r.smin = a;
            r.smax = b;
        }
        if let (Some(a), Some(b)) = u {
            r.umin = a;
            r.umax = b;
        }
        r.sync().unwrap_or_else(Scalar::unknown)
    }
}

/// `-self`: known for a constant, else unknown.
impl std::ops::Neg for Scalar {
    type Output = Scalar;
    fn neg(self) -> Scalar {
        match self.konst() {
            Some(v) => Scalar::known(v.wrapping_neg()),
            None => Scalar::unknown(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refine_unsigned() {
        let s = Scalar::of_size(4);
        let r = s.refine(CmpOp::Le, 8).unwrap();
        assert_eq!((r.umin, r.umax, r.smin, r.smax), (0, 8, 0, 8));
        assert!(Scalar::known(3).refine(CmpOp::Gt, 3).is_none());
    }

    #[test]
    fn decided_by_bounds() {
        let s = Scalar::below(4);
        assert_eq!(CmpOp::Gt.decided(&s, 10), Some(false));
        assert_eq!(CmpOp::Gt.decided(&s, 2), None);
        assert_eq!(CmpOp::Eq.decided(&Scalar::known(0), 0), Some(true));
    }

    // is_scalar_branch_taken(), BPF_JSET (7.2 verifier.c): `!((t1.mask | t1.value) & t2.value)`
    // is never taken; bits known set make it always taken.
    #[test]
    fn jset_with_constants() {
        let any = Scalar::unknown();
        assert_eq!(CmpOp::Set.decided(&any, 0), Some(false));
        assert_eq!(CmpOp::NotSet.decided(&any, 0), Some(true));
        assert_eq!(CmpOp::Set.decided(&any, 4), None);
        // [0, 3] has no bit 2.
        assert_eq!(CmpOp::Set.decided(&Scalar::below(3), 4), Some(false));
        assert_eq!(CmpOp::Set.decided(&Scalar::known(6), 4), Some(true));
        assert_eq!(CmpOp::Set.decided32(&any, 0), Some(false));
    }

    // is_scalar_branch_taken(), BPF_JGE on 32 bits: umin1 >= umax2 with umax2 = 0, whatever the
    // upper half holds (the fuzz finding `if w0 >= 0`).
    #[test]
    fn unsigned_32bit_ge_zero_is_always_taken() {
        assert_eq!(CmpOp::Ge.decided32(&Scalar::unknown(), 0), Some(true));
        assert_eq!(CmpOp::Lt.decided32(&Scalar::unknown(), 0), Some(false));
        assert_eq!(CmpOp::Ge.decided32(&Scalar::unknown(), 1), None);
    }

    // The s32 view of 0xffffffff is -1 (reg_s32_min()), so `w0 s< 0` holds.
    #[test]
    fn signed_32bit_compares_use_the_sign_of_bit_31() {
        let v = Scalar::known(0xffff_ffff);
        assert_eq!(CmpOp::Slt.decided32(&v, 0), Some(true));
        assert_eq!(CmpOp::Slt.decided(&v, 0), Some(false));
        // A range crossing 2^31 has every s32 value.
        assert_eq!(CmpOp::Sgt.decided32(&Scalar::below(u32::MAX as u64), 7), None);
        assert_eq!(CmpOp::Sgt.decided32(&Scalar::below(5), 7), Some(false));
    }

    #[test]
    fn equality_on_disjoint_ranges() {
        assert_eq!(CmpOp::Eq.decided(&Scalar::below(4), 7), Some(false));
        assert_eq!(CmpOp::Ne.decided(&Scalar::below(4), 7), Some(true));
        assert_eq!(CmpOp::Eq.decided(&Scalar::below(8), 7), None);
        assert_eq!(CmpOp::Eq.decided(&Scalar::known(7), 7), Some(true));
    }

    #[test]
    fn add_overflow_is_unknown() {
        assert_eq!((Scalar::unknown() + Scalar::known(1)).smin, i64::MIN);
        assert_eq!((Scalar::known(2) + Scalar::known(3)).konst(), Some(5));
    }
}
