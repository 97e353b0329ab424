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

/// A PostgreSQL failure, saying what the storage was doing and what the
/// server answered (`tokio_postgres` alone displays a server error as "db
/// error").
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL: cannot {operation}: {message}")]
struct PgError {
    operation: &'static str,
    message: String,
    #[source]
    source: tokio_postgres::Error,
}

/// Maps a driver error of `operation` to a storage error that says what
/// failed: the server's message and SQLSTATE, or the driver's error with its
/// cause (connection refused, authentication...).
fn db(operation: &'static str) -> impl FnOnce(tokio_postgres::Error) -> RegistryError {
    move |source| {
        let message = match source.as_db_error() {
            Some(e) => {
                let mut m = format!(
                    "{}: {} (SQLSTATE {})",
                    e.severity(),
                    e.message(),
                    e.code().code()
                );
                if let Some(detail) = e.detail() {
                    m.push_str("; ");
                    m.push_str(detail);
                }
                if let Some(hint) = e.hint() {
                    m.push_str("; hint: ");
                    m.push_str(hint);
                }
                m
            }
            None => {
                let mut m = source.to_string();
                let mut cause = std::error::Error::source(&source);
                while let Some(c) = cause {
                    m.push_str(": ");
                    m.push_str(&c.to_string());
                    cause = c.source();
                }
                m
            }
        };
        RegistryError::storage(PgError {
            operation,
            message,
            source,
        })
    }
}

fn to_u32(n: i32) -> Result<u32> {
    u32::try_from(n).map_err(RegistryError::storage)
}

fn to_i32(n: u32) -> Result<i32> {
    i32::try_from(n).map_err(RegistryError::storage)
}

/// Checks a schema name as the event store does: lowercase ASCII letters,
/// digits and `_`, starting with a letter or `_`, at most 63 bytes, not
/// `pg_`.
fn check_schema_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("is empty")
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') {
        Some("must start with a lowercase ASCII letter or `_`")
    } else if name.len() > 63 {
        Some("is longer than 63 bytes")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        Some("may only hold lowercase ASCII letters, digits and `_`")
    } else if name.starts_with("pg_") {
        Some("`pg_` names are reserved by PostgreSQL")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(RegistryError::Config(format!(
            "PostgreSQL schema name `{}` {reason}",
            name.escape_debug()
        ))),
        None => Ok(()),
    }
}

impl PostgresStorage {
    /// Opens a `postgres://` (or `postgresql://`) storage URL, as the event
    /// store's URLs read: `?schema=NAME` puts the tables in that schema
    /// (created if missing); every other parameter goes to the driver
    /// (`sslmode`, `options`, `application_name`...).
    ///
    /// # Errors
    /// [`RegistryError::Config`] for a malformed URL or schema name,
    /// [`RegistryError::Storage`] when PostgreSQL cannot be reached or the
    /// schema or tables cannot be created.
    pub async fn open_url(raw: &str) -> Result<Self> {
        let (url, schema) = split_schema(raw)?;
        Self::connect(&url, schema.as_deref()).await
    }

    /// Connects (without TLS) and creates the tables, in `schema` when given
    /// (created if missing), else in the connection's search path.
    ///
    /// # Errors
    /// [`RegistryError::Storage`] when PostgreSQL cannot be reached, and
    /// [`RegistryError::Config`] for a schema name that is not a plain identifier.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self> {
        if let Some(schema) = schema {
            check_schema_name(schema)?;
        }
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(db("connect"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "schema registry PostgreSQL connection ended");
            }
        });
        if let Some(schema) = schema {
            // Look first: CREATE SCHEMA needs the CREATE privilege on the
            // database even when the schema exists.
            let exists = client
                .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
                .await
                .map_err(db("look the schema up"))?
                .is_some();
            if !exists {
                match client
                    .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
                    .await
                {
                    Ok(()) => {}
                    // Another replica created it at the same moment.
                    Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {}
                    Err(e) => return Err(db("create the schema")(e)),
                }
            }
            client
                .batch_execute(&format!("SET search_path TO \"{schema}\""))
                .await
                .map_err(db("set the search path"))?;
        }
        match client.batch_execute(TABLES).await {
            Ok(()) => {}
            // Two replicas creating the tables at once: the loser's
            // CREATE TABLE IF NOT EXISTS may hit the catalog's unique index;
            // the tables are there.
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                client
                    .batch_execute(TABLES)
                    .await
                    .map_err(db("create the tables"))?;
            }
            Err(e) => return Err(db("create the tables")(e)),
        }
        Ok(Self {
            client: Mutex::new(client),
        })
    }
}

/// Takes `schema=NAME` out of a storage URL's query: the URL for the driver
/// and the schema.
fn split_schema(raw: &str) -> Result<(String, Option<String>)> {
    let mut url = url::Url::parse(raw).map_err(|e| {
        RegistryError::Config(format!(
            "PostgreSQL storage URL `{}`: {e}",
            orchestrix::url::redact(raw)
        ))
    })?;
    let mut schema = None;
    let mut kept = Vec::new();
    for (key, value) in url.query_pairs() {
        if key == "schema" {
            schema = Some(value.into_owned());
        } else {
            kept.push((key.into_owned(), value.into_owned()));
        }
    }
    if schema.is_none() {
        return Ok((raw.to_owned(), None));
    }
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((url.into(), schema))
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
            .map_err(db("read a schema"))?;
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
            .map_err(db("list the subjects"))?;
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
            .map_err(db("read a subject's versions"))?;
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
        let tx = client
            .transaction()
            .await
            .map_err(db("begin a transaction"))?;
        let latest: Option<i32> = tx
            .query_one(
                "SELECT MAX(version) FROM schema_registry_versions WHERE subject = $1",
                &[&subject],
            )
            .await
            .map_err(db("read a subject's latest version"))?
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
        .map_err(db("insert a schema"))?;
        let id: i32 = tx
            .query_one(
                "SELECT id FROM schema_registry_schemas WHERE normalized = $1",
                &[&normalized],
            )
            .await
            .map_err(db("read a schema's id"))?
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
            Err(e) => return Err(db("insert a version")(e)),
        }
        match tx.commit().await {
            Ok(()) => Ok((to_u32(id)?, version)),
            Err(e)
                if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                    || e.code() == Some(&SqlState::T_R_SERIALIZATION_FAILURE) =>
            {
                Err(RegistryError::Conflict(subject.to_owned()))
            }
            Err(e) => Err(db("commit a registration")(e)),
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
            .map_err(db("read a compatibility level"))?;
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
            .map_err(db("set a compatibility level"))?;
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
            .map_err(db("delete a subject"))?;
        let mut versions = rows
            .iter()
            .map(|r| to_u32(r.get(0)))
            .collect::<Result<Vec<_>>>()?;
        versions.sort_unstable();
        Ok(versions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_taken_out_of_the_url_and_the_rest_kept() {
        let (url, schema) = split_schema(
            "postgres://u:p@h:5432/db?sslmode=disable&schema=registry&application_name=x",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u:p@h:5432/db?sslmode=disable&application_name=x"
        );
        assert_eq!(schema.as_deref(), Some("registry"));
        let (url, schema) = split_schema("postgres://h/db?schema=registry").unwrap();
        assert_eq!(
            (url.as_str(), schema.as_deref()),
            ("postgres://h/db", Some("registry"))
        );
        // Without `schema=` the URL goes to the driver untouched.
        let raw = "postgres://h/db?options=-c%20search_path%3Dx";
        assert_eq!(split_schema(raw).unwrap(), (raw.to_owned(), None));
    }

    #[test]
    fn schema_names_follow_the_event_store_rules() {
        for ok in ["registry", "_r1", "bank_registry"] {
            check_schema_name(ok).unwrap();
        }
        for (bad, reason) in [
            ("", "is empty"),
            ("Registry", "must start"),
            ("r-1", "may only hold"),
            ("r\"; DROP TABLE x; --", "may only hold"),
            ("pg_registry", "reserved"),
        ] {
            let err = check_schema_name(bad).unwrap_err().to_string();
            assert!(err.contains(reason), "{bad}: {err}");
        }
    }
}
