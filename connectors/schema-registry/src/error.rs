//! The error type of the registry crate, with Confluent's error codes.

use orchestrix::BoxError;

/// `Result` with [`RegistryError`] as the default error.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Everything that can go wrong talking to or running a schema registry.
///
/// Each variant has the HTTP status and the `error_code` Confluent Schema
/// Registry answers with ([`status`](Self::status),
/// [`error_code`](Self::error_code)), and the client maps those back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// 404 / 40401.
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    /// 404 / 40402.
    #[error("Version {version} not found.")]
    VersionNotFound {
        /// The subject.
        subject: String,
        /// The version asked for.
        version: String,
    },
    /// 404 / 40403.
    #[error("{0}")]
    SchemaNotFound(String),
    /// 404 / 40408: the subject has no compatibility level of its own.
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectConfigNotFound(String),
    /// 409 / 409: the schema breaks the subject's compatibility level.
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", .details.join(", "))]
    Incompatible {
        /// The subject.
        subject: String,
        /// Every incompatibility, in words.
        details: Vec<String>,
    },
    /// 422 / 42201.
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    /// 422 / 42202.
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    /// 422 / 42203.
    #[error(
        "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"
    )]
    InvalidCompatibilityLevel(String),
    /// 400: a request body that is not the JSON expected.
    #[error("{0}")]
    BadRequest(String),
    /// 500 / 50001: the registry's storage failed.
    #[error("Error in the backend data store: {0}")]
    Storage(#[source] BoxError),
    /// Another writer registered a version of the subject at the same time;
    /// the embedded registry retries these itself.
    #[error("concurrent registration on subject `{0}`")]
    Conflict(String),
    /// An error answer of a remote registry that maps to no other variant.
    #[error("registry answered {status} (error code {error_code}): {message}")]
    Http {
        /// HTTP status.
        status: u16,
        /// Confluent error code.
        error_code: u32,
        /// The registry's message.
        message: String,
    },
    /// The registry could not be reached or answered garbage.
    #[error("cannot reach the schema registry at {url}: {source}")]
    Transport {
        /// The request URL.
        url: String,
        /// The transport error.
        #[source]
        source: BoxError,
    },
    /// A configuration mistake (bad URL, missing feature).
    #[error("invalid registry configuration: {0}")]
    Config(String),
}

impl RegistryError {
    /// The HTTP status Confluent answers with.
    #[must_use]
    pub fn status(&self) -> u16 {
        match self {
            Self::SubjectNotFound(_)
            | Self::VersionNotFound { .. }
            | Self::SchemaNotFound(_)
            | Self::SubjectConfigNotFound(_) => 404,
            Self::Incompatible { .. } | Self::Conflict(_) => 409,
            Self::InvalidSchema(_)
            | Self::InvalidVersion(_)
            | Self::InvalidCompatibilityLevel(_) => 422,
            Self::BadRequest(_) | Self::Config(_) => 400,
            Self::Http { status, .. } => *status,
            Self::Storage(_) | Self::Transport { .. } => 500,
        }
    }

    /// The `error_code` of Confluent's error body.
    #[must_use]
    pub fn error_code(&self) -> u32 {
        match self {
            Self::SubjectNotFound(_) => 40401,
            Self::VersionNotFound { .. } => 40402,
            Self::SchemaNotFound(_) => 40403,
            Self::SubjectConfigNotFound(_) => 40408,
            Self::Incompatible { .. } | Self::Conflict(_) => 409,
            Self::InvalidSchema(_) => 42201,
            Self::InvalidVersion(_) => 42202,
            Self::InvalidCompatibilityLevel(_) => 42203,
            Self::BadRequest(_) | Self::Config(_) => 400,
            Self::Http { error_code, .. } => *error_code,
            Self::Storage(_) | Self::Transport { .. } => 50001,
        }
    }

    /// Whether a retry may help (storage and transport failures).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Storage(_) | Self::Transport { .. } | Self::Conflict(_)
        ) || matches!(self, Self::Http { status, .. } if *status >= 500)
    }

    /// Rebuilds the typed error from a registry's error answer.
    #[must_use]
    pub fn from_response(
        status: u16,
        error_code: u32,
        message: String,
        subject: Option<&str>,
        version: Option<&str>,
    ) -> Self {
        match error_code {
            40401 => Self::SubjectNotFound(subject.unwrap_or_default().to_owned()),
            40402 => Self::VersionNotFound {
                subject: subject.unwrap_or_default().to_owned(),
                version: version.unwrap_or_default().to_owned(),
            },
            40403 => Self::SchemaNotFound(message),
            40408 => Self::SubjectConfigNotFound(subject.unwrap_or_default().to_owned()),
            409 => Self::Incompatible {
                subject: subject.unwrap_or_default().to_owned(),
                details: vec![message],
            },
            42201 => Self::InvalidSchema(message),
            42202 => Self::InvalidVersion(version.unwrap_or_default().to_owned()),
            42203 => Self::InvalidCompatibilityLevel(message),
            _ => Self::Http {
                status,
                error_code,
                message,
            },
        }
    }

    pub(crate) fn storage(e: impl Into<BoxError>) -> Self {
        Self::Storage(e.into())
    }
}

impl From<RegistryError> for orchestrix::Error {
    /// Unknown schemas and invalid or incompatible schemas are permanent;
    /// storage and transport failures are transient backend errors.
    fn from(err: RegistryError) -> Self {
        if err.is_transient() {
            return orchestrix::Error::backend("schema-registry", "request", true, err);
        }
        match err {
            RegistryError::SchemaNotFound(_)
            | RegistryError::SubjectNotFound(_)
            | RegistryError::VersionNotFound { .. } => orchestrix::Error::NotFound {
                what: err.to_string(),
            },
            other => orchestrix::Error::invalid("schema", other.to_string()),
        }
    }
}
