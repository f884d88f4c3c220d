//! Where reports go: stdout or files, following the commands' shared `--json [FILE]`,
//! `--junit FILE` and `--markdown FILE` conventions.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The report flags of the commands that write reports (`run`, `report merge`,
/// `validate-series`), flattened into each command's arguments.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct OutputArgs {
    /// Write the JSON (`run`, `report merge`: JSON lines, one per case and kernel) to FILE, or
    /// to stdout instead of the text with `--json` alone.
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-")]
    pub json: Option<PathBuf>,
    /// Write a JUnit XML report (`run`, `report merge`).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write a Markdown report (with the kernel-against-kernel section; `validate-series`:
    /// `-` prints it instead of the table).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
}

/// Whether `path` is `-`, the flags' name for stdout.
pub fn is_stdout(path: Option<&Path>) -> bool {
    path.is_some_and(|p| p.as_os_str() == "-")
}

/// Writes `text` to `path`; an error names the file.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The `--json [FILE]` convention: `-` prints the JSON instead of the human-readable text, a file
/// receives the JSON while the text still goes to stdout, and no flag prints the text.
pub fn json_or_text(
    json: Option<&Path>,
    json_text: impl FnOnce() -> String,
    text: impl FnOnce() -> String,
) -> Result<()> {
    match json {
        Some(p) if p.as_os_str() == "-" => print!("{}", with_newline(json_text())),
        Some(p) => {
            write_file(p, &json_text())?;
            print!("{}", text());
        }
        None => print!("{}", text()),
    }
    Ok(())
}

fn with_newline(mut s: String) -> String {
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s
}
