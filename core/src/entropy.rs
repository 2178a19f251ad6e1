//! A small deterministic random number generator, seeded by the driver.
//!
//! The core must not draw randomness of its own, yet backoff needs jitter and
//! event ids need entropy. The driver passes one `u64` seed per execution;
//! everything random inside the machine derives from it, so the simulator
//! replays a run exactly. Drivers, benches and tests use the same generator
//! (and [`Entropy::mix`] to derive seeds) instead of writing their own.

/// SplitMix64: tiny, fast, and good enough for jitter, seeds and id entropy
/// (it is not used for anything security-related).
///
/// ```
/// use eventcore::Entropy;
/// let (mut a, mut b) = (Entropy::new(7), Entropy::new(7));
/// assert_eq!(a.next_u64(), b.next_u64(), "the same seed, the same sequence");
/// assert!(a.up_to(10) <= 10);
/// assert!(a.below(3) < 3);
/// assert_ne!(Entropy::mix(1), Entropy::mix(2));
/// ```
#[derive(Clone, Debug)]
pub struct Entropy(u64);

impl Entropy {
    /// A generator whose whole sequence is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Entropy(seed)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        finalize(self.0)
    }

    /// A well-mixed function of `value`: the value SplitMix64 seeded with
    /// `value` gives first. Turns counters into independent-looking seeds.
    pub fn mix(value: u64) -> u64 {
        finalize(value.wrapping_add(GOLDEN_GAMMA))
    }

    /// Uniform in `0..=max` (slightly biased for huge `max`, irrelevant for
    /// jitter).
    pub fn up_to(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        self.next_u64() % (max + 1)
    }

    /// Uniform in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        match n {
            0 => 0,
            n => self.next_u64() % n,
        }
    }

    /// Ten bytes of entropy, as a UUIDv7 wants.
    pub fn bytes10(&mut self) -> [u8; 10] {
        let a = self.next_u64().to_le_bytes();
        let b = self.next_u64().to_le_bytes();
        [a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], b[0], b[1]]
    }
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
