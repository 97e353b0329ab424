//! The adapter's error type, its retry classification, and its mapping into
//! [`orchestrix::Error`].

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the Kafka adapter.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is invalid; nothing was started.
    #[error("invalid Kafka setting `{what}`: {reason}")]
    Config {
        /// The setting, e.g. `topics.partitions`.
        what: String,
        /// Why, for a person.
        reason: String,
    },
    /// A `kafka://` URL that cannot be used; nothing was started.
    #[error("invalid Kafka URL `{url}`: {reason}")]
    Url {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// Why, for a person.
        reason: String,
    },
    /// No broker answered within [`KafkaConfig::connect_timeout_ms`](crate::KafkaConfig::connect_timeout_ms).
    #[error("cannot reach the Kafka brokers {brokers} within {after:?} (transient): {source}")]
    Unreachable {
        /// The bootstrap brokers tried, comma-separated.
        brokers: String,
        /// How long the client tried.
        after: std::time::Duration,
        /// The client's error.
        #[source]
        source: orchestrix::BoxError,
    },
    /// The Kafka client or a broker failed.
    #[error("Kafka {operation} failed{}: {source}", if *.transient { " (transient)" } else { "" })]
    Kafka {
        /// What was being done, e.g. `publish` or `create topic`.
        operation: &'static str,
        /// Whether a retry can help.
        transient: bool,
        /// The client's error.
        #[source]
        source: orchestrix::BoxError,
    },
    /// A worker's poll thread is gone.
    #[error("the Kafka consumer `{consumer}` stopped unexpectedly")]
    WorkerGone {
        /// The consumer's name.
        consumer: String,
    },
    /// An error of the core (a handler, a store, an envelope).
    #[error(transparent)]
    Core(#[from] orchestrix::Error),
}

impl Error {
    pub(crate) fn config(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Config {
            what: what.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn url(url: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Url {
            url: url.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn kafka(operation: &'static str, error: KafkaError) -> Self {
        Self::Kafka {
            operation,
            transient: is_transient(&error),
            source: Box::new(error),
        }
    }

    /// Whether a retry can help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Kafka { transient, .. } => *transient,
            Self::Unreachable { .. } => true,
            Self::Core(e) => e.is_transient(),
            Self::Config { .. } | Self::Url { .. } | Self::WorkerGone { .. } => false,
        }
    }
}

impl From<Error> for orchestrix::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Core(e) => e,
            Error::Config { what, reason } => {
                orchestrix::Error::invalid(format!("Kafka setting `{what}`"), reason)
            }
            Error::Url { url, reason } => {
                orchestrix::Error::invalid(format!("Kafka URL `{url}`"), reason)
            }
            Error::Kafka {
                operation,
                transient,
                source,
            } => orchestrix::Error::backend("kafka", operation, transient, source),
            e @ Error::Unreachable { .. } => {
                orchestrix::Error::backend("kafka", "connect", true, e.to_string())
            }
            e @ Error::WorkerGone { .. } => {
                orchestrix::Error::backend("kafka", "consume", false, e.to_string())
            }
        }
    }
}

/// Whether a Kafka client error can go away on retry: broker or network
/// trouble, timeouts, leadership moves, rebalances, a full local queue.
#[must_use]
pub fn is_transient(error: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    if matches!(error, KafkaError::Canceled | KafkaError::NoMessageReceived) {
        return true;
    }
    error.rdkafka_error_code().is_some_and(|code| {
        matches!(
            code,
            C::BrokerTransportFailure
                | C::Resolve
                | C::MessageTimedOut
                | C::AllBrokersDown
                | C::OperationTimedOut
                | C::QueueFull
                | C::TimedOutQueue
                | C::WaitingForCoordinator
                | C::InProgress
                | C::PreviousInProgress
                | C::Retry
                | C::PurgeQueue
                | C::PurgeInflight
                | C::UnknownTopicOrPartition
                | C::UnknownPartition
                | C::UnknownTopic
                | C::LeaderNotAvailable
                | C::NotLeaderForPartition
                | C::RequestTimedOut
                | C::BrokerNotAvailable
                | C::ReplicaNotAvailable
                | C::NetworkException
                | C::CoordinatorLoadInProgress
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
                | C::NotEnoughReplicas
                | C::NotEnoughReplicasAfterAppend
                | C::RebalanceInProgress
                | C::IllegalGeneration
                | C::UnknownMemberId
                | C::KafkaStorageError
                | C::FencedLeaderEpoch
                | C::UnknownLeaderEpoch
                | C::OffsetNotAvailable
                | C::PreferredLeaderNotAvailable
                | C::ThrottlingQuotaExceeded
                | C::UnstableOffsetCommit
                | C::ISRInsufficient
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_and_core_mapping() {
        let timeout = Error::kafka(
            "publish",
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
        );
        assert!(timeout.is_transient());
        assert!(timeout.to_string().contains("(transient)"), "{timeout}");
        let core: orchestrix::Error = timeout.into();
        assert!(core.is_transient());
        assert!(matches!(
            core,
            orchestrix::Error::Backend {
                backend: "kafka",
                operation: "publish",
                ..
            }
        ));

        let too_big = Error::kafka(
            "publish",
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        );
        assert!(!too_big.is_transient());
        let core: orchestrix::Error = Error::config("brokers", "empty").into();
        assert_eq!(core.kind(), "invalid_input");
    }
}
