use async_trait::async_trait;
use orchestrix_avro::compat::CompatibilityLevel;
use tokio::sync::Mutex;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::{RegistryStorage, StoredVersion};
use crate::error::{RegistryError, Result};

const TABLES: &str = "
CREATE TABLE IF NOT EXISTS schema_registry_schemas (
    id SERIAL PRIMARY KEY,
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

/// PostgreSQL storage, in the event store's database (tables prefixed
/// `schema_registry_`, in the connection's schema or the one given).
/// Concurrent registrations from several processes are serialized by the
/// `(subject, version)` primary key: the loser gets a conflict and the
/// registry checks again.
#[derive(Debug)]
pub struct PostgresStorage {
    client: Mutex<Client>,
}

fn db(e: tokio_postgres::Error) -> RegistryError {
    RegistryError::storage(e)
}

fn to_u32(n: i32) -> Result<u32> {
    u32::try_from(n).map_err(RegistryError::storage)
}

fn to_i32(n: u32) -> Result<i32> {
    i32::try_from(n).map_err(RegistryError::storage)
}

impl PostgresStorage {
    /// Connects (without TLS) and creates the tables, in `schema` when given
    /// (created if missing), else in the connection's search path.
    ///
    /// # Errors
    /// [`RegistryError::Storage`] when PostgreSQL cannot be reached, and
    /// [`RegistryError::Config`] for a schema name that is not a plain identifier.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(db)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "schema registry PostgreSQL connection ended");
            }
        });
        if let Some(schema) = schema {
            if !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
                || schema.is_empty()
            {
                return Err(RegistryError::Config(format!(
                    "schema name `{schema}` must be letters, digits and underscores"
                )));
            }
            client
                .batch_execute(&format!(
                    "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"
                ))
                .await
                .map_err(db)?;
        }
        client.batch_execute(TABLES).await.map_err(db)?;
        Ok(Self {
            client: Mutex::new(client),
        })
    }
}

#[async_trait]
impl RegistryStorage for PostgresStorage {
    async fn schema(&self, id: u32) -> Result<Option<String>> {
        let client = self.client.lock().await;
        let row = client
            .query_opt(
                "SELECT schema FROM schema_registry_schemas WHERE id = $1",
                &[&to_i32(id)?],
            )
            .await
            .map_err(db)?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn subjects(&self) -> Result<Vec<String>> {
        let client = self.client.lock().await;
        let rows = client
            .query(
                "SELECT DISTINCT subject FROM schema_registry_versions ORDER BY subject",
                &[],
            )
            .await
            .map_err(db)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn versions(&self, subject: &str) -> Result<Vec<StoredVersion>> {
        let client = self.client.lock().await;
        let rows = client
            .query(
                "SELECT v.version, v.schema_id, s.schema FROM schema_registry_versions v
                 JOIN schema_registry_schemas s ON s.id = v.schema_id WHERE v.subject = $1 ORDER BY v.version",
                &[&subject],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(StoredVersion {
                    version: to_u32(r.get(0))?,
                    id: to_u32(r.get(1))?,
                    schema: r.get(2),
                })
            })
            .collect()
    }

    async fn append_version(
        &self,
        subject: &str,
        expected_latest: Option<u32>,
        schema: &str,
        normalized: &str,
    ) -> Result<(u32, u32)> {
        let mut client = self.client.lock().await;
        let tx = client.transaction().await.map_err(db)?;
        let latest: Option<i32> = tx
            .query_one(
                "SELECT MAX(version) FROM schema_registry_versions WHERE subject = $1",
                &[&subject],
            )
            .await
            .map_err(db)?
            .get(0);
        let latest = latest.map(to_u32).transpose()?;
        if latest != expected_latest {
            return Err(RegistryError::Conflict(subject.to_owned()));
        }
        tx.execute(
            "INSERT INTO schema_registry_schemas (schema, normalized) VALUES ($1, $2) ON CONFLICT (normalized) DO NOTHING",
            &[&schema, &normalized],
        )
        .await
        .map_err(db)?;
        let id: i32 = tx
            .query_one(
                "SELECT id FROM schema_registry_schemas WHERE normalized = $1",
                &[&normalized],
            )
            .await
            .map_err(db)?
            .get(0);
        let version = latest.unwrap_or(0) + 1;
        let inserted = tx
            .execute("INSERT INTO schema_registry_versions (subject, version, schema_id) VALUES ($1, $2, $3)", &[&subject, &to_i32(version)?, &id])
            .await;
        match inserted {
            Ok(_) => {}
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Err(RegistryError::Conflict(subject.to_owned()));
            }
            Err(e) => return Err(db(e)),
        }
        match tx.commit().await {
            Ok(()) => Ok((to_u32(id)?, version)),
            Err(e)
                if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                    || e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE) =>
            {
                Err(RegistryError::Conflict(subject.to_owned()))
            }
            Err(e) => Err(db(e)),
        }
    }

    async fn config(&self, subject: Option<&str>) -> Result<Option<CompatibilityLevel>> {
        let client = self.client.lock().await;
        let row = client
            .query_opt(
                "SELECT compatibility FROM schema_registry_config WHERE subject = $1",
                &[&subject.unwrap_or("")],
            )
            .await
            .map_err(db)?;
        row.map(|r| {
            r.get::<_, String>(0)
                .parse()
                .map_err(RegistryError::storage)
        })
        .transpose()
    }

    async fn set_config(&self, subject: Option<&str>, level: CompatibilityLevel) -> Result<()> {
        let client = self.client.lock().await;
        client
            .execute(
                "INSERT INTO schema_registry_config (subject, compatibility) VALUES ($1, $2)
                 ON CONFLICT (subject) DO UPDATE SET compatibility = EXCLUDED.compatibility",
                &[&subject.unwrap_or(""), &level.as_str()],
            )
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn delete_subject(&self, subject: &str) -> Result<Vec<u32>> {
        let client = self.client.lock().await;
        let rows = client
            .query(
                "DELETE FROM schema_registry_versions WHERE subject = $1 RETURNING version",
                &[&subject],
            )
            .await
            .map_err(db)?;
        let mut versions = rows
            .iter()
            .map(|r| to_u32(r.get(0)))
            .collect::<Result<Vec<_>>>()?;
        versions.sort_unstable();
        Ok(versions)
    }
}
