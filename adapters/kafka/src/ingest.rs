//! Ingest from Kafka topics that Orchestrix did not write.
//!
//! A user function maps each record (plain JSON, Avro or any bytes) to a
//! command, executed through [`Application::execute_with`], or to events
//! appended to the application's store. Ingest runs as a consumer group with
//! the same delivery as [`crate::consumer`]: offsets committed after
//! handling, retries for transient errors, and bad records (the mapper or the
//! command said no) on the dead-letter topic.
//!
//! # Exactly once
//!
//! Kafka redelivers what was handled after the last offset commit (commits
//! are asynchronous, about once a second), and a new consumer group reads a
//! topic from its start. Ingest applies each record once all the same:
//!
//! - **Every record has an id**: `kafka:{topic}:{partition}:{offset}`
//!   ([`command_id_of`]), or the business key the mapper sets with
//!   [`IngestAction::with_id`] (a payment id the legacy system dedupes on;
//!   then a record sent twice under one key is applied once too).
//! - **The id is durable, not windowed**: commands run with
//!   [`CommandContext::durable`], so their events get ids derived from the
//!   stream and the record id ([`orchestrix::executor::durable_event_id`]),
//!   and before deciding, the executor looks the first of them up in the
//!   store ([`Store::find_event`](orchestrix::Store::find_event)). The
//!   append then expects the revision that lookup saw, so two copies of one
//!   record racing (a redelivery during a rebalance) cannot both land: on
//!   every store, because every store enforces expected revisions. Appends
//!   ([`IngestAction::append`]) get the same derived ids and the same
//!   lookup; with an exact expected revision they are as safe as commands,
//!   with [`ExpectedRevision::Any`] two copies racing are stopped by the
//!   unique index on event ids of PostgreSQL and SQLite but not on ScyllaDB.
//! - **Dead letters are not doubled**: before a failed record is handed to
//!   the consumer for dead-lettering, the ingest reads the records added to
//!   the dead-letter topic since it last looked and skips a record this
//!   ingest (same name) already dead-lettered; it also skips, without
//!   mapping, a redelivered record it has seen there. So a malformed record
//!   redelivered after a crash, or read again by a new group, is on the
//!   dead-letter topic once. (The topic is read incrementally: once per
//!   source topic when the worker starts, then only its new records.)
//! - **Duplicates are counted as such** ([`IngestStats::duplicates`],
//!   [`IngestStats::dead_letter_duplicates`]), not as applied.
//!
//! **Caught up**: [`IngestWorker::caught_up`] says whether every partition
//! the worker owns has been handled up to its high watermark;
//! [`IngestWorker::wait_caught_up`] waits for it.
//!
//! With the `avro` feature, `IngestBuilder::avro` reads topics written in
//! the Confluent wire format (Avro through a schema registry): see
//! `AvroIngestBuilder`.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::future::BoxFuture;
use orchestrix::executor::durable_event_id;
use orchestrix::runtime::Delivery;
use orchestrix::{
    Application, Command, CommandContext, CommandOutcome, EventRecord, ExpectedRevision, StreamId,
};

use crate::config::KafkaConfig;
use crate::consumer::{ConsumerBuilder, ConsumerWorker, PartitionLag, Processor};
use crate::error::{Error, Result};
use crate::message::KafkaRecord;

#[cfg(feature = "avro")]
mod avro;
mod letters;
#[cfg(feature = "avro")]
pub use avro::{AvroIngestBuilder, AvroIngestMapper};

use letters::Letters;

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
pub struct IngestAction {
    action: Action,
    /// The record's id when the mapper set one (a business key).
    id: Option<String>,
}

impl fmt::Debug for IngestAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = match &self.action {
            Action::Command { name, .. } => {
                let mut d = f.debug_struct("Command");
                d.field("command", name);
                d
            }
            Action::Append {
                stream,
                expected,
                events,
            } => {
                let mut d = f.debug_struct("Append");
                d.field("stream", stream)
                    .field("expected", expected)
                    .field("events", &events.len());
                d
            }
            Action::Skip => f.debug_struct("Skip"),
        };
        d.field("id", &self.id).finish()
    }
}

impl IngestAction {
    fn new(action: Action) -> Self {
        Self { action, id: None }
    }

    /// Execute a command (its aggregate must be registered with the application).
    pub fn command<C: Command>(command: C) -> Self {
        let name = command.command_type();
        Self::new(Action::Command {
            name,
            run: Box::new(move |app, context| {
                Box::pin(async move { app.execute_with(command, context).await })
            }),
        })
    }

    /// Append events to a stream. Their ids are replaced by ids derived from
    /// the stream and the record's id, so that the append happens once
    /// (see the [module docs](self)).
    #[must_use]
    pub fn append(stream: StreamId, expected: ExpectedRevision, events: Vec<EventRecord>) -> Self {
        Self::new(Action::Append {
            stream,
            expected,
            events,
        })
    }

    /// Ignore the record (it is committed like a handled one).
    #[must_use]
    pub fn skip() -> Self {
        Self::new(Action::Skip)
    }

    /// Uses `id` as the record's id, instead of its coordinates
    /// (`kafka:{topic}:{partition}:{offset}`): the command id of a command,
    /// the causation id of appended events, and the key of their
    /// idempotence. Set it to a business key (a payment id, an order number)
    /// and a record the source system sends twice, at two offsets, is applied
    /// once. An empty id is ignored.
    ///
    /// ```
    /// use orchestrix::Command;
    /// use orchestrix_kafka::IngestAction;
    ///
    /// struct Deposit { account: String, cents: u64 }
    /// impl Command for Deposit { fn aggregate_id(&self) -> String { self.account.clone() } }
    ///
    /// let action = IngestAction::command(Deposit { account: "a1".into(), cents: 5 })
    ///     .with_id("payment-2024-000123");
    /// assert!(format!("{action:?}").contains("payment-2024-000123"));
    /// ```
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        let id = id.into();
        self.id = (!id.is_empty()).then_some(id);
        self
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

/// The id of a record by its coordinates: stable across redeliveries and
/// consumer groups. The default command id of ingested commands.
#[must_use]
pub fn command_id_of(record: &KafkaRecord) -> String {
    format!(
        "kafka:{}:{}:{}",
        record.topic, record.partition, record.offset
    )
}

/// Counters of an ingest worker since it started ([`IngestWorker::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Records fetched.
    pub received: u64,
    /// Records applied: their command or append ran (a command may decide
    /// to change nothing).
    pub applied: u64,
    /// Records found already applied (redelivered after a crash, read again
    /// by a new group, or a business key seen before): nothing done.
    pub duplicates: u64,
    /// Records the mapper skipped.
    pub skipped: u64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Failed records found already on the dead-letter topic: not sent
    /// again.
    pub dead_letter_duplicates: u64,
    /// Retries (attempts after the first).
    pub retried: u64,
}

#[derive(Debug, Default)]
struct Counters {
    applied: AtomicU64,
    duplicates: AtomicU64,
    skipped: AtomicU64,
    dead_letter_duplicates: AtomicU64,
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// What performing a record's action did.
enum Done {
    Applied,
    Duplicate,
    Skipped,
}

/// What both ingest processors (plain and Avro) share.
struct Ingest {
    name: String,
    app: Application,
    letters: Letters,
    counters: Arc<Counters>,
}

impl Ingest {
    /// Whether `record` is already on the dead-letter topic (checked
    /// without reading the topic, but the first time a source topic is met).
    async fn known_dead_letter(&self, record: &KafkaRecord) -> bool {
        match self.letters.contains(record, false).await {
            Ok(known) => known,
            Err(e) => {
                tracing::warn!(ingest = %self.name, error = %e, "cannot read the dead-letter topic");
                false
            }
        }
    }

    /// Counts the outcome of one record and tells the consumer what to do.
    async fn settle(
        &self,
        record: &KafkaRecord,
        delivery: &Delivery,
        result: orchestrix::Result<Done>,
    ) -> orchestrix::Result<bool> {
        match result {
            Ok(Done::Applied) => {
                bump(&self.counters.applied);
                Ok(true)
            }
            Ok(Done::Duplicate) => {
                bump(&self.counters.duplicates);
                Ok(false)
            }
            Ok(Done::Skipped) => {
                bump(&self.counters.skipped);
                Ok(false)
            }
            Err(error) => {
                // Check before a dead letter is written: a record redelivered
                // after a crash may have been dead-lettered already.
                match self.letters.contains(record, delivery.attempt <= 1).await {
                    Ok(true) => {
                        tracing::debug!(ingest = %self.name, topic = %record.topic, partition = record.partition, offset = record.offset, "already dead-lettered");
                        bump(&self.counters.dead_letter_duplicates);
                        Ok(false)
                    }
                    Ok(false) => Err(error),
                    Err(e) => {
                        tracing::warn!(ingest = %self.name, error = %e, "cannot read the dead-letter topic");
                        Err(error)
                    }
                }
            }
        }
    }

    /// Maps and performs one record.
    async fn handle(
        &self,
        record: &KafkaRecord,
        delivery: &Delivery,
        map: impl FnOnce() -> orchestrix::Result<IngestAction>,
    ) -> orchestrix::Result<bool> {
        if self.known_dead_letter(record).await {
            bump(&self.counters.dead_letter_duplicates);
            return Ok(false);
        }
        let result = match map() {
            Ok(action) => perform(&self.app, record, action).await,
            Err(e) => Err(e),
        };
        self.settle(record, delivery, result).await
    }
}

struct IngestProcessor<F> {
    ingest: Ingest,
    map: F,
}

#[async_trait]
impl<F: IngestMapper> Processor for IngestProcessor<F> {
    fn name(&self) -> &str {
        &self.ingest.name
    }

    async fn process(&self, record: &KafkaRecord, delivery: &Delivery) -> orchestrix::Result<bool> {
        self.ingest
            .handle(record, delivery, || (self.map)(record))
            .await
    }
}

/// Carries out a mapper's action for `record`, once.
async fn perform(
    app: &Application,
    record: &KafkaRecord,
    IngestAction { action, id }: IngestAction,
) -> orchestrix::Result<Done> {
    let id = id.unwrap_or_else(|| command_id_of(record));
    let correlation = ["correlationid", "ce_correlationid", "correlation-id"]
        .iter()
        .find_map(|h| record.header_str(h));
    match action {
        Action::Command { run, .. } => {
            let mut context = CommandContext::with_id(id.clone()).durable();
            context.correlation_id = Some(correlation.map_or(id, str::to_owned));
            let outcome = run(app.clone(), context).await?;
            Ok(if outcome.duplicate {
                Done::Duplicate
            } else {
                Done::Applied
            })
        }
        Action::Append {
            stream,
            expected,
            mut events,
        } => {
            if events.is_empty() {
                return Ok(Done::Skipped);
            }
            for (i, e) in events.iter_mut().enumerate() {
                e.id = durable_event_id(&stream, &id, i);
                e.metadata.causation_id.get_or_insert_with(|| id.clone());
                if let Some(c) = correlation {
                    e.metadata
                        .correlation_id
                        .get_or_insert_with(|| c.to_owned());
                }
            }
            let first = durable_event_id(&stream, &id, 0);
            let store = app.store();
            if store.find_event(&stream, first).await?.is_some() {
                return Ok(Done::Duplicate);
            }
            match store.append(&stream, expected, events).await {
                Ok(_) => Ok(Done::Applied),
                // A copy of the record got there first.
                Err(_) if store.find_event(&stream, first).await?.is_some() => Ok(Done::Duplicate),
                Err(e) => Err(e),
            }
        }
        Action::Skip => Ok(Done::Skipped),
    }
}

/// Builds an ingest worker.
///
/// Each record is applied once, however often Kafka delivers it and however
/// many consumer groups read the topic (see the [module docs](self)): its
/// id is its coordinates or the business key the mapper sets
/// ([`IngestAction::with_id`]), and that id is kept durably in the store.
/// A record that fails for good is dead-lettered once. The worker reports
/// duplicates apart ([`IngestWorker::stats`]) and whether it has caught up
/// with the topic ([`IngestWorker::caught_up`]).
///
/// ```no_run
/// use std::time::Duration;
/// use orchestrix::{Application, Command, Store};
/// use orchestrix_kafka::{IngestAction, IngestBuilder, KafkaConfig};
///
/// #[derive(serde::Deserialize)]
/// struct Payment { id: String, account: String, cents: u64 }
/// struct Deposit { account: String, cents: u64 }
/// impl Command for Deposit { fn aggregate_id(&self) -> String { self.account.clone() } }
///
/// # async fn run(app: Application) -> Result<(), orchestrix_kafka::Error> {
/// let worker = IngestBuilder::new(KafkaConfig::default(), app, "payments-ingest")
///     .topic("legacy.payments")
///     .start(|record| {
///         let p: Payment = record.json()?; // not JSON of that shape: dead-lettered
///         Ok(IngestAction::command(Deposit { account: p.account, cents: p.cents })
///             .with_id(p.id)) // the legacy system's key: a payment sent twice lands once
///     })
///     .await?;
/// worker.wait_caught_up(Duration::from_secs(60)).await?; // everything so far is in
/// println!("{:?}", worker.stats());
/// # worker.shutdown().await }
/// ```
#[derive(Debug)]
pub struct IngestBuilder {
    consumer: ConsumerBuilder,
    config: KafkaConfig,
    group: Option<String>,
    app: Application,
    name: String,
}

impl IngestBuilder {
    /// An ingest named `name` (its default consumer group is
    /// `{prefix}.{name}`, and its dead letters carry the name).
    pub fn new(config: KafkaConfig, app: Application, name: impl Into<String>) -> Self {
        Self {
            consumer: ConsumerWorker::builder(config.clone()),
            config,
            group: None,
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

    /// Uses this consumer group. A new group reads the topics from their
    /// start (or as `auto_offset_reset` says) and applies nothing twice.
    #[must_use]
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        let group = group.into();
        self.consumer = self.consumer.group_id(group.clone());
        self.group = Some(group);
        self
    }

    /// The shared part of both processors.
    fn ingest(
        config: KafkaConfig,
        group: Option<String>,
        app: Application,
        name: String,
    ) -> (Ingest, Arc<Counters>) {
        let group = group.unwrap_or_else(|| config.group_for(&name));
        let counters = Arc::new(Counters::default());
        let ingest = Ingest {
            letters: Letters::new(config, name.clone(), group),
            name,
            app,
            counters: counters.clone(),
        };
        (ingest, counters)
    }

    /// Starts the worker.
    ///
    /// # Errors
    /// As [`ConsumerBuilder::start`].
    pub async fn start(self, map: impl IngestMapper) -> Result<IngestWorker> {
        let (ingest, counters) = Self::ingest(self.config, self.group, self.app, self.name);
        let processor = Arc::new(IngestProcessor { ingest, map });
        let consumer = self.consumer.start_processor(processor).await?;
        Ok(IngestWorker { consumer, counters })
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

/// A running ingest: a consumer-group worker that applies each record once.
pub struct IngestWorker {
    consumer: ConsumerWorker,
    counters: Arc<Counters>,
}

impl fmt::Debug for IngestWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IngestWorker")
            .field("consumer", &self.consumer)
            .field("stats", &self.stats())
            .finish()
    }
}

impl IngestWorker {
    /// The consumer-group worker underneath (group, assignment, lag,
    /// connection).
    #[must_use]
    pub fn consumer(&self) -> &ConsumerWorker {
        &self.consumer
    }

    /// Counters since the worker started: applied records apart from
    /// duplicates and skipped ones.
    #[must_use]
    pub fn stats(&self) -> IngestStats {
        let c = self.consumer.stats();
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        IngestStats {
            received: c.received,
            applied: get(&self.counters.applied),
            duplicates: get(&self.counters.duplicates),
            skipped: get(&self.counters.skipped),
            dead_lettered: c.dead_lettered,
            dead_letter_duplicates: get(&self.counters.dead_letter_duplicates),
            retried: c.retried,
        }
    }

    /// Per partition of the ingested topics: the high watermark and the
    /// position reached ([`ConsumerWorker::lag`]).
    ///
    /// # Errors
    /// When the broker does not answer within `timeout`.
    pub async fn lag(&self, timeout: Duration) -> Result<Vec<PartitionLag>> {
        self.consumer.lag(timeout).await
    }

    /// Whether the worker has caught up: it owns at least one partition and
    /// has handled every one it owns up to the partition's high watermark
    /// (lag 0). Records produced later make it false again. A member of a
    /// group with more members than partitions may own none: it is never
    /// caught up; ask [`lag`](Self::lag) for the group's view.
    ///
    /// # Errors
    /// When the broker does not answer within `timeout`.
    pub async fn caught_up(&self, timeout: Duration) -> Result<bool> {
        let lag = self.lag(timeout).await?;
        let mut owned = lag.iter().filter(|p| p.owned).peekable();
        Ok(owned.peek().is_some() && owned.all(|p| p.events() == 0))
    }

    /// Waits until [`caught_up`](Self::caught_up), polling.
    ///
    /// # Errors
    /// A transient [`Error::Kafka`] naming the partitions still behind when
    /// `timeout` passes first, or the error of asking the broker.
    pub async fn wait_caught_up(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut last: Vec<PartitionLag> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let behind: Vec<String> = last
                    .iter()
                    .filter(|p| p.owned && p.events() > 0)
                    .map(|p| format!("{}/{}: {} records", p.topic, p.partition, p.events()))
                    .collect();
                let owned = last.iter().filter(|p| p.owned).count();
                return Err(Error::Kafka {
                    operation: "wait until caught up",
                    transient: true,
                    source: format!(
                        "not caught up within {timeout:?}: owns {owned} partition(s); behind: [{}]",
                        behind.join(", ")
                    )
                    .into(),
                });
            }
            if self.caught_up(left.min(Duration::from_secs(5))).await? {
                return Ok(());
            }
            last = self
                .lag(left.min(Duration::from_secs(5)))
                .await
                .unwrap_or(last);
            tokio::time::sleep(Duration::from_millis(50).min(left)).await;
        }
    }

    /// Stops: drains in-flight records, commits, leaves the group.
    ///
    /// # Errors
    /// As [`ConsumerWorker::shutdown`].
    pub async fn shutdown(self) -> Result<()> {
        self.consumer.shutdown().await
    }
}
