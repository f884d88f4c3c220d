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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lockstep_core::proto::GuestMsg;

/// Results held back at most before they are written.
pub const MAX_RESULTS: usize = 16;
/// Bytes held back at most (virtio_console's `port_fops_write()` takes 32 KiB per write).
pub const MAX_BYTES: usize = 32 * 1024;
/// How long a case runs before the watchdog writes what is held back, and `Busy`.
pub const BUSY_AFTER: Duration = Duration::from_millis(30);
/// How often the watchdog looks.
const TICK: Duration = Duration::from_millis(10);

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
            if let Some(n) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                let line = self.start..self.start + n;
                self.start += n + 1;
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
    results: usize,
    /// The case running and since when.
    running: Option<(u64, Instant)>,
    /// `Busy` was written for the running case.
    busy_sent: bool,
    /// A write of the watchdog that failed (returned by the next call of the main thread).
    error: Option<io::Error>,
}

impl Pending {
    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let r = self.w.write_all(&self.buf).and_then(|_| self.w.flush());
            self.buf.clear();
            self.results = 0;
            r?;
        }
        Ok(())
    }

    /// Encodes `msg` as a line straight into the buffer.
    fn push(&mut self, msg: &GuestMsg) {
        crate::stream::write_guest(&mut self.buf, msg);
    }

    fn take_error(&mut self) -> io::Result<()> {
        self.error.take().map_or(Ok(()), Err)
    }
}

/// Messages to the host: results in batches, everything else at once (see the module docs).
pub struct Outbox {
    pending: Arc<Mutex<Pending>>,
}

impl Outbox {
    /// Writes to `w` (the control port); starts the watchdog thread.
    pub fn new(w: File) -> Self {
        let pending = Arc::new(Mutex::new(Pending {
            w,
            buf: Vec::with_capacity(MAX_BYTES),
            results: 0,
            running: None,
            busy_sent: false,
            error: None,
        }));
        let p = Arc::downgrade(&pending);
        std::thread::spawn(move || loop {
            std::thread::sleep(TICK);
            let Some(p) = p.upgrade() else { return };
            let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((id, since)) = p.running {
                if !p.busy_sent && since.elapsed() >= BUSY_AFTER {
                    p.busy_sent = true;
                    p.push(&GuestMsg::Busy { id });
                    if let Err(e) = p.flush() {
                        p.error = Some(e);
                    }
                }
            }
        });
        Outbox { pending }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
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
    }

    /// The result of the running case: held back while `more_waiting` (another `Run` is there,
    /// [`HostLines::ready`]) within the limits, else written with what is held back.
    pub fn finish_case(&self, result: &GuestMsg, more_waiting: bool) -> io::Result<()> {
        let mut p = self.lock();
        p.take_error()?;
        p.running = None;
        p.push(result);
        p.results += 1;
        if p.busy_sent || !more_waiting || p.results >= MAX_RESULTS || p.buf.len() >= MAX_BYTES {
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
}
