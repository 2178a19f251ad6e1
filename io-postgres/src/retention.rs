//! Retention: the maintenance job that physically removes events
//! (migration 0009), in bounded batches of one transaction each.
//!
//! A run goes policy by policy, through the policy's streams in pages (in
//! stream-id order, so no page is ever held twice), decides per stream with
//! the rule every store shares ([`RetentionPolicy::removable_with`]), and
//! removes through the `remove_events()` function: the one path the
//! immutability trigger lets a DELETE through. The role running it needs
//! DELETE on `events` (the schema owner, or a maintenance role granted it,
//! `docs/data-lifecycle.md`); the least-privilege application role has
//! none and is refused with `permission denied`.

use crate::error::{map_error, Phase};
use crate::store::{contract, to_u64};
use crate::PostgresStore;
use eventcore::{
    GlobalPosition, Operation, RemovalReason, RemovedRange, RetentionOptions, RetentionPlan, RetentionPolicy,
    RetentionReport, StoreError, StreamId, StreamRetentionState, StreamVersion, Time,
};
use eventcore_store::RetentionStore;
use sqlx::Row;
use std::num::NonZeroU32;
use tracing::Instrument;

/// Streams looked at per planning query.
const PLAN_PAGE: i64 = 500;

/// One stream's removal, decided: versions after `from` through `through`.
#[derive(Clone, Debug)]
struct Target {
    stream: StreamId,
    from: u64,
    through: u64,
    reason: RemovalReason,
}

impl PostgresStore {
    /// Applies a retention plan at `now` ([`RetentionStore::apply_retention`]).
    /// Each batch of at most [`RetentionOptions::batch_size`] events is one
    /// transaction under the store's `maintenance_timeout` (a stream longer
    /// than that is removed over several, each its own range), so locks on
    /// stream heads are held briefly and appends to other streams never
    /// wait. With [`RetentionOptions::archive`] the events are copied to
    /// `events_archive` in the same transaction before they are deleted. A
    /// tombstoned stream removed whole stays tombstoned: its head row stays
    /// and appends to it are still refused.
    ///
    /// Run it as the schema owner or a role with DELETE on `events`; the
    /// least-privilege application role is refused
    /// ([`StoreError::Permanent`], `permission denied`).
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore::StoreError> {
    /// use eventcore::{RetentionOptions, RetentionPlan, RetentionPolicy, Time};
    /// use std::time::Duration;
    /// let plan = RetentionPlan::new([RetentionPolicy::new("session-")
    ///     .with_max_age(Duration::from_secs(30 * 86_400))
    ///     .removing_tombstoned(Duration::ZERO)]);
    /// let now = Time::from_unix_millis(1_800_000_000_000);
    /// let report = store.apply_retention(&plan, now, RetentionOptions::default().archived()).await?;
    /// println!("removed {} events in {} transactions", report.events_removed(), report.batches);
    /// # Ok(()) }
    /// ```
    pub async fn apply_retention(
        &self,
        plan: &RetentionPlan,
        now: Time,
        options: RetentionOptions,
    ) -> Result<RetentionReport, StoreError> {
        let span = tracing::info_span!("store.retention", store = "postgres", dry_run = options.dry_run);
        self.apply_retention_inner(plan, now, options).instrument(span).await
    }

    async fn apply_retention_inner(
        &self,
        plan: &RetentionPlan,
        now: Time,
        options: RetentionOptions,
    ) -> Result<RetentionReport, StoreError> {
        let mut report = RetentionReport {
            dry_run: options.dry_run,
            ..RetentionReport::default()
        };
        let budget = u64::from(options.batch_size.max(1));
        for policy in plan.policies.iter().filter(|p| p.removes_anything()) {
            // Streams a longer category governs are that policy's.
            let narrower: Vec<&str> = plan
                .policies
                .iter()
                .filter(|p| p.category.len() > policy.category.len() && p.category.starts_with(&policy.category))
                .map(|p| p.category.as_str())
                .collect();
            let mut last = String::new();
            loop {
                let page = self.plan_page(plan, policy, &narrower, &last, now).await?;
                let Some(next) = page.last_stream else {
                    break;
                };
                last = next;
                let mut batch: Vec<Target> = Vec::new();
                let mut in_batch = 0;
                for mut target in page.targets {
                    while target.from < target.through {
                        let take = (target.through - target.from).min(budget - in_batch);
                        batch.push(Target {
                            through: target.from + take,
                            ..target.clone()
                        });
                        target.from += take;
                        in_batch += take;
                        if in_batch == budget {
                            self.remove_batch(&batch, now, options, &mut report).await?;
                            batch.clear();
                            in_batch = 0;
                        }
                    }
                }
                if !batch.is_empty() {
                    self.remove_batch(&batch, now, options, &mut report).await?;
                }
            }
        }
        report
            .ranges
            .sort_by(|a, b| a.stream.cmp(&b.stream).then(a.first_version.cmp(&b.first_version)));
        Ok(report)
    }

    /// The removed ranges whose last position is above `after`
    /// ([`RetentionStore::removed_ranges`]).
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) -> Result<(), eventcore::StoreError> {
    /// use eventcore::GlobalPosition;
    /// use std::num::NonZeroU32;
    /// for range in store.removed_ranges(GlobalPosition::START, NonZeroU32::MIN.saturating_add(99)).await? {
    ///     println!("{range}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn removed_ranges(
        &self,
        after: GlobalPosition,
        limit: NonZeroU32,
    ) -> Result<Vec<RemovedRange>, StoreError> {
        let s = format!("\"{}\"", self.options.schema);
        let sql = format!(
            "SELECT stream_id, first_version, last_version, first_position, last_position, reason, removed_at \
             FROM {s}.removed_ranges WHERE last_position > $1 ORDER BY last_position LIMIT $2"
        );
        let after = i64::try_from(after.get()).unwrap_or(i64::MAX);
        self.bounded(Operation::Other, async {
            let rows = sqlx::query(&sql)
                .bind(after)
                .bind(i64::from(limit.get()))
                .fetch_all(&self.pool)
                .await
                .map_err(|e| map_error(Operation::Other, Phase::Executing, e, None))?;
            rows.iter()
                .map(|row| {
                    let get = |e| contract(Operation::Other, e);
                    removed_range(
                        row.try_get(0).map_err(get)?,
                        [
                            row.try_get(1).map_err(get)?,
                            row.try_get(2).map_err(get)?,
                            row.try_get(3).map_err(get)?,
                            row.try_get(4).map_err(get)?,
                        ],
                        row.try_get(5).map_err(get)?,
                        row.try_get(6).map_err(get)?,
                    )
                })
                .collect()
        })
        .await
    }

    /// One page of a policy's streams after `last` (in stream-id order),
    /// with what the policy removes from each.
    async fn plan_page(
        &self,
        plan: &RetentionPlan,
        policy: &RetentionPolicy,
        narrower: &[&str],
        last: &str,
        now: Time,
    ) -> Result<PlanPage, StoreError> {
        let s = format!("\"{}\"", self.options.schema);
        // `old` counts the stored events from removed_through + 1 on that
        // are past the cutoff before the first younger one (max age removes
        // a prefix only); the tombstone's age is its last event's.
        let sql = format!(
            "SELECT s.stream_id, s.version, s.removed_through, s.deleted_at_version, \
               (SELECT l.decided_at FROM {s}.events l WHERE l.stream_id = s.stream_id AND l.version = s.version) \
                 AS last_at, \
               CASE WHEN $5::int8 IS NULL THEN 0 ELSE \
                 coalesce((SELECT min(y.version) FROM {s}.events y WHERE y.stream_id = s.stream_id \
                   AND y.version > s.removed_through AND y.decided_at > $5), s.version + 1) - 1 - s.removed_through \
               END AS old \
             FROM {s}.streams s \
             WHERE starts_with(s.stream_id, $1) AND s.stream_id > $2 AND s.version > s.removed_through \
               AND NOT EXISTS (SELECT 1 FROM unnest($3::text[]) AS n(p) WHERE starts_with(s.stream_id, n.p)) \
             ORDER BY s.stream_id LIMIT $4"
        );
        let cutoff = policy.max_age_cutoff(now).map(nanos_column);
        let rows = self
            .bounded_maintenance(Operation::Other, async {
                sqlx::query(&sql)
                    .bind(&policy.category)
                    .bind(last)
                    .bind(narrower)
                    .bind(PLAN_PAGE)
                    .bind(cutoff)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(|e| map_error(Operation::Other, Phase::Executing, e, None))
            })
            .await?;
        let mut page = PlanPage {
            last_stream: None,
            targets: Vec::new(),
        };
        for row in &rows {
            let get = |e| contract(Operation::Other, e);
            let id: String = row.try_get(0).map_err(get)?;
            let head: i64 = row.try_get(1).map_err(get)?;
            let removed: i64 = row.try_get(2).map_err(get)?;
            let deleted: Option<i64> = row.try_get(3).map_err(get)?;
            let last_at: Option<i64> = row.try_get(4).map_err(get)?;
            let old: i64 = row.try_get(5).map_err(get)?;
            page.last_stream = Some(id.clone());
            // A duplicate category: the plan's own choice decides.
            if !plan.policy_for(&id).is_some_and(|p| std::ptr::eq(p, policy)) {
                continue;
            }
            let state = StreamRetentionState {
                head: StreamVersion::new(to_u64(head)),
                removed_through: StreamVersion::new(to_u64(removed)),
                deleted_at: deleted.map(|v| StreamVersion::new(to_u64(v))),
            };
            let last_at = last_at.map(time_column);
            let Some((through, reason)) = policy.removable_with(&state, last_at, to_u64(old), now) else {
                continue;
            };
            let stream = StreamId::new(id).map_err(|e| StoreError::ContractViolation {
                operation: Operation::Other,
                message: format!("stored stream id is invalid: {e}"),
            })?;
            page.targets.push(Target {
                stream,
                from: state.removed_through.get(),
                through: through.get(),
                reason,
            });
        }
        Ok(page)
    }

    /// Removes (or, dry, measures) one batch in one transaction.
    async fn remove_batch(
        &self,
        batch: &[Target],
        now: Time,
        options: RetentionOptions,
        report: &mut RetentionReport,
    ) -> Result<(), StoreError> {
        let s = format!("\"{}\"", self.options.schema);
        let ids: Vec<&str> = batch.iter().map(|t| t.stream.as_str()).collect();
        let froms: Vec<i64> = batch
            .iter()
            .map(|t| i64::try_from(t.from).unwrap_or(i64::MAX))
            .collect();
        let throughs: Vec<i64> = batch
            .iter()
            .map(|t| i64::try_from(t.through).unwrap_or(i64::MAX))
            .collect();
        let reasons: Vec<&str> = batch.iter().map(|t| t.reason.as_str()).collect();
        let failed = |e| map_error(Operation::Other, Phase::Executing, e, None);
        let rows = self
            .bounded_maintenance(Operation::Other, async {
                if options.dry_run {
                    // What a run would remove, measured without a lock.
                    let sql = format!(
                        "SELECT r.sid, r.f + 1, r.t, m.lo, m.hi, r.why, m.n \
                         FROM unnest($1::text[], $2::int8[], $3::int8[], $4::text[]) AS r(sid, f, t, why) \
                         CROSS JOIN LATERAL (SELECT min(e.position) AS lo, max(e.position) AS hi, count(*) AS n \
                           FROM {s}.events e WHERE e.stream_id = r.sid AND e.version > r.f AND e.version <= r.t) m"
                    );
                    return sqlx::query(&sql)
                        .bind(&ids)
                        .bind(&froms)
                        .bind(&throughs)
                        .bind(&reasons)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(failed);
                }
                let mut tx = self.pool.begin().await.map_err(failed)?;
                sqlx::query(&self.set_local_maintenance_timeout())
                    .execute(&mut *tx)
                    .await
                    .map_err(failed)?;
                let sql = format!(
                    "SELECT o_stream_id, o_first_version, o_last_version, o_first_position, o_last_position, \
                       o_reason, o_count FROM {s}.remove_events($1, $2, $3, $4, $5)"
                );
                let rows = sqlx::query(&sql)
                    .bind(&ids)
                    .bind(&throughs)
                    .bind(&reasons)
                    .bind(nanos_column(now))
                    .bind(options.archive)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(failed)?;
                tx.commit().await.map_err(failed)?;
                Ok(rows)
            })
            .await?;
        if !options.dry_run {
            report.batches += 1;
        }
        for row in &rows {
            let get = |e| contract(Operation::Other, e);
            let count: i64 = row.try_get(6).map_err(get)?;
            let first_position: Option<i64> = row.try_get(3).map_err(get)?;
            let last_position: Option<i64> = row.try_get(4).map_err(get)?;
            let (Some(first_position), Some(last_position)) = (first_position, last_position) else {
                continue;
            };
            if count == 0 {
                continue;
            }
            if options.archive && !options.dry_run {
                report.archived += to_u64(count);
            }
            report.ranges.push(removed_range(
                row.try_get(0).map_err(get)?,
                [
                    row.try_get(1).map_err(get)?,
                    row.try_get(2).map_err(get)?,
                    first_position,
                    last_position,
                ],
                row.try_get(5).map_err(get)?,
                nanos_column(now),
            )?);
        }
        Ok(())
    }
}

/// A planning page: the last stream looked at (`None`: the policy's
/// streams are done) and what to remove.
struct PlanPage {
    last_stream: Option<String>,
    targets: Vec<Target>,
}

/// A time as stored in a bigint column (Unix nanoseconds, bit for bit).
fn nanos_column(time: Time) -> i64 {
    i64::from_ne_bytes(time.as_unix_nanos().to_ne_bytes())
}

/// A bigint time column back as a time.
fn time_column(nanos: i64) -> Time {
    Time::from_unix_nanos(u64::from_ne_bytes(nanos.to_ne_bytes()))
}

/// A `removed_ranges` row (or `remove_events()` result) as a range:
/// `numbers` are first and last version, first and last position.
pub(crate) fn removed_range(
    stream: String,
    numbers: [i64; 4],
    reason: String,
    removed_at: i64,
) -> Result<RemovedRange, StoreError> {
    let bad = |message: String| StoreError::ContractViolation {
        operation: Operation::Other,
        message,
    };
    let [first_version, last_version, first_position, last_position] = numbers.map(to_u64);
    Ok(RemovedRange {
        stream: StreamId::new(stream).map_err(|e| bad(format!("removed range with an invalid stream id: {e}")))?,
        first_version: StreamVersion::new(first_version),
        last_version: StreamVersion::new(last_version),
        first_position: GlobalPosition::new(first_position),
        last_position: GlobalPosition::new(last_position),
        reason: reason
            .parse()
            .map_err(|e: eventcore::UnknownRemovalReason| bad(e.to_string()))?,
        removed_at: time_column(removed_at),
    })
}

impl RetentionStore for PostgresStore {
    async fn apply_retention(
        &self,
        plan: &RetentionPlan,
        now: Time,
        options: RetentionOptions,
    ) -> Result<RetentionReport, StoreError> {
        PostgresStore::apply_retention(self, plan, now, options).await
    }

    async fn removed_ranges(&self, after: GlobalPosition, limit: NonZeroU32) -> Result<Vec<RemovedRange>, StoreError> {
        PostgresStore::removed_ranges(self, after, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_their_column_bit_for_bit() {
        for nanos in [0, 1, i64::MAX as u64, u64::MAX] {
            let time = Time::from_unix_nanos(nanos);
            assert_eq!(time_column(nanos_column(time)), time);
        }
    }

    #[test]
    fn a_removed_range_row_with_an_unknown_reason_is_a_contract_violation() {
        let error = removed_range("s".into(), [1, 2, 3, 4], "lost".into(), 0).expect_err("an unknown reason");
        assert!(error.to_string().contains("lost"), "{error}");
    }
}
