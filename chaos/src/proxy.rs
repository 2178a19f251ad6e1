//! A fault-injecting TCP proxy for the PostgreSQL wire protocol, on
//! loopback.
//!
//! The proxy frames both directions into protocol messages, so it can place
//! faults where they matter:
//!
//! - it refuses TLS itself (answers `SSLRequest` with `N`), so the stream it
//!   forwards is plain protocol;
//! - it remembers which prepared statements append (a `Parse` whose text
//!   calls the store's `.append(` function, or is the store's single-statement
//!   append, marked `/* eventcore append */`) and which are a
//!   `COMMIT`; a `Bind` of one, or a simple `Query` of `COMMIT`, marks the
//!   request group up to the next `Sync` as *committing*;
//! - a committing group's reply is held back until its `ReadyForQuery`: if
//!   it succeeded (no `ErrorResponse`) and a [`FaultKind::LostAck`] is
//!   armed, the connection is reset instead of forwarding it — the commit
//!   happened, the client never hears of it;
//! - [`FaultKind::ResetMidTransaction`] forwards an append's `Execute` but
//!   not its `Sync`, lets the server run it inside the implicit transaction,
//!   then resets;
//! - [`FaultKind::Reset`] and [`FaultKind::HalfOpen`] strike at a random
//!   message in either direction; latency spikes, jitter and slow reads
//!   delay or trickle the server's replies.
//!
//! Only loopback addresses are accepted as upstream, and every hold is
//! bounded in time.

use crate::faults::{FaultCounters, FaultKind, FaultRng};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
const CANCEL_REQUEST: u32 = 80_877_102;
const MAX_STARTUP: usize = 10_000;

/// How the proxy behaves apart from the armed faults.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// Where PostgreSQL listens; must be a loopback address.
    pub upstream: SocketAddr,
    /// Seed of the per-connection fault decisions.
    pub seed: u64,
    /// Percentage of server replies delayed by jitter (0: no jitter).
    pub jitter_percent: u64,
    /// Largest jitter.
    pub jitter_max: Duration,
    /// Range of a latency spike.
    pub spike: (Duration, Duration),
    /// How long a half-open connection is held before the proxy closes it.
    pub half_open_hold: Duration,
    /// How long a mid-transaction reset lets the server work first.
    pub mid_transaction_pause: Duration,
    /// Largest protocol message accepted (bigger: the connection is closed).
    pub max_message: usize,
}

impl ProxyConfig {
    /// Defaults for `upstream`.
    pub fn new(upstream: SocketAddr, seed: u64) -> Self {
        ProxyConfig {
            upstream,
            seed,
            jitter_percent: 20,
            jitter_max: Duration::from_millis(2),
            spike: (Duration::from_millis(20), Duration::from_millis(150)),
            half_open_hold: Duration::from_secs(2),
            mid_transaction_pause: Duration::from_millis(25),
            max_message: 64 << 20,
        }
    }
}

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The upstream is not on loopback: chaos traffic stays on this machine.
    #[error("upstream {0} is not a loopback address; the chaos proxy only forwards on loopback")]
    NotLoopback(SocketAddr),
    /// Binding the listener failed.
    #[error("cannot bind the proxy listener")]
    Bind(#[source] io::Error),
}

struct Shared {
    config: ProxyConfig,
    counters: Arc<FaultCounters>,
    jitter: AtomicBool,
    next_id: AtomicU64,
    ports: Mutex<BTreeSet<u16>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// A running proxy; dropping it stops the listener and every connection.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use eventcore_chaos::faults::FaultCounters;
/// use eventcore_chaos::proxy::{Proxy, ProxyConfig};
/// use std::sync::Arc;
/// let counters = Arc::new(FaultCounters::default());
/// let proxy = Proxy::start(ProxyConfig::new("127.0.0.1:5432".parse()?, 42), counters).await?;
/// let url = format!("postgres://postgres@{}/postgres?sslmode=disable", proxy.addr());
/// # let _ = url;
/// # Ok(()) }
/// ```
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: AbortHandle,
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards to
    /// `config.upstream`.
    pub async fn start(config: ProxyConfig, counters: Arc<FaultCounters>) -> Result<Proxy, ProxyError> {
        if !config.upstream.ip().is_loopback() {
            return Err(ProxyError::NotLoopback(config.upstream));
        }
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(ProxyError::Bind)?;
        let addr = listener.local_addr().map_err(ProxyError::Bind)?;
        let shared = Arc::new(Shared {
            config,
            counters,
            jitter: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            ports: Mutex::new(BTreeSet::new()),
            tasks: Mutex::new(Vec::new()),
        });
        let accept = tokio::spawn(accept_loop(listener, shared.clone())).abort_handle();
        Ok(Proxy { addr, shared, accept })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Turns the continuous jitter on or off (the schedule turns it off
    /// when the run heals).
    pub fn set_jitter(&self, on: bool) {
        self.shared.jitter.store(on, Ordering::SeqCst);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.next_id.load(Ordering::SeqCst)
    }

    /// The local ports of the proxy's live upstream connections: PostgreSQL
    /// sees them as `pg_stat_activity.client_port`, which is how the
    /// terminator finds this run's sessions and no one else's.
    pub fn backend_ports(&self) -> Vec<u16> {
        lock(&self.shared.ports).iter().copied().collect()
    }

    /// A handle on [`backend_ports`](Proxy::backend_ports) that can move
    /// into a task.
    pub fn ports(&self) -> BackendPorts {
        BackendPorts(self.shared.clone())
    }
}

/// The local ports of a proxy's live upstream connections (see
/// [`Proxy::backend_ports`]).
#[derive(Clone)]
pub struct BackendPorts(Arc<Shared>);

impl BackendPorts {
    /// The ports now.
    pub fn get(&self) -> Vec<u16> {
        lock(&self.0.ports).iter().copied().collect()
    }
}

impl std::fmt::Debug for BackendPorts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("BackendPorts").field(&self.get()).finish()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for task in lock(&self.shared.tasks).drain(..) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // Out of descriptors or similar: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        let task = tokio::spawn(serve(shared.clone(), client, id)).abort_handle();
        let mut tasks = lock(&shared.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }
}

/// How one direction of a connection ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// The source closed or failed: close normally.
    Closed,
    /// Reset both sides (RST).
    Reset,
    /// Stop forwarding, keep both sides open for a while.
    HalfOpen,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Group {
    append: bool,
    commit: bool,
}

impl Group {
    fn committing(self) -> bool {
        self.append || self.commit
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Statement {
    Append,
    Commit,
    Other,
}

#[derive(Debug, Default)]
struct Conn {
    statements: HashMap<String, Statement>,
    current: Group,
    groups: VecDeque<Group>,
}

impl Conn {
    fn holding(&self) -> bool {
        self.groups.front().copied().unwrap_or(self.current).committing()
    }

    fn reply_done(&mut self) {
        if self.groups.pop_front().is_none() {
            self.current = Group::default();
        }
    }

    /// Follows one client message (its tag and body): which prepared
    /// statements append or commit, and which request groups (up to a
    /// `Sync`, or one simple `Query`) are committing.
    fn client_message(&mut self, tag: u8, body: &[u8]) {
        match tag {
            b'P' => {
                if let Some((name, next)) = cstr(body, 0) {
                    if let Some((sql, _)) = cstr(body, next) {
                        self.statements.insert(name, classify(&sql));
                    }
                }
            }
            b'B' => {
                if let Some((_, next)) = cstr(body, 0) {
                    if let Some((statement, _)) = cstr(body, next) {
                        match self.statements.get(&statement).copied() {
                            Some(Statement::Append) => self.current.append = true,
                            Some(Statement::Commit) => self.current.commit = true,
                            _ => {}
                        }
                    }
                }
            }
            b'S' => {
                let group = std::mem::take(&mut self.current);
                self.groups.push_back(group);
            }
            b'Q' => {
                let sql = cstr(body, 0).map(|(s, _)| s).unwrap_or_default();
                let mut group = std::mem::take(&mut self.current);
                match classify(&sql) {
                    Statement::Append => group.append = true,
                    Statement::Commit => group.commit = true,
                    Statement::Other => {}
                }
                self.groups.push_back(group);
            }
            _ => {}
        }
    }
}

struct Ends {
    client: TcpStream,
    server: TcpStream,
}

async fn serve(shared: Arc<Shared>, mut client: TcpStream, id: u64) {
    let Ok(mut server) = TcpStream::connect(shared.config.upstream).await else {
        return;
    };
    let port = server.local_addr().map(|a| a.port()).ok();
    if let Some(port) = port {
        lock(&shared.ports).insert(port);
    }
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    match startup(&mut client, &mut server).await {
        Ok(true) => {
            let ends = relay(&shared, client, server, id).await;
            if let Some((ends, end)) = ends {
                finish(&shared, ends, end).await;
            }
        }
        Ok(false) => {
            // A cancel request: forward verbatim.
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
        Err(_) => {}
    }
    if let Some(port) = port {
        lock(&shared.ports).remove(&port);
    }
}

/// Handles the untyped start of the protocol: refuses TLS and GSS
/// encryption, forwards the startup message. `Ok(false)` for a cancel
/// request (no typed messages follow).
async fn startup(client: &mut TcpStream, server: &mut TcpStream) -> io::Result<bool> {
    for _ in 0..3 {
        let len = client.read_u32().await? as usize;
        if !(8..=MAX_STARTUP).contains(&len) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad startup length"));
        }
        let mut body = vec![0u8; len - 4];
        client.read_exact(&mut body).await?;
        let code = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let mut message = Vec::with_capacity(len);
        message.extend_from_slice(&(len as u32).to_be_bytes());
        message.extend_from_slice(&body);
        match code {
            SSL_REQUEST | GSSENC_REQUEST => client.write_all(b"N").await?,
            CANCEL_REQUEST => {
                server.write_all(&message).await?;
                return Ok(false);
            }
            _ => {
                server.write_all(&message).await?;
                return Ok(true);
            }
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "too many encryption requests",
    ))
}

async fn relay(shared: &Shared, client: TcpStream, server: TcpStream, id: u64) -> Option<(Ends, End)> {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let conn = Mutex::new(Conn::default());
    let end = {
        let upstream = client_to_server(
            shared,
            &conn,
            &mut cr,
            &mut sw,
            FaultRng::new(shared.config.seed, 2 * id),
        );
        let downstream = server_to_client(
            shared,
            &conn,
            &mut sr,
            &mut cw,
            FaultRng::new(shared.config.seed, 2 * id + 1),
        );
        tokio::select! {
            end = upstream => end,
            end = downstream => end,
        }
    };
    let client = cr.reunite(cw).ok()?;
    let server = sr.reunite(sw).ok()?;
    Some((Ends { client, server }, end))
}

async fn finish(shared: &Shared, mut ends: Ends, end: End) {
    match end {
        End::Closed => {}
        End::Reset => reset(ends),
        End::HalfOpen => {
            // Forward nothing; swallow what the client sends until it gives
            // up (closes) or the hold ends, then reset both sides.
            let hold = tokio::time::sleep(shared.config.half_open_hold);
            tokio::pin!(hold);
            let mut sink = [0u8; 4096];
            loop {
                tokio::select! {
                    () = &mut hold => break,
                    read = ends.client.read(&mut sink) => match read {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    },
                }
            }
            reset(ends);
        }
    }
}

// `set_linger` is deprecated because a non-zero linger blocks the thread
// on drop; a zero linger never blocks, it sends the RST at once.
#[allow(deprecated)]
fn reset(ends: Ends) {
    // Linger zero turns the close into a RST, as a crashed peer or a
    // middlebox dropping state would.
    let _ = ends.client.set_linger(Some(Duration::ZERO));
    let _ = ends.server.set_linger(Some(Duration::ZERO));
    drop(ends);
}

/// Accumulates bytes and cuts typed protocol messages off the front.
struct Framer {
    buf: Vec<u8>,
    max: usize,
}

impl Framer {
    fn new(max: usize) -> Self {
        Framer { buf: Vec::new(), max }
    }

    async fn fill(&mut self, source: &mut OwnedReadHalf) -> io::Result<bool> {
        let mut chunk = [0u8; 16 * 1024];
        let n = source.read(&mut chunk).await?;
        self.push(&chunk[..n]);
        Ok(n > 0)
    }

    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message (tag, length and body), if buffered.
    fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.buf.len() < 5 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
        if !(4..=self.max).contains(&len) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad message length"));
        }
        if self.buf.len() < len + 1 {
            return Ok(None);
        }
        let rest = self.buf.split_off(len + 1);
        Ok(Some(std::mem::replace(&mut self.buf, rest)))
    }
}

/// A NUL-terminated string at `at` in `body`, and the offset after it.
fn cstr(body: &[u8], at: usize) -> Option<(String, usize)> {
    let tail = body.get(at..)?;
    let end = tail.iter().position(|b| *b == 0)?;
    Some((String::from_utf8_lossy(&tail[..end]).into_owned(), at + end + 1))
}

fn classify(sql: &str) -> Statement {
    let trimmed = sql.trim().trim_end_matches(';').trim().to_ascii_uppercase();
    if sql.contains(".append(") || sql.contains("/* eventcore append */") {
        Statement::Append
    } else if trimmed == "COMMIT" || trimmed == "END" || trimmed.starts_with("COMMIT ") {
        Statement::Commit
    } else {
        Statement::Other
    }
}

async fn client_to_server(
    shared: &Shared,
    conn: &Mutex<Conn>,
    source: &mut OwnedReadHalf,
    sink: &mut OwnedWriteHalf,
    mut rng: FaultRng,
) -> End {
    let counters = &shared.counters;
    let mut framer = Framer::new(shared.config.max_message);
    loop {
        match framer.fill(source).await {
            Ok(true) => {}
            _ => return End::Closed,
        }
        let mut out = Vec::new();
        loop {
            let message = match framer.next() {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(_) => return End::Closed,
            };
            if counters.is_armed(FaultKind::Reset) && rng.percent(25) && counters.take_armed(FaultKind::Reset) {
                let _ = sink.write_all(&out).await;
                counters.injected(FaultKind::Reset);
                return End::Reset;
            }
            if counters.is_armed(FaultKind::HalfOpen) && rng.percent(25) && counters.take_armed(FaultKind::HalfOpen) {
                let _ = sink.write_all(&out).await;
                counters.injected(FaultKind::HalfOpen);
                return End::HalfOpen;
            }
            if message[0] == b'E' {
                let appending = lock(conn).current.append;
                if appending && counters.take_armed(FaultKind::ResetMidTransaction) {
                    // The append runs inside its implicit transaction;
                    // its Sync (the commit) never arrives.
                    out.extend_from_slice(&message);
                    let _ = sink.write_all(&out).await;
                    let _ = sink.flush().await;
                    tokio::time::sleep(shared.config.mid_transaction_pause).await;
                    counters.injected(FaultKind::ResetMidTransaction);
                    return End::Reset;
                }
            }
            lock(conn).client_message(message[0], &message[5..]);
            out.extend_from_slice(&message);
        }
        if !out.is_empty() && sink.write_all(&out).await.is_err() {
            return End::Closed;
        }
    }
}

async fn server_to_client(
    shared: &Shared,
    conn: &Mutex<Conn>,
    source: &mut OwnedReadHalf,
    sink: &mut OwnedWriteHalf,
    mut rng: FaultRng,
) -> End {
    let counters = &shared.counters;
    let config = &shared.config;
    let mut framer = Framer::new(config.max_message);
    let mut held: Vec<u8> = Vec::new();
    let mut held_failed = false;
    loop {
        match framer.fill(source).await {
            Ok(true) => {}
            _ => return End::Closed,
        }
        let mut out = Vec::new();
        loop {
            let message = match framer.next() {
                Ok(Some(message)) => message,
                Ok(None) => break,
                Err(_) => return End::Closed,
            };
            if counters.is_armed(FaultKind::Reset) && rng.percent(10) && counters.take_armed(FaultKind::Reset) {
                let _ = sink.write_all(&out).await;
                counters.injected(FaultKind::Reset);
                return End::Reset;
            }
            let tag = message[0];
            let holding = lock(conn).holding();
            if holding {
                held.extend_from_slice(&message);
                held_failed |= tag == b'E';
                if tag == b'Z' {
                    lock(conn).reply_done();
                    let succeeded = !std::mem::take(&mut held_failed);
                    if succeeded && counters.take_armed(FaultKind::LostAck) {
                        // The server has committed and said so; the client
                        // gets a reset instead of the answer.
                        let _ = sink.write_all(&out).await;
                        counters.injected(FaultKind::LostAck);
                        return End::Reset;
                    }
                    out.append(&mut held);
                }
                continue;
            }
            if tag == b'Z' {
                lock(conn).reply_done();
            }
            out.extend_from_slice(&message);
        }
        if out.is_empty() {
            continue;
        }
        if counters.take_armed(FaultKind::Latency) {
            let (lo, hi) = config.spike;
            let ms = rng.between(lo.as_millis() as u64, hi.as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            counters.injected(FaultKind::Latency);
        } else if shared.jitter.load(Ordering::Relaxed) && rng.percent(config.jitter_percent) {
            let micros = rng.below(config.jitter_max.as_micros() as u64 + 1);
            tokio::time::sleep(Duration::from_micros(micros)).await;
            counters.injected(FaultKind::Jitter);
        }
        let written = if out.len() > 8 && counters.take_armed(FaultKind::SlowRead) {
            counters.injected(FaultKind::SlowRead);
            trickle(sink, &out, &mut rng).await
        } else {
            sink.write_all(&out).await
        };
        if written.is_err() {
            return End::Closed;
        }
    }
}

/// Writes `bytes` a few at a time with short pauses (at most 64 pieces; the
/// rest goes in one write).
async fn trickle(sink: &mut OwnedWriteHalf, bytes: &[u8], rng: &mut FaultRng) -> io::Result<()> {
    let mut rest = bytes;
    for _ in 0..64 {
        if rest.is_empty() {
            return Ok(());
        }
        let n = (rng.between(1, 16) as usize).min(rest.len());
        sink.write_all(&rest[..n]).await?;
        sink.flush().await?;
        rest = &rest[n..];
        tokio::time::sleep(Duration::from_millis(rng.between(1, 3))).await;
    }
    sink.write_all(rest).await
}

#[doc(hidden)]
pub mod fuzzing {
    //! Not part of the API: the proxy's framing and request tracking, for
    //! the fuzz target `fuzz/fuzz_targets/chaos_proxy_framing.rs`. It may
    //! change or go away in any release.

    use std::io;

    /// The proxy's framer: bytes in, whole typed messages out.
    pub struct Framer(super::Framer);

    impl Framer {
        /// A framer refusing messages longer than `max` bytes (length
        /// field included).
        pub fn new(max: usize) -> Self {
            Framer(super::Framer::new(max))
        }

        /// Adds bytes as they arrived from a socket.
        pub fn push(&mut self, bytes: &[u8]) {
            self.0.push(bytes);
        }

        /// The next whole message (tag, length, body), `None` until one is
        /// buffered, an error for a length the protocol does not allow.
        pub fn next_message(&mut self) -> io::Result<Option<Vec<u8>>> {
            self.0.next()
        }

        /// Bytes buffered and not yet cut.
        pub fn buffered(&self) -> usize {
            self.0.buf.len()
        }
    }

    /// What the proxy tracks of one connection's request groups.
    #[derive(Debug, Default)]
    pub struct Connection(super::Conn);

    impl Connection {
        /// Follows a whole client message as the framer cut it (messages
        /// shorter than a header are ignored).
        pub fn client_message(&mut self, message: &[u8]) {
            if let (Some(&tag), Some(body)) = (message.first(), message.get(5..)) {
                self.0.client_message(tag, body);
            }
        }

        /// Whether the server's reply now due would be held back (it
        /// answers a committing group).
        pub fn holding(&self) -> bool {
            self.0.holding()
        }

        /// The server's `ReadyForQuery` ended the reply now due.
        pub fn reply_done(&mut self) {
            self.0.reply_done();
        }

        /// Request groups sent and not yet answered.
        pub fn open_groups(&self) -> usize {
            self.0.groups.len()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_classified() {
        assert_eq!(classify("SELECT x FROM \"s\".append($1)"), Statement::Append);
        assert_eq!(
            classify("/* eventcore append */ WITH claim AS (INSERT INTO \"s\".commands (command_id) VALUES ($1))"),
            Statement::Append
        );
        assert_eq!(classify(" commit; "), Statement::Commit);
        assert_eq!(classify("END"), Statement::Commit);
        assert_eq!(classify("SELECT 1"), Statement::Other);
    }

    #[test]
    fn framer_cuts_whole_messages() {
        let mut framer = Framer::new(1 << 20);
        framer.buf.extend_from_slice(&[b'Z', 0, 0, 0, 5, b'I', b'C', 0, 0]);
        assert_eq!(framer.next().ok().flatten(), Some(vec![b'Z', 0, 0, 0, 5, b'I']));
        assert_eq!(
            framer.next().ok().flatten(),
            None,
            "a partial message waits for more bytes"
        );
        framer.buf.extend_from_slice(&[0, 4]);
        assert_eq!(framer.next().ok().flatten(), Some(vec![b'C', 0, 0, 0, 4]));
    }

    #[test]
    fn a_committing_group_is_held_until_its_ready_for_query() {
        let mut conn = Conn::default();
        assert!(!conn.holding());
        conn.current.append = true;
        assert!(conn.holding(), "an append bound but not yet synced is held");
        let group = std::mem::take(&mut conn.current);
        conn.groups.push_back(group);
        conn.groups.push_back(Group::default());
        assert!(conn.holding());
        conn.reply_done();
        assert!(!conn.holding(), "the next group is not committing");
    }
}
