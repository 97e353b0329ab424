//! Exactly-once relay publishing with Kafka transactions.
//!
//! [`TransactionalPublisher`] sends each batch the relay hands it in one Kafka
//! transaction (`transactional.id`, `begin` → records → `commit`), so a
//! `read_committed` consumer (librdkafka's default isolation level, and the
//! consumers of this crate) sees a batch whole or not at all. Two things
//! follow that the idempotent [`KafkaPublisher`](crate::KafkaPublisher)
//! cannot give:
//!
//! - **No duplicate after a crash between Kafka's commit and the relay's
//!   checkpoint.** The relay publishes batches in global-position order and
//!   each one commits atomically, so the largest `ce_globalposition` among the
//!   committed records of the application's topics is exactly where the
//!   published prefix ends. [`Publisher::published_up_to`] reads it back
//!   (`read_committed`, the tail of every partition), and the relay resumes
//!   after it instead of after its possibly older checkpoint.
//! - **Zombie fencing.** A second relay with the same transactional id (a
//!   restarted pod while the old one is still alive) fences the first: the
//!   broker bumps the producer epoch, aborts the first one's open
//!   transaction, and the first one's next commit fails with a permanent
//!   error, so its relay stops instead of interleaving with the new one.
//!
//! ```no_run
//! use std::sync::Arc;
//! use orchestrix::relay::{Relay, RelayConfig};
//! use orchestrix::Store;
//! use orchestrix_kafka::{KafkaConfig, TransactionalPublisher};
//! # async fn run(store: Store) -> Result<(), Box<dyn std::error::Error>> {
//! let config = KafkaConfig::from_url("kafka://127.0.0.1:9092?prefix=bank")?;
//! let publisher = TransactionalPublisher::new(config, "bank-relay")?;
//! let relay = Relay::start(store, Arc::new(publisher), RelayConfig::default()).await?;
//! # relay.shutdown().await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::RecordedEvent;
use orchestrix::cloudevent::EXT_GLOBAL_POSITION;
use orchestrix::relay::Publisher;
use orchestrix::wire::ValueFormat;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::Mutex;

use crate::admin::Topics;
use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::publisher::encode_to;

/// How far back from a partition's end [`TransactionalPublisher`] first looks
/// for the last committed record (a transaction's commit marker and aborted
/// records take offsets too); it reads the whole partition when that window
/// holds no committed record.
const TAIL_WINDOW: i64 = 1_000;

/// The longest a transaction call (init, commit, abort) or a metadata read
/// may take.
const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// Publishes each relay batch in one Kafka transaction. See the module docs.
pub struct TransactionalPublisher {
    name: String,
    transactional_id: String,
    config: Arc<KafkaConfig>,
    producer: FutureProducer,
    topics: Topics,
    /// Serializes transactions (one producer has one open transaction) and
    /// remembers whether `init_transactions` ran.
    state: Mutex<bool>,
    format: Option<Arc<dyn ValueFormat>>,
}

impl std::fmt::Debug for TransactionalPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionalPublisher")
            .field("name", &self.name)
            .field("transactional_id", &self.transactional_id)
            .finish_non_exhaustive()
    }
}

impl TransactionalPublisher {
    /// A publisher named `kafka` with the given `transactional.id`. Give every
    /// relay of one application the same id (a replacement then fences the
    /// one it replaces) and different applications different ids.
    ///
    /// # Errors
    /// [`Error::Config`] for invalid settings or an empty id,
    /// [`Error::Kafka`] when the client cannot be created.
    pub fn new(config: KafkaConfig, transactional_id: impl Into<String>) -> Result<Self> {
        let transactional_id = transactional_id.into();
        if transactional_id.trim().is_empty() {
            return Err(Error::Config {
                what: "transactional_id".into(),
                reason: "must not be empty".into(),
            });
        }
        config.validate()?;
        let mut client = config.producer_client_config();
        client
            .set("transactional.id", &transactional_id)
            .set("transaction.timeout.ms", "60000");
        let producer: FutureProducer = client
            .create()
            .map_err(|e| Error::kafka("create transactional producer", e))?;
        let topics = Topics::new(&config)?;
        Ok(Self {
            name: "kafka".to_owned(),
            transactional_id,
            config: Arc::new(config),
            producer,
            topics,
            state: Mutex::new(false),
            format: None,
        })
    }

    /// Writes record values in `format` (e.g. Avro in the Confluent wire
    /// format) instead of the stored bytes.
    #[must_use]
    pub fn with_value_format(mut self, format: Arc<dyn ValueFormat>) -> Self {
        self.format = Some(format);
        self
    }

    /// Renames the publisher (and so its relay checkpoint).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The `transactional.id`.
    #[must_use]
    pub fn transactional_id(&self) -> &str {
        &self.transactional_id
    }

    /// Registers the transactional id with the broker (once): fences any
    /// older producer with the same id and aborts its open transaction.
    async fn init(&self, initialized: &mut bool) -> Result<()> {
        if *initialized {
            return Ok(());
        }
        let producer = self.producer.clone();
        blocking(move || producer.init_transactions(TXN_TIMEOUT))
            .await
            .map_err(|e| txn_error("init transactions", e))?;
        *initialized = true;
        Ok(())
    }

    /// Publishes `events` in one transaction, committed before it returns.
    ///
    /// # Errors
    /// A failed send or commit (the transaction is aborted, nothing of the
    /// batch is visible to `read_committed` consumers, and the relay retries
    /// it), or a permanent error when this producer was fenced by a newer one
    /// with the same transactional id.
    pub async fn publish_events(&self, events: &[RecordedEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut initialized = self.state.lock().await;
        self.init(&mut initialized).await?;
        let mut messages = Vec::with_capacity(events.len());
        for event in events {
            let topic = self
                .config
                .topics
                .topic_for(event.stream_id.category(), &event.record.source);
            let m = match &self.format {
                None => encode_to(topic, event)?,
                Some(format) => {
                    let wire = format.outbound(&topic, event).await?;
                    encode_to(topic, &wire)?
                }
            };
            messages.push(m);
        }
        let mut distinct: Vec<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        for topic in distinct {
            self.topics.ensure(topic).await?;
        }
        let producer = self.producer.clone();
        blocking(move || producer.begin_transaction())
            .await
            .map_err(|e| txn_error("begin transaction", e))?;
        match self.send_all(&messages).await {
            Ok(()) => {
                let producer = self.producer.clone();
                match blocking(move || producer.commit_transaction(TXN_TIMEOUT)).await {
                    Ok(()) => Ok(()),
                    Err(e) => Err(self.abort_after("commit transaction", e).await),
                }
            }
            Err(e) => Err(self.abort_after("publish", e).await),
        }
    }

    async fn send_all(
        &self,
        messages: &[crate::publisher::EncodedMessage],
    ) -> std::result::Result<(), KafkaError> {
        let mut pending = Vec::with_capacity(messages.len());
        for m in messages {
            let mut record = FutureRecord::to(&m.topic)
                .key(m.key.as_bytes())
                .payload(&m.payload[..])
                .headers(m.kafka_headers());
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        }
        for result in futures::future::join_all(pending).await {
            match result {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(e),
                Err(_canceled) => return Err(KafkaError::Canceled),
            }
        }
        Ok(())
    }

    /// Aborts the open transaction after `error` (unless the producer is
    /// fenced, where only a new producer could continue) and returns the
    /// error to report.
    async fn abort_after(&self, operation: &'static str, error: KafkaError) -> Error {
        // A fenced producer fails its queued records with a local error
        // (`PurgeQueue`); the client's fatal error says why.
        if let Some((code, reason)) = self.producer.client().fatal_error() {
            tracing::error!(%code, reason, transactional_id = %self.transactional_id,
                "the transactional producer is fenced or failed fatally; this relay must stop");
            return Error::Kafka {
                operation,
                transient: false,
                source: format!("{reason} ({code}); the send failed with: {error}").into(),
            };
        }
        if !is_fatal(&error) {
            let producer = self.producer.clone();
            if let Err(abort) = blocking(move || producer.abort_transaction(TXN_TIMEOUT)).await {
                tracing::warn!(error = %abort, "aborting the Kafka transaction failed");
            }
        }
        txn_error(operation, error)
    }

    /// The largest global position among the committed records of the
    /// application's topics (those starting with `{topics.prefix}.`, dead
    /// letters excluded), read with `read_committed` from the tail of every
    /// partition.
    async fn last_committed_position(&self) -> Result<Option<u64>> {
        let config = Arc::clone(&self.config);
        blocking(move || scan_last_position(&config))
            .await
            .map_err(|e| Error::kafka("read the last committed position", e))
    }
}

#[async_trait]
impl Publisher for TransactionalPublisher {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, events: &[RecordedEvent]) -> orchestrix::Result<()> {
        self.publish_events(events).await?;
        Ok(())
    }

    async fn published_up_to(&self) -> orchestrix::Result<Option<u64>> {
        // Fence older producers first: their open transaction is aborted, so
        // what is read next is final.
        let mut initialized = self.state.lock().await;
        self.init(&mut initialized).await?;
        Ok(self.last_committed_position().await?)
    }
}

fn scan_last_position(config: &KafkaConfig) -> std::result::Result<Option<u64>, KafkaError> {
    // A throwaway group id: the scan assigns partitions and never commits.
    let mut client = config.consumer_client_config(&format!(
        "{}.relay-scan.{}",
        config.topics.prefix,
        uuid::Uuid::now_v7().simple()
    ));
    client
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = client.create()?;
    let metadata = consumer.fetch_metadata(None, TXN_TIMEOUT)?;
    let prefix = format!("{}.", config.topics.prefix);
    let mut best: Option<u64> = None;
    for topic in metadata.topics() {
        let name = topic.name();
        if !name.starts_with(&prefix) || name.contains(".dlq") || name.ends_with(".dead-letters") {
            continue;
        }
        for partition in topic.partitions() {
            let (low, high) = consumer.fetch_watermarks(name, partition.id(), TXN_TIMEOUT)?;
            if high <= low {
                continue;
            }
            let mut from = (high - TAIL_WINDOW).max(low);
            loop {
                let found = scan_partition(&consumer, name, partition.id(), from)?;
                if found.is_some() || from == low {
                    if let Some(p) = found {
                        best = Some(best.map_or(p, |b| b.max(p)));
                    }
                    break;
                }
                from = low;
            }
        }
    }
    Ok(best)
}

/// The largest global position of the committed records of one partition
/// from `from` to its end (the last stable offset).
fn scan_partition(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    from: i64,
) -> std::result::Result<Option<u64>, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
    consumer.assign(&tpl)?;
    let deadline = std::time::Instant::now() + TXN_TIMEOUT;
    let key = format!("ce_{EXT_GLOBAL_POSITION}");
    let mut best: Option<u64> = None;
    loop {
        if std::time::Instant::now() > deadline {
            return Err(KafkaError::MessageConsumption(
                RDKafkaErrorCode::OperationTimedOut,
            ));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(e),
            Some(Ok(m)) => {
                let position = m.headers().and_then(|h| {
                    h.iter()
                        .find(|header| header.key == key)
                        .and_then(|header| header.value)
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.parse::<u64>().ok())
                });
                if let Some(p) = position {
                    best = Some(best.map_or(p, |b| b.max(p)));
                }
            }
        }
    }
    consumer.unassign()?;
    Ok(best)
}

/// Runs a blocking client call off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, KafkaError> + Send + 'static,
) -> std::result::Result<T, KafkaError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(KafkaError::Canceled))
}

fn is_fatal(error: &KafkaError) -> bool {
    match error {
        KafkaError::Transaction(e) => e.is_fatal(),
        other => other.rdkafka_error_code().is_some_and(|c| {
            matches!(
                c,
                RDKafkaErrorCode::Fenced
                    | RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            )
        }),
    }
}

fn txn_error(operation: &'static str, error: KafkaError) -> Error {
    if is_fatal(&error) {
        // Fenced: a newer relay owns the transactional id. Retrying with this
        // producer can never succeed, and must not: stop.
        return Error::Kafka {
            operation,
            transient: false,
            source: Box::new(error),
        };
    }
    let transient = match &error {
        KafkaError::Transaction(e) => e.is_retriable() || e.txn_requires_abort(),
        other => crate::error::is_transient(other),
    };
    Error::Kafka {
        operation,
        transient,
        source: Box::new(error),
    }
}
