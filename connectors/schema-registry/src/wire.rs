//! [`AvroWireFormat`]: events on a bus as Avro in the Confluent wire format.
//!
//! On the way out, each payload becomes magic byte 0 + the 4-byte schema id
//! of its event type and version (registered, or only looked up, in a
//! Confluent-compatible registry under the configured subject strategy) +
//! Avro binary, with `content-type: application/avro`. A JSON-stored payload
//! is encoded with the event type's Avro schema; an Avro-stored one (the
//! Avro codec) is framed as it is. Both buses carry the same frame: on Kafka
//! the record value, on NATS the message payload; the CloudEvents attributes
//! stay in headers, so `ce_dataschema` still names the event type and
//! version while the frame names the registry id.
//!
//! The saga engine's own bookkeeping records (`orchestrix.saga.*`: command
//! sent, timeout scheduled...) embed the saga's commands, whose shape is the
//! application's and has no fixed schema. Unless the catalog has a schema for
//! one, such a record travels as an [`ENGINE_RECORD_SCHEMA`] envelope (its
//! event type and its JSON text), so that every record on the topic is a
//! Confluent frame a stock deserializer reads; on the way in the envelope is
//! opened again.
//!
//! On the way in, the writer schema is fetched by id (once, cached), resolved
//! to the reader's latest schema of the same record name (Avro schema
//! resolution), and the value is handed to handlers in the consumer's own
//! codec (JSON by default) with `schema_version` set to the reader's
//! version. A frame that is not one, an unknown id, or a writer the reader
//! cannot resolve is a permanent decode error (the consumer dead-letters it
//! with the reason); an unreachable registry is transient (retried).
//!
//! ```
//! use std::sync::Arc;
//! use orchestrix::wire::ValueFormat;
//! use orchestrix::{EventRecord, RecordedEvent, StreamId};
//! use orchestrix_avro::{AvroCodec, AvroSchemas};
//! use orchestrix_schema_registry::{AvroWireFormat, ConfluentAvro, EmbeddedRegistry};
//! use serde_json::json;
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let codec = AvroCodec::new(AvroSchemas::new().with("com.acme.Pinged", 1,
//!     r#"{"type":"record","name":"Pinged","namespace":"com.acme","fields":[{"name":"n","type":"int"}]}"#)?);
//! let format = AvroWireFormat::new(ConfluentAvro::new(Arc::new(EmbeddedRegistry::memory()), codec));
//! let event = RecordedEvent {
//!     stream_id: StreamId::parse("ping-1")?,
//!     revision: 0,
//!     position: 1,
//!     record: EventRecord::json("com.acme.Pinged", 1, &json!({"n": 1})),
//! };
//! let wire = format.outbound("pings", &event).await?;
//! assert_eq!(wire.record.content_type, "application/avro");
//! assert_eq!(&wire.record.data[..6], &[0, 0, 0, 0, 1, 2]); // magic, id 1, zig-zag 1
//! let back = format.inbound("pings", wire).await?;
//! assert_eq!(back.record.content_type, "application/json");
//! assert_eq!(serde_json::from_slice::<serde_json::Value>(&back.record.data)?, json!({"n": 1}));
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use bytes::Bytes;
use orchestrix::codec::{Codec, JsonCodec};
use orchestrix::saga::ENGINE_EVENT_PREFIX;
use orchestrix::wire::ValueFormat;
use orchestrix::{Error, RecordedEvent};
use orchestrix_avro::wire::{MAGIC_BYTE, frame};
use orchestrix_avro::{AVRO_CONTENT_TYPE, ParsedSchema};
use serde_json::{Value, json};

use crate::confluent::ConfluentAvro;

/// The Confluent wire format as a bus [`ValueFormat`]. See the module docs.
#[derive(Debug, Clone)]
pub struct AvroWireFormat {
    confluent: ConfluentAvro,
    /// The codec handlers decode with: payloads read from the bus are
    /// re-encoded with it.
    reader_codec: Arc<dyn Codec>,
}

impl AvroWireFormat {
    /// Over a registry-backed serializer; payloads read back are JSON.
    #[must_use]
    pub fn new(confluent: ConfluentAvro) -> Self {
        Self {
            confluent,
            reader_codec: Arc::new(JsonCodec),
        }
    }

    /// Hands payloads read from the bus to handlers in `codec`'s form (the
    /// consumer application's store codec).
    #[must_use]
    pub fn with_reader_codec(mut self, codec: Arc<dyn Codec>) -> Self {
        self.reader_codec = codec;
        self
    }

    /// The serializer.
    #[must_use]
    pub fn confluent(&self) -> &ConfluentAvro {
        &self.confluent
    }
}

/// The envelope of the saga engine's bookkeeping records on an Avro bus
/// (see the module docs): subject `orchestrix.saga.EngineRecord` under the
/// record-name strategy.
pub const ENGINE_RECORD_SCHEMA: &str = r#"{"type":"record","name":"EngineRecord","namespace":"orchestrix.saga","doc":"A saga engine bookkeeping record: its event type and its payload as JSON text.","fields":[{"name":"event_type","type":"string"},{"name":"json","type":"string"}]}"#;

static ENGINE_RECORD: LazyLock<ParsedSchema> = LazyLock::new(|| {
    ParsedSchema::parse_named("orchestrix.saga.EngineRecord", ENGINE_RECORD_SCHEMA)
        .unwrap_or_else(|e| unreachable!("the engine record schema is valid: {e}"))
});

fn is_json(content_type: &str) -> bool {
    content_type.is_empty()
        || content_type.starts_with("application/json")
        || content_type.ends_with("+json")
}

#[async_trait]
impl ValueFormat for AvroWireFormat {
    fn name(&self) -> &str {
        "avro"
    }

    async fn outbound(
        &self,
        topic: &str,
        event: &RecordedEvent,
    ) -> orchestrix::Result<RecordedEvent> {
        let r = &event.record;
        let what = || format!("event `{}` v{} for the bus", r.event_type, r.schema_version);
        let engine_envelope = r.event_type.starts_with(ENGINE_EVENT_PREFIX)
            && self
                .confluent
                .codec()
                .schemas()
                .get(&r.event_type, r.schema_version)
                .is_none();
        let data = if engine_envelope && is_json(&r.content_type) {
            let text = std::str::from_utf8(&r.data).map_err(|e| Error::encode(what(), e))?;
            let body = self
                .confluent
                .codec()
                .encode_with(
                    &ENGINE_RECORD,
                    &json!({"event_type": r.event_type, "json": text}),
                )
                .map_err(|e| Error::encode(what(), e))?;
            frame(
                self.confluent.schema_id(topic, &ENGINE_RECORD).await?,
                &body,
            )
        } else if is_json(&r.content_type) {
            let value: serde_json::Value =
                serde_json::from_slice(&r.data).map_err(|e| Error::encode(what(), e))?;
            self.confluent
                .serialize(topic, &r.event_type, r.schema_version, &value)
                .await?
        } else if r.content_type == AVRO_CONTENT_TYPE {
            // Stored as Avro binary of this very schema: frame it as it is.
            let schema = self
                .confluent
                .codec()
                .schemas()
                .require(&r.event_type, r.schema_version)
                .map_err(|e| Error::encode(what(), e))?;
            let id = self.confluent.schema_id(topic, schema).await?;
            frame(id, &r.data)
        } else {
            return Err(Error::encode(
                what(),
                format!(
                    "payloads of content type `{}` cannot be written as Avro",
                    r.content_type
                ),
            ));
        };
        let mut out = event.clone();
        out.record.data = Bytes::from(data);
        out.record.content_type = AVRO_CONTENT_TYPE.to_owned();
        Ok(out)
    }

    async fn inbound(
        &self,
        _topic: &str,
        event: RecordedEvent,
    ) -> orchestrix::Result<RecordedEvent> {
        let r = &event.record;
        if r.data.first() != Some(&MAGIC_BYTE) && is_json(&r.content_type) {
            // Not framed: a JSON publisher on the same topic. Pass it on.
            return Ok(event);
        }
        let framed = self.confluent.deserialize(&r.data).await?;
        if framed.event_type.is_none()
            && r.event_type.starts_with(ENGINE_EVENT_PREFIX)
            && let Some(payload) = engine_payload(&r.event_type, &framed.value)?
        {
            let data = self
                .reader_codec
                .encode(&r.event_type, r.schema_version, &payload)?;
            let mut out = event;
            out.record.data = data;
            out.record.content_type = self.reader_codec.content_type().to_owned();
            return Ok(out);
        }
        let event_type = framed
            .event_type
            .clone()
            .unwrap_or_else(|| r.event_type.clone());
        let version = framed.version.unwrap_or(r.schema_version);
        let data = self
            .reader_codec
            .encode(&event_type, version, &framed.value)?;
        let mut out = event;
        out.record.data = data;
        out.record.content_type = self.reader_codec.content_type().to_owned();
        out.record.schema_version = version;
        Ok(out)
    }
}

/// The payload inside an engine record envelope, if `value` is one.
fn engine_payload(event_type: &str, value: &Value) -> orchestrix::Result<Option<Value>> {
    let (Some(Value::String(inner_type)), Some(Value::String(text))) =
        (value.get("event_type"), value.get("json"))
    else {
        return Ok(None);
    };
    if inner_type != event_type {
        return Err(Error::decode(
            format!("engine record `{event_type}`"),
            format!("the envelope holds a `{inner_type}`"),
        ));
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| Error::decode(format!("engine record `{event_type}`"), e))
}
