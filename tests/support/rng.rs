//! The seeded generator of the randomized tests (SplitMix64: small, good enough, the same
//! on every platform), so that a printed seed replays a run's choices exactly.

#![allow(dead_code)]

/// SplitMix64.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)` (0 when `n` is 0), as `u64` or `usize`, whichever `n` is.
    pub fn below<N: Copy + TryInto<u64> + TryFrom<u64>>(&mut self, n: N) -> N {
        let wide: u64 = n.try_into().unwrap_or(u64::MAX);
        N::try_from(self.next() % wide.max(1)).unwrap_or(n)
    }

    /// True `percent` times out of 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100u64) < percent
    }

    /// One of `items`, uniformly.
    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// `STRATA_SEED` when set (to replay a run), else a fresh seed from the clock and the
/// process id. The caller prints it.
pub fn seed_from_env() -> u64 {
    match std::env::var("STRATA_SEED") {
        Ok(s) => s.parse().expect("STRATA_SEED must be a u64"),
        Err(_) => {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
            t.as_nanos() as u64 ^ u64::from(std::process::id()).rotate_left(32)
        }
    }
}
