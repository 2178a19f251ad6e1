//! Per-event store-contract checks: contiguous versions, increasing global
//! positions, unique event ids.

use super::{Checker, Invariant};
use eventcore::RecordedEvent;

pub(super) fn check_event(checker: &mut Checker, event: &RecordedEvent) {
    if event.position <= checker.last_position {
        checker.violate(
            Invariant::StoreContract,
            format!(
                "global position went from {} to {} (event `{}`@{})",
                checker.last_position, event.position, event.stream_id, event.version
            ),
        );
    }
    checker.last_position = checker.last_position.max(event.position);
    let head = checker.heads.entry(event.stream_id.clone()).or_default();
    if event.version != head.next() {
        let detail = format!(
            "stream `{}` jumped from version {} to {} at position {}",
            event.stream_id, head, event.version, event.position
        );
        *head = (*head).max(event.version);
        checker.violate(Invariant::StoreContract, detail);
    } else {
        *head = event.version;
    }
    if !checker.event_ids.insert(event.event_id) {
        checker.violate(
            Invariant::StoreContract,
            format!("event id {} stored twice (position {})", event.event_id, event.position),
        );
    }
}
