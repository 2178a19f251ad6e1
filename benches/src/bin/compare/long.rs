//! Rows over long streams, where stream views matter.
//!
//! - **W2L**: the W2 transfer between random accounts, but every account
//!   starts with `long_events` events (2,000). EventCore runs the view
//!   `Transfer` on an executor with the default view cache and persisted
//!   snapshots; the raw floor is W2's (an application cache of each account's
//!   fold and version, the newer rows read in one statement, both events
//!   inserted in one statement under the unique constraint). Then, at half
//!   the time, the whole-fold `PlainTransfer` against the same floor: without
//!   a stream cache (it reads both whole streams every time) and with one
//!   (it folds both whole cached streams every time).
//! - **C**: cold start. One stream of `cold_events` events (100,000); a warm
//!   executor with snapshots runs one view command on it (a full fold that
//!   writes a snapshot at the head) and flushes. Then, `cold_reps` times, a
//!   fresh executor (empty view cache, same store and snapshot store) runs
//!   its first command on the stream, alternating with a fresh executor
//!   without snapshots (a full fold), each counting the events its reads
//!   returned and the snapshot rows loaded. Medians are reported.

use crate::backend::Backend;
use crate::{abba, ec, err, fmt_rate, raw, Config, Result, Row, INITIAL};
use eventcore::{StreamId, View, ViewKind};
use eventcore_benches::bank::Account;
use eventcore_benches::stream;
use eventcore_tokio::{Executor, SnapshotStore};
use std::sync::Arc;
use std::time::Instant;

/// The W2L rows: the view `Transfer` against the floor, then the plain
/// whole-fold `PlainTransfer` (without and with the stream cache).
pub async fn w2_long<B: Backend>(cfg: &Config, backend: &B) -> Result<Vec<Row>> {
    let clients = 8u32;
    let accounts = cfg.long_accounts;
    let events = cfg.long_events;
    let history = ec::account_history(events, INITIAL);

    let raw = raw::Raw::create(&cfg.url, &cfg.schema("W2L", "raw"), clients)
        .await
        .map_err(err)?;
    let began = Instant::now();
    raw::TransferClient::fill_all(&raw, accounts, &history)
        .await
        .map_err(err)?;
    let raw_fill = began.elapsed();
    let cache = raw::AccountCache::default();
    let raw_clients = || -> Vec<raw::TransferClient> {
        (0..clients)
            .map(|i| raw::TransferClient::new(raw.clone(), cache.clone(), u64::from(i) + 1, accounts))
            .collect()
    };

    let store = backend.fresh(&cfg.schema("W2L", "ec"), clients).await?;
    let began = Instant::now();
    let ids = Arc::new(ec::TransferClient::fill_all(&store, accounts, events, INITIAL).await?);
    let ec_fill = began.elapsed();

    let mut rows = Vec::new();
    let snapshots = backend.snapshots(&store);
    let executor = Arc::new(Executor::new(store.clone()).with_snapshots(snapshots));
    let ec_clients: Vec<_> = (0..clients)
        .map(|i| ec::TransferClient::new(executor.clone(), ids.clone(), u64::from(i) + 1))
        .collect();
    let (eventcore, raw_tally) = abba(cfg, raw_clients(), |c| c.transfer(), ec_clients, |c| c.transfer()).await;
    executor.flush_snapshots().await;
    let snaps = executor.snapshot_stats();
    let view_cache = executor.view_cache_stats().map_or_else(
        || "view cache off".to_string(),
        |(n, bytes, _)| format!("view cache {n} views, {bytes} B"),
    );
    rows.push(Row {
        workload: format!(
            "W2L two-stream transfer, {accounts} accounts of ≥ {} events, {clients} clients, view `Transfer` (default view cache + snapshots)",
            fmt_rate(events as f64)
        ),
        unit: "transfers/s",
        target: 1.0,
        eventcore,
        raw: raw_tally,
        extra: format!(
            "setup: {} events per side filled in {:.1} s (raw) / {:.1} s (EventCore); {view_cache}; snapshots written {}, loaded {}",
            fmt_rate(f64::from(accounts) * events as f64),
            raw_fill.as_secs_f64(),
            ec_fill.as_secs_f64(),
            snaps.written,
            snaps.loaded,
        ),
        text: None,
    });
    drop(executor);

    // The whole-fold baseline, at half the time: the same floor (its cache
    // kept warm) against `PlainTransfer` on the same, by now longer, streams.
    let half = Config {
        measure: cfg.measure / 2,
        ..cfg.clone()
    };
    for stream_cache in [false, true] {
        let mut plain = Executor::new(store.clone());
        if stream_cache {
            plain = plain.with_stream_cache(ec::CACHE_EVENTS);
        }
        let plain = Arc::new(plain);
        let ec_clients: Vec<_> = (0..clients)
            .map(|i| ec::TransferClient::new(plain.clone(), ids.clone(), u64::from(i) + 101).plain())
            .collect();
        let (eventcore, raw_tally) = abba(&half, raw_clients(), |c| c.transfer(), ec_clients, |c| c.transfer()).await;
        rows.push(Row {
            workload: format!(
                "W2L two-stream transfer, {accounts} accounts of ≥ {} events, {clients} clients, whole-fold `PlainTransfer`{} (half time)",
                fmt_rate(events as f64),
                if stream_cache { ", stream cache" } else { ", no stream cache" }
            ),
            unit: "transfers/s",
            target: 1.0,
            eventcore,
            raw: raw_tally,
            extra: String::new(),
            text: None,
        });
    }
    Ok(rows)
}

/// One measured first command.
#[derive(Debug, Clone, Copy)]
struct Start {
    first: ec::FirstCommand,
    /// Snapshots the fresh executor loaded and used (its `snapshot_stats`).
    rows: u64,
    /// Snapshot rows loaded by the store's own counter, if it has one.
    store_rows: Option<u64>,
    /// Events after the newest snapshot when the command started.
    tail: u64,
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

fn span(values: impl Iterator<Item = u64> + Clone) -> String {
    let lo = values.clone().min().unwrap_or(0);
    let hi = values.max().unwrap_or(0);
    if lo == hi {
        fmt_rate(lo as f64)
    } else {
        format!("{}–{}", fmt_rate(lo as f64), fmt_rate(hi as f64))
    }
}

fn ms(micros: u64) -> String {
    format!("{:.2} ms", micros as f64 / 1000.0)
}

/// The C row: cold start from a snapshot against a full fold.
pub async fn cold_start<B: Backend>(cfg: &Config, backend: &B) -> Result<Row> {
    /// Cold start time over full-fold time, at most.
    const TARGET: f64 = 0.05;
    let n = cfg.cold_events;
    let id: StreamId = stream("cold");
    let store = backend.fresh(&cfg.schema("C", "ec"), 2).await?;
    let began = Instant::now();
    ec::load(&store, &id, &ec::account_history(n, INITIAL), ec::FILL_APPEND).await?;
    let fill = began.elapsed();
    let snapshots = backend.snapshots(&store);

    // A warm executor writes the snapshot: its first command folds the whole
    // stream and crosses a multiple of SNAPSHOT_EVERY.
    let warm = Executor::new(ec::Counting::new(store.clone())).with_snapshots(snapshots.clone());
    let seeded = ec::first_command(&warm, &id).await?;
    warm.flush_snapshots().await;
    let written = warm.snapshot_stats().written;
    drop(warm);
    let mut head = n as u64 + 1;

    let kind = ViewKind::of::<Account>();
    let mut cold: Vec<Start> = Vec::new();
    let mut full: Vec<ec::FirstCommand> = Vec::new();
    let mut snapshot_versions = Vec::new();
    for rep in 0..cfg.cold_reps {
        let newest = SnapshotStore::load(&snapshots, &id, Account::NAME, kind.version())
            .await
            .map_err(err)?
            .ok_or("cold start: no snapshot was written for the stream")?;
        let at = newest.stream_version.get();
        snapshot_versions.push(at);
        // ABAB…: alternate which side goes first.
        let order = if rep % 2 == 0 { [true, false] } else { [false, true] };
        for with_snapshots in order {
            let counting = ec::Counting::new(store.clone());
            if with_snapshots {
                let executor = Executor::new(counting).with_snapshots(snapshots.clone());
                let store_before = B::rows_loaded(&snapshots);
                let first = ec::first_command(&executor, &id).await?;
                let rows = executor.snapshot_stats().loaded;
                let store_rows = B::rows_loaded(&snapshots).zip(store_before).map(|(a, b)| a - b);
                executor.flush_snapshots().await;
                cold.push(Start {
                    first,
                    rows,
                    store_rows,
                    tail: head - at,
                });
            } else {
                let executor = Executor::new(counting);
                full.push(ec::first_command(&executor, &id).await?);
            }
            head += 1;
        }
    }

    let cold_ms = median(cold.iter().map(|s| s.first.micros).collect());
    let full_ms = median(full.iter().map(|f| f.micros).collect());
    let ratio = cold_ms as f64 / full_ms.max(1) as f64;
    let time_verdict = if ratio <= TARGET { "met" } else { "MISSED" };
    // Events read beyond the tail after the newest snapshot (the executor
    // may re-read the snapshot's own last event to check its history).
    let beyond = cold
        .iter()
        .map(|s| s.first.events_read.saturating_sub(s.tail))
        .max()
        .unwrap_or(0);
    let tail_verdict = if beyond == 0 {
        "met".to_string()
    } else {
        format!("MISSED by {beyond} event{}", if beyond == 1 { "" } else { "s" })
    };
    let rows_loaded = span(cold.iter().map(|s| s.rows));
    let store_rows = if cold.iter().all(|s| s.store_rows.is_some()) {
        format!(
            ", snapshot rows fetched {} (PgSnapshotStore::loads)",
            span(cold.iter().map(|s| s.store_rows.unwrap_or(0)))
        )
    } else {
        String::new()
    };
    let text = format!(
        "| C cold start: first command (`Deposit` over the `Account` view) of a fresh executor on a stream of {} events | {} median from the snapshot | {} median full fold | {ratio:.3}× | ≤ {TARGET:.2}× {time_verdict} | {} reps each, a fresh executor each, alternating; \
         cold: events read {} (events after the newest snapshot {}: reads at most those {}), snapshots loaded and used {rows_loaded} (executor's snapshot_stats){store_rows}, read requests {}, time {}–{}; \
         full fold (fresh executor, no snapshots): events read {}, 0 snapshot rows, read requests {}, time {}–{}; \
         setup: {} events filled in {:.1} s; snapshot written by a warm executor's first command ({}, {} events read), {written} written, held at version {} |",
        fmt_rate(n as f64),
        ms(cold_ms),
        ms(full_ms),
        cfg.cold_reps,
        span(cold.iter().map(|s| s.first.events_read)),
        span(cold.iter().map(|s| s.tail)),
        tail_verdict,
        span(cold.iter().map(|s| s.first.reads)),
        ms(cold.iter().map(|s| s.first.micros).min().unwrap_or(0)),
        ms(cold.iter().map(|s| s.first.micros).max().unwrap_or(0)),
        span(full.iter().map(|f| f.events_read)),
        span(full.iter().map(|f| f.reads)),
        ms(full.iter().map(|f| f.micros).min().unwrap_or(0)),
        ms(full.iter().map(|f| f.micros).max().unwrap_or(0)),
        fmt_rate(n as f64),
        fill.as_secs_f64(),
        ms(seeded.micros),
        fmt_rate(seeded.events_read as f64),
        span(snapshot_versions.iter().copied()),
    );
    Ok(Row {
        workload: "C cold start".into(),
        unit: "ms",
        target: TARGET,
        eventcore: Default::default(),
        raw: Default::default(),
        extra: String::new(),
        text: Some(text),
    })
}
