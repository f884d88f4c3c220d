//! The control-port stream: lines in both directions ([`lockstep_core::proto`]); a `Run` and a
//! `Result` in the binary [`lockstep_core::wire`] format (escaped), the other messages JSON.

use lockstep_core::proto::{GuestMsg, HostMsg};

/// Splits a byte stream into lines; keeps the incomplete tail for the next push.
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

impl LineBuffer {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes; returns the lines completed by them (without `\n` / `\r\n`).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=i).collect();
            let s = String::from_utf8_lossy(&line);
            out.push(s.trim_end_matches(['\n', '\r']).to_string());
        }
        out
    }

    /// The incomplete tail (at end of stream).
    pub fn rest(&self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

/// The first byte of a binary line (a JSON line starts with `{`): the host's `Run`, the guest's
/// `Result`.
const BINARY: u8 = 0x01;
/// Escape byte of a binary line: `ESC 1` stands for `\n`, `ESC 2` for `ESC`.
const ESC: u8 = 0x1b;

/// Appends [`BINARY`] and `raw` with `\n` and [`ESC`] escaped to `line` (the runs between them
/// copied whole).
fn push_escaped(line: &mut Vec<u8>, raw: &[u8]) {
    line.reserve(raw.len() + 17);
    line.push(BINARY);
    let mut rest = raw;
    while let Some(i) = memchr::memchr2(b'\n', ESC, rest) {
        line.extend_from_slice(&rest[..i]);
        line.extend_from_slice(&[ESC, if rest[i] == b'\n' { 1 } else { 2 }]);
        rest = &rest[i + 1..];
    }
    line.extend_from_slice(rest);
}

/// Encodes one host message as a line (with `\n`): a `Run` as [`BINARY`] and the
/// [`lockstep_core::wire`] bytes of `(id, case, want_log)`, with `\n` and [`ESC`] escaped; the
/// other messages as JSON. The agent's JSON decode of a `Run` went mostly to the field names
/// (docs/speed.md, session 13).
pub fn encode_host(msg: &HostMsg) -> Vec<u8> {
    let mut line = match msg {
        HostMsg::Run { id, case, want_log } => {
            let raw = lockstep_core::wire::to_vec(&(id, case, want_log)).expect("a Run encodes");
            let mut line = Vec::new();
            push_escaped(&mut line, &raw);
            line
        }
        _ => serde_json::to_vec(msg).expect("HostMsg serialises"),
    };
    line.push(b'\n');
    line
}

/// Encodes one guest message as a line (with `\n`); used by agents.
pub fn encode_guest(msg: &GuestMsg) -> Vec<u8> {
    let mut buf = Vec::new();
    write_guest(&mut buf, msg);
    buf
}

/// Appends one guest message as a line (with `\n`) to `buf` (the agent's outbox encodes its
/// results straight into its buffer): a `Result` as [`BINARY`] and the [`lockstep_core::wire`]
/// bytes of `(id, result)` with `\n` and [`ESC`] escaped (session 14), the other messages as
/// JSON.
pub fn write_guest(buf: &mut Vec<u8>, msg: &GuestMsg) {
    match msg {
        GuestMsg::Result { id, result } => RAW.with_borrow_mut(|raw| {
            raw.clear();
            lockstep_core::wire::append(raw, &(id, result)).expect("a Result encodes");
            push_escaped(buf, raw);
        }),
        _ => serde_json::to_writer(&mut *buf, msg).expect("GuestMsg serialises"),
    }
    buf.push(b'\n');
}

std::thread_local! {
    /// The unescaped bytes of the last `Result` [`write_guest`] encoded (kept: no allocation per
    /// result).
    static RAW: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Decodes one line from the guest as the host reads it (without its `\n`): a binary `Result`
/// or JSON ([`write_guest`]); blank lines are `Ok(None)`.
pub fn decode_guest(line: &[u8]) -> Result<Option<GuestMsg>, DecodeError> {
    decode_line(line, |(id, result)| GuestMsg::Result { id, result })
}

/// Decodes one line of either direction (without its `\n`): a binary line's
/// [`lockstep_core::wire`] payload made a message by `binary`, else JSON; blank lines are
/// `Ok(None)`.
fn decode_line<P: serde::de::DeserializeOwned, M: serde::de::DeserializeOwned>(
    line: &[u8],
    binary: impl FnOnce(P) -> M,
) -> Result<Option<M>, DecodeError> {
    if let Some(escaped) = line.strip_prefix(&[BINARY]) {
        let raw = unescape(escaped).map_err(DecodeError::Binary)?;
        let payload =
            lockstep_core::wire::from_slice(&raw).map_err(|e| DecodeError::Binary(e.to_string()))?;
        return Ok(Some(binary(payload)));
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    Ok(serde_json::from_slice(line).map(Some)?)
}

/// Why a line did not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("binary line: {0}")]
    Binary(String),
}

/// Decodes one line from the host (for agents, as [`crate::outbox::HostLines`] reads it, without
/// its `\n`): a binary `Run` or JSON ([`encode_host`]); blank lines are `Ok(None)`.
pub fn decode_host_bytes(line: &[u8]) -> Result<Option<HostMsg>, DecodeError> {
    decode_line(line, |(id, case, want_log)| HostMsg::Run { id, case, want_log })
}

/// The id of a `Run` line that [`decode_host_bytes`] refused, if it can be read (to answer it).
pub fn run_id(line: &[u8]) -> Option<u64> {
    use serde::de::IgnoredAny;
    if let Some(escaped) = line.strip_prefix(&[BINARY]) {
        let raw = unescape(escaped).ok()?;
        return lockstep_core::wire::from_slice::<(u64, IgnoredAny, IgnoredAny)>(&raw).ok().map(|r| r.0);
    }
    serde_json::from_slice::<serde_json::Value>(line).ok()?.get("body")?.get("id")?.as_u64()
}

/// A binary line's bytes without its escapes (borrowed when it has none).
fn unescape(line: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    let Some(first) = memchr::memchr(ESC, line) else {
        return Ok(line.into());
    };
    let mut out = Vec::with_capacity(line.len());
    let mut rest = line;
    let mut at = Some(first);
    while let Some(i) = at {
        out.extend_from_slice(&rest[..i]);
        out.push(match rest.get(i + 1) {
            Some(1) => b'\n',
            Some(2) => ESC,
            other => return Err(format!("escape byte followed by {other:?}")),
        });
        rest = &rest[i + 2..];
        at = memchr::memchr(ESC, rest);
    }
    out.extend_from_slice(rest);
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_core::proto::ModuleStatus;

    #[test]
    fn lines_split_across_pushes() {
        let mut b = LineBuffer::new();
        assert!(b.push(b"{\"a\":").is_empty());
        assert_eq!(b.push(b"1}\r\n{\"b\"\n\nxy"), vec!["{\"a\":1}", "{\"b\"", ""]);
        assert_eq!(b.rest(), "xy");
    }

    #[test]
    fn guest_and_host_messages_round_trip() {
        let hello = GuestMsg::Hello {
            release: "7.3.4+deb13-amd64".into(),
            module: ModuleStatus::Absent,
            extra_modules: Vec::new(),
            protocol: lockstep_core::proto::PROTOCOL_VERSION,
        };
        let line = encode_guest(&hello);
        assert_eq!(line.first(), Some(&b'{'));
        assert_eq!(decode_guest(line_of(&line)).unwrap(), Some(hello));
        assert_eq!(decode_guest(b"  \r").unwrap(), None);
        assert!(decode_guest(b"[    1.0] not json").is_err());
        let busy = encode_guest(&GuestMsg::Busy { id: 9 });
        assert_eq!(decode_guest(line_of(&busy)).unwrap(), Some(GuestMsg::Busy { id: 9 }));
        let shutdown = encode_host(&HostMsg::Shutdown);
        assert_eq!(shutdown.first(), Some(&b'{'));
        assert_eq!(decode_host_bytes(line_of(&shutdown)).unwrap(), Some(HostMsg::Shutdown));
        assert_eq!(decode_host_bytes(b" \r").unwrap(), None);
    }

    /// An encoded line without its `\n`, which must be its only one.
    fn line_of(encoded: &[u8]) -> &[u8] {
        let line = encoded.strip_suffix(b"\n").expect("a line ends with \\n");
        assert!(!line.contains(&b'\n'));
        line
    }

    /// Every case of the default corpus, as the guest gets it, comes back from a binary `Run`
    /// line equal; the instructions carry `\n` bytes (`r10` as a destination), which are escaped.
    #[test]
    #[cfg(feature = "host")]
    fn every_corpus_case_round_trips_through_a_binary_run() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/corpus");
        let kfuncs = lockstep_core::corpus::known_kfuncs(&lockstep_core::module_src::bundled());
        let (mut n, mut escaped) = (0, 0);
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if path.extension().is_none_or(|x| x != "toml") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            for (i, case) in
                lockstep_core::corpus::load_bytes("f", &bytes, &kfuncs).unwrap().iter().enumerate()
            {
                let msg = HostMsg::Run {
                    id: i as u64 * 1000,
                    case: Box::new(crate::guest::pipeline::for_guest(case)),
                    want_log: i % 2 == 0,
                };
                let encoded = encode_host(&msg);
                assert_eq!(encoded[0], BINARY);
                escaped += usize::from(encoded.contains(&ESC));
                let line = line_of(&encoded);
                assert_eq!(decode_host_bytes(line).unwrap(), Some(msg), "{}", case.name);
                assert_eq!(run_id(line), Some(i as u64 * 1000));
                n += 1;
            }
        }
        assert!(n > 400, "{n} cases");
        assert!(escaped > 0, "no case needed an escape");
    }

    /// A `Result` goes as a binary line (escapes included: a log with newlines, an `ESC` byte in
    /// a message) and comes back equal; appended after what the buffer holds, as the outbox does.
    #[test]
    fn results_round_trip_through_binary_lines() {
        use lockstep_core::proto::{KernelResult, TestRun};
        use lockstep_core::verdict::Verdict;
        let results = [
            KernelResult {
                case: "accepted".into(),
                verdict: Verdict::accept(),
                errno: 0,
                log: None,
                verification_usec: Some(1234),
                insns_processed: Some(10),
                setup_error: None,
                test_run: Some(TestRun::Ran { retval: 10 }),
            },
            KernelResult {
                case: "rejected \u{1b}".into(),
                verdict: Verdict::reject(Some(10), "R1 invalid mem access 'scalar'"),
                errno: 13,
                log: Some("0: (b7) r0 = 0\n10: (61) r0 = *(u32 *)(r1 +0)\nR1 invalid mem access\n".into()),
                verification_usec: None,
                insns_processed: Some(u64::MAX),
                setup_error: Some("ünï".into()),
                test_run: Some(TestRun::Refused { errno: 524, errno_name: "ENOTSUPP".into() }),
            },
        ];
        let mut buf = b"{\"msg\":\"bye\"}\n".to_vec();
        for (i, r) in results.iter().enumerate() {
            write_guest(&mut buf, &GuestMsg::Result { id: 1000 + i as u64, result: r.clone() });
        }
        let lines: Vec<&[u8]> = buf.strip_suffix(b"\n").unwrap().split(|&b| b == b'\n').collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(decode_guest(lines[0]).unwrap(), Some(GuestMsg::Bye));
        for (i, r) in results.iter().enumerate() {
            assert_eq!(lines[i + 1][0], BINARY);
            assert_eq!(
                decode_guest(lines[i + 1]).unwrap(),
                Some(GuestMsg::Result { id: 1000 + i as u64, result: r.clone() })
            );
        }
        assert!(lines[2].contains(&ESC), "the log's newlines are escaped");
        // A broken binary result is an error (the host logs the line), not a message.
        assert!(decode_guest(&lines[2][..lines[2].len() - 1]).is_err());
        assert!(decode_guest(&[BINARY, ESC, 7]).is_err());
    }

    #[test]
    fn a_broken_binary_run_is_an_error() {
        assert!(decode_host_bytes(&[BINARY, ESC, 3]).is_err());
        assert!(decode_host_bytes(&[BINARY, 8, 4]).is_err());
        assert_eq!(run_id(&[BINARY, 8, 4, 7]), None);
        assert_eq!(run_id(br#"{"msg":"run","body":{"id":5}}"#), Some(5));
    }
}
