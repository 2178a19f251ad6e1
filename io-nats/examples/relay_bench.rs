//! The relay's figures on PostgreSQL and a local NATS: events/s relayed
//! (catching up on a backlog) and end-to-end latency, commit → JetStream
//! ack, at a steady append rate (p50/p99). docs/benchmarks.md has a run.
//!
//! ```text
//! cargo run --release -p eventcore-nats --example relay_bench -- [--backlog N] [--rate R] [--seconds S] [--in-flight K]
//! ```
//!
//! Needs `DATABASE_URL` (default postgres://postgres@127.0.0.1:5432/postgres;
//! schema `relay_bench`, dropped and recreated) and `NATS_URL` (default
//! 127.0.0.1:4222; JetStream stream `RELAY_BENCH`, recreated).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // a benchmark: real clocks and hash maps

use async_nats::jetstream::stream;
use eventcore::{
    AppendRequest, CommandId, EventId, EventMetadata, EventType, ExpectedVersion, GlobalPosition, NewEvent, Payload,
    StreamAppend, StreamId, Time,
};
use eventcore_nats::{relay, RelayOptions};
use eventcore_postgres::{migrate_subscriptions, PgCheckpointStore, PgNotifier, PostgresOptions, PostgresStore};
use eventcore_store::EventStore;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Options {
    backlog: u64,
    rate: u64,
    seconds: u64,
    in_flight: usize,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        backlog: 50_000,
        rate: 2_000,
        seconds: 10,
        in_flight: 256,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let n: u64 = value
            .parse()
            .map_err(|_| format!("{flag}: `{value}` is not a number"))?;
        match flag.as_str() {
            "--backlog" => o.backlog = n,
            "--rate" if n > 0 => o.rate = n,
            "--seconds" => o.seconds = n,
            "--in-flight" if n > 0 => o.in_flight = usize::try_from(n).map_err(|e| e.to_string())?,
            _ => return Err(format!("unknown flag or bad value: {flag} {value}")),
        }
    }
    Ok(o)
}

static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One append of `events` events to one of 100 streams.
fn request(events: u64) -> AppendRequest {
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut entropy = [0u8; 10];
    entropy[2..10].copy_from_slice(&n.to_be_bytes());
    let now = Time::from_unix_millis(1_700_000_000_000 + n);
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(CommandId::v7(now, entropy), now)),
        streams: vec![StreamAppend {
            stream: StreamId::new(format!("account-{}", n % 100)).unwrap_or_else(|_| unreachable!("valid")),
            expected: ExpectedVersion::Any,
            events: (0..events)
                .map(|k| {
                    let mut e = entropy;
                    e[0] = (k & 0x0F) as u8;
                    e[1] = (k >> 4) as u8;
                    NewEvent {
                        event_id: EventId::v7(now, e),
                        event_type: EventType::new("Deposited").unwrap_or_else(|_| unreachable!("valid")),
                        schema_version: 1,
                        payload: Payload::from_trusted_json(format!(r#"{{"amount":{k},"note":"bench"}}"#)),
                    }
                })
                .collect(),
            tombstone: false,
        }],
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let o = parse()?;
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let store = PostgresStore::connect_with(PostgresOptions::new(url).schema("relay_bench").max_connections(8)).await?;
    store.drop_schema().await?;
    store.migrate().await?;
    migrate_subscriptions(&store).await?;
    let nats = std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".into());
    let js = async_nats::jetstream::new(async_nats::connect(nats.as_str()).await?);
    let _ = js.delete_stream("RELAY_BENCH").await;
    js.create_stream(stream::Config {
        name: "RELAY_BENCH".into(),
        subjects: vec!["bench.>".into()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    let options = RelayOptions::new("RELAY_BENCH", "bench").with_max_in_flight(o.in_flight);

    // 1. Catch-up: a backlog of events, relayed as fast as it goes.
    let mut appended = 0;
    while appended < o.backlog {
        let n = (o.backlog - appended).min(50);
        store.append(&request(n)).await?;
        appended += n;
    }
    let checkpoints = PgCheckpointStore::new(&store);
    let mut runner = relay("bench", store.clone(), checkpoints.clone(), js.clone(), options.clone());
    let started = Instant::now();
    runner.run_until_caught_up().await?;
    let took = started.elapsed();
    let status = runner.sink().status().borrow().clone();
    println!(
        "catch-up: {} events relayed in {:.2} s = {:.0} events/s (max_in_flight {}, {} published, {} duplicates)",
        status.published,
        took.as_secs_f64(),
        status.published as f64 / took.as_secs_f64(),
        o.in_flight,
        status.published,
        status.duplicates
    );

    // 2. Live: one event per append at a steady rate; latency from the
    // append's return (commit) to the relay's confirmation (JetStream ack).
    let notifier = PgNotifier::start(&store).await?;
    let mut runner = relay("bench", store.clone(), checkpoints, js.clone(), options).with_wakeups(notifier.subscribe());
    let mut confirmed = runner.sink().status();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay_task = tokio::spawn(async move {
        runner
            .run_until(async {
                let _ = stopped.await;
            })
            .await
    });
    let committed: Arc<std::sync::Mutex<HashMap<u64, Instant>>> = Arc::default();
    let writer = {
        let store = store.clone();
        let committed = committed.clone();
        let total = o.rate * o.seconds;
        let gap = Duration::from_secs_f64(1.0 / o.rate as f64);
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut last = 0;
            for i in 0..total {
                tokio::time::sleep_until(start + gap * u32::try_from(i).unwrap_or(u32::MAX)).await;
                if let Ok(receipt) = store.append(&request(1)).await {
                    let now = Instant::now();
                    let p = receipt.last_position().get();
                    committed.lock().map(|mut m| m.insert(p, now)).ok();
                    last = p;
                }
            }
            last
        })
    };
    let mut latencies = Vec::new();
    let mut seen = GlobalPosition::START;
    let last = loop {
        tokio::select! {
            changed = confirmed.changed() => {
                if changed.is_err() { break None; }
                let now = Instant::now();
                let through = confirmed.borrow_and_update().confirmed_through;
                if through > seen {
                    if let Ok(mut m) = committed.lock() {
                        let done: Vec<u64> = m.keys().copied().filter(|p| *p <= through.get()).collect();
                        for p in done {
                            if let Some(t) = m.remove(&p) { latencies.push(now.duration_since(t)); }
                        }
                    }
                    seen = through;
                }
            }
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if writer.is_finished() { break Some(()); }
            }
        }
    };
    let _ = last;
    let last_position = writer.await?;
    while confirmed.borrow().confirmed_through.get() < last_position {
        if confirmed.changed().await.is_err() {
            break;
        }
        let now = Instant::now();
        let through = confirmed.borrow().confirmed_through.get();
        if let Ok(mut m) = committed.lock() {
            let done: Vec<u64> = m.keys().copied().filter(|p| *p <= through).collect();
            for p in done {
                if let Some(t) = m.remove(&p) {
                    latencies.push(now.duration_since(t));
                }
            }
        }
    }
    let _ = stop.send(());
    relay_task.await??;
    latencies.sort();
    println!(
        "live: {} events at {}/s for {} s, commit → JetStream ack: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        o.rate,
        o.seconds,
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    let info = js.get_stream("RELAY_BENCH").await?.cached_info().state.clone();
    println!("JetStream stream RELAY_BENCH: {} messages", info.messages);
    store.drop_schema().await?;
    Ok(())
}
