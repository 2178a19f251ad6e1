//! The raw-SQL floor: what a careful hand-written application does with
//! plain sqlx for each workload, on the same database, in its own schema.
//!
//! The table is the one such an application would write: one row per event,
//! a global position from an identity column, and a unique
//! `(stream_id, version)` constraint that turns a concurrent write into a
//! unique violation (optimistic concurrency without locks). Every statement
//! is prepared once per connection (sqlx caches it), so each costs one round
//! trip. A command reads only the events after the version it already holds
//! (clients keep each stream's folded state and version in memory), then
//! inserts with the next version in one statement — that single `INSERT`
//! is the transaction: the unique constraint makes the read-check-insert
//! safe, and wrapping it in `BEGIN`/`COMMIT` would only add two round trips.
//! Multi-row inserts take their rows in stream-id order, so two transfers
//! never deadlock on each other's index entries.

use crate::harness::{Outcome, Rng};
use eventcore::View;
use eventcore_benches::bank::{Account, AccountEvent};
use eventcore_benches::Totals;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::Row;
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use uuid::Uuid;

const SCHEMA: &str = "
CREATE TABLE events (
    position    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    stream_id   text        NOT NULL,
    version     bigint      NOT NULL,
    event_id    uuid        NOT NULL,
    event_type  text        NOT NULL,
    payload     jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, version)
)";

/// Every event's payload decodes into this, whatever its type: the type
/// column says which field matters (one pass, no intermediate value).
#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    amount: u64,
    #[serde(default)]
    initial: u64,
}

#[derive(Serialize)]
struct AmountBody {
    amount: u64,
}

#[derive(Serialize)]
struct InitialBody {
    initial: u64,
}

fn decode(event_type: &str, body: &Body) -> Result<AccountEvent, String> {
    Ok(match event_type {
        "Opened" => AccountEvent::Opened { initial: body.initial },
        "Deposited" => AccountEvent::Deposited { amount: body.amount },
        "Withdrawn" => AccountEvent::Withdrawn { amount: body.amount },
        other => return Err(format!("unknown event type {other}")),
    })
}

/// Decodes a `(…, event_type, payload)` row from column `at` on.
fn event_at(row: &PgRow, at: usize) -> Result<AccountEvent, String> {
    let event_type: &str = row.try_get(at).map_err(|e| e.to_string())?;
    let Json(body): Json<Body> = row.try_get(at + 1).map_err(|e| e.to_string())?;
    decode(event_type, &body)
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

static EVENT_IDS: AtomicU64 = AtomicU64::new(1);

/// A fresh event id (time-ordered enough for an index, unique per run).
fn event_id() -> Uuid {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Uuid::from_u64_pair(nanos, EVENT_IDS.fetch_add(1, Ordering::Relaxed))
}

/// The floor's database: a pool whose connections use `schema`.
#[derive(Clone, Debug)]
pub struct Raw {
    /// The pool.
    pub pool: PgPool,
}

impl Raw {
    /// Creates `schema` with the events table and connects `connections`
    /// pooled connections to it.
    pub async fn create(url: &str, schema: &str, connections: u32) -> Result<Raw, sqlx::Error> {
        let admin = PgPoolOptions::new().max_connections(1).connect(url).await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&admin)
            .await?;
        sqlx::query(&format!("CREATE SCHEMA {schema}")).execute(&admin).await?;
        admin.close().await;
        let options = PgConnectOptions::from_str(url)?.options([("search_path", schema)]);
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .min_connections(connections)
            .connect_with(options)
            .await?;
        sqlx::query(SCHEMA).execute(&pool).await?;
        Ok(Raw { pool })
    }

    /// Inserts events into `stream` from version `from` on, in one
    /// statement, without any check (data set setup).
    pub async fn load(&self, stream: &str, from: i64, events: &[AccountEvent]) -> Result<(), sqlx::Error> {
        let mut types = Vec::with_capacity(events.len());
        let mut payloads = Vec::with_capacity(events.len());
        for event in events {
            let (t, p) = encode(event);
            types.push(t);
            payloads.push(p);
        }
        self.insert(stream, from, &types, &payloads).await.map(|_| ())
    }

    /// `INSERT … SELECT FROM unnest(…)`: any number of events of one stream
    /// in one statement and one round trip.
    async fn insert(
        &self,
        stream: &str,
        from: i64,
        types: &[&'static str],
        payloads: &[String],
    ) -> Result<u64, sqlx::Error> {
        let versions: Vec<i64> = (0..types.len() as i64).map(|i| from + i).collect();
        let ids: Vec<Uuid> = (0..types.len()).map(|_| event_id()).collect();
        let done = sqlx::query(
            "INSERT INTO events (stream_id, version, event_id, event_type, payload)
             SELECT $1, v, e, t, p::jsonb FROM unnest($2::bigint[], $3::uuid[], $4::text[], $5::text[]) AS x(v, e, t, p)",
        )
        .bind(stream)
        .bind(&versions)
        .bind(&ids)
        .bind(types)
        .bind(payloads)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}

fn encode(event: &AccountEvent) -> (&'static str, String) {
    let (event_type, json) = match event {
        AccountEvent::Opened { initial } => ("Opened", serde_json::to_string(&InitialBody { initial: *initial })),
        AccountEvent::Deposited { amount } => ("Deposited", serde_json::to_string(&AmountBody { amount: *amount })),
        AccountEvent::Withdrawn { amount } => ("Withdrawn", serde_json::to_string(&AmountBody { amount: *amount })),
    };
    (event_type, json.expect("payload bodies serialize"))
}

/// One stream's folded state and the version it reflects.
#[derive(Debug, Default, Clone, Copy)]
pub struct Held {
    /// Version of the last event folded.
    pub version: i64,
    /// The fold.
    pub account: Account,
}

/// W1 client: deposits into its own stream.
#[derive(Debug)]
pub struct StreamClient {
    raw: Raw,
    base: String,
    stream: String,
    held: Held,
    /// Move on to a fresh stream after this many events (aggregate-sized
    /// streams); `None`: one stream for the whole run.
    max_len: Option<i64>,
    generation: u64,
}

impl StreamClient {
    /// A client for `stream`, holding nothing yet.
    pub fn new(raw: Raw, stream: String, max_len: Option<u64>) -> Self {
        StreamClient {
            raw,
            base: stream.clone(),
            stream,
            held: Held::default(),
            max_len: max_len.map(|n| n as i64),
            generation: 0,
        }
    }

    /// One single-stream command: read what is newer than the held version,
    /// fold it, decide, insert at the next version; re-read and retry on a
    /// unique violation.
    pub async fn deposit(mut self) -> (Self, Outcome) {
        if self.max_len.is_some_and(|max| self.held.version >= max) {
            self.generation += 1;
            self.stream = format!("{}-{}", self.base, self.generation);
            self.held = Held::default();
        }
        let mut outcome = Outcome::done(1);
        loop {
            outcome.round_trips += 2;
            if let Err(e) = self.catch_up().await {
                return (self, Outcome::failed(e));
            }
            let event = AccountEvent::Deposited { amount: 1 };
            let (event_type, payload) = encode(&event);
            let inserted = sqlx::query(
                "INSERT INTO events (stream_id, version, event_id, event_type, payload) VALUES ($1, $2, $3, $4, $5::text::jsonb)",
            )
            .bind(&self.stream)
            .bind(self.held.version + 1)
            .bind(event_id())
            .bind(event_type)
            .bind(payload)
            .execute(&self.raw.pool)
            .await;
            match inserted {
                Ok(_) => {
                    self.held.version += 1;
                    self.held.account.apply(&event);
                    return (self, outcome);
                }
                Err(e) if is_unique_violation(&e) => {
                    outcome.conflicts += 1;
                    outcome.retries += 1;
                }
                Err(e) => return (self, Outcome::failed(e)),
            }
        }
    }

    async fn catch_up(&mut self) -> Result<(), String> {
        let rows = sqlx::query(
            "SELECT version, event_type, payload FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version",
        )
        .bind(&self.stream)
        .bind(self.held.version)
        .fetch_all(&self.raw.pool)
        .await
        .map_err(|e| e.to_string())?;
        for row in &rows {
            let version: i64 = row.try_get(0).map_err(|e| e.to_string())?;
            self.held.account.apply(&event_at(row, 1)?);
            self.held.version = version;
        }
        Ok(())
    }
}

/// State shared by the W2 clients of one process: each account's folded
/// state and version, as a careful application would keep it.
pub type AccountCache = Arc<Mutex<HashMap<u32, Held>>>;

/// W2 client: transfers between random pairs of `accounts` accounts.
#[derive(Debug)]
pub struct TransferClient {
    raw: Raw,
    cache: AccountCache,
    rng: Rng,
    accounts: u32,
}

/// The stream id of account `n` (same as the bank domain's).
pub fn account_stream(n: u32) -> String {
    format!("account-{n}")
}

impl TransferClient {
    /// A client on a shared cache.
    pub fn new(raw: Raw, cache: AccountCache, seed: u64, accounts: u32) -> Self {
        TransferClient {
            raw,
            cache,
            rng: Rng::new(seed),
            accounts,
        }
    }

    /// Opens `accounts` accounts with `initial` each (setup).
    pub async fn open_all(raw: &Raw, accounts: u32, initial: u64) -> Result<(), sqlx::Error> {
        for n in 0..accounts {
            raw.load(&account_stream(n), 1, &[AccountEvent::Opened { initial }])
                .await?;
        }
        Ok(())
    }

    /// Opens `accounts` accounts whose streams already hold `history`
    /// (setup: one unchecked multi-row insert per account).
    pub async fn fill_all(raw: &Raw, accounts: u32, history: &[AccountEvent]) -> Result<(), sqlx::Error> {
        for n in 0..accounts {
            for (i, chunk) in history.chunks(10_000).enumerate() {
                raw.load(&account_stream(n), (i * 10_000) as i64 + 1, chunk).await?;
            }
        }
        Ok(())
    }

    fn held(&self, n: u32) -> Held {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(&n).copied().unwrap_or_default()
    }

    fn remember(&self, n: u32, held: Held) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let entry = cache.entry(n).or_default();
        if held.version > entry.version {
            *entry = held;
        }
    }

    /// One transfer of 1 between a random pair: read both streams' newer
    /// events in one statement, fold, check the balance, insert both events
    /// in one statement; retry on a unique violation.
    pub async fn transfer(mut self) -> (Self, Outcome) {
        let (from, to) = self.rng.pair(self.accounts);
        let mut outcome = Outcome::done(1);
        loop {
            outcome.round_trips += 2;
            let (mut f, mut t) = (self.held(from), self.held(to));
            let rows = sqlx::query(
                "SELECT 0, version, event_type, payload FROM events WHERE stream_id = $1 AND version > $2
                 UNION ALL
                 SELECT 1, version, event_type, payload FROM events WHERE stream_id = $3 AND version > $4",
            )
            .bind(account_stream(from))
            .bind(f.version)
            .bind(account_stream(to))
            .bind(t.version)
            .fetch_all(&self.raw.pool)
            .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(e) => return (self, Outcome::failed(e)),
            };
            for row in &rows {
                let which: i32 = row.try_get(0).unwrap_or(0);
                let version: i64 = row.try_get(1).unwrap_or(0);
                let event = match event_at(row, 2) {
                    Ok(event) => event,
                    Err(e) => return (self, Outcome::failed(e)),
                };
                let held = if which == 0 { &mut f } else { &mut t };
                if version > held.version {
                    held.account.apply(&event);
                    held.version = version;
                }
            }
            self.remember(from, f);
            self.remember(to, t);
            if f.account.balance < 1 {
                return (self, Outcome::failed("insufficient funds"));
            }
            let withdrawn = AccountEvent::Withdrawn { amount: 1 };
            let deposited = AccountEvent::Deposited { amount: 1 };
            let (wt, wp) = encode(&withdrawn);
            let (dt, dp) = encode(&deposited);
            let mut rows = [
                (account_stream(from), f.version + 1, wt, wp),
                (account_stream(to), t.version + 1, dt, dp),
            ];
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            let inserted = sqlx::query(
                "INSERT INTO events (stream_id, version, event_id, event_type, payload)
                 VALUES ($1, $2, $3, $4, $5::text::jsonb), ($6, $7, $8, $9, $10::text::jsonb)",
            )
            .bind(&rows[0].0)
            .bind(rows[0].1)
            .bind(event_id())
            .bind(rows[0].2)
            .bind(&rows[0].3)
            .bind(&rows[1].0)
            .bind(rows[1].1)
            .bind(event_id())
            .bind(rows[1].2)
            .bind(&rows[1].3)
            .execute(&self.raw.pool)
            .await;
            match inserted {
                Ok(_) => {
                    f.account.apply(&withdrawn);
                    f.version += 1;
                    t.account.apply(&deposited);
                    t.version += 1;
                    self.remember(from, f);
                    self.remember(to, t);
                    return (self, outcome);
                }
                Err(e) if is_unique_violation(&e) || is_deadlock(&e) => {
                    outcome.conflicts += 1;
                    outcome.retries += 1;
                }
                Err(e) => return (self, Outcome::failed(e)),
            }
        }
    }
}

fn is_deadlock(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("40P01"))
}

/// W3: folds one whole stream, streaming its rows.
pub async fn replay_stream(raw: &Raw, stream: &str) -> Result<Totals, String> {
    let mut totals = Totals::default();
    let mut rows = sqlx::query("SELECT event_type, payload FROM events WHERE stream_id = $1 ORDER BY version")
        .bind(stream)
        .fetch(&raw.pool);
    while let Some(row) = rows.try_next().await.map_err(|e| e.to_string())? {
        totals.apply(&event_at(&row, 0)?);
    }
    Ok(totals)
}

/// W3: folds the whole store from position 0, in pages of `page` events by
/// keyset on the position.
pub async fn replay_all(raw: &Raw, page: i64) -> Result<Totals, String> {
    let mut totals = Totals::default();
    let mut after = 0i64;
    loop {
        let rows = sqlx::query(
            "SELECT position, stream_id, version, event_type, payload FROM events WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(after)
        .bind(page)
        .fetch_all(&raw.pool)
        .await
        .map_err(|e| e.to_string())?;
        for row in &rows {
            let _stream: &str = row.try_get(1).map_err(|e| e.to_string())?;
            let _version: i64 = row.try_get(2).map_err(|e| e.to_string())?;
            totals.apply(&event_at(row, 3)?);
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == page => after = last.try_get(0).map_err(|e| e.to_string())?,
            _ => return Ok(totals),
        }
    }
}

/// W4 client: the only writer of its stream, appending `batch` events per
/// statement at the versions it knows are next.
#[derive(Debug)]
pub struct BatchWriter {
    raw: Raw,
    stream: String,
    version: i64,
    batch: usize,
}

impl BatchWriter {
    /// A writer starting an empty stream.
    pub fn new(raw: Raw, stream: String, batch: usize) -> Self {
        BatchWriter {
            raw,
            stream,
            version: 0,
            batch,
        }
    }

    /// One batch: one `INSERT … SELECT FROM unnest` of `batch` rows.
    pub async fn append(mut self) -> (Self, Outcome) {
        let (types, payloads): (Vec<_>, Vec<_>) = (0..self.batch)
            .map(|_| encode(&AccountEvent::Deposited { amount: 1 }))
            .unzip();
        match self.raw.insert(&self.stream, self.version + 1, &types, &payloads).await {
            Ok(n) => {
                self.version += n as i64;
                (self, Outcome::done(n))
            }
            Err(e) => (self, Outcome::failed(e)),
        }
    }
}

/// W5: a catch-up subscriber by hand: pages by position from its checkpoint
/// (kept in memory), folds each page, saves the checkpoint after each page.
pub async fn catch_up(raw: &Raw, page: i64) -> Result<Totals, String> {
    let mut totals = Totals::default();
    let mut checkpoint = 0i64;
    loop {
        let rows = sqlx::query(
            "SELECT position, stream_id, version, event_type, payload FROM events WHERE position > $1 ORDER BY position LIMIT $2",
        )
        .bind(checkpoint)
        .bind(page)
        .fetch_all(&raw.pool)
        .await
        .map_err(|e| e.to_string())?;
        for row in &rows {
            totals.apply(&event_at(row, 3)?);
        }
        match rows.last() {
            Some(last) => checkpoint = last.try_get(0).map_err(|e| e.to_string())?,
            None => return Ok(totals),
        }
        if (rows.len() as i64) < page {
            return Ok(totals);
        }
    }
}
