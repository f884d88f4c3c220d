//! Scalar bounds: the part of `struct bpf_reg_state`'s min/max tracking the lock rules need.

/// A scalar's signed and unsigned 64-bit bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// Truncates to 32 bits, zero-extended (`w` register results).
    pub fn zext32(self) -> Self {
        match self.konst() {
            Some(v) => Scalar::known(v as u32 as i64),
            None if self.umax <= u32::MAX as u64 => self,
            None => Scalar::below(u32::MAX as u64),
        }
    }
    /// `self + other`, unknown on possible overflow.
    pub fn add(self, o: Scalar) -> Self {
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
    /// `-self`.
    pub fn neg(self) -> Self {
        match self.konst() {
            Some(v) => Scalar::known(v.wrapping_neg()),
            None => Scalar::unknown(),
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
    /// Whether the outcome is decided by the bounds (`is_branch_taken()`), for a scalar vs a constant.
    pub fn decided(self, s: &Scalar, k: i64) -> Option<bool> {
        if let Some(v) = s.konst() {
            return Some(self.eval(v, k));
        }
        let t = s.refine(self, k).is_some();
        let f = s.refine(self.negate(), k).is_some();
        match (t, f) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
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

    #[test]
    fn add_overflow_is_unknown() {
        assert_eq!(Scalar::unknown().add(Scalar::known(1)).smin, i64::MIN);
        assert_eq!(Scalar::known(2).add(Scalar::known(3)).konst(), Some(5));
    }
}
