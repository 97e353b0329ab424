//! Wiring the runtime into an application: projections, sagas, handlers and
//! background tasks are registered on the
//! [`ApplicationBuilder`](crate::ApplicationBuilder); [`Runtime::start`]
//! starts a consumer (or task) for each.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::config::ConsumerConfig;
use super::consumer::{ConsumerHandle, ConsumerMonitor, Pipeline, start};
use super::handler::EventHandler;
use super::projection::{Projection, ProjectionHandler, ProjectionRunner};
use super::shutdown::Shutdown;
use super::transactional::TransactionalProjection;
use crate::app::Application;
use crate::error::{Error, Result};
use crate::store::{Filter, Store};

/// Builds a handler once the application exists (for handlers, like sagas,
/// that send commands through it).
pub type HandlerFactory = Arc<dyn Fn(&Application) -> Result<Arc<dyn EventHandler>> + Send + Sync>;

/// Long-running work started and stopped with the runtime, e.g. a saga's
/// timer poller.
#[async_trait]
pub trait BackgroundTask: Send + Sync + fmt::Debug + 'static {
    /// A name for logs and errors.
    fn name(&self) -> &str;

    /// Runs until `shutdown` is triggered, then returns. An error is reported
    /// by [`RuntimeHandle::shutdown`].
    async fn run(&self, app: Application, shutdown: Shutdown) -> Result<()>;
}

/// Builds a factory's handler; one registered under a name must have it.
fn build(
    name: Option<&str>,
    factory: &HandlerFactory,
    app: &Application,
) -> Result<Arc<dyn EventHandler>> {
    let handler = factory(app)?;
    match name {
        Some(name) if handler.name() != name => Err(Error::invalid(
            format!("handler factory `{name}`"),
            format!(
                "it built a handler named `{}`; a factory registered under a name must build the handler of that name",
                handler.name()
            ),
        )),
        _ => Ok(handler),
    }
}

enum Registered {
    Handler {
        name: Option<String>,
        factory: HandlerFactory,
        config: ConsumerConfig,
    },
    Projection {
        projection: Arc<dyn Projection>,
        config: ConsumerConfig,
    },
    Transactional {
        projection: Arc<dyn TransactionalProjection>,
        config: ConsumerConfig,
    },
    Task(Arc<dyn BackgroundTask>),
}

impl Registered {
    fn kind(&self) -> RegistrationKind {
        match self {
            Self::Handler { .. } => RegistrationKind::Handler,
            Self::Projection { .. } => RegistrationKind::Projection,
            Self::Transactional { .. } => RegistrationKind::TransactionalProjection,
            Self::Task(_) => RegistrationKind::Task,
        }
    }
}

/// What a registration is: which builder call made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegistrationKind {
    /// `handler`, `handler_with`, or a saga's consumer.
    Handler,
    /// `projection` (typed or untyped).
    Projection,
    /// `transactional_projection`: its batch and checkpoint commit
    /// in one store transaction, so it runs on the store's all-stream only.
    TransactionalProjection,
    /// `task` (saga timers, for example).
    Task,
}

impl RegistrationKind {
    /// Every kind.
    pub const ALL: [Self; 4] = [
        Self::Handler,
        Self::Projection,
        Self::TransactionalProjection,
        Self::Task,
    ];
}

/// A registered handler or at-least-once projection, built for an
/// application: what a consumer other than the embedded one (a Kafka or NATS
/// consumer group) needs to run it. See [`Runtime::handlers`].
#[derive(Clone)]
pub struct RegisteredHandler {
    kind: RegistrationKind,
    handler: Arc<dyn EventHandler>,
    config: ConsumerConfig,
}

impl fmt::Debug for RegisteredHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredHandler")
            .field("name", &self.name())
            .field("kind", &self.kind)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RegisteredHandler {
    /// The handler's name: its checkpoint, dead-letter and consumer-group key.
    #[must_use]
    pub fn name(&self) -> &str {
        self.handler.name()
    }

    /// The events it wants.
    #[must_use]
    pub fn filter(&self) -> Filter {
        self.handler.filter()
    }

    /// The consumer settings it was registered with (partitions, retry
    /// policy, start position).
    #[must_use]
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// [`RegistrationKind::Handler`] or [`RegistrationKind::Projection`].
    #[must_use]
    pub fn kind(&self) -> RegistrationKind {
        self.kind
    }

    /// The handler, built for the application (a projection is wrapped in a
    /// [`ProjectionHandler`]).
    #[must_use]
    pub fn handler(&self) -> Arc<dyn EventHandler> {
        self.handler.clone()
    }
}

/// What was registered with the runtime: what [`Runtime::start`] reads
/// (see [`Application::registrations`]).
#[derive(Default)]
pub struct Registrations {
    entries: Vec<Registered>,
}

impl fmt::Debug for Registrations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Registrations {
    /// The names known before start (handlers from a factory are named when
    /// built).
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| match e {
                Registered::Handler { name, .. } => name.clone(),
                Registered::Projection { projection, .. } => Some(projection.name().to_owned()),
                Registered::Transactional { projection, .. } => Some(projection.name().to_owned()),
                Registered::Task(task) => Some(task.name().to_owned()),
            })
            .collect()
    }

    /// How many things were registered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing was registered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn add_handler(
        &mut self,
        handler: Arc<dyn EventHandler>,
        config: ConsumerConfig,
    ) -> Result<()> {
        let name = handler.name().to_owned();
        let factory: HandlerFactory = Arc::new(move |_: &Application| Ok(handler.clone()));
        self.add(
            Some(&name),
            Registered::Handler {
                name: Some(name.clone()),
                factory,
                config,
            },
        )
    }

    /// A handler built at start under a name known now (listed in the
    /// catalog, checked for clashes now and against the built handler's
    /// name at start).
    pub(crate) fn add_named_factory(
        &mut self,
        name: &str,
        config: ConsumerConfig,
        factory: HandlerFactory,
    ) -> Result<()> {
        self.add(
            Some(name),
            Registered::Handler {
                name: Some(name.to_owned()),
                factory,
                config,
            },
        )
    }

    pub(crate) fn add_handler_with(&mut self, config: ConsumerConfig, factory: HandlerFactory) {
        self.entries.push(Registered::Handler {
            name: None,
            factory,
            config,
        });
    }

    pub(crate) fn add_projection(
        &mut self,
        projection: Arc<dyn Projection>,
        config: ConsumerConfig,
    ) -> Result<()> {
        let name = projection.name().to_owned();
        self.add(Some(&name), Registered::Projection { projection, config })
    }

    pub(crate) fn add_transactional(
        &mut self,
        projection: Arc<dyn TransactionalProjection>,
        config: ConsumerConfig,
    ) -> Result<()> {
        let name = projection.name().to_owned();
        self.add(
            Some(&name),
            Registered::Transactional { projection, config },
        )
    }

    pub(crate) fn add_task(&mut self, task: Arc<dyn BackgroundTask>) -> Result<()> {
        let name = task.name().to_owned();
        self.add(Some(&name), Registered::Task(task))
    }

    fn add(&mut self, name: Option<&str>, entry: Registered) -> Result<()> {
        if let Some(name) = name
            && self.names().iter().any(|n| n == name)
        {
            return Err(Error::invalid(
                format!("registration of `{name}`"),
                "a consumer or task of this name is already registered",
            ));
        }
        self.entries.push(entry);
        Ok(())
    }
}

/// Starts everything registered with an application.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use orchestrix::runtime::{Projection, Runtime};
/// use orchestrix::store::ExpectedRevision;
/// use orchestrix::{Application, EventRecord, RecordedEvent, Result, Store, StreamId};
///
/// #[derive(Debug, Default)]
/// struct Count(AtomicU64);
///
/// #[async_trait::async_trait]
/// impl Projection for Count {
///     fn name(&self) -> &str { "count" }
///     async fn apply(&self, _: &RecordedEvent) -> Result<()> {
///         self.0.fetch_add(1, Ordering::Relaxed);
///         Ok(())
///     }
///     async fn reset(&self) -> Result<()> {
///         self.0.store(0, Ordering::Relaxed);
///         Ok(())
///     }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let count = Arc::new(Count::default());
/// let app = Application::builder(Store::memory()).projection(count.clone()).build()?;
///
/// let running = Runtime::start(&app).await?;
/// let stream = StreamId::parse("order-1")?;
/// let e = EventRecord::json("com.acme.Placed", 1, &serde_json::json!({}));
/// app.store().append(&stream, ExpectedRevision::NoStream, vec![e]).await?;
/// running.catch_up().await?;
/// assert_eq!(count.0.load(Ordering::Relaxed), 1);
/// assert!(running.projection("count").is_some());
/// running.shutdown().await?;
/// # Ok::<(), orchestrix::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct Runtime;

impl Runtime {
    /// Starts a consumer for every registered handler and projection and a
    /// task for every background task; stops what it started if one fails.
    ///
    /// # Errors
    /// A handler factory's error, a name registered twice, or a consumer that
    /// cannot start.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub async fn start(app: &Application) -> Result<RuntimeHandle> {
        Self::start_only(app, &RegistrationKind::ALL).await
    }

    /// Like [`start`](Self::start), but starts only the registrations of the
    /// given kinds. A bus runtime (see `orchestrix-backends`) runs the
    /// handlers and projections of [`handlers`](Self::handlers) as bus
    /// consumers and starts the rest here:
    /// `Runtime::start_only(&app, &[RegistrationKind::Task, RegistrationKind::TransactionalProjection])`.
    ///
    /// # Errors
    /// As [`start`](Self::start).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub async fn start_only(
        app: &Application,
        kinds: &[RegistrationKind],
    ) -> Result<RuntimeHandle> {
        let (trigger, shutdown) = Shutdown::new();
        let mut running = RuntimeHandle {
            handlers: Vec::new(),
            projections: Vec::new(),
            transactional: Vec::new(),
            tasks: Vec::new(),
            trigger,
            store: app.store().clone(),
        };
        let registrations = app.registrations();
        let store = app.store();
        let mut names = HashSet::new();
        let mut claim = |name: &str| {
            if names.insert(name.to_owned()) {
                Ok(())
            } else {
                Err(Error::invalid(
                    format!("runtime consumer `{name}`"),
                    "two consumers have this name",
                ))
            }
        };
        for entry in &registrations.entries {
            if !kinds.contains(&entry.kind()) {
                continue;
            }
            match entry {
                Registered::Handler {
                    name,
                    factory,
                    config,
                } => {
                    let handler = build(name.as_deref(), factory, app)?;
                    claim(handler.name())?;
                    let handle =
                        start(store.clone(), Pipeline::Handler(handler), config.clone()).await?;
                    running.handlers.push(handle);
                }
                Registered::Projection { projection, config } => {
                    claim(projection.name())?;
                    let runner = ProjectionRunner::builder(store.clone(), projection.clone())
                        .config(config.clone())
                        .start()
                        .await?;
                    running.projections.push(runner);
                }
                Registered::Transactional { projection, config } => {
                    claim(projection.name())?;
                    let runner = ProjectionRunner::transactional(store.clone(), projection.clone())
                        .config(config.clone())
                        .start()
                        .await?;
                    running.transactional.push(runner);
                }
                Registered::Task(task) => {
                    claim(task.name())?;
                    let (task, app, shutdown) = (task.clone(), app.clone(), shutdown.clone());
                    let name = task.name().to_owned();
                    let join = tokio::spawn(async move { task.run(app, shutdown).await });
                    running.tasks.push((name, join));
                }
            }
        }
        tracing::info!(
            handlers = running.handlers.len(),
            projections = running.projections.len() + running.transactional.len(),
            tasks = running.tasks.len(),
            "runtime started"
        );
        Ok(running)
    }
}

impl Runtime {
    /// Every registered handler (sagas included) and at-least-once
    /// projection, built for `app`, in registration order, so that something
    /// other than [`Runtime::start`] can drive them (a bus consumer group per
    /// handler). Transactional projections and background tasks are not in
    /// the list: start them with [`Runtime::start_only`].
    ///
    /// # Errors
    /// A handler factory's error, or a name registered twice.
    pub fn handlers(app: &Application) -> Result<Vec<RegisteredHandler>> {
        let registrations = app.registrations();
        let mut names = HashSet::new();
        let mut out = Vec::new();
        for entry in &registrations.entries {
            let (kind, handler, config): (_, Arc<dyn EventHandler>, _) = match entry {
                Registered::Handler {
                    name,
                    factory,
                    config,
                } => (
                    RegistrationKind::Handler,
                    build(name.as_deref(), factory, app)?,
                    config,
                ),
                Registered::Projection { projection, config } => (
                    RegistrationKind::Projection,
                    Arc::new(ProjectionHandler::new(projection.clone())),
                    config,
                ),
                Registered::Transactional { .. } | Registered::Task(_) => continue,
            };
            if !names.insert(handler.name().to_owned()) {
                return Err(Error::invalid(
                    format!("runtime consumer `{}`", handler.name()),
                    "two consumers have this name",
                ));
            }
            out.push(RegisteredHandler {
                kind,
                handler,
                config: config.clone(),
            });
        }
        Ok(out)
    }

    /// The registered background tasks.
    #[must_use]
    pub fn tasks(app: &Application) -> Vec<Arc<dyn BackgroundTask>> {
        app.registrations()
            .entries
            .iter()
            .filter_map(|e| match e {
                Registered::Task(task) => Some(task.clone()),
                _ => None,
            })
            .collect()
    }
}

/// The running consumers and tasks of an application.
///
/// Stop with [`shutdown`](Self::shutdown). Dropping it instead stops every
/// consumer and task at once, as a crash would (nothing drained or committed).
pub struct RuntimeHandle {
    handlers: Vec<ConsumerHandle>,
    projections: Vec<ProjectionRunner<dyn Projection>>,
    transactional: Vec<ProjectionRunner<dyn TransactionalProjection>>,
    tasks: Vec<(String, JoinHandle<Result<()>>)>,
    trigger: watch::Sender<bool>,
    store: Store,
}

impl fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuntimeHandle")
            .field(
                "consumers",
                &self
                    .monitors()
                    .iter()
                    .map(ConsumerMonitor::name)
                    .collect::<Vec<_>>(),
            )
            .field(
                "tasks",
                &self.tasks.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl RuntimeHandle {
    /// Monitors of every consumer (handlers and projections).
    #[must_use]
    pub fn monitors(&self) -> Vec<ConsumerMonitor> {
        self.handlers
            .iter()
            .map(ConsumerHandle::monitor)
            .chain(self.projections.iter().map(ProjectionRunner::monitor))
            .chain(self.transactional.iter().map(ProjectionRunner::monitor))
            .collect()
    }

    /// The monitor of the consumer named `name`.
    #[must_use]
    pub fn monitor(&self, name: &str) -> Option<ConsumerMonitor> {
        self.monitors().into_iter().find(|m| m.name() == name)
    }

    /// The runner of the registered [`Projection`] named `name` (for rebuilds).
    #[must_use]
    pub fn projection(&self, name: &str) -> Option<&ProjectionRunner<dyn Projection>> {
        self.projections.iter().find(|r| r.name() == name)
    }

    /// The runner of the registered [`TransactionalProjection`] named `name`.
    #[must_use]
    pub fn transactional_projection(
        &self,
        name: &str,
    ) -> Option<&ProjectionRunner<dyn TransactionalProjection>> {
        self.transactional.iter().find(|r| r.name() == name)
    }

    /// Waits until every consumer has processed up to `head`.
    ///
    /// # Errors
    /// [`Error::Shutdown`] when a consumer stops first.
    pub async fn wait_until_caught_up(&self, head: u64) -> Result<()> {
        for monitor in self.monitors() {
            monitor.wait_until_caught_up(head).await?;
        }
        Ok(())
    }

    /// Reads the head now and waits until every consumer reaches it; returns
    /// that head.
    ///
    /// # Errors
    /// As [`wait_until_caught_up`](Self::wait_until_caught_up), or when the head
    /// cannot be read.
    pub async fn catch_up(&self) -> Result<u64> {
        let head = self.store.head_position().await?;
        self.wait_until_caught_up(head).await?;
        Ok(head)
    }

    /// Stops everything gracefully: shuts down every consumer (drain,
    /// commit), then signals the background tasks and waits for them.
    /// Returns the first error, after stopping everything.
    ///
    /// The tasks are signalled only after the consumers have drained: a
    /// handler may need what a task provides while it drains (a saga's timer
    /// task keeps the saga engine bound to the application; unbound, the
    /// saga's handler would wait for a binding that never comes and the
    /// drain would outlive any grace period).
    ///
    /// # Errors
    /// A consumer's shutdown error or a task's error.
    pub async fn shutdown(mut self) -> Result<()> {
        let mut result = Ok(());
        for handle in std::mem::take(&mut self.handlers) {
            result = result.and(handle.shutdown().await);
        }
        for runner in std::mem::take(&mut self.projections) {
            result = result.and(runner.shutdown().await);
        }
        for runner in std::mem::take(&mut self.transactional) {
            result = result.and(runner.shutdown().await);
        }
        self.trigger.send_replace(true);
        for (name, task) in std::mem::take(&mut self.tasks) {
            let outcome = match task.await {
                Ok(r) => r,
                Err(e) => Err(Error::backend(
                    "runtime",
                    "background task",
                    false,
                    format!("`{name}`: {e}"),
                )),
            };
            result = result.and(outcome);
        }
        tracing::info!("runtime stopped");
        result
    }
}

impl Drop for RuntimeHandle {
    fn drop(&mut self) {
        // Consumers abort in their own `Drop`; tasks need telling.
        for (_, task) in &self.tasks {
            task.abort();
        }
    }
}
