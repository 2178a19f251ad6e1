//! What the subscription stores share: their tables' qualified names, and
//! the mapping of a sqlx error met outside an append.

use crate::error::{map_error, Phase};
#[cfg(feature = "subscriptions")]
use crate::PostgresStore;
use eventcore::{Operation, StoreError};

/// Qualified names of the subscription tables of one schema.
#[cfg(feature = "subscriptions")]
#[derive(Clone, Debug)]
pub(crate) struct Tables {
    pub(crate) checkpoints: String,
    pub(crate) leases: String,
    pub(crate) dead_letters: String,
}

#[cfg(feature = "subscriptions")]
impl Tables {
    pub(crate) fn of(store: &PostgresStore) -> Self {
        let s = &store.options().schema;
        Tables {
            checkpoints: format!("\"{s}\".subscription_checkpoints"),
            leases: format!("\"{s}\".subscription_leases"),
            dead_letters: format!("\"{s}\".subscription_dead_letters"),
        }
    }
}

/// Maps a sqlx error met outside an append.
pub(crate) fn store_error(error: sqlx::Error) -> StoreError {
    map_error(Operation::Other, Phase::Executing, error, None)
}
