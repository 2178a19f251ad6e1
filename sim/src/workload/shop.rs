//! E-commerce orders over product stock. Cancelling an order discovers its
//! product streams at run time: the order's events name the products, and
//! `decide` asks to read them (all at once, or one per round) before it
//! restocks each and marks the order cancelled. Stock never goes below zero.

use crate::check::DomainModel;
use eventcore::{Command, Decision, Event, RecordedEvent, StreamId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Stream-id prefix of products.
pub const PRODUCT_PREFIX: &str = "product-";
/// Stream-id prefix of orders.
pub const ORDER_PREFIX: &str = "order-";

/// The stream of product `n`.
pub fn product(n: u32) -> StreamId {
    crate::workload::stream(PRODUCT_PREFIX, n)
}

/// The stream of order `n`.
pub fn order(n: u32) -> StreamId {
    crate::workload::stream(ORDER_PREFIX, n)
}

/// One order line: a product stream and a quantity.
pub type Line = (StreamId, u64);

/// What happens to products and orders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShopEvent {
    /// A product was listed with initial stock.
    ProductAdded {
        /// Units in stock.
        stock: u64,
    },
    /// Units taken from stock for an order.
    Reserved {
        /// The order.
        order: StreamId,
        /// Units.
        quantity: u64,
    },
    /// Units given back by a cancelled order.
    Restocked {
        /// The order.
        order: StreamId,
        /// Units.
        quantity: u64,
    },
    /// An order was placed.
    OrderPlaced {
        /// Its lines.
        lines: Vec<Line>,
    },
    /// An order was cancelled.
    OrderCancelled,
}

impl Event for ShopEvent {}

/// Why the shop refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShopError {
    /// The product is already listed.
    #[error("product `{0}` already exists")]
    ProductExists(StreamId),
    /// The order id is taken.
    #[error("order `{0}` already exists")]
    OrderExists(StreamId),
    /// Not enough units.
    #[error("product `{product}` has {stock} units, order wants {wanted}")]
    OutOfStock {
        /// The product.
        product: StreamId,
        /// Units in stock.
        stock: u64,
        /// Units wanted.
        wanted: u64,
    },
    /// Cancelling an order that was never placed.
    #[error("order `{0}` does not exist")]
    NoSuchOrder(StreamId),
    /// Cancelling twice.
    #[error("order `{0}` is already cancelled")]
    AlreadyCancelled(StreamId),
}

/// Lists a product.
#[derive(Clone, Debug)]
pub struct AddProduct {
    /// The product.
    pub product: StreamId,
    /// Initial stock.
    pub stock: u64,
}

impl Command for AddProduct {
    type Event = ShopEvent;
    type State = bool;
    type Error = ShopError;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.product.clone()]
    }

    fn apply(&self, exists: &mut bool, _: &StreamId, _: &ShopEvent) {
        *exists = true;
    }

    fn decide(&self, exists: &bool, out: &mut Decision<ShopEvent>) -> Result<(), ShopError> {
        if *exists {
            return Err(ShopError::ProductExists(self.product.clone()));
        }
        out.emit(&self.product, ShopEvent::ProductAdded { stock: self.stock });
        Ok(())
    }
}

/// Places an order, reserving stock on every product it names.
#[derive(Clone, Debug)]
pub struct PlaceOrder {
    /// The order.
    pub order: StreamId,
    /// Its lines (distinct products).
    pub lines: Vec<Line>,
}

/// Folded state of the order and its products.
#[derive(Debug, Default)]
pub struct PlaceState {
    order_exists: bool,
    stock: BTreeMap<StreamId, u64>,
}

impl Command for PlaceOrder {
    type Event = ShopEvent;
    type State = PlaceState;
    type Error = ShopError;

    fn streams(&self) -> Vec<StreamId> {
        std::iter::once(self.order.clone())
            .chain(self.lines.iter().map(|(p, _)| p.clone()))
            .collect()
    }

    fn apply(&self, state: &mut PlaceState, stream: &StreamId, event: &ShopEvent) {
        if stream == &self.order {
            state.order_exists = true;
            return;
        }
        let stock = state.stock.entry(stream.clone()).or_default();
        match event {
            ShopEvent::ProductAdded { stock: s } => *stock = *s,
            ShopEvent::Reserved { quantity, .. } => *stock = stock.saturating_sub(*quantity),
            ShopEvent::Restocked { quantity, .. } => *stock = stock.saturating_add(*quantity),
            ShopEvent::OrderPlaced { .. } | ShopEvent::OrderCancelled => {}
        }
    }

    fn decide(&self, state: &PlaceState, out: &mut Decision<ShopEvent>) -> Result<(), ShopError> {
        if state.order_exists {
            return Err(ShopError::OrderExists(self.order.clone()));
        }
        for (product, wanted) in &self.lines {
            let stock = state.stock.get(product).copied().unwrap_or(0);
            if stock < *wanted {
                return Err(ShopError::OutOfStock {
                    product: product.clone(),
                    stock,
                    wanted: *wanted,
                });
            }
        }
        out.emit(
            &self.order,
            ShopEvent::OrderPlaced {
                lines: self.lines.clone(),
            },
        );
        for (product, quantity) in &self.lines {
            out.emit(
                product,
                ShopEvent::Reserved {
                    order: self.order.clone(),
                    quantity: *quantity,
                },
            );
        }
        Ok(())
    }
}

/// Cancels an order: reads only the order, discovers its products from the
/// order's events, restocks each and marks the order cancelled.
#[derive(Clone, Debug)]
pub struct CancelOrder {
    /// The order.
    pub order: StreamId,
    /// Discover one product per round instead of all at once (more
    /// discovery rounds; fails under a discovery limit of 1).
    pub one_at_a_time: bool,
}

/// Folded state of the order and the products read so far.
#[derive(Debug, Default)]
pub struct CancelState {
    lines: Option<Vec<Line>>,
    cancelled: bool,
    products_read: BTreeSet<StreamId>,
}

impl Command for CancelOrder {
    type Event = ShopEvent;
    type State = CancelState;
    type Error = ShopError;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.order.clone()]
    }

    fn apply(&self, state: &mut CancelState, stream: &StreamId, event: &ShopEvent) {
        if stream != &self.order {
            // Every product starts with `ProductAdded`, so any event means
            // the stream has been read.
            state.products_read.insert(stream.clone());
            return;
        }
        match event {
            ShopEvent::OrderPlaced { lines } => state.lines = Some(lines.clone()),
            ShopEvent::OrderCancelled => state.cancelled = true,
            _ => {}
        }
    }

    fn decide(&self, state: &CancelState, out: &mut Decision<ShopEvent>) -> Result<(), ShopError> {
        let Some(lines) = &state.lines else {
            return Err(ShopError::NoSuchOrder(self.order.clone()));
        };
        if state.cancelled {
            return Err(ShopError::AlreadyCancelled(self.order.clone()));
        }
        let unread: Vec<&StreamId> = lines
            .iter()
            .map(|(p, _)| p)
            .filter(|p| !state.products_read.contains(*p))
            .collect();
        if !unread.is_empty() {
            let take = if self.one_at_a_time { 1 } else { unread.len() };
            for product in unread.into_iter().take(take) {
                out.read(product.clone());
            }
            return Ok(());
        }
        for (product, quantity) in lines {
            out.emit(
                product,
                ShopEvent::Restocked {
                    order: self.order.clone(),
                    quantity: *quantity,
                },
            );
        }
        out.emit(&self.order, ShopEvent::OrderCancelled);
        Ok(())
    }
}

/// Replays products and orders: stock never negative; an order reserves
/// exactly its lines, is cancelled at most once, and a cancellation gives
/// back exactly what was reserved.
#[derive(Debug, Default)]
pub struct ShopModel {
    stock: BTreeMap<StreamId, i128>,
    orders: BTreeMap<StreamId, OrderTally>,
}

#[derive(Debug, Default)]
struct OrderTally {
    lines: Option<Vec<Line>>,
    cancelled: u32,
    reserved: BTreeMap<StreamId, u64>,
    restocked: BTreeMap<StreamId, u64>,
}

impl DomainModel for ShopModel {
    fn name(&self) -> &'static str {
        "shop"
    }

    fn apply(&mut self, event: &RecordedEvent) -> Result<(), String> {
        let stream = &event.stream_id;
        let is_product = stream.as_str().starts_with(PRODUCT_PREFIX);
        if !is_product && !stream.as_str().starts_with(ORDER_PREFIX) {
            return Ok(());
        }
        let decoded = eventcore::decode_recorded::<ShopEvent>(event).map_err(|e| e.to_string())?;
        match decoded {
            ShopEvent::ProductAdded { stock } => *self.stock.entry(stream.clone()).or_default() += i128::from(stock),
            ShopEvent::Reserved { order, quantity } => {
                *self.stock.entry(stream.clone()).or_default() -= i128::from(quantity);
                *self
                    .orders
                    .entry(order)
                    .or_default()
                    .reserved
                    .entry(stream.clone())
                    .or_default() += quantity;
            }
            ShopEvent::Restocked { order, quantity } => {
                *self.stock.entry(stream.clone()).or_default() += i128::from(quantity);
                *self
                    .orders
                    .entry(order)
                    .or_default()
                    .restocked
                    .entry(stream.clone())
                    .or_default() += quantity;
            }
            ShopEvent::OrderPlaced { lines } => {
                let tally = self.orders.entry(stream.clone()).or_default();
                if tally.lines.is_some() {
                    return Err(format!("order `{stream}` placed twice (position {})", event.position));
                }
                tally.lines = Some(lines);
            }
            ShopEvent::OrderCancelled => self.orders.entry(stream.clone()).or_default().cancelled += 1,
        }
        if is_product {
            let stock = self.stock.get(stream).copied().unwrap_or(0);
            if stock < 0 {
                return Err(format!(
                    "`{stream}` stock went negative ({stock}) at version {} (position {})",
                    event.version, event.position
                ));
            }
        }
        Ok(())
    }

    fn finish(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (order, tally) in &self.orders {
            let lines: BTreeMap<StreamId, u64> = tally.lines.iter().flatten().cloned().collect();
            if tally.reserved != lines {
                problems.push(format!(
                    "order `{order}` reserved {:?} but its lines are {lines:?}",
                    tally.reserved
                ));
            }
            if tally.cancelled > 1 {
                problems.push(format!("order `{order}` cancelled {} times", tally.cancelled));
            }
            let expected_back = if tally.cancelled > 0 { lines } else { BTreeMap::new() };
            if tally.restocked != expected_back {
                problems.push(format!(
                    "order `{order}` restocked {:?}, expected {expected_back:?}",
                    tally.restocked
                ));
            }
        }
        problems
    }
}
