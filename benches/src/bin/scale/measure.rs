//! The timed measurements: a driver for concurrent clients, the clients
//! (appends, stream reads, catch-up pages, a `SELECT 1` control) and one
//! level's measurement.

use crate::load::{first_position, request, Slot, State};
use crate::report::{metric, sizes, Kind, Metric};
use crate::{Config, Result};
use eventcore::StreamVersion;
use eventcore::{Entropy, EventFilter, GlobalPosition, ReadAllRequest, ReadRequest, StoreError, StreamRead};
use eventcore_postgres::PostgresStore;
use eventcore_tokio::EventStore;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events per stream read, per catch-up page, and the window of recent
/// events a catch-up starts in.
const READ_EVENTS: u32 = 100;
const PAGE: u32 = 1_000;
const RECENT: u64 = 100_000;

/// What the clients of one timed measurement did.
#[derive(Default)]
struct Timed {
    ops: u64,
    units: u64,
    /// Operations that returned fewer units than a full one.
    short: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    latencies: Vec<u32>,
}

impl Timed {
    fn quantile_us(&mut self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        self.latencies.sort_unstable();
        f64::from(self.latencies[((self.latencies.len() - 1) as f64 * q).round() as usize])
    }

    fn per_sec(&self, count: u64) -> f64 {
        count as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Runs each client in its own task, repeating `op` until `duration` has
/// passed; an operation yields its units (events) or an error. Clients are
/// handed back for the next measurement.
async fn drive<C, F, Fut>(clients: Vec<C>, duration: Duration, full: u64, op: F) -> (Vec<C>, Timed)
where
    C: Send + 'static,
    F: Fn(C) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = (C, Result<u64>)> + Send + 'static,
{
    let start = Instant::now();
    let deadline = start + duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut timed = Timed::default();
                while Instant::now() < deadline {
                    let began = Instant::now();
                    let (back, result) = op(client).await;
                    client = back;
                    match result {
                        Ok(units) => {
                            timed.ops += 1;
                            timed.units += units;
                            timed.short += u64::from(units < full);
                            let micros = began.elapsed().as_micros();
                            timed.latencies.push(u32::try_from(micros).unwrap_or(u32::MAX));
                        }
                        Err(e) => {
                            timed.errors += 1;
                            timed.first_error.get_or_insert(e);
                        }
                    }
                }
                (client, timed)
            })
        })
        .collect();
    let mut clients = Vec::new();
    let mut total = Timed::default();
    for task in tasks {
        let (client, timed) = task.await.expect("benchmark client panicked");
        clients.push(client);
        total.ops += timed.ops;
        total.units += timed.units;
        total.short += timed.short;
        total.errors += timed.errors;
        total.first_error = total.first_error.or(timed.first_error);
        total.latencies.extend(timed.latencies);
    }
    total.elapsed = start.elapsed();
    (clients, total)
}

/// Single-event appends to random streams of its own, pinned to the exact
/// version.
struct Appender {
    store: PostgresStore,
    slots: Arc<Vec<Slot>>,
    index: usize,
    of: usize,
    rng: Entropy,
    next: Arc<AtomicU64>,
    /// First positions of what it appended (catch-up starting points).
    positions: Vec<u64>,
}

impl Appender {
    async fn append(mut self) -> (Self, Result<u64>) {
        let result = {
            let owned = (self.slots.len() - self.index).div_ceil(self.of) as u64;
            let slot = &self.slots[self.index + self.rng.below(owned) as usize * self.of];
            let version = slot.version.load(Relaxed);
            let request = request(&[(slot.id.clone(), version)], 1, self.next.fetch_add(1, Relaxed));
            match self.store.append(&request).await {
                Ok(receipt) => {
                    slot.version.store(version + 1, Relaxed);
                    self.positions.push(first_position(&receipt));
                    Ok(1)
                }
                Err(StoreError::Conflict(conflict)) => {
                    slot.version.store(conflict.actual.get(), Relaxed);
                    Err(conflict.to_string())
                }
                Err(e) => Err(e.to_string()),
            }
        };
        (self, result)
    }
}

/// Reads the first 100 events of a random stream.
struct Reader {
    store: PostgresStore,
    slots: Arc<Vec<Slot>>,
    rng: Entropy,
}

impl Reader {
    async fn read(mut self) -> (Self, Result<u64>) {
        let slot = &self.slots[self.rng.below(self.slots.len() as u64) as usize];
        let request = ReadRequest {
            streams: vec![StreamRead {
                stream: slot.id.clone(),
                after: StreamVersion::NONE,
            }],
            page_size: NonZeroU32::new(READ_EVENTS),
        };
        let result = match self.store.read(&request).await {
            Ok(response) => match response.streams.first().map(|s| s.events.len() as u64) {
                Some(n) if n == u64::from(READ_EVENTS) => Ok(n),
                other => Err(format!("read of {} returned {other:?} events", slot.id)),
            },
            Err(e) => Err(e.to_string()),
        };
        (self, result)
    }
}

/// `SELECT 1` on the store's pool: a control that does not depend on the
/// store's size, so that a machine that got busier between levels shows.
struct Ping {
    store: PostgresStore,
}

impl Ping {
    async fn ping(self) -> (Self, Result<u64>) {
        let result = sqlx::query("SELECT 1").execute(self.store.pool()).await;
        (self, result.map(|_| 1).map_err(|e| e.to_string()))
    }
}

/// `read_all` pages of 1,000 events from random recent positions.
struct CatchUp {
    store: PostgresStore,
    starts: Arc<Vec<u64>>,
    rng: Entropy,
}

impl CatchUp {
    async fn page(mut self) -> (Self, Result<u64>) {
        let after = self.starts[self.rng.below(self.starts.len() as u64) as usize];
        let request = ReadAllRequest {
            after: GlobalPosition::new(after),
            limit: NonZeroU32::new(PAGE).expect("non-zero"),
            filter: EventFilter::all(),
        };
        let result = self.store.read_all(&request).await;
        (self, result.map(|r| r.events.len() as u64).map_err(|e| e.to_string()))
    }
}

/// The failures of one measurement, for the report.
fn failures(name: &str, timed: &Timed, errors: &mut Vec<String>) {
    if timed.errors > 0 {
        let first = timed.first_error.as_deref().unwrap_or("");
        errors.push(format!("{name}: {} failed ({first})", timed.errors));
    }
}

/// p50 and p99.
fn latency_metrics(name: &str, timed: &mut Timed, out: &mut Vec<Metric>) {
    out.push(metric(
        format!("{name}: p50 (µs)"),
        timed.quantile_us(0.5),
        Kind::Micros,
    ));
    out.push(metric(
        format!("{name}: p99 (µs)"),
        timed.quantile_us(0.99),
        Kind::Micros,
    ));
}

/// p50, p99 and the rate of operations (or of units, when `per_unit`).
fn timed_metrics(name: &str, unit: &str, timed: &mut Timed, per_unit: bool, out: &mut Vec<Metric>) {
    let count = if per_unit { timed.units } else { timed.ops };
    latency_metrics(name, timed, out);
    out.push(metric(format!("{name}: {unit}/s"), timed.per_sec(count), Kind::Rate));
}

/// Measures one level: appends to the hot streams with 1 and 8 clients and
/// to any stream with 1, stream reads with 1 and 8 clients, catch-up pages,
/// then sizes.
pub async fn measure(cfg: &Config, state: &mut State, level: usize, errors: &mut Vec<String>) -> Result<Vec<Metric>> {
    let stored = state.stored as f64;
    let mut out = vec![metric("events in the store when measured", stored, Kind::Info)];
    let seed = |i: usize| (level * 1_000 + i) as u64;
    let ping = vec![Ping {
        store: state.store.clone(),
    }];
    let (ping, _) = drive(ping, cfg.warmup, 1, Ping::ping).await;
    let (_, mut timed) = drive(ping, cfg.measure, 1, Ping::ping).await;
    let name = "control: SELECT 1, 1 client";
    failures(name, &timed, errors);
    latency_metrics(name, &mut timed, &mut out);
    let phases = [
        ("append 1 event to a hot stream", state.hot.clone(), 1usize),
        ("append 1 event to a hot stream", state.hot.clone(), 8),
        ("append 1 event to any stream", state.slots.clone(), 1),
    ];
    for (i, (what, slots, clients)) in phases.into_iter().enumerate() {
        let appenders: Vec<_> = (0..clients)
            .map(|index| Appender {
                store: state.store.clone(),
                slots: slots.clone(),
                index,
                of: clients,
                rng: Entropy::new(seed(i * 10 + index)),
                next: state.next.clone(),
                positions: Vec::new(),
            })
            .collect();
        let (appenders, _) = drive(appenders, cfg.warmup, 1, Appender::append).await;
        let (appenders, mut timed) = drive(appenders, cfg.measure, 1, Appender::append).await;
        let name = format!("{what}, {}", plural(clients));
        failures(&name, &timed, errors);
        timed_metrics(&name, "appends", &mut timed, false, &mut out);
        // Committed appends, warm-up included: catch-up starting points.
        let mut positions: Vec<u64> = appenders.into_iter().flat_map(|a| a.positions).collect();
        positions.sort_unstable();
        for (rank, first) in positions.iter().enumerate() {
            state
                .anchors
                .push((first.saturating_sub(1), state.stored + rank as u64));
        }
        state.stored += positions.len() as u64;
        state.commands += positions.len() as u64;
    }
    for clients in [1usize, 8] {
        let readers: Vec<_> = (0..clients)
            .map(|i| Reader {
                store: state.store.clone(),
                slots: state.slots.clone(),
                rng: Entropy::new(seed(100 + i)),
            })
            .collect();
        let (readers, _) = drive(readers, cfg.warmup, 0, Reader::read).await;
        let (_, mut timed) = drive(readers, cfg.measure, 0, Reader::read).await;
        let name = format!("read 100 events of a stream, {}", plural(clients));
        failures(&name, &timed, errors);
        timed_metrics(&name, "reads", &mut timed, false, &mut out);
    }
    // Catch-up starts: the first events of appends among the most recent
    // 100,000 events, with a full page after them.
    let latest = state.stored.saturating_sub(u64::from(PAGE));
    let pick = |lo: u64| -> Vec<u64> {
        let anchors = state
            .anchors
            .iter()
            .filter(|(_, before)| (lo..=latest).contains(before));
        anchors.map(|(after, _)| *after).collect()
    };
    let mut starts = pick(state.stored.saturating_sub(RECENT));
    if starts.is_empty() {
        starts = pick(0);
    }
    let reader = CatchUp {
        store: state.store.clone(),
        starts: Arc::new(starts),
        rng: Entropy::new(seed(200)),
    };
    let (readers, _) = drive(vec![reader], cfg.warmup, u64::from(PAGE), CatchUp::page).await;
    let (_, mut timed) = drive(readers, cfg.measure, u64::from(PAGE), CatchUp::page).await;
    let name = "read_all page of 1,000 recent events, 1 client";
    failures(name, &timed, errors);
    timed_metrics(name, "events", &mut timed, true, &mut out);
    out.push(metric("read_all: short pages", timed.short as f64, Kind::Info));
    out.push(metric(
        "events in the store when sized",
        state.stored as f64,
        Kind::Info,
    ));
    out.extend(sizes(state).await?);
    Ok(out)
}

fn plural(clients: usize) -> String {
    format!("{clients} client{}", if clients == 1 { "" } else { "s" })
}
