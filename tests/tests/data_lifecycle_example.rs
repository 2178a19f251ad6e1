//! The data-lifecycle example (`cargo run --example data-lifecycle`),
//! checked on PostgreSQL: a customer's personal data is forgotten (her
//! events stay, her fields read as forgotten, new data of hers is refused,
//! her plaintext is nowhere in the schema), and her closed account's
//! stream is tombstoned and then removed by a retention run (archived
//! first; still refusing appends; the other account untouched).

use eventcore::{CommandErrorKind, RemovalReason, StreamVersion};
use eventcore_examples::lifecycle::{self, savings_stream, PLAINTEXTS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_is_forgotten_and_her_closed_account_is_tombstoned_and_removed() {
    let Some(store) = eventcore_tests::postgres::fresh_store("lifecycle").await else {
        return;
    };
    let report = lifecycle::run(&store).await.expect("the story runs");

    // Forgotten: the events stay, the personal fields are gone, the rest reads.
    assert_eq!(report.before_forget.name.as_deref(), Some("Ann Example"));
    assert_eq!(report.before_forget.email.as_deref(), Some("ann.new@example.com"));
    assert_eq!(report.after_forget.name, None);
    assert_eq!(report.after_forget.email, None);
    assert_eq!(report.after_forget.country, "NL");
    assert_eq!(
        report.after_forget.events, report.before_forget.events,
        "a forget removes no event"
    );
    assert_eq!(
        report.kept.name.as_deref(),
        Some("Ben Sample"),
        "the other customer is untouched"
    );
    assert_eq!(report.kept.email.as_deref(), Some("ben@example.com"));
    assert!(
        report.moved_after_forget,
        "a command folds the forgotten fields and commits"
    );
    assert_eq!(report.new_data_refused, CommandErrorKind::Encode);
    assert_eq!(
        report.new_data_refused_subject.as_deref(),
        Some("customer-1"),
        "typed: PersonalError::SubjectForgotten in the source chain"
    );
    assert!(
        report.new_data_refusal.contains("customer-1"),
        "the refusal names the subject: {}",
        report.new_data_refusal
    );

    // Tombstoned, then removed.
    assert_eq!(
        report.deposit_after_close,
        CommandErrorKind::Rejected,
        "the domain folds `Closed` and refuses"
    );
    assert_eq!(report.removed.len(), 1, "{:?}", report.removed);
    let range = &report.removed[0];
    assert_eq!(range.stream, savings_stream(lifecycle::CLOSED_ACCOUNT));
    assert_eq!(range.reason, RemovalReason::Tombstoned);
    assert_eq!(
        (range.first_version, range.last_version),
        (StreamVersion::new(1), StreamVersion::new(4))
    );
    assert_eq!(report.archived, 4, "archived before removal");
    assert_eq!(
        report.closed_after_removal,
        (0, StreamVersion::new(4), Some(StreamVersion::new(4))),
        "no event left; the read says through which version they were removed and that the stream is deleted"
    );
    assert_eq!(
        report.reopen_after_removal,
        CommandErrorKind::StreamDeleted,
        "the domain saw an empty stream and opened it; the tombstone refused the append"
    );
    assert_eq!(report.kept_account_events, 2, "the open account keeps its events");

    // No personal value in the clear anywhere in the schema (events,
    // archive, snapshots, keys, ...), while a non-personal value is found,
    // which shows the search would see a leak.
    let dump = eventcore_tests::postgres::schema_as_text(&store).await;
    for plaintext in PLAINTEXTS {
        assert!(!dump.contains(plaintext), "`{plaintext}` stored in the clear");
    }
    assert!(dump.contains("\"NL\""), "the non-personal country is stored as written");
    assert!(dump.contains("-- events_archive"), "the archive table exists");
}
