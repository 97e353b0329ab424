//! Payload codecs: how event payloads become bytes and back.
//!
//! JSON is the default. The Avro codec (crate `orchestrix-avro`) implements the
//! same trait, so stores, buses and projections never care which is in use.

use std::fmt;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::event::EventRecord;

/// The media type of the JSON codec.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// Turns payloads (as JSON values) into bytes and back, per event type and
/// schema version.
pub trait Codec: Send + Sync + fmt::Debug + 'static {
    /// The CloudEvents `datacontenttype` this codec writes.
    fn content_type(&self) -> &str;

    /// Encodes a payload of `event_type` at `version`.
    ///
    /// # Errors
    /// [`Error::Serialization`] when the payload does not fit the schema.
    fn encode(&self, event_type: &str, version: u32, payload: &serde_json::Value) -> Result<Bytes>;

    /// Decodes bytes written at `version` of `event_type` into a JSON value.
    ///
    /// # Errors
    /// [`Error::Serialization`] for bytes that do not decode.
    fn decode(&self, event_type: &str, version: u32, data: &[u8]) -> Result<serde_json::Value>;
}

/// The JSON codec: payloads are stored as UTF-8 JSON text.
///
/// ```
/// use orchestrix::codec::{Codec, JsonCodec};
/// let bytes = JsonCodec.encode("t", 1, &serde_json::json!({"a": 1}))?;
/// assert_eq!(JsonCodec.decode("t", 1, &bytes)?, serde_json::json!({"a": 1}));
/// assert!(JsonCodec.decode("t", 1, b"{not json").is_err());
/// # Ok::<(), orchestrix::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

impl Codec for JsonCodec {
    fn content_type(&self) -> &str {
        JSON_CONTENT_TYPE
    }

    fn encode(&self, event_type: &str, version: u32, payload: &serde_json::Value) -> Result<Bytes> {
        serde_json::to_vec(payload)
            .map(Bytes::from)
            .map_err(|e| Error::encode(format!("event `{event_type}` v{version}"), e))
    }

    fn decode(&self, event_type: &str, version: u32, data: &[u8]) -> Result<serde_json::Value> {
        serde_json::from_slice(data)
            .map_err(|e| Error::decode(format!("event `{event_type}` v{version}"), e))
    }
}

/// Decodes a record whose content type is JSON.
///
/// # Errors
/// [`Error::Serialization`] when the content type is not JSON or the bytes are
/// not valid JSON.
pub fn decode_json(record: &EventRecord) -> Result<serde_json::Value> {
    if !is_json(&record.content_type) {
        return Err(Error::decode(
            format!("event `{}`", record.event_type),
            format!(
                "content type `{}` needs its codec; decode with it instead of JSON",
                record.content_type
            ),
        ));
    }
    JsonCodec.decode(&record.event_type, record.schema_version, &record.data)
}

/// Whether a media type is JSON (`application/json`, `application/*+json`, `text/json`).
#[must_use]
pub fn is_json(content_type: &str) -> bool {
    let base = content_type.split(';').next().unwrap_or("").trim();
    base == "application/json" || base == "text/json" || base.ends_with("+json")
}
