//! The keyspace and its tables, created idempotently (`IF NOT EXISTS`), so
//! that many processes may connect at once.

use std::fmt;

use orchestrix::{Error, Result};
use scylla::client::session::Session;

use crate::error::from_exec;

/// A validated keyspace name: `^[a-z_][a-z0-9_]{0,47}$`.
///
/// ```
/// use orchestrix_scylla::schema::KeyspaceName;
/// assert!(KeyspaceName::new("tenant_a").is_ok());
/// assert!(KeyspaceName::new("Tenant-A").is_err());
/// assert!(KeyspaceName::new("").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyspaceName(String);

impl KeyspaceName {
    /// Checks a name.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a name that is not a plain lowercase identifier.
    pub fn new(name: &str) -> Result<Self> {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if first_ok && rest_ok && name.len() <= 48 {
            Ok(Self(name.to_owned()))
        } else {
            Err(Error::invalid(
                format!("keyspace name `{name}`"),
                "must match ^[a-z_][a-z0-9_]{0,47}$",
            ))
        }
    }

    /// The name.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `keyspace.table`.
    #[must_use]
    pub fn table(&self, table: &str) -> String {
        format!("{}.{table}", self.0)
    }
}

impl fmt::Display for KeyspaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Positions per partition of the `all_events` table.
pub const BUCKET: u64 = 8192;

/// The shard (partition) of the `claims` table that allocates positions.
pub(crate) const ALLOC_SHARD: i32 = 0;

/// Clustering key of the sentinel row that always exists in the allocator
/// partition, so that one read returns the counter with the open claims.
pub(crate) const SENTINEL: i64 = i64::MAX;

/// The statements that create everything, in order.
#[must_use]
pub fn ddl(ks: &KeyspaceName, replication_factor: u32) -> Vec<String> {
    let t = |name: &str| ks.table(name);
    vec![
        format!(
            "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
        ),
        // Streams: one partition per stream. Its static columns are the
        // stream's head revision and the last position claim that touched it;
        // every append is one conditional batch on this partition.
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                stream_id text, revision bigint,
                head bigint static, last_claim bigint static, claim_committed boolean static,
                position bigint, event_id uuid, event_type text, schema_version bigint, source text,
                time_ms timestamp, time_nanos int, content_type text, data blob, metadata text,
                PRIMARY KEY (stream_id, revision))",
            t("events")
        ),
        // The all-stream: one row per position (an event or a skip marker),
        // in buckets of BUCKET positions.
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                bucket bigint, position bigint, skip boolean, append_last bigint,
                stream_id text, category text, revision bigint,
                event_id uuid, event_type text, schema_version bigint, source text,
                time_ms timestamp, time_nanos int, content_type text, data blob, metadata text,
                PRIMARY KEY (bucket, position))",
            t("all_events")
        ),
        // The position allocator: the counter `next` and one row per claim
        // not yet known to be written, keyed by its last position.
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                shard int, last bigint, first bigint, stream_id text, claimed_at timestamp,
                owner uuid, next bigint static,
                PRIMARY KEY (shard, last)) WITH gc_grace_seconds = 3600",
            t("claims")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                stream_id text PRIMARY KEY, revision bigint, state_version bigint, data blob,
                taken_ms timestamp, taken_nanos int)",
            t("snapshots")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (name text PRIMARY KEY, position bigint)",
            t("checkpoints")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                consumer text, failed_ms timestamp, id uuid, failed_nanos int,
                event_id uuid, event_type text, stream_id text, position bigint,
                payload blob, headers text, reason text, error_kind text, attempts bigint,
                PRIMARY KEY (consumer, failed_ms, id))",
            t("dead_letters")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (id uuid PRIMARY KEY, consumer text, failed_ms timestamp)",
            t("dead_letter_ids")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                id text PRIMARY KEY, owner text, key text, due_ms timestamp, due_nanos int, payload text)",
            t("timers")
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                owner text, due_ms timestamp, id text, due_nanos int, key text, payload text,
                PRIMARY KEY (owner, due_ms, id))",
            t("timers_by_owner")
        ),
    ]
}

/// Creates the keyspace and the tables if missing, and the allocator's
/// counter (starting at position 1) if missing.
///
/// # Errors
/// The driver's error.
pub async fn create(session: &Session, ks: &KeyspaceName, replication_factor: u32) -> Result<()> {
    for statement in ddl(ks, replication_factor) {
        session
            .query_unpaged(statement, ())
            .await
            .map_err(|e| from_exec("create schema", e))?;
    }
    session
        .query_unpaged(
            format!(
                "INSERT INTO {} (shard, last, next) VALUES ({ALLOC_SHARD}, {SENTINEL}, 1) IF NOT EXISTS",
                ks.table("claims")
            ),
            (),
        )
        .await
        .map_err(|e| from_exec("create schema", e))?;
    Ok(())
}

/// Drops a keyspace and everything in it.
///
/// # Errors
/// The driver's error.
pub async fn drop_keyspace(session: &Session, ks: &KeyspaceName) -> Result<()> {
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
        .await
        .map_err(|e| from_exec("drop keyspace", e))?;
    Ok(())
}
