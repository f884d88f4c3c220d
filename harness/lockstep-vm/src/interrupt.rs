//! SIGINT and SIGTERM as a flag. [`install`] replaces their default action (immediate death, which
//! would lose the collected results and leave temporary files behind) with recording the signal;
//! the guest runner polls [`pending`], stops QEMU and hands back what it has. Each handler resets
//! itself, so a second signal of the same kind ends the process at once (QEMU still dies with it:
//! its parent-death signal, see [`crate::guest`]).

use std::sync::atomic::{AtomicI32, Ordering};

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
