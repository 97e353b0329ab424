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
//! Differences from the embedded runtime, by construction of the bus:
//! partitions are the bus's (the `partitions` of the URL), not
//! [`ConsumerConfig::partitions`](orchestrix::runtime::ConsumerConfig), and a
//! new consumer group starts from the first event the bus keeps, whatever
//! [`StartFrom`](orchestrix::runtime::StartFrom) says. The retry policy of
//! the registration is used: a handler error that it would not retry
//! dead-letters the message on the bus's dead-letter subject or topic.
//!
//! With `kafka://...` (feature `kafka`) the application's events go to one
//! topic, `{prefix}.events`, keyed by stream id (so a stream stays on one
//! partition), as NATS puts them on one stream; see [`start_on_bus`].

// Without a bus compiled in, the bus plumbing is unused (and `BusConsumer`
// has no variant).
#![cfg_attr(
    not(any(feature = "nats", feature = "kafka")),
    allow(dead_code, unused_imports, unreachable_code, clippy::never_loop)
)]

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::relay::{Relay, RelayConfig};
use orchestrix::runtime::{
    ConsumerMonitor, Delivery, EventHandler, RegistrationKind, RetryPolicy, Runtime, RuntimeHandle,
};
use orchestrix::store::Filter;
use orchestrix::url::{BackendUrl, Scheme};
use orchestrix::{Application, Error, RecordedEvent, Result, Store};
use tokio::sync::Notify;

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
}

impl Default for BusOptions {
    /// Everything in one process: relay and consumers.
    fn default() -> Self {
        Self {
            relay: true,
            relay_config: RelayConfig::default(),
            consume: true,
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

/// Starts `app`'s runtime: the embedded [`Runtime`] without a bus URL or with
/// `memory://` (or any store URL: the consumers read that store), else
/// [`start_on_bus`] with `options`.
///
/// # Errors
/// As [`Runtime::start`] and [`start_on_bus`].
pub async fn start_runtime(
    app: &Application,
    bus: Option<&str>,
    options: BusOptions,
) -> Result<AppRuntime> {
    match bus {
        Some(url) if is_bus_url(url)? => {
            Ok(AppRuntime::Bus(start_on_bus(app, url, options).await?))
        }
        _ => Ok(AppRuntime::Embedded(Runtime::start(app).await?)),
    }
}

/// Runs `app`'s handlers on the bus at `bus_url`; see the module docs.
///
/// `nats://host:port?stream=S&prefix=P&partitions=N` (options of
/// `orchestrix_nats::NatsConfig::from_url`): the relay publishes with the
/// NATS publisher, and every handler runs as a NATS consumer in the group
/// `{stream}_{handler}` (lease keys are per group, so two applications with a
/// handler of the same name on different streams never share leases).
///
/// `kafka://host:port[,host:port]?prefix=P&partitions=N` (options of
/// `orchestrix_kafka::KafkaConfig::from_url`, librdkafka properties
/// included): the relay publishes every event to the topic `{P}.events`
/// (created with `N` partitions when absent; the key is the stream id), and
/// every handler runs as a Kafka consumer-group worker on it in the group
/// `{P}_{handler}`, with the registration's retry policy and the dead-letter
/// topic `{P}.events.dlq`.
///
/// # Errors
/// [`Error::InvalidInput`] for a URL that names no bus or a malformed one,
/// [`Error::FeatureNotEnabled`] for a bus not compiled in (`nats`, `kafka`),
/// a connection or setup failure, or a handler factory's error. What started
/// is stopped again.
pub async fn start_on_bus(
    app: &Application,
    bus_url: &str,
    options: BusOptions,
) -> Result<BusRuntime> {
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

/// The partitions a group member owns now.
type Partitions = Arc<dyn Fn() -> Vec<u32> + Send + Sync>;

/// Group, handler, worker id and the partitions it owns.
type GroupWatch = (String, String, String, Partitions);

/// A shareable view of a bus runtime's partition assignments (for `/readyz`).
#[derive(Clone)]
pub struct BusStatus {
    bus: &'static str,
    groups: Arc<Vec<GroupWatch>>,
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
    /// (the client's connection state), `None` where the client cannot
    /// tell (librdkafka keeps one connection per broker and reconnects on
    /// its own). While it is `Some(false)` no consumer can fetch, whatever
    /// partitions it holds.
    #[must_use]
    pub fn connected(&self) -> Option<bool> {
        self.connected.as_ref().map(|connected| connected())
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
    relay: Option<Relay>,
    consumers: Vec<BusConsumer>,
    progress: Vec<Arc<Progress>>,
    local: Option<RuntimeHandle>,
    status: BusStatus,
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
        self.relay.as_ref()
    }

    /// The in-process part (background tasks, transactional projections).
    #[must_use]
    pub fn local(&self) -> Option<&RuntimeHandle> {
        self.local.as_ref()
    }

    /// Reads the head now and waits until the relay (if here) published it
    /// and every bus consumer here handled (or dead-lettered) every event up
    /// to it; returns the head.
    ///
    /// # Errors
    /// A store error, or the relay or a local consumer stopped.
    pub async fn catch_up(&self) -> Result<u64> {
        let head = self.store.head_position().await?;
        if let Some(relay) = &self.relay {
            relay.wait_for(head).await?;
        }
        for progress in &self.progress {
            progress.wait_until(&self.store, head).await?;
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
        let mut result = Ok(());
        for consumer in std::mem::take(&mut self.consumers) {
            result = result.and(match consumer {
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
            });
        }
        if let Some(local) = self.local.take() {
            result = result.and(local.shutdown().await);
        }
        if let Some(relay) = self.relay.take() {
            result = result.and(relay.shutdown().await);
        }
        tracing::info!(bus = self.bus, "bus runtime stopped");
        result
    }
}

/// Which store positions a handler has handled (or given up on), so that
/// [`BusRuntime::catch_up`] knows when it reached the head: the bus delivers
/// partitions independently, so this keeps a low-watermark over the store's
/// positions plus the handled ones above it.
#[derive(Debug)]
struct Progress {
    name: String,
    state: Mutex<ProgressState>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct ProgressState {
    /// Every store position at or below it is done.
    watermark: u64,
    /// Done positions above the watermark.
    done: BTreeSet<u64>,
}

impl Progress {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            state: Mutex::default(),
            changed: Notify::new(),
        }
    }

    fn record(&self, position: u64) {
        {
            let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if position > s.watermark {
                s.done.insert(position);
            }
        }
        self.changed.notify_waiters();
    }

    /// Waits until every store event at or below `head` is done. Positions
    /// are checked against the store, so gaps in them do no harm.
    async fn wait_until(&self, store: &Store, head: u64) -> Result<()> {
        loop {
            let notified = self.changed.notified();
            let watermark = self
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .watermark;
            if watermark >= head {
                return Ok(());
            }
            let events = store.read_all(watermark, 500, &Filter::all()).await?;
            let advanced = {
                let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                let before = s.watermark;
                if s.watermark == watermark {
                    for e in &events {
                        if e.position > head || !s.done.remove(&e.position) {
                            break;
                        }
                        s.watermark = e.position;
                    }
                    if events.is_empty() && head > s.watermark {
                        // Nothing stored above the watermark up to the head:
                        // the head is a gap.
                        s.watermark = head;
                    }
                    let w = s.watermark;
                    s.done = s.done.split_off(&(w + 1));
                }
                s.watermark > before
            };
            if !advanced {
                tracing::trace!(handler = %self.name, watermark, head, "waiting for the bus consumer");
                let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
            }
        }
    }
}

/// Runs a core handler on a bus while recording its [`Progress`]: it takes
/// every event (so that skipped ones count as done) and calls the handler
/// with the ones its filter wants.
#[derive(Debug)]
struct Tracked {
    inner: Arc<dyn EventHandler>,
    filter: Filter,
    retry: RetryPolicy,
    progress: Arc<Progress>,
}

#[async_trait]
impl EventHandler for Tracked {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn handle(&self, event: &RecordedEvent, delivery: &Delivery) -> Result<()> {
        if self
            .filter
            .matches(event.stream_id.category(), event.event_type())
            && let Err(e) = self.inner.handle(event, delivery).await
        {
            if !self.retry.should_retry(&e, delivery.attempt) {
                // The bus dead-letters it: done for catching up.
                self.progress.record(event.position);
            }
            return Err(e);
        }
        self.progress.record(event.position);
        Ok(())
    }
}

#[cfg(feature = "nats")]
mod nats {
    use std::sync::Arc;

    use orchestrix::relay::Relay;
    use orchestrix::runtime::{EventHandler, Runtime};
    use orchestrix::url::BackendUrl;
    use orchestrix::{Application, Result};
    use orchestrix_nats::{NatsConfig, NatsConsumer, NatsPublisher};

    use super::{BusConsumer, BusOptions, BusRuntime, BusStatus, Progress, Tracked, local_kinds};

    pub(super) async fn start(
        app: &Application,
        url: &BackendUrl,
        options: BusOptions,
    ) -> Result<BusRuntime> {
        let config = NatsConfig::from_url(url)?;
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
                connected: Some({
                    let client = client.clone();
                    Arc::new(move || {
                        client.connection_state()
                            == orchestrix_nats::async_nats::connection::State::Connected
                    })
                }),
            },
        };
        // On an error below, dropping `runtime` stops what started.
        let mut groups = Vec::new();
        if options.consume {
            for registered in Runtime::handlers(app)? {
                let progress = Arc::new(Progress::new(registered.name()));
                let tracked: Arc<dyn EventHandler> = Arc::new(Tracked {
                    inner: registered.handler(),
                    filter: registered.filter(),
                    retry: registered.config().retry,
                    progress: progress.clone(),
                });
                let group = format!("{}_{}", config.stream.name, registered.name());
                let consumer = NatsConsumer::builder(config.clone())
                    .client(client.clone())
                    .handler(tracked)
                    .group(group.clone())
                    .retry(registered.config().retry)
                    .start()
                    .await?;
                let rx = consumer.watch_partitions();
                groups.push((
                    consumer.group().to_owned(),
                    registered.name().to_owned(),
                    consumer.worker_id().to_owned(),
                    Arc::new(move || rx.borrow().clone()) as super::Partitions,
                ));
                runtime.progress.push(progress);
                runtime.consumers.push(BusConsumer::Nats(consumer));
            }
            runtime.local = Some(Runtime::start_only(app, &local_kinds()).await?);
        }
        runtime.status.groups = Arc::new(groups);
        if options.relay {
            let publisher = NatsPublisher::with_client(client, config).await?;
            runtime.relay = Some(
                Relay::start(
                    app.store().clone(),
                    Arc::new(publisher),
                    options.relay_config,
                )
                .await?,
            );
        }
        tracing::info!(
            bus = "nats",
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
mod kafka {
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::Duration;

    use orchestrix::relay::Relay;
    use orchestrix::runtime::{EventHandler, RetryPolicy, Runtime};
    use orchestrix::{Application, Result};
    use orchestrix_kafka::config::RetryConfig;
    use orchestrix_kafka::{ConsumerWorker, KafkaConfig, KafkaPublisher};

    use super::{
        BusConsumer, BusOptions, BusRuntime, BusStatus, Partitions, Progress, Tracked, local_kinds,
    };

    /// The topic of every event of the application: `{prefix}.events`.
    const TEMPLATE: &str = "{prefix}.events";

    pub(super) async fn start(
        app: &Application,
        url: &str,
        options: BusOptions,
    ) -> Result<BusRuntime> {
        let mut config = KafkaConfig::from_url(url)?;
        config.topics.template = TEMPLATE.to_owned();
        config.topics.overrides.clear();
        config.validate()?;
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
                connected: None,
            },
        };
        // On an error below, dropping `runtime` stops what started.
        let mut groups = Vec::new();
        if options.consume {
            for registered in Runtime::handlers(app)? {
                let retry = registered.config().retry;
                let progress = Arc::new(Progress::new(registered.name()));
                let tracked: Arc<dyn EventHandler> = Arc::new(Tracked {
                    inner: registered.handler(),
                    filter: registered.filter(),
                    retry,
                    progress: progress.clone(),
                });
                let group = format!("{prefix}_{}", registered.name());
                let mut handler_config = config.clone();
                handler_config.consumer.retry = retry_config(retry);
                let worker = ConsumerWorker::builder(handler_config)
                    .topic(topic.clone())
                    .group_id(group.clone())
                    .start(tracked)
                    .await?;
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
                runtime.progress.push(progress);
                runtime.consumers.push(BusConsumer::Kafka(cell));
            }
            runtime.local = Some(Runtime::start_only(app, &local_kinds()).await?);
        }
        runtime.status.groups = Arc::new(groups);
        if options.relay {
            let publisher = KafkaPublisher::new(config)?;
            runtime.relay = Some(
                Relay::start(
                    app.store().clone(),
                    Arc::new(publisher),
                    options.relay_config,
                )
                .await?,
            );
        }
        tracing::info!(
            bus = "kafka",
            %topic,
            consumers = runtime.consumers.len(),
            relay = runtime.relay.is_some(),
            "bus runtime started"
        );
        Ok(runtime)
    }

    /// The worker's retry settings for a registration's policy.
    fn retry_config(policy: RetryPolicy) -> RetryConfig {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        match policy {
            RetryPolicy::None => RetryConfig::None,
            RetryPolicy::Fixed {
                max_attempts,
                delay,
            } => RetryConfig::Fixed {
                max_attempts,
                delay_ms: ms(delay),
            },
            RetryPolicy::Exponential {
                max_attempts,
                initial,
                max,
            } => RetryConfig::Exponential {
                max_attempts,
                initial_ms: ms(initial),
                max_ms: ms(max),
            },
        }
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
        let err = start_on_bus(&app, "sqlite:///tmp/x.db", BusOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
        assert!(is_bus_url("nats://h:4222").unwrap());
        assert!(!is_bus_url("memory://").unwrap());
    }
}
