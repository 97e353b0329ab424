//! The error type of this crate, and how it maps onto [`orchestrix::Error`].

/// `Result` with [`AvroError`] as the default error.
pub type Result<T, E = AvroError> = std::result::Result<T, E>;

/// Everything that can go wrong while handling Avro schemas and payloads.
///
/// Every variant is permanent: the same bytes or the same schema fail the same
/// way on a retry. Converted into [`orchestrix::Error`] (see the `From` impl),
/// they become [`orchestrix::Error::Serialization`] or
/// [`orchestrix::Error::InvalidInput`], which consumers route to dead letters;
/// the original [`AvroError`] stays reachable as the error's source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AvroError {
    /// Schema text that is not a valid Avro schema.
    #[error("invalid Avro schema{}: {reason}", for_what(.what))]
    SchemaParse {
        /// Where the schema came from (a file name, an event type), if known.
        what: String,
        /// The parser's explanation.
        reason: String,
    },
    /// No schema is registered for this event type and version.
    #[error("no Avro schema registered for event type `{event_type}` v{version}")]
    UnknownSchema {
        /// The CloudEvents type.
        event_type: String,
        /// The schema version.
        version: u32,
    },
    /// A Confluent-framed message names a schema id that is not known.
    #[error("unknown schema id {0}")]
    UnknownSchemaId(u32),
    /// A Confluent-framed message does not start with the magic byte 0.
    #[error("wrong magic byte {0:#04x}: not Confluent wire format (expected 0x00)")]
    WrongMagicByte(u8),
    /// The bytes end before the value does.
    #[error("truncated Avro data at {path}: needed {needed} more byte(s), {remaining} left")]
    Truncated {
        /// Where in the value the data ran out, e.g. `/amount`.
        path: String,
        /// How many bytes were needed.
        needed: usize,
        /// How many were left.
        remaining: usize,
    },
    /// Bytes that cannot be Avro written with the given schema.
    #[error("malformed Avro data at {path}: {reason}")]
    Malformed {
        /// Where in the value, e.g. `/lines/2/sku`.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A payload (JSON value) that does not fit the schema it is encoded with.
    #[error("value does not fit the schema at {path}: {reason}")]
    Mismatch {
        /// Where in the value, e.g. `/customer/email`.
        path: String,
        /// What does not fit.
        reason: String,
    },
    /// Data written with one schema cannot be resolved to the reader's schema.
    #[error("cannot resolve writer schema to reader schema at {path}: {reason}")]
    Resolution {
        /// Where in the value.
        path: String,
        /// Which Avro resolution rule failed.
        reason: String,
    },
}

fn for_what(what: &str) -> String {
    if what.is_empty() {
        String::new()
    } else {
        format!(" ({what})")
    }
}

impl AvroError {
    /// Whether this error is about a schema (parse or lookup) rather than data.
    #[must_use]
    pub fn is_schema_error(&self) -> bool {
        matches!(
            self,
            Self::SchemaParse { .. } | Self::UnknownSchema { .. } | Self::UnknownSchemaId(_)
        )
    }
}

impl From<AvroError> for orchestrix::Error {
    /// Schema text that does not parse becomes [`orchestrix::Error::InvalidInput`];
    /// everything else is a payload that cannot be encoded or decoded and becomes
    /// [`orchestrix::Error::Serialization`] (action `decode`, except for
    /// [`AvroError::Mismatch`], which is raised while encoding). Both are
    /// permanent errors.
    fn from(err: AvroError) -> Self {
        match err {
            AvroError::SchemaParse { ref what, .. } => orchestrix::Error::invalid(
                if what.is_empty() {
                    "Avro schema".to_owned()
                } else {
                    format!("Avro schema {what}")
                },
                err.to_string(),
            ),
            AvroError::Mismatch { .. } => orchestrix::Error::encode("Avro payload", err),
            _ => orchestrix::Error::decode("Avro payload", err),
        }
    }
}
