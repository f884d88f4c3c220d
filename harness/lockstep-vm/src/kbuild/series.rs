//! Patch series: `git format-patch` mails in a directory, applied in file-name order.
//!
//! Parsing is pure ([`parse_patch`], [`parse_patch_output`]); [`load`] reads a directory. A cover
//! letter (a mail without a diff, e.g. `0000-cover-letter.patch`) is skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Errors reading a series.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: no patches (*.patch, *.diff, *.mbox) in the directory")]
    Empty(PathBuf),
    #[error("{file}: no diff in the mail (only a cover letter may have none)")]
    NoDiff { file: String },
    #[error("{file}:{line}: {message}")]
    Malformed { file: String, line: usize, message: String },
}

/// One hunk of a file diff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hunk {
    /// The `@@ -a,b +c,d @@ ...` line.
    pub header: String,
    /// First line of the hunk in the old file.
    pub old_start: u64,
    /// The header and body lines, as in the patch.
    pub text: String,
}

/// The diff of one file in a patch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDiff {
    /// Path before (without `a/`), `None` for a new file.
    pub old: Option<String>,
    /// Path after (without `b/`), `None` for a deleted file.
    pub new: Option<String>,
    pub hunks: Vec<Hunk>,
}

impl FileDiff {
    /// The path `patch` reports in `patching file X` (the new name unless deleted).
    pub fn path(&self) -> &str {
        self.new.as_deref().or(self.old.as_deref()).unwrap_or("")
    }
}

/// One patch mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Patch {
    pub file_name: String,
    pub path: PathBuf,
    /// `Subject:` (unfolded), e.g. `[RFC v2 1/3] bpf: Add KF_SPIN_LOCK flag ...`.
    pub subject: String,
    /// `From:` of the mail.
    pub author: Option<String>,
    /// sha256 of the file's bytes (hex).
    pub sha256: String,
    pub files: Vec<FileDiff>,
}

impl Patch {
    /// The subject without its `[PATCH ...]` prefix.
    pub fn title(&self) -> &str {
        let s = self.subject.trim();
        match s.strip_prefix('[').and_then(|r| r.split_once(']')) {
            Some((_, rest)) => rest.trim(),
            None => s,
        }
    }
}

/// A series: a directory of patches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Series {
    /// The directory's name, e.g. `kf-spin-lock-rfc-v2`.
    pub name: String,
    pub dir: PathBuf,
    pub patches: Vec<Patch>,
}

impl Series {
    /// Every path the series creates, modifies, renames or deletes.
    pub fn touched_files(&self) -> BTreeSet<String> {
        self.patches
            .iter()
            .flat_map(|p| p.files.iter())
            .flat_map(|f| f.old.iter().chain(f.new.iter()).cloned())
            .collect()
    }
}

/// sha256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::digest::hex(&Sha256::digest(bytes))
}

fn strip_ab(p: &str) -> Option<String> {
    let p = p.split('\t').next().unwrap_or(p).trim();
    if p == "/dev/null" {
        return None;
    }
    Some(p.strip_prefix("a/").or_else(|| p.strip_prefix("b/")).unwrap_or(p).to_string())
}

/// Parses `@@ -a[,b] +c[,d] @@`: (old start, old count, new count).
fn parse_hunk_header(line: &str) -> Option<(u64, u64, u64)> {
    let rest = line.strip_prefix("@@ -")?;
    let (ranges, _) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let range = |r: &str| -> Option<(u64, u64)> {
        match r.split_once(',') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    let (os, oc) = range(old)?;
    let (_, nc) = range(new)?;
    Some((os, oc, nc))
}

/// Parses one `git format-patch` mail (or a plain unified diff).
pub fn parse_patch(file_name: &str, text: &str) -> Result<Patch, SeriesError> {
    let malformed =
        |line: usize, message: String| SeriesError::Malformed { file: file_name.to_string(), line, message };
    let lines: Vec<&str> = text.lines().collect();
    // Mail headers: up to the first blank line (only if the file starts like a mail).
    let mut subject = String::new();
    let mut author = None;
    let is_mail = lines
        .first()
        .is_some_and(|l| l.starts_with("From ") || l.starts_with("From:") || l.starts_with("Subject:"));
    if is_mail {
        let mut current: Option<&str> = None;
        for l in &lines {
            if l.is_empty() {
                break;
            }
            if (l.starts_with(' ') || l.starts_with('\t')) && current == Some("Subject") {
                subject.push(' ');
                subject.push_str(l.trim());
                continue;
            }
            current = None;
            if let Some(s) = l.strip_prefix("Subject:") {
                subject = s.trim().to_string();
                current = Some("Subject");
            } else if let Some(s) = l.strip_prefix("From:") {
                author = Some(s.trim().to_string());
            }
        }
    }
    let mut files: Vec<FileDiff> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.starts_with("--- ") && i + 1 < lines.len() && lines[i + 1].starts_with("+++ ") {
            let old = strip_ab(&l[4..]);
            let new = strip_ab(&lines[i + 1][4..]);
            let mut fd = FileDiff { old, new, hunks: vec![] };
            i += 2;
            while i < lines.len() && lines[i].starts_with("@@ ") {
                let header = lines[i];
                let (old_start, mut old_left, mut new_left) = parse_hunk_header(header)
                    .ok_or_else(|| malformed(i + 1, format!("bad hunk header {header:?}")))?;
                let mut text = format!("{header}\n");
                i += 1;
                while (old_left > 0 || new_left > 0) && i < lines.len() {
                    let b = lines[i];
                    match b.as_bytes().first() {
                        Some(b' ') | None => {
                            old_left = old_left.saturating_sub(1);
                            new_left = new_left.saturating_sub(1);
                        }
                        Some(b'-') => old_left = old_left.saturating_sub(1),
                        Some(b'+') => new_left = new_left.saturating_sub(1),
                        Some(b'\\') => {}
                        _ => return Err(malformed(i + 1, format!("unexpected line in hunk: {b:?}"))),
                    }
                    text.push_str(b);
                    text.push('\n');
                    i += 1;
                }
                if old_left > 0 || new_left > 0 {
                    return Err(malformed(i, "hunk ends early (truncated patch?)".into()));
                }
                if i < lines.len() && lines[i].starts_with('\\') {
                    text.push_str(lines[i]);
                    text.push('\n');
                    i += 1;
                }
                fd.hunks.push(Hunk { header: header.to_string(), old_start, text });
            }
            files.push(fd);
            continue;
        }
        i += 1;
    }
    if files.is_empty() {
        return Err(SeriesError::NoDiff { file: file_name.to_string() });
    }
    Ok(Patch {
        file_name: file_name.to_string(),
        path: PathBuf::from(file_name),
        subject,
        author,
        sha256: sha256_hex(text.as_bytes()),
        files,
    })
}

/// Whether a file name looks like a patch.
pub fn is_patch_name(name: &str) -> bool {
    [".patch", ".diff", ".mbox", ".eml"].iter().any(|e| name.ends_with(e))
}

/// Reads every patch of `dir` in file-name order (cover letters without a diff skipped).
pub fn load(dir: &Path) -> Result<Series, SeriesError> {
    let rd = std::fs::read_dir(dir).map_err(|e| SeriesError::Io(dir.to_path_buf(), e))?;
    // Absolute paths: `patch -d DIR -i FILE` resolves FILE after changing to DIR.
    let dir = &std::fs::canonicalize(dir).map_err(|e| SeriesError::Io(dir.to_path_buf(), e))?;
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_patch_name(n))
        .collect();
    names.sort();
    let mut patches = Vec::new();
    for n in names {
        let path = dir.join(&n);
        let bytes = std::fs::read(&path).map_err(|e| SeriesError::Io(path.clone(), e))?;
        let text = String::from_utf8_lossy(&bytes);
        match parse_patch(&n, &text) {
            Ok(mut p) => {
                p.path = path;
                p.sha256 = sha256_hex(&bytes);
                patches.push(p);
            }
            Err(SeriesError::NoDiff { .. }) if n.contains("cover-letter") || n.starts_with("0000-") => {}
            Err(e) => return Err(e),
        }
    }
    if patches.is_empty() {
        return Err(SeriesError::Empty(dir.to_path_buf()));
    }
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "series".into());
    Ok(Series { name, dir: dir.clone(), patches })
}

/// One failure in GNU `patch` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatchFailure {
    /// `Hunk #N FAILED at L.` while patching `file`.
    Hunk { file: String, hunk: usize, at: Option<u64> },
    /// The file to patch does not exist.
    MissingFile { file: String },
    /// `Reversed (or previously applied) patch detected!`
    Reversed { file: String },
    /// Any other failure line.
    Other { file: Option<String>, line: String },
}

/// Parses the failures out of `patch --dry-run` output.
pub fn parse_patch_output(output: &str) -> Vec<PatchFailure> {
    let mut out = Vec::new();
    let mut file: Option<String> = None;
    for l in output.lines() {
        let l = l.trim();
        if let Some(f) = l.strip_prefix("checking file ").or_else(|| l.strip_prefix("patching file ")) {
            file = Some(f.trim_matches(['\'', '"']).to_string());
        } else if let Some(rest) = l.strip_prefix("Hunk #") {
            if let Some((n, tail)) = rest.split_once(' ') {
                if tail.starts_with("FAILED") {
                    let at = tail
                        .strip_prefix("FAILED at ")
                        .and_then(|s| s.trim_end_matches('.').split_whitespace().next()?.parse().ok());
                    out.push(PatchFailure::Hunk {
                        file: file.clone().unwrap_or_default(),
                        hunk: n.parse().unwrap_or(0),
                        at,
                    });
                }
            }
        } else if l.starts_with("can't find file to patch") {
            out.push(PatchFailure::MissingFile { file: file.clone().unwrap_or_default() });
        } else if l.starts_with("Reversed (or previously applied) patch detected") {
            out.push(PatchFailure::Reversed { file: file.clone().unwrap_or_default() });
        } else if l.contains("No such file") || l.starts_with("patch: ****") {
            out.push(PatchFailure::Other { file: file.clone(), line: l.to_string() });
        }
    }
    out
}

/// A readable account of why `patch` rejected `p`: each failing hunk's text from the patch.
pub fn describe_failure(p: &Patch, failures: &[PatchFailure], raw_output: &str) -> String {
    let mut s = String::new();
    for f in failures {
        match f {
            PatchFailure::Hunk { file, hunk, at } => {
                let at = at.map(|a| format!(" (tried at line {a})")).unwrap_or_default();
                s.push_str(&format!("{file}: hunk #{hunk} does not apply{at}:\n"));
                let h = p
                    .files
                    .iter()
                    .filter(|d| d.path() == file)
                    .flat_map(|d| d.hunks.get(hunk.wrapping_sub(1)))
                    .next();
                match h {
                    Some(h) => s.push_str(&h.text),
                    None => s.push_str("(hunk not found in the parsed patch)\n"),
                }
            }
            PatchFailure::MissingFile { file } => {
                s.push_str(&format!("{file}: the file to patch does not exist\n"))
            }
            PatchFailure::Reversed { file } => {
                s.push_str(&format!("{file}: already applied (or reversed)\n"))
            }
            PatchFailure::Other { file, line } => s.push_str(&format!(
                "{}{line}\n",
                file.as_deref().map(|f| format!("{f}: ")).unwrap_or_default()
            )),
        }
    }
    if s.is_empty() {
        s = format!("patch failed:\n{raw_output}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIL: &str = "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
From: A Developer <dev@example.invalid>
Date: Sat, 2 May 2026 23:57:23 -0500
Subject: [RFC v2 1/3] bpf: Add a flag
 that is folded

Body text.
---
 include/linux/btf.h | 1 +
 2 files changed

diff --git a/include/linux/btf.h b/include/linux/btf.h
index c09b7994de4e..380dc10b6750 100644
--- a/include/linux/btf.h
+++ b/include/linux/btf.h
@@ -79,2 +79,3 @@
 #define A 1
+#define B 2
 #define C 3
@@ -100 +101 @@ struct x {
-old
+new
diff --git a/new.c b/new.c
new file mode 100644
--- /dev/null
+++ b/new.c
@@ -0,0 +1,2 @@
+int x;
+--- not a header
-- 
2.43.0
";

    #[test]
    fn parses_mail_headers_files_and_hunks() {
        let p = parse_patch("0001-x.patch", MAIL).unwrap();
        assert_eq!(p.subject, "[RFC v2 1/3] bpf: Add a flag that is folded");
        assert_eq!(p.title(), "bpf: Add a flag that is folded");
        assert_eq!(p.author.as_deref(), Some("A Developer <dev@example.invalid>"));
        assert_eq!(p.files.len(), 2);
        let f = &p.files[0];
        assert_eq!(
            (f.old.as_deref(), f.new.as_deref()),
            (Some("include/linux/btf.h"), Some("include/linux/btf.h"))
        );
        assert_eq!(f.hunks.len(), 2);
        assert_eq!(f.hunks[0].old_start, 79);
        assert_eq!(f.hunks[0].text, "@@ -79,2 +79,3 @@\n #define A 1\n+#define B 2\n #define C 3\n");
        assert_eq!(f.hunks[1].text, "@@ -100 +101 @@ struct x {\n-old\n+new\n");
        // The added line starting with `--- ` is hunk content, not a new file header.
        assert_eq!((p.files[1].old.as_deref(), p.files[1].new.as_deref()), (None, Some("new.c")));
        assert_eq!(p.files[1].hunks[0].text.lines().count(), 3);
        assert_eq!(p.sha256, sha256_hex(MAIL.as_bytes()));
    }

    #[test]
    fn truncated_hunk_and_missing_diff_are_errors() {
        let cut = &MAIL[..MAIL.find("+#define B").unwrap()];
        assert!(matches!(parse_patch("p", cut), Err(SeriesError::Malformed { .. })));
        assert!(matches!(
            parse_patch("p", "From: x\nSubject: cover\n\nhello\n"),
            Err(SeriesError::NoDiff { .. })
        ));
    }

    #[test]
    fn touched_files_include_created() {
        let p = parse_patch("0001-x.patch", MAIL).unwrap();
        let s = Series { name: "s".into(), dir: "/s".into(), patches: vec![p] };
        assert_eq!(s.touched_files().into_iter().collect::<Vec<_>>(), ["include/linux/btf.h", "new.c"]);
    }

    #[test]
    fn load_sorts_skips_cover_letter_and_hashes_bytes() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("0002-b.patch"), MAIL.replace("bpf: Add a flag", "second")).unwrap();
        std::fs::write(d.path().join("0001-a.patch"), MAIL).unwrap();
        std::fs::write(
            d.path().join("0000-cover-letter.patch"),
            "From: x\nSubject: [PATCH 0/2] cover\n\ntext\n",
        )
        .unwrap();
        std::fs::write(d.path().join("notes.txt"), "ignored").unwrap();
        let s = load(d.path()).unwrap();
        assert!(s.patches.iter().all(|p| p.path.is_absolute()));
        let names: Vec<_> = s.patches.iter().map(|p| p.file_name.as_str()).collect();
        assert_eq!(names, ["0001-a.patch", "0002-b.patch"]);
        assert!(s.patches[1].subject.contains("second"));
        assert_ne!(s.patches[0].sha256, s.patches[1].sha256);
        let e = tempfile::tempdir().unwrap();
        assert!(matches!(load(e.path()), Err(SeriesError::Empty(_))));
        std::fs::write(e.path().join("0001-nodiff.patch"), "From: x\nSubject: y\n\nz\n").unwrap();
        assert!(matches!(load(e.path()), Err(SeriesError::NoDiff { .. })));
    }

    #[test]
    fn parses_gnu_patch_failures_and_names_the_hunk() {
        let out = "checking file include/linux/btf.h\nchecking file kernel/bpf/verifier.c\n\
                   Hunk #2 FAILED at 17516.\n1 out of 2 hunks FAILED\nchecking file gone.c\n\
                   can't find file to patch at input line 40\nchecking file x.c\n\
                   Reversed (or previously applied) patch detected!  Skipping patch.\n";
        let f = parse_patch_output(out);
        assert_eq!(
            f,
            [
                PatchFailure::Hunk { file: "kernel/bpf/verifier.c".into(), hunk: 2, at: Some(17516) },
                PatchFailure::MissingFile { file: "gone.c".into() },
                PatchFailure::Reversed { file: "x.c".into() },
            ]
        );
        let p = parse_patch("0001-x.patch", &MAIL.replace("include/linux/btf.h", "kernel/bpf/verifier.c"))
            .unwrap();
        let d = describe_failure(&p, &f[..1], out);
        assert!(d.starts_with("kernel/bpf/verifier.c: hunk #2 does not apply (tried at line 17516):\n@@ -100 +101 @@ struct x {\n-old\n+new\n"), "{d}");
    }
}
