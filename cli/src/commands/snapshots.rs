//! `eventcore snapshots list|delete|prune`: persisted view snapshots per
//! view name and version, and deleting those no release reads any more.

use crate::args::{Connection, SnapshotCommand};
use crate::connect::connect_migrated;
use crate::error::CliError;
use crate::output::{bytes, Align, Out, Table};
use crate::timefmt::rfc3339;
use eventcore_postgres::{PgSnapshotStore, ViewSnapshots};
use eventcore_store::SnapshotStore;
use serde::Serialize;
use std::collections::BTreeMap;

/// What `snapshots list --json` prints.
#[derive(Debug, Serialize)]
struct ListReport {
    views: Vec<Group>,
}

/// The snapshots of one view version.
#[derive(Debug, Serialize)]
struct Group {
    view: String,
    view_version: u32,
    snapshots: u64,
    payload_bytes: u64,
    largest_payload_bytes: u64,
    oldest: String,
    newest: String,
}

/// What `snapshots delete|prune --json` prints.
#[derive(Debug, Serialize)]
struct DeleteReport {
    /// False for a dry run (no `--yes`).
    deleted: bool,
    /// The view versions concerned, with how many snapshots each held.
    groups: Vec<Group>,
    /// How many snapshots were (or would be) deleted.
    snapshots: u64,
}

/// Which versions of a view `delete` removes.
#[derive(Clone, Copy, Debug)]
enum Selection {
    All,
    Version(u32),
    Below(u32),
}

impl Selection {
    fn covers(self, version: u32) -> bool {
        match self {
            Selection::All => true,
            Selection::Version(v) => version == v,
            Selection::Below(v) => version < v,
        }
    }
}

/// Runs `snapshots ...`.
pub async fn run(connection: &Connection, command: &SnapshotCommand, out: &mut Out) -> Result<(), CliError> {
    let store = connect_migrated(connection).await?;
    let snapshots = PgSnapshotStore::new(&store);
    let views = snapshots.views().await?;
    match command {
        SnapshotCommand::List => list(&views, out),
        SnapshotCommand::Delete {
            view,
            version,
            below,
            yes,
        } => {
            let selection = match (version, below) {
                (Some(v), _) => Selection::Version(*v),
                (None, Some(v)) => Selection::Below(*v),
                (None, None) => Selection::All,
            };
            let chosen: Vec<&ViewSnapshots> = views
                .iter()
                .filter(|g| &g.view == view && selection.covers(g.view_version))
                .collect();
            let mut deleted = 0;
            if *yes && !chosen.is_empty() {
                deleted = match selection {
                    Selection::All => snapshots.delete_view(view).await?,
                    Selection::Version(v) => snapshots.delete_view_version(view, v).await?,
                    Selection::Below(v) => snapshots.delete_versions_below(view, v).await?,
                };
            }
            report(*yes, &chosen, deleted, out)
        }
        SnapshotCommand::Prune { yes } => {
            // The newest version of each view present in the table.
            let mut newest: BTreeMap<&str, u32> = BTreeMap::new();
            for group in &views {
                let at = newest.entry(group.view.as_str()).or_insert(group.view_version);
                *at = (*at).max(group.view_version);
            }
            let chosen: Vec<&ViewSnapshots> = views
                .iter()
                .filter(|g| newest.get(g.view.as_str()).is_some_and(|&n| g.view_version < n))
                .collect();
            let mut deleted = 0;
            if *yes {
                for (view, version) in &newest {
                    if chosen.iter().any(|g| g.view == *view) {
                        deleted += snapshots.delete_versions_below(view, *version).await?;
                    }
                }
            }
            report(*yes, &chosen, deleted, out)
        }
    }
}

fn group(g: &ViewSnapshots) -> Group {
    Group {
        view: g.view.clone(),
        view_version: g.view_version,
        snapshots: g.snapshots,
        payload_bytes: g.payload_bytes,
        largest_payload_bytes: g.largest_payload_bytes,
        oldest: rfc3339(g.oldest),
        newest: rfc3339(g.newest),
    }
}

fn list(views: &[ViewSnapshots], out: &mut Out) -> Result<(), CliError> {
    if out.json {
        return out.document(&ListReport {
            views: views.iter().map(group).collect(),
        });
    }
    if views.is_empty() {
        return out.text("no snapshots");
    }
    let mut table = Table::new(&[
        ("VIEW", Align::Left),
        ("VERSION", Align::Right),
        ("SNAPSHOTS", Align::Right),
        ("SIZE", Align::Right),
        ("LARGEST", Align::Right),
        ("OLDEST", Align::Left),
        ("NEWEST", Align::Left),
    ]);
    for g in views {
        table.row(vec![
            g.view.clone(),
            g.view_version.to_string(),
            g.snapshots.to_string(),
            bytes(g.payload_bytes),
            bytes(g.largest_payload_bytes),
            rfc3339(g.oldest),
            rfc3339(g.newest),
        ]);
    }
    out.table(&table)
}

/// Reports a deletion (`done`: `deleted` rows went) or a dry run.
fn report(done: bool, chosen: &[&ViewSnapshots], deleted: u64, out: &mut Out) -> Result<(), CliError> {
    // A dry run counts what is there now; a deletion what went.
    let snapshots = if done {
        deleted
    } else {
        chosen.iter().map(|g| g.snapshots).sum()
    };
    if out.json {
        return out.document(&DeleteReport {
            deleted: done,
            groups: chosen.iter().map(|g| group(g)).collect(),
            snapshots,
        });
    }
    if chosen.is_empty() {
        return out.text("no snapshots to delete");
    }
    let what = chosen
        .iter()
        .map(|g| format!("{} v{} ({})", g.view, g.view_version, g.snapshots))
        .collect::<Vec<_>>()
        .join(", ");
    if done {
        out.text(&format!("deleted {snapshots} snapshot(s): {what}"))
    } else {
        out.text(&format!(
            "would delete {snapshots} snapshot(s): {what} (pass --yes to delete)"
        ))
    }
}
