//! Shared by the relay's tests: finding NATS (fail under `CI=true`, loud
//! skip otherwise), one JetStream stream per test, a private `nats-server`
//! for the restart fault, appending a workload, and reading a JetStream
//! stream back to compare it with the log.
#![allow(dead_code, clippy::disallowed_methods)] // test support: real clocks are fine here

use async_nats::jetstream::{self, stream};
use eventcore::{
    AppendRequest, CommandId, EventId, EventMetadata, EventType, ExpectedVersion, GlobalPosition, NewEvent, Payload,
    ReadAllRequest, RecordedEvent, StreamAppend, StreamId, Time,
};
use eventcore_store::EventStore;
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `NATS_URL`, or the local server.
pub fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "127.0.0.1:4222".to_owned())
}

/// Whether a missing server must fail the test.
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A client of the shared server, or `None` after a loud skip notice.
///
/// # Panics
/// When NATS does not answer and `CI=true`.
pub async fn connect() -> Option<async_nats::Client> {
    let url = nats_url();
    let attempt = tokio::time::timeout(Duration::from_secs(3), async_nats::connect(url.as_str())).await;
    match attempt {
        Ok(Ok(client)) => Some(client),
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".to_owned(),
            };
            assert!(
                !required(),
                "NATS at {url} does not answer ({why}) and CI=true: failing"
            );
            eprintln!(
                "\n*** SKIPPED: NATS at {url} does not answer ({why}); set NATS_URL or start nats-server -js ***\n"
            );
            None
        }
    }
}

/// A JetStream stream name no other test uses.
pub fn unique_name(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("T_{label}_{secs}_{}_{n}", std::process::id()).to_ascii_uppercase()
}

/// Creates the JetStream stream `name` capturing `<prefix>.>`, with `tune`
/// applied to its configuration.
pub async fn create_stream(
    js: &jetstream::Context,
    name: &str,
    prefix: &str,
    tune: impl FnOnce(&mut stream::Config),
) -> stream::Stream {
    let mut config = stream::Config {
        name: name.to_owned(),
        subjects: vec![format!("{prefix}.>")],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    tune(&mut config);
    js.create_stream(config).await.expect("create the JetStream stream")
}

/// Appends `commands` commands, each writing `per_stream` events to two of
/// `streams` streams (`acct-<n>`), one multi-stream append each; event
/// types alternate between `Deposited` and `Withdrawn`, and every tenth
/// command writes `Secret` events instead when `with_secret` is set.
pub async fn append_workload<S: EventStore>(store: &S, tag: u64, commands: u64, streams: u64, per_stream: u64) {
    for c in 0..commands {
        let a = (c * 7 + tag) % streams;
        let b = (a + 1 + c % (streams - 1).max(1)) % streams;
        let mut picks = vec![a];
        if b != a {
            picks.push(b);
        }
        let command = CommandId::v7(Time::from_unix_millis(1), entropy(tag, c, 0xFF));
        let request = AppendRequest {
            metadata: Arc::new(
                EventMetadata::new(command, Time::from_unix_millis(1_700_000_000_000 + c))
                    .with_user("tag", tag.to_string()),
            ),
            streams: picks
                .iter()
                .enumerate()
                .map(|(i, s)| StreamAppend {
                    stream: StreamId::new(format!("acct-{s}")).expect("valid stream id"),
                    expected: ExpectedVersion::Any,
                    events: (0..per_stream)
                        .map(|k| NewEvent {
                            event_id: EventId::v7(Time::from_unix_millis(2), entropy(tag, c, (i as u64) * 16 + k)),
                            event_type: EventType::new(if (c + k) % 2 == 0 { "Deposited" } else { "Withdrawn" })
                                .expect("valid type"),
                            schema_version: 1,
                            payload: Payload::from_trusted_json(format!(r#"{{"amount":{},"tag":{tag}}}"#, c + k)),
                        })
                        .collect(),
                    tombstone: false,
                })
                .collect(),
        };
        store.append(&request).await.expect("append");
    }
}

fn entropy(tag: u64, c: u64, k: u64) -> [u8; 10] {
    let mut e = [0u8; 10];
    e[0] = 0;
    e[1] = (tag & 0xFF) as u8;
    e[2] = 0;
    e[3..7].copy_from_slice(&(c as u32).to_be_bytes());
    e[7..9].copy_from_slice(&(k as u16).to_be_bytes());
    e[9] = (tag >> 8) as u8;
    e
}

/// The whole log, in global order.
pub async fn read_log<S: EventStore>(store: &S) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut after = GlobalPosition::START;
    loop {
        let page = store
            .read_all(&ReadAllRequest {
                after,
                limit: NonZeroU32::new(1000).expect("non-zero"),
                filter: eventcore::EventFilter::all(),
            })
            .await
            .expect("read_all");
        let Some(last) = page.events.last() else { break };
        after = last.position;
        out.extend(page.events);
    }
    out
}

/// Every message of the JetStream stream, decoded back into events, with
/// its stream sequence.
pub async fn read_stream(js: &jetstream::Context, name: &str) -> Vec<(u64, RecordedEvent)> {
    let stream = js.get_stream(name).await.expect("get the stream");
    let state = stream.cached_info().state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        match stream.get_raw_message(seq).await {
            Ok(m) => out.push((
                seq,
                eventcore_nats::recorded_from_parts(&m.headers, &m.payload).expect("a relayed event"),
            )),
            Err(e) => panic!("message {seq} of {name}: {e}"),
        }
    }
    out
}

/// Compares the JetStream stream with `expected` (the log, less what was
/// parked): same count, same ids in the same (global) order, no duplicates,
/// per-stream versions increasing, fields carried intact. Prints and
/// returns the number of messages checked.
pub fn assert_same(label: &str, relayed: &[(u64, RecordedEvent)], expected: &[RecordedEvent]) -> usize {
    let ids: Vec<EventId> = relayed.iter().map(|(_, e)| e.event_id).collect();
    let unique: BTreeSet<EventId> = ids.iter().copied().collect();
    assert_eq!(
        unique.len(),
        ids.len(),
        "{label}: a message is duplicated in the JetStream stream"
    );
    let want: Vec<EventId> = expected.iter().map(|e| e.event_id).collect();
    let missing = want.iter().filter(|id| !unique.contains(id)).count();
    assert_eq!(
        missing, 0,
        "{label}: {missing} events of the log are missing from the JetStream stream"
    );
    assert_eq!(ids.len(), want.len(), "{label}: count differs");
    assert_eq!(ids, want, "{label}: the JetStream stream is not in global order");
    let mut versions: BTreeMap<StreamId, u64> = BTreeMap::new();
    for ((_, got), want) in relayed.iter().zip(expected) {
        assert_eq!(got.stream_id, want.stream_id);
        assert_eq!(got.version, want.version);
        assert_eq!(got.position, want.position);
        assert_eq!(got.event_type, want.event_type);
        assert_eq!(got.payload.as_json(), want.payload.as_json());
        assert_eq!(*got.metadata, *want.metadata);
        let last = versions.entry(got.stream_id.clone()).or_default();
        assert!(
            got.version.get() > *last,
            "{label}: stream {} out of version order",
            got.stream_id
        );
        *last = got.version.get();
    }
    let sequences: Vec<u64> = relayed.iter().map(|(s, _)| *s).collect();
    assert!(
        sequences.windows(2).all(|w| w[1] == w[0] + 1),
        "{label}: a gap in the stream's sequences"
    );
    println!(
        "{label}: {} messages checked against the log ({} streams): none missing, none duplicated, global and per-stream order kept",
        ids.len(),
        versions.len()
    );
    ids.len()
}

/// A private `nats-server -js` on a free port with its own storage
/// directory, killed and restarted at will.
pub struct PrivateNats {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<tokio::process::Child>,
}

impl PrivateNats {
    /// The binary (`NATS_SERVER_BIN`, default `/usr/sbin/nats-server`).
    pub fn binary() -> String {
        std::env::var("NATS_SERVER_BIN").unwrap_or_else(|_| "/usr/sbin/nats-server".to_owned())
    }

    /// Starts one, or `None` (loud skip) when the binary is missing and CI is not set.
    pub async fn start(label: &str) -> Option<PrivateNats> {
        if !std::path::Path::new(&Self::binary()).exists() {
            assert!(!required(), "{} is missing and CI=true: failing", Self::binary());
            eprintln!("\n*** SKIPPED: {} is missing ***\n", Self::binary());
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(unique_name(label).to_ascii_lowercase());
        std::fs::create_dir_all(&dir).expect("a storage directory");
        let mut nats = PrivateNats { port, dir, child: None };
        nats.restart().await;
        Some(nats)
    }

    pub fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port and directory and waits until it answers.
    pub async fn restart(&mut self) {
        let child = tokio::process::Command::new(Self::binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the private nats-server did not answer on {}", self.port);
    }

    /// Kills it (SIGKILL) and waits for it to exit.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `base` fault rounds, or ten times as many with `EVENTCORE_NATS_LONG=1`
/// (the long fault runs; CI runs the short ones).
pub fn rounds(base: u64) -> u64 {
    if std::env::var("EVENTCORE_NATS_LONG").is_ok_and(|v| v == "1") {
        base * 10
    } else {
        base
    }
}
