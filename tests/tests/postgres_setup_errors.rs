//! `SetupError` prints each cause once in a `{:#}` chain: its own message
//! says what failed, and the cause is its `source()` (never repeated in its
//! message), down to the driver's own text.

use eventcore_postgres::{PostgresOptions, PostgresStore, SetupError};
use std::error::Error;
use std::time::Duration;

/// The chain joined by `": "`, failing if a message contains its source's.
/// Stops below the first sqlx error (sqlx repeats its own sources).
fn chain_without_repeats(error: &(dyn Error + 'static)) -> String {
    let mut chain = error.to_string();
    let mut outer = error;
    while let Some(inner) = outer.source() {
        let (outer_text, inner_text) = (outer.to_string(), inner.to_string());
        assert!(
            !outer_text.contains(&inner_text),
            "`{outer_text}` repeats its source `{inner_text}`"
        );
        chain.push_str(": ");
        chain.push_str(&inner_text);
        if inner.downcast_ref::<sqlx::Error>().is_some() {
            break;
        }
        outer = inner;
    }
    chain
}

#[test]
fn an_unparsable_url_prints_sqlx_s_reason_once() {
    let error = PostgresOptions::new("postgres://127.0.0.1:not-a-port/db")
        .connect_options()
        .expect_err("the port is not a number");
    assert!(matches!(error, SetupError::InvalidUrl(_)), "{error:?}");
    assert_eq!(error.to_string(), "invalid connection URL");
    let chain = chain_without_repeats(&error);
    assert!(
        chain.len() > "invalid connection URL: ".len(),
        "the reason is in the chain: {chain}"
    );
}

#[tokio::test]
async fn a_refused_connection_prints_the_cause_once() {
    // Port 1 on loopback: nothing listens there.
    let error = PostgresStore::connect_with(
        PostgresOptions::new("postgres://postgres@127.0.0.1:1/postgres").connect_timeout(Duration::from_secs(2)),
    )
    .await
    .expect_err("nothing listens on port 1");
    assert!(matches!(error, SetupError::Connect(_)), "{error:?}");
    assert_eq!(error.to_string(), "cannot connect");
    let chain = chain_without_repeats(&error);
    assert!(
        chain.to_lowercase().contains("refused"),
        "the operating system's reason is in the chain: {chain}"
    );
    assert_eq!(chain.matches("cannot connect").count(), 1, "{chain}");
}

#[test]
fn option_errors_carry_their_reason_in_their_own_message() {
    let error = PostgresOptions::new("postgres://localhost/db")
        .max_connections(2)
        .min_connections(3)
        .validate()
        .expect_err("min above max");
    assert_eq!(
        error.to_string(),
        "invalid option min_connections: 3 is more than max_connections (2)"
    );
    assert!(error.source().is_none());
    let error = "on".parse::<eventcore_postgres::SslMode>().expect_err("not a mode");
    assert!(
        error
            .to_string()
            .contains("disable, prefer, require, verify-ca, verify-full"),
        "{error}"
    );
}
