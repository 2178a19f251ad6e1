//! Domain invariants: a workload replays the committed events in global
//! order and says when a rule breaks.

use eventcore::RecordedEvent;

/// A replay of the committed events that checks the workload's own rules
/// (money conserved, no negative balance, stock never negative).
pub trait DomainModel {
    /// A short name for messages.
    fn name(&self) -> &'static str;
    /// Folds one event (global order); an `Err` describes a broken rule at
    /// this event. Events of other domains must be ignored.
    fn apply(&mut self, event: &RecordedEvent) -> Result<(), String>;
    /// Rules that only hold for the whole history.
    fn finish(&self) -> Vec<String>;
}
