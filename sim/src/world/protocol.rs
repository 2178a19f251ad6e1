//! Judges every finished execution against its own policy and the store's
//! true history ([`Invariant::Protocol`]).
//!
//! The history checker only asks whether what an execution claimed is true
//! of the store ("nothing was written", "committed at these positions").
//! That lets a machine that gives up too early, retries a refusal, or
//! refuses on a stale state pass, as long as it never lies about writes.
//! These checks judge the decision itself:
//!
//! - attempts stay within the policy, and every attempt after the first
//!   has a cause the machine counted (a conflict, a transient error, an
//!   unknown outcome) — so nothing is retried after a domain refusal;
//! - discovery stays within the policy's limit (a discovery-limit refusal
//!   counts the round it refused, nothing else goes past the limit), and no
//!   request leaves an execution at or after its deadline (checked when
//!   `client.rs` sends it);
//! - no error that the honest in-memory store cannot cause (a contract
//!   violation, a permanent store error, an undecodable event);
//! - a refusal or an empty decision is a verdict no append ever checks, so
//!   it must rest on a state at least as new as the store was when the
//!   execution started, and deciding again — a fresh machine, no cache,
//!   the store's committed events up to the versions the verdict rested on
//!   — must give the same verdict;
//! - a discovery-limit refusal is re-decided with a higher limit and must
//!   really need more rounds than the limit allowed.

use super::World;
use crate::actors::{ExecId, Running};
use crate::check::Invariant;
use crate::exec::{Settled, SimStep};
use crate::history::ExecutionOutcome;
use eventcore::{ExecutionContext, GlobalPosition, ReadRequest, StreamId, StreamVersion};
use std::collections::BTreeMap;

/// Error kinds (see `exec::error_kind`) the simulator's store cannot cause
/// when it is honest: they mean the machine misread a correct response, or
/// a canary store lied.
const DISHONEST_STORE_ONLY: [&str; 3] = ["contract_violation", "store", "decode"];

/// How many more discovery rounds a re-decision of a discovery-limit
/// refusal may take before it is judged to loop.
const EXTRA_DISCOVERY_ROUNDS: u32 = 64;

/// A re-decision that takes more steps than this is stuck.
const REDECIDE_STEPS: usize = 10_000;

impl World {
    /// Runs every protocol check on an execution that just ended.
    pub(super) fn judge_execution(
        &mut self,
        exec: ExecId,
        running: &Running,
        settled: &Settled,
        started_after: GlobalPosition,
    ) {
        let label = self.commands[running.command].job.label().to_owned();
        let who = format!("x{exec} ({label})");
        let max_attempts = running.policy.retry.max_attempts.max(1);
        if settled.attempts > max_attempts {
            self.violation(
                Invariant::Protocol,
                format!(
                    "{who} used {} attempts; its policy allows {max_attempts}",
                    settled.attempts
                ),
            );
        }
        let stats = &settled.stats;
        // Discovery terminates: a refusal for the limit counts the round it
        // refused, so it may show one round over the limit; nothing else may.
        let limit = running.policy.discovery_limit;
        let refused_at_limit = settled.error_kind == Some("discovery_limit");
        if stats.discovery_rounds > limit.saturating_add(u32::from(refused_at_limit)) {
            self.violation(
                Invariant::Protocol,
                format!(
                    "{who} ran {} discovery rounds; its policy allows {limit}",
                    stats.discovery_rounds
                ),
            );
        }
        let causes = stats.conflicts + stats.transient_errors + stats.unknown_outcomes;
        if settled.attempts.saturating_sub(1) > causes {
            self.violation(
                Invariant::Protocol,
                format!(
                    "{who} made {} attempts but met only {causes} causes to retry \
                     ({} conflicts, {} transient errors, {} unknown outcomes): it retried without one",
                    settled.attempts, stats.conflicts, stats.transient_errors, stats.unknown_outcomes
                ),
            );
        }
        if let Some(kind) = settled.error_kind.filter(|k| DISHONEST_STORE_ONLY.contains(k)) {
            let honest = self.store.canary().is_none();
            if honest {
                self.violation(
                    Invariant::Protocol,
                    format!(
                        "{who} ended in a `{kind}` error, which the honest simulated store cannot cause: {}",
                        describe_outcome(&settled.outcome)
                    ),
                );
            }
        }
        if settled.error_kind == Some("stream_deleted") {
            // Not a decision on the state read but the store's refusal of a
            // write to an ended stream: judged against the store instead.
            self.check_stream_deleted(&who, running, settled);
            return;
        }
        let verdict = matches!(
            settled.outcome,
            ExecutionOutcome::Refused { .. } | ExecutionOutcome::NothingToDo
        );
        if verdict && self.store.canary().is_none() {
            self.coverage.hit("verdict_redecided");
            self.check_verdict_fresh(&who, settled, started_after);
            self.redecide(&who, running, settled);
        }
    }

    /// A command refused for writing a deleted stream did write one: some
    /// stream its last append wrote is ended in the store.
    fn check_stream_deleted(&mut self, who: &str, running: &Running, settled: &Settled) {
        let record = &self.commands[running.command].executions[running.execution];
        let wrote_deleted = record.attempts.last().is_some_and(|attempt| {
            attempt
                .streams
                .iter()
                .any(|s| !s.events.is_empty() && self.store.data().deleted_at(&s.stream).is_some())
        });
        if !wrote_deleted {
            self.violation(
                Invariant::Protocol,
                format!(
                    "{who} ended with {} but its last append wrote no deleted stream",
                    describe_outcome(&settled.outcome)
                ),
            );
        }
    }

    /// A verdict rests on every stream at a version no older than the
    /// stream's head when the execution started: anything else decided on a
    /// cache or snapshot that no read confirmed.
    fn check_verdict_fresh(&mut self, who: &str, settled: &Settled, started_after: GlobalPosition) {
        for (stream, version) in &settled.decided_at {
            let head_at_start = self.head_at(stream, started_after);
            if *version < head_at_start {
                self.violation(
                    Invariant::Protocol,
                    format!(
                        "{who} gave the verdict {} on `{stream}` at version {version}, \
                         but version {head_at_start} had committed before it started",
                        describe_outcome(&settled.outcome)
                    ),
                );
            }
        }
    }

    /// The version of `stream` once every event at or below `position` is in.
    fn head_at(&self, stream: &StreamId, position: GlobalPosition) -> StreamVersion {
        let read = self.store.data().read(&ReadRequest::new([stream.clone()]));
        let count = read.ok().and_then(|r| r.streams.into_iter().next()).map_or(0, |slice| {
            slice.events.iter().filter(|e| e.position <= position).count()
        });
        StreamVersion::new(count as u64)
    }

    /// Decides the command again on a fresh machine fed the store's
    /// committed events up to the versions the verdict rested on.
    fn redecide(&mut self, who: &str, running: &Running, settled: &Settled) {
        let pinned: BTreeMap<StreamId, StreamVersion> = settled.decided_at.iter().cloned().collect();
        let discovery_limit = settled.error_kind == Some("discovery_limit");
        let mut policy = running.policy.clone();
        policy.timeout = None;
        if discovery_limit {
            policy.discovery_limit = policy.discovery_limit.saturating_add(EXTRA_DISCOVERY_ROUNDS);
        }
        let entry = &self.commands[running.command];
        let context = ExecutionContext::new(entry.command_id);
        let now = self.now();
        let (mut machine, _probe) = entry.job.start_probed(policy, context, now, 0);
        let mut disagreement = None;
        // Deciding again encodes what it decides, as the execution did:
        // with every key there is (forgotten subjects marked).
        let ring = self.vault.full_ring();
        let _scope = eventcore_shred::Scope::execute(&ring, self.vault.nonces());
        for _ in 0..REDECIDE_STEPS {
            match machine.poll() {
                SimStep::Read(sent) => {
                    let mut response = match self.store.data().read(&sent.request) {
                        Ok(response) => response,
                        Err(error) => {
                            disagreement = Some(format!("the honest store refused its read: {error}"));
                            break;
                        }
                    };
                    for slice in &mut response.streams {
                        match pinned.get(&slice.stream) {
                            Some(&version) => {
                                slice.events.retain(|e| e.version <= version);
                                slice.head = slice.head.min(version);
                            }
                            // Past the limit, the streams the original never
                            // read are taken as they are now: only the
                            // number of rounds is judged.
                            None if discovery_limit => {}
                            None => {
                                disagreement = Some(format!(
                                    "deciding again asked for `{}`, a stream the verdict never read",
                                    slice.stream
                                ));
                            }
                        }
                    }
                    if disagreement.is_some() {
                        break;
                    }
                    machine.on_read(sent.id, Ok(response), now);
                }
                SimStep::Append(sent) if !discovery_limit => {
                    let streams: Vec<String> = sent
                        .streams
                        .iter()
                        .map(|s| format!("{}+{}", s.stream, s.events.len()))
                        .collect();
                    disagreement = Some(format!(
                        "deciding again on the full fold at the same versions appends [{}]",
                        streams.join(" ")
                    ));
                    break;
                }
                SimStep::Append(_) | SimStep::Finished => break,
                SimStep::Wait(until) => {
                    disagreement = Some(format!("deciding again on an answering store waited until {until}"));
                    break;
                }
                SimStep::Done(again) if discovery_limit => {
                    let limit = running.policy.discovery_limit;
                    if again.stats.discovery_rounds <= limit {
                        disagreement = Some(format!(
                            "it hit the discovery limit of {limit}, but deciding again needed only {} rounds ({})",
                            again.stats.discovery_rounds,
                            describe_outcome(&again.outcome)
                        ));
                    }
                    break;
                }
                SimStep::Done(again) => {
                    if again.outcome != settled.outcome {
                        disagreement = Some(format!(
                            "deciding again on the full fold at the same versions gives {}",
                            describe_outcome(&again.outcome)
                        ));
                    }
                    break;
                }
            }
        }
        if let Some(detail) = disagreement {
            let at: Vec<String> = settled.decided_at.iter().map(|(s, v)| format!("{s}@{v}")).collect();
            self.violation(
                Invariant::Protocol,
                format!(
                    "{who} gave the verdict {} at [{}]; {detail}",
                    describe_outcome(&settled.outcome),
                    at.join(" ")
                ),
            );
        }
    }
}

fn describe_outcome(outcome: &ExecutionOutcome) -> String {
    match outcome {
        ExecutionOutcome::Refused { reason } => format!("\"refused: {reason}\""),
        ExecutionOutcome::NothingToDo => "\"nothing to do\"".to_owned(),
        ExecutionOutcome::GaveUp { reason } => format!("\"gave up: {reason}\""),
        ExecutionOutcome::Unknown { reason } => format!("\"unknown: {reason}\""),
        ExecutionOutcome::Acknowledged(_) => "\"committed\"".to_owned(),
        ExecutionOutcome::Crashed => "\"crashed\"".to_owned(),
        ExecutionOutcome::Running => "\"running\"".to_owned(),
    }
}
