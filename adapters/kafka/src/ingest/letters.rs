//! Which records an ingest has already dead-lettered: read from the
//! dead-letter topics themselves (the `orchestrix-consumer` and
//! `orchestrix-original-*` headers of each letter), incrementally, so that a
//! record redelivered after a crash or read by a new group is not
//! dead-lettered twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use uuid::Uuid;

use crate::config::KafkaConfig;
use crate::dead_letter::{CONSUMER, ORIGINAL_OFFSET, ORIGINAL_PARTITION, ORIGINAL_TOPIC};
use crate::error::{Error, Result};
use crate::message::KafkaRecord;

/// How long reading a dead-letter topic to its end may take.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A record's coordinates: topic, partition, offset.
type Coordinates = (String, i32, i64);

#[derive(Default)]
struct State {
    /// Per dead-letter topic and partition, the next offset to read.
    next: HashMap<(String, i32), i64>,
    /// Dead-letter topics read at least once.
    read: HashSet<String>,
    /// The original coordinates of this ingest's letters.
    seen: HashSet<Coordinates>,
}

pub(super) struct Letters {
    config: Arc<KafkaConfig>,
    consumer: String,
    group: String,
    state: Arc<Mutex<State>>,
}

impl Letters {
    pub(super) fn new(config: KafkaConfig, consumer: String, group: String) -> Self {
        Self {
            config: Arc::new(config),
            consumer,
            group,
            state: Arc::default(),
        }
    }

    fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
        state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this ingest has dead-lettered `record`. Reads the records the
    /// dead-letter topic got since the last reading when `refresh` is set or
    /// the topic was never read.
    pub(super) async fn contains(&self, record: &KafkaRecord, refresh: bool) -> Result<bool> {
        let topic = self.config.dead_letter_topic(&record.topic, &self.group);
        let key = (record.topic.clone(), record.partition, record.offset);
        let from = {
            let state = Self::lock(&self.state);
            if state.seen.contains(&key) {
                return Ok(true);
            }
            if !refresh && state.read.contains(&topic) {
                return Ok(false);
            }
            state
                .next
                .iter()
                .filter(|((t, _), _)| *t == topic)
                .map(|((_, p), o)| (*p, *o))
                .collect::<HashMap<i32, i64>>()
        };
        let config = self.config.clone();
        let consumer = self.consumer.clone();
        let read_topic = topic.clone();
        let (next, found) = tokio::task::spawn_blocking(move || {
            read_letters(&config, &read_topic, &from, &consumer)
        })
        .await
        .map_err(|e| Error::Kafka {
            operation: "read dead letters",
            transient: true,
            source: Box::new(e),
        })??;
        let mut state = Self::lock(&self.state);
        for (partition, offset) in next {
            let at = state.next.entry((topic.clone(), partition)).or_insert(0);
            *at = (*at).max(offset);
        }
        state.seen.extend(found);
        state.read.insert(topic);
        Ok(state.seen.contains(&key))
    }
}

/// Reads `topic` from the offsets in `from` (the start where absent) to its
/// end now: the next offsets reached, and the original coordinates of the
/// letters written by `consumer`.
fn read_letters(
    config: &KafkaConfig,
    topic: &str,
    from: &HashMap<i32, i64>,
    consumer: &str,
) -> Result<(HashMap<i32, i64>, Vec<Coordinates>)> {
    let group = format!("orchestrix-ingest-letters-{}", Uuid::now_v7());
    let client: BaseConsumer = config
        .consumer_client_config(&group)
        .create()
        .map_err(|e| Error::kafka("read dead letters", e))?;
    let timeout = config.connect_timeout();
    let metadata = client
        .fetch_metadata(Some(topic), timeout)
        .map_err(|e| Error::kafka("read dead letters", e))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut next = HashMap::new();
    let mut remaining: HashMap<i32, i64> = HashMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (low, high) = client
            .fetch_watermarks(topic, p, timeout)
            .map_err(|e| Error::kafka("read dead letters", e))?;
        let start = from.get(&p).copied().unwrap_or(low).max(low);
        next.insert(p, start.max(high));
        if high > start {
            remaining.insert(p, high);
            tpl.add_partition_offset(topic, p, Offset::Offset(start))
                .map_err(|e| Error::kafka("read dead letters", e))?;
        }
    }
    let mut found = Vec::new();
    if remaining.is_empty() {
        return Ok((next, found));
    }
    client
        .assign(&tpl)
        .map_err(|e| Error::kafka("read dead letters", e))?;
    let deadline = Instant::now() + READ_TIMEOUT;
    while !remaining.is_empty() {
        if Instant::now() > deadline {
            return Err(Error::Kafka {
                operation: "read dead letters",
                transient: true,
                source: format!("`{topic}` was not read to its end within {READ_TIMEOUT:?}").into(),
            });
        }
        let Some(message) = client.poll(Duration::from_millis(200)) else {
            continue;
        };
        let letter =
            KafkaRecord::from_message(&message.map_err(|e| Error::kafka("read dead letters", e))?);
        if let Some(high) = remaining.get(&letter.partition).copied()
            && letter.offset + 1 >= high
        {
            remaining.remove(&letter.partition);
        }
        if letter.header_str(CONSUMER) != Some(consumer) {
            continue;
        }
        let original = (
            letter.header_str(ORIGINAL_TOPIC),
            letter
                .header_str(ORIGINAL_PARTITION)
                .and_then(|p| p.parse().ok()),
            letter
                .header_str(ORIGINAL_OFFSET)
                .and_then(|o| o.parse().ok()),
        );
        if let (Some(t), Some(p), Some(o)) = original {
            found.push((t.to_owned(), p, o));
        }
    }
    Ok((next, found))
}
