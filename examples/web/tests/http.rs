//! The web service over real HTTP: each test starts it in-process on a
//! loopback port, on a PostgreSQL schema of its own, drives it with reqwest
//! (and a raw TCP client where a response must be lost), and stops it
//! gracefully.
//!
//! Needs PostgreSQL (`DATABASE_URL`); without one these tests pass without
//! checking anything, unless `CI=true`, where they fail.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use eventcore::CommandId;
use eventcore_postgres::{PgLeaseStore, PostgresStore};
use eventcore_tests::postgres::{database_url, fresh_store};
use eventcore_web_example::projection::PROJECTION;
use eventcore_web_example::{serve, Config, StartError};
use reqwest::{header::HeaderMap, Client, StatusCode};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// How long the balances read model may take to catch up.
const CATCH_UP: Duration = Duration::from_secs(20);

/// A service running in this process.
struct Running {
    address: String,
    client: Client,
    store: PostgresStore,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), StartError>>,
}

/// Starts the service on a fresh schema and a loopback port chosen by the
/// system; `None` when there is no database (and `CI` is not `true`).
async fn start(label: &str) -> Option<Running> {
    let store = fresh_store(label).await?;
    let config = Config::new(database_url())
        .schema(store.options().schema.clone())
        .max_connections(12);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let address = listener.local_addr().expect("the bound address").to_string();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, config, async {
        let _ = stopped.await;
    }));
    Some(Running {
        address,
        client: Client::new(),
        store,
        stop,
        task,
    })
}

/// What one request answered.
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    async fn post(&self, path: &str, key: Option<Uuid>, body: Value) -> Answer {
        let mut request = self.client.post(self.url(path)).json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key.to_string());
        }
        answer(request.send().await.expect("POST answered")).await
    }

    async fn get(&self, path: &str) -> Answer {
        answer(self.client.get(self.url(path)).send().await.expect("GET answered")).await
    }

    async fn open(&self, id: &str, initial: u64) -> Value {
        let answer = self
            .post("/accounts", None, json!({ "id": id, "initial": initial }))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "open {id}: {}", answer.text);
        answer.json()
    }

    /// Every event of account `id`, page by page.
    async fn events(&self, id: &str) -> Vec<Value> {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let page = self.get(&format!("/accounts/{id}/events?after={after}&limit=7")).await;
            assert_eq!(page.status, StatusCode::OK, "events of {id}: {}", page.text);
            let page = page.json();
            events.extend(page["events"].as_array().expect("an events array").iter().cloned());
            match page["next"].as_u64() {
                Some(next) => after = next,
                None => return events,
            }
        }
    }

    /// The balance once the read model is as of `position` at least.
    async fn balance_as_of(&self, id: &str, position: u64) -> u64 {
        eventually(&format!("the balance of {id} as of position {position}"), || async {
            let answer = self.get(&format!("/accounts/{id}")).await;
            if answer.status != StatusCode::OK {
                return None;
            }
            let body = answer.json();
            (body["as_of"].as_u64()? >= position).then(|| body["balance"].as_u64().expect("a balance"))
        })
        .await
    }

    /// Stops the server (graceful shutdown) and checks that it stopped
    /// cleanly and the projection released its lease.
    async fn stop(self) {
        let _ = self.stop.send(());
        let ended = tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("the service stops within 30 s of the shutdown signal");
        ended
            .expect("the service task did not panic")
            .expect("serve ends without error");
        let leases = PgLeaseStore::new(&self.store).list().await.expect("list the leases");
        let lease = leases
            .iter()
            .find(|lease| lease.name == PROJECTION)
            .expect("the projection took its lease");
        assert_eq!(lease.holder, None, "the projection released its lease on shutdown");
        let _ = self.store.drop_schema().await;
    }
}

async fn answer(response: reqwest::Response) -> Answer {
    Answer {
        status: response.status(),
        headers: response.headers().clone(),
        text: response.text().await.expect("a readable body"),
    }
}

/// Polls `probe` until it gives a value, failing after [`CATCH_UP`].
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + CATCH_UP;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not reached within {CATCH_UP:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A key of this test: distinct within the test's schema, never nil.
fn key(n: u128) -> Uuid {
    Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0000 + n)
}

/// The sum of an account's events, as the events say.
fn sum(events: &[Value]) -> i128 {
    events
        .iter()
        .map(|event| {
            let data = &event["data"];
            match event["event_type"].as_str() {
                Some("Opened") => i128::from(data["initial"].as_u64().expect("initial")),
                Some("Deposited") => i128::from(data["amount"].as_u64().expect("amount")),
                Some("Withdrawn") => -i128::from(data["amount"].as_u64().expect("amount")),
                other => panic!("unexpected event type {other:?}"),
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accounts_are_opened_credited_and_read_back_with_every_refusal_mapped() {
    let Some(service) = start("web_basics").await else {
        return;
    };
    let health = service.get("/health").await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text);
    assert_eq!(health.json()["database"]["status"], "ok", "{}", health.text);
    assert_eq!(health.json()["database"]["migrated"], true);
    assert_eq!(health.json()["projection"]["name"], PROJECTION);

    let opened = service
        .post("/accounts", None, json!({ "id": "alice", "initial": 100 }))
        .await;
    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.text);
    assert_eq!(opened.header("location"), Some("/accounts/alice"));
    assert_eq!(opened.json()["events"][0]["account"], "alice");
    assert_eq!(opened.json()["events"][0]["version"], 1);
    service.open("bob", 0).await;
    let deposited = service
        .post("/accounts/alice/deposits", None, json!({ "amount": 50 }))
        .await;
    assert_eq!(deposited.status, StatusCode::CREATED, "{}", deposited.text);
    let position = deposited.json()["position"].as_u64().expect("a position");
    // Read-your-writes: `?after=` waits until the read model has the deposit.
    let read = service.get(&format!("/accounts/alice?after={position}")).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.json()["balance"], 150, "100 opened + 50 deposited: {}", read.text);
    assert!(read.json()["as_of"].as_u64() >= Some(position), "{}", read.text);
    let ahead = service.get(&format!("/accounts/alice?after={}", position * 2)).await;
    assert_eq!(ahead.status, StatusCode::SERVICE_UNAVAILABLE, "{}", ahead.text);
    assert_eq!(ahead.header("retry-after"), Some("1"));
    assert_eq!(ahead.json()["kind"], "read_model_behind");

    let events = service.events("alice").await;
    let types: Vec<&str> = events.iter().filter_map(|e| e["event_type"].as_str()).collect();
    assert_eq!(types, ["Opened", "Deposited"]);
    assert_eq!(events[1]["data"], json!({ "amount": 50 }));
    assert_eq!(events[1]["position"].as_u64(), Some(position));
    assert_eq!(
        events[1]["metadata"]["command_id"],
        deposited.json()["command_id"],
        "the event carries the command id the POST answered with"
    );
    assert_eq!(
        events[1]["metadata"]["user"]["http.request"], "POST /accounts/alice/deposits {\"amount\":50}",
        "and the request it served"
    );

    // Refusals: the domain's, with its text, and the request's own.
    let cases = [
        (
            "/accounts",
            json!({ "id": "alice", "initial": 5 }),
            StatusCode::CONFLICT,
            "already open",
        ),
        (
            "/accounts/carol/deposits",
            json!({ "amount": 5 }),
            StatusCode::NOT_FOUND,
            "not open",
        ),
        (
            "/transfers",
            json!({ "from": "bob", "to": "alice", "amount": 1 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "holds 0, cannot send 1",
        ),
        (
            "/transfers",
            json!({ "from": "alice", "to": "alice", "amount": 1 }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "to itself",
        ),
        (
            "/accounts/alice/deposits",
            json!({ "amount": 0 }),
            StatusCode::BAD_REQUEST,
            "amount must be 1 to",
        ),
        (
            "/accounts/alice/deposits",
            json!({ "amount": -3 }),
            StatusCode::BAD_REQUEST,
            "invalid value",
        ),
        (
            "/accounts/alice/deposits",
            json!({ "amout": 3 }),
            StatusCode::BAD_REQUEST,
            "unknown field",
        ),
        (
            "/accounts",
            json!({ "id": "no spaces", "initial": 1 }),
            StatusCode::BAD_REQUEST,
            "is not 1 to 64",
        ),
    ];
    for (path, body, status, text) in cases {
        let answer = service.post(path, None, body.clone()).await;
        assert_eq!(answer.status, status, "POST {path} {body}: {}", answer.text);
        let error = answer.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            error.contains(text),
            "POST {path} {body}: `{error}` should say `{text}`"
        );
    }
    let bad_key = service
        .client
        .post(service.url("/accounts/alice/deposits"))
        .header("Idempotency-Key", "retry-1")
        .json(&json!({ "amount": 5 }))
        .send()
        .await
        .expect("answered");
    let bad_key = answer(bad_key).await;
    assert_eq!(bad_key.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_key.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("must be a UUID"),
        "{}",
        bad_key.text
    );

    assert_eq!(service.get("/accounts/carol").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        service.get("/accounts/carol/events").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        service.get("/accounts/alice/events?limit=0").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(service.events("alice").await.len(), 2, "no refusal wrote anything");
    assert_eq!(service.balance_as_of("alice", position).await, 150);

    let metrics = service.get("/metrics").await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(metrics
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/plain"));
    // The library's counters, recorded by the executor: the deposit that
    // committed and the refusals, each by command type and outcome.
    let counted = |command: &str, outcome: &str| {
        metrics.text.lines().any(|line| {
            line.starts_with("eventcore_commands_total{")
                && line.contains(&format!("command=\"{command}\""))
                && line.contains(&format!("outcome=\"{outcome}\""))
        })
    };
    assert!(
        counted("Deposit", "ok"),
        "a committed deposit is counted: {}",
        metrics.text
    );
    assert!(
        counted("OpenAccount", "rejected"),
        "a refused opening is counted: {}",
        metrics.text
    );
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_post_retried_after_its_response_was_lost_is_applied_once_and_answered_as_before() {
    let Some(service) = start("web_retry").await else {
        return;
    };
    service.open("alice", 0).await;
    let deposit = |amount: u64| json!({ "amount": amount });

    // 1. The response is lost after the commit: the client sent the request
    //    and hung up without reading the answer.
    let lost = key(1);
    let mut connection = send_raw(&service.address, "/accounts/alice/deposits", lost, &deposit(10)).await;
    let id = CommandId::from_uuid(lost);
    let committed = eventually("the first send commits", || async {
        let events = service.store.command_events(id).await.expect("look the key up");
        (!events.is_empty()).then_some(events)
    })
    .await;
    let _ = connection.shutdown().await;
    drop(connection);
    let retried = service.post("/accounts/alice/deposits", Some(lost), deposit(10)).await;
    assert_eq!(retried.status, StatusCode::CREATED, "{}", retried.text);
    assert_eq!(retried.header("idempotent-replayed"), Some("true"));
    assert_eq!(retried.json()["command_id"], lost.to_string());
    assert_eq!(
        retried.json()["events"],
        json!([{ "account": "alice", "version": 2, "position": committed[0].position.get() }]),
        "the retry is answered with the first send's commit"
    );

    // 2. The client hangs up at once: the first send may be cut off before
    //    or after its commit; retrying settles it either way.
    let cut = key(2);
    drop(send_raw(&service.address, "/accounts/alice/deposits", cut, &deposit(100)).await);
    let settled = service.post("/accounts/alice/deposits", Some(cut), deposit(100)).await;
    assert_eq!(settled.status, StatusCode::CREATED, "{}", settled.text);

    // 3. A response that did arrive, asked for again: byte for byte the same.
    let twice = key(3);
    let first = service
        .post("/accounts/alice/deposits", Some(twice), deposit(1_000))
        .await;
    let second = service
        .post("/accounts/alice/deposits", Some(twice), deposit(1_000))
        .await;
    assert_eq!(
        (first.status, second.status),
        (StatusCode::CREATED, StatusCode::CREATED)
    );
    assert_eq!(first.text, second.text, "the same body");
    assert_eq!(first.header("idempotent-replayed"), None);
    assert_eq!(second.header("idempotent-replayed"), Some("true"));

    // 4. Opening an account, which would be refused if decided again
    //    ("already open"): its retry gets the original answer, not a 409.
    let open = key(4);
    let body = json!({ "id": "bob", "initial": 7 });
    let first = service.post("/accounts", Some(open), body.clone()).await;
    let second = service.post("/accounts", Some(open), body).await;
    assert_eq!(
        (first.status, second.status),
        (StatusCode::CREATED, StatusCode::CREATED),
        "{}",
        second.text
    );
    assert_eq!(first.text, second.text);

    // 5. Eight copies of one request at once: one commit, eight equal answers.
    let racing = key(5);
    let copies: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (service.client.clone(), service.url("/accounts/alice/deposits"));
            tokio::spawn(async move {
                let sent = client
                    .post(url)
                    .header("Idempotency-Key", racing.to_string())
                    .json(&json!({ "amount": 10_000 }))
                    .send()
                    .await
                    .expect("answered");
                answer(sent).await
            })
        })
        .collect();
    let mut bodies = Vec::new();
    for copy in copies {
        let answer = copy.await.expect("the client task");
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        bodies.push(answer.json());
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "every copy answered alike: {bodies:?}"
    );

    // Each key applied exactly once.
    let events = service.events("alice").await;
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for event in events.iter().skip(1) {
        let key = event["metadata"]["command_id"]
            .as_str()
            .expect("a command id")
            .to_owned();
        per_key
            .entry(key)
            .or_default()
            .push(event["data"]["amount"].as_u64().expect("amount"));
    }
    let expected: BTreeMap<String, Vec<u64>> = [(lost, 10), (cut, 100), (twice, 1_000), (racing, 10_000)]
        .into_iter()
        .map(|(k, amount)| (k.to_string(), vec![amount]))
        .collect();
    assert_eq!(per_key, expected, "one deposit per key");
    let last = events.last().and_then(|e| e["position"].as_u64()).expect("a position");
    assert_eq!(service.balance_as_of("alice", last).await, 11_110);
    service.stop().await;
}

/// Sends a POST on a connection of its own and returns the connection
/// unread.
async fn send_raw(address: &str, path: &str, key: Uuid, body: &Value) -> TcpStream {
    let body = body.to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Idempotency-Key: {key}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(address).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send the request");
    stream.flush().await.expect("flush");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_reused_for_a_different_request_is_refused_and_applies_nothing() {
    let Some(service) = start("web_key_reuse").await else {
        return;
    };
    service.open("alice", 0).await;
    service.open("bob", 0).await;
    let reused = key(1);
    let first = service
        .post("/accounts/alice/deposits", Some(reused), json!({ "amount": 10 }))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let others = [
        ("/accounts/alice/deposits", json!({ "amount": 20 })),
        ("/accounts/bob/deposits", json!({ "amount": 10 })),
        ("/transfers", json!({ "from": "alice", "to": "bob", "amount": 1 })),
        // One the domain would refuse (no such account): still the key's fault.
        ("/accounts/nobody/deposits", json!({ "amount": 10 })),
    ];
    for (path, body) in others {
        let answer = service.post(path, Some(reused), body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {body}: {}",
            answer.text
        );
        assert_eq!(answer.json()["kind"], "idempotency_key_reused");
        assert!(
            answer.json()["error"]
                .as_str()
                .unwrap_or_default()
                .contains("POST /accounts/alice/deposits {\"amount\":10}"),
            "the error names the request the key was used for: {}",
            answer.text
        );
    }
    assert_eq!(service.events("alice").await.len(), 2, "opened, one deposit");
    assert_eq!(service.events("bob").await.len(), 1, "opened only");
    service.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_conserve_money_and_every_balance_is_its_events_sum() {
    let Some(service) = start("web_transfers").await else {
        return;
    };
    const ACCOUNTS: u64 = 5;
    const INITIAL: u64 = 1_000;
    for n in 0..ACCOUNTS {
        service.open(&format!("acct-{n}"), INITIAL).await;
    }
    let clients: Vec<_> = (0..8u64)
        .map(|client| {
            let (http, url) = (service.client.clone(), service.url("/transfers"));
            tokio::spawn(async move {
                let (mut committed, mut refused) = (0u32, 0u32);
                for i in 0..25u64 {
                    let from = (client * 3 + i) % ACCOUNTS;
                    let to = (from + 1 + i % (ACCOUNTS - 1)) % ACCOUNTS;
                    let body = json!({ "from": format!("acct-{from}"), "to": format!("acct-{to}"), "amount": 1 + (client * 37 + i * 53) % 400 });
                    let mut request = http.post(&url).json(&body);
                    if i % 2 == 0 {
                        // Half of them under a key, which takes the other path.
                        request = request.header("Idempotency-Key", key(u128::from(client * 1_000 + i)).to_string());
                    }
                    let answer = answer(request.send().await.expect("answered")).await;
                    match answer.status {
                        StatusCode::CREATED => committed += 1,
                        StatusCode::UNPROCESSABLE_ENTITY => {
                            assert!(answer.text.contains("cannot send"), "{}", answer.text);
                            refused += 1;
                        }
                        other => panic!("transfer {body}: {other} {}", answer.text),
                    }
                }
                (committed, refused)
            })
        })
        .collect();
    let (mut committed, mut refused) = (0, 0);
    for client in clients {
        let (c, r) = client.await.expect("a client task");
        committed += c;
        refused += r;
    }
    assert_eq!(committed + refused, 200);
    assert!(
        committed > 100,
        "most transfers commit: {committed} did, {refused} were refused"
    );

    let mut total = 0;
    let mut withdrawals = 0;
    for n in 0..ACCOUNTS {
        let id = format!("acct-{n}");
        let events = service.events(&id).await;
        withdrawals += events.iter().filter(|e| e["event_type"] == "Withdrawn").count();
        let from_events = u64::try_from(sum(&events)).expect("no balance below zero");
        let last = events.last().and_then(|e| e["position"].as_u64()).expect("a position");
        let balance = service.balance_as_of(&id, last).await;
        assert_eq!(
            balance, from_events,
            "{id}: the read model equals the sum of its events"
        );
        total += balance;
    }
    assert_eq!(withdrawals, committed as usize, "one withdrawal per committed transfer");
    assert_eq!(total, ACCOUNTS * INITIAL, "money is conserved");
    service.stop().await;
}
