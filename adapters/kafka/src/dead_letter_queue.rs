//! The dead letters of Kafka dead-letter topics as a
//! [`DeadLetterQueue`]: listed, inspected, resolved and replayed as the
//! store's are.
//!
//! **Resolving.** Kafka cannot delete one record of a topic, so a resolved
//! (replayed or deleted) letter is recorded on a companion topic,
//! `{dead-letter topic}.resolved`: compacted, one partition, one record per
//! resolved letter keyed by its id, the value saying when. Listing reads
//! both topics and hides the resolved letters. Why a compacted topic:
//!
//! - it is as durable and as shared as the letters themselves (any process,
//!   any host sees the same set; nothing else to run or back up);
//! - compaction keeps one record per id however often a letter is resolved,
//!   and never drops the last one, so the set stays exact;
//! - the dead-letter topic itself is left alone: its records keep their
//!   original keys (the stream id, which a tombstone would have to reuse,
//!   hiding every other letter of the stream on a compacted topic) and its
//!   own retention.
//!
//! Letters that the dead-letter topic's retention removes disappear from
//! listings on their own; their resolved records stay (a few bytes each).
//!
//! **Ids.** The [`DEAD_LETTER_ID`](crate::dead_letter::DEAD_LETTER_ID) header
//! the consumer writes, or an id derived from the record's coordinates for
//! older records ([`crate::dead_letter::parse`]): stable across listings.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::Utc;
use orchestrix::cloudevent::binary;
use orchestrix::dead_letter::{DeadLetterFilter, DeadLetterQueue, event_from_binary};
use orchestrix::store::DeadLetter;
use orchestrix::{RecordedEvent, Result};
use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;
use uuid::Uuid;

use crate::config::KafkaConfig;
use crate::error::Error;
use crate::message::KafkaRecord;

/// The suffix of the topic that records resolved letters.
pub const RESOLVED_SUFFIX: &str = ".resolved";

/// How long reading a topic to its end may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The dead letters of one or more Kafka dead-letter topics.
///
/// ```no_run
/// use orchestrix::dead_letter::{DeadLetterFilter, DeadLetterQueue};
/// use orchestrix_kafka::{KafkaConfig, KafkaDeadLetters};
/// # async fn f() -> orchestrix::Result<()> {
/// let config = KafkaConfig::from_url("kafka://127.0.0.1:9092")?;
/// let queue = KafkaDeadLetters::new(config, ["orchestrix.bank.events.dlq"]);
/// for letter in queue.list(&DeadLetterFilter::default()).await? {
///     println!("{} {} {}", letter.id, letter.consumer, letter.reason);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct KafkaDeadLetters {
    config: Arc<KafkaConfig>,
    topics: Vec<String>,
}

impl std::fmt::Debug for KafkaDeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaDeadLetters")
            .field("brokers", &self.config.brokers)
            .field("topics", &self.topics)
            .finish()
    }
}

/// A letter with the topic it is on.
struct Found {
    topic: String,
    letter: DeadLetter,
}

impl KafkaDeadLetters {
    /// The letters of `topics` (dead-letter topics, e.g. `{topic}.dlq`) on
    /// the cluster of `config`.
    pub fn new<T: Into<String>>(config: KafkaConfig, topics: impl IntoIterator<Item = T>) -> Self {
        Self {
            config: Arc::new(config),
            topics: topics.into_iter().map(Into::into).collect(),
        }
    }

    /// The dead-letter topics.
    #[must_use]
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// The topic that records the resolved letters of `topic`.
    ///
    /// ```
    /// assert_eq!(
    ///     orchestrix_kafka::KafkaDeadLetters::resolved_topic("app.events.dlq"),
    ///     "app.events.dlq.resolved"
    /// );
    /// ```
    #[must_use]
    pub fn resolved_topic(topic: &str) -> String {
        format!("{topic}{RESOLVED_SUFFIX}")
    }

    /// Every unresolved letter of every topic, oldest first.
    async fn read(&self) -> Result<Vec<Found>> {
        let config = self.config.clone();
        let topics = self.topics.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<Found>> {
            let mut out = Vec::new();
            for topic in &topics {
                let resolved: HashSet<String> = read_to_end(&config, &Self::resolved_topic(topic))?
                    .into_iter()
                    .filter(|r| !r.payload.is_empty())
                    .filter_map(|r| r.key_str().map(str::to_owned))
                    .collect();
                for record in read_to_end(&config, topic)? {
                    let Some(letter) = crate::dead_letter::parse(&record) else {
                        continue;
                    };
                    if !resolved.contains(&letter.id.to_string()) {
                        out.push(Found {
                            topic: topic.clone(),
                            letter,
                        });
                    }
                }
            }
            // A record written twice (a producer retry) is one letter.
            let mut seen = HashSet::new();
            out.retain(|f| seen.insert(f.letter.id));
            out.sort_by_key(|f| f.letter.failed_at);
            Ok(out)
        })
        .await
        .map_err(|e| {
            orchestrix::Error::from(Error::Kafka {
                operation: "read dead letters",
                transient: false,
                source: Box::new(e),
            })
        })?
    }

    /// Creates the compacted resolved topic when it is absent.
    async fn ensure_resolved_topic(&self, topic: &str) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> =
            self.config
                .admin_client_config()
                .create()
                .map_err(|e| Error::kafka("create topic", e))?;
        let new = NewTopic::new(
            topic,
            1,
            TopicReplication::Fixed(self.config.topics.replication),
        )
        .set("cleanup.policy", "compact");
        let timeout = self.config.connect_timeout();
        let options = AdminOptions::new()
            .operation_timeout(Some(timeout))
            .request_timeout(Some(timeout));
        let results = admin
            .create_topics([&new], &options)
            .await
            .map_err(|e| Error::kafka("create topic", e))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(Error::kafka("create topic", KafkaError::AdminOp(code)).into());
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl DeadLetterQueue for KafkaDeadLetters {
    fn describe(&self) -> String {
        format!("kafka topic(s) {}", self.topics.join(", "))
    }

    async fn list(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        let all = self.read().await?.into_iter().map(|f| f.letter).collect();
        Ok(filter.apply(all))
    }

    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>> {
        Ok(self
            .read()
            .await?
            .into_iter()
            .find(|f| f.letter.id == id)
            .map(|f| f.letter))
    }

    async fn resolve(&self, id: Uuid) -> Result<bool> {
        let Some(found) = self.read().await?.into_iter().find(|f| f.letter.id == id) else {
            return Ok(false);
        };
        let topic = Self::resolved_topic(&found.topic);
        self.ensure_resolved_topic(&topic).await?;
        let producer = crate::publisher::create_producer(&self.config)?;
        let key = id.to_string();
        let value = serde_json::json!({
            "resolved_at": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "consumer": found.letter.consumer,
        })
        .to_string();
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&value),
                self.config.connect_timeout(),
            )
            .await
            .map_err(|(e, _)| Error::kafka("resolve dead letter", e))?;
        tracing::debug!(%id, %topic, "dead letter resolved");
        Ok(true)
    }

    async fn event(&self, letter: &DeadLetter) -> Result<RecordedEvent> {
        event_from_binary(letter, binary::KAFKA_PREFIX)
    }
}

/// Every record of `topic` up to its end now, by partition and offset; none
/// when the topic does not exist.
fn read_to_end(config: &KafkaConfig, topic: &str) -> Result<Vec<KafkaRecord>> {
    let group = format!("orchestrix-dlq-reader-{}", Uuid::now_v7());
    let consumer: BaseConsumer = config
        .consumer_client_config(&group)
        .create()
        .map_err(|e| Error::kafka("read dead letters", e))?;
    let timeout = config.connect_timeout();
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| Error::kafka("read dead letters", e))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    // The next offset to read, and the end, of each non-empty partition.
    let mut remaining: BTreeMap<i32, (i64, i64)> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| Error::kafka("read dead letters", e))?;
        if high > low {
            remaining.insert(p, (low, high));
            tpl.add_partition_offset(topic, p, Offset::Offset(low))
                .map_err(|e| Error::kafka("read dead letters", e))?;
        }
    }
    let mut records = Vec::new();
    if remaining.is_empty() {
        return Ok(records);
    }
    consumer
        .assign(&tpl)
        .map_err(|e| Error::kafka("read dead letters", e))?;
    let deadline = Instant::now() + READ_TIMEOUT;
    while !remaining.is_empty() {
        if Instant::now() > deadline {
            return Err(Error::Kafka {
                operation: "read dead letters",
                transient: true,
                source: format!("`{topic}` was not read to its end within {READ_TIMEOUT:?}").into(),
            }
            .into());
        }
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let record =
            KafkaRecord::from_message(&message.map_err(|e| Error::kafka("read dead letters", e))?);
        if let Some((_, high)) = remaining.get(&record.partition).copied() {
            if record.offset + 1 >= high {
                remaining.remove(&record.partition);
            } else {
                remaining.insert(record.partition, (record.offset + 1, high));
            }
        }
        records.push(record);
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    Ok(records)
}
