//! The order module today. Against the first release:
//!
//! - types are namespaced (`order.Placed`), and the bare names written
//!   before are still read ([`Event::READS_UNQUALIFIED`]);
//! - `OrderPlaced` / `OrderShipped` are renamed `Placed` / `Shipped`
//!   ([`Event::ALIASES`]);
//! - `Placed` is at version 2: the customer's name split in two, `total`
//!   renamed `amount_cents`, and a required `currency` that old events get
//!   as `EUR` — one upcaster step ([`Event::UPCASTS`]); `Shipped` did not
//!   change and needs nothing;
//! - the `Purchases` view folds the new shape, so its version is 2:
//!   snapshots of version 1 are never used.

use eventcore::{require, Command, Decide, Emit, Event, StreamId, Upcast, View};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeSet;

/// What happens to a customer's orders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderEvent {
    /// An order.
    Placed {
        /// The customer's first name (v1 had one `customer` field).
        first_name: String,
        /// The customer's last name.
        last_name: String,
        /// What it costs, in cents (v1 called it `total`).
        amount_cents: u64,
        /// ISO code of the currency (v1 had none: euros).
        currency: String,
    },
    /// An order left the warehouse.
    Shipped {
        /// Which of the customer's orders, counting from 1.
        order: u32,
    },
}

impl Event for OrderEvent {
    const NAMESPACE: &'static str = "order";
    const READS_UNQUALIFIED: bool = true;
    const ALIASES: &'static [(&'static str, &'static str)] = &[("OrderPlaced", "Placed"), ("OrderShipped", "Shipped")];
    const VERSIONS: &'static [(&'static str, u32)] = &[("Placed", 2)];
    const UPCASTS: &'static [Upcast] = &[Upcast::new("Placed", 1, placed_v1_to_v2)];
}

/// `{"customer": "Ada Lovelace", "total": 1250}` →
/// `{"first_name": "Ada", "last_name": "Lovelace", "amount_cents": 1250, "currency": "EUR"}`.
fn placed_v1_to_v2(old: Value) -> Result<Value, String> {
    let customer = old["customer"].as_str().ok_or("`customer` is missing or not text")?;
    let total = old["total"]
        .as_u64()
        .ok_or("`total` is missing or not a whole number")?;
    let (first, last) = customer.split_once(' ').unwrap_or((customer, ""));
    Ok(json!({
        "first_name": first,
        "last_name": last,
        "amount_cents": total,
        "currency": "EUR",
    }))
}

/// A customer's purchases.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purchases {
    /// Orders placed.
    pub orders: u32,
    /// Orders shipped.
    pub shipped: u32,
    /// What they cost, in cents (whatever the currency: this shop only
    /// ever sold in euros).
    pub spent_cents: u64,
    /// Every currency paid in.
    pub currencies: BTreeSet<String>,
    /// The name on the latest order.
    pub last_name: String,
}

impl View for Purchases {
    type Event = OrderEvent;
    const NAME: &'static str = "evolution.purchases";
    const VERSION: u32 = 2;
    const SNAPSHOT_EVERY: u64 = super::SNAPSHOT_EVERY;

    fn apply(&mut self, event: &OrderEvent) {
        match event {
            OrderEvent::Placed {
                amount_cents,
                currency,
                last_name,
                ..
            } => {
                self.orders += 1;
                self.spent_cents += amount_cents;
                self.currencies.insert(currency.clone());
                self.last_name.clone_from(last_name);
            }
            OrderEvent::Shipped { .. } => self.shipped += 1,
        }
    }
}

/// Why an order is refused.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// The shop sells in one currency.
    #[error("customer {customer} paid in {paid:?} before; {wanted} is not accepted")]
    MixedCurrencies {
        /// The customer's stream.
        customer: StreamId,
        /// The currencies paid in so far.
        paid: BTreeSet<String>,
        /// The currency of the refused order.
        wanted: String,
    },
}

/// Places an order; refuses a currency other than the ones the customer
/// paid in before — a rule that rests on every old event decoding.
#[derive(Debug, Clone, Command)]
pub struct PlaceOrder {
    /// The customer's stream.
    #[stream(Purchases)]
    pub customer: StreamId,
    /// First name on the order.
    pub first_name: String,
    /// Last name on the order.
    pub last_name: String,
    /// What it costs, in cents.
    pub amount_cents: u64,
    /// ISO code of the currency.
    pub currency: String,
}

impl Decide for PlaceOrder {
    type Error = OrderError;

    fn decide(&self, state: &PlaceOrderState<'_>, out: &mut Emit<'_>) -> Result<(), OrderError> {
        let paid = &state.customer.currencies;
        require!(
            paid.is_empty() || paid.contains(&self.currency),
            OrderError::MixedCurrencies {
                customer: self.customer.clone(),
                paid: paid.clone(),
                wanted: self.currency.clone(),
            }
        );
        out.emit(
            &self.customer,
            OrderEvent::Placed {
                first_name: self.first_name.clone(),
                last_name: self.last_name.clone(),
                amount_cents: self.amount_cents,
                currency: self.currency.clone(),
            },
        );
        Ok(())
    }
}
