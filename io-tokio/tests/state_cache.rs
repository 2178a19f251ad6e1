//! The executor's state cache: a command that opts in costs one append
//! instead of a read and a full fold, and a stale or failed snapshot never
//! changes a result.

use eventcore::{
    AppendReceipt, AppendRequest, Command, CommandError, Decision, Event, ReadAllRequest, ReadAllResponse, ReadRequest,
    ReadResponse, StoreError, StreamId,
};
use eventcore_tokio::{EventStore, Executor, MemoryEventStore};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

#[derive(Debug, Serialize, Deserialize)]
enum Account {
    Deposited { amount: u64, balance_before: u64 },
    Withdrawn { amount: u64 },
}
impl Event for Account {}

#[derive(Debug, thiserror::Error)]
#[error("insufficient funds: {balance} < {amount}")]
struct Insufficient {
    balance: u64,
    amount: u64,
}

fn balance_apply(balance: &mut u64, event: &Account) {
    match event {
        Account::Deposited { amount, .. } => *balance += amount,
        Account::Withdrawn { amount } => *balance -= amount,
    }
}

/// Records the balance it saw in every deposit, so a wrong fold shows.
struct Deposit(StreamId, u64);

impl Command for Deposit {
    type Event = Account;
    type State = u64;
    type Error = Insufficient;
    const CACHE_STATE: bool = true;
    fn streams(&self) -> Vec<StreamId> {
        vec![self.0.clone()]
    }
    fn apply(&self, balance: &mut u64, _: &StreamId, event: &Account) {
        balance_apply(balance, event);
    }
    fn decide(&self, balance: &u64, out: &mut Decision<Account>) -> Result<(), Insufficient> {
        out.emit(
            &self.0,
            Account::Deposited {
                amount: self.1,
                balance_before: *balance,
            },
        );
        Ok(())
    }
}

struct Withdraw(StreamId, u64);

impl Command for Withdraw {
    type Event = Account;
    type State = u64;
    type Error = Insufficient;
    const CACHE_STATE: bool = true;
    fn streams(&self) -> Vec<StreamId> {
        vec![self.0.clone()]
    }
    fn apply(&self, balance: &mut u64, _: &StreamId, event: &Account) {
        balance_apply(balance, event);
    }
    fn decide(&self, balance: &u64, out: &mut Decision<Account>) -> Result<(), Insufficient> {
        if *balance < self.1 {
            return Err(Insufficient {
                balance: *balance,
                amount: self.1,
            });
        }
        out.emit(&self.0, Account::Withdrawn { amount: self.1 });
        Ok(())
    }
}

#[derive(Clone, Default)]
struct CountingStore {
    inner: MemoryEventStore,
    reads: Arc<AtomicU32>,
}

impl EventStore for CountingStore {
    async fn read(&self, request: &ReadRequest) -> Result<ReadResponse, StoreError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.inner.read(request).await
    }
    async fn append(&self, request: &AppendRequest) -> Result<AppendReceipt, StoreError> {
        self.inner.append(request).await
    }
    async fn read_all(&self, request: &ReadAllRequest) -> Result<ReadAllResponse, StoreError> {
        self.inner.read_all(request).await
    }
}

/// The balance each deposit saw, in stream order.
fn seen(store: &MemoryEventStore, stream: &StreamId) -> Vec<u64> {
    store.inspect(|s| {
        s.events()
            .iter()
            .filter(|e| &e.stream_id == stream)
            .filter_map(|e| match eventcore::decode_recorded::<Account>(e).expect("decodes") {
                Account::Deposited { balance_before, .. } => Some(balance_before),
                Account::Withdrawn { .. } => None,
            })
            .collect()
    })
}

fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("valid")
}

#[tokio::test]
async fn an_opted_in_command_reads_its_stream_once_and_then_only_appends() {
    let store = CountingStore::default();
    let executor = Executor::new(store.clone()).with_state_cache(100);
    let s = stream("acc");
    for _ in 0..5 {
        executor.execute(Deposit(s.clone(), 10)).await.expect("commits");
    }
    assert_eq!(store.reads.load(Ordering::SeqCst), 1, "only the first execution reads");
    assert_eq!(
        seen(&store.inner, &s),
        vec![0, 10, 20, 30, 40],
        "every decision saw the true balance"
    );
    assert_eq!(executor.state_cache().map(|c| c.len()), Some(1));
}

#[tokio::test]
async fn a_stale_snapshot_costs_a_conflict_and_an_incremental_read() {
    let store = CountingStore::default();
    let cached = Executor::new(store.clone()).with_state_cache(100);
    let other = Executor::new(store.clone());
    let s = stream("shared");
    cached.execute(Deposit(s.clone(), 10)).await.expect("commits");
    other.execute(Deposit(s.clone(), 5)).await.expect("commits");
    let done = cached
        .execute(Deposit(s.clone(), 1))
        .await
        .expect("commits after re-reading");
    assert_eq!(done.stats.conflicts, 1);
    assert_eq!(seen(&store.inner, &s), vec![0, 10, 15]);
    cached.execute(Deposit(s.clone(), 1)).await.expect("commits");
    assert_eq!(
        seen(&store.inner, &s),
        vec![0, 10, 15, 16],
        "the refreshed snapshot is reused"
    );
}

#[tokio::test]
async fn a_refusal_is_never_based_on_a_stale_snapshot() {
    let store = CountingStore::default();
    let cached = Executor::new(store.clone()).with_state_cache(100);
    let other = Executor::new(store.clone());
    let s = stream("refill");
    cached.execute(Deposit(s.clone(), 1)).await.expect("commits");
    cached.execute(Withdraw(s.clone(), 1)).await.expect("commits");
    other.execute(Deposit(s.clone(), 50)).await.expect("commits");
    // The cached state says 0, the stream holds 50.
    cached
        .execute(Withdraw(s.clone(), 30))
        .await
        .expect("the refusal the stale state suggests is checked by a read first");
    let refused = cached.execute(Withdraw(s.clone(), 30)).await;
    assert!(
        matches!(
            refused,
            Err(CommandError::Domain(Insufficient {
                balance: 20,
                amount: 30
            }))
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_failed_execution_leaves_no_snapshot_behind() {
    let store = CountingStore::default();
    let cached = Executor::new(store.clone()).with_state_cache(100);
    let s = stream("empty");
    assert!(cached.execute(Withdraw(s.clone(), 1)).await.is_err());
    assert_eq!(cached.state_cache().map(|c| c.len()), Some(0));
    cached.execute(Deposit(s.clone(), 3)).await.expect("commits");
    assert_eq!(seen(&store.inner, &s), vec![0]);
}

#[tokio::test]
async fn commands_share_snapshots_only_with_their_own_type() {
    let store = CountingStore::default();
    let cached = Executor::new(store.clone()).with_state_cache(100);
    let s = stream("typed");
    cached.execute(Deposit(s.clone(), 5)).await.expect("commits");
    cached
        .execute(Withdraw(s.clone(), 2))
        .await
        .expect("reads: no Withdraw snapshot yet");
    cached.execute(Deposit(s.clone(), 1)).await.expect("commits");
    // Deposit's snapshot (balance 5) is stale after the withdrawal: it
    // conflicts, re-reads and sees 3.
    assert_eq!(seen(&store.inner, &s), vec![0, 3]);
}
