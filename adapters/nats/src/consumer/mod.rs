//! [`NatsConsumer`]: partitioned consumers across processes, with partitions
//! assigned to workers by leases in a JetStream key-value bucket.
//!
//! Every worker of a group runs one coordinator task. Each heartbeat it:
//! 1. refreshes its membership key;
//! 2. renews the leases it holds with a compare-and-set on their revision
//!    (a renewal that meets another revision means the lease was lost: the
//!    partition stops at once);
//! 3. reads the live members and the held leases (one request), and aims
//!    for `ceil(partitions / live members)` partitions: it releases extras
//!    (after their in-flight message is handled and acknowledged) and claims
//!    free ones.
//!
//! A worker that dies stops renewing; its membership and leases expire after
//! the lease TTL and the others take its partitions on their next heartbeat.
//! Its unacknowledged message comes back after the ack wait.
//!
//! Each owned partition has one durable pull consumer filtered on its
//! subject, handled by one task, one message at a time (with the default
//! `max_ack_pending` of 1, nothing after a message is delivered before it is
//! acknowledged, so a stream's events are handled in order even across
//! retries and hand-overs).
//!
//! Where a partition starts ([`NatsConsumerBuilder::start_from`]) means what
//! it means on every runtime: [`StartFrom::Checkpoint`] resumes from the
//! durable consumer's acknowledged position (the first message for a new
//! one); [`StartFrom::CheckpointOrEnd`] likewise, but a new durable starts at
//! the next new message; [`StartFrom::Beginning`] and [`StartFrom::End`]
//! ignore the durable's position: a partition this process runs for the
//! first time starts at its first (or next new) message, one it ran before
//! resumes where this process left it. So a handler whose read model lives in
//! memory rebuilds it after every restart.
//!
//! [`ConsumerHandle::lag`] reads where the group stands on every partition
//! from the server (the durable consumers' pending and unacknowledged counts).

mod lease;
mod partition;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream;
use orchestrix::bus::{DriverStats, HandlerDriver};
use orchestrix::runtime::{EventHandler, RetryPolicy, StartFrom};
use orchestrix::{Error, Result};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use self::lease::{Leases, Renewal};
use self::partition::{Exit, LeaseClock};
use crate::config::{NatsConfig, is_valid_name};
use crate::dead_letter::DeadLetterSink;
use crate::error::{NatsError, backend, client};
use crate::handler::{CoreHandler, NatsHandler};

pub use self::partition::durable_name as partition_consumer_name;

/// Where a group stands on one partition ([`ConsumerHandle::lag`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// The partition.
    pub partition: u32,
    /// Messages of the partition not finished by the group (not delivered
    /// yet, or delivered and not acknowledged or terminated).
    pub events: u64,
    /// When the oldest of them was stored, if any.
    pub oldest: Option<std::time::SystemTime>,
}

/// Reads where a group stands ([`ConsumerHandle::lag_probe`]). Cheap to clone.
#[derive(Debug, Clone)]
pub struct LagProbe {
    shared: Arc<Shared>,
}

impl LagProbe {
    /// As [`ConsumerHandle::lag`].
    ///
    /// # Errors
    /// A server request that failed.
    pub async fn lag(&self) -> Result<Vec<PartitionLag>> {
        let mut lags = Vec::new();
        for partition in 0..self.shared.config.stream.partitions {
            lags.push(partition::lag(&self.shared, partition).await?);
        }
        Ok(lags)
    }
}

/// Counters of one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerStats {
    /// Messages handled and acknowledged.
    pub handled: u64,
    /// Transient failures sent back for redelivery.
    pub retried: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
}

/// What every partition task of a worker shares.
struct Shared {
    config: NatsConfig,
    group: Arc<str>,
    group_key: String,
    worker: Arc<str>,
    stream: jetstream::stream::Stream,
    handler: Arc<dyn NatsHandler>,
    /// The one consumer pipeline (filter, span, retries, dead-letter
    /// decisions, stats, metrics).
    driver: HandlerDriver,
    dead_letters: DeadLetterSink,
    start_from: StartFrom,
    /// Partitions stop pulling while this is `true`.
    paused: watch::Sender<bool>,
    /// The last stream sequence this process finished (handled, skipped or
    /// dead-lettered) per partition.
    finished: Mutex<HashMap<u32, u64>>,
}

impl Shared {
    /// Records that this process finished `sequence` of `partition`.
    fn finished(&self, partition: u32, sequence: u64) {
        let mut finished = self.finished.lock().unwrap_or_else(PoisonError::into_inner);
        let last = finished.entry(partition).or_default();
        *last = (*last).max(sequence);
    }

    /// The last sequence this process finished of `partition`, if any.
    fn last_finished(&self, partition: u32) -> Option<u64> {
        self.finished
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&partition)
            .copied()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("group", &self.group)
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

/// Entry point: `NatsConsumer::builder(config)`.
#[derive(Debug)]
pub struct NatsConsumer;

impl NatsConsumer {
    /// A builder for one worker of a consumer group.
    #[must_use]
    pub fn builder(config: NatsConfig) -> NatsConsumerBuilder {
        NatsConsumerBuilder {
            config,
            handler: None,
            group: None,
            retry: None,
            client: None,
            start_from: StartFrom::Checkpoint,
        }
    }
}

/// Builds and starts a worker. See [`NatsConsumer`].
///
/// ```no_run
/// use std::sync::Arc;
/// use orchestrix::runtime::{Delivery, EventHandler};
/// use orchestrix::RecordedEvent;
/// use orchestrix_nats::{NatsConfig, NatsConsumer};
///
/// #[derive(Debug)]
/// struct Balances;
/// #[async_trait::async_trait]
/// impl EventHandler for Balances {
///     fn name(&self) -> &str { "balances" }
///     async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> orchestrix::Result<()> {
///         println!("{} #{}", event.stream_id, event.revision);
///         Ok(())
///     }
/// }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let worker = NatsConsumer::builder(NatsConfig::new("nats://127.0.0.1:4222"))
///     .handler(Arc::new(Balances))
///     .start()
///     .await?;
/// // ... on SIGTERM:
/// worker.shutdown().await?;
/// # Ok::<(), orchestrix::Error>(()) }).unwrap();
/// ```
pub struct NatsConsumerBuilder {
    config: NatsConfig,
    handler: Option<Arc<dyn NatsHandler>>,
    group: Option<String>,
    retry: Option<RetryPolicy>,
    client: Option<async_nats::Client>,
    start_from: StartFrom,
}

impl fmt::Debug for NatsConsumerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsConsumerBuilder")
            .field("config", &self.config)
            .field("handler", &self.handler)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl NatsConsumerBuilder {
    /// Handles events with a core handler (projection, saga, connector).
    #[must_use]
    pub fn handler(mut self, handler: Arc<dyn EventHandler>) -> Self {
        self.handler = Some(Arc::new(CoreHandler(handler)));
        self
    }

    /// Handles events with a handler that sees JetStream sequences.
    #[must_use]
    pub fn nats_handler(mut self, handler: Arc<dyn NatsHandler>) -> Self {
        self.handler = Some(handler);
        self
    }

    /// The consumer group (default: the handler's name). Workers of one group
    /// share the partitions; each group sees every event.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// The retry policy (default: from the config's `max_deliver` and nak
    /// backoff). Its `max_attempts` is the number of deliveries after which a
    /// transiently failing message is dead-lettered.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Where partitions start (default [`StartFrom::Checkpoint`]); see the
    /// module docs.
    #[must_use]
    pub fn start_from(mut self, start_from: StartFrom) -> Self {
        self.start_from = start_from;
        self
    }

    /// Uses an existing connection instead of connecting.
    #[must_use]
    pub fn client(mut self, client: async_nats::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Sets up the stream, the dead-letter stream and the lease bucket, joins
    /// the group and starts consuming.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] without a handler or with an invalid config or
    /// group name; a connect or setup failure.
    pub async fn start(self) -> Result<ConsumerHandle> {
        let handler = self
            .handler
            .ok_or_else(|| Error::invalid("NATS consumer", "no handler was given"))?;
        let config = self.config;
        config.validate()?;
        let group: Arc<str> = self
            .group
            .unwrap_or_else(|| handler.name().to_owned())
            .into();
        let group_key = group_key(&group)?;
        let worker: Arc<str> = config
            .leases
            .worker_id
            .clone()
            .unwrap_or_else(default_worker_id)
            .into();
        let nats = match self.client {
            Some(c) => c,
            None => crate::connect::connect(&config).await?,
        };
        let js = crate::connect::jetstream(nats, &config);
        crate::setup::ensure_streams(&js, &config).await?;
        let kv = crate::setup::ensure_lease_bucket(&js, &config).await?;
        let stream = js.get_stream(&config.stream.name).await.map_err(|e| {
            client(
                "consume",
                true,
                format!("open stream `{}`", config.stream.name),
                e,
            )
        })?;
        let leases = Leases::new(
            js.clone(),
            kv,
            config.leases.bucket.clone(),
            group_key.clone(),
            worker.to_string(),
        );
        let retry = self.retry.unwrap_or_else(|| config.consumer.retry_policy());
        let shared = Arc::new(Shared {
            dead_letters: DeadLetterSink::new(js.clone(), &config),
            driver: HandlerDriver::new(handler.name())
                .with_filter(handler.filter())
                .with_retry(retry),
            config,
            group: group.clone(),
            group_key,
            worker: worker.clone(),
            stream,
            handler,
            start_from: self.start_from,
            paused: watch::channel(false).0,
            finished: Mutex::new(HashMap::new()),
        });
        let (stop, stop_rx) = watch::channel(false);
        let (owned_tx, owned) = watch::channel(Vec::new());
        let coordinator = Coordinator {
            shared: shared.clone(),
            leases,
            owned: BTreeMap::new(),
            lost: Vec::new(),
            owned_tx,
            epoch: Instant::now(),
            nats: js.client(),
        };
        tracing::info!(group = %group, worker = %worker, "joining the consumer group");
        let task = tokio::spawn(coordinator.run(stop_rx));
        Ok(ConsumerHandle {
            stop,
            task: Some(task),
            owned,
            shared,
        })
    }
}

/// The group's key prefix and consumer-name prefix: letters, digits, `-`, `_`.
fn group_key(group: &str) -> Result<String> {
    let key: String = group
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !is_valid_name(&key) || key.len() > 200 {
        return Err(Error::invalid(
            format!("consumer group `{group}`"),
            "must be 1 to 200 letters, digits, `-`, `_`",
        ));
    }
    Ok(key)
}

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..8])
}

/// A running worker. Dropping it stops the worker abruptly, like
/// [`abort`](Self::abort); call [`shutdown`](Self::shutdown) to leave cleanly.
pub struct ConsumerHandle {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Result<()>>>,
    owned: watch::Receiver<Vec<u32>>,
    shared: Arc<Shared>,
}

impl fmt::Debug for ConsumerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerHandle")
            .field("group", &self.shared.group)
            .field("worker", &self.shared.worker)
            .field("partitions", &*self.owned.borrow())
            .finish_non_exhaustive()
    }
}

impl ConsumerHandle {
    /// This worker's id.
    #[must_use]
    pub fn worker_id(&self) -> &str {
        &self.shared.worker
    }

    /// The consumer group.
    #[must_use]
    pub fn group(&self) -> &str {
        &self.shared.group
    }

    /// The partitions this worker owns now, ascending.
    #[must_use]
    pub fn partitions(&self) -> Vec<u32> {
        self.owned.borrow().clone()
    }

    /// A receiver that changes whenever the owned partitions change.
    #[must_use]
    pub fn watch_partitions(&self) -> watch::Receiver<Vec<u32>> {
        self.owned.clone()
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> ConsumerStats {
        let s = self.shared.driver.stats();
        ConsumerStats {
            handled: s.handled,
            retried: s.retried,
            dead_lettered: s.dead_lettered,
        }
    }

    /// The handler driver's counters (the same on every bus).
    #[must_use]
    pub fn driver_stats(&self) -> DriverStats {
        self.shared.driver.stats()
    }

    /// Stops pulling after the message being handled now (the rest of the
    /// pull request is given back); lag grows. Shutdown still drains.
    pub fn pause(&self) {
        self.shared.paused.send_replace(true);
    }

    /// Undoes [`pause`](Self::pause).
    pub fn resume(&self) {
        self.shared.paused.send_replace(false);
    }

    /// Where the group stands on every partition, from the server: for
    /// each, the messages not yet finished (pending delivery or delivered and
    /// unacknowledged) and the time of the oldest of them.
    ///
    /// # Errors
    /// A server request that failed.
    pub async fn lag(&self) -> Result<Vec<PartitionLag>> {
        self.lag_probe().lag().await
    }

    /// A handle that reads [`lag`](Self::lag) and outlives this one.
    #[must_use]
    pub fn lag_probe(&self) -> LagProbe {
        LagProbe {
            shared: self.shared.clone(),
        }
    }

    /// Leaves the group cleanly: stops fetching, lets in-flight handlers
    /// finish and acknowledges them, releases the leases and the membership
    /// so that the others take over at once.
    ///
    /// # Errors
    /// The error that stopped the worker earlier, if any.
    pub async fn shutdown(mut self) -> Result<()> {
        let _ = self.stop.send(true);
        match self.task.take() {
            Some(task) => task.await.map_err(|e| {
                backend(
                    "shutdown",
                    false,
                    NatsError::Task {
                        task: "coordinator".into(),
                        reason: e.to_string(),
                    },
                )
            })?,
            None => Ok(()),
        }
    }

    /// Stops at once without releasing anything, as a crash would: the
    /// leases expire after their TTL and unacknowledged messages come back
    /// after the ack wait. For tests and emergencies.
    pub fn abort(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for ConsumerHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A partition this worker runs.
struct Owned {
    /// The lease key's revision this worker last wrote.
    revision: u64,
    clock: LeaseClock,
    stop: watch::Sender<bool>,
    task: JoinHandle<Exit>,
    /// Being released: stop sent, lease kept until the task ends.
    releasing: bool,
}

impl Drop for Owned {
    fn drop(&mut self) {
        // Aborting a finished task does nothing; an unfinished one is cut
        // short only when the whole worker is dropped or aborted.
        self.task.abort();
    }
}

struct Coordinator {
    shared: Arc<Shared>,
    leases: Leases,
    owned: BTreeMap<u32, Owned>,
    /// Partitions whose lease was lost, still finishing their message.
    lost: Vec<Owned>,
    owned_tx: watch::Sender<Vec<u32>>,
    epoch: Instant,
    nats: async_nats::Client,
}

impl Coordinator {
    async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<()> {
        let heartbeat = self.shared.config.leases.heartbeat();
        // Register first and claim from the second round on, so that workers
        // starting together see each other before they claim.
        if let Err(e) = self.leases.heartbeat(&[]).await {
            tracing::warn!(error = %e, "membership heartbeat failed");
        }
        let mut next = Instant::now() + heartbeat;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                () = tokio::time::sleep_until(next) => {}
            }
            next = Instant::now() + heartbeat;
            if let Err(e) = self.round().await {
                tracing::warn!(error = %e, "lease round failed; trying again next heartbeat");
            }
        }
        self.leave().await;
        Ok(())
    }

    fn publish_owned(&self) {
        let owned: Vec<u32> = self
            .owned
            .iter()
            .filter(|(_, o)| !o.releasing)
            .map(|(p, _)| *p)
            .collect();
        self.owned_tx.send_if_modified(|current| {
            if *current == owned {
                false
            } else {
                *current = owned;
                true
            }
        });
    }

    /// One heartbeat: membership, renewals, finished tasks, rebalancing.
    async fn round(&mut self) -> Result<()> {
        let config = &self.shared.config;
        let ttl = config.leases.ttl();
        let heartbeat = config.leases.heartbeat();
        let partitions = config.stream.partitions;
        let owned_now: Vec<u32> = self.owned.keys().copied().collect();
        if let Err(e) = self.leases.heartbeat(&owned_now).await {
            tracing::warn!(error = %e, "membership heartbeat failed");
        }

        // Renew every lease still held.
        let mut lost = Vec::new();
        for (&p, owned) in &mut self.owned {
            let sent = Instant::now();
            match self.leases.renew(p, owned.revision).await {
                Ok(Renewal::Renewed(revision)) => {
                    owned.revision = revision;
                    owned.clock.extend_to(sent + ttl.saturating_sub(heartbeat));
                }
                Ok(Renewal::Lost) => lost.push(p),
                Err(e) => tracing::warn!(partition = p, error = %e, "lease renewal failed"),
            }
        }
        for p in lost {
            if let Some(owned) = self.owned.remove(&p) {
                tracing::warn!(partition = p, "lease lost; stopping the partition");
                let _ = owned.stop.send(true);
                self.lost.push(owned);
            }
        }
        self.lost.retain(|o| !o.task.is_finished());

        // Partitions whose task ended: a partition stopped for want of a
        // confirmed lease restarts if the lease is confirmed again; released
        // and failed ones give their lease back (a failed one is claimed
        // again on a later round, here or elsewhere).
        let finished: Vec<u32> = self
            .owned
            .iter()
            .filter(|(_, o)| o.task.is_finished())
            .map(|(p, _)| *p)
            .collect();
        for p in finished {
            if let Some(mut owned) = self.owned.remove(&p) {
                let exit = (&mut owned.task).await;
                match exit {
                    Ok(Exit::LeaseExpired)
                        if !owned.releasing && owned.clock.remaining() > heartbeat =>
                    {
                        tracing::info!(
                            partition = p,
                            "lease confirmed again; restarting the partition"
                        );
                        self.restart_partition(p, owned);
                        continue;
                    }
                    Ok(Exit::LeaseExpired) => {
                        tracing::warn!(
                            partition = p,
                            "partition stopped: lease not confirmed in time"
                        );
                        continue; // not surely ours: let it expire
                    }
                    Ok(Exit::Stopped) => tracing::debug!(partition = p, "partition stopped"),
                    Ok(Exit::Failed(e)) => {
                        tracing::error!(partition = p, error = %e, "partition failed")
                    }
                    Err(e) => tracing::error!(partition = p, error = %e, "partition task panicked"),
                }
                self.release(p, &owned).await;
            }
        }

        // Rebalance.
        let view = self.leases.view().await?;
        let mut members = view.members;
        members.insert(self.shared.worker.to_string());
        let target = lease::target(partitions, members.len());
        let order = lease::preferred_order(&self.shared.worker, partitions);
        let running: Vec<u32> = order
            .iter()
            .copied()
            .filter(|p| self.owned.get(p).is_some_and(|o| !o.releasing))
            .collect();
        if running.len() > target {
            for &p in running.iter().skip(target) {
                if let Some(owned) = self.owned.get_mut(&p) {
                    tracing::info!(
                        partition = p,
                        target,
                        members = members.len(),
                        "releasing a partition to rebalance"
                    );
                    owned.releasing = true;
                    let _ = owned.stop.send(true);
                }
            }
        } else if running.len() < target {
            let mut have = running.len();
            for &p in &order {
                if have >= target {
                    break;
                }
                if self.owned.contains_key(&p) || view.leased.contains(&p) {
                    continue;
                }
                let sent = Instant::now();
                match self.leases.claim(p).await {
                    Ok(Some(revision)) => {
                        self.start_partition(p, revision, sent);
                        have += 1;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(partition = p, error = %e, "claim failed"),
                }
            }
        }
        self.publish_owned();
        Ok(())
    }

    fn start_partition(&mut self, partition: u32, revision: u64, claimed_at: Instant) {
        let config = &self.shared.config;
        let clock = LeaseClock::new(self.epoch);
        clock.extend_to(
            claimed_at
                + config
                    .leases
                    .ttl()
                    .saturating_sub(config.leases.heartbeat()),
        );
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(partition::run(
            self.shared.clone(),
            partition,
            stop_rx,
            clock.clone(),
        ));
        tracing::info!(group = %self.shared.group, worker = %self.shared.worker, partition, "claimed partition");
        self.owned.insert(
            partition,
            Owned {
                revision,
                clock,
                stop,
                task,
                releasing: false,
            },
        );
    }

    /// Runs a partition again under the lease it still holds.
    fn restart_partition(&mut self, partition: u32, mut owned: Owned) {
        let (stop, stop_rx) = watch::channel(false);
        owned.task = tokio::spawn(partition::run(
            self.shared.clone(),
            partition,
            stop_rx,
            owned.clock.clone(),
        ));
        owned.stop = stop;
        self.owned.insert(partition, owned);
    }

    /// Gives a stopped partition's lease back, if it is surely still ours.
    async fn release(&self, partition: u32, owned: &Owned) {
        if owned.clock.remaining() > self.shared.config.leases.heartbeat()
            && let Err(e) = self.leases.release(partition).await
        {
            tracing::warn!(partition, error = %e, "lease release failed; it will expire");
        }
    }

    /// Graceful exit: stop every partition, wait for in-flight messages,
    /// release the leases, leave the group.
    async fn leave(&mut self) {
        let timeout = Duration::from_millis(self.shared.config.consumer.shutdown_timeout_ms);
        for owned in self.owned.values() {
            let _ = owned.stop.send(true);
        }
        let deadline = Instant::now() + timeout;
        let owned = std::mem::take(&mut self.owned);
        for (p, mut o) in owned {
            match tokio::time::timeout_at(deadline, &mut o.task).await {
                Ok(_) => self.release(p, &o).await,
                Err(_) => tracing::warn!(
                    partition = p,
                    "partition did not stop in time; its lease will expire"
                ),
            }
        }
        for mut o in std::mem::take(&mut self.lost) {
            let _ = tokio::time::timeout_at(deadline, &mut o.task).await;
        }
        if let Err(e) = self.leases.leave().await {
            tracing::warn!(error = %e, "could not remove the membership key; it will expire");
        }
        let _ = self.nats.flush().await;
        self.owned_tx.send_replace(Vec::new());
        tracing::info!(group = %self.shared.group, worker = %self.shared.worker, "left the consumer group");
    }
}
