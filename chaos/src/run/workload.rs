//! Driving a [`ChaosWorkload`]: its setup, and the clients issuing its
//! commands through the proxied executors, crashing now and then and
//! re-executing every unknown outcome with the same command id; settling
//! what is left after the faults.

use super::{ChaosError, Exec, Shared};
use crate::faults::{FaultKind, FaultRng};
use crate::record::OutcomeClass;
use crate::workload::{ChaosCommand, Execution};
use eventcore::{EventFilter, GlobalPosition, ReadAllRequest, StreamId};
use eventcore_postgres::PostgresStore;
use eventcore_tokio::EventStore;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub(super) async fn setup(shared: &Shared, exec: &Arc<Exec>) -> Result<(), ChaosError> {
    for command in shared.workload.setup() {
        let id = exec.new_command_id();
        let finished = command
            .execute(
                exec.clone(),
                Execution {
                    recorder: shared.recorder.clone(),
                    id,
                    started_after: GlobalPosition::START,
                    healed: false,
                },
            )
            .await;
        if finished.class != OutcomeClass::Acknowledged {
            return Err(ChaosError::SetupCommand {
                label: command.label().to_owned(),
                reason: finished.error.unwrap_or_else(|| "not acknowledged".to_owned()),
            });
        }
    }
    Ok(())
}

/// A command whose outcome is still unknown, with its command id.
pub(super) type Pending = (ChaosCommand, eventcore::CommandId);

pub(super) async fn client(shared: Arc<Shared>, exec: Arc<Exec>, index: u64) -> Vec<Pending> {
    let config = &shared.config;
    let mut rng = FaultRng::new(config.seed, 1_000 + index);
    let mut pending = Vec::new();
    for _ in 0..config.max_commands_per_client {
        if Instant::now() >= shared.stop_at {
            break;
        }
        let command = shared.workload.next(index, &mut rng);
        let id = exec.new_command_id();
        // Now and then the client "crashes": the execution is dropped after
        // a few milliseconds, wherever it is, and re-executed below.
        let crash = (Instant::now() < shared.heal_at && rng.percent(config.mix.crash_percent))
            .then(|| Duration::from_millis(rng.between(1, 40)));
        if crash.is_some() {
            shared.counters.schedule(FaultKind::ClientCrash);
        }
        let mut resolved = match crash {
            Some(after) => {
                match tokio::time::timeout(after, execute(&shared, &exec, &command, id, GlobalPosition::START)).await {
                    Ok(resolved) => resolved,
                    Err(_) => {
                        let healed = Instant::now() >= shared.heal_at;
                        shared
                            .recorder
                            .crashed(id, command.label(), GlobalPosition::START, healed);
                        shared.counters.injected(FaultKind::ClientCrash);
                        false
                    }
                }
            }
            None => execute(&shared, &exec, &command, id, GlobalPosition::START).await,
        };
        // An unresolved command (an unknown outcome, or giving up after
        // one) is re-executed with the same command id: the store answers
        // a commit it already holds with the first receipt.
        for _ in 0..3 {
            if resolved {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            let started_after = settled_position(&shared.direct).await;
            resolved = execute(&shared, &exec, &command, id, started_after).await;
        }
        if !resolved {
            pending.push((command, id));
        }
    }
    pending
}

async fn execute(
    shared: &Shared,
    exec: &Arc<Exec>,
    command: &ChaosCommand,
    id: eventcore::CommandId,
    started_after: GlobalPosition,
) -> bool {
    let execution = Execution {
        recorder: shared.recorder.clone(),
        id,
        started_after,
        healed: Instant::now() >= shared.heal_at,
    };
    command.execute(exec.clone(), execution).await.resolved
}

pub(super) async fn settle(shared: &Shared, exec: &Arc<Exec>, (command, id): Pending) {
    for _ in 0..5 {
        let started_after = settled_position(&shared.direct).await;
        if execute(shared, exec, &command, id, started_after).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The position up to which the store's log is settled (every event at or
/// below it is visible, and no new one will appear there): a global read
/// filtered to a stream that never exists answers exactly that.
async fn settled_position(direct: &PostgresStore) -> GlobalPosition {
    let request = ReadAllRequest {
        after: GlobalPosition::START,
        limit: NonZeroU32::MIN,
        filter: EventFilter::all().with_streams(StreamId::new("chaos-no-such-stream")),
    };
    match direct.read_all(&request).await {
        Ok(response) => response.complete_through,
        // Unknown: claim nothing, which never makes a check fire wrongly.
        Err(_) => GlobalPosition::START,
    }
}
