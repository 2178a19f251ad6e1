//! Order processing on PostgreSQL: PlaceOrder / CancelOrder / ShipOrder, where
//! placing and cancelling touch the order *and* the stock of every item it
//! holds, atomically.
//!
//! Nothing but the events is kept between runs. Each invocation rebuilds the
//! state from the event store, checks it against an independent replay of
//! the earlier steps on the in-memory store, then runs the next step of the
//! story. Run it, let it exit, run it again:
//!
//! ```text
//! cargo run --example order-processing            # step 1: stock, place three orders, ship one
//! cargo run --example order-processing            # step 2: rebuilt from events, cancel one, ship one
//! cargo run --example order-processing            # step 3: rebuilt from events, nothing left to do
//! cargo run --example order-processing -- --reset # drop the schema and start over
//! ```
//!
//! Uses `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! schema `order_processing`.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // off the simulated path: real clocks and hash maps are fine here (see clippy.toml)

use eventcore::{
    decode_recorded, Command, CommandError, Decision, Event, EventFilter, GlobalPosition, ReadAllRequest,
    RecordedEvent, StreamId,
};
use eventcore_postgres::{PostgresOptions, PostgresStore};
use eventcore_tokio::{EventStore, Executor, MemoryEventStore};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::process::ExitCode;

/// Every event of the shop: orders and stock share one enum so that one
/// command can fold both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum ShopEvent {
    /// Units arrived in the warehouse.
    Stocked { units: u32 },
    /// Units set aside for an order.
    Reserved { order: String, units: u32 },
    /// Reserved units returned to stock.
    Released { order: String, units: u32 },
    /// An order was placed.
    Placed {
        customer: String,
        lines: Vec<(String, u32)>,
    },
    /// An order was cancelled before shipping.
    Cancelled { reason: String },
    /// An order left the warehouse.
    Shipped { carrier: String },
}

impl Event for ShopEvent {}

#[derive(Debug, thiserror::Error)]
enum ShopError {
    #[error("order {0} already exists")]
    OrderExists(String),
    #[error("order {0} does not exist")]
    NoSuchOrder(String),
    #[error("order {order} is {status}")]
    WrongStatus { order: String, status: Status },
    #[error("only {available} units of {sku} available, {wanted} wanted")]
    OutOfStock { sku: String, available: u32, wanted: u32 },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
enum Status {
    #[default]
    None,
    Placed,
    Cancelled,
    Shipped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::None => "not placed",
            Status::Placed => "placed",
            Status::Cancelled => "cancelled",
            Status::Shipped => "shipped",
        })
    }
}

fn order_stream(id: &str) -> StreamId {
    StreamId::new(format!("order-{id}")).unwrap_or_else(|e| panic!("order ids are valid stream ids: {e}"))
}

fn stock_stream(sku: &str) -> StreamId {
    StreamId::new(format!("stock-{sku}")).unwrap_or_else(|e| panic!("skus are valid stream ids: {e}"))
}

/// What the shop looks like: every order and every stock level. Built by
/// folding events, both in commands and when a run starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Shop {
    orders: BTreeMap<String, (Status, Vec<(String, u32)>)>,
    available: BTreeMap<String, u32>,
}

impl Shop {
    fn apply(&mut self, stream: &StreamId, event: &ShopEvent) {
        let id = stream.as_str();
        match event {
            ShopEvent::Stocked { units } => *self.stock(id) += units,
            ShopEvent::Reserved { units, .. } => {
                let stock = self.stock(id);
                *stock = stock.saturating_sub(*units);
            }
            ShopEvent::Released { units, .. } => *self.stock(id) += units,
            ShopEvent::Placed { lines, .. } => {
                self.orders.insert(order_id(id), (Status::Placed, lines.clone()));
            }
            ShopEvent::Cancelled { .. } => self.set_status(id, Status::Cancelled),
            ShopEvent::Shipped { .. } => self.set_status(id, Status::Shipped),
        }
    }

    fn stock(&mut self, stream: &str) -> &mut u32 {
        let sku = stream.strip_prefix("stock-").unwrap_or(stream).to_owned();
        self.available.entry(sku).or_default()
    }

    fn set_status(&mut self, stream: &str, status: Status) {
        if let Some(order) = self.orders.get_mut(&order_id(stream)) {
            order.0 = status;
        }
    }

    fn status(&self, order: &str) -> Status {
        self.orders.get(order).map_or(Status::None, |o| o.0)
    }
}

fn order_id(stream: &str) -> String {
    stream.strip_prefix("order-").unwrap_or(stream).to_owned()
}

struct Restock {
    sku: String,
    units: u32,
}

impl Command for Restock {
    type Event = ShopEvent;
    type State = Shop;
    type Error = ShopError;
    fn streams(&self) -> Vec<StreamId> {
        vec![stock_stream(&self.sku)]
    }
    fn apply(&self, state: &mut Shop, stream: &StreamId, event: &ShopEvent) {
        state.apply(stream, event);
    }
    fn decide(&self, _: &Shop, out: &mut Decision<ShopEvent>) -> Result<(), ShopError> {
        out.emit(&stock_stream(&self.sku), ShopEvent::Stocked { units: self.units });
        Ok(())
    }
}

/// Places an order and reserves its stock: one atomic append to the order
/// stream and every stock stream it touches.
struct PlaceOrder {
    order: String,
    customer: String,
    lines: Vec<(String, u32)>,
}

impl Command for PlaceOrder {
    type Event = ShopEvent;
    type State = Shop;
    type Error = ShopError;
    fn streams(&self) -> Vec<StreamId> {
        let mut streams = vec![order_stream(&self.order)];
        streams.extend(self.lines.iter().map(|(sku, _)| stock_stream(sku)));
        streams
    }
    fn apply(&self, state: &mut Shop, stream: &StreamId, event: &ShopEvent) {
        state.apply(stream, event);
    }
    fn decide(&self, shop: &Shop, out: &mut Decision<ShopEvent>) -> Result<(), ShopError> {
        if shop.status(&self.order) != Status::None {
            return Err(ShopError::OrderExists(self.order.clone()));
        }
        for (sku, wanted) in &self.lines {
            let available = shop.available.get(sku).copied().unwrap_or(0);
            if available < *wanted {
                return Err(ShopError::OutOfStock {
                    sku: sku.clone(),
                    available,
                    wanted: *wanted,
                });
            }
            out.emit(
                &stock_stream(sku),
                ShopEvent::Reserved {
                    order: self.order.clone(),
                    units: *wanted,
                },
            );
        }
        out.emit(
            &order_stream(&self.order),
            ShopEvent::Placed {
                customer: self.customer.clone(),
                lines: self.lines.clone(),
            },
        );
        Ok(())
    }
}

/// Cancels a placed order and releases its stock. The stock streams to
/// touch are discovered from the order itself.
struct CancelOrder {
    order: String,
    reason: String,
}

impl Command for CancelOrder {
    type Event = ShopEvent;
    type State = Shop;
    type Error = ShopError;
    fn streams(&self) -> Vec<StreamId> {
        vec![order_stream(&self.order)]
    }
    fn apply(&self, state: &mut Shop, stream: &StreamId, event: &ShopEvent) {
        state.apply(stream, event);
    }
    fn decide(&self, shop: &Shop, out: &mut Decision<ShopEvent>) -> Result<(), ShopError> {
        let Some((status, lines)) = shop.orders.get(&self.order) else {
            return Err(ShopError::NoSuchOrder(self.order.clone()));
        };
        if *status != Status::Placed {
            return Err(ShopError::WrongStatus {
                order: self.order.clone(),
                status: *status,
            });
        }
        for (sku, units) in lines {
            // Discovery: read the stock stream before writing to it.
            out.read(stock_stream(sku));
            out.emit(
                &stock_stream(sku),
                ShopEvent::Released {
                    order: self.order.clone(),
                    units: *units,
                },
            );
        }
        out.emit(
            &order_stream(&self.order),
            ShopEvent::Cancelled {
                reason: self.reason.clone(),
            },
        );
        Ok(())
    }
}

struct ShipOrder {
    order: String,
    carrier: String,
}

impl Command for ShipOrder {
    type Event = ShopEvent;
    type State = Shop;
    type Error = ShopError;
    fn streams(&self) -> Vec<StreamId> {
        vec![order_stream(&self.order)]
    }
    fn apply(&self, state: &mut Shop, stream: &StreamId, event: &ShopEvent) {
        state.apply(stream, event);
    }
    fn decide(&self, shop: &Shop, out: &mut Decision<ShopEvent>) -> Result<(), ShopError> {
        match shop.status(&self.order) {
            Status::Placed => {
                out.emit(
                    &order_stream(&self.order),
                    ShopEvent::Shipped {
                        carrier: self.carrier.clone(),
                    },
                );
                Ok(())
            }
            Status::None => Err(ShopError::NoSuchOrder(self.order.clone())),
            status => Err(ShopError::WrongStatus {
                order: self.order.clone(),
                status,
            }),
        }
    }
}

/// Every event in the store, folded into a shop.
async fn rebuild<S: EventStore>(store: &S) -> Result<(Shop, usize), String> {
    let mut shop = Shop::default();
    let mut after = GlobalPosition::START;
    let mut count = 0;
    loop {
        let page = store
            .read_all(&ReadAllRequest {
                after,
                limit: NonZeroU32::new(500).unwrap_or(NonZeroU32::MIN),
                filter: EventFilter::all(),
            })
            .await
            .map_err(|e| format!("reading the log: {e}"))?;
        if page.events.is_empty() && page.complete_through == after {
            return Ok((shop, count));
        }
        after = page.complete_through;
        for recorded in &page.events {
            shop.apply(&recorded.stream_id, &decode(recorded)?);
            count += 1;
        }
    }
}

fn decode(recorded: &RecordedEvent) -> Result<ShopEvent, String> {
    decode_recorded::<ShopEvent>(recorded).map_err(|e| e.to_string())
}

/// Runs the steps of the story, printing what they do when `verbose`.
struct Story<'a, S> {
    executor: &'a Executor<S>,
    verbose: bool,
}

impl<S: EventStore> Story<'_, S> {
    async fn must<C: Command>(&self, what: &str, command: C) -> Result<(), String>
    where
        C::Error: std::fmt::Display,
    {
        self.executor
            .execute(command)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        self.say(&format!("{what}: ok"));
        Ok(())
    }

    fn say(&self, line: &str) {
        if self.verbose {
            println!("  {line}");
        }
    }
}

/// The story, one step per invocation.
async fn step<S: EventStore>(story: &Story<'_, S>, number: usize) -> Result<(), String> {
    let executor = story.executor;
    match number {
        1 => {
            story
                .must(
                    "restock 10 lamps",
                    Restock {
                        sku: "lamp".into(),
                        units: 10,
                    },
                )
                .await?;
            story
                .must(
                    "restock 4 chairs",
                    Restock {
                        sku: "chair".into(),
                        units: 4,
                    },
                )
                .await?;
            for (order, customer, lines) in [
                ("1001", "ada", vec![("lamp".to_owned(), 2)]),
                ("1002", "brian", vec![("lamp".to_owned(), 1), ("chair".to_owned(), 4)]),
                ("1003", "chen", vec![("lamp".to_owned(), 3)]),
            ] {
                let command = PlaceOrder {
                    order: order.into(),
                    customer: customer.into(),
                    lines,
                };
                story
                    .must(&format!("place order {order} for {customer}"), command)
                    .await?;
            }
            story
                .must(
                    "ship order 1001",
                    ShipOrder {
                        order: "1001".into(),
                        carrier: "post".into(),
                    },
                )
                .await
        }
        2 => {
            let cancel = CancelOrder {
                order: "1002".into(),
                reason: "customer changed their mind".into(),
            };
            story
                .must("cancel order 1002 (releases 1 lamp, 4 chairs)", cancel)
                .await?;
            story
                .must(
                    "ship order 1003",
                    ShipOrder {
                        order: "1003".into(),
                        carrier: "van".into(),
                    },
                )
                .await?;
            let again = executor
                .execute(ShipOrder {
                    order: "1002".into(),
                    carrier: "van".into(),
                })
                .await;
            match again {
                Err(CommandError::Domain(ShopError::WrongStatus { status, .. })) => {
                    story.say(&format!(
                        "ship cancelled order 1002: refused, order is {status} (as it should be)"
                    ));
                    Ok(())
                }
                other => Err(format!("shipping a cancelled order must be refused, got {other:?}")),
            }
        }
        _ => Ok(()),
    }
}

const STEPS: usize = 2;

/// The state after `steps` steps, computed independently on a fresh
/// in-memory store.
async fn expected_after(steps: usize) -> Result<Shop, String> {
    let executor = Executor::new(MemoryEventStore::new());
    let story = Story {
        executor: &executor,
        verbose: false,
    };
    for number in 1..=steps {
        step(&story, number).await?;
    }
    Ok(rebuild(executor.store()).await?.0)
}

/// Which steps the events show as done: count the orders' fates.
fn steps_done(shop: &Shop) -> usize {
    if shop.orders.is_empty() {
        0
    } else if shop.status("1002") == Status::Cancelled {
        2
    } else {
        1
    }
}

fn print_shop(shop: &Shop) {
    for (order, (status, lines)) in &shop.orders {
        let lines: Vec<String> = lines.iter().map(|(sku, n)| format!("{n} x {sku}")).collect();
        println!("  order {order}: {status:<9} [{}]", lines.join(", "));
    }
    let stock: Vec<String> = shop.available.iter().map(|(sku, n)| format!("{sku}={n}")).collect();
    if stock.is_empty() {
        println!("  (no orders, no stock)");
    } else {
        println!("  stock available: {}", stock.join(", "));
    }
}

async fn main_inner() -> Result<(), String> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let options = PostgresOptions::new(url).schema("order_processing").max_connections(4);
    let store = PostgresStore::connect_with(options)
        .await
        .map_err(|e| format!("PostgreSQL: {e} (set DATABASE_URL, or run bash .ci/start-postgres)"))?;
    if std::env::args().any(|a| a == "--reset") {
        store.drop_schema().await.map_err(|e| e.to_string())?;
        println!("schema order_processing dropped; the next run starts from scratch");
        return Ok(());
    }
    store.migrate().await.map_err(|e| e.to_string())?;

    let (shop, events) = rebuild(&store).await?;
    let done = steps_done(&shop);
    println!("rebuilt from {events} events in PostgreSQL: {done} of {STEPS} steps already done");
    print_shop(&shop);
    let expected = expected_after(done).await?;
    if shop != expected {
        return Err(format!(
            "CHECK FAILED: state rebuilt from PostgreSQL differs from replaying steps 1..={done}:\n{shop:?}\n{expected:?}"
        ));
    }
    println!("check: state rebuilt from PostgreSQL == replay of steps 1..={done} on a fresh memory store: OK");

    if done >= STEPS {
        println!("nothing left to do (run with --reset to start over)");
        return Ok(());
    }
    let executor = Executor::new(store.clone());
    println!("step {}:", done + 1);
    let story = Story {
        executor: &executor,
        verbose: true,
    };
    step(&story, done + 1).await?;
    let (after, events) = rebuild(&store).await?;
    println!("after step {} ({events} events):", done + 1);
    print_shop(&after);
    println!("stop here and run again: the next run starts from these events alone");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match main_inner().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}
