//! The [`LeaseStore`] contract: one holder per name at a time, and a
//! fencing token that grows with every change of holder.
//!
//! - [`LeaseStore::try_acquire`] grants a lease that is free, expired, or
//!   already held by the same holder; while another holder's lease is live
//!   it answers `Ok(None)` and changes nothing.
//! - Every change of holder issues a strictly higher [`FencingToken`] (above
//!   the `FencingToken::default()` every checkpoint fence starts from); the
//!   same holder acquiring again keeps its token.
//! - [`LeaseStore::renew`] extends a lease that has not changed hands and
//!   otherwise fails with [`LeaseError::Lost`], changing nothing.
//! - [`LeaseStore::release`] frees a lease; a release by a holder that lost
//!   it is a no-op that leaves the new holder alone.
//!
//! Expiry is on the store's clock, which may be the `now` its callers pass
//! (memory) or its own (PostgreSQL, on the database clock): the cases let
//! time pass through [`SuiteClock`], which moves a virtual clock for the
//! former and sleeps for the latter, and never assert how close to the
//! exact instant of expiry a store flips.
//!
//! Every case is a `pub async fn` over a [`LeaseStoreFactory`];
//! [`crate::lease_store_conformance!`] runs them all.

use super::{ExpiryClock, LeaseStoreFactory};
use eventcore::Time;
use eventcore_tokio::{FencingToken, Lease, LeaseError, LeaseStore};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A lease that outlives any case: "live" for the whole test.
pub const LIVE: Duration = Duration::from_secs(120);

/// A lease short enough to let it expire in a test.
pub const SHORT: Duration = Duration::from_millis(400);

/// More than [`SHORT`]: after waiting this long a [`SHORT`] lease has
/// expired on any clock.
pub const PAST_SHORT: Duration = Duration::from_millis(600);

/// The clock a case passes as `now` and lets pass: virtual for a store that
/// expires leases on the caller's clock, the wall clock (and real sleeps)
/// for a store with a clock of its own.
///
/// ```
/// use eventcore_tests::subscription_conformance::{leases::SuiteClock, ExpiryClock};
/// use std::time::Duration;
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(async {
/// let mut clock = SuiteClock::new(ExpiryClock::Caller);
/// let before = clock.now();
/// clock.pass(Duration::from_secs(60)).await; // no waiting
/// assert_eq!(clock.now(), before.saturating_add(Duration::from_secs(60)));
/// # });
/// ```
#[derive(Clone, Copy, Debug)]
pub struct SuiteClock {
    kind: ExpiryClock,
    virtual_now: Time,
}

impl SuiteClock {
    /// A clock for stores expiring leases on `kind`.
    pub fn new(kind: ExpiryClock) -> Self {
        SuiteClock {
            kind,
            virtual_now: Time::from_unix_nanos(1_700_000_000_123_456_789),
        }
    }

    /// Now, as the case tells the store.
    pub fn now(&self) -> Time {
        match self.kind {
            ExpiryClock::Caller => self.virtual_now,
            ExpiryClock::Store => {
                // Wall-clock time for a store that reads its own clock anyway.
                let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                Time::from_unix_nanos(u64::try_from(since_epoch.as_nanos()).unwrap_or(u64::MAX))
            }
        }
    }

    /// Lets `duration` pass on the store's clock.
    pub async fn pass(&mut self, duration: Duration) {
        match self.kind {
            ExpiryClock::Caller => self.virtual_now = self.virtual_now.saturating_add(duration),
            ExpiryClock::Store => tokio::time::sleep(duration).await,
        }
    }
}

async fn acquire<S: LeaseStore>(store: &S, name: &str, holder: &str, ttl: Duration, now: Time) -> Option<Lease> {
    store
        .try_acquire(name, holder, ttl, now)
        .await
        .unwrap_or_else(|e| panic!("try_acquire of {name} by {holder}: {e}"))
}

/// A lease that must be granted.
async fn granted<S: LeaseStore>(store: &S, name: &str, holder: &str, ttl: Duration, now: Time) -> Lease {
    let lease = acquire(store, name, holder, ttl, now)
        .await
        .unwrap_or_else(|| panic!("{holder} should have been granted {name}"));
    assert_eq!((lease.name.as_str(), lease.holder.as_str()), (name, holder));
    lease
}

/// A lease that must be refused.
async fn refused<S: LeaseStore>(store: &S, name: &str, holder: &str, now: Time) {
    let answer = acquire(store, name, holder, LIVE, now).await;
    assert_eq!(answer, None, "{holder} must be refused {name} while it is held");
}

async fn renew<S: LeaseStore>(store: &S, lease: &Lease, ttl: Duration, now: Time) -> Lease {
    store
        .renew(lease, ttl, now)
        .await
        .unwrap_or_else(|e| panic!("renew of {} by {}: {e}", lease.name, lease.holder))
}

async fn release<S: LeaseStore>(store: &S, lease: &Lease) {
    store
        .release(lease)
        .await
        .unwrap_or_else(|e| panic!("release of {} by {}: {e}", lease.name, lease.holder));
}

/// Asserts that `result` is [`LeaseError::Lost`] naming `lease`.
#[track_caller]
fn assert_lost<T: std::fmt::Debug>(result: Result<T, LeaseError>, lease: &Lease) {
    match result {
        Err(LeaseError::Lost { name, holder }) => {
            assert_eq!(
                (name.as_str(), holder.as_str()),
                (lease.name.as_str(), lease.holder.as_str())
            );
        }
        other => panic!("expected {} lost by {}, got {other:?}", lease.name, lease.holder),
    }
}

/// A free lease is granted: to the holder asked for, under the name asked
/// for, with a token above `FencingToken::default()` (the fence every
/// checkpoint starts from), live now and expiring in the future.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::leases::a_free_lease_is_granted(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn a_free_lease_is_granted<F: LeaseStoreFactory>(factory: F) {
    let store = factory.fresh_leases().await;
    let clock = SuiteClock::new(factory.expiry_clock());
    let lease = granted(&store, "balances", "node-a", LIVE, clock.now()).await;
    assert!(lease.token > FencingToken::default(), "token {}", lease.token);
    assert!(!lease.is_expired(clock.now()), "{lease:?} is live");
    assert!(lease.expires_at > clock.now(), "{lease:?}");
}

/// While a lease is live every other holder is refused (`Ok(None)`), and
/// the refusals change nothing: the holder still renews with its token.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::leases::a_live_lease_is_refused_to_every_other_holder(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn a_live_lease_is_refused_to_every_other_holder<F: LeaseStoreFactory>(factory: F) {
    let store = factory.fresh_leases().await;
    let mut clock = SuiteClock::new(factory.expiry_clock());
    let a = granted(&store, "balances", "node-a", LIVE, clock.now()).await;
    for other in ["node-b", "node-c", "Node-a", "node-a "] {
        refused(&store, "balances", other, clock.now()).await;
    }
    clock.pass(Duration::from_millis(20)).await;
    refused(&store, "balances", "node-b", clock.now()).await;
    let renewed = renew(&store, &a, LIVE, clock.now()).await;
    assert_eq!(renewed.token, a.token, "refusals do not change the token");
}

/// The holder acquiring its own live lease again gets it, with the same
/// token (no change of holder) and a later expiry.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::leases::the_holder_acquiring_again_keeps_its_token(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn the_holder_acquiring_again_keeps_its_token<F: LeaseStoreFactory>(factory: F) {
    let store = factory.fresh_leases().await;
    let mut clock = SuiteClock::new(factory.expiry_clock());
    let first = granted(&store, "balances", "node-a", LIVE, clock.now()).await;
    clock.pass(Duration::from_millis(20)).await;
    let again = granted(&store, "balances", "node-a", LIVE, clock.now()).await;
    assert_eq!(again.token, first.token);
    assert!(again.expires_at > first.expires_at, "{again:?} extends {first:?}");
    // The old copy of the lease is the same tenure: it still renews.
    assert_eq!(renew(&store, &first, LIVE, clock.now()).await.token, first.token);
}

/// A renewal keeps the name, holder and token, moves the expiry later, and
/// keeps the lease from expiring: a lease renewed before its ttl ran out is
/// still refused to others after the original ttl has passed.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::leases::renewing_extends_the_lease(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn renewing_extends_the_lease<F: LeaseStoreFactory>(factory: F) {
    let store = factory.fresh_leases().await;
    let mut clock = SuiteClock::new(factory.expiry_clock());
    let lease = granted(&store, "balances", "node-a", SHORT, clock.now()).await;
    clock.pass(Duration::from_millis(20)).await;
    let renewed = renew(&store, &lease, LIVE, clock.now()).await;
    assert_eq!(
        (&renewed.name, &renewed.holder, renewed.token),
        (&lease.name, &lease.holder, lease.token)
    );
    assert!(renewed.expires_at > lease.expires_at, "{renewed:?} extends {lease:?}");
    clock.pass(PAST_SHORT).await;
    refused(&store, "balances", "node-b", clock.now()).await;
    // Renewing the renewed copy works as well as the original.
    assert_eq!(renew(&store, &renewed, LIVE, clock.now()).await.token, lease.token);
}

/// Once a lease has expired (its holder stopped renewing) another holder is
/// granted it with a strictly higher token, and from then on the first
/// holder is refused.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::leases::an_expired_lease_goes_to_another_holder_with_a_higher_token(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn an_expired_lease_goes_to_another_holder_with_a_higher_token<F: LeaseStoreFactory>(factory: F) {
    let store = factory.fresh_leases().await;
    let mut clock = SuiteClock::new(factory.expiry_clock());
    let a = granted(&store, "balances", "node-a", LIVE, clock.now()).await;
    refused(&store, "balances", "node-b", clock.now()).await;
    // a's last renewal is a short one; then a dies.
    renew(&store, &a, SHORT, clock.now()).await;
    clock.pass(PAST_SHORT).await;
    let b = granted(&store, "balances", "node-b", LIVE, clock.now()).await;
    assert!(b.token > a.token, "a new tenure: {} > {}", b.token, a.token);
    refused(&store, "balances", "node-a", clock.now()).await;
}

/// After a takeover the old holder can no longer renew
/// ([`LeaseError::Lost`], naming the lease and the old holder), and its
/// release is a no-op: the new holder keeps the lease, its token and its
/// renewals, and others are still refused.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::leases::a_stale_holder_cannot_renew_or_release_the_new_tenure(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn a_stale_holder_cannot_renew_or_release_the_new_tenure<F: LeaseStoreFactory>(factory: F) {
    let store = factory.fresh_leases().await;
    let mut clock = SuiteClock::new(factory.expiry_clock());
    let a = granted(&store, "balances", "node-a", SHORT, clock.now()).await;
    clock.pass(PAST_SHORT).await;
    let b = granted(&store, "balances", "node-b", LIVE, clock.now()).await;

    assert_lost(store.renew(&a, LIVE, clock.now()).await, &a);
    release(&store, &a).await;
    refused(&store, "balances", "node-c", clock.now()).await;
    refused(&store, "balances", "node-a", clock.now()).await;
    let renewed = renew(&store, &b, LIVE, clock.now()).await;
    assert_eq!(renewed.token, b.token, "the stale holder left the new tenure alone");
    assert_lost(store.renew(&a, LIVE, clock.now()).await, &a);
}

/// A released lease is free at once, with no wait for its expiry: the next
/// holder gets it with a higher token, and the released tenure cannot be
/// renewed. Releasing twice is harmless.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::leases::a_released_lease_is_free_at_once(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn a_released_lease_is_free_at_once<F: LeaseStoreFactory>(factory: F) {
    let store = factory.fresh_leases().await;
    let clock = SuiteClock::new(factory.expiry_clock());
    let a = granted(&store, "balances", "node-a", LIVE, clock.now()).await;
    release(&store, &a).await;
    release(&store, &a).await;
    assert_lost(store.renew(&a, LIVE, clock.now()).await, &a);
    let b = granted(&store, "balances", "node-b", LIVE, clock.now()).await;
    assert!(b.token > a.token, "{} > {}", b.token, a.token);
    release(&store, &a).await;
    refused(&store, "balances", "node-c", clock.now()).await;
}

/// Tokens strictly increase across every grant that starts a tenure,
/// however the previous one ended (release or expiry), including the same
/// holder coming back after releasing.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::leases::tokens_strictly_increase_across_tenures(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn tokens_strictly_increase_across_tenures<F: LeaseStoreFactory>(factory: F) {
    let store = factory.fresh_leases().await;
    let mut clock = SuiteClock::new(factory.expiry_clock());
    let mut tokens = Vec::new();
    let mut previous: Option<Lease> = None;
    for (i, holder) in ["a", "b", "b", "a", "c", "a"].iter().enumerate() {
        if let Some(lease) = previous.take() {
            if i % 2 == 0 {
                release(&store, &lease).await;
            } else {
                renew(&store, &lease, SHORT, clock.now()).await;
                clock.pass(PAST_SHORT).await;
            }
        }
        let lease = granted(&store, "balances", holder, LIVE, clock.now()).await;
        tokens.push(lease.token);
        previous = Some(lease);
    }
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "every tenure has a higher token: {tokens:?}"
    );
}

/// A lease that expired while nobody took it over has not changed hands:
/// its holder can still renew it, with the same token (the contract fails a
/// renewal only when the lease changed hands; the runner's lease machine
/// gives up on its own clock).
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::leases::an_expired_lease_nobody_took_can_still_be_renewed(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn an_expired_lease_nobody_took_can_still_be_renewed<F: LeaseStoreFactory>(factory: F) {
    let store = factory.fresh_leases().await;
    let mut clock = SuiteClock::new(factory.expiry_clock());
    let a = granted(&store, "balances", "node-a", SHORT, clock.now()).await;
    clock.pass(PAST_SHORT).await;
    let renewed = renew(&store, &a, LIVE, clock.now()).await;
    assert_eq!(renewed.token, a.token);
    refused(&store, "balances", "node-b", clock.now()).await;
    // And acquiring again after expiry, by the same holder, keeps the token too.
    renew(&store, &a, SHORT, clock.now()).await;
    clock.pass(PAST_SHORT).await;
    assert_eq!(
        granted(&store, "balances", "node-a", LIVE, clock.now()).await.token,
        a.token
    );
}

/// Leases of different names are independent: holding, releasing or
/// expiring one does nothing to another, also when the names differ only
/// by case or a trailing space.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::leases::names_are_independent_leases(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn names_are_independent_leases<F: LeaseStoreFactory>(factory: F) {
    let store = factory.fresh_leases().await;
    let mut clock = SuiteClock::new(factory.expiry_clock());
    let names = ["balances", "Balances", "balances ", "余额 ✓"];
    let mut held = Vec::new();
    for (i, name) in names.iter().enumerate() {
        held.push(granted(&store, name, &format!("node-{i}"), LIVE, clock.now()).await);
    }
    for (i, name) in names.iter().enumerate() {
        refused(&store, name, &format!("node-{}", i + 1), clock.now()).await;
    }
    release(&store, &held[0]).await;
    renew(&store, &held[1], SHORT, clock.now()).await;
    clock.pass(PAST_SHORT).await;
    granted(&store, names[0], "node-x", LIVE, clock.now()).await;
    granted(&store, names[1], "node-y", LIVE, clock.now()).await;
    for (i, name) in names.iter().enumerate().skip(2) {
        refused(&store, name, "node-x", clock.now()).await;
        assert_eq!(renew(&store, &held[i], LIVE, clock.now()).await.token, held[i].token);
    }
}

/// Many holders racing for a free lease: exactly one is granted it.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::leases::racing_holders_get_one_grant(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn racing_holders_get_one_grant<F: LeaseStoreFactory>(factory: F) {
    let store = factory.fresh_leases().await;
    let clock = SuiteClock::new(factory.expiry_clock());
    let now = clock.now();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            acquire(&store, "balances", &format!("node-{i}"), LIVE, now).await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        if let Some(lease) = task.await.expect("a racer panicked") {
            winners.push(lease);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one grant: {winners:?}");
    let renewed = renew(&store, &winners[0], LIVE, clock.now()).await;
    assert_eq!(renewed.token, winners[0].token);
}

/// One `#[tokio::test]` per case of the lease-store suite, for the
/// [`LeaseStoreFactory`] expression given (evaluated in each test).
///
/// ```
/// eventcore_tests::lease_store_conformance!(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores
/// );
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! lease_store_conformance {
    ($factory:expr) => {
        $crate::subscription_store_conformance!(@cases leases; $factory;
            a_free_lease_is_granted,
            a_live_lease_is_refused_to_every_other_holder,
            the_holder_acquiring_again_keeps_its_token,
            renewing_extends_the_lease,
            an_expired_lease_goes_to_another_holder_with_a_higher_token,
            a_stale_holder_cannot_renew_or_release_the_new_tenure,
            a_released_lease_is_free_at_once,
            tokens_strictly_increase_across_tenures,
            an_expired_lease_nobody_took_can_still_be_renewed,
            names_are_independent_leases,
            racing_holders_get_one_grant,
        );
    };
}
