//! Group 5 of the suite, global order and `read_all`: positions, filters,
//! limits, `complete_through`.

use super::*;

/// Positions strictly increase in commit order, across streams and within
/// one append (never assumed contiguous).
pub async fn positions_increase_in_commit_order_across_streams<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (a, b, c) = (stream("order-a"), stream("order-b"), stream("order-c"));
    let mut receipts = Vec::new();
    for request in [
        Append::new().to(&a, ExpectedVersion::Any, 2).build(),
        Append::new().to(&b, ExpectedVersion::Any, 1).build(),
        Append::new()
            .to(&c, ExpectedVersion::Any, 2)
            .to(&a, ExpectedVersion::Any, 1)
            .build(),
        Append::new().to(&b, ExpectedVersion::Any, 3).build(),
    ] {
        receipts.push(commit(&store, &request).await);
    }
    let mut previous = GlobalPosition::START;
    for receipt in &receipts {
        for commit in &receipt.streams {
            for &position in &commit.positions {
                assert!(position > previous, "{position} after {previous}");
                previous = position;
            }
        }
    }
    let log = global_log(&store).await;
    let receipt_positions: Vec<GlobalPosition> = receipts
        .iter()
        .flat_map(|r| r.streams.iter().flat_map(|s| s.positions.iter().copied()))
        .collect();
    let log_positions: Vec<GlobalPosition> = log.iter().map(|e| e.position).collect();
    assert_eq!(log_positions, receipt_positions, "the global log is in commit order");
    assert!(log.windows(2).all(|w| w[0].position < w[1].position));
    assert!(log[0].position > GlobalPosition::START);
}

/// `read_all` returns exactly the events after the given position.
pub async fn read_all_returns_the_events_after_a_position<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let s = stream("global");
    for _ in 0..3 {
        commit(&store, &Append::new().to(&s, ExpectedVersion::Any, 2).build()).await;
    }
    let log = global_log(&store).await;
    assert_eq!(log.len(), 6);
    for k in 0..log.len() {
        let after = log[k].position;
        let page = store
            .read_all(&read_all_request(after, 100, EventFilter::all()))
            .await
            .expect("read_all");
        assert_eq!(event_ids(&page.events), event_ids(&log[k + 1..]), "after {after}");
        assert!(page.complete_through >= log[log.len() - 1].position);
    }
    let everything = store
        .read_all(&read_all_request(GlobalPosition::START, 100, EventFilter::all()))
        .await
        .expect("read_all");
    assert_eq!(everything.events, log);
}

/// `limit` caps the number of events returned, counted after filtering.
pub async fn read_all_limit_counts_matching_events<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let (wanted, noise) = (stream("lim-wanted"), stream("lim-noise"));
    for _ in 0..3 {
        commit(&store, &Append::new().to(&noise, ExpectedVersion::Any, 4).build()).await;
        commit(&store, &Append::new().to(&wanted, ExpectedVersion::Any, 1).build()).await;
    }
    let all = store
        .read_all(&read_all_request(GlobalPosition::START, 5, EventFilter::all()))
        .await
        .expect("read_all");
    assert_eq!(all.events.len(), 5);
    let filtered = store
        .read_all(&read_all_request(
            GlobalPosition::START,
            2,
            EventFilter::all().with_streams([wanted.clone()]),
        ))
        .await
        .expect("read_all");
    let versions: Vec<u64> = filtered.events.iter().map(|e| e.version.get()).collect();
    assert_eq!(versions, vec![1, 2], "two matching events, however many were skipped");
    assert!(filtered.events.iter().all(|e| e.stream_id == wanted));
}

async fn seed_filter_fixture<S: EventStore>(store: &S) {
    let typed = |t: &str, n: u64| new_event(t, serde_json::json!({ "n": n }));
    let writes: [(&str, &str); 8] = [
        ("account-1", "Opened"),
        ("account-2", "Opened"),
        ("order-1", "Placed"),
        ("account-1", "Deposited"),
        ("accounting", "Closed"),
        ("order-1", "Shipped"),
        ("account-2", "Deposited"),
        ("account-10", "Opened"),
    ];
    for (n, (s, t)) in writes.iter().enumerate() {
        commit(
            store,
            &Append::new()
                .with_events(&stream(s), ExpectedVersion::Any, vec![typed(t, n as u64)])
                .build(),
        )
        .await;
    }
}

async fn filtered<S: EventStore>(store: &S, filter: EventFilter) -> Vec<(String, String)> {
    let page = store
        .read_all(&read_all_request(GlobalPosition::START, 100, filter))
        .await
        .expect("read_all");
    assert!(page.events.windows(2).all(|w| w[0].position < w[1].position));
    page.events
        .iter()
        .map(|e| (e.stream_id.as_str().to_owned(), e.event_type.as_str().to_owned()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(s, t)| ((*s).to_owned(), (*t).to_owned())).collect()
}

/// Filtering by stream returns only events of the listed streams.
pub async fn read_all_filters_by_stream<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    seed_filter_fixture(&store).await;
    let got = filtered(
        &store,
        EventFilter::all().with_streams([stream("order-1"), stream("account-2")]),
    )
    .await;
    assert_eq!(
        got,
        pairs(&[
            ("account-2", "Opened"),
            ("order-1", "Placed"),
            ("order-1", "Shipped"),
            ("account-2", "Deposited"),
        ])
    );
    let none = filtered(&store, EventFilter::all().with_streams([stream("nobody")])).await;
    assert!(none.is_empty());
}

/// Filtering by prefix matches ids that start with it, literally.
pub async fn read_all_filters_by_stream_prefix<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    seed_filter_fixture(&store).await;
    let got = filtered(&store, EventFilter::all().with_stream_prefix("account-")).await;
    assert_eq!(
        got,
        pairs(&[
            ("account-1", "Opened"),
            ("account-2", "Opened"),
            ("account-1", "Deposited"),
            ("account-2", "Deposited"),
            ("account-10", "Opened"),
        ])
    );
    let wider = filtered(&store, EventFilter::all().with_stream_prefix("account")).await;
    assert_eq!(wider.len(), 6, "`accounting` starts with `account`");
    // Pattern characters in a prefix are literal.
    assert!(filtered(&store, EventFilter::all().with_stream_prefix("acc%"))
        .await
        .is_empty());
    assert!(filtered(&store, EventFilter::all().with_stream_prefix("account_"))
        .await
        .is_empty());
}

/// Filtering by event type returns only events of the listed types.
pub async fn read_all_filters_by_event_type<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    seed_filter_fixture(&store).await;
    let got = filtered(
        &store,
        EventFilter::all().with_event_types([event_type("Deposited"), event_type("Shipped")]),
    )
    .await;
    assert_eq!(
        got,
        pairs(&[
            ("account-1", "Deposited"),
            ("order-1", "Shipped"),
            ("account-2", "Deposited"),
        ])
    );
}

/// Filter conditions combine with AND.
pub async fn read_all_filter_conditions_combine<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    seed_filter_fixture(&store).await;
    let prefix_and_type = filtered(
        &store,
        EventFilter::all()
            .with_stream_prefix("account-")
            .with_event_types([event_type("Opened")]),
    )
    .await;
    assert_eq!(
        prefix_and_type,
        pairs(&[
            ("account-1", "Opened"),
            ("account-2", "Opened"),
            ("account-10", "Opened")
        ])
    );
    let stream_and_type = filtered(
        &store,
        EventFilter::all()
            .with_streams([stream("account-1"), stream("order-1")])
            .with_event_types([event_type("Deposited"), event_type("Placed")]),
    )
    .await;
    assert_eq!(
        stream_and_type,
        pairs(&[("order-1", "Placed"), ("account-1", "Deposited")])
    );
    let all_three = filtered(
        &store,
        EventFilter::all()
            .with_streams([stream("account-1"), stream("order-1")])
            .with_stream_prefix("order")
            .with_event_types([event_type("Shipped")]),
    )
    .await;
    assert_eq!(all_three, pairs(&[("order-1", "Shipped")]));
    let contradictory = filtered(
        &store,
        EventFilter::all()
            .with_streams([stream("account-1")])
            .with_stream_prefix("order"),
    )
    .await;
    assert!(contradictory.is_empty());
}

/// `complete_through` never goes back, covers every returned event, and lets
/// a reader page through the filtered log with no gap and no repeat, however
/// small the limit.
pub async fn paging_by_complete_through_reassembles_the_log<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    seed_filter_fixture(&store).await;
    let log = global_log(&store).await;
    let filters = [
        EventFilter::all(),
        EventFilter::all().with_stream_prefix("account-"),
        EventFilter::all().with_event_types([event_type("Opened")]),
        EventFilter::all().with_streams([stream("order-1")]),
    ];
    for filter in filters {
        let expected: Vec<EventId> = log.iter().filter(|e| filter.matches(e)).map(|e| e.event_id).collect();
        for limit in 1..=3u32 {
            let mut after = GlobalPosition::START;
            let mut seen = Vec::new();
            for _ in 0..100 {
                let page = store
                    .read_all(&read_all_request(after, limit, filter.clone()))
                    .await
                    .expect("read_all");
                assert!(page.events.len() <= limit as usize);
                assert!(page.complete_through >= after, "complete_through went back");
                for event in &page.events {
                    assert!(event.position > after, "an event at or before `after`");
                    assert!(
                        event.position <= page.complete_through,
                        "an event beyond complete_through"
                    );
                    assert!(filter.matches(event), "an event the filter excludes");
                }
                if page.events.is_empty() {
                    break;
                }
                seen.extend(event_ids(&page.events));
                after = page.complete_through;
            }
            assert_eq!(seen, expected, "filter {filter:?}, limit {limit}");
        }
    }
}

/// When every event is filtered out, `complete_through` still advances to
/// the end of the log, so a filtered subscriber can checkpoint; on an empty
/// store, or past the end, it stays at `after`.
pub async fn complete_through_advances_past_filtered_out_events<F: StoreFactory>(factory: F) {
    let store = factory.fresh().await;
    let empty = store
        .read_all(&read_all_request(GlobalPosition::START, 10, EventFilter::all()))
        .await
        .expect("read_all on an empty store");
    assert!(empty.events.is_empty());
    assert_eq!(empty.complete_through, GlobalPosition::START);

    seed_filter_fixture(&store).await;
    let last = global_log(&store).await.last().expect("fixture written").position;
    let nothing = store
        .read_all(&read_all_request(
            GlobalPosition::START,
            10,
            EventFilter::all().with_stream_prefix("no-such-prefix"),
        ))
        .await
        .expect("read_all");
    assert!(nothing.events.is_empty());
    assert!(
        nothing.complete_through >= last,
        "a quiescent store reports every position up to {last} complete, got {}",
        nothing.complete_through
    );

    let beyond = GlobalPosition::new(last.get() + 1_000);
    let past_end = store
        .read_all(&read_all_request(beyond, 10, EventFilter::all()))
        .await
        .expect("read_all past the end");
    assert!(past_end.events.is_empty());
    assert!(
        past_end.complete_through >= beyond,
        "complete_through never goes below `after`"
    );
}
