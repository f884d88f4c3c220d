//! Splitting work over CI shards: `--shard K/N`. A (case, kernel) pair belongs to the shard
//! chosen by a stable hash (FNV-1a 64) of the case id and the kernel name, so adding a case moves
//! no other pair; a fuzz campaign's program indices are split into contiguous ranges. Pure.

use std::fmt;
use std::str::FromStr;

/// Shard `index` (1-based) of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shard {
    /// 1..=count.
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// The whole run: shard 1/1.
    pub const ALL: Shard = Shard { index: 1, count: 1 };

    /// Whether the pair (case `case_id`, kernel `kernel`) belongs to this shard.
    pub fn owns_pair(&self, case_id: &str, kernel: &str) -> bool {
        pair_hash(case_id, kernel) % u64::from(self.count) == u64::from(self.index - 1)
    }

    /// This shard's part of a fuzz campaign of `count` programs from index `start` (one seed):
    /// `(first index, programs)`, contiguous, disjoint from the other shards' and together covering
    /// `start..start + count`. Without a count (a `--duration` campaign) shard K starts at
    /// `start + (K-1) * 2^40`, a range no campaign exhausts.
    pub fn index_range(&self, start: u64, count: Option<u64>) -> (u64, Option<u64>) {
        let (k, n) = (u128::from(self.index - 1), u128::from(self.count));
        match count {
            Some(c) => {
                let at = |i: u128| (i * u128::from(c) / n) as u64;
                (start + at(k), Some(at(k + 1) - at(k)))
            }
            None => (start + ((k as u64) << 40), None),
        }
    }
}

/// FNV-1a 64 of `case_id`, a NUL, then `kernel` (stable across machines and Rust versions).
pub fn pair_hash(case_id: &str, kernel: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in case_id.bytes().chain(std::iter::once(0)).chain(kernel.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A malformed `--shard`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("bad shard {0:?}: want K/N with 1 <= K <= N, e.g. 2/4")]
pub struct ShardError(pub String);

impl FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, ShardError> {
        let bad = || ShardError(s.to_string());
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) =
            (k.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("2/4".parse(), Ok(Shard { index: 2, count: 4 }));
        assert_eq!("1/1".parse::<Shard>().unwrap(), Shard::ALL);
        for bad in ["0/2", "3/2", "1/0", "2", "a/b", "1/2/3", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(Shard { index: 3, count: 5 }.to_string(), "3/5");
    }

    #[test]
    fn every_pair_has_exactly_one_shard_and_the_split_is_stable() {
        let cases: Vec<String> = (0..300).map(|i| format!("case_{i}")).collect();
        let kernels = ["debian:7.2", "debian:7.3", "build:7.2+kf-spin-lock"];
        for n in 1..=5u32 {
            let shards: Vec<Shard> = (1..=n).map(|k| Shard { index: k, count: n }).collect();
            let mut sizes = vec![0usize; n as usize];
            for c in &cases {
                for k in kernels {
                    let owners: Vec<usize> =
                        (0..shards.len()).filter(|&i| shards[i].owns_pair(c, k)).collect();
                    assert_eq!(owners.len(), 1, "{c} on {k} with {n} shards");
                    sizes[owners[0]] += 1;
                }
            }
            // Balanced within a generous margin (hash, not round robin).
            let even = cases.len() * kernels.len() / n as usize;
            assert!(sizes.iter().all(|&s| s * 10 >= even * 7), "{n}: {sizes:?}");
        }
        // A fixed value (FNV-1a 64, computed independently): the split must not change between
        // lockstep versions, so shards of one CI run built from different commits still agree.
        assert_eq!(pair_hash("lock_unlock_ok", "debian:7.2"), 0x3b64_7924_62e9_5100);
    }

    #[test]
    fn fuzz_index_ranges_are_disjoint_and_complete() {
        for (count, n) in [(10u64, 3u32), (1000, 4), (2, 5), (0, 2), (u64::MAX / 2, 7)] {
            let mut next = 5u64;
            for k in 1..=n {
                let (first, c) = Shard { index: k, count: n }.index_range(5, Some(count));
                assert_eq!(first, next, "{count} in {n}: shard {k} starts where {} ended", k - 1);
                next = first + c.unwrap();
            }
            assert_eq!(next, 5 + count);
        }
        assert_eq!(Shard { index: 2, count: 3 }.index_range(0, Some(10)), (3, Some(3)));
        assert_eq!(Shard { index: 3, count: 3 }.index_range(7, None), (7 + (2 << 40), None));
    }
}
