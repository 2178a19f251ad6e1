//! Fault kinds, the seeded schedule that arms them, and the counters of
//! what was actually injected.
//!
//! A schedule is a list of `(time, kind)` entries drawn from a seed. When
//! an entry's time comes, one fault of that kind is *armed*; the proxy (or
//! the PostgreSQL-side injector) *injects* it at the next opportunity — the
//! next append reply for a lost acknowledgement, the next append execution
//! for a mid-transaction reset, and so on — and counts it. A kind that was
//! scheduled but never injected is reported, and fails a chaos run: a fault
//! that never happened proves nothing.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Every fault the chaos suite can inject or provoke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// A response held back for tens of milliseconds (latency spike).
    Latency,
    /// Every response delayed by a small random jitter (continuous).
    Jitter,
    /// A response forwarded a few bytes at a time with pauses (slow reads).
    SlowRead,
    /// The connection reset (RST) at a random message, either direction.
    Reset,
    /// The connection reset while an append runs inside its (implicit)
    /// transaction: the statement was executed, its Sync never sent.
    ResetMidTransaction,
    /// The connection reset after the server answered a *successful*
    /// append (or COMMIT) and before the answer reached the client: the
    /// real lost acknowledgement. The command committed; the client cannot
    /// know.
    LostAck,
    /// Forwarding stops in both directions without closing (half-open
    /// connection); the proxy closes it after a bounded hold.
    HalfOpen,
    /// `pg_terminate_backend` on a random session of the proxied pools.
    TerminateBackend,
    /// A side connection holds a hot stream's head row locked, so appends
    /// queue behind it (the cause of the two timeouts below).
    LockHold,
    /// An operation failed with `lock_timeout` (SQLSTATE 55P03), observed.
    LockTimeout,
    /// An operation failed with `statement_timeout` (SQLSTATE 57014), observed.
    StatementTimeout,
    /// A side task checks out every connection of the small pool and holds
    /// them (pool exhaustion).
    PoolSqueeze,
    /// An operation failed because no pooled connection came free in time,
    /// observed.
    PoolTimeout,
    /// A client abandoned an execution mid-flight (its future dropped, as a
    /// crashing process would) and later re-executed the command with the
    /// same command id.
    ClientCrash,
    /// The private server killed (`pg_ctl stop -m immediate`) and started
    /// again: every connection cut, WAL recovery on start. Only in runs
    /// given a [`PrivatePostgres`](crate::private_postgres::PrivatePostgres).
    ServerCrash,
    /// The private server shut down cleanly and started again.
    ServerRestart,
}

impl FaultKind {
    /// Every kind, in report order.
    pub const ALL: [FaultKind; 16] = [
        FaultKind::Latency,
        FaultKind::Jitter,
        FaultKind::SlowRead,
        FaultKind::Reset,
        FaultKind::ResetMidTransaction,
        FaultKind::LostAck,
        FaultKind::HalfOpen,
        FaultKind::TerminateBackend,
        FaultKind::LockHold,
        FaultKind::LockTimeout,
        FaultKind::StatementTimeout,
        FaultKind::PoolSqueeze,
        FaultKind::PoolTimeout,
        FaultKind::ClientCrash,
        FaultKind::ServerCrash,
        FaultKind::ServerRestart,
    ];

    /// Kinds the proxy injects (armed by the schedule).
    pub const PROXY: [FaultKind; 6] = [
        FaultKind::Latency,
        FaultKind::SlowRead,
        FaultKind::Reset,
        FaultKind::ResetMidTransaction,
        FaultKind::LostAck,
        FaultKind::HalfOpen,
    ];

    /// Kinds that are consequences observed in the errors the store
    /// returned, not injected directly; they still must happen.
    pub const OBSERVED: [FaultKind; 3] = [
        FaultKind::LockTimeout,
        FaultKind::StatementTimeout,
        FaultKind::PoolTimeout,
    ];

    fn index(self) -> usize {
        FaultKind::ALL.iter().position(|k| *k == self).unwrap_or(0)
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Latency => "latency-spike",
            FaultKind::Jitter => "jitter",
            FaultKind::SlowRead => "slow-read",
            FaultKind::Reset => "reset",
            FaultKind::ResetMidTransaction => "reset-mid-transaction",
            FaultKind::LostAck => "lost-ack (reset after commit, before reply)",
            FaultKind::HalfOpen => "half-open",
            FaultKind::TerminateBackend => "pg_terminate_backend",
            FaultKind::LockHold => "lock-hold (side connection)",
            FaultKind::LockTimeout => "lock_timeout hit",
            FaultKind::StatementTimeout => "statement_timeout hit",
            FaultKind::PoolSqueeze => "pool-squeeze",
            FaultKind::PoolTimeout => "pool exhausted (acquire timed out)",
            FaultKind::ClientCrash => "client crash mid-command (then re-executed)",
            FaultKind::ServerCrash => "server crash (pg_ctl stop -m immediate, WAL recovery on start)",
            FaultKind::ServerRestart => "server restart (pg_ctl stop -m fast, start)",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Per kind: how many were armed and how many injected. Shared by the proxy,
/// the PostgreSQL-side injector and the recording store.
///
/// ```
/// use eventcore_chaos::faults::{FaultCounters, FaultKind};
/// let counters = FaultCounters::default();
/// counters.arm(FaultKind::LostAck);
/// assert!(counters.take_armed(FaultKind::LostAck));
/// assert!(!counters.take_armed(FaultKind::LostAck));
/// counters.injected(FaultKind::LostAck);
/// assert_eq!(counters.snapshot().injected(FaultKind::LostAck), 1);
/// ```
#[derive(Debug, Default)]
pub struct FaultCounters {
    armed: [AtomicU64; FaultKind::ALL.len()],
    scheduled: [AtomicU64; FaultKind::ALL.len()],
    injected: [AtomicU64; FaultKind::ALL.len()],
}

impl FaultCounters {
    /// Arms one fault of `kind` (and counts it as scheduled).
    pub fn arm(&self, kind: FaultKind) {
        self.scheduled[kind.index()].fetch_add(1, Ordering::SeqCst);
        self.armed[kind.index()].fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a fault as scheduled without arming one (continuous kinds and
    /// side-connection faults that are injected where they are scheduled).
    pub fn schedule(&self, kind: FaultKind) {
        self.scheduled[kind.index()].fetch_add(1, Ordering::SeqCst);
    }

    /// Takes one armed fault of `kind`, if any: the caller must then inject
    /// it (and call [`injected`](FaultCounters::injected)).
    pub fn take_armed(&self, kind: FaultKind) -> bool {
        self.armed[kind.index()]
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Whether a fault of `kind` is armed (without taking it).
    pub fn is_armed(&self, kind: FaultKind) -> bool {
        self.armed[kind.index()].load(Ordering::SeqCst) > 0
    }

    /// Puts back a fault taken with [`take_armed`](FaultCounters::take_armed)
    /// that could not be injected after all.
    pub fn rearm(&self, kind: FaultKind) {
        self.armed[kind.index()].fetch_add(1, Ordering::SeqCst);
    }

    /// Drops every armed fault (the schedule is over; the run heals).
    pub fn disarm_all(&self) {
        for armed in &self.armed {
            armed.store(0, Ordering::SeqCst);
        }
    }

    /// Counts one injected (or observed) fault.
    pub fn injected(&self, kind: FaultKind) {
        self.injected[kind.index()].fetch_add(1, Ordering::SeqCst);
    }

    /// The counts now.
    pub fn snapshot(&self) -> FaultReport {
        let mut counts = BTreeMap::new();
        for kind in FaultKind::ALL {
            let i = kind.index();
            counts.insert(
                kind,
                (
                    self.scheduled[i].load(Ordering::SeqCst),
                    self.injected[i].load(Ordering::SeqCst),
                ),
            );
        }
        FaultReport { counts }
    }
}

/// Scheduled and injected counts per kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultReport {
    counts: BTreeMap<FaultKind, (u64, u64)>,
}

impl FaultReport {
    /// How many faults of `kind` were scheduled.
    pub fn scheduled(&self, kind: FaultKind) -> u64 {
        self.counts.get(&kind).map_or(0, |c| c.0)
    }

    /// How many faults of `kind` were injected (or, for observed kinds,
    /// seen).
    pub fn injected(&self, kind: FaultKind) -> u64 {
        self.counts.get(&kind).map_or(0, |c| c.1)
    }

    /// Kinds that were scheduled (or are required) but never injected.
    pub fn missing(&self, required: &[FaultKind]) -> Vec<FaultKind> {
        FaultKind::ALL
            .into_iter()
            .filter(|k| (self.scheduled(*k) > 0 || required.contains(k)) && self.injected(*k) == 0)
            .collect()
    }
}

impl fmt::Display for FaultReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<46} {:>9} {:>9}", "fault kind", "scheduled", "injected")?;
        for kind in FaultKind::ALL {
            writeln!(
                f,
                "{:<46} {:>9} {:>9}",
                kind.name(),
                self.scheduled(kind),
                self.injected(kind)
            )?;
        }
        Ok(())
    }
}

/// One entry of a schedule: arm `kind` at `at` after the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheduled {
    /// When, from the start of the fault phase.
    pub at: Duration,
    /// What.
    pub kind: FaultKind,
}

/// How many faults of each kind a schedule holds, per minute of fault phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultMix {
    /// Per kind, faults per minute (at least one of each listed kind is
    /// scheduled, however short the phase).
    pub per_minute: Vec<(FaultKind, u32)>,
    /// Percentage of workload commands whose client crashes mid-flight.
    pub crash_percent: u64,
}

impl FaultMix {
    /// The same mix with every rate multiplied by `factor` (a soak's
    /// "intensity").
    ///
    /// ```
    /// use eventcore_chaos::faults::FaultMix;
    /// let heavy = FaultMix::default().scaled(3);
    /// assert_eq!(heavy.per_minute[0].1, FaultMix::default().per_minute[0].1 * 3);
    /// ```
    pub fn scaled(&self, factor: u32) -> Self {
        FaultMix {
            per_minute: self
                .per_minute
                .iter()
                .map(|(k, n)| (*k, n.saturating_mul(factor)))
                .collect(),
            crash_percent: (self.crash_percent * u64::from(factor)).min(50),
        }
    }

    /// The same mix plus server crashes and clean restarts per minute (for
    /// a run on a [`PrivatePostgres`](crate::private_postgres::PrivatePostgres)).
    ///
    /// ```
    /// use eventcore_chaos::faults::{FaultKind, FaultMix};
    /// let mix = FaultMix::default().with_server_faults(6, 2);
    /// assert!(mix.per_minute.contains(&(FaultKind::ServerCrash, 6)));
    /// ```
    pub fn with_server_faults(mut self, crashes: u32, restarts: u32) -> Self {
        self.per_minute.push((FaultKind::ServerCrash, crashes));
        self.per_minute.push((FaultKind::ServerRestart, restarts));
        self
    }
}

impl Default for FaultMix {
    fn default() -> Self {
        FaultMix {
            per_minute: vec![
                (FaultKind::Latency, 120),
                (FaultKind::SlowRead, 40),
                (FaultKind::Reset, 20),
                (FaultKind::ResetMidTransaction, 15),
                (FaultKind::LostAck, 20),
                (FaultKind::HalfOpen, 6),
                (FaultKind::TerminateBackend, 12),
                (FaultKind::LockHold, 12),
                (FaultKind::PoolSqueeze, 6),
            ],
            crash_percent: 3,
        }
    }
}

/// A seeded fault schedule over a fault phase of a given length.
///
/// ```
/// use eventcore_chaos::faults::{FaultMix, FaultSchedule};
/// use std::time::Duration;
/// let a = FaultSchedule::generate(7, Duration::from_secs(30), &FaultMix::default());
/// let b = FaultSchedule::generate(7, Duration::from_secs(30), &FaultMix::default());
/// assert_eq!(a, b, "the same seed gives the same schedule");
/// assert!(a.entries.windows(2).all(|w| w[0].at <= w[1].at));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSchedule {
    /// The seed it was drawn from.
    pub seed: u64,
    /// Entries in time order.
    pub entries: Vec<Scheduled>,
}

impl FaultSchedule {
    /// Draws a schedule: per kind, `per_minute * phase` entries (at least
    /// one) at uniformly random times within the phase.
    pub fn generate(seed: u64, phase: Duration, mix: &FaultMix) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let millis = u64::try_from(phase.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut entries = Vec::new();
        for &(kind, per_minute) in &mix.per_minute {
            let count = (u64::from(per_minute) * millis / 60_000).max(1);
            for _ in 0..count {
                entries.push(Scheduled {
                    at: Duration::from_millis(rng.next_u64() % millis),
                    kind,
                });
            }
        }
        entries.sort_by_key(|e| (e.at, e.kind));
        FaultSchedule { seed, entries }
    }

    /// How many entries of `kind`.
    pub fn count(&self, kind: FaultKind) -> usize {
        self.entries.iter().filter(|e| e.kind == kind).count()
    }
}

/// A small seeded random source for fault decisions (ChaCha8).
#[derive(Debug)]
pub struct FaultRng(ChaCha8Rng);

impl FaultRng {
    /// A generator for stream `stream` of `seed` (connections, tasks).
    pub fn new(seed: u64, stream: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(stream);
        FaultRng(rng)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.0.next_u64() % n
        }
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
