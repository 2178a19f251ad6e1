//! The fault menu and swarm testing: each seed enables a random subset of
//! fault kinds with random rates (drawn from the fault stream), so that over
//! a sweep every combination — including "only this one fault, very often"
//! — gets exercised.

use crate::rng::SimRng;
use eventcore::{ExecutionPolicy, RetryPolicy};
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

/// A named family of fault plans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Latency only: a baseline that must never fail.
    Calm,
    /// Swarm over every fault kind at moderate rates.
    Default,
    /// Swarm with high rates.
    Chaos,
    /// Default faults plus extreme policies every run (no retries, no
    /// backoff, discovery limit 1, page size 1).
    Extreme,
}

impl Profile {
    /// Every profile, for sweeps that rotate through them.
    pub const ALL: [Profile; 4] = [Profile::Calm, Profile::Default, Profile::Chaos, Profile::Extreme];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Calm => "calm",
            Profile::Default => "default",
            Profile::Chaos => "chaos",
            Profile::Extreme => "extreme",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown profile name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown profile `{0}` (expected calm, default, chaos or extreme)")]
pub struct UnknownProfile(pub String);

impl FromStr for Profile {
    type Err = UnknownProfile;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownProfile(s.to_owned()))
    }
}

/// Every fault rate of one run. Rates are per mille per opportunity (per
/// request, per response, per append); counts are per run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultPlan {
    /// One-way network latency bounds, microseconds.
    pub latency_us: (u64, u64),
    /// A message is slow (extra delay up to `slow_max_ms`), which reorders
    /// responses and pushes some past their timeouts.
    pub slow: u32,
    /// Upper bound of a slow message's extra delay, milliseconds.
    pub slow_max_ms: u64,
    /// A response is delivered twice (the copy later, same request id).
    pub duplicate: u32,
    /// A read fails with a transient error.
    pub read_transient: u32,
    /// A read's response never arrives (the machine's read timeout fires).
    pub read_lost: u32,
    /// An append fails before commit with a transient error.
    pub append_fail: u32,
    /// An append commits but its acknowledgement is lost.
    pub lost_ack: u32,
    /// Of the lost acknowledgements, the share answered with
    /// `OutcomeUnknown` (the rest: silence until the machine's deadline).
    pub lost_ack_reports_unknown: u32,
    /// A client crashes between deciding and sending its append.
    pub crash_before_append: u32,
    /// A client crashes after its append committed, before the ack arrives.
    pub crash_after_commit: u32,
    /// Random client crashes during the run.
    pub random_crashes: u32,
    /// A restarted client re-executes its pending commands at once (else
    /// they wait for the liveness phase).
    pub reexecute_on_restart: u32,
    /// Store restarts (in-flight requests dropped, data kept).
    pub store_restarts: u32,
    /// Forward clock jumps.
    pub clock_jumps: u32,
    /// A subscriber's handler fails transiently (the batch is not applied).
    pub handler_fail: u32,
    /// Saving a subscriber checkpoint fails transiently.
    pub checkpoint_fail: u32,
    /// A commit notification is lost (the poll interval must cover it).
    pub notify_lost: u32,
    /// Subscriber crashes (resume from the saved checkpoint).
    pub subscriber_crashes: u32,
    /// A request reaches the store twice (a retransmission).
    pub duplicate_request: u32,
    /// Clients cache the streams they read and prime new executions from
    /// the cache (stale entries must only cost a conflict).
    pub prime_from_cache: bool,
    /// Clients keep a view cache (`eventcore::ViewCache`) and prime fresh
    /// executions of view commands from it.
    pub view_cache: bool,
    /// The view cache's byte bound: tiny on some seeds, so that entries
    /// are evicted.
    pub view_cache_bytes: usize,
    /// View snapshots are saved when due and loaded on a cache miss.
    pub snapshots: bool,
    /// A snapshot load finds nothing although one was saved.
    pub snapshot_missing: u32,
    /// A snapshot load returns an older snapshot than the newest saved.
    pub snapshot_stale: u32,
    /// A loaded snapshot's payload is corrupt (does not decode).
    pub snapshot_corrupt: u32,
    /// A loaded snapshot carries another view version.
    pub snapshot_wrong_version: u32,
    /// A loaded snapshot claims a stream version beyond the stream's head
    /// (planted by a store restored from an older backup, or by a bug).
    pub snapshot_ahead: u32,
    /// A snapshot write is lost.
    pub snapshot_write_lost: u32,
    /// The client restarts between the events' commit and the snapshot
    /// write.
    pub snapshot_crash_before_write: u32,
    /// A view recorded in a client's cache is recorded ahead of the store
    /// (an entry that outlived a store restored from backup, or a bug).
    pub view_cache_ahead: u32,
    /// Group commit: appends reaching the store within this window (from
    /// the first one) are applied as one batch, in arrival order, sharing
    /// the batch's fate for the faults that strike a whole transaction
    /// (failure before commit, lost acknowledgement). 0: every append alone.
    /// Set by [`FaultPlan::with_batching`], not by [`FaultPlan::choose`].
    pub batch_window_us: u64,
    /// The execution policy every command runs under.
    pub policy: ExecutionPolicy,
}

/// The fault kinds that [`FaultPlan::without`] switches off by name (a
/// shrinker tries them one by one).
pub const FAULT_KINDS: &[&str] = &[
    "slow",
    "duplicate",
    "read_transient",
    "read_lost",
    "append_fail",
    "lost_ack",
    "crash_before_append",
    "crash_after_commit",
    "random_crashes",
    "store_restarts",
    "clock_jumps",
    "handler_fail",
    "checkpoint_fail",
    "notify_lost",
    "subscriber_crashes",
    "duplicate_request",
    "prime_from_cache",
    "snapshot_faults",
    "batching",
];

impl FaultPlan {
    /// True when fault kind `kind` (one of [`FAULT_KINDS`]) can strike in
    /// this plan.
    ///
    /// ```
    /// use eventcore::ExecutionPolicy;
    /// use eventcore_sim::FaultPlan;
    /// let mut plan = FaultPlan::healed(ExecutionPolicy::default());
    /// assert!(!plan.has("read_lost"));
    /// plan.read_lost = 30;
    /// assert!(plan.has("read_lost"));
    /// assert!(!plan.without("read_lost").has("read_lost"));
    /// ```
    pub fn has(&self, kind: &str) -> bool {
        self.clone().without(kind) != *self
    }

    /// This plan with fault kind `kind` (one of [`FAULT_KINDS`]) switched
    /// off; an unknown name changes nothing.
    pub fn without(mut self, kind: &str) -> Self {
        match kind {
            "slow" => self.slow = 0,
            "duplicate" => self.duplicate = 0,
            "read_transient" => self.read_transient = 0,
            "read_lost" => self.read_lost = 0,
            "append_fail" => self.append_fail = 0,
            "lost_ack" => self.lost_ack = 0,
            "crash_before_append" => self.crash_before_append = 0,
            "crash_after_commit" => self.crash_after_commit = 0,
            "random_crashes" => self.random_crashes = 0,
            "store_restarts" => self.store_restarts = 0,
            "clock_jumps" => self.clock_jumps = 0,
            "handler_fail" => self.handler_fail = 0,
            "checkpoint_fail" => self.checkpoint_fail = 0,
            "notify_lost" => self.notify_lost = 0,
            "subscriber_crashes" => self.subscriber_crashes = 0,
            "duplicate_request" => self.duplicate_request = 0,
            "prime_from_cache" => self.prime_from_cache = false,
            "snapshot_faults" => {
                self.snapshot_missing = 0;
                self.snapshot_stale = 0;
                self.snapshot_corrupt = 0;
                self.snapshot_wrong_version = 0;
                self.snapshot_ahead = 0;
                self.snapshot_write_lost = 0;
                self.snapshot_crash_before_write = 0;
                self.view_cache_ahead = 0;
            }
            "batching" => self.batch_window_us = 0,
            _ => {}
        }
        self
    }

    /// No faults at all, short latency: what the liveness phase runs under.
    pub fn healed(policy: ExecutionPolicy) -> Self {
        FaultPlan {
            latency_us: (50, 500),
            slow: 0,
            slow_max_ms: 0,
            duplicate: 0,
            read_transient: 0,
            read_lost: 0,
            append_fail: 0,
            lost_ack: 0,
            lost_ack_reports_unknown: 0,
            crash_before_append: 0,
            crash_after_commit: 0,
            random_crashes: 0,
            reexecute_on_restart: 0,
            store_restarts: 0,
            clock_jumps: 0,
            handler_fail: 0,
            checkpoint_fail: 0,
            notify_lost: 0,
            subscriber_crashes: 0,
            duplicate_request: 0,
            prime_from_cache: false,
            view_cache: true,
            view_cache_bytes: 1 << 20,
            snapshots: true,
            snapshot_missing: 0,
            snapshot_stale: 0,
            snapshot_corrupt: 0,
            snapshot_wrong_version: 0,
            snapshot_ahead: 0,
            snapshot_write_lost: 0,
            snapshot_crash_before_write: 0,
            view_cache_ahead: 0,
            batch_window_us: 0,
            policy,
        }
    }

    /// Turns group commit on for about a third of the runs of a faulty
    /// profile, with a window drawn from `rng` (the batching stream, so that
    /// every other draw of the run is unchanged when it stays off).
    pub fn with_batching(mut self, profile: Profile, rng: &mut SimRng) -> Self {
        let on = rng.chance(350);
        let window = rng.between(100, 5_000);
        if on && profile != Profile::Calm {
            self.batch_window_us = window;
        }
        self
    }

    /// Draws a plan for `profile` from the fault stream.
    pub fn choose(profile: Profile, rng: &mut SimRng) -> Self {
        let policy = choose_policy(profile, rng);
        let low = rng.between(20, 2_000);
        let mut plan = FaultPlan {
            latency_us: (low, low + rng.between(0, 20_000)),
            ..FaultPlan::healed(policy)
        };
        let (enable, max) = match profile {
            Profile::Calm => return plan,
            Profile::Default | Profile::Extreme => (500, 150),
            Profile::Chaos => (700, 400),
        };
        // Swarm: each kind is on with probability `enable`‰, at a rate up to
        // `max`‰. Draw every kind even when off, so that the rates of the
        // others do not depend on which are enabled.
        let rate = |rng: &mut SimRng, max: u64| {
            let on = rng.chance(enable);
            let r = rng.between(1, max) as u32;
            if on {
                r
            } else {
                0
            }
        };
        plan.slow = rate(rng, max);
        plan.slow_max_ms = rng.between(10, 400);
        plan.duplicate = rate(rng, max);
        plan.read_transient = rate(rng, max);
        plan.read_lost = rate(rng, max / 2);
        plan.append_fail = rate(rng, max);
        plan.lost_ack = rate(rng, max);
        plan.lost_ack_reports_unknown = rng.between(0, 1_000) as u32;
        plan.crash_before_append = rate(rng, max / 3);
        plan.crash_after_commit = rate(rng, max / 3);
        plan.random_crashes = rate(rng, 4);
        plan.reexecute_on_restart = rng.between(0, 1_000) as u32;
        plan.store_restarts = rate(rng, 3);
        plan.clock_jumps = rate(rng, 3);
        // Drawn last, so that adding them left the earlier draws (and the
        // regression seeds that depend on them) unchanged.
        plan.handler_fail = rate(rng, max);
        plan.checkpoint_fail = rate(rng, max);
        plan.notify_lost = rate(rng, 500);
        plan.subscriber_crashes = rate(rng, 8);
        plan.duplicate_request = rate(rng, max);
        plan.prime_from_cache = rng.chance(500);
        // Stream views, drawn after everything else for the same reason.
        plan.view_cache = rng.chance(850);
        let tiny = rng.chance(300);
        let bytes = rng.between(100, 400) as usize;
        if tiny {
            plan.view_cache_bytes = bytes;
        }
        plan.snapshots = rng.chance(750);
        plan.snapshot_missing = rate(rng, max);
        plan.snapshot_stale = rate(rng, max);
        plan.snapshot_corrupt = rate(rng, max);
        plan.snapshot_wrong_version = rate(rng, max);
        plan.snapshot_ahead = rate(rng, max);
        plan.snapshot_write_lost = rate(rng, max);
        plan.snapshot_crash_before_write = rate(rng, max / 4);
        plan.view_cache_ahead = rate(rng, max / 3);
        plan
    }
}

fn choose_policy(profile: Profile, rng: &mut SimRng) -> ExecutionPolicy {
    // Each extreme knob is drawn every time; the profile decides how often
    // it is the extreme value.
    let extreme = match profile {
        Profile::Calm => 0,
        Profile::Default | Profile::Chaos => 150,
        Profile::Extreme => 1_000,
    };
    let no_retries = rng.chance(extreme);
    let no_backoff = rng.chance(extreme);
    let discovery_one = rng.chance(extreme);
    let page_one = rng.chance(extreme);
    let paged = rng.chance(300);
    let page = rng.between(1, 4) as u32;
    let attempts = rng.between(3, 12) as u32;
    let backoff_us = rng.between(100, 5_000);
    ExecutionPolicy {
        retry: RetryPolicy {
            max_attempts: if no_retries { 1 } else { attempts },
            initial_backoff: if no_backoff {
                Duration::ZERO
            } else {
                Duration::from_micros(backoff_us)
            },
            multiplier: 2,
            max_backoff: if no_backoff {
                Duration::ZERO
            } else {
                Duration::from_millis(200)
            },
        },
        discovery_limit: if discovery_one { 1 } else { 8 },
        read_timeout: Duration::from_millis(150),
        append_timeout: Duration::from_millis(150),
        timeout: Some(Duration::from_secs(3)),
        page_size: if page_one {
            NonZeroU32::new(1)
        } else if paged {
            NonZeroU32::new(page)
        } else {
            None
        },
    }
}

impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.policy;
        write!(
            f,
            "latency={}..{}us slow={}‰(≤{}ms) dup={}‰ read_transient={}‰ read_lost={}‰ append_fail={}‰ \
             lost_ack={}‰(unknown {}‰) crash_before_append={}‰ crash_after_commit={}‰ random_crashes={} \
             reexecute_on_restart={}‰ store_restarts={} clock_jumps={} handler_fail={}‰ checkpoint_fail={}‰ \
             notify_lost={}‰ subscriber_crashes={} dup_request={}‰ prime_from_cache={} batch_window={}us \
             view_cache={}({}B, ahead {}‰) snapshots={}(missing {}‰ stale {}‰ corrupt {}‰ wrong_version {}‰ \
             ahead {}‰ write_lost {}‰ crash_before_write {}‰) | policy: attempts={} backoff={:?}..{:?} \
             discovery_limit={} page_size={:?}",
            self.latency_us.0,
            self.latency_us.1,
            self.slow,
            self.slow_max_ms,
            self.duplicate,
            self.read_transient,
            self.read_lost,
            self.append_fail,
            self.lost_ack,
            self.lost_ack_reports_unknown,
            self.crash_before_append,
            self.crash_after_commit,
            self.random_crashes,
            self.reexecute_on_restart,
            self.store_restarts,
            self.clock_jumps,
            self.handler_fail,
            self.checkpoint_fail,
            self.notify_lost,
            self.subscriber_crashes,
            self.duplicate_request,
            self.prime_from_cache,
            self.batch_window_us,
            self.view_cache,
            self.view_cache_bytes,
            self.view_cache_ahead,
            self.snapshots,
            self.snapshot_missing,
            self.snapshot_stale,
            self.snapshot_corrupt,
            self.snapshot_wrong_version,
            self.snapshot_ahead,
            self.snapshot_write_lost,
            self.snapshot_crash_before_write,
            p.retry.max_attempts,
            p.retry.initial_backoff,
            p.retry.max_backoff,
            p.discovery_limit,
            p.page_size.map(NonZeroU32::get),
        )
    }
}
