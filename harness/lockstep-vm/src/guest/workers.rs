//! The workers of a guest with several vCPUs ([`crate::guest::GuestConfig::vcpus`]): the agent
//! runs cases on its first vCPU only until the host lets more in ([`HostMsg::Workers`]), which
//! it does when another of its jobs hands the guest its CPU ([`WorkerCpus::add`]): the vCPU's
//! QEMU thread is moved to that CPU, and the agent's worker on that vCPU starts taking cases.
//! A guest restarted after a crash gets the same workers again.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use lockstep_core::proto::HostMsg;

use super::{Event, GuestOutcome, GuestRun, Stage};

/// The host CPUs given to a guest's vCPUs after the first, shared between the job that runs the
/// guest and the jobs that join it (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct WorkerCpus {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// `cpus.len()`, read without the lock on every pass of the case pipeline.
    added: AtomicUsize,
    /// For vCPU 1, 2, ...: the host CPU its thread moves to (None: left where it is).
    cpus: Mutex<Vec<Option<usize>>>,
    /// The event channel of the guest that shares these workers now.
    nudge: Mutex<Option<Sender<Event>>>,
}

impl WorkerCpus {
    /// None added yet: the guest runs cases on its first vCPU.
    pub fn new() -> Self {
        WorkerCpus::default()
    }

    /// Lets the guest's next vCPU run cases, its thread moved to host CPU `cpu` (None: left where
    /// it is). Taken up by the guest between two writes of its pipeline.
    pub fn add(&self, cpu: Option<usize>) {
        let mut cpus = self.inner.cpus.lock().unwrap_or_else(|e| e.into_inner());
        cpus.push(cpu);
        self.inner.added.store(cpus.len(), Ordering::Release);
        drop(cpus);
        if let Some(tx) = &*self.inner.nudge.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = tx.send(Event::Nudge);
        }
    }

    /// vCPUs added so far.
    pub fn added(&self) -> usize {
        self.inner.added.load(Ordering::Acquire)
    }

    fn cpus(&self) -> Vec<Option<usize>> {
        self.inner.cpus.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The name QEMU gives vCPU `index`'s thread with `-name ...,debug-threads=on`
/// ([`crate::qemu::QemuArgs::to_args`]): `CPU 1/TCG`, `CPU 1/KVM`.
pub fn is_vcpu_thread(comm: &str, index: usize) -> bool {
    comm.trim_end().strip_prefix(&format!("CPU {index}/")).is_some_and(|accel| !accel.is_empty())
}

/// The thread id of vCPU `index` of the QEMU process `pid` (None: not found).
fn vcpu_thread(pid: u32, index: usize) -> Option<i32> {
    let tasks = std::fs::read_dir(Path::new("/proc").join(pid.to_string()).join("task")).ok()?;
    tasks.flatten().find_map(|t| {
        let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
        if is_vcpu_thread(&comm, index) {
            t.file_name().to_str()?.parse().ok()
        } else {
            None
        }
    })
}

impl GuestRun {
    /// Shares `workers` with this guest: the ones added so far are let in before the next case
    /// is sent, later ones as they come ([`GuestRun::apply_workers`]).
    pub fn share_workers(&mut self, workers: WorkerCpus) {
        *workers.inner.nudge.lock().unwrap_or_else(|e| e.into_inner()) = Some(self.nudge.clone());
        self.workers = Some(workers);
        self.workers_applied = 0;
    }

    /// Lets in the workers added since the last call: moves their vCPU threads and tells the
    /// agent how many vCPUs run cases.
    pub(super) fn apply_workers(&mut self, stage: Stage) -> Result<(), GuestOutcome> {
        let Some(w) = &self.workers else { return Ok(()) };
        if w.added() <= self.workers_applied {
            return Ok(());
        }
        let cpus = w.cpus();
        let pid = self.child.id();
        for (i, cpu) in cpus.iter().enumerate().skip(self.workers_applied) {
            match (cpu, vcpu_thread(pid, i + 1)) {
                (Some(cpu), Some(tid)) => {
                    // Best effort: else it runs where the scheduler puts it.
                    let ok = crate::affinity::pin_thread(tid, *cpu);
                    tracing::debug!(tid, cpu, ok, "vCPU thread moved");
                }
                (Some(_), None) => tracing::warn!("vCPU {} of the guest not found: left where it is", i + 1),
                (None, _) => {}
            }
        }
        self.workers_applied = cpus.len();
        let n = u32::try_from(cpus.len() + 1).unwrap_or(u32::MAX);
        self.send(&HostMsg::Workers { n }, stage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vcpu_threads_are_told_by_their_name() {
        assert!(is_vcpu_thread("CPU 1/TCG\n", 1));
        assert!(is_vcpu_thread("CPU 1/KVM", 1));
        assert!(!is_vcpu_thread("CPU 1/TCG", 0));
        assert!(!is_vcpu_thread("CPU 11/TCG", 1));
        assert!(!is_vcpu_thread("CPU 1/", 1));
        assert!(!is_vcpu_thread("qemu-system-x86", 1));
    }

    #[test]
    fn workers_added_are_counted_in_order() {
        let w = WorkerCpus::new();
        let shared = w.clone();
        assert_eq!(w.added(), 0);
        shared.add(Some(1));
        shared.add(None);
        assert_eq!(w.added(), 2);
        assert_eq!(w.cpus(), [Some(1), None]);
    }
}
