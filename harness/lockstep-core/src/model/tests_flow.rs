//! Unit tests for the control-flow rules of issue 14 items 3-4: a failed `bpf_res_spin_lock()`'s
//! return value through 32-bit copies (`check_kfunc_call()`'s fork, `zext_32_to_64()`).

use super::scalar::{CmpOp, Scalar};

/// R0 of the failed-acquisition branch: `__mark_reg_s32_range(R0, -MAX_ERRNO, -1)`.
fn failed_r0() -> Scalar {
    Scalar { smin: -4095, smax: -1, umin: (-4095i64) as u64, umax: u64::MAX }
}

#[test]
fn zext_of_a_failed_res_lock_result_stays_non_zero() {
    let w = failed_r0().zext32();
    assert_eq!((w.umin, w.umax), (0xffff_f001, 0xffff_ffff));
    assert_eq!(CmpOp::Ne.decided32(&w, 0), Some(true));
    assert_eq!(CmpOp::Ne.decided(&w, 0), Some(true));
    // -EDEADLK is in the range: undecided.
    assert_eq!(CmpOp::Ne.decided32(&w, -35), None);
}

#[test]
fn zext_across_a_2_32_block_is_any_u32() {
    let s = Scalar { smin: 0, smax: 1 << 33, umin: 0, umax: 1 << 33 };
    assert_eq!(s.zext32(), Scalar::below(u32::MAX as u64));
}
