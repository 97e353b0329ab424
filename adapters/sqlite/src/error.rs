//! Errors of the SQLite backend and their mapping to [`orchestrix::Error`].
//!
//! Driver errors never reach the core API as such: they travel boxed as the
//! `#[source]` of [`orchestrix::Error::Backend`] with backend `sqlite`, marked
//! transient when SQLite reports `SQLITE_BUSY` or `SQLITE_LOCKED` (another
//! connection holds a lock; retrying later helps).

use orchestrix::Error;
use rusqlite::ErrorCode;

/// The backend name in errors and spans.
pub(crate) const BACKEND: &str = "sqlite";

/// What failed inside the SQLite backend; the source of
/// [`orchestrix::Error::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The SQLite driver failed.
    #[error(transparent)]
    Driver(#[from] rusqlite::Error),
    /// The database directory could not be created.
    #[error("cannot create the directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The directory of the database file does not exist (and
    /// [`SqliteConfig::create_dirs`](crate::SqliteConfig::create_dirs) is off).
    #[error(
        "the directory {path} of the database file does not exist; create it, or add `?create_dirs=true` to the URL (`create_dirs` in the config)"
    )]
    MissingDirectory {
        /// The missing directory.
        path: String,
    },
    /// The database was migrated by a newer build of Orchestrix.
    #[error(
        "the database schema is at version {found}, newer than the {known} this build knows; upgrade orchestrix-sqlite"
    )]
    SchemaTooNew {
        /// The version recorded in `schema_migrations`.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// A job on a connection thread panicked; the connection rolled back.
    #[error("a job on the {thread} connection panicked: {message}")]
    Panicked {
        /// `writer` or `reader`.
        thread: &'static str,
        /// The panic message, when it is a string.
        message: String,
    },
    /// A connection thread could not be started.
    #[error("cannot start a connection thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl SqliteError {
    /// Whether a retry can help: `SQLITE_BUSY` and `SQLITE_LOCKED`.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Driver(e) => is_transient(e),
            _ => false,
        }
    }
}

/// Whether SQLite reported a lock held elsewhere (`SQLITE_BUSY`, `SQLITE_LOCKED`
/// and their extended codes).
#[must_use]
pub fn is_transient(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Maps a backend failure during `operation` to [`orchestrix::Error::Backend`].
pub(crate) fn backend(operation: &'static str, err: impl Into<SqliteError>) -> Error {
    let err = err.into();
    Error::backend(BACKEND, operation, err.is_transient(), err)
}

/// A closure for `map_err` that maps a driver error during `operation`.
pub(crate) fn driver(operation: &'static str) -> impl Fn(rusqlite::Error) -> Error {
    move |e| backend(operation, e)
}
