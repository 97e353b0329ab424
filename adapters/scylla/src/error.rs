//! Errors: the crate's own [`ScyllaError`] (configuration and driver
//! failures), its mapping into [`orchestrix::Error`], and the bounded retry
//! used for idempotent operations.
//!
//! Every driver error becomes [`Error::Backend`] with `backend: "scylla"` and
//! a `transient` flag; a failed lightweight transaction on a stream is the
//! typed [`Error::Conflict`] with the expected and the actual revision.

use std::future::Future;
use std::time::Duration;

use orchestrix::Error;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};

use crate::config::RetryConfig;

/// The backend name carried by every error of this crate.
pub const BACKEND: &str = "scylla";

/// What can go wrong in this crate before an [`orchestrix::Error`] is made
/// of it.
///
/// ```
/// use orchestrix_scylla::{ScyllaConfig, ScyllaError};
/// let err = ScyllaConfig::parse_url("scylla://127.0.0.1:9042/ks?colour=blue").unwrap_err();
/// assert!(matches!(err, ScyllaError::UnknownParameter { ref key, .. } if key == "colour"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScyllaError {
    /// The URL does not parse or is not `scylla://`.
    #[error("scylla URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A query parameter this crate does not know.
    #[error("scylla URL: unknown parameter `{key}` (known: {known})")]
    UnknownParameter {
        /// The unknown key.
        key: String,
        /// The keys this crate accepts.
        known: String,
    },
    /// A known parameter with a value that does not fit.
    #[error("scylla URL: `{key}={value}`: {reason}")]
    InvalidParameter {
        /// The key.
        key: String,
        /// The rejected value.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A config field that does not validate.
    #[error("scylla config `{field}`: {reason}")]
    InvalidConfig {
        /// The field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// The driver failed.
    #[error("{0}")]
    Driver(String),
}

impl From<ScyllaError> for Error {
    fn from(e: ScyllaError) -> Self {
        match e {
            ScyllaError::Driver(text) => Error::backend(BACKEND, "connect", true, text),
            other => Error::invalid("scylla config", other.to_string()),
        }
    }
}

/// Whether a driver error is worth a retry: timeouts, unavailable or
/// overloaded nodes, broken or exhausted connections. Syntax, schema,
/// authentication and (de)serialization errors are permanent.
#[must_use]
pub fn is_transient(e: &ExecutionError) -> bool {
    match e {
        ExecutionError::ConnectionPoolError(_)
        | ExecutionError::RequestTimeout(_)
        | ExecutionError::EmptyPlan
        | ExecutionError::SchemaAgreementError(_)
        | ExecutionError::MetadataError(_) => true,
        ExecutionError::LastAttemptError(attempt) => is_transient_attempt(attempt),
        _ => false,
    }
}

fn is_transient_attempt(e: &RequestAttemptError) -> bool {
    match e {
        RequestAttemptError::BrokenConnectionError(_)
        | RequestAttemptError::UnableToAllocStreamId => true,
        RequestAttemptError::DbError(db, _) => is_transient_db(db),
        _ => false,
    }
}

/// Whether a server error code is worth a retry.
///
/// ```
/// use orchestrix_scylla::error::is_transient_db;
/// use scylla::errors::DbError;
/// assert!(is_transient_db(&DbError::Overloaded));
/// assert!(!is_transient_db(&DbError::SyntaxError));
/// ```
#[must_use]
pub fn is_transient_db(e: &DbError) -> bool {
    matches!(
        e,
        DbError::Unavailable { .. }
            | DbError::Overloaded
            | DbError::IsBootstrapping
            | DbError::ReadTimeout { .. }
            | DbError::WriteTimeout { .. }
            | DbError::ReadFailure { .. }
            | DbError::WriteFailure { .. }
            | DbError::TruncateError
            | DbError::RateLimitReached { .. }
    )
}

/// Maps a driver execution error.
#[must_use]
pub fn from_exec(operation: &'static str, e: ExecutionError) -> Error {
    let transient = is_transient(&e);
    Error::backend(BACKEND, operation, transient, e)
}

/// Maps any other driver error (prepare, session, deserialization).
#[must_use]
pub fn from_driver<E>(operation: &'static str, transient: bool, e: E) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    Error::backend(BACKEND, operation, transient, e)
}

/// A row read back that does not have the expected shape.
pub(crate) fn corrupted(what: impl Into<String>, reason: impl std::fmt::Display) -> Error {
    Error::corrupted(what, reason.to_string())
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
                tracing::debug!(error = %e, attempt, ?sleep, "transient scylla error; retrying");
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
    fn classifies_server_errors() {
        assert!(is_transient_db(&DbError::Unavailable {
            consistency: scylla::statement::Consistency::Quorum,
            required: 2,
            alive: 1
        }));
        assert!(is_transient_db(&DbError::IsBootstrapping));
        assert!(!is_transient_db(&DbError::Invalid));
        assert!(!is_transient_db(&DbError::Unauthorized));
        assert!(is_transient(&ExecutionError::RequestTimeout(
            Duration::from_secs(1)
        )));
    }

    #[test]
    fn config_errors_become_invalid_input() {
        let e: Error = ScyllaError::UnknownParameter {
            key: "x".into(),
            known: "y".into(),
        }
        .into();
        assert!(matches!(e, Error::InvalidInput { .. }), "{e}");
        assert!(e.to_string().contains("`x`"), "{e}");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_stops_on_permanent_and_after_max_attempts() {
        let config = RetryConfig {
            max_attempts: 3,
            initial_backoff_ms: 1,
            max_backoff_ms: 4,
        };
        let mut calls = 0;
        let r: Result<(), Error> = retry(&config, || {
            calls += 1;
            async { Err(Error::backend(BACKEND, "read", true, "timeout")) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 3);
        let mut calls = 0;
        let r: Result<(), Error> = retry(&config, || {
            calls += 1;
            async { Err(Error::invalid("x", "y")) }
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
