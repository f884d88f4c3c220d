//! Finding and reading case files and BPF objects (the filesystem edge of the pure case parser
//! and object reader).

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

/// Expands files and directories (recursively) into `.toml` case files and `.o` BPF objects, sorted.
pub fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut stack = vec![p.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d)? {
                    let path = e?.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if path.extension().is_some_and(|x| x == "toml") || is_object(&path) {
                        out.push(path);
                    }
                }
            }
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(BadInput(format!("{}: no such file or directory", p.display())).into());
        }
    }
    out.sort();
    Ok(out)
}

/// Reads and parses every case under `paths`; the first malformed file is a [`BadInput`].
pub fn load(paths: &[PathBuf], module: &ModuleKfuncs) -> anyhow::Result<Vec<Case>> {
    let mut cases = Vec::new();
    for f in expand(paths)? {
        if is_object(&f) {
            let bytes = std::fs::read(&f).map_err(|e| BadInput(format!("{}: {e}", f.display())))?;
            let known = lockstep_core::corpus::known_kfuncs(module);
            let got = lockstep_core::import::elf::cases_from_object(&f.display().to_string(), &bytes, &known)
                .map_err(|e| BadInput(e.to_string()))?;
            for (prog, why) in &got.skipped {
                eprintln!("{}: program {prog}: the model cannot judge it: {why}", f.display());
            }
            cases.extend(got.cases);
            continue;
        }
        let src = std::fs::read_to_string(&f).map_err(|e| BadInput(format!("{}: {e}", f.display())))?;
        let parsed = lockstep_core::corpus::load_text(&f.display().to_string(), &src, module)
            .map_err(|e| BadInput(e.to_string()))?;
        cases.extend(parsed);
    }
    Ok(cases)
}
