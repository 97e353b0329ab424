//! [`Worker`]: an application's consumers, relay and endpoints in one
//! long-running process.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use orchestrix::relay::{Publisher, Relay, RelayConfig};
use orchestrix::runtime::{ConsumerMonitor, Runtime, RuntimeHandle};
use orchestrix::telemetry::MetricsSource;
use orchestrix::{Application, Store};
use orchestrix_backends::{AppRuntime, BusOptions, BusStatus};
use orchestrix_ops::Operations;
use orchestrix_ops::console::{Console, ConsumerSource, ConsumerView};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::config::WorkerConfig;
use crate::error::{Error, Result};

/// Runs an application's registered projections, sagas and handlers (its
/// [`Runtime`]), optionally an outbox [`Relay`], and serves `/healthz`,
/// `/readyz` and `/metrics`, until SIGTERM or SIGINT; then stops fetching,
/// drains what is in flight, commits and exits within the grace period.
///
/// ```no_run
/// use orchestrix::{Application, Store};
/// use orchestrix_worker::{Telemetry, Worker, WorkerConfig};
///
/// # async fn demo() -> orchestrix_worker::Result<()> {
/// let config = WorkerConfig::load(None)?; // ORCHESTRIX_CONFIG, ORCHESTRIX_*
/// let _telemetry = Telemetry::builder(&config.service_name).log(config.log.clone()).init()?;
/// let store = orchestrix_worker::open_store(&config.store.url).await?;
/// let app = Application::builder(store) /* .module(MyModule) */ .build()?;
/// Worker::new(app).config(config).run().await // returns after SIGTERM
/// # }
/// ```
#[must_use]
pub struct Worker {
    app: Application,
    config: WorkerConfig,
    relay: Option<(Arc<dyn Publisher>, RelayConfig)>,
    sources: Vec<Arc<dyn MetricsSource>>,
    routes: Option<Router>,
    /// `Some(token)`: serve the console under `/console`.
    console: Option<Option<String>>,
    #[cfg(feature = "avro")]
    avro_schemas: Option<orchestrix_avro::AvroSchemas>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .field("relay", &self.relay.as_ref().map(|(p, _)| p.name()))
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker of `app`, with the default configuration.
    pub fn new(app: Application) -> Self {
        Self {
            app,
            config: WorkerConfig::default(),
            relay: None,
            sources: Vec::new(),
            routes: None,
            console: None,
            #[cfg(feature = "avro")]
            avro_schemas: None,
        }
    }

    /// Serves the web console ([`orchestrix_ops::console`]) under
    /// `/console`, its Consumers page showing this worker's partitions, their
    /// owners and lag from the running runtime. Actions (rebuild, replay)
    /// need `token` as a bearer token; `None` keeps the console read-only.
    pub fn console(mut self, token: Option<String>) -> Self {
        self.console = Some(token);
        self
    }

    /// The Avro schemas of the application's events, for a bus URL with
    /// `format=avro` and no `schemas=DIR` (feature `avro`).
    #[cfg(feature = "avro")]
    pub fn avro_schemas(mut self, schemas: orchestrix_avro::AvroSchemas) -> Self {
        self.avro_schemas = Some(schemas);
        self
    }

    /// Uses this configuration.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// Also runs an outbox relay from the application's store to
    /// `publisher` (its lag is sampled into `orchestrix_relay_lag_events`).
    pub fn relay(mut self, publisher: Arc<dyn Publisher>, config: RelayConfig) -> Self {
        self.relay = Some((publisher, config));
        self
    }

    /// Samples `source` before every scrape, e.g. a saga's instances with
    /// [`SagaMetrics`](orchestrix::telemetry::SagaMetrics) (consumer lag is
    /// sampled already).
    pub fn metrics_source(mut self, source: Arc<dyn MetricsSource>) -> Self {
        self.sources.push(source);
        self
    }

    /// Serves these routes too, beside the health and metrics endpoints.
    pub fn routes(mut self, routes: Router) -> Self {
        self.routes = Some(routes);
        self
    }

    /// Starts serving, then the runtime and the relay; returns at once.
    ///
    /// # Errors
    /// When the recorder cannot be installed, the address cannot be bound,
    /// or the runtime or relay cannot start (what started is stopped).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub async fn start(self) -> Result<WorkerHandle> {
        let prometheus = crate::metrics::install(&self.config.metrics)?;
        let listener = tokio::net::TcpListener::bind(self.config.http.listen)
            .await
            .map_err(|source| Error::Listen {
                addr: self.config.http.listen.to_string(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: self.config.http.listen.to_string(),
            source,
        })?;
        let shared = Arc::new(Shared {
            store: self.app.store().clone(),
            prometheus: prometheus.clone(),
            started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            monitors: RwLock::new(Vec::new()),
            bus: RwLock::new(None),
            sources: self.sources,
            relay: Mutex::new(None),
            store_timeout: self.config.readiness.store_timeout(),
            sample_timeout: self.config.metrics.sample_timeout(),
        });
        let mut router = crate::http::router(shared.clone());
        if let Some(token) = self.console {
            let source: ConsumerSource = {
                let shared = shared.clone();
                Arc::new(move || {
                    let shared = shared.clone();
                    Box::pin(async move { consumer_views(&shared).await })
                })
            };
            let mut ops = Operations::application(self.app.clone());
            // On a bus, the Dead letters page lists and replays the bus's.
            if let Some(url) = self.config.bus.url() {
                ops = ops.with_dead_letters(
                    orchestrix_backends::dead_letters(url, Some(&self.app)).await?,
                );
            }
            let console = Console::new(ops)
                .base("/console")
                .token(token)
                .consumers(source);
            router = router.merge(console.router());
        }
        if let Some(routes) = self.routes {
            router = router.merge(routes);
        }
        let (stop_server, stopped) = watch::channel(false);
        let server = tokio::spawn(async move {
            let mut stopped = stopped;
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "the health and metrics endpoint failed");
            }
        });
        let upkeep = tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                prometheus.run_upkeep();
            }
        });
        let mut handle = WorkerHandle {
            shared: shared.clone(),
            runtime: None,
            server: Some(server),
            stop_server,
            upkeep,
            addr,
            grace: self.config.shutdown.grace_period(),
        };
        let runtime = match self.config.bus.url() {
            Some(url) => {
                #[cfg_attr(not(feature = "avro"), allow(unused_mut))]
                let mut options = BusOptions::consumer().with_relay(self.config.bus.relay);
                #[cfg(feature = "avro")]
                {
                    options.avro_schemas = self.avro_schemas.clone();
                }
                orchestrix_backends::start_runtime(&self.app, Some(url), options).await?
            }
            None => AppRuntime::Embedded(Runtime::start(&self.app).await?),
        };
        *shared
            .monitors
            .write()
            .unwrap_or_else(PoisonError::into_inner) = runtime.monitors();
        *shared.bus.write().unwrap_or_else(PoisonError::into_inner) =
            runtime.bus().map(|b| b.status());
        handle.runtime = Some(runtime);
        if let Some((publisher, config)) = self.relay {
            let relay = Relay::start(self.app.store().clone(), publisher, config).await?;
            *shared.relay.lock().await = Some(relay);
        }
        shared.started.store(true, Ordering::SeqCst);
        tracing::info!(
            service = %self.config.service_name,
            %addr,
            consumers = shared.monitors().len(),
            grace = ?handle.grace,
            "worker started"
        );
        Ok(handle)
    }

    /// Starts, waits for SIGTERM or SIGINT, then shuts down gracefully (see
    /// [`WorkerHandle::shutdown`]). The process should exit 0 after `Ok`.
    ///
    /// # Errors
    /// As [`start`](Self::start) and [`WorkerHandle::shutdown`].
    pub async fn run(self) -> Result<()> {
        // Registered before anything starts, so that no signal is missed.
        let signal = crate::signal::shutdown_signal()?;
        let handle = self.start().await?;
        let name = signal.await;
        tracing::info!(signal = name, grace = ?handle.grace, "stopping: no more fetching, draining in-flight work");
        handle.shutdown().await
    }
}

/// What the endpoints see.
/// The Consumers page of the worker's console: each bus partition with its
/// owner and lag, then the in-process consumers against the store's head.
async fn consumer_views(shared: &Shared) -> std::result::Result<Vec<ConsumerView>, String> {
    let bus = shared
        .bus
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut views = Vec::new();
    if let Some(bus) = bus {
        for p in bus.partitions().await.map_err(|e| e.to_string())? {
            views.push(ConsumerView {
                consumer: p.handler,
                group: p.group,
                partition: Some(p.partition),
                owner: p.owner,
                position: None,
                lag_events: p.lag_events,
                lag_seconds: p.lag_seconds,
            });
        }
    }
    let monitors = shared.monitors();
    if !monitors.is_empty() {
        let head = shared
            .store
            .head_position()
            .await
            .map_err(|e| e.to_string())?;
        let owner = format!("{}-{}", hostname(), std::process::id());
        for m in monitors {
            if views.iter().any(|v| v.consumer == m.name()) {
                continue;
            }
            let position = m.processed_position();
            views.push(ConsumerView {
                consumer: m.name().to_owned(),
                group: String::new(),
                partition: None,
                owner: Some(owner.clone()),
                position: Some(position),
                lag_events: head.saturating_sub(position),
                lag_seconds: None,
            });
        }
    }
    Ok(views)
}

/// This host's name, for the console's owner column.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .unwrap_or_else(|| "worker".to_owned())
}

pub(crate) struct Shared {
    store: Store,
    pub(crate) prometheus: PrometheusHandle,
    started: AtomicBool,
    draining: AtomicBool,
    monitors: RwLock<Vec<ConsumerMonitor>>,
    bus: RwLock<Option<BusStatus>>,
    sources: Vec<Arc<dyn MetricsSource>>,
    relay: Mutex<Option<Relay>>,
    pub(crate) store_timeout: Duration,
    sample_timeout: Duration,
}

impl Shared {
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn monitors(&self) -> Vec<ConsumerMonitor> {
        self.monitors
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn bus(&self) -> Option<BusStatus> {
        self.bus
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Samples every source at once, each within the sample timeout.
    pub(crate) async fn sample(&self) {
        let timeout = self.sample_timeout;
        let consumers = self.monitors();
        let lags = consumers.iter().map(|m| async move {
            match tokio::time::timeout(timeout, m.record_lag()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(consumer = m.name(), error = %e, "cannot sample consumer lag")
                }
                Err(_) => tracing::warn!(
                    consumer = m.name(),
                    ?timeout,
                    "consumer lag sampling timed out"
                ),
            }
        });
        let sources = self.sources.iter().map(|s| async move {
            match tokio::time::timeout(timeout, s.sample()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(source = s.name(), error = %e, "cannot sample metrics")
                }
                Err(_) => tracing::warn!(source = s.name(), ?timeout, "metrics sampling timed out"),
            }
        });
        let relay = async {
            if let Some(relay) = &*self.relay.lock().await {
                match tokio::time::timeout(timeout, relay.record_lag()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot sample relay lag"),
                    Err(_) => tracing::warn!(?timeout, "relay lag sampling timed out"),
                }
            }
        };
        futures::join!(
            futures::future::join_all(lags),
            futures::future::join_all(sources),
            relay
        );
    }
}

/// A started [`Worker`]. Stop it with [`shutdown`](Self::shutdown); dropping
/// it stops everything at once, as a crash would.
pub struct WorkerHandle {
    shared: Arc<Shared>,
    runtime: Option<AppRuntime>,
    server: Option<JoinHandle<()>>,
    stop_server: watch::Sender<bool>,
    upkeep: JoinHandle<()>,
    addr: SocketAddr,
    grace: Duration,
}

impl fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("addr", &self.addr)
            .field("runtime", &self.runtime)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl WorkerHandle {
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The running consumers (to watch lag, or pause one).
    #[must_use]
    pub fn monitors(&self) -> Vec<ConsumerMonitor> {
        self.shared.monitors()
    }

    /// The application's embedded runtime (on a bus: the in-process part,
    /// background tasks and transactional projections).
    #[must_use]
    pub fn runtime(&self) -> Option<&RuntimeHandle> {
        match self.runtime.as_ref()? {
            AppRuntime::Embedded(r) => Some(r),
            AppRuntime::Bus(b) => b.local(),
        }
    }

    /// The consumers' partition assignments on the bus, when consuming from
    /// one (`bus.url`).
    #[must_use]
    pub fn bus(&self) -> Option<BusStatus> {
        self.shared.bus()
    }

    /// Stops gracefully within the grace period: `/readyz` turns unready,
    /// the consumers stop fetching, finish the events they hold and commit
    /// their checkpoints, the relay publishes its batch in flight and
    /// commits, then the endpoint stops.
    ///
    /// # Errors
    /// [`Error::ShutdownTimeout`] when draining took longer than the grace
    /// period (everything was then stopped at once; the unfinished events
    /// are delivered again after a restart), or a consumer's or the relay's
    /// error.
    pub async fn shutdown(mut self) -> Result<()> {
        self.shared.draining.store(true, Ordering::SeqCst);
        let runtime = self.runtime.take();
        let relay = self.shared.relay.lock().await.take();
        let drain = async {
            let runtime = async {
                match runtime {
                    Some(r) => r.shutdown().await,
                    None => Ok(()),
                }
            };
            let relay = async {
                match relay {
                    Some(r) => r.shutdown().await,
                    None => Ok(()),
                }
            };
            let (a, b) = tokio::join!(runtime, relay);
            a.and(b)
        };
        let result = match tokio::time::timeout(self.grace, drain).await {
            Ok(r) => r.map_err(Error::from),
            Err(_) => Err(Error::ShutdownTimeout { grace: self.grace }),
        };
        self.stop_endpoint().await;
        match &result {
            Ok(()) => tracing::info!("worker stopped: drained and committed"),
            Err(e) => tracing::error!(error = %e, "worker stopped"),
        }
        result
    }

    async fn stop_endpoint(&mut self) {
        self.stop_server.send_replace(true);
        if let Some(server) = self.server.take() {
            // Scrapes in progress get a moment to finish.
            if tokio::time::timeout(Duration::from_secs(2), server)
                .await
                .is_err()
            {
                tracing::warn!("the endpoint did not stop in time");
            }
        }
        self.upkeep.abort();
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop_server.send_replace(true);
        self.upkeep.abort();
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}
