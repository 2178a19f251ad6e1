//! Leases: one active instance per subscription across processes, with
//! fencing tokens that let stores reject a stale holder's writes.
//!
//! A runner acquires the lease for its subscription name before it claims
//! the checkpoint, renews it while it runs and releases it on shutdown. A
//! holder that dies stops renewing; once its lease expires another instance
//! takes over with a **higher** [`FencingToken`]. The new holder claims the
//! checkpoint with that token ([`crate::CheckpointStore::claim`],
//! [`crate::ProjectionStore::claim`]), which raises the store's fence: every
//! later write carrying the old token is rejected as
//! [`crate::CheckpointError::Fenced`], even if the old holder wakes up
//! believing it still holds the lease (a long GC pause, a frozen VM, clock
//! skew).

use eventcore::Time;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// A number that grows every time a lease changes hands. Stores accept
/// writes only from the highest token they have seen for a subscription.
///
/// ```
/// use eventcore_tokio::FencingToken;
/// assert!(FencingToken::new(2) > FencingToken::new(1));
/// assert_eq!(FencingToken::new(7).get(), 7);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FencingToken(u64);

impl FencingToken {
    /// Wraps a raw token.
    pub const fn new(raw: u64) -> Self {
        FencingToken(raw)
    }

    /// The raw token.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fence#{}", self.0)
    }
}

/// A held lease.
///
/// ```
/// use eventcore::Time;
/// use eventcore_tokio::{FencingToken, Lease};
/// let lease = Lease { name: "balances".into(), holder: "node-a".into(), token: FencingToken::new(1), expires_at: Time::from_unix_millis(10) };
/// assert!(lease.is_expired(Time::from_unix_millis(10)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The subscription (or projection) name it guards.
    pub name: String,
    /// Who holds it.
    pub holder: String,
    /// The fencing token of this tenure.
    pub token: FencingToken,
    /// When it lapses unless renewed (on the lease store's clock).
    pub expires_at: Time,
}

impl Lease {
    /// Whether the lease has lapsed at `now`.
    pub fn is_expired(&self, now: Time) -> bool {
        now >= self.expires_at
    }
}

/// Why a lease operation failed.
///
/// ```
/// use eventcore_tokio::LeaseError;
/// let e = LeaseError::Lost { name: "balances".into(), holder: "node-a".into() };
/// assert_eq!(e.to_string(), "lease `balances` is no longer held by `node-a`");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeaseError {
    /// Another holder took the lease over (or it was released).
    #[error("lease `{name}` is no longer held by `{holder}`")]
    Lost {
        /// The lease name.
        name: String,
        /// The holder that lost it.
        holder: String,
    },
    /// A passing failure (connection lost); try again.
    #[error("transient lease failure: {0}")]
    Transient(String),
    /// A failure retrying will not fix.
    #[error("permanent lease failure: {0}")]
    Permanent(String),
}

/// Where leases live. Implementations: [`MemoryLeaseStore`] (one process),
/// [`NoLease`] (no coordination), and the PostgreSQL lease table.
///
/// `now` is the caller's clock; a store with a clock of its own (a
/// database) may use that instead, which avoids skew between processes.
///
/// ```
/// use eventcore_tokio::{LeaseStore, MemoryLeaseStore};
/// fn takes_any(_: &impl LeaseStore) {}
/// takes_any(&MemoryLeaseStore::new());
/// ```
pub trait LeaseStore: Send + Sync + 'static {
    /// Takes the lease if it is free, expired, or already held by `holder`;
    /// `Ok(None)` when someone else holds it. Every change of holder issues
    /// a higher token.
    fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Time,
    ) -> impl Future<Output = Result<Option<Lease>, LeaseError>> + Send;

    /// Extends a held lease; [`LeaseError::Lost`] if it changed hands.
    fn renew(&self, lease: &Lease, ttl: Duration, now: Time) -> impl Future<Output = Result<Lease, LeaseError>> + Send;

    /// Gives the lease up (no-op if it already changed hands).
    fn release(&self, lease: &Lease) -> impl Future<Output = Result<(), LeaseError>> + Send;
}

/// No coordination at all: every caller gets the lease, always with token
/// 1. For a single process that runs each subscription once.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore::Time;
/// use eventcore_tokio::{LeaseStore, NoLease};
/// use std::time::Duration;
/// let lease = NoLease.try_acquire("p", "me", Duration::from_secs(1), Time::ZERO).await.unwrap();
/// assert!(lease.is_some());
/// # });
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct NoLease;

impl LeaseStore for NoLease {
    async fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        _ttl: Duration,
        _now: Time,
    ) -> Result<Option<Lease>, LeaseError> {
        Ok(Some(Lease {
            name: name.to_owned(),
            holder: holder.to_owned(),
            token: FencingToken::new(1),
            expires_at: Time::MAX,
        }))
    }

    async fn renew(&self, lease: &Lease, _ttl: Duration, _now: Time) -> Result<Lease, LeaseError> {
        Ok(lease.clone())
    }

    async fn release(&self, _lease: &Lease) -> Result<(), LeaseError> {
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Slot {
    holder: Option<String>,
    token: u64,
    expires_at: Time,
}

/// Leases in memory, shared by every clone (the instances of one process,
/// or of one test).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use eventcore::Time;
/// use eventcore_tokio::{LeaseStore, MemoryLeaseStore};
/// use std::time::Duration;
/// let leases = MemoryLeaseStore::new();
/// let ttl = Duration::from_secs(10);
/// let a = leases.try_acquire("p", "a", ttl, Time::ZERO).await.unwrap().expect("free");
/// assert!(leases.try_acquire("p", "b", ttl, Time::ZERO).await.unwrap().is_none());
/// // a dies; after the ttl b takes over with a higher token
/// let b = leases.try_acquire("p", "b", ttl, a.expires_at).await.unwrap().expect("expired");
/// assert!(b.token > a.token);
/// assert!(leases.renew(&a, ttl, a.expires_at).await.is_err());
/// # });
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryLeaseStore {
    slots: Arc<Mutex<BTreeMap<String, Slot>>>,
}

impl MemoryLeaseStore {
    /// No leases held.
    pub fn new() -> Self {
        MemoryLeaseStore::default()
    }

    /// The current holder and token of `name`, if held (expired or not).
    pub fn holder(&self, name: &str) -> Option<(String, FencingToken)> {
        let slots = self.lock();
        let slot = slots.get(name)?;
        slot.holder.clone().map(|h| (h, FencingToken::new(slot.token)))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Slot>> {
        // Every critical section leaves the map consistent.
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl LeaseStore for MemoryLeaseStore {
    async fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<Option<Lease>, LeaseError> {
        let mut slots = self.lock();
        let slot = slots.entry(name.to_owned()).or_default();
        let mine = slot.holder.as_deref() == Some(holder);
        if slot.holder.is_some() && !mine && now < slot.expires_at {
            return Ok(None);
        }
        if !mine {
            slot.token += 1;
            slot.holder = Some(holder.to_owned());
        }
        slot.expires_at = now.saturating_add(ttl);
        Ok(Some(Lease {
            name: name.to_owned(),
            holder: holder.to_owned(),
            token: FencingToken::new(slot.token),
            expires_at: slot.expires_at,
        }))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration, now: Time) -> Result<Lease, LeaseError> {
        let mut slots = self.lock();
        match slots.get_mut(&lease.name) {
            Some(slot) if slot.token == lease.token.get() && slot.holder.as_deref() == Some(&lease.holder) => {
                slot.expires_at = now.saturating_add(ttl);
                Ok(Lease {
                    expires_at: slot.expires_at,
                    ..lease.clone()
                })
            }
            _ => Err(LeaseError::Lost {
                name: lease.name.clone(),
                holder: lease.holder.clone(),
            }),
        }
    }

    async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        let mut slots = self.lock();
        if let Some(slot) = slots.get_mut(&lease.name) {
            if slot.token == lease.token.get() {
                slot.holder = None;
                slot.expires_at = Time::ZERO;
            }
        }
        Ok(())
    }
}
