//! Subscriptions on PostgreSQL: preparing the schema for them
//! ([`migrate_subscriptions`]: the tables come with every other migration,
//! the notify trigger only here) and the LISTEN/NOTIFY wake-ups
//! ([`PgNotifier`]).
//!
//! The append path notifies through a trigger installed by
//! [`migrate_subscriptions`]: after every statement that inserts events,
//! `pg_notify('eventcore_events', '<schema>:<highest position>')`, which
//! PostgreSQL delivers when (and only if) the transaction commits.
//!
//! [`PgNotifier`] listens on a **dedicated connection**, not one from the
//! store's pool, and publishes into a `tokio::sync::watch` that runners take
//! with `Runner::with_wakeups` (in `eventcore-tokio`). Notifications are only a
//! hint: when the listener's connection drops, it reconnects, listens again
//! and wakes every subscriber so that it fetches (catches up on whatever
//! committed while nobody listened); and every runner polls at its
//! [`eventcore::SubscriptionPolicy::poll_interval`] anyway, which also covers
//! events held back by a transaction that later rolled back (no
//! notification is sent for those).

use crate::error::{map_error, Phase};
use crate::tables::store_error;
use crate::{MigrationMode, PostgresStore};
use eventcore::{GlobalPosition, Operation, StoreError};
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::ConnectOptions;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The channel the trigger notifies.
///
/// ```
/// assert_eq!(eventcore_postgres::NOTIFY_CHANNEL, "eventcore_events");
/// ```
pub const NOTIFY_CHANNEL: &str = "eventcore_events";

/// The statement-level trigger that notifies subscribers of committed
/// appends (and its function), in the store's schema.
const NOTIFY_TRIGGER: &str = include_str!("notify_trigger.sql");

/// Prepares the store's schema for subscriptions: applies the migrations
/// (the subscription tables are migration 4, created by
/// [`PostgresStore::migrate`] with every other table) and installs the
/// trigger that notifies [`PgNotifier`]s of committed appends. The trigger
/// costs every append a little, so a store without subscribers need not
/// install it. Idempotent, and safe when several processes start at once
/// (the trigger is replaced under a transaction-scoped advisory lock keyed
/// by the schema).
///
/// Under [`MigrationMode::Verify`] (for a role that may not run DDL) it
/// changes nothing: it checks the migrations as
/// [`PostgresStore::verify_migrations`] does and that the trigger is
/// installed, and fails permanently (naming what is missing) otherwise.
///
/// ```no_run
/// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore::StoreError> {
/// eventcore_postgres::migrate_subscriptions(&store).await?;
/// # Ok(()) }
/// ```
pub async fn migrate_subscriptions(store: &PostgresStore) -> Result<(), StoreError> {
    store.migrate().await.map_err(|error| match error {
        crate::SetupError::Connect(error) => error,
        crate::SetupError::Prepare { source, .. } => source,
        other => StoreError::permanent(Operation::Other, crate::options::error_chain(&other)),
    })?;
    let schema = &store.options().schema;
    if store.options().migrations == MigrationMode::Verify {
        return verify_notify_trigger(store).await;
    }
    let mut tx = store.pool().begin().await.map_err(store_error)?;
    // Waiting for another process's install included: maintenance, not the
    // store's short statement timeout.
    sqlx::query(&store.set_local_maintenance_timeout())
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('eventcore:subscriptions'), hashtext($1))")
        .bind(schema)
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    sqlx::query(&format!("SET LOCAL search_path TO \"{schema}\""))
        .execute(&mut *tx)
        .await
        .map_err(store_error)?;
    // Several statements, so the simple query protocol: a `&str` without
    // arguments runs as one. Not `sqlx::raw_sql`, whose future is not
    // `Send` (a higher-ranked `Executor` bound), which made this whole
    // function's future unusable in `tokio::spawn`.
    sqlx::Executor::execute(&mut *tx, NOTIFY_TRIGGER)
        .await
        .map_err(store_error)?;
    tx.commit().await.map_err(store_error)
}

/// Under [`MigrationMode::Verify`]: the notify trigger must be there (a
/// role that may not run DDL cannot install it, and without it subscribers
/// only learn of new events by polling).
async fn verify_notify_trigger(store: &PostgresStore) -> Result<(), StoreError> {
    let schema = &store.options().schema;
    let installed: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger \
         WHERE tgrelid = to_regclass($1) AND tgname = 'events_notify_subscribers')",
    )
    .bind(format!("\"{schema}\".events"))
    .fetch_one(store.pool())
    .await
    .map_err(store_error)?;
    if installed {
        Ok(())
    } else {
        Err(StoreError::permanent(
            Operation::Other,
            crate::SetupError::NotMigrated {
                schema: schema.clone(),
                reason: "the notify trigger events_notify_subscribers is not installed; \
                         run migrate_subscriptions as the schema's owner (MigrationMode::Apply)"
                    .to_owned(),
            }
            .to_string(),
        ))
    }
}

/// Counters of a [`PgNotifier`].
#[derive(Debug, Default)]
struct Counters {
    notifications: AtomicU64,
    reconnects: AtomicU64,
}

/// LISTEN/NOTIFY wake-ups for the subscribers of one store, on a dedicated
/// connection. Publishes the highest committed position it was told about
/// into a watch channel; after the connection dropped and was re-established
/// it publishes again (same value) so that subscribers catch up. Dropping
/// the notifier stops it.
///
/// ```no_run
/// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore::StoreError> {
/// use eventcore_postgres::PgNotifier;
/// let notifier = PgNotifier::start(&store).await?;
/// let wakeups = notifier.subscribe(); // for Runner::with_wakeups
/// # let _ = wakeups;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct PgNotifier {
    head: Arc<watch::Sender<GlobalPosition>>,
    counters: Arc<Counters>,
    application_name: String,
    task: JoinHandle<()>,
}

impl PgNotifier {
    /// Connects the listener (its own connection) and starts listening.
    /// Fails if the first connection cannot be made.
    pub async fn start(store: &PostgresStore) -> Result<PgNotifier, StoreError> {
        let schema = store.options().schema.clone();
        let application_name: String = format!("eventcore-listener-{schema}").chars().take(63).collect();
        // The store's connect options (its TLS, and for a store on the
        // application's pool, that pool's), under a name of its own.
        let connect = store
            .connect
            .clone()
            .application_name(&application_name)
            .log_statements(tracing::log::LevelFilter::Trace);
        // A pool of one connection, owned by the listener alone: sqlx uses
        // it to reconnect. Never shared with the store's pool.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(store.options().connect_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| map_error(Operation::Other, Phase::Connecting, e, None))?;
        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(|e| map_error(Operation::Other, Phase::Connecting, e, None))?;
        listener.listen(NOTIFY_CHANNEL).await.map_err(store_error)?;
        // Start from the newest committed position, so that a runner knows
        // how far "caught up" is before the first notification arrives.
        let newest: Option<i64> = sqlx::query_scalar(&format!("SELECT max(position) FROM \"{schema}\".events"))
            .fetch_one(store.pool())
            .await
            .map_err(store_error)?;
        let newest = GlobalPosition::new(newest.and_then(|p| u64::try_from(p).ok()).unwrap_or(0));
        let (head, _) = watch::channel(newest);
        let head = Arc::new(head);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(listen(listener, format!("{schema}:"), head.clone(), counters.clone()));
        Ok(PgNotifier {
            head,
            counters,
            application_name,
            task,
        })
    }

    /// A receiver for `Runner::with_wakeups` (in `eventcore-tokio`).
    pub fn subscribe(&self) -> watch::Receiver<GlobalPosition> {
        self.head.subscribe()
    }

    /// Notifications received for this store's schema.
    pub fn notifications(&self) -> u64 {
        self.counters.notifications.load(Ordering::Relaxed)
    }

    /// Times the listener's connection was re-established.
    pub fn reconnects(&self) -> u64 {
        self.counters.reconnects.load(Ordering::Relaxed)
    }

    /// The `application_name` of the listener's connection (to find it in
    /// `pg_stat_activity`).
    pub fn application_name(&self) -> &str {
        &self.application_name
    }
}

impl Drop for PgNotifier {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn listen(
    mut listener: PgListener,
    prefix: String,
    head: Arc<watch::Sender<GlobalPosition>>,
    counters: Arc<Counters>,
) {
    let mut failures = 0u32;
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                failures = 0;
                let Some(position) = notification
                    .payload()
                    .strip_prefix(&prefix)
                    .and_then(|p| p.parse::<u64>().ok())
                else {
                    continue;
                };
                counters.notifications.fetch_add(1, Ordering::Relaxed);
                head.send_modify(|h| *h = (*h).max(GlobalPosition::new(position)));
            }
            Ok(None) => {
                // The connection dropped and sqlx re-established it (and
                // listens again): anything committed meanwhile went
                // unannounced, so wake everyone to catch up.
                counters.reconnects.fetch_add(1, Ordering::Relaxed);
                tracing::info!("notification listener reconnected; waking subscribers");
                head.send_modify(|_| {});
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let backoff = Duration::from_millis(50u64.saturating_mul(1 << failures.min(7)));
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    ?backoff,
                    "notification listener lost its connection"
                );
                tokio::time::sleep(backoff).await;
                // Reconnect and listen again now (a plain query does it),
                // then wake everyone to catch up.
                if sqlx::query("SELECT 1").execute(&mut listener).await.is_ok() {
                    counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    head.send_modify(|_| {});
                }
            }
        }
    }
}
