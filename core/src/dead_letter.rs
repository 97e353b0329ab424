//! The dead-letter port: one way to list, inspect, resolve and replay what
//! consumers gave up on, wherever the letters live.
//!
//! A dead letter lives in the store ([`DeadLetterStore`](crate::store::DeadLetterStore),
//! for the embedded runtime's consumers), on a Kafka dead-letter topic, or in
//! a NATS JetStream dead-letter stream (for consumers on a bus). Each of them
//! implements [`DeadLetterQueue`]; operations (`orchestrix dlq ...`, the
//! console) take an `Arc<dyn DeadLetterQueue>` and work the same on all
//! three. [`StoreDeadLetters`] is the store's; the bus adapters ship theirs.
//!
//! **One layout on the bus.** A bus adapter copies the original message (key,
//! body and headers, byte for byte) to its dead-letter destination and adds
//! the headers of [`header`]. Both Kafka and NATS write the same names, so a
//! tool reading one reads the other.
//!
//! **Stable ids.** A letter's id is the [`header::DEAD_LETTER_ID`] header
//! when the bus message has one; otherwise it is derived from the letter's
//! coordinates on the bus with [`stable_id`], so two listings give the same
//! ids.
//!
//! ```
//! use orchestrix::dead_letter::{DeadLetterFilter, DeadLetterQueue, StoreDeadLetters};
//! use orchestrix::runtime::dead_letter_for;
//! use orchestrix::store::ExpectedRevision;
//! use orchestrix::{Error, EventRecord, Store, StreamId};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = Store::memory();
//! let stream = StreamId::parse("order-1")?;
//! let record = EventRecord::json("com.acme.Placed", 1, &serde_json::json!({}));
//! store.append(&stream, ExpectedRevision::NoStream, vec![record]).await?;
//! let event = store.read_stream_forward(&stream, 0, 1).await?.remove(0);
//! let letter = dead_letter_for("mailer", &event, &Error::invalid("smtp", "down"), 3);
//! store.backend().dead_letters.put_dead_letter(letter.clone()).await?;
//!
//! let queue = StoreDeadLetters::new(store);
//! let filter = DeadLetterFilter { reason: Some("SMTP".into()), ..Default::default() };
//! assert_eq!(queue.list(&filter).await?.len(), 1);
//! assert_eq!(queue.event(&letter).await?.id(), event.id());
//! assert!(queue.resolve(letter.id).await?);
//! assert!(queue.get(letter.id).await?.is_none());
//! # Ok::<(), orchestrix::Error>(()) }).unwrap();
//! ```

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::cloudevent::binary;
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::runtime::{DeadLetters, EventHandler, partition_for};
use crate::store::{DeadLetter, Store};

/// The headers a bus adapter adds to a dead-lettered message (all
/// lowercase; NATS readers compare them case-insensitively). The original
/// headers are kept as they were.
pub mod header {
    /// The error, for a person (one line on NATS).
    pub const ERROR: &str = "orchestrix-error";
    /// [`Error::kind`](crate::Error::kind) of the failure, e.g. `invalid_input`.
    pub const ERROR_KIND: &str = "orchestrix-error-kind";
    /// `transient` (retries ran out) or `permanent`.
    pub const ERROR_CLASS: &str = "orchestrix-error-class";
    /// How many times handling was attempted.
    pub const ATTEMPTS: &str = "orchestrix-attempts";
    /// The consumer that gave up: the handler's name, what replay looks up in
    /// the application.
    pub const CONSUMER: &str = "orchestrix-consumer";
    /// The consumer group (Kafka group id, NATS group of durable consumers).
    pub const GROUP: &str = "orchestrix-group";
    /// The worker (process) that gave up, when the bus names one.
    pub const WORKER: &str = "orchestrix-worker";
    /// Where the message was: the Kafka topic or the JetStream stream.
    pub const ORIGINAL_TOPIC: &str = "orchestrix-original-topic";
    /// Its partition (Kafka partition, or the partition of a partitioned
    /// NATS subject).
    pub const ORIGINAL_PARTITION: &str = "orchestrix-original-partition";
    /// Its offset (Kafka) or stream sequence (JetStream).
    pub const ORIGINAL_OFFSET: &str = "orchestrix-original-offset";
    /// Its subject (NATS only).
    pub const ORIGINAL_SUBJECT: &str = "orchestrix-original-subject";
    /// When it was dead-lettered (RFC 3339).
    pub const FAILED_AT: &str = "orchestrix-failed-at";
    /// The dead letter's own id (a UUID).
    pub const DEAD_LETTER_ID: &str = "orchestrix-dead-letter-id";
    /// The prefix of every header above.
    pub const PREFIX: &str = "orchestrix-";
}

/// Which dead letters to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    /// Only this consumer's.
    pub consumer: Option<String>,
    /// Only those whose reason or error kind contains this (case-insensitive).
    pub reason: Option<String>,
    /// Only those that failed at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only those that failed before this time.
    pub until: Option<DateTime<Utc>>,
    /// At most this many (oldest first).
    pub limit: Option<usize>,
}

impl DeadLetterFilter {
    /// Whether a letter passes (every criterion but the limit).
    ///
    /// ```
    /// use orchestrix::dead_letter::DeadLetterFilter;
    /// use orchestrix::runtime::dead_letter_for;
    /// use orchestrix::{Error, EventRecord, RecordedEvent, StreamId};
    /// let event = RecordedEvent {
    ///     stream_id: StreamId::parse("order-1")?,
    ///     revision: 0,
    ///     position: 1,
    ///     record: EventRecord::json("com.acme.Placed", 1, &serde_json::json!({})),
    /// };
    /// let letter = dead_letter_for("mailer", &event, &Error::invalid("smtp", "down"), 1);
    /// let only = |c: &str| DeadLetterFilter { consumer: Some(c.into()), ..Default::default() };
    /// assert!(only("mailer").matches(&letter));
    /// assert!(!only("billing").matches(&letter));
    /// let kind = DeadLetterFilter { reason: Some("INVALID".into()), ..Default::default() };
    /// assert!(kind.matches(&letter));
    /// # Ok::<(), orchestrix::Error>(())
    /// ```
    #[must_use]
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        self.consumer.as_ref().is_none_or(|c| &letter.consumer == c)
            && self.reason.as_ref().is_none_or(|r| {
                let r = r.to_lowercase();
                letter.reason.to_lowercase().contains(&r)
                    || letter.error_kind.to_lowercase().contains(&r)
            })
            && self.since.is_none_or(|t| letter.failed_at >= t)
            && self.until.is_none_or(|t| letter.failed_at < t)
    }

    /// The letters of `all` that pass, oldest first, at most
    /// [`limit`](Self::limit).
    #[must_use]
    pub fn apply(&self, mut all: Vec<DeadLetter>) -> Vec<DeadLetter> {
        all.retain(|l| self.matches(l));
        all.sort_by_key(|l| l.failed_at);
        all.truncate(self.limit.unwrap_or(usize::MAX));
        all
    }
}

/// Where dead letters live: the store, a Kafka dead-letter topic, a NATS
/// dead-letter stream.
///
/// Resolving a letter (after a successful replay, or to drop it) removes it
/// from [`list`](Self::list) and [`get`](Self::get) for good: the store and
/// NATS delete it; Kafka, which cannot delete one record, records it as
/// resolved.
#[async_trait]
pub trait DeadLetterQueue: Send + Sync + fmt::Debug + 'static {
    /// Where the letters are, for a person: `store`, `kafka topic T`, ...
    fn describe(&self) -> String;

    /// The unresolved letters that pass `filter`, oldest first.
    async fn list(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>>;

    /// One unresolved letter.
    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>>;

    /// Resolves (deletes) a letter; `false` if there was no such unresolved
    /// letter.
    async fn resolve(&self, id: Uuid) -> Result<bool>;

    /// The event a letter stands for, as its consumer's handler receives it.
    async fn event(&self, letter: &DeadLetter) -> Result<RecordedEvent>;
}

/// Replays one letter through `handler` (usually the fixed handler of the
/// consumer that gave up) and resolves it on success: the handler runs once,
/// in an `orchestrix.handle` span with `attempt` = the letter's attempts + 1,
/// outside of its stream's order.
///
/// # Errors
/// The handler's error (the letter is kept), or the queue's.
pub async fn replay(
    queue: &dyn DeadLetterQueue,
    letter: &DeadLetter,
    handler: &dyn EventHandler,
) -> Result<()> {
    let event = queue.event(letter).await?;
    let partition = partition_for(event.stream_id.as_str(), 1);
    crate::runtime::invoke(
        handler,
        &event,
        partition,
        letter.attempts.saturating_add(1),
    )
    .await?;
    queue.resolve(letter.id).await?;
    tracing::info!(consumer = %letter.consumer, letter = %letter.id, event_id = %event.id(), queue = %queue.describe(), "dead letter replayed");
    Ok(())
}

/// The store's dead letters ([`DeadLetterStore`](crate::store::DeadLetterStore)).
#[derive(Debug, Clone)]
pub struct StoreDeadLetters {
    letters: DeadLetters,
}

impl StoreDeadLetters {
    /// The dead letters of `store`.
    #[must_use]
    pub fn new(store: Store) -> Self {
        Self {
            letters: DeadLetters::new(store),
        }
    }
}

#[async_trait]
impl DeadLetterQueue for StoreDeadLetters {
    fn describe(&self) -> String {
        "store".to_owned()
    }

    async fn list(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        let all = match &filter.consumer {
            Some(c) => self.letters.list(c).await?,
            None => self.letters.list_all().await?,
        };
        Ok(filter.apply(all))
    }

    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>> {
        self.letters.get(id).await
    }

    async fn resolve(&self, id: Uuid) -> Result<bool> {
        self.letters.delete(id).await
    }

    /// Read again from the store when it is still there (so today's
    /// upcasters apply), else rebuilt from the letter.
    async fn event(&self, letter: &DeadLetter) -> Result<RecordedEvent> {
        self.letters.event(letter).await
    }
}

/// A dead letter id derived from its coordinates on a bus (e.g.
/// `["kafka", topic, partition, offset]`): the same coordinates give the same
/// id, in every process and release (FNV-1a, 128 bits, as a UUIDv8).
///
/// ```
/// use orchestrix::dead_letter::stable_id;
/// let a = stable_id(&["kafka", "orders.dlq", "0", "41"]);
/// assert_eq!(a, stable_id(&["kafka", "orders.dlq", "0", "41"]));
/// assert_ne!(a, stable_id(&["kafka", "orders.dlq", "0", "42"]));
/// assert_ne!(stable_id(&["ab", "c"]), stable_id(&["a", "bc"]));
/// assert_eq!(a.get_version_num(), 8);
/// ```
#[must_use]
pub fn stable_id(coordinates: &[&str]) -> Uuid {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = OFFSET;
    for part in coordinates {
        // Length-prefixed, so `["ab", "c"]` and `["a", "bc"]` differ.
        for byte in u64::try_from(part.len())
            .unwrap_or(u64::MAX)
            .to_be_bytes()
            .iter()
            .chain(part.as_bytes())
        {
            hash ^= u128::from(*byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    uuid::Builder::from_custom_bytes(hash.to_be_bytes()).into_uuid()
}

/// The event of a bus dead letter whose headers are the original message's
/// CloudEvents binary-mode headers (`prefix`: [`binary::KAFKA_PREFIX`] or
/// [`binary::NATS_PREFIX`]) and whose payload is its body.
///
/// # Errors
/// [`Error::InvalidInput`] (or a decode error) when the letter is not a
/// CloudEvent in binary mode.
pub fn event_from_binary(letter: &DeadLetter, prefix: &str) -> Result<RecordedEvent> {
    let ce = binary::decode(
        letter
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_bytes())),
        &letter.payload,
        prefix,
    )
    .map_err(|e| {
        Error::invalid(
            format!("dead letter {}", letter.id),
            format!("not a CloudEvent this consumer can replay: {e}"),
        )
    })?;
    binary::to_recorded(&ce)
}

/// The [`header`] name that an older header name means: NATS wrote
/// `Orchestrix-Source-Stream`, `-Sequence` and `-Subject` before the layout
/// was shared with Kafka. Case-insensitive.
///
/// ```
/// use orchestrix::dead_letter::{header, legacy_alias};
/// assert_eq!(legacy_alias("Orchestrix-Source-Sequence"), Some(header::ORIGINAL_OFFSET));
/// assert_eq!(legacy_alias("orchestrix-error"), None);
/// ```
#[must_use]
pub fn legacy_alias(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().as_str() {
        "orchestrix-source-stream" => Some(header::ORIGINAL_TOPIC),
        "orchestrix-source-sequence" => Some(header::ORIGINAL_OFFSET),
        "orchestrix-source-subject" => Some(header::ORIGINAL_SUBJECT),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloudevent::CloudEvent;
    use crate::event::EventRecord;
    use crate::id::StreamId;

    #[test]
    fn a_bus_letter_decodes_its_event() {
        let event = RecordedEvent {
            stream_id: StreamId::parse("order-1").unwrap(),
            revision: 2,
            position: 5,
            record: EventRecord::json("com.acme.Placed", 1, &serde_json::json!({"n": 1})),
        };
        let ce = CloudEvent::from_recorded(&event).unwrap();
        for prefix in [binary::KAFKA_PREFIX, binary::NATS_PREFIX] {
            let (headers, body) = binary::encode(&ce, prefix);
            let mut letter =
                crate::runtime::dead_letter_for("c", &event, &Error::invalid("x", "y"), 1);
            letter.headers = headers.into_iter().collect();
            letter.payload = body;
            let back = event_from_binary(&letter, prefix).unwrap();
            assert_eq!(back.id(), event.id());
            assert_eq!(back.stream_id, event.stream_id);
            assert_eq!(back.record.data, event.record.data);
        }
    }

    #[test]
    fn the_filter_bounds_time_and_count() {
        let event = RecordedEvent {
            stream_id: StreamId::parse("order-1").unwrap(),
            revision: 0,
            position: 1,
            record: EventRecord::json("com.acme.Placed", 1, &serde_json::json!({})),
        };
        let at = |secs: i64| {
            let mut l = crate::runtime::dead_letter_for("c", &event, &Error::invalid("x", "y"), 1);
            l.failed_at = DateTime::from_timestamp(secs, 0).unwrap();
            l
        };
        let all = vec![at(30), at(10), at(20)];
        let f = DeadLetterFilter {
            since: DateTime::from_timestamp(10, 0),
            until: DateTime::from_timestamp(30, 0),
            ..DeadLetterFilter::default()
        };
        let got: Vec<i64> = f
            .apply(all.clone())
            .iter()
            .map(|l| l.failed_at.timestamp())
            .collect();
        assert_eq!(got, [10, 20]);
        let one = DeadLetterFilter {
            limit: Some(1),
            ..DeadLetterFilter::default()
        };
        assert_eq!(one.apply(all)[0].failed_at.timestamp(), 10);
    }
}
