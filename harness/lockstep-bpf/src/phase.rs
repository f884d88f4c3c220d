//! Per-phase timers of the guest agent (`lockstep.timers=1` on the kernel command line, e.g.
//! `lockstep run --append lockstep.timers=1 --console-dir DIR`): where a case's round trip goes
//! inside the guest. Off by default; when off, [`mark`] is one relaxed atomic load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

/// Whether the timers run (set once by the agent).
static ON: AtomicBool = AtomicBool::new(false);

/// A phase of the agent's work on one case: [`mark`] charges the time since the last mark to it.
#[derive(Clone, Copy, Debug)]
pub enum Phase {
    /// Waiting for the next line from the host.
    Wait,
    /// Decoding the `Run` line.
    Decode,
    /// Program BTF: build and load (or the setup cache's hit).
    Btf,
    /// Maps (created or kept).
    Maps,
    /// Relocation: the program copy with map fds and kfunc ids.
    Reloc,
    /// `BPF_PROG_LOAD` with its log buffer.
    Load,
    /// Parsing the verifier log.
    Parse,
    /// Closing the program fd and the case's own maps.
    Close,
    /// Encoding the result and writing it (or holding it back).
    Result,
}

const N: usize = 9;
const NAMES: [&str; N] = ["wait", "decode", "btf", "maps", "reloc", "load", "parse", "close", "result"];
static SUMS: [AtomicU64; N] = [const { AtomicU64::new(0) }; N];
static LAST: Mutex<Option<Instant>> = Mutex::new(None);
static CASES: AtomicU64 = AtomicU64::new(0);
static VERIFY_USEC: AtomicU64 = AtomicU64::new(0);

/// Turns the timers on.
pub fn enable() {
    ON.store(true, Relaxed);
}

/// Whether the timers are on.
pub fn enabled() -> bool {
    ON.load(Relaxed)
}

/// Charges the time since the last mark to `p`.
#[inline]
pub fn mark(p: Phase) {
    if !ON.load(Relaxed) {
        return;
    }
    let now = Instant::now();
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(t) = *last {
        SUMS[p as usize].fetch_add(now.duration_since(t).as_nanos() as u64, Relaxed);
    }
    *last = Some(now);
}

/// Counts one finished case and its kernel verification time; every `window` cases, the means
/// per case (ms) as one line, and the sums start again.
pub fn case_done(verification_usec: Option<u64>, window: u64) -> Option<String> {
    if !ON.load(Relaxed) {
        return None;
    }
    VERIFY_USEC.fetch_add(verification_usec.unwrap_or(0), Relaxed);
    let n = CASES.fetch_add(1, Relaxed) + 1;
    if n < window {
        return None;
    }
    CASES.store(0, Relaxed);
    let mut s = format!("lockstep timers: {n} cases, ms per case:");
    for (i, name) in NAMES.iter().enumerate() {
        let ns = SUMS[i].swap(0, Relaxed);
        s.push_str(&format!(" {name} {:.3}", ns as f64 / 1e6 / n as f64));
    }
    let v = VERIFY_USEC.swap(0, Relaxed);
    s.push_str(&format!(" (kernel verification {:.3})", v as f64 / 1e3 / n as f64));
    Some(s)
}
