//! The model's verdicts on every corpus file and profile, as insta snapshots
//! (`tests/snapshots/`, review changes with `cargo insta review`), plus the corpus expectations
//! (taken from the kernel source, each citing its verifier.c function) which must all hold.

use std::path::Path;

use lockstep_core::corpus::{check_all, load_text, snapshot_text};
use lockstep_core::module_src::bundled;
use lockstep_core::profile::KernelProfile;

fn model_verdicts(path: &Path, contents: String) -> datatest_stable::Result<()> {
    let module = bundled();
    // Files in subdirectories (tests/corpus/selftests-7.3/x.toml) snapshot as `selftests-7.3__x`.
    let full = path.with_extension("").to_string_lossy().replace('\\', "/");
    let name = full.rsplit_once("tests/corpus/").map_or(full.as_str(), |(_, r)| r).replace('/', "__");
    let cases = load_text(&name, &contents, &module)?;
    let rows = check_all(&cases, &KernelProfile::all(), &module);
    let out = snapshot_text(&rows);
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| insta::assert_snapshot!(format!("model__{name}"), out));
    let missed: Vec<_> = rows
        .iter()
        .filter(|r| r.expected == Some(false))
        .map(|r| format!("{} on {}", r.case, r.profile))
        .collect();
    if !missed.is_empty() {
        return Err(format!("expectations not met: {}", missed.join(", ")).into());
    }
    Ok(())
}

datatest_stable::harness! {
    { test = model_verdicts, root = "../../tests/corpus", pattern = r"\.toml$" },
}
