//! The Kafka publisher: stored events out as CloudEvents (Kafka binding,
//! binary content mode) through an idempotent producer.
//!
//! Each event becomes one record: key = stream id (the partition key, so one
//! stream stays on one partition and in order), headers = the CloudEvents
//! attributes with the `ce_` prefix plus `content-type`, value = the payload
//! bytes exactly as the store's codec wrote them (JSON now, Avro with the Avro
//! codec). The producer is idempotent with `acks=all`: librdkafka's retries
//! neither duplicate nor reorder a partition's records.
//!
//! [`KafkaPublisher`] implements [`orchestrix::relay::Publisher`], so the core
//! [`Relay`](orchestrix::relay::Relay) moves events from any store to Kafka.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use orchestrix::cloudevent::{CloudEvent, binary};
use orchestrix::relay::Publisher;
use orchestrix::wire::ValueFormat;
use orchestrix::{RecordedEvent, StreamId};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use crate::admin::Topics;
use crate::config::{KafkaConfig, TopicConfig};
use crate::error::{Error, Result};

/// One event as a Kafka record, before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedMessage {
    /// The topic it goes to.
    pub topic: String,
    /// The record key: the stream id.
    pub key: String,
    /// `ce_*` and `content-type` headers.
    pub headers: Vec<(String, String)>,
    /// The payload bytes as the codec wrote them.
    pub payload: Bytes,
}

impl EncodedMessage {
    /// The headers as rdkafka wants them.
    #[must_use]
    pub fn kafka_headers(&self) -> OwnedHeaders {
        self.headers.iter().fold(
            OwnedHeaders::new_with_capacity(self.headers.len()),
            |h, (k, v)| {
                h.insert(Header {
                    key: k,
                    value: Some(v.as_bytes()),
                })
            },
        )
    }
}

/// Encodes a stored event as a Kafka record in CloudEvents binary content mode.
///
/// ```
/// use orchestrix::{EventRecord, RecordedEvent, StreamId};
/// use orchestrix_kafka::config::TopicConfig;
/// let event = RecordedEvent {
///     stream_id: StreamId::parse("account-7")?,
///     revision: 0,
///     position: 1,
///     record: EventRecord::json("com.acme.bank.Opened", 1, &serde_json::json!({"owner": "Ann"})),
/// };
/// let m = orchestrix_kafka::publisher::encode_event(&TopicConfig::default(), &event)?;
/// assert_eq!((m.topic.as_str(), m.key.as_str()), ("orchestrix.account", "account-7"));
/// assert!(m.headers.iter().any(|(k, v)| k == "ce_type" && v == "com.acme.bank.Opened"));
/// assert!(m.headers.iter().any(|(k, v)| k == "content-type" && v == "application/json"));
/// assert_eq!(&m.payload[..], br#"{"owner":"Ann"}"#);
/// # Ok::<(), orchestrix::Error>(())
/// ```
///
/// # Errors
/// [`orchestrix::Error::InvalidInput`] when the stored metadata is not a valid
/// CloudEvent.
pub fn encode_event(
    topics: &TopicConfig,
    event: &RecordedEvent,
) -> orchestrix::Result<EncodedMessage> {
    encode_to(
        topics.topic_for(event.stream_id.category(), &event.record.source),
        event,
    )
}

pub(crate) fn encode_to(
    topic: String,
    event: &RecordedEvent,
) -> orchestrix::Result<EncodedMessage> {
    // The codec's bytes as they are: no JSON parse and re-serialization.
    let ce = CloudEvent::from_recorded_opaque(event)?;
    let (headers, payload) = binary::encode(&ce, binary::KAFKA_PREFIX);
    Ok(EncodedMessage {
        topic,
        key: event.stream_id.as_str().to_owned(),
        headers,
        payload,
    })
}

/// Where Kafka put a published event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    /// The stream of the event.
    pub stream_id: StreamId,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset within the partition.
    pub offset: i64,
}

/// Publishes stored events to Kafka. See the module docs.
///
/// ```no_run
/// use std::sync::Arc;
/// use orchestrix::relay::{Relay, RelayConfig};
/// use orchestrix::Store;
/// use orchestrix_kafka::{KafkaConfig, KafkaPublisher};
/// # async fn run(store: Store) -> Result<(), Box<dyn std::error::Error>> {
/// let publisher = Arc::new(KafkaPublisher::new(KafkaConfig::from_url("kafka://127.0.0.1:9092")?)?);
/// // From the store's relay checkpoint, in order, at least once, never skipping.
/// let relay = Relay::start(store, publisher, RelayConfig::default()).await?;
/// # relay.shutdown().await?;
/// # Ok(()) }
/// ```
pub struct KafkaPublisher {
    name: String,
    config: Arc<KafkaConfig>,
    producer: RwLock<FutureProducer>,
    topics: Topics,
    format: Option<Arc<dyn ValueFormat>>,
}

impl std::fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaPublisher")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KafkaPublisher {
    /// A publisher named `kafka` (its relay checkpoint is `relay:kafka`).
    ///
    /// # Errors
    /// [`Error::Config`] for invalid settings, [`Error::Kafka`] when the client
    /// cannot be created.
    pub fn new(config: KafkaConfig) -> Result<Self> {
        config.validate()?;
        let producer = create_producer(&config)?;
        let topics = Topics::new(&config)?;
        Ok(Self {
            name: "kafka".to_owned(),
            config: Arc::new(config),
            producer: RwLock::new(producer),
            topics,
            format: None,
        })
    }

    /// Writes record values in `format` (e.g. Avro in the Confluent wire
    /// format, `orchestrix_schema_registry::AvroWireFormat`) instead of the
    /// stored bytes.
    #[must_use]
    pub fn with_value_format(mut self, format: Arc<dyn ValueFormat>) -> Self {
        self.format = Some(format);
        self
    }

    /// Renames the publisher (and so its relay checkpoint), e.g. to run two
    /// relays to two clusters.
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &KafkaConfig {
        &self.config
    }

    /// The topic an event goes to.
    #[must_use]
    pub fn topic_of(&self, event: &RecordedEvent) -> String {
        self.config
            .topics
            .topic_for(event.stream_id.category(), &event.record.source)
    }

    fn producer(&self) -> FutureProducer {
        self.producer
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Publishes events in the given order and waits until Kafka acknowledged
    /// every one (`acks=all`).
    ///
    /// # Errors
    /// The first failure; events before it may have been published (the relay
    /// retries the batch, and consumers dedupe on stream revision or event id).
    pub async fn publish_events(&self, events: &[RecordedEvent]) -> Result<Vec<Delivered>> {
        // Topics first (usually one or a few), then the whole batch encoded,
        // then enqueued: an event that cannot be encoded (its schema not in
        // a registry that is down) fails the batch before any of it is sent,
        // so the relay's retry does not send the events before it again.
        let topics: Vec<String> = events.iter().map(|e| self.topic_of(e)).collect();
        let mut distinct: Vec<&str> = topics.iter().map(String::as_str).collect();
        distinct.sort_unstable();
        distinct.dedup();
        for topic in distinct {
            self.topics.ensure(topic).await?;
        }
        let mut encoded = Vec::with_capacity(events.len());
        for (event, topic) in events.iter().zip(&topics) {
            encoded.push(match &self.format {
                None => encode_to(topic.clone(), event)?,
                Some(format) => encode_to(topic.clone(), &format.outbound(topic, event).await?)?,
            });
        }
        let producer = self.producer();
        let mut pending = Vec::with_capacity(events.len());
        for m in &encoded {
            let mut record = FutureRecord::to(&m.topic)
                .key(m.key.as_bytes())
                .payload(&m.payload[..])
                .headers(m.kafka_headers());
            loop {
                match producer.send_result(record) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The client's buffer is full: let deliveries drain.
                        record = back;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err((e, _)) => return Err(self.failed(&producer, e)),
                }
            }
        }
        let mut delivered = Vec::with_capacity(pending.len());
        let mut first_error = None;
        for ((event, topic), result) in events
            .iter()
            .zip(topics)
            .zip(futures::future::join_all(pending).await)
        {
            match result {
                Ok(Ok(d)) => delivered.push(Delivered {
                    stream_id: event.stream_id.clone(),
                    topic,
                    partition: d.partition,
                    offset: d.offset,
                }),
                Ok(Err((e, _))) => {
                    first_error.get_or_insert(e);
                }
                Err(_canceled) => {
                    first_error.get_or_insert(KafkaError::Canceled);
                }
            }
        }
        match first_error {
            Some(e) => Err(self.failed(&producer, e)),
            None => Ok(delivered),
        }
    }

    /// Reports a failure; after a fatal producer error (the idempotent
    /// producer's state is lost) the producer is replaced, so that the retry
    /// can succeed.
    fn failed(&self, producer: &FutureProducer, e: KafkaError) -> Error {
        if let Some((code, reason)) = producer.client().fatal_error() {
            tracing::error!(%code, reason, "fatal producer error; creating a new producer");
            match create_producer(&self.config) {
                Ok(fresh) => {
                    *self
                        .producer
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = fresh
                }
                Err(err) => tracing::error!(error = %err, "cannot create a new producer"),
            }
            return Error::Kafka {
                operation: "publish",
                transient: true,
                source: Box::new(e),
            };
        }
        Error::kafka("publish", e)
    }
}

pub(crate) fn create_producer(config: &KafkaConfig) -> Result<FutureProducer> {
    config
        .producer_client_config()
        .create()
        .map_err(|e| Error::kafka("create producer", e))
}

#[async_trait]
impl Publisher for KafkaPublisher {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, events: &[RecordedEvent]) -> orchestrix::Result<()> {
        self.publish_events(events).await?;
        Ok(())
    }
}
