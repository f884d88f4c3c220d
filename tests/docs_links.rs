//! Every file the documentation points at exists: Markdown links (`[x](path)`) and repository
//! paths in backticks (`docs/asm.md`, `scripts/setup.sh`, ...) in README.md, docs/ and the
//! READMEs under tests/ and kernel-module/, and `docs/*.md` citations in the Rust sources.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// The top-level directories a backticked path must start with to count as a reference.
const ROOTS: &[&str] = &["docs/", "scripts/", "harness/", "tests/", "kernel-module/", ".ci/", ".github/"];

/// Markdown files whose references are checked.
fn markdown_files(root: &Path) -> Vec<PathBuf> {
    let mut out = vec![root.join("README.md")];
    let mut stack = vec![root.join("docs"), root.join("tests"), root.join("kernel-module")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Paths referenced by `text`: Markdown link targets (relative, no URL, anchor stripped) and
/// backticked words that start with a repository directory. Each with its 1-based line.
fn references(text: &str) -> Vec<(usize, String, bool)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(i) = rest.find("](") {
            let tail = &rest[i + 2..];
            let Some(j) = tail.find(')') else { break };
            let target = tail[..j].split('#').next().unwrap_or("").trim();
            if !target.is_empty() && !target.contains("://") && !target.starts_with("mailto:") {
                out.push((n + 1, target.to_string(), true));
            }
            rest = &tail[j..];
        }
        let parts: Vec<&str> = line.split('`').collect();
        for (k, part) in parts.iter().enumerate() {
            // Odd parts are inside backticks; "the kernel's `scripts/...`" is a kernel tree path.
            let kernel_path = k > 0 && parts[k - 1].ends_with("kernel's ");
            if k % 2 == 1 && !kernel_path && ROOTS.iter().any(|r| part.starts_with(r)) {
                let word = part.split_whitespace().next().unwrap_or("");
                // Globs, placeholders and command lines are not single paths.
                if !word.contains(['*', '<', '{', '$']) {
                    out.push((n + 1, word.trim_end_matches([':', ',', '.']).to_string(), false));
                }
            }
        }
    }
    out
}

#[test]
fn every_referenced_file_exists() {
    let root = repo();
    let mut missing = Vec::new();
    let mut checked = 0;
    for md in markdown_files(&root) {
        let text = std::fs::read_to_string(&md).unwrap();
        for (line, target, relative_to_file) in references(&text) {
            // Markdown links are relative to the file; backticked paths to the repository.
            let base = if relative_to_file { md.parent().unwrap().to_path_buf() } else { root.clone() };
            checked += 1;
            if !base.join(&target).exists() {
                missing.push(format!("{}:{line}: {target}", md.strip_prefix(&root).unwrap().display()));
            }
        }
    }
    assert!(checked > 20, "only {checked} references found: is the scanner broken?");
    assert!(missing.is_empty(), "documentation points at missing files:\n{}", missing.join("\n"));
}

#[test]
fn docs_cited_by_the_sources_exist() {
    let root = repo();
    let mut missing = Vec::new();
    let mut stack = vec![root.join("harness")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "target") {
                    stack.push(p);
                }
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&p).unwrap();
            for (n, line) in text.lines().enumerate() {
                let mut rest = line;
                while let Some(i) = rest.find("docs/") {
                    let cited: String = rest[i..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'))
                        .collect();
                    let cited = cited.trim_end_matches('.');
                    if cited.ends_with(".md") && !root.join(cited).exists() {
                        missing.push(format!(
                            "{}:{}: {cited}",
                            p.strip_prefix(&root).unwrap().display(),
                            n + 1
                        ));
                    }
                    rest = &rest[i + 5..];
                }
            }
        }
    }
    assert!(missing.is_empty(), "sources cite missing docs:\n{}", missing.join("\n"));
}

#[test]
fn the_scanner_finds_links_and_backticked_paths() {
    let refs = references(
        "see [asm](docs/asm.md#x) and `scripts/setup.sh --with-vng`, not `tests/*.rs` nor the kernel's `scripts/x`",
    );
    let targets: Vec<&str> = refs.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(targets, ["docs/asm.md", "scripts/setup.sh"]);
}
