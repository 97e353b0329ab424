//! The crate's error.

/// What can go wrong operating a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store (or a handler) failed.
    #[error(transparent)]
    Store(#[from] orchestrix::Error),
    /// Something asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request is malformed.
    #[error("{0}")]
    InvalidInput(String),
    /// The operation needs the application's code (its handlers or
    /// projections), which this process does not have.
    #[error("{0}")]
    NeedsApplication(String),
}

impl Error {
    /// Whether it is a not-found error (also from the store).
    #[must_use]
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::NotFound(_) | Self::Store(orchestrix::Error::NotFound { .. })
        )
    }
}

impl Error {
    /// Whether the request was malformed (also a store's invalid-input error).
    #[must_use]
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Self::InvalidInput(_) | Self::Store(orchestrix::Error::InvalidInput { .. })
        )
    }
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
