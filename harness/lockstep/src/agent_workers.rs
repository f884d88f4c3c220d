//! The agent on a guest with several vCPUs: a worker thread per vCPU (pinned to it, with a
//! loader of its own) runs the cases the host sends, while the main thread reads the control port
//! and hands each `Run` to the first free worker. Only the first worker takes cases until the
//! host says how many may ([`HostMsg::Workers`]: another of its jobs gave the guest its CPU), so
//! a guest that shares the host's cores with others keeps to one vCPU. Results go back in the
//! order the cases came (the host reads them so), in batches as with one vCPU ([`Outbox`]). No
//! `Busy` is written: with several cases in the kernel at once, the host cannot tell which one a
//! dead guest died in, and runs the cases in flight again one at a time (one case in flight:
//! exact). The per-phase timers (`lockstep.timers=1`, `bench guest`) are kept by the one-vCPU
//! loop only. The workers run at the one-vCPU loop's real-time priority
//! ([`agent_io::CASE_LOOP_PRIORITY`]), the reader above them.

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use lockstep_bpf::Loader;
use lockstep_core::case::Case;
use lockstep_core::proto::{GuestMsg, HostMsg, KernelResult};
use lockstep_vm::outbox::{HostLines, Outbox};
use lockstep_vm::{agent_io, stream};

/// One piece of work, numbered in the order the host sent it.
enum Job {
    /// A case to run.
    Run { id: u64, case: Box<Case>, want_log: bool },
    /// A result already known (a `Run` that did not decode).
    Answer { id: u64, result: KernelResult },
}

/// The queue of jobs and the results waiting for their turn.
#[derive(Default)]
struct State {
    queue: VecDeque<(u64, Job)>,
    /// No more jobs will come.
    closed: bool,
    /// Jobs taken by a worker and not finished.
    running: usize,
    /// Workers that may take jobs (the first ones).
    active: usize,
    /// The sequence number of the next result to write, and finished results after it.
    next: u64,
    held: BTreeMap<u64, GuestMsg>,
}

struct Shared {
    state: Mutex<State>,
    /// One per worker: a job for the active ones, a change of [`State::active`] or the close for all.
    wake: Vec<Condvar>,
    out: Outbox,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Job `seq` is done with `msg`: writes it and the held results after it that are now in
    /// order (held back while other jobs run or wait).
    fn finish(&self, seq: u64, msg: GuestMsg) -> io::Result<()> {
        let mut st = self.lock();
        st.running -= 1;
        st.held.insert(seq, msg);
        let mut r = Ok(());
        while let Some(msg) = {
            let next = st.next;
            st.held.remove(&next)
        } {
            st.next += 1;
            let more = !st.queue.is_empty() || st.running > 0 || !st.held.is_empty();
            r = r.and(self.out.finish_case(msg, more));
        }
        r
    }
}

/// Serves the control port with `workers` workers until `Shutdown` (see the module docs); the
/// calling thread reads it, pinned to CPU 0 by the caller ([`pin_to`]).
pub fn serve(
    workers: usize,
    mut host: HostLines,
    out: Outbox,
    main_loader: &Result<Loader, String>,
    crash_case: Option<String>,
    hello: &dyn Fn(String) -> GuestMsg,
) -> io::Result<()> {
    let state = State { active: 1, ..State::default() };
    let wake = (0..workers).map(|_| Condvar::new()).collect();
    let shared = Arc::new(Shared { state: Mutex::new(state), wake, out });
    // The reader (pinned by the caller) shares the first worker's vCPU: the others stay idle
    // until they are let in.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handles: Vec<_> = (0..workers)
        .map(|cpu| {
            let shared = Arc::clone(&shared);
            let crash_case = crash_case.clone();
            let ready = ready_tx.clone();
            std::thread::spawn(move || {
                pin_to(cpu);
                let loader = crate::agent::new_loader(workers);
                if let Err(e) = agent_io::run_fifo(0, agent_io::CASE_LOOP_PRIORITY) {
                    eprintln!("lockstep agent: real-time priority for worker {cpu}: {e}");
                }
                let _ = ready.send(());
                work(&shared, cpu, &loader, crash_case.as_deref())
            })
        })
        .collect();
    drop(ready_tx);
    // Every worker's BTF read before the first `Hello` (so a snapshot holds them).
    for _ in 0..workers {
        let _ = ready_rx.recv();
    }
    // Above the workers: the reader wakes when the host writes and hands the cases out at once,
    // though worker 0 shares its vCPU.
    crate::agent::run_fifo_with_watchdog(&shared.out, agent_io::ABOVE_CASE_LOOP_PRIORITY);
    shared.out.send(&hello(agent_io::kernel_release()?))?;
    let mut seq = 0u64;
    let mut push = |job: Job| {
        let mut st = shared.lock();
        st.queue.push_back((seq, job));
        seq += 1;
        let active = st.active;
        drop(st);
        // The active ones only: an idle vCPU is not woken for nothing.
        shared.wake[..active].iter().for_each(Condvar::notify_one);
    };
    let mut bye = false;
    while let Some(line) = host.next_line()? {
        match stream::decode_host_bytes(line) {
            Ok(Some(HostMsg::Run { id, case, want_log })) => push(Job::Run { id, case, want_log }),
            Ok(Some(HostMsg::ListKfuncs { id })) => {
                let listing = lockstep_bpf::kfuncs::list_kfuncs(
                    std::path::Path::new(lockstep_bpf::kfuncs::SYS_BTF),
                    main_loader.as_ref().ok(),
                );
                shared.out.send(&GuestMsg::Kfuncs { id, listing })?;
            }
            Ok(Some(HostMsg::Ping)) => shared.out.send(&hello(agent_io::kernel_release()?))?,
            Ok(Some(HostMsg::Workers { n })) => {
                shared.lock().active = (n as usize).clamp(1, workers);
                shared.wake.iter().for_each(Condvar::notify_one);
            }
            Ok(Some(HostMsg::Shutdown)) => {
                bye = true;
                break;
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("lockstep agent: bad line from host: {e}");
                if let Some(id) = stream::run_id(line) {
                    let result =
                        crate::agent::no_loader("?", &format!("the agent could not decode the case: {e}"));
                    push(Job::Answer { id, result });
                }
            }
        }
    }
    shared.lock().closed = true;
    shared.wake.iter().for_each(Condvar::notify_one);
    let mut r = Ok(());
    for h in handles {
        match h.join() {
            Ok(res) => r = r.and(res),
            Err(_) => r = r.and(Err(io::Error::other("an agent worker panicked"))),
        }
    }
    r?;
    shared.out.flush()?;
    if bye {
        crate::agent::say_bye(&shared.out)?;
    }
    Ok(())
}

/// Worker `index`: takes jobs while it is among the active ones, until the queue is closed and
/// empty.
fn work(
    shared: &Shared,
    index: usize,
    loader: &Result<Loader, String>,
    crash_case: Option<&str>,
) -> io::Result<()> {
    loop {
        let (seq, job) = {
            let mut st = shared.lock();
            loop {
                if index < st.active {
                    if let Some(j) = st.queue.pop_front() {
                        st.running += 1;
                        break j;
                    }
                }
                if st.closed {
                    return Ok(());
                }
                st = shared.wake[index].wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let msg = match job {
            Job::Run { id, case, want_log } => {
                if crash_case == Some(case.name.as_str()) {
                    crate::agent::crash_now(&case.name);
                }
                let result = match loader {
                    Ok(l) => l.run_case(&case, want_log),
                    Err(e) => crate::agent::no_loader(&case.name, e),
                };
                GuestMsg::Result { id, result }
            }
            Job::Answer { id, result } => GuestMsg::Result { id, result },
        };
        shared.finish(seq, msg)?;
    }
}

/// Pins this thread (a worker, or the reader) to CPU `cpu` (best effort: unpinned, the threads
/// still share the vCPUs).
pub(crate) fn pin_to(cpu: usize) {
    if !lockstep_vm::affinity::pin_thread(0, cpu) {
        eprintln!("lockstep agent: could not pin a thread to CPU {cpu}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    fn result(id: u64) -> GuestMsg {
        GuestMsg::Result { id, result: crate::agent::no_loader("c", "test") }
    }

    /// The ids of the results written to the pipe so far.
    fn written(r: &mut std::io::BufReader<std::io::PipeReader>, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| {
                let mut line = Vec::new();
                r.read_until(b'\n', &mut line).unwrap();
                match stream::decode_guest(&line[..line.len() - 1]).unwrap() {
                    Some(GuestMsg::Result { id, .. }) => id,
                    other => panic!("{other:?}"),
                }
            })
            .collect()
    }

    #[test]
    fn results_go_out_in_the_order_the_cases_came_whichever_worker_ends_first() {
        let (r, w) = std::io::pipe().unwrap();
        let out = Outbox::new(std::fs::File::from(std::os::fd::OwnedFd::from(w)));
        let state = State { running: 3, active: 2, ..State::default() };
        let shared = Shared { state: Mutex::new(state), wake: vec![Condvar::new(), Condvar::new()], out };
        // Job 1 ends first: held back, as is job 2 (job 0 still runs).
        shared.finish(1, result(11)).unwrap();
        shared.finish(2, result(12)).unwrap();
        assert_eq!(shared.lock().held.len(), 2);
        // Job 0 ends: all three go out, in order, in one write (nothing else runs or waits).
        shared.finish(0, result(10)).unwrap();
        assert!(shared.lock().held.is_empty());
        let mut r = std::io::BufReader::new(r);
        assert_eq!(written(&mut r, 3), [10, 11, 12]);
        assert_eq!(shared.lock().next, 3);
    }
}
