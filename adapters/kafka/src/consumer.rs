//! Consumer-group workers: projections, sagas and connectors as partitioned
//! consumers across processes.
//!
//! A [`ConsumerWorker`] joins a consumer group; the group assigns it
//! partitions. One dedicated thread polls the consumer and serves rebalances;
//! every assigned partition gets its own task, so one partition's events are
//! handled one at a time in offset order (and so each stream's in revision
//! order) while partitions run in parallel.
//!
//! - **Commits after handling.** Auto-commit is off; an offset is committed
//!   only once its message was handled or dead-lettered (asynchronously every
//!   `commit_interval_ms`, synchronously on revoke and shutdown).
//! - **Revoke.** In-flight handlers finish, their offsets are committed, then
//!   the partitions are released. Messages fetched but not started are left
//!   for the next owner.
//! - **Retry, then dead-letter.** A transient error is retried under the
//!   retry policy; a permanent one, an exhausted retry or an undecodable
//!   record goes to the dead-letter topic with the original headers plus the
//!   `orchestrix-*` headers of [`crate::dead_letter`], and the partition moves
//!   on: a poison message never stalls it.
//! - **Exactly-once read models.** An [`OffsetHandler`] stores
//!   [`KafkaPosition::next_offset`] in the same transaction as its effects, and
//!   its [`load_offsets`](OffsetHandler::load_offsets) is asked on every
//!   assignment; the worker starts each partition there.
//! - **Flow control.** A partition whose buffered messages reach
//!   `max_buffered_per_partition` is paused until its task catches up.
//! - **Start position** ([`ConsumerBuilder::start_from`]), as on every
//!   runtime: [`StartFrom::Checkpoint`] resumes from the group's committed
//!   offsets (the earliest offset for a new group);
//!   [`StartFrom::CheckpointOrEnd`] likewise, but a new group starts at the
//!   end; [`StartFrom::Beginning`] and [`StartFrom::End`] ignore the
//!   committed offsets: each partition this process is assigned for the
//!   first time starts at its first (or next new) record, and one it had
//!   before resumes where this process left it. So a handler whose read
//!   model lives in memory rebuilds it after every restart.
//! - **Progress** ([`ConsumerWorker::lag`]): per partition, the high
//!   watermark, the position the group has reached (handled here, else
//!   committed) and the records in between, from the broker.
//! - **Shutdown** ([`ConsumerWorker::shutdown`]): stop fetching, let in-flight
//!   handlers finish, commit, leave the group. Committing and leaving are
//!   waited for at most [`LEAVE_WAIT`]: the broker answers a group's
//!   requests on one connection in order, so while it holds this member's
//!   JoinGroup (a rebalance waiting for another member, up to that member's
//!   session or rebalance timeout) the LeaveGroup queues behind it, and
//!   librdkafka's close would wait for it (5 s, then it gives up without
//!   leaving). Past the bound the close goes on in the background and the
//!   broker drops the member after `session.timeout.ms` if it never left.
//! - **Connection** ([`ConsumerWorker::connected`]): whether the client
//!   reaches a broker, from librdkafka's errors and statistics (see
//!   `consumer/connection.rs`).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orchestrix::RecordedEvent;
use orchestrix::bus::{DriverStats, HandlerDriver, Settled, Step};
use orchestrix::runtime::{Delivery, EventHandler, Shutdown, StartFrom};
use orchestrix::store::Filter;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, DefaultConsumerContext,
    RebalanceProtocol,
};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;

use crate::config::{KafkaConfig, OffsetReset};
use crate::dead_letter::{DeadLetters, Failure};
use crate::error::{Error, Result};
use crate::message::{KafkaPosition, KafkaRecord};

mod connection;

use connection::Connection;

/// How long [`ConsumerWorker::shutdown`] waits for the final commit and the
/// group leave once the handlers drained (see the module docs).
pub const LEAVE_WAIT: Duration = Duration::from_secs(2);

/// A handler whose read model keeps the consumed offsets itself, in the same
/// transaction as its effects: the exactly-once variant of [`EventHandler`].
///
/// ```no_run
/// use std::collections::HashMap;
/// use orchestrix::runtime::Delivery;
/// use orchestrix::RecordedEvent;
/// use orchestrix_kafka::{KafkaPosition, OffsetHandler};
///
/// #[derive(Debug)]
/// struct Balances; // holds e.g. a PostgreSQL pool
///
/// #[async_trait::async_trait]
/// impl OffsetHandler for Balances {
///     fn name(&self) -> &str { "balances" }
///     async fn handle(&self, event: &RecordedEvent, at: &KafkaPosition, _: &Delivery) -> orchestrix::Result<()> {
///         // BEGIN;
///         // SELECT next_offset FROM offsets WHERE (topic, partition) = (at.topic, at.partition) FOR UPDATE;
///         //   at or past at.next_offset()? ROLLBACK and return Ok(()): another member (this one,
///         //   before a rebalance it slept through) applied it already;
///         // update the balance of event.stream_id;
///         // UPSERT offsets (at.topic, at.partition) = at.next_offset(); COMMIT
///         Ok(())
///     }
///     async fn load_offsets(&self, topic: &str, partitions: &[i32]) -> orchestrix::Result<HashMap<i32, i64>> {
///         // SELECT partition, next_offset FROM offsets WHERE topic = $1 AND partition = ANY($2)
///         Ok(HashMap::new())
///     }
/// }
/// ```
#[async_trait]
pub trait OffsetHandler: Send + Sync + fmt::Debug + 'static {
    /// A stable name: the default consumer group and the dead-letter key.
    fn name(&self) -> &str;

    /// The events this handler wants (all by default). Others are skipped
    /// without calling [`handle`](Self::handle).
    fn filter(&self) -> Filter {
        Filter::all()
    }

    /// Handles one event and stores `position.next_offset()` for
    /// `(position.topic, position.partition)` in the same transaction.
    ///
    /// Guard the write with the stored offset (apply only when the stored
    /// next offset is at or below `position.offset`, with the row locked): a
    /// call already running when the partition was taken away (a member
    /// paused beyond its session timeout, then resumed) finishes after the
    /// new owner started, and an unconditional write would apply the record
    /// twice and move the stored offset back (chaos case `kafka_fencing`).
    async fn handle(
        &self,
        event: &RecordedEvent,
        position: &KafkaPosition,
        delivery: &Delivery,
    ) -> orchestrix::Result<()>;

    /// The stored next offsets of `partitions` of `topic`, asked when they are
    /// assigned. A partition left out starts at the group's committed offset
    /// (or `auto.offset.reset`).
    async fn load_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> orchestrix::Result<HashMap<i32, i64>>;
}

/// What a worker does with each record (events, offset-aware events, ingest).
#[async_trait]
pub(crate) trait Processor: Send + Sync + 'static {
    fn name(&self) -> &str;

    /// Handles one record; `Ok(false)` when it was skipped by a filter.
    async fn process(&self, record: &KafkaRecord, delivery: &Delivery) -> orchestrix::Result<bool>;

    /// The handler driver this processor calls its handler through, if it
    /// has one (event handlers); otherwise the worker makes one.
    fn driver(&self) -> Option<Arc<HandlerDriver>> {
        None
    }

    /// Offsets to start from, for processors that keep them.
    async fn load_offsets(
        &self,
        _topic: &str,
        _partitions: &[i32],
    ) -> orchestrix::Result<Option<HashMap<i32, i64>>> {
        Ok(None)
    }
}

struct EventProcessor {
    handler: Arc<dyn EventHandler>,
    driver: Arc<HandlerDriver>,
}

#[async_trait]
impl Processor for EventProcessor {
    fn name(&self) -> &str {
        self.handler.name()
    }

    async fn process(&self, record: &KafkaRecord, delivery: &Delivery) -> orchestrix::Result<bool> {
        let step = self
            .driver
            .handle_event(&*self.handler, record.decode_event(), delivery)
            .await?;
        Ok(step == Step::Handled)
    }

    fn driver(&self) -> Option<Arc<HandlerDriver>> {
        Some(self.driver.clone())
    }
}

/// An [`OffsetHandler`] call for one record, as a core [`EventHandler`],
/// so that the [`HandlerDriver`] runs it.
#[derive(Debug)]
struct AtPosition {
    handler: Arc<dyn OffsetHandler>,
    position: KafkaPosition,
}

#[async_trait]
impl EventHandler for AtPosition {
    fn name(&self) -> &str {
        self.handler.name()
    }

    async fn handle(&self, event: &RecordedEvent, delivery: &Delivery) -> orchestrix::Result<()> {
        self.handler.handle(event, &self.position, delivery).await
    }
}

struct OffsetProcessor {
    handler: Arc<dyn OffsetHandler>,
    driver: Arc<HandlerDriver>,
}

#[async_trait]
impl Processor for OffsetProcessor {
    fn name(&self) -> &str {
        self.handler.name()
    }

    async fn process(&self, record: &KafkaRecord, delivery: &Delivery) -> orchestrix::Result<bool> {
        let call = AtPosition {
            handler: self.handler.clone(),
            position: record.position(),
        };
        let step = self
            .driver
            .handle_event(&call, record.decode_event(), delivery)
            .await?;
        Ok(step == Step::Handled)
    }

    fn driver(&self) -> Option<Arc<HandlerDriver>> {
        Some(self.driver.clone())
    }

    async fn load_offsets(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> orchestrix::Result<Option<HashMap<i32, i64>>> {
        self.handler.load_offsets(topic, partitions).await.map(Some)
    }
}

/// Counters of a worker since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Records fetched.
    pub received: u64,
    /// Records handled successfully.
    pub handled: u64,
    /// Records skipped by the handler's filter.
    pub skipped: u64,
    /// Retries (attempts after the first).
    pub retried: u64,
    /// Records sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Offset commits sent.
    pub commits: u64,
    /// Rebalances (assignments and revocations) served.
    pub rebalances: u64,
    /// Times a partition was paused because its buffer was full.
    pub pauses: u64,
}

/// The transport's counters; the handling ones are the driver's.
#[derive(Default)]
struct Counters {
    received: AtomicU64,
    commits: AtomicU64,
    rebalances: AtomicU64,
    pauses: AtomicU64,
}

impl Counters {
    fn snapshot(&self, driver: DriverStats) -> ConsumerStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        ConsumerStats {
            received: get(&self.received),
            handled: driver.handled,
            skipped: driver.skipped + driver.duplicates,
            retried: driver.retried,
            dead_lettered: driver.dead_lettered,
            commits: get(&self.commits),
            rebalances: get(&self.rebalances),
            pauses: get(&self.pauses),
        }
    }
}

fn bump(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

/// Progress of one assigned partition, shared by its task and the poll thread.
struct PartitionState {
    /// Next offset to commit (`-1`: nothing handled yet).
    next: AtomicI64,
    /// Records sent to the task and not yet taken.
    queued: AtomicUsize,
    /// Timestamp (ms) of the record being handled; 0 when idle.
    handling_ms: AtomicI64,
}

struct Slot {
    tx: mpsc::UnboundedSender<KafkaRecord>,
    state: Arc<PartitionState>,
    stop: watch::Sender<bool>,
    done: std_mpsc::Receiver<()>,
    task: tokio::task::JoinHandle<()>,
    paused: bool,
    committed: i64,
}

type Key = (String, i32);

struct Inner {
    name: String,
    group: String,
    config: Arc<KafkaConfig>,
    processor: Arc<dyn Processor>,
    /// The one consumer pipeline (retries, dead-letter decisions, stats,
    /// metrics).
    driver: Arc<HandlerDriver>,
    runtime: Handle,
    dead_letters: DeadLetters,
    slots: Mutex<HashMap<Key, Slot>>,
    counters: Counters,
    assigned: watch::Sender<BTreeSet<Key>>,
    start_from: StartFrom,
    /// Next offset to handle of every partition this process released, for
    /// [`StartFrom::Beginning`] and [`StartFrom::End`].
    resume_at: Mutex<HashMap<Key, i64>>,
    /// Whether the worker's client reaches a broker.
    connection: Connection,
    /// Partition tasks wait while this is `true` ([`ConsumerWorker::pause`]).
    paused: watch::Sender<bool>,
    /// Set by [`ConsumerWorker::abort`]: stop without draining or committing.
    crashed: AtomicBool,
}

impl Inner {
    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `fut` on the runtime and waits for it from the poll thread,
    /// without a runtime context here (the poll thread is a plain thread).
    fn wait_on<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
        timeout: Duration,
    ) -> Option<T> {
        let (tx, rx) = std_mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv_timeout(timeout).ok()
    }

    fn on_assign<C: ConsumerContext>(
        self: &Arc<Self>,
        consumer: &BaseConsumer<C>,
        tpl: &mut TopicPartitionList,
    ) {
        let starts = self.own_start_offsets(consumer, tpl);
        let mut by_topic: HashMap<String, Vec<i32>> = HashMap::new();
        for e in tpl.elements() {
            by_topic
                .entry(e.topic().to_owned())
                .or_default()
                .push(e.partition());
        }
        for (topic, partitions) in &by_topic {
            if let Some(offsets) = self.load_offsets(topic, partitions) {
                for (partition, offset) in offsets {
                    if partitions.contains(&partition)
                        && let Err(e) =
                            tpl.set_partition_offset(topic, partition, Offset::Offset(offset))
                    {
                        tracing::warn!(topic, partition, offset, error = %e, "cannot start at the stored offset");
                    }
                }
            }
        }
        let mut slots = self.slots();
        for e in tpl.elements() {
            let key = (e.topic().to_owned(), e.partition());
            if slots.contains_key(&key) {
                continue;
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let (stop, stop_rx) = watch::channel(false);
            let (done_tx, done) = std_mpsc::channel();
            let state = Arc::new(PartitionState {
                next: AtomicI64::new(starts.get(&key).copied().unwrap_or(-1)),
                queued: AtomicUsize::new(0),
                handling_ms: AtomicI64::new(0),
            });
            let span = tracing::info_span!("orchestrix.kafka.partition", consumer = %self.name, topic = %key.0, partition = key.1);
            let task = self.runtime.spawn(
                run_partition(self.clone(), rx, state.clone(), stop_rx, done_tx).instrument(span),
            );
            tracing::info!(consumer = %self.name, group = %self.group, topic = %key.0, partition = key.1, offset = ?e.offset(), "partition assigned");
            slots.insert(
                key,
                Slot {
                    tx,
                    state,
                    stop,
                    done,
                    task,
                    paused: false,
                    committed: -1,
                },
            );
        }
        let keys: BTreeSet<Key> = slots.keys().cloned().collect();
        drop(slots);
        self.assigned.send_replace(keys);
    }

    /// With [`StartFrom::Beginning`] or [`StartFrom::End`], sets where each
    /// assigned partition starts, ignoring the committed offsets: where this
    /// process left it, else its first record (or its end). Returns those
    /// offsets (handled up to there, as far as progress goes).
    fn own_start_offsets<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        tpl: &mut TopicPartitionList,
    ) -> HashMap<Key, i64> {
        let mut starts = HashMap::new();
        if !matches!(self.start_from, StartFrom::Beginning | StartFrom::End) {
            return starts;
        }
        let keys: Vec<Key> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let timeout = Duration::from_millis(self.config.consumer.drain_timeout_ms.max(1_000));
        for (topic, partition) in keys {
            let key = (topic, partition);
            let known = self
                .resume_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&key)
                .copied();
            let offset = match known {
                Some(next) => Some(next),
                None => match consumer.fetch_watermarks(&key.0, key.1, timeout) {
                    Ok((low, high)) => Some(if self.start_from == StartFrom::End {
                        high
                    } else {
                        low
                    }),
                    Err(e) => {
                        tracing::warn!(consumer = %self.name, topic = %key.0, partition = key.1, error = %e, "cannot read the watermarks; starting at the logical offset");
                        None
                    }
                },
            };
            let (start, result) = match offset {
                Some(o) => (
                    Some(o),
                    tpl.set_partition_offset(&key.0, key.1, Offset::Offset(o)),
                ),
                None if self.start_from == StartFrom::End => {
                    (None, tpl.set_partition_offset(&key.0, key.1, Offset::End))
                }
                None => (
                    None,
                    tpl.set_partition_offset(&key.0, key.1, Offset::Beginning),
                ),
            };
            if let Err(e) = result {
                tracing::warn!(consumer = %self.name, topic = %key.0, partition = key.1, error = %e, "cannot set the start offset");
            } else if let Some(o) = start {
                starts.insert(key, o);
            }
        }
        starts
    }

    fn load_offsets(&self, topic: &str, partitions: &[i32]) -> Option<HashMap<i32, i64>> {
        let mut delay = Duration::from_millis(100);
        let deadline = Instant::now()
            + Duration::from_millis(self.config.consumer.drain_timeout_ms.max(1_000));
        loop {
            let processor = self.processor.clone();
            let (t, p) = (topic.to_owned(), partitions.to_vec());
            match self.wait_on(
                async move { processor.load_offsets(&t, &p).await },
                Duration::from_secs(30),
            ) {
                Some(Ok(offsets)) => return offsets,
                Some(Err(e)) if Instant::now() < deadline => {
                    tracing::warn!(consumer = %self.name, topic, error = %e, "cannot load stored offsets; retrying");
                }
                other => {
                    let reason = other.map_or_else(
                        || "timed out or runtime gone".to_owned(),
                        |r| r.err().map(|e| e.to_string()).unwrap_or_default(),
                    );
                    tracing::error!(
                        consumer = %self.name, topic, reason,
                        "cannot load stored offsets; starting from the group's committed offsets (handlers must be idempotent)"
                    );
                    return None;
                }
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }

    /// Stops the tasks of `keys` after their in-flight record, waits for them
    /// (up to the drain timeout), and commits what they handled.
    fn release<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, keys: &[Key], commit: bool) {
        let released = self.drain(keys);
        self.settle_released(consumer, &released, commit);
    }

    /// Stops the tasks of `keys` after their in-flight record and waits for
    /// them (up to the drain timeout); returns their slots.
    fn drain(&self, keys: &[Key]) -> Vec<(Key, Slot)> {
        let released: Vec<(Key, Slot)> = {
            let mut slots = self.slots();
            keys.iter()
                .filter_map(|k| slots.remove(k).map(|s| (k.clone(), s)))
                .collect()
        };
        if released.is_empty() {
            return released;
        }
        for (_, slot) in &released {
            let _ = slot.stop.send(true);
        }
        let deadline =
            Instant::now() + Duration::from_millis(self.config.consumer.drain_timeout_ms);
        for ((topic, partition), slot) in &released {
            // Disconnected means the task ended.
            if let Err(std_mpsc::RecvTimeoutError::Timeout) = slot
                .done
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                tracing::warn!(consumer = %self.name, topic, partition, "handler did not finish within the drain timeout; aborting it");
                slot.task.abort();
            }
        }
        released
    }

    /// Commits what the drained tasks of `released` handled (when `commit`)
    /// and forgets their partitions.
    fn settle_released<C: ConsumerContext>(
        &self,
        consumer: &BaseConsumer<C>,
        released: &[(Key, Slot)],
        commit: bool,
    ) {
        if released.is_empty() {
            return;
        }
        if commit {
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), slot) in released {
                // Everything handled, even if an earlier async commit of it
                // was sent (it may have failed).
                let next = slot.state.next.load(Ordering::Acquire);
                if next >= 0 {
                    let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(next));
                }
            }
            if tpl.count() > 0 {
                bump(&self.counters.commits);
                if let Err(e) = consumer.commit(&tpl, CommitMode::Sync) {
                    tracing::warn!(consumer = %self.name, error = %e, "commit on release failed; the next owner may see some records again");
                }
            }
        }
        {
            let mut resume_at = self
                .resume_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for (key, slot) in released {
                let next = slot.state.next.load(Ordering::Acquire);
                if next >= 0 {
                    resume_at.insert(key.clone(), next);
                }
            }
        }
        let keys: BTreeSet<Key> = self.slots().keys().cloned().collect();
        self.assigned.send_replace(keys);
        for ((topic, partition), _) in released {
            tracing::info!(consumer = %self.name, topic, partition, committed = commit, "partition released");
        }
    }

    fn all_keys(&self) -> Vec<Key> {
        self.slots().keys().cloned().collect()
    }

    /// Hands a fetched record to its partition's task; pauses a partition
    /// whose buffer is full.
    fn dispatch<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, record: KafkaRecord) {
        bump(&self.counters.received);
        let mut slots = self.slots();
        let key = (record.topic.clone(), record.partition);
        let Some(slot) = slots.get_mut(&key) else {
            tracing::debug!(topic = %key.0, partition = key.1, "record of an unassigned partition dropped");
            return;
        };
        let queued = slot.state.queued.fetch_add(1, Ordering::AcqRel) + 1;
        if slot.tx.send(record).is_err() {
            slot.state.queued.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        if queued >= self.config.consumer.max_buffered_per_partition && !slot.paused {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition(&key.0, key.1);
            match consumer.pause(&tpl) {
                Ok(()) => {
                    slot.paused = true;
                    bump(&self.counters.pauses);
                    tracing::debug!(consumer = %self.name, topic = %key.0, partition = key.1, "partition paused");
                }
                Err(e) => tracing::warn!(error = %e, "cannot pause a partition"),
            }
        }
    }

    /// Resumes paused partitions whose buffer drained to half.
    fn resume_drained<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) {
        let low = self.config.consumer.max_buffered_per_partition / 2;
        for ((topic, partition), slot) in self.slots().iter_mut() {
            if slot.paused && slot.state.queued.load(Ordering::Acquire) <= low {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition(topic, *partition);
                match consumer.resume(&tpl) {
                    Ok(()) => {
                        slot.paused = false;
                        tracing::debug!(consumer = %self.name, topic, partition, "partition resumed");
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot resume a partition"),
                }
            }
        }
    }

    /// Commits handled offsets asynchronously.
    fn commit_progress<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) {
        let mut tpl = TopicPartitionList::new();
        let mut slots = self.slots();
        for ((topic, partition), slot) in slots.iter_mut() {
            let next = slot.state.next.load(Ordering::Acquire);
            if next > slot.committed {
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(next));
                slot.committed = next;
            }
        }
        drop(slots);
        if tpl.count() > 0 {
            bump(&self.counters.commits);
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                tracing::warn!(consumer = %self.name, error = %e, "async commit failed");
            }
        }
    }

    /// Handles one record through the driver (attempts under the retry
    /// policy), then the dead-letter topic. `false` when stopped before the
    /// record was settled.
    async fn settle(&self, record: &KafkaRecord, stop: &watch::Receiver<bool>) -> bool {
        let partition = u32::try_from(record.partition).unwrap_or(0);
        let shutdown = Shutdown::from(stop.clone());
        let processor = &self.processor;
        let settled = self
            .driver
            .settle(partition, &shutdown, |delivery| async move {
                let handled = processor.process(record, &delivery).await?;
                Ok(if handled {
                    Step::Handled
                } else {
                    Step::Skipped
                })
            })
            .await;
        match settled {
            Settled::Done(_) => true,
            Settled::Abandoned => false,
            Settled::DeadLetter { error, attempts } => {
                let failure = Failure::new(&error, attempts);
                tracing::debug!(consumer = %self.name, offset = record.offset, "dead-lettering");
                self.driver
                    .dead_letter(&error, attempts, &shutdown, || {
                        self.dead_letters.send(record, &failure)
                    })
                    .await
            }
        }
    }
}

async fn run_partition(
    inner: Arc<Inner>,
    mut rx: mpsc::UnboundedReceiver<KafkaRecord>,
    state: Arc<PartitionState>,
    mut stop: watch::Receiver<bool>,
    _done: std_mpsc::Sender<()>,
) {
    let mut paused = inner.paused.subscribe();
    loop {
        if *paused.borrow() {
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                _ = paused.wait_for(|p| !*p) => {}
            }
        }
        let record = tokio::select! {
            biased;
            _ = stop.changed() => break,
            r = rx.recv() => match r {
                Some(r) => r,
                None => break,
            },
        };
        state.queued.fetch_sub(1, Ordering::AcqRel);
        if *paused.borrow() {
            // Paused while waiting: hold the record (unsettled, uncommitted).
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                _ = paused.wait_for(|p| !*p) => {}
            }
        }
        let stamp = record.timestamp.map_or(1, |t| t.timestamp_millis().max(1));
        state.handling_ms.store(stamp, Ordering::Release);
        let settled = inner.settle(&record, &stop).await;
        state.handling_ms.store(0, Ordering::Release);
        if !settled {
            break;
        }
        state.next.store(record.offset + 1, Ordering::Release);
        if *stop.borrow() {
            break;
        }
    }
}

struct WorkerContext {
    inner: Arc<Inner>,
}

impl ClientContext for WorkerContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", fac, "{message}");
            }
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", fac, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", consumer = %self.inner.name, %error, reason, "client error");
        self.inner.connection.on_error(&self.inner.name, &error);
    }

    fn stats_raw(&self, statistics: &[u8]) {
        self.inner
            .connection
            .on_statistics(&self.inner.name, statistics);
    }
}

impl ConsumerContext for WorkerContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        bump(&self.inner.counters.rebalances);
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.inner.on_assign(consumer, tpl);
                let result = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = result {
                    tracing::error!(consumer = %self.inner.name, error = %e, "cannot take the assignment");
                }
                // librdkafka keeps a partition's pause across revoke and
                // re-assignment; the new task starts with an empty buffer.
                if let Err(e) = consumer.resume(tpl) {
                    tracing::warn!(consumer = %self.inner.name, error = %e, "cannot resume the assigned partitions");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let keys: Vec<Key> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition()))
                    .collect();
                let lost = consumer.assignment_lost();
                self.inner.release(consumer, &keys, !lost);
                let result = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = result {
                    tracing::error!(consumer = %self.inner.name, error = %e, "cannot release the assignment");
                }
            }
            other => {
                tracing::error!(consumer = %self.inner.name, error = ?other, "rebalance error; releasing the assignment");
                let keys = self.inner.all_keys();
                self.inner.release(consumer, &keys, false);
                let _ = consumer.unassign();
            }
        }
    }
}

/// Builds and starts a [`ConsumerWorker`].
#[derive(Debug)]
pub struct ConsumerBuilder {
    config: KafkaConfig,
    topics: Vec<String>,
    group_id: Option<String>,
    start_from: StartFrom,
}

impl ConsumerBuilder {
    /// Consumes `topic` too.
    #[must_use]
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Consumes these topics too.
    #[must_use]
    pub fn topics<I: IntoIterator<Item = S>, S: Into<String>>(mut self, topics: I) -> Self {
        self.topics.extend(topics.into_iter().map(Into::into));
        self
    }

    /// Consumes the topic of each stream category (by the topic template).
    #[must_use]
    pub fn categories<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, categories: I) -> Self {
        let topics: Vec<String> = categories
            .into_iter()
            .map(|c| self.config.topics.topic_for_category(c.as_ref()))
            .collect();
        self.topics.extend(topics);
        self
    }

    /// Uses this consumer group instead of the configured or derived one.
    #[must_use]
    pub fn group_id(mut self, group: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self
    }

    /// Where to start (default [`StartFrom::Checkpoint`]); see the module
    /// docs. [`StartFrom::CheckpointOrEnd`] sets `auto.offset.reset` to
    /// `latest`.
    #[must_use]
    pub fn start_from(mut self, start_from: StartFrom) -> Self {
        self.start_from = start_from;
        self
    }

    /// Starts a worker running an [`EventHandler`] (at-least-once: the handler
    /// must be idempotent).
    ///
    /// # Errors
    /// [`Error::Config`] without topics, with invalid settings, or outside a
    /// Tokio runtime; [`Error::Kafka`] when a client or a topic cannot be
    /// created.
    pub async fn start(self, handler: Arc<dyn EventHandler>) -> Result<ConsumerWorker> {
        let driver = Arc::new(
            HandlerDriver::for_handler(&*handler).with_retry(self.config.consumer.retry.into()),
        );
        self.start_processor(Arc::new(EventProcessor { handler, driver }))
            .await
    }

    /// Starts a worker running an [`OffsetHandler`] (exactly-once effects).
    ///
    /// # Errors
    /// [`Error::Config`] without topics, with invalid settings, or outside a
    /// Tokio runtime; [`Error::Kafka`] when a client or a topic cannot be
    /// created.
    pub async fn start_with_offsets(
        self,
        handler: Arc<dyn OffsetHandler>,
    ) -> Result<ConsumerWorker> {
        let driver = Arc::new(
            HandlerDriver::new(handler.name())
                .with_filter(handler.filter())
                .with_retry(self.config.consumer.retry.into()),
        );
        self.start_processor(Arc::new(OffsetProcessor { handler, driver }))
            .await
    }

    /// Validates, creates missing topics, subscribes, and starts the poll
    /// thread.
    ///
    /// # Errors
    /// [`Error::Config`] without topics or with invalid settings, or outside a
    /// Tokio runtime; [`Error::Kafka`] when a client cannot be created or a
    /// topic cannot be created.
    pub(crate) async fn start_processor(
        self,
        processor: Arc<dyn Processor>,
    ) -> Result<ConsumerWorker> {
        let Self {
            mut config,
            mut topics,
            group_id,
            start_from,
        } = self;
        if start_from == StartFrom::CheckpointOrEnd {
            config.consumer.auto_offset_reset = OffsetReset::Latest;
        }
        config.validate()?;
        topics.sort();
        topics.dedup();
        if topics.is_empty() {
            return Err(Error::config(
                "topics",
                "a consumer needs at least one topic",
            ));
        }
        let runtime = Handle::try_current().map_err(|_| {
            Error::config("runtime", "a consumer worker starts inside a Tokio runtime")
        })?;
        let name = processor.name().to_owned();
        let group = group_id.unwrap_or_else(|| config.group_for(&name));
        let config = Arc::new(config);
        crate::admin::check_connection(&config).await?;
        if config.topics.create {
            let admin = crate::admin::Topics::new(&config)?;
            for t in &topics {
                admin.ensure(t).await?;
            }
        }
        let (assigned, assigned_rx) = watch::channel(BTreeSet::new());
        let inner = Arc::new(Inner {
            dead_letters: DeadLetters::new(config.clone(), name.clone(), group.clone())?,
            name: name.clone(),
            group: group.clone(),
            driver: processor.driver().unwrap_or_else(|| {
                // Ingest: records are not events; no duplicate check.
                Arc::new(
                    HandlerDriver::new(name.clone())
                        .with_retry(config.consumer.retry.into())
                        .with_dedupe(false),
                )
            }),
            config: config.clone(),
            processor,
            runtime,
            slots: Mutex::new(HashMap::new()),
            counters: Counters::default(),
            assigned,
            start_from,
            resume_at: Mutex::new(HashMap::new()),
            connection: Connection::new(),
            paused: watch::channel(false).0,
            crashed: AtomicBool::new(false),
        });
        let probe: BaseConsumer<DefaultConsumerContext> = config
            .consumer_client_config(&group)
            .create()
            .map_err(|e| Error::kafka("create consumer", e))?;
        let mut client_config = config.consumer_client_config(&group);
        if !config.librdkafka.contains_key("statistics.interval.ms") {
            client_config.set("statistics.interval.ms", connection::STATISTICS_INTERVAL_MS);
        }
        let consumer: BaseConsumer<WorkerContext> = client_config
            .create_with_context(WorkerContext {
                inner: inner.clone(),
            })
            .map_err(|e| Error::kafka("create consumer", e))?;
        let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topic_refs)
            .map_err(|e| Error::kafka("subscribe", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (drained_tx, drained) = std_mpsc::channel();
        let thread = {
            let (inner, stop) = (inner.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("kafka-{name}"))
                .spawn(move || poll_loop(consumer, &inner, &stop, &drained_tx))
                .map_err(|e| Error::Kafka {
                    operation: "start poll thread",
                    transient: false,
                    source: Box::new(e),
                })?
        };
        tracing::info!(consumer = %name, group = %group, topics = ?topics, "consumer worker started");
        Ok(ConsumerWorker {
            name,
            group,
            topics,
            probe: Arc::new(probe),
            inner,
            assigned: assigned_rx,
            stop,
            thread: Some(thread),
            drained: Some(drained),
        })
    }
}

/// Polls until `stop`; then drains the handlers, tells `drained`, commits and
/// closes the consumer (which leaves the group). `shutdown` learns that the
/// thread ended when `drained` is dropped.
fn poll_loop(
    consumer: BaseConsumer<WorkerContext>,
    inner: &Arc<Inner>,
    stop: &AtomicBool,
    drained: &std_mpsc::Sender<()>,
) -> Result<()> {
    let commit_every = Duration::from_millis(inner.config.consumer.commit_interval_ms);
    let mut last_commit = Instant::now();
    let mut outcome = Ok(());
    while !stop.load(Ordering::Acquire) {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                inner.connection.on_record(&inner.name);
                inner.dispatch(&consumer, KafkaRecord::from_message(&message));
            }
            Some(Err(KafkaError::MessageConsumptionFatal(code))) => {
                tracing::error!(consumer = %inner.name, %code, "fatal consumer error; stopping");
                outcome = Err(Error::kafka(
                    "consume",
                    KafkaError::MessageConsumptionFatal(code),
                ));
                break;
            }
            Some(Err(e)) => tracing::warn!(consumer = %inner.name, error = %e, "consumer error"),
        }
        inner.resume_drained(&consumer);
        if last_commit.elapsed() >= commit_every {
            inner.commit_progress(&consumer);
            last_commit = Instant::now();
        }
    }
    // Stop fetching, drain in-flight handlers, commit; dropping the consumer
    // closes it, which leaves the group. The commit and the leave go to the
    // group coordinator, which may hold them behind a JoinGroup: `shutdown`
    // waits for them only up to `LEAVE_WAIT` after `drained`.
    let keys = inner.all_keys();
    if inner.crashed.load(Ordering::Acquire) {
        // As a crash: nothing in flight finishes, nothing more is committed.
        let released: Vec<(Key, Slot)> = {
            let mut slots = inner.slots();
            keys.iter()
                .filter_map(|k| slots.remove(k).map(|s| (k.clone(), s)))
                .collect()
        };
        for (_, slot) in &released {
            slot.task.abort();
        }
        let _ = drained.send(());
        inner.settle_released(&consumer, &released, false);
        drop(consumer);
        tracing::info!(consumer = %inner.name, "consumer worker aborted");
        return outcome;
    }
    let released = inner.drain(&keys);
    let _ = drained.send(());
    inner.settle_released(&consumer, &released, outcome.is_ok());
    drop(consumer);
    tracing::info!(consumer = %inner.name, "consumer worker stopped");
    outcome
}

/// Where a consumer group stands on one partition ([`ConsumerWorker::lag`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The first offset the broker keeps.
    pub low: i64,
    /// The offset the next record will get.
    pub high: i64,
    /// The next offset the group handles.
    pub position: i64,
    /// Whether this worker owns the partition now.
    pub owned: bool,
    /// When the record this worker is handling on the partition was
    /// produced, if it is handling one (the oldest unfinished record it
    /// knows of).
    pub oldest: Option<std::time::SystemTime>,
}

impl PartitionLag {
    /// Records at or after the position: not handled yet.
    #[must_use]
    pub fn events(&self) -> u64 {
        u64::try_from(self.high.saturating_sub(self.position)).unwrap_or(0)
    }
}

/// Reads where a group stands ([`ConsumerWorker::lag_probe`]). Cheap to
/// clone.
#[derive(Clone)]
pub struct LagProbe {
    probe: Arc<BaseConsumer<DefaultConsumerContext>>,
    inner: Arc<Inner>,
    topics: Vec<String>,
}

impl fmt::Debug for LagProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LagProbe")
            .field("group", &self.inner.group)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl LagProbe {
    /// As [`ConsumerWorker::connected`].
    #[must_use]
    pub fn connected(&self) -> bool {
        self.inner.connection.connected()
    }

    /// As [`ConsumerWorker::lag`].
    ///
    /// # Errors
    /// [`Error::Kafka`] when the broker does not answer within `timeout`.
    pub async fn lag(&self, timeout: Duration) -> Result<Vec<PartitionLag>> {
        let local: HashMap<Key, (i64, i64)> = self
            .inner
            .slots()
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    (
                        s.state.next.load(Ordering::Acquire),
                        s.state.handling_ms.load(Ordering::Acquire),
                    ),
                )
            })
            .collect();
        let probe = self.probe.clone();
        let topics = self.topics.clone();
        tokio::task::spawn_blocking(move || partition_lag(&probe, &topics, &local, timeout))
            .await
            .map_err(|_| Error::WorkerGone {
                consumer: self.inner.name.clone(),
            })?
    }
}

fn partition_lag(
    probe: &BaseConsumer<DefaultConsumerContext>,
    topics: &[String],
    local: &HashMap<Key, (i64, i64)>,
    timeout: Duration,
) -> Result<Vec<PartitionLag>> {
    let mut tpl = TopicPartitionList::new();
    let mut marks = Vec::new();
    for topic in topics {
        let metadata = probe
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| Error::kafka("read metadata", e))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (low, high) = probe
                    .fetch_watermarks(topic, p.id(), timeout)
                    .map_err(|e| Error::kafka("read watermarks", e))?;
                tpl.add_partition(topic, p.id());
                marks.push((topic.clone(), p.id(), low, high));
            }
        }
    }
    let committed = if tpl.count() == 0 {
        HashMap::new()
    } else {
        probe
            .committed_offsets(tpl, timeout)
            .map_err(|e| Error::kafka("read committed offsets", e))?
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                _ => None,
            })
            .collect::<HashMap<Key, i64>>()
    };
    Ok(marks
        .into_iter()
        .map(|(topic, partition, low, high)| {
            let key = (topic, partition);
            let here = local.get(&key).copied();
            let position = match here {
                Some((next, _)) if next >= 0 => next,
                _ => committed.get(&key).copied().unwrap_or(low).max(low),
            };
            let oldest = here
                .map(|(_, ms)| ms)
                .filter(|ms| *ms > 0)
                .and_then(|ms| u64::try_from(ms).ok())
                .and_then(|ms| std::time::UNIX_EPOCH.checked_add(Duration::from_millis(ms)));
            PartitionLag {
                oldest,
                owned: here.is_some(),
                topic: key.0,
                partition,
                low,
                high,
                position,
            }
        })
        .collect())
}

/// A running consumer-group worker. See the module docs.
///
/// ```no_run
/// use std::sync::Arc;
/// use orchestrix::runtime::{Delivery, EventHandler};
/// use orchestrix::RecordedEvent;
/// use orchestrix_kafka::{ConsumerWorker, KafkaConfig};
///
/// #[derive(Debug)]
/// struct Audit;
/// #[async_trait::async_trait]
/// impl EventHandler for Audit {
///     fn name(&self) -> &str { "audit" }
///     async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> orchestrix::Result<()> {
///         println!("{} {}", event.stream_id, event.event_type());
///         Ok(())
///     }
/// }
/// # async fn run() -> Result<(), orchestrix_kafka::Error> {
/// let worker = ConsumerWorker::builder(KafkaConfig::default()).categories(["account"]).start(Arc::new(Audit)).await?;
/// tokio::signal::ctrl_c().await.ok();
/// worker.shutdown().await?; // drain, commit, leave the group
/// # Ok(()) }
/// ```
pub struct ConsumerWorker {
    name: String,
    group: String,
    topics: Vec<String>,
    /// A client of the group that never joins it: watermarks and committed
    /// offsets.
    probe: Arc<BaseConsumer<DefaultConsumerContext>>,
    inner: Arc<Inner>,
    assigned: watch::Receiver<BTreeSet<Key>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
    /// Told once the handlers drained on shutdown; disconnected when the
    /// poll thread ended.
    drained: Option<std_mpsc::Receiver<()>>,
}

impl fmt::Debug for ConsumerWorker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerWorker")
            .field("name", &self.name)
            .field("group", &self.group)
            .field("topics", &self.topics)
            .field("assignment", &*self.assigned.borrow())
            .finish_non_exhaustive()
    }
}

impl ConsumerWorker {
    /// Starts building a worker.
    #[must_use]
    pub fn builder(config: KafkaConfig) -> ConsumerBuilder {
        ConsumerBuilder {
            config,
            topics: Vec::new(),
            group_id: None,
            start_from: StartFrom::Checkpoint,
        }
    }

    /// The handler's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The consumer group.
    #[must_use]
    pub fn group_id(&self) -> &str {
        &self.group
    }

    /// The subscribed topics.
    #[must_use]
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// Counters since start.
    #[must_use]
    pub fn stats(&self) -> ConsumerStats {
        self.inner.counters.snapshot(self.inner.driver.stats())
    }

    /// The handler driver's counters (the same on every bus).
    #[must_use]
    pub fn driver_stats(&self) -> DriverStats {
        self.inner.driver.stats()
    }

    /// Stops handling after the records being handled now (fetching stops
    /// too once the partitions' buffers fill); lag grows. Shutdown still
    /// drains.
    pub fn pause(&self) {
        self.inner.paused.send_replace(true);
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume(&self) {
        self.inner.paused.send_replace(false);
    }

    /// Stops at once, as a crash would: in-flight handlers are cut short and
    /// nothing more is committed (records handled since the last periodic
    /// commit are delivered again to the next owner). The group drops the
    /// member when the client closes. For tests and emergencies.
    pub fn abort(self) {
        self.inner.crashed.store(true, Ordering::Release);
        // Dropping sets the stop flag; the poll thread sees `crashed`.
    }

    /// The partitions assigned now, as `(topic, partition)`.
    #[must_use]
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.assigned.borrow().iter().cloned().collect()
    }

    /// Waits until the group assigned this worker at least one partition.
    ///
    /// # Errors
    /// [`orchestrix::Error::Timeout`] (inside [`Error::Core`]) after `timeout`.
    pub async fn wait_for_assignment(&self, timeout: Duration) -> Result<()> {
        let mut rx = self.assigned.clone();
        match tokio::time::timeout(timeout, rx.wait_for(|a| !a.is_empty())).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::WorkerGone {
                consumer: self.name.clone(),
            }),
            Err(_) => Err(orchestrix::Error::Timeout {
                operation: format!("partition assignment of `{}`", self.name),
                after: timeout,
            }
            .into()),
        }
    }

    /// Where the group stands on every partition of its topics, from the
    /// broker: the watermarks, and the position reached (for a partition
    /// assigned here, the next offset this worker handles; else the group's
    /// committed offset, or the low watermark without one).
    ///
    /// # Errors
    /// [`Error::Kafka`] when the broker does not answer within `timeout`.
    pub async fn lag(&self, timeout: Duration) -> Result<Vec<PartitionLag>> {
        self.lag_probe().lag(timeout).await
    }

    /// A handle that reads [`lag`](Self::lag) and outlives this worker.
    #[must_use]
    pub fn lag_probe(&self) -> LagProbe {
        LagProbe {
            probe: self.probe.clone(),
            inner: self.inner.clone(),
            topics: self.topics.clone(),
        }
    }

    /// Whether the worker's client reaches a broker now: `false` from the
    /// moment librdkafka reports every broker connection down (or its
    /// statistics, every second, show none up) until a broker connection is
    /// up again or a record arrives. While it is `false` the worker fetches
    /// nothing, whatever partitions it holds.
    #[must_use]
    pub fn connected(&self) -> bool {
        self.inner.connection.connected()
    }

    /// Whether the poll thread is still running.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Stops fetching, lets in-flight handlers finish (up to the drain
    /// timeout), commits, and leaves the group. Committing and leaving are
    /// waited for at most [`LEAVE_WAIT`]; past it (the broker holds a group
    /// request of this member, such as a JoinGroup while a rebalance waits
    /// for another member) they go on in the background and this returns.
    ///
    /// # Errors
    /// The error that stopped the worker earlier, if any.
    pub async fn shutdown(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        let (Some(thread), Some(drained)) = (self.thread.take(), self.drained.take()) else {
            return Ok(());
        };
        let name = self.name.clone();
        let drain = Duration::from_millis(self.inner.config.consumer.drain_timeout_ms);
        let waited = {
            let name = name.clone();
            tokio::task::spawn_blocking(move || wait_stopped(thread, &drained, drain, &name))
        };
        waited
            .await
            .map_err(|_| Error::WorkerGone { consumer: name })?
    }
}

/// Waits for the poll thread: the handlers' drain (bounded by `drain`, plus
/// [`LEAVE_WAIT`] for a rebalance callback it may be serving), then at most
/// [`LEAVE_WAIT`] for the commit and the group leave.
fn wait_stopped(
    thread: std::thread::JoinHandle<Result<()>>,
    drained: &std_mpsc::Receiver<()>,
    drain: Duration,
    name: &str,
) -> Result<()> {
    use std_mpsc::RecvTimeoutError;
    let ended = match drained.recv_timeout(drain + LEAVE_WAIT) {
        Ok(()) => matches!(
            drained.recv_timeout(LEAVE_WAIT),
            Err(RecvTimeoutError::Disconnected)
        ),
        Err(RecvTimeoutError::Disconnected) => true,
        Err(RecvTimeoutError::Timeout) => false,
    };
    if ended {
        return thread.join().map_err(|_| Error::WorkerGone {
            consumer: name.to_owned(),
        })?;
    }
    tracing::warn!(
        consumer = name,
        waited = ?LEAVE_WAIT,
        "the consumer did not commit and leave its group in time (the group coordinator holds a request of it, e.g. a JoinGroup while a rebalance waits for another member); it goes on closing in the background, and if it never leaves the broker drops it after session.timeout.ms"
    );
    Ok(())
}

impl Drop for ConsumerWorker {
    fn drop(&mut self) {
        // The poll thread drains, commits and leaves the group on its own.
        self.stop.store(true, Ordering::Release);
    }
}
