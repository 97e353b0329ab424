//! Errors of the NATS adapter and their mapping to [`orchestrix::Error`].
//!
//! Client errors never reach the core API as such: they travel boxed as the
//! `#[source]` of [`orchestrix::Error::Backend`] with backend `nats`, marked
//! transient when a retry can help (a timeout, a lost connection, a server
//! that is not answering) and permanent when the server refused the request
//! (bad credentials, a stream config it will not accept).

use orchestrix::{BoxError, Error};

/// The backend name in errors and spans.
pub(crate) const BACKEND: &str = "nats";

/// What failed inside the NATS adapter; the source of
/// [`orchestrix::Error::Backend`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsError {
    /// The client library failed.
    #[error("{context}: {source}")]
    Client {
        /// What was being done, for a person (e.g. ``create stream `EVENTS` ``).
        context: String,
        /// The client error.
        #[source]
        source: BoxError,
    },
    /// An existing stream has settings that the server cannot change in
    /// place (retention, storage).
    #[error(
        "stream `{stream}` exists with {field} {existing}, but the config asks for {wanted}; change the config or migrate the stream"
    )]
    StreamMismatch {
        /// The stream.
        stream: String,
        /// The setting that differs.
        field: &'static str,
        /// Its value on the server.
        existing: String,
        /// The configured value.
        wanted: String,
    },
    /// The server acknowledged a publish with something unexpected.
    #[error("publish of event {event_id} to `{subject}` was not stored: {reason}")]
    NotStored {
        /// The event id.
        event_id: String,
        /// The subject.
        subject: String,
        /// What the acknowledgement said.
        reason: String,
    },
    /// A task of the consumer stopped unexpectedly.
    #[error("consumer task `{task}` failed: {reason}")]
    Task {
        /// The task, e.g. `partition 3`.
        task: String,
        /// Why.
        reason: String,
    },
}

impl NatsError {
    /// Wraps a client error with what was being done.
    pub(crate) fn client(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Client {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// Maps an adapter failure during `operation` to [`orchestrix::Error::Backend`].
pub(crate) fn backend(operation: &'static str, transient: bool, err: NatsError) -> Error {
    Error::backend(BACKEND, operation, transient, err)
}

/// A client failure during `operation`: `context` says what was being done.
pub(crate) fn client(
    operation: &'static str,
    transient: bool,
    context: impl Into<String>,
    source: impl Into<BoxError>,
) -> Error {
    backend(operation, transient, NatsError::client(context, source))
}

/// Whether a JetStream API error code means "does not exist".
pub(crate) fn is_not_found(err: &async_nats::jetstream::Error) -> bool {
    err.code() == 404
}

/// Whether a connect failure can go away by retrying (not bad credentials,
/// not a bad URL, not a TLS setup error).
pub(crate) fn connect_is_transient(err: &async_nats::ConnectError) -> bool {
    use async_nats::ConnectErrorKind as K;
    matches!(err.kind(), K::Dns | K::TimedOut | K::Io | K::MaxReconnects)
}

/// Whether a publish failure can go away by retrying.
pub(crate) fn publish_is_transient(err: &async_nats::jetstream::context::PublishError) -> bool {
    use async_nats::jetstream::context::PublishErrorKind as K;
    matches!(
        err.kind(),
        K::TimedOut
            | K::BrokenPipe
            | K::MaxAckPending
            | K::Other
            | K::StreamNotFound
            // A publish out of turn after a reconnection (publisher.rs):
            // publishing the batch again stores it in order.
            | K::WrongLastMessageId
    )
}
