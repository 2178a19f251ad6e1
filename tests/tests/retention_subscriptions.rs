//! A subscription runner behind a range that retention removed moves past
//! it knowingly: it delivers what is left, checkpoints beyond the range,
//! counts it (`RunnerStatus::stats`, the metric
//! `eventcore_subscription_removed_events_total`) and says which range it
//! was (`RunnerStatus::last_skipped`, and a `warn!` log line).

use eventcore::*;
use eventcore_tests::conformance::{day, stream, Append};
use eventcore_tokio::metrics::SUBSCRIPTION_REMOVED_EVENTS;
use eventcore_tokio::{EventStore, MemoryCheckpointStore, MemoryEventStore, RetentionStore, Runner, Subscriber};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Positions(Arc<Mutex<Vec<GlobalPosition>>>);

impl Subscriber for Positions {
    async fn handle(&mut self, batch: &Batch) -> Result<(), HandleError> {
        let mut seen = self.0.lock().expect("not poisoned");
        seen.extend(batch.events.iter().map(|e| e.position));
        Ok(())
    }
}

#[test]
fn a_runner_behind_a_removed_range_skips_it_counts_it_and_says_which() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let store = MemoryEventStore::new();
            let (trimmed, other) = (stream("log-1"), stream("audit-1"));
            for s in [&trimmed, &other, &trimmed] {
                let append = Append::new().to(s, ExpectedVersion::Any, 2).build();
                store.append(&append).await.expect("append");
            }
            let plan = RetentionPlan::new([RetentionPolicy::new("log-").with_max_count(1)]);
            let report = store
                .apply_retention(&plan, day(1), RetentionOptions::default())
                .await
                .expect("retention");
            let [range] = report.ranges.as_slice() else {
                panic!("one range: {report:?}")
            };
            assert_eq!(range.events(), 3);

            let seen = Positions::default();
            let checkpoints = MemoryCheckpointStore::new();
            let mut runner = Runner::subscription("audit", store.clone(), checkpoints.clone(), seen.clone());
            let status = runner.status();
            let summary = runner.run_until_caught_up().await.expect("caught up");

            let left: Vec<GlobalPosition> = store.inspect(|s| s.events().iter().map(|e| e.position).collect());
            assert_eq!(*seen.0.lock().expect("not poisoned"), left, "what is left, in order");
            assert_eq!(summary.stats.removed_ranges_skipped, 1);
            assert_eq!(summary.stats.removed_events_skipped, 3);
            let status = status.borrow().clone();
            assert_eq!(
                status.last_skipped.as_ref(),
                Some(range),
                "the user's code can see which range"
            );
            assert!(
                status.checkpoint >= range.last_position,
                "the checkpoint moved past the range"
            );

            let counted: u64 = snapshotter
                .snapshot()
                .into_vec()
                .into_iter()
                .filter(|(key, ..)| key.key().name() == SUBSCRIPTION_REMOVED_EVENTS)
                .map(|(.., value)| match value {
                    DebugValue::Counter(n) => n,
                    other => panic!("{SUBSCRIPTION_REMOVED_EVENTS} is not a counter: {other:?}"),
                })
                .sum();
            assert_eq!(counted, 3, "the metric counts the skipped events");
        });
    });
}
