//! Dead-letter topics: a message a consumer gave up on is copied, with its
//! original key, value and headers, to the dead-letter topic
//! (`{topic}.dlq` by default), with headers saying why: the layout every bus
//! shares, [`orchestrix::dead_letter::header`].

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use orchestrix::dead_letter::{header, stable_id};
use orchestrix::store::DeadLetter;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use uuid::Uuid;

use crate::admin::Topics;
use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::message::KafkaRecord;

/// Header: the error, for a person.
pub const ERROR: &str = header::ERROR;
/// Header: the error kind ([`orchestrix::Error::kind`]), e.g. `invalid_input`.
pub const ERROR_KIND: &str = header::ERROR_KIND;
/// Header: `transient` or `permanent`.
pub const ERROR_CLASS: &str = header::ERROR_CLASS;
/// Header: how many times handling was attempted.
pub const ATTEMPTS: &str = header::ATTEMPTS;
/// Header: the consumer (handler name) that gave up.
pub const CONSUMER: &str = header::CONSUMER;
/// Header: the consumer group.
pub const GROUP: &str = header::GROUP;
/// Header: the topic the message was read from.
pub const ORIGINAL_TOPIC: &str = header::ORIGINAL_TOPIC;
/// Header: its partition.
pub const ORIGINAL_PARTITION: &str = header::ORIGINAL_PARTITION;
/// Header: its offset.
pub const ORIGINAL_OFFSET: &str = header::ORIGINAL_OFFSET;
/// Header: when it was dead-lettered (RFC 3339).
pub const FAILED_AT: &str = header::FAILED_AT;
/// Header: the dead letter's id (a UUIDv7).
pub const DEAD_LETTER_ID: &str = header::DEAD_LETTER_ID;

const MAX_ERROR_LEN: usize = 4096;

/// Why a message is dead-lettered.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) error: String,
    pub(crate) kind: &'static str,
    pub(crate) transient: bool,
    pub(crate) attempts: u32,
}

impl Failure {
    pub(crate) fn new(error: &orchestrix::Error, attempts: u32) -> Self {
        let mut text = error.to_string();
        if text.len() > MAX_ERROR_LEN {
            let mut cut = MAX_ERROR_LEN;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        Self {
            error: text,
            kind: error.kind(),
            transient: error.is_transient(),
            attempts,
        }
    }
}

/// Sends dead letters.
pub(crate) struct DeadLetters {
    producer: FutureProducer,
    topics: Topics,
    config: std::sync::Arc<KafkaConfig>,
    consumer: String,
    group: String,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters")
            .field("consumer", &self.consumer)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl DeadLetters {
    pub(crate) fn new(
        config: std::sync::Arc<KafkaConfig>,
        consumer: String,
        group: String,
    ) -> Result<Self> {
        Ok(Self {
            producer: crate::publisher::create_producer(&config)?,
            topics: Topics::new(&config)?,
            config,
            consumer,
            group,
        })
    }

    /// Copies `record` to its dead-letter topic and waits for the ack.
    pub(crate) async fn send(&self, record: &KafkaRecord, failure: &Failure) -> Result<String> {
        let topic = self.config.dead_letter_topic(&record.topic, &self.group);
        self.topics.ensure(&topic).await?;
        let partition = record.partition.to_string();
        let offset = record.offset.to_string();
        let attempts = failure.attempts.to_string();
        let failed_at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let id = Uuid::now_v7().to_string();
        let extra = [
            (ERROR, failure.error.as_str()),
            (ERROR_KIND, failure.kind),
            (
                ERROR_CLASS,
                if failure.transient {
                    "transient"
                } else {
                    "permanent"
                },
            ),
            (ATTEMPTS, attempts.as_str()),
            (CONSUMER, self.consumer.as_str()),
            (GROUP, self.group.as_str()),
            (ORIGINAL_TOPIC, record.topic.as_str()),
            (ORIGINAL_PARTITION, partition.as_str()),
            (ORIGINAL_OFFSET, offset.as_str()),
            (FAILED_AT, failed_at.as_str()),
            (DEAD_LETTER_ID, id.as_str()),
        ];
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + extra.len());
        for (k, v) in &record.headers {
            headers = headers.insert(Header {
                key: k,
                value: Some(&v[..]),
            });
        }
        for (k, v) in extra {
            headers = headers.insert(Header {
                key: k,
                value: Some(v.as_bytes()),
            });
        }
        let mut out = FutureRecord::to(&topic)
            .payload(&record.payload[..])
            .headers(headers);
        if let Some(key) = &record.key {
            out = out.key(&key[..]);
        }
        self.producer
            .send(out, Duration::from_secs(5))
            .await
            .map_err(|(e, _)| Error::kafka("dead-letter", e))?;
        Ok(topic)
    }
}

/// Reads a record of a dead-letter topic back as a core [`DeadLetter`] (for
/// listing, inspection and replay). `None` when the record lacks the
/// dead-letter headers.
///
/// The id is the record's [`DEAD_LETTER_ID`] header, or, for records written
/// without one, derived from the record's own coordinates on the dead-letter
/// topic ([`stable_id`]), so every reading gives the same id.
///
/// ```
/// use orchestrix_kafka::{dead_letter, KafkaRecord};
/// let record = KafkaRecord {
///     topic: "orchestrix.account.dlq".into(), partition: 0, offset: 3,
///     key: None, payload: bytes::Bytes::from_static(b"garbage"), timestamp: None,
///     headers: vec![
///         ("x-app".into(), "1".into()),
///         (dead_letter::ERROR.into(), "invalid CloudEvents attribute `id`: is required".into()),
///         (dead_letter::ERROR_KIND.into(), "invalid_input".into()),
///         (dead_letter::ATTEMPTS.into(), "1".into()),
///         (dead_letter::CONSUMER.into(), "balances".into()),
///         (dead_letter::ORIGINAL_OFFSET.into(), "41".into()),
///     ],
/// };
/// let letter = dead_letter::parse(&record).unwrap();
/// assert_eq!(letter.consumer, "balances");
/// assert_eq!(letter.position, Some(41));
/// assert_eq!(letter.headers.len(), 1); // only the original headers
/// assert_eq!(letter.id, dead_letter::parse(&record).unwrap().id); // stable
/// ```
#[must_use]
pub fn parse(record: &KafkaRecord) -> Option<DeadLetter> {
    let text = |name: &str| record.header_str(name).map(str::to_owned);
    let consumer = text(CONSUMER)?;
    let reason = text(ERROR)?;
    let original: BTreeMap<String, String> = record
        .headers
        .iter()
        .filter(|(k, _)| !k.starts_with("orchestrix-"))
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    let ce = |attr: &str| original.get(&format!("ce_{attr}")).cloned();
    Some(DeadLetter {
        id: text(DEAD_LETTER_ID)
            .and_then(|id| Uuid::parse_str(&id).ok())
            .unwrap_or_else(|| {
                stable_id(&[
                    "kafka",
                    &record.topic,
                    &record.partition.to_string(),
                    &record.offset.to_string(),
                ])
            }),
        consumer,
        event_id: ce("id").and_then(|id| Uuid::parse_str(&id).ok()),
        event_type: ce("type"),
        stream_id: ce("subject").or_else(|| record.key_str().map(str::to_owned)),
        position: text(ORIGINAL_OFFSET).and_then(|o| o.parse().ok()),
        payload: record.payload.clone(),
        headers: original,
        reason,
        error_kind: text(ERROR_KIND).unwrap_or_default(),
        attempts: text(ATTEMPTS).and_then(|a| a.parse().ok()).unwrap_or(1),
        failed_at: text(FAILED_AT)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc)),
    })
}
