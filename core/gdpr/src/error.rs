//! The error type of `orchestrix-gdpr`.

use orchestrix::BoxError;

/// What went wrong while protecting or revealing personal data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The subject was forgotten: no new personal data is written under its id.
    #[error(
        "data subject `{subject}` was forgotten; personal data cannot be stored under that id again"
    )]
    Forgotten {
        /// The data subject.
        subject: String,
    },
    /// A ciphertext names a subject that the key store has never seen (neither a
    /// key nor a forget tombstone): the wrong key store, or a lost one.
    #[error("no key for data subject `{subject}` in the key store (wrong or lost key store?)")]
    UnknownKey {
        /// The data subject.
        subject: String,
    },
    /// The ciphertext failed authentication: tampered bytes or a different key.
    #[error(
        "personal field `{path}` of data subject `{subject}` failed authentication (tampered, or encrypted with another key)"
    )]
    Tampered {
        /// The data subject.
        subject: String,
        /// The JSON pointer of the field.
        path: String,
    },
    /// A personal field holds something that is not one of this crate's tokens
    /// where a token was expected, or a token that does not parse.
    #[error("malformed personal field `{path}`: {reason}")]
    Malformed {
        /// The JSON pointer of the field.
        path: String,
        /// Why, for a person.
        reason: String,
    },
    /// An event with personal fields has no subject id where the schema says.
    #[error("event `{event_type}` has personal data but no data subject id at `{path}`")]
    MissingSubject {
        /// The event type.
        event_type: String,
        /// The JSON pointer of the subject id.
        path: String,
    },
    /// A field list, schema or key store name is not valid.
    #[error("invalid {what}: {reason}")]
    Config {
        /// What is invalid.
        what: String,
        /// Why.
        reason: String,
    },
    /// The key store failed.
    #[error("{backend} key store failed during {operation}{}: {source}", if *.transient { " (transient)" } else { "" })]
    KeyStore {
        /// The key store backend, e.g. `sqlite`.
        backend: &'static str,
        /// What it was doing.
        operation: &'static str,
        /// Whether retrying can help.
        transient: bool,
        /// The driver error.
        #[source]
        source: BoxError,
    },
    /// The operating system gave no randomness for a key or a nonce.
    #[error("no randomness from the operating system: {0}")]
    Entropy(#[source] BoxError),
    /// The event store failed (appending the audit event).
    #[error(transparent)]
    Store(#[from] orchestrix::Error),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A key store error.
    pub fn key_store(
        backend: &'static str,
        operation: &'static str,
        transient: bool,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::KeyStore {
            backend,
            operation,
            transient,
            source: source.into(),
        }
    }

    pub(crate) fn config(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Config {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Whether retrying can help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::KeyStore { transient, .. } => *transient,
            Self::Store(e) => e.is_transient(),
            _ => false,
        }
    }

    /// As an [`orchestrix::Error`] from a codec: key store trouble keeps its
    /// retry class (a projection retries instead of dead-lettering), the rest
    /// is a permanent encode or decode error whose source is this error.
    pub(crate) fn into_codec(self, action: Action, what: String) -> orchestrix::Error {
        match self {
            Self::Store(e) => e,
            Self::KeyStore {
                backend,
                operation,
                transient,
                ..
            } => orchestrix::Error::backend(backend, operation, transient, self),
            other => match action {
                Action::Encode => orchestrix::Error::encode(what, other),
                Action::Decode => orchestrix::Error::decode(what, other),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    Encode,
    Decode,
}

/// This crate's error inside an [`orchestrix::Error`] returned by the codec,
/// if there is one.
///
/// ```
/// use orchestrix_gdpr::{Error, gdpr_error};
/// let e = orchestrix::Error::decode("x", Error::UnknownKey { subject: "c-1".into() });
/// assert!(matches!(gdpr_error(&e), Some(Error::UnknownKey { .. })));
/// ```
#[must_use]
pub fn gdpr_error(error: &orchestrix::Error) -> Option<&Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(found) = e.downcast_ref::<Error>() {
            return Some(found);
        }
        source = e.source();
    }
    None
}
