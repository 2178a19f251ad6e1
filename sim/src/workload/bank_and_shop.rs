//! The built-in workload as a [`Domain`]: bank transfers across a few hot
//! accounts and shop orders that reserve stock and discover products when
//! cancelled, each command either folded whole or decided on stream views.

use super::bank::{self, BankModel};
use super::customers;
use super::shop::{self, ShopModel};
use super::views::{ViewCancelOrder, ViewPlaceOrder, ViewTransfer};
use crate::check::DomainModel;
use crate::rng::SimRng;
use crate::{Domain, DomainCommand};
use std::fmt;

/// The parameters [`BankAndShop`] draws per seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankAndShopParams {
    /// Accounts.
    pub accounts: u32,
    /// The first `hot` accounts take `hot_per_mille` of the traffic.
    pub hot: u32,
    /// Share of transfers touching a hot account, per mille.
    pub hot_per_mille: u32,
    /// Products.
    pub products: u32,
    /// Share of shop commands, per mille.
    pub shop_per_mille: u32,
    /// Share of commands decided on stream views, per mille.
    pub view_per_mille: u32,
}

impl fmt::Display for BankAndShopParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "accounts={} hot={}@{}‰ products={} shop={}‰ views={}‰",
            self.accounts, self.hot, self.hot_per_mille, self.products, self.shop_per_mille, self.view_per_mille
        )
    }
}

impl BankAndShopParams {
    fn draw(rng: &mut SimRng) -> Self {
        let accounts = rng.between(2, 24) as u32;
        BankAndShopParams {
            accounts,
            hot: rng.between(1, u64::from(accounts.min(3))) as u32,
            hot_per_mille: rng.between(0, 900) as u32,
            products: rng.between(1, 8) as u32,
            shop_per_mille: rng.between(100, 600) as u32,
            // A quarter of the seeds run no view command, a quarter only
            // view commands, the rest a mix.
            view_per_mille: match rng.below(4) {
                0 => 0,
                1 => 1_000,
                _ => rng.between(200, 800) as u32,
            },
        }
    }
}

/// The simulator's own domain, run by [`run`](crate::run): accounts opened
/// with random balances, a transfer limit, listed products; then transfers
/// (some relaxing the receiving account, checking the limit or writing an
/// audit entry), one-stream payouts, customers' holder names (personal
/// data of one subject each), account closings (the account's last
/// event, written with a tombstone that ends its stream), orders and
/// cancellations (some cancelling twice, which the domain refuses). Checked by [`BankModel`] (money conserved, no balance
/// below zero) and [`ShopModel`] (stock never negative, every reservation
/// released once).
///
/// ```
/// use eventcore_sim::workload::BankAndShop;
/// use eventcore_sim::{run, run_with, SimConfig};
/// let config = SimConfig::new(4);
/// let report = run_with(&config, BankAndShop::new());
/// assert!(report.passed(), "{:?}", report.violations);
/// assert_eq!(report.trace_hash, run(&config).trace_hash);
/// ```
#[derive(Debug, Default)]
pub struct BankAndShop {
    params: Option<BankAndShopParams>,
    next_order: u32,
    placed: Vec<u32>,
    /// Holder names given so far (each a distinct plaintext).
    names: u32,
}

impl BankAndShop {
    /// The domain, its parameters not drawn yet (they are drawn in
    /// [`Domain::setup`]).
    pub fn new() -> Self {
        BankAndShop::default()
    }

    /// The parameters drawn, once [`Domain::setup`] ran.
    pub fn params(&self) -> Option<&BankAndShopParams> {
        self.params.as_ref()
    }

    fn next_transfer(&mut self, rng: &mut SimRng, params: &BankAndShopParams) -> bank::Transfer {
        let from = pick_account(rng, params);
        let mut to = pick_account(rng, params);
        if to == from {
            to = (from + 1) % params.accounts;
        }
        let amount = rng.between(1, 60);
        // Variants derived from the amount, so that they cost no extra draw.
        bank::Transfer {
            from: bank::account(from),
            to: bank::account(to),
            amount,
            relax_to: amount % 4 == 0,
            check_limit: amount % 3 == 0,
            audit: amount % 7 == 0,
        }
    }

    fn next_shop_command(&mut self, rng: &mut SimRng, params: &BankAndShopParams) -> ShopCommand {
        if !self.placed.is_empty() && rng.chance(450) {
            let pick = rng.below(self.placed.len() as u64) as usize;
            let order = self.placed[pick];
            // Mostly cancel each order once; sometimes twice, which the
            // domain must refuse.
            if rng.chance(850) {
                self.placed.swap_remove(pick);
            }
            return ShopCommand::Cancel(shop::CancelOrder {
                order: shop::order(order),
                one_at_a_time: rng.chance(400),
            });
        }
        let order = self.next_order;
        self.next_order += 1;
        self.placed.push(order);
        let count = rng.between(1, u64::from(params.products.min(4)));
        let mut products: Vec<u32> = Vec::new();
        while (products.len() as u64) < count {
            let p = rng.below(u64::from(params.products)) as u32;
            if !products.contains(&p) {
                products.push(p);
            }
        }
        ShopCommand::Place(shop::PlaceOrder {
            order: shop::order(order),
            lines: products
                .into_iter()
                .map(|p| (shop::product(p), rng.between(1, 5)))
                .collect(),
        })
    }
}

enum ShopCommand {
    Place(shop::PlaceOrder),
    Cancel(shop::CancelOrder),
}

fn pick_account(rng: &mut SimRng, params: &BankAndShopParams) -> u32 {
    if rng.chance(params.hot_per_mille) {
        rng.below(u64::from(params.hot)) as u32
    } else {
        rng.below(u64::from(params.accounts)) as u32
    }
}

/// One transfer draw in this many (by amount) is a one-stream payout.
const PAY_OUT_EVERY: u64 = 11;

/// Transfer draws of these amounts (3 in 60) set a customer's holder name
/// instead ([`customers::SetHolder`]: personal data).
const SET_HOLDER_AMOUNTS: [u64; 3] = [57, 58, 59];

/// The number of an account stream (`acct-<n>`).
fn from_number(account: &eventcore::StreamId) -> u32 {
    account.as_str()[bank::PREFIX.len()..].parse().unwrap_or(0)
}

/// A transfer draw of this amount (one in 60) closes its paying account
/// instead ([`bank::CloseAccount`]: the last event and a tombstone).
const CLOSE_AT_AMOUNT: u64 = 60;

fn transfer_label(t: &bank::Transfer, on_views: bool) -> String {
    format!(
        "{}transfer {} -> {}: {}{}{}{}",
        if on_views { "view " } else { "" },
        t.from,
        t.to,
        t.amount,
        if t.relax_to { " (to: any version)" } else { "" },
        if t.check_limit { " (limit checked)" } else { "" },
        if t.audit { " (audited)" } else { "" }
    )
}

fn place_label(p: &shop::PlaceOrder, on_views: bool) -> String {
    let mut label = format!("{}place {}:", if on_views { "view " } else { "" }, p.order);
    for (product, quantity) in &p.lines {
        label.push_str(&format!(" {product}x{quantity}"));
    }
    label
}

fn cancel_label(c: &shop::CancelOrder, on_views: bool) -> String {
    format!(
        "{}cancel {}{}",
        if on_views { "view " } else { "" },
        c.order,
        if c.one_at_a_time {
            " (one product per round)"
        } else {
            ""
        }
    )
}

impl Domain for BankAndShop {
    fn name(&self) -> String {
        "bank+shop".into()
    }

    fn setup(&mut self, rng: &mut SimRng) -> Vec<DomainCommand> {
        let params = BankAndShopParams::draw(rng);
        let mut commands = Vec::new();
        for n in 0..params.accounts {
            let open = bank::OpenAccount {
                account: bank::account(n),
                initial: rng.between(0, 200),
            };
            commands.push(DomainCommand::new(
                format!("open {} with {}", open.account, open.initial),
                open,
            ));
        }
        for n in 0..params.products {
            let add = shop::AddProduct {
                product: shop::product(n),
                stock: rng.between(0, 20),
            };
            commands.push(DomainCommand::new(
                format!("add {} with {}", add.product, add.stock),
                add,
            ));
        }
        let limit = bank::SetLimit { max: 45 };
        commands.push(DomainCommand::new(format!("set transfer limit {}", limit.max), limit));
        self.params = Some(params);
        commands
    }

    fn describe(&self) -> String {
        self.params.as_ref().map(ToString::to_string).unwrap_or_default()
    }

    fn next_command(&mut self, rng: &mut SimRng) -> DomainCommand {
        let params = match &self.params {
            Some(params) => params.clone(),
            // `setup` always runs first; a domain used without it gets the
            // parameters it would have drawn.
            None => {
                let params = BankAndShopParams::draw(rng);
                self.params = Some(params.clone());
                params
            }
        };
        let shop = rng.chance(params.shop_per_mille);
        let on_views = rng.chance(params.view_per_mille);
        if !shop {
            let transfer = self.next_transfer(rng, &params);
            // A customer's holder name instead (personal data), derived
            // from the amount (no extra draw): registers the customer
            // first, renames it after.
            if SET_HOLDER_AMOUNTS.contains(&transfer.amount) {
                let n = from_number(&transfer.from) % customers::CUSTOMERS;
                let k = self.names;
                self.names += 1;
                let set = customers::SetHolder {
                    customer: n,
                    name: customers::name(n, k),
                };
                return DomainCommand::new(format!("set holder of {} (name #{k})", customers::customer(n)), set);
            }
            // A closing instead, derived from the amount (no extra draw):
            // the account's last event ends its stream with a tombstone.
            if transfer.amount == CLOSE_AT_AMOUNT {
                let close = bank::CloseAccount { account: transfer.from };
                return DomainCommand::new(format!("close {}", close.account), close);
            }
            // A payout instead, derived from the amount (no extra draw): the
            // workload's one-stream read-modify-write.
            if transfer.amount % PAY_OUT_EVERY == 0 {
                let label = format!("pay out {}: {}", transfer.from, transfer.amount);
                let payout = bank::PayOut {
                    account: transfer.from,
                    amount: transfer.amount,
                };
                return DomainCommand::new(label, payout);
            }
            let label = transfer_label(&transfer, on_views);
            return if on_views {
                DomainCommand::probed(label, move |probe| ViewTransfer {
                    transfer: transfer.clone(),
                    probe,
                })
            } else {
                DomainCommand::new(label, transfer)
            };
        }
        match self.next_shop_command(rng, &params) {
            ShopCommand::Place(place) if on_views => {
                DomainCommand::probed(place_label(&place, true), move |probe| ViewPlaceOrder {
                    place: place.clone(),
                    probe,
                })
            }
            ShopCommand::Place(place) => DomainCommand::new(place_label(&place, false), place),
            ShopCommand::Cancel(cancel) if on_views => {
                DomainCommand::probed(cancel_label(&cancel, true), move |probe| ViewCancelOrder {
                    cancel: cancel.clone(),
                    probe,
                })
            }
            ShopCommand::Cancel(cancel) => DomainCommand::new(cancel_label(&cancel, false), cancel),
        }
    }

    fn models(&self) -> Vec<Box<dyn DomainModel>> {
        vec![Box::<BankModel>::default(), Box::<ShopModel>::default()]
    }
}
