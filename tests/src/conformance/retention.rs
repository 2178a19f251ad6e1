//! Group 10 of the suite, retention: a maintenance job physically removes
//! a prefix of the streams a [`RetentionPlan`] governs (events past a
//! maximum age or count, tombstoned streams whole), and every reader is told
//! what is gone: stream reads by `removed_through`, `read_all` by the
//! removed ranges, a command folds what is left and a subscriber skips the
//! ranges knowingly. Positions and versions never change.
//!
//! These cases need a [`RetentionStore`] as well as an event store, so they
//! have their own macro, [`crate::retention_suite!`].

use super::*;
use eventcore_tokio::{Executor, RetentionStore};
use serde::{Deserialize, Serialize};
use std::time::Duration;

const DAY: Duration = Duration::from_secs(86_400);

/// Midnight of day `n` (Unix time).
pub fn day(n: u64) -> Time {
    Time::from_unix_millis(n * 86_400_000)
}

/// Appends `count` `Tested` events to `stream` decided at `at`.
async fn append_at<S: EventStore>(store: &S, stream: &StreamId, count: usize, at: Time) {
    let append = Append::new()
        .with_metadata(EventMetadata::new(fresh_command_id(), at))
        .to(stream, ExpectedVersion::Any, count)
        .build();
    commit(store, &append).await;
}

/// Runs `plan` at `now`, which must succeed.
async fn retain<S: RetentionStore>(store: &S, plan: &RetentionPlan, now: Time) -> RetentionReport {
    store
        .apply_retention(plan, now, RetentionOptions::default())
        .await
        .expect("a retention run succeeds")
}

/// One stream's read, whole.
async fn slice<S: EventStore>(store: &S, stream: &StreamId) -> StreamSlice {
    read(store, std::slice::from_ref(stream)).await.remove(0)
}

/// `(removed_through, head, versions still there)` of a stream.
async fn shape<S: EventStore>(store: &S, stream: &StreamId) -> (u64, u64, Vec<u64>) {
    let slice = slice(store, stream).await;
    (slice.removed_through.get(), slice.head.get(), versions(&slice))
}

/// Max age removes the events older than the age, a prefix of each stream,
/// and nothing else; positions and versions of what stays do not change.
pub async fn max_age_removes_only_events_older_than_the_age<F>(factory: F)
where
    F: StoreFactory,
    F::Store: RetentionStore,
{
    let store = factory.fresh().await;
    let (old, young, other) = (stream("age-old"), stream("age-young"), stream("keep-old"));
    append_at(&store, &old, 3, day(1)).await;
    append_at(&store, &old, 2, day(20)).await;
    append_at(&store, &young, 2, day(20)).await;
    append_at(&store, &other, 2, day(1)).await;
    let before = slice(&store, &old).await;

    let plan = RetentionPlan::new([RetentionPolicy::new("age-").with_max_age(DAY * 10)]);
    let report = retain(&store, &plan, day(25)).await;

    assert_eq!(report.events_removed(), 3, "{report:?}");
    let range = &report.ranges[0];
    assert_eq!((&range.stream, range.reason), (&old, RemovalReason::MaxAge));
    assert_eq!((range.first_version.get(), range.last_version.get()), (1, 3));
    assert_eq!(range.first_position, before.events[0].position);
    assert_eq!(range.last_position, before.events[2].position);
    assert_eq!(range.removed_at, day(25));

    assert_eq!(shape(&store, &old).await, (3, 5, vec![4, 5]));
    assert_eq!(
        slice(&store, &old).await.events,
        before.events[3..],
        "what stays is unchanged, positions included"
    );
    assert_eq!(shape(&store, &young).await, (0, 2, vec![1, 2]), "young events stay");
    assert_eq!(
        shape(&store, &other).await,
        (0, 2, vec![1, 2]),
        "other categories are untouched"
    );
}

/// Max count keeps the newest N events of each stream; a narrower category
/// in the same plan governs its own streams.
pub async fn max_count_keeps_the_newest_events_of_each_stream<F>(factory: F)
where
    F: StoreFactory,
    F::Store: RetentionStore,
{
    let store = factory.fresh().await;
    let (long, short, narrow) = (stream("cnt-long"), stream("cnt-short"), stream("cnt-keep-1"));
    for s in [&long, &short, &narrow] {
        append_at(&store, s, if s == &short { 2 } else { 5 }, day(1)).await;
    }
    let plan = RetentionPlan::new([
        RetentionPolicy::new("cnt-").with_max_count(3),
        RetentionPolicy::new("cnt-keep-"),
    ]);
    let report = retain(&store, &plan, day(2)).await;

    assert_eq!(report.ranges.len(), 1, "{report:?}");
    assert_eq!(report.ranges[0].reason, RemovalReason::MaxCount);
    assert_eq!(shape(&store, &long).await, (2, 5, vec![3, 4, 5]));
    assert_eq!(
        shape(&store, &short).await,
        (0, 2, vec![1, 2]),
        "under the count: untouched"
    );
    assert_eq!(
        shape(&store, &narrow).await,
        (0, 5, vec![1, 2, 3, 4, 5]),
        "the longest category governs"
    );

    append_at(&store, &long, 2, day(2)).await;
    assert_eq!(
        shape(&store, &long).await,
        (2, 7, vec![3, 4, 5, 6, 7]),
        "appends continue the versions"
    );
    retain(&store, &plan, day(2)).await;
    assert_eq!(shape(&store, &long).await, (4, 7, vec![5, 6, 7]));
}

/// A tombstoned stream is removed whole once its grace has passed, and
/// stays tombstoned: appends are still refused, reads say both.
pub async fn a_tombstoned_stream_is_removed_whole_and_still_refuses_appends<F>(factory: F)
where
    F: StoreFactory,
    F::Store: RetentionStore,
{
    let store = factory.fresh().await;
    let (ended, open) = (stream("tmb-ended"), stream("tmb-open"));
    append_at(&store, &ended, 2, day(1)).await;
    let ending = Append::new()
        .with_metadata(EventMetadata::new(fresh_command_id(), day(2)))
        .ending(&ended, ExpectedVersion::Exact(StreamVersion::new(2)), 1)
        .build();
    commit(&store, &ending).await;
    append_at(&store, &open, 2, day(1)).await;

    let plan = RetentionPlan::new([RetentionPolicy::new("tmb-").removing_tombstoned(DAY * 7)]);
    assert!(
        retain(&store, &plan, day(8)).await.ranges.is_empty(),
        "within the grace nothing goes"
    );
    let report = retain(&store, &plan, day(9)).await;
    assert_eq!(report.ranges.len(), 1, "{report:?}");
    assert_eq!(report.ranges[0].reason, RemovalReason::Tombstoned);
    assert_eq!(report.events_removed(), 3);

    let read = slice(&store, &ended).await;
    assert_eq!((read.removed_through.get(), read.head.get()), (3, 3));
    assert!(read.events.is_empty());
    assert_eq!(read.deleted_at, Some(StreamVersion::new(3)), "still deleted");
    let later = Append::new().to(&ended, ExpectedVersion::Any, 1).build();
    super::assert_stream_deleted(store.append(&later).await, &ended, 3);
    assert_eq!(shape(&store, &open).await, (0, 2, vec![1, 2]), "open streams stay");
}

/// A read after a version below `removed_through` answers from the first
/// event kept; paging continues from there.
pub async fn reads_start_after_the_removed_versions<F>(factory: F)
where
    F: StoreFactory,
    F::Store: RetentionStore,
{
    let store = factory.fresh().await;
    let s = stream("rd-paged");
    append_at(&store, &s, 6, day(1)).await;
    retain(
        &store,
        &RetentionPlan::new([RetentionPolicy::new("rd-").with_max_count(2)]),
        day(1),
    )
    .await;
    for after in [0, 2, 4] {
        let request = ReadRequest {
            streams: vec![StreamRead {
                stream: s.clone(),
                after: StreamVersion::new(after),
            }],
            page_size: NonZeroU32::new(1),
        };
        let answer = store.read(&request).await.expect("read").streams.remove(0);
        assert_eq!(answer.removed_through.get(), 4);
        assert_eq!(versions(&answer), vec![5], "after {after}: the first kept event");
    }
    let after_five = store
        .read(&ReadRequest {
            streams: vec![StreamRead {
                stream: s.clone(),
                after: StreamVersion::new(5),
            }],
            page_size: None,
        })
        .await
        .expect("read")
        .streams
        .remove(0);
    assert_eq!(versions(&after_five), vec![6]);
}

#[derive(Debug, Serialize, Deserialize)]
enum Trimmed {
    Tested { i: u64 },
}

impl Event for Trimmed {}

#[derive(Debug, thiserror::Error)]
#[error("folded {0:?}")]
struct FoldedWrong(Vec<u64>);

/// Folds a stream and appends how many events it saw; refuses unless it
/// folded exactly `expect` (the `i` of each event).
struct CountKept {
    stream: StreamId,
    expect: Vec<u64>,
}

impl Command for CountKept {
    type Event = Trimmed;
    type State = Vec<u64>;
    type Error = FoldedWrong;

    fn streams(&self) -> Vec<StreamId> {
        vec![self.stream.clone()]
    }

    fn apply(&self, seen: &mut Vec<u64>, _: &StreamId, event: &Trimmed) {
        let Trimmed::Tested { i } = event;
        seen.push(*i);
    }

    fn decide(&self, seen: &Vec<u64>, out: &mut Decision<Trimmed>) -> Result<(), FoldedWrong> {
        if *seen != self.expect {
            return Err(FoldedWrong(seen.clone()));
        }
        out.emit(&self.stream, Trimmed::Tested { i: seen.len() as u64 });
        Ok(())
    }
}

/// A command reading a stream whose first events were removed folds the
/// rest and appends after the head.
pub async fn a_command_folds_what_retention_left<F>(factory: F)
where
    F: StoreFactory,
    F::Store: RetentionStore,
{
    let store = factory.fresh().await;
    let s = stream("cmd-trimmed");
    append_at(&store, &s, 5, day(1)).await;
    let plan = RetentionPlan::new([RetentionPolicy::new("cmd-").with_max_count(2)]);
    retain(&store, &plan, day(1)).await;

    let executor = Executor::new(store.clone());
    let done = executor
        .execute(CountKept {
            stream: s.clone(),
            expect: vec![3, 4],
        })
        .await
        .expect("the command folds versions 4 and 5 only");
    let receipt = done.appended.expect("it appended");
    assert_eq!(receipt.streams[0].first_version, StreamVersion::new(6));
    assert_eq!(shape(&store, &s).await, (3, 6, vec![4, 5, 6]));
}

/// `read_all` reports each removed range once, in the page where it ends,
/// to readers whose filter can see its stream; a subscriber moves past it,
/// counts it and checkpoints beyond it.
pub async fn read_all_reports_removed_ranges_and_a_subscriber_skips_them<F>(factory: F)
where
    F: StoreFactory,
    F::Store: RetentionStore,
{
    let store = factory.fresh().await;
    let (gone, kept) = (stream("ra-gone"), stream("rb-kept"));
    append_at(&store, &gone, 3, day(1)).await;
    append_at(&store, &kept, 2, day(1)).await;
    append_at(&store, &gone, 1, day(30)).await;
    let plan = RetentionPlan::new([RetentionPolicy::new("ra-").with_max_age(DAY * 10)]);
    let report = retain(&store, &plan, day(31)).await;
    let [range] = report.ranges.as_slice() else {
        panic!("one range: {report:?}")
    };

    let all = store
        .read_all(&read_all_request(GlobalPosition::START, 100, EventFilter::all()))
        .await
        .expect("read_all");
    assert_eq!(all.removed, vec![range.clone()], "a reader from the start is told");
    assert_eq!(all.events.len(), 3, "the kept stream's two events and the young one");
    assert!(all.events.iter().all(|e| e.stream_id != gone || e.version.get() == 4));

    let past = store
        .read_all(&read_all_request(range.last_position, 100, EventFilter::all()))
        .await
        .expect("read_all");
    assert!(past.removed.is_empty(), "a reader past the range is not told again");

    let other = store
        .read_all(&read_all_request(
            GlobalPosition::START,
            100,
            EventFilter::all().with_stream_prefix("rb-"),
        ))
        .await
        .expect("read_all");
    assert!(other.removed.is_empty(), "the filter's streams only");

    let mut paged_ranges = Vec::new();
    let mut after = GlobalPosition::START;
    loop {
        let page = store
            .read_all(&read_all_request(after, 1, EventFilter::all()))
            .await
            .expect("read_all");
        for r in &page.removed {
            assert!(r.last_position > after && r.last_position <= page.complete_through);
        }
        paged_ranges.extend(page.removed);
        if page.complete_through == after {
            break;
        }
        after = page.complete_through;
    }
    assert_eq!(paged_ranges, vec![range.clone()], "page by page: told exactly once");

    // A subscriber from the start, driven by hand.
    let now = day(31);
    let mut sub = SubscriptionMachine::new(
        GlobalPosition::START,
        EventFilter::all(),
        SubscriptionPolicy::default(),
        now,
        1,
    );
    let mut delivered = Vec::new();
    for _ in 0..100 {
        match sub.poll() {
            SubscriptionStep::Fetch { id, request, .. } => {
                let answer = store.read_all(&request).await;
                sub.on_fetched(id, answer, now);
            }
            SubscriptionStep::Deliver(batch) => {
                delivered.extend(batch.events.iter().map(|e| e.position));
                sub.on_handled(batch.id, Ok(()), now);
            }
            SubscriptionStep::SaveCheckpoint { id, .. } => sub.on_checkpoint_saved(id, Ok(()), now),
            SubscriptionStep::Wait { .. } if sub.is_caught_up() => break,
            SubscriptionStep::Wait { until } => sub.on_wake(until),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(sub.is_caught_up());
    assert_eq!(delivered, all.events.iter().map(|e| e.position).collect::<Vec<_>>());
    assert_eq!(
        sub.take_skipped(),
        vec![range.clone()],
        "it says which range it skipped"
    );
    assert_eq!(
        (sub.stats().removed_ranges_skipped, sub.stats().removed_events_skipped),
        (1, 3)
    );
    assert!(
        sub.checkpoint() >= range.last_position,
        "the checkpoint moved past the range"
    );
}

/// A second run at the same time removes nothing new; a dry run removes
/// nothing and reports what a real run would.
pub async fn retention_is_idempotent_and_a_dry_run_removes_nothing<F>(factory: F)
where
    F: StoreFactory,
    F::Store: RetentionStore,
{
    let store = factory.fresh().await;
    let s = stream("idem-1");
    append_at(&store, &s, 4, day(1)).await;
    let plan = RetentionPlan::new([RetentionPolicy::new("idem-").with_max_count(1)]);

    let dry = store
        .apply_retention(&plan, day(2), RetentionOptions::default().dry_run())
        .await
        .expect("a dry run succeeds");
    assert!(dry.dry_run);
    assert_eq!(dry.events_removed(), 3);
    assert_eq!(
        shape(&store, &s).await,
        (0, 4, vec![1, 2, 3, 4]),
        "a dry run removes nothing"
    );
    assert!(global_log(&store).await.len() == 4);

    let first = retain(&store, &plan, day(2)).await;
    assert_eq!(
        first
            .ranges
            .iter()
            .map(|r| (r.first_version, r.last_version))
            .collect::<Vec<_>>(),
        dry.ranges
            .iter()
            .map(|r| (r.first_version, r.last_version))
            .collect::<Vec<_>>(),
        "the dry run said what the run removed"
    );
    let log = global_log(&store).await;
    let second = retain(&store, &plan, day(2)).await;
    assert!(second.ranges.is_empty(), "nothing new: {second:?}");
    assert_eq!(global_log(&store).await, log);
    assert_eq!(shape(&store, &s).await, (3, 4, vec![4]));
    let ranges = store
        .removed_ranges(GlobalPosition::START, NonZeroU32::new(10).expect("non-zero"))
        .await
        .expect("removed ranges");
    assert_eq!(ranges, first.ranges, "the store remembers what it removed, once");
}

/// Expands to one `#[tokio::test]` per retention case for `$factory`,
/// whose stores are [`RetentionStore`]s.
#[macro_export]
macro_rules! retention_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@cases $factory;
            max_age_removes_only_events_older_than_the_age,
            max_count_keeps_the_newest_events_of_each_stream,
            a_tombstoned_stream_is_removed_whole_and_still_refuses_appends,
            reads_start_after_the_removed_versions,
            a_command_folds_what_retention_left,
            read_all_reports_removed_ranges_and_a_subscriber_skips_them,
            retention_is_idempotent_and_a_dry_run_removes_nothing,
        );
    };
}
