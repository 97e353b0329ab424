//! Modules and the application that wires them.

use std::any::{Any, TypeId};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::aggregate::Aggregate;
use crate::error::{Error, Result};
use crate::event::{Command, Event};
use crate::executor::{CommandContext, CommandExecutor, CommandOutcome, ExecutorConfig};
use crate::runtime::view::{MemoryReadModels, ReadModel, ReadModelStore, View, ViewProjection};
use crate::runtime::{
    BackgroundTask, ConsumerConfig, EventHandler, Registrations, TransactionalProjection,
};
use crate::saga::{Saga, SagaConfig, SagaEngine};
use crate::store::{Filter, Store};

/// A bounded context: registers its aggregates, projections and sagas with
/// the same chaining calls as an application does.
///
/// ```
/// # use orchestrix::{Aggregate, Command, Event};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// # #[event(prefix = "com.acme.counter")]
/// # enum CounterEvent { Incremented { by: u32 } }
/// # #[derive(Command)] struct Increment { id: String }
/// # #[derive(Debug, thiserror::Error)] #[error("never")] struct Never;
/// # #[derive(Default, Serialize, Deserialize)] struct Counter;
/// # impl Aggregate for Counter {
/// #     const CATEGORY: &'static str = "counter";
/// #     type Command = Increment; type Event = CounterEvent; type Error = Never;
/// #     fn handle(&self, _: &Increment) -> Result<Vec<CounterEvent>, Never> { Ok(vec![CounterEvent::Incremented { by: 1 }]) }
/// #     fn apply(&mut self, _: &CounterEvent) {}
/// # }
/// use orchestrix::{Application, ApplicationBuilder, Module, Store};
///
/// struct Counting;
/// impl Module for Counting {
///     fn name(&self) -> &str { "counting" }              // CloudEvents source `/counting`
///     fn register(&self, app: ApplicationBuilder) -> ApplicationBuilder {
///         app.aggregate::<Counter>()                     // .projection(..).saga(..) likewise
///     }
/// }
///
/// let app = Application::builder(Store::memory()).module(Counting).build()?;
/// assert_eq!(app.modules(), ["counting"]);
/// assert_eq!(app.name(), "counting"); // named after its first module
/// # Ok::<(), orchestrix::Error>(())
/// ```
pub trait Module: Send + Sync + 'static {
    /// The module's name, used as the default CloudEvents `source` (`/{name}`).
    fn name(&self) -> &str;

    /// Registers everything the module offers, by chaining the builder's
    /// calls. Registration errors are collected by the builder and returned
    /// by [`ApplicationBuilder::build`].
    fn register(&self, app: ApplicationBuilder) -> ApplicationBuilder;
}

type Erased = Arc<
    dyn Fn(Box<dyn Any + Send>, CommandContext) -> BoxFuture<'static, Result<CommandOutcome>>
        + Send
        + Sync,
>;

struct Handler {
    aggregate: &'static str,
    run: Erased,
    executor: Arc<dyn Any + Send + Sync>,
}

/// Collects aggregates, projections, sagas, handlers and modules into an
/// [`Application`]. Every call chains; errors are collected and returned by
/// [`build`](Self::build):
///
/// ```text
/// Application::builder(store)
///     .aggregate::<Account>()
///     .projection(Balances)
///     .saga(TransferSaga::default())
///     .module(Notifications)
///     .build()?
/// ```
pub struct ApplicationBuilder {
    store: Store,
    name: Option<String>,
    defaults: ExecutorConfig,
    consumer_defaults: ConsumerConfig,
    saga_defaults: SagaConfig,
    handlers: HashMap<TypeId, Handler>,
    modules: Vec<String>,
    current_source: Option<String>,
    registrations: Registrations,
    sagas: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    views: HashSet<TypeId>,
    read_models: Arc<dyn ReadModelStore>,
    catalog: crate::catalog::Recorder,
    errors: Vec<Error>,
}

impl fmt::Debug for ApplicationBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicationBuilder")
            .field("store", &self.store)
            .field("modules", &self.modules)
            .field("registrations", &self.registrations)
            .field("errors", &self.errors.len())
            .finish_non_exhaustive()
    }
}

impl ApplicationBuilder {
    /// The store everything registered here uses.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn collect(mut self, result: Result<()>) -> Self {
        if let Err(e) = result {
            self.errors.push(e);
        }
        self
    }

    /// The application's name: what its bus resources are named after by
    /// default (the NATS stream and the Kafka topic the relay publishes to,
    /// the consumer groups), so that two applications on one broker never
    /// share them. 1 to 64 ASCII letters, digits, `-` or `_`. Default: the
    /// first registered module's name (`bank` for a `bank` module), or
    /// `orchestrix` without modules.
    ///
    /// ```
    /// use orchestrix::{Application, Store};
    /// let app = Application::builder(Store::memory()).name("billing").build()?;
    /// assert_eq!(app.name(), "billing");
    /// assert!(Application::builder(Store::memory()).name("no spaces").build().is_err());
    /// # Ok::<(), orchestrix::Error>(())
    /// ```
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Default executor settings for aggregates registered after this call.
    #[must_use]
    pub fn executor_defaults(mut self, config: ExecutorConfig) -> Self {
        self.defaults = config;
        self
    }

    /// Default consumer settings (partitions, retries, start position) for
    /// projections, sagas and handlers registered after this call.
    #[must_use]
    pub fn consumer_defaults(mut self, config: ConsumerConfig) -> Self {
        self.consumer_defaults = config;
        self
    }

    /// Default saga engine settings (clock, timer interval) for sagas
    /// registered after this call.
    #[must_use]
    pub fn saga_defaults(mut self, config: SagaConfig) -> Self {
        self.saga_defaults = config;
        self
    }

    /// Where typed projections ([`View`]s) registered after this call keep
    /// their rows; [`MemoryReadModels`] by
    /// default.
    #[must_use]
    pub fn read_models(mut self, store: Arc<dyn ReadModelStore>) -> Self {
        self.read_models = store;
        self
    }

    /// Registers a module: it chains its own registrations; aggregates it
    /// registers get the CloudEvents source `/{name}`.
    #[must_use]
    pub fn module(mut self, module: impl Module) -> Self {
        let name = module.name().to_owned();
        let outer = self.current_source.replace(format!("/{name}"));
        let mut this = module.register(self);
        this.current_source = outer;
        this.modules.push(name);
        this
    }

    /// Registers an aggregate with the default executor settings.
    /// [`build`](Self::build) fails when its command type is already
    /// registered.
    #[must_use]
    pub fn aggregate<A: Aggregate>(self) -> Self {
        let mut config = self.defaults.clone();
        if let Some(source) = &self.current_source {
            config.source.clone_from(source);
        }
        self.aggregate_with::<A>(config)
    }

    /// Registers an aggregate with its own executor settings.
    #[must_use]
    pub fn aggregate_with<A: Aggregate>(mut self, config: ExecutorConfig) -> Self {
        let result = self.add_aggregate::<A>(config);
        self.collect(result)
    }

    fn add_aggregate<A: Aggregate>(&mut self, config: ExecutorConfig) -> Result<()> {
        crate::id::validate_category(A::CATEGORY)?;
        let key = TypeId::of::<A::Command>();
        if let Some(existing) = self.handlers.get(&key) {
            return Err(Error::invalid(
                format!("registration of aggregate `{}`", A::CATEGORY),
                format!(
                    "its command type is already handled by `{}`",
                    existing.aggregate
                ),
            ));
        }
        self.catalog.aggregate::<A>(&config.source);
        let executor = CommandExecutor::<A>::new(self.store.clone(), config);
        let for_run = executor.clone();
        let run: Erased = Arc::new(move |command: Box<dyn Any + Send>, context| {
            let executor = for_run.clone();
            Box::pin(async move {
                let command = command
                    .downcast::<A::Command>()
                    .map_err(|_| Error::invalid("command", "dispatched to the wrong aggregate"))?;
                executor.execute_with(*command, context).await
            })
        });
        self.handlers.insert(
            key,
            Handler {
                aggregate: A::CATEGORY,
                run,
                executor: Arc::new(executor),
            },
        );
        Ok(())
    }

    /// Registers a projection under the default consumer settings: a typed
    /// [`View`] (its rows in the [`read_models`](Self::read_models) store,
    /// queried with [`Application::read_model`]), or an untyped
    /// [`Projection`](crate::runtime::Projection) as `Arc<P>` (connectors,
    /// hand-written read models).
    #[must_use]
    pub fn projection(self, projection: impl IntoProjection) -> Self {
        let config = self.consumer_defaults.clone();
        self.projection_with(projection, config)
    }

    /// Registers a projection under its own consumer settings.
    #[must_use]
    pub fn projection_with(
        mut self,
        projection: impl IntoProjection,
        config: ConsumerConfig,
    ) -> Self {
        let result = projection.register(&mut self, config);
        self.collect(result)
    }

    /// Registers an exactly-once
    /// [`TransactionalProjection`]
    /// (read model and checkpoint in one transaction of its database).
    #[must_use]
    pub fn transactional_projection(
        mut self,
        projection: Arc<dyn TransactionalProjection>,
    ) -> Self {
        let config = self.consumer_defaults.clone();
        let (name, filter) = (projection.name().to_owned(), projection.filter());
        let result = self.registrations.add_transactional(projection, config);
        if result.is_ok() {
            self.catalog
                .projection(&name, crate::catalog::ProjectionKind::Transactional, filter);
        }
        self.collect(result)
    }

    /// Registers a saga with the default saga and consumer settings; its
    /// engine is [`Application::saga`].
    ///
    /// At [`Runtime::start`](crate::runtime::Runtime::start) a consumer named
    /// `saga-{NAME}` feeds it the events of [`Saga::filter`], and a background
    /// task `saga-{NAME}-timers` finishes interrupted compensations and fires
    /// due timeouts until shutdown.
    #[must_use]
    pub fn saga<S: Saga>(self, saga: S) -> Self {
        let (config, consumer) = (self.saga_defaults.clone(), self.consumer_defaults.clone());
        self.saga_with(saga, config, consumer)
    }

    /// Registers a saga with its own engine and consumer settings.
    #[must_use]
    pub fn saga_with<S: Saga>(
        mut self,
        saga: S,
        config: SagaConfig,
        consumer: ConsumerConfig,
    ) -> Self {
        self.catalog.saga(&saga);
        let result = crate::saga::registry::register(
            &mut self.registrations,
            &self.store,
            saga,
            config,
            consumer,
        )
        .and_then(|engine| {
            if self
                .sagas
                .insert(TypeId::of::<S>(), Arc::new(engine))
                .is_some()
            {
                return Err(Error::invalid(
                    format!("registration of saga `{}`", S::NAME),
                    "this saga type is already registered",
                ));
            }
            Ok(())
        });
        if result.is_err() {
            self.catalog.forget_last_saga();
        }
        self.collect(result)
    }

    /// Registers an event handler (a notifier, a connector) to run in its
    /// own consumer under the default consumer settings.
    #[must_use]
    pub fn handler(mut self, handler: Arc<dyn EventHandler>) -> Self {
        let config = self.consumer_defaults.clone();
        let (name, filter) = (handler.name().to_owned(), handler.filter());
        let result = self.registrations.add_handler(handler, config);
        if result.is_ok() {
            self.catalog.handler(&name, filter);
        }
        self.collect(result)
    }

    /// Registers a handler built at start from the application (for handlers
    /// that send commands through it) under `name`, handling what `filter`
    /// passes, with `config`. Name and filter are known now, so the
    /// [`Catalog`](crate::catalog::Catalog) lists the handler and a name
    /// clash fails [`build`](Self::build); at start the factory must build a
    /// handler of that name.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use orchestrix::catalog::Catalog;
    /// use orchestrix::runtime::{ConsumerConfig, Delivery, EventHandler};
    /// use orchestrix::store::Filter;
    /// use orchestrix::{Application, RecordedEvent, Store};
    ///
    /// #[derive(Debug)]
    /// struct Mailer(Application);
    /// #[async_trait::async_trait]
    /// impl EventHandler for Mailer {
    ///     fn name(&self) -> &str { "mailer" }
    ///     fn filter(&self) -> Filter { Filter::all().categories(["account"]) }
    ///     async fn handle(&self, _: &RecordedEvent, _: &Delivery) -> orchestrix::Result<()> { Ok(()) }
    /// }
    ///
    /// let app = Application::builder(Store::memory())
    ///     .handler_factory("mailer", Filter::all().categories(["account"]), ConsumerConfig::default(),
    ///         |app: &Application| Ok(Arc::new(Mailer(app.clone())) as Arc<dyn EventHandler>))
    ///     .build()?;
    /// let catalog = Catalog::of(&app);
    /// assert_eq!(catalog.handlers[0].name, "mailer");
    /// # Ok::<(), orchestrix::Error>(())
    /// ```
    #[must_use]
    pub fn handler_factory<F>(
        mut self,
        name: &str,
        filter: Filter,
        config: ConsumerConfig,
        factory: F,
    ) -> Self
    where
        F: Fn(&Application) -> Result<Arc<dyn EventHandler>> + Send + Sync + 'static,
    {
        let result = self
            .registrations
            .add_named_factory(name, config, Arc::new(factory));
        if result.is_ok() {
            self.catalog.handler(name, filter);
        }
        self.collect(result)
    }

    /// Registers a handler built at start from the application (for handlers
    /// that send commands through it), under `config`. Its name is checked
    /// for clashes at start. Its name and filter are not known before start,
    /// so the [`Catalog`](crate::catalog::Catalog) cannot list it: prefer
    /// [`handler_factory`](Self::handler_factory).
    #[must_use]
    pub fn handler_with<F>(mut self, config: ConsumerConfig, factory: F) -> Self
    where
        F: Fn(&Application) -> Result<Arc<dyn EventHandler>> + Send + Sync + 'static,
    {
        self.registrations
            .add_handler_with(config, Arc::new(factory));
        self
    }

    /// Registers a [`BackgroundTask`] started and stopped with the runtime.
    #[must_use]
    pub fn task(mut self, task: Arc<dyn BackgroundTask>) -> Self {
        let result = self.registrations.add_task(task);
        self.collect(result)
    }

    /// Records an error of the caller's own (say, a module's setup), returned
    /// by [`build`](Self::build).
    #[must_use]
    pub fn error(mut self, error: Error) -> Self {
        self.errors.push(error);
        self
    }

    /// Finishes the application.
    ///
    /// # Errors
    /// The registration errors: the only one as is, several as one
    /// [`Error::InvalidInput`] listing them all.
    pub fn build(mut self) -> Result<Application> {
        match self.errors.len() {
            0 => {}
            1 => return Err(self.errors.remove(0)),
            n => {
                let reasons: Vec<String> = self.errors.iter().map(ToString::to_string).collect();
                return Err(Error::invalid(
                    "application",
                    format!("{n} registration errors: {}", reasons.join("; ")),
                ));
            }
        }
        let name = match self.name {
            Some(name) => validate_name(name)?,
            None => default_name(&self.modules),
        };
        Ok(Application {
            inner: Arc::new(Inner {
                name,
                store: self.store,
                handlers: self.handlers,
                modules: self.modules,
                registrations: self.registrations,
                sagas: self.sagas,
                views: self.views,
                read_models: self.read_models,
                catalog: self.catalog,
            }),
        })
    }
}

/// What [`ApplicationBuilder::projection`] accepts: a typed [`View`], or an
/// untyped [`Projection`](crate::runtime::Projection) as `Arc<P>`.
pub trait IntoProjection {
    /// Adds itself to `builder`'s registrations under `config`.
    ///
    /// # Errors
    /// A name registered twice.
    fn register(self, builder: &mut ApplicationBuilder, config: ConsumerConfig) -> Result<()>;
}

impl<V: View> IntoProjection for V {
    fn register(self, builder: &mut ApplicationBuilder, config: ConsumerConfig) -> Result<()> {
        let projection = ViewProjection::new(self, builder.read_models.clone())
            .with_codec(builder.store.codec().clone());
        builder
            .registrations
            .add_projection(Arc::new(projection), config)?;
        builder.views.insert(TypeId::of::<V>());
        builder.catalog.projection(
            V::NAME,
            crate::catalog::ProjectionKind::View,
            Filter::all().event_types(V::Event::event_types().iter().map(|t| t.event_type)),
        );
        Ok(())
    }
}

impl<P: crate::runtime::Projection> IntoProjection for Arc<P> {
    fn register(self, builder: &mut ApplicationBuilder, config: ConsumerConfig) -> Result<()> {
        let projection: Arc<dyn crate::runtime::Projection> = self;
        projection.register(builder, config)
    }
}

impl IntoProjection for Arc<dyn crate::runtime::Projection> {
    fn register(self, builder: &mut ApplicationBuilder, config: ConsumerConfig) -> Result<()> {
        let (name, filter) = (self.name().to_owned(), self.filter());
        builder.registrations.add_projection(self, config)?;
        builder
            .catalog
            .projection(&name, crate::catalog::ProjectionKind::Projection, filter);
        Ok(())
    }
}

/// A valid application name, or why not.
fn validate_name(name: String) -> Result<String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(name)
    } else {
        Err(Error::invalid(
            format!("application name `{name}`"),
            "must be 1 to 64 ASCII letters, digits, `-` or `_`",
        ))
    }
}

/// The first module's name with other characters replaced by `-`, or
/// `orchestrix`.
fn default_name(modules: &[String]) -> String {
    let from_module: String = modules
        .first()
        .map(|m| {
            m.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '-'
                    }
                })
                .take(64)
                .collect()
        })
        .unwrap_or_default();
    if from_module.is_empty() {
        "orchestrix".to_owned()
    } else {
        from_module
    }
}

struct Inner {
    name: String,
    store: Store,
    handlers: HashMap<TypeId, Handler>,
    modules: Vec<String>,
    registrations: Registrations,
    sagas: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
    views: HashSet<TypeId>,
    read_models: Arc<dyn ReadModelStore>,
    catalog: crate::catalog::Recorder,
}

/// Commands in, events out: the wired application. Cheap to clone.
///
/// ```
/// # use orchestrix::{Aggregate, Command, Event};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// # #[event(prefix = "com.acme.counter")]
/// # enum CounterEvent { Incremented { by: u32 } }
/// # #[derive(Command)] #[command(id = id)] struct Increment { id: String, by: u32 }
/// # #[derive(Debug, thiserror::Error)] #[error("zero")] struct Zero;
/// # #[derive(Default, Serialize, Deserialize)] struct Counter { value: u64 }
/// # impl Aggregate for Counter {
/// #     const CATEGORY: &'static str = "counter";
/// #     type Command = Increment; type Event = CounterEvent; type Error = Zero;
/// #     fn handle(&self, c: &Increment) -> Result<Vec<CounterEvent>, Zero> {
/// #         if c.by == 0 { Err(Zero) } else { Ok(vec![CounterEvent::Incremented { by: c.by }]) } }
/// #     fn apply(&mut self, e: &CounterEvent) { let CounterEvent::Incremented { by } = e; self.value += u64::from(*by); }
/// # }
/// use orchestrix::{Application, Store};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let app = Application::builder(Store::memory()).aggregate::<Counter>().build()?;
/// let outcome = app.execute(Increment { id: "c1".into(), by: 2 }).await?;
/// assert_eq!(outcome.revision, Some(0));
/// assert!(app.execute(Increment { id: "c1".into(), by: 0 }).await.is_err());
/// assert_eq!(app.load::<Counter>("c1").await?.state.value, 2);
/// # Ok::<(), orchestrix::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Application {
    inner: Arc<Inner>,
}

impl fmt::Debug for Application {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Application")
            .field("name", &self.inner.name)
            .field("store", &self.inner.store)
            .field("modules", &self.inner.modules)
            .field(
                "aggregates",
                &self
                    .inner
                    .handlers
                    .values()
                    .map(|h| h.aggregate)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Application {
    /// Starts building an application on a store.
    #[must_use]
    pub fn builder(store: Store) -> ApplicationBuilder {
        ApplicationBuilder {
            store,
            name: None,
            defaults: ExecutorConfig::default(),
            consumer_defaults: ConsumerConfig::default(),
            saga_defaults: SagaConfig::default(),
            handlers: HashMap::new(),
            modules: Vec::new(),
            current_source: None,
            registrations: Registrations::default(),
            sagas: HashMap::new(),
            views: HashSet::new(),
            read_models: Arc::new(MemoryReadModels::default()),
            catalog: crate::catalog::Recorder::default(),
            errors: Vec::new(),
        }
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The application's name (see [`ApplicationBuilder::name`]).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Names of the registered modules.
    #[must_use]
    pub fn modules(&self) -> &[String] {
        &self.inner.modules
    }

    /// Executes a command with a fresh context.
    ///
    /// # Errors
    /// [`Error::NoHandler`] when no aggregate handles `C`, or the executor's error.
    pub async fn execute<C: Command>(&self, command: C) -> Result<CommandOutcome> {
        self.execute_with(command, CommandContext::default()).await
    }

    /// Executes a command with a context (command id, correlation, trace).
    ///
    /// # Errors
    /// As [`execute`](Self::execute).
    pub async fn execute_with<C: Command>(
        &self,
        command: C,
        context: CommandContext,
    ) -> Result<CommandOutcome> {
        let Some(handler) = self.inner.handlers.get(&TypeId::of::<C>()) else {
            return Err(Error::NoHandler {
                command: command.command_type().to_owned(),
            });
        };
        (handler.run)(Box::new(command), context).await
    }

    /// The executor of aggregate `A`.
    ///
    /// # Errors
    /// [`Error::NoHandler`] when `A` is not registered.
    pub fn executor<A: Aggregate>(&self) -> Result<CommandExecutor<A>> {
        self.inner
            .handlers
            .get(&TypeId::of::<A::Command>())
            .and_then(|h| h.executor.downcast_ref::<CommandExecutor<A>>())
            .cloned()
            .ok_or_else(|| Error::NoHandler {
                command: std::any::type_name::<A::Command>().to_owned(),
            })
    }

    /// Loads an aggregate's current state.
    ///
    /// # Errors
    /// As [`CommandExecutor::load`].
    pub async fn load<A: Aggregate>(&self, id: &str) -> Result<crate::executor::Loaded<A>> {
        self.executor::<A>()?.load(id).await
    }

    /// What was registered with the runtime (projections, sagas, handlers,
    /// tasks): what [`Runtime::start`](crate::runtime::Runtime::start) starts.
    #[must_use]
    pub fn registrations(&self) -> &Registrations {
        &self.inner.registrations
    }

    /// The engine of saga `S` (status queries, `catch_up` in tests).
    ///
    /// # Errors
    /// [`Error::NotFound`] when `S` is not registered.
    pub fn saga<S: Saga>(&self) -> Result<SagaEngine<S>> {
        self.inner
            .sagas
            .get(&TypeId::of::<S>())
            .and_then(|e| e.downcast_ref::<SagaEngine<S>>())
            .cloned()
            .ok_or_else(|| Error::NotFound {
                what: format!("saga `{}` (register it with `.saga(..)`)", S::NAME),
            })
    }

    /// The query side of the typed projection `V`.
    ///
    /// # Errors
    /// [`Error::NotFound`] when `V` is not registered.
    pub fn read_model<V: View>(&self) -> Result<ReadModel<V>> {
        if !self.inner.views.contains(&TypeId::of::<V>()) {
            return Err(Error::NotFound {
                what: format!(
                    "read model `{}` (register it with `.projection(..)`)",
                    V::NAME
                ),
            });
        }
        Ok(ReadModel::new(self.inner.read_models.clone()))
    }

    /// What the builder recorded for [`Catalog::of`](crate::catalog::Catalog::of).
    pub(crate) fn catalog_recorder(&self) -> &crate::catalog::Recorder {
        &self.inner.catalog
    }

    /// The store of the typed read models.
    #[must_use]
    pub fn read_model_store(&self) -> &Arc<dyn ReadModelStore> {
        &self.inner.read_models
    }
}
