//! The evolution example (`cargo run --example evolution`), checked on
//! PostgreSQL: events written by the first release of a module are read by
//! the current release — namespaced and renamed types, a split field, a
//! renamed field, a required field defaulted by the upcaster — through
//! commands, views, a projection and a direct read; the first release's
//! view snapshots are never used by the new view version.

use eventcore_examples::evolution::{self, CUSTOMERS, OLD_ORDERS};
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_current_release_reads_every_event_of_the_first() {
    let Some(store) = eventcore_tests::postgres::fresh_store("evolution").await else {
        return;
    };
    let report = evolution::run(&store).await.expect("the story runs");

    let per_customer: Vec<(String, u32)> = (0..OLD_ORDERS)
        .map(|_| ("OrderPlaced".to_owned(), 1))
        .chain([("OrderShipped".to_owned(), 1), ("order.Placed".to_owned(), 2)])
        .collect();
    let expected: Vec<(String, u32)> = CUSTOMERS.iter().flat_map(|_| per_customer.clone()).collect();
    assert_eq!(
        report.stored, expected,
        "old events stay as written; new ones are namespaced, at v2"
    );

    assert_eq!(report.old_snapshots_written, CUSTOMERS.len() as u64);
    assert_eq!(
        report.new_snapshots.loaded, 0,
        "a v1 snapshot is never used by the v2 view"
    );
    assert!(report.new_snapshots.not_found >= CUSTOMERS.len() as u64);

    let old_cents: u64 = (0..OLD_ORDERS).map(|n| 1_000 + 100 * n).sum();
    for (stream, name) in CUSTOMERS {
        let purchases = &report.purchases[stream];
        assert_eq!((purchases.orders, purchases.shipped), (OLD_ORDERS as u32 + 1, 1));
        assert_eq!(purchases.spent_cents, old_cents + 2_000);
        assert_eq!(purchases.currencies, BTreeSet::from(["EUR".to_owned()]));
        assert_eq!(Some(purchases.last_name.as_str()), name.split(' ').nth(1));
    }
    assert!(
        report.refusal.contains("USD is not accepted"),
        "the old events' currency came from the upcaster: {}",
        report.refusal
    );

    assert_eq!(report.order_book.len(), CUSTOMERS.len() * (OLD_ORDERS as usize + 1));
    for (stream, _, first, last, _, currency) in &report.order_book {
        let name = CUSTOMERS
            .iter()
            .find(|(s, _)| s == stream)
            .map(|(_, n)| *n)
            .unwrap_or_default();
        assert_eq!(format!("{first} {last}"), name, "the v1 name was split");
        assert_eq!(currency, "EUR");
    }
    let first_old = &report.order_book[0];
    assert_eq!((first_old.1, first_old.4), (1, 1_000), "`total` became `amount_cents`");
}
