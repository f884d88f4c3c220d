//! Operations for constructs real lock programs use beside `bpf_spin_lock` and that the model
//! judges: a `bpf_res_spin_lock` section on its own map (the failed-acquisition branch, the value
//! pointer spilled at `r10 - 40`), `may_goto` around a block, and `bpf_map_update_elem` /
//! `bpf_map_delete_elem` with the key at `r10 - 4` and the value at `r10 - 64`.
//! Without chaos each follows the rules; a wild decision breaks one (a call under the res lock, the
//! result unchecked, the unlock left out, the block under `may_goto` changing the lock state).

use super::{field, Builder};
use crate::case::{FieldKind, MapSpec, MapType, ValueLayout};

const HELPERS: &[&str] = &["bpf_get_prandom_u32", "bpf_ktime_get_ns"];

impl Builder<'_> {
    /// A `bpf_res_spin_lock` / `bpf_res_spin_unlock` section on map `rvals`.
    pub(super) fn res_lock_section(&mut self, wild: bool) {
        self.tags.insert("res-lock");
        let spec = res_lock_map(&mut self.rng);
        let m = self.add_map(spec);
        let name = self.maps[m].name.clone();
        let off = self.lock_off(m).unwrap_or(0);
        let ints: Vec<i32> = self.maps[m]
            .value
            .fields
            .iter()
            .filter(|f| f.kind == FieldKind::Int && f.size == 4)
            .map(|f| f.offset as i32)
            .collect();
        let skip = self.label("rskip");
        self.emit("r1 = 0");
        self.emit("*(u32 *)(r10 - 4) = r1");
        self.emit("r2 = r10");
        self.emit("r2 += -4");
        self.emit(&format!("r1 = {name} ll"));
        self.emit("call bpf_map_lookup_elem");
        self.emit("if r0 == 0 goto out");
        self.emit("*(u64 *)(r10 - 40) = r0");
        self.emit("r1 = r0");
        self.emit(&format!("r1 += {off}"));
        self.emit("call bpf_res_spin_lock");
        if wild && self.rng.chance(30) {
            self.tags.insert("res-lock-unchecked");
        } else {
            self.emit(&format!("if r0 != 0 goto {skip}"));
        }
        if !ints.is_empty() && self.rng.chance(60) {
            let i = *self.rng.pick(&ints);
            self.emit("r1 = *(u64 *)(r10 - 40)");
            self.emit(&format!("r0 = *(u32 *)(r1 + {i})"));
            self.emit("r0 += 1");
            self.emit(&format!("*(u32 *)(r1 + {i}) = r0"));
        }
        if wild && self.rng.chance(40) {
            self.tags.insert("res-lock-call");
            let h = *self.rng.pick(HELPERS);
            self.emit(&format!("call {h}"));
        }
        if wild && self.rng.chance(25) {
            self.tags.insert("res-lock-held");
        } else {
            self.emit("r1 = *(u64 *)(r10 - 40)");
            self.emit(&format!("r1 += {off}"));
            self.emit("call bpf_res_spin_unlock");
        }
        self.emit_label(&skip);
    }

    /// `may_goto` over a short block that ends in the lock state it began with (unless wild).
    pub(super) fn may_goto_block(&mut self, depth: u32, wild: bool) {
        self.tags.insert("may-goto");
        let skip = self.label("mskip");
        self.emit(&format!("may_goto {skip}"));
        let before = self.held;
        let ops = self.rng.range(1, 2) as usize;
        self.block(ops, depth + 1, true, false);
        if !wild {
            self.restore(before);
        }
        self.emit_label(&skip);
    }

    /// `bpf_map_update_elem` (key 0, a zeroed value from the stack) or `bpf_map_delete_elem` on a
    /// map of the program that is not a global section (or a new plain one).
    pub(super) fn map_write(&mut self) {
        let own: Vec<usize> = (0..self.maps.len())
            .filter(|&i| !self.maps[i].global_section && self.maps[i].map_type != MapType::ProgArray)
            .collect();
        let m = if own.is_empty() || self.rng.chance(20) {
            let spec = super::plain_map(&mut self.rng, "plain");
            self.add_map(spec)
        } else {
            *self.rng.pick(&own)
        };
        let name = self.maps[m].name.clone();
        self.emit("r1 = 0");
        self.emit("*(u32 *)(r10 - 4) = r1");
        if self.rng.chance(65) {
            self.tags.insert("map-update");
            self.emit("*(u64 *)(r10 - 64) = r1");
            self.emit("*(u64 *)(r10 - 56) = r1");
            self.emit(&format!("r1 = {name} ll"));
            self.emit("r2 = r10");
            self.emit("r2 += -4");
            self.emit("r3 = r10");
            self.emit("r3 += -64");
            self.emit("r4 = 0");
            self.emit("call bpf_map_update_elem");
        } else {
            self.tags.insert("map-delete");
            self.emit(&format!("r1 = {name} ll"));
            self.emit("r2 = r10");
            self.emit("r2 += -4");
            self.emit("call bpf_map_delete_elem");
        }
    }
}

/// An array or hash map `rvals` whose value holds a `bpf_res_spin_lock`, with BTF.
fn res_lock_map(rng: &mut crate::fuzz::rng::Rng) -> MapSpec {
    let (fields, size) = if rng.chance(60) {
        (vec![field("cnt", FieldKind::Int, 0, 4), field("lock", FieldKind::ResSpinLock, 4, 4)], 8)
    } else {
        (vec![field("lock", FieldKind::ResSpinLock, 0, 4), field("x", FieldKind::Int, 4, 4)], 8)
    };
    MapSpec {
        name: "rvals".into(),
        map_type: if rng.chance(60) { MapType::Array } else { MapType::Hash },
        key_size: 4,
        max_entries: 1,
        value: ValueLayout { size, fields },
        btf: true,
        global_section: false,
        flags: 0,
        inner: None,
    }
}
