//! A loom model written as a user of EventCore would write one in their own
//! crate: a small domain of its own (a stock of items that commands
//! reserve), two threads executing commands concurrently against the
//! in-memory store through [`BlockingExecutor`], and the domain's invariant
//! checked after every interleaving loom explores.
//!
//! Built only with `--cfg eventcore_loom` (see `.ci/loom` and
//! `docs/testing-your-domain.md`, "Loom"): the store's lock, its head
//! notifier and the stream cache are then loom's, so loom runs every
//! interleaving of the real critical sections up to the preemption bound.
//!
//! The last model plants a bug (a command that does not pin the stream it
//! read) and expects loom to find the interleaving that oversells: a model
//! that cannot fail proves nothing.
#![cfg(eventcore_loom)]

use eventcore::{
    Command, CommandError, Decision, Event, ExecutionError, ExpectedVersion, ReadRequest, RecordedEvent, StreamId,
};
use eventcore_tokio::{execute_blocking, BlockingExecutor, MemoryEventStore};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------- the domain

/// What happens to a stock of one item.
#[derive(Debug, Serialize, Deserialize)]
enum StockEvent {
    Restocked { qty: u64 },
    Reserved { qty: u64 },
}
impl Event for StockEvent {}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("out of stock: {available} available, {wanted} wanted")]
struct OutOfStock {
    available: u64,
    wanted: u64,
}

/// The stock on hand, as folded from its events.
fn fold(available: &mut u64, event: &StockEvent) {
    match event {
        StockEvent::Restocked { qty } => *available += qty,
        // Saturating: a fold must never panic; the invariant checks below
        // find an oversold stock in the log itself.
        StockEvent::Reserved { qty } => *available = available.saturating_sub(*qty),
    }
}

/// Adds items to the stock.
struct Restock {
    stock: StreamId,
    qty: u64,
}

impl Command for Restock {
    type Event = StockEvent;
    type State = ();
    type Error = std::convert::Infallible;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.stock.clone()]
    }

    fn apply(&self, _: &mut (), _: &StreamId, _: &StockEvent) {}

    fn decide(&self, _: &(), out: &mut Decision<StockEvent>) -> Result<(), Self::Error> {
        out.emit(&self.stock, StockEvent::Restocked { qty: self.qty });
        Ok(())
    }
}

/// Takes `qty` items from the stock, or refuses when fewer are left.
/// `pin: false` is the planted bug: the append does not require the stream
/// to still be at the version the decision was made on.
struct Reserve {
    stock: StreamId,
    qty: u64,
    pin: bool,
}

impl Command for Reserve {
    type Event = StockEvent;
    type State = u64;
    type Error = OutOfStock;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.stock.clone()]
    }

    fn apply(&self, available: &mut u64, _: &StreamId, event: &StockEvent) {
        fold(available, event);
    }

    fn decide(&self, available: &u64, out: &mut Decision<StockEvent>) -> Result<(), OutOfStock> {
        if *available < self.qty {
            return Err(OutOfStock {
                available: *available,
                wanted: self.qty,
            });
        }
        out.emit(&self.stock, StockEvent::Reserved { qty: self.qty });
        if !self.pin {
            out.expect(&self.stock, ExpectedVersion::Any);
        }
        Ok(())
    }
}

// ------------------------------------------------------------ the invariant

fn stock() -> StreamId {
    StreamId::new("stock-sku-1").expect("valid stream id")
}

fn decode(event: &RecordedEvent) -> StockEvent {
    eventcore::decode_recorded(event).expect("a stock event")
}

/// Checks the stock stream as committed: versions 1..=n, the stock never
/// below zero at any point of the log, and what was reserved equal to what
/// the successful commands took.
fn check_stock(store: &MemoryEventStore, restocked: u64, taken: u64) {
    let answer = store.read_sync(&ReadRequest::new([stock()])).expect("read");
    let mut available: i128 = 0;
    let mut reserved = 0;
    for (i, recorded) in answer.streams[0].events.iter().enumerate() {
        assert_eq!(recorded.version.get(), i as u64 + 1, "versions are not contiguous");
        match decode(recorded) {
            StockEvent::Restocked { qty } => available += i128::from(qty),
            StockEvent::Reserved { qty } => {
                available -= i128::from(qty);
                reserved += qty;
            }
        }
        assert!(
            available >= 0,
            "oversold: the stock reached {available} at version {}",
            i + 1
        );
    }
    assert_eq!(
        reserved, taken,
        "the log's reservations differ from what the commands took"
    );
    assert_eq!(available, i128::from(restocked - taken));
}

/// What one `Reserve` took: its quantity if it committed, 0 if refused.
fn taken(result: Result<eventcore::Executed, ExecutionError<OutOfStock>>, qty: u64) -> u64 {
    match result {
        Ok(done) => {
            assert!(done.appended.is_some(), "a reservation commits an event");
            qty
        }
        Err(ExecutionError {
            error: CommandError::Domain(OutOfStock { .. }),
            ..
        }) => 0,
        Err(other) => panic!("unexpected failure: {other}"),
    }
}

// ---------------------------------------------------------------- the models

/// Three items in stock, two customers reserving two each at once: in every
/// interleaving exactly one gets them, the other is refused (after a
/// conflict and a re-read, when both decided on the same version), and the
/// stock never goes negative.
#[test]
fn concurrent_reservations_never_oversell() {
    loom::model(|| {
        let store = MemoryEventStore::new();
        execute_blocking(&store, Restock { stock: stock(), qty: 3 }, 0).expect("restock");

        let customers: Vec<_> = (1..=2)
            .map(|seed| {
                let store = store.clone();
                loom::thread::spawn(move || {
                    let reserve = Reserve {
                        stock: stock(),
                        qty: 2,
                        pin: true,
                    };
                    taken(execute_blocking(&store, reserve, seed), 2)
                })
            })
            .collect();
        let taken: Vec<u64> = customers.into_iter().map(|c| c.join().expect("customer")).collect();

        assert_eq!(
            taken.iter().filter(|t| **t > 0).count(),
            1,
            "exactly one customer gets the items"
        );
        check_stock(&store, 3, taken.iter().sum());
    });
}

/// The same race through one shared executor with a stream cache (as a
/// service would hold one `Executor`): executions start from the cached
/// stream and pin it, so a stale cache costs a conflict, never an oversell.
/// Two reservations of one item from two in stock both fit.
#[test]
fn a_shared_executor_with_a_stream_cache_never_oversells() {
    loom::model(|| {
        let store = MemoryEventStore::new();
        let executor = std::sync::Arc::new(BlockingExecutor::new(store.clone()).with_stream_cache(16));
        executor.execute(Restock { stock: stock(), qty: 2 }).expect("restock");

        let customer = {
            let executor = executor.clone();
            loom::thread::spawn(move || {
                let reserve = Reserve {
                    stock: stock(),
                    qty: 1,
                    pin: true,
                };
                taken(executor.execute(reserve), 1)
            })
        };
        let here = taken(
            executor.execute(Reserve {
                stock: stock(),
                qty: 1,
                pin: true,
            }),
            1,
        );
        let there = customer.join().expect("customer");

        assert_eq!((here, there), (1, 1), "both reservations fit");
        check_stock(&store, 2, here + there);
    });
}

/// The planted bug: `Reserve { pin: false }` appends with
/// `ExpectedVersion::Any`, so two reservations decided on the same version
/// both commit. loom must find that interleaving (both read before either
/// appends) and the invariant must catch it.
#[test]
#[should_panic(expected = "oversold")]
fn an_unpinned_reservation_oversells_in_some_interleaving() {
    loom::model(|| {
        let store = MemoryEventStore::new();
        execute_blocking(&store, Restock { stock: stock(), qty: 3 }, 0).expect("restock");

        let customers: Vec<_> = (1..=2)
            .map(|seed| {
                let store = store.clone();
                loom::thread::spawn(move || {
                    let reserve = Reserve {
                        stock: stock(),
                        qty: 2,
                        pin: false,
                    };
                    taken(execute_blocking(&store, reserve, seed), 2)
                })
            })
            .collect();
        let taken: Vec<u64> = customers.into_iter().map(|c| c.join().expect("customer")).collect();
        check_stock(&store, 3, taken.iter().sum());
    });
}
