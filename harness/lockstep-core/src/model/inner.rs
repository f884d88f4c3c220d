//! Map-in-map (`BPF_MAP_TYPE_ARRAY_OF_MAPS` / `HASH_OF_MAPS`): a lookup in the outer map gives
//! the inner map as a map pointer, a lookup in that gives a value of the inner map's layout.
//!
//! The kernel (verifier.c, 6.12 / 7.2 `mark_ptr_not_null_reg()`, 7.3 `refine_map_lookup_value()`
//! at the call) turns the outer lookup's `PTR_TO_MAP_VALUE` into `CONST_PTR_TO_MAP` with
//! `map_ptr = map->inner_map_meta`: one meta per outer map, so every inner map of one outer map
//! is the same map to the verifier, and a value's lock is told apart by the lookup's `reg->id`
//! alone (`process_spin_lock()` compares `map_ptr` and `id`). `map_uid` (the outer lookup's id;
//! 7.3 sets it on every outer lookup, 7.2 and 6.12 only for inner maps holding a timer or
//! workqueue) only matters to those fields (`process_map_ptr_arg()`, `check_map_field_pointer()`),
//! which the model does not represent.
//!
//! In the model the inner map of outer map `i` is the map index `case.maps.len() + i`
//! ([`Machine::map`] resolves it to [`MapSpec::inner`]). The kernel's `inner_map_meta` has no
//! name (`bpf_map_meta_alloc()` copies type, sizes, flags and the BTF record only).

use super::exec::Machine;
use super::state::Reg;
use crate::case::{Case, MapSpec};

/// The map index of outer map `outer`'s inner map.
pub(super) fn inner_index(case: &Case, outer: usize) -> usize {
    case.maps.len() + outer
}

/// The spec behind map index `idx`: a case map, or the inner map of a map-in-map.
pub(super) fn spec(case: &Case, idx: usize) -> &MapSpec {
    match case.maps.get(idx) {
        Some(m) => m,
        None => {
            case.maps[idx - case.maps.len()].inner.as_deref().expect("an inner map index names a map-in-map")
        }
    }
}

/// What a non-null outer lookup result becomes: `CONST_PTR_TO_MAP` of the inner map (None for a
/// value of any other map).
pub(super) fn not_null_inner(case: &Case, r: &Reg) -> Option<Reg> {
    match r {
        Reg::MapValue { map, .. } if case.maps.get(*map).is_some_and(|m| m.inner.is_some()) => {
            Some(Reg::MapPtr { map: inner_index(case, *map) })
        }
        _ => None,
    }
}

impl Machine<'_> {
    /// Whether `spec` is an inner map (its kernel meta has no name).
    pub(super) fn is_inner_map(&self, spec: &MapSpec) -> bool {
        self.case.maps.iter().any(|m| m.inner.as_deref().is_some_and(|i| std::ptr::eq(i, spec)))
    }
}
