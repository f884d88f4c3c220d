//! The tests' small deterministic generator (xorshift64*), shared by the mutation tests
//! (`c_objects.rs`, `input_mutation_fuzz.rs`) through `#[path]`: the same seed must keep giving
//! the same sequence, or the mutation tests stop mutating the bytes they were checked with.

/// xorshift64*: small, deterministic, good enough to pick mutations.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// One element of `v`, which must not be empty.
    #[allow(dead_code)] // used by input_mutation_fuzz.rs, not by c_objects.rs
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

/// The first outputs of both tests' seeds, as the two copies of this generator gave them before
/// they were joined here (c_objects.rs: 0x6c6f_636b_7374_6570; input_mutation_fuzz.rs:
/// 0x5eed_1234_abcd_0001 | 1).
#[test]
fn the_seeds_give_the_same_sequence_as_before() {
    let mut r = Rng(0x6c6f_636b_7374_6570);
    let first: Vec<u64> = (0..4).map(|_| r.next()).collect();
    assert_eq!(first, [0xeffc5206ca266a27, 0x79cc3b39c5ff0400, 0x1fc3f9609690bc1c, 0xe18f9d8b9fb1ab2f]);
    let mut r = Rng(0x5eed_1234_abcd_0001 | 1);
    let first: Vec<u64> = (0..4).map(|_| r.next()).collect();
    assert_eq!(first, [0x726cae5ac1780084, 0x40f6d724e0009173, 0x74d19e308887627c, 0x5de4e2cd48781a21]);
    let (mut a, mut b) = (Rng(0x6c6f_636b_7374_6570), Rng(0x5eed_1234_abcd_0001 | 1));
    assert_eq!([a.below(4), a.below(1000), b.below(10), b.below(3)], [3, 992, 6, 1]);
    assert_eq!(b.below(0), 0);
}
