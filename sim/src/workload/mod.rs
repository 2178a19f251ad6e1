//! What the simulated clients ask for. Every parameter is drawn from the
//! workload's own random stream, so the same seed issues the same commands
//! whatever the fault menu.

pub mod bank;
pub mod shop;
pub mod views;

use crate::check::DomainModel;
use crate::exec::Execution;
use crate::rng::SimRng;
use eventcore::{CommandMachine, ExecutionContext, ExecutionPolicy, StreamId, Time};
use std::fmt;

/// `prefix` + `n` as a stream id.
pub(crate) fn stream(prefix: &str, n: u32) -> StreamId {
    // A short ASCII prefix and digits always satisfy the stream-id rules.
    StreamId::new(format!("{prefix}{n}")).unwrap_or_else(|_| unreachable!("`{prefix}<n>` is a valid stream id"))
}

/// One command a client can issue. Cloneable so that a restarted client can
/// re-execute it with the same command id.
#[derive(Clone, Debug)]
pub enum Job {
    /// Open an account (setup).
    Open(bank::OpenAccount),
    /// Set the transfer limit (setup).
    SetLimit(bank::SetLimit),
    /// A transfer.
    Transfer(bank::Transfer),
    /// List a product (setup).
    AddProduct(shop::AddProduct),
    /// Place an order.
    Place(shop::PlaceOrder),
    /// Cancel an order (dynamic discovery).
    Cancel(shop::CancelOrder),
    /// A transfer decided on stream views.
    ViewTransfer(bank::Transfer),
    /// An order placed on stream views.
    ViewPlace(shop::PlaceOrder),
    /// An order cancelled on stream views (discovered products get views).
    ViewCancel(shop::CancelOrder),
    /// A command of a user [`Domain`](crate::Domain).
    Custom(crate::DomainCommand),
}

impl Job {
    /// Starts one execution of this job.
    pub fn start(
        &self,
        policy: ExecutionPolicy,
        context: ExecutionContext,
        now: Time,
        seed: u64,
    ) -> Box<dyn Execution> {
        self.start_probed(policy, context, now, seed).0
    }

    /// Starts one execution; for a view command, also the probe that
    /// records the views each of its decisions saw.
    pub fn start_probed(
        &self,
        policy: ExecutionPolicy,
        context: ExecutionContext,
        now: Time,
        seed: u64,
    ) -> (Box<dyn Execution>, Option<views::Probe>) {
        let probe = views::Probe::new();
        let exec: Box<dyn Execution> = match self {
            Job::Custom(c) => c.start(policy, context, now, seed),
            Job::ViewTransfer(c) => Box::new(CommandMachine::new(
                views::ViewTransfer {
                    transfer: c.clone(),
                    probe: probe.clone(),
                },
                policy,
                context,
                now,
                seed,
            )),
            Job::ViewPlace(c) => Box::new(CommandMachine::new(
                views::ViewPlaceOrder {
                    place: c.clone(),
                    probe: probe.clone(),
                },
                policy,
                context,
                now,
                seed,
            )),
            Job::ViewCancel(c) => Box::new(CommandMachine::new(
                views::ViewCancelOrder {
                    cancel: c.clone(),
                    probe: probe.clone(),
                },
                policy,
                context,
                now,
                seed,
            )),
            Job::Open(c) => Box::new(CommandMachine::new(c.clone(), policy, context, now, seed)),
            Job::SetLimit(c) => Box::new(CommandMachine::new(c.clone(), policy, context, now, seed)),
            Job::Transfer(c) => Box::new(CommandMachine::new(c.clone(), policy, context, now, seed)),
            Job::AddProduct(c) => Box::new(CommandMachine::new(c.clone(), policy, context, now, seed)),
            Job::Place(c) => Box::new(CommandMachine::new(c.clone(), policy, context, now, seed)),
            Job::Cancel(c) => Box::new(CommandMachine::new(c.clone(), policy, context, now, seed)),
        };
        (exec, self.on_views().then_some(probe))
    }

    /// True for the commands that decide on stream views.
    pub fn on_views(&self) -> bool {
        matches!(self, Job::ViewTransfer(_) | Job::ViewPlace(_) | Job::ViewCancel(_))
    }

    /// The streams the command declares (read before its first decision).
    pub fn streams(&self) -> Vec<StreamId> {
        use eventcore::Command;
        match self {
            Job::Open(c) => c.streams(),
            Job::SetLimit(c) => c.streams(),
            Job::Transfer(c) | Job::ViewTransfer(c) => c.streams(),
            Job::AddProduct(c) => c.streams(),
            Job::Place(c) | Job::ViewPlace(c) => c.streams(),
            Job::Cancel(c) | Job::ViewCancel(c) => c.streams(),
            Job::Custom(c) => c.streams().to_vec(),
        }
    }

    /// True for the order cancellation, which discovers streams.
    pub fn discovers(&self) -> bool {
        matches!(self, Job::Cancel(_) | Job::ViewCancel(_))
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Job::Custom(c) => write!(f, "{c}"),
            Job::Open(c) => write!(f, "open {} with {}", c.account, c.initial),
            Job::SetLimit(c) => write!(f, "set transfer limit {}", c.max),
            Job::Transfer(c) | Job::ViewTransfer(c) => write!(
                f,
                "{}transfer {} -> {}: {}{}{}{}",
                if matches!(self, Job::ViewTransfer(_)) {
                    "view "
                } else {
                    ""
                },
                c.from,
                c.to,
                c.amount,
                if c.relax_to { " (to: any version)" } else { "" },
                if c.check_limit { " (limit checked)" } else { "" },
                if c.audit { " (audited)" } else { "" }
            ),
            Job::AddProduct(c) => write!(f, "add {} with {}", c.product, c.stock),
            Job::Place(c) | Job::ViewPlace(c) => {
                let view = if matches!(self, Job::ViewPlace(_)) { "view " } else { "" };
                write!(f, "{view}place {}:", c.order)?;
                for (p, q) in &c.lines {
                    write!(f, " {p}x{q}")?;
                }
                Ok(())
            }
            Job::Cancel(c) | Job::ViewCancel(c) => write!(
                f,
                "{}cancel {}{}",
                if matches!(self, Job::ViewCancel(_)) {
                    "view "
                } else {
                    ""
                },
                c.order,
                if c.one_at_a_time {
                    " (one product per round)"
                } else {
                    ""
                }
            ),
        }
    }
}

/// The shape of a run's workload, drawn per seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadParams {
    /// Simulated clients.
    pub clients: u32,
    /// Commands each client may have in flight at once.
    pub in_flight: u32,
    /// Commands each client issues during the safety phase.
    pub commands_per_client: u32,
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
    /// Share of commands decided on stream views, per mille (drawn from the
    /// views stream, so every other draw of the workload is unchanged).
    pub view_per_mille: u32,
}

impl fmt::Display for WorkloadParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "clients={} in_flight={} commands/client={} accounts={} hot={}@{}‰ products={} shop={}‰ views={}‰",
            self.clients,
            self.in_flight,
            self.commands_per_client,
            self.accounts,
            self.hot,
            self.hot_per_mille,
            self.products,
            self.shop_per_mille,
            self.view_per_mille
        )
    }
}

/// Issues commands.
pub struct Workload {
    params: WorkloadParams,
    rng: SimRng,
    /// Which commands run on views: a stream of its own.
    views: SimRng,
    next_order: u32,
    placed: Vec<u32>,
    /// A user domain that replaces the built-in commands.
    custom: Option<Box<dyn crate::Domain>>,
}

impl Workload {
    /// Draws the parameters from `rng` (the workload stream). `scale`
    /// multiplies the number of commands per client.
    pub fn new(mut rng: SimRng, mut views: SimRng, scale: u32) -> Self {
        // A quarter of the seeds run no view command, a quarter only view
        // commands, the rest a mix.
        let view_per_mille = match views.below(4) {
            0 => 0,
            1 => 1_000,
            _ => views.between(200, 800) as u32,
        };
        let accounts = rng.between(2, 24) as u32;
        let params = WorkloadParams {
            clients: rng.between(1, 6) as u32,
            in_flight: rng.between(1, 4) as u32,
            commands_per_client: rng.between(4, 16) as u32 * scale.max(1),
            accounts,
            hot: rng.between(1, u64::from(accounts.min(3))) as u32,
            hot_per_mille: rng.between(0, 900) as u32,
            products: rng.between(1, 8) as u32,
            shop_per_mille: rng.between(100, 600) as u32,
            view_per_mille,
        };
        Workload {
            params,
            rng,
            views,
            next_order: 0,
            placed: Vec::new(),
            custom: None,
        }
    }

    /// Like [`Workload::new`], but the commands and the rules come from
    /// `domain`. The parameters are drawn exactly as for the built-ins
    /// (only the clients, their concurrency and the commands per client
    /// matter to a user domain).
    pub fn with_domain(rng: SimRng, views: SimRng, scale: u32, domain: Box<dyn crate::Domain>) -> Self {
        let mut workload = Workload::new(rng, views, scale);
        workload.custom = Some(domain);
        workload
    }

    /// The parameters in words, for the run's header.
    pub fn describe(&self) -> String {
        match &self.custom {
            None => self.params.to_string(),
            Some(domain) => format!(
                "domain={} clients={} in_flight={} commands/client={}",
                domain.name(),
                self.params.clients,
                self.params.in_flight,
                self.params.commands_per_client
            ),
        }
    }

    /// The domain models that check the commands this workload issues.
    pub fn domain_models(&self) -> Vec<Box<dyn DomainModel>> {
        match &self.custom {
            None => Workload::models(),
            Some(domain) => domain.models(),
        }
    }

    /// The parameters drawn.
    pub fn params(&self) -> &WorkloadParams {
        &self.params
    }

    /// Commands that set the world up before the clients start.
    pub fn setup(&mut self) -> Vec<Job> {
        if let Some(domain) = &mut self.custom {
            return domain.setup(&mut self.rng).into_iter().map(Job::Custom).collect();
        }
        let mut jobs = Vec::new();
        for n in 0..self.params.accounts {
            jobs.push(Job::Open(bank::OpenAccount {
                account: bank::account(n),
                initial: self.rng.between(0, 200),
            }));
        }
        for n in 0..self.params.products {
            jobs.push(Job::AddProduct(shop::AddProduct {
                product: shop::product(n),
                stock: self.rng.between(0, 20),
            }));
        }
        jobs.push(Job::SetLimit(bank::SetLimit { max: 45 }));
        jobs
    }

    /// The next command some client issues.
    pub fn next_job(&mut self) -> Job {
        if let Some(domain) = &mut self.custom {
            return Job::Custom(domain.next_command(&mut self.rng));
        }
        let job = self.next_whole_fold_job();
        if !self.views.chance(self.params.view_per_mille) {
            return job;
        }
        match job {
            Job::Transfer(t) => Job::ViewTransfer(t),
            Job::Place(p) => Job::ViewPlace(p),
            Job::Cancel(c) => Job::ViewCancel(c),
            other => other,
        }
    }

    fn next_whole_fold_job(&mut self) -> Job {
        if self.rng.chance(self.params.shop_per_mille) {
            return self.next_shop_job();
        }
        let from = self.pick_account();
        let mut to = self.pick_account();
        if to == from {
            to = (from + 1) % self.params.accounts;
        }
        let amount = self.rng.between(1, 60);
        // Variants derived from the amount, so that they cost no extra draw.
        Job::Transfer(bank::Transfer {
            from: bank::account(from),
            to: bank::account(to),
            amount,
            relax_to: amount % 4 == 0,
            check_limit: amount % 3 == 0,
            audit: amount % 7 == 0,
        })
    }

    fn pick_account(&mut self) -> u32 {
        if self.rng.chance(self.params.hot_per_mille) {
            self.rng.below(u64::from(self.params.hot)) as u32
        } else {
            self.rng.below(u64::from(self.params.accounts)) as u32
        }
    }

    fn next_shop_job(&mut self) -> Job {
        if !self.placed.is_empty() && self.rng.chance(450) {
            let pick = self.rng.below(self.placed.len() as u64) as usize;
            let order = self.placed[pick];
            // Mostly cancel each order once; sometimes twice, which the
            // domain must refuse.
            if self.rng.chance(850) {
                self.placed.swap_remove(pick);
            }
            return Job::Cancel(shop::CancelOrder {
                order: shop::order(order),
                one_at_a_time: self.rng.chance(400),
            });
        }
        let order = self.next_order;
        self.next_order += 1;
        self.placed.push(order);
        let count = self.rng.between(1, u64::from(self.params.products.min(4)));
        let mut products: Vec<u32> = Vec::new();
        while (products.len() as u64) < count {
            let p = self.rng.below(u64::from(self.params.products)) as u32;
            if !products.contains(&p) {
                products.push(p);
            }
        }
        Job::Place(shop::PlaceOrder {
            order: shop::order(order),
            lines: products
                .into_iter()
                .map(|p| (shop::product(p), self.rng.between(1, 5)))
                .collect(),
        })
    }

    /// The domain models that check this workload's rules.
    pub fn models() -> Vec<Box<dyn DomainModel>> {
        vec![Box::<bank::BankModel>::default(), Box::<shop::ShopModel>::default()]
    }
}
