//! Keys in a SQLite file (feature `sqlite`).

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension as _, params};

use super::{ForgottenSubject, KeyLookup, KeyStore};
use crate::crypto::DataKey;
use crate::error::{Error, Result};

const BACKEND: &str = "sqlite";

/// A row: the key (absent once destroyed) and the tombstone time.
type Row = (Option<Vec<u8>>, Option<String>);

/// Keys in a SQLite database, one row per subject in `orx_gdpr_keys`.
///
/// The database runs with `secure_delete` on, so a destroyed key's bytes are
/// overwritten in the file rather than left in a free page, and with the
/// rollback journal (not WAL), so no copy stays behind in a `-wal` file.
/// Copies in backups made before a forget are beyond its reach: keep key
/// store backups short-lived, or do not back keys up at all.
///
/// ```
/// use orchestrix_gdpr::keystore::{KeyStore, sqlite::SqliteKeyStore};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("keys.db");
/// let key = SqliteKeyStore::open(&path)?.get_or_create("customer-1").await?;
/// let again = SqliteKeyStore::open(&path)?.get_or_create("customer-1").await?;
/// assert_eq!(key.as_bytes(), again.as_bytes()); // survives a reopen
/// # Ok::<(), anyhow::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct SqliteKeyStore {
    conn: Mutex<Connection>,
}

fn err(operation: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |e| {
        let transient = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        Error::key_store(BACKEND, operation, transient, e)
    }
}

impl SqliteKeyStore {
    /// Opens (creating if needed) the key database at `path`.
    ///
    /// # Errors
    /// [`Error::KeyStore`] when the file cannot be opened or set up.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::setup(Connection::open(path).map_err(err("open"))?)
    }

    /// A key database in memory (gone with the value).
    ///
    /// # Errors
    /// [`Error::KeyStore`].
    pub fn open_in_memory() -> Result<Self> {
        Self::setup(Connection::open_in_memory().map_err(err("open"))?)
    }

    fn setup(conn: Connection) -> Result<Self> {
        conn.execute_batch(
            "PRAGMA secure_delete = ON;
             PRAGMA journal_mode = DELETE;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS orx_gdpr_keys (
                 subject      TEXT PRIMARY KEY NOT NULL,
                 key          BLOB,
                 created_at   TEXT NOT NULL,
                 forgotten_at TEXT
             ) STRICT;",
        )
        .map_err(err("setup"))?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn row(&self, subject: &str) -> Result<Option<Row>> {
        self.conn()
            .query_row(
                "SELECT key, forgotten_at FROM orx_gdpr_keys WHERE subject = ?1",
                params![subject],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(err("read key"))
    }
}

/// Fixed-width UTC timestamps, so that text order is time order.
fn now() -> String {
    Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::key_store(BACKEND, "read tombstone", false, e))
}

fn lookup(row: Option<Row>) -> Result<KeyLookup> {
    Ok(match row {
        None => KeyLookup::Missing,
        Some((_, Some(at))) => KeyLookup::Forgotten(parse_time(&at)?),
        Some((Some(key), None)) => KeyLookup::Active(DataKey::from_bytes(&key)?),
        Some((None, None)) => {
            return Err(Error::key_store(
                BACKEND,
                "read key",
                false,
                "a row with neither a key nor a tombstone",
            ));
        }
    })
}

#[async_trait]
impl KeyStore for SqliteKeyStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn get_or_create(&self, subject: &str) -> Result<DataKey> {
        let fresh = DataKey::generate()?;
        self.conn()
            .execute(
                "INSERT INTO orx_gdpr_keys (subject, key, created_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (subject) DO NOTHING",
                params![subject, fresh.as_bytes().as_slice(), now()],
            )
            .map_err(err("create key"))?;
        match lookup(self.row(subject)?)? {
            KeyLookup::Active(key) => Ok(key),
            KeyLookup::Forgotten(_) => Err(Error::Forgotten {
                subject: subject.to_owned(),
            }),
            KeyLookup::Missing => Err(Error::key_store(
                BACKEND,
                "create key",
                true,
                "the key vanished right after it was written",
            )),
        }
    }

    async fn get(&self, subject: &str) -> Result<KeyLookup> {
        lookup(self.row(subject)?)
    }

    async fn destroy(&self, subject: &str) -> Result<bool> {
        let now = now();
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(err("destroy key"))?;
        let had_key = tx
            .execute(
                "UPDATE orx_gdpr_keys SET key = NULL, forgotten_at = ?2
                 WHERE subject = ?1 AND forgotten_at IS NULL",
                params![subject, now],
            )
            .map_err(err("destroy key"))?
            > 0;
        tx.execute(
            "INSERT INTO orx_gdpr_keys (subject, key, created_at, forgotten_at)
             VALUES (?1, NULL, ?2, ?2) ON CONFLICT (subject) DO NOTHING",
            params![subject, now],
        )
        .map_err(err("destroy key"))?;
        tx.commit().map_err(err("destroy key"))?;
        Ok(had_key)
    }

    async fn forgotten(&self) -> Result<Vec<ForgottenSubject>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT subject, forgotten_at FROM orx_gdpr_keys
                 WHERE forgotten_at IS NOT NULL ORDER BY forgotten_at, subject",
            )
            .map_err(err("list forgotten"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(err("list forgotten"))?;
        rows.map(|row| {
            let (subject, at) = row.map_err(err("list forgotten"))?;
            Ok(ForgottenSubject {
                subject,
                forgotten_at: parse_time(&at)?,
            })
        })
        .collect()
    }
}
