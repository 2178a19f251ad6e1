//! The store conformance suite: the store contract of DESIGN.md, checked
//! case by case. Each `pub async fn` is one case; [`crate::conformance_suite!`]
//! turns every case into its own `#[tokio::test]` for a given factory.

use crate::StoreFactory;
use eventcore::*;
use eventcore_tokio::EventStore;
use std::sync::Arc;

/// Builds an append of `count` events to one stream (test helper).
pub fn append_to(stream: &StreamId, expected: ExpectedVersion, count: usize, seed: u8) -> AppendRequest {
    let metadata = Arc::new(EventMetadata::new(
        CommandId::v7(Time::from_unix_millis(1), [seed; 10]),
        Time::from_unix_millis(1),
    ));
    AppendRequest {
        id: RequestId::new(u64::from(seed)),
        metadata,
        streams: vec![StreamAppend {
            stream: stream.clone(),
            expected,
            events: (0..count)
                .map(|i| NewEvent {
                    event_id: EventId::v7(Time::from_unix_millis(1), [seed, i as u8, 0, 0, 0, 0, 0, 0, 0, 1]),
                    event_type: EventType::new("Tested").expect("valid type"),
                    schema_version: 1,
                    payload: Payload::from_value(&serde_json::json!({ "i": i })).expect("serializes"),
                })
                .collect(),
        }],
    }
}

/// Versions start at 1 and stay contiguous across appends.
pub async fn versions_start_at_one_and_are_contiguous<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = StreamId::new("contiguous").expect("valid");
    let first = store
        .append(&append_to(&s, ExpectedVersion::NoStream, 2, 1))
        .await
        .expect("first append");
    assert_eq!(first.streams[0].first_version, StreamVersion::new(1));
    assert_eq!(first.streams[0].last_version, StreamVersion::new(2));
    let second = store
        .append(&append_to(&s, ExpectedVersion::Exact(StreamVersion::new(2)), 3, 2))
        .await
        .expect("second append");
    assert_eq!(second.streams[0].first_version, StreamVersion::new(3));
    let read = store
        .read(&ReadRequest::new(RequestId::new(9), [s.clone()]))
        .await
        .expect("read");
    let versions: Vec<u64> = read.streams[0].events.iter().map(|e| e.version.get()).collect();
    assert_eq!(versions, vec![1, 2, 3, 4, 5]);
    assert_eq!(read.streams[0].head, StreamVersion::new(5));
}

/// Expands to one `#[tokio::test]` per conformance case for `$factory`.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@cases $factory;
            versions_start_at_one_and_are_contiguous,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::conformance::$case($factory).await;
            }
        )*
    };
}
