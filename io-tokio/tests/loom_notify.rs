//! loom models of subscriber wake-ups on the in-memory store: the
//! "check for new events, then wait" protocol loses no wake-up.
//!
//! A lost wake-up shows up in loom as a deadlock (every thread parked), so
//! each model simply requires the subscriber to finish. The last model
//! shows that the check is not vacuous: a subscriber that waits past a
//! head fetched *after* its read can sleep forever, and loom finds the
//! interleaving.
#![cfg(eventcore_loom)]

use eventcore::{
    AppendRequest, CommandId, EventFilter, EventId, EventMetadata, EventType, ExpectedVersion, GlobalPosition,
    NewEvent, Payload, ReadAllRequest, StreamAppend, StreamId, Time,
};
use eventcore_tokio::MemoryEventStore;
use std::num::NonZeroU32;
use std::sync::Arc;

fn append(tag: u8, stream: &str) -> AppendRequest {
    AppendRequest {
        metadata: Arc::new(EventMetadata::new(CommandId::v7(Time::ZERO, [tag; 10]), Time::ZERO)),
        streams: vec![StreamAppend {
            stream: StreamId::new(stream).expect("valid stream id"),
            expected: ExpectedVersion::Any,
            events: vec![NewEvent {
                event_id: EventId::v7(Time::ZERO, [tag; 10]),
                event_type: EventType::new("Happened").expect("valid event type"),
                schema_version: 1,
                payload: Payload::from_trusted_json("null"),
            }],
            tombstone: false,
        }],
    }
}

fn read_after(store: &MemoryEventStore, after: GlobalPosition) -> eventcore::ReadAllResponse {
    let request = ReadAllRequest {
        after,
        limit: NonZeroU32::new(100).expect("non-zero"),
        filter: EventFilter::all(),
    };
    store.read_all_sync(&request).expect("read all")
}

/// The subscriber's loop: read after the checkpoint, and wait past what the
/// read was complete through until `want` events were delivered. Bounded:
/// each wait returns only after the head moved, so there are at most `want`
/// waits.
fn subscribe(store: &MemoryEventStore, want: usize) -> Vec<GlobalPosition> {
    let head = store.head();
    let mut checkpoint = GlobalPosition::START;
    let mut seen = Vec::new();
    for _ in 0..=want {
        let batch = read_after(store, checkpoint);
        seen.extend(batch.events.iter().map(|e| e.position));
        checkpoint = batch.complete_through;
        if seen.len() >= want {
            return seen;
        }
        let moved = loom::future::block_on(head.wait_past(checkpoint));
        assert!(moved > checkpoint, "woken without the head moving past the checkpoint");
    }
    panic!("more waits than appends: a wait returned without news");
}

/// One writer appending twice, one subscriber: it sees both events, once
/// each, in order, and never sleeps through an append.
#[test]
fn subscriber_never_misses_a_wake_up() {
    loom::model(|| {
        let store = MemoryEventStore::new();
        let writer = {
            let store = store.clone();
            loom::thread::spawn(move || {
                store.append_sync(&append(1, "a")).expect("append 1");
                store.append_sync(&append(2, "b")).expect("append 2");
            })
        };
        let seen = subscribe(&store, 2);
        writer.join().expect("writer");
        assert_eq!(seen, vec![GlobalPosition::new(1), GlobalPosition::new(2)]);
        assert_eq!(store.head().waiters(), 0, "a finished wait left its waker behind");
    });
}

/// Two writers whose publications may arrive out of order (the second
/// commit published before the first): the head never goes backwards and
/// the subscriber is still woken for both.
#[test]
fn out_of_order_publication_wakes_the_subscriber() {
    loom::model(|| {
        let store = MemoryEventStore::new();
        let writers: Vec<_> = [1u8, 2]
            .into_iter()
            .map(|tag| {
                let store = store.clone();
                loom::thread::spawn(move || store.append_sync(&append(tag, "a")).expect("append"))
            })
            .collect();
        let seen = subscribe(&store, 2);
        for writer in writers {
            writer.join().expect("writer");
        }
        assert_eq!(seen, vec![GlobalPosition::new(1), GlobalPosition::new(2)]);
        assert_eq!(store.head().position(), GlobalPosition::new(2));
    });
}

/// Two subscribers sharing one head, two writers: every subscriber sees
/// both events, and no waker is left behind.
#[test]
fn every_subscriber_is_woken() {
    loom::model(|| {
        let store = MemoryEventStore::new();
        let writer = {
            let store = store.clone();
            loom::thread::spawn(move || {
                store.append_sync(&append(1, "a")).expect("append 1");
                store.append_sync(&append(2, "b")).expect("append 2");
            })
        };
        let other = {
            let store = store.clone();
            loom::thread::spawn(move || subscribe(&store, 2))
        };
        let seen = subscribe(&store, 2);
        writer.join().expect("writer");
        let other = other.join().expect("other subscriber");
        let expected = vec![GlobalPosition::new(1), GlobalPosition::new(2)];
        assert_eq!((seen, other), (expected.clone(), expected));
        assert_eq!(store.head().waiters(), 0);
    });
}

/// A wait that is dropped before it completes (a subscriber whose poll
/// timeout fired) unregisters its waker, whatever the interleaving with a
/// publication.
#[test]
fn a_dropped_wait_leaves_no_waker() {
    loom::model(|| {
        let store = MemoryEventStore::new();
        let head = store.head();
        let writer = {
            let store = store.clone();
            loom::thread::spawn(move || store.append_sync(&append(1, "a")).expect("append"))
        };
        {
            let mut wait = std::pin::pin!(head.wait_past(GlobalPosition::START));
            let waker = std::task::Waker::noop();
            let _ = std::future::Future::poll(wait.as_mut(), &mut std::task::Context::from_waker(waker));
        }
        writer.join().expect("writer");
        assert_eq!(head.waiters(), 0);
    });
}

/// One round of "read, then wait" racing one append, with the wait polled
/// once by hand instead of blocked on: returns true when the subscriber
/// would sleep forever (the append is published, the read missed it, and
/// the wait is neither ready nor woken). `fresh_head` selects the broken
/// protocol that waits past a head fetched after the read.
fn sleeps_through_an_append(fresh_head: bool) -> bool {
    struct Flag(std::sync::atomic::AtomicBool);
    impl std::task::Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let store = MemoryEventStore::new();
    let writer = {
        let store = store.clone();
        loom::thread::spawn(move || store.append_sync(&append(1, "a")).expect("append"))
    };
    let head = store.head();
    let batch = read_after(&store, GlobalPosition::START);
    let lost = if batch.events.is_empty() {
        let past = if fresh_head {
            head.position()
        } else {
            batch.complete_through
        };
        let flag = std::sync::Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
        let waker = std::task::Waker::from(flag.clone());
        let mut wait = std::pin::pin!(head.wait_past(past));
        let first = std::future::Future::poll(wait.as_mut(), &mut std::task::Context::from_waker(&waker));
        writer.join().expect("writer");
        let woken = flag.0.load(std::sync::atomic::Ordering::SeqCst);
        first.is_pending() && !woken
    } else {
        writer.join().expect("writer");
        false
    };
    lost
}

/// The same race without blocking: in no interleaving does the subscriber
/// end up parked with the append published and unseen.
#[test]
fn no_interleaving_sleeps_through_an_append() {
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = lost.clone();
    loom::model(move || {
        if sleeps_through_an_append(false) {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    assert_eq!(lost.load(std::sync::atomic::Ordering::SeqCst), 0);
}

/// The broken protocol, to show the models can fail: taking the position to
/// wait past *after* the read instead of from it. loom finds the
/// interleaving where the append lands in between and the wake-up is lost.
#[test]
fn waiting_past_a_fresh_head_loses_wake_ups() {
    let lost = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = lost.clone();
    loom::model(move || {
        if sleeps_through_an_append(true) {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    assert!(
        lost.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "loom should find the lost wake-up of the broken protocol"
    );
}
