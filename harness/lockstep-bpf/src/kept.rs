//! [`KeptPrograms`]: accepted programs left loaded after their case instead of closed at once.
//!
//! Closing an accepted program makes the kernel free it (`bpf_prog_put()`, an RCU callback, then
//! `bpf_prog_free_deferred()` on a workqueue: kallsyms, the JIT image, the program's pages).
//! Under TCG that work is 2-3% of a small case's round trip, and a guest is powered off right
//! after its last case (docs/speed.md, sessions 19-20). So the agent's loaders keep up to a
//! budget of accepted programs open, oldest closed first once it is spent, and never close the
//! rest (the power-off frees them).
//!
//! A kept program holds its maps: the case's own maps (a prog array, a local storage, a map too
//! large for the setup cache, [`crate::reuse`]) stay too once their fds are closed, and their
//! frees (often an RCU grace period or barrier each) go the same way. Memory is bounded: by count
//! (each program holds an fd) and by the bytes of [`program_bytes`], which count each program's
//! maps as its own (so the bound holds when maps are shared or the setup cache lets one go).
//!
//! What the verifier sees is unchanged: the loader never runs, attaches or pins a program, no
//! case gets another case's own map, and a map the setup cache shares is as empty with a kept
//! program as without (`crate::reuse`: only map types that keep no record of their programs).

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

/// Bytes of kept programs (by [`program_bytes`]) allowed before the oldest are closed: an eighth
/// of a guest's 512 MiB (about 2000 of the corpus's programs).
const MAX_KEPT_PROGRAM_BYTES: u64 = 64 << 20;

/// The kernel memory a loaded program of `insns` instructions holds, roughly, plus its `maps`
/// maps: a page each and `map_bytes` of keys and values ([`crate::reuse::map_bytes`]). The base
/// is measured: debian:7.3 with the corpus's 185 accepted programs kept had 4.6-6.1 MB less
/// `MemFree` at shutdown than with none kept, 25-33 KB a program with its (mostly one) map
/// (slab +0.65 MB, vmalloc +0.92 MB; the rest is page-granular: the program's pages, the JIT's).
pub(crate) fn program_bytes(insns: usize, maps: usize, map_bytes: u64) -> u64 {
    (24 << 10) + 32 * insns as u64 + 4096 * maps as u64 + map_bytes
}

/// Accepted programs kept open, oldest first, within a count and a byte budget.
#[derive(Debug, Default)]
pub(crate) struct KeptPrograms {
    progs: VecDeque<(OwnedFd, u64)>,
    bytes: u64,
    /// Programs kept at most (0: none, the default: every program is closed after its case).
    max_count: usize,
}

impl KeptPrograms {
    /// Sets how many programs may stay open (each holds an fd).
    pub fn set_max_count(&mut self, n: usize) {
        self.max_count = n;
        self.make_room(0, 0);
    }

    /// Keeps `prog` (of `bytes` by [`program_bytes`]) open, closing the oldest kept ones until it
    /// fits; closes it at once when it cannot fit at all.
    pub fn keep(&mut self, prog: OwnedFd, bytes: u64) {
        if self.max_count == 0 || bytes > MAX_KEPT_PROGRAM_BYTES {
            return;
        }
        self.make_room(1, bytes);
        self.progs.push_back((prog, bytes));
        self.bytes += bytes;
    }

    /// Closes the oldest programs until `count` more programs of `bytes` in all fit both budgets.
    fn make_room(&mut self, count: usize, bytes: u64) {
        while self.progs.len() + count > self.max_count || self.bytes + bytes > MAX_KEPT_PROGRAM_BYTES {
            let Some((_, b)) = self.progs.pop_front() else { break };
            self.bytes -= b;
        }
    }

    /// Programs kept now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.progs.len()
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use super::*;

    fn fd() -> OwnedFd {
        // Any open file stands in for a program here.
        std::fs::File::open("/dev/null").unwrap().into()
    }

    #[test]
    fn nothing_is_kept_by_default() {
        let mut k = KeptPrograms::default();
        k.keep(fd(), program_bytes(10, 0, 0));
        assert_eq!(k.len(), 0);
    }

    #[test]
    fn the_oldest_programs_are_closed_when_the_count_is_spent() {
        let mut k = KeptPrograms::default();
        k.set_max_count(3);
        let fds: Vec<OwnedFd> = (0..5).map(|_| fd()).collect();
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        for f in fds {
            k.keep(f, program_bytes(10, 1, 64));
        }
        let kept: Vec<i32> = k.progs.iter().map(|(f, _)| f.as_raw_fd()).collect();
        assert_eq!(kept, raw[2..], "the last three, in order");
        // Lowering the count closes the oldest at once.
        k.set_max_count(1);
        assert_eq!(k.progs.iter().map(|(f, _)| f.as_raw_fd()).collect::<Vec<_>>(), raw[4..]);
    }

    #[test]
    fn the_byte_budget_counts_each_programs_maps() {
        let mut k = KeptPrograms::default();
        k.set_max_count(10_000);
        // Programs holding 1 MiB of maps each: 64 MiB fit less than 64 of them.
        for _ in 0..100 {
            k.keep(fd(), program_bytes(100, 1, 1 << 20));
        }
        assert!(k.len() < 64 && k.len() > 48, "{}", k.len());
        assert!(k.bytes <= MAX_KEPT_PROGRAM_BYTES);
        // One larger than the whole budget is not kept, and closes none of the others.
        let before = k.len();
        k.keep(fd(), program_bytes(1, 1, MAX_KEPT_PROGRAM_BYTES));
        assert_eq!(k.len(), before);
    }
}
