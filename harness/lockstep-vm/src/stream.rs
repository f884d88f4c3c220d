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

/// Encodes one host message as a line (with `\n`).
pub fn encode_host(msg: &HostMsg) -> String {
    let mut s = serde_json::to_string(msg).expect("HostMsg serialises");
    s.push('\n');
    s
}

/// Encodes one guest message as a line (with `\n`); used by agents.
pub fn encode_guest(msg: &GuestMsg) -> String {
    let mut s = serde_json::to_string(msg).expect("GuestMsg serialises");
    s.push('\n');
    s
}

/// Decodes one line from the host (for agents); blank lines are `Ok(None)`.
pub fn decode_host(line: &str) -> Result<Option<HostMsg>, serde_json::Error> {
    let t = line.trim();
    if t.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(t).map(Some)
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
        assert_eq!(decode_host(&encode_host(&HostMsg::Shutdown)).unwrap(), Some(HostMsg::Shutdown));
    }
}
