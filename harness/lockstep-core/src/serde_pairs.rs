//! Serde for `BTreeMap<usize, T>` as a list of `[key, value]` pairs. JSON map keys are strings,
//! and serde cannot turn them back into integers inside internally tagged enums (the protocol's
//! messages), so integer-keyed maps travel as pairs.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Serialises the map as `[[key, value], ...]`.
pub fn serialize<T: Serialize, S: Serializer>(map: &BTreeMap<usize, T>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(map.iter())
}

/// Reads `[[key, value], ...]`.
pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<usize, T>, D::Error> {
    Ok(Vec::<(usize, T)>::deserialize(d)?.into_iter().collect())
}
