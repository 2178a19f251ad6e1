//! The snapshot-store conformance suite: the [`SnapshotStore`] contract,
//! checked case by case. Each `pub async fn` is one case;
//! [`crate::snapshot_store_conformance!`] turns every case into its own
//! `#[tokio::test]` for a given [`SnapshotStoreFactory`].
//!
//! The contract: a load returns the newest snapshot saved for its exact
//! (stream, view, view version) key, or `None`; a save replaces a snapshot at
//! a lower or equal stream version and never one at a higher version (also
//! when saves race); `delete_view` drops every snapshot of a view, of every
//! view version and stream, and nothing else, and says how many it dropped.
//! Payloads are compared as JSON values, not text (a JSONB column
//! normalises whitespace and key order).
//!
//! ```
//! struct Memory;
//!
//! impl eventcore_tests::snapshot_conformance::SnapshotStoreFactory for Memory {
//!     type Store = eventcore_tokio::MemorySnapshotStore;
//!     async fn fresh(&self) -> Self::Store {
//!         eventcore_tokio::MemorySnapshotStore::new()
//!     }
//! }
//!
//! // In a test target this expands to one `#[tokio::test]` per case.
//! eventcore_tests::snapshot_store_conformance!(Memory);
//!
//! // Each case is also a plain async function, runnable on its own:
//! # fn main() {
//! tokio::runtime::Runtime::new()
//!     .expect("a runtime")
//!     .block_on(eventcore_tests::snapshot_conformance::a_saved_snapshot_loads_back(Memory));
//! # }
//! ```

use eventcore::{EventId, Snapshot, StreamId, StreamVersion, Time};
use eventcore_postgres::PgSnapshotStore;
use eventcore_tokio::{MemorySnapshotStore, SnapshotStore};
use std::future::Future;

/// Makes empty snapshot stores for the suite. Every call must return a store
/// isolated from every other (its own schema or database), so that cases
/// run in parallel.
///
/// ```
/// use eventcore_tests::snapshot_conformance::SnapshotStoreFactory;
/// struct Memory;
/// impl SnapshotStoreFactory for Memory {
///     type Store = eventcore_tokio::MemorySnapshotStore;
///     async fn fresh(&self) -> Self::Store {
///         eventcore_tokio::MemorySnapshotStore::new()
///     }
/// }
/// ```
pub trait SnapshotStoreFactory: Send + Sync + 'static {
    /// The store under test.
    type Store: SnapshotStore + Clone;

    /// A fresh, empty, isolated store.
    fn fresh(&self) -> impl Future<Output = Self::Store> + Send;
}

/// [`MemorySnapshotStore`]s: the in-memory reference for the suite.
///
/// ```
/// use eventcore_tests::snapshot_conformance::{MemorySnapshotFactory, SnapshotStoreFactory};
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(async {
/// let store = MemorySnapshotFactory.fresh().await;
/// assert!(store.is_empty());
/// # });
/// ```
#[derive(Clone, Copy, Debug)]
pub struct MemorySnapshotFactory;

impl SnapshotStoreFactory for MemorySnapshotFactory {
    type Store = MemorySnapshotStore;

    async fn fresh(&self) -> MemorySnapshotStore {
        MemorySnapshotStore::new()
    }
}

/// [`PgSnapshotStore`]s, each on a freshly created and migrated schema.
///
/// Use it through [`pg_snapshot_factory!`](crate::pg_snapshot_factory),
/// which returns early from the test (skipping it) when no database answers
/// and `CI` is not `true`.
///
/// ```no_run
/// # async fn demo() {
/// use eventcore_tests::snapshot_conformance::{PgSnapshotFactory, SnapshotStoreFactory};
/// if let Some(factory) = PgSnapshotFactory::available().await {
///     let _store = factory.fresh().await;
/// }
/// # }
/// ```
#[derive(Clone, Copy, Debug)]
pub struct PgSnapshotFactory;

impl PgSnapshotFactory {
    /// The factory if the database answers; `None` (after a loud notice)
    /// when it cannot be reached and `CI` is not `true`.
    ///
    /// # Panics
    ///
    /// When the database cannot be reached and `CI=true`.
    pub async fn available() -> Option<PgSnapshotFactory> {
        crate::postgres::PostgresFactory::available().await?;
        Some(PgSnapshotFactory)
    }
}

impl SnapshotStoreFactory for PgSnapshotFactory {
    type Store = PgSnapshotStore;

    async fn fresh(&self) -> PgSnapshotStore {
        match crate::postgres::fresh_store("snapshots").await {
            Some(store) => PgSnapshotStore::new(&store),
            None => panic!("PostgreSQL became unreachable after the probe succeeded"),
        }
    }
}

/// Evaluates to a [`PgSnapshotFactory`], or returns from the enclosing test
/// (after a loud skip notice) when PostgreSQL cannot be reached and `CI` is
/// not `true`: `snapshot_store_conformance!(pg_snapshot_factory!())`.
#[macro_export]
macro_rules! pg_snapshot_factory {
    () => {
        match $crate::snapshot_conformance::PgSnapshotFactory::available().await {
            Some(factory) => factory,
            None => return,
        }
    };
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A stream id the suite knows to be valid.
///
/// ```
/// assert_eq!(eventcore_tests::snapshot_conformance::stream("acc-1").as_str(), "acc-1");
/// ```
pub fn stream(name: &str) -> StreamId {
    StreamId::new(name).expect("the suite only uses valid stream ids")
}

/// A snapshot of `stream` / `view` (view version 1) at `version`, whose
/// payload records the version: `{"at": version, "note": "..."}`.
///
/// ```
/// use eventcore_tests::snapshot_conformance::{snapshot, stream};
/// let snap = snapshot(&stream("acc-1"), "balance", 7);
/// assert_eq!((snap.view_version, snap.stream_version.get()), (1, 7));
/// ```
pub fn snapshot(stream: &StreamId, view: &str, version: u64) -> Snapshot {
    Snapshot {
        stream: stream.clone(),
        view: view.to_owned(),
        view_version: 1,
        stream_version: StreamVersion::new(version),
        last_event_id: EventId::v7(Time::from_unix_nanos(version), [version as u8; 10]),
        payload: serde_json::json!({ "at": version, "note": "snapshot \"quoted\" ü 🦀" }).to_string(),
        // Sub-microsecond digits on purpose: the time must round-trip exactly.
        taken_at: Time::from_unix_nanos(1_700_000_000_123_456_789 + version),
    }
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("stored payload is not JSON ({e}): {text}"))
}

/// Asserts that `loaded` is `expected`, payloads compared as JSON.
///
/// ```
/// use eventcore_tests::snapshot_conformance::{assert_same, snapshot, stream};
/// let snap = snapshot(&stream("acc-1"), "balance", 7);
/// let spaced = eventcore::Snapshot { payload: snap.payload.replace(':', " : "), ..snap.clone() };
/// assert_same(Some(spaced), &snap);
/// ```
#[track_caller]
pub fn assert_same(loaded: Option<Snapshot>, expected: &Snapshot) {
    let Some(loaded) = loaded else {
        panic!("expected {expected:?}, found no snapshot")
    };
    assert_eq!(
        json(&loaded.payload),
        json(&expected.payload),
        "payload of {expected:?}"
    );
    let strip = |s: &Snapshot| Snapshot {
        payload: String::new(),
        ..s.clone()
    };
    assert_eq!(strip(&loaded), strip(expected));
}

async fn load<S: SnapshotStore>(store: &S, stream: &StreamId, view: &str, version: u32) -> Option<Snapshot> {
    store
        .load(stream, view, version)
        .await
        .unwrap_or_else(|e| panic!("load of {stream} {view} v{version}: {e}"))
}

async fn save<S: SnapshotStore>(store: &S, snapshot: &Snapshot) {
    store
        .save(snapshot)
        .await
        .unwrap_or_else(|e| panic!("save of {snapshot:?}: {e}"));
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

/// A save followed by a load gives back the snapshot: stream, view, view
/// version, stream version and time exactly, the payload as JSON.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::snapshot_conformance::a_saved_snapshot_loads_back(eventcore_tests::snapshot_conformance::MemorySnapshotFactory),
/// # );
/// ```
pub async fn a_saved_snapshot_loads_back<F: SnapshotStoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("account-1");
    let mut snap = snapshot(&s, "balance", 100);
    snap.payload = r#"{ "balance" : 5, "owners": ["a", "b"], "limits": {"daily": 1.5, "none": null},
        "big": 18446744073709551615, "text": "line\nbreak \u00e9 \"q\"" }"#
        .to_owned();
    save(&store, &snap).await;
    assert_same(load(&store, &s, "balance", 1).await, &snap);
    // Loading is not consuming.
    assert_same(load(&store, &s, "balance", 1).await, &snap);
}

/// A load of a key nothing was saved under is `None`, also in an empty
/// store and for a view that only exists at another version.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::snapshot_conformance::a_load_of_nothing_is_none(eventcore_tests::snapshot_conformance::MemorySnapshotFactory),
/// # );
/// ```
pub async fn a_load_of_nothing_is_none<F: SnapshotStoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("nobody");
    assert_eq!(load(&store, &s, "balance", 1).await, None);
    save(&store, &snapshot(&s, "balance", 3)).await;
    assert_eq!(load(&store, &s, "balance", 2).await, None);
    assert_eq!(load(&store, &stream("somebody"), "balance", 1).await, None);
    assert_eq!(load(&store, &s, "other", 1).await, None);
}

/// A newer snapshot replaces an older one, and an older save never replaces
/// a newer one.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::snapshot_conformance::the_newest_snapshot_wins(eventcore_tests::snapshot_conformance::MemorySnapshotFactory),
/// # );
/// ```
pub async fn the_newest_snapshot_wins<F: SnapshotStoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("account-1");
    save(&store, &snapshot(&s, "balance", 10)).await;
    let newest = snapshot(&s, "balance", 20);
    save(&store, &newest).await;
    assert_same(load(&store, &s, "balance", 1).await, &newest);
    save(&store, &snapshot(&s, "balance", 15)).await;
    save(&store, &snapshot(&s, "balance", 0)).await;
    assert_same(load(&store, &s, "balance", 1).await, &newest);
    let newer = snapshot(&s, "balance", 21);
    save(&store, &newer).await;
    assert_same(load(&store, &s, "balance", 1).await, &newer);
}

/// `discard` drops the held snapshot only if it is still the one given
/// (same stream version and last event id): a snapshot that proved not to
/// match its stream goes, a newer one saved meanwhile stays.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::snapshot_conformance::discard_drops_only_the_snapshot_given(eventcore_tests::snapshot_conformance::MemorySnapshotFactory),
/// # );
/// ```
pub async fn discard_drops_only_the_snapshot_given<F: SnapshotStoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("account-1");
    let lie = snapshot(&s, "balance", 1_000);
    save(&store, &lie).await;
    let other_history = Snapshot {
        last_event_id: EventId::v7(Time::ZERO, [0xEE; 10]),
        ..lie.clone()
    };
    assert!(
        !store.discard(&other_history).await.expect("discard"),
        "another event id: kept"
    );
    assert_same(load(&store, &s, "balance", 1).await, &lie);
    assert!(store.discard(&lie).await.expect("discard"), "the one held: dropped");
    assert!(load(&store, &s, "balance", 1).await.is_none());
    assert!(!store.discard(&lie).await.expect("discard"), "nothing left to drop");
    let truth = snapshot(&s, "balance", 10);
    save(&store, &truth).await;
    assert_same(load(&store, &s, "balance", 1).await, &truth);
    assert!(
        !store.discard(&lie).await.expect("discard"),
        "a newer snapshot of the key stays"
    );
    assert_same(load(&store, &s, "balance", 1).await, &truth);
}

/// A save at the held stream version replaces the held snapshot (the
/// contract keeps a save unless a *higher* version is held).
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::snapshot_conformance::a_save_at_the_same_version_replaces(eventcore_tests::snapshot_conformance::MemorySnapshotFactory),
/// # );
/// ```
pub async fn a_save_at_the_same_version_replaces<F: SnapshotStoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("account-1");
    save(&store, &snapshot(&s, "balance", 10)).await;
    let again = Snapshot {
        payload: r#"{"at": 10, "rewritten": true}"#.to_owned(),
        taken_at: Time::from_unix_nanos(1_800_000_000_000_000_001),
        ..snapshot(&s, "balance", 10)
    };
    save(&store, &again).await;
    assert_same(load(&store, &s, "balance", 1).await, &again);
}

/// Keys isolate: another stream, another view and another view version are
/// other snapshots, each with its own newest.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::snapshot_conformance::keys_isolate_stream_view_and_view_version(eventcore_tests::snapshot_conformance::MemorySnapshotFactory),
/// # );
/// ```
pub async fn keys_isolate_stream_view_and_view_version<F: SnapshotStoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b) = (stream("acc-1"), stream("acc-10"));
    let base = snapshot(&a, "balance", 5);
    let other_stream = snapshot(&b, "balance", 7);
    let other_view = snapshot(&a, "balances", 9);
    let other_version = Snapshot {
        view_version: 2,
        ..snapshot(&a, "balance", 3)
    };
    for snap in [&base, &other_stream, &other_view, &other_version] {
        save(&store, snap).await;
    }
    assert_same(load(&store, &a, "balance", 1).await, &base);
    assert_same(load(&store, &b, "balance", 1).await, &other_stream);
    assert_same(load(&store, &a, "balances", 1).await, &other_view);
    assert_same(load(&store, &a, "balance", 2).await, &other_version);
    assert_eq!(load(&store, &b, "balance", 2).await, None);
    assert_eq!(load(&store, &b, "balances", 1).await, None);
    // A lower version under another key is not "older": each key keeps its own.
    assert_eq!(
        load(&store, &a, "balance", 2).await.map(|s| s.stream_version),
        Some(StreamVersion::new(3))
    );
}

/// `delete_view` drops every snapshot of the view, of every view version
/// and stream, returns how many, and leaves other views alone (including
/// one whose name starts the same).
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::snapshot_conformance::delete_view_drops_every_version_of_that_view_only(eventcore_tests::snapshot_conformance::MemorySnapshotFactory),
/// # );
/// ```
pub async fn delete_view_drops_every_version_of_that_view_only<F: SnapshotStoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b) = (stream("acc-1"), stream("acc-2"));
    let doomed = [
        snapshot(&a, "balance", 5),
        snapshot(&b, "balance", 6),
        Snapshot {
            view_version: 2,
            ..snapshot(&a, "balance", 7)
        },
    ];
    for snap in &doomed {
        save(&store, snap).await;
    }
    let kept = [snapshot(&a, "balances", 8), snapshot(&b, "Balance", 9)];
    for snap in &kept {
        save(&store, snap).await;
    }
    let dropped = store.delete_view("balance").await.expect("delete_view");
    assert_eq!(dropped, 3);
    for snap in &doomed {
        assert_eq!(load(&store, &snap.stream, &snap.view, snap.view_version).await, None);
    }
    for snap in &kept {
        assert_same(load(&store, &snap.stream, &snap.view, snap.view_version).await, snap);
    }
    assert_eq!(store.delete_view("balance").await.expect("delete_view again"), 0);
    assert_eq!(
        store.delete_view("never-saved").await.expect("delete_view of nothing"),
        0
    );
    // The view can be saved again afterwards, from any version.
    let fresh = snapshot(&a, "balance", 1);
    save(&store, &fresh).await;
    assert_same(load(&store, &a, "balance", 1).await, &fresh);
}

/// Concurrent saves of one key, in any order, leave the highest version.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::snapshot_conformance::concurrent_saves_of_one_key_leave_the_highest(eventcore_tests::snapshot_conformance::MemorySnapshotFactory),
/// # );
/// ```
pub async fn concurrent_saves_of_one_key_leave_the_highest<F: SnapshotStoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("contended");
    let mut tasks = Vec::new();
    for writer in 0..8u64 {
        let store = store.clone();
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            // Each writer saves its own interleaved run of versions, highest
            // last for some writers and first for others.
            let mut versions: Vec<u64> = (0..8).map(|i| i * 8 + writer + 1).collect();
            if writer % 2 == 0 {
                versions.reverse();
            }
            for version in versions {
                store
                    .save(&snapshot(&s, "balance", version))
                    .await
                    .unwrap_or_else(|e| panic!("save {version}: {e}"));
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("a writer panicked");
    }
    assert_same(load(&store, &s, "balance", 1).await, &snapshot(&s, "balance", 64));
}

/// Stream ids and view names beyond ASCII, ids of the maximum length, and
/// ids differing only in their last byte or by case are distinct keys that
/// round-trip exactly.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::snapshot_conformance::unicode_and_long_keys_round_trip(eventcore_tests::snapshot_conformance::MemorySnapshotFactory),
/// # );
/// ```
pub async fn unicode_and_long_keys_round_trip<F: SnapshotStoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let long_a = "a".repeat(254) + "1";
    let long_b = "a".repeat(254) + "2";
    let crabs = "🦀".repeat(63); // 252 bytes
    let names = [
        "账户-1",
        "konto-ü",
        "Konto-Ü",
        "emoji-🦀-stream",
        "with space inside",
        "quote'\"back\\slash",
        long_a.as_str(),
        long_b.as_str(),
        crabs.as_str(),
    ];
    for (i, name) in names.iter().enumerate() {
        let s = stream(name);
        save(&store, &snapshot(&s, "视图-ü", i as u64 + 1)).await;
    }
    for (i, name) in names.iter().enumerate() {
        let s = stream(name);
        assert_same(
            load(&store, &s, "视图-ü", 1).await,
            &snapshot(&s, "视图-ü", i as u64 + 1),
        );
        assert_eq!(load(&store, &s, "视图-u", 1).await, None);
    }
}

/// View versions and stream versions at the edges of their ranges (view
/// version 0 and `u32::MAX`, stream version 0 and `i64::MAX`, which every
/// store must hold) and a zero time round-trip exactly.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::snapshot_conformance::extreme_versions_round_trip(eventcore_tests::snapshot_conformance::MemorySnapshotFactory),
/// # );
/// ```
pub async fn extreme_versions_round_trip<F: SnapshotStoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("edges");
    let cases = [
        Snapshot {
            view_version: 0,
            stream_version: StreamVersion::new(0),
            taken_at: Time::ZERO,
            ..snapshot(&s, "edges", 0)
        },
        Snapshot {
            view_version: u32::MAX,
            stream_version: StreamVersion::new(i64::MAX as u64),
            ..snapshot(&s, "edges", 1)
        },
    ];
    for snap in &cases {
        save(&store, snap).await;
    }
    for snap in &cases {
        assert_same(load(&store, &s, "edges", snap.view_version).await, snap);
    }
}

/// One `#[tokio::test]` per case of the snapshot-store conformance suite,
/// for the [`SnapshotStoreFactory`] expression given (evaluated in each
/// test, so it may `.await` or `return`, as
/// [`pg_snapshot_factory!`](crate::pg_snapshot_factory) does).
///
/// ```
/// struct Memory;
/// impl eventcore_tests::snapshot_conformance::SnapshotStoreFactory for Memory {
///     type Store = eventcore_tokio::MemorySnapshotStore;
///     async fn fresh(&self) -> Self::Store {
///         eventcore_tokio::MemorySnapshotStore::new()
///     }
/// }
/// eventcore_tests::snapshot_store_conformance!(Memory);
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! snapshot_store_conformance {
    ($factory:expr) => {
        $crate::snapshot_store_conformance!(@cases $factory;
            a_saved_snapshot_loads_back,
            a_load_of_nothing_is_none,
            the_newest_snapshot_wins,
            a_save_at_the_same_version_replaces,
            discard_drops_only_the_snapshot_given,
            keys_isolate_stream_view_and_view_version,
            delete_view_drops_every_version_of_that_view_only,
            concurrent_saves_of_one_key_leave_the_highest,
            unicode_and_long_keys_round_trip,
            extreme_versions_round_trip,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                $crate::snapshot_conformance::$case($factory).await;
            }
        )*
    };
}
