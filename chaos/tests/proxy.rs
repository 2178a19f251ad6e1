//! The proxy on its own: byte-exact forwarding, TLS refusal, and each
//! proxy fault against a tiny fake server speaking just enough of the
//! PostgreSQL framing; then a lost acknowledgement of a real COMMIT.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)] // real clocks and sockets

use eventcore_chaos::faults::{FaultCounters, FaultKind};
use eventcore_chaos::proxy::{Proxy, ProxyConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![tag];
    m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    m.extend_from_slice(body);
    m
}

fn cstrings(parts: &[&str]) -> Vec<u8> {
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(p.as_bytes());
        body.push(0);
    }
    body
}

async fn read_message(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let tag = stream.read_u8().await?;
    let len = stream.read_u32().await? as usize;
    let mut body = vec![0; len - 4];
    stream.read_exact(&mut body).await?;
    Ok((tag, body))
}

/// A fake server: takes the startup message, then echoes `d` messages and
/// answers every `S`ync or `Q`uery with DataRow, CommandComplete and
/// ReadyForQuery.
async fn fake_server() -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(len) = stream.read_u32().await else { return };
                let mut startup = vec![0; len as usize - 4];
                if stream.read_exact(&mut startup).await.is_err() {
                    return;
                }
                while let Ok((tag, body)) = read_message(&mut stream).await {
                    let reply = match tag {
                        b'd' => message(b'd', &body),
                        b'S' | b'Q' => [
                            message(b'D', &[0, 1, 0, 0, 0, 1, b'1']),
                            message(b'C', b"SELECT 1\0"),
                            message(b'Z', b"I"),
                        ]
                        .concat(),
                        b'X' => return,
                        _ => continue,
                    };
                    if stream.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn connect(proxy: &Proxy) -> TcpStream {
    let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
    // SSLRequest: the proxy refuses TLS itself.
    client
        .write_all(&[0, 0, 0, 8, 4, 210, 22, 47])
        .await
        .expect("ssl request");
    assert_eq!(client.read_u8().await.expect("ssl answer"), b'N');
    let startup = [&[0u8, 3, 0, 0][..], &cstrings(&["user", "postgres", ""])].concat();
    let mut m = (startup.len() as u32 + 4).to_be_bytes().to_vec();
    m.extend_from_slice(&startup);
    client.write_all(&m).await.expect("startup");
    client
}

async fn start(counters: &Arc<FaultCounters>) -> Proxy {
    let upstream = fake_server().await;
    let mut config = ProxyConfig::new(upstream, 1);
    config.half_open_hold = Duration::from_millis(300);
    Proxy::start(config, counters.clone()).await.expect("proxy")
}

fn append_request() -> Vec<u8> {
    [
        message(
            b'P',
            &[cstrings(&["s1", "SELECT * FROM \"x\".append($1)"]), vec![0, 0]].concat(),
        ),
        message(b'B', &[cstrings(&["", "s1"]), vec![0, 0, 0, 0, 0, 0]].concat()),
        message(b'E', &[0, 0, 0, 0, 0]),
        message(b'S', &[]),
    ]
    .concat()
}

#[tokio::test]
async fn forwards_messages_byte_for_byte() {
    let counters = Arc::new(FaultCounters::default());
    let proxy = start(&counters).await;
    let mut client = connect(&proxy).await;
    for size in [0usize, 1, 100, 70_000, 5] {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        client.write_all(&message(b'd', &body)).await.expect("send");
        let (tag, echoed) = read_message(&mut client).await.expect("echo");
        assert_eq!((tag, echoed), (b'd', body));
    }
    client.write_all(&append_request()).await.expect("append");
    let tags: Vec<u8> = [
        read_message(&mut client).await,
        read_message(&mut client).await,
        read_message(&mut client).await,
    ]
    .into_iter()
    .map(|m| m.expect("reply").0)
    .collect();
    assert_eq!(tags, b"DCZ");
    assert_eq!(counters.snapshot().injected(FaultKind::LostAck), 0);
}

#[tokio::test]
async fn a_lost_ack_resets_instead_of_answering_an_append() {
    let counters = Arc::new(FaultCounters::default());
    let proxy = start(&counters).await;
    let mut client = connect(&proxy).await;
    counters.arm(FaultKind::LostAck);
    client.write_all(&append_request()).await.expect("append");
    assert!(read_message(&mut client).await.is_err(), "the reply must not arrive");
    assert_eq!(counters.snapshot().injected(FaultKind::LostAck), 1);
}

#[tokio::test]
async fn a_plain_query_is_not_held_for_a_lost_ack() {
    let counters = Arc::new(FaultCounters::default());
    let proxy = start(&counters).await;
    let mut client = connect(&proxy).await;
    counters.arm(FaultKind::LostAck);
    client.write_all(&message(b'Q', b"SELECT 1\0")).await.expect("query");
    assert_eq!(read_message(&mut client).await.expect("reply").0, b'D');
    assert_eq!(counters.snapshot().injected(FaultKind::LostAck), 0);
    // A simple-query COMMIT is a commit: its reply is the one lost.
    client.write_all(&message(b'Q', b"COMMIT\0")).await.expect("commit");
    let mut got_ready = false;
    while let Ok((tag, _)) = read_message(&mut client).await {
        got_ready |= tag == b'Z' && counters.snapshot().injected(FaultKind::LostAck) == 0;
    }
    assert_eq!(counters.snapshot().injected(FaultKind::LostAck), 1);
    assert!(got_ready, "the first query's reply arrived whole");
}

#[tokio::test]
async fn mid_transaction_reset_forwards_execute_but_not_sync() {
    let counters = Arc::new(FaultCounters::default());
    let proxy = start(&counters).await;
    let mut client = connect(&proxy).await;
    counters.arm(FaultKind::ResetMidTransaction);
    client.write_all(&append_request()).await.expect("append");
    assert!(read_message(&mut client).await.is_err());
    assert_eq!(counters.snapshot().injected(FaultKind::ResetMidTransaction), 1);
}

#[tokio::test]
async fn reset_and_half_open_cut_the_connection() {
    let counters = Arc::new(FaultCounters::default());
    let proxy = start(&counters).await;
    for kind in [FaultKind::Reset, FaultKind::HalfOpen] {
        let mut client = connect(&proxy).await;
        counters.arm(kind);
        // Each message gives the armed fault a chance; it strikes within a
        // bounded number of them.
        let mut cut = false;
        for _ in 0..200 {
            if client.write_all(&message(b'd', b"ping")).await.is_err() {
                cut = true;
                break;
            }
            match tokio::time::timeout(Duration::from_secs(2), read_message(&mut client)).await {
                Ok(Ok(_)) => {}
                _ => {
                    cut = true;
                    break;
                }
            }
        }
        assert!(cut, "{kind} never cut the connection");
        assert_eq!(counters.snapshot().injected(kind), 1, "{kind}");
    }
}

#[tokio::test]
async fn latency_and_slow_reads_deliver_intact_replies() {
    let counters = Arc::new(FaultCounters::default());
    let proxy = start(&counters).await;
    let mut client = connect(&proxy).await;
    counters.arm(FaultKind::Latency);
    counters.arm(FaultKind::SlowRead);
    let body: Vec<u8> = (0..300).map(|i| i as u8).collect();
    for _ in 0..2 {
        client.write_all(&message(b'd', &body)).await.expect("send");
        assert_eq!(read_message(&mut client).await.expect("echo").1, body);
    }
    let report = counters.snapshot();
    assert_eq!(report.injected(FaultKind::Latency), 1);
    assert_eq!(report.injected(FaultKind::SlowRead), 1);
}

#[test]
fn refuses_a_non_loopback_upstream() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let config = ProxyConfig::new("192.0.2.1:5432".parse().expect("addr"), 1);
    let started = runtime.block_on(Proxy::start(config, Arc::new(FaultCounters::default())));
    assert!(started.is_err());
}

/// Against real PostgreSQL: a transaction whose COMMIT's answer is lost is
/// nevertheless committed — exactly the case the store's command ids exist
/// for.
#[tokio::test]
async fn a_real_commit_whose_answer_is_lost_is_committed() {
    use sqlx::Connection;
    let Some(direct) = eventcore_tests::postgres::fresh_store("proxy").await else {
        return;
    };
    let schema = direct.options().schema.clone();
    let table = format!("\"{schema}\".lost_ack");
    sqlx::query(&format!("CREATE TABLE {table} (n int)"))
        .execute(direct.pool())
        .await
        .expect("create");
    let url = direct.options().url.clone();
    let upstream = eventcore_chaos::run::upstream_of(&url).expect("loopback database");
    let counters = Arc::new(FaultCounters::default());
    let proxy = Proxy::start(ProxyConfig::new(upstream, 3), counters.clone())
        .await
        .expect("proxy");
    let proxied = eventcore_chaos::run::redirect(&url, proxy.addr(), &[]).expect("url");
    let mut conn = sqlx::PgConnection::connect(&proxied)
        .await
        .expect("connect through the proxy");
    let one: i32 = sqlx::query_scalar("SELECT 1")
        .fetch_one(&mut conn)
        .await
        .expect("select");
    assert_eq!(one, 1);
    let mut tx = conn.begin().await.expect("begin");
    sqlx::query(&format!("INSERT INTO {table} VALUES (1)"))
        .execute(&mut *tx)
        .await
        .expect("insert");
    counters.arm(FaultKind::LostAck);
    assert!(tx.commit().await.is_err(), "the client must not hear of the commit");
    assert_eq!(counters.snapshot().injected(FaultKind::LostAck), 1);
    let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(direct.pool())
        .await
        .expect("count");
    assert_eq!(rows, 1, "the commit happened");
    let _ = direct.drop_schema().await;
}
