//! A small deterministic random number generator, seeded by the driver.
//!
//! The core must not draw randomness of its own, yet backoff needs jitter and
//! event ids need entropy. The driver passes one `u64` seed per execution;
//! everything random inside the machine derives from it, so the simulator
//! replays a run exactly.

/// SplitMix64: tiny, fast, and good enough for jitter and id entropy (it is
/// not used for anything security-related).
#[derive(Clone, Debug)]
pub(crate) struct Entropy(u64);

impl Entropy {
    pub(crate) fn new(seed: u64) -> Self {
        Entropy(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max` (slightly biased for huge `max`, irrelevant for
    /// jitter).
    pub(crate) fn up_to(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        self.next_u64() % (max + 1)
    }

    pub(crate) fn bytes10(&mut self) -> [u8; 10] {
        let a = self.next_u64().to_le_bytes();
        let b = self.next_u64().to_le_bytes();
        [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], b[0], b[1]]
    }
}
