//! Seeded randomness: one `u64` seed, several independent ChaCha streams.
//!
//! Each concern draws from its own stream so that changing how often one of
//! them draws (say, a new fault kind) does not shift the numbers another one
//! sees: the workload of seed N stays the same whatever the fault menu.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// Which independent stream of randomness a draw belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// What the clients ask for: the domain's own parameters and every
    /// command it issues (handed to [`Domain`](crate::Domain) as its `rng`).
    Workload,
    /// The run's shape: how many clients, how many commands each keeps in
    /// flight, how many each issues. A stream of its own, so that a domain
    /// drawing differently does not change the shape of the run.
    Shape,
    /// Tie-breaks and seeds handed to command machines.
    Scheduler,
    /// Which faults are enabled, their weights, and every fault decision.
    Faults,
    /// Network latency of requests and responses.
    Network,
    /// How many subscribers there are and how they are configured.
    Subscribers,
    /// Whether the store groups appends into batches, and the batch window.
    /// A stream of its own, so that runs without batching draw exactly what
    /// they drew before batching existed.
    Batching,
    /// Which subscriptions coordinate their instances through a lease, how
    /// many instances compete and how the lease is timed. A stream of its
    /// own, so that subscribers without a lease draw what they drew before.
    Leases,
    /// How a user domain's projections are subscribed: batch size, poll
    /// interval, lease. A stream of its own, so that a domain without
    /// projections draws what it drew before.
    Projections,
    /// Every decision about lease traffic during a run: latency, lost and
    /// failed lease requests, paused holders, slow renewals, and the
    /// tie-breaks of lease messages.
    LeaseFaults,
    /// Whether a subscriber crashes inside its own window — after a fetch
    /// went out, while a batch is being handled, or while its checkpoint
    /// is being saved. A stream of its own, so that runs without
    /// subscriber crashes draw what they drew before.
    SubscriberWindow,
    /// Personal data: when subjects are forgotten, which, the bytes of the
    /// subjects' keys and the seed of the nonces that seal their data. A
    /// stream of its own, so that the other streams draw what they drew
    /// before personal data was modelled.
    Lifecycle,
    /// When subjects are forgotten and which: the schedule of forgets.
    Forgets,
}

impl Purpose {
    fn stream(self) -> u64 {
        match self {
            Purpose::Workload => 1,
            Purpose::Scheduler => 2,
            Purpose::Faults => 3,
            Purpose::Network => 4,
            Purpose::Subscribers => 5,
            Purpose::Batching => 6,
            Purpose::Leases => 8,
            Purpose::LeaseFaults => 9,
            // 7 was the built-in workload's views stream, before the
            // built-ins became a `Domain` drawing from `Workload` alone.
            Purpose::Shape => 10,
            Purpose::Projections => 11,
            Purpose::SubscriberWindow => 12,
            Purpose::Lifecycle => 13,
            Purpose::Forgets => 14,
        }
    }
}

/// A deterministic random number generator for one [`Purpose`].
///
/// ```
/// use eventcore_sim::rng::{Purpose, SimRng};
/// let mut a = SimRng::new(7, Purpose::Workload);
/// let mut b = SimRng::new(7, Purpose::Workload);
/// assert_eq!(a.below(1_000), b.below(1_000));
/// ```
#[derive(Clone, Debug)]
pub struct SimRng(ChaCha8Rng);

impl SimRng {
    /// The stream `purpose` of `seed`.
    pub fn new(seed: u64, purpose: Purpose) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(purpose.stream());
        SimRng(rng)
    }

    /// A raw 64-bit draw.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (`0` when `n == 0`). Uses rejection so that small
    /// biases cannot hide a rare branch.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.0.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        per_mille > 0 && self.below(1_000) < u64::from(per_mille)
    }

    /// An index chosen with the given weights (`None` if all are zero).
    pub fn weighted(&mut self, weights: &[u32]) -> Option<usize> {
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if total == 0 {
            return None;
        }
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < u64::from(w) {
                return Some(i);
            }
            x -= u64::from(w);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_are_independent_streams() {
        let mut w = SimRng::new(1, Purpose::Workload);
        let mut f = SimRng::new(1, Purpose::Faults);
        assert_ne!(w.next_u64(), f.next_u64());
    }

    #[test]
    fn weighted_respects_zero_weights() {
        let mut r = SimRng::new(3, Purpose::Scheduler);
        for _ in 0..100 {
            assert_eq!(r.weighted(&[0, 5, 0]), Some(1));
        }
        assert_eq!(r.weighted(&[0, 0]), None);
    }
}
