//! A sampling profile of the whole guest (`lockstep.profile=1` on the kernel command line, e.g.
//! `lockstep bench guest --kernel debian:7.3 --no-vng --no-restore --append lockstep.profile=1
//! --console-dir DIR`): where the guest's one vCPU spends its time, the kernel's functions by
//! name and the agent's own code by address. Off by default; diagnostics for speed work only
//! (docs/speed.md, session 21: how the ERMS cost was found).
//!
//! A thread above the case loop's real-time priority samples `cpu-clock` on CPU 0 (kernel and
//! user, every task; a guest's other vCPUs, which only a parallel run's joined guest has, are
//! not sampled) through `perf_event_open` into a ring buffer, drains it every [`DRAIN_EVERY`]
//! and counts; the agent prints the report on the console at `Shutdown` ([`print_report`]),
//! lines starting `lockstep profile:`. The profiler's own samples are left out. User addresses
//! are offsets into the agent binary: `addr2line -f -C -e <the lockstep binary> 0x<offset>` names
//! them (the release build is stripped of line tables, not of symbols).

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nix::libc;

/// The kernel parameter that starts the profile.
pub const PROFILE_PARAM: &str = "lockstep.profile=1";
/// Nanoseconds of CPU time between samples.
const PERIOD_NS: u64 = 200_000;
/// How often the thread empties the ring.
const DRAIN_EVERY: Duration = Duration::from_millis(20);
/// Data pages of the ring (a power of two): ~20 ms of samples fit many times over.
const RING_PAGES: usize = 64;
/// Entries of each kind the report lists.
const REPORT_TOP: usize = 60;

/// The counts so far, once started.
static PROFILE: OnceLock<Mutex<Profile>> = OnceLock::new();

/// Starts the profile (once; a failure is printed, and the agent goes on without it) and returns
/// once the sampler runs: above the case loop, which runs `SCHED_FIFO`
/// (`agent_io::CASE_LOOP_PRIORITY`). A sampler left in the fair class beside that loop drained
/// nothing in a one-vCPU guest (0 samples); it sleeps between drains, which take microseconds.
pub fn start() {
    if PROFILE.set(Mutex::new(Profile::default())).is_err() {
        return;
    }
    let (running, started) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Err(e) = lockstep_vm::agent_io::run_fifo(0, lockstep_vm::agent_io::ABOVE_CASE_LOOP_PRIORITY) {
            eprintln!("lockstep profile: the sampler stays in the fair class: {e}");
        }
        let _ = running.send(());
        if let Err(e) = sample_forever() {
            eprintln!("lockstep profile: not sampling: {e}");
        }
    });
    let _ = started.recv();
}

/// Prints the report on the console, if the profile runs.
pub fn print_report() {
    let Some(p) = PROFILE.get() else { return };
    // The counts before reading the symbols: that read (a second or more of `kallsyms`
    // formatting under TCG) would be sampled too.
    let counts = p.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let symbols =
        std::fs::read_to_string("/proc/kallsyms").map(|t| KernelSymbols::parse(&t)).unwrap_or_default();
    eprint!("{}", counts.report(&symbols, REPORT_TOP));
}

/// The profiler thread: opens the ring and counts what it holds, every [`DRAIN_EVERY`].
fn sample_forever() -> std::io::Result<()> {
    let me = nix::unistd::gettid().as_raw() as u32;
    let exe_base = exe_base().unwrap_or(0);
    let mut ring = SampleRing::open(PERIOD_NS, RING_PAGES)?;
    let mut bytes = Vec::new();
    let profile = PROFILE.get().expect("set before the thread starts");
    loop {
        std::thread::sleep(DRAIN_EVERY);
        bytes.clear();
        ring.drain(&mut bytes);
        let mut p = profile.lock().unwrap_or_else(|e| e.into_inner());
        for s in decode_samples(&bytes).iter().filter(|s| s.tid != me) {
            p.add(s, exe_base);
        }
    }
}

/// Where the agent binary is mapped (the first mapping of `/proc/self/exe`).
fn exe_base() -> Option<u64> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?.display().to_string();
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let line = maps.lines().find(|l| l.ends_with(&exe))?;
    u64::from_str_radix(line.split('-').next()?, 16).ok()
}

/// A `perf_event_open` ring of `cpu-clock` samples (IP and TID) on CPU 0.
struct SampleRing {
    _fd: OwnedFd,
    base: *mut u8,
    len: usize,
}

// The mapping is only read and written by the thread that owns the ring.
unsafe impl Send for SampleRing {}

/// `struct perf_event_mmap_page`: offsets of `data_head` and `data_tail`.
const DATA_HEAD: usize = 1024;
const DATA_TAIL: usize = 1032;

impl SampleRing {
    fn open(period_ns: u64, pages: usize) -> std::io::Result<SampleRing> {
        // `struct perf_event_attr` (PERF_ATTR_SIZE_VER8, 136 bytes) as u64 words: type
        // PERF_TYPE_SOFTWARE and size; config PERF_COUNT_SW_CPU_CLOCK; sample_period;
        // sample_type PERF_SAMPLE_IP | PERF_SAMPLE_TID; the flag bits all clear (enabled,
        // kernel and user).
        let mut attr = [0u64; 17];
        attr[0] = 1 | (136 << 32);
        attr[2] = period_ns;
        attr[3] = 1 | 2;
        // SAFETY: a valid attr of the size it names; pid -1 and cpu 0: every task on CPU 0.
        let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), -1i32, 0i32, -1i32, 0u64) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a new fd this process owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let len = (1 + pages) * 4096;
        // SAFETY: a shared mapping of the event's ring, as perf_event_open(2) describes.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(SampleRing { _fd: fd, base: base as *mut u8, len })
    }

    /// Appends the records written since the last drain to `out` (whole records, in order).
    fn drain(&mut self, out: &mut Vec<u8>) {
        let data_len = (self.len - 4096) as u64;
        // SAFETY: the header page is mapped; the kernel writes data_head, the reader data_tail.
        unsafe {
            let head = std::ptr::read_volatile(self.base.add(DATA_HEAD) as *const u64);
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            let tail = std::ptr::read_volatile(self.base.add(DATA_TAIL) as *const u64);
            let data = std::slice::from_raw_parts(self.base.add(4096), data_len as usize);
            let (from, to) = ((tail % data_len) as usize, (head % data_len) as usize);
            if head - tail >= data_len {
                // Overrun (never at these rates): drop it all rather than read torn records.
            } else if from <= to {
                out.extend_from_slice(&data[from..to]);
            } else {
                out.extend_from_slice(&data[from..]);
                out.extend_from_slice(&data[..to]);
            }
            std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
            std::ptr::write_volatile(self.base.add(DATA_TAIL) as *mut u64, head);
        }
    }
}

impl Drop for SampleRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `open`.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}

/// One sample: where a task was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub ip: u64,
    /// In user space (else the kernel).
    pub user: bool,
    pub tid: u32,
}

/// `PERF_RECORD_SAMPLE`.
const RECORD_SAMPLE: u32 = 9;
/// `PERF_RECORD_MISC_USER` within `PERF_RECORD_MISC_CPUMODE_MASK`.
const MISC_USER: u16 = 2;

/// The samples of `bytes`, whole perf records (`sample_type` IP | TID: header, ip, pid, tid);
/// other records are skipped, a torn last record ends the walk.
pub fn decode_samples(bytes: &[u8]) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(header) = bytes.get(at..at + 8) {
        let kind = u32::from_le_bytes(header[0..4].try_into().unwrap());
        let misc = u16::from_le_bytes(header[4..6].try_into().unwrap());
        let size = u16::from_le_bytes(header[6..8].try_into().unwrap()) as usize;
        let Some(record) = bytes.get(at..at + size).filter(|_| size >= 8) else { break };
        if kind == RECORD_SAMPLE && size >= 24 {
            out.push(Sample {
                ip: u64::from_le_bytes(record[8..16].try_into().unwrap()),
                user: misc & 7 == MISC_USER,
                tid: u32::from_le_bytes(record[20..24].try_into().unwrap()),
            });
        }
        at += size;
    }
    out
}

/// The kernel's symbols (`/proc/kallsyms`), by address.
#[derive(Debug, Default)]
pub struct KernelSymbols(Vec<(u64, String)>);

impl KernelSymbols {
    /// Reads `/proc/kallsyms` text (`address type name [module]`).
    pub fn parse(text: &str) -> KernelSymbols {
        let mut v: Vec<(u64, String)> = text
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                let addr = u64::from_str_radix(w.next()?, 16).ok()?;
                let name = w.nth(1)?;
                Some((addr, name.to_string()))
            })
            .collect();
        v.sort();
        KernelSymbols(v)
    }

    /// The symbol at or below `addr` ("?" below the first).
    pub fn name_of(&self, addr: u64) -> &str {
        match self.0.partition_point(|(a, _)| *a <= addr) {
            0 => "?",
            i => &self.0[i - 1].1,
        }
    }
}

/// Samples counted: kernel addresses, user offsets into the agent binary.
#[derive(Clone, Debug, Default)]
pub struct Profile {
    kernel: HashMap<u64, u64>,
    user: HashMap<u64, u64>,
}

impl Profile {
    /// Counts `s` (a user address as its offset from `exe_base`).
    pub fn add(&mut self, s: &Sample, exe_base: u64) {
        if s.user {
            *self.user.entry(s.ip.wrapping_sub(exe_base)).or_default() += 1;
        } else {
            *self.kernel.entry(s.ip).or_default() += 1;
        }
    }

    /// The report: totals, then the `top` kernel functions and user offsets, most first.
    pub fn report(&self, symbols: &KernelSymbols, top: usize) -> String {
        let mut by_name: HashMap<&str, u64> = HashMap::new();
        for (ip, n) in &self.kernel {
            *by_name.entry(symbols.name_of(*ip)).or_default() += n;
        }
        let (k, u): (u64, u64) = (self.kernel.values().sum(), self.user.values().sum());
        let mut s = format!("lockstep profile: {} samples, kernel {k}, user {u}\n", k + u);
        let mut kernel: Vec<(&str, u64)> = by_name.into_iter().collect();
        kernel.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        for (name, n) in kernel.iter().take(top) {
            s.push_str(&format!("lockstep profile: kernel {n} {name}\n"));
        }
        let mut user: Vec<(u64, u64)> = self.user.iter().map(|(a, n)| (*a, *n)).collect();
        user.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        for (offset, n) in user.iter().take(top) {
            s.push_str(&format!("lockstep profile: user {n} 0x{offset:x}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(kind: u32, misc: u16, body: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        r.extend_from_slice(&kind.to_le_bytes());
        r.extend_from_slice(&misc.to_le_bytes());
        r.extend_from_slice(&((8 + body.len()) as u16).to_le_bytes());
        r.extend_from_slice(body);
        r
    }

    fn sample_body(ip: u64, pid: u32, tid: u32) -> Vec<u8> {
        [ip.to_le_bytes().as_slice(), &pid.to_le_bytes(), &tid.to_le_bytes()].concat()
    }

    #[test]
    fn samples_are_read_and_other_records_skipped() {
        let mut bytes = record(RECORD_SAMPLE, 1, &sample_body(0xffff_ffff_8100_0010, 1, 7));
        bytes.extend(record(2, 0, &[0; 16])); // PERF_RECORD_LOST
        bytes.extend(record(RECORD_SAMPLE, 2, &sample_body(0x5000, 1, 9)));
        // A torn record at the end is not read.
        bytes.extend(&record(RECORD_SAMPLE, 2, &sample_body(0x6000, 1, 9))[..12]);
        assert_eq!(
            decode_samples(&bytes),
            [
                Sample { ip: 0xffff_ffff_8100_0010, user: false, tid: 7 },
                Sample { ip: 0x5000, user: true, tid: 9 }
            ]
        );
        // A zero size (never written by the kernel) ends the walk instead of looping.
        assert!(decode_samples(&[9, 0, 0, 0, 1, 0, 0, 0]).is_empty());
    }

    #[test]
    fn kernel_addresses_name_the_symbol_at_or_below_them() {
        let syms =
            KernelSymbols::parse("ffffffff81000200 T second\nffffffff81000100 t first [mod]\nnot a line\n");
        assert_eq!(syms.name_of(0xffff_ffff_8100_0100), "first");
        assert_eq!(syms.name_of(0xffff_ffff_8100_01ff), "first");
        assert_eq!(syms.name_of(0xffff_ffff_8100_0300), "second");
        assert_eq!(syms.name_of(0x1000), "?");
    }

    #[test]
    fn the_report_sums_by_function_and_lists_user_offsets() {
        let syms = KernelSymbols::parse("ffffffff81000100 T f\nffffffff81000200 T g\n");
        let mut p = Profile::default();
        for ip in [0xffff_ffff_8100_0100, 0xffff_ffff_8100_0180, 0xffff_ffff_8100_0200] {
            p.add(&Sample { ip, user: false, tid: 1 }, 0);
        }
        p.add(&Sample { ip: 0x5555_0000_1234, user: true, tid: 1 }, 0x5555_0000_0000);
        let r = p.report(&syms, 10);
        assert_eq!(
            r,
            "lockstep profile: 4 samples, kernel 3, user 1\n\
             lockstep profile: kernel 2 f\n\
             lockstep profile: kernel 1 g\n\
             lockstep profile: user 1 0x1234\n"
        );
        assert_eq!(p.report(&syms, 1).lines().count(), 3, "top 1 of each kind");
    }
}
