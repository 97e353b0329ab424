//! [`ConfluentAvro`]: Avro payloads in the Confluent wire format, with schema
//! ids from a registry, cached.

use std::sync::Arc;

use orchestrix_avro::wire::{FramedValue, SchemaIdCache, SubjectStrategy, unframe};
use orchestrix_avro::{AvroCodec, AvroError, ParsedSchema};
use serde_json::Value;

use crate::api::SchemaRegistry;
use crate::error::RegistryError;
use crate::reader::DecodeError;

/// Serializes payloads to the Confluent wire format (magic byte 0, 4-byte
/// big-endian schema id, Avro binary) and back, so that stock Kafka
/// deserializers (Kafka Connect, ksqlDB, Flink, Spark) read what Orchestrix
/// publishes. Subjects follow a [`SubjectStrategy`] (record name by default,
/// so many event types share a topic); ids are asked of the registry once and
/// cached.
///
/// ```
/// use std::sync::Arc;
/// use orchestrix_avro::{AvroCodec, AvroSchemas};
/// use orchestrix_schema_registry::{ConfluentAvro, EmbeddedRegistry};
/// use serde_json::json;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let codec = AvroCodec::new(AvroSchemas::new().with("com.acme.Pinged", 1,
///     r#"{"type":"record","name":"Pinged","namespace":"com.acme","fields":[{"name":"n","type":"int"}]}"#)?);
/// let serde = ConfluentAvro::new(Arc::new(EmbeddedRegistry::memory()), codec);
/// let bytes = serde.serialize("pings", "com.acme.Pinged", 1, &json!({"n": 1})).await?;
/// assert_eq!(&bytes[..6], &[0, 0, 0, 0, 1, 2]); // magic, id 1, zig-zag 1
/// let back = serde.deserialize(&bytes).await?;
/// assert_eq!(back.value, json!({"n": 1}));
/// assert!(serde.deserialize(&[0, 0, 0, 0, 9, 2]).await.is_err()); // unknown schema id
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ConfluentAvro {
    registry: Arc<dyn SchemaRegistry>,
    codec: AvroCodec,
    cache: Arc<SchemaIdCache>,
    strategy: SubjectStrategy,
    auto_register: bool,
}

impl ConfluentAvro {
    /// Over a registry and a codec; record-name subjects, auto-registration on.
    #[must_use]
    pub fn new(registry: Arc<dyn SchemaRegistry>, codec: AvroCodec) -> Self {
        Self {
            registry,
            codec,
            cache: Arc::new(SchemaIdCache::new()),
            strategy: SubjectStrategy::RecordName,
            auto_register: true,
        }
    }

    /// Uses another subject strategy.
    #[must_use]
    pub fn with_strategy(mut self, strategy: SubjectStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Whether unknown schemas are registered (`true`) or only looked up.
    #[must_use]
    pub fn with_auto_register(mut self, auto_register: bool) -> Self {
        self.auto_register = auto_register;
        self
    }

    /// The same serializer with another codec (same registry and cache).
    #[must_use]
    pub fn with_codec(mut self, codec: AvroCodec) -> Self {
        self.codec = codec;
        self
    }

    /// The codec (its catalog names every event type's schemas).
    #[must_use]
    pub fn codec(&self) -> &AvroCodec {
        &self.codec
    }

    /// The registry.
    #[must_use]
    pub fn registry(&self) -> &Arc<dyn SchemaRegistry> {
        &self.registry
    }

    /// The schema id cache.
    #[must_use]
    pub fn cache(&self) -> &SchemaIdCache {
        &self.cache
    }

    /// The id of `schema` under the subject for `topic`, from the cache or the registry.
    ///
    /// # Errors
    /// A registry error (incompatible schema, unreachable registry...).
    pub async fn schema_id(
        &self,
        topic: &str,
        schema: &ParsedSchema,
    ) -> Result<u32, RegistryError> {
        let subject = self
            .strategy
            .subject(topic, schema)
            .map_err(|e| RegistryError::InvalidSchema(e.to_string()))?;
        if let Some(id) = self.cache.id(&subject, schema) {
            return Ok(id);
        }
        let id = if self.auto_register {
            self.registry.register(&subject, schema.text()).await?
        } else {
            self.registry.lookup(&subject, schema.text()).await?.id
        };
        self.cache.insert(id, Some(&subject), schema);
        Ok(id)
    }

    /// Encodes a payload of `event_type` v`version` for `topic`.
    ///
    /// # Errors
    /// [`orchestrix::Error::Serialization`] when the payload does not fit,
    /// or the registry's error.
    pub async fn serialize(
        &self,
        topic: &str,
        event_type: &str,
        version: u32,
        payload: &Value,
    ) -> orchestrix::Result<Vec<u8>> {
        let schema = self
            .codec
            .schemas()
            .require(event_type, version)
            .map_err(|e| {
                orchestrix::Error::encode(format!("event `{event_type}` v{version}"), e)
            })?;
        let id = self.schema_id(topic, schema).await?;
        self.codec
            .encode_framed(id, event_type, version, payload)
            .map_err(|e| orchestrix::Error::encode(format!("event `{event_type}` v{version}"), e))
    }

    /// Decodes a framed message: the writer schema by id (cached), resolved to
    /// the latest catalog schema of the same record name.
    ///
    /// # Errors
    /// [`orchestrix::Error::Serialization`] (permanent, with the
    /// [`AvroError`] as source) for a wrong magic byte, an unknown schema id,
    /// truncated or malformed data, or a writer schema that does not parse;
    /// a transient [`orchestrix::Error::Backend`] when the registry cannot be reached.
    pub async fn deserialize(&self, data: &[u8]) -> orchestrix::Result<FramedValue> {
        let decode_err =
            |e: AvroError| orchestrix::Error::decode("Confluent-framed Avro message", e);
        let (id, avro) = unframe(data).map_err(decode_err)?;
        let writer = match self.writer_schema(id).await {
            Ok(writer) => writer,
            Err(DecodeError::UnknownSchemaId { id }) => {
                return Err(decode_err(AvroError::UnknownSchemaId(id)));
            }
            Err(DecodeError::InvalidWriterSchema { source, .. }) => return Err(decode_err(source)),
            Err(DecodeError::Registry { source, .. }) => return Err(source.into()),
            Err(other) => return Err(other.into()),
        };
        self.codec
            .decode_with_writer(id, &writer, avro)
            .map_err(decode_err)
    }

    /// The writer schema with registry id `id`, from the cache or the
    /// registry (then cached).
    ///
    /// # Errors
    /// [`DecodeError::UnknownSchemaId`] when the registry does not know the
    /// id, [`DecodeError::InvalidWriterSchema`] when its text does not parse,
    /// [`DecodeError::Registry`] when the registry cannot be asked.
    pub async fn writer_schema(&self, id: u32) -> Result<ParsedSchema, DecodeError> {
        if let Some(schema) = self.cache.schema(id) {
            return Ok(schema);
        }
        let text = match self.registry.schema_by_id(id).await {
            Ok(t) => t,
            Err(RegistryError::SchemaNotFound(_)) => {
                return Err(DecodeError::UnknownSchemaId { id });
            }
            Err(source) => return Err(DecodeError::Registry { id, source }),
        };
        let parsed = ParsedSchema::parse_named(&format!("with id {id}"), &text)
            .map_err(|source| DecodeError::InvalidWriterSchema { id, source })?;
        self.cache.insert(id, None, &parsed);
        Ok(parsed)
    }
}
