//! Retention on PostgreSQL, beyond the conformance group: the immutability
//! triggers still refuse every other way of changing events, the archive
//! holds exactly the removed events, a run removes in batches of one
//! transaction each, `read_all` caps its answer when more ranges end in it
//! than its limit, and the least-privilege application role cannot remove
//! anything.
//!
//! Each test uses its own schema. Without a database the tests skip loudly,
//! except under `CI=true`, where they fail.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use eventcore::*;
use eventcore_postgres::{MigrationMode, PostgresOptions, PostgresStore};
use eventcore_tests::conformance::{day, read, read_all_request, Append};
use eventcore_tests::postgres::{database_url, fresh_store};
use eventcore_tokio::EventStore;
use sqlx::Row;

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

/// The SQLSTATE a statement fails with, run in a transaction of its own
/// (rolled back), with the retention setting on when `setting_on`.
async fn refused_with(store: &PostgresStore, sql: &str, setting_on: bool) -> String {
    let mut tx = store.pool().begin().await.expect("begin");
    if setting_on {
        sqlx::query("SELECT set_config('eventcore.retention', 'on', true)")
            .execute(&mut *tx)
            .await
            .expect("set the setting");
    }
    match sqlx::raw_sql(sql).execute(&mut *tx).await {
        Ok(done) => panic!("{sql}: expected a refusal, it affected {} rows", done.rows_affected()),
        Err(error) => error
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned())
            .unwrap_or_else(|| panic!("{sql}: not a database error: {error}")),
    }
}

/// The SQLSTATE a statement fails with.
async fn refused(store: &PostgresStore, sql: &str) -> String {
    refused_with(store, sql, false).await
}

async fn count(store: &PostgresStore, table: &str) -> i64 {
    let schema = &store.options().schema;
    sqlx::query_scalar(&format!("SELECT count(*) FROM \"{schema}\".{table}"))
        .fetch_one(store.pool())
        .await
        .expect("count")
}

async fn append(store: &PostgresStore, stream: &StreamId, events: usize) {
    let request = Append::new().to(stream, ExpectedVersion::Any, events).build();
    store.append(&request).await.expect("append");
}

fn keep(category: &str, count: u64) -> RetentionPlan {
    RetentionPlan::new([RetentionPolicy::new(category).with_max_count(count)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_other_way_of_changing_events_is_still_refused() {
    let Some(store) = fresh_store("ret_triggers").await else {
        return;
    };
    let s = StreamId::new("trg-1").expect("valid");
    append(&store, &s, 3).await;
    store
        .apply_retention(&keep("trg-", 1), day(1), RetentionOptions::default())
        .await
        .expect("the sanctioned path removes");
    let schema = &store.options().schema;
    for sql in [
        format!("DELETE FROM \"{schema}\".events"),
        format!("UPDATE \"{schema}\".events SET event_type = 'Changed'"),
        format!("TRUNCATE \"{schema}\".events"),
        format!("UPDATE \"{schema}\".streams SET removed_through = 0"),
        format!("UPDATE \"{schema}\".streams SET removed_through = 3"),
    ] {
        assert_eq!(refused(&store, &sql).await, "EV003", "{sql}");
    }
    // The setting lets a DELETE through, never an UPDATE or TRUNCATE; and
    // removed_through never falls or passes the head.
    for sql in [
        format!("UPDATE \"{schema}\".events SET event_type = 'Changed'"),
        format!("TRUNCATE \"{schema}\".events"),
        format!("UPDATE \"{schema}\".streams SET removed_through = 1"),
        format!("UPDATE \"{schema}\".streams SET removed_through = 4"),
    ] {
        assert_eq!(
            refused_with(&store, &sql, true).await,
            "EV003",
            "{sql} with the setting on"
        );
    }
    assert_eq!(count(&store, "events").await, 1, "the kept event is there");
    let slice = &read(&store, std::slice::from_ref(&s)).await[0];
    assert_eq!((slice.removed_through.get(), slice.head.get()), (2, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_holds_exactly_the_removed_events() {
    let Some(store) = fresh_store("ret_archive").await else {
        return;
    };
    let (a, b) = (
        StreamId::new("arc-a").expect("valid"),
        StreamId::new("arc-b").expect("valid"),
    );
    append(&store, &a, 4).await;
    append(&store, &b, 1).await;
    let before = read(&store, &[a.clone(), b.clone()]).await;
    let report = store
        .apply_retention(&keep("arc-", 1), day(3), RetentionOptions::default().archived())
        .await
        .expect("retention");
    assert_eq!((report.events_removed(), report.archived), (3, 3));
    let schema = &store.options().schema;
    let rows = sqlx::query(&format!(
        "SELECT position, event_id::text, stream_id, version, reason, removed_at FROM \"{schema}\".events_archive \
         ORDER BY position"
    ))
    .fetch_all(store.pool())
    .await
    .expect("archive");
    let archived: Vec<(i64, String, String, i64)> =
        rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
    let removed: Vec<(i64, String, String, i64)> = before[0].events[..3]
        .iter()
        .map(|e| {
            (
                e.position.get() as i64,
                e.event_id.as_uuid().to_string(),
                e.stream_id.to_string(),
                e.version.get() as i64,
            )
        })
        .collect();
    assert_eq!(archived, removed, "exactly the removed events, nothing of arc-b");
    for row in &rows {
        assert_eq!(row.get::<String, _>(4), "max_count");
        assert_eq!(row.get::<i64, _>(5) as u64, day(3).as_unix_nanos());
    }
    let plain = store
        .apply_retention(&keep("arc-", 0), day(3), RetentionOptions::default())
        .await
        .expect("retention without archive");
    assert_eq!((plain.events_removed(), plain.archived), (2, 0));
    assert_eq!(count(&store, "events_archive").await, 3, "archiving only when asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_removes_in_batches_of_one_transaction_each() {
    let Some(store) = fresh_store("ret_batches").await else {
        return;
    };
    let (a, b) = (
        StreamId::new("bat-a").expect("valid"),
        StreamId::new("bat-b").expect("valid"),
    );
    append(&store, &a, 5).await;
    append(&store, &b, 3).await;
    let options = RetentionOptions {
        batch_size: 2,
        ..RetentionOptions::default()
    };
    let report = store
        .apply_retention(&keep("bat-", 0), day(1), options)
        .await
        .expect("retention");
    assert_eq!(report.events_removed(), 8);
    assert_eq!(report.batches, 4, "8 events, 2 per transaction");
    let versions: Vec<(String, u64, u64)> = report
        .ranges
        .iter()
        .map(|r| (r.stream.to_string(), r.first_version.get(), r.last_version.get()))
        .collect();
    assert_eq!(
        versions,
        [
            ("bat-a", 1, 2),
            ("bat-a", 3, 4),
            ("bat-a", 5, 5),
            ("bat-b", 1, 1),
            ("bat-b", 2, 3)
        ]
        .map(|(s, f, l)| (s.to_owned(), f, l))
        .to_vec(),
        "a long stream spans batches, each its own range"
    );
    assert_eq!(count(&store, "events").await, 0);
    assert_eq!(count(&store, "removed_ranges").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_all_is_complete_only_through_the_last_range_it_could_report() {
    let Some(store) = fresh_store("ret_ranges").await else {
        return;
    };
    for i in 0..4 {
        let s = StreamId::new(format!("rng-{i}")).expect("valid");
        append(&store, &s, 2).await;
    }
    let tail = StreamId::new("tail").expect("valid");
    append(&store, &tail, 1).await;
    store
        .apply_retention(&keep("rng-", 0), day(1), RetentionOptions::default())
        .await
        .expect("retention");
    let page = store
        .read_all(&read_all_request(GlobalPosition::START, 2, EventFilter::all()))
        .await
        .expect("read_all");
    assert_eq!(page.removed.len(), 2, "no more ranges than the limit");
    assert_eq!(page.complete_through, page.removed[1].last_position);
    assert!(page.events.is_empty(), "the tail lies beyond");
    // Page by page, every range is told once and the tail arrives.
    let mut after = GlobalPosition::START;
    let (mut ranges, mut events) = (0, 0);
    while {
        let page = store
            .read_all(&read_all_request(after, 2, EventFilter::all()))
            .await
            .expect("read_all");
        ranges += page.removed.len();
        events += page.events.len();
        let moved = page.complete_through > after;
        after = page.complete_through;
        moved
    } {}
    assert_eq!((ranges, events), (4, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_privilege_role_cannot_remove_anything() {
    let Some(owner) = fresh_store("ret_lp").await else {
        return;
    };
    let schema = owner.options().schema.clone();
    let app = format!("{schema}_app");
    sqlx::raw_sql(&format!("CREATE ROLE \"{app}\" LOGIN"))
        .execute(owner.pool())
        .await
        .expect("create the app role");
    let outcome = async {
        owner.grant_app_role(&app).await.expect("the documented grants");
        let s = StreamId::new("lp-1").expect("valid");
        append(&owner, &s, 3).await;
        let store = PostgresStore::connect_with(
            PostgresOptions::new(url_as(&app))
                .schema(schema.clone())
                .max_connections(2)
                .migrations(MigrationMode::Verify),
        )
        .await
        .expect("connect as the app role");
        match store
            .apply_retention(&keep("lp-", 0), day(1), RetentionOptions::default())
            .await
        {
            Err(StoreError::Permanent { .. }) => {}
            other => panic!("the app role must not remove events: {other:?}"),
        }
        for sql in [
            format!("SELECT \"{schema}\".remove_events(ARRAY['lp-1'], ARRAY[3::int8], ARRAY['max_count'], 0, false)"),
            format!("DELETE FROM \"{schema}\".events"),
            format!("SELECT * FROM \"{schema}\".events_archive"),
        ] {
            assert_eq!(refused(&store, &sql).await, "42501", "{sql}: permission denied");
        }
        // Reads, which need the removed ranges, still work for it.
        let page = store
            .read_all(&read_all_request(GlobalPosition::START, 10, EventFilter::all()))
            .await
            .expect("the app role reads the log");
        assert_eq!(page.events.len(), 3);
        store.pool().close().await;
        assert_eq!(count(&owner, "events").await, 3, "nothing was removed");
    };
    let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    for sql in [
        format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
        format!("DROP OWNED BY \"{app}\""),
        format!("DROP ROLE IF EXISTS \"{app}\""),
    ] {
        let _ = sqlx::raw_sql(&sql).execute(owner.pool()).await;
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_role_with_the_documented_grants_runs_retention() {
    let Some(owner) = fresh_store("ret_role").await else {
        return;
    };
    let schema = owner.options().schema.clone();
    let role = format!("{schema}_ret");
    let s = |sql: &str| {
        sql.replace("eventcore_retention", &role)
            .replace("eventcore.", &format!("\"{schema}\"."))
    };
    sqlx::raw_sql(&format!("CREATE ROLE \"{role}\" LOGIN"))
        .execute(owner.pool())
        .await
        .expect("create the maintenance role");
    let outcome = async {
        // The grants docs/data-lifecycle.md lists, schema and role filled in.
        for grant in [
            "GRANT USAGE ON SCHEMA eventcore TO eventcore_retention",
            "GRANT SELECT ON eventcore._sqlx_migrations TO eventcore_retention",
            "GRANT SELECT, DELETE ON eventcore.events TO eventcore_retention",
            "GRANT SELECT, UPDATE ON eventcore.streams TO eventcore_retention",
            "GRANT SELECT, INSERT ON eventcore.removed_ranges, eventcore.events_archive TO eventcore_retention",
            "GRANT EXECUTE ON FUNCTION eventcore.remove_events TO eventcore_retention",
        ] {
            let grant = s(grant).replace("SCHEMA eventcore", &format!("SCHEMA \"{schema}\""));
            let grant = grant.replace(&format!(" TO {role}"), &format!(" TO \"{role}\""));
            sqlx::raw_sql(&grant)
                .execute(owner.pool())
                .await
                .unwrap_or_else(|e| panic!("{grant}: {e}"));
        }
        let stream = StreamId::new("mr-1").expect("valid");
        append(&owner, &stream, 3).await;
        let store = PostgresStore::connect_with(
            PostgresOptions::new(url_as(&role))
                .schema(schema.clone())
                .max_connections(2)
                .migrations(MigrationMode::Verify),
        )
        .await
        .expect("connect as the maintenance role");
        store.migrate().await.expect("Verify: the schema is migrated");
        let report = store
            .apply_retention(&keep("mr-", 1), day(1), RetentionOptions::default().archived())
            .await
            .expect("the maintenance role removes");
        assert_eq!((report.events_removed(), report.archived), (2, 2));
        // Any other way is still refused for it.
        let sql = format!("DELETE FROM \"{schema}\".events");
        assert_eq!(refused(&store, &sql).await, "EV003");
        store.pool().close().await;
        assert_eq!(count(&owner, "events").await, 1);
    };
    let result = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(outcome)).await;
    for sql in [
        format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"),
        format!("DROP OWNED BY \"{role}\""),
        format!("DROP ROLE IF EXISTS \"{role}\""),
    ] {
        let _ = sqlx::raw_sql(&sql).execute(owner.pool()).await;
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// The figures of docs/benchmarks.md ("retention"), not a check: run with
/// `CI=true cargo test --release -p eventcore-tests --test postgres_retention
/// -- --ignored --nocapture`. 1,000 streams of 100 events: a 500-event
/// `read_all` (the store's statement, as the client sends it), all 100,000
/// events removed (`max_count` 0, batches of 1,000), then `read_all` from 0
/// behind the 1,000 ranges (500 reported per answer) and past them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement; see docs/benchmarks.md"]
async fn measure_read_all_and_removal() {
    let Some(store) = fresh_store("ret_measure").await else {
        return;
    };
    let streams: Vec<StreamId> = (0..1000)
        .map(|i| StreamId::new(format!("m-{i}")).expect("valid"))
        .collect();
    for s in &streams {
        append(&store, s, 100).await;
    }
    let page = |after| read_all_request(after, 500, EventFilter::all());
    let time = |label: &str, calls: u32, elapsed: std::time::Duration| {
        println!("{label}: {:?} per call ({calls} calls)", elapsed / calls);
    };
    for _ in 0..20 {
        store.read_all(&page(GlobalPosition::START)).await.expect("read_all");
    }
    let started = std::time::Instant::now();
    for _ in 0..1000 {
        store.read_all(&page(GlobalPosition::START)).await.expect("read_all");
    }
    time("read_all of 500 events, no ranges", 1000, started.elapsed());

    let started = std::time::Instant::now();
    let report = store
        .apply_retention(&keep("m-", 0), day(1), RetentionOptions::default())
        .await
        .expect("retention");
    println!(
        "removed {} events in {} transactions: {:?}",
        report.events_removed(),
        report.batches,
        started.elapsed()
    );
    for s in &streams {
        append(&store, s, 1).await;
    }
    let started = std::time::Instant::now();
    for _ in 0..200 {
        let answer = store.read_all(&page(GlobalPosition::START)).await.expect("read_all");
        assert_eq!(answer.removed.len(), 500);
    }
    time(
        "read_all from 0 behind 1,000 ranges (500 reported)",
        200,
        started.elapsed(),
    );
    let past = report.ranges.iter().map(|r| r.last_position).max().expect("ranges");
    let started = std::time::Instant::now();
    for _ in 0..1000 {
        store.read_all(&page(past)).await.expect("read_all");
    }
    time("read_all of 500 events past the ranges", 1000, started.elapsed());
}
