//! The order module as first shipped: bare type names (`OrderPlaced`), one
//! schema version, a customer's whole name in one field.

use eventcore::{Command, Decide, Emit, Event, StreamId, View};
use serde::{Deserialize, Serialize};

/// What happened to a customer's orders, as first written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderEvent {
    /// An order: the customer's whole name and the total in cents.
    OrderPlaced {
        /// The customer's whole name.
        customer: String,
        /// What it costs, in cents.
        total: u64,
    },
    /// An order left the warehouse.
    OrderShipped {
        /// Which of the customer's orders, counting from 1.
        order: u32,
    },
}

impl Event for OrderEvent {}

/// A customer's purchases, as first folded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchases {
    /// Orders placed.
    pub orders: u32,
    /// Their totals, in cents.
    pub total: u64,
}

impl View for Purchases {
    type Event = OrderEvent;
    const NAME: &'static str = "evolution.purchases";
    const VERSION: u32 = 1;
    const SNAPSHOT_EVERY: u64 = super::SNAPSHOT_EVERY;

    fn apply(&mut self, event: &OrderEvent) {
        if let OrderEvent::OrderPlaced { total, .. } = event {
            self.orders += 1;
            self.total += total;
        }
    }
}

/// The module never refuses in this story.
#[derive(Debug, thiserror::Error)]
#[error("never refused")]
pub struct Never;

/// Places an order on the customer's stream.
#[derive(Debug, Clone, Command)]
pub struct PlaceOrder {
    /// The customer's stream.
    #[stream(Purchases)]
    pub customer: StreamId,
    /// The customer's whole name.
    pub name: String,
    /// What it costs, in cents.
    pub total: u64,
}

impl Decide for PlaceOrder {
    type Error = Never;

    fn decide(&self, _: &PlaceOrderState<'_>, out: &mut Emit<'_>) -> Result<(), Never> {
        out.emit(
            &self.customer,
            OrderEvent::OrderPlaced {
                customer: self.name.clone(),
                total: self.total,
            },
        );
        Ok(())
    }
}

/// Ships the customer's latest order.
#[derive(Debug, Clone, Command)]
pub struct ShipLatest {
    /// The customer's stream.
    #[stream(Purchases)]
    pub customer: StreamId,
}

impl Decide for ShipLatest {
    type Error = Never;

    fn decide(&self, state: &ShipLatestState<'_>, out: &mut Emit<'_>) -> Result<(), Never> {
        out.emit(
            &self.customer,
            OrderEvent::OrderShipped {
                order: state.customer.orders,
            },
        );
        Ok(())
    }
}
