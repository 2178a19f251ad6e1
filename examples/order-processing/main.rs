//! Order processing on PostgreSQL, with persisted view snapshots.
//!
//! Two entities with their own events and views: an order (`OrderEvent`,
//! view `Order`) and a product's stock (`StockEvent`, view `Stock`). Placing
//! an order writes `Placed` to the order and `Reserved` to each product in
//! one atomic append; cancelling discovers the order's products at run time
//! and writes `Released` to each and `Cancelled` to the order, also atomically
//! (see `shop.rs`).
//!
//! Nothing but the events and the view snapshots is kept between runs. Each
//! run is one business day: it rebuilds the shop from the event log, checks
//! its invariants and that it equals an independent replay of the earlier
//! days on the in-memory store, then trades for a day (restock, 40 orders,
//! shipments, cancellations of yesterday's orders) and exits. The product
//! streams are hot: every order touches them. Their `Stock` views are
//! snapshotted every 20 events in PostgreSQL, so a new process starts each
//! view from its snapshot and reads only the tail of the stream; each run
//! prints how many events it read per stream against the stream's length.
//!
//! ```text
//! cargo run --example order-processing            # day 1: streams start empty
//! cargo run --example order-processing            # day 2: views start from day 1's snapshots
//! cargo run --example order-processing            # day 3: ... (run it as often as you like)
//! cargo run --example order-processing -- --reset # drop the schema and start over
//! ```
//!
//! Uses `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! schema `order_processing`. Exits non-zero when a check fails.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // off the simulated path: real clocks and hash maps are fine here (see clippy.toml)

mod counting;
mod shop;

use counting::CountingStore;
use eventcore::{
    decode_recorded, CommandError, EventFilter, ExecutionError, GlobalPosition, ReadAllRequest, RecordedEvent,
    StreamId, View, ViewKind,
};
use eventcore_postgres::{PgSnapshotStore, PostgresOptions, PostgresStore};
use eventcore_tokio::{EventStore, Executor, MemoryEventStore, SnapshotStore};
use shop::{
    CancelOrder, Line, Order, OrderEvent, PlaceOrder, Restock, ShipOrder, ShopError, Status, Stock, StockEvent,
};
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::process::ExitCode;

/// The products and how many units of each arrive every morning.
const PRODUCTS: [(&str, u32); 3] = [("lamp", 50), ("chair", 30), ("desk", 30)];
const ORDERS_PER_DAY: u32 = 40;
const CUSTOMERS: [&str; 5] = ["ada", "brian", "chen", "dora", "emil"];

fn stream(id: String) -> StreamId {
    StreamId::new(id).unwrap_or_else(|e| unreachable!("ids built here are valid stream ids: {e}"))
}

fn product(sku: &str) -> StreamId {
    stream(format!("stock-{sku}"))
}

fn order(day: u32, n: u32) -> StreamId {
    stream(format!("order-{day}-{n}"))
}

/// The day an order was placed on, from its id `order-{day}-{n}`.
fn day_of(order: &StreamId) -> Option<u32> {
    order.as_str().split('-').nth(1)?.parse().ok()
}

/// Order `n` of `day`: one or two lines of 1 to 3 units.
fn lines_of(day: u32, n: u32) -> Vec<Line> {
    let skus: &[&str] = match n % 4 {
        0 => &["lamp"],
        1 => &["lamp", "chair"],
        2 => &["chair", "desk"],
        _ => &["lamp", "desk"],
    };
    skus.iter()
        .enumerate()
        .map(|(k, sku)| Line {
            product: product(sku),
            units: 1 + (n * 7 + day + k as u32) % 3,
        })
        .collect()
}

/// What a day did.
#[derive(Debug, Default)]
struct Day {
    placed: u32,
    out_of_stock: u32,
    shipped: u32,
    cancelled: u32,
    yesterday_shipped: u32,
}

/// Runs a command; `Ok(Err(_))` is the shop refusing it, `Err` anything else.
async fn run<S: EventStore, C: eventcore::Command<Error = ShopError>>(
    executor: &Executor<S>,
    command: C,
) -> Result<Result<(), ShopError>, String> {
    match executor.execute(command).await {
        Ok(_) => Ok(Ok(())),
        Err(ExecutionError {
            error: CommandError::Domain(refused),
            ..
        }) => Ok(Err(refused)),
        Err(other) => Err(other.to_string()),
    }
}

/// Fails unless the shop refused with `WrongStatus { status: expected }`.
fn must_refuse(what: &str, outcome: Result<(), ShopError>, expected: Status) -> Result<(), String> {
    match outcome {
        Err(ShopError::WrongStatus { status, .. }) if status == expected => Ok(()),
        other => Err(format!(
            "CHECK FAILED: {what} must be refused (order {expected}), got {other:?}"
        )),
    }
}

/// One business day: the same story whatever store it runs on.
async fn trade<S: EventStore>(executor: &Executor<S>, day: u32) -> Result<Day, String> {
    let mut done = Day::default();
    for (sku, units) in PRODUCTS {
        let product = product(sku);
        run(executor, Restock { product, units })
            .await?
            .map_err(|e| e.to_string())?;
    }
    let mut placed = BTreeSet::new();
    for n in 0..ORDERS_PER_DAY {
        let customer = CUSTOMERS[(n % 5) as usize];
        match run(executor, PlaceOrder::new(order(day, n), customer, &lines_of(day, n))).await? {
            Ok(()) => {
                placed.insert(n);
                done.placed += 1;
            }
            Err(ShopError::OutOfStock { .. }) => done.out_of_stock += 1,
            Err(other) => return Err(format!("placing {}: {other}", order(day, n))),
        }
    }
    // Today's orders: some shipped straight away; an order refused at
    // placement does not exist.
    let mut a_shipped = None;
    for n in (0..ORDERS_PER_DAY).filter(|n| n % 4 == 0) {
        let id = order(day, n);
        let ship = ShipOrder {
            order: id.clone(),
            carrier: "post".into(),
        };
        match (run(executor, ship).await?, placed.contains(&n)) {
            (Ok(()), true) => {
                done.shipped += 1;
                a_shipped = Some(id);
            }
            (Err(ShopError::NoSuchOrder(_)), false) => {}
            (other, was_placed) => return Err(format!("{id} (placed: {was_placed}): unexpected {other:?}")),
        }
    }
    // Yesterday's orders still open: some cancelled (each cancel discovers
    // the order's products and releases their stock), some shipped. This
    // process never saw them: their streams are read from the store.
    let mut a_cancelled = None;
    for n in (0..ORDERS_PER_DAY).filter(|_| day > 1) {
        let id = order(day - 1, n);
        let cancelling = n % 6 == 1 || n % 6 == 5;
        let outcome = if cancelling {
            let cancel = CancelOrder {
                order: id.clone(),
                reason: "changed their mind".into(),
            };
            (run(executor, cancel).await?, &mut done.cancelled)
        } else if n % 4 == 2 {
            let ship = ShipOrder {
                order: id.clone(),
                carrier: "van".into(),
            };
            (run(executor, ship).await?, &mut done.yesterday_shipped)
        } else {
            continue;
        };
        match outcome {
            (Ok(()), count) => {
                *count += 1;
                if cancelling {
                    a_cancelled = Some(id);
                }
            }
            (Err(ShopError::NoSuchOrder(_)), _) => {}
            (other, _) => return Err(format!("{id}: unexpected {other:?}")),
        }
    }
    // Refusals that must happen.
    if let Some(id) = a_cancelled {
        let ship = ShipOrder {
            order: id,
            carrier: "post".into(),
        };
        must_refuse(
            "shipping a cancelled order",
            run(executor, ship).await?,
            Status::Cancelled,
        )?;
    }
    if let Some(id) = a_shipped {
        let cancel = CancelOrder {
            order: id.clone(),
            reason: "too late".into(),
        };
        must_refuse(
            "cancelling a shipped order",
            run(executor, cancel).await?,
            Status::Shipped,
        )?;
        let again = PlaceOrder::new(id.clone(), "ada", &lines_of(day, 0));
        match run(executor, again).await? {
            Err(ShopError::OrderExists(_)) => {}
            other => {
                return Err(format!(
                    "CHECK FAILED: placing {id} twice must be refused, got {other:?}"
                ))
            }
        }
    }
    Ok(done)
}

/// The shop as the log tells it: every stream folded through its view.
#[derive(Debug, Default, PartialEq, Eq)]
struct Shop {
    orders: BTreeMap<StreamId, Order>,
    stock: BTreeMap<StreamId, Stock>,
}

/// The whole log replayed in global order, with every invariant checked.
#[derive(Debug, Default)]
struct Audit {
    shop: Shop,
    events: usize,
    /// Length of every stream.
    lengths: BTreeMap<StreamId, u64>,
    /// `Stock` of each product after each of its events (index 0: empty).
    history: BTreeMap<StreamId, Vec<Stock>>,
    violations: Vec<String>,
}

impl Audit {
    /// Checks: versions are contiguous from 1; no product's stock ever goes
    /// below zero; what each order holds reserved of each product (reserved
    /// minus released) is its lines while placed or shipped and nothing once
    /// cancelled, and never negative; each product's reserved count is the
    /// sum over orders.
    fn of(events: &[RecordedEvent]) -> Result<Audit, String> {
        let mut audit = Audit::default();
        let mut on_shelf: BTreeMap<StreamId, i64> = BTreeMap::new();
        let mut held: BTreeMap<(StreamId, StreamId), i64> = BTreeMap::new();
        for recorded in events {
            let id = &recorded.stream_id;
            let length = audit.lengths.entry(id.clone()).or_default();
            if recorded.version.get() != *length + 1 {
                audit
                    .violations
                    .push(format!("{id} jumps from version {length} to {}", recorded.version));
            }
            *length = recorded.version.get();
            audit.events += 1;
            let decode_error = |e: eventcore::DecodeError| {
                format!("{e} (written by an older version of this example? run it with --reset)")
            };
            if id.as_str().starts_with("order-") {
                let event = decode_recorded::<OrderEvent>(recorded).map_err(decode_error)?;
                audit.shop.orders.entry(id.clone()).or_default().apply(&event);
                continue;
            }
            let event = decode_recorded::<StockEvent>(recorded).map_err(decode_error)?;
            let shelf = on_shelf.entry(id.clone()).or_default();
            match &event {
                StockEvent::Restocked { units } => *shelf += i64::from(*units),
                StockEvent::Reserved { order, units } => {
                    *shelf -= i64::from(*units);
                    *held.entry((order.clone(), id.clone())).or_default() += i64::from(*units);
                }
                StockEvent::Released { order, units } => {
                    *shelf += i64::from(*units);
                    let h = held.entry((order.clone(), id.clone())).or_default();
                    *h -= i64::from(*units);
                    if *h < 0 {
                        audit
                            .violations
                            .push(format!("{order} released more {id} than it reserved"));
                    }
                }
            }
            if *shelf < 0 {
                audit
                    .violations
                    .push(format!("{id} went negative ({shelf}) at version {}", recorded.version));
            }
            let history = audit
                .history
                .entry(id.clone())
                .or_insert_with(|| vec![Stock::default()]);
            let mut next = history.last().cloned().unwrap_or_default();
            next.apply(&event);
            audit.shop.stock.insert(id.clone(), next.clone());
            history.push(next);
        }
        let mut reserved: BTreeMap<StreamId, i64> = BTreeMap::new();
        for (order_id, order) in &audit.shop.orders {
            for line in &order.lines {
                let holds = held.remove(&(order_id.clone(), line.product.clone())).unwrap_or(0);
                *reserved.entry(line.product.clone()).or_default() += holds;
                let should = match order.status {
                    Status::Cancelled => 0,
                    _ => i64::from(line.units),
                };
                if holds != should {
                    audit.violations.push(format!(
                        "{order_id} ({}) holds {holds} of {}, should hold {should}",
                        order.status, line.product
                    ));
                }
            }
        }
        for ((order_id, product), units) in held {
            audit.violations.push(format!(
                "{units} of {product} held by {order_id}, which has no such line"
            ));
        }
        for (product, stock) in &audit.shop.stock {
            let sum = reserved.get(product).copied().unwrap_or(0);
            if i64::from(stock.reserved) != sum {
                audit.violations.push(format!(
                    "{product} counts {} reserved, its orders hold {sum}",
                    stock.reserved
                ));
            }
        }
        Ok(audit)
    }

    fn days_done(&self) -> u32 {
        self.shop.orders.keys().filter_map(day_of).max().unwrap_or(0)
    }

    fn violations(&self) -> Result<(), String> {
        if self.violations.is_empty() {
            return Ok(());
        }
        Err(format!(
            "CHECK FAILED: invariants violated:\n  {}",
            self.violations.join("\n  ")
        ))
    }
}

/// Every event in the store, in global order.
async fn read_log<S: EventStore>(store: &S) -> Result<Vec<RecordedEvent>, String> {
    let mut events = Vec::new();
    let mut after = GlobalPosition::START;
    loop {
        let page = store
            .read_all(&ReadAllRequest {
                after,
                limit: NonZeroU32::new(1000).unwrap_or(NonZeroU32::MIN),
                filter: EventFilter::all(),
            })
            .await
            .map_err(|e| format!("reading the log: {e}"))?;
        if page.events.is_empty() && page.complete_through == after {
            return Ok(events);
        }
        after = page.complete_through;
        events.extend(page.events);
    }
}

/// The shop after each of days `0..=days`, computed independently: the same
/// story on a fresh in-memory store (views, no snapshots).
async fn replay(days: u32) -> Result<Vec<Shop>, String> {
    let executor = Executor::new(MemoryEventStore::new());
    let mut shops = vec![Shop::default()];
    for day in 1..=days {
        trade(&executor, day).await?;
        shops.push(Audit::of(&read_log(executor.store()).await?)?.shop);
    }
    Ok(shops)
}

fn print_stock(shop: &Shop) {
    let stock: Vec<String> = shop
        .stock
        .iter()
        .map(|(p, s)| format!("{p} {} free/{} reserved", s.available, s.reserved))
        .collect();
    let mut status: BTreeMap<Status, usize> = BTreeMap::new();
    for order in shop.orders.values() {
        *status.entry(order.status).or_default() += 1;
    }
    let status: Vec<String> = status.iter().map(|(s, n)| format!("{n} {s}")).collect();
    println!(
        "  orders: {}",
        if status.is_empty() {
            "none".into()
        } else {
            status.join(", ")
        }
    );
    println!(
        "  stock:  {}",
        if stock.is_empty() {
            "none".into()
        } else {
            stock.join(", ")
        }
    );
}

/// The version of each product's persisted `Stock` snapshot.
async fn held_snapshots(snapshots: &PgSnapshotStore) -> Result<BTreeMap<StreamId, u64>, String> {
    let mut held = BTreeMap::new();
    for (sku, _) in PRODUCTS {
        let id = product(sku);
        let loaded = SnapshotStore::load(snapshots, &id, Stock::NAME, Stock::VERSION)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(snapshot) = loaded {
            held.insert(id, snapshot.stream_version.get());
        }
    }
    Ok(held)
}

/// Every persisted `Stock` snapshot equals the fold of its stream's first
/// `stream_version` events; returns `stream@version` of each.
async fn check_snapshots(snapshots: &PgSnapshotStore, audit: &Audit) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    for (product, history) in &audit.history {
        let loaded = SnapshotStore::load(snapshots, product, Stock::NAME, Stock::VERSION)
            .await
            .map_err(|e| e.to_string())?;
        let Some(snapshot) = loaded else { continue };
        let at = snapshot.stream_version.get();
        let view = ViewKind::of::<Stock>()
            .decode(&snapshot.payload)
            .map_err(|e| format!("CHECK FAILED: snapshot of {product} does not decode: {e}"))?;
        let fold = usize::try_from(at).ok().and_then(|at| history.get(at));
        if view.downcast::<Stock>() != fold {
            return Err(format!(
                "CHECK FAILED: snapshot of {product} at {at} is {view:?}, the fold of its first {at} events is {fold:?}"
            ));
        }
        found.push(format!("{product}@{at}"));
    }
    Ok(found)
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

    // Before: rebuild from the log alone, check it.
    let before = Audit::of(&read_log(&store).await?)?;
    let days = before.days_done();
    let day = days + 1;
    println!(
        "rebuilt from {} events in PostgreSQL: {days} days traded",
        before.events
    );
    print_stock(&before.shop);
    before.violations()?;
    let expected = replay(day).await?;
    if expected.get(days as usize) != Some(&before.shop) {
        return Err(format!(
            "CHECK FAILED: the log differs from a replay of days 1..={days} in memory"
        ));
    }
    println!("check: invariants hold; state == replay of days 1..={days} on a fresh memory store: OK");

    // The day, on PostgreSQL with persisted snapshots; reads counted.
    let counting = CountingStore::new(store.clone());
    let snapshots = PgSnapshotStore::new(&store);
    let at_start = held_snapshots(&snapshots).await?;
    let executor = Executor::new(counting.clone()).with_snapshots(snapshots.clone());
    let done = trade(&executor, day).await?;
    executor.flush_snapshots().await;
    let yesterday = if day > 1 {
        format!(
            "; of yesterday's: {} cancelled (stock released), {} shipped",
            done.cancelled, done.yesterday_shipped
        )
    } else {
        String::new()
    };
    println!(
        "day {day}: {} orders placed, {} refused (out of stock), {} shipped{yesterday}",
        done.placed, done.out_of_stock, done.shipped
    );

    // After: the log again, checked against the replay.
    let after = Audit::of(&read_log(&store).await?)?;
    after.violations()?;
    if expected.get(day as usize) != Some(&after.shop) {
        return Err(format!(
            "CHECK FAILED: the log differs from a replay of days 1..={day} in memory"
        ));
    }
    println!("check: invariants hold; state == replay of days 1..={day}; refusals as expected: OK");
    print_stock(&after.shop);

    println!("what this run's commands read (a new process: views start from the newest snapshot):");
    let reads = counting.reads();
    let mut later = 0;
    for (sku, _) in PRODUCTS {
        let id = product(sku);
        let read = reads.get(&id).copied().unwrap_or_default();
        let from = match (read.length_at_first_read, at_start.get(&id)) {
            (0, _) => "new stream".to_owned(),
            (_, Some(at)) => format!("snapshot at {at}"),
            (_, None) => "no snapshot".to_owned(),
        };
        let more = read.events - read.first_read;
        later += more;
        let more = if more > 0 {
            format!(", then {more} more")
        } else {
            String::new()
        };
        let now = after.lengths.get(&id).copied().unwrap_or(0);
        println!(
            "  {id}: read {} of {} events ({from}){more}; {now} now",
            read.first_read, read.length_at_first_read
        );
    }
    let orders: Vec<_> = reads
        .iter()
        .filter(|(id, _)| id.as_str().starts_with("order-"))
        .collect();
    let (events, length) = orders
        .iter()
        .fold((0, 0), |(e, l), (_, r)| (e + r.events, l + r.length_at_first_read));
    println!("  {} order streams: read {events} of {length} events", orders.len());
    if later > 0 {
        println!("  (\"more\": reads after the first: refusals confirmed, streams a cancel discovered)");
    }
    let stats = executor.snapshot_stats();
    let held = check_snapshots(&snapshots, &after).await?;
    println!(
        "snapshots: {} loaded, {} written this run; held now: {} (each == the fold of its stream's first events: OK)",
        stats.loaded,
        stats.written,
        if held.is_empty() {
            "none".into()
        } else {
            held.join(", ")
        }
    );
    println!("stop here and run again: the next run starts from these events and snapshots alone");
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
