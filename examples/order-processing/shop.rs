//! The shop's domain: two entities with their own events and views (an
//! order, a product's stock) and the commands over them.
//!
//! Each command is a struct whose `#[stream(View)]` fields name the streams
//! it reads, plus an `impl Decide`. A command that touches an order and its
//! products writes `OrderEvent`s to the order stream and `StockEvent`s to the
//! product streams in one atomic append.

use eventcore::{require, Command, Decide, Emit, Event, StreamId, View};
use serde::{Deserialize, Serialize};

/// Snapshot every this many events: small, so a few runs of the demo write
/// and use snapshots.
const SNAPSHOT_EVERY: u64 = 20;

/// What happens to an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderEvent {
    /// The order was placed; its stock is reserved in the same append.
    Placed { customer: String, lines: Vec<Line> },
    /// The order was cancelled before shipping; its stock is released in the
    /// same append.
    Cancelled { reason: String },
    /// The order left the warehouse.
    Shipped { carrier: String },
}

impl Event for OrderEvent {}

/// What happens to a product's stock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StockEvent {
    /// Units arrived in the warehouse.
    Restocked { units: u32 },
    /// Units set aside for an order.
    Reserved { order: StreamId, units: u32 },
    /// Units of a cancelled order returned to stock.
    Released { order: StreamId, units: u32 },
}

impl Event for StockEvent {}

/// One line of an order: units of a product (the product's stock stream).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub product: StreamId,
    pub units: u32,
}

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
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

/// An order stream, folded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub status: Status,
    pub customer: String,
    pub lines: Vec<Line>,
}

impl View for Order {
    type Event = OrderEvent;
    const NAME: &'static str = "shop.order";
    const SNAPSHOT_EVERY: u64 = SNAPSHOT_EVERY;

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed { customer, lines } => {
                self.status = Status::Placed;
                self.customer.clone_from(customer);
                self.lines.clone_from(lines);
            }
            OrderEvent::Cancelled { .. } => self.status = Status::Cancelled,
            OrderEvent::Shipped { .. } => self.status = Status::Shipped,
        }
    }
}

/// A product's stock stream, folded: the hot streams every order touches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stock {
    /// Units on the shelf, not reserved by any order.
    pub available: u32,
    /// Units currently reserved by orders not cancelled.
    pub reserved: u32,
}

impl View for Stock {
    type Event = StockEvent;
    const NAME: &'static str = "shop.stock";
    const SNAPSHOT_EVERY: u64 = SNAPSHOT_EVERY;

    fn apply(&mut self, event: &StockEvent) {
        match event {
            StockEvent::Restocked { units } => self.available += units,
            StockEvent::Reserved { units, .. } => {
                self.available = self.available.saturating_sub(*units);
                self.reserved += units;
            }
            StockEvent::Released { units, .. } => {
                self.available += units;
                self.reserved = self.reserved.saturating_sub(*units);
            }
        }
    }
}

/// Why the shop refuses a command.
#[derive(Debug, thiserror::Error)]
pub enum ShopError {
    #[error("order {0} already exists")]
    OrderExists(StreamId),
    #[error("order {0} does not exist")]
    NoSuchOrder(StreamId),
    #[error("order {order} is {status}")]
    WrongStatus { order: StreamId, status: Status },
    #[error("only {available} units of {product} available, {wanted} wanted")]
    OutOfStock {
        product: StreamId,
        available: u32,
        wanted: u32,
    },
}

/// Units arrive for one product.
#[derive(Debug, Clone, Command)]
pub struct Restock {
    #[stream(Stock)]
    pub product: StreamId,
    pub units: u32,
}

impl Decide for Restock {
    type Error = ShopError;

    fn decide(&self, _: &RestockState<'_>, out: &mut Emit<'_>) -> Result<(), ShopError> {
        out.emit(&self.product, StockEvent::Restocked { units: self.units });
        Ok(())
    }
}

/// Places an order and reserves its stock: `Placed` on the order stream and
/// one `Reserved` per product stream, in one atomic append. Each product
/// stream is pinned to the version its `Stock` view was folded to, so two
/// orders racing for the last units cannot both win.
#[derive(Debug, Clone, Command)]
pub struct PlaceOrder {
    #[stream(Order)]
    pub order: StreamId,
    /// The product of each line (distinct), in line order.
    #[stream(Stock)]
    pub products: Vec<StreamId>,
    /// The units of each line, parallel to `products`.
    pub units: Vec<u32>,
    pub customer: String,
}

impl PlaceOrder {
    pub fn new(order: StreamId, customer: &str, lines: &[Line]) -> Self {
        PlaceOrder {
            order,
            products: lines.iter().map(|l| l.product.clone()).collect(),
            units: lines.iter().map(|l| l.units).collect(),
            customer: customer.to_owned(),
        }
    }
}

impl Decide for PlaceOrder {
    type Error = ShopError;

    fn decide(&self, state: &PlaceOrderState<'_>, out: &mut Emit<'_>) -> Result<(), ShopError> {
        require!(
            state.order.status == Status::None,
            ShopError::OrderExists(self.order.clone())
        );
        let mut lines = Vec::with_capacity(self.products.len());
        for ((product, stock), &wanted) in self.products.iter().zip(&state.products).zip(&self.units) {
            require!(
                stock.available >= wanted,
                ShopError::OutOfStock {
                    product: product.clone(),
                    available: stock.available,
                    wanted,
                }
            );
            lines.push(Line {
                product: product.clone(),
                units: wanted,
            });
        }
        for line in &lines {
            out.emit(
                &line.product,
                StockEvent::Reserved {
                    order: self.order.clone(),
                    units: line.units,
                },
            );
        }
        out.emit(
            &self.order,
            OrderEvent::Placed {
                customer: self.customer.clone(),
                lines,
            },
        );
        Ok(())
    }
}

/// Cancels a placed order and releases its stock. It declares only the
/// order stream: the product streams are found in the order at run time.
/// The first round reads the order and asks for each product's `Stock` view
/// (`out.read`); the next round, with every view at hand, writes `Released`
/// to each product and `Cancelled` to the order in one atomic append.
#[derive(Debug, Clone, Command)]
pub struct CancelOrder {
    #[stream(Order)]
    pub order: StreamId,
    pub reason: String,
}

impl Decide for CancelOrder {
    type Error = ShopError;

    fn decide(&self, state: &CancelOrderState<'_>, out: &mut Emit<'_>) -> Result<(), ShopError> {
        let order = state.order;
        require!(order.status != Status::None, ShopError::NoSuchOrder(self.order.clone()));
        require!(
            order.status == Status::Placed,
            ShopError::WrongStatus {
                order: self.order.clone(),
                status: order.status,
            }
        );
        let unread: Vec<&Line> = order
            .lines
            .iter()
            .filter(|l| state.views.get::<Stock>(&l.product).is_none())
            .collect();
        if !unread.is_empty() {
            for line in unread {
                out.read::<Stock>(line.product.clone());
            }
            return Ok(());
        }
        for line in &order.lines {
            out.emit(
                &line.product,
                StockEvent::Released {
                    order: self.order.clone(),
                    units: line.units,
                },
            );
        }
        out.emit(
            &self.order,
            OrderEvent::Cancelled {
                reason: self.reason.clone(),
            },
        );
        Ok(())
    }
}

/// Ships a placed order.
#[derive(Debug, Clone, Command)]
pub struct ShipOrder {
    #[stream(Order)]
    pub order: StreamId,
    pub carrier: String,
}

impl Decide for ShipOrder {
    type Error = ShopError;

    fn decide(&self, state: &ShipOrderState<'_>, out: &mut Emit<'_>) -> Result<(), ShopError> {
        require!(
            state.order.status != Status::None,
            ShopError::NoSuchOrder(self.order.clone())
        );
        require!(
            state.order.status == Status::Placed,
            ShopError::WrongStatus {
                order: self.order.clone(),
                status: state.order.status,
            }
        );
        out.emit(
            &self.order,
            OrderEvent::Shipped {
                carrier: self.carrier.clone(),
            },
        );
        Ok(())
    }
}
