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

/// Writes the report of `flag` (`--json`, `--junit`, `--markdown`) to `path`, refusing a path
/// that looks like an input ([`refuse_input_like`]).
pub fn write_report(flag: &str, path: &Path, text: &str) -> Result<()> {
    refuse_input_like(flag, path)?;
    write_file(path, text)
}

/// Refuses to write the report of `flag` over a file that looks like an input: a case file
/// (`.toml`), a BPF object or C source (`.o`, `.c`). `--json` takes an optional FILE, so
/// `run --json prog.bpf.o` read the object's path as the report's and overwrote the object
/// (seen here, 2026-12-05); the message says how to write what was meant. Bad input (exit 2),
/// before anything is written.
pub fn refuse_input_like(flag: &str, path: &Path) -> Result<(), crate::exit::BadInput> {
    let input_like =
        path.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "toml" | "o" | "c"));
    if input_like {
        return Err(crate::exit::BadInput(format!(
            "{flag} {}: refusing to write a report over what looks like an input (a case file, a BPF \
             object or C source); `--json` takes an optional FILE: write `--json=FILE`, or put the \
             inputs before `--json`",
            path.display()
        )));
    }
    Ok(())
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
            write_report("--json", p, &json_text())?;
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
