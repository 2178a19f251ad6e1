//! The chaos harness as a library: a user's own commands and invariants,
//! run against real PostgreSQL through the fault proxy.
//!
//! A test implements [`ChaosWorkload`] — the setup commands, a seeded
//! stream of commands per client, the domain models the simulator's
//! checker folds the committed history through, and optionally a whole-log
//! audit and the streams the lock-hold fault may lock — and hands it to
//! [`run_workload`](crate::run::run_workload) with a
//! [`ChaosConfig`](crate::run::ChaosConfig) (seed, time bound, fault mix).
//! The run is the bank suite's own: two proxied pools, the fault schedule
//! (proxy faults, `pg_terminate_backend`, lock holds, pool squeezes, client
//! crashes), re-execution of unknown outcomes under the same command id,
//! healing, settling, read-back and the same [`ChaosReport`] (faults
//! scheduled and injected, the checker's verdict, the subscribers' checks).
//!
//! ```no_run
//! use eventcore::{Command, Decision, Event, RecordedEvent, StreamId};
//! use eventcore_chaos::faults::FaultRng;
//! use eventcore_chaos::run::{run_workload, ChaosConfig};
//! use eventcore_chaos::workload::{ChaosCommand, ChaosWorkload};
//! use eventcore_sim::check::DomainModel;
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! enum Tick { Ticked }
//! impl Event for Tick {}
//!
//! #[derive(Clone)]
//! struct DoTick(StreamId);
//! impl Command for DoTick {
//!     type Event = Tick;
//!     type State = ();
//!     type Error = std::fmt::Error;
//!     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
//!     fn apply(&self, _: &mut (), _: &StreamId, _: &Tick) {}
//!     fn decide(&self, _: &(), out: &mut Decision<Tick>) -> Result<(), std::fmt::Error> {
//!         out.emit(&self.0, Tick::Ticked);
//!         Ok(())
//!     }
//! }
//!
//! struct Anything;
//! impl DomainModel for Anything {
//!     fn name(&self) -> &'static str { "anything" }
//!     fn apply(&mut self, _: &RecordedEvent) -> Result<(), String> { Ok(()) }
//!     fn finish(&self) -> Vec<String> { Vec::new() }
//! }
//!
//! struct Ticks;
//! impl ChaosWorkload for Ticks {
//!     fn setup(&self) -> Vec<ChaosCommand> { Vec::new() }
//!     fn next(&self, _client: u64, rng: &mut FaultRng) -> ChaosCommand {
//!         let n = rng.between(1, 4);
//!         ChaosCommand::new(format!("tick {n}"), DoTick(StreamId::new(format!("tick-{n}")).unwrap()))
//!     }
//!     fn models(&self) -> Vec<Box<dyn DomainModel>> { vec![Box::new(Anything)] }
//! }
//!
//! # async fn example(direct: eventcore_postgres::PostgresStore) {
//! let config = ChaosConfig::from_env(10);
//! let report = run_workload(config, direct, Ticks).await.expect("the run could be carried out");
//! assert!(report.passed(), "{report}");
//! # }
//! ```
//!
//! [`ChaosReport`]: crate::run::ChaosReport

use crate::faults::FaultRng;
use crate::record::{OutcomeClass, Recorder, RecordingStore};
use eventcore::{Command, CommandId, ExecutionContext, ExecutionError, GlobalPosition, RecordedEvent, StreamId};
use eventcore_postgres::PostgresStore;
use eventcore_sim::check::DomainModel;
use eventcore_tokio::Executor;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// The executor a chaos run's commands go through: the real tokio
/// [`Executor`] over a [`PostgresStore`] (proxied — a quarter of the clients
/// through a [`BatchingStore`](eventcore_tokio::BatchingStore), group commit — or
/// direct for setup and settling), wrapped in the [`RecordingStore`] that
/// files every attempt for the checker.
pub type ChaosExecutor = Executor<RecordingStore<ChaosStore>>;

/// The store under a [`ChaosExecutor`]: a [`PostgresStore`], alone or
/// behind a batching layer.
#[derive(Clone)]
pub enum ChaosStore {
    /// Every append its own transaction (boxed: the store is large next to
    /// the batching handle).
    Plain(Box<PostgresStore>),
    /// Appends grouped (group commit).
    Batching(eventcore_tokio::BatchingStore<PostgresStore>),
}

impl eventcore_tokio::EventStore for ChaosStore {
    async fn read(&self, request: &eventcore::ReadRequest) -> Result<eventcore::ReadResponse, eventcore::StoreError> {
        match self {
            ChaosStore::Plain(store) => store.read(request).await,
            ChaosStore::Batching(store) => store.read(request).await,
        }
    }

    async fn append(
        &self,
        request: &eventcore::AppendRequest,
    ) -> Result<eventcore::AppendReceipt, eventcore::StoreError> {
        match self {
            ChaosStore::Plain(store) => store.append(request).await,
            ChaosStore::Batching(store) => store.append(request).await,
        }
    }

    async fn read_all(
        &self,
        request: &eventcore::ReadAllRequest,
    ) -> Result<eventcore::ReadAllResponse, eventcore::StoreError> {
        match self {
            ChaosStore::Plain(store) => store.read_all(request).await,
            ChaosStore::Batching(store) => store.read_all(request).await,
        }
    }
}

/// What one execution of a [`ChaosCommand`] came to: its class, whether
/// the command is resolved (its commit or non-commit is known), and the
/// error's text when it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Finished {
    pub(crate) class: OutcomeClass,
    pub(crate) resolved: bool,
    pub(crate) error: Option<String>,
}

/// One execution's inputs, besides the executor.
#[derive(Clone)]
pub(crate) struct Execution {
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) id: CommandId,
    pub(crate) started_after: GlobalPosition,
    pub(crate) healed: bool,
}

type Run =
    dyn Fn(Arc<ChaosExecutor>, Execution, Arc<str>) -> Pin<Box<dyn Future<Output = Finished> + Send>> + Send + Sync;

/// A user's command, ready for a chaos run: the command (any
/// [`Command`] that can be cloned, since an unknown outcome is re-executed
/// under the same command id) and a label for the history and messages.
///
/// ```
/// use eventcore::{Command, Decision, Event, StreamId};
/// use eventcore_chaos::workload::ChaosCommand;
/// # #[derive(serde::Serialize, serde::Deserialize)] enum Noted { Noted }
/// # impl Event for Noted {}
/// #[derive(Clone)]
/// struct Note(StreamId);
/// impl Command for Note {
///     type Event = Noted;
///     type State = ();
///     type Error = std::fmt::Error;
///     fn streams(&self) -> Vec<StreamId> { vec![self.0.clone()] }
///     fn apply(&self, _: &mut (), _: &StreamId, _: &Noted) {}
///     fn decide(&self, _: &(), out: &mut eventcore::Decision<Noted>) -> Result<(), std::fmt::Error> {
///         out.emit(&self.0, Noted::Noted);
///         Ok(())
///     }
/// }
/// let command = ChaosCommand::new("note a", Note(StreamId::new("note-a").unwrap()));
/// assert_eq!(command.label(), "note a");
/// ```
#[derive(Clone)]
pub struct ChaosCommand {
    label: Arc<str>,
    run: Arc<Run>,
}

impl ChaosCommand {
    /// Wraps `command`, labelled `label`.
    pub fn new<C>(label: impl Into<String>, command: C) -> Self
    where
        C: Command + Clone + Sync,
    {
        let run = move |exec: Arc<ChaosExecutor>, execution: Execution, label: Arc<str>| {
            let command = command.clone();
            let future = async move {
                let context = ExecutionContext::new(execution.id);
                // The recorder keys everything by `execution.id`, the id this
                // ran under.
                let result = exec
                    .execute_with(command, context)
                    .await
                    .map_err(ExecutionError::into_error);
                let (class, resolved) = execution.recorder.finish_execution(
                    execution.id,
                    &label,
                    execution.started_after,
                    execution.healed,
                    &result,
                );
                Finished {
                    class,
                    resolved,
                    error: result.err().map(|e| e.to_string()),
                }
            };
            Box::pin(future) as Pin<Box<dyn Future<Output = Finished> + Send>>
        };
        ChaosCommand {
            label: Arc::from(label.into()),
            run: Arc::new(run),
        }
    }

    /// The label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Executes once through `exec` under `execution`'s command id and
    /// files the outcome with its recorder.
    pub(crate) async fn execute(&self, exec: Arc<ChaosExecutor>, execution: Execution) -> Finished {
        (self.run)(exec, execution, self.label.clone()).await
    }
}

impl fmt::Debug for ChaosCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosCommand").field("label", &self.label).finish()
    }
}

/// A user's workload for a chaos run: what to set up, what each client
/// issues, and how to judge the committed history.
///
/// The run calls [`setup`](ChaosWorkload::setup) once, before any fault,
/// over a direct connection (every setup command must be acknowledged);
/// then each client calls [`next`](ChaosWorkload::next) with its own
/// seeded generator until the time bound or
/// [`ChaosConfig::max_commands_per_client`](crate::run::ChaosConfig::max_commands_per_client).
/// At the end the whole store is read back and judged by the simulator's
/// [`Checker`](eventcore_sim::check::Checker) (store contract, atomic
/// appends, expected versions, idempotency, acknowledged commits present,
/// nothing written on a definite failure, re-execution, liveness) with
/// [`models`](ChaosWorkload::models) for the domain's own rules, plus
/// [`audit`](ChaosWorkload::audit).
///
/// See the [module documentation](self) for an example.
pub trait ChaosWorkload: Send + Sync + 'static {
    /// The commands run once before the faults, in order; each must be
    /// acknowledged or the run fails with
    /// [`ChaosError::SetupCommand`](crate::run::ChaosError::SetupCommand).
    fn setup(&self) -> Vec<ChaosCommand>;

    /// The next command of client `client` (0-based), drawn from `rng`,
    /// which is seeded from the run's seed and the client: the same seed
    /// gives every client the same sequence of draws.
    fn next(&self, client: u64, rng: &mut FaultRng) -> ChaosCommand;

    /// Fresh domain models for the checker, which folds every committed
    /// event through each of them in global order (a model must ignore the
    /// events of other domains).
    fn models(&self) -> Vec<Box<dyn DomainModel>>;

    /// A whole-log check of the final store, one message per broken rule
    /// (none by default). Reported as [`ChaosReport::audit`](crate::run::ChaosReport::audit).
    fn audit(&self, events: &[RecordedEvent]) -> Vec<String> {
        let _ = events;
        Vec::new()
    }

    /// Streams the lock-hold fault may lock (their rows must exist once
    /// setup is done; appends to them should be frequent, so that a hold
    /// makes both `lock_timeout` and `statement_timeout` fire). None by
    /// default, and then no lock hold is scheduled.
    fn hot_streams(&self) -> Vec<StreamId> {
        Vec::new()
    }
}
