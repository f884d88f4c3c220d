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
    #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "-", value_parser = report_path)]
    pub json: Option<PathBuf>,
    /// Write a JUnit XML report (`run`, `report merge`).
    #[arg(long, value_name = "FILE", value_parser = report_path)]
    pub junit: Option<PathBuf>,
    /// Write a Markdown report (with the kernel-against-kernel section; `validate-series`:
    /// `-` prints it instead of the table).
    #[arg(long, value_name = "FILE", value_parser = report_path)]
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

/// The value parser of every report path flag (`--json`, `--junit`, `--markdown`,
/// `--differences`): refuses a path that looks like an input, a case file (`.toml`), a BPF object
/// or C source (`.o`, `.c`). `--json` takes an optional FILE, so `run --json prog.bpf.o` read the
/// object's path as the report's and overwrote the object (seen here, 2026-12-05). Checked when
/// the arguments are parsed (a usage error, exit 2), before any work or write.
pub fn report_path(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if path.extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "toml" | "o" | "c")) {
        return Err("refusing to write a report over what looks like an input (a case file, a BPF object \
                    or C source); `--json` takes an optional FILE: write `--json=FILE`, or put the inputs \
                    before `--json`"
            .into());
    }
    Ok(path)
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        out: OutputArgs,
        paths: Vec<PathBuf>,
    }

    #[test]
    fn a_report_path_that_looks_like_an_input_is_a_usage_error_and_the_input_stays() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["prog.bpf.o", "cases.toml", "prog.c"] {
            let input = dir.path().join(name);
            std::fs::write(&input, "input").unwrap();
            let p = input.to_str().unwrap();
            for argv in [["x", "--json", p], ["x", "--junit", p], ["x", "--markdown", p]] {
                let e = Cli::try_parse_from(argv).err().expect("refused");
                assert_eq!(e.exit_code(), 2, "{e}");
                assert!(e.to_string().contains("--json=FILE"), "{e}");
            }
            assert_eq!(std::fs::read_to_string(&input).unwrap(), "input", "{name} was written");
        }
        let ok = Cli::try_parse_from(["x", "--json", "run.jsonl", "a.toml"]).unwrap();
        assert_eq!(ok.out.json.as_deref(), Some(Path::new("run.jsonl")));
        let alone = Cli::try_parse_from(["x", "--json"]).unwrap();
        assert!(is_stdout(alone.out.json.as_deref()));
    }
}
