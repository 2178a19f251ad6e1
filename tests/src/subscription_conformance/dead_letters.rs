//! The [`DeadLetterStore`] contract: poison events parked per subscription,
//! to be listed, fixed and replayed later.
//!
//! - [`DeadLetterStore::park`] keeps a letter under (subscription, event
//!   position); parking a position already parked keeps one letter (the
//!   first: a re-park after a crash carries nothing new).
//! - [`DeadLetterStore::list`] gives back every letter of one subscription,
//!   in position order, each exactly as parked (event, metadata, poison
//!   cause, parking time; the payload compared as JSON). The trait has no
//!   paging: a list is whole, however long.
//! - [`DeadLetterStore::remove`] takes out one letter and says whether it
//!   was there. Replaying is the runner's business (`Runner::replay_parked`
//!   lists, re-handles and removes); a letter that fails again is parked
//!   again.
//! - [`DeadLetterStore::request_replay`] marks the chosen letters of one
//!   subscription (all, or given positions; positions with no letter are
//!   left out of the answer) with the time of the request, kept on a second
//!   request; [`DeadLetterStore::replay_requested`] lists exactly the marked
//!   letters, and `list` shows the mark. [`DeadLetterStore::replay_failed`]
//!   clears the mark and replaces the cause, leaving the letter parked.
//!
//! Every case is a `pub async fn` over a [`DeadLetterStoreFactory`];
//! [`crate::dead_letter_store_conformance!`] runs them all.

use super::{assert_same_letter, assert_same_letters, letter, DeadLetterStoreFactory};
use eventcore::{DecodeErrorKind, GlobalPosition, Payload, PoisonCause, StreamVersion, Time};
use eventcore_tokio::{DeadLetter, DeadLetterStore, ReplaySelection};

async fn park<S: DeadLetterStore>(store: &S, letter: &DeadLetter) {
    store
        .park(letter.clone())
        .await
        .unwrap_or_else(|e| panic!("park of {} at {}: {e}", letter.subscription, letter.event.position));
}

async fn list<S: DeadLetterStore>(store: &S, subscription: &str) -> Vec<DeadLetter> {
    store
        .list(subscription)
        .await
        .unwrap_or_else(|e| panic!("list of {subscription}: {e}"))
}

async fn request<S: DeadLetterStore>(store: &S, subscription: &str, which: ReplaySelection, at: Time) -> Vec<u64> {
    store
        .request_replay(subscription, &which, at)
        .await
        .unwrap_or_else(|e| panic!("replay request for {subscription}: {e}"))
        .into_iter()
        .map(GlobalPosition::get)
        .collect()
}

async fn requested<S: DeadLetterStore>(store: &S, subscription: &str) -> Vec<DeadLetter> {
    store
        .replay_requested(subscription)
        .await
        .unwrap_or_else(|e| panic!("requested letters of {subscription}: {e}"))
}

fn positions(letters: &[DeadLetter]) -> Vec<u64> {
    letters.iter().map(|l| l.event.position.get()).collect()
}

async fn remove<S: DeadLetterStore>(store: &S, subscription: &str, position: u64) -> bool {
    store
        .remove(subscription, GlobalPosition::new(position))
        .await
        .unwrap_or_else(|e| panic!("remove of {subscription} at {position}: {e}"))
}

/// A subscription nothing was parked for lists no letters, in an empty
/// store and next to one that has letters.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::dead_letters::an_unknown_subscription_has_no_letters(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn an_unknown_subscription_has_no_letters<F: DeadLetterStoreFactory>(factory: F) {
    let store = factory.fresh_dead_letters().await;
    assert!(list(&store, "balances").await.is_empty());
    park(&store, &letter("balances", 3)).await;
    assert!(list(&store, "audit").await.is_empty());
    assert!(list(&store, "balance").await.is_empty());
}

/// A parked letter lists back exactly: the event (id, stream, version,
/// position, type, schema version, payload as JSON, every metadata field
/// including user keys beyond ASCII and a sub-microsecond timestamp), the
/// poison description and the parking time. Listing is not consuming.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::dead_letters::a_parked_letter_lists_back_exactly(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn a_parked_letter_lists_back_exactly<F: DeadLetterStoreFactory>(factory: F) {
    let store = factory.fresh_dead_letters().await;
    let mut parked = letter("balances", 42);
    parked.event.payload = Payload::from_trusted_json(
        r#"{ "amount" : -5, "owners": ["a", "b"], "limits": {"daily": 1.5, "none": null},
            "big": 18446744073709551615, "text": "line\nbreak \u00e9 \"q\" 🦀" }"#,
    );
    parked.event.version = StreamVersion::new(7);
    parked.event.schema_version = 3;
    parked.poison.version = parked.event.version;
    parked.poison.cause = PoisonCause::Handler("negative deposit: \"-5\" ü\nsecond line".to_owned());
    parked.parked_at = Time::from_unix_nanos(1_800_000_000_987_654_321);
    park(&store, &parked).await;
    let listed = list(&store, "balances").await;
    assert_same_letters(&listed, std::slice::from_ref(&parked));
    assert_same_letters(&list(&store, "balances").await, std::slice::from_ref(&parked));
}

/// Every kind of poison cause round-trips: a handler message (also an empty
/// one), an unknown event type, a payload that does not deserialize, and an
/// unsupported schema version with both versions.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::dead_letters::every_poison_cause_round_trips(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn every_poison_cause_round_trips<F: DeadLetterStoreFactory>(factory: F) {
    let store = factory.fresh_dead_letters().await;
    let causes = [
        PoisonCause::Handler("rejected ✗".to_owned()),
        PoisonCause::Handler(String::new()),
        PoisonCause::Decode(DecodeErrorKind::UnknownEventType),
        PoisonCause::Decode(DecodeErrorKind::InvalidPayload(
            "invalid type: string \"lots\", expected i64 at line 1 column 16".to_owned(),
        )),
        PoisonCause::Decode(DecodeErrorKind::UnsupportedSchemaVersion { found: 9, supported: 4 }),
        PoisonCause::Decode(DecodeErrorKind::InvalidField {
            path: "lines[1].quantity".to_owned(),
            reason: "invalid value: integer `-2`, expected u32 \"quoted\"".to_owned(),
        }),
        PoisonCause::Decode(DecodeErrorKind::UpcastFailed {
            from: 2,
            reason: "`total` is missing".to_owned(),
        }),
    ];
    let letters: Vec<DeadLetter> = causes
        .iter()
        .enumerate()
        .map(|(i, cause)| {
            let mut l = letter("balances", i as u64 + 1);
            l.poison.cause = cause.clone();
            l
        })
        .collect();
    for l in &letters {
        park(&store, l).await;
    }
    assert_same_letters(&list(&store, "balances").await, &letters);
}

/// Letters list in position order, whatever order they were parked in.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::dead_letters::letters_list_in_position_order(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn letters_list_in_position_order<F: DeadLetterStoreFactory>(factory: F) {
    let store = factory.fresh_dead_letters().await;
    let letters: Vec<DeadLetter> = [30u64, 2, 100, 10, 9, 1_000_000, 20]
        .iter()
        .map(|p| letter("balances", *p))
        .collect();
    for l in &letters {
        park(&store, l).await;
    }
    let mut expected = letters.clone();
    expected.sort_by_key(|l| l.event.position);
    assert_same_letters(&list(&store, "balances").await, &expected);
}

/// Parking a position already parked (a crash between parking and moving
/// on, then the same event parked again) keeps one letter: the first,
/// even when the second says something else.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::dead_letters::parking_a_position_twice_keeps_one_letter(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn parking_a_position_twice_keeps_one_letter<F: DeadLetterStoreFactory>(factory: F) {
    let store = factory.fresh_dead_letters().await;
    let first = letter("balances", 5);
    park(&store, &first).await;
    park(&store, &first).await;
    let mut second = first.clone();
    second.poison.cause = PoisonCause::Handler("failed again, differently".to_owned());
    second.parked_at = Time::from_unix_nanos(first.parked_at.as_unix_nanos() + 1_000);
    park(&store, &second).await;
    let listed = list(&store, "balances").await;
    assert_eq!(listed.len(), 1, "one letter per position: {listed:?}");
    assert_same_letter(&listed[0], &first);
}

/// Parks of one position racing each other keep one letter; parks of
/// different positions racing each other all land.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::dead_letters::racing_parks_keep_one_letter_per_position(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn racing_parks_keep_one_letter_per_position<F: DeadLetterStoreFactory>(factory: F) {
    let store = factory.fresh_dead_letters().await;
    let mut tasks = Vec::new();
    for racer in 0..8u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            park(&store, &letter("balances", 7)).await;
            park(&store, &letter("balances", 100 + racer)).await;
        }));
    }
    for task in tasks {
        task.await.expect("a parker panicked");
    }
    let positions: Vec<u64> = list(&store, "balances")
        .await
        .iter()
        .map(|l| l.event.position.get())
        .collect();
    let expected: Vec<u64> = std::iter::once(7).chain(100..108).collect();
    assert_eq!(positions, expected);
}

/// `remove` takes out exactly the letter named, says `true`, and leaves the
/// others; removing it again, a position never parked, or the same
/// position under another subscription says `false` and removes nothing.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::dead_letters::remove_takes_out_exactly_one_letter(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn remove_takes_out_exactly_one_letter<F: DeadLetterStoreFactory>(factory: F) {
    let store = factory.fresh_dead_letters().await;
    let letters: Vec<DeadLetter> = [4u64, 5, 6].iter().map(|p| letter("balances", *p)).collect();
    for l in &letters {
        park(&store, l).await;
    }
    assert!(remove(&store, "balances", 5).await);
    assert_same_letters(
        &list(&store, "balances").await,
        &[letters[0].clone(), letters[2].clone()],
    );
    assert!(!remove(&store, "balances", 5).await, "already removed");
    assert!(!remove(&store, "balances", 8).await, "never parked");
    assert!(!remove(&store, "audit", 4).await, "another subscription");
    assert!(!remove(&store, "Balances", 4).await, "another subscription");
    assert_eq!(list(&store, "balances").await.len(), 2);
    assert!(remove(&store, "balances", 4).await);
    assert!(remove(&store, "balances", 6).await);
    assert!(list(&store, "balances").await.is_empty());
}

/// A removed letter can be parked again (a replay that fails again): it
/// lists again, as parked the second time.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::dead_letters::a_removed_letter_can_be_parked_again(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn a_removed_letter_can_be_parked_again<F: DeadLetterStoreFactory>(factory: F) {
    let store = factory.fresh_dead_letters().await;
    let first = letter("balances", 9);
    park(&store, &first).await;
    assert!(remove(&store, "balances", 9).await);
    let mut again = first.clone();
    again.poison.cause = PoisonCause::Handler("still failing after the fix".to_owned());
    again.parked_at = Time::from_unix_nanos(first.parked_at.as_unix_nanos() + 60_000_000_000);
    park(&store, &again).await;
    assert_same_letters(&list(&store, "balances").await, &[again]);
}

/// Subscriptions keep their own letters: the same position parked by two
/// subscriptions is two letters (also for names differing only by case or
/// a trailing space), each listed and removed on its own.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::dead_letters::subscriptions_keep_their_own_letters(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn subscriptions_keep_their_own_letters<F: DeadLetterStoreFactory>(factory: F) {
    let store = factory.fresh_dead_letters().await;
    let names = ["balances", "Balances", "balances ", "余额 ✓"];
    let mut parked = Vec::new();
    for name in names {
        let mut same = letter(name, 12);
        same.poison.cause = PoisonCause::Handler(format!("failed in {name}"));
        park(&store, &same).await;
        parked.push(same);
    }
    park(&store, &letter("balances", 13)).await;
    for (name, letter) in names.iter().zip(&parked).skip(1) {
        assert_same_letters(&list(&store, name).await, std::slice::from_ref(letter));
    }
    assert!(remove(&store, "Balances", 12).await);
    assert!(list(&store, "Balances").await.is_empty());
    let balances = list(&store, "balances").await;
    assert_eq!(balances.len(), 2);
    assert_same_letter(&balances[0], &parked[0]);
    for (name, letter) in names.iter().zip(&parked).skip(2) {
        assert_same_letters(&list(&store, name).await, std::slice::from_ref(letter));
    }
}

/// A long list is returned whole, in order (the trait has no paging or
/// bound).
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::dead_letters::a_long_list_is_returned_whole(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn a_long_list_is_returned_whole<F: DeadLetterStoreFactory>(factory: F) {
    let store = factory.fresh_dead_letters().await;
    let letters: Vec<DeadLetter> = (1..=300u64).rev().map(|p| letter("balances", p * 3)).collect();
    for l in &letters {
        park(&store, l).await;
    }
    let mut expected = letters;
    expected.reverse();
    assert_same_letters(&list(&store, "balances").await, &expected);
}

/// Values at the edges of what every store holds round-trip exactly:
/// positions and versions up to `i64::MAX`, schema versions 0 and
/// `i32::MAX`, parking at time zero and at the last nanosecond below
/// `i64::MAX`, and an event recorded at `Time::ZERO`.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::dead_letters::extreme_values_round_trip(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn extreme_values_round_trip<F: DeadLetterStoreFactory>(factory: F) {
    let store = factory.fresh_dead_letters().await;
    let max = i64::MAX as u64;
    let mut low = letter("edges", 1);
    low.event.schema_version = 0;
    low.parked_at = Time::ZERO;
    let mut meta = (*low.event.metadata).clone();
    meta.timestamp = Time::ZERO;
    meta.causation_id = None;
    meta.user.clear();
    low.event.metadata = std::sync::Arc::new(meta);
    let mut high = letter("edges", max);
    high.event.version = StreamVersion::new(max);
    high.poison.version = high.event.version;
    high.event.schema_version = i32::MAX as u32;
    high.parked_at = Time::from_unix_nanos(max);
    for l in [&low, &high] {
        park(&store, l).await;
    }
    assert_same_letters(&list(&store, "edges").await, &[low, high]);
    assert!(remove(&store, "edges", max).await);
}

/// No letter is requested until an operator asks; a request for given
/// positions marks exactly those letters (a position with no letter is
/// left out of the answer, a letter of another subscription is untouched),
/// with the request's time, shown by `list` and `replay_requested`.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::dead_letters::a_replay_request_marks_the_chosen_letters(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn a_replay_request_marks_the_chosen_letters<F: DeadLetterStoreFactory>(factory: F) {
    let store = factory.fresh_dead_letters().await;
    let parked: Vec<DeadLetter> = [3, 5, 8].into_iter().map(|p| letter("balances", p)).collect();
    for l in &parked {
        park(&store, l).await;
    }
    park(&store, &letter("audit", 5)).await;
    assert!(requested(&store, "balances").await.is_empty());
    assert!(list(&store, "balances")
        .await
        .iter()
        .all(|l| l.replay_requested_at.is_none()));

    let at = Time::from_unix_nanos(1_700_000_000_123_456_789);
    let which = ReplaySelection::Positions(vec![
        GlobalPosition::new(8),
        GlobalPosition::new(4),
        GlobalPosition::new(3),
    ]);
    assert_eq!(request(&store, "balances", which, at).await, vec![3, 8]);

    let marked = requested(&store, "balances").await;
    assert_eq!(positions(&marked), vec![3, 8]);
    assert!(marked.iter().all(|l| l.replay_requested_at == Some(at)));
    let listed = list(&store, "balances").await;
    let marks: Vec<Option<Time>> = listed.iter().map(|l| l.replay_requested_at).collect();
    assert_eq!(marks, vec![Some(at), None, Some(at)]);
    // The mark is the only change: the letters are otherwise as parked.
    let mut expected = parked[0].clone();
    expected.replay_requested_at = Some(at);
    assert_same_letter(&listed[0], &expected);
    assert!(requested(&store, "audit").await.is_empty());
}

/// A request for all marks every letter of the subscription and no
/// other's; asking again keeps the first request's time; a subscription
/// with no letters answers with no positions.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::dead_letters::a_replay_request_for_all_marks_every_letter_once(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn a_replay_request_for_all_marks_every_letter_once<F: DeadLetterStoreFactory>(factory: F) {
    let store = factory.fresh_dead_letters().await;
    assert!(
        request(&store, "balances", ReplaySelection::All, Time::from_unix_millis(1))
            .await
            .is_empty()
    );
    for position in [2, 9] {
        park(&store, &letter("balances", position)).await;
    }
    park(&store, &letter("balance", 4)).await;
    let first = Time::from_unix_millis(1_000);
    assert_eq!(
        request(&store, "balances", ReplaySelection::All, first).await,
        vec![2, 9]
    );
    park(&store, &letter("balances", 11)).await;
    let second = Time::from_unix_millis(2_000);
    assert_eq!(
        request(&store, "balances", ReplaySelection::All, second).await,
        vec![2, 9, 11]
    );
    let marks: Vec<(u64, Option<Time>)> = requested(&store, "balances")
        .await
        .iter()
        .map(|l| (l.event.position.get(), l.replay_requested_at))
        .collect();
    assert_eq!(marks, vec![(2, Some(first)), (9, Some(first)), (11, Some(second))]);
    assert!(requested(&store, "balance").await.is_empty());
}

/// A replay that failed again leaves the letter parked with the new cause
/// and no request; the other requested letters keep theirs; a removed
/// (replayed) letter leaves the requested list; `replay_failed` on a
/// position with no letter says so.
///
/// ```
/// # tokio::runtime::Runtime::new().expect("a runtime").block_on(
/// eventcore_tests::subscription_conformance::dead_letters::a_failed_replay_clears_the_request_and_keeps_the_letter(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores),
/// # );
/// ```
pub async fn a_failed_replay_clears_the_request_and_keeps_the_letter<F: DeadLetterStoreFactory>(factory: F) {
    let store = factory.fresh_dead_letters().await;
    let parked: Vec<DeadLetter> = [4, 6, 7].into_iter().map(|p| letter("balances", p)).collect();
    for l in &parked {
        park(&store, l).await;
    }
    let at = Time::from_unix_millis(5_000);
    assert_eq!(
        request(&store, "balances", ReplaySelection::All, at).await,
        vec![4, 6, 7]
    );

    let mut failed_again = parked[0].poison.clone();
    failed_again.cause = PoisonCause::Handler("still negative after the fix".into());
    assert!(store
        .replay_failed("balances", &failed_again)
        .await
        .expect("replay_failed"));
    assert!(remove(&store, "balances", 6).await);
    assert_eq!(positions(&requested(&store, "balances").await), vec![7]);

    let listed = list(&store, "balances").await;
    let mut expected = parked[0].clone();
    expected.poison = failed_again.clone();
    assert_same_letter(&listed[0], &expected);
    assert_eq!(listed[1].replay_requested_at, Some(at));

    let mut nowhere = letter("balances", 5).poison;
    nowhere.cause = PoisonCause::Handler("never parked".into());
    assert!(!store.replay_failed("balances", &nowhere).await.expect("replay_failed"));
    assert!(!store
        .replay_failed("audit", &failed_again)
        .await
        .expect("replay_failed"));
    assert_eq!(positions(&list(&store, "balances").await), vec![4, 7]);
}

/// One `#[tokio::test]` per case of the dead-letter-store suite, for the
/// [`DeadLetterStoreFactory`] expression given (evaluated in each test).
///
/// ```
/// eventcore_tests::dead_letter_store_conformance!(
///     eventcore_tests::subscription_conformance::MemorySubscriptionStores
/// );
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! dead_letter_store_conformance {
    ($factory:expr) => {
        $crate::subscription_store_conformance!(@cases dead_letters; $factory;
            an_unknown_subscription_has_no_letters,
            a_parked_letter_lists_back_exactly,
            every_poison_cause_round_trips,
            letters_list_in_position_order,
            parking_a_position_twice_keeps_one_letter,
            racing_parks_keep_one_letter_per_position,
            remove_takes_out_exactly_one_letter,
            a_removed_letter_can_be_parked_again,
            subscriptions_keep_their_own_letters,
            a_long_list_is_returned_whole,
            extreme_values_round_trip,
            a_replay_request_marks_the_chosen_letters,
            a_replay_request_for_all_marks_every_letter_once,
            a_failed_replay_clears_the_request_and_keeps_the_letter,
        );
    };
}
