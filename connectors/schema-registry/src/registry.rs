//! [`EmbeddedRegistry`]: a Confluent-compatible registry inside the process.

use std::sync::Arc;

use async_trait::async_trait;
use orchestrix_avro::compat::{CompatibilityLevel, check_compatibility};
use orchestrix_avro::{ParsedSchema, normalize_json};

use crate::api::SchemaRegistry;
use crate::error::{RegistryError, Result};
use crate::storage::{MemoryStorage, RegistryStorage, SqliteStorage, StoredVersion};
use crate::types::{CompatibilityResult, SubjectVersion, VersionSpec};

/// How often a registration is retried when another writer registered a
/// version of the same subject meanwhile.
const MAX_ATTEMPTS: usize = 8;

/// A schema registry kept in this process's storage (memory, SQLite, or
/// PostgreSQL with the `postgres` feature), with Confluent's semantics:
/// global ids shared by identical schemas, versions per subject, a
/// compatibility level per subject or global (`BACKWARD` by default),
/// enforced on registration. Serve it over REST with [`crate::server`].
///
/// ```
/// use orchestrix_schema_registry::{EmbeddedRegistry, SchemaRegistry, RegistryError};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let registry = EmbeddedRegistry::memory();
/// let v1 = r#"{"type":"record","name":"Opened","fields":[{"name":"owner","type":"string"}]}"#;
/// let v2 = r#"{"type":"record","name":"Opened","fields":[{"name":"owner","type":"string"},{"name":"bank","type":"string"}]}"#;
/// assert_eq!(registry.register("Opened", v1).await?, 1);
/// let refused = registry.register("Opened", v2).await.unwrap_err();
/// assert!(matches!(refused, RegistryError::Incompatible { .. }));
/// assert!(refused.to_string().contains("field `bank` added without a default"), "{refused}");
/// # Ok::<(), RegistryError>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct EmbeddedRegistry {
    storage: Arc<dyn RegistryStorage>,
    default_level: CompatibilityLevel,
}

impl EmbeddedRegistry {
    /// A registry over a storage.
    #[must_use]
    pub fn new(storage: Arc<dyn RegistryStorage>) -> Self {
        Self {
            storage,
            default_level: CompatibilityLevel::Backward,
        }
    }

    /// A registry in memory.
    #[must_use]
    pub fn memory() -> Self {
        Self::new(Arc::new(MemoryStorage::new()))
    }

    /// A registry in a SQLite file (for example the event store's).
    ///
    /// # Errors
    /// [`RegistryError::Storage`] when the file cannot be opened.
    pub fn sqlite(path: impl AsRef<std::path::Path>) -> Result<Self> {
        Ok(Self::new(Arc::new(SqliteStorage::open(path)?)))
    }

    /// A registry chosen by URL: `memory://`, `sqlite://PATH`, or (with the
    /// `postgres` feature) `postgres://...`, where `?schema=NAME` puts the
    /// tables in that schema, created if missing, as in the event store's
    /// URLs (other parameters go to the driver).
    ///
    /// # Errors
    /// [`RegistryError::Config`] for an unknown scheme, a missing feature or
    /// an invalid schema name; [`RegistryError::Storage`] when the storage
    /// cannot be opened, saying what failed.
    pub async fn open_url(url: &str) -> Result<Self> {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        match scheme {
            "memory" => Ok(Self::memory()),
            "sqlite" => Ok(Self::new(Arc::new(SqliteStorage::open_url(url)?))),
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Ok(Self::new(Arc::new(
                crate::storage::PostgresStorage::open_url(url).await?,
            ))),
            #[cfg(not(feature = "postgres"))]
            "postgres" | "postgresql" => Err(RegistryError::Config(format!(
                "the `{scheme}://` registry storage needs the `postgres` feature of `orchestrix-schema-registry`, which is not enabled"
            ))),
            _ => Err(RegistryError::Config(format!(
                "unknown registry storage URL `{url}` (memory://, sqlite://PATH, postgres://...)"
            ))),
        }
    }

    /// The level used when neither the subject nor the registry sets one.
    #[must_use]
    pub fn with_default_level(mut self, level: CompatibilityLevel) -> Self {
        self.default_level = level;
        self
    }

    /// The storage.
    #[must_use]
    pub fn storage(&self) -> &Arc<dyn RegistryStorage> {
        &self.storage
    }

    async fn effective_level(&self, subject: &str) -> Result<CompatibilityLevel> {
        if let Some(level) = self.storage.config(Some(subject)).await? {
            return Ok(level);
        }
        Ok(self
            .storage
            .config(None)
            .await?
            .unwrap_or(self.default_level))
    }

    async fn existing(&self, subject: &str) -> Result<Vec<StoredVersion>> {
        let versions = self.storage.versions(subject).await?;
        if versions.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        Ok(versions)
    }

    fn incompatibilities(
        level: CompatibilityLevel,
        new: &ParsedSchema,
        against: &[StoredVersion],
    ) -> Result<Vec<String>> {
        let previous = against
            .iter()
            .map(|v| {
                ParsedSchema::parse(&v.schema)
                    .map(|s| (v.version, s))
                    .map_err(|e| RegistryError::storage(e.to_string()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(check_compatibility(level, new, &previous)
            .iter()
            .map(ToString::to_string)
            .collect())
    }
}

fn parse(schema: &str) -> Result<ParsedSchema> {
    ParsedSchema::parse(schema).map_err(|e| RegistryError::InvalidSchema(e.to_string()))
}

fn to_version(subject: &str, v: StoredVersion) -> SubjectVersion {
    SubjectVersion {
        subject: subject.to_owned(),
        version: v.version,
        id: v.id,
        schema: v.schema,
    }
}

#[async_trait]
impl SchemaRegistry for EmbeddedRegistry {
    async fn register(&self, subject: &str, schema: &str) -> Result<u32> {
        let parsed = parse(schema)?;
        let normalized = normalize_json(schema);
        for _ in 0..MAX_ATTEMPTS {
            let versions = self.storage.versions(subject).await?;
            if let Some(v) = versions
                .iter()
                .find(|v| normalize_json(&v.schema) == normalized)
            {
                return Ok(v.id);
            }
            let level = self.effective_level(subject).await?;
            let details = Self::incompatibilities(level, &parsed, &versions)?;
            if !details.is_empty() {
                return Err(RegistryError::Incompatible {
                    subject: subject.to_owned(),
                    details,
                });
            }
            match self
                .storage
                .append_version(
                    subject,
                    versions.last().map(|v| v.version),
                    schema,
                    &normalized,
                )
                .await
            {
                Ok((id, version)) => {
                    tracing::info!(subject, id, version, "schema registered");
                    return Ok(id);
                }
                Err(RegistryError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Err(RegistryError::Conflict(subject.to_owned()))
    }

    async fn lookup(&self, subject: &str, schema: &str) -> Result<SubjectVersion> {
        parse(schema)?;
        let normalized = normalize_json(schema);
        let versions = self.existing(subject).await?;
        versions
            .into_iter()
            .find(|v| normalize_json(&v.schema) == normalized)
            .map(|v| to_version(subject, v))
            .ok_or_else(|| RegistryError::SchemaNotFound("Schema not found".into()))
    }

    async fn schema_by_id(&self, id: u32) -> Result<String> {
        self.storage
            .schema(id)
            .await?
            .ok_or_else(|| RegistryError::SchemaNotFound(format!("Schema {id} not found")))
    }

    async fn subjects(&self) -> Result<Vec<String>> {
        self.storage.subjects().await
    }

    async fn versions(&self, subject: &str) -> Result<Vec<u32>> {
        Ok(self
            .existing(subject)
            .await?
            .into_iter()
            .map(|v| v.version)
            .collect())
    }

    async fn version(&self, subject: &str, version: VersionSpec) -> Result<SubjectVersion> {
        let versions = self.existing(subject).await?;
        let found = match version {
            VersionSpec::Latest => versions.into_iter().next_back(),
            VersionSpec::Number(n) => versions.into_iter().find(|v| v.version == n),
        };
        found
            .map(|v| to_version(subject, v))
            .ok_or_else(|| RegistryError::VersionNotFound {
                subject: subject.to_owned(),
                version: version.to_string(),
            })
    }

    async fn check_compatibility(
        &self,
        subject: &str,
        version: VersionSpec,
        schema: &str,
    ) -> Result<CompatibilityResult> {
        let parsed = parse(schema)?;
        let versions = self.storage.versions(subject).await?;
        let level = self.effective_level(subject).await?;
        let against = match version {
            // As registration would check: the latest, or every version when transitive.
            VersionSpec::Latest => versions,
            VersionSpec::Number(n) => {
                if versions.is_empty() {
                    return Err(RegistryError::SubjectNotFound(subject.to_owned()));
                }
                let one: Vec<_> = versions.into_iter().filter(|v| v.version == n).collect();
                if one.is_empty() {
                    return Err(RegistryError::VersionNotFound {
                        subject: subject.to_owned(),
                        version: n.to_string(),
                    });
                }
                one
            }
        };
        let messages = Self::incompatibilities(level, &parsed, &against)?;
        Ok(CompatibilityResult {
            is_compatible: messages.is_empty(),
            messages,
        })
    }

    async fn config(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<CompatibilityLevel> {
        match subject {
            None => Ok(self
                .storage
                .config(None)
                .await?
                .unwrap_or(self.default_level)),
            Some(s) => match self.storage.config(Some(s)).await? {
                Some(level) => Ok(level),
                None if default_to_global => Ok(self
                    .storage
                    .config(None)
                    .await?
                    .unwrap_or(self.default_level)),
                None => Err(RegistryError::SubjectConfigNotFound(s.to_owned())),
            },
        }
    }

    async fn set_config(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<CompatibilityLevel> {
        self.storage.set_config(subject, level).await?;
        Ok(level)
    }

    async fn delete_subject(&self, subject: &str) -> Result<Vec<u32>> {
        let deleted = self.storage.delete_subject(subject).await?;
        if deleted.is_empty() {
            return Err(RegistryError::SubjectNotFound(subject.to_owned()));
        }
        Ok(deleted)
    }
}
