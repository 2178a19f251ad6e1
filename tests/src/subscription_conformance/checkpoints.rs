//! The [`CheckpointStore`] contract: where an at-least-once subscription
//! resumes, fenced by its lease token.
//!
//! - [`CheckpointStore::claim`] raises the fence of a subscription to the
//!   claimer's token (refused, changing nothing, when a higher token has
//!   claimed) and returns the checkpoint, [`GlobalPosition::START`] for a
//!   subscription never saved.
//! - [`CheckpointStore::save`] succeeds only with the current fence; any
//!   other token is refused with [`CheckpointError::Fenced`] naming the
//!   subscription, the token and the current fence, and changes nothing.
//! - A save below the stored checkpoint is accepted and ignored:
//!   checkpoints never go back, also when saves race.
//!
//! Every case is a `pub async fn` over a [`CheckpointStoreFactory`];
//! [`crate::checkpoint_store_conformance!`] runs them all.

use super::CheckpointStoreFactory;
use eventcore::GlobalPosition;
use eventcore_tokio::{CheckpointError, CheckpointStore, FencingToken};

fn pos(raw: u64) -> GlobalPosition {
    GlobalPosition::new(raw)
}

fn token(raw: u64) -> FencingToken {
    FencingToken::new(raw)
}

async fn claim<S: CheckpointStore>(store: &S, name: &str, token: FencingToken) -> GlobalPosition {
    store
        .claim(name, token)
        .await
        .unwrap_or_else(|e| panic!("claim of {name} with {token}: {e}"))
}

async fn save<S: CheckpointStore>(store: &S, name: &str, token: FencingToken, position: GlobalPosition) {
    store
        .save(name, token, position)
        .await
        .unwrap_or_else(|e| panic!("save of {name} at {position} with {token}: {e}"));
}

/// Asserts that `result` is [`CheckpointError::Fenced`] with exactly these
/// fields.
#[track_caller]
fn assert_fenced<T: std::fmt::Debug>(
    result: Result<T, CheckpointError>,
    name: &str,
    token: FencingToken,
    current: FencingToken,
) {
    match result {
        Err(CheckpointError::Fenced {
            name: fenced_name,
            token: fenced_token,
            current: fenced_current,
        }) => {
            assert_eq!(
                (fenced_name.as_str(), fenced_token, fenced_current),
                (name, token, current),
                "the fenced error names the subscription, the token refused and the current fence"
            );
        }
        other => panic!("expected {name} fenced ({token} against {current}), got {other:?}"),
    }
}

/// A subscription never claimed or saved claims [`GlobalPosition::START`],
/// with any token, and claiming again (same token) still gives `START`.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::checkpoints::an_unknown_subscription_claims_start(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn an_unknown_subscription_claims_start<F: CheckpointStoreFactory>(factory: F) {
    let store = factory.fresh_checkpoints().await;
    assert_eq!(claim(&store, "audit", token(1)).await, GlobalPosition::START);
    assert_eq!(claim(&store, "audit", token(1)).await, GlobalPosition::START);
    assert_eq!(claim(&store, "other", token(40)).await, GlobalPosition::START);
}

/// A saved checkpoint is what the next claim returns, to a new holder with a
/// higher token as to the same holder claiming again.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::checkpoints::a_saved_checkpoint_is_resumed_by_the_next_claim(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn a_saved_checkpoint_is_resumed_by_the_next_claim<F: CheckpointStoreFactory>(factory: F) {
    let store = factory.fresh_checkpoints().await;
    claim(&store, "audit", token(1)).await;
    save(&store, "audit", token(1), pos(5)).await;
    assert_eq!(claim(&store, "audit", token(1)).await, pos(5), "the same holder again");
    save(&store, "audit", token(1), pos(8)).await;
    assert_eq!(claim(&store, "audit", token(2)).await, pos(8), "a new holder");
    save(&store, "audit", token(2), pos(13)).await;
    assert_eq!(claim(&store, "audit", token(2)).await, pos(13));
}

/// Checkpoints never go back: a save below (or at) the stored position is
/// accepted and changes nothing; a higher one moves it.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::checkpoints::a_lower_save_never_moves_the_checkpoint_back(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn a_lower_save_never_moves_the_checkpoint_back<F: CheckpointStoreFactory>(factory: F) {
    let store = factory.fresh_checkpoints().await;
    let t = token(1);
    claim(&store, "audit", t).await;
    save(&store, "audit", t, pos(10)).await;
    save(&store, "audit", t, pos(3)).await;
    save(&store, "audit", t, GlobalPosition::START).await;
    save(&store, "audit", t, pos(10)).await;
    assert_eq!(claim(&store, "audit", t).await, pos(10));
    save(&store, "audit", t, pos(11)).await;
    assert_eq!(claim(&store, "audit", t).await, pos(11));
}

/// After a takeover (a claim with a higher token), the old holder's save is
/// refused as [`CheckpointError::Fenced`] (naming the subscription, its
/// token and the new fence) and changes nothing, whether it would move the
/// checkpoint forward or not; the new holder saves as usual.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::checkpoints::a_stale_holder_save_is_fenced_and_changes_nothing(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn a_stale_holder_save_is_fenced_and_changes_nothing<F: CheckpointStoreFactory>(factory: F) {
    let store = factory.fresh_checkpoints().await;
    let (old, new) = (token(1), token(2));
    claim(&store, "audit", old).await;
    save(&store, "audit", old, pos(5)).await;
    assert_eq!(claim(&store, "audit", new).await, pos(5));
    assert_fenced(store.save("audit", old, pos(9)).await, "audit", old, new);
    assert_fenced(store.save("audit", old, pos(5)).await, "audit", old, new);
    assert_eq!(
        claim(&store, "audit", new).await,
        pos(5),
        "the stale save changed nothing"
    );
    save(&store, "audit", new, pos(7)).await;
    assert_fenced(store.save("audit", old, pos(100)).await, "audit", old, new);
    assert_eq!(claim(&store, "audit", new).await, pos(7));
}

/// A claim with a token below the fence is refused as
/// [`CheckpointError::Fenced`] and changes nothing: the fence is not
/// lowered (the current holder still saves, the refused one cannot).
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::checkpoints::a_claim_below_the_fence_is_refused_and_changes_nothing(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn a_claim_below_the_fence_is_refused_and_changes_nothing<F: CheckpointStoreFactory>(factory: F) {
    let store = factory.fresh_checkpoints().await;
    let (low, high) = (token(3), token(7));
    claim(&store, "audit", high).await;
    save(&store, "audit", high, pos(4)).await;
    assert_fenced(store.claim("audit", low).await, "audit", low, high);
    assert_fenced(store.save("audit", low, pos(6)).await, "audit", low, high);
    save(&store, "audit", high, pos(6)).await;
    assert_eq!(claim(&store, "audit", high).await, pos(6));
}

/// A save must carry the current fence exactly: a token *above* it, never
/// claimed, is refused too (claim first), and so is a save to a
/// subscription nobody claimed. Neither creates or moves a checkpoint.
///
/// (This uses tokens of 1 and up, as every lease store issues. **With
/// `FencingToken::new(0)` the stores disagree today** (issue 15):
/// `MemoryCheckpointStore` accepts a save with token 0 to a subscription
/// never claimed, its implicit fence being 0; `PgCheckpointStore` refuses
/// it, having no row to save to. The docs do not say which is right.)
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::checkpoints::a_save_without_the_claimed_token_is_refused(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn a_save_without_the_claimed_token_is_refused<F: CheckpointStoreFactory>(factory: F) {
    let store = factory.fresh_checkpoints().await;
    assert_fenced(
        store.save("never-claimed", token(1), pos(5)).await,
        "never-claimed",
        token(1),
        FencingToken::default(),
    );
    assert_eq!(claim(&store, "never-claimed", token(1)).await, GlobalPosition::START);

    claim(&store, "audit", token(2)).await;
    assert_fenced(store.save("audit", token(3), pos(5)).await, "audit", token(3), token(2));
    assert_eq!(claim(&store, "audit", token(2)).await, GlobalPosition::START);
}

/// Subscriptions are independent: each has its own checkpoint and its own
/// fence, also when their names differ only by case, a trailing space or a
/// prefix.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::checkpoints::subscriptions_keep_their_own_checkpoint_and_fence(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn subscriptions_keep_their_own_checkpoint_and_fence<F: CheckpointStoreFactory>(factory: F) {
    let store = factory.fresh_checkpoints().await;
    let names = ["audit", "Audit", "audit ", "audit-2", "审计 ✓"];
    for (i, name) in names.iter().enumerate() {
        let t = token(i as u64 + 1);
        claim(&store, name, t).await;
        save(&store, name, t, pos(10 * (i as u64 + 1))).await;
    }
    // Raising one fence leaves the others where they were.
    assert_eq!(claim(&store, "audit", token(100)).await, pos(10));
    for (i, name) in names.iter().enumerate().skip(1) {
        let t = token(i as u64 + 1);
        save(&store, name, t, pos(10 * (i as u64 + 1) + 1)).await;
        assert_eq!(claim(&store, name, t).await, pos(10 * (i as u64 + 1) + 1), "{name:?}");
    }
    assert_eq!(claim(&store, "audit", token(100)).await, pos(10));
}

/// Concurrent saves by the holder, in any order, leave the highest
/// position.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::checkpoints::concurrent_saves_keep_the_highest(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn concurrent_saves_keep_the_highest<F: CheckpointStoreFactory>(factory: F) {
    let store = factory.fresh_checkpoints().await;
    let t = token(1);
    claim(&store, "contended", t).await;
    let mut tasks = Vec::new();
    for writer in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut positions: Vec<u64> = (0..8).map(|i| i * 8 + writer + 1).collect();
            if writer % 2 == 0 {
                positions.reverse();
            }
            for p in positions {
                save(&store, "contended", t, pos(p)).await;
                tokio::task::yield_now().await;
            }
        }));
    }
    for task in tasks {
        task.await.expect("a writer panicked");
    }
    assert_eq!(claim(&store, "contended", t).await, pos(64));
}

/// Claims racing with different tokens leave the highest token as the
/// fence: every claim either succeeds or is fenced, the highest always
/// succeeds, and afterwards only the highest token saves.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::checkpoints::concurrent_claims_leave_the_highest_fence(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn concurrent_claims_leave_the_highest_fence<F: CheckpointStoreFactory>(factory: F) {
    let store = factory.fresh_checkpoints().await;
    let mut tasks = Vec::new();
    for raw in [5u64, 12, 1, 16, 9, 3, 14, 7, 2, 11, 15, 4, 8, 13, 6, 10] {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            match store.claim("raced", token(raw)).await {
                Ok(position) => (raw, Some(position)),
                Err(CheckpointError::Fenced { current, .. }) => {
                    assert!(current > token(raw), "fenced {raw} by a lower fence {current}");
                    (raw, None)
                }
                Err(other) => panic!("claim with {raw}: {other}"),
            }
        }));
    }
    for task in tasks {
        let (raw, claimed) = task.await.expect("a claimer panicked");
        if raw == 16 {
            assert_eq!(claimed, Some(GlobalPosition::START), "the highest token always claims");
        }
    }
    save(&store, "raced", token(16), pos(3)).await;
    assert_fenced(
        store.save("raced", token(15), pos(4)).await,
        "raced",
        token(15),
        token(16),
    );
    assert_eq!(claim(&store, "raced", token(16)).await, pos(3));
}

/// Positions and tokens up to `i64::MAX` (which every store must hold) are
/// stored exactly.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::checkpoints::extreme_positions_and_tokens_round_trip(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn extreme_positions_and_tokens_round_trip<F: CheckpointStoreFactory>(factory: F) {
    let store = factory.fresh_checkpoints().await;
    let max = i64::MAX as u64;
    claim(&store, "edges", token(max - 1)).await;
    save(&store, "edges", token(max - 1), pos(max - 1)).await;
    assert_eq!(claim(&store, "edges", token(max)).await, pos(max - 1));
    assert_fenced(
        store.save("edges", token(max - 1), pos(max)).await,
        "edges",
        token(max - 1),
        token(max),
    );
    save(&store, "edges", token(max), pos(max)).await;
    assert_eq!(claim(&store, "edges", token(max)).await, pos(max));
}

/// One `#[tokio::test]` per case of the checkpoint-store suite, for the
/// [`CheckpointStoreFactory`] expression given (evaluated in each test).
///
/// ```
/// eventcore_tests::checkpoint_store_conformance!(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores
/// );
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! checkpoint_store_conformance {
    ($factory:expr) => {
        $crate::subscription_store_conformance!(@cases checkpoints; $factory;
            an_unknown_subscription_claims_start,
            a_saved_checkpoint_is_resumed_by_the_next_claim,
            a_lower_save_never_moves_the_checkpoint_back,
            a_stale_holder_save_is_fenced_and_changes_nothing,
            a_claim_below_the_fence_is_refused_and_changes_nothing,
            a_save_without_the_claimed_token_is_refused,
            subscriptions_keep_their_own_checkpoint_and_fence,
            concurrent_saves_keep_the_highest,
            concurrent_claims_leave_the_highest_fence,
            extreme_positions_and_tokens_round_trip,
        );
    };
}
