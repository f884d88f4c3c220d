//! Map-value access checks: `check_mem_region_access()` (bounds, in the kernel's order) and
//! `check_generic_ptr_alignment()` (strict alignment, as atomics use), for the two ways kernels
//! keep a pointer's constant offset.
//!
//! 6.12 keeps it in `reg->off`: the bounds (`smin_value`, `umax_value`) and `var_off` describe
//! only the variable part, and the access offset is `reg->off + insn->off`. 7.x dropped
//! `reg->off`: the constant offset is part of the bounds (`reg->r64`) and of `var_off`, and the
//! access offset is `insn->off` alone. So after `rX += -4` a 7.x map-value pointer has
//! `reg_smin() == -4` and `reg_umax() == 2^64 - 4`, and every access through it fails one of the
//! bounds checks.

use super::scalar::Scalar;

/// `BPF_MAX_VAR_OFF`: the largest offset the verifier lets a pointer have.
pub(crate) const BPF_MAX_VAR_OFF: i64 = 1 << 29;

/// What `check_mem_region_access()` reads of a map-value pointer and an access offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Region {
    /// `reg_smin(reg)` / `reg->smin_value`.
    pub smin: i64,
    /// `reg_umax(reg)` / `reg->umax_value`.
    pub umax: u64,
    /// The `off` argument: `insn->off` (7.x) or `reg->off + insn->off` (6.12).
    pub off: i64,
}

impl Region {
    /// The region of a pointer with constant offset `reg_off` and variable part `var` (None: 0),
    /// accessed at `insn_off`. `in_var_off`: the profile keeps constant offsets in the bounds.
    pub fn new(in_var_off: bool, reg_off: i64, var: Option<Scalar>, insn_off: i64) -> Region {
        let var = var.unwrap_or(Scalar::known(0));
        if in_var_off {
            // adjust_ptr_min_max_vals(): dst->r64 = cnum64_add(ptr->r64, off->r64).
            let t = Scalar::known(reg_off) + var;
            Region { smin: t.smin, umax: t.umax, off: insn_off }
        } else {
            Region { smin: var.smin, umax: var.umax, off: reg_off + insn_off }
        }
    }
}

/// Why `check_mem_region_access()` refuses an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegionError {
    /// "R%d min value is negative, either use unsigned index or do a if (index >=0) check."
    MinNegative,
    /// `__check_mem_access()`: "invalid access to map value, value_size=%d off=%d size=%d" with
    /// this `off` (the min bound's, then the max bound's).
    OutOfBounds(i64),
    /// "R%d unbounded memory access, make sure to bounds check any such access".
    Unbounded,
}

/// `check_mem_region_access()` for a `size`-byte access to a `mem_size`-byte map value, in the
/// kernel's order: negative min, the min bound's access, unbounded max, the max bound's access.
/// On success, the accessed byte range's start and (exclusive) end bound for the special-field
/// overlap check of `check_map_access()` (`reg_smin + off`, `reg_umax + off + size`).
pub(crate) fn check_region(r: Region, size: u8, mem_size: u32) -> Result<(i64, i64), RegionError> {
    let size = size as i64;
    let fits_s32 = |v: i64| v == v as i32 as i64;
    if r.smin < 0 && (r.smin == i64::MIN || !fits_s32(r.off.wrapping_add(r.smin)) || r.smin + r.off < 0) {
        return Err(RegionError::MinNegative);
    }
    // __check_mem_access() takes the offset as an int.
    let mem = |off: i64| off >= 0 && off + size <= mem_size as i64;
    let lo = r.smin.wrapping_add(r.off) as i32 as i64;
    if !mem(lo) {
        return Err(RegionError::OutOfBounds(lo));
    }
    if r.umax >= BPF_MAX_VAR_OFF as u64 {
        return Err(RegionError::Unbounded);
    }
    let hi = (r.umax as i64 + r.off) as i32 as i64;
    if !mem(hi) {
        return Err(RegionError::OutOfBounds(hi));
    }
    Ok((lo, hi + size))
}

/// `tnum_strn()` of a constant tnum (kernel/bpf/log.c): decimal up to `U16_MAX`, in 7.x also
/// signed decimal from `S16_MIN` to `S16_MAX`, otherwise hex.
pub(crate) fn tnum_const_str(v: i64, signed_decimal: bool) -> String {
    if (v as u64) <= u16::MAX as u64 {
        (v as u64).to_string()
    } else if signed_decimal && (i16::MIN as i64..=i16::MAX as i64).contains(&v) {
        v.to_string()
    } else {
        format!("{:#x}", v as u64)
    }
}

/// `check_generic_ptr_alignment()` under strict alignment for a pointer whose offsets are all
/// constant: whether `reg_off + var + insn_off` is a multiple of `size` (byte accesses always are).
pub(crate) fn is_aligned(total: i64, size: u8) -> bool {
    size == 1 || total.rem_euclid(size as i64) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    // check_mem_region_access() (7.2 verifier.c): `rX += -4` then `*(u32 *)(rX + 4)`: smin -4,
    // off 4 passes the negative-min check, the min bound's access [0, 4) is inside, and
    // reg_umax() = 2^64 - 4 >= BPF_MAX_VAR_OFF.
    #[test]
    fn negative_constant_offset_is_unbounded_in_7x() {
        let r = Region::new(true, -4, None, 4);
        assert_eq!((r.smin, r.umax, r.off), (-4, (-4i64) as u64, 4));
        assert_eq!(check_region(r, 4, 8), Err(RegionError::Unbounded));
    }

    // The same pointer accessed at +0: smin + off = -4 < 0.
    #[test]
    fn negative_sum_is_min_negative_in_7x() {
        assert_eq!(check_region(Region::new(true, -8, None, 0), 8, 16), Err(RegionError::MinNegative));
        // 6.12: reg->off = -8, bounds 0: __check_mem_access(off = -8).
        assert_eq!(check_region(Region::new(false, -8, None, 0), 8, 16), Err(RegionError::OutOfBounds(-8)));
    }

    // A negative offset whose sum with the access offset stays negative is reported before
    // __check_mem_access() sees the access end beyond the value.
    #[test]
    fn min_bound_access_is_checked_before_unbounded() {
        // smin -2, off 8, size 4, value 8: [6, 10) is outside; reported with off 6.
        assert_eq!(check_region(Region::new(true, -2, None, 8), 4, 8), Err(RegionError::OutOfBounds(6)));
    }

    #[test]
    fn positive_offsets_agree_between_layouts() {
        for in_var in [false, true] {
            assert_eq!(check_region(Region::new(in_var, 4, None, 0), 4, 8), Ok((4, 8)));
            assert_eq!(check_region(Region::new(in_var, 4, None, 4), 4, 8), Err(RegionError::OutOfBounds(8)));
        }
        // A variable part [0, 4] on a constant 4 in 7.x: smin 4, umax 8.
        let r = Region::new(true, 4, Some(Scalar::below(4)), 0);
        assert_eq!((r.smin, r.umax), (4, 8));
        assert_eq!(check_region(r, 4, 8), Err(RegionError::OutOfBounds(8)));
        assert_eq!(check_region(r, 4, 12), Ok((4, 12)));
    }

    // A negative constant plus a variable part that may reach zero wraps in unsigned terms:
    // reg_umax() = U64_MAX.
    #[test]
    fn negative_constant_plus_variable_wraps() {
        let r = Region::new(true, -4, Some(Scalar::below(8)), 4);
        assert_eq!((r.smin, r.umax), (-4, u64::MAX));
        assert_eq!(check_region(r, 4, 16), Err(RegionError::Unbounded));
    }

    // tnum_strn() (7.2 log.c): "misaligned value access off -4+14 size 4" from a var_off of -4.
    #[test]
    fn tnum_strings() {
        assert_eq!(tnum_const_str(0, true), "0");
        assert_eq!(tnum_const_str(-4, true), "-4");
        assert_eq!(tnum_const_str(-4, false), "0xfffffffffffffffc");
        assert_eq!(tnum_const_str(70000, true), "0x11170");
    }

    #[test]
    fn alignment() {
        assert!(!is_aligned(10, 4));
        assert!(is_aligned(-4 + 12, 4));
        assert!(!is_aligned(-4 + 14, 4));
        assert!(is_aligned(3, 1));
        assert!(!is_aligned(4, 8));
    }
}
