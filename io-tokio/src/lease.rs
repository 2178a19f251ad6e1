//! The leases of one process: [`MemoryLeaseStore`] and [`NoLease`]. The
//! trait, [`FencingToken`] and the lease protocol live in `eventcore-store`.

use eventcore::Time;
use eventcore_store::{FencingToken, Lease, LeaseError, LeaseStore};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

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
