//! The Confluent wire format (magic byte 0, 4-byte big-endian schema id, Avro
//! binary), the record-name subject strategy, and a cache of schema ids.

use std::collections::HashMap;
use std::sync::RwLock;

use serde_json::Value;

use crate::codec::AvroCodec;
use crate::error::{AvroError, Result};
use crate::path::Path;
use crate::schema::ParsedSchema;

/// The first byte of every Confluent-framed message.
pub const MAGIC_BYTE: u8 = 0;

/// Length of the Confluent header (magic byte and schema id).
pub const HEADER_LEN: usize = 5;

/// Prefixes Avro binary with the Confluent header.
///
/// ```
/// use orchestrix_avro::wire::{frame, unframe};
/// let framed = frame(42, &[2, 4]);
/// assert_eq!(framed, [0, 0, 0, 0, 42, 2, 4]);
/// assert_eq!(unframe(&framed)?, (42, &[2u8, 4][..]));
/// assert!(unframe(&[1, 0, 0, 0, 42]).is_err()); // wrong magic byte
/// assert!(unframe(&[0, 0, 0]).is_err()); // truncated header
/// # Ok::<(), orchestrix_avro::AvroError>(())
/// ```
#[must_use]
pub fn frame(schema_id: u32, avro: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + avro.len());
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(avro);
    out
}

/// Splits a Confluent-framed message into its schema id and Avro binary.
///
/// # Errors
/// [`AvroError::WrongMagicByte`] when byte 0 is not 0, [`AvroError::Truncated`]
/// when the message is shorter than the 5-byte header.
pub fn unframe(data: &[u8]) -> Result<(u32, &[u8])> {
    match data.first() {
        None => {
            return Err(AvroError::Truncated {
                path: "header".into(),
                needed: HEADER_LEN,
                remaining: 0,
            });
        }
        Some(&b) if b != MAGIC_BYTE => return Err(AvroError::WrongMagicByte(b)),
        Some(_) => {}
    }
    if data.len() < HEADER_LEN {
        return Err(AvroError::Truncated {
            path: "header".into(),
            needed: HEADER_LEN - data.len(),
            remaining: data.len() - 1,
        });
    }
    let id = u32::from_be_bytes([data[1], data[2], data[3], data[4]]);
    Ok((id, &data[HEADER_LEN..]))
}

/// How a schema is mapped to a registry subject.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SubjectStrategy {
    /// `{namespace}.{name}` of the record, so many event types can share a topic
    /// (Confluent's `RecordNameStrategy`; the default here).
    #[default]
    RecordName,
    /// `{topic}-value` (Confluent's `TopicNameStrategy`).
    TopicName,
    /// `{topic}-{namespace}.{name}` (Confluent's `TopicRecordNameStrategy`).
    TopicRecordName,
}

impl SubjectStrategy {
    /// The subject of a value schema published on `topic`.
    ///
    /// ```
    /// use orchestrix_avro::{ParsedSchema, wire::SubjectStrategy};
    /// let s = ParsedSchema::parse(r#"{"type":"record","name":"Opened","namespace":"com.acme.bank","fields":[]}"#)?;
    /// assert_eq!(SubjectStrategy::RecordName.subject("accounts", &s)?, "com.acme.bank.Opened");
    /// assert_eq!(SubjectStrategy::TopicName.subject("accounts", &s)?, "accounts-value");
    /// assert_eq!(SubjectStrategy::TopicRecordName.subject("accounts", &s)?, "accounts-com.acme.bank.Opened");
    /// # Ok::<(), orchestrix_avro::AvroError>(())
    /// ```
    ///
    /// # Errors
    /// [`AvroError::SchemaParse`] when a record-name strategy meets a schema
    /// that is not a named type.
    pub fn subject(&self, topic: &str, schema: &ParsedSchema) -> Result<String> {
        let name = || {
            schema.fullname().map(str::to_owned).ok_or_else(|| AvroError::SchemaParse {
                what: "subject".into(),
                reason: "the record-name subject strategy needs a named schema (record, enum or fixed)".into(),
            })
        };
        Ok(match self {
            Self::RecordName => name()?,
            Self::TopicName => format!("{topic}-value"),
            Self::TopicRecordName => format!("{topic}-{}", name()?),
        })
    }
}

/// Schema ids and schemas already seen, so a registry is asked once per schema.
///
/// Thread-safe; share it behind an `Arc`.
#[derive(Debug, Default)]
pub struct SchemaIdCache {
    by_id: RwLock<HashMap<u32, ParsedSchema>>,
    /// Subject → normalized schema text → id: looked up per event without
    /// allocating or normalizing (the normalized text is kept by the schema).
    ids: RwLock<HashMap<String, HashMap<String, u32>>>,
}

impl SchemaIdCache {
    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The schema with this id, if cached.
    #[must_use]
    pub fn schema(&self, id: u32) -> Option<ParsedSchema> {
        self.by_id.read().ok()?.get(&id).cloned()
    }

    /// The id of `schema` under `subject`, if cached.
    #[must_use]
    pub fn id(&self, subject: &str, schema: &ParsedSchema) -> Option<u32> {
        self.ids
            .read()
            .ok()?
            .get(subject)?
            .get(schema.normalized())
            .copied()
    }

    /// Remembers that `schema` has `id` (under `subject`, when given).
    pub fn insert(&self, id: u32, subject: Option<&str>, schema: &ParsedSchema) {
        if let Ok(mut by_id) = self.by_id.write() {
            by_id.entry(id).or_insert_with(|| schema.clone());
        }
        if let (Some(subject), Ok(mut ids)) = (subject, self.ids.write()) {
            ids.entry(subject.to_owned())
                .or_default()
                .insert(schema.normalized().to_owned(), id);
        }
    }

    /// How many schemas are cached by id.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_id.read().map(|m| m.len()).unwrap_or_default()
    }

    /// Whether nothing is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl AvroCodec {
    /// Encodes a payload of `event_type` v`version` in the Confluent wire
    /// format, with the schema id the registry gave that schema.
    ///
    /// # Errors
    /// [`AvroError::UnknownSchema`] or [`AvroError::Mismatch`].
    pub fn encode_framed(
        &self,
        schema_id: u32,
        event_type: &str,
        version: u32,
        payload: &Value,
    ) -> Result<Vec<u8>> {
        let schema = self.schemas().require(event_type, version)?;
        let mut out = Vec::with_capacity(64);
        out.push(MAGIC_BYTE);
        out.extend_from_slice(&schema_id.to_be_bytes());
        crate::encode::Encoder {
            names: schema.names(),
            mapping: self.mapping(),
        }
        .encode(schema.schema(), None, payload, &mut out, &Path::ROOT)?;
        Ok(out)
    }

    /// Decodes a Confluent-framed message whose writer schema is in `cache`,
    /// resolved to the latest schema of the event type that defines the
    /// writer's record name (or to the writer schema itself when the catalog
    /// does not know it). Returns the event type (when known), its latest
    /// version and the value.
    ///
    /// # Errors
    /// [`AvroError::WrongMagicByte`], [`AvroError::UnknownSchemaId`],
    /// [`AvroError::Truncated`], [`AvroError::Malformed`] or
    /// [`AvroError::Resolution`].
    pub fn decode_framed(&self, cache: &SchemaIdCache, data: &[u8]) -> Result<FramedValue> {
        let (id, avro) = unframe(data)?;
        let writer = cache.schema(id).ok_or(AvroError::UnknownSchemaId(id))?;
        self.decode_with_writer(id, &writer, avro)
    }

    /// Decodes Avro binary written with `writer` (whose registry id is
    /// `schema_id`), resolved to the catalog's latest schema of the same record
    /// name.
    ///
    /// # Errors
    /// As [`decode_framed`](Self::decode_framed).
    pub fn decode_with_writer(
        &self,
        schema_id: u32,
        writer: &ParsedSchema,
        avro: &[u8],
    ) -> Result<FramedValue> {
        let known = writer
            .fullname()
            .and_then(|n| self.schemas().event_type_of(n))
            .and_then(|t| {
                let (v, s) = self.schemas().latest(t)?;
                Some((t.to_owned(), v, s))
            });
        match known {
            Some((event_type, version, reader)) => Ok(FramedValue {
                schema_id,
                event_type: Some(event_type),
                version: Some(version),
                value: self.decode_with(writer, reader, avro)?,
            }),
            None => Ok(FramedValue {
                schema_id,
                event_type: None,
                version: None,
                value: self.decode_with(writer, writer, avro)?,
            }),
        }
    }
}

/// A decoded Confluent-framed message.
#[derive(Debug, Clone, PartialEq)]
pub struct FramedValue {
    /// The writer's schema id.
    pub schema_id: u32,
    /// The event type whose schemas define the writer's record name.
    pub event_type: Option<String>,
    /// The version the value was resolved to (the latest of that type).
    pub version: Option<u32>,
    /// The payload.
    pub value: Value,
}
