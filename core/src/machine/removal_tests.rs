//! Reading a stream whose first events a retention run removed: the
//! machine folds from the first event kept when the store declares the
//! gap, and refuses a gap it does not declare.

use super::tests::{recorded, stream, Ev, OutOfOrder};
use super::*;
use crate::{Decision, ReadResponse, StoreError, StreamSlice, StreamVersion};

/// Folds like `tests::Order` and refuses unless it saw exactly these positions
/// (an event at version `v` sits at position `10 v`).
struct Folds(StreamId, Vec<u64>);

impl Command for Folds {
    type Event = Ev;
    type State = Vec<u64>;
    type Error = OutOfOrder;
    fn streams(&self) -> Vec<StreamId> {
        vec![self.0.clone()]
    }
    fn apply(&self, seen: &mut Vec<u64>, _: &StreamId, event: &Ev) {
        let Ev::At(p) = event;
        seen.push(*p);
    }
    fn decide(&self, seen: &Vec<u64>, _: &mut Decision<Ev>) -> Result<(), OutOfOrder> {
        if *seen == self.1 {
            Ok(())
        } else {
            Err(OutOfOrder(seen.clone()))
        }
    }
}

/// Runs `Folds` against one stream of `head` versions whose versions up to
/// `removed` are gone, the store declaring `declared` as removed.
fn fold_after_removal(removed: u64, declared: u64, head: u64) -> Result<Executed, CommandError<OutOfOrder>> {
    let a = stream("a");
    let kept: Vec<u64> = (removed + 1..=head).collect();
    let now = Time::from_unix_millis(1);
    let ctx = ExecutionContext::new(CommandId::v7(now, [1; 10]));
    let positions = kept.iter().map(|v| v * 10).collect();
    let mut machine = CommandMachine::new(Folds(a.clone(), positions), ExecutionPolicy::default(), ctx, now, 3);
    for _ in 0..10 {
        match machine.poll() {
            Step::Read { id, request, .. } => {
                let after = request.streams[0].after.get();
                let slice = StreamSlice {
                    stream: a.clone(),
                    head: StreamVersion::new(head),
                    events: kept
                        .iter()
                        .filter(|&&v| v > after)
                        .map(|&v| recorded(&a, v, v * 10))
                        .collect(),
                    deleted_at: None,
                    removed_through: StreamVersion::new(declared),
                };
                machine.on_read(id, Ok(ReadResponse { streams: vec![slice] }), now);
            }
            Step::Done(result) => return result,
            other => panic!("unexpected step {other:?}"),
        }
    }
    panic!("did not finish");
}

#[test]
fn a_stream_whose_first_events_were_removed_folds_from_the_first_one_kept() {
    fold_after_removal(10, 10, 13).expect("a read from 0 folds versions 11 to 13");
}

#[test]
fn a_stream_removed_whole_folds_as_empty_at_its_head() {
    fold_after_removal(5, 5, 5).expect("no events, head 5, all declared removed");
}

#[test]
fn a_gap_the_store_does_not_declare_removed_is_still_a_contract_violation() {
    for declared in [0, 9] {
        let result = fold_after_removal(10, declared, 13);
        assert!(
            matches!(result, Err(CommandError::Store(StoreError::ContractViolation { .. }))),
            "declared {declared}: {result:?}"
        );
    }
}

#[test]
fn removed_versions_beyond_the_head_are_a_contract_violation() {
    let result = fold_after_removal(3, 4, 3);
    assert!(
        matches!(result, Err(CommandError::Store(StoreError::ContractViolation { .. }))),
        "{result:?}"
    );
}
