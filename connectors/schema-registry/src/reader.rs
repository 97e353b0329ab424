//! [`ConfluentReader`]: decodes Avro that other producers wrote in the
//! Confluent wire format, knowing only the registry.

use std::sync::Arc;

use orchestrix_avro::wire::{HEADER_LEN, MAGIC_BYTE};
use orchestrix_avro::{AvroCodec, AvroError, AvroSchemas, JsonMapping, ParsedSchema};
use serde_json::Value;

use crate::api::SchemaRegistry;
use crate::confluent::ConfluentAvro;
use crate::error::RegistryError;

/// Reads Confluent-framed Avro (magic byte 0, 4-byte big-endian schema id,
/// Avro binary) from producers outside Orchestrix: the writer schema is
/// fetched from the registry by id (once, then cached), and the value is
/// returned as JSON in the codec's [`JsonMapping`].
///
/// Without a reader schema each value has the shape of its own writer schema;
/// with [`with_reader_schema`](Self::with_reader_schema) every value is
/// resolved to that one schema by the Avro resolution rules (a field added
/// with a default appears in values written before it), so records of several
/// versions come out in one shape.
///
/// ```
/// use std::sync::Arc;
/// use orchestrix_avro::ParsedSchema;
/// use orchestrix_avro::wire::frame;
/// use orchestrix_schema_registry::{ConfluentReader, DecodeError, EmbeddedRegistry, SchemaRegistry};
/// use serde_json::json;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let registry = Arc::new(EmbeddedRegistry::memory());
/// let v1 = r#"{"type":"record","name":"Payment","namespace":"com.foreign","fields":[
///     {"name":"cents","type":"long"}]}"#;
/// let v2 = r#"{"type":"record","name":"Payment","namespace":"com.foreign","fields":[
///     {"name":"cents","type":"long"},{"name":"currency","type":"string","default":"EUR"}]}"#;
/// let id = registry.register("payments-value", v1).await?;
/// registry.register("payments-value", v2).await?;
///
/// let reader = ConfluentReader::new(registry).with_reader_schema(ParsedSchema::parse(v2)?);
/// let decoded = reader.decode(&frame(id, &[14])).await?; // zig-zag 7
/// assert_eq!(decoded.schema_id, id);
/// assert_eq!(decoded.writer_name.as_deref(), Some("com.foreign.Payment"));
/// assert_eq!(decoded.value, json!({"cents": 7, "currency": "EUR"}));
///
/// assert!(matches!(reader.decode(b"{}").await, Err(DecodeError::NotAFrame { .. })));
/// assert!(matches!(reader.decode(&frame(99, &[14])).await, Err(DecodeError::UnknownSchemaId { id: 99 })));
/// assert!(matches!(reader.decode(&frame(id, &[0x80])).await, Err(DecodeError::CorruptBody { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ConfluentReader {
    confluent: ConfluentAvro,
    reader: Option<ParsedSchema>,
}

impl ConfluentReader {
    /// Over a registry ([`crate::RegistryClient`] for a remote one); values in
    /// the default [`JsonMapping`], each in its writer's shape.
    #[must_use]
    pub fn new(registry: Arc<dyn SchemaRegistry>) -> Self {
        Self::from_confluent(ConfluentAvro::new(
            registry,
            AvroCodec::new(AvroSchemas::new()),
        ))
    }

    /// Over an existing serializer: shares its registry, its schema id cache
    /// and its codec's [`JsonMapping`].
    #[must_use]
    pub fn from_confluent(confluent: ConfluentAvro) -> Self {
        Self {
            confluent,
            reader: None,
        }
    }

    /// Resolves every value to `schema` (Avro schema resolution: fields
    /// matched by name or alias, defaults for fields the writer lacks, writer
    /// fields the reader lacks dropped, numeric promotions). A writer that
    /// does not resolve (another record name, a reader field without default
    /// that the writer lacks...) fails with [`DecodeError::Unresolvable`].
    #[must_use]
    pub fn with_reader_schema(mut self, schema: ParsedSchema) -> Self {
        self.reader = Some(schema);
        self
    }

    /// Represents `bytes`, `fixed` and time values in JSON this way.
    #[must_use]
    pub fn with_mapping(mut self, mapping: JsonMapping) -> Self {
        let codec = self.confluent.codec().clone().with_mapping(mapping);
        self.confluent = self.confluent.with_codec(codec);
        self
    }

    /// The reader schema, if one was given.
    #[must_use]
    pub fn reader_schema(&self) -> Option<&ParsedSchema> {
        self.reader.as_ref()
    }

    /// Decodes one Confluent-framed value.
    ///
    /// # Errors
    /// [`DecodeError::NotAFrame`] for bytes without the 5-byte header,
    /// [`DecodeError::UnknownSchemaId`] when the registry does not know the
    /// id, [`DecodeError::InvalidWriterSchema`] when its schema does not
    /// parse, [`DecodeError::CorruptBody`] for Avro binary that is not a value
    /// of the writer schema (truncated, malformed, bytes left over),
    /// [`DecodeError::Unresolvable`] when the writer does not resolve to the
    /// reader schema; all permanent. [`DecodeError::Registry`] when the
    /// registry cannot be asked (transient if it is unreachable).
    pub async fn decode(&self, data: &[u8]) -> Result<Decoded, DecodeError> {
        let (id, avro) = split_frame(data)?;
        let writer = self.confluent.writer_schema(id).await?;
        let writer_name = writer.fullname().map(str::to_owned);
        let reader = self.reader.as_ref().unwrap_or(&writer);
        let value = self
            .confluent
            .codec()
            .decode_with(&writer, reader, avro)
            .map_err(|source| {
                let writer = name_of(&writer);
                match source {
                    AvroError::Resolution { .. } => DecodeError::Unresolvable {
                        id,
                        writer,
                        reader: name_of(reader),
                        source,
                    },
                    source => DecodeError::CorruptBody { id, writer, source },
                }
            })?;
        Ok(Decoded {
            schema_id: id,
            writer_name,
            value,
        })
    }
}

fn name_of(schema: &ParsedSchema) -> String {
    schema
        .fullname()
        .map_or_else(|| schema.canonical_form().to_owned(), str::to_owned)
}

/// The schema id and Avro body of a frame, or why it is not one.
fn split_frame(data: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    match data.first() {
        None => Err(DecodeError::NotAFrame {
            reason: "the value is empty".into(),
        }),
        Some(&b) if b != MAGIC_BYTE => {
            let looks = match b {
                b'{' | b'[' => " (it looks like JSON)",
                _ => "",
            };
            Err(DecodeError::NotAFrame {
                reason: format!("the first byte is {b:#04x}, not the magic byte 0x00{looks}"),
            })
        }
        Some(_) if data.len() < HEADER_LEN => Err(DecodeError::NotAFrame {
            reason: format!(
                "{} byte(s) are too short for the 5-byte header (magic byte and schema id)",
                data.len()
            ),
        }),
        Some(_) => Ok((
            u32::from_be_bytes([data[1], data[2], data[3], data[4]]),
            &data[HEADER_LEN..],
        )),
    }
}

/// A decoded Confluent-framed value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Decoded {
    /// The writer schema's registry id (from the frame).
    pub schema_id: u32,
    /// The writer schema's full name (`namespace.name`), when it is a named
    /// type (record, enum, fixed).
    pub writer_name: Option<String>,
    /// The value as JSON: in the reader schema's shape when one was given,
    /// else in the writer's.
    pub value: Value,
}

impl Decoded {
    /// The value deserialized into `T`.
    ///
    /// # Errors
    /// [`orchestrix::Error::Serialization`] (permanent) when the value does
    /// not have `T`'s shape.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> orchestrix::Result<T> {
        T::deserialize(&self.value).map_err(|e| {
            orchestrix::Error::decode(
                format!(
                    "Avro value of `{}` (schema id {})",
                    self.writer_name.as_deref().unwrap_or("unnamed schema"),
                    self.schema_id
                ),
                e,
            )
        })
    }
}

/// Why a value could not be decoded by a [`ConfluentReader`].
///
/// A type of its own rather than more [`RegistryError`] variants: those are
/// the registry's answers, each with an HTTP status and a Confluent error
/// code, and a bad frame has neither. Converts into
/// [`orchestrix::Error::Serialization`] (permanent, this error as source), or
/// a transient [`orchestrix::Error::Backend`] when the registry is
/// unreachable, so consumers dead-letter or retry it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes are not a Confluent frame (empty, no magic byte, shorter
    /// than the 5-byte header).
    #[error("not Confluent wire format: {reason}")]
    NotAFrame {
        /// What is wrong, in words.
        reason: String,
    },
    /// The frame names a schema id the registry does not know.
    #[error("schema id {id} is unknown to the schema registry")]
    UnknownSchemaId {
        /// The id in the frame.
        id: u32,
    },
    /// The registry's schema for the id does not parse as Avro.
    #[error("the registry's schema with id {id} is not a valid Avro schema: {source}")]
    InvalidWriterSchema {
        /// The id in the frame.
        id: u32,
        /// The parser's error.
        #[source]
        source: AvroError,
    },
    /// The Avro body is not a value of the writer schema.
    #[error("corrupt Avro body for writer schema `{writer}` (id {id}): {source}")]
    CorruptBody {
        /// The id in the frame.
        id: u32,
        /// The writer schema's full name (or canonical form when unnamed).
        writer: String,
        /// Truncated or malformed data.
        #[source]
        source: AvroError,
    },
    /// The writer schema does not resolve to the reader schema.
    #[error(
        "writer schema `{writer}` (id {id}) does not resolve to reader schema `{reader}`: {source}"
    )]
    Unresolvable {
        /// The id in the frame.
        id: u32,
        /// The writer schema's full name (or canonical form when unnamed).
        writer: String,
        /// The reader schema's full name (or canonical form when unnamed).
        reader: String,
        /// The resolution rule that failed.
        #[source]
        source: AvroError,
    },
    /// The registry could not be asked for the schema.
    #[error("cannot fetch schema id {id} from the schema registry: {source}")]
    Registry {
        /// The id in the frame.
        id: u32,
        /// The registry's error.
        #[source]
        source: RegistryError,
    },
}

impl DecodeError {
    /// Whether a retry may help (only an unreachable or failing registry).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Registry { source, .. } if source.is_transient())
    }
}

impl From<DecodeError> for orchestrix::Error {
    fn from(err: DecodeError) -> Self {
        if err.is_transient() {
            orchestrix::Error::backend("schema-registry", "schema by id", true, err)
        } else {
            orchestrix::Error::decode("Confluent-framed Avro value", err)
        }
    }
}

#[cfg(test)]
mod tests {
    use orchestrix_avro::wire::frame;
    use serde_json::json;

    use super::*;
    use crate::EmbeddedRegistry;

    const V1: &str = r#"{"type":"record","name":"Payment","namespace":"com.foreign","fields":[
        {"name":"account","type":"string"},{"name":"cents","type":"long"}]}"#;
    const V2: &str = r#"{"type":"record","name":"Payment","namespace":"com.foreign","fields":[
        {"name":"account","type":"string"},{"name":"cents","type":"long"},
        {"name":"currency","type":"string","default":"EUR"}]}"#;

    async fn registry() -> (Arc<EmbeddedRegistry>, u32, u32) {
        let registry = Arc::new(EmbeddedRegistry::memory());
        let v1 = registry.register("payments-value", V1).await.unwrap();
        let v2 = registry.register("payments-value", V2).await.unwrap();
        (registry, v1, v2)
    }

    fn body(schema: &str, value: &Value) -> Vec<u8> {
        let codec = AvroCodec::new(AvroSchemas::new());
        codec
            .encode_with(&ParsedSchema::parse(schema).unwrap(), value)
            .unwrap()
    }

    #[tokio::test]
    async fn decodes_each_writer_in_its_shape_or_resolved_to_the_reader() {
        let (registry, v1, v2) = registry().await;
        let old = frame(v1, &body(V1, &json!({"account": "a", "cents": 5})));
        let new = frame(
            v2,
            &body(V2, &json!({"account": "b", "cents": 6, "currency": "CHF"})),
        );

        let plain = ConfluentReader::new(registry.clone());
        let d = plain.decode(&old).await.unwrap();
        assert_eq!(d.value, json!({"account": "a", "cents": 5}));
        assert_eq!(
            (d.schema_id, d.writer_name.as_deref()),
            (v1, Some("com.foreign.Payment"))
        );

        let resolved = plain.with_reader_schema(ParsedSchema::parse(V2).unwrap());
        assert_eq!(
            resolved.decode(&old).await.unwrap().value,
            json!({"account": "a", "cents": 5, "currency": "EUR"})
        );
        let d = resolved.decode(&new).await.unwrap();
        assert_eq!(d.schema_id, v2);
        assert_eq!(d.value["currency"], "CHF");

        #[derive(serde::Deserialize)]
        struct Payment {
            cents: u64,
        }
        assert_eq!(d.json::<Payment>().unwrap().cents, 6);
        let err = d.json::<Vec<u8>>().unwrap_err();
        assert_eq!(err.kind(), "serialization");
    }

    #[tokio::test]
    async fn says_why_a_value_cannot_be_decoded() {
        let (registry, v1, _) = registry().await;
        let reader =
            ConfluentReader::new(registry).with_reader_schema(ParsedSchema::parse(V2).unwrap());
        let good = frame(v1, &body(V1, &json!({"account": "abc", "cents": 5})));

        let e = reader.decode(b"").await.unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        let e = reader.decode(br#"{"cents":5}"#).await.unwrap_err();
        assert!(matches!(e, DecodeError::NotAFrame { .. }), "{e:?}");
        assert!(e.to_string().contains("looks like JSON"), "{e}");
        let e = reader.decode(&good[..3]).await.unwrap_err();
        assert!(e.to_string().contains("too short"), "{e}");

        let e = reader.decode(&frame(4242, &good[5..])).await.unwrap_err();
        assert!(
            matches!(e, DecodeError::UnknownSchemaId { id: 4242 }),
            "{e:?}"
        );
        assert!(e.to_string().contains("4242"), "{e}");

        let e = reader.decode(&good[..good.len() - 1]).await.unwrap_err();
        assert!(
            matches!(e, DecodeError::CorruptBody { id, .. } if id == v1),
            "{e:?}"
        );
        assert!(e.to_string().contains("truncated"), "{e}");
        let mut extra = good.clone();
        extra.push(7);
        let e = reader.decode(&extra).await.unwrap_err();
        assert!(e.to_string().contains("left after the value"), "{e}");

        let other = ParsedSchema::parse(
            r#"{"type":"record","name":"Payment","namespace":"com.foreign","fields":[
                {"name":"iban","type":"string"}]}"#,
        )
        .unwrap();
        let strict =
            ConfluentReader::new(reader.confluent.registry().clone()).with_reader_schema(other);
        let e = strict.decode(&good).await.unwrap_err();
        assert!(matches!(e, DecodeError::Unresolvable { .. }), "{e:?}");
        assert!(e.to_string().contains("iban"), "{e}");

        let err = orchestrix::Error::from(e);
        assert_eq!((err.kind(), err.is_transient()), ("serialization", false));
    }
}
