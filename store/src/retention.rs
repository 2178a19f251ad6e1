//! Retention: the maintenance job that physically removes events
//! ([`RetentionStore`]) and its object-safe twin [`DynRetentionStore`].

use crate::BoxFuture;
use eventcore::{GlobalPosition, RemovedRange, RetentionOptions, RetentionPlan, RetentionReport, StoreError, Time};
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::Arc;

/// A store that can remove events under a [`RetentionPlan`]: the one
/// sanctioned exception to an append-only log. Every implementation must
/// pass the conformance group `tests/src/conformance/retention.rs`:
///
/// - only a prefix of a stream is removed, and a [`RemovedRange`] records
///   it; the events that stay keep their versions and positions;
/// - reads report it (`StreamSlice::removed_through`,
///   `ReadAllResponse::removed`), so no reader meets an unexplained gap;
/// - a tombstoned stream removed whole stays tombstoned;
/// - a second run at the same `now` removes nothing new;
/// - a dry run removes nothing and reports what a real run would.
///
/// ```
/// use eventcore::{RetentionOptions, RetentionPlan, RetentionPolicy, Time};
/// use eventcore_store::RetentionStore;
/// use std::time::Duration;
/// async fn nightly<S: RetentionStore>(store: &S, now: Time) -> Result<u64, eventcore::StoreError> {
///     let plan = RetentionPlan::new([RetentionPolicy::new("session-").with_max_age(Duration::from_secs(30 * 86_400))]);
///     let report = store.apply_retention(&plan, now, RetentionOptions::default()).await?;
///     Ok(report.events_removed())
/// }
/// # let _ = nightly::<std::sync::Arc<dyn eventcore_store::DynRetentionStore>>;
/// ```
pub trait RetentionStore: Send + Sync + 'static {
    /// Removes what `plan` allows at `now`, and reports it.
    fn apply_retention(
        &self,
        plan: &RetentionPlan,
        now: Time,
        options: RetentionOptions,
    ) -> impl Future<Output = Result<RetentionReport, StoreError>> + Send;

    /// The removed ranges whose last position is above `after`, in order of
    /// last position, at most `limit`.
    fn removed_ranges(
        &self,
        after: GlobalPosition,
        limit: NonZeroU32,
    ) -> impl Future<Output = Result<Vec<RemovedRange>, StoreError>> + Send;
}

/// [`RetentionStore`] as a trait object. Every `RetentionStore` is one;
/// `Box<dyn DynRetentionStore>` and `Arc<dyn DynRetentionStore>` are
/// `RetentionStore`s again.
///
/// ```
/// use eventcore_store::{DynRetentionStore, RetentionStore};
/// use std::sync::Arc;
/// fn share(store: impl RetentionStore) -> Arc<dyn DynRetentionStore> {
///     Arc::new(store)
/// }
/// fn reshare(store: Arc<dyn DynRetentionStore>) -> Arc<dyn DynRetentionStore> {
///     share(store)
/// }
/// # let _ = reshare;
/// ```
pub trait DynRetentionStore: Send + Sync + 'static {
    /// [`RetentionStore::apply_retention`], boxed.
    fn apply_retention_boxed<'a>(
        &'a self,
        plan: &'a RetentionPlan,
        now: Time,
        options: RetentionOptions,
    ) -> BoxFuture<'a, Result<RetentionReport, StoreError>>;

    /// [`RetentionStore::removed_ranges`], boxed.
    fn removed_ranges_boxed(
        &self,
        after: GlobalPosition,
        limit: NonZeroU32,
    ) -> BoxFuture<'_, Result<Vec<RemovedRange>, StoreError>>;
}

impl<S: RetentionStore> DynRetentionStore for S {
    fn apply_retention_boxed<'a>(
        &'a self,
        plan: &'a RetentionPlan,
        now: Time,
        options: RetentionOptions,
    ) -> BoxFuture<'a, Result<RetentionReport, StoreError>> {
        Box::pin(self.apply_retention(plan, now, options))
    }

    fn removed_ranges_boxed(
        &self,
        after: GlobalPosition,
        limit: NonZeroU32,
    ) -> BoxFuture<'_, Result<Vec<RemovedRange>, StoreError>> {
        Box::pin(self.removed_ranges(after, limit))
    }
}

impl RetentionStore for dyn DynRetentionStore {
    async fn apply_retention(
        &self,
        plan: &RetentionPlan,
        now: Time,
        options: RetentionOptions,
    ) -> Result<RetentionReport, StoreError> {
        self.apply_retention_boxed(plan, now, options).await
    }

    async fn removed_ranges(&self, after: GlobalPosition, limit: NonZeroU32) -> Result<Vec<RemovedRange>, StoreError> {
        self.removed_ranges_boxed(after, limit).await
    }
}

/// Forwards every operation to the pointee.
macro_rules! forward_retention_store {
    ($ptr:ident) => {
        impl<S: RetentionStore + ?Sized> RetentionStore for $ptr<S> {
            fn apply_retention(
                &self,
                plan: &RetentionPlan,
                now: Time,
                options: RetentionOptions,
            ) -> impl Future<Output = Result<RetentionReport, StoreError>> + Send {
                (**self).apply_retention(plan, now, options)
            }

            fn removed_ranges(
                &self,
                after: GlobalPosition,
                limit: NonZeroU32,
            ) -> impl Future<Output = Result<Vec<RemovedRange>, StoreError>> + Send {
                (**self).removed_ranges(after, limit)
            }
        }
    };
}

forward_retention_store!(Arc);
forward_retention_store!(Box);
