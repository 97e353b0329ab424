//! Where the embedded registry keeps schemas, versions and levels.

mod memory;
#[cfg(feature = "postgres")]
mod postgres;
mod sqlite;

use async_trait::async_trait;
use orchestrix_avro::compat::CompatibilityLevel;

pub use memory::MemoryStorage;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStorage;
pub use sqlite::SqliteStorage;

use crate::error::Result;

/// A version as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    /// Version within the subject, from 1.
    pub version: u32,
    /// Global schema id.
    pub id: u32,
    /// Schema text.
    pub schema: String,
}

/// Storage of the embedded registry. Schema ids are global and shared by
/// subjects that register the same schema (identified by its normalized text).
#[async_trait]
pub trait RegistryStorage: Send + Sync + std::fmt::Debug + 'static {
    /// The schema text with this id.
    async fn schema(&self, id: u32) -> Result<Option<String>>;

    /// Subjects with at least one version, sorted.
    async fn subjects(&self) -> Result<Vec<String>>;

    /// The versions of a subject, ascending (empty when unknown).
    async fn versions(&self, subject: &str) -> Result<Vec<StoredVersion>>;

    /// Appends a version to `subject`, atomically: fails with
    /// [`crate::RegistryError::Conflict`] unless the subject's latest version
    /// is still `expected_latest` (`None`: no version). Reuses the id of an
    /// identical schema (same `normalized` text) or allocates the next one.
    /// Returns the id and the new version.
    async fn append_version(
        &self,
        subject: &str,
        expected_latest: Option<u32>,
        schema: &str,
        normalized: &str,
    ) -> Result<(u32, u32)>;

    /// The level of `subject` (`None`: the global one), if set.
    async fn config(&self, subject: Option<&str>) -> Result<Option<CompatibilityLevel>>;

    /// Sets the level of `subject` (`None`: the global one).
    async fn set_config(&self, subject: Option<&str>, level: CompatibilityLevel) -> Result<()>;

    /// Deletes every version of a subject (schemas stay readable by id);
    /// returns the deleted versions.
    async fn delete_subject(&self, subject: &str) -> Result<Vec<u32>>;
}
