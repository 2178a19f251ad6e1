//! The `eventcore` binary against PostgreSQL: every subcommand, as tables
//! and as JSON. Each test seeds its own schema through the library, then
//! runs the binary (assert_cmd). Without a reachable PostgreSQL the tests
//! skip with a notice, except under `CI=true`, where they fail.

// Tests wait on the wall clock (a child process, the log settling).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod cli {
    pub mod common;
    mod dead_letters;
    mod health;
    mod migrate;
    mod retention;
    mod snapshots;
    mod stream;
    mod subscriptions;
    mod tail;
    mod usage;
}
