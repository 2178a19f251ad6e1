//! The fault schedule's driver: arms the proxy's faults at their times and
//! runs the PostgreSQL-side faults (backend terminations, lock holds, pool
//! squeezes), each bounded in time.

use super::Shared;
use crate::faults::{FaultKind, FaultRng, FaultSchedule};
use crate::proxy::BackendPorts;
use eventcore::StreamId;
use sqlx::postgres::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What the side (non-proxied) fault injector works with.
pub(super) struct SideFaults {
    pub(super) direct_pool: PgPool,
    pub(super) schema: String,
    pub(super) squeeze_pool: PgPool,
    pub(super) squeeze_size: u32,
    pub(super) hot: Vec<StreamId>,
    pub(super) ports: BackendPorts,
    /// The private server, for crashes and restarts.
    pub(super) server: Option<Arc<crate::private_postgres::PrivatePostgres>>,
    /// One server crash or restart at a time.
    pub(super) server_busy: tokio::sync::Mutex<()>,
}

/// Plays the schedule: arms proxy faults at their times and runs the
/// PostgreSQL-side faults, each bounded in time; returns when the fault
/// phase is over and every side fault finished.
pub(super) async fn play(shared: Arc<Shared>, schedule: FaultSchedule, side: Arc<SideFaults>, start: Instant) {
    let counters = &shared.counters;
    let mut rng = FaultRng::new(shared.config.seed, 7);
    let mut tasks = Vec::new();
    for entry in schedule.entries {
        tokio::time::sleep_until(start + entry.at).await;
        let kind = entry.kind;
        if FaultKind::PROXY.contains(&kind) {
            counters.arm(kind);
            continue;
        }
        counters.schedule(kind);
        let (shared, side, seed) = (shared.clone(), side.clone(), rng.below(u64::MAX));
        tasks.push(tokio::spawn(async move {
            let injected = match kind {
                FaultKind::TerminateBackend => terminate(&shared, &side, seed).await,
                FaultKind::LockHold => {
                    let stream = &side.hot[(seed % side.hot.len().max(1) as u64) as usize];
                    hold_lock(&shared, &side, stream).await
                }
                FaultKind::PoolSqueeze => squeeze(&side).await,
                FaultKind::ServerCrash | FaultKind::ServerRestart => bounce(&side, kind, seed).await,
                _ => false,
            };
            if injected {
                shared.counters.injected(kind);
            }
        }));
    }
    tokio::time::sleep_until(shared.heal_at).await;
    for task in tasks {
        let _ = task.await;
    }
}

/// `pg_terminate_backend` on one of this run's proxied sessions (found by
/// the proxy's upstream ports, so no other test's sessions are touched).
/// Retries briefly when none is connected.
async fn terminate(shared: &Shared, side: &SideFaults, seed: u64) -> bool {
    let mut rng = FaultRng::new(seed, 0);
    for _ in 0..20 {
        if Instant::now() >= shared.heal_at {
            return false;
        }
        let ports: Vec<i32> = side.ports.get().into_iter().map(i32::from).collect();
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity \
             WHERE client_port = ANY($1) AND client_addr = '127.0.0.1'::inet \
               AND datname = current_database() AND pid <> pg_backend_pid()",
        )
        .bind(&ports)
        .fetch_all(&side.direct_pool)
        .await
        .unwrap_or_default();
        if !pids.is_empty() {
            let pid = pids[rng.below(pids.len() as u64) as usize];
            let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .fetch_one(&side.direct_pool)
                .await
                .unwrap_or(false);
            if killed {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Holds `stream`'s head row locked from a direct connection, so appends to
/// it wait and hit pool A's `lock_timeout` or pool B's `statement_timeout`.
/// It holds for 500 ms, and on past that (up to 3 s, never past the fault
/// phase) until the workload's own appends have met both timeouts since the
/// hold began: on a loaded machine the clients may not reach the stream
/// within 500 ms, and the judge requires that a lock hold made both fire.
async fn hold_lock(shared: &Shared, side: &SideFaults, stream: &StreamId) -> bool {
    let observed = || {
        let report = shared.counters.snapshot();
        (
            report.injected(FaultKind::LockTimeout),
            report.injected(FaultKind::StatementTimeout),
        )
    };
    let held = async {
        let mut tx = side.direct_pool.begin().await?;
        sqlx::query("SET LOCAL lock_timeout = '1s'").execute(&mut *tx).await?;
        let row: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT version FROM \"{}\".streams WHERE stream_id = $1 FOR UPDATE",
            side.schema
        ))
        .bind(stream.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let before = observed();
        let began = Instant::now();
        let longest = (began + Duration::from_secs(3)).min(shared.heal_at);
        tokio::time::sleep(Duration::from_millis(500)).await;
        while Instant::now() < longest {
            let now = observed();
            if now.0 > before.0 && now.1 > before.1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tx.rollback().await?;
        Ok::<bool, sqlx::Error>(row.is_some())
    };
    held.await.unwrap_or(false)
}

/// Checks out every connection of the small pool and holds them for
/// 800 ms, so its clients' acquisitions time out.
async fn squeeze(side: &SideFaults) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut held = Vec::new();
    while held.len() < side.squeeze_size as usize && Instant::now() < deadline {
        if let Ok(conn) = side.squeeze_pool.acquire().await {
            held.push(conn);
        }
    }
    let full = held.len() == side.squeeze_size as usize;
    if full {
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    // Returned connections may be broken by other faults; close them
    // rather than hand them back.
    for conn in held {
        let _ = conn.close().await;
    }
    full
}

/// Crashes (or cleanly restarts) the private server, keeps it down for a
/// moment (clients meet refused connections), and starts it again: after a
/// crash the start replays the WAL. One at a time.
async fn bounce(side: &SideFaults, kind: FaultKind, seed: u64) -> bool {
    let Some(server) = side.server.clone() else {
        return false;
    };
    let _one_at_a_time = side.server_busy.lock().await;
    let down = Duration::from_millis(50 + seed % 700);
    let stopped = {
        let server = server.clone();
        tokio::task::spawn_blocking(move || match kind {
            FaultKind::ServerCrash => server.crash(),
            _ => server.restart(),
        })
        .await
    };
    let stopped = matches!(stopped, Ok(Ok(())));
    if !stopped {
        tracing::warn!(?kind, "the private server could not be stopped");
    }
    tokio::time::sleep(down).await;
    // A restart has started the server already; a crash has not.
    if kind == FaultKind::ServerCrash {
        let started = tokio::task::spawn_blocking(move || server.start_again()).await;
        if !matches!(started, Ok(Ok(()))) {
            tracing::warn!("the private server did not start again: {started:?}");
            return false;
        }
    }
    stopped
}
