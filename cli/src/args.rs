//! The command line: every subcommand, option and its help text (clap).

use clap::{Args, Parser, Subcommand};

/// How the process ends, listed in `--help`.
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  the operation failed (a database error, bad data)
  2  bad usage (unknown option, invalid stream id, a command this tool cannot run)
  3  cannot connect to PostgreSQL
  4  unhealthy: the schema is not migrated (or not to this version), or `health` found a problem
  5  not found (a stream with no events)
  6  `dead-letters replay --wait`: letters still parked when the time ran out";

/// Operate an EventCore PostgreSQL store: migrate its schema, check its
/// health, read streams, follow the global log, inspect subscriptions,
/// dead letters and view snapshots, and run retention.
#[derive(Debug, Parser)]
#[command(name = "eventcore", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Where the store is.
    #[command(flatten)]
    pub connection: Connection,
    /// Print one JSON document (JSON lines for `tail`) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Connection options, accepted before or after the subcommand.
#[derive(Debug, Args)]
pub struct Connection {
    /// PostgreSQL connection URL, e.g. postgres://user@host:5432/db.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
    /// The store's schema [default: the store's default, `eventcore`].
    #[arg(long, env = "EVENTCORE_SCHEMA", global = true)]
    pub schema: Option<String>,
    /// Seconds to wait for the database: to connect, and for each operation.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, global = true)]
    pub timeout: u64,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or upgrade the schema: the event tables, the subscription
    /// tables and the subscribers' notify trigger (or only check them).
    Migrate(MigrateArgs),
    /// Check that the database answers and the schema is migrated to this
    /// version; prints the schema version, the last global position and
    /// the server version. Exits non-zero when unhealthy.
    Health,
    /// Print the events of one stream, with their metadata.
    Stream(StreamArgs),
    /// Follow the global log: print events as they are committed.
    Tail(TailArgs),
    /// Every subscription and projection: checkpoint, lag, lease holder,
    /// parked events.
    Subscriptions(SubscriptionsArgs),
    /// Parked poison events: list them, ask for a replay, delete those
    /// dealt with.
    ///
    /// A replay runs each parked event through the subscription's own
    /// handler, which lives in your service: `replay` records the request
    /// in the store, and the service's running subscription (its `Runner`)
    /// replays the letters between batches, within a poll interval, and
    /// removes each one it handles; a letter that fails again stays parked
    /// with its new cause. `replay --wait SECS` waits for that. `list`
    /// shows which letters have a replay pending (with `--json`, each event
    /// whole); `delete` removes letters dealt with otherwise.
    #[command(subcommand)]
    DeadLetters(DeadLetterCommand),
    /// Persisted view snapshots: list them per view and version, delete
    /// a view's snapshots or those of its old versions.
    #[command(subcommand)]
    Snapshots(SnapshotCommand),
    /// Retention: physically remove events of one stream category (a
    /// stream-id prefix) past a maximum age or count, or of tombstoned
    /// streams. Run it as the schema owner or a maintenance role with
    /// DELETE on `events`; readers are told what was removed.
    #[command(subcommand)]
    Retention(RetentionCommand),
}

/// `retention ...`.
#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Remove what one category's policy allows now, in batches of one
    /// transaction each (or, with --dry-run, only print it).
    Run(RetentionArgs),
}

/// `retention run`.
#[derive(Debug, Args)]
pub struct RetentionArgs {
    /// The category: streams whose id starts with this.
    #[arg(long, value_name = "PREFIX")]
    pub category: String,
    /// Remove events older than this (e.g. 90d, 12h; units s, m, h, d),
    /// measured by the time their command decided.
    #[arg(long, value_name = "AGE")]
    pub max_age: Option<crate::commands::Age>,
    /// Keep only the newest N events of each stream.
    #[arg(long, value_name = "N")]
    pub max_count: Option<u64>,
    /// Remove tombstoned streams whole (they stay tombstoned).
    #[arg(long)]
    pub tombstoned: bool,
    /// With --tombstoned: only once the tombstone is this old.
    #[arg(long, value_name = "AGE", requires = "tombstoned")]
    pub tombstone_grace: Option<crate::commands::Age>,
    /// Copy the events to `events_archive` before removing them.
    #[arg(long)]
    pub archive: bool,
    /// Remove nothing; print what would be removed.
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many events removed per transaction.
    #[arg(long, value_name = "N")]
    pub batch_size: Option<u32>,
}

/// `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Change nothing: check that every migration of this version is
    /// applied (and the notify trigger installed), as an application role
    /// without DDL privileges does. Exits 4 when not.
    #[arg(long)]
    pub verify: bool,
    /// Leave out the notify trigger (it costs every append a little; only
    /// subscribers need it, and they fall back to polling without it).
    #[arg(long)]
    pub no_notify_trigger: bool,
}

/// `stream`.
#[derive(Debug, Args)]
pub struct StreamArgs {
    /// The stream id.
    pub id: String,
    /// Print only the events after this stream version.
    #[arg(long, value_name = "VERSION", default_value_t = 0)]
    pub after: u64,
    /// Print at most this many events.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

/// `tail`.
#[derive(Debug, Args)]
pub struct TailArgs {
    /// Start after this global position (0: the whole log). Default: the
    /// end of the log, so that only events committed from now on print.
    #[arg(long, value_name = "POSITION")]
    pub from: Option<u64>,
    /// Only events of this stored type (repeat for several).
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only events of streams whose id starts with this.
    #[arg(long, value_name = "PREFIX")]
    pub stream_prefix: Option<String>,
    /// Stop after printing this many events.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Print what is committed now and stop, instead of following.
    #[arg(long)]
    pub once: bool,
    /// How often to look for new events while following, in milliseconds
    /// (a notification, when the notify trigger is installed, wakes it
    /// sooner).
    #[arg(long, value_name = "MS", default_value_t = 500)]
    pub poll_ms: u64,
}

/// `subscriptions`.
#[derive(Debug, Args)]
pub struct SubscriptionsArgs {
    /// Count at most this many events behind each checkpoint.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub count_limit: u64,
}

/// `dead-letters ...`.
#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// The letters one subscription parked, oldest position first.
    List {
        /// The subscription (or projection) name.
        subscription: String,
    },
    /// Delete letters of one subscription (those you have dealt with).
    /// Without --yes, only prints what it would delete.
    Delete {
        /// The subscription (or projection) name.
        subscription: String,
        /// The global position of a letter to delete (repeat for several).
        #[arg(long = "position", value_name = "POSITION", required_unless_present = "all")]
        positions: Vec<u64>,
        /// Delete every letter of the subscription.
        #[arg(long, conflicts_with = "positions")]
        all: bool,
        /// Really delete.
        #[arg(long)]
        yes: bool,
    },
    /// Ask the running service to replay letters of one subscription
    /// through its handler (all of them, or those at --position). Records
    /// the request and prints what was requested; the subscription's
    /// runner replays them within a poll interval and removes each one it
    /// handles. Nothing happens while no instance of the subscription runs.
    Replay {
        /// The subscription (or projection) name.
        subscription: String,
        /// The global position of a letter to replay (repeat for several).
        /// Default: every letter of the subscription.
        #[arg(long = "position", value_name = "POSITION")]
        positions: Vec<u64>,
        /// Wait up to this many seconds for the replay: exit 0 once every
        /// requested letter is replayed, 1 if one failed again, 6 if some
        /// are still waiting (is the service running?).
        #[arg(long, value_name = "SECS")]
        wait: Option<u64>,
    },
}

/// `snapshots ...`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Snapshots per view name and view version: count, payload sizes,
    /// when taken.
    List,
    /// Delete the snapshots of one view (every version, one version, or
    /// versions below one). Views fold from events again where a snapshot
    /// is gone. Without --yes, only prints what it would delete.
    Delete {
        /// The view's name (`View::NAME`).
        view: String,
        /// Only this view version.
        #[arg(long, value_name = "VERSION", conflicts_with = "below")]
        version: Option<u32>,
        /// Only versions below this one (those an older release wrote).
        #[arg(long, value_name = "VERSION")]
        below: Option<u32>,
        /// Really delete.
        #[arg(long)]
        yes: bool,
    },
    /// For every view, delete the snapshots of versions below its newest
    /// one (never read again once the view's fold changed). Without --yes,
    /// only prints what it would delete.
    Prune {
        /// Really delete.
        #[arg(long)]
        yes: bool,
    },
}
