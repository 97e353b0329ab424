//! Running an application's projections and sagas on a bus chosen by URL.
//!
//! [`start_runtime`] is the one entry point a program needs: without a bus URL
//! (or with `memory://`, or a store URL) it starts the embedded
//! [`Runtime`], whose consumers read the store's all-stream; with `nats://...`
//! it calls [`start_on_bus`], which
//!
//! - starts an outbox [`Relay`] from the application's store to the bus
//!   (when [`BusOptions::relay`] is set),
//! - runs every registered handler, saga and at-least-once projection
//!   ([`Runtime::handlers`]) as a partitioned bus consumer, one consumer
//!   group per handler (when [`BusOptions::consume`] is set), and
//! - starts the background tasks (saga timers) and the transactional
//!   projections in-process ([`Runtime::start_only`]); transactional
//!   projections commit their checkpoint in the store's transaction, so they
//!   always read the store's all-stream, bus or not.
//!
//! So one process can run the commands and the relay
//! ([`BusOptions::producer`]) and others the handlers
//! ([`BusOptions::consumer`]), or one process everything
//! ([`BusOptions::default`]).
//!
//! **Names.** Every bus resource is named after the application
//! ([`Application::name`]) unless the URL names it: on NATS the stream
//! `ORX_{NAME}` on the subjects `orchestrix.{name}.events.{partition}`, on
//! Kafka the topic `orchestrix.{name}.events`; the consumer groups are
//! `{stream or prefix}_{handler}`. So two applications on one broker never
//! share a stream, a topic or a group.
//!
//! **Start position.** [`StartFrom`](orchestrix::runtime::StartFrom) means
//! what it means on the embedded runtime, with the group's committed
//! position as the checkpoint: `Checkpoint` resumes from it (a new group
//! from the first event the bus keeps), `CheckpointOrEnd` likewise but a new
//! group starts at the end, and `Beginning` (or `End`) ignores it: every
//! partition this process gets for the first time starts at the first event
//! the bus keeps (or the end). So a handler whose read model lives in memory
//! asks for `Beginning` and rebuilds it after every restart.
//!
//! **Progress.** [`BusRuntime::catch_up`] waits until the relay published
//! the store's head and every group finished every message on the bus, as
//! the broker tells it (per partition: Kafka's high watermark against the
//! group's handled or committed offset, JetStream's pending and
//! unacknowledged counts of the partition's durable consumer), whichever
//! process handled them. The same reading feeds the gauges
//! `orchestrix_consumer_lag_events` and `orchestrix_consumer_lag_seconds`
//! (one series per partition), sampled every
//! [`BusOptions::metrics_interval`] with `orchestrix_relay_lag_events`; every
//! handler call records `orchestrix_handler_duration_seconds`,
//! `orchestrix_events_consumed_total` and `orchestrix_dead_letters_total`,
//! the names the embedded runtime uses.
//!
//! Differences from the embedded runtime, by construction of the bus:
//! partitions are the bus's (the `partitions` of the URL), not
//! [`ConsumerConfig::partitions`](orchestrix::runtime::ConsumerConfig). The
//! retry policy of the registration is used: a handler error that it would
//! not retry dead-letters the message on the bus's dead-letter subject or
//! topic.
//!
//! With `kafka://...` (feature `kafka`) the application's events go to one
//! topic, keyed by stream id (so a stream stays on one partition), as NATS
//! puts them on one stream; see [`start_on_bus`].

// Without a bus compiled in, the bus plumbing is unused (and `BusConsumer`
// has no variant).
#![cfg_attr(
    not(any(feature = "nats", feature = "kafka")),
    allow(dead_code, unused_imports, unreachable_code, clippy::never_loop)
)]

use std::fmt;
use std::sync::Arc;
#[cfg(feature = "kafka")]
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use orchestrix::relay::{Relay, RelayConfig};
use orchestrix::runtime::{
    ConsumerMonitor, Delivery, EventHandler, RegistrationKind, Runtime, RuntimeHandle,
};
use orchestrix::store::Filter;
use orchestrix::url::{BackendUrl, Scheme};
use orchestrix::{Application, Error, RecordedEvent, Result, Store};

/// What a bus runtime runs in this process.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BusOptions {
    /// Relay the store's events to the bus.
    pub relay: bool,
    /// The relay's settings (its checkpoint defaults to `relay:{bus}`).
    pub relay_config: RelayConfig,
    /// Run the registered handlers and projections as bus consumers, and
    /// the background tasks and transactional projections in-process.
    pub consume: bool,
    /// How often the consumer and relay lag gauges are sampled from the
    /// broker. Default 5 s.
    pub metrics_interval: Duration,
    /// The payload format on the bus, set in code; the bus URL's
    /// `format=avro&registry=…` builds one when this is `None` (see
    /// [`format`](crate::format)).
    pub value_format: Option<Arc<dyn orchestrix::wire::ValueFormat>>,
    /// The Avro schemas of the application's events, for `format=avro` in
    /// the bus URL without `schemas=DIR` (feature `avro`).
    #[cfg(feature = "avro")]
    pub avro_schemas: Option<orchestrix_avro::AvroSchemas>,
}

impl Default for BusOptions {
    /// Everything in one process: relay and consumers.
    fn default() -> Self {
        Self {
            relay: true,
            relay_config: RelayConfig::default(),
            consume: true,
            metrics_interval: Duration::from_secs(5),
            value_format: None,
            #[cfg(feature = "avro")]
            avro_schemas: None,
        }
    }
}

impl BusOptions {
    /// Relay only: the process that executes commands.
    #[must_use]
    pub fn producer() -> Self {
        Self {
            consume: false,
            ..Self::default()
        }
    }

    /// Consumers (and background tasks) only: a worker process, while
    /// another one relays.
    #[must_use]
    pub fn consumer() -> Self {
        Self {
            relay: false,
            ..Self::default()
        }
    }

    /// Sets whether to relay.
    #[must_use]
    pub fn with_relay(mut self, relay: bool) -> Self {
        self.relay = relay;
        self
    }

    /// Samples the lag gauges this often.
    #[must_use]
    pub fn with_metrics_interval(mut self, every: Duration) -> Self {
        self.metrics_interval = every;
        self
    }
}

/// Whether `url` names a bus that [`start_on_bus`] serves (`nats://`,
/// `kafka://`), as opposed to `memory://` or a store URL, which mean the
/// embedded runtime.
///
/// # Errors
/// [`Error::InvalidInput`] for a malformed URL.
pub fn is_bus_url(url: &str) -> Result<bool> {
    Ok(matches!(
        BackendUrl::parse(url)?.scheme(),
        Scheme::Nats | Scheme::Kafka
    ))
}

/// Starts `app`'s runtime: the embedded [`Runtime`] (its consumers read the
/// store) without a bus URL or with `memory://` (the in-process bus), else
/// [`start_on_bus`] with `options`.
///
/// # Errors
/// [`Error::InvalidInput`] for a URL that names no bus (a store URL such as
/// `postgres://...` or `scylla://...`, or a malformed one), else as
/// [`Runtime::start`] and [`start_on_bus`].
pub async fn start_runtime(
    app: &Application,
    bus: Option<&str>,
    options: BusOptions,
) -> Result<AppRuntime> {
    let Some(url) = bus else {
        return Ok(AppRuntime::Embedded(Runtime::start(app).await?));
    };
    match BackendUrl::parse(url)?.scheme() {
        Scheme::Memory => Ok(AppRuntime::Embedded(Runtime::start(app).await?)),
        Scheme::Nats | Scheme::Kafka => Ok(AppRuntime::Bus(start_on_bus(app, url, options).await?)),
        other => Err(Error::invalid(
            format!("bus URL `{}`", orchestrix::url::redact(url)),
            format!(
                "`{other}://` names no bus (known: nats://, kafka://, or memory:// for the in-process one)"
            ),
        )),
    }
}

/// Runs `app`'s handlers on the bus at `bus_url`; see the module docs.
///
/// `nats://host:port?stream=S&prefix=P&partitions=N` (options of
/// `orchestrix_nats::NatsConfig::from_url`; `S` defaults to `ORX_{NAME}` and
/// `P` to `orchestrix.{name}.events`, from [`Application::name`]): the relay
/// publishes with the NATS publisher, and every handler runs as a NATS
/// consumer in the group `{S}_{handler}` (lease keys are per group, so two
/// applications with a handler of the same name on different streams never
/// share leases).
///
/// `kafka://host:port[,host:port]?prefix=P&partitions=N` (options of
/// `orchestrix_kafka::KafkaConfig::from_url`, librdkafka properties
/// included; `P` defaults to `orchestrix.{name}`): the relay publishes every
/// event to the topic `{P}.events` (created with `N` partitions when absent;
/// the key is the stream id), and every handler runs as a Kafka
/// consumer-group worker on it in the group `{P}_{handler}`, with the
/// registration's retry policy and the dead-letter topic `{P}.events.dlq`.
///
/// # Errors
/// [`Error::InvalidInput`] for a URL that names no bus or a malformed one,
/// [`Error::FeatureNotEnabled`] for a bus not compiled in (`nats`, `kafka`),
/// a connection or setup failure, or a handler factory's error. What started
/// is stopped again.
pub async fn start_on_bus(
    app: &Application,
    bus_url: &str,
    mut options: BusOptions,
) -> Result<BusRuntime> {
    let (adapter_url, format) = crate::format::split_format(bus_url)?;
    if options.value_format.is_none() {
        #[cfg(feature = "avro")]
        let schemas = options.avro_schemas.clone();
        #[cfg(not(feature = "avro"))]
        let schemas = None;
        options.value_format = crate::format::value_format(&format, schemas)?;
    }
    let bus_url = adapter_url.as_str();
    let url = BackendUrl::parse(bus_url)?;
    match url.scheme() {
        Scheme::Nats => nats::start(app, &url, options).await,
        Scheme::Kafka => kafka::start(app, bus_url, options).await,
        other => Err(Error::invalid(
            format!("bus URL `{}`", orchestrix::url::redact(bus_url)),
            format!("`{other}://` names no bus (known: nats://, kafka://)"),
        )),
    }
}

/// The runtime [`start_runtime`] chose.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per application
pub enum AppRuntime {
    /// The embedded runtime on the store's all-stream.
    Embedded(RuntimeHandle),
    /// Consumers on a bus.
    Bus(BusRuntime),
}

impl AppRuntime {
    /// Reads the store's head and waits until every consumer in this process
    /// has handled every event up to it (on a bus: relayed, then handled or
    /// dead-lettered); returns that head.
    ///
    /// # Errors
    /// A store error, or a consumer or the relay that stopped.
    pub async fn catch_up(&self) -> Result<u64> {
        match self {
            Self::Embedded(r) => r.catch_up().await,
            Self::Bus(b) => b.catch_up().await,
        }
    }

    /// Monitors of the embedded consumers (on a bus: of the transactional
    /// projections only).
    #[must_use]
    pub fn monitors(&self) -> Vec<ConsumerMonitor> {
        match self {
            Self::Embedded(r) => r.monitors(),
            Self::Bus(b) => b
                .local
                .as_ref()
                .map(RuntimeHandle::monitors)
                .unwrap_or_default(),
        }
    }

    /// The bus runtime, if on a bus.
    #[must_use]
    pub fn bus(&self) -> Option<&BusRuntime> {
        match self {
            Self::Embedded(_) => None,
            Self::Bus(b) => Some(b),
        }
    }

    /// Stops everything gracefully.
    ///
    /// # Errors
    /// The first error of what was stopped.
    pub async fn shutdown(self) -> Result<()> {
        match self {
            Self::Embedded(r) => r.shutdown().await,
            Self::Bus(b) => b.shutdown().await,
        }
    }
}

/// One consumer group's assignment in this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// The consumer group.
    pub group: String,
    /// The handler.
    pub handler: String,
    /// This process's id in the group.
    pub worker: String,
    /// The partitions it owns now.
    pub partitions: Vec<u32>,
}

/// One partition of a consumer group on the bus ([`BusStatus::partitions`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionStatus {
    /// The handler (the `consumer` label of the metrics).
    pub handler: String,
    /// The consumer group.
    pub group: String,
    /// The partition.
    pub partition: u32,
    /// This process's member id when it owns the partition; `None` when
    /// another member (or nobody, during a rebalance) does.
    pub owner: Option<String>,
    /// Messages on the partition the group has not finished.
    pub lag_events: u64,
    /// Age of the oldest of them, in seconds, when the broker tells it.
    pub lag_seconds: Option<f64>,
}

/// The partitions a group member owns now.
type Partitions = Arc<dyn Fn() -> Vec<u32> + Send + Sync>;

/// Group, handler, worker id and the partitions it owns.
type GroupWatch = (String, String, String, Partitions);

/// A shareable view of a bus runtime's partition assignments (for `/readyz`).
#[derive(Clone)]
pub struct BusStatus {
    bus: &'static str,
    groups: Arc<Vec<GroupWatch>>,
    /// Each group's probe of the broker's positions.
    progress: Arc<Vec<GroupProgress>>,
    /// Whether the bus client is connected now, when it can tell.
    connected: Option<Arc<dyn Fn() -> bool + Send + Sync>>,
}

impl fmt::Debug for BusStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusStatus")
            .field("bus", &self.bus)
            .field("assignments", &self.assignments())
            .finish()
    }
}

impl BusStatus {
    /// The bus: `nats` or `kafka`.
    #[must_use]
    pub fn bus(&self) -> &'static str {
        self.bus
    }

    /// Whether this process's bus client is connected now: `Some` on NATS
    /// (the client's connection state) and on Kafka when this process
    /// consumes (every worker's client reaches a broker, as librdkafka's
    /// errors and statistics tell), `None` where the client cannot tell (a
    /// Kafka runtime that only relays). While it is `Some(false)` no
    /// consumer can fetch, whatever partitions it holds.
    #[must_use]
    pub fn connected(&self) -> Option<bool> {
        self.connected.as_ref().map(|connected| connected())
    }

    /// Every partition of every group on the bus, as the broker tells it
    /// now: the handler, the group, the partition, its owner when it is
    /// this process (`None`: another member, or nobody yet), and the lag in
    /// messages and in seconds (the age of the oldest unfinished message).
    ///
    /// # Errors
    /// When the broker cannot tell a group's positions.
    pub async fn partitions(&self) -> Result<Vec<PartitionStatus>> {
        let assignments = self.assignments();
        let now = SystemTime::now();
        let mut out = Vec::new();
        for progress in self.progress.iter() {
            let mine = assignments.iter().find(|a| a.handler == progress.handler);
            for l in progress.probe.lag().await? {
                let owner = mine
                    .filter(|a| a.partitions.contains(&l.partition))
                    .map(|a| a.worker.clone());
                let lag_seconds = if l.events == 0 {
                    Some(0.0)
                } else {
                    l.oldest
                        .and_then(|t| now.duration_since(t).ok())
                        .map(|d| d.as_secs_f64())
                };
                out.push(PartitionStatus {
                    handler: progress.handler.clone(),
                    group: mine.map(|a| a.group.clone()).unwrap_or_default(),
                    partition: l.partition,
                    owner,
                    lag_events: l.events,
                    lag_seconds,
                });
            }
        }
        out.sort_by(|a, b| (&a.handler, a.partition).cmp(&(&b.handler, b.partition)));
        Ok(out)
    }

    /// Every group's partitions in this process, now.
    #[must_use]
    pub fn assignments(&self) -> Vec<Assignment> {
        self.groups
            .iter()
            .map(|(group, handler, worker, partitions)| Assignment {
                group: group.clone(),
                handler: handler.clone(),
                worker: worker.clone(),
                partitions: partitions(),
            })
            .collect()
    }
}

enum BusConsumer {
    #[cfg(feature = "nats")]
    Nats(orchestrix_nats::ConsumerHandle),
    /// Shared with the status's view of its assignment (weakly, so that
    /// dropping the runtime drops the worker).
    #[cfg(feature = "kafka")]
    Kafka(Arc<Mutex<Option<orchestrix_kafka::ConsumerWorker>>>),
}

/// Consumers on a bus, the relay to it, and the in-process rest. Stop it
/// with [`shutdown`](Self::shutdown); dropping it stops everything at once,
/// as a crash would.
pub struct BusRuntime {
    bus: &'static str,
    store: Store,
    relay: Option<Arc<Relay>>,
    consumers: Vec<BusConsumer>,
    progress: Vec<GroupProgress>,
    local: Option<RuntimeHandle>,
    status: BusStatus,
    /// Samples the lag gauges.
    sampler: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for BusRuntime {
    fn drop(&mut self) {
        if let Some(sampler) = self.sampler.take() {
            sampler.abort();
        }
    }
}

impl fmt::Debug for BusRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusRuntime")
            .field("bus", &self.bus)
            .field("relay", &self.relay.is_some())
            .field("status", &self.status)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl BusRuntime {
    /// The bus: `nats` or `kafka`.
    #[must_use]
    pub fn bus(&self) -> &'static str {
        self.bus
    }

    /// The partition assignments, shareable.
    #[must_use]
    pub fn status(&self) -> BusStatus {
        self.status.clone()
    }

    /// The relay, when this process relays.
    #[must_use]
    pub fn relay(&self) -> Option<&Relay> {
        self.relay.as_deref()
    }

    /// The in-process part (background tasks, transactional projections).
    #[must_use]
    pub fn local(&self) -> Option<&RuntimeHandle> {
        self.local.as_ref()
    }

    /// Reads the head now and waits until the relay (if here) published it
    /// and every group of this process's handlers finished (handled or
    /// dead-lettered) every message on the bus, in whichever process, as the
    /// broker tells it; returns the head. Without a relay here, what is on
    /// the bus is what the other process relayed so far.
    ///
    /// # Errors
    /// A store or broker error, or the relay or a local consumer stopped.
    pub async fn catch_up(&self) -> Result<u64> {
        let head = self.store.head_position().await?;
        if let Some(relay) = &self.relay {
            relay.wait_for(head).await?;
        }
        for group in &self.progress {
            group.wait_caught_up().await?;
        }
        if let Some(local) = &self.local {
            local.wait_until_caught_up(head).await?;
        }
        Ok(head)
    }

    /// Stops gracefully: the consumers stop fetching, finish and acknowledge
    /// what they hold and leave their groups; the in-process tasks stop; the
    /// relay publishes its batch in flight and commits. Returns the first
    /// error after stopping everything.
    ///
    /// # Errors
    /// A consumer's, task's or the relay's error.
    pub async fn shutdown(mut self) -> Result<()> {
        if let Some(sampler) = self.sampler.take() {
            sampler.abort();
            let _ = sampler.await;
        }
        // Every group at once: a Kafka member whose leave waits behind a
        // join the broker holds costs its bounded wait once, not once per
        // group.
        let stops = std::mem::take(&mut self.consumers)
            .into_iter()
            .map(|consumer| async move {
                match consumer {
                    #[cfg(feature = "nats")]
                    BusConsumer::Nats(c) => c.shutdown().await,
                    #[cfg(feature = "kafka")]
                    BusConsumer::Kafka(cell) => {
                        let worker = cell.lock().unwrap_or_else(PoisonError::into_inner).take();
                        match worker {
                            Some(w) => w.shutdown().await.map_err(Error::from),
                            None => Ok(()),
                        }
                    }
                }
            });
        let mut result = futures::future::join_all(stops)
            .await
            .into_iter()
            .fold(Ok(()), Result::and);
        if let Some(local) = self.local.take() {
            result = result.and(local.shutdown().await);
        }
        if let Some(relay) = self.relay.take() {
            result = result.and(match Arc::try_unwrap(relay) {
                Ok(relay) => relay.shutdown().await,
                Err(_) => Err(Error::backend(
                    "bus runtime",
                    "shutdown",
                    false,
                    "the relay is still shared",
                )),
            });
        }
        tracing::info!(bus = self.bus, "bus runtime stopped");
        result
    }
}

impl BusRuntime {
    /// Starts sampling the lag gauges every `every`.
    fn start_sampler(&mut self, every: Duration) {
        let groups = self.progress.clone();
        let relay = self.relay.clone();
        let every = every.max(Duration::from_millis(100));
        self.sampler = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                for group in &groups {
                    if let Err(e) = group.record_lag().await {
                        tracing::debug!(handler = %group.handler, error = %e, "cannot sample the consumer lag");
                    }
                }
                if let Some(relay) = &relay
                    && let Err(e) = relay.record_lag().await
                {
                    tracing::debug!(error = %e, "cannot sample the relay lag");
                }
            }
        }));
    }
}

/// Where one consumer group stands on one partition of the bus.
#[derive(Debug, Clone, Copy)]
struct PartitionLag {
    partition: u32,
    /// Messages on the bus the group has not finished.
    events: u64,
    /// When the oldest of them was stored, if known.
    oldest: Option<SystemTime>,
}

/// Reads a group's progress from the broker.
#[derive(Clone)]
enum LagProbe {
    #[cfg(feature = "nats")]
    Nats(orchestrix_nats::LagProbe),
    #[cfg(feature = "kafka")]
    Kafka(orchestrix_kafka::LagProbe),
}

/// How long a broker may take to tell a group's progress.
#[cfg(feature = "kafka")]
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

impl LagProbe {
    async fn lag(&self) -> Result<Vec<PartitionLag>> {
        match self {
            #[cfg(feature = "nats")]
            Self::Nats(p) => Ok(p
                .lag()
                .await?
                .into_iter()
                .map(|l| PartitionLag {
                    partition: l.partition,
                    events: l.events,
                    oldest: l.oldest,
                })
                .collect()),
            #[cfg(feature = "kafka")]
            Self::Kafka(p) => Ok(p
                .lag(PROBE_TIMEOUT)
                .await
                .map_err(Error::from)?
                .into_iter()
                .map(|l| PartitionLag {
                    partition: u32::try_from(l.partition).unwrap_or_default(),
                    events: l.events(),
                    oldest: l.oldest,
                })
                .collect()),
            // No bus compiled in: no probe can exist.
            #[cfg(not(any(feature = "nats", feature = "kafka")))]
            _ => Ok(Vec::new()),
        }
    }
}

/// One handler's consumer group, as catching up and metrics see it.
#[derive(Clone)]
struct GroupProgress {
    /// The handler's name: the `consumer` label.
    handler: String,
    probe: LagProbe,
}

impl GroupProgress {
    /// Waits until the group finished every message on the bus now.
    async fn wait_caught_up(&self) -> Result<()> {
        let mut every = Duration::from_millis(20);
        loop {
            let lag = self.probe.lag().await?;
            if lag.iter().all(|l| l.events == 0) {
                return Ok(());
            }
            tracing::trace!(handler = %self.handler, behind = lag.iter().map(|l| l.events).sum::<u64>(), "waiting for the bus consumer");
            tokio::time::sleep(every).await;
            every = (every * 2).min(Duration::from_millis(200));
        }
    }

    /// Records `orchestrix_consumer_lag_events` and `_seconds` per partition.
    async fn record_lag(&self) -> Result<()> {
        let now = SystemTime::now();
        for l in self.probe.lag().await? {
            let behind = if l.events == 0 {
                Duration::ZERO
            } else {
                l.oldest
                    .and_then(|t| now.duration_since(t).ok())
                    .unwrap_or_default()
            };
            orchestrix::telemetry::metrics::set_consumer_lag(
                &self.handler,
                &l.partition.to_string(),
                l.events,
                behind,
            );
        }
        Ok(())
    }
}

/// Runs a registered handler on a bus with the registration's filter. The
/// bus's handler driver ([`orchestrix::bus::HandlerDriver`]) records the
/// consumer metrics the embedded runtime records:
/// `orchestrix_handler_duration_seconds` per call,
/// `orchestrix_events_consumed_total` per event finished and
/// `orchestrix_dead_letters_total`, and skips events outside the filter.
#[derive(Debug)]
struct Metered {
    inner: Arc<dyn EventHandler>,
    filter: Filter,
}

#[async_trait]
impl EventHandler for Metered {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn filter(&self) -> Filter {
        self.filter.clone()
    }

    async fn handle(&self, event: &RecordedEvent, delivery: &Delivery) -> Result<()> {
        self.inner.handle(event, delivery).await
    }
}

/// `handler`, reading the bus's value format back first when the bus
/// carries another format than the store's.
fn decoding(options: &BusOptions, handler: Arc<dyn EventHandler>) -> Arc<dyn EventHandler> {
    match &options.value_format {
        Some(format) => Arc::new(orchestrix::wire::WireDecoding::new(
            Arc::clone(format),
            handler,
        )),
        None => handler,
    }
}

/// The application's default bus names: `name` with characters other than
/// letters, digits, `-` and `_` replaced by `_`.
fn name_token(app: &Application) -> String {
    name_token_of(app.name())
}

/// [`name_token`] of an application name.
pub(crate) fn name_token_of(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The option keys a bus URL sets.
pub(crate) fn url_keys(url: &str) -> Vec<String> {
    url.split_once('?')
        .map(|(_, query)| {
            query
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| kv.split_once('=').map_or(kv, |(k, _)| k).to_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(feature = "nats")]
pub(crate) mod nats {
    use std::sync::Arc;

    use orchestrix::relay::Relay;
    use orchestrix::runtime::{EventHandler, Runtime};
    use orchestrix::url::BackendUrl;
    use orchestrix::{Application, Result};
    use orchestrix_nats::{NatsConfig, NatsConsumer, NatsPublisher};

    use super::{
        BusConsumer, BusOptions, BusRuntime, BusStatus, GroupProgress, LagProbe, Metered,
        local_kinds, name_token, url_keys,
    };

    /// The URL's config, with the stream and subjects named after the
    /// application unless the URL names them.
    pub(super) fn config(app: &Application, url: &BackendUrl) -> Result<NatsConfig> {
        config_named(&name_token(app), url)
    }

    /// [`config`] for the application named `name` (a [`name_token`]).
    pub(crate) fn config_named(name: &str, url: &BackendUrl) -> Result<NatsConfig> {
        let mut config = NatsConfig::from_url(url)?;
        let keys = url_keys(url.as_str());
        if !keys.iter().any(|k| k == "stream") {
            config.stream.name = format!("ORX_{}", name.to_ascii_uppercase());
        }
        if !keys.iter().any(|k| k == "prefix") {
            config.stream.subject_prefix = format!("orchestrix.{name}.events");
        }
        config.validate()?;
        Ok(config)
    }

    pub(super) async fn start(
        app: &Application,
        url: &BackendUrl,
        options: BusOptions,
    ) -> Result<BusRuntime> {
        let config = config(app, url)?;
        let client = orchestrix_nats::connect(&config).await?;
        let mut runtime = BusRuntime {
            bus: "nats",
            store: app.store().clone(),
            relay: None,
            consumers: Vec::new(),
            progress: Vec::new(),
            local: None,
            status: BusStatus {
                bus: "nats",
                groups: Arc::default(),
                progress: Arc::default(),
                connected: Some({
                    let client = client.clone();
                    Arc::new(move || {
                        client.connection_state()
                            == orchestrix_nats::async_nats::connection::State::Connected
                    })
                }),
            },
            sampler: None,
        };
        // On an error below, dropping `runtime` stops what started.
        let mut groups = Vec::new();
        if options.consume {
            for registered in Runtime::handlers(app)? {
                let metered: Arc<dyn EventHandler> = Arc::new(Metered {
                    inner: super::decoding(&options, registered.handler()),
                    filter: registered.filter(),
                });
                let group = format!("{}_{}", config.stream.name, registered.name());
                let consumer = NatsConsumer::builder(config.clone())
                    .client(client.clone())
                    .handler(metered)
                    .group(group.clone())
                    .retry(registered.config().retry)
                    .start_from(registered.config().start_from)
                    .start()
                    .await?;
                let rx = consumer.watch_partitions();
                groups.push((
                    consumer.group().to_owned(),
                    registered.name().to_owned(),
                    consumer.worker_id().to_owned(),
                    Arc::new(move || rx.borrow().clone()) as super::Partitions,
                ));
                runtime.progress.push(GroupProgress {
                    handler: registered.name().to_owned(),
                    probe: LagProbe::Nats(consumer.lag_probe()),
                });
                runtime.consumers.push(BusConsumer::Nats(consumer));
            }
            runtime.local = Some(Runtime::start_only(app, &local_kinds()).await?);
        }
        runtime.status.groups = Arc::new(groups);
        runtime.status.progress = Arc::new(runtime.progress.clone());
        if options.relay {
            let mut publisher = NatsPublisher::with_client(client, config.clone()).await?;
            if let Some(format) = &options.value_format {
                publisher = publisher.with_value_format(Arc::clone(format));
            }
            runtime.relay = Some(Arc::new(
                Relay::start(
                    app.store().clone(),
                    Arc::new(publisher),
                    options.relay_config,
                )
                .await?,
            ));
        }
        runtime.start_sampler(options.metrics_interval);
        tracing::info!(
            bus = "nats",
            stream = %config.stream.name,
            consumers = runtime.consumers.len(),
            relay = runtime.relay.is_some(),
            "bus runtime started"
        );
        Ok(runtime)
    }
}

#[cfg(not(feature = "nats"))]
mod nats {
    use orchestrix::url::BackendUrl;
    use orchestrix::{Application, Error, Result};

    use super::{BusOptions, BusRuntime};

    pub(super) async fn start(
        _app: &Application,
        _url: &BackendUrl,
        _options: BusOptions,
    ) -> Result<BusRuntime> {
        Err(Error::FeatureNotEnabled {
            scheme: "nats".into(),
            feature: "nats",
            krate: "orchestrix-backends",
        })
    }
}

#[cfg(feature = "kafka")]
pub(crate) mod kafka {
    use std::sync::{Arc, Mutex, PoisonError};

    use orchestrix::relay::Relay;
    use orchestrix::runtime::{EventHandler, Runtime};
    use orchestrix::{Application, Result};
    use orchestrix_kafka::{ConsumerWorker, KafkaConfig, KafkaPublisher};

    use super::{
        BusConsumer, BusOptions, BusRuntime, BusStatus, GroupProgress, LagProbe, Metered,
        Partitions, local_kinds, name_token, url_keys,
    };

    /// The topic of every event of the application: `{prefix}.events`.
    const TEMPLATE: &str = "{prefix}.events";

    /// The URL's config, with the prefix named after the application unless
    /// the URL names it.
    pub(super) fn config(app: &Application, url: &str) -> Result<KafkaConfig> {
        config_named(&name_token(app), url)
    }

    /// [`config`] for the application named `name` (a [`name_token`]).
    pub(crate) fn config_named(name: &str, url: &str) -> Result<KafkaConfig> {
        let mut config = KafkaConfig::from_url(url)?;
        if !url_keys(url).iter().any(|k| k == "prefix") {
            config.topics.prefix = format!("orchestrix.{name}");
        }
        config.topics.template = TEMPLATE.to_owned();
        config.topics.overrides.clear();
        config.validate()?;
        Ok(config)
    }

    pub(super) async fn start(
        app: &Application,
        url: &str,
        options: BusOptions,
    ) -> Result<BusRuntime> {
        let config = config(app, url)?;
        let topic = config.topics.topic_for_category("events");
        let prefix = config.topics.prefix.clone();
        let worker_id = format!("{}-{}", config.client_id, std::process::id());
        let mut runtime = BusRuntime {
            bus: "kafka",
            store: app.store().clone(),
            relay: None,
            consumers: Vec::new(),
            progress: Vec::new(),
            local: None,
            status: BusStatus {
                bus: "kafka",
                groups: Arc::default(),
                progress: Arc::default(),
                connected: None,
            },
            sampler: None,
        };
        // On an error below, dropping `runtime` stops what started.
        let mut groups = Vec::new();
        let mut connections = Vec::new();
        if options.consume {
            for registered in Runtime::handlers(app)? {
                let retry = registered.config().retry;
                let metered: Arc<dyn EventHandler> = Arc::new(Metered {
                    inner: super::decoding(&options, registered.handler()),
                    filter: registered.filter(),
                });
                let group = format!("{prefix}_{}", registered.name());
                let mut handler_config = config.clone();
                handler_config.consumer.retry = orchestrix_kafka::bus::retry_config(retry);
                let worker = ConsumerWorker::builder(handler_config)
                    .topic(topic.clone())
                    .group_id(group.clone())
                    .start_from(registered.config().start_from)
                    .start(metered)
                    .await?;
                runtime.progress.push(GroupProgress {
                    handler: registered.name().to_owned(),
                    probe: LagProbe::Kafka(worker.lag_probe()),
                });
                connections.push(worker.lag_probe());
                let cell = Arc::new(Mutex::new(Some(worker)));
                let view = Arc::downgrade(&cell);
                let partitions: Partitions = Arc::new(move || {
                    let Some(cell) = view.upgrade() else {
                        return Vec::new();
                    };
                    let guard = cell.lock().unwrap_or_else(PoisonError::into_inner);
                    let mut owned: Vec<u32> = guard
                        .as_ref()
                        .map(|w| {
                            w.assignment()
                                .into_iter()
                                .filter_map(|(_, p)| u32::try_from(p).ok())
                                .collect()
                        })
                        .unwrap_or_default();
                    owned.sort_unstable();
                    owned.dedup();
                    owned
                });
                groups.push((
                    group,
                    registered.name().to_owned(),
                    worker_id.clone(),
                    partitions,
                ));
                runtime.consumers.push(BusConsumer::Kafka(cell));
            }
            runtime.local = Some(Runtime::start_only(app, &local_kinds()).await?);
        }
        runtime.status.groups = Arc::new(groups);
        runtime.status.progress = Arc::new(runtime.progress.clone());
        if !connections.is_empty() {
            runtime.status.connected = Some(Arc::new(move || {
                connections
                    .iter()
                    .all(orchestrix_kafka::LagProbe::connected)
            }));
        }
        if options.relay {
            let mut publisher = KafkaPublisher::new(config)?;
            if let Some(format) = &options.value_format {
                publisher = publisher.with_value_format(Arc::clone(format));
            }
            runtime.relay = Some(Arc::new(
                Relay::start(
                    app.store().clone(),
                    Arc::new(publisher),
                    options.relay_config,
                )
                .await?,
            ));
        }
        runtime.start_sampler(options.metrics_interval);
        tracing::info!(
            bus = "kafka",
            %topic,
            consumers = runtime.consumers.len(),
            relay = runtime.relay.is_some(),
            "bus runtime started"
        );
        Ok(runtime)
    }
}

#[cfg(not(feature = "kafka"))]
mod kafka {
    use orchestrix::{Application, Error, Result};

    use super::{BusOptions, BusRuntime};

    pub(super) async fn start(
        _app: &Application,
        _url: &str,
        _options: BusOptions,
    ) -> Result<BusRuntime> {
        Err(Error::FeatureNotEnabled {
            scheme: "kafka".into(),
            feature: "kafka",
            krate: "orchestrix-backends",
        })
    }
}

/// What a bus runtime still runs in-process.
fn local_kinds() -> [RegistrationKind; 2] {
    [
        RegistrationKind::Task,
        RegistrationKind::TransactionalProjection,
    ]
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use async_trait::async_trait;
    use orchestrix::runtime::{
        BackgroundTask, ConsumerConfig, Projection, RegistrationKind, Shutdown,
    };
    use orchestrix::store::ExpectedRevision;
    use orchestrix::{EventRecord, StreamId};

    use super::*;

    #[derive(Debug, Default)]
    struct Count(AtomicU64);

    #[async_trait]
    impl Projection for Count {
        fn name(&self) -> &str {
            "count"
        }
        async fn apply(&self, _: &RecordedEvent) -> Result<()> {
            self.0.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        async fn reset(&self) -> Result<()> {
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Noop;

    #[async_trait]
    impl EventHandler for Noop {
        fn name(&self) -> &str {
            "noop"
        }
        fn filter(&self) -> Filter {
            Filter::all().categories(["order"])
        }
        async fn handle(&self, _: &RecordedEvent, _: &Delivery) -> Result<()> {
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Idle;

    #[async_trait]
    impl BackgroundTask for Idle {
        fn name(&self) -> &str {
            "idle"
        }
        async fn run(&self, _: Application, shutdown: Shutdown) -> Result<()> {
            shutdown.triggered().await;
            Ok(())
        }
    }

    fn app(count: Arc<Count>) -> Application {
        Application::builder(Store::memory())
            .projection(count)
            .handler_with(
                ConsumerConfig::default().partitions(2),
                |_: &Application| Ok(Arc::new(Noop) as Arc<dyn EventHandler>),
            )
            .task(Arc::new(Idle))
            .build()
            .unwrap()
    }

    #[tokio::test]
    async fn registrations_can_be_enumerated_and_driven_elsewhere() {
        let count = Arc::new(Count::default());
        let app = app(count.clone());
        let handlers = Runtime::handlers(&app).unwrap();
        let seen: Vec<_> = handlers
            .iter()
            .map(|h| (h.name().to_owned(), h.kind(), h.config().partitions))
            .collect();
        assert_eq!(
            seen,
            [
                ("count".to_owned(), RegistrationKind::Projection, 1),
                ("noop".to_owned(), RegistrationKind::Handler, 2),
            ]
        );
        assert!(!handlers[1].filter().matches("account", "x"));
        assert_eq!(Runtime::tasks(&app).len(), 1);
        // The projection's handler applies to the projection.
        let event = {
            let s = StreamId::parse("order-1").unwrap();
            let e = EventRecord::json("com.acme.Placed", 1, &serde_json::json!({}));
            app.store()
                .append(&s, ExpectedRevision::NoStream, vec![e])
                .await
                .unwrap();
            app.store().read_all(0, 1, &Filter::all()).await.unwrap()[0].clone()
        };
        let delivery = Delivery {
            partition: 0,
            attempt: 1,
        };
        handlers[0]
            .handler()
            .handle(&event, &delivery)
            .await
            .unwrap();
        assert_eq!(count.0.load(Ordering::Relaxed), 1);
        // Tasks only: no consumer.
        let local = Runtime::start_only(&app, &local_kinds()).await.unwrap();
        assert!(local.monitors().is_empty());
        local.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_bad_value_format_in_the_bus_url_fails_before_any_connection() {
        let app = app(Arc::new(Count::default()));
        // Nothing listens on port 1: each error must come from the format.
        for (url, why) in [
            ("kafka://127.0.0.1:1?format=avro", "needs `registry=URL`"),
            ("nats://127.0.0.1:1?format=xml", "not one of json, avro"),
            (
                "kafka://127.0.0.1:1?registry=http://127.0.0.1:1",
                "go with `format=avro`",
            ),
        ] {
            let err = start_runtime(&app, Some(url), BusOptions::default())
                .await
                .unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{url}: {err}");
            assert!(err.to_string().contains(why), "{url}: {err}");
        }
        let err = start_runtime(
            &app,
            Some("kafka://127.0.0.1:1?format=avro&registry=http://127.0.0.1:1"),
            BusOptions::default(),
        )
        .await
        .unwrap_err();
        #[cfg(feature = "avro")]
        assert!(err.to_string().contains("no Avro schemas"), "{err}");
        #[cfg(not(feature = "avro"))]
        assert!(
            matches!(
                err,
                Error::FeatureNotEnabled {
                    feature: "avro",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_url_chooses_the_runtime() {
        let count = Arc::new(Count::default());
        let app = app(count.clone());
        for bus in [None, Some("memory://")] {
            let running = start_runtime(&app, bus, BusOptions::default())
                .await
                .unwrap();
            assert!(running.bus().is_none(), "{bus:?}");
            assert_eq!(running.monitors().len(), 2);
            running.catch_up().await.unwrap();
            running.shutdown().await.unwrap();
        }
        #[cfg(not(feature = "kafka"))]
        {
            let err = start_runtime(&app, Some("kafka://127.0.0.1:9092"), BusOptions::default())
                .await
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::FeatureNotEnabled {
                        feature: "kafka",
                        ..
                    }
                ),
                "{err}"
            );
        }
        #[cfg(feature = "kafka")]
        {
            // A bad URL fails before any connection.
            let err = start_runtime(
                &app,
                Some("kafka://127.0.0.1:9092?nonsense=1"),
                BusOptions::default(),
            )
            .await
            .unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
        }
        // A URL that names no bus is an error, not "run embedded".
        for not_a_bus in ["scylla://x", "postgres://nohost/x", "sqlite:///tmp/x.db"] {
            let err = start_runtime(&app, Some(not_a_bus), BusOptions::default())
                .await
                .unwrap_err();
            assert!(
                matches!(err, Error::InvalidInput { .. }),
                "{not_a_bus}: {err}"
            );
            assert!(err.to_string().contains("names no bus"), "{err}");
        }
        let err = start_on_bus(&app, "sqlite:///tmp/x.db", BusOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
        assert!(is_bus_url("nats://h:4222").unwrap());
        assert!(!is_bus_url("memory://").unwrap());
    }

    #[test]
    fn bus_names_derive_from_the_application_unless_the_url_sets_them() {
        let bank = Application::builder(Store::memory())
            .name("bank")
            .build()
            .unwrap();
        assert_eq!(
            url_keys("nats://h:4222?stream=S&prefix=p"),
            ["stream", "prefix"]
        );
        assert!(url_keys("nats://h:4222").is_empty());
        #[cfg(feature = "nats")]
        {
            let url = BackendUrl::parse("nats://h:4222").unwrap();
            let c = nats::config(&bank, &url).unwrap();
            assert_eq!(c.stream.name, "ORX_BANK");
            assert_eq!(c.stream.subject_prefix, "orchestrix.bank.events");
            let url = BackendUrl::parse("nats://h:4222?stream=MINE&prefix=mine.ev").unwrap();
            let c = nats::config(&bank, &url).unwrap();
            assert_eq!(
                (c.stream.name.as_str(), c.stream.subject_prefix.as_str()),
                ("MINE", "mine.ev")
            );
        }
        #[cfg(feature = "kafka")]
        {
            let c = kafka::config(&bank, "kafka://h:9092").unwrap();
            assert_eq!(
                c.topics.topic_for_category("events"),
                "orchestrix.bank.events"
            );
            let c = kafka::config(&bank, "kafka://h:9092?prefix=mine").unwrap();
            assert_eq!(c.topics.topic_for_category("events"), "mine.events");
        }
        let _ = bank;
    }
}
