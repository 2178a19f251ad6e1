//! Criterion benchmarks of the core, all in memory and synchronous:
//!
//! - `machine/*`: the command machine's overhead per command, driven against
//!   the synchronous `MemoryStore` (target ≤ 2 µs per single-stream command);
//! - `fold/*`: read + decode + apply of a stream of N small events through a
//!   command (target ≥ 5M events/s);
//! - `memory_store/*`: `MemoryStore::append` and `read` alone;
//! - `executor/deposit_many/*`: `Executor::execute(DepositMany(n))` on one
//!   stream over `MemoryEventStore`, stream and state caches on (the W4
//!   command path of `compare` without PostgreSQL): the tokio driver's
//!   client CPU per command.
//!
//! Run with `cargo bench -p eventcore-benches --bench core`.

#![allow(clippy::disallowed_methods, clippy::disallowed_types, missing_docs)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use eventcore::{
    AppendRequest, Event, EventId, EventMetadata, ExpectedVersion, NewEvent, ReadRequest, StreamAppend, StreamVersion,
    Time,
};
use eventcore_benches::bank::{account, AccountEvent, OpenAccount, Transfer};
use eventcore_benches::{command_id, entropy, execute_sync, stream, Deposit, DepositMany, Replay};
use eventcore_memory::MemoryStore;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T0: Time = Time::from_unix_millis(1_700_000_000_000);

/// Commands per chunk when a benchmark needs fresh data: each chunk gets a
/// new store built outside the timed region.
const CHUNK: u64 = 2_000;

/// An append of `count` `Deposited` events to `stream` (built untimed).
fn deposits(stream: &eventcore::StreamId, expected: ExpectedVersion, count: usize, n: u64) -> AppendRequest {
    let encoded = AccountEvent::Deposited { amount: 1 }.encode().expect("encodes");
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(command_id(T0, n), T0)),
        streams: vec![StreamAppend {
            stream: stream.clone(),
            expected,
            events: (0..count)
                .map(|i| NewEvent {
                    event_id: EventId::v7(T0, entropy(n, i as u64 + 1)),
                    event_type: encoded.event_type.clone(),
                    schema_version: encoded.schema_version,
                    payload: encoded.payload.clone(),
                })
                .collect(),
            tombstone: false,
        }],
    }
}

/// A store where streams `s-0 .. s-{streams-1}` hold `events` events each.
fn store_with(streams: u64, events: usize) -> MemoryStore {
    let mut store = MemoryStore::new();
    if events > 0 {
        for s in 0..streams {
            let request = deposits(
                &stream(format!("s-{s}")),
                ExpectedVersion::NoStream,
                events,
                s + 1_000_000,
            );
            store.append(&request).expect("setup append");
        }
    }
    store
}

/// Runs `iters` commands in chunks of [`CHUNK`], each chunk against a fresh
/// store from `setup`, timing only the commands.
fn chunked(iters: u64, setup: impl Fn() -> MemoryStore, mut run: impl FnMut(&mut MemoryStore, u64)) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let n = CHUNK.min(iters - done);
        let mut store = setup();
        let start = Instant::now();
        for i in 0..n {
            run(&mut store, i);
        }
        total += start.elapsed();
        done += n;
    }
    total
}

fn machine(c: &mut Criterion) {
    let mut group = c.benchmark_group("machine");
    group.throughput(Throughput::Elements(1));
    let names: Vec<_> = (0..CHUNK).map(|s| stream(format!("s-{s}"))).collect();
    for held in [0usize, 10] {
        group.bench_function(
            BenchmarkId::new("single_stream_command", format!("{held}_events")),
            |b| {
                b.iter_custom(|iters| {
                    chunked(
                        iters,
                        || store_with(CHUNK, held),
                        |store, i| {
                            let command = Deposit {
                                account: names[i as usize].clone(),
                                amount: 1,
                            };
                            let done = execute_sync(store, command, T0, i);
                            black_box(done.expect("deposit commits"));
                        },
                    )
                })
            },
        );
    }
    let accounts: Vec<_> = (0..2 * CHUNK as u32).map(account).collect();
    group.bench_function("two_stream_transfer", |b| {
        b.iter_custom(|iters| {
            chunked(
                iters,
                || {
                    let mut store = MemoryStore::new();
                    for (i, account) in accounts.iter().enumerate() {
                        let open = OpenAccount {
                            account: account.clone(),
                            initial: 100,
                        };
                        execute_sync(&mut store, open, T0, 10_000_000 + i as u64).expect("opens");
                    }
                    store
                },
                |store, i| {
                    let i = i as usize;
                    let transfer = Transfer {
                        from: accounts[2 * i].clone(),
                        to: accounts[2 * i + 1].clone(),
                        amount: 1,
                    };
                    black_box(execute_sync(store, transfer, T0, i as u64).expect("transfer commits"));
                },
            )
        })
    });
    group.finish();
}

fn fold(c: &mut Criterion) {
    let mut group = c.benchmark_group("fold");
    for events in [100usize, 10_000] {
        group.throughput(Throughput::Elements(events as u64));
        let mut store = store_with(1, events);
        let target = stream("s-0");
        group.bench_function(BenchmarkId::new("read_decode_apply", events), |b| {
            let mut seed = 0;
            b.iter(|| {
                seed += 1;
                let replay = Replay { stream: target.clone() };
                black_box(execute_sync(&mut store, replay, T0, seed).expect("replays"))
            })
        });
    }
    group.finish();
}

fn memory_store(c: &mut Criterion) {
    let mut group = c.benchmark_group("memory_store");
    for count in [1usize, 100] {
        group.throughput(Throughput::Elements(count as u64));
        let target = stream("s-0");
        group.bench_function(BenchmarkId::new("append_events", count), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut done = 0;
                while done < iters {
                    let n = CHUNK.min(iters - done);
                    let requests: Vec<_> = (0..n)
                        .map(|i| {
                            let expected = ExpectedVersion::from_read(StreamVersion::new(i * count as u64));
                            deposits(&target, expected, count, i)
                        })
                        .collect();
                    let mut store = MemoryStore::new();
                    let start = Instant::now();
                    for request in &requests {
                        black_box(store.append(request).expect("append commits"));
                    }
                    total += start.elapsed();
                    done += n;
                }
                total
            })
        });
    }
    let store = store_with(1, 100);
    group.throughput(Throughput::Elements(100));
    group.bench_function(BenchmarkId::new("read_stream", 100), |b| {
        let request = ReadRequest::new([stream("s-0")]);
        b.iter(|| black_box(store.read(&request).expect("reads")))
    });
    group.finish();
}

/// Commands per executor in `executor/*`: each chunk starts a fresh store
/// and executor (untimed), so the stream, the log and the caches do not grow
/// with the iteration count.
const EXECUTOR_CHUNK: u64 = 500;

fn executor(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
    let mut group = c.benchmark_group("executor");
    let account = stream("w4");
    for count in [1usize, 100] {
        group.throughput(Throughput::Elements(count as u64));
        group.bench_function(BenchmarkId::new("deposit_many", count), |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    let mut done = 0;
                    while done < iters {
                        let n = EXECUTOR_CHUNK.min(iters - done);
                        // The cache sizes of `compare`'s W4 command path.
                        let executor = eventcore_tokio::Executor::new(eventcore_tokio::MemoryEventStore::new())
                            .with_stream_cache(1_000_000);
                        let start = Instant::now();
                        for _ in 0..n {
                            let command = DepositMany {
                                account: account.clone(),
                                count,
                            };
                            black_box(executor.execute(command).await.expect("deposits commit"));
                        }
                        total += start.elapsed();
                        done += n;
                    }
                    total
                })
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = machine, fold, memory_store, executor
}
criterion_main!(benches);
