//! SIGINT and SIGTERM as a flag. [`install`] replaces their default action (immediate death, which
//! would lose the collected results and leave temporary files behind) with recording the signal;
//! the guest runner polls [`pending`], stops QEMU and hands back what it has. Each handler resets
//! itself, so a second signal of the same kind ends the process at once (QEMU still dies with it:
//! its parent-death signal, see [`crate::guest`]).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::libc::c_int;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(sig: c_int) {
    // Async-signal-safe: one atomic store.
    PENDING.store(sig, Ordering::SeqCst);
}

/// Records SIGINT and SIGTERM instead of dying (idempotent; the first of each resets itself).
pub fn install() -> nix::Result<()> {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    let mut result = Ok(());
    INSTALLED.call_once(|| {
        let action = SigAction::new(
            SigHandler::Handler(record),
            SaFlags::SA_RESTART | SaFlags::SA_RESETHAND,
            SigSet::empty(),
        );
        for s in [Signal::SIGINT, Signal::SIGTERM] {
            // SAFETY: the handler only stores into an atomic.
            if let Err(e) = unsafe { sigaction(s, &action) } {
                result = Err(e);
            }
        }
    });
    result
}

/// The signal received since [`install`], if any.
pub fn pending() -> Option<Signal> {
    match PENDING.load(Ordering::SeqCst) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

/// Set by [`request_stop`]: lockstep itself ends the run (no signal).
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);

/// Asks every guest of this process to stop as a signal would (QEMU killed, the cases not run
/// handed back): a run that found bad input while guests were running ends with them.
pub fn request_stop() {
    STOP_REQUESTED.store(true, Ordering::SeqCst);
}

/// Forgets a [`request_stop`] (at the start of a run).
pub fn clear_stop() {
    STOP_REQUESTED.store(false, Ordering::SeqCst);
}

/// Whether [`request_stop`] was called since the last [`clear_stop`].
pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}

/// The conventional exit status of a process ended by `signal` (130 for SIGINT, 143 for SIGTERM).
pub fn exit_status(signal: Signal) -> u8 {
    (128 + signal as i32) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_follows_the_shell_convention() {
        assert_eq!(exit_status(Signal::SIGINT), 130);
        assert_eq!(exit_status(Signal::SIGTERM), 143);
    }
}
