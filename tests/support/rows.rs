//! The JSON lines of `lockstep run --json` as values, timings left out (`verification_usec`
//! differs from run to run), for tests that compare two runs' rows.

use serde_json::Value;

/// One value per line of `text`; a line that is not JSON fails the test naming it.
pub fn rows_without_timings(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}"));
            v.as_object_mut().unwrap().remove("verification_usec");
            v
        })
        .collect()
}
