//! TLS to PostgreSQL, honouring `sslmode` (from the URL or from
//! `PostgresOptions::ssl_mode`), against private servers started by each
//! test (`eventcore_chaos::private_postgres`) with a throwaway certificate
//! authority and server certificate generated here (rcgen). The shared
//! cluster is never touched.
//!
//! The server certificate names `localhost` only, so connecting to
//! `127.0.0.1` tells whether the host name is checked.
//!
//! Needs `initdb` (`/usr/lib/postgresql/<version>/bin` or `EVENTCORE_PG_BIN`);
//! without it each case prints a skip notice and passes, unless `CI=true`,
//! where it fails.

use eventcore::{ExpectedVersion, StoreError};
use eventcore_chaos::private_postgres::{PrivatePostgres, ServerSetup};
use eventcore_postgres::{PostgresOptions, PostgresStore, SetupError, SslMode};
use eventcore_tests::conformance::{append_to, read, stream};
use eventcore_tokio::EventStore;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use std::path::PathBuf;

/// A certificate authority and a server certificate it signed.
struct Pki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

/// A fresh CA named `ca_name`, and a certificate for `localhost` signed by it.
fn pki(ca_name: &str) -> Pki {
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("a self-signed CA");
    let server_key = KeyPair::generate().expect("a server key");
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).expect("server parameters");
    server.distinguished_name.push(DnType::CommonName, "localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server
        .signed_by(&server_key, &ca_cert, &ca_key)
        .expect("a server certificate");
    Pki {
        ca_pem: ca_cert.pem(),
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
    }
}

/// A PEM file that lives as long as the value.
struct PemFile(PathBuf);

impl PemFile {
    fn new(label: &str, pem: &str) -> PemFile {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("eventcore-tls-{}-{n}-{label}.pem", std::process::id()));
        std::fs::write(&path, pem).expect("writing a PEM file");
        PemFile(path)
    }
}

impl Drop for PemFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A private server configured by `setup`; `None` (after a notice) when
/// none can be started and `CI` is not `true`.
fn server(setup: ServerSetup) -> Option<PrivatePostgres> {
    match PrivatePostgres::start_with(&setup) {
        Ok(server) => Some(server),
        Err(error) if eventcore_tests::postgres::required() => {
            panic!("CI=true but a private PostgreSQL could not be started: {error}")
        }
        Err(error) => {
            eprintln!("\n*** SKIPPED: a private PostgreSQL could not be started: {error}\n");
            None
        }
    }
}

/// A server with TLS on, and the CA that signed its certificate.
fn tls_server(hba: Option<&str>) -> Option<(PrivatePostgres, Pki)> {
    let pki = pki("eventcore test CA");
    let mut setup = ServerSetup::new().tls(pki.server_cert_pem.as_bytes(), pki.server_key_pem.as_bytes());
    if let Some(hba) = hba {
        setup = setup.hba(hba);
    }
    Some((server(setup)?, pki))
}

/// `postgres://postgres@<host>:<port>/postgres<query>`.
fn url(server: &PrivatePostgres, host: &str, query: &str) -> String {
    format!("postgres://postgres@{host}:{}/postgres{query}", server.port())
}

/// Connects with `options` (a small pool, a unique schema).
async fn connect(options: PostgresOptions) -> Result<PostgresStore, SetupError> {
    PostgresStore::connect_with(options.max_connections(2).schema("tls_test")).await
}

/// What the server says about the session's encryption.
async fn encrypted(store: &PostgresStore) -> bool {
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .expect("pg_stat_ssl answers")
}

/// The `SetupError::Tls` of a refused connection, or a panic saying what
/// came instead.
fn tls_error(result: Result<PostgresStore, SetupError>, what: &str) -> (SslMode, String, String) {
    match result {
        Err(error @ SetupError::Tls { .. }) => {
            let source = std::error::Error::source(&error)
                .map(ToString::to_string)
                .unwrap_or_default();
            assert!(
                !error.to_string().contains(&source),
                "the message does not repeat its source: {error}"
            );
            let chain = format!("{:#}", ErrorChain(&error));
            let SetupError::Tls { ssl_mode, reason, .. } = error else {
                unreachable!()
            };
            (ssl_mode, reason, chain)
        }
        Err(other) => panic!("{what}: expected SetupError::Tls, got {other:?}"),
        Ok(_) => panic!("{what}: expected SetupError::Tls, but it connected"),
    }
}

/// `error: source: source…`, as an error reporter prints it.
struct ErrorChain<'a>(&'a dyn std::error::Error);

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(inner) = source {
            write!(f, ": {inner}")?;
            source = inner.source();
        }
        Ok(())
    }
}

#[tokio::test]
async fn sslmode_require_encrypts_the_session_whether_from_the_url_or_the_options() {
    let Some((server, _pki)) = tls_server(None) else { return };

    let from_url = connect(PostgresOptions::new(url(&server, "127.0.0.1", "?sslmode=require")))
        .await
        .expect("sslmode=require in the URL connects to a TLS server");
    assert!(encrypted(&from_url).await, "the server must see an encrypted session");

    let from_options = connect(PostgresOptions::new(url(&server, "127.0.0.1", "")).ssl_mode(SslMode::Require))
        .await
        .expect("ssl_mode(Require) connects to a TLS server");
    assert!(encrypted(&from_options).await);

    // The option overrides the URL, both ways.
    let overridden =
        connect(PostgresOptions::new(url(&server, "127.0.0.1", "?sslmode=require")).ssl_mode(SslMode::Disable))
            .await
            .expect("sslmode=disable connects where the server allows it");
    assert!(!encrypted(&overridden).await, "disable must not encrypt");

    let preferred = connect(PostgresOptions::new(url(&server, "127.0.0.1", "?sslmode=prefer")))
        .await
        .expect("prefer connects");
    assert!(encrypted(&preferred).await, "prefer takes the TLS the server offers");
}

#[tokio::test]
async fn verify_full_trusts_the_given_ca_and_store_operations_run_over_tls() {
    let Some((server, pki)) = tls_server(None) else { return };
    let ca = PemFile::new("ca", &pki.ca_pem);

    let store = connect(
        PostgresOptions::new(url(&server, "localhost", ""))
            .ssl_mode(SslMode::VerifyFull)
            .ssl_root_cert(&ca.0),
    )
    .await
    .expect("verify-full with the CA that signed the certificate connects");
    assert!(encrypted(&store).await);
    store.migrate().await.expect("migrating over TLS (its own connection)");

    let account = stream("tls-account");
    let receipt = store
        .append(&append_to(&account, ExpectedVersion::NoStream, 3, 1))
        .await
        .expect("an append over TLS commits");
    assert_eq!(receipt.streams[0].last_version.get(), 3);
    let slices = read(&store, std::slice::from_ref(&account)).await;
    assert_eq!(slices[0].events.len(), 3, "the read over TLS returns what was appended");
    assert_eq!(slices[0].head.get(), 3);

    // The same from the URL's parameters.
    let query = format!("?sslmode=verify-full&sslrootcert={}", ca.0.display());
    let from_url = connect(PostgresOptions::new(url(&server, "localhost", &query)))
        .await
        .expect("sslmode=verify-full&sslrootcert=… in the URL connects");
    assert!(encrypted(&from_url).await);
}

#[tokio::test]
async fn verify_modes_refuse_an_untrusted_certificate_with_a_typed_error() {
    let Some((server, _pki)) = tls_server(None) else { return };
    // Another CA, by another name: the chain cannot be built.
    let unrelated = PemFile::new("unrelated-ca", &pki("another CA").ca_pem);
    // Another CA by the same name: the signature does not verify.
    let impostor = PemFile::new("impostor-ca", &pki("eventcore test CA").ca_pem);
    for (ca, cause) in [(&unrelated, "UnknownIssuer"), (&impostor, "BadSignature")] {
        for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
            let result = connect(
                PostgresOptions::new(url(&server, "localhost", ""))
                    .ssl_mode(mode)
                    .ssl_root_cert(&ca.0),
            )
            .await;
            let (ssl_mode, reason, chain) = tls_error(result, &format!("{mode} with another CA"));
            assert_eq!(ssl_mode, mode);
            assert!(reason.contains("does not chain to a trusted root"), "{reason}: {chain}");
            assert!(chain.starts_with(&format!("TLS under sslmode={mode}: ")), "{chain}");
            assert!(
                chain.contains(cause),
                "the source names rustls's reason ({cause}): {chain}"
            );
        }
    }
    // `require` does not check the certificate: it connects.
    let require = connect(PostgresOptions::new(url(&server, "localhost", "")).ssl_mode(SslMode::Require))
        .await
        .expect("require accepts any certificate");
    assert!(encrypted(&require).await);
}

#[tokio::test]
async fn verify_full_checks_the_host_name() {
    let Some((server, pki)) = tls_server(None) else { return };
    let ca = PemFile::new("ca", &pki.ca_pem);
    // The certificate names `localhost`, not `127.0.0.1`.
    let result = connect(
        PostgresOptions::new(url(&server, "127.0.0.1", ""))
            .ssl_mode(SslMode::VerifyFull)
            .ssl_root_cert(&ca.0),
    )
    .await;
    let (_, reason, chain) = tls_error(result, "verify-full to a host the certificate does not name");
    assert!(reason.contains("does not name the host"), "{reason}");
    assert!(chain.contains("not valid for name"), "{chain}");

    let store = connect(
        PostgresOptions::new(url(&server, "localhost", ""))
            .ssl_mode(SslMode::VerifyCa)
            .ssl_root_cert(&ca.0),
    )
    .await
    .expect("verify-ca with the right CA connects to the host the certificate names");
    assert!(encrypted(&store).await);

    // A known limitation, pinned so that it is noticed when it goes away:
    // with sqlx 0.8 and rustls >= 0.23.24, verify-ca checks the host name
    // too (sqlx issue #3793, fixed after 0.8.6), so it is as strict as
    // verify-full, never weaker. docs/postgres.md, "TLS", says so.
    let result = connect(
        PostgresOptions::new(url(&server, "127.0.0.1", ""))
            .ssl_mode(SslMode::VerifyCa)
            .ssl_root_cert(&ca.0),
    )
    .await;
    let (_, reason, _) = tls_error(result, "verify-ca to a host the certificate does not name (sqlx #3793)");
    assert!(reason.contains("does not name the host"), "{reason}");
}

#[tokio::test]
async fn a_server_without_tls_refuses_sslmode_require_with_a_typed_error() {
    let Some(server) = server(ServerSetup::new()) else {
        return;
    };
    for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
        let result = connect(PostgresOptions::new(url(&server, "127.0.0.1", "")).ssl_mode(mode)).await;
        let (ssl_mode, reason, chain) = tls_error(result, &format!("{mode} against a server without TLS"));
        assert_eq!(ssl_mode, mode);
        assert!(reason.contains("offers no TLS"), "{reason}");
        assert!(chain.contains("server does not support TLS"), "{chain}");
    }
    // `prefer` (the default) falls back to a plain session.
    let plain = connect(PostgresOptions::new(url(&server, "127.0.0.1", "")))
        .await
        .expect("prefer connects without TLS");
    assert!(!encrypted(&plain).await);
}

#[tokio::test]
async fn a_hostssl_only_server_refuses_sslmode_disable_with_a_typed_error() {
    let Some((server, _pki)) = tls_server(Some("hostssl all all 127.0.0.1/32 trust")) else {
        return;
    };
    let result = connect(PostgresOptions::new(url(&server, "127.0.0.1", "?sslmode=disable"))).await;
    let (ssl_mode, reason, chain) = tls_error(result, "disable against hostssl only");
    assert_eq!(ssl_mode, SslMode::Disable);
    assert!(reason.contains("accepts only encrypted connections"), "{reason}");
    assert!(
        chain.contains("no encryption"),
        "the source is the server's refusal: {chain}"
    );

    let store = connect(PostgresOptions::new(url(&server, "127.0.0.1", "?sslmode=require")))
        .await
        .expect("require connects to a hostssl-only server");
    assert!(encrypted(&store).await);
    // A connection the pool opens later is encrypted as well.
    store.migrate().await.expect("migrating (its own connection) over TLS");
    let account = stream("hostssl");
    store
        .append(&append_to(&account, ExpectedVersion::NoStream, 1, 2))
        .await
        .map_err(|e: StoreError| e.to_string())
        .expect("an append over TLS commits");
}
