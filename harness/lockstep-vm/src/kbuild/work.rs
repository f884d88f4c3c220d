//! One work tree per source version: `<cache>/builds/work/<source>/` holds the source (`src/`),
//! the `O=` build directory (`obj/`) and, quilt-like, the originals of every file the applied
//! series touched (`orig/`), so that switching series restores exactly those files (with fresh
//! modification times, so `make` recompiles what depends on them and nothing else).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::series::{self, Patch, Series};
use super::source::write_atomic;
use super::KbuildError;

/// The series currently applied to a work tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub series: String,
    /// `(file name, sha256)` of the patches fully applied, in order.
    pub patches: Vec<(String, String)>,
    /// Every path a patch of this series touched, and whether it existed before.
    pub touched: Vec<(String, bool)>,
}

/// `state.json` of a work tree.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkState {
    /// The source version or fingerprint `src/` holds.
    pub source_version: Option<String>,
    pub applied: Option<Applied>,
    /// Steps (progress lines) of the last build that started without a `vmlinux`.
    pub last_full_steps: Option<u64>,
}

/// A work tree.
pub struct Work {
    pub dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KbuildError + '_ {
    move |e| KbuildError::Io(path.to_path_buf(), e)
}

impl Work {
    /// The source tree.
    pub fn src(&self) -> PathBuf {
        self.dir.join("src")
    }
    /// The `O=` build directory.
    pub fn obj(&self) -> PathBuf {
        self.dir.join("obj")
    }
    fn orig(&self) -> PathBuf {
        self.dir.join("orig")
    }

    /// Reads `state.json` (default when absent or unreadable).
    pub fn state(&self) -> WorkState {
        fs::read_to_string(self.dir.join("state.json")).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
    }

    /// Writes `state.json` atomically.
    pub fn save(&self, s: &WorkState) -> Result<(), KbuildError> {
        let text = serde_json::to_vec_pretty(s).expect("state serialises");
        write_atomic(&self.dir.join("state.json"), &text)
    }

    /// Restores every file the applied series touched and forgets the series.
    pub fn reset(&self, state: &mut WorkState) -> Result<(), KbuildError> {
        let Some(applied) = state.applied.take() else { return Ok(()) };
        let src = self.src();
        for (path, existed) in &applied.touched {
            let dst = src.join(path);
            if *existed {
                let from = self.orig().join(path);
                // Remove first: a fresh inode and modification time.
                let _ = fs::remove_file(&dst);
                if let Some(parent) = dst.parent() {
                    fs::create_dir_all(parent).map_err(io(parent))?;
                }
                fs::copy(&from, &dst).map_err(io(&from))?;
            } else {
                let _ = fs::remove_file(&dst);
            }
        }
        let _ = fs::remove_dir_all(self.orig());
        self.save(state)
    }

    /// Applies `series` (after [`Work::reset`]); a patch that does not apply is reported with its
    /// failing hunks and the tree is reset.
    pub fn apply(&self, state: &mut WorkState, series: &Series, on_patch: &mut dyn FnMut(&Patch)) -> Result<(), KbuildError> {
        self.reset(state)?;
        state.applied = Some(Applied { series: series.name.clone(), ..Default::default() });
        for p in &series.patches {
            on_patch(p);
            if let Err(e) = self.apply_one(state, p) {
                self.reset(state)?;
                return Err(e);
            }
        }
        Ok(())
    }

    fn apply_one(&self, state: &mut WorkState, p: &Patch) -> Result<(), KbuildError> {
        let src = self.src();
        let patch_cmd = |dry: bool| {
            let mut c = Command::new("patch");
            c.args(["-p1", "--forward", "--batch", "--fuzz=0", "--no-backup-if-mismatch", "-r", "-"]);
            if dry {
                c.arg("--dry-run");
            }
            c.arg("-d").arg(&src).arg("-i").arg(&p.path);
            c
        };
        let out = patch_cmd(true).output().map_err(|e| KbuildError::Command { command: "patch".into(), output: e.to_string() })?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            let failures = series::parse_patch_output(&text);
            return Err(KbuildError::PatchDoesNotApply {
                patch: p.file_name.clone(),
                subject: p.subject.clone(),
                detail: series::describe_failure(p, &failures, &text),
            });
        }
        // Save the originals of files this patch touches before changing them.
        let applied = state.applied.as_mut().expect("apply sets applied");
        for f in &p.files {
            for path in f.old.iter().chain(f.new.iter()) {
                if applied.touched.iter().any(|(t, _)| t == path) {
                    continue;
                }
                let cur = src.join(path);
                let existed = cur.is_file();
                if existed {
                    let to = self.orig().join(path);
                    fs::create_dir_all(to.parent().unwrap()).map_err(io(&to))?;
                    fs::copy(&cur, &to).map_err(io(&cur))?;
                }
                applied.touched.push((path.clone(), existed));
            }
        }
        self.save(state)?;
        let out = patch_cmd(false).output().map_err(|e| KbuildError::Command { command: "patch".into(), output: e.to_string() })?;
        if !out.status.success() {
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            return Err(KbuildError::PatchDoesNotApply { patch: p.file_name.clone(), subject: p.subject.clone(), detail: text });
        }
        state.applied.as_mut().unwrap().patches.push((p.file_name.clone(), p.sha256.clone()));
        self.save(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P1: &str = "From: x\nSubject: [PATCH 1/2] change a, add n\n\n---\n\
diff --git a/a.c b/a.c\n--- a/a.c\n+++ b/a.c\n@@ -1,3 +1,3 @@\n one\n-two\n+TWO\n three\n\
diff --git a/n.c b/n.c\nnew file mode 100644\n--- /dev/null\n+++ b/n.c\n@@ -0,0 +1 @@\n+new\n";
    const P2_BAD: &str = "From: x\nSubject: [PATCH 2/2] bad\n\n---\n\
diff --git a/a.c b/a.c\n--- a/a.c\n+++ b/a.c\n@@ -1,3 +1,3 @@\n one\n-zwei\n+ZWEI\n three\n";

    fn setup() -> (tempfile::TempDir, Work) {
        let d = tempfile::tempdir().unwrap();
        let w = Work { dir: d.path().to_path_buf() };
        fs::create_dir_all(w.src()).unwrap();
        fs::write(w.src().join("a.c"), "one\ntwo\nthree\n").unwrap();
        (d, w)
    }

    fn series(dir: &Path, patches: &[(&str, &str)]) -> Series {
        fs::create_dir_all(dir).unwrap();
        for (n, t) in patches {
            fs::write(dir.join(n), t).unwrap();
        }
        series::load(dir).unwrap()
    }

    #[test]
    fn apply_then_reset_restores_the_tree() {
        let (d, w) = setup();
        let s = series(&d.path().join("s1"), &[("0001-a.patch", P1)]);
        let mut st = w.state();
        let mut seen = vec![];
        w.apply(&mut st, &s, &mut |p| seen.push(p.file_name.clone())).unwrap();
        assert_eq!(seen, ["0001-a.patch"]);
        assert_eq!(fs::read_to_string(w.src().join("a.c")).unwrap(), "one\nTWO\nthree\n");
        assert_eq!(fs::read_to_string(w.src().join("n.c")).unwrap(), "new\n");
        // The state on disk records the series, so a later process can undo it.
        let on_disk = w.state();
        assert_eq!(on_disk.applied.as_ref().unwrap().patches.len(), 1);
        assert_eq!(on_disk.applied.as_ref().unwrap().touched, [("a.c".to_string(), true), ("n.c".to_string(), false)]);
        let mut st = on_disk;
        w.reset(&mut st).unwrap();
        assert_eq!(fs::read_to_string(w.src().join("a.c")).unwrap(), "one\ntwo\nthree\n");
        assert!(!w.src().join("n.c").exists());
        assert!(w.state().applied.is_none());
    }

    #[test]
    fn a_failing_patch_names_its_hunk_and_leaves_the_tree_clean() {
        let (d, w) = setup();
        let s = series(&d.path().join("s2"), &[("0001-a.patch", P1), ("0002-bad.patch", P2_BAD)]);
        let mut st = w.state();
        let e = w.apply(&mut st, &s, &mut |_| {}).unwrap_err();
        match e {
            KbuildError::PatchDoesNotApply { patch, subject, detail } => {
                assert_eq!(patch, "0002-bad.patch");
                assert_eq!(subject, "[PATCH 2/2] bad");
                assert!(detail.contains("a.c: hunk #1 does not apply"), "{detail}");
                assert!(detail.contains("-zwei\n+ZWEI"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(fs::read_to_string(w.src().join("a.c")).unwrap(), "one\ntwo\nthree\n");
        assert!(!w.src().join("n.c").exists());
        assert!(w.state().applied.is_none());
    }

    #[test]
    fn switching_series_touches_only_the_files_involved() {
        let (d, w) = setup();
        fs::write(w.src().join("untouched.c"), "x\n").unwrap();
        let before = fs::metadata(w.src().join("untouched.c")).unwrap().modified().unwrap();
        let s = series(&d.path().join("s1"), &[("0001-a.patch", P1)]);
        let mut st = w.state();
        w.apply(&mut st, &s, &mut |_| {}).unwrap();
        let patched = fs::metadata(w.src().join("a.c")).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        w.reset(&mut st).unwrap();
        let restored = fs::metadata(w.src().join("a.c")).unwrap().modified().unwrap();
        assert!(restored > patched, "a restored file is newer than its patched version's objects");
        assert_eq!(fs::metadata(w.src().join("untouched.c")).unwrap().modified().unwrap(), before);
    }
}
