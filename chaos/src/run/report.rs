//! What a run found, and how it is printed.

use crate::faults::{FaultKind, FaultReport};
use crate::record::OutcomeClass;
use eventcore_sim::check::Violation;
use std::collections::BTreeMap;
use std::fmt;

/// What the subscriber (a `read_all` poller through the proxy) saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscriberCheck {
    /// Events delivered.
    pub delivered: usize,
    /// Reads that failed (and were retried), or runner restarts after an
    /// error.
    pub failed_reads: u64,
    /// Events delivered again after a restart (at-least-once; allowed only
    /// after a restart, and only events delivered before).
    pub redelivered: usize,
    /// LISTEN/NOTIFY wake-ups the runner's notifier received.
    pub notifications: u64,
    /// Times the notifier's connection was re-established.
    pub reconnects: u64,
    /// Every discrepancy with the store's final log.
    pub problems: Vec<String>,
}

/// Everything a run found.
#[derive(Clone, Debug)]
pub struct ChaosReport {
    /// The seed.
    pub seed: u64,
    /// Fault counts, scheduled and injected.
    pub faults: FaultReport,
    /// Fault kinds scheduled (or required) but never injected.
    pub missing_faults: Vec<FaultKind>,
    /// Executions per outcome class (re-executions included).
    pub outcomes: BTreeMap<OutcomeClass, u64>,
    /// Commands issued.
    pub commands: usize,
    /// Commands whose outcome was unknown at first and were settled by
    /// re-executing with the same command id.
    pub settled: usize,
    /// Events in the store at the end.
    pub events: usize,
    /// Connections the proxy accepted.
    pub proxy_connections: u64,
    /// The simulator checker's violations.
    pub violations: Vec<Violation>,
    /// The workload's own audit of the final log
    /// ([`ChaosWorkload::audit`](crate::workload::ChaosWorkload::audit); for
    /// the bank, the examples' `Audit`: money, versions, negatives).
    pub audit: Vec<String>,
    /// The polling subscriber's check (plain `read_all` through the proxy).
    pub subscriber: SubscriberCheck,
    /// The subscription runner's check (`eventcore_tokio::Runner` with its
    /// checkpoint in PostgreSQL and LISTEN/NOTIFY wake-ups, all through the
    /// proxy, restarted after errors).
    pub runner: SubscriberCheck,
    /// The exactly-once projection's check (`Runner::projection` with
    /// `PgProjectionStore` and a lease, through the proxy): its ledger
    /// holds every event up to its checkpoint exactly once.
    pub projection: SubscriberCheck,
    /// Acknowledgements that carried a deduplicated receipt: the command
    /// had committed on an earlier send whose answer was lost.
    pub deduplicated_acks: u64,
}

impl ChaosReport {
    /// No violation, every scheduled fault injected, subscriber clean.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
            && self.audit.is_empty()
            && self.missing_faults.is_empty()
            && self.subscriber.problems.is_empty()
            && self.runner.problems.is_empty()
            && self.projection.problems.is_empty()
    }
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "chaos run, seed {}", self.seed)?;
        writeln!(
            f,
            "replay: EVENTCORE_CHAOS_SEED={} and the same test (the bank suite: cargo test -p eventcore-chaos --test chaos -- --nocapture)",
            self.seed
        )?;
        write!(f, "{}", self.faults)?;
        if !self.missing_faults.is_empty() {
            let names: Vec<&str> = self.missing_faults.iter().map(|k| k.name()).collect();
            writeln!(f, "SCHEDULED BUT NEVER INJECTED: {}", names.join(", "))?;
        }
        writeln!(
            f,
            "proxy connections: {}; commands: {}; events: {}; unknown outcomes settled: {}",
            self.proxy_connections, self.commands, self.events, self.settled
        )?;
        for class in OutcomeClass::ALL {
            writeln!(
                f,
                "  {:<24} {}",
                class.name(),
                self.outcomes.get(&class).copied().unwrap_or(0)
            )?;
        }
        writeln!(
            f,
            "invariants (simulator checker: store contract, atomic append, expected versions, idempotency, acknowledged, nothing-written, re-execution, liveness, one lock order (no deadlock), and the workload's domain models): {}",
            if self.violations.is_empty() { "all hold".to_owned() } else { format!("{} VIOLATIONS", self.violations.len()) }
        )?;
        for v in self.violations.iter().take(20) {
            writeln!(f, "  {v}")?;
        }
        writeln!(
            f,
            "workload audit: {}",
            if self.audit.is_empty() {
                "clean".to_owned()
            } else {
                self.audit.join("; ")
            }
        )?;
        writeln!(
            f,
            "  acknowledged with a deduplicated receipt (committed earlier, answer lost): {}",
            self.deduplicated_acks
        )?;
        for (name, check, retried) in [
            ("polling subscriber", &self.subscriber, "failed reads retried"),
            (
                "subscription runner (PostgreSQL checkpoint, LISTEN/NOTIFY wake-ups)",
                &self.runner,
                "restarts after an error",
            ),
        ] {
            writeln!(
                f,
                "{name}: {} events delivered, {} {retried}, {} redelivered after a restart: {}",
                check.delivered,
                check.failed_reads,
                check.redelivered,
                if check.problems.is_empty() {
                    "every event once, in global order".to_owned()
                } else {
                    check.problems.join("; ")
                }
            )?;
        }
        writeln!(
            f,
            "  notifier: {} notifications, {} reconnects",
            self.runner.notifications, self.runner.reconnects
        )?;
        writeln!(
            f,
            "projection (PgProjectionStore, leased, exactly once): {} rows, {} restarts after an error: {}",
            self.projection.delivered,
            self.projection.failed_reads,
            if self.projection.problems.is_empty() {
                "every event up to its checkpoint applied exactly once".to_owned()
            } else {
                self.projection.problems.join("; ")
            }
        )?;
        writeln!(f, "result: {}", if self.passed() { "PASSED" } else { "FAILED" })
    }
}
