//! What the simulated clients ask for: the run's shape (clients, how many
//! commands each keeps in flight and issues), drawn by the simulator, and
//! the commands themselves, drawn by a [`Domain`]. The built-in bank and
//! shop workload is the [`BankAndShop`] domain, an ordinary user of the
//! public API.

pub mod bank;
mod bank_and_shop;
pub mod customers;
pub mod shop;
pub mod views;

pub use bank_and_shop::{BankAndShop, BankAndShopParams};

use crate::check::DomainModel;
use crate::rng::SimRng;
use crate::{Domain, DomainCommand};
use eventcore::StreamId;
use std::fmt;

/// `prefix` + `n` as a stream id.
pub(crate) fn stream(prefix: &str, n: u32) -> StreamId {
    // A short ASCII prefix and digits always satisfy the stream-id rules.
    StreamId::new(format!("{prefix}{n}")).unwrap_or_else(|_| unreachable!("`{prefix}<n>` is a valid stream id"))
}

/// The shape of a run, drawn per seed from its own stream
/// ([`Purpose::Shape`](crate::rng::Purpose::Shape)), whatever the domain.
///
/// ```
/// use eventcore_sim::rng::{Purpose, SimRng};
/// use eventcore_sim::workload::RunShape;
/// let shape = RunShape::draw(&mut SimRng::new(3, Purpose::Shape), 1);
/// assert!((1..=6).contains(&shape.clients));
/// assert_eq!(shape, RunShape::draw(&mut SimRng::new(3, Purpose::Shape), 1));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunShape {
    /// Simulated clients.
    pub clients: u32,
    /// Commands each client may have in flight at once.
    pub in_flight: u32,
    /// Commands each client issues during the safety phase.
    pub commands_per_client: u32,
}

impl RunShape {
    /// Draws a shape; `scale` multiplies the commands per client.
    pub fn draw(rng: &mut SimRng, scale: u32) -> Self {
        RunShape {
            clients: rng.between(1, 6) as u32,
            in_flight: rng.between(1, 4) as u32,
            commands_per_client: rng.between(4, 16) as u32 * scale.max(1),
        }
    }
}

impl fmt::Display for RunShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "clients={} in_flight={} commands/client={}",
            self.clients, self.in_flight, self.commands_per_client
        )
    }
}

/// A domain, its random stream and the run's shape: what the world asks
/// for setup commands and for each client's next command.
pub struct Workload {
    shape: RunShape,
    rng: SimRng,
    domain: Box<dyn Domain>,
    /// The setup commands, drawn when the workload is made (so that the
    /// domain's parameters are known for the run's header).
    setup: Vec<DomainCommand>,
}

impl Workload {
    /// Draws the setup of `domain` from `rng` (the workload stream).
    pub fn new(shape: RunShape, mut rng: SimRng, mut domain: Box<dyn Domain>) -> Self {
        let setup = domain.setup(&mut rng);
        Workload {
            shape,
            rng,
            domain,
            setup,
        }
    }

    /// The domain and its parameters in words, for the run's header.
    pub fn describe(&self) -> String {
        let params = self.domain.describe();
        let sep = if params.is_empty() { "" } else { " " };
        format!("domain={} {}{sep}{params}", self.domain.name(), self.shape)
    }

    /// The domain models that check the commands this workload issues.
    pub fn domain_models(&self) -> Vec<Box<dyn DomainModel>> {
        self.domain.models()
    }

    /// Fresh read models of the domain's projections.
    pub fn projections(&self) -> Vec<Box<dyn crate::domain::DomainProjection>> {
        self.domain.projections()
    }

    /// The run's shape.
    pub fn shape(&self) -> &RunShape {
        &self.shape
    }

    /// The commands that set the world up before the clients start (once).
    pub fn take_setup(&mut self) -> Vec<DomainCommand> {
        std::mem::take(&mut self.setup)
    }

    /// The next command some client issues.
    pub fn next_command(&mut self) -> DomainCommand {
        self.domain.next_command(&mut self.rng)
    }
}
