//! Thread placement, on both sides: the host's jobs and the vCPU threads they hand a guest, the
//! agent's workers on their vCPUs.

/// Confines thread `tid` (0: the calling thread, whose children then inherit the mask) to CPU
/// `cpu`; whether that took.
pub fn pin_thread(tid: i32, cpu: usize) -> bool {
    use nix::sched::{sched_setaffinity, CpuSet};
    let mut one = CpuSet::new();
    one.set(cpu).and_then(|()| sched_setaffinity(nix::unistd::Pid::from_raw(tid), &one)).is_ok()
}
