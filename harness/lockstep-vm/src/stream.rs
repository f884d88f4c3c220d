//! The control-port stream: JSON lines in both directions ([`lockstep_core::proto`]).

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

/// Decodes one line from the guest; blank lines are `Ok(None)`.
pub fn decode_guest(line: &str) -> Result<Option<GuestMsg>, serde_json::Error> {
    let t = line.trim();
    if t.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(t).map(Some)
}

/// The first byte of a binary `Run` line (a JSON line starts with `{`).
const BINARY_RUN: u8 = 0x01;
/// Escape byte of a binary line: `ESC 1` stands for `\n`, `ESC 2` for `ESC`.
const ESC: u8 = 0x1b;

/// Encodes one host message as a line (with `\n`): a `Run` as [`BINARY_RUN`] and the
/// [`lockstep_core::wire`] bytes of `(id, case, want_log)`, with `\n` and [`ESC`] escaped; the
/// other messages as JSON. The agent's JSON decode of a `Run` went mostly to the field names
/// (docs/speed.md, session 13).
pub fn encode_host(msg: &HostMsg) -> Vec<u8> {
    let mut line = match msg {
        HostMsg::Run { id, case, want_log } => {
            let raw = lockstep_core::wire::to_vec(&(id, case, want_log)).expect("a Run encodes");
            let mut line = Vec::with_capacity(raw.len() + 16);
            line.push(BINARY_RUN);
            for b in raw {
                match b {
                    b'\n' => line.extend_from_slice(&[ESC, 1]),
                    ESC => line.extend_from_slice(&[ESC, 2]),
                    b => line.push(b),
                }
            }
            line
        }
        _ => serde_json::to_vec(msg).expect("HostMsg serialises"),
    };
    line.push(b'\n');
    line
}

/// Encodes one guest message as a line (with `\n`); used by agents.
pub fn encode_guest(msg: &GuestMsg) -> String {
    let mut buf = Vec::new();
    write_guest(&mut buf, msg);
    String::from_utf8(buf).expect("JSON is UTF-8")
}

/// Appends one guest message as a line (with `\n`) to `buf`, without a `String` of its own (the
/// agent's outbox encodes its results straight into its buffer).
pub fn write_guest(buf: &mut Vec<u8>, msg: &GuestMsg) {
    serde_json::to_writer(&mut *buf, msg).expect("GuestMsg serialises");
    buf.push(b'\n');
}

/// Why a host line did not decode.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("binary Run: {0}")]
    Binary(String),
}

/// Decodes one line from the host (for agents, as [`crate::outbox::HostLines`] reads it, without
/// its `\n`): a binary `Run` or JSON ([`encode_host`]); blank lines are `Ok(None)`.
pub fn decode_host_bytes(line: &[u8]) -> Result<Option<HostMsg>, DecodeError> {
    if let Some(escaped) = line.strip_prefix(&[BINARY_RUN]) {
        let raw = unescape(escaped).map_err(DecodeError::Binary)?;
        let (id, case, want_log) =
            lockstep_core::wire::from_slice(&raw).map_err(|e| DecodeError::Binary(e.to_string()))?;
        return Ok(Some(HostMsg::Run { id, case, want_log }));
    }
    if line.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    Ok(serde_json::from_slice(line).map(Some)?)
}

/// The id of a `Run` line that [`decode_host_bytes`] refused, if it can be read (to answer it).
pub fn run_id(line: &[u8]) -> Option<u64> {
    use serde::de::IgnoredAny;
    if let Some(escaped) = line.strip_prefix(&[BINARY_RUN]) {
        let raw = unescape(escaped).ok()?;
        return lockstep_core::wire::from_slice::<(u64, IgnoredAny, IgnoredAny)>(&raw).ok().map(|r| r.0);
    }
    serde_json::from_slice::<serde_json::Value>(line).ok()?.get("body")?.get("id")?.as_u64()
}

/// A binary line's bytes without its escapes (borrowed when it has none).
fn unescape(line: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    let Some(first) = line.iter().position(|&b| b == ESC) else {
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
        at = rest.iter().position(|&b| b == ESC);
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
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        assert_eq!(decode_guest(&line).unwrap(), Some(hello));
        assert_eq!(decode_guest("  ").unwrap(), None);
        assert!(decode_guest("[    1.0] not json").is_err());
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
                assert_eq!(encoded[0], BINARY_RUN);
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

    #[test]
    fn a_broken_binary_run_is_an_error() {
        assert!(decode_host_bytes(&[BINARY_RUN, ESC, 3]).is_err());
        assert!(decode_host_bytes(&[BINARY_RUN, 8, 4]).is_err());
        assert_eq!(run_id(&[BINARY_RUN, 8, 4, 7]), None);
        assert_eq!(run_id(br#"{"msg":"run","body":{"id":5}}"#), Some(5));
    }
}
