use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orchestrix_avro::compat::CompatibilityLevel;
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use super::{RegistryStorage, StoredVersion};
use crate::error::{RegistryError, Result};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS schema_registry_schemas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    schema TEXT NOT NULL,
    normalized TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS schema_registry_versions (
    subject TEXT NOT NULL,
    version INTEGER NOT NULL,
    schema_id INTEGER NOT NULL REFERENCES schema_registry_schemas (id),
    PRIMARY KEY (subject, version)
);
CREATE TABLE IF NOT EXISTS schema_registry_config (
    subject TEXT PRIMARY KEY,
    compatibility TEXT NOT NULL
);
";

/// SQLite storage, in its own file or in the event store's database file
/// (tables prefixed `schema_registry_`). WAL mode; safe to share the file
/// with other processes (writes take an immediate transaction).
#[derive(Debug, Clone)]
pub struct SqliteStorage {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

fn db(e: rusqlite::Error) -> RegistryError {
    RegistryError::storage(e)
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file at `path` and its tables.
    ///
    /// # Errors
    /// [`RegistryError::Storage`] when the file cannot be opened.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let conn = Connection::open(&path).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// Opens a `sqlite://PATH` URL (also `sqlite:PATH`).
    ///
    /// # Errors
    /// [`RegistryError::Config`] for another scheme, or as [`open`](Self::open).
    pub fn open_url(url: &str) -> Result<Self> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| RegistryError::Config(format!("`{url}` is not a sqlite:// URL")))?;
        let path = path.split('?').next().unwrap_or(path);
        Self::open(path)
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .map_err(|_| RegistryError::storage("sqlite registry lock poisoned"))?;
            f(&mut conn)
        })
        .await
        .map_err(RegistryError::storage)?
    }
}

fn config_key(subject: Option<&str>) -> String {
    subject.unwrap_or("").to_owned()
}

#[async_trait]
impl RegistryStorage for SqliteStorage {
    async fn schema(&self, id: u32) -> Result<Option<String>> {
        self.with(move |c| {
            c.query_row(
                "SELECT schema FROM schema_registry_schemas WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)
        })
        .await
    }

    async fn subjects(&self) -> Result<Vec<String>> {
        self.with(|c| {
            let mut stmt = c
                .prepare("SELECT DISTINCT subject FROM schema_registry_versions ORDER BY subject")
                .map_err(db)?;
            stmt.query_map([], |r| r.get(0))
                .map_err(db)?
                .collect::<rusqlite::Result<_>>()
                .map_err(db)
        })
        .await
    }

    async fn versions(&self, subject: &str) -> Result<Vec<StoredVersion>> {
        let subject = subject.to_owned();
        self.with(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT v.version, v.schema_id, s.schema FROM schema_registry_versions v
                     JOIN schema_registry_schemas s ON s.id = v.schema_id WHERE v.subject = ?1 ORDER BY v.version",
                )
                .map_err(db)?;
            stmt.query_map([subject], |r| Ok(StoredVersion { version: r.get(0)?, id: r.get(1)?, schema: r.get(2)? }))
                .map_err(db)?
                .collect::<rusqlite::Result<_>>()
                .map_err(db)
        })
        .await
    }

    async fn append_version(
        &self,
        subject: &str,
        expected_latest: Option<u32>,
        schema: &str,
        normalized: &str,
    ) -> Result<(u32, u32)> {
        let (subject, schema, normalized) =
            (subject.to_owned(), schema.to_owned(), normalized.to_owned());
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
            let latest: Option<u32> = tx
                .query_row("SELECT MAX(version) FROM schema_registry_versions WHERE subject = ?1", [&subject], |r| r.get(0))
                .map_err(db)?;
            if latest != expected_latest {
                return Err(RegistryError::Conflict(subject));
            }
            tx.execute(
                "INSERT INTO schema_registry_schemas (schema, normalized) VALUES (?1, ?2) ON CONFLICT (normalized) DO NOTHING",
                params![schema, normalized],
            )
            .map_err(db)?;
            let id: u32 =
                tx.query_row("SELECT id FROM schema_registry_schemas WHERE normalized = ?1", [&normalized], |r| r.get(0)).map_err(db)?;
            let version = latest.unwrap_or(0) + 1;
            tx.execute(
                "INSERT INTO schema_registry_versions (subject, version, schema_id) VALUES (?1, ?2, ?3)",
                params![subject, version, id],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok((id, version))
        })
        .await
    }

    async fn config(&self, subject: Option<&str>) -> Result<Option<CompatibilityLevel>> {
        let key = config_key(subject);
        let level: Option<String> = self
            .with(move |c| {
                c.query_row(
                    "SELECT compatibility FROM schema_registry_config WHERE subject = ?1",
                    [key],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)
            })
            .await?;
        level
            .map(|l| CompatibilityLevel::from_str(&l).map_err(RegistryError::storage))
            .transpose()
    }

    async fn set_config(&self, subject: Option<&str>, level: CompatibilityLevel) -> Result<()> {
        let key = config_key(subject);
        self.with(move |c| {
            c.execute(
                "INSERT INTO schema_registry_config (subject, compatibility) VALUES (?1, ?2)
                 ON CONFLICT (subject) DO UPDATE SET compatibility = excluded.compatibility",
                params![key, level.as_str()],
            )
            .map(drop)
            .map_err(db)
        })
        .await
    }

    async fn delete_subject(&self, subject: &str) -> Result<Vec<u32>> {
        let subject = subject.to_owned();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(db)?;
            let versions = {
                let mut stmt = tx.prepare("SELECT version FROM schema_registry_versions WHERE subject = ?1 ORDER BY version").map_err(db)?;
                stmt.query_map([&subject], |r| r.get(0)).map_err(db)?.collect::<rusqlite::Result<Vec<u32>>>().map_err(db)?
            };
            tx.execute("DELETE FROM schema_registry_versions WHERE subject = ?1", [&subject]).map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(versions)
        })
        .await
    }
}
