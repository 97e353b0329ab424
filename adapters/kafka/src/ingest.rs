//! Ingest from Kafka topics that Orchestrix did not write.
//!
//! A user function maps each record (plain JSON, Avro or any bytes) to a
//! command, executed through [`Application::execute_with`], or to events
//! appended to the application's store. Ingest runs as a consumer group with
//! the same guarantees as [`crate::consumer`]: offsets committed after
//! handling, retries for transient errors, and bad records (the mapper or the
//! command said no) on the dead-letter topic.
//!
//! Each command gets the id `kafka:{topic}:{partition}:{offset}`, so a record
//! delivered again after a crash is recognised by the aggregate's command-id
//! idempotence and not applied twice. Appends carry that id as causation id;
//! make them idempotent with an exact expected revision, or prefer commands.
//!
//! With the `avro` feature, `IngestBuilder::avro` reads topics written in
//! the Confluent wire format (Avro through a schema registry): see
//! `AvroIngestBuilder`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use orchestrix::runtime::Delivery;
use orchestrix::{
    Application, Command, CommandContext, CommandOutcome, EventRecord, ExpectedRevision, StreamId,
};

use crate::config::KafkaConfig;
use crate::consumer::{ConsumerBuilder, ConsumerWorker, Processor};
use crate::error::Result;
use crate::message::KafkaRecord;

#[cfg(feature = "avro")]
mod avro;
#[cfg(feature = "avro")]
pub use avro::{AvroIngestBuilder, AvroIngestMapper};

type RunCommand = Box<
    dyn FnOnce(
            Application,
            CommandContext,
        ) -> BoxFuture<'static, orchestrix::Result<CommandOutcome>>
        + Send,
>;

enum Action {
    Command {
        name: &'static str,
        run: RunCommand,
    },
    Append {
        stream: StreamId,
        expected: ExpectedRevision,
        events: Vec<EventRecord>,
    },
    Skip,
}

/// What to do with one foreign record.
pub struct IngestAction(Action);

impl fmt::Debug for IngestAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Action::Command { name, .. } => f.debug_tuple("Command").field(name).finish(),
            Action::Append {
                stream,
                expected,
                events,
            } => f
                .debug_struct("Append")
                .field("stream", stream)
                .field("expected", expected)
                .field("events", &events.len())
                .finish(),
            Action::Skip => f.write_str("Skip"),
        }
    }
}

impl IngestAction {
    /// Execute a command (its aggregate must be registered with the application).
    pub fn command<C: Command>(command: C) -> Self {
        let name = command.command_type();
        Self(Action::Command {
            name,
            run: Box::new(move |app, context| {
                Box::pin(async move { app.execute_with(command, context).await })
            }),
        })
    }

    /// Append events to a stream.
    #[must_use]
    pub fn append(stream: StreamId, expected: ExpectedRevision, events: Vec<EventRecord>) -> Self {
        Self(Action::Append {
            stream,
            expected,
            events,
        })
    }

    /// Ignore the record (it is committed like a handled one).
    #[must_use]
    pub fn skip() -> Self {
        Self(Action::Skip)
    }
}

/// The function that maps a record to an action. Return a permanent error
/// (e.g. from [`KafkaRecord::json`]) to dead-letter the record, a transient
/// one to have it retried.
pub trait IngestMapper:
    Fn(&KafkaRecord) -> orchestrix::Result<IngestAction> + Send + Sync + 'static
{
}

impl<F> IngestMapper for F where
    F: Fn(&KafkaRecord) -> orchestrix::Result<IngestAction> + Send + Sync + 'static
{
}

struct IngestProcessor<F> {
    name: String,
    app: Application,
    map: F,
}

/// The command id of a record: stable across redeliveries.
#[must_use]
pub fn command_id_of(record: &KafkaRecord) -> String {
    format!(
        "kafka:{}:{}:{}",
        record.topic, record.partition, record.offset
    )
}

#[async_trait]
impl<F: IngestMapper> Processor for IngestProcessor<F> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn process(
        &self,
        record: &KafkaRecord,
        _delivery: &Delivery,
    ) -> orchestrix::Result<bool> {
        let action = (self.map)(record)?;
        perform(&self.app, record, action).await
    }
}

/// Carries out a mapper's action for `record`; `Ok(false)` when skipped.
async fn perform(
    app: &Application,
    record: &KafkaRecord,
    IngestAction(action): IngestAction,
) -> orchestrix::Result<bool> {
    let id = command_id_of(record);
    let correlation = ["correlationid", "ce_correlationid", "correlation-id"]
        .iter()
        .find_map(|h| record.header_str(h));
    match action {
        Action::Command { run, .. } => {
            let mut context = CommandContext::with_id(id.clone());
            context.correlation_id = Some(correlation.map_or(id, str::to_owned));
            run(app.clone(), context).await?;
            Ok(true)
        }
        Action::Append {
            stream,
            expected,
            mut events,
        } => {
            for e in &mut events {
                e.metadata.causation_id.get_or_insert_with(|| id.clone());
                if let Some(c) = correlation {
                    e.metadata
                        .correlation_id
                        .get_or_insert_with(|| c.to_owned());
                }
            }
            app.store().append(&stream, expected, events).await?;
            Ok(true)
        }
        Action::Skip => Ok(false),
    }
}

/// Builds an ingest worker.
///
/// ```no_run
/// use orchestrix::{Application, Command, Store};
/// use orchestrix_kafka::{IngestAction, IngestBuilder, KafkaConfig};
///
/// #[derive(serde::Deserialize)]
/// struct Payment { account: String, cents: u64 }
/// struct Deposit { account: String, cents: u64 }
/// impl Command for Deposit { fn aggregate_id(&self) -> String { self.account.clone() } }
///
/// # async fn run(app: Application) -> Result<(), orchestrix_kafka::Error> {
/// let worker = IngestBuilder::new(KafkaConfig::default(), app, "payments-ingest")
///     .topic("legacy.payments")
///     .start(|record| {
///         let p: Payment = record.json()?; // not JSON of that shape: dead-lettered
///         Ok(IngestAction::command(Deposit { account: p.account, cents: p.cents }))
///     })
///     .await?;
/// # worker.shutdown().await }
/// ```
#[derive(Debug)]
pub struct IngestBuilder {
    consumer: ConsumerBuilder,
    app: Application,
    name: String,
}

impl IngestBuilder {
    /// An ingest named `name` (its default consumer group is
    /// `{prefix}.{name}`, and its dead letters carry the name).
    pub fn new(config: KafkaConfig, app: Application, name: impl Into<String>) -> Self {
        Self {
            consumer: ConsumerWorker::builder(config),
            app,
            name: name.into(),
        }
    }

    /// Reads `topic` too.
    #[must_use]
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.consumer = self.consumer.topic(topic);
        self
    }

    /// Uses this consumer group.
    #[must_use]
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.consumer = self.consumer.group_id(group);
        self
    }

    /// Starts the worker.
    ///
    /// # Errors
    /// As [`ConsumerBuilder::start`].
    pub async fn start(self, map: impl IngestMapper) -> Result<ConsumerWorker> {
        let processor = Arc::new(IngestProcessor {
            name: self.name,
            app: self.app,
            map,
        });
        self.consumer.start_processor(processor).await
    }

    /// Decodes every record's value as Confluent-framed Avro with `reader`
    /// before mapping: the mapper of the returned builder receives the
    /// decoded value next to the record. Needs the `avro` feature.
    #[cfg(feature = "avro")]
    #[must_use]
    pub fn avro(self, reader: orchestrix_schema_registry::ConfluentReader) -> AvroIngestBuilder {
        AvroIngestBuilder::new(self, reader)
    }
}
