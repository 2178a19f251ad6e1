//! The workload's view commands: the bank's transfer and the shop's orders
//! written on stream views (`type State = Views`), by hand, as
//! `#[derive(Command)]` would write them. They share the streams and events
//! of the whole-fold commands, so each view folds events written by either
//! kind, and the domain models judge both alike.
//!
//! Every view command carries a [`DecisionProbe`]: each `decide` that emits events
//! records the views it decided on (as JSON), so the simulator can check,
//! once the command committed, that each equals the full fold of its stream
//! up to the version the append pinned (cache or snapshot + tail == replay).

use super::bank::{rules, BankError, BankEvent};
use super::shop::{Line, ShopError, ShopEvent, PRODUCT_PREFIX};
use crate::probe::{view_json as json, DecisionProbe};
use eventcore::{AnyEvent, Command, Decision, Emit, ExpectedVersion, StreamId, View, ViewKind, Views};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// An account, folded per stream.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// Opened yet?
    pub open: bool,
    /// Balance.
    pub balance: u64,
}

impl View for AccountView {
    type Event = BankEvent;
    const NAME: &'static str = "account";
    const SNAPSHOT_EVERY: u64 = 5;

    fn apply(&mut self, event: &BankEvent) {
        match event {
            BankEvent::Opened { initial } => {
                self.open = true;
                self.balance = *initial;
            }
            BankEvent::Withdrawn { amount } | BankEvent::PaidOut { amount } => {
                self.balance = self.balance.saturating_sub(*amount)
            }
            BankEvent::Deposited { amount } => self.balance = self.balance.saturating_add(*amount),
            BankEvent::Closed { .. } => {
                self.open = false;
                self.balance = 0;
            }
            BankEvent::LimitSet { .. } | BankEvent::Audited { .. } => {}
        }
    }
}

/// The bank's rules stream: the limit, and how many audits it holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulesView {
    /// The transfer limit, once set.
    pub limit: Option<u64>,
    /// Audit entries folded.
    pub audited: u64,
}

impl View for RulesView {
    type Event = BankEvent;
    const NAME: &'static str = "bank-rules";
    const SNAPSHOT_EVERY: u64 = 7;

    fn apply(&mut self, event: &BankEvent) {
        match event {
            BankEvent::LimitSet { max } => self.limit = Some(*max),
            BankEvent::Audited { .. } => self.audited += 1,
            _ => {}
        }
    }
}

/// An order: its lines and whether it was cancelled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// The lines, once placed.
    pub lines: Option<Vec<Line>>,
    /// Cancelled yet?
    pub cancelled: bool,
}

impl View for OrderView {
    type Event = ShopEvent;
    const NAME: &'static str = "order";
    const SNAPSHOT_EVERY: u64 = 2;

    fn apply(&mut self, event: &ShopEvent) {
        match event {
            ShopEvent::OrderPlaced { lines } => self.lines = Some(lines.clone()),
            ShopEvent::OrderCancelled => self.cancelled = true,
            _ => {}
        }
    }

    fn approximate_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .lines
                .iter()
                .flatten()
                .map(|(p, _)| p.as_str().len() + 16)
                .sum::<usize>()
    }
}

/// A product's stock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockView {
    /// Listed yet?
    pub listed: bool,
    /// Units in stock.
    pub stock: u64,
}

impl View for StockView {
    type Event = ShopEvent;
    const NAME: &'static str = "stock";
    const SNAPSHOT_EVERY: u64 = 10;

    fn apply(&mut self, event: &ShopEvent) {
        match event {
            ShopEvent::ProductAdded { stock } => {
                self.listed = true;
                self.stock = *stock;
            }
            ShopEvent::Reserved { quantity, .. } => self.stock = self.stock.saturating_sub(*quantity),
            ShopEvent::Restocked { quantity, .. } => self.stock = self.stock.saturating_add(*quantity),
            ShopEvent::OrderPlaced { .. } | ShopEvent::OrderCancelled => {}
        }
    }
}

/// A view that the command needs but was not read: decide nothing.
fn missing<V: View>(out: &mut Emit<'_>, stream: &StreamId) {
    out.missing_view(stream, ViewKind::of::<V>());
}

/// [`super::bank::Transfer`] on views: `from` and `to` through
/// [`AccountView`], the rules stream through [`RulesView`].
#[derive(Clone, Debug)]
pub struct ViewTransfer {
    /// The transfer (same fields and variants as the whole-fold one).
    pub transfer: super::bank::Transfer,
    /// Records what each decision saw.
    pub probe: DecisionProbe,
}

impl Command for ViewTransfer {
    type Event = AnyEvent;
    type State = Views;
    type Error = BankError;

    fn streams(&self) -> Vec<StreamId> {
        self.transfer.streams()
    }

    fn view_of(&self, stream: &StreamId) -> Option<ViewKind> {
        if stream == &rules() {
            Some(ViewKind::of::<RulesView>())
        } else {
            Some(ViewKind::of::<AccountView>())
        }
    }

    fn views_mut(state: &mut Views) -> Option<&mut Views> {
        Some(state)
    }

    fn apply(&self, _: &mut Views, _: &StreamId, _: &AnyEvent) {}

    fn decide(&self, views: &Views, decision: &mut Decision<AnyEvent>) -> Result<(), BankError> {
        let t = &self.transfer;
        let mut out = Emit::new(decision);
        let (Some(from), Some(to)) = (views.get::<AccountView>(&t.from), views.get::<AccountView>(&t.to)) else {
            missing::<AccountView>(&mut out, &t.from);
            return Ok(());
        };
        let rules_view = if t.check_limit || t.audit {
            match views.get::<RulesView>(&rules()) {
                Some(r) => Some(r),
                None => {
                    missing::<RulesView>(&mut out, &rules());
                    return Ok(());
                }
            }
        } else {
            None
        };
        for (id, account) in [(&t.from, from), (&t.to, to)] {
            if !account.open {
                return Err(BankError::NotOpen(id.clone()));
            }
        }
        if from.balance < t.amount {
            return Err(BankError::Insufficient {
                account: t.from.clone(),
                balance: from.balance,
                amount: t.amount,
            });
        }
        if let Some(max) = rules_view
            .and_then(|r| r.limit)
            .filter(|max| t.check_limit && t.amount > *max)
        {
            return Err(BankError::OverLimit { amount: t.amount, max });
        }
        out.emit(&t.from, BankEvent::Withdrawn { amount: t.amount });
        out.emit(&t.to, BankEvent::Deposited { amount: t.amount });
        if t.audit {
            out.emit(&rules(), BankEvent::Audited { amount: t.amount });
        }
        if t.relax_to {
            out.expect(&t.to, ExpectedVersion::Any);
        }
        let mut decided = vec![(t.from.clone(), json(from)), (t.to.clone(), json(to))];
        if let Some(r) = rules_view {
            decided.push((rules(), json(r)));
        }
        self.probe.record(decided);
        Ok(())
    }
}

/// [`super::shop::PlaceOrder`] on views: the order through [`OrderView`],
/// each product through [`StockView`].
#[derive(Clone, Debug)]
pub struct ViewPlaceOrder {
    /// The order.
    pub place: super::shop::PlaceOrder,
    /// Records what each decision saw.
    pub probe: DecisionProbe,
}

impl Command for ViewPlaceOrder {
    type Event = AnyEvent;
    type State = Views;
    type Error = ShopError;

    fn streams(&self) -> Vec<StreamId> {
        self.place.streams()
    }

    fn view_of(&self, stream: &StreamId) -> Option<ViewKind> {
        if stream.as_str().starts_with(PRODUCT_PREFIX) {
            Some(ViewKind::of::<StockView>())
        } else {
            Some(ViewKind::of::<OrderView>())
        }
    }

    fn views_mut(state: &mut Views) -> Option<&mut Views> {
        Some(state)
    }

    fn apply(&self, _: &mut Views, _: &StreamId, _: &AnyEvent) {}

    fn decide(&self, views: &Views, decision: &mut Decision<AnyEvent>) -> Result<(), ShopError> {
        let p = &self.place;
        let mut out = Emit::new(decision);
        let Some(order) = views.get::<OrderView>(&p.order) else {
            missing::<OrderView>(&mut out, &p.order);
            return Ok(());
        };
        if order.lines.is_some() {
            return Err(ShopError::OrderExists(p.order.clone()));
        }
        let mut decided = vec![(p.order.clone(), json(order))];
        for (product, wanted) in &p.lines {
            let Some(stock) = views.get::<StockView>(product) else {
                missing::<StockView>(&mut out, product);
                return Ok(());
            };
            if stock.stock < *wanted {
                return Err(ShopError::OutOfStock {
                    product: product.clone(),
                    stock: stock.stock,
                    wanted: *wanted,
                });
            }
            decided.push((product.clone(), json(stock)));
        }
        out.emit(&p.order, ShopEvent::OrderPlaced { lines: p.lines.clone() });
        for (product, quantity) in &p.lines {
            out.emit(
                product,
                ShopEvent::Reserved {
                    order: p.order.clone(),
                    quantity: *quantity,
                },
            );
        }
        self.probe.record(decided);
        Ok(())
    }
}

/// [`super::shop::CancelOrder`] on views: reads the order, discovers its
/// products and reads each through [`StockView`] (all at once or one per
/// round), restocks them and marks the order cancelled.
#[derive(Clone, Debug)]
pub struct ViewCancelOrder {
    /// The cancellation.
    pub cancel: super::shop::CancelOrder,
    /// Records what each decision saw.
    pub probe: DecisionProbe,
}

impl Command for ViewCancelOrder {
    type Event = AnyEvent;
    type State = Views;
    type Error = ShopError;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.cancel.order.clone()]
    }

    fn view_of(&self, stream: &StreamId) -> Option<ViewKind> {
        if stream == &self.cancel.order {
            Some(ViewKind::of::<OrderView>())
        } else {
            Some(ViewKind::of::<StockView>())
        }
    }

    fn views_mut(state: &mut Views) -> Option<&mut Views> {
        Some(state)
    }

    fn apply(&self, _: &mut Views, _: &StreamId, _: &AnyEvent) {}

    fn decide(&self, views: &Views, decision: &mut Decision<AnyEvent>) -> Result<(), ShopError> {
        let c = &self.cancel;
        let mut out = Emit::new(decision);
        let Some(order) = views.get::<OrderView>(&c.order) else {
            missing::<OrderView>(&mut out, &c.order);
            return Ok(());
        };
        let Some(lines) = &order.lines else {
            return Err(ShopError::NoSuchOrder(c.order.clone()));
        };
        if order.cancelled {
            return Err(ShopError::AlreadyCancelled(c.order.clone()));
        }
        let unread: Vec<&StreamId> = lines
            .iter()
            .map(|(p, _)| p)
            .filter(|p| views.get::<StockView>(p).is_none())
            .collect();
        if !unread.is_empty() {
            let take = if c.one_at_a_time { 1 } else { unread.len() };
            for product in unread.into_iter().take(take) {
                out.read::<StockView>(product.clone());
            }
            return Ok(());
        }
        let mut decided = vec![(c.order.clone(), json(order))];
        for (product, quantity) in lines {
            if let Some(stock) = views.get::<StockView>(product) {
                decided.push((product.clone(), json(stock)));
            }
            out.emit(
                product,
                ShopEvent::Restocked {
                    order: c.order.clone(),
                    quantity: *quantity,
                },
            );
        }
        out.emit(&c.order, ShopEvent::OrderCancelled);
        self.probe.record(decided);
        Ok(())
    }
}

/// The full fold of `events` (a stream's first events, in order) through
/// `kind`, as JSON: what a view folded from any starting point must equal.
pub fn full_fold(kind: ViewKind, events: &[eventcore::RecordedEvent]) -> Result<String, String> {
    let mut view = kind.empty();
    let Some(fresh) = Arc::get_mut(&mut view) else {
        return Err("a fresh view is shared".to_owned());
    };
    for event in events {
        fresh
            .apply_recorded(event)
            .map_err(|e| format!("`{}`@{} does not fold: {e}", event.stream_id, event.version))?;
    }
    view.encode().map_err(|e| e.to_string())
}
