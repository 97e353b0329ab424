//! Ingest of Confluent-framed Avro: each value is decoded through a schema
//! registry before the mapper sees it.

use std::sync::Arc;

use async_trait::async_trait;
use orchestrix::runtime::Delivery;
use orchestrix_schema_registry::{ConfluentReader, Decoded};

use super::{Ingest, IngestAction, IngestBuilder, IngestWorker};
use crate::consumer::Processor;
use crate::error::Result;
use crate::message::KafkaRecord;

/// The function that maps a decoded record to an action: it gets the record
/// (key, headers, position; the value still as the original bytes) and the
/// [`Decoded`] value (schema id, writer schema name, JSON value). Return a
/// permanent error (e.g. from [`Decoded::json`]) to dead-letter the record, a
/// transient one to have it retried.
pub trait AvroIngestMapper:
    Fn(&KafkaRecord, &Decoded) -> orchestrix::Result<IngestAction> + Send + Sync + 'static
{
}

impl<F> AvroIngestMapper for F where
    F: Fn(&KafkaRecord, &Decoded) -> orchestrix::Result<IngestAction> + Send + Sync + 'static
{
}

/// Builds an ingest worker for a topic of Confluent-framed Avro (magic byte
/// 0, 4-byte big-endian schema id, Avro binary), as written by Confluent's
/// `KafkaAvroSerializer` and every client that follows it. Made by
/// [`IngestBuilder::avro`]; needs the `avro` feature.
///
/// Before the mapper runs, the worker decodes the record's value with the
/// [`ConfluentReader`]: the writer schema is fetched from the registry by the
/// id in the frame (once per id), and the value is resolved to the reader
/// schema when one is set, so v1 and v2 records reach the mapper in one
/// shape. A value that cannot be decoded (not a frame, an unknown schema id,
/// a corrupt Avro body, a writer that does not resolve to the reader schema)
/// is a permanent error: the record goes to the dead-letter topic with the
/// reason in the `orchestrix-error` header, and the records after it keep
/// flowing. An unreachable registry is transient and retried under the
/// consumer's retry policy. Tombstones (empty values) have nothing to decode
/// and are skipped (committed, counted as skipped). Records are applied and
/// dead-lettered once, as with [`IngestBuilder`].
///
/// ```no_run
/// use std::sync::Arc;
/// use orchestrix::{Application, Command};
/// use orchestrix_kafka::orchestrix_schema_registry::{ConfluentReader, RegistryClient};
/// use orchestrix_kafka::{IngestAction, IngestBuilder, KafkaConfig};
/// use orchestrix_avro::ParsedSchema;
///
/// #[derive(serde::Deserialize)]
/// struct Payment { account: String, cents: u64 }
/// struct Deposit { account: String, cents: u64 }
/// impl Command for Deposit { fn aggregate_id(&self) -> String { self.account.clone() } }
///
/// # async fn run(app: Application, reader_schema: &str) -> Result<(), Box<dyn std::error::Error>> {
/// let registry = Arc::new(RegistryClient::new("http://registry:8081")?);
/// let reader = ConfluentReader::new(registry)
///     .with_reader_schema(ParsedSchema::parse(reader_schema)?);
/// let worker = IngestBuilder::new(KafkaConfig::default(), app, "payments-ingest")
///     .topic("legacy.payments")
///     .avro(reader)
///     .start(|_record, payment| {
///         let p: Payment = payment.json()?; // not of that shape: dead-lettered
///         Ok(IngestAction::command(Deposit { account: p.account, cents: p.cents }))
///     })
///     .await?;
/// # worker.shutdown().await?; Ok(()) }
/// ```
#[derive(Debug)]
pub struct AvroIngestBuilder {
    ingest: IngestBuilder,
    reader: ConfluentReader,
}

impl AvroIngestBuilder {
    pub(super) fn new(ingest: IngestBuilder, reader: ConfluentReader) -> Self {
        Self { ingest, reader }
    }

    /// Reads `topic` too.
    #[must_use]
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.ingest = self.ingest.topic(topic);
        self
    }

    /// Uses this consumer group.
    #[must_use]
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.ingest = self.ingest.group_id(group);
        self
    }

    /// Starts the worker.
    ///
    /// # Errors
    /// As [`crate::ConsumerBuilder::start`].
    pub async fn start(self, map: impl AvroIngestMapper) -> Result<IngestWorker> {
        let IngestBuilder {
            consumer,
            config,
            group,
            app,
            name,
        } = self.ingest;
        let (ingest, counters) = IngestBuilder::ingest(config, group, app, name);
        let processor = Arc::new(AvroIngestProcessor {
            ingest,
            reader: self.reader,
            map,
        });
        let consumer = consumer.start_processor(processor).await?;
        Ok(IngestWorker { consumer, counters })
    }
}

struct AvroIngestProcessor<F> {
    ingest: Ingest,
    reader: ConfluentReader,
    map: F,
}

#[async_trait]
impl<F: AvroIngestMapper> Processor for AvroIngestProcessor<F> {
    fn name(&self) -> &str {
        &self.ingest.name
    }

    async fn process(&self, record: &KafkaRecord, delivery: &Delivery) -> orchestrix::Result<bool> {
        if record.payload.is_empty() {
            return Ok(false);
        }
        let decoded = self.reader.decode(&record.payload).await.map_err(|e| {
            if e.is_transient() {
                orchestrix::Error::from(e)
            } else {
                orchestrix::Error::decode(
                    format!(
                        "record {}/{}@{} as Confluent-framed Avro",
                        record.topic, record.partition, record.offset
                    ),
                    e,
                )
            }
        });
        self.ingest
            .handle(record, delivery, || (self.map)(record, &decoded?))
            .await
    }
}
