//! What needs no database: help, and refusing bad options before
//! connecting.

use assert_cmd::Command;
use predicates::str::contains;

fn eventcore() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_eventcore"));
    command.env_remove("DATABASE_URL").env_remove("EVENTCORE_SCHEMA");
    command
}

#[test]
fn help_lists_every_subcommand_and_the_exit_codes() {
    let mut assert = eventcore().arg("--help").assert().success();
    for command in [
        "migrate",
        "health",
        "stream",
        "tail",
        "subscriptions",
        "dead-letters",
        "snapshots",
        "--database-url",
        "--schema",
        "--json",
        "Exit codes",
    ] {
        assert = assert.stdout(contains(command));
    }
    eventcore()
        .args(["dead-letters", "--help"])
        .assert()
        .success()
        .stdout(contains("records the request"))
        .stdout(contains("replay"))
        .stdout(contains("delete"));
    eventcore()
        .args(["dead-letters", "replay", "--help"])
        .assert()
        .success()
        .stdout(contains("--position"))
        .stdout(contains("--wait"));
    eventcore()
        .args(["tail", "--help"])
        .assert()
        .success()
        .stdout(contains("--stream-prefix"))
        .stdout(contains("--once"));
}

#[test]
fn bad_options_are_refused_before_connecting() {
    eventcore()
        .arg("health")
        .assert()
        .code(2)
        .stderr(contains("no database URL: pass --database-url or set DATABASE_URL"));
    eventcore()
        .args([
            "--database-url",
            "postgres://127.0.0.1:1/x",
            "--schema",
            "Robert'); DROP",
            "health",
        ])
        .assert()
        .code(2)
        .stderr(contains("invalid schema name"));
    eventcore()
        .args(["--database-url", "postgres://127.0.0.1:1/x", "--timeout", "0", "health"])
        .assert()
        .code(2)
        .stderr(contains("--timeout"));
    eventcore().arg("no-such-command").assert().code(2);
}
