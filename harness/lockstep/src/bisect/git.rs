//! `git` in the bisected tree: revisions, subjects, `git bisect start|good|bad|skip|reset`.
//! [`parse_status`] (what git said after a mark) is pure; [`Tree`] runs git.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::plan::{GitStatus, Mark};

/// A git failure in the tree.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("{tree}: git {args} failed: {output}")]
    Failed { tree: String, args: String, output: String },
    #[error("{tree}: {what}")]
    BadTree { tree: String, what: String },
}

/// Where `git bisect` stands, from its output after a `good`/`bad`/`skip` (`None`: it says
/// nothing this function knows; the caller then asks for `HEAD`).
pub fn parse_status(output: &str) -> Option<GitStatus> {
    let hash = |s: &str| s.len() == 40 && s.chars().all(|c| c.is_ascii_hexdigit());
    for line in output.lines() {
        if let Some(h) = line.strip_suffix(" is the first bad commit") {
            if hash(h.trim()) {
                return Some(GitStatus::FirstBad(h.trim().to_string()));
            }
        }
    }
    if output.contains("only 'skip'ped commits left to test") {
        let v = output.lines().map(str::trim).filter(|l| hash(l)).map(str::to_string).collect();
        return Some(GitStatus::OnlySkipped(v));
    }
    if output.lines().any(|l| l.starts_with("status: waiting for")) {
        return Some(GitStatus::Waiting);
    }
    for line in output.lines() {
        // "[<hash>] <subject>" after "Bisecting: N revisions left to test ..."
        if let Some(rest) = line.strip_prefix('[') {
            if let Some((h, _)) = rest.split_once(']') {
                if hash(h) {
                    return Some(GitStatus::Test(h.to_string()));
                }
            }
        }
    }
    None
}

/// A git work tree being bisected.
#[derive(Clone, Debug)]
pub struct Tree {
    pub path: PathBuf,
}

impl Tree {
    /// The git work tree at `path` (bad input if it is not one).
    pub fn open(path: &Path) -> Result<Tree, GitError> {
        let path = std::fs::canonicalize(path).map_err(|e| GitError::BadTree {
            tree: path.display().to_string(),
            what: format!("not a directory: {e}"),
        })?;
        let t = Tree { path };
        let top = t.git(&["rev-parse", "--show-toplevel"]).map_err(|_| GitError::BadTree {
            tree: t.path.display().to_string(),
            what: "not a git work tree".into(),
        })?;
        if Path::new(top.trim()) != t.path {
            return Err(GitError::BadTree {
                tree: t.path.display().to_string(),
                what: format!("not the top of its git work tree ({})", top.trim()),
            });
        }
        Ok(t)
    }

    fn shown(&self) -> String {
        self.path.display().to_string()
    }

    /// Runs git; its stdout and stderr, or an error with both.
    pub fn git(&self, args: &[&str]) -> Result<String, GitError> {
        let out = Command::new("git")
            .arg("-C")
            .arg(&self.path)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .map_err(|e| GitError::Failed {
                tree: self.shown(),
                args: args.join(" "),
                output: e.to_string(),
            })?;
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            return Err(GitError::Failed {
                tree: self.shown(),
                args: args.join(" "),
                output: text.trim().into(),
            });
        }
        Ok(text)
    }

    /// The full hash of a revision (bad input naming it if git does not know it).
    pub fn resolve(&self, rev: &str) -> Result<String, GitError> {
        let spec = format!("{rev}^{{commit}}");
        self.git(&["rev-parse", "--verify", "--quiet", &spec]).map(|s| s.trim().to_string()).map_err(|_| {
            GitError::BadTree { tree: self.shown(), what: format!("no commit {rev:?} in this tree") }
        })
    }

    /// A commit's subject line.
    pub fn subject(&self, commit: &str) -> Result<String, GitError> {
        Ok(self.git(&["log", "-1", "--format=%s", commit])?.trim().to_string())
    }

    /// Whether `ancestor` is an ancestor of `commit`.
    pub fn is_ancestor(&self, ancestor: &str, commit: &str) -> bool {
        self.git(&["merge-base", "--is-ancestor", ancestor, commit]).is_ok()
    }

    /// Bad input unless the work tree is clean (a build of a dirty tree is not the commit's).
    pub fn check_clean(&self) -> Result<(), GitError> {
        let s = self.git(&["status", "--porcelain", "--untracked-files=normal"])?;
        if !s.trim().is_empty() {
            let first: Vec<&str> = s.lines().take(5).collect();
            return Err(GitError::BadTree {
                tree: self.shown(),
                what: format!(
                    "the work tree has changes (commit or stash them first):\n{}",
                    first.join("\n")
                ),
            });
        }
        Ok(())
    }

    /// The `.git` directory (for the default log path).
    pub fn git_dir(&self) -> Result<PathBuf, GitError> {
        let d = self.git(&["rev-parse", "--absolute-git-dir"])?;
        Ok(PathBuf::from(d.trim()))
    }

    /// `git bisect start` with no revisions, after resetting any bisection in progress (this
    /// run replays every mark from its own log).
    pub fn bisect_start(&self) -> Result<(), GitError> {
        if self.git_dir()?.join("BISECT_START").exists() {
            self.git(&["bisect", "reset", "--quiet"]).or_else(|_| self.git(&["bisect", "reset"]))?;
        }
        self.git(&["bisect", "start"]).map(|_| ())
    }

    /// Checks out `commit` (detached) for a test of one end before git picks the steps.
    pub fn checkout(&self, commit: &str) -> Result<(), GitError> {
        self.git(&["checkout", "--quiet", "--detach", commit]).map(|_| ())
    }

    /// The commit checked out.
    pub fn head(&self) -> Result<String, GitError> {
        Ok(self.git(&["rev-parse", "HEAD"])?.trim().to_string())
    }

    /// `git bisect good|bad|skip <commit>`; where git stands after it.
    pub fn mark(&self, commit: &str, mark: Mark) -> Result<GitStatus, GitError> {
        let out = match self.git(&["bisect", mark.git_word(), commit]) {
            Ok(o) => o,
            // Only skipped commits left: git says so and exits non-zero.
            Err(GitError::Failed { output, .. }) if output.contains("only 'skip'ped commits") => output,
            Err(e) => return Err(e),
        };
        match parse_status(&out) {
            Some(s) => Ok(s),
            None => Ok(GitStatus::Test(self.head()?)),
        }
    }

    /// `git bisect reset`: back to the branch or commit checked out before.
    pub fn bisect_reset(&self) -> Result<(), GitError> {
        self.git(&["bisect", "reset", "--quiet"]).or_else(|_| self.git(&["bisect", "reset"])).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H1: &str = "3464137d5f0e8c1b2a39d7e6f5a4b3c2d1e0f9a8";
    const H2: &str = "ce479d9a1b2c3d4e5f60718293a4b5c6d7e8f901";

    #[test]
    fn parses_what_git_bisect_says() {
        let next =
            format!("Bisecting: 3 revisions left to test after this (roughly 2 steps)\n[{H1}] bpf: fix\n");
        assert_eq!(parse_status(&next), Some(GitStatus::Test(H1.into())));
        let done = format!(
            "{H2} is the first bad commit\ncommit {H2}\nAuthor: A <a@b>\n\n    bpf: Add KF_SPIN_LOCK\n"
        );
        assert_eq!(parse_status(&done), Some(GitStatus::FirstBad(H2.into())));
        let skipped = format!(
            "There are only 'skip'ped commits left to test.\nThe first bad commit could be any of:\n{H1}\n{H2}\nWe cannot bisect more!\n"
        );
        assert_eq!(parse_status(&skipped), Some(GitStatus::OnlySkipped(vec![H1.into(), H2.into()])));
        assert_eq!(
            parse_status("status: waiting for bad commit, 1 good commit known\n"),
            Some(GitStatus::Waiting)
        );
        assert_eq!(parse_status(""), None);
    }
}
