//! The resumable bisect log: one JSON line per tested commit (`.git/lockstep-bisect.log` in the
//! tree, or `--log`). A re-run reads it back and reuses every recorded outcome instead of
//! building that commit again. Parsing is pure ([`parse`]); reading and appending are the edge.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::plan::StepOutcome;

/// One tested commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Full hash.
    pub commit: String,
    /// Its subject line.
    pub subject: String,
    /// What testing it gave.
    #[serde(flatten)]
    pub outcome: StepOutcome,
    /// The build that was booted (`build:<hash12>`), when it built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
    /// Wall time of the step (build, module, boot, cases), seconds.
    pub seconds: f64,
}

/// A log that cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(
        "{path}:{line}: not a bisect log entry ({error}); fix or remove that line, or pass another --log"
    )]
    BadLine { path: String, line: usize, error: String },
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
}

/// The entries of a log's text, in order. A last line without its newline that does not parse is
/// a write cut short (lockstep was killed): it is dropped, and its line number returned. Any
/// other line that does not parse is an error naming it.
pub fn parse(path: &str, text: &str) -> Result<(Vec<LogEntry>, Option<usize>), LogError> {
    let mut entries = Vec::new();
    let complete = text.ends_with('\n');
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<LogEntry>(line) {
            Ok(e) => entries.push(e),
            Err(_) if i + 1 == lines.len() && !complete => return Ok((entries, Some(i + 1))),
            Err(e) => return Err(LogError::BadLine { path: path.into(), line: i + 1, error: e.to_string() }),
        }
    }
    Ok((entries, None))
}

/// Reads a log (a missing file is an empty log); a cut-short last line is removed from the file
/// so that later appends start on a line of their own.
pub fn read(path: &Path) -> Result<Vec<LogEntry>, LogError> {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(error) => return Err(LogError::Io { path: shown, error }),
    };
    let (entries, cut) = parse(&shown, &text)?;
    if let Some(line) = cut {
        eprintln!(
            "{shown}:{line}: an entry cut short (an interrupted run); dropped, that commit is tested again"
        );
        let keep = text.rfind('\n').map_or(0, |i| i + 1);
        std::fs::write(path, &text[..keep]).map_err(|error| LogError::Io { path: shown, error })?;
    }
    Ok(entries)
}

/// Appends one entry (one line, flushed and synced).
pub fn append(path: &Path, entry: &LogEntry) -> Result<(), LogError> {
    let io = |error| LogError::Io { path: path.display().to_string(), error };
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
    let mut line = serde_json::to_string(entry).expect("a log entry serialises");
    line.push('\n');
    f.write_all(line.as_bytes()).map_err(io)?;
    f.sync_data().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bisect::plan::CaseVerdict;

    fn entry(commit: &str) -> LogEntry {
        LogEntry {
            commit: commit.into(),
            subject: "bpf: a change".into(),
            outcome: StepOutcome::Ran { verdicts: [("a".to_string(), CaseVerdict::Reject)].into() },
            build: Some("build:0123456789ab".into()),
            seconds: 12.5,
        }
    }

    #[test]
    fn entries_round_trip_through_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        assert!(read(&p).unwrap().is_empty());
        append(&p, &entry("aa")).unwrap();
        let failed = LogEntry {
            outcome: StepOutcome::BuildFailed { error: "make all failed".into() },
            build: None,
            ..entry("bb")
        };
        append(&p, &failed).unwrap();
        assert_eq!(read(&p).unwrap(), vec![entry("aa"), failed]);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.lines().next().unwrap().contains(r#""outcome":"ran","verdicts":{"a":"reject"}"#),
            "{text}"
        );
    }

    #[test]
    fn a_cut_short_last_line_is_dropped_and_the_file_repaired() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        append(&p, &entry("aa")).unwrap();
        let mut text = std::fs::read_to_string(&p).unwrap();
        text.push_str(r#"{"commit":"bb","subj"#);
        std::fs::write(&p, &text).unwrap();
        assert_eq!(parse("log", &text).unwrap().1, Some(2));
        assert_eq!(read(&p).unwrap(), vec![entry("aa")]);
        append(&p, &entry("cc")).unwrap();
        assert_eq!(read(&p).unwrap(), vec![entry("aa"), entry("cc")]);
    }

    #[test]
    fn a_bad_line_inside_is_named() {
        let good = serde_json::to_string(&entry("aa")).unwrap();
        let text = format!("{good}\nnot json\n{good}\n");
        let e = parse("/t/.git/lockstep-bisect.log", &text).unwrap_err();
        assert!(e.to_string().starts_with("/t/.git/lockstep-bisect.log:2: not a bisect log entry"), "{e}");
        // A complete last line that does not parse is not a cut-short write either.
        let e = parse("log", &format!("{good}\n{{}}\n")).unwrap_err();
        assert!(e.to_string().starts_with("log:2:"), "{e}");
    }
}
