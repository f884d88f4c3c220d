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

/// Loaded program BTF blobs kept at most (least recently used dropped first, with their maps).
/// Room for every distinct BTF of the default corpus: with fewer entries than a pass meets,
/// least-recently-used eviction drops each entry before its next use when the same cases come
/// round again (`bench guest`'s passes, a long run), and the BTF is loaded and its maps created
/// anew (64 were kept until session 10: docs/speed.md). The fd and memory budgets below bound it.
const MAX_BTF: usize = 1024;
/// Maps without BTF kept.
const MAX_PLAIN_MAPS: usize = 256;
/// Largest map (bytes of keys and values at `max_entries`) kept for reuse.
const MAX_REUSED_MAP_BYTES: u64 = 1 << 20;
/// Bytes of kept maps (by [`map_bytes`]) above which the least recently used BTF entries go.
const MAX_KEPT_MAP_BYTES: u64 = 64 << 20;
/// Default budget of kept file descriptors (BTF objects and maps): a quarter of the usual soft
/// `RLIMIT_NOFILE` of 1024, so that a process that did not raise its limit (host mode) keeps room
/// for the case's own fds. The agent raises its limit and the budget ([`SetupCache::set_max_fds`]).
pub(crate) const DEFAULT_MAX_KEPT_FDS: usize = 256;

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
        // Pages come into an arena only when a program runs (`bpf_arena_alloc_pages()`) or user
        // space maps it, and the loader does neither: a kept arena is as empty as a new one, and
        // nothing in it records the programs loaded with it (`check_map_prog_compatibility()`
        // only sets the program's `aux->arena`). Creating one is costly:
        // `populate_pgtable_except_pte()` allocates the page tables of its whole 4 GiB range.
        MapType::Arena => true,
    }
}

/// Whether a map of `key` (of a reusable type) is small enough to keep.
pub(crate) fn small_enough(key: &MapKey) -> bool {
    (u64::from(key.key_size) + u64::from(key.value_size)) * u64::from(key.max_entries) <= MAX_REUSED_MAP_BYTES
}

/// The kernel memory a kept map of `key` holds, roughly: its keys and values plus 64 bytes of
/// element overhead per entry (a preallocated hash map's `htab_elem`).
pub(crate) fn map_bytes(key: &MapKey) -> u64 {
    if key.map_type == ARENA_MAP_TYPE {
        // The page tables of its 4 GiB kernel range (2048 pages), whatever its size.
        return 8 << 20;
    }
    (u64::from(key.key_size) + u64::from(key.value_size) + 64) * u64::from(key.max_entries)
}

/// `BPF_MAP_TYPE_ARENA`.
const ARENA_MAP_TYPE: u32 = 33;

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
    /// [`SetupCache::tick`] of its last use.
    used: u64,
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
#[derive(Debug)]
pub(crate) struct SetupCache {
    /// In no particular order; each entry's `used` says when it last served a case.
    btfs: Vec<BtfEntry>,
    plain: MapPool,
    /// Counts [`SetupCache::btf`] calls (the clock of `used`).
    tick: u64,
    /// Kept fds (BTF objects and maps, plain ones included) allowed before eviction.
    max_fds: usize,
}

impl Default for SetupCache {
    fn default() -> Self {
        SetupCache { btfs: Vec::new(), plain: MapPool::default(), tick: 0, max_fds: DEFAULT_MAX_KEPT_FDS }
    }
}

impl SetupCache {
    /// The loaded BTF object of `raw`, loading it with `load` when no kept one is byte-equal.
    pub fn btf<E>(
        &mut self,
        raw: &[u8],
        load: impl FnOnce(&[u8]) -> Result<OwnedFd, E>,
    ) -> Result<(BtfSlot, Arc<OwnedFd>), E> {
        self.tick += 1;
        let i = match self.btfs.iter().position(|e| e.raw == raw) {
            Some(i) => i,
            None => {
                let fd = Arc::new(load(raw)?);
                // Room for this entry and a case's maps: the least recently used entries go.
                while !self.btfs.is_empty()
                    && (self.btfs.len() >= MAX_BTF
                        || self.kept_fds() + 8 > self.max_fds
                        || self.kept_map_bytes() > MAX_KEPT_MAP_BYTES)
                {
                    let lru = (0..self.btfs.len()).min_by_key(|&j| self.btfs[j].used).unwrap_or(0);
                    self.btfs.swap_remove(lru);
                }
                self.btfs.push(BtfEntry { raw: raw.to_vec(), fd, maps: MapPool::default(), used: 0 });
                self.btfs.len() - 1
            }
        };
        self.btfs[i].used = self.tick;
        Ok((BtfSlot::Entry(i), self.btfs[i].fd.clone()))
    }

    /// Sets the budget of kept fds (BTF objects and maps): a process whose `RLIMIT_NOFILE` is
    /// well above the default 1024 (the agent raises its own) keeps more.
    pub fn set_max_fds(&mut self, n: usize) {
        self.max_fds = n;
    }

    /// Fds held by kept BTF objects and maps.
    fn kept_fds(&self) -> usize {
        self.plain.maps.len() + self.btfs.iter().map(|e| 1 + e.maps.maps.len()).sum::<usize>()
    }

    /// Kernel memory of the kept maps ([`map_bytes`]).
    fn kept_map_bytes(&self) -> u64 {
        let pool = |p: &MapPool| p.maps.iter().map(|(k, _)| map_bytes(k)).sum::<u64>();
        pool(&self.plain) + self.btfs.iter().map(|e| pool(&e.maps)).sum::<u64>()
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
        let max_plain = MAX_PLAIN_MAPS.min(self.max_fds / 4).max(1);
        let pool = match slot {
            BtfSlot::None => &mut self.plain,
            BtfSlot::Entry(i) => &mut self.btfs[i].maps,
        };
        if let Some(fd) = pool.find(&key, taken) {
            return Ok(fd);
        }
        let fd = Arc::new(create()?);
        if slot == BtfSlot::None && pool.maps.len() >= max_plain {
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
            .btf::<()>(&[1, 2, 3], |_| {
                loads += 1;
                Ok(fd())
            })
            .unwrap();
        let (_, b) = c.btf::<()>(&[1, 2, 3], |_| panic!("loaded again")).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let (_, d) = c
            .btf::<()>(&[1, 2, 4], |_| {
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
        let (slot, _) = c.btf::<()>(&[9], |_| Ok(fd())).unwrap();
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
    fn the_least_recently_used_btf_goes_when_the_fd_budget_is_spent() {
        let mut c = SetupCache::default();
        c.set_max_fds(11);
        let (a, _) = c.btf::<()>(&[1], |_| Ok(fd())).unwrap();
        c.map::<()>(a, key("m"), &[], || Ok(fd())).unwrap();
        c.btf::<()>(&[2], |_| Ok(fd())).unwrap();
        // [1] used again: [2] is now the least recently used.
        c.btf::<()>(&[1], |_| panic!("loaded again")).unwrap();
        assert_eq!(c.kept_fds(), 3);
        // 3 kept + 8 for the next case's maps fit in 11, 4 + 8 do not: [2] goes for [4].
        c.btf::<()>(&[3], |_| Ok(fd())).unwrap();
        c.btf::<()>(&[4], |_| Ok(fd())).unwrap();
        assert!(c.btfs.iter().all(|e| e.raw != vec![2]), "the least recently used went");
        let (a, _) = c.btf::<()>(&[1], |_| panic!("[1] was used last, not dropped")).unwrap();
        c.map::<()>(a, key("m"), &[], || panic!("its map was kept too")).unwrap();
        assert!(c.kept_fds() <= 11);
    }

    #[test]
    fn kept_arenas_count_their_page_tables() {
        assert!(reusable_type(MapType::Arena));
        let arena =
            MapKey { map_type: ARENA_MAP_TYPE, key_size: 0, value_size: 0, max_entries: 1, ..key("a") };
        assert!(small_enough(&arena));
        assert_eq!(map_bytes(&arena), 8 << 20);
        let mut c = SetupCache::default();
        for i in 0..10u8 {
            let (s, _) = c.btf::<()>(&[i], |_| Ok(fd())).unwrap();
            c.map::<()>(s, arena.clone(), &[], || Ok(fd())).unwrap();
        }
        // 64 MiB of kept maps at most, plus the newest case's.
        assert!(c.kept_map_bytes() <= MAX_KEPT_MAP_BYTES + (8 << 20), "{}", c.kept_map_bytes());
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
