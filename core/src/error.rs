//! The one error type of the core, with its retry classification.

use std::fmt;

use crate::store::ExpectedRevision;

/// A boxed driver or user error, kept behind `#[source]` so that no driver type
/// leaks into the core API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether retrying the failed operation can help.
///
/// Consumers, retry policies and dead-letter routing branch on this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Retrying later may succeed: a lost connection, a timeout, a serialization
    /// failure of the database, an optimistic-concurrency conflict.
    Transient,
    /// Retrying the same input fails the same way: bad input, an unknown event
    /// type, a rejected command, a corrupted record.
    Permanent,
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Transient => "transient",
            Self::Permanent => "permanent",
        })
    }
}

/// Everything that can go wrong in Orchestrix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An append's expected revision did not match the stream.
    #[error("concurrency conflict on stream `{stream}`: expected {expected}, but the stream is {}", DisplayActual(*.actual))]
    Conflict {
        /// The stream appended to.
        stream: String,
        /// What the caller expected.
        expected: ExpectedRevision,
        /// The stream's current revision, `None` when it does not exist.
        actual: Option<u64>,
    },
    /// Something looked up does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up, e.g. ``stream `order-1` ``.
        what: String,
    },
    /// A payload could not be encoded or decoded.
    #[error("cannot {action} {what}: {source}")]
    Serialization {
        /// `encode` or `decode`.
        action: &'static str,
        /// What was being (de)serialized, e.g. ``event `com.acme.OrderPlaced` v2``.
        what: String,
        /// The underlying codec error.
        #[source]
        source: BoxError,
    },
    /// An event type that the reading code does not know.
    #[error("unknown event type `{event_type}` (schema version {version}) for {target}")]
    UnknownEventType {
        /// The CloudEvents `type`.
        event_type: String,
        /// The stored schema version.
        version: u32,
        /// The Rust type that tried to decode it.
        target: &'static str,
    },
    /// Input rejected before any work was done: a malformed stream id, an
    /// invalid CloudEvents attribute, a bad URL.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What was invalid, e.g. `stream id` or `CloudEvents attribute 'source'`.
        what: String,
        /// Why, for a person.
        reason: String,
    },
    /// A stored record that cannot be read back (bad bytes, broken invariants).
    #[error("corrupted {what}: {reason}")]
    Corrupted {
        /// What was corrupted, e.g. `event at position 17`.
        what: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// The aggregate (or a saga) rejected a command: a business rule said no.
    #[error("command `{command}` rejected: {source}")]
    Rejected {
        /// The command type.
        command: String,
        /// The domain error.
        #[source]
        source: BoxError,
    },
    /// No handler is registered for a command type.
    #[error("no handler registered for command `{command}`")]
    NoHandler {
        /// The command type.
        command: String,
    },
    /// A URL names a backend whose crate feature is not compiled in.
    #[error(
        "the `{scheme}://` backend needs the `{feature}` feature of `{krate}`, which is not enabled"
    )]
    FeatureNotEnabled {
        /// The URL scheme.
        scheme: String,
        /// The cargo feature that enables it.
        feature: &'static str,
        /// The crate that has the feature.
        krate: &'static str,
    },
    /// A backend (database, broker) failed.
    #[error("{backend} failed during {operation}{}: {source}", if *.transient { " (transient)" } else { "" })]
    Backend {
        /// The backend, e.g. `sqlite` or `postgres`.
        backend: &'static str,
        /// The operation, e.g. `append`.
        operation: &'static str,
        /// Whether a retry can help.
        transient: bool,
        /// The driver error.
        #[source]
        source: BoxError,
    },
    /// An operation ran out of time.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        operation: String,
        /// After how long.
        after: std::time::Duration,
    },
    /// The component was shut down while the operation was pending.
    #[error("{component} is shut down")]
    Shutdown {
        /// The component, e.g. `sqlite writer`.
        component: &'static str,
    },
}

struct DisplayActual(Option<u64>);

impl fmt::Display for DisplayActual {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(revision) => write!(f, "at revision {revision}"),
            None => f.write_str("absent"),
        }
    }
}

impl Error {
    /// Whether a retry can help.
    ///
    /// ```
    /// use orchestrix::{Error, ErrorClass, ExpectedRevision};
    /// let conflict = Error::Conflict { stream: "order-1".into(), expected: ExpectedRevision::Exact(3), actual: Some(4) };
    /// assert_eq!(conflict.class(), ErrorClass::Transient);
    /// assert_eq!(Error::invalid("stream id", "empty").class(), ErrorClass::Permanent);
    /// ```
    #[must_use]
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Conflict { .. } | Self::Timeout { .. } => ErrorClass::Transient,
            Self::Backend {
                transient: true, ..
            } => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }

    /// Shorthand for `self.class() == ErrorClass::Transient`.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        self.class() == ErrorClass::Transient
    }

    /// Builds [`Error::InvalidInput`].
    pub fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidInput {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Builds [`Error::Corrupted`].
    pub fn corrupted(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Corrupted {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Builds [`Error::Backend`].
    pub fn backend(
        backend: &'static str,
        operation: &'static str,
        transient: bool,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Backend {
            backend,
            operation,
            transient,
            source: source.into(),
        }
    }

    /// Builds [`Error::Serialization`] for a decode failure.
    pub fn decode(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Serialization {
            action: "decode",
            what: what.into(),
            source: source.into(),
        }
    }

    /// Builds [`Error::Serialization`] for an encode failure.
    pub fn encode(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Serialization {
            action: "encode",
            what: what.into(),
            source: source.into(),
        }
    }

    /// A short, stable, machine-readable name of the variant, for metrics labels
    /// and dead-letter headers.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Conflict { .. } => "conflict",
            Self::NotFound { .. } => "not_found",
            Self::Serialization { .. } => "serialization",
            Self::UnknownEventType { .. } => "unknown_event_type",
            Self::InvalidInput { .. } => "invalid_input",
            Self::Corrupted { .. } => "corrupted",
            Self::Rejected { .. } => "rejected",
            Self::NoHandler { .. } => "no_handler",
            Self::FeatureNotEnabled { .. } => "feature_not_enabled",
            Self::Backend { .. } => "backend",
            Self::Timeout { .. } => "timeout",
            Self::Shutdown { .. } => "shutdown",
        }
    }
}
