//! The agent's side of the control port with results written in batches.
//!
//! Each write to the virtio-serial port is a syscall whose buffer the guest kernel hands to QEMU
//! and waits for (`__send_to_port()`): under TCG, 0.4-1.1 ms per result (docs/speed.md). The host
//! keeps several cases in flight, so the agent holds a finished result back while another `Run`
//! is already waiting ([`HostLines::ready`]) and writes what it holds in one syscall when no `Run`
//! is waiting, or [`MAX_RESULTS`] / [`MAX_BYTES`] are reached.
//!
//! A case that runs long must not hold the results before it back (the host's time limits and
//! what it shows as done would be off): a watchdog thread writes them, followed by
//! [`GuestMsg::Busy`] naming the case, once a case has run for [`BUSY_AFTER`]; the result of a
//! case named so is written as soon as it is done. So a guest that dies while the host's last
//! message is `Busy { id }` died in case `id`; otherwise the cases without a result may include
//! finished ones, and the host runs them again one at a time (`guest::batch`).

use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lockstep_core::proto::GuestMsg;

/// Results held back at most before they are written.
pub const MAX_RESULTS: usize = 16;
/// Bytes held back at most (virtio_console's `port_fops_write()` takes 32 KiB per write).
pub const MAX_BYTES: usize = 32 * 1024;
/// How long a case runs before the watchdog writes what is held back, and `Busy`.
pub const BUSY_AFTER: Duration = Duration::from_millis(30);

/// The host's lines, read 64 KiB at a time (several pipelined cases per read) into one buffer
/// kept for the agent's life: a line is handed out as a slice of it, neither copied nor checked
/// as UTF-8 first (the JSON decode reads the bytes), and the buffer is not cleared per read
/// (zeroing 64 KiB for every read cost TCG a memset each time; docs/speed.md, session 13).
pub struct HostLines {
    file: File,
    /// Bytes read; `buf[start..end]` not yet returned. Grows (doubling) only for a line longer
    /// than it.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl HostLines {
    /// Lines read from `file` (the control port).
    pub fn new(file: File) -> Self {
        HostLines { file, buf: vec![0; 1 << 16], start: 0, end: 0 }
    }

    /// The next line without its `\n` (blocking); None at the end of the stream (a last line
    /// without `\n` is returned first).
    pub fn next_line(&mut self) -> io::Result<Option<&[u8]>> {
        loop {
            if let Some(line) = self.buffered_range() {
                return Ok(Some(&self.buf[line]));
            }
            // The partial line to the front, and room after it.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                self.buf.resize(2 * self.buf.len(), 0);
            }
            let got = loop {
                match self.file.read(&mut self.buf[self.end..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            if got == 0 {
                if self.end == 0 {
                    return Ok(None);
                }
                let line = 0..self.end;
                self.end = 0;
                return Ok(Some(&self.buf[line]));
            }
            self.end += got;
        }
    }

    /// The next whole line already read (without its `\n`), if any; never reads. The agent
    /// decodes these ahead of their turn, in a row (docs/speed.md, session 22).
    pub fn buffered_line(&mut self) -> Option<&[u8]> {
        self.buffered_range().map(|line| &self.buf[line])
    }

    /// Where the next whole buffered line is, taken from the buffer.
    fn buffered_range(&mut self) -> Option<std::ops::Range<usize>> {
        let n = memchr::memchr(b'\n', &self.buf[self.start..self.end])?;
        let line = self.start..self.start + n;
        self.start += n + 1;
        Some(line)
    }

    /// Whether another line is waiting: a whole line buffered, or bytes readable now (`poll`
    /// with timeout 0).
    pub fn ready(&self) -> bool {
        if memchr::memchr(b'\n', &self.buf[self.start..self.end]).is_some() {
            return true;
        }
        crate::readable::readable_within(&self.file, nix::poll::PollTimeout::ZERO).unwrap_or(false)
    }
}

struct Pending {
    w: File,
    buf: Vec<u8>,
    /// Results held back and not yet encoded: encoded in a row when written (see
    /// [`Pending::encode_held`]).
    held: Vec<GuestMsg>,
    /// An upper estimate of what `held` encodes to ([`encoded_size_bound`]).
    held_bytes: usize,
    results: usize,
    /// The case running and since when.
    running: Option<(u64, Instant)>,
    /// `Busy` was written for the running case.
    busy_sent: bool,
    /// A write of the watchdog that failed (returned by the next call of the main thread).
    error: Option<io::Error>,
    /// The watchdog waits for a case to start (and is woken by [`Outbox::start_case`]).
    parked: bool,
    /// The outbox is gone: the watchdog ends.
    closed: bool,
}

impl Pending {
    fn flush(&mut self) -> io::Result<()> {
        self.encode_held();
        if !self.buf.is_empty() {
            let r = self.w.write_all(&self.buf).and_then(|_| self.w.flush());
            self.buf.clear();
            self.results = 0;
            r?;
        }
        Ok(())
    }

    /// Encodes `msg` as a line straight into the buffer, after the results held before it.
    fn push(&mut self, msg: &GuestMsg) {
        self.encode_held();
        crate::stream::write_guest(&mut self.buf, msg);
    }

    /// Encodes the held results into the buffer, in order. Done in a row when they are written
    /// rather than one at a time after each case. Measured under TCG (docs/speed.md, session 22):
    /// an encode right after a `BPF_PROG_LOAD` took 23-25 us after a rejected program and 35-37
    /// us after an accepted one (whose JIT flushes QEMU's software TLB); the `Run` decode,
    /// measured the same way, took 79-130 us between loads and 45-47 us in a row.
    fn encode_held(&mut self) {
        for msg in self.held.drain(..) {
            crate::stream::write_guest(&mut self.buf, &msg);
        }
        self.held_bytes = 0;
    }

    /// Holds `result` back (encoded when written).
    fn hold(&mut self, result: GuestMsg) {
        self.held_bytes += encoded_size_bound(&result);
        self.held.push(result);
    }

    fn take_error(&mut self) -> io::Result<()> {
        self.error.take().map_or(Ok(()), Err)
    }
}

/// An upper bound of the bytes `msg` encodes to as a line: twice its strings' lengths (an escape
/// doubles a byte at most; the log above all) and a margin for the rest. [`MAX_BYTES`] needs it
/// only roughly.
fn encoded_size_bound(msg: &GuestMsg) -> usize {
    const FIXED: usize = 256;
    match msg {
        GuestMsg::Result { result, .. } => {
            let text = |s: &Option<String>| s.as_ref().map_or(0, String::len);
            FIXED
                + 2 * (result.case.len()
                    + text(&result.log)
                    + text(&result.verdict.message)
                    + text(&result.setup_error))
        }
        _ => FIXED,
    }
}

/// Messages to the host: results in batches, everything else at once (see the module docs).
pub struct Outbox {
    shared: Arc<Shared>,
    /// The watchdog thread's id.
    watchdog_tid: i32,
}

/// What the main thread and the watchdog share.
struct Shared {
    pending: Mutex<Pending>,
    /// Wakes a parked watchdog when a case starts, and at the end.
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The watchdog: sleeps until the running case has run [`BUSY_AFTER`] (a later case may
    /// have started by then: it sleeps on until that one's time), and while no case runs, until
    /// one starts. So it wakes about once per `BUSY_AFTER` while cases run and never while the
    /// agent waits for the host (it used to look every 10 ms, a timer interrupt and two context
    /// switches each time on the guest's vCPU).
    fn watch(&self) {
        let mut p = self.lock();
        loop {
            if p.closed {
                return;
            }
            match p.running {
                Some((id, since)) if !p.busy_sent => {
                    let due = since + BUSY_AFTER;
                    let now = Instant::now();
                    if now >= due {
                        p.busy_sent = true;
                        p.push(&GuestMsg::Busy { id });
                        if let Err(e) = p.flush() {
                            p.error = Some(e);
                        }
                        continue;
                    }
                    p = self.wake.wait_timeout(p, due - now).unwrap_or_else(|e| e.into_inner()).0;
                }
                _ => {
                    p.parked = true;
                    p = self.wake.wait(p).unwrap_or_else(|e| e.into_inner());
                    p.parked = false;
                }
            }
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
    }
}

impl Outbox {
    /// Writes to `w` (the control port); starts the watchdog thread.
    pub fn new(w: File) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending {
                w,
                buf: Vec::with_capacity(MAX_BYTES),
                held: Vec::with_capacity(MAX_RESULTS),
                held_bytes: 0,
                results: 0,
                running: None,
                busy_sent: false,
                error: None,
                parked: false,
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let watchdog = Arc::clone(&shared);
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tid_tx.send(nix::unistd::gettid().as_raw());
            watchdog.watch()
        });
        let watchdog_tid = tid_rx.recv().unwrap_or(0);
        Outbox { shared, watchdog_tid }
    }

    /// The thread id of the watchdog (which an agent running its cases at a real-time priority
    /// puts above them: [`crate::agent_io::ABOVE_CASE_LOOP_PRIORITY`]); 0 if unknown.
    pub fn watchdog_tid(&self) -> i32 {
        self.watchdog_tid
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.shared.lock()
    }

    /// Writes `msg` now, after whatever is held back.
    pub fn send(&self, msg: &GuestMsg) -> io::Result<()> {
        let mut p = self.lock();
        p.take_error()?;
        p.push(msg);
        p.flush()
    }

    /// Case `id` starts (for the watchdog).
    pub fn start_case(&self, id: u64) {
        let mut p = self.lock();
        p.running = Some((id, Instant::now()));
        p.busy_sent = false;
        if p.parked {
            p.parked = false;
            self.shared.wake.notify_one();
        }
    }

    /// The result of the running case: held back while `more_waiting` (another `Run` is there,
    /// [`HostLines::ready`]) within the limits, else written with what is held back.
    pub fn finish_case(&self, result: GuestMsg, more_waiting: bool) -> io::Result<()> {
        let mut p = self.lock();
        p.take_error()?;
        p.running = None;
        p.hold(result);
        p.results += 1;
        if p.busy_sent || !more_waiting || p.results >= MAX_RESULTS || p.buf.len() + p.held_bytes >= MAX_BYTES
        {
            p.flush()?;
        }
        Ok(())
    }

    /// Writes what is held back.
    pub fn flush(&self) -> io::Result<()> {
        let mut p = self.lock();
        p.take_error()?;
        p.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of what `chunks` write into a pipe one after another, read back by [`HostLines`].
    fn lines_of(chunks: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
        let (r, mut w) = std::io::pipe().unwrap();
        let writer = std::thread::spawn(move || {
            for c in chunks {
                w.write_all(&c).unwrap();
            }
        });
        let mut host = HostLines::new(File::from(std::os::fd::OwnedFd::from(r)));
        let mut out = Vec::new();
        while let Some(line) = host.next_line().unwrap() {
            out.push(line.to_vec());
        }
        writer.join().unwrap();
        out
    }

    #[test]
    fn lines_come_whole_across_reads_and_past_the_buffer() {
        let long: Vec<u8> = (0..200_000).map(|i| b'a' + (i % 26) as u8).collect();
        let mut chunks = vec![b"one\ntw".to_vec(), b"o\n\nthr".to_vec(), b"ee\n".to_vec()];
        chunks.push(long[..70_000].to_vec());
        chunks.push(long[70_000..].to_vec());
        chunks.push(b"\nlast without newline".to_vec());
        let want: Vec<Vec<u8>> = vec![
            b"one".to_vec(),
            b"two".to_vec(),
            b"".to_vec(),
            b"three".to_vec(),
            long.clone(),
            b"last without newline".to_vec(),
        ];
        assert_eq!(lines_of(chunks), want);
        assert_eq!(lines_of(Vec::new()), Vec::<Vec<u8>>::new());
    }

    #[test]
    fn buffered_lines_are_the_whole_lines_already_read() {
        let (r, mut w) = std::io::pipe().unwrap();
        w.write_all(b"one\ntwo\nthr").unwrap();
        let mut host = HostLines::new(File::from(std::os::fd::OwnedFd::from(r)));
        assert_eq!(host.buffered_line(), None, "nothing read yet");
        assert_eq!(host.next_line().unwrap(), Some(&b"one"[..]));
        assert_eq!(host.buffered_line(), Some(&b"two"[..]));
        // A partial line is not handed out, and nothing more is read for it.
        assert_eq!(host.buffered_line(), None);
        w.write_all(b"ee\n").unwrap();
        drop(w);
        assert_eq!(host.next_line().unwrap(), Some(&b"three"[..]));
        assert_eq!(host.next_line().unwrap(), None);
    }

    fn result(id: u64) -> GuestMsg {
        use lockstep_core::proto::test_support::kernel_result;
        GuestMsg::Result {
            id,
            result: kernel_result(&format!("c{id}"), lockstep_core::verdict::Verdict::accept()),
        }
    }

    /// An outbox writing into a pipe, and the pipe's other end as lines.
    fn outbox() -> (Outbox, HostLines) {
        let (r, w) = std::io::pipe().unwrap();
        let out = Outbox::new(File::from(std::os::fd::OwnedFd::from(w)));
        (out, HostLines::new(File::from(std::os::fd::OwnedFd::from(r))))
    }

    /// What the next line says: `Busy` or the id of a `Result`.
    fn next(lines: &mut HostLines) -> String {
        match crate::stream::decode_guest(lines.next_line().unwrap().unwrap()).unwrap().unwrap() {
            GuestMsg::Busy { id } => format!("busy {id}"),
            GuestMsg::Result { id, .. } => format!("result {id}"),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn the_size_bound_is_never_below_the_encoding() {
        use lockstep_core::proto::test_support::kernel_result;
        use lockstep_core::verdict::Verdict;
        let mut r = kernel_result("c\n\x1b", Verdict::reject(Some(3), "bad\n\n\x1b"));
        r.log = Some("0: (b7) r0 = 0\n\x1b\n".repeat(500));
        r.setup_error = Some("x".repeat(40));
        for msg in [GuestMsg::Result { id: u64::MAX, result: r }, result(1), GuestMsg::Busy { id: 7 }] {
            let line = crate::stream::encode_guest(&msg);
            assert!(encoded_size_bound(&msg) >= line.len(), "{} < {}", encoded_size_bound(&msg), line.len());
        }
    }

    #[test]
    fn held_results_are_written_in_order_before_what_is_sent_after_them() {
        let (out, mut lines) = outbox();
        for id in [1, 2, 3] {
            out.start_case(id);
            out.finish_case(result(id), true).unwrap();
        }
        out.send(&GuestMsg::Busy { id: 9 }).unwrap();
        let got: Vec<String> = (0..4).map(|_| next(&mut lines)).collect();
        assert_eq!(got, ["result 1", "result 2", "result 3", "busy 9"]);
    }

    #[test]
    fn a_long_case_gets_busy_after_the_results_held_before_it() {
        let (out, mut lines) = outbox();
        // Two short cases with more waiting: held back.
        for id in [1, 2] {
            out.start_case(id);
            out.finish_case(result(id), true).unwrap();
        }
        let started = Instant::now();
        out.start_case(3);
        // The watchdog writes the held results and `Busy { 3 }` once case 3 has run BUSY_AFTER.
        assert_eq!(next(&mut lines), "result 1");
        assert!(started.elapsed() >= BUSY_AFTER, "written after {:?}", started.elapsed());
        assert_eq!(next(&mut lines), "result 2");
        assert_eq!(next(&mut lines), "busy 3");
        // Its result goes out at once, though more cases wait.
        out.finish_case(result(3), true).unwrap();
        assert_eq!(next(&mut lines), "result 3");
        // The next long case is reported as well (the watchdog parked between the two).
        std::thread::sleep(BUSY_AFTER / 2);
        out.start_case(4);
        assert_eq!(next(&mut lines), "busy 4");
        out.finish_case(result(4), false).unwrap();
        assert_eq!(next(&mut lines), "result 4");
    }

    #[test]
    fn short_cases_one_after_another_are_never_busy() {
        let (out, mut lines) = outbox();
        let step = BUSY_AFTER / 10;
        // Fifteen cases of BUSY_AFTER / 10 each (a margin for a loaded machine): the watchdog
        // wakes at the first one's time and finds a later case running.
        for id in 0..15 {
            out.start_case(id);
            std::thread::sleep(step);
            out.finish_case(result(id), id < 14).unwrap();
        }
        drop(out);
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().unwrap() {
            seen.push(match crate::stream::decode_guest(line).unwrap().unwrap() {
                GuestMsg::Result { id, .. } => id,
                other => panic!("unexpected {other:?}"),
            });
        }
        assert_eq!(seen, (0..15).collect::<Vec<_>>());
    }
}
