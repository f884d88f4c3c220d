//! Finding and reading case files and BPF objects (the filesystem edge of the pure case parser
//! and object reader).
//!
//! Only regular files are read (a FIFO or device named `x.toml` is bad input, not a hang); a
//! directory symlink is followed once (every directory and file is visited by canonical path, so
//! a loop cannot load a file twice); a directory without cases is bad input.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use lockstep_core::case::Case;
use lockstep_core::profile::ModuleKfuncs;

use crate::exit::BadInput;

/// The bundled corpus directory (`tests/corpus` of the source tree).
pub fn default_corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus")
}

/// Whether `p` is a BPF object (`.o`, e.g. `x.bpf.o`) rather than a case file.
fn is_object(p: &Path) -> bool {
    p.extension().is_some_and(|x| x == "o")
}

/// Whether a file found in a directory is loaded: a `.toml` case file or a `.o` object.
fn is_candidate(p: &Path) -> bool {
    p.extension().is_some_and(|x| x == "toml") || is_object(p)
}

/// The files found so far, each once (by canonical path), and the directories already walked.
#[derive(Default)]
struct Found {
    files: Vec<PathBuf>,
    canonical_files: HashSet<PathBuf>,
    canonical_dirs: HashSet<PathBuf>,
}

impl Found {
    /// Adds `path` (a regular file) unless the same file was already found under another name.
    fn add_file(&mut self, path: PathBuf) -> anyhow::Result<()> {
        let canon = fs::canonicalize(&path).map_err(|e| BadInput(format!("{}: {e}", path.display())))?;
        if self.canonical_files.insert(canon) {
            self.files.push(path);
        }
        Ok(())
    }

    /// Walks `dir` recursively; returns how many case files and objects it holds (duplicates
    /// included).
    fn walk(&mut self, dir: &Path) -> anyhow::Result<usize> {
        let bad = |p: &Path, e: std::io::Error| BadInput(format!("{}: {e}", p.display()));
        let mut count = 0;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let canon = fs::canonicalize(&d).map_err(|e| bad(&d, e))?;
            if !self.canonical_dirs.insert(canon) {
                continue; // a symlink back into a directory already walked
            }
            for e in fs::read_dir(&d).map_err(|e| bad(&d, e))? {
                let path = e.map_err(|e| bad(&d, e))?.path();
                // Follows symlinks; a dangling one is only an error if it names a case file.
                let meta = match fs::metadata(&path) {
                    Ok(m) => m,
                    Err(e) if is_candidate(&path) => return Err(bad(&path, e).into()),
                    Err(_) => continue,
                };
                if meta.is_dir() {
                    stack.push(path);
                } else if is_candidate(&path) {
                    if !meta.is_file() {
                        return Err(not_regular(&path).into());
                    }
                    count += 1;
                    self.add_file(path)?;
                }
            }
        }
        Ok(count)
    }
}

fn not_regular(p: &Path) -> BadInput {
    BadInput(format!("{}: not a regular file (only regular files and directories are read)", p.display()))
}

/// Expands files and directories (recursively) into `.toml` case files and `.o` BPF objects,
/// sorted, each file once.
pub fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Found::default();
    for p in paths {
        let meta = match fs::metadata(p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BadInput(format!("{}: no such file or directory", p.display())).into())
            }
            Err(e) => return Err(BadInput(format!("{}: {e}", p.display())).into()),
        };
        if meta.is_dir() {
            if found.walk(p)? == 0 {
                return Err(BadInput(format!(
                    "no cases found in {} (no .toml case files or .o BPF objects)",
                    p.display()
                ))
                .into());
            }
        } else if meta.is_file() {
            found.add_file(p.clone())?;
        } else {
            return Err(not_regular(p).into());
        }
    }
    found.files.sort();
    Ok(found.files)
}

/// The `prog_tests/*.c` table entries of the sidecar beside object `obj`
/// ([`lockstep_core::import::prog_tests::SIDECAR`]), if there is one; a malformed one is bad input.
fn sidecar_beside(obj: &Path) -> anyhow::Result<Option<Vec<lockstep_core::import::prog_tests::TableEntry>>> {
    let path = obj.with_file_name(lockstep_core::import::prog_tests::SIDECAR);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BadInput(format!("{}: {e}", path.display())).into()),
    };
    let entries = lockstep_core::import::prog_tests::parse(&path.display().to_string(), &text)
        .map_err(|e| BadInput(e.to_string()))?;
    Ok(Some(entries))
}

/// Reads and parses every case under `paths`; the first malformed file is a [`BadInput`].
pub fn load(paths: &[PathBuf], module: &ModuleKfuncs) -> anyhow::Result<Vec<Case>> {
    let known = lockstep_core::corpus::known_kfuncs(module);
    let mut cases = Vec::new();
    for f in expand(paths)? {
        let name = f.display().to_string();
        let bytes = fs::read(&f).map_err(|e| BadInput(format!("{name}: {e}")))?;
        if is_object(&f) {
            let got = lockstep_core::import::elf::cases_from_object(&name, &bytes, &known)
                .map_err(|e| BadInput(e.to_string()))?;
            for (prog, why) in &got.skipped {
                eprintln!("{name}: program {prog}: the model cannot judge it: {why}");
            }
            let mut got_cases = got.cases;
            if let Some(entries) = sidecar_beside(&f)? {
                let file_name = f.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                lockstep_core::import::prog_tests::apply(&mut got_cases, &file_name, &entries);
            }
            cases.extend(got_cases);
            continue;
        }
        let parsed =
            lockstep_core::corpus::load_bytes(&name, &bytes, &known).map_err(|e| BadInput(e.to_string()))?;
        cases.extend(parsed);
    }
    Ok(cases)
}
