//! Where reports go: stdout or files, following the commands' shared `--json [FILE]`,
//! `--junit FILE` and `--markdown FILE` conventions.

use std::path::Path;

use anyhow::{Context, Result};

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
