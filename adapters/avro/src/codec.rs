//! [`AvroCodec`]: core's [`Codec`] port with Avro binary payloads.

use std::sync::Arc;

use bytes::Bytes;
use orchestrix::codec::Codec;
use serde_json::Value;

use crate::catalog::AvroSchemas;
use crate::decode::Decoder;
use crate::encode::Encoder;
use crate::error::{AvroError, Result};
use crate::mapping::JsonMapping;
use crate::path::Path;
use crate::schema::ParsedSchema;

/// The media type the Avro codec writes.
pub const AVRO_CONTENT_TYPE: &str = "application/avro";

/// Encodes payloads as Avro binary with the schema of their `(event type,
/// version)`, and decodes them back, resolving between writer and reader
/// schemas by the Avro specification.
///
/// As a [`Codec`], `decode(type, version, bytes)` returns the payload in the
/// shape of that version's schema; [`upcasters`](Self::upcasters) turns the
/// catalog into core [`orchestrix::Upcasters`] that bring old payloads to the
/// latest version on every read path of [`orchestrix::Store`], by Avro
/// resolution where it suffices and by your functions where it does not.
/// [`decode_latest`](Self::decode_latest) resolves in one step to the latest
/// schema, for readers outside a store.
///
/// ```
/// use orchestrix::codec::Codec;
/// use orchestrix_avro::{AvroCodec, AvroSchemas};
/// use serde_json::json;
///
/// let schemas = AvroSchemas::new().with("com.acme.Pinged", 1, r#"{"type":"record","name":"Pinged","namespace":"com.acme",
///     "fields":[{"name":"n","type":"long"},{"name":"note","type":["null","string"],"default":null}]}"#)?;
/// let codec = AvroCodec::new(schemas);
/// let bytes = codec.encode("com.acme.Pinged", 1, &json!({"n": 7}))?;
/// assert_eq!(&bytes[..], &[14, 0]); // zig-zag 7, union branch 0 (null)
/// assert_eq!(codec.decode("com.acme.Pinged", 1, &bytes)?, json!({"n": 7, "note": null}));
/// assert!(codec.decode("com.acme.Pinged", 1, &[14]).is_err()); // truncated
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct AvroCodec {
    schemas: Arc<AvroSchemas>,
    mapping: JsonMapping,
}

impl AvroCodec {
    /// A codec over a schema catalog, with the default [`JsonMapping`].
    #[must_use]
    pub fn new(schemas: AvroSchemas) -> Self {
        Self {
            schemas: Arc::new(schemas),
            mapping: JsonMapping::default(),
        }
    }

    /// The same codec with another JSON mapping.
    #[must_use]
    pub fn with_mapping(mut self, mapping: JsonMapping) -> Self {
        self.mapping = mapping;
        self
    }

    /// The schema catalog.
    #[must_use]
    pub fn schemas(&self) -> &AvroSchemas {
        &self.schemas
    }

    /// The JSON mapping.
    #[must_use]
    pub fn mapping(&self) -> JsonMapping {
        self.mapping
    }

    /// Encodes a JSON value with a schema (Avro binary, no framing).
    ///
    /// # Errors
    /// [`AvroError::Mismatch`] when the value does not fit the schema.
    pub fn encode_with(&self, schema: &ParsedSchema, value: &Value) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(64);
        Encoder {
            names: schema.names(),
            mapping: self.mapping,
        }
        .encode(schema.schema(), None, value, &mut out, &Path::ROOT)?;
        Ok(out)
    }

    /// Decodes Avro binary written with `writer`, resolved to `reader`.
    ///
    /// # Errors
    /// [`AvroError::Truncated`] or [`AvroError::Malformed`] for bad bytes,
    /// [`AvroError::Resolution`] when the schemas do not resolve.
    pub fn decode_with(
        &self,
        writer: &ParsedSchema,
        reader: &ParsedSchema,
        data: &[u8],
    ) -> Result<Value> {
        Decoder::new(data, writer.names(), reader.names(), self.mapping)
            .read_datum(writer.schema(), reader.schema())
    }

    /// Decodes `event_type` data written at `version` and resolves it to the
    /// latest registered schema of the type; returns that version and the value.
    ///
    /// # Errors
    /// [`AvroError::UnknownSchema`], or a decoding or resolution error.
    pub fn decode_latest(
        &self,
        event_type: &str,
        version: u32,
        data: &[u8],
    ) -> Result<(u32, Value)> {
        let writer = self.schemas.require(event_type, version)?;
        let (latest, reader) = self.schemas.latest(event_type).unwrap_or((version, writer));
        Ok((latest, self.decode_with(writer, reader, data)?))
    }

    /// Resolves a payload in the shape of `event_type` v`from` to v`to`, as
    /// Avro resolution would read data written with the first schema.
    ///
    /// # Errors
    /// [`AvroError::UnknownSchema`], [`AvroError::Mismatch`] or a resolution error.
    pub fn resolve_value(
        &self,
        event_type: &str,
        from: u32,
        to: u32,
        value: &Value,
    ) -> Result<Value> {
        let writer = self.schemas.require(event_type, from)?;
        let reader = self.schemas.require(event_type, to)?;
        let bytes = self.encode_with(writer, value)?;
        self.decode_with(writer, reader, &bytes)
    }

    /// Starts the upcaster chain of this catalog (see [`crate::ResolutionChain`]).
    #[must_use]
    pub fn upcasters(&self) -> crate::ResolutionChain {
        crate::ResolutionChain::new(self.clone())
    }
}

fn what(event_type: &str, version: u32) -> String {
    format!("event `{event_type}` v{version} (Avro)")
}

impl Codec for AvroCodec {
    fn content_type(&self) -> &str {
        AVRO_CONTENT_TYPE
    }

    fn encode(&self, event_type: &str, version: u32, payload: &Value) -> orchestrix::Result<Bytes> {
        let schema = self
            .schemas
            .require(event_type, version)
            .map_err(|e| orchestrix::Error::encode(what(event_type, version), e))?;
        self.encode_with(schema, payload)
            .map(Bytes::from)
            .map_err(|e| orchestrix::Error::encode(what(event_type, version), e))
    }

    fn decode(&self, event_type: &str, version: u32, data: &[u8]) -> orchestrix::Result<Value> {
        let schema = self
            .schemas
            .require(event_type, version)
            .map_err(|e| orchestrix::Error::decode(what(event_type, version), e))?;
        self.decode_with(schema, schema, data)
            .map_err(|e| orchestrix::Error::decode(what(event_type, version), e))
    }
}

impl From<AvroCodec> for Arc<dyn Codec> {
    fn from(codec: AvroCodec) -> Self {
        Arc::new(codec)
    }
}

/// Keeps [`AvroError`] reachable for callers that downcast.
#[must_use]
pub fn avro_error(err: &orchestrix::Error) -> Option<&AvroError> {
    std::error::Error::source(err).and_then(|s| s.downcast_ref::<AvroError>())
}
