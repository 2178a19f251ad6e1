//! Least privilege and SQL injection on PostgreSQL.
//!
//! - An application role with exactly the documented grants
//!   (`io-postgres/sql/least_privilege.sql`, quoted verbatim in
//!   `docs/postgres.md`) on a schema its owner migrated runs appends (one
//!   stream, several, conflicts, re-sends, group commit, inside a
//!   transaction), reads, `read_all`, snapshots, a subscription with
//!   checkpoints, a lease and notifications, and a projection that parks and
//!   replays a dead letter; and it cannot change, delete or truncate events
//!   (SQLSTATE 42501), nor create anything in the schema.
//! - `MigrationMode::Verify` accepts a migrated schema and names what is
//!   missing or different otherwise, without DDL.
//! - Hostile schema and role names are refused with a typed error before any
//!   SQL runs; hostile stream ids, event types, subscription, lease,
//!   projection, view and dead-letter names are bound as parameters: stored
//!   and read back byte for byte, and the schema is intact afterwards.
//!
//! Each test uses its own schema and its own login roles (named after the
//! schema, so parallel runs never collide), dropped at the end even when the
//! test fails. Without a database the tests skip loudly, except under
//! `CI=true`, where they fail.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use eventcore::{
    Batch, CommandId, EventFilter, EventType, ExpectedVersion, GlobalPosition, HandleError, NewEvent, Payload,
    PoisonAction, PoisonCause, PoisonEvent, PoisonPolicy, RecordedEvent, Snapshot, StoreError, StreamId, StreamVersion,
    SubscriptionPolicy, Time,
};
use eventcore_postgres::{
    app_role_grants, migrate_subscriptions, MigrationMode, PgCheckpointStore, PgDeadLetterStore, PgLeaseStore,
    PgNotifier, PgProjectionStore, PgSnapshotStore, PgTransaction, PostgresOptions, PostgresStore, SetupError,
    APP_ROLE_GRANTS_SQL, MAX_SCHEMA_NAME_BYTES,
};
use eventcore_tests::conformance::{assert_conflict, new_event, read, read_all_request, Append};
use eventcore_tests::postgres::{database_url, options, required};
use eventcore_tokio::{
    CheckpointStore, DeadLetter, DeadLetterStore, EventStore, FencingToken, LeaseStore, Projection, ProjectionError,
    ProjectionStore, ReplaySelection, Runner, SnapshotStore, Subscriber,
};
use futures_util::{FutureExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use std::future::Future;
use std::io::Write;
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------- fixture

const GUARD: Duration = Duration::from_secs(60);

async fn guarded<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: nothing happened within {GUARD:?}"),
    }
}

/// `DATABASE_URL` with its user replaced by `user` (the test server trusts
/// local connections).
fn url_as(user: &str) -> String {
    let base = database_url();
    let Some((scheme, rest)) = base.split_once("://") else {
        return base;
    };
    let host = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{host}")
}

/// A store on a fresh (not yet created) schema as the administrator of the
/// test database, without migrating; `None` (after a loud notice) when the
/// database cannot be reached and `CI` is not `true`.
async fn admin(label: &str) -> Option<PostgresStore> {
    match PostgresStore::connect_with(options(label)).await {
        Ok(store) => Some(store),
        Err(error) => {
            let url = database_url();
            if required() {
                panic!("CI=true but PostgreSQL at {url} cannot be reached: {error}");
            }
            let _ = writeln!(
                std::io::stderr().lock(),
                "\n*** SKIPPED: PostgreSQL at {url} cannot be reached ({error}).\n\
                 *** PostgreSQL tests pass without checking anything; with CI=true this is a failure.\n"
            );
            None
        }
    }
}

async fn exec(store: &PostgresStore, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(store.pool())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The SQLSTATE of a failed statement.
fn sqlstate(result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>) -> String {
    match result {
        Ok(done) => panic!(
            "expected the statement to be refused, it affected {} rows",
            done.rows_affected()
        ),
        Err(error) => error
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned())
            .unwrap_or_else(|| panic!("not a database error: {error}")),
    }
}

/// The owner and application roles of one test, and its schema.
struct Roles {
    schema: String,
    owner: String,
    app: String,
}

impl Roles {
    fn for_schema(schema: &str) -> Self {
        Roles {
            schema: schema.to_owned(),
            owner: format!("{schema}_owner"),
            app: format!("{schema}_app"),
        }
    }

    /// What the administrator runs (docs/postgres.md, "Least privilege"):
    /// two login roles, and the schema created for its owner.
    async fn create(&self, admin: &PostgresStore) {
        let Roles { schema, owner, app } = self;
        exec(admin, &format!("CREATE ROLE \"{owner}\" LOGIN")).await;
        exec(admin, &format!("CREATE ROLE \"{app}\" LOGIN")).await;
        exec(admin, &format!("CREATE SCHEMA \"{schema}\" AUTHORIZATION \"{owner}\"")).await;
    }

    /// Drops the schema and both roles; best effort, never panics.
    async fn remove(&self, admin: &PostgresStore) {
        let Roles { schema, owner, app } = self;
        for sql in [
            format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
            format!("DROP OWNED BY \"{app}\""),
            format!("DROP OWNED BY \"{owner}\""),
            format!("DROP ROLE IF EXISTS \"{app}\""),
            format!("DROP ROLE IF EXISTS \"{owner}\""),
        ] {
            if let Err(error) = sqlx::raw_sql(&sql).execute(admin.pool()).await {
                let _ = writeln!(std::io::stderr().lock(), "cleanup: {sql}: {error}");
            }
        }
    }
}

/// Runs `body`, then drops the test's schema and roles whether or not it
/// panicked.
async fn with_roles<F: Future<Output = ()>>(admin: &PostgresStore, body: impl FnOnce(Arc<Roles>) -> F) {
    drop_stale_roles(admin).await;
    let roles = Arc::new(Roles::for_schema(&admin.options().schema));
    let outcome = AssertUnwindSafe(async {
        roles.create(admin).await;
        body(roles.clone()).await;
    })
    .catch_unwind()
    .await;
    roles.remove(admin).await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Roles left behind by a run of this file that was killed more than an
/// hour ago (their creation time is in their name, as for schemas).
async fn drop_stale_roles(admin: &PostgresStore) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT rolname::text FROM pg_roles WHERE rolname ~ '^ec_lp_[a-z_]*_[0-9]+_[0-9]+_[0-9]+_(owner|app)$'",
    )
    .fetch_all(admin.pool())
    .await
    else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    for name in names {
        let created = name.rsplit('_').nth(3).and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|t| t + 3600 < now) {
            for sql in [
                format!("DROP OWNED BY \"{name}\""),
                format!("DROP ROLE IF EXISTS \"{name}\""),
            ] {
                let _ = sqlx::raw_sql(&sql).execute(admin.pool()).await;
            }
        }
    }
}

fn deposit(amount: i64) -> NewEvent {
    new_event("Deposited", serde_json::json!({ "amount": amount }))
}

fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("valid stream id")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Account {
    Deposited { amount: i64 },
}
impl eventcore::Event for Account {}

/// A balances read model in the owner's schema, written by the app role.
#[derive(Clone)]
struct Balances {
    schema: String,
    accept_negative: Arc<Mutex<bool>>,
}

impl Projection for Balances {
    type Event = Account;
    type Store = PgProjectionStore;

    async fn apply(
        &mut self,
        tx: &mut PgTransaction,
        event: Account,
        recorded: &RecordedEvent,
    ) -> Result<(), ProjectionError> {
        let Account::Deposited { amount } = event;
        if amount < 0 && !*self.accept_negative.lock().expect("lock") {
            return Err(ProjectionError::Rejected(format!("negative deposit {amount}")));
        }
        let s = &self.schema;
        sqlx::query(&format!(
            "INSERT INTO \"{s}\".balances AS b (account, balance) VALUES ($1, $2) \
             ON CONFLICT (account) DO UPDATE SET balance = b.balance + EXCLUDED.balance"
        ))
        .bind(recorded.stream_id.as_str())
        .bind(amount)
        .execute(&mut **tx)
        .await
        .map_err(|e| ProjectionError::Transient(e.to_string()))?;
        Ok(())
    }
}

/// Records the positions it is handed.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<GlobalPosition>>>);

impl Subscriber for Recorder {
    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        self.0
            .lock()
            .expect("lock")
            .extend(batch.events.iter().map(|e| e.position));
        Ok(())
    }
}

fn policy() -> SubscriptionPolicy {
    SubscriptionPolicy::default()
        .with_batch_size(NonZeroU32::new(4).expect("non-zero"))
        .with_poll_interval(Duration::from_millis(200))
}

// ---------------------------------------------------------------- least privilege

/// The documented grants are what the test runs: docs/postgres.md quotes
/// `io-postgres/sql/least_privilege.sql` (= `APP_ROLE_GRANTS_SQL`) verbatim.
#[test]
fn the_documented_grants_are_the_tested_grants() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let file = std::fs::read_to_string(root.join("io-postgres/sql/least_privilege.sql")).expect("read the sql file");
    assert_eq!(file, APP_ROLE_GRANTS_SQL, "the crate embeds the checked-in file");
    let docs = std::fs::read_to_string(root.join("docs/postgres.md")).expect("read docs/postgres.md");
    assert!(
        docs.contains(&format!("```sql\n{APP_ROLE_GRANTS_SQL}```")),
        "docs/postgres.md must quote io-postgres/sql/least_privilege.sql verbatim in a ```sql block"
    );
    // The events table is append-only for the application role.
    let events: Vec<&str> = APP_ROLE_GRANTS_SQL
        .lines()
        .filter(|l| l.starts_with("GRANT") && l.contains(".events "))
        .collect();
    assert_eq!(events, ["GRANT SELECT, INSERT ON :\"schema\".events TO :\"app_role\";"]);
    assert!(!APP_ROLE_GRANTS_SQL.contains("ALL PRIVILEGES"));
    assert!(!APP_ROLE_GRANTS_SQL.contains("TRUNCATE ON"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_role_with_only_the_documented_grants_runs_everything_and_cannot_change_events() {
    let Some(admin) = admin("lp_all").await else { return };
    with_roles(&admin, |roles| async move {
        let Roles { schema, owner, app } = &*roles;

        // The owner migrates (it owns the schema; no database privilege),
        // creates its read model, and grants.
        let owner_store = PostgresStore::connect_with(
            PostgresOptions::new(url_as(owner))
                .schema(schema.clone())
                .max_connections(2),
        )
        .await
        .expect("connect as the owner");
        owner_store.migrate().await.expect("the owner migrates");
        migrate_subscriptions(&owner_store)
            .await
            .expect("and installs the notify trigger");
        exec(
            &owner_store,
            &format!("CREATE TABLE \"{schema}\".balances (account text PRIMARY KEY, balance bigint NOT NULL)"),
        )
        .await;
        owner_store.grant_app_role(app).await.expect("the documented grants");
        exec(
            &owner_store,
            &format!("GRANT SELECT, INSERT, UPDATE ON \"{schema}\".balances TO \"{app}\""),
        )
        .await;
        owner_store.pool().close().await;

        // The application verifies, never migrates.
        let store = PostgresStore::connect_with(
            PostgresOptions::new(url_as(app))
                .schema(schema.clone())
                .max_connections(4)
                .read_all_settle(Duration::from_secs(10))
                .migrations(MigrationMode::Verify),
        )
        .await
        .expect("connect as the app role");
        store.migrate().await.expect("Verify: the schema is migrated");
        migrate_subscriptions(&store)
            .await
            .expect("Verify: the trigger is there");
        assert!(store.health().await.expect("health").migrated);
        let current: String = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(store.pool())
            .await
            .expect("whoami");
        assert_eq!(&current, app);

        let notifier = PgNotifier::start(&store).await.expect("LISTEN as the app role");
        let mut wakeups = notifier.subscribe();

        // Appends: one stream; several with a pure check; a conflict; a
        // re-send; inside a caller's transaction; group commit with a
        // failing request and a repeated command id.
        let (a, b, c) = (stream("acc-a"), stream("acc-b"), stream("acc-c"));
        store
            .append(
                &Append::new()
                    .with_events(&a, ExpectedVersion::NoStream, vec![deposit(5), deposit(7)])
                    .build(),
            )
            .await
            .expect("single-stream append");
        let multi = Append::new()
            .with_events(&a, ExpectedVersion::Exact(StreamVersion::new(2)), vec![deposit(1)])
            .with_events(&b, ExpectedVersion::NoStream, vec![deposit(2)])
            .check(&c, ExpectedVersion::NoStream)
            .build();
        let receipt = store.append(&multi).await.expect("multi-stream append");
        let again = store
            .append(&multi)
            .await
            .expect("a re-send is answered with its receipt");
        assert_eq!(again.streams, receipt.streams);
        assert_conflict(
            store
                .append(
                    &Append::new()
                        .with_events(&a, ExpectedVersion::Exact(StreamVersion::new(1)), vec![deposit(1)])
                        .build(),
                )
                .await,
            &a,
            ExpectedVersion::Exact(StreamVersion::new(1)),
            3,
        );
        let mut conn = store.pool().acquire().await.expect("connection");
        let mut tx = conn.begin().await.expect("begin");
        store
            .append_in(
                &mut tx,
                &Append::new()
                    .with_events(&c, ExpectedVersion::Any, vec![deposit(3)])
                    .build(),
            )
            .await
            .expect("append in a transaction");
        tx.commit().await.expect("commit");
        drop(conn);
        let repeated = CommandId::v7(Time::from_unix_millis(2), [7; 10]);
        let batch = store
            .append_batch(&[
                // Fails its check; its claim moves to the next request,
                // which repeats its command id and passes (UPDATE commands).
                Append::new()
                    .with_command_id(repeated)
                    .with_events(&b, ExpectedVersion::NoStream, vec![deposit(1)])
                    .build(),
                Append::new()
                    .with_command_id(repeated)
                    .with_events(&b, ExpectedVersion::Exact(StreamVersion::new(1)), vec![deposit(4)])
                    .build(),
                // Fails its check: its claim is released (DELETE commands).
                Append::new()
                    .with_events(&c, ExpectedVersion::NoStream, vec![deposit(1)])
                    .build(),
            ])
            .await;
        assert!(matches!(batch[0], Err(StoreError::Conflict(_))), "{:?}", batch[0]);
        assert!(matches!(batch[2], Err(StoreError::Conflict(_))), "{:?}", batch[2]);
        // The group went through append_batch() (a batch the database
        // refuses as a whole, e.g. for a missing privilege, is sent again
        // request by request, which would hide it): there the second
        // request's event follows the first request's in the transaction,
        // at index 1; sent alone it would be at index 0.
        let passed = batch[1].as_ref().expect("the repeated id passes on its second request");
        assert_eq!(passed.last_position().get() & ((1 << 20) - 1), 1, "{passed:?}");
        let negative = store
            .append(
                &Append::new()
                    .with_events(&c, ExpectedVersion::Any, vec![deposit(-2)])
                    .build(),
            )
            .await
            .expect("a deposit the projection will refuse")
            .last_position();

        // Reads.
        let slices = read(&store, &[a.clone(), b.clone(), c.clone()]).await;
        let heads: Vec<u64> = slices.iter().map(|s| s.head.get()).collect();
        assert_eq!(heads, [3, 2, 2]);
        let all = store
            .read_all(&read_all_request(GlobalPosition::START, 100, EventFilter::all()))
            .await
            .expect("read_all");
        assert_eq!(all.events.len(), 7);
        let head = all.events.last().expect("events").position;
        assert_eq!(head, negative);
        let only_b = store
            .read_all(&read_all_request(
                GlobalPosition::START,
                100,
                EventFilter::all().with_streams([b.clone()]),
            ))
            .await
            .expect("filtered read_all");
        assert_eq!(only_b.events.len(), 2);
        let streamed: Vec<RecordedEvent> = store
            .stream_events(a.clone(), StreamVersion::NONE, NonZeroU32::new(2).expect("non-zero"))
            .try_collect()
            .await
            .expect("stream_events");
        assert_eq!(streamed.len(), 3);
        guarded("a notification of the last append", wakeups.wait_for(|p| *p >= head))
            .await
            .expect("notifier alive");

        // Snapshots.
        let snapshots = PgSnapshotStore::new(&store);
        let snapshot = Snapshot {
            stream: a.clone(),
            view: "balance".to_owned(),
            view_version: 1,
            stream_version: StreamVersion::new(3),
            last_event_id: streamed[2].event_id,
            payload: r#"{"balance":13}"#.to_owned(),
            taken_at: Time::from_unix_millis(9),
        };
        snapshots.save(&snapshot).await.expect("save");
        snapshots.save(&snapshot).await.expect("save over (upsert)");
        let loaded = snapshots.load(&a, "balance", 1).await.expect("load").expect("saved");
        assert_eq!(loaded.stream_version, StreamVersion::new(3));
        assert!(snapshots.discard(&loaded).await.expect("discard"));
        snapshots.save(&snapshot).await.expect("save");
        assert_eq!(snapshots.delete_view("balance").await.expect("delete_view"), 1);

        // A subscription with checkpoints, a lease and notifications.
        let checkpoints = PgCheckpointStore::new(&store);
        let leases = PgLeaseStore::new(&store);
        let recorder = Recorder::default();
        let mut audit = Runner::subscription("audit", store.clone(), checkpoints.clone(), recorder.clone())
            .with_policy(policy())
            .with_lease(leases.clone(), "instance-1", Duration::from_secs(5))
            .with_wakeups(notifier.subscribe());
        let summary = guarded("the subscription", audit.run_until_caught_up())
            .await
            .expect("the subscription runs");
        assert_eq!(summary.checkpoint, Some(head));
        assert_eq!(recorder.0.lock().expect("lock").len(), 7);
        assert_eq!(checkpoints.get("audit").await.expect("checkpoint"), Some(head));
        let lease = leases
            .try_acquire("audit", "instance-2", Duration::from_secs(5), Time::from_unix_millis(0))
            .await
            .expect("acquire")
            .expect("released by the runner, free to take");
        let lease = leases
            .renew(&lease, Duration::from_secs(5), Time::from_unix_millis(0))
            .await
            .expect("renew");
        leases.release(&lease).await.expect("release");

        // A projection that parks the negative deposit, then replays it.
        let balances = Balances {
            schema: schema.clone(),
            accept_negative: Arc::default(),
        };
        let dead_letters = PgDeadLetterStore::new(&store);
        let mut projection = Runner::projection(
            "balances",
            store.clone(),
            balances.clone(),
            PgProjectionStore::new(&store),
        )
        .with_policy(policy().with_poison(PoisonPolicy::retry(1, PoisonAction::Park)))
        .with_lease(leases.clone(), "instance-1", Duration::from_secs(5))
        .with_dead_letters(dead_letters.clone())
        .with_wakeups(notifier.subscribe());
        let summary = guarded("the projection", projection.run_until_caught_up())
            .await
            .expect("the projection runs");
        assert_eq!(summary.stats.parked, 1);
        let parked = dead_letters.list("balances").await.expect("list");
        assert_eq!(parked.len(), 1);
        assert_eq!(parked[0].poison.position, negative);
        // An operator's replay request, and a replay that failed again,
        // update the letter (UPDATE on the dead-letter table).
        let requested = dead_letters
            .request_replay("balances", &ReplaySelection::All, Time::from_unix_millis(2))
            .await
            .expect("request a replay");
        assert_eq!(requested, vec![negative]);
        assert_eq!(
            dead_letters
                .replay_requested("balances")
                .await
                .expect("requested")
                .len(),
            1
        );
        assert!(dead_letters
            .replay_failed("balances", &parked[0].poison)
            .await
            .expect("record a failed replay"));
        assert!(dead_letters
            .replay_requested("balances")
            .await
            .expect("requested")
            .is_empty());
        *balances.accept_negative.lock().expect("lock") = true;
        let report = guarded("replay", projection.replay_parked()).await.expect("replay");
        assert_eq!(report.replayed, vec![negative]);
        assert!(dead_letters.list("balances").await.expect("list").is_empty());
        let total: Option<i64> = sqlx::query_scalar(&format!("SELECT sum(balance)::int8 FROM \"{schema}\".balances"))
            .fetch_one(store.pool())
            .await
            .expect("the read model");
        assert_eq!(total, Some(5 + 7 + 1 + 2 + 3 + 4 - 2));
        assert_eq!(
            PgProjectionStore::new(&store)
                .checkpoint("balances")
                .await
                .expect("checkpoint"),
            Some(head)
        );

        // read_all waits for older transactions through await_horizon():
        // hold one open, commit an event behind it, read with a short wait.
        let mut holder = store.pool().acquire().await.expect("connection");
        let mut held = holder.begin().await.expect("begin");
        sqlx::query("SELECT pg_current_xact_id()")
            .execute(&mut *held)
            .await
            .expect("take a transaction id");
        let late = store
            .append(
                &Append::new()
                    .with_events(&a, ExpectedVersion::Any, vec![deposit(0)])
                    .build(),
            )
            .await
            .expect("append behind an open transaction")
            .last_position();
        let impatient = PostgresStore::connect_with(store.options().clone().read_all_settle(Duration::from_millis(50)))
            .await
            .expect("connect");
        let page = impatient
            .read_all(&read_all_request(head, 100, EventFilter::all()))
            .await
            .expect("read_all waits through await_horizon()");
        assert!(page.events.iter().all(|e| e.position != late), "held back: {page:?}");
        held.rollback().await.expect("rollback");
        drop(holder);
        impatient.pool().close().await;

        // What the role may not do: permission denied, before any trigger.
        let s = schema;
        for sql in [
            format!("UPDATE \"{s}\".events SET payload = '{{}}'"),
            format!("DELETE FROM \"{s}\".events"),
            format!("TRUNCATE \"{s}\".events"),
            format!("DELETE FROM \"{s}\".streams"),
            format!("TRUNCATE \"{s}\".commands"),
            format!("DELETE FROM \"{s}\".subscription_checkpoints"),
            format!("UPDATE \"{s}\"._sqlx_migrations SET success = false"),
            format!("CREATE TABLE \"{s}\".intruder (x int)"),
            format!("DROP TABLE \"{s}\".events"),
            format!("ALTER TABLE \"{s}\".events DISABLE TRIGGER events_are_immutable"),
            format!("SELECT \"{s}\".reject_event_change()"),
        ] {
            let state = sqlstate(sqlx::raw_sql(&sql).execute(store.pool()).await);
            assert_eq!(state, "42501", "{sql}: expected permission denied");
        }
        // And `migrate` in the default mode, which needs DDL.
        let applying = PostgresStore::connect_with(PostgresOptions {
            migrations: MigrationMode::Apply,
            ..store.options().clone()
        })
        .await
        .expect("connect");
        match applying.migrate().await {
            Err(SetupError::Prepare { .. } | SetupError::Migrate { .. }) => {}
            other => panic!("the app role must not be able to migrate: {other:?}"),
        }
        applying.pool().close().await;

        let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{s}\".events"))
            .fetch_one(store.pool())
            .await
            .expect("count");
        assert_eq!(count, 8, "every event is still there");
        drop(notifier);
        store.pool().close().await;
    })
    .await;
}

// ---------------------------------------------------------------- crypto-shredding keys

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_role_with_the_documented_grants_creates_fetches_and_forgets_keys_and_cannot_change_them() {
    use eventcore_shred::{KeyStore, KeyStoreError, PgKeyStore, SubjectId};
    let Some(admin) = admin("lp_shred").await else { return };
    with_roles(&admin, |roles| async move {
        let Roles { schema, owner, app } = &*roles;
        let owner_store = PostgresStore::connect_with(
            PostgresOptions::new(url_as(owner))
                .schema(schema.clone())
                .max_connections(2),
        )
        .await
        .expect("connect as the owner");
        owner_store.migrate().await.expect("the owner migrates");
        PgKeyStore::new(&owner_store)
            .migrate()
            .await
            .expect("and creates the key tables");
        owner_store.grant_app_role(app).await.expect("the documented grants");
        owner_store
            .grant_app_role(app)
            .await
            .expect("granting twice is harmless");
        let leaked: Option<String> = sqlx::query_scalar("SELECT current_setting('eventcore.grant_schema', true)")
            .fetch_one(owner_store.pool())
            .await
            .expect("setting read");
        assert!(
            leaked.as_deref().is_none_or(str::is_empty),
            "the script resets its settings: {leaked:?}"
        );
        owner_store.pool().close().await;

        let store = PostgresStore::connect_with(
            PostgresOptions::new(url_as(app))
                .schema(schema.clone())
                .max_connections(2)
                .migrations(MigrationMode::Verify),
        )
        .await
        .expect("connect as the app role");
        let keys = PgKeyStore::new(&store);
        let alice = SubjectId::new("alice").expect("valid subject");
        let one = [alice.clone()].into();
        let created = keys.get_or_create(&one).await.expect("creates a key");
        assert_eq!(keys.get(&one).await.expect("fetches it"), created);
        assert!(keys.forget(&alice).await.expect("forgets"));
        assert!(keys.is_forgotten(&alice).await.expect("answers"));
        assert!(keys.get(&one).await.expect("answers").is_empty());
        assert!(matches!(
            keys.get_or_create(&one).await,
            Err(KeyStoreError::SubjectForgotten { .. })
        ));

        let bob = SubjectId::new("bob").expect("valid subject");
        keys.get_or_create(&[bob].into()).await.expect("creates a key");
        for sql in [
            format!("UPDATE \"{schema}\".shred_keys SET key_version = 2"),
            format!("DELETE FROM \"{schema}\".shred_forgotten"),
            format!("UPDATE \"{schema}\".shred_forgotten SET forgotten_at = now()"),
            format!("TRUNCATE \"{schema}\".shred_keys"),
        ] {
            assert_eq!(
                sqlstate(sqlx::raw_sql(&sql).execute(store.pool()).await),
                "42501",
                "{sql}"
            );
        }
        store.pool().close().await;
    })
    .await;
}

// ---------------------------------------------------------------- MigrationMode::Verify

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_what_is_missing_or_different_and_runs_no_ddl() {
    let Some(admin) = admin("lp_verify").await else { return };
    let schema = admin.options().schema.clone();
    let verifying = PostgresStore::connect_with(admin.options().clone().migrations(MigrationMode::Verify))
        .await
        .expect("connect");
    let not_migrated = |result: Result<(), SetupError>, needle: &str| match result {
        Err(SetupError::NotMigrated { schema: named, reason }) => {
            assert_eq!(named, schema);
            assert!(reason.contains(needle), "{needle:?} not in {reason:?}");
        }
        other => panic!("expected NotMigrated ({needle}), got {other:?}"),
    };

    not_migrated(verifying.migrate().await, "does not exist");
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(&schema)
        .fetch_one(admin.pool())
        .await
        .expect("pg_namespace");
    assert!(!exists, "Verify created nothing");

    admin.migrate().await.expect("migrate");
    verifying.migrate().await.expect("migrated: verified");
    verifying.verify_migrations().await.expect("the same check");
    match migrate_subscriptions(&verifying).await {
        Err(error) => assert!(error.to_string().contains("events_notify_subscribers"), "{error}"),
        Ok(()) => panic!("Verify must report the missing notify trigger"),
    }
    migrate_subscriptions(&admin).await.expect("install the trigger");
    migrate_subscriptions(&verifying).await.expect("now verified");

    let table = format!("\"{schema}\"._sqlx_migrations");
    exec(
        &admin,
        &format!("UPDATE {table} SET checksum = '\\x00' WHERE version = 2"),
    )
    .await;
    not_migrated(
        verifying.migrate().await,
        "migration 2 (append batch) was applied with different SQL",
    );
    exec(&admin, &format!("DELETE FROM {table} WHERE version = 2")).await;
    not_migrated(verifying.migrate().await, "migrations not applied: 2 (append batch)");
    exec(
        &admin,
        &format!("INSERT INTO {table} (version, description, success, checksum, execution_time) VALUES (2, 'x', false, '\\x00', 0)"),
    )
    .await;
    not_migrated(verifying.migrate().await, "migration 2 is recorded as failed");
    exec(&admin, &format!("DELETE FROM {table} WHERE version = 2")).await;
    exec(
        &admin,
        &format!("INSERT INTO {table} (version, description, success, checksum, execution_time) VALUES (99, 'future', true, '\\x00', 0)"),
    )
    .await;
    not_migrated(
        verifying.migrate().await,
        "migration 99 is applied but unknown to this build",
    );
    verifying.pool().close().await;
    let _ = admin.drop_schema().await;
}

// ---------------------------------------------------------------- injection

/// A URL nothing listens on: a name refused there was refused before any
/// connection, let alone any SQL.
const NOWHERE: &str = "postgres://nobody@127.0.0.1:1/nowhere";

fn hostile_identifiers() -> Vec<String> {
    let mut names: Vec<String> = [
        "",
        "\"; DROP TABLE events; --",
        "eventcore\"; DROP SCHEMA public CASCADE; --",
        "Robert'); DROP TABLE students;--",
        "a;b",
        "a'b",
        "a\"b",
        "\"eventcore\"",
        "a b",
        "a-b",
        "a.b",
        "public.events",
        "a\\b",
        "a\0b",
        "a$b",
        "a/*b*/",
        "eventcore\n",
        " eventcore",
        "EventCore",
        "EVENTCORE",
        "1events",
        "pg_catalog",
        "pg_temp",
        "\u{0435}ventcore",  // Cyrillic е
        "event\u{0441}ore",  // Cyrillic с
        "\u{FF45}ventcore",  // fullwidth ｅ
        "event\u{200B}core", // zero-width space
        "eventcore\u{0301}", // combining accent
        "ev\u{0131}ntcore",  // dotless ı
        "\u{1D41E}ventcore", // mathematical bold e
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    names.push("a".repeat(MAX_SCHEMA_NAME_BYTES + 1));
    names.push("a".repeat(10_000));
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_schema_and_role_names_are_refused_with_a_typed_error_before_any_sql() {
    for name in hostile_identifiers() {
        let options = PostgresOptions::new(NOWHERE).schema(name.clone());
        match options.validate() {
            Err(SetupError::InvalidSchema { name: refused, reason }) => {
                assert_eq!(refused, name);
                assert!(!reason.is_empty());
            }
            other => panic!("{name:?} must be refused, got {other:?}"),
        }
        match PostgresStore::connect_with(options).await {
            Err(SetupError::InvalidSchema { name: refused, .. }) => assert_eq!(refused, name),
            other => panic!("{name:?}: connect_with must refuse it before connecting, got {other:?}"),
        }
        assert!(
            matches!(app_role_grants(&name, "app"), Err(SetupError::InvalidSchema { .. })),
            "{name:?}"
        );
        match app_role_grants("eventcore", &name) {
            Err(SetupError::InvalidRole { name: refused, .. }) => assert_eq!(refused, name),
            other => panic!("{name:?} as a role must be refused, got {other:?}"),
        }
    }
    // The limits themselves are fine.
    let longest = "a".repeat(MAX_SCHEMA_NAME_BYTES);
    for name in ["eventcore", "_", "a1_b2", longest.as_str()] {
        PostgresOptions::new(NOWHERE).schema(name).validate().expect(name);
        app_role_grants(name, name).expect(name);
    }
    // A valid name is written into the grants as a quoted identifier only.
    let sql = app_role_grants("billing", "billing_app").expect("valid");
    assert!(!sql.contains(":\""), "every variable filled in");
    assert_eq!(
        sql.matches("\"billing\"").count(),
        APP_ROLE_GRANTS_SQL.matches(":\"schema\"").count()
    );
}

fn hostile_strings() -> Vec<String> {
    let mut values: Vec<String> = [
        "'); DROP TABLE events; --",
        "\"; DROP SCHEMA public CASCADE; --",
        "Robert'); DROP TABLE streams;--",
        "a'b\"c\\d",
        "O''Reilly\\'",
        "$1::text",
        "$$; DROP TABLE commands; $$",
        "%_%",
        "\\x00",
        "E'\\\\'",
        "/* comment */ --",
        "\u{FF53}\u{FF54}\u{FF52}\u{FF45}\u{FF41}\u{FF4D}",
        "\u{1F642} stream",
        "\u{202E}rtl override",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    values.push("'".repeat(255));
    values.push(format!("{}\\", "\"".repeat(254)));
    values
}

/// Tables, functions and triggers of `schema`, to compare before and after.
async fn objects(store: &PostgresStore) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relkind::text || ' ' || c.relname::text FROM pg_class c \
           JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 \
         UNION ALL SELECT 'f ' || p.proname::text FROM pg_proc p \
           JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1 \
         UNION ALL SELECT 't ' || t.tgname::text FROM pg_trigger t \
           JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
           WHERE n.nspname = $1 \
         ORDER BY 1",
    )
    .bind(&store.options().schema)
    .fetch_all(store.pool())
    .await
    .expect("catalog")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_and_names_are_stored_and_read_back_byte_for_byte_and_the_schema_is_intact() {
    let Some(store) = eventcore_tests::postgres::fresh_store("lp_inject").await else {
        return;
    };
    migrate_subscriptions(&store).await.expect("subscriptions");
    let before = objects(&store).await;
    assert!(before.iter().any(|o| o == "r events"), "{before:?}");
    let values = hostile_strings();
    let streams: Vec<StreamId> = values.iter().map(|v| stream(v)).collect();
    // Event types allow no whitespace.
    let types: Vec<EventType> = values
        .iter()
        .map(|v| v.replace(char::is_whitespace, "/**/"))
        .filter(|v| v.len() <= 255)
        .map(|v| EventType::new(v).expect("valid event type"))
        .collect();

    // Appends: one per stream, a multi-stream one over all of them, and a
    // group commit.
    for (i, s) in streams.iter().enumerate() {
        let event = NewEvent {
            event_type: types[i % types.len()].clone(),
            payload: Payload::from_value(&serde_json::json!({ "text": values[i] })).expect("json"),
            ..deposit(1)
        };
        store
            .append(
                &Append::new()
                    .with_events(s, ExpectedVersion::NoStream, vec![event])
                    .build(),
            )
            .await
            .unwrap_or_else(|e| panic!("append to {s:?}: {e}"));
    }
    let mut all = Append::new();
    for s in &streams {
        all = all.with_events(s, ExpectedVersion::Exact(StreamVersion::new(1)), vec![deposit(2)]);
    }
    store.append(&all.build()).await.expect("multi-stream append");
    let batch = store
        .append_batch(&[
            Append::new()
                .with_events(
                    &streams[0],
                    ExpectedVersion::Exact(StreamVersion::new(2)),
                    vec![deposit(3)],
                )
                .build(),
            Append::new()
                .with_events(&streams[1], ExpectedVersion::NoStream, vec![deposit(3)])
                .build(),
        ])
        .await;
    assert!(batch[0].is_ok(), "{:?}", batch[0]);
    assert_conflict(batch[1].clone(), &streams[1], ExpectedVersion::NoStream, 2);

    // Read back exactly.
    let slices = read(&store, &streams).await;
    for ((slice, s), value) in slices.iter().zip(&streams).zip(&values) {
        assert_eq!(slice.stream.as_str().as_bytes(), value.as_bytes());
        assert!(slice.events.iter().all(|e| &e.stream_id == s));
        let first = &slice.events[0];
        let payload: serde_json::Value = serde_json::from_str(first.payload.as_json()).expect("json");
        assert_eq!(payload["text"].as_str().map(str::as_bytes), Some(value.as_bytes()));
    }
    let log: Vec<RecordedEvent> = store
        .read_all(&read_all_request(GlobalPosition::START, 1_000, EventFilter::all()))
        .await
        .expect("read_all")
        .events;
    assert_eq!(log.len(), 2 * streams.len() + 1);
    for t in &types {
        let typed = store
            .read_all(&read_all_request(
                GlobalPosition::START,
                1_000,
                EventFilter::all().with_event_types([t.clone()]),
            ))
            .await
            .expect("by type")
            .events;
        let expected: Vec<GlobalPosition> = log.iter().filter(|e| &e.event_type == t).map(|e| e.position).collect();
        assert!(!expected.is_empty());
        assert_eq!(
            typed.iter().map(|e| e.position).collect::<Vec<_>>(),
            expected,
            "type {t:?}"
        );
    }
    for s in &streams {
        let only = store
            .read_all(&read_all_request(
                GlobalPosition::START,
                1_000,
                EventFilter::all().with_streams([s.clone()]),
            ))
            .await
            .expect("by stream")
            .events;
        assert!(!only.is_empty() && only.iter().all(|e| &e.stream_id == s), "{s:?}");
    }
    // A prefix is a prefix, not a LIKE pattern: "%" matches only "%_%".
    for prefix in ["%", "'); DROP", "\\", "$", "\u{FF53}"] {
        let matched = store
            .read_all(&read_all_request(
                GlobalPosition::START,
                1_000,
                EventFilter::all().with_stream_prefix(prefix),
            ))
            .await
            .expect("by prefix")
            .events;
        let expected: Vec<GlobalPosition> = log
            .iter()
            .filter(|e| e.stream_id.as_str().starts_with(prefix))
            .map(|e| e.position)
            .collect();
        assert!(!expected.is_empty(), "{prefix:?}");
        assert_eq!(
            matched.iter().map(|e| e.position).collect::<Vec<_>>(),
            expected,
            "prefix {prefix:?}"
        );
    }

    // Names of checkpoints, leases, projections, dead letters and views.
    let checkpoints = PgCheckpointStore::new(&store);
    let leases = PgLeaseStore::new(&store);
    let projections = PgProjectionStore::new(&store);
    let dead_letters = PgDeadLetterStore::new(&store);
    let snapshots = PgSnapshotStore::new(&store);
    let token = FencingToken::new(1);
    for (i, name) in values.iter().enumerate() {
        let at = log[i].position;
        checkpoints.claim(name, token).await.expect("claim");
        checkpoints.save(name, token, at).await.expect("save");
        assert_eq!(checkpoints.get(name).await.expect("get"), Some(at), "{name:?}");

        let lease = leases
            .try_acquire(name, name, Duration::from_secs(5), Time::from_unix_millis(0))
            .await
            .expect("acquire")
            .expect("free");
        assert_eq!(
            (lease.name.as_str(), lease.holder.as_str()),
            (name.as_str(), name.as_str())
        );
        let lease = leases
            .renew(&lease, Duration::from_secs(5), Time::from_unix_millis(0))
            .await
            .expect("renew");
        leases.release(&lease).await.expect("release");

        let projection = format!("p{name}");
        projections.claim(&projection, token).await.expect("claim projection");
        let tx = projections.begin(&projection, token).await.expect("begin");
        projections.commit(tx, at).await.expect("commit");
        assert_eq!(projections.checkpoint(&projection).await.expect("checkpoint"), Some(at));

        let event = log[i].clone();
        dead_letters
            .park(DeadLetter {
                subscription: name.clone(),
                poison: PoisonEvent {
                    position: event.position,
                    stream: event.stream_id.clone(),
                    version: event.version,
                    event_type: event.event_type.clone(),
                    cause: PoisonCause::Handler(name.clone()),
                },
                parked_at: Time::from_unix_millis(1),
                replay_requested_at: None,
                event,
            })
            .await
            .expect("park");
        let parked = dead_letters.list(name).await.expect("list");
        assert_eq!(parked.len(), 1, "{name:?}");
        assert_eq!(parked[0].subscription.as_bytes(), name.as_bytes());
        assert_eq!(parked[0].event.stream_id, log[i].stream_id);
        assert!(matches!(&parked[0].poison.cause, PoisonCause::Handler(m) if m == name));
        assert!(dead_letters.remove(name, at).await.expect("remove"));

        let snapshot = Snapshot {
            stream: streams[i].clone(),
            view: name.clone(),
            view_version: 1,
            stream_version: StreamVersion::new(1),
            last_event_id: log[i].event_id,
            payload: serde_json::json!({ "view": name }).to_string(),
            taken_at: Time::from_unix_millis(1),
        };
        snapshots.save(&snapshot).await.expect("save snapshot");
        let loaded = snapshots
            .load(&streams[i], name, 1)
            .await
            .expect("load")
            .expect("saved");
        assert_eq!(loaded.view.as_bytes(), name.as_bytes());
        assert_eq!(snapshots.delete_view(name).await.expect("delete_view"), 1);
    }
    // NUL cannot be stored in a PostgreSQL text: an error, never a panic or
    // a truncated name.
    let nul = "audit\0'); DROP TABLE events; --";
    assert!(checkpoints.claim(nul, token).await.is_err());
    assert!(checkpoints.get(nul).await.is_err());
    assert!(dead_letters.list(nul).await.is_err());
    assert!(leases
        .try_acquire(nul, "x", Duration::from_secs(1), Time::from_unix_millis(0))
        .await
        .is_err());
    assert!(snapshots.load(&streams[0], nul, 1).await.is_err());

    // Nothing was dropped, created or changed.
    assert_eq!(objects(&store).await, before);
    let s = &store.options().schema;
    let count: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{s}\".events"))
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(usize::try_from(count).ok(), Some(log.len()));
    let heads: Vec<u64> = read(&store, &streams).await.iter().map(|s| s.head.get()).collect();
    let mut expected = vec![2; streams.len()];
    expected[0] = 3;
    assert_eq!(heads, expected);
    let _ = store.drop_schema().await;
}
