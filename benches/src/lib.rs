//! # eventcore-benches
//!
//! The commands the benchmarks run, shared by the criterion benches
//! (`benches/core.rs`) and the `compare` binary (EventCore against a raw-SQL
//! floor on PostgreSQL), plus [`execute_sync`], which drives a
//! [`CommandMachine`](eventcore::CommandMachine) against a [`MemoryStore`] with no runtime at all.
//!
//! Every command uses the bank domain's [`AccountEvent`], so that the raw
//! floor stores exactly the same event types and payloads.

#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use eventcore::{
    AppendRequest, Codec, Command, CommandError, CommandId, Decide, Decision, Emit, Event, EventId, EventMetadata,
    Executed, ExecutionContext, ExecutionPolicy, ExpectedVersion, NewEvent, Operation, Step, StoreError, StreamAppend,
    StreamId, Time,
};
use eventcore_examples::bank::{Account, AccountEvent, BankError};
use eventcore_memory::MemoryStore;
use std::sync::Arc;

pub use eventcore_examples::bank;

/// W1: a single-stream command. Reads one account stream through the
/// `Account` view (cached between executions), and appends one `Deposited`
/// event pinned to the version read.
#[derive(Debug, Clone, eventcore::Command)]
pub struct Deposit {
    /// The account stream.
    #[stream(Account)]
    pub account: StreamId,
    /// Amount in cents.
    pub amount: u64,
}

impl Decide for Deposit {
    type Error = BankError;

    fn decide(&self, _: &DepositState<'_>, out: &mut Emit<'_>) -> Result<(), BankError> {
        out.emit(&self.account, AccountEvent::Deposited { amount: self.amount });
        Ok(())
    }
}

/// W3: folds one stream and decides nothing (a read-only command, the
/// command path's replay).
#[derive(Debug, Clone)]
pub struct Replay {
    /// The stream to fold.
    pub stream: StreamId,
}

impl Command for Replay {
    type Event = AccountEvent;
    type State = Totals;
    type Error = BankError;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.stream.clone()]
    }

    fn apply(&self, state: &mut Totals, _: &StreamId, event: &AccountEvent) {
        state.apply(event);
    }

    fn decide(&self, _: &Totals, _: &mut Decision<AccountEvent>) -> Result<(), BankError> {
        Ok(())
    }
}

/// W4: appends `count` `Deposited` events to one stream in one command.
#[derive(Debug, Clone, eventcore::Command)]
pub struct DepositMany {
    /// The account stream.
    #[stream(Account)]
    pub account: StreamId,
    /// Events per command.
    pub count: usize,
}

impl Decide for DepositMany {
    type Error = BankError;

    fn decide(&self, _: &DepositManyState<'_>, out: &mut Emit<'_>) -> Result<(), BankError> {
        for _ in 0..self.count {
            out.emit(&self.account, AccountEvent::Deposited { amount: 1 });
        }
        Ok(())
    }
}

/// What a replay folds: an event count and the money that moved. Both
/// sides of the comparison fold into this, so their work is the same.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Events folded.
    pub events: u64,
    /// Sum of every amount (opened, withdrawn, deposited).
    pub moved: u64,
}

impl Totals {
    /// Folds one event.
    pub fn apply(&mut self, event: &AccountEvent) {
        self.events += 1;
        self.moved += match event {
            AccountEvent::Opened { initial } => *initial,
            AccountEvent::Withdrawn { amount } | AccountEvent::Deposited { amount } => *amount,
        };
    }
}

/// A stream id from a name the benchmarks build themselves.
///
/// # Panics
/// When `name` is not a valid stream id; benchmark names always are.
pub fn stream(name: impl AsRef<str>) -> StreamId {
    StreamId::new(name.as_ref()).expect("benchmark stream names are valid")
}

/// A command id made from a counter: 74 pseudo-random bits derived from
/// `n`, so distinct counters give distinct ids (UUIDv7 overwrites 6 bits of
/// the entropy with its version and variant, so the raw counter would not do).
pub fn command_id(now: Time, n: u64) -> CommandId {
    CommandId::v7(now, entropy(n, 0))
}

/// Ten bytes of entropy derived from `(n, i)` with SplitMix64.
pub fn entropy(n: u64, i: u64) -> [u8; 10] {
    let a = mix(n ^ mix(i));
    let b = mix(a);
    let mut bytes = [0u8; 10];
    bytes[..8].copy_from_slice(&a.to_le_bytes());
    bytes[8..].copy_from_slice(&b.to_le_bytes()[..2]);
    bytes
}

fn mix(z: u64) -> u64 {
    eventcore::Entropy::mix(z)
}

/// An append of `events` to `stream` under command id `n`, built by hand
/// (data set setup and store-level benchmarks, bypassing the machine).
///
/// # Panics
/// Never for bank events, which always encode.
pub fn append_request(
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[AccountEvent],
    now: Time,
    n: u64,
) -> AppendRequest {
    append_request_in(Codec::Json, stream, expected, events, now, n)
}

/// [`append_request`] with the payloads in `codec` (a store's own, as an
/// executor over it encodes them).
///
/// # Panics
/// Never for bank events, which always encode.
pub fn append_request_in(
    codec: Codec,
    stream: &StreamId,
    expected: ExpectedVersion,
    events: &[AccountEvent],
    now: Time,
    n: u64,
) -> AppendRequest {
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(command_id(now, n), now)),
        streams: vec![StreamAppend {
            stream: stream.clone(),
            expected,
            events: events
                .iter()
                .enumerate()
                .map(|(i, event)| {
                    let encoded = event.encode_as(codec).expect("bank events encode");
                    NewEvent {
                        event_id: EventId::v7(now, entropy(n, i as u64 + 1)),
                        event_type: encoded.event_type,
                        schema_version: encoded.schema_version,
                        payload: encoded.payload,
                    }
                })
                .collect(),
            tombstone: false,
        }],
    }
}

/// Executes `command` to the end against `store`, synchronously: the sans-IO
/// machine and the synchronous memory store, no runtime, no clock (every
/// input carries `now`; backoffs are skipped by waking at their end).
///
/// ```
/// use eventcore_benches::{execute_sync, stream, Deposit};
/// use eventcore_memory::MemoryStore;
/// let mut store = MemoryStore::new();
/// let done = execute_sync(&mut store, Deposit { account: stream("a"), amount: 1 }, eventcore::Time::ZERO, 1);
/// assert!(done.is_ok());
/// ```
pub fn execute_sync<C: Command>(
    store: &mut MemoryStore,
    command: C,
    now: Time,
    seed: u64,
) -> Result<Executed, CommandError<C::Error>> {
    let context = ExecutionContext::new(command_id(now, seed));
    let mut machine = eventcore::CommandMachine::new(command, ExecutionPolicy::default(), context, now, seed);
    let mut now = now;
    loop {
        match machine.poll() {
            Step::Read {
                id: request_id,
                request,
                ..
            } => {
                let answer = store.read(&request);
                machine.on_read(request_id, answer, now);
            }
            Step::Append {
                id: request_id,
                request,
                ..
            } => {
                let answer = store.append(&request);
                machine.on_append(request_id, answer, now);
            }
            Step::Wait { until } => {
                now = now.max(until);
                machine.on_wake(now);
            }
            Step::Done(result) => return result,
            Step::Finished => {
                return Err(CommandError::Store(StoreError::permanent(
                    Operation::Other,
                    "machine finished without a result",
                )))
            }
        }
    }
}
