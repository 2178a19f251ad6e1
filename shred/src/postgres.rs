//! [`PgKeyStore`]: data keys in two tables of the event store's PostgreSQL
//! schema, created by [`PgKeyStore::migrate`].

use crate::error::KeyStoreError;
use crate::key::{DataKey, KEY_BYTES};
use crate::keystore::{KeyStore, FIRST_KEY_VERSION};
use crate::SubjectId;
use eventcore_postgres::PostgresStore;
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Transaction};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use zeroize::Zeroize;

/// The SQL, with the schema filled in once.
#[derive(Debug)]
struct Sql {
    create: String,
    lock: String,
    any_forgotten: String,
    select: String,
    insert: String,
    mark_forgotten: String,
    delete_key: String,
    is_forgotten: String,
}

impl Sql {
    fn new(schema: &str) -> Self {
        let keys = format!("\"{schema}\".shred_keys");
        let forgotten = format!("\"{schema}\".shred_forgotten");
        Sql {
            create: format!(
                "CREATE TABLE IF NOT EXISTS {keys} (\
                     subject text PRIMARY KEY, \
                     key_version integer NOT NULL CHECK (key_version > 0), \
                     data_key bytea NOT NULL CHECK (length(data_key) = {KEY_BYTES}), \
                     created_at timestamptz NOT NULL DEFAULT now()); \
                 CREATE TABLE IF NOT EXISTS {forgotten} (\
                     subject text PRIMARY KEY, \
                     forgotten_at timestamptz NOT NULL DEFAULT now()); \
                 COMMENT ON TABLE {keys} IS 'eventcore-shred: one data key per subject; \
                     deleting a row makes that subject''s personal fields unreadable'; \
                 COMMENT ON TABLE {forgotten} IS 'eventcore-shred: subjects forgotten; \
                     no key is created for them again'"
            ),
            // One lock per subject, in a fixed order (deadlock-free), held
            // to the end of the transaction: a forget and a create of the
            // same subject never interleave.
            lock: "SELECT count(pg_advisory_xact_lock(hashtext('eventcore:shred:' || $2), h)) \
                   FROM (SELECT DISTINCT hashtext(s) AS h FROM unnest($1::text[]) AS s ORDER BY h) AS locks"
                .to_owned(),
            any_forgotten: format!("SELECT subject FROM {forgotten} WHERE subject = ANY($1) ORDER BY subject LIMIT 1"),
            // A key row is never returned for a forgotten subject, even if
            // one were left behind.
            select: format!(
                "SELECT k.subject, k.key_version, k.data_key FROM {keys} k \
                 WHERE k.subject = ANY($1) \
                 AND NOT EXISTS (SELECT 1 FROM {forgotten} f WHERE f.subject = k.subject)"
            ),
            insert: format!(
                "INSERT INTO {keys} (subject, key_version, data_key) \
                 SELECT * FROM unnest($1::text[], $2::int4[], $3::bytea[]) \
                 ON CONFLICT (subject) DO NOTHING"
            ),
            mark_forgotten: format!("INSERT INTO {forgotten} (subject) VALUES ($1) ON CONFLICT (subject) DO NOTHING"),
            delete_key: format!("DELETE FROM {keys} WHERE subject = $1"),
            is_forgotten: format!("SELECT EXISTS (SELECT 1 FROM {forgotten} WHERE subject = $1)"),
        }
    }
}

/// Data keys in the event store's PostgreSQL schema: table `shred_keys`
/// (subject, key version, the 32 key bytes, when created) and table
/// `shred_forgotten` (subject, when forgotten).
///
/// [`KeyStore::forget`] deletes the subject's key row and inserts its
/// forgotten row in one transaction; from its commit on, no reader of this
/// database gets the key, and [`KeyStore::get_or_create`] refuses the
/// subject. Creating and forgetting take a transaction-scoped advisory lock
/// per subject, so a forget racing a create never leaves a key behind.
/// Every statement runs on the store's pool, under its statement timeout.
///
/// What it does not do (see `docs/data-lifecycle.md`): the key bytes are
/// stored as they are, so whoever can read this table and the events can
/// read the personal data (a KMS-backed store would wrap them); a deleted
/// row's bytes stay in the table's files until `VACUUM` reuses the space,
/// in the WAL until it is recycled, and **in backups, WAL archives and
/// replicas until they age out** — a restored backup from before the
/// forget brings the key back (re-run the forgets recorded since, or keep
/// the list of forgotten subjects apart from the backups).
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use eventcore_postgres::PostgresStore;
/// use eventcore_shred::{KeyStore, PgKeyStore, SubjectId};
/// let store = PostgresStore::connect("postgres://postgres@127.0.0.1:5432/postgres").await?;
/// store.migrate().await?;
/// let keys = PgKeyStore::new(&store);
/// keys.migrate().await?;
/// keys.forget(&SubjectId::new("customer-42")?).await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PgKeyStore {
    pool: PgPool,
    schema: Arc<str>,
    sql: Arc<Sql>,
}

impl PgKeyStore {
    /// Keys in `store`'s schema, on its pool.
    ///
    /// ```no_run
    /// # async fn demo(store: eventcore_postgres::PostgresStore) {
    /// let keys = eventcore_shred::PgKeyStore::new(&store);
    /// # let _ = keys;
    /// # }
    /// ```
    pub fn new(store: &PostgresStore) -> Self {
        let schema = &store.options().schema;
        PgKeyStore {
            pool: store.pool().clone(),
            schema: Arc::from(schema.as_str()),
            sql: Arc::new(Sql::new(schema)),
        }
    }

    /// Creates the two tables if they do not exist (run it after
    /// `PostgresStore::migrate`, which creates the schema). Safe when
    /// several processes start at once (a transaction-scoped advisory lock
    /// keyed by the schema). A least-privilege application role needs
    /// `SELECT, INSERT, DELETE` on `shred_keys` and `SELECT, INSERT` on
    /// `shred_forgotten`.
    ///
    /// ```no_run
    /// # async fn demo(keys: eventcore_shred::PgKeyStore) -> Result<(), eventcore_shred::KeyStoreError> {
    /// keys.migrate().await?;
    /// keys.migrate().await?; // nothing to do
    /// # Ok(()) }
    /// ```
    pub async fn migrate(&self) -> Result<(), KeyStoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('eventcore:shred:migrate'), hashtext($1))")
            .bind(&*self.schema)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        // Several statements: the simple query protocol (a `&str` with no
        // arguments).
        sqlx::Executor::execute(&mut *tx, self.sql.create.as_str())
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn lock(&self, tx: &mut Transaction<'static, Postgres>, subjects: &[&str]) -> Result<(), KeyStoreError> {
        sqlx::query(&self.sql.lock)
            .bind(subjects)
            .bind(&*self.schema)
            .execute(&mut **tx)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn select(
        &self,
        executor: impl sqlx::PgExecutor<'_>,
        subjects: &[&str],
    ) -> Result<BTreeMap<SubjectId, DataKey>, KeyStoreError> {
        let rows: Vec<(String, i32, Vec<u8>)> = sqlx::query_as(&self.sql.select)
            .bind(subjects)
            .fetch_all(executor)
            .await
            .map_err(unavailable)?;
        rows.into_iter().map(key_of_row).collect()
    }
}

fn key_of_row((subject, version, bytes): (String, i32, Vec<u8>)) -> Result<(SubjectId, DataKey), KeyStoreError> {
    let subject = SubjectId::new(&subject).map_err(|e| KeyStoreError::Malformed(e.to_string()))?;
    let version = u32::try_from(version)
        .map_err(|_| KeyStoreError::Malformed(format!("key of subject {subject} has version {version}")))?;
    let mut bytes = bytes;
    let key = <[u8; KEY_BYTES]>::try_from(bytes.as_slice()).map_err(|_| {
        KeyStoreError::Malformed(format!(
            "key of subject {subject} is {} bytes, not {KEY_BYTES}",
            bytes.len()
        ))
    });
    bytes.zeroize();
    Ok((subject, DataKey::from_bytes(version, key?)))
}

fn unavailable(error: sqlx::Error) -> KeyStoreError {
    KeyStoreError::Unavailable(Box::new(error))
}

impl KeyStore for PgKeyStore {
    async fn get_or_create(
        &self,
        subjects: &BTreeSet<SubjectId>,
    ) -> Result<BTreeMap<SubjectId, DataKey>, KeyStoreError> {
        let names: Vec<&str> = subjects.iter().map(SubjectId::as_str).collect();
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        self.lock(&mut tx, &names).await?;
        let forgotten: Option<String> = sqlx::query_scalar(&self.sql.any_forgotten)
            .bind(&names)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        if let Some(subject) = forgotten {
            let subject = SubjectId::new(&subject).map_err(|e| KeyStoreError::Malformed(e.to_string()))?;
            return Err(KeyStoreError::SubjectForgotten { subject });
        }
        let mut keys = self.select(&mut *tx, &names).await?;
        let missing: Vec<&SubjectId> = subjects.iter().filter(|s| !keys.contains_key(*s)).collect();
        if !missing.is_empty() {
            let mut fresh = Vec::with_capacity(missing.len());
            for subject in missing {
                fresh.push((
                    subject.clone(),
                    DataKey::generate(FIRST_KEY_VERSION).map_err(KeyStoreError::Randomness)?,
                ));
            }
            let new_subjects: Vec<&str> = fresh.iter().map(|(s, _)| s.as_str()).collect();
            let versions = fresh
                .iter()
                .map(|(s, k)| {
                    i32::try_from(k.version()).map_err(|_| {
                        KeyStoreError::Malformed(format!("key of subject {s} has version {}", k.version()))
                    })
                })
                .collect::<Result<Vec<i32>, _>>()?;
            let mut bytes: Vec<Vec<u8>> = fresh.iter().map(|(_, k)| k.bytes().to_vec()).collect();
            let inserted = sqlx::query(&self.sql.insert)
                .bind(&new_subjects)
                .bind(&versions)
                .bind(&bytes)
                .execute(&mut *tx)
                .await;
            bytes.iter_mut().for_each(Zeroize::zeroize);
            inserted.map_err(unavailable)?;
            keys.extend(fresh);
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(keys)
    }

    async fn get(&self, subjects: &BTreeSet<SubjectId>) -> Result<BTreeMap<SubjectId, DataKey>, KeyStoreError> {
        let names: Vec<&str> = subjects.iter().map(SubjectId::as_str).collect();
        if names.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.select(&self.pool, &names).await
    }

    async fn forget(&self, subject: &SubjectId) -> Result<bool, KeyStoreError> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        self.lock(&mut tx, &[subject.as_str()]).await?;
        let marked = sqlx::query(&self.sql.mark_forgotten)
            .bind(subject.as_str())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?
            .rows_affected();
        sqlx::query(&self.sql.delete_key)
            .bind(subject.as_str())
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(marked == 1)
    }

    async fn is_forgotten(&self, subject: &SubjectId) -> Result<bool, KeyStoreError> {
        sqlx::query_scalar(&self.sql.is_forgotten)
            .bind(subject.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)
    }
}
