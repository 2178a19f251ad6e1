//! The scheduler's event queue: messages ordered by (delivery time, seeded
//! tie-break, insertion sequence).
//!
//! Messages due at the same instant are delivered in an order drawn from the
//! scheduler's random stream, so the interleaving of simultaneous steps is
//! explored rather than fixed by insertion order; the sequence number only
//! makes the order total, which keeps runs reproducible.

use eventcore::Time;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

struct Entry<T> {
    at: Time,
    tie: u64,
    seq: u64,
    item: T,
}

impl<T> Entry<T> {
    fn key(&self) -> (Time, u64, u64) {
        (self.at, self.tie, self.seq)
    }
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key().cmp(&other.key())
    }
}

/// A priority queue of timed messages.
///
/// ```
/// use eventcore::Time;
/// use eventcore_sim::queue::EventQueue;
/// let mut q = EventQueue::new();
/// q.push(Time::from_unix_millis(2), 0, "late");
/// q.push(Time::from_unix_millis(1), 9, "early");
/// assert_eq!(q.pop().map(|(_, m)| m), Some("early"));
/// ```
pub struct EventQueue<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
    seq: u64,
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        EventQueue::new()
    }
}

impl<T> EventQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Queues `item` for delivery at `at`; `tie` orders it among messages
    /// due at the same instant (draw it from the scheduler's stream).
    pub fn push(&mut self, at: Time, tie: u64, item: T) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            tie,
            seq: self.seq,
            item,
        }));
    }

    /// The next message and its delivery time.
    pub fn pop(&mut self) -> Option<(Time, T)> {
        self.heap.pop().map(|Reverse(e)| (e.at, e.item))
    }

    /// When the next message is due.
    pub fn peek_time(&self) -> Option<Time> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}
