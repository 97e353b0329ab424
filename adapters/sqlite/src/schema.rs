//! The database schema, as versioned migrations recorded in `schema_migrations`.
//!
//! [`migrate`] applies, in one transaction, every migration newer than the
//! newest recorded one, so it is idempotent and safe to run from several
//! processes at once (the write lock serializes them). A database migrated by
//! a newer build is refused rather than misread.
//!
//! Times are stored as integer microseconds since the Unix epoch (UTC), ids as
//! lowercase hyphenated UUID text, metadata and payloads of timers and headers
//! of dead letters as JSON text, so the database can be inspected with the
//! `sqlite3` shell.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{SqliteError, backend};

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its version; versions start at 1 and increase by 1.
    pub version: i64,
    /// A short description, stored with it.
    pub name: &'static str,
    /// The statements, run as one batch.
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial schema",
        sql: V1,
    },
    Migration {
        version: 2,
        name: "read models of typed projections",
        sql: V2,
    },
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

const V1: &str = r"
CREATE TABLE events (
    -- Global position: assigned at insert by the single writer, so positions
    -- grow in commit order with no gap that a reader could skip.
    position       INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id      TEXT    NOT NULL,
    category       TEXT    NOT NULL,
    revision       INTEGER NOT NULL,
    event_id       TEXT    NOT NULL UNIQUE,
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    source         TEXT    NOT NULL,
    -- Microseconds since the Unix epoch, UTC.
    time           INTEGER NOT NULL,
    content_type   TEXT    NOT NULL,
    data           BLOB    NOT NULL,
    -- orchestrix::Metadata as JSON.
    metadata       TEXT    NOT NULL,
    UNIQUE (stream_id, revision)
);
CREATE INDEX events_by_category ON events (category, position);

CREATE TABLE snapshots (
    stream_id     TEXT    PRIMARY KEY,
    revision      INTEGER NOT NULL,
    state_version INTEGER NOT NULL,
    data          BLOB    NOT NULL,
    taken_at      INTEGER NOT NULL
);

CREATE TABLE checkpoints (
    name       TEXT    PRIMARY KEY,
    position   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE dead_letters (
    id         TEXT    PRIMARY KEY,
    consumer   TEXT    NOT NULL,
    event_id   TEXT,
    event_type TEXT,
    stream_id  TEXT,
    position   INTEGER,
    payload    BLOB    NOT NULL,
    -- Headers as a JSON object of strings.
    headers    TEXT    NOT NULL,
    reason     TEXT    NOT NULL,
    error_kind TEXT    NOT NULL,
    attempts   INTEGER NOT NULL,
    failed_at  INTEGER NOT NULL
);
CREATE INDEX dead_letters_by_time ON dead_letters (failed_at, id);
CREATE INDEX dead_letters_by_consumer ON dead_letters (consumer, failed_at, id);

CREATE TABLE timers (
    id      TEXT    PRIMARY KEY,
    owner   TEXT    NOT NULL,
    key     TEXT    NOT NULL,
    due_at  INTEGER NOT NULL,
    -- The owner's payload as JSON.
    payload TEXT    NOT NULL
) WITHOUT ROWID;
CREATE INDEX timers_by_due ON timers (owner, due_at, id);
";

/// The rows of typed projections ([`SqliteReadModels`](crate::SqliteReadModels)):
/// one JSON document per (view, key), and the last stream revision each view
/// applied (for idempotence).
const V2: &str = r#"
CREATE TABLE read_models (
    "view" TEXT NOT NULL,
    "key"  TEXT NOT NULL,
    -- The row as JSON text.
    "row"  TEXT NOT NULL,
    PRIMARY KEY ("view", "key")
) WITHOUT ROWID;

CREATE TABLE read_model_applied (
    "view"   TEXT    NOT NULL,
    stream   TEXT    NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY ("view", stream)
) WITHOUT ROWID;
"#;

/// Brings the schema of `conn`'s database up to [`SCHEMA_VERSION`] and
/// returns how many migrations it applied (0 when it was current).
///
/// # Errors
/// [`orchestrix::Error::Backend`] when SQLite fails (the transaction rolls
/// back: the schema is left as it was) or the database was migrated by a newer
/// build.
pub fn migrate(conn: &mut Connection) -> orchestrix::Result<usize> {
    const OP: &str = "migrate";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| backend(OP, e))?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT    NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )
    .map_err(|e| backend(OP, e))?;
    let current: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(|e| backend(OP, e))?;
    if current > SCHEMA_VERSION {
        return Err(backend(
            OP,
            SqliteError::SchemaTooNew {
                found: current,
                known: SCHEMA_VERSION,
            },
        ));
    }
    let now = chrono::Utc::now().timestamp_micros();
    let mut applied = 0;
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.execute_batch(m.sql).map_err(|e| backend(OP, e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            (m.version, m.name, now),
        )
        .map_err(|e| backend(OP, e))?;
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied SQLite migration"
        );
        applied += 1;
    }
    tx.commit().map_err(|e| backend(OP, e))?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_start_at_one_and_increase_by_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i64::try_from(i).unwrap() + 1, "{}", m.name);
        }
    }

    #[test]
    fn migrating_twice_applies_nothing_the_second_time() {
        let mut conn = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut conn).unwrap(), MIGRATIONS.len());
        assert_eq!(migrate(&mut conn).unwrap(), 0);
        let versions: i64 = conn
            .query_row("SELECT COUNT(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(versions, SCHEMA_VERSION);
    }

    #[test]
    fn refuses_a_newer_schema() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations VALUES (?1, 'future', 0)",
            [SCHEMA_VERSION + 1],
        )
        .unwrap();
        let err = migrate(&mut conn).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
        assert!(!err.is_transient());
    }
}
