//! The minimised disagreements in `tests/fuzz/` (written by `lockstep fuzz`): each parses, says
//! whether it is explained, and its snapshot (the model's verdicts on every profile, in
//! `tests/fuzz/snapshots/`) is current, so a model change shows which findings it touches.

use std::path::Path;

use lockstep_core::corpus::{check_all, load_text, snapshot_text};
use lockstep_core::module_src::bundled;
use lockstep_core::profile::KernelProfile;

fn finding(path: &Path, contents: String) -> datatest_stable::Result<()> {
    let module = bundled();
    let name = path.file_stem().unwrap().to_string_lossy().to_string();
    let cases = load_text(&name, &contents, &module)?;
    for c in &cases {
        let d = c.description.as_deref().unwrap_or("");
        if !d.contains("Explanation:") {
            return Err(format!("{}: the description has no `Explanation:`", c.name).into());
        }
        if c.expect.is_empty() {
            return Err(format!("{}: no expectation (the kernel's verdict)", c.name).into());
        }
    }
    let rows = check_all(&cases, &KernelProfile::all(), &module);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fuzz/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(format!("model__{name}"), snapshot_text(&rows)));
    Ok(())
}

datatest_stable::harness! {
    { test = finding, root = "../../tests/fuzz", pattern = r"^fuzz-[0-9a-f]+\.toml$" },
}
