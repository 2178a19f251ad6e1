//! What a view command decided on, shared between the command and the
//! simulator so that a committed decision can be checked against the full
//! fold of its streams.

use eventcore::{StreamId, View};
use std::sync::{Arc, Mutex};

/// The views one emitting `decide` saw: per stream, the view as JSON
/// (the encoding snapshots use).
pub type Decided = Vec<(StreamId, String)>;

/// Handed to a view command built with
/// [`DomainCommand::probed`](crate::DomainCommand::probed), one per
/// execution: each `decide` that emits events records the views it decided
/// on. Once the execution commits, the simulator checks that each recorded
/// view equals the full fold of its stream up to the version the append
/// pinned — so a view primed from the cache or a snapshot, plus the events
/// read after it, must equal a replay from the first event.
///
/// The probe is a shared slot (`Arc<Mutex<…>>`) so that the command, which
/// the machine owns, can write it and the simulator can read it.
///
/// ```
/// use eventcore::StreamId;
/// use eventcore_sim::probe::{view_json, DecisionProbe};
/// use eventcore_sim::workload::views::AccountView;
/// let probe = DecisionProbe::new();
/// let account = AccountView { open: true, balance: 5 };
/// probe.record([(StreamId::new("acct-1").unwrap(), view_json(&account))]);
/// let decided = probe.take().expect("recorded");
/// assert_eq!(decided[0].1, r#"{"open":true,"balance":5}"#);
/// assert!(probe.take().is_none(), "taken once");
/// ```
#[derive(Clone, Debug, Default)]
pub struct DecisionProbe(Arc<Mutex<Option<Decided>>>);

impl DecisionProbe {
    /// A fresh, empty probe.
    pub fn new() -> Self {
        DecisionProbe::default()
    }

    /// Records the views of a decision that emitted events, replacing any
    /// earlier one (a retried decision supersedes the one that conflicted).
    pub fn record(&self, views: impl IntoIterator<Item = (StreamId, String)>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(views.into_iter().collect());
        }
    }

    /// The views of the last recorded decision, once.
    pub fn take(&self) -> Option<Decided> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// `view` as the JSON a probe records (and a snapshot stores).
///
/// ```
/// use eventcore_sim::probe::view_json;
/// use eventcore_sim::workload::views::StockView;
/// assert_eq!(view_json(&StockView { listed: true, stock: 3 }), r#"{"listed":true,"stock":3}"#);
/// ```
pub fn view_json<V: View>(view: &V) -> String {
    serde_json::to_string(view).unwrap_or_default()
}
