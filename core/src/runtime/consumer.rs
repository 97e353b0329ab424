//! The partitioned consumer: reads the all-stream from a checkpoint, spreads
//! events over partitions by stream id, handles each partition in order,
//! retries, dead-letters, and commits a checkpoint that never passes an
//! unfinished event.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use super::config::{ConsumerConfig, StartFrom, forward_config_setters};
use super::dead_letters::dead_letter_for;
use super::handler::EventHandler;
use super::invoke::{self, Outcome};
use super::partition::partition_for;
use super::progress::{Lag, Progress};
use super::reader::{Item, Reader};
use super::retry::RetryPolicy;
use super::shutdown::Shutdown;
use super::transactional::{self, TransactionalProjection};
use crate::error::{Error, Result};
use crate::store::{Filter, Store};

/// What a consumer drives.
#[derive(Debug, Clone)]
pub(crate) enum Pipeline {
    /// An event handler over partitions; checkpoints in the [`crate::store::CheckpointStore`].
    Handler(Arc<dyn EventHandler>),
    /// Batches applied together with their checkpoint, in one partition.
    Transactional(Arc<dyn TransactionalProjection>),
}

impl Pipeline {
    fn name(&self) -> String {
        match self {
            Self::Handler(h) => h.name().to_owned(),
            Self::Transactional(p) => p.name().to_owned(),
        }
    }

    fn filter(&self) -> Filter {
        match self {
            Self::Handler(h) => h.filter(),
            Self::Transactional(p) => p.filter(),
        }
    }
}

/// Starts consumers; see [`Consumer::builder`].
#[derive(Debug)]
#[non_exhaustive]
pub struct Consumer;

impl Consumer {
    /// A consumer of `handler` on `store`, checkpointed under the handler's
    /// name.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use orchestrix::runtime::{Consumer, Delivery, EventHandler};
    /// use orchestrix::store::ExpectedRevision;
    /// use orchestrix::{EventRecord, RecordedEvent, Result, Store, StreamId};
    ///
    /// #[derive(Debug, Default)]
    /// struct Count(AtomicU64);
    ///
    /// #[async_trait::async_trait]
    /// impl EventHandler for Count {
    ///     fn name(&self) -> &str { "count" }
    ///     async fn handle(&self, _: &RecordedEvent, _: &Delivery) -> Result<()> {
    ///         self.0.fetch_add(1, Ordering::Relaxed);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let store = Store::memory();
    /// for i in 0..10 {
    ///     let stream = StreamId::new("order", &i.to_string())?;
    ///     let e = EventRecord::json("com.acme.Placed", 1, &serde_json::json!({}));
    ///     store.append(&stream, ExpectedRevision::NoStream, vec![e]).await?;
    /// }
    /// let count = Arc::new(Count::default());
    /// let consumer = Consumer::builder(store.clone(), count.clone()).partitions(4).start().await?;
    /// consumer.wait_until_caught_up(store.head_position().await?).await?;
    /// assert_eq!(count.0.load(Ordering::Relaxed), 10);
    /// assert!(consumer.lag().await?.is_caught_up());
    /// consumer.shutdown().await?; // drains and commits
    /// assert_eq!(store.backend().checkpoints.load_checkpoint("count").await?, Some(10));
    /// # Ok::<(), orchestrix::Error>(()) }).unwrap();
    /// ```
    pub fn builder(store: Store, handler: Arc<dyn EventHandler>) -> ConsumerBuilder {
        ConsumerBuilder {
            store,
            handler,
            config: ConsumerConfig::default(),
        }
    }
}

/// Configures and starts a consumer of an [`EventHandler`].
#[derive(Debug)]
#[must_use]
pub struct ConsumerBuilder {
    store: Store,
    handler: Arc<dyn EventHandler>,
    config: ConsumerConfig,
}

impl ConsumerBuilder {
    forward_config_setters!();

    /// Loads the checkpoint and starts the reader, the partition workers and
    /// the checkpoint committer as Tokio tasks.
    ///
    /// # Errors
    /// When the checkpoint or the head cannot be read.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub async fn start(self) -> Result<ConsumerHandle> {
        start(self.store, Pipeline::Handler(self.handler), self.config).await
    }
}

/// State shared by a consumer's tasks and its handles.
pub(crate) struct Shared {
    name: String,
    store: Store,
    filter: Filter,
    pub(crate) progress: Progress,
    committed: Mutex<Option<u64>>,
    paused: watch::Sender<bool>,
    since_commit: AtomicU64,
    commit_now: Notify,
    checkpoint_every: u64,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("name", &self.name)
            .field("processed", &self.progress.watermark())
            .field("committed", &self.committed_position())
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn committed_position(&self) -> Option<u64> {
        *self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set_committed(&self, position: u64) {
        *self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(position);
    }

    /// Waits while paused; returns at once on shutdown.
    pub(crate) async fn wait_unpaused(&self, shutdown: &Shutdown) {
        if !*self.paused.borrow() {
            return;
        }
        let mut rx = self.paused.subscribe();
        tokio::select! {
            _ = rx.wait_for(|paused| !*paused) => {}
            () = shutdown.triggered() => {}
        }
    }

    fn count_completion(&self) {
        if self.since_commit.fetch_add(1, Ordering::Relaxed) + 1 >= self.checkpoint_every {
            self.commit_now.notify_one();
        }
    }

    /// Saves the low-watermark in the checkpoint store when it moved.
    async fn commit(&self) -> Result<()> {
        let watermark = self.progress.watermark();
        if self.committed_position() == Some(watermark) {
            return Ok(());
        }
        self.since_commit.store(0, Ordering::Relaxed);
        self.store
            .backend()
            .checkpoints
            .save_checkpoint(&self.name, watermark)
            .await?;
        self.set_committed(watermark);
        tracing::debug!(consumer = %self.name, checkpoint = watermark, "checkpoint committed");
        Ok(())
    }
}

/// Watches a running consumer: position, lag, pause. Cheap to clone; stays
/// valid (reporting a stopped consumer) after the consumer stops.
#[derive(Debug, Clone)]
pub struct ConsumerMonitor {
    shared: Arc<Shared>,
}

impl ConsumerMonitor {
    /// The consumer's name (its checkpoint and dead-letter key).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The highest position P such that every event at or below P has been
    /// handled or dead-lettered (in memory; may be ahead of the checkpoint).
    #[must_use]
    pub fn processed_position(&self) -> u64 {
        self.shared.progress.watermark()
    }

    /// The last checkpoint this consumer stored (or found at start).
    #[must_use]
    pub fn committed_position(&self) -> Option<u64> {
        self.shared.committed_position()
    }

    /// Whether the consumer has stopped (shut down, aborted or dropped).
    #[must_use]
    pub fn is_stopped(&self) -> bool {
        self.shared.progress.subscribe().borrow().stopped
    }

    /// How far behind the store's head the consumer is, in positions and in
    /// time since the oldest unfinished event happened.
    ///
    /// # Errors
    /// When the head cannot be read.
    pub async fn lag(&self) -> Result<Lag> {
        let store = &self.shared.store;
        let head = store.head_position().await?;
        let processed = self.processed_position();
        let events = head.saturating_sub(processed);
        if events == 0 {
            return Ok(Lag::default());
        }
        let oldest = match self.shared.progress.oldest_pending() {
            Some(time) => Some(time),
            // Nothing in flight: the oldest unfinished event is the next to read.
            None => store
                .read_all(processed, 1, &self.shared.filter)
                .await
                .ok()
                .and_then(|events| events.first().map(|e| e.record.time)),
        };
        let behind = oldest
            .and_then(|t| (Utc::now() - t).to_std().ok())
            .unwrap_or_default();
        Ok(Lag { events, behind })
    }

    /// Measures [`lag`](Self::lag) and records it as the gauges
    /// `orchestrix_consumer_lag_events` and `orchestrix_consumer_lag_seconds`
    /// (`partition="all"`: this consumer reads the whole all-stream). A
    /// worker calls it before each scrape.
    ///
    /// # Errors
    /// When the head cannot be read (the gauges keep their last values).
    pub async fn record_lag(&self) -> Result<Lag> {
        let lag = self.lag().await?;
        crate::telemetry::metrics::set_consumer_lag(
            self.name(),
            crate::telemetry::metrics::ALL_PARTITIONS,
            lag.events,
            lag.behind,
        );
        Ok(lag)
    }

    /// Waits until [`processed_position`](Self::processed_position) reaches
    /// `head`.
    ///
    /// # Errors
    /// [`Error::Shutdown`] when the consumer stops first.
    pub async fn wait_until_caught_up(&self, head: u64) -> Result<()> {
        let mut rx = self.shared.progress.subscribe();
        loop {
            let status = *rx.borrow_and_update();
            if status.processed >= head {
                return Ok(());
            }
            if status.stopped || rx.changed().await.is_err() {
                return Err(Error::Shutdown {
                    component: "consumer",
                });
            }
        }
    }

    /// Reads the store's head now and waits until the consumer reaches it;
    /// returns that head.
    ///
    /// # Errors
    /// As [`wait_until_caught_up`](Self::wait_until_caught_up), or when the
    /// head cannot be read.
    pub async fn catch_up(&self) -> Result<u64> {
        let head = self.shared.store.head_position().await?;
        self.wait_until_caught_up(head).await?;
        Ok(head)
    }

    /// Stops reading and handling after the events being handled now; lag
    /// keeps growing. Shutdown still drains.
    pub fn pause(&self) {
        self.shared.paused.send_replace(true);
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume(&self) {
        self.shared.paused.send_replace(false);
    }
}

struct Tasks {
    reader: JoinHandle<()>,
    workers: Vec<JoinHandle<()>>,
    committer: Option<JoinHandle<()>>,
}

impl Tasks {
    fn abort(&self) {
        self.reader.abort();
        self.workers.iter().for_each(JoinHandle::abort);
        if let Some(c) = &self.committer {
            c.abort();
        }
    }
}

/// A running consumer. Stop it with [`shutdown`](Self::shutdown).
///
/// Dropping the handle (or [`abort`](Self::abort)) stops the consumer at once,
/// as a crash would: nothing is drained and nothing more is committed, so the
/// next start re-delivers everything after the last committed checkpoint.
pub struct ConsumerHandle {
    monitor: ConsumerMonitor,
    trigger: watch::Sender<bool>,
    tasks: Option<Tasks>,
    transactional: bool,
}

impl fmt::Debug for ConsumerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerHandle")
            .field("consumer", &self.monitor.shared)
            .finish_non_exhaustive()
    }
}

impl ConsumerHandle {
    /// A monitor of this consumer, to keep after the handle is gone.
    #[must_use]
    pub fn monitor(&self) -> ConsumerMonitor {
        self.monitor.clone()
    }

    /// See [`ConsumerMonitor::name`].
    #[must_use]
    pub fn name(&self) -> &str {
        self.monitor.name()
    }

    /// See [`ConsumerMonitor::processed_position`].
    #[must_use]
    pub fn processed_position(&self) -> u64 {
        self.monitor.processed_position()
    }

    /// See [`ConsumerMonitor::committed_position`].
    #[must_use]
    pub fn committed_position(&self) -> Option<u64> {
        self.monitor.committed_position()
    }

    /// See [`ConsumerMonitor::lag`].
    ///
    /// # Errors
    /// When the head cannot be read.
    pub async fn lag(&self) -> Result<Lag> {
        self.monitor.lag().await
    }

    /// See [`ConsumerMonitor::wait_until_caught_up`].
    ///
    /// # Errors
    /// [`Error::Shutdown`] when the consumer stops first.
    pub async fn wait_until_caught_up(&self, head: u64) -> Result<()> {
        self.monitor.wait_until_caught_up(head).await
    }

    /// See [`ConsumerMonitor::catch_up`].
    ///
    /// # Errors
    /// As [`ConsumerMonitor::catch_up`].
    pub async fn catch_up(&self) -> Result<u64> {
        self.monitor.catch_up().await
    }

    /// See [`ConsumerMonitor::pause`].
    pub fn pause(&self) {
        self.monitor.pause();
    }

    /// See [`ConsumerMonitor::resume`].
    pub fn resume(&self) {
        self.monitor.resume();
    }

    /// Stops gracefully: stops reading, lets every partition finish the events
    /// it holds (an event waiting for a retry is left for the next start),
    /// commits the checkpoint, and returns.
    ///
    /// # Errors
    /// When the final checkpoint cannot be stored, or a task panicked.
    pub async fn shutdown(mut self) -> Result<()> {
        let Some(tasks) = self.tasks.take() else {
            return Ok(());
        };
        let shared = self.monitor.shared.clone();
        self.trigger.send_replace(true);
        let mut result = join(tasks.reader).await;
        for worker in tasks.workers {
            result = result.and(join(worker).await);
        }
        if let Some(committer) = tasks.committer {
            result = result.and(join(committer).await);
        }
        if !self.transactional {
            result = result.and(shared.commit().await);
        }
        shared.progress.stop();
        tracing::info!(consumer = %shared.name, checkpoint = ?shared.committed_position(), "consumer stopped");
        result
    }

    /// Stops at once, as a crash would (see the type's docs).
    pub fn abort(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(tasks) = self.tasks.take() {
            tasks.abort();
            self.monitor.shared.progress.stop();
            tracing::info!(consumer = %self.monitor.shared.name, "consumer aborted");
        }
    }
}

impl Drop for ConsumerHandle {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn join(task: JoinHandle<()>) -> Result<()> {
    task.await
        .map_err(|e| Error::backend("runtime", "consumer task", false, e.to_string()))
}

/// Starts a consumer of `pipeline`.
pub(crate) async fn start(
    store: Store,
    pipeline: Pipeline,
    config: ConsumerConfig,
) -> Result<ConsumerHandle> {
    let name = pipeline.name();
    let filter = pipeline.filter();
    let stored = match &pipeline {
        Pipeline::Handler(_) => store.backend().checkpoints.load_checkpoint(&name).await?,
        Pipeline::Transactional(p) => p.load_checkpoint(&name).await?,
    };
    let start = match (config.start_from, stored) {
        (StartFrom::Checkpoint | StartFrom::CheckpointOrEnd, Some(position)) => position,
        (StartFrom::Checkpoint | StartFrom::Beginning, _) => 0,
        (StartFrom::CheckpointOrEnd | StartFrom::End, _) => store.head_position().await?,
    };
    let transactional = matches!(pipeline, Pipeline::Transactional(_));
    let partitions = if transactional {
        1
    } else {
        config.partitions.max(1)
    };
    let shared = Arc::new(Shared {
        name: name.clone(),
        store: store.clone(),
        filter: filter.clone(),
        progress: Progress::new(partitions, start),
        committed: Mutex::new(stored),
        paused: watch::channel(false).0,
        since_commit: AtomicU64::new(0),
        commit_now: Notify::new(),
        checkpoint_every: config.checkpoint_every.max(1),
    });
    let (trigger, shutdown) = Shutdown::new();
    let reader = Reader::new(store, filter, config.batch_size, start, name.clone());
    let tasks = match pipeline {
        Pipeline::Handler(handler) => {
            let mut senders = Vec::new();
            let mut workers = Vec::new();
            for partition in 0..partitions {
                let (tx, rx) = mpsc::channel(config.buffer.max(1));
                senders.push(tx);
                workers.push(tokio::spawn(work(
                    shared.clone(),
                    handler.clone(),
                    partition,
                    rx,
                    config.retry,
                    shutdown.clone(),
                )));
            }
            Tasks {
                reader: tokio::spawn(dispatch(shared.clone(), reader, senders, shutdown.clone())),
                workers,
                committer: Some(tokio::spawn(commit_periodically(
                    shared.clone(),
                    config,
                    shutdown,
                ))),
            }
        }
        Pipeline::Transactional(projection) => Tasks {
            reader: tokio::spawn(transactional::run(
                shared.clone(),
                projection,
                reader,
                config.retry,
                shutdown,
            )),
            workers: Vec::new(),
            committer: None,
        },
    };
    tracing::info!(consumer = %name, start, stored = ?stored, partitions, transactional, "consumer started");
    Ok(ConsumerHandle {
        monitor: ConsumerMonitor { shared },
        trigger,
        tasks: Some(tasks),
        transactional,
    })
}

/// The reader task: reads batches and routes each event to its partition.
async fn dispatch(
    shared: Arc<Shared>,
    mut reader: Reader,
    senders: Vec<mpsc::Sender<Item>>,
    shutdown: Shutdown,
) {
    let partitions = u32::try_from(senders.len()).unwrap_or(1);
    'read: loop {
        shared.wait_unpaused(&shutdown).await;
        let Some(batch) = reader.next(&shutdown).await else {
            break;
        };
        for item in batch.items {
            let partition = partition_for(item.event.stream_id.as_str(), partitions);
            let index = usize::try_from(partition).unwrap_or(0);
            // Registered before it is sent, so the watermark can never pass it;
            // if shutdown comes while the partition is full, it stays
            // unfinished and is delivered again after a restart.
            shared
                .progress
                .begin(partition, item.event.position, item.event.record.time);
            let item = match senders[index].try_send(item) {
                Ok(()) => continue,
                Err(mpsc::error::TrySendError::Closed(_)) => break 'read,
                Err(mpsc::error::TrySendError::Full(item)) => item,
            };
            // The partition is full: wait for room (backpressure) or shutdown.
            tokio::select! {
                sent = senders[index].send(item) => {
                    if sent.is_err() {
                        break 'read;
                    }
                }
                () = shutdown.triggered() => break 'read,
            }
        }
        shared.progress.scanned(batch.scanned);
    }
}

/// A partition task: handles its events one by one, in order.
async fn work(
    shared: Arc<Shared>,
    handler: Arc<dyn EventHandler>,
    partition: u32,
    mut events: mpsc::Receiver<Item>,
    retry: RetryPolicy,
    shutdown: Shutdown,
) {
    let mut handled = 0u64;
    while let Some(item) = events.recv().await {
        shared.wait_unpaused(&shutdown).await;
        let position = item.event.position;
        let outcome = match item.poison {
            Some(error) => Outcome::Failed { error, attempts: 1 },
            None => invoke::handle(&*handler, &item.event, partition, &retry, &shutdown).await,
        };
        match outcome {
            Outcome::Done => {}
            Outcome::Failed { error, attempts } => {
                let letter = dead_letter_for(handler.name(), &item.event, &error, attempts);
                if !invoke::store_dead_letter(&shared.store, letter, &shutdown).await {
                    // Leave it and everything after it in this partition (the
                    // stream's order must hold) for the next start.
                    break;
                }
            }
            Outcome::Abandoned => break,
        }
        // Wake waiters when the partition goes idle, and every so often.
        handled += 1;
        let publish = events.is_empty() || handled.is_multiple_of(PUBLISH_EVERY);
        shared.progress.complete(partition, position, publish);
        shared.count_completion();
    }
}

/// How often a busy partition publishes its progress to waiters.
const PUBLISH_EVERY: u64 = 256;

/// The committer task: saves the watermark every K events or T.
async fn commit_periodically(shared: Arc<Shared>, config: ConsumerConfig, shutdown: Shutdown) {
    let interval = config.checkpoint_interval.max(Duration::from_millis(1));
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shared.commit_now.notified() => {}
            () = shutdown.triggered() => return,
        }
        if let Err(error) = shared.commit().await {
            tracing::warn!(consumer = %shared.name, error = %error, "checkpoint commit failed; will retry");
        }
    }
}
