//! [`SchemaRegistry`]: what both the REST client and the embedded registry offer.

use async_trait::async_trait;
use orchestrix_avro::compat::CompatibilityLevel;

use crate::error::Result;
use crate::types::{CompatibilityResult, SubjectVersion, VersionSpec};

/// The operations of a Confluent-compatible schema registry (Avro schemas).
///
/// Implemented by [`crate::RegistryClient`] (a remote registry over REST) and
/// [`crate::EmbeddedRegistry`] (in this process, kept in memory, SQLite or
/// PostgreSQL), so the codec, the CLI and tests work with either.
#[async_trait]
pub trait SchemaRegistry: Send + Sync + std::fmt::Debug + 'static {
    /// Registers `schema` under `subject` (checking the subject's compatibility
    /// level) and returns its global id; an already registered schema returns
    /// its existing id.
    async fn register(&self, subject: &str, schema: &str) -> Result<u32>;

    /// The version of `subject` whose schema is `schema`.
    async fn lookup(&self, subject: &str, schema: &str) -> Result<SubjectVersion>;

    /// The schema text with this global id.
    async fn schema_by_id(&self, id: u32) -> Result<String>;

    /// Every subject with at least one version, sorted.
    async fn subjects(&self) -> Result<Vec<String>>;

    /// The versions of a subject, ascending.
    async fn versions(&self, subject: &str) -> Result<Vec<u32>>;

    /// One version of a subject.
    async fn version(&self, subject: &str, version: VersionSpec) -> Result<SubjectVersion>;

    /// Checks `schema` against one version of `subject`, or with
    /// [`VersionSpec::Latest`] against what registration would check (every
    /// version for a transitive level), under the subject's level.
    async fn check_compatibility(
        &self,
        subject: &str,
        version: VersionSpec,
        schema: &str,
    ) -> Result<CompatibilityResult>;

    /// The compatibility level of `subject` (`None`: the global level). With
    /// `default_to_global`, a subject without its own level answers the global one.
    async fn config(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<CompatibilityLevel>;

    /// Sets the compatibility level of `subject` (`None`: the global level).
    async fn set_config(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<CompatibilityLevel>;

    /// Deletes a subject; returns the versions it had.
    async fn delete_subject(&self, subject: &str) -> Result<Vec<u32>>;
}
