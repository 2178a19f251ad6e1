//! The public simulation API: bring your own domain.
//!
//! A [`Domain`] tells the simulator what its clients run — setup commands
//! and then one command at a time, drawn from the seeded workload stream —
//! and which rules the committed history must obey ([`DomainModel`]s). The
//! simulator runs those commands through the real
//! [`eventcore::CommandMachine`] against the faulty store, exactly as it
//! runs its built-in bank and shop workloads, and checks the store
//! contract, idempotency, acknowledgements and liveness as well as your
//! rules. [`run_with`](crate::run_with) runs one seed;
//! [`harness::Sweep`](crate::harness::Sweep) runs many inside `cargo test`.
//!
//! The built-in workloads are not routed through this trait (doing so would
//! change the traces of existing seeds); a user domain replaces them for the
//! run. Commands of a user domain that decide on stream views are run on
//! full reads (the view cache and snapshots serve the built-ins only).
//!
//! ```
//! use eventcore::{Command, Decision, Event, RecordedEvent, StreamId};
//! use eventcore_sim::check::DomainModel;
//! use eventcore_sim::rng::SimRng;
//! use eventcore_sim::{run_with, Domain, DomainCommand, SimConfig};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Clone, Debug, Serialize, Deserialize)]
//! struct Ticked;
//! impl Event for Ticked {}
//!
//! #[derive(Clone, Debug)]
//! struct Tick(StreamId);
//! impl Command for Tick {
//!     type Event = Ticked;
//!     type State = ();
//!     type Error = std::convert::Infallible;
//!     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
//!     fn apply(&self, _: &mut (), _: &StreamId, _: &Ticked) {}
//!     fn decide(&self, _: &(), out: &mut Decision<Ticked>) -> Result<(), Self::Error> {
//!         out.emit(&self.0, Ticked);
//!         Ok(())
//!     }
//! }
//!
//! /// Every committed event is on a `tick-` stream.
//! struct OnlyTicks;
//! impl DomainModel for OnlyTicks {
//!     fn name(&self) -> &'static str { "ticks" }
//!     fn apply(&mut self, e: &RecordedEvent) -> Result<(), String> {
//!         if e.stream_id.as_str().starts_with("tick-") { Ok(()) } else { Err(format!("stray event on {}", e.stream_id)) }
//!     }
//!     fn finish(&self) -> Vec<String> { Vec::new() }
//! }
//!
//! struct Ticks;
//! impl Domain for Ticks {
//!     fn name(&self) -> String { "ticks".into() }
//!     fn setup(&mut self, _: &mut SimRng) -> Vec<DomainCommand> { Vec::new() }
//!     fn next_command(&mut self, rng: &mut SimRng) -> DomainCommand {
//!         let n = rng.below(3);
//!         DomainCommand::new(format!("tick {n}"), Tick(StreamId::new(format!("tick-{n}")).unwrap()))
//!     }
//!     fn models(&self) -> Vec<Box<dyn DomainModel>> { vec![Box::new(OnlyTicks)] }
//! }
//!
//! let report = run_with(&SimConfig::new(3), Ticks);
//! assert!(report.passed(), "{:?}", report.violations);
//! assert!(!report.history.events.is_empty());
//! ```

use crate::check::DomainModel;
use crate::exec::Execution;
use crate::rng::SimRng;
use eventcore::{Command, CommandMachine, ExecutionContext, ExecutionPolicy, StreamId, Time};
use std::fmt;
use std::rc::Rc;

type Starter = dyn Fn(ExecutionPolicy, ExecutionContext, Time, u64) -> Box<dyn Execution>;

/// One command of a user domain, type-erased so that one client can run
/// commands of different types. Cloneable: a restarted client re-executes
/// the same command with the same command id.
///
/// ```
/// use eventcore::{Command, Decision, Event, StreamId};
/// use eventcore_sim::DomainCommand;
/// # #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)] struct E;
/// # impl Event for E {}
/// #[derive(Clone, Debug)]
/// struct Touch(StreamId);
/// impl Command for Touch {
///     type Event = E;
///     type State = ();
///     type Error = std::convert::Infallible;
///     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
///     fn apply(&self, _: &mut (), _: &StreamId, _: &E) {}
///     fn decide(&self, _: &(), out: &mut eventcore::Decision<E>) -> Result<(), Self::Error> {
///         out.emit(&self.0, E);
///         Ok(())
///     }
/// }
/// let command = DomainCommand::new("touch a", Touch(StreamId::new("a").unwrap()));
/// assert_eq!(command.label(), "touch a");
/// assert_eq!(command.streams()[0].as_str(), "a");
/// ```
#[derive(Clone)]
pub struct DomainCommand {
    label: String,
    streams: Vec<StreamId>,
    start: Rc<Starter>,
}

impl DomainCommand {
    /// Wraps `command`; `label` names it in the trace (keep it
    /// deterministic: it is hashed).
    pub fn new<C: Command + Clone + 'static>(label: impl Into<String>, command: C) -> Self {
        let streams = command.streams();
        DomainCommand {
            label: label.into(),
            streams,
            start: Rc::new(move |policy, context, now, seed| {
                Box::new(CommandMachine::new(command.clone(), policy, context, now, seed)) as Box<dyn Execution>
            }),
        }
    }

    /// The label given to [`DomainCommand::new`].
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The streams the command declares.
    pub fn streams(&self) -> &[StreamId] {
        &self.streams
    }

    /// Starts one execution of the command.
    pub fn start(
        &self,
        policy: ExecutionPolicy,
        context: ExecutionContext,
        now: Time,
        seed: u64,
    ) -> Box<dyn Execution> {
        (self.start)(policy, context, now, seed)
    }
}

impl fmt::Debug for DomainCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainCommand")
            .field("label", &self.label)
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for DomainCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label)
    }
}

/// A user-supplied workload: what the simulated clients run, and the
/// domain rules the committed history must obey. See the
/// [module documentation](self) for a complete example.
///
/// Every draw must come from the `rng` handed in (the seed's workload
/// stream) and the domain must hold no other source of randomness or time,
/// so that one seed always issues the same commands. The number of clients,
/// their concurrency and the commands per client are drawn by the
/// simulator from the same seed.
pub trait Domain {
    /// A short name, shown in the run's parameters (it is part of the trace).
    fn name(&self) -> String;
    /// Commands run one by one, without faults, before the clients start.
    fn setup(&mut self, rng: &mut SimRng) -> Vec<DomainCommand>;
    /// The next command some client issues (use
    /// [`SimRng::weighted`](crate::rng::SimRng::weighted) for a weighted
    /// mix).
    fn next_command(&mut self, rng: &mut SimRng) -> DomainCommand;
    /// Fresh models that replay the committed events in global order and
    /// report broken rules ([`Invariant::Domain`](crate::check::Invariant::Domain)
    /// violations).
    fn models(&self) -> Vec<Box<dyn DomainModel>>;
}
