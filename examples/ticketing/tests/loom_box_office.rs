//! The box office under loom: two customers reserve the last seats of one
//! concert at once, through [`execute_blocking`] against the in-memory
//! store, and in every interleaving loom explores the concert is never
//! oversold. The planted bug (`Reserve::buggy`) oversells in some
//! interleaving, and loom must find it.
//!
//! Built only with `--cfg eventcore_loom` (`.ci/loom`; see
//! `docs/testing-your-domain.md`, "Loom").
#![cfg(eventcore_loom)]

use eventcore::{CommandError, ExecutionError, ReadRequest};
use eventcore_example_ticketing::{concert, reservation, ConcertEvent, Reserve, Schedule, TicketingError};
use eventcore_tokio::{execute_blocking, MemoryEventStore};

/// The concert's log: versions contiguous, never more seats taken than it
/// has, and the seats taken equal to what the commands were granted.
fn check_concert(store: &MemoryEventStore, granted: u64) {
    let answer = store.read_sync(&ReadRequest::new([concert(0)])).expect("read");
    let (mut capacity, mut sold) = (0, 0);
    for (i, recorded) in answer.streams[0].events.iter().enumerate() {
        assert_eq!(recorded.version.get(), i as u64 + 1, "versions are not contiguous");
        match eventcore::decode_recorded::<ConcertEvent>(recorded).expect("a concert event") {
            ConcertEvent::Scheduled { capacity: c } => capacity = c,
            ConcertEvent::SeatsTaken { seats } => sold += seats,
            ConcertEvent::SeatsReleased { seats } => sold -= seats,
        }
        assert!(sold <= capacity, "oversold: {sold} seats taken of {capacity}");
    }
    assert_eq!(sold, granted, "the log differs from what the commands were granted");
}

/// Two customers, two seats each, three seats in the hall.
fn race(buggy: bool) {
    loom::model(move || {
        let store = MemoryEventStore::new();
        execute_blocking(
            &store,
            Schedule {
                concert: concert(0),
                capacity: 3,
            },
            0,
        )
        .expect("schedule");
        let customers: Vec<_> = (1..=2u64)
            .map(|n| {
                let store = store.clone();
                loom::thread::spawn(move || {
                    let reserve = Reserve {
                        concert: concert(0),
                        reservation: reservation(n),
                        seats: 2,
                        buggy,
                    };
                    match execute_blocking(&store, reserve, n) {
                        Ok(_) => 2,
                        Err(ExecutionError {
                            error: CommandError::Domain(TicketingError::SoldOut { .. }),
                            ..
                        }) => 0,
                        Err(other) => panic!("unexpected failure: {other}"),
                    }
                })
            })
            .collect();
        let granted: Vec<u64> = customers.into_iter().map(|c| c.join().expect("customer")).collect();
        check_concert(&store, granted.iter().sum());
        assert_eq!(
            granted.iter().filter(|g| **g > 0).count(),
            1,
            "exactly one customer gets the seats"
        );
    });
}

#[test]
fn concurrent_reservations_never_oversell() {
    race(false);
}

#[test]
#[should_panic(expected = "oversold")]
fn the_planted_bug_oversells_in_some_interleaving() {
    race(true);
}
