//! Records as consumed, and their decoding into stored events.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use orchestrix::RecordedEvent;
use orchestrix::cloudevent::binary;
use rdkafka::message::Headers as _;

/// A consumed Kafka record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaRecord {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The key, if any.
    pub key: Option<Bytes>,
    /// The value (empty for a tombstone).
    pub payload: Bytes,
    /// The headers, in order.
    pub headers: Vec<(String, Bytes)>,
    /// The record's timestamp.
    pub timestamp: Option<DateTime<Utc>>,
}

impl KafkaRecord {
    /// Copies an rdkafka message.
    pub fn from_message<M: rdkafka::Message>(m: &M) -> Self {
        let headers = m
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            h.value.map(Bytes::copy_from_slice).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(Bytes::copy_from_slice),
            payload: m.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
            headers,
            timestamp: m
                .timestamp()
                .to_millis()
                .and_then(DateTime::from_timestamp_millis),
        }
    }

    /// Where the record is.
    #[must_use]
    pub fn position(&self) -> KafkaPosition {
        KafkaPosition {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
        }
    }

    /// The first header named `name` (case-sensitive, as Kafka headers are).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| &v[..])
    }

    /// A header as UTF-8 text.
    #[must_use]
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The key as UTF-8 text.
    #[must_use]
    pub fn key_str(&self) -> Option<&str> {
        self.key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The value parsed as JSON into `T`.
    ///
    /// # Errors
    /// [`orchestrix::Error::Serialization`] (permanent) when the value is not
    /// JSON of that shape.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> orchestrix::Result<T> {
        serde_json::from_slice(&self.payload).map_err(|e| {
            orchestrix::Error::decode(
                format!("record {}/{}@{}", self.topic, self.partition, self.offset),
                e,
            )
        })
    }

    /// Decodes an Orchestrix event (CloudEvents binary mode, `ce_` headers).
    ///
    /// # Errors
    /// [`orchestrix::Error::InvalidInput`] (permanent) for a record that is not
    /// one: missing attributes, a subject that is not a stream id, no stream
    /// revision or global position.
    pub fn decode_event(&self) -> orchestrix::Result<RecordedEvent> {
        let ce = binary::decode(
            self.headers.iter().map(|(k, v)| (k.as_str(), &v[..])),
            &self.payload,
            binary::KAFKA_PREFIX,
        )?;
        binary::to_recorded(&ce)
    }
}

/// A record's place: topic, partition, offset.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KafkaPosition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
}

impl KafkaPosition {
    /// The offset to resume from after this record: what a read model stores.
    #[must_use]
    pub fn next_offset(&self) -> i64 {
        self.offset + 1
    }
}
