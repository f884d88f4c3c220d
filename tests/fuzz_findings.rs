//! The minimised disagreements in `tests/fuzz/` (written by `lockstep fuzz`): each parses, says
//! whether it is explained, and its snapshot (the model's verdicts on every profile, in
//! `tests/fuzz/snapshots/`) is current, so a model change shows which findings it touches.
//! Fixed findings move to `tests/corpus/fuzz/`, so the directory may hold none.

use std::path::{Path, PathBuf};

use lockstep_core::corpus::{check_all, load_text, snapshot_text};
use lockstep_core::module_src::bundled;
use lockstep_core::profile::KernelProfile;

fn findings() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/fuzz exists")
        .map(|e| e.expect("directory entry").path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("fuzz-") && n.ends_with(".toml")
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_finding_is_explained_and_its_snapshot_current() {
    let module = bundled();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    for path in findings() {
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let contents = std::fs::read_to_string(&path).unwrap();
        let cases = load_text(&name, &contents, &module).unwrap_or_else(|e| panic!("{name}: {e}"));
        for c in &cases {
            let d = c.description.as_deref().unwrap_or("");
            assert!(d.contains("Explanation:"), "{name}: {}: the description has no `Explanation:`", c.name);
            assert!(
                !d.contains("Explanation: to be written."),
                "{name}: {}: the explanation is still to be written",
                c.name
            );
            assert!(!c.expect.is_empty(), "{name}: {}: no expectation (the kernel's verdict)", c.name);
        }
        let rows = check_all(&cases, &KernelProfile::all(), &module);
        settings.bind(|| insta::assert_snapshot!(format!("model__{name}"), snapshot_text(&rows)));
    }
}
