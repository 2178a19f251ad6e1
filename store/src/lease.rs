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

use crate::BoxFuture;
use eventcore::Time;
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A number that grows every time a lease changes hands. Stores accept
/// writes only from the highest token they have seen for a subscription.
///
/// ```
/// use eventcore_store::FencingToken;
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
/// use eventcore_store::{FencingToken, Lease};
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
/// use eventcore_store::LeaseError;
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

/// Where leases live. Implementations: `MemoryLeaseStore` (one process) and
/// `NoLease` (no coordination) in `eventcore-tokio`, and the PostgreSQL
/// lease table (`eventcore_postgres::PgLeaseStore`).
///
/// `now` is the caller's clock; a store with a clock of its own (a
/// database) may use that instead, which avoids skew between processes.
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

/// [`LeaseStore`] as a trait object (boxed futures). Every `LeaseStore` is
/// one; `Box<dyn DynLeaseStore>` and `Arc<dyn DynLeaseStore>` are
/// `LeaseStore`s again.
pub trait DynLeaseStore: Send + Sync + 'static {
    /// [`LeaseStore::try_acquire`], boxed.
    fn try_acquire_boxed<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: Duration,
        now: Time,
    ) -> BoxFuture<'a, Result<Option<Lease>, LeaseError>>;

    /// [`LeaseStore::renew`], boxed.
    fn renew_boxed<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
        now: Time,
    ) -> BoxFuture<'a, Result<Lease, LeaseError>>;

    /// [`LeaseStore::release`], boxed.
    fn release_boxed<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), LeaseError>>;
}

impl<S: LeaseStore> DynLeaseStore for S {
    fn try_acquire_boxed<'a>(
        &'a self,
        name: &'a str,
        holder: &'a str,
        ttl: Duration,
        now: Time,
    ) -> BoxFuture<'a, Result<Option<Lease>, LeaseError>> {
        Box::pin(self.try_acquire(name, holder, ttl, now))
    }

    fn renew_boxed<'a>(
        &'a self,
        lease: &'a Lease,
        ttl: Duration,
        now: Time,
    ) -> BoxFuture<'a, Result<Lease, LeaseError>> {
        Box::pin(self.renew(lease, ttl, now))
    }

    fn release_boxed<'a>(&'a self, lease: &'a Lease) -> BoxFuture<'a, Result<(), LeaseError>> {
        Box::pin(self.release(lease))
    }
}

impl LeaseStore for dyn DynLeaseStore {
    async fn try_acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: Time,
    ) -> Result<Option<Lease>, LeaseError> {
        self.try_acquire_boxed(name, holder, ttl, now).await
    }

    async fn renew(&self, lease: &Lease, ttl: Duration, now: Time) -> Result<Lease, LeaseError> {
        self.renew_boxed(lease, ttl, now).await
    }

    async fn release(&self, lease: &Lease) -> Result<(), LeaseError> {
        self.release_boxed(lease).await
    }
}

macro_rules! forward_lease_store {
    ($ptr:ident) => {
        impl<S: LeaseStore + ?Sized> LeaseStore for $ptr<S> {
            fn try_acquire(
                &self,
                name: &str,
                holder: &str,
                ttl: Duration,
                now: Time,
            ) -> impl Future<Output = Result<Option<Lease>, LeaseError>> + Send {
                (**self).try_acquire(name, holder, ttl, now)
            }

            fn renew(
                &self,
                lease: &Lease,
                ttl: Duration,
                now: Time,
            ) -> impl Future<Output = Result<Lease, LeaseError>> + Send {
                (**self).renew(lease, ttl, now)
            }

            fn release(&self, lease: &Lease) -> impl Future<Output = Result<(), LeaseError>> + Send {
                (**self).release(lease)
            }
        }
    };
}

forward_lease_store!(Arc);
forward_lease_store!(Box);
