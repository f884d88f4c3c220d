//! The output files of `lockstep run`, opened (or their directory checked) before any guest boots,
//! so that a bad path is exit 2 naming it instead of results lost after the run. JSON lines are
//! written and flushed one by one as the results arrive; the other reports are rendered at the end
//! (or on interruption) from the collected rows.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::exit::BadInput;
use crate::report::{self, RunRow};

/// A report file, created (truncated) up front and written once.
pub struct ReportFile {
    path: PathBuf,
    file: File,
}

impl ReportFile {
    /// Creates `path` for the report of `flag`; failure is bad input naming both.
    pub fn create(flag: &str, path: &Path) -> Result<ReportFile> {
        let file = File::create(path)
            .map_err(|e| BadInput(format!("{flag} {}: cannot write there: {e}", path.display())))?;
        Ok(ReportFile { path: path.to_path_buf(), file })
    }

    /// Writes the report; an error names the file.
    pub fn write(mut self, text: &str) -> Result<()> {
        self.file
            .write_all(text.as_bytes())
            .and_then(|_| self.file.flush())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Where the JSON lines go.
enum JsonSink {
    Stdout,
    File(ReportFile),
}

/// Every output `lockstep run` was asked for.
pub struct RunFiles {
    json: Option<JsonSink>,
    /// JUnit XML.
    pub junit: Option<ReportFile>,
    /// Markdown.
    pub markdown: Option<ReportFile>,
    /// Kernel-against-kernel differences.
    pub differences: Option<ReportFile>,
    /// The first failure to stream a JSON line (later lines are not attempted).
    json_error: Option<anyhow::Error>,
}

impl RunFiles {
    /// Opens every file of the options (`json`: `-` is stdout) and checks that `console_dir` can
    /// take files; the first bad path is [`BadInput`] naming it.
    pub fn open(
        json: Option<&Path>,
        junit: Option<&Path>,
        markdown: Option<&Path>,
        differences: Option<&Path>,
        console_dir: Option<&Path>,
    ) -> Result<RunFiles> {
        if let Some(d) = console_dir {
            std::fs::create_dir_all(d)
                .and_then(|_| tempfile::tempfile_in(d).map(drop))
                .map_err(|e| BadInput(format!("--console-dir {}: cannot write there: {e}", d.display())))?;
        }
        let json = match json {
            Some(p) if p.as_os_str() == "-" => Some(JsonSink::Stdout),
            Some(p) => Some(JsonSink::File(ReportFile::create("--json", p)?)),
            None => None,
        };
        let open = |flag: &str, p: Option<&Path>| p.map(|p| ReportFile::create(flag, p)).transpose();
        Ok(RunFiles {
            json,
            junit: open("--junit", junit)?,
            markdown: open("--markdown", markdown)?,
            differences: open("--differences", differences)?,
            json_error: None,
        })
    }

    /// Whether the JSON lines go to stdout (instead of the verdict matrix).
    pub fn json_on_stdout(&self) -> bool {
        matches!(self.json, Some(JsonSink::Stdout))
    }

    /// Streams one row as a JSON line, flushed at once. A failure is kept for [`RunFiles::finish_json`].
    pub fn row(&mut self, row: &RunRow) {
        if self.json_error.is_some() {
            return;
        }
        let line = report::json_lines(std::slice::from_ref(row));
        let r = match &mut self.json {
            None => Ok(()),
            Some(JsonSink::Stdout) => {
                let mut out = std::io::stdout().lock();
                out.write_all(line.as_bytes()).and_then(|_| out.flush()).context("writing JSON to stdout")
            }
            Some(JsonSink::File(f)) => f
                .file
                .write_all(line.as_bytes())
                .and_then(|_| f.file.flush())
                .with_context(|| format!("writing {}", f.path.display())),
        };
        self.json_error = r.err();
    }

    /// Replaces the streamed JSON file with `rows` (the run's final order): written to a temporary
    /// file beside it and renamed over it, so that a failure leaves the streamed file (every row,
    /// in arrival order) as it was. Nothing for stdout or a file that is not a regular file
    /// (`/dev/...`), nor after a streaming failure.
    pub fn rewrite_json(&mut self, rows: &[RunRow]) -> Result<()> {
        let Some(JsonSink::File(f)) = &self.json else { return Ok(()) };
        if self.json_error.is_some() || !std::fs::metadata(&f.path).is_ok_and(|m| m.is_file()) {
            return Ok(());
        }
        let path =
            std::fs::canonicalize(&f.path).with_context(|| format!("resolving {}", f.path.display()))?;
        let mut tmp = path.clone().into_os_string();
        tmp.push(format!(".lockstep-{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let written = std::fs::write(&tmp, report::json_lines(rows))
            .and_then(|_| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing {} in the run's order", path.display()));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// The first error of streaming the JSON lines, if any.
    pub fn finish_json(&mut self) -> Result<()> {
        self.json_error.take().map_or(Ok(()), Err)
    }
}

/// Writes `text` to stdout; a closed pipe or a full disk is an error, not a panic.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|_| out.flush()).context("writing to stdout")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_in_a_missing_directory_is_bad_input_naming_it() {
        let e = RunFiles::open(None, Some(Path::new("/nonexistent/dir/r.xml")), None, None, None)
            .err()
            .expect("missing directory");
        assert!(e.downcast_ref::<BadInput>().is_some(), "{e:#}");
        assert!(e.to_string().contains("--junit /nonexistent/dir/r.xml"), "{e:#}");
    }

    #[test]
    fn a_console_dir_under_a_file_is_bad_input() {
        let e = RunFiles::open(None, None, None, None, Some(Path::new("/dev/null/consoles")))
            .err()
            .expect("not a directory");
        assert!(e.downcast_ref::<BadInput>().is_some() && e.to_string().contains("--console-dir"), "{e:#}");
    }

    #[test]
    fn rows_are_on_disk_as_soon_as_they_are_streamed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        let mut f = RunFiles::open(Some(&p), None, None, None, None).unwrap();
        let row = report::test_row(
            "a",
            "k",
            lockstep_core::verdict::VerdictKind::Accept,
            lockstep_core::compare::Agreement::Agree,
        );
        f.row(&row);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("\"case\":\"a\""), "{text}");
        f.finish_json().unwrap();
    }

    #[test]
    fn the_json_file_is_rewritten_in_the_given_order_and_dev_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        let mut f = RunFiles::open(Some(&p), None, None, None, None).unwrap();
        let row = |name: &str| {
            report::test_row(
                name,
                "k",
                lockstep_core::verdict::VerdictKind::Accept,
                lockstep_core::compare::Agreement::Agree,
            )
        };
        let (a, b) = (row("a"), row("b"));
        f.row(&b);
        f.row(&a);
        f.rewrite_json(&[a.clone(), b.clone()]).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, report::json_lines(&[a.clone(), b]), "{text}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
        let mut null = RunFiles::open(Some(Path::new("/dev/null")), None, None, None, None).unwrap();
        null.rewrite_json(&[a]).unwrap();
        use std::os::unix::fs::FileTypeExt;
        assert!(Path::new("/dev/null").metadata().unwrap().file_type().is_char_device());
    }

    #[test]
    fn a_full_disk_is_an_error_naming_the_file() {
        let mut f = RunFiles::open(Some(Path::new("/dev/full")), None, None, None, None).unwrap();
        let row = report::test_row(
            "a",
            "k",
            lockstep_core::verdict::VerdictKind::Accept,
            lockstep_core::compare::Agreement::Agree,
        );
        f.row(&row);
        let e = f.finish_json().unwrap_err();
        assert!(format!("{e:#}").contains("/dev/full"), "{e:#}");
    }
}
