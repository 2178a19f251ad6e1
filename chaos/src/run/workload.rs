//! The workload: the accounts' setup, and the clients issuing transfers and
//! consolidations through the proxied executors, crashing now and then and
//! re-executing every unknown outcome with the same command id.

use super::{ChaosError, Exec, Shared};
use crate::faults::{FaultKind, FaultRng};
use crate::ledger::{owner, Consolidate, Link};
use crate::record::OutcomeClass;
use eventcore::{Command, EventFilter, ExecutionContext, GlobalPosition, ReadAllRequest, StreamId};
use eventcore_examples::bank::{account, OpenAccount, Transfer};
use eventcore_postgres::PostgresStore;
use eventcore_tokio::EventStore;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub(super) async fn setup(shared: &Shared, exec: &Exec) -> Result<(), ChaosError> {
    let config = &shared.config;
    for n in 1..=config.accounts {
        let command = OpenAccount {
            account: account(n),
            initial: config.initial_balance,
        };
        run_setup(shared, exec, format!("open {}", command.account), command).await?;
    }
    for o in 1..=config.owners {
        for k in 0..4 {
            let number = ((o - 1) * 4 + k) % config.accounts.max(1) + 1;
            let command = Link {
                owner: owner(o),
                account: number,
            };
            run_setup(shared, exec, format!("link account-{number} to owner-{o}"), command).await?;
        }
    }
    Ok(())
}

async fn run_setup<C: Command + Clone>(
    shared: &Shared,
    exec: &Exec,
    label: String,
    command: C,
) -> Result<(), ChaosError> {
    let id = exec.new_command_id();
    let result = exec.execute_with(command, ExecutionContext::new(id)).await;
    let (class, _) = shared
        .recorder
        .finish_execution(id, &label, GlobalPosition::START, false, &result);
    match (class, result) {
        (OutcomeClass::Acknowledged, _) => Ok(()),
        (_, Err(e)) => Err(ChaosError::SetupCommand {
            label,
            reason: e.to_string(),
        }),
        (_, Ok(_)) => Err(ChaosError::SetupCommand {
            label,
            reason: "not acknowledged".to_owned(),
        }),
    }
}

/// A command of the workload.
#[derive(Clone, Debug)]
pub(super) enum Op {
    Transfer(Transfer),
    Consolidate(Consolidate),
}

impl Op {
    fn label(&self) -> String {
        match self {
            Op::Transfer(t) => format!("transfer {} -> {}: {}", t.from, t.to, t.amount),
            Op::Consolidate(c) => format!("consolidate {} by {}", c.owner, c.amount),
        }
    }
}

/// An operation whose outcome is still unknown, with its command id.
pub(super) type Pending = (Op, eventcore::CommandId);

pub(super) async fn client(shared: Arc<Shared>, exec: Arc<Exec>, index: u64) -> Vec<Pending> {
    let config = &shared.config;
    let mut rng = FaultRng::new(config.seed, 1_000 + index);
    let mut pending = Vec::new();
    for _ in 0..config.max_commands_per_client {
        if Instant::now() >= shared.stop_at {
            break;
        }
        let op = if rng.percent(15) {
            Op::Consolidate(Consolidate {
                owner: owner(rng.between(1, u64::from(config.owners.max(1))) as u32),
                amount: 5,
            })
        } else {
            // Half of the transfers touch the hot accounts (1..=4).
            let pick = |rng: &mut FaultRng| {
                if rng.percent(50) {
                    rng.between(1, 4.min(u64::from(config.accounts)))
                } else {
                    rng.between(1, u64::from(config.accounts))
                }
            };
            let from = pick(&mut rng);
            let mut to = pick(&mut rng);
            if to == from {
                to = from % u64::from(config.accounts) + 1;
            }
            Op::Transfer(Transfer {
                from: account(from as u32),
                to: account(to as u32),
                // Now and then more than an account may hold, so that the
                // domain refuses (and the checker verifies it wrote nothing).
                amount: if rng.percent(10) {
                    rng.between(config.initial_balance / 2, config.initial_balance * 2)
                } else {
                    rng.between(1, 30)
                },
            })
        };
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
                match tokio::time::timeout(after, execute(&shared, &exec, &op, id, GlobalPosition::START)).await {
                    Ok(resolved) => resolved,
                    Err(_) => {
                        let healed = Instant::now() >= shared.heal_at;
                        shared.recorder.crashed(id, &op.label(), GlobalPosition::START, healed);
                        shared.counters.injected(FaultKind::ClientCrash);
                        false
                    }
                }
            }
            None => execute(&shared, &exec, &op, id, GlobalPosition::START).await,
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
            resolved = execute(&shared, &exec, &op, id, started_after).await;
        }
        if !resolved {
            pending.push((op, id));
        }
    }
    pending
}

async fn execute(
    shared: &Shared,
    exec: &Exec,
    op: &Op,
    id: eventcore::CommandId,
    started_after: GlobalPosition,
) -> bool {
    let healed = Instant::now() >= shared.heal_at;
    let context = ExecutionContext::new(id);
    let label = op.label();
    match op {
        Op::Transfer(command) => {
            let result = exec.execute_with(command.clone(), context).await;
            shared
                .recorder
                .finish_execution(id, &label, started_after, healed, &result)
                .1
        }
        Op::Consolidate(command) => {
            let result = exec.execute_with(command.clone(), context).await;
            shared
                .recorder
                .finish_execution(id, &label, started_after, healed, &result)
                .1
        }
    }
}

pub(super) async fn settle(shared: &Shared, exec: &Exec, (op, id): Pending) {
    for _ in 0..5 {
        let started_after = settled_position(&shared.direct).await;
        if execute(shared, exec, &op, id, started_after).await {
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
