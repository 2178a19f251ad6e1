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
//! The built-in bank and shop workload is itself a `Domain`
//! ([`BankAndShop`](crate::workload::BankAndShop)): [`run`](crate::run) is
//! `run_with(config, BankAndShop::new())`. Commands that decide on stream
//! views get what the tokio executor gives them — the client's view cache
//! and the snapshot store, under their faults — and a command built with
//! [`DomainCommand::probed`] also has each committed decision checked
//! against the full fold of its streams.
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
use crate::probe::DecisionProbe;
use crate::rng::SimRng;
use eventcore::{
    Command, CommandMachine, EventFilter, ExecutionContext, ExecutionPolicy, RecordedEvent, StreamId, Time,
};
use std::fmt;
use std::rc::Rc;

type Starter = dyn Fn(ExecutionPolicy, ExecutionContext, Time, u64) -> Started;

/// A started execution, and the probe its decisions write to (for a
/// command built with [`DomainCommand::probed`]).
pub type Started = (Box<dyn Execution>, Option<DecisionProbe>);

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
                let machine = CommandMachine::new(command.clone(), policy, context, now, seed);
                (Box::new(machine) as Box<dyn Execution>, None)
            }),
        }
    }

    /// Wraps a view command whose decisions report what they saw: `make`
    /// builds the command around a fresh [`DecisionProbe`] for every
    /// execution, and its `decide` records the views it emitted on (see
    /// [`DecisionProbe::record`]). Once such an execution commits, the
    /// simulator checks every recorded view against the full fold of its
    /// stream up to the version the append pinned
    /// ([`Invariant::ViewFold`](crate::check::Invariant::ViewFold)).
    ///
    /// ```
    /// use eventcore_sim::workload::bank::{account, Transfer};
    /// use eventcore_sim::workload::views::ViewTransfer;
    /// use eventcore_sim::DomainCommand;
    /// let transfer = Transfer { from: account(0), to: account(1), amount: 5, relax_to: false, check_limit: false, audit: false };
    /// let command = DomainCommand::probed("view transfer", move |probe| ViewTransfer { transfer: transfer.clone(), probe });
    /// assert_eq!(command.streams().len(), 2);
    /// ```
    pub fn probed<C, F>(label: impl Into<String>, make: F) -> Self
    where
        C: Command + 'static,
        F: Fn(DecisionProbe) -> C + 'static,
    {
        let streams = make(DecisionProbe::new()).streams();
        DomainCommand {
            label: label.into(),
            streams,
            start: Rc::new(move |policy, context, now, seed| {
                let probe = DecisionProbe::new();
                let machine = CommandMachine::new(make(probe.clone()), policy, context, now, seed);
                (Box::new(machine) as Box<dyn Execution>, Some(probe))
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
        (self.start)(policy, context, now, seed).0
    }

    /// Starts one execution, with the probe of a
    /// [`probed`](DomainCommand::probed) command.
    pub fn start_probed(&self, policy: ExecutionPolicy, context: ExecutionContext, now: Time, seed: u64) -> Started {
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
    /// Called once, before any [`next_command`](Domain::next_command):
    /// the place to draw the domain's own parameters (how many accounts,
    /// products, how hot) from `rng`.
    fn setup(&mut self, rng: &mut SimRng) -> Vec<DomainCommand>;
    /// The parameters [`setup`](Domain::setup) drew, in words, for the
    /// run's header (part of the trace). Empty by default.
    fn describe(&self) -> String {
        String::new()
    }
    /// The next command some client issues (use
    /// [`SimRng::weighted`](crate::rng::SimRng::weighted) for a weighted
    /// mix).
    fn next_command(&mut self, rng: &mut SimRng) -> DomainCommand;
    /// Fresh models that replay the committed events in global order and
    /// report broken rules ([`Invariant::Domain`](crate::check::Invariant::Domain)
    /// violations).
    fn models(&self) -> Vec<Box<dyn DomainModel>>;
    /// Fresh, empty read models, each run as an exactly-once subscription
    /// under the subscribers' faults (lost notifications, failed handlers
    /// and checkpoints, crashes, lease hand-overs). None by default.
    ///
    /// Called once when the run starts, and once more at the end to replay
    /// the committed history: each projection's read model, as committed
    /// with its checkpoint, must equal a fresh one fed every matching event
    /// up to that checkpoint, and must obey its own rules
    /// ([`Invariant::Projection`](crate::check::Invariant::Projection)).
    fn projections(&self) -> Vec<Box<dyn DomainProjection>> {
        Vec::new()
    }
}

/// A read model of a user [`Domain`], built by a subscription: the
/// simulator hands it batches of the events its [`filter`](Self::filter)
/// matches, committing each batch with the subscription's checkpoint (as
/// `PgProjectionStore` does), and discards nothing but what a crash or a
/// fenced-out holder never committed.
///
/// ```
/// use eventcore::{EventFilter, RecordedEvent};
/// use eventcore_sim::domain::DomainProjection;
/// /// Counts the events of each stream under `tick-`.
/// #[derive(Default)]
/// struct TicksPerStream(std::collections::BTreeMap<String, u64>);
/// impl DomainProjection for TicksPerStream {
///     fn name(&self) -> String { "ticks per stream".into() }
///     fn filter(&self) -> EventFilter { EventFilter::all().with_stream_prefix("tick-") }
///     fn apply(&mut self, event: &RecordedEvent) {
///         *self.0.entry(event.stream_id.to_string()).or_default() += 1;
///     }
///     fn state(&self) -> String { format!("{:?}", self.0) }
///     fn check(&self) -> Vec<String> {
///         self.0.iter().filter(|(_, n)| **n > 1_000).map(|(s, n)| format!("{s} ticked {n} times")).collect()
///     }
/// }
/// let projection = TicksPerStream::default();
/// assert_eq!(projection.state(), "{}");
/// ```
pub trait DomainProjection {
    /// A short name, for the subscriber's label and violations.
    fn name(&self) -> String;
    /// The events it subscribes to.
    fn filter(&self) -> EventFilter;
    /// Folds one event into the read model.
    fn apply(&mut self, event: &RecordedEvent);
    /// The read model in words, compared with a replay's (two equal read
    /// models must give the same string: use ordered maps).
    fn state(&self) -> String;
    /// The read model's own rules (e.g. "no concert shows more seats sold
    /// than it has"), one line per broken rule. None by default.
    fn check(&self) -> Vec<String> {
        Vec::new()
    }
}
