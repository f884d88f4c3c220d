//! [`SetupCache`]: program BTF and maps kept from case to case, so that a case whose program
//! BTF is byte-equal to an earlier one's gets the same loaded BTF object, and a map whose spec
//! (type, name, sizes, flags, BTF type ids in that BTF) is equal gets the same map.
//!
//! Loading BTF, creating maps and closing them again cost more than the verification of a
//! small program under TCG. Reuse does not change what the verifier sees:
//! - the loader never writes a map's contents and never runs a program it loaded (test runs go
//!   through [`crate::objload`], which creates its own maps), and no map is frozen, so every
//!   reused map is as empty as a fresh one;
//! - only map types that keep no record of the programs that used them are reused
//!   ([`reusable_type`]): a prog array binds to the type of its first program
//!   (`__bpf_prog_map_compatible()`), a cgroup storage to its program, so they are created
//!   per case as before;
//! - two maps of one case never share a map, even with equal specs.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use lockstep_core::case::MapType;

/// Loaded program BTF blobs kept (least recently used dropped first, with their maps).
const MAX_BTF: usize = 64;
/// Maps without BTF kept.
const MAX_PLAIN_MAPS: usize = 64;
/// Largest map (bytes of keys and values at `max_entries`) kept for reuse.
const MAX_REUSED_MAP_BYTES: u64 = 1 << 20;

/// What makes two maps interchangeable for the verifier (the BTF they were created with is
/// the [`SetupCache`] entry they are kept in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MapKey {
    /// `enum bpf_map_type`.
    pub map_type: u32,
    /// The object name the map is created with (the verifier's messages name maps).
    pub name: String,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    /// BTF key and value type ids (0, 0 without BTF).
    pub btf_ids: (u32, u32),
}

/// Whether maps of `t` can serve several programs without a trace of the earlier ones.
pub(crate) fn reusable_type(t: MapType) -> bool {
    match t {
        MapType::Hash | MapType::Array | MapType::PercpuHash | MapType::PercpuArray | MapType::LruHash => {
            true
        }
        // Bind to their first program (owner type, storage cookie) or hold programs.
        MapType::ProgArray
        | MapType::CgroupStorage
        | MapType::SkStorage
        | MapType::SockMap
        | MapType::XskMap
        | MapType::SockHash
        | MapType::ReuseportSockarray => false,
        // Created with an inner map made for the case.
        MapType::ArrayOfMaps | MapType::HashOfMaps => false,
        // Holds the pages its programs allocated.
        MapType::Arena => false,
    }
}

/// Whether a map of `key` (of a reusable type) is small enough to keep.
pub(crate) fn small_enough(key: &MapKey) -> bool {
    (u64::from(key.key_size) + u64::from(key.value_size)) * u64::from(key.max_entries) <= MAX_REUSED_MAP_BYTES
}

/// Maps of one BTF (or of none), each with its key.
#[derive(Debug, Default)]
struct MapPool {
    maps: Vec<(MapKey, Arc<OwnedFd>)>,
}

impl MapPool {
    /// A kept map of `key` that `taken` does not hold yet.
    fn find(&self, key: &MapKey, taken: &[Arc<OwnedFd>]) -> Option<Arc<OwnedFd>> {
        self.maps
            .iter()
            .find(|(k, fd)| k == key && !taken.iter().any(|t| Arc::ptr_eq(t, fd)))
            .map(|(_, fd)| fd.clone())
    }
}

/// One loaded program BTF and the maps created with it.
#[derive(Debug)]
struct BtfEntry {
    raw: Vec<u8>,
    fd: Arc<OwnedFd>,
    maps: MapPool,
}

/// Which kept BTF a map belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BtfSlot {
    /// The map has no BTF.
    None,
    /// Index into the cache's BTF entries, valid until the next [`SetupCache::btf`] call.
    Entry(usize),
}

/// Program BTF and maps kept across cases (see the module comment).
#[derive(Debug, Default)]
pub(crate) struct SetupCache {
    /// Most recently used last.
    btfs: Vec<BtfEntry>,
    plain: MapPool,
}

impl SetupCache {
    /// The loaded BTF object of `raw`, loading it with `load` when no kept one is byte-equal.
    pub fn btf<E>(
        &mut self,
        raw: Vec<u8>,
        load: impl FnOnce(&[u8]) -> Result<OwnedFd, E>,
    ) -> Result<(BtfSlot, Arc<OwnedFd>), E> {
        if let Some(i) = self.btfs.iter().position(|e| e.raw == raw) {
            let e = self.btfs.remove(i);
            self.btfs.push(e);
        } else {
            let fd = Arc::new(load(&raw)?);
            if self.btfs.len() >= MAX_BTF {
                self.btfs.remove(0);
            }
            self.btfs.push(BtfEntry { raw, fd, maps: MapPool::default() });
        }
        let i = self.btfs.len() - 1;
        Ok((BtfSlot::Entry(i), self.btfs[i].fd.clone()))
    }

    /// A map of `key` in `slot`'s pool that `taken` (the maps the case has so far) does not
    /// hold, made with `create` (and kept) when there is none.
    pub fn map<E>(
        &mut self,
        slot: BtfSlot,
        key: MapKey,
        taken: &[Arc<OwnedFd>],
        create: impl FnOnce() -> Result<OwnedFd, E>,
    ) -> Result<Arc<OwnedFd>, E> {
        let pool = match slot {
            BtfSlot::None => &mut self.plain,
            BtfSlot::Entry(i) => &mut self.btfs[i].maps,
        };
        if let Some(fd) = pool.find(&key, taken) {
            return Ok(fd);
        }
        let fd = Arc::new(create()?);
        if slot == BtfSlot::None && pool.maps.len() >= MAX_PLAIN_MAPS {
            pool.maps.remove(0);
        }
        pool.maps.push((key, fd.clone()));
        Ok(fd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd() -> OwnedFd {
        // Any open file stands in for a kernel object here.
        std::fs::File::open("/dev/null").unwrap().into()
    }

    fn key(name: &str) -> MapKey {
        MapKey {
            map_type: 2,
            name: name.into(),
            key_size: 4,
            value_size: 8,
            max_entries: 1,
            map_flags: 0,
            btf_ids: (1, 2),
        }
    }

    #[test]
    fn byte_equal_btf_is_loaded_once() {
        let mut c = SetupCache::default();
        let mut loads = 0;
        let (_, a) = c
            .btf::<()>(vec![1, 2, 3], |_| {
                loads += 1;
                Ok(fd())
            })
            .unwrap();
        let (_, b) = c.btf::<()>(vec![1, 2, 3], |_| panic!("loaded again")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let (_, d) = c
            .btf::<()>(vec![1, 2, 4], |_| {
                loads += 1;
                Ok(fd())
            })
            .unwrap();
        assert!(!Arc::ptr_eq(&a, &d));
        assert_eq!(loads, 2);
    }

    #[test]
    fn equal_maps_are_shared_across_cases_but_never_within_one() {
        let mut c = SetupCache::default();
        let (slot, _) = c.btf::<()>(vec![9], |_| Ok(fd())).unwrap();
        // Case 1: two maps of one spec get two maps.
        let m1 = c.map::<()>(slot, key("m"), &[], || Ok(fd())).unwrap();
        let m2 = c.map::<()>(slot, key("m"), std::slice::from_ref(&m1), || Ok(fd())).unwrap();
        assert!(!Arc::ptr_eq(&m1, &m2));
        // Case 2: the same two, no creation.
        let n1 = c.map::<()>(slot, key("m"), &[], || panic!("created again")).unwrap();
        let n2 = c.map::<()>(slot, key("m"), std::slice::from_ref(&n1), || panic!("created again")).unwrap();
        assert!(Arc::ptr_eq(&n1, &m1) && Arc::ptr_eq(&n2, &m2));
        // Another name, another map; a failed creation is not kept.
        assert!(c.map(slot, key("other"), &[], || Err("refused")).is_err());
        let o = c.map::<()>(slot, key("other"), &[], || Ok(fd())).unwrap();
        assert!(!Arc::ptr_eq(&o, &m1));
        // Maps without BTF are another pool.
        let p = c.map::<()>(BtfSlot::None, key("m"), &[], || Ok(fd())).unwrap();
        assert!(!Arc::ptr_eq(&p, &m1));
    }

    #[test]
    fn program_binding_maps_and_large_maps_are_not_reused() {
        assert!(!reusable_type(MapType::ProgArray));
        assert!(!reusable_type(MapType::CgroupStorage));
        assert!(reusable_type(MapType::Array) && reusable_type(MapType::Hash));
        assert!(small_enough(&key("m")));
        assert!(!small_enough(&MapKey { max_entries: 1 << 20, ..key("m") }));
    }
}
