//! The soak's consumers: two subscriptions (checkpoints in PostgreSQL) and
//! an exactly-once projection (`PgProjectionStore`, under a lease) keeping
//! every account's balance, all woken by one `PgNotifier`. Each runs for the
//! whole load, restarted from its checkpoint should it stop with an error
//! (counted: the soak expects none), then until caught up with the log.
//!
//! The subscribers keep two counters, not the events: the soak measures the
//! library's memory, not a consumer's.

use super::sample::ConsumerSample;
use super::workload::{Shared, INITIAL_BALANCE};
use super::SoakConfig;
use eventcore::{Batch, GlobalPosition, HandleError, RecordedEvent, SubscriptionPolicy};
use eventcore_examples::bank::AccountEvent;
use eventcore_postgres::{
    PgCheckpointStore, PgLeaseStore, PgNotifier, PgProjectionStore, PgTransaction, PostgresStore,
};
use eventcore_tokio::{
    DeadLetterStore, EventStore, LeaseStore, Projection, ProjectionError, Runner, RunnerStatus, Sink, Subscriber,
};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The projection's name (its checkpoint and lease).
const PROJECTION: &str = "soak-balances";

/// What a subscriber saw.
#[derive(Debug, Default)]
struct Tally {
    events: AtomicU64,
    /// Events at or below one already handled (a redelivery).
    repeated: AtomicU64,
}

/// A subscriber that only counts.
struct Count {
    tally: Arc<Tally>,
    last: GlobalPosition,
}

impl Subscriber for Count {
    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        for event in &batch.events {
            if event.position <= self.last {
                self.tally.repeated.fetch_add(1, Ordering::Relaxed);
            }
            self.last = self.last.max(event.position);
        }
        self.tally
            .events
            .fetch_add(batch.events.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Every account's balance, one row per account.
struct Balances {
    upsert: String,
}

impl Projection for Balances {
    type Event = AccountEvent;
    type Store = PgProjectionStore;

    async fn apply(
        &mut self,
        tx: &mut PgTransaction,
        event: AccountEvent,
        recorded: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let delta = match event {
            AccountEvent::Opened { initial } => i64::try_from(initial),
            AccountEvent::Deposited { amount } => i64::try_from(amount),
            AccountEvent::Withdrawn { amount } => i64::try_from(amount).map(|a| -a),
        }
        .map_err(|e| ProjectionError::Rejected(e.to_string()))?;
        sqlx::query(&self.upsert)
            .bind(recorded.stream_id.as_str())
            .bind(delta)
            .execute(&mut **tx)
            .await
            .map_err(|e| ProjectionError::Transient(e.to_string()))?;
        Ok(())
    }
}

fn balances_table(store: &PostgresStore) -> String {
    format!("\"{}\".soak_balances", store.options().schema)
}

/// Creates the projection's table.
pub(super) async fn create_read_model(store: &PostgresStore) -> Result<(), String> {
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} (account text PRIMARY KEY, balance bigint NOT NULL)",
        balances_table(store)
    );
    sqlx::query(&sql)
        .execute(store.pool())
        .await
        .map(|_| ())
        .map_err(|e| format!("creating the projection's table: {e}"))
}

/// One running consumer.
struct Consumer {
    name: String,
    limit: usize,
    status: watch::Receiver<RunnerStatus>,
    restarts: Arc<AtomicU64>,
    tally: Option<Arc<Tally>>,
    task: JoinHandle<()>,
}

/// The soak's consumers.
pub(super) struct Consumers {
    list: Vec<Consumer>,
    stop: Arc<AtomicBool>,
    _notifier: PgNotifier,
}

fn policy(batch: u32) -> SubscriptionPolicy {
    let batch = NonZeroU32::new(batch).unwrap_or(NonZeroU32::MIN);
    SubscriptionPolicy::default()
        .with_batch_size(batch)
        .with_buffer_limit(2 * batch.get() as usize)
}

impl Consumers {
    pub(super) async fn start(config: &SoakConfig, store: &PostgresStore) -> Result<Self, String> {
        let notifier = PgNotifier::start(store)
            .await
            .map_err(|e| format!("starting the notifier: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut list = Vec::new();
        for (i, batch) in config.subscription_batches.iter().enumerate() {
            let name = format!("soak-sub-{}", i + 1);
            let tally = Arc::new(Tally::default());
            let count = Count {
                tally: tally.clone(),
                last: GlobalPosition::START,
            };
            let policy = policy(*batch);
            let limit = policy.buffer_limit.max(policy.batch_size.get() as usize);
            let runner = Runner::subscription(name.clone(), store.clone(), PgCheckpointStore::new(store), count)
                .with_policy(policy)
                .with_wakeups(notifier.subscribe());
            list.push(Consumer::spawn(name, limit, runner, Some(tally), &stop));
        }
        let policy = policy(config.projection_batch);
        let limit = policy.buffer_limit.max(policy.batch_size.get() as usize);
        let balances = Balances {
            upsert: format!(
                "INSERT INTO {t} AS b (account, balance) VALUES ($1, $2) \
                 ON CONFLICT (account) DO UPDATE SET balance = b.balance + EXCLUDED.balance",
                t = balances_table(store)
            ),
        };
        let runner = Runner::projection(PROJECTION, store.clone(), balances, PgProjectionStore::new(store))
            .with_policy(policy)
            .with_lease(PgLeaseStore::new(store), "soak", Duration::from_secs(10))
            .with_wakeups(notifier.subscribe());
        list.push(Consumer::spawn(PROJECTION.to_owned(), limit, runner, None, &stop));
        Ok(Consumers {
            list,
            stop,
            _notifier: notifier,
        })
    }

    /// Names, for the CSV header.
    pub(super) fn names(&self) -> Vec<String> {
        self.list.iter().map(|c| c.name.clone()).collect()
    }

    /// What every consumer holds now.
    pub(super) fn sample(&self) -> Vec<ConsumerSample> {
        self.list
            .iter()
            .map(|c| {
                let status = c.status.borrow();
                ConsumerSample {
                    buffered: status.buffered,
                    max_buffered: status.stats.max_buffered,
                    limit: c.limit,
                    handled_through: status.handled_through.get(),
                    events: status.stats.events,
                    restarts: c.restarts.load(Ordering::Relaxed),
                }
            })
            .collect()
    }

    /// Waits until every consumer has checkpointed the end of the log (or
    /// `timeout`), then stops them all. `true` when they caught up.
    pub(super) async fn drain(&self, store: &PostgresStore, timeout: Duration) -> bool {
        let head = match head(store).await {
            Ok(head) => head,
            Err(_) => {
                self.stop.store(true, Ordering::SeqCst);
                return false;
            }
        };
        let began = Instant::now();
        let caught_up = loop {
            if self.list.iter().all(|c| c.status.borrow().checkpoint.get() >= head) {
                break true;
            }
            if began.elapsed() >= timeout {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        self.stop.store(true, Ordering::SeqCst);
        caught_up
    }

    /// After [`Consumers::drain`]: joins the consumers and checks what they
    /// did against the log. Every problem, in words.
    pub(super) async fn check(self, store: &PostgresStore, shared: &Shared, drained: bool) -> Vec<String> {
        let mut problems = Vec::new();
        if !drained {
            problems.push("the consumers did not catch up with the log in time".to_owned());
        }
        for consumer in &self.list {
            let restarts = consumer.restarts.load(Ordering::Relaxed);
            if restarts > 0 {
                problems.push(format!("{} stopped with an error {restarts} times", consumer.name));
            }
        }
        let names: Vec<(String, Option<Arc<Tally>>)> =
            self.list.iter().map(|c| (c.name.clone(), c.tally.clone())).collect();
        for consumer in self.list {
            if consumer.task.await.is_err() {
                problems.push(format!("{} panicked", consumer.name));
            }
        }
        let schema = &store.options().schema;
        let counted = sqlx::query_as::<_, (i64, i64)>(&format!(
            "SELECT count(*), count(*) FILTER (WHERE event_type = 'Opened') FROM \"{schema}\".events"
        ))
        .fetch_one(store.pool())
        .await;
        let (events, opened) = match counted {
            Ok((events, opened)) => (u64::try_from(events).unwrap_or(0), u64::try_from(opened).unwrap_or(0)),
            Err(e) => {
                problems.push(format!("counting the log: {e}"));
                return problems;
            }
        };
        let acknowledged = shared.totals().events;
        if events < acknowledged {
            problems.push(format!(
                "the log holds {events} events, fewer than the {acknowledged} acknowledged"
            ));
        }
        for (name, tally) in names {
            let Some(tally) = tally else { continue };
            let (seen, repeated) = (
                tally.events.load(Ordering::Relaxed),
                tally.repeated.load(Ordering::Relaxed),
            );
            if repeated > 0 {
                problems.push(format!("{name} was handed {repeated} events again"));
            }
            if seen.saturating_sub(repeated) != events {
                problems.push(format!(
                    "{name} handled {seen} events ({repeated} again); the log holds {events}"
                ));
            }
        }
        let read_model = sqlx::query_as::<_, (i64, Option<i64>)>(&format!(
            "SELECT count(*), sum(balance)::bigint FROM {}",
            balances_table(store)
        ))
        .fetch_one(store.pool())
        .await;
        match read_model {
            Ok((rows, total)) => {
                let rows = u64::try_from(rows).unwrap_or(0);
                let total = total.unwrap_or(0);
                if rows != opened {
                    problems.push(format!("the projection holds {rows} accounts; {opened} were opened"));
                }
                let expected = i128::from(rows) * i128::from(INITIAL_BALANCE);
                if i128::from(total) != expected {
                    problems.push(format!(
                        "the projection's balances add up to {total}, not {expected}: money not conserved"
                    ));
                }
            }
            Err(e) => problems.push(format!("reading the projection: {e}")),
        }
        problems
    }
}

impl Consumer {
    fn spawn<S, K, L, D>(
        name: String,
        limit: usize,
        mut runner: Runner<S, K, L, D>,
        tally: Option<Arc<Tally>>,
        stop: &Arc<AtomicBool>,
    ) -> Consumer
    where
        S: EventStore,
        K: Sink + Send + 'static,
        L: LeaseStore + Send + 'static,
        D: DeadLetterStore + Send + 'static,
        Runner<S, K, L, D>: Send,
    {
        let status = runner.status();
        let restarts = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn({
            let (stop, restarts) = (stop.clone(), restarts.clone());
            async move { drive(&mut runner, &stop, &restarts).await }
        });
        Consumer {
            name,
            limit,
            status,
            restarts,
            tally,
            task,
        }
    }
}

/// Runs `runner` until `stop`, restarting it after an error.
async fn drive<S, K, L, D>(runner: &mut Runner<S, K, L, D>, stop: &Arc<AtomicBool>, restarts: &AtomicU64)
where
    S: EventStore,
    K: Sink,
    L: LeaseStore,
    D: DeadLetterStore,
{
    let stopped = || {
        let stop = stop.clone();
        async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    while !stop.load(Ordering::SeqCst) {
        match runner.run_until(stopped()).await {
            Ok(_) => break,
            Err(error) => {
                restarts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(name = runner.name(), %error, "soak consumer stopped; restarting");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The highest position in the log.
async fn head(store: &PostgresStore) -> Result<u64, sqlx::Error> {
    let schema = &store.options().schema;
    let head: Option<i64> = sqlx::query_scalar(&format!("SELECT max(position) FROM \"{schema}\".events"))
        .fetch_one(store.pool())
        .await?;
    Ok(head.and_then(|h| u64::try_from(h).ok()).unwrap_or(0))
}
