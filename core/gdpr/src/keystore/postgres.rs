//! Keys in PostgreSQL (feature `postgres`), through tokio-postgres and a
//! deadpool pool as `orchestrix-postgres` uses.

use std::str::FromStr as _;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio::sync::OnceCell;

use super::{ForgottenSubject, KeyLookup, KeyStore};
use crate::crypto::DataKey;
use crate::error::{Error, Result};

const BACKEND: &str = "postgres";

/// Keys in a PostgreSQL table `orx_gdpr_keys`, in the schema given by
/// [`with_schema`](Self::with_schema) (`public` by default), created on first
/// use.
///
/// Nothing connects until the first call, and the pool's connections are
/// opened by whoever calls first: the [`Vault`](crate::Vault)'s I/O thread
/// when the store is used through a vault, as it should be.
///
/// A destroyed key is overwritten with `NULL` in a new row version; the old
/// version is gone from the table once (auto)vacuum has run, and from WAL
/// archives and backups when they expire. Size their retention accordingly.
///
/// ```no_run
/// use orchestrix_gdpr::keystore::postgres::PostgresKeyStore;
/// let keys = PostgresKeyStore::new("postgres://localhost/app")?.with_schema("gdpr")?;
/// # Ok::<(), orchestrix_gdpr::Error>(())
/// ```
#[derive(Debug)]
pub struct PostgresKeyStore {
    pool: Pool,
    schema: String,
    ready: OnceCell<()>,
}

fn is_transient(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        // No server answer: the connection broke.
        None => true,
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
        }
    }
}

fn pg_err(operation: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| {
        let transient = is_transient(&e);
        // The server's message, not the driver's terse "db error".
        let message = e
            .as_db_error()
            .map(|db| format!("{} (SQLSTATE {})", db.message(), db.code().code()));
        match message {
            Some(m) => Error::key_store(BACKEND, operation, transient, m),
            None => Error::key_store(BACKEND, operation, transient, e),
        }
    }
}

fn pool_err(operation: &'static str) -> impl FnOnce(deadpool_postgres::PoolError) -> Error {
    move |e| match e {
        deadpool_postgres::PoolError::Backend(e) => pg_err(operation)(e),
        deadpool_postgres::PoolError::Timeout(_) => Error::key_store(BACKEND, operation, true, e),
        other => Error::key_store(BACKEND, operation, false, other.to_string()),
    }
}

/// Whether `name` is a plain lower-case SQL identifier.
fn valid_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 63
}

impl PostgresKeyStore {
    /// A store on the database at `url` (`postgres://user@host/db`), without
    /// TLS; for TLS, build a pool with your connector and use
    /// [`from_pool`](Self::from_pool). Does not connect yet.
    ///
    /// # Errors
    /// [`Error::Config`] for a URL that does not parse.
    pub fn new(url: &str) -> Result<Self> {
        let pg = tokio_postgres::Config::from_str(url)
            .map_err(|e| Error::config("postgres URL", e.to_string()))?;
        let manager = Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(4)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .build()
            .map_err(|e| Error::config("postgres pool", e.to_string()))?;
        Ok(Self::from_pool(pool))
    }

    /// A store on an existing pool.
    #[must_use]
    pub fn from_pool(pool: Pool) -> Self {
        Self {
            pool,
            schema: "public".to_owned(),
            ready: OnceCell::new(),
        }
    }

    /// Keeps the table in `schema` (created if missing): a lower-case SQL
    /// identifier.
    ///
    /// # Errors
    /// [`Error::Config`] for another name.
    pub fn with_schema(mut self, schema: &str) -> Result<Self> {
        if !valid_identifier(schema) {
            return Err(Error::config(
                format!("schema name `{schema}`"),
                "use lower-case letters, digits and `_`, starting with a letter or `_`",
            ));
        }
        schema.clone_into(&mut self.schema);
        Ok(self)
    }

    fn table(&self) -> String {
        format!("\"{}\".orx_gdpr_keys", self.schema)
    }

    async fn client(&self, operation: &'static str) -> Result<Object> {
        let client = self.pool.get().await.map_err(pool_err(operation))?;
        self.ready
            .get_or_try_init(|| async {
                client
                    .batch_execute(&format!(
                        "CREATE SCHEMA IF NOT EXISTS \"{schema}\";
                         CREATE TABLE IF NOT EXISTS {table} (
                             subject      text PRIMARY KEY,
                             key          bytea,
                             created_at   timestamptz NOT NULL DEFAULT now(),
                             forgotten_at timestamptz,
                             CHECK ((key IS NULL) = (forgotten_at IS NOT NULL))
                         );",
                        schema = self.schema,
                        table = self.table()
                    ))
                    .await
                    .map_err(pg_err("setup"))
            })
            .await?;
        Ok(client)
    }

    async fn lookup(&self, client: &Object, subject: &str) -> Result<KeyLookup> {
        let row = client
            .query_opt(
                &format!(
                    "SELECT key, forgotten_at FROM {} WHERE subject = $1",
                    self.table()
                ),
                &[&subject],
            )
            .await
            .map_err(pg_err("read key"))?;
        let Some(row) = row else {
            return Ok(KeyLookup::Missing);
        };
        let key: Option<Vec<u8>> = row.get(0);
        let at: Option<DateTime<Utc>> = row.get(1);
        Ok(match (key, at) {
            (_, Some(at)) => KeyLookup::Forgotten(at),
            (Some(key), None) => KeyLookup::Active(DataKey::from_bytes(&key)?),
            (None, None) => {
                return Err(Error::key_store(
                    BACKEND,
                    "read key",
                    false,
                    "a row with neither a key nor a tombstone",
                ));
            }
        })
    }
}

#[async_trait]
impl KeyStore for PostgresKeyStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn get_or_create(&self, subject: &str) -> Result<DataKey> {
        let client = self.client("create key").await?;
        let fresh = DataKey::generate()?;
        client
            .execute(
                &format!(
                    "INSERT INTO {} (subject, key) VALUES ($1, $2) ON CONFLICT (subject) DO NOTHING",
                    self.table()
                ),
                &[&subject, &fresh.as_bytes().as_slice()],
            )
            .await
            .map_err(pg_err("create key"))?;
        // A new statement, so a concurrent creator's committed key is seen.
        match self.lookup(&client, subject).await? {
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
        let client = self.client("read key").await?;
        self.lookup(&client, subject).await
    }

    async fn destroy(&self, subject: &str) -> Result<bool> {
        let mut client = self.client("destroy key").await?;
        let tx = client.transaction().await.map_err(pg_err("destroy key"))?;
        let table = self.table();
        let destroyed = tx
            .execute(
                &format!(
                    "UPDATE {table} SET key = NULL, forgotten_at = now()
                     WHERE subject = $1 AND forgotten_at IS NULL"
                ),
                &[&subject],
            )
            .await
            .map_err(pg_err("destroy key"))?;
        tx.execute(
            &format!(
                "INSERT INTO {table} (subject, key, forgotten_at) VALUES ($1, NULL, now())
                 ON CONFLICT (subject) DO NOTHING"
            ),
            &[&subject],
        )
        .await
        .map_err(pg_err("destroy key"))?;
        tx.commit().await.map_err(pg_err("destroy key"))?;
        Ok(destroyed > 0)
    }

    async fn forgotten(&self) -> Result<Vec<ForgottenSubject>> {
        let client = self.client("list forgotten").await?;
        let rows = client
            .query(
                &format!(
                    "SELECT subject, forgotten_at FROM {} WHERE forgotten_at IS NOT NULL
                     ORDER BY forgotten_at, subject",
                    self.table()
                ),
                &[],
            )
            .await
            .map_err(pg_err("list forgotten"))?;
        Ok(rows
            .iter()
            .map(|r| ForgottenSubject {
                subject: r.get(0),
                forgotten_at: r.get(1),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(super::valid_identifier("gdpr_1"));
        assert!(!super::valid_identifier("Gdpr"));
        assert!(!super::valid_identifier("a\"; DROP"));
        assert!(!super::valid_identifier("1x"));
    }
}
