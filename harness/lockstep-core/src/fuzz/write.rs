//! The insta snapshot the corpus test (`tests/model_corpus.rs`) would record for a minimised
//! disagreement, so that it can join the corpus by moving two files (the case file itself is
//! written by [`crate::case::write`]).

use crate::case::Case;
use crate::corpus::{check_all, snapshot_text};
use crate::profile::{KernelProfile, ModuleKfuncs};

/// The insta snapshot file `tests/model_corpus.rs` records for a corpus file named `stem` holding
/// `cases` (the model's verdicts on every profile).
pub fn snapshot_file(cases: &[Case], module: &ModuleKfuncs) -> String {
    let rows = check_all(cases, &KernelProfile::all(), module);
    format!(
        "---\nsource: harness/lockstep-core/../../tests/model_corpus.rs\nexpression: out\n---\n{}",
        snapshot_text(&rows)
    )
}
