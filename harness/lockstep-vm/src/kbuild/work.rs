//! One work tree per source version: `<cache>/builds/work/<source>/` holds the source (`src/`),
//! the `O=` build directory (`obj/`) and, quilt-like, the originals of every file the applied
//! series touched (`orig/`), so that switching series restores exactly those files (with fresh
//! modification times, so `make` recompiles what depends on them and nothing else).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::series::{self, Patch, Series};
use super::source::write_atomic;
use super::KbuildError;

/// Path -> content (`None`: absent).
type Files = BTreeMap<String, Option<Vec<u8>>>;

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
        fs::read_to_string(self.dir.join("state.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Writes `state.json` atomically.
    pub fn save(&self, s: &WorkState) -> Result<(), KbuildError> {
        let text = serde_json::to_vec_pretty(s).expect("state serialises");
        write_atomic(&self.dir.join("state.json"), &text)
    }

    /// Forgets the applied series (the source is about to be replaced wholesale).
    pub fn forget_series(&self, state: &mut WorkState) -> Result<(), KbuildError> {
        state.applied = None;
        let _ = fs::remove_dir_all(self.orig());
        self.save(state)
    }

    /// The unpatched content of `path` (`None`: absent), given the series currently applied.
    fn pristine(&self, state: &WorkState, path: &str) -> Result<Option<Vec<u8>>, KbuildError> {
        let applied = state.applied.as_ref();
        let from = match applied.and_then(|a| a.touched.iter().find(|(t, _)| t == path)) {
            Some((_, false)) => return Ok(None),
            Some((_, true)) => self.orig().join(path),
            None => self.src().join(path),
        };
        match fs::read(&from) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(KbuildError::Io(from, e)),
        }
    }

    /// Applies `series` in a scratch directory holding only the files it touches (and those the
    /// applied series touched), from their unpatched content: (unpatched, patched) content of
    /// each such file. The work tree is not touched.
    fn apply_in_scratch(
        &self,
        state: &WorkState,
        series: Option<&Series>,
        on_patch: &mut dyn FnMut(&Patch),
    ) -> Result<(Files, Files), KbuildError> {
        let new_paths: BTreeSet<String> = series.map(|s| s.touched_files()).unwrap_or_default();
        let mut all: BTreeSet<String> =
            state.applied.iter().flat_map(|a| a.touched.iter().map(|(p, _)| p.clone())).collect();
        all.extend(new_paths.iter().cloned());
        let mut pristine: Files = BTreeMap::new();
        for p in &all {
            pristine.insert(p.clone(), self.pristine(state, p)?);
        }
        let mut target = pristine.clone();
        if let Some(s) = series {
            let scratch = self.dir.join("scratch");
            let _ = fs::remove_dir_all(&scratch);
            for (p, c) in &pristine {
                if let Some(c) = c {
                    let f = scratch.join(p);
                    fs::create_dir_all(f.parent().unwrap()).map_err(io(&f))?;
                    fs::write(&f, c).map_err(io(&f))?;
                }
            }
            fs::create_dir_all(&scratch).map_err(io(&scratch))?;
            let applied = s.patches.iter().try_for_each(|p| {
                on_patch(p);
                apply_patch(&scratch, p)
            });
            if let Err(e) = applied {
                let _ = fs::remove_dir_all(&scratch);
                return Err(e);
            }
            for (p, c) in target.iter_mut() {
                *c = match fs::read(scratch.join(p)) {
                    Ok(b) => Some(b),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(KbuildError::Io(scratch.join(p), e)),
                };
            }
            let _ = fs::remove_dir_all(&scratch);
        }
        Ok((pristine, target))
    }

    /// Checks that `series` applies to the unpatched source, without changing the work tree.
    pub fn check(&self, state: &WorkState, series: &Series) -> Result<(), KbuildError> {
        self.apply_in_scratch(state, Some(series), &mut |_| {}).map(|_| ())
    }

    /// Switches the source to `series` (`None`: unpatched).
    ///
    /// The series is first applied in a scratch directory holding only the files it touches; a
    /// patch that does not apply is reported with its failing hunks and the work tree is left as
    /// it was. Then only files whose content changes are written (fresh modification times, so
    /// `make` rebuilds exactly what depends on them).
    pub fn switch(
        &self,
        state: &mut WorkState,
        series: Option<&Series>,
        on_patch: &mut dyn FnMut(&Patch),
    ) -> Result<(), KbuildError> {
        let new_paths: BTreeSet<String> = series.map(|s| s.touched_files()).unwrap_or_default();
        let (pristine, target) = self.apply_in_scratch(state, series, on_patch)?;
        // Record every involved file's original before touching the tree (crash safety: a
        // later run restores from `orig/`).
        let orig = self.orig();
        for (p, c) in &pristine {
            let f = orig.join(p);
            match c {
                Some(c) => {
                    fs::create_dir_all(f.parent().unwrap()).map_err(io(&f))?;
                    fs::write(&f, c).map_err(io(&f))?;
                }
                None => {
                    let _ = fs::remove_file(&f);
                }
            }
        }
        state.applied = Some(Applied {
            series: series.map(|s| s.name.clone()).unwrap_or_default(),
            patches: vec![],
            touched: pristine.iter().map(|(p, c)| (p.clone(), c.is_some())).collect(),
        });
        self.save(state)?;
        // Write only what changes.
        let src = self.src();
        for (p, want) in &target {
            let f = src.join(p);
            let have = fs::read(&f).ok();
            if have.as_ref() == want.as_ref() {
                continue;
            }
            let _ = fs::remove_file(&f);
            if let Some(c) = want {
                fs::create_dir_all(f.parent().unwrap()).map_err(io(&f))?;
                fs::write(&f, c).map_err(io(&f))?;
            }
        }
        state.applied = series.map(|s| Applied {
            series: s.name.clone(),
            patches: s.patches.iter().map(|p| (p.file_name.clone(), p.sha256.clone())).collect(),
            touched: pristine
                .iter()
                .filter(|(p, _)| new_paths.contains(*p))
                .map(|(p, c)| (p.clone(), c.is_some()))
                .collect(),
        });
        if state.applied.is_none() {
            let _ = fs::remove_dir_all(&orig);
        }
        self.save(state)
    }
}

/// Applies one patch in `dir` (GNU patch, no fuzz, like `git am`).
fn apply_patch(dir: &Path, p: &Patch) -> Result<(), KbuildError> {
    let out = Command::new("patch")
        .args(["-p1", "--forward", "--batch", "--fuzz=0", "--no-backup-if-mismatch", "-r", "-"])
        .arg("-d")
        .arg(dir)
        .arg("-i")
        .arg(&p.path)
        .output()
        .map_err(|e| KbuildError::Command { command: "patch".into(), output: e.to_string() })?;
    if out.status.success() {
        return Ok(());
    }
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let failures = series::parse_patch_output(&text);
    Err(KbuildError::PatchDoesNotApply {
        patch: p.file_name.clone(),
        subject: p.subject.clone(),
        detail: series::describe_failure(p, &failures, &text),
    })
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
        w.switch(&mut st, Some(&s), &mut |p| seen.push(p.file_name.clone())).unwrap();
        assert_eq!(seen, ["0001-a.patch"]);
        assert_eq!(fs::read_to_string(w.src().join("a.c")).unwrap(), "one\nTWO\nthree\n");
        assert_eq!(fs::read_to_string(w.src().join("n.c")).unwrap(), "new\n");
        // The state on disk records the series, so a later process can undo it.
        let on_disk = w.state();
        assert_eq!(on_disk.applied.as_ref().unwrap().patches.len(), 1);
        assert_eq!(
            on_disk.applied.as_ref().unwrap().touched,
            [("a.c".to_string(), true), ("n.c".to_string(), false)]
        );
        let mut st = on_disk;
        w.switch(&mut st, None, &mut |_| {}).unwrap();
        assert_eq!(fs::read_to_string(w.src().join("a.c")).unwrap(), "one\ntwo\nthree\n");
        assert!(!w.src().join("n.c").exists());
        assert!(w.state().applied.is_none());
    }

    #[test]
    fn a_failing_patch_names_its_hunk_and_leaves_the_tree_clean() {
        let (d, w) = setup();
        let good = series(&d.path().join("s1"), &[("0001-a.patch", P1)]);
        let s = series(&d.path().join("s2"), &[("0001-a.patch", P1), ("0002-bad.patch", P2_BAD)]);
        let mut st = w.state();
        // check() applies nothing.
        w.check(&st, &good).unwrap();
        assert_eq!(fs::read_to_string(w.src().join("a.c")).unwrap(), "one\ntwo\nthree\n");
        assert!(w.state().applied.is_none());
        assert!(matches!(w.check(&st, &s), Err(KbuildError::PatchDoesNotApply { .. })));
        let e = w.switch(&mut st, Some(&s), &mut |_| {}).unwrap_err();
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
        // With a good series applied, a bad one leaves the good one in place.
        w.switch(&mut st, Some(&good), &mut |_| {}).unwrap();
        let mtime = fs::metadata(w.src().join("a.c")).unwrap().modified().unwrap();
        assert!(w.switch(&mut st, Some(&s), &mut |_| {}).is_err());
        assert_eq!(fs::read_to_string(w.src().join("a.c")).unwrap(), "one\nTWO\nthree\n");
        assert_eq!(fs::metadata(w.src().join("a.c")).unwrap().modified().unwrap(), mtime);
        assert_eq!(w.state().applied.unwrap().series, "s1");
    }

    #[test]
    fn a_file_with_the_same_content_in_both_series_is_not_rewritten() {
        let (d, w) = setup();
        let s1 = series(&d.path().join("s1"), &[("0001-a.patch", P1)]);
        // s3: the same change to a.c, no n.c.
        let p3 = P1.split("diff --git a/n.c").next().unwrap().to_string();
        let s3 = series(&d.path().join("s3"), &[("0001-a-only.patch", &p3)]);
        let mut st = w.state();
        w.switch(&mut st, Some(&s1), &mut |_| {}).unwrap();
        let mtime = fs::metadata(w.src().join("a.c")).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        w.switch(&mut st, Some(&s3), &mut |_| {}).unwrap();
        assert_eq!(fs::metadata(w.src().join("a.c")).unwrap().modified().unwrap(), mtime);
        assert!(!w.src().join("n.c").exists(), "the file only s1 created is gone");
        assert_eq!(st.applied.as_ref().unwrap().touched, [("a.c".to_string(), true)]);
        // Back to unpatched: a.c restored.
        w.switch(&mut st, None, &mut |_| {}).unwrap();
        assert_eq!(fs::read_to_string(w.src().join("a.c")).unwrap(), "one\ntwo\nthree\n");
        assert!(st.applied.is_none());
    }

    #[test]
    fn switching_series_touches_only_the_files_involved() {
        let (d, w) = setup();
        fs::write(w.src().join("untouched.c"), "x\n").unwrap();
        let before = fs::metadata(w.src().join("untouched.c")).unwrap().modified().unwrap();
        let s = series(&d.path().join("s1"), &[("0001-a.patch", P1)]);
        let mut st = w.state();
        w.switch(&mut st, Some(&s), &mut |_| {}).unwrap();
        let patched = fs::metadata(w.src().join("a.c")).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        w.switch(&mut st, None, &mut |_| {}).unwrap();
        let restored = fs::metadata(w.src().join("a.c")).unwrap().modified().unwrap();
        assert!(restored > patched, "a restored file is newer than its patched version's objects");
        assert_eq!(fs::metadata(w.src().join("untouched.c")).unwrap().modified().unwrap(), before);
    }
}
