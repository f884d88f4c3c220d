//! Scanning the guest console (kernel printk on ttyS0) and QEMU's stderr for trouble.

use std::collections::VecDeque;

/// A line of kernel output that matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    /// `Kernel panic - not syncing` (QEMU exits: `panic=-1 -no-reboot`).
    Panic,
    /// `Oops:` (with `oops=panic` on the command line, a panic follows).
    Oops,
    /// `BUG:` (e.g. `BUG: kernel NULL pointer dereference`).
    Bug,
    /// `WARNING:` (a WARN/WARN_ONCE, e.g. the verifier's `verifier_bug()`); not fatal.
    Warning,
    /// `Call Trace:` (follows the others).
    CallTrace,
}

impl Marker {
    /// Whether the kernel is going down (panic, oops or BUG).
    pub fn is_fatal(self) -> bool {
        matches!(self, Marker::Panic | Marker::Oops | Marker::Bug)
    }
}

/// Classifies one console line.
pub fn classify(line: &str) -> Option<Marker> {
    if line.contains("Kernel panic") {
        Some(Marker::Panic)
    } else if line.contains("Oops:") || line.contains("Oops -") {
        Some(Marker::Oops)
    } else if line.contains("BUG:") {
        Some(Marker::Bug)
    } else if line.contains("WARNING:") {
        Some(Marker::Warning)
    } else if line.contains("Call Trace") {
        Some(Marker::CallTrace)
    } else {
        None
    }
}

/// Whether a QEMU stderr line reports a KVM failure (QEMU then pauses instead of exiting).
pub fn is_kvm_failure(line: &str) -> bool {
    line.contains("KVM internal error") || line.contains("internal error") || line.contains("kvm run failed")
}

/// Lines kept for excerpts.
const TAIL: usize = 400;
/// Lines of context before the first fatal marker.
const BEFORE: usize = 5;
/// Longest excerpt.
const EXCERPT: usize = 80;

/// Keeps the recent console and remembers the first fatal marker and every warning.
#[derive(Debug, Default)]
pub struct ConsoleScanner {
    tail: VecDeque<String>,
    /// Number of lines seen.
    seen: usize,
    /// Line number of the first fatal marker.
    fatal_at: Option<usize>,
    fatal: Option<Marker>,
    warnings: Vec<String>,
}

impl ConsoleScanner {
    /// An empty scanner.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one line (CR and trailing whitespace stripped); returns its marker.
    pub fn push_line(&mut self, line: &str) -> Option<Marker> {
        let line = line.trim_end_matches(['\r', '\n', ' ']).to_string();
        let m = classify(&line);
        match m {
            Some(k) if k.is_fatal() && self.fatal.is_none() => {
                self.fatal = Some(k);
                self.fatal_at = Some(self.seen);
            }
            Some(Marker::Warning) => self.warnings.push(line.clone()),
            _ => {}
        }
        if self.tail.len() == TAIL {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
        self.seen += 1;
        m
    }

    /// The first fatal marker seen.
    pub fn fatal(&self) -> Option<Marker> {
        self.fatal
    }

    /// Warnings seen so far; `take_warnings` empties the list.
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The console around the first fatal marker, or the last lines if there was none.
    pub fn excerpt(&self) -> String {
        let first_kept = self.seen - self.tail.len();
        let start = match self.fatal_at {
            Some(at) => at.saturating_sub(BEFORE).max(first_kept),
            None => self.seen.saturating_sub(EXCERPT / 2).max(first_kept),
        };
        self.tail.iter().skip(start - first_kept).take(EXCERPT).cloned().collect::<Vec<_>>().join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_kernel_lines() {
        assert_eq!(
            classify("[    4.1] Kernel panic - not syncing: Attempted to kill init!"),
            Some(Marker::Panic)
        );
        assert_eq!(classify("[    2.0] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI"), Some(Marker::Oops));
        assert_eq!(classify("[    2.0] BUG: kernel NULL pointer dereference, address: 0"), Some(Marker::Bug));
        assert_eq!(
            classify("[    2.0] WARNING: CPU: 0 PID: 1 at kernel/bpf/verifier.c:123"),
            Some(Marker::Warning)
        );
        assert_eq!(classify("[    2.0] Call Trace:"), Some(Marker::CallTrace));
        assert_eq!(classify("[    0.0] Linux version 7.3.4+deb13-amd64"), None);
        assert!(is_kvm_failure("KVM internal error. Suberror: 1"));
        assert!(!is_kvm_failure("qemu-system-x86_64: terminating on signal 15"));
    }

    #[test]
    fn excerpt_starts_before_first_fatal_marker() {
        let mut s = ConsoleScanner::new();
        for i in 0..20 {
            s.push_line(&format!("line {i}\r"));
        }
        s.push_line("WARNING: at foo");
        s.push_line("BUG: unable to handle page fault");
        s.push_line("Kernel panic - not syncing: Fatal exception");
        assert_eq!(s.fatal(), Some(Marker::Bug));
        let ex = s.excerpt();
        assert!(ex.starts_with("line 16\nline 17"), "{ex}");
        assert!(ex.ends_with("Kernel panic - not syncing: Fatal exception"));
        assert!(!ex.contains('\r'));
        assert_eq!(s.take_warnings(), vec!["WARNING: at foo".to_string()]);
        assert!(s.take_warnings().is_empty());
    }

    #[test]
    fn excerpt_without_marker_is_the_tail_and_survives_overflow() {
        let mut s = ConsoleScanner::new();
        for i in 0..1000 {
            s.push_line(&format!("l{i}"));
        }
        let ex = s.excerpt();
        assert!(ex.starts_with("l960\n") && ex.ends_with("l999"), "{ex}");
        assert_eq!(s.fatal(), None);
    }
}
