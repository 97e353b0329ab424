//! The worker's errors.

use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong configuring, starting or stopping a worker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file cannot be read.
    #[error("cannot read the worker configuration `{path}`: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration (a file or an environment variable) is not valid.
    #[error("invalid worker configuration in {origin}: {reason}")]
    Config {
        /// The file or the environment variable.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// Logs, traces or metrics cannot be set up.
    #[error("cannot set up {what}: {reason}")]
    Telemetry {
        /// Which part.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The HTTP endpoint cannot listen.
    #[error("cannot serve health and metrics on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The work did not drain within the grace period; what was in flight is
    /// delivered again after a restart.
    #[error(
        "the worker did not drain within its grace period of {grace:?}; unfinished work will be delivered again"
    )]
    ShutdownTimeout {
        /// The grace period.
        grace: Duration,
    },
    /// An error of the application, its store or its runtime.
    #[error(transparent)]
    Orchestrix(#[from] orchestrix::Error),
}

impl Error {
    /// Whether retrying the operation might succeed.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Orchestrix(e) => e.is_transient(),
            Self::Listen { .. } => true,
            _ => false,
        }
    }
}

/// The worker's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
