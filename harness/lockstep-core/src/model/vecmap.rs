//! Ordered maps and sets kept as sorted vectors, for the per-check tables of [`super::exec::Machine`]
//! (states by prune point, reference instructions, called subprograms): each holds a handful of
//! entries or none, and a check builds and drops them every time. An empty `Vec` owns no memory
//! and drops with one compare, where an empty `BTreeMap` runs its (not inlined) `IntoIter` drop:
//! seven of them were ~3% of `lockstep bench model`'s instructions (session 13, cachegrind).
//! Also a frame's spilled registers ([`super::Stack::spills`]) and a state's open-coded
//! iterators ([`super::State::iters`]): cloned with every state at a branch and dropped with
//! it, mostly empty or a few entries. The subset of the `BTreeMap` /
//! `BTreeSet` interface the model uses, in the same key order (`Debug` prints a map as
//! `BTreeMap` does).

/// A map ordered by key (see the module documentation).
#[derive(Clone, PartialEq)]
pub struct VecMap<K, V>(Vec<(K, V)>);

impl<K: std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for VecMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.0.iter().map(|(k, v)| (k, v))).finish()
    }
}

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap(Vec::new())
    }
}

impl<K: Ord, V> VecMap<K, V> {
    /// Where `k` is, or where it would go.
    fn find(&self, k: &K) -> Result<usize, usize> {
        self.0.binary_search_by(|(x, _)| x.cmp(k))
    }
    /// Sets `k` to `v`, returning the value it replaced.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.find(&k) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, v)),
            Err(i) => {
                self.0.insert(i, (k, v));
                None
            }
        }
    }
    /// The value of `k`.
    pub fn get(&self, k: &K) -> Option<&V> {
        self.find(k).ok().map(|i| &self.0[i].1)
    }
    /// Whether `k` has a value.
    pub fn contains_key(&self, k: &K) -> bool {
        self.find(k).is_ok()
    }
    /// How many keys have a value.
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether no key has a value.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The keys and values in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }
    /// The keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }
    /// The values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }
    /// The values in key order, to change.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.0.iter_mut().map(|(_, v)| v)
    }
    /// Removes `k`, returning its value.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.find(k).ok().map(|i| self.0.remove(i).1)
    }
    /// `BTreeMap::entry(k).or_default()`: the value of `k`, a default one inserted first if none.
    pub fn entry_or_default(&mut self, k: K) -> &mut V
    where
        V: Default,
    {
        let i = match self.find(&k) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (k, V::default()));
                i
            }
        };
        &mut self.0[i].1
    }
}

/// A set ordered by value (see the module documentation).
#[derive(Clone, Debug)]
pub(crate) struct VecSet<K>(Vec<K>);

impl<K> Default for VecSet<K> {
    fn default() -> Self {
        VecSet(Vec::new())
    }
}

impl<K: Ord> VecSet<K> {
    /// Adds `k`; false if it was there.
    pub fn insert(&mut self, k: K) -> bool {
        match self.0.binary_search(&k) {
            Ok(_) => false,
            Err(i) => {
                self.0.insert(i, k);
                true
            }
        }
    }
    /// Whether `k` is in the set.
    pub fn contains(&self, k: &K) -> bool {
        self.0.binary_search(k).is_ok()
    }
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The values in ascending order.
    pub fn iter(&self) -> std::slice::Iter<'_, K> {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_keeps_btreemap_semantics() {
        let mut m = VecMap::default();
        let mut b = std::collections::BTreeMap::new();
        for (k, v) in [(5, 'a'), (1, 'b'), (9, 'c'), (5, 'd'), (3, 'e')] {
            assert_eq!(m.insert(k, v), b.insert(k, v));
        }
        for k in 0..11 {
            assert_eq!(m.get(&k), b.get(&k));
        }
        assert_eq!(m.remove(&9), b.remove(&9));
        assert_eq!(m.remove(&9), None);
        *m.entry_or_default(7) = 'x';
        *b.entry(7).or_default() = 'x';
        assert_eq!(*m.entry_or_default(1), 'b');
        assert_eq!(format!("{m:?}"), format!("{b:?}"));
        assert!(m.contains_key(&3) && !m.contains_key(&9));
        assert_eq!(m.len(), b.len());
        m.values_mut().for_each(|v| *v = 'z');
        assert!(!m.is_empty() && m.0.iter().all(|(_, v)| *v == 'z'));
        assert!(m.keys().copied().eq(b.keys().copied()));
        assert!(m.iter().map(|(k, _)| *k).eq(b.into_keys()));
        assert!(m.values().all(|v| *v == 'z'));
    }

    #[test]
    fn set_keeps_btreeset_order() {
        let mut s = VecSet::default();
        assert!(s.is_empty());
        assert!(s.insert((3, true)));
        assert!(s.insert((1, false)));
        assert!(!s.insert((3, true)));
        assert!(s.insert((3, false)));
        assert!(s.contains(&(3, false)) && !s.contains(&(2, false)));
        let order: Vec<_> = s.iter().rev().copied().collect();
        assert_eq!(order, [(3, true), (3, false), (1, false)]);
    }
}
