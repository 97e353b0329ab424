//! Driver errors mapped to [`orchestrix::Error`], and the bounded retry used
//! for idempotent operations.
//!
//! Every driver error becomes [`Error::Backend`] with `backend: "postgres"`
//! and a `transient` flag, except a unique violation on a stream revision,
//! which is the typed [`Error::Conflict`] (see
//! [`crate::store::PostgresStore`]), and a pool shut down, which is
//! [`Error::Shutdown`].

use std::future::Future;
use std::time::Duration;

use orchestrix::Error;
use tokio_postgres::error::SqlState;

use crate::config::RetryConfig;

/// The backend name carried by every error of this crate.
pub const BACKEND: &str = "postgres";

/// Constraint that makes two appends at the same stream revision collide.
pub(crate) const STREAM_REVISION_KEY: &str = "events_stream_revision_key";
/// Constraint that makes an event id unique in the store.
pub(crate) const EVENT_ID_KEY: &str = "events_event_id_key";

/// Whether a SQLSTATE says that retrying the same statement can succeed.
///
/// Transient: serialization failure (`40001`), deadlock (`40P01`), every
/// connection exception (class `08`), operator intervention such as an
/// administrator or crash shutdown (`57P01`, `57P02`, `57P03`), a statement
/// cancelled by `statement_timeout` (`57014`), too many connections
/// (`53300`) and the other insufficient-resources codes (class `53`),
/// lock-not-available (`55P03`).
///
/// ```
/// use orchestrix_postgres::error::is_transient_code;
/// use tokio_postgres::error::SqlState;
/// assert!(is_transient_code(&SqlState::T_R_SERIALIZATION_FAILURE));
/// assert!(is_transient_code(&SqlState::ADMIN_SHUTDOWN));
/// assert!(!is_transient_code(&SqlState::UNIQUE_VIOLATION));
/// assert!(!is_transient_code(&SqlState::SYNTAX_ERROR));
/// ```
#[must_use]
pub fn is_transient_code(code: &SqlState) -> bool {
    let c = code.code();
    matches!(
        c,
        "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "57014" | "55P03"
    ) || c.starts_with("08")
        || c.starts_with("53")
}

/// Whether a driver error is worth a retry: a transient SQLSTATE, or no
/// SQLSTATE at all because the connection was refused, reset, timed out or
/// closed. Authentication, configuration, TLS and (de)serialization errors
/// are permanent.
#[must_use]
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    if let Some(code) = e.code() {
        return is_transient_code(code);
    }
    if e.is_closed() {
        return true;
    }
    // tokio-postgres has no public kind accessor; its Display of the kind is
    // a fixed string per kind.
    let text = e.to_string();
    [
        "error connecting to server",
        "error communicating with the server",
        "timeout waiting for server",
        "connection closed",
    ]
    .iter()
    .any(|prefix| text.starts_with(prefix))
}

/// A driver error as the source of [`Error::Backend`], displayed with the
/// server's message and SQLSTATE (the driver's own Display says only
/// "db error").
#[derive(Debug)]
pub struct DriverError(tokio_postgres::Error);

impl DriverError {
    /// The SQLSTATE, when the server sent one.
    #[must_use]
    pub fn code(&self) -> Option<&SqlState> {
        self.0.code()
    }

    /// The driver error.
    #[must_use]
    pub fn inner(&self) -> &tokio_postgres::Error {
        &self.0
    }
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(db) = self.0.as_db_error() {
            write!(
                f,
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            )?;
            if let Some(detail) = db.detail() {
                write!(f, "; {detail}")?;
            }
            return Ok(());
        }
        write!(f, "{}", self.0)?;
        if let Some(cause) = std::error::Error::source(&self.0) {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl From<tokio_postgres::Error> for DriverError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self(e)
    }
}

impl std::error::Error for DriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The SQLSTATE behind an error of this crate, if any.
///
/// ```
/// let e = orchestrix::Error::invalid("x", "y");
/// assert_eq!(orchestrix_postgres::error::sqlstate(&e), None);
/// ```
#[must_use]
pub fn sqlstate(e: &Error) -> Option<&str> {
    match e {
        Error::Backend { source, .. } => source
            .downcast_ref::<DriverError>()
            .and_then(|d| d.code())
            .map(SqlState::code),
        _ => None,
    }
}

/// Maps a driver error.
#[must_use]
pub fn from_pg(operation: &'static str, e: tokio_postgres::Error) -> Error {
    let transient = is_transient(&e);
    Error::backend(BACKEND, operation, transient, DriverError(e))
}

/// Maps a pool error.
#[must_use]
pub fn from_pool(operation: &'static str, e: deadpool_postgres::PoolError) -> Error {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => from_pg(operation, e),
        PoolError::Closed => Error::Shutdown {
            component: "postgres connection pool",
        },
        // Waiting for a free connection or for a new one timed out.
        PoolError::Timeout(_) => Error::backend(BACKEND, operation, true, e),
        other => Error::backend(BACKEND, operation, false, other.to_string()),
    }
}

/// The SQLSTATE and constraint of a driver error, when the server sent one.
pub(crate) fn db_code(e: &tokio_postgres::Error) -> Option<(&SqlState, Option<&str>)> {
    e.as_db_error().map(|db| (db.code(), db.constraint()))
}

/// Runs `op` until it succeeds, fails permanently, or the attempts run out,
/// sleeping with exponential backoff and full jitter in between. Only for
/// operations that are safe to repeat.
pub(crate) async fn retry<T, F, Fut>(config: &RetryConfig, mut op: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    let mut backoff = Duration::from_millis(config.initial_backoff_ms.max(1));
    let max_backoff = Duration::from_millis(config.max_backoff_ms.max(1));
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e)
                if e.is_transient()
                    && !matches!(e, Error::Conflict { .. })
                    && attempt < config.max_attempts =>
            {
                let micros = u64::try_from(backoff.as_micros()).unwrap_or(u64::MAX);
                let sleep = Duration::from_micros(rand::random_range(0..=micros));
                tracing::debug!(error = %e, attempt, ?sleep, "transient postgres error; retrying");
                tokio::time::sleep(sleep).await;
                backoff = (backoff * 2).min(max_backoff);
                attempt += 1;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_sqlstates() {
        for code in [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
            SqlState::TOO_MANY_CONNECTIONS,
            SqlState::CONNECTION_FAILURE,
            SqlState::QUERY_CANCELED,
        ] {
            assert!(is_transient_code(&code), "{code:?}");
        }
        for code in [
            SqlState::UNIQUE_VIOLATION,
            SqlState::UNDEFINED_TABLE,
            SqlState::INSUFFICIENT_PRIVILEGE,
            SqlState::INVALID_TEXT_REPRESENTATION,
        ] {
            assert!(!is_transient_code(&code), "{code:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_on_permanent_and_after_max_attempts() {
        let config = RetryConfig {
            max_attempts: 4,
            initial_backoff_ms: 1,
            max_backoff_ms: 8,
        };
        let mut calls = 0;
        let r: Result<(), Error> = retry(&config, || {
            calls += 1;
            async { Err(Error::backend(BACKEND, "read", true, "connection reset")) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 4);

        let mut calls = 0;
        let r: Result<(), Error> = retry(&config, || {
            calls += 1;
            async { Err(Error::invalid("x", "y")) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);

        let mut calls = 0;
        let r = retry(&config, || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(Error::backend(BACKEND, "read", true, "closed"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r.ok(), Some(3));
    }
}
