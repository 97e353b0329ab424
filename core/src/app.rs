//! Modules and the application that wires them.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::aggregate::Aggregate;
use crate::error::{Error, Result};
use crate::event::Command;
use crate::executor::{CommandContext, CommandExecutor, CommandOutcome, ExecutorConfig};
use crate::store::Store;

/// A bounded context: registers its aggregates (and, with the runtime, its
/// projections and sagas) with an [`ApplicationBuilder`].
pub trait Module: Send + Sync + 'static {
    /// The module's name, used as the default CloudEvents `source` (`/{name}`).
    fn name(&self) -> &str;

    /// Registers everything the module offers.
    ///
    /// # Errors
    /// A registration error, e.g. a command type registered twice.
    fn register(&self, app: &mut ApplicationBuilder) -> Result<()>;
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

/// Collects modules and aggregates into an [`Application`].
pub struct ApplicationBuilder {
    store: Store,
    defaults: ExecutorConfig,
    handlers: HashMap<TypeId, Handler>,
    modules: Vec<String>,
    current_source: Option<String>,
    extensions: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

impl fmt::Debug for ApplicationBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApplicationBuilder")
            .field("store", &self.store)
            .field("modules", &self.modules)
            .finish_non_exhaustive()
    }
}

impl ApplicationBuilder {
    /// The store everything registered here uses.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Default executor settings for aggregates registered after this call.
    #[must_use]
    pub fn executor_defaults(mut self, config: ExecutorConfig) -> Self {
        self.defaults = config;
        self
    }

    /// Registers a module.
    ///
    /// # Errors
    /// The module's registration error.
    pub fn module(mut self, module: impl Module) -> Result<Self> {
        self.current_source = Some(format!("/{}", module.name()));
        let result = module.register(&mut self);
        self.current_source = None;
        result?;
        self.modules.push(module.name().to_owned());
        Ok(self)
    }

    /// Registers an aggregate with the default executor settings.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when its command type is already registered.
    pub fn aggregate<A: Aggregate>(&mut self) -> Result<&mut Self> {
        let mut config = self.defaults.clone();
        if let Some(source) = &self.current_source {
            config.source.clone_from(source);
        }
        self.aggregate_with::<A>(config)
    }

    /// Registers an aggregate with its own executor settings.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when its command type is already registered.
    pub fn aggregate_with<A: Aggregate>(&mut self, config: ExecutorConfig) -> Result<&mut Self> {
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
        Ok(self)
    }

    /// Stores a value for later components (the runtime keeps its projections
    /// and sagas here).
    pub fn set_extension<T: Any + Send + Sync>(&mut self, value: T) {
        self.extensions.insert(TypeId::of::<T>(), Box::new(value));
    }

    /// A stored value, created with `Default` when absent.
    pub fn extension_mut<T: Any + Send + Sync + Default>(&mut self) -> &mut T {
        self.extensions
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(T::default()))
            .downcast_mut::<T>()
            .unwrap_or_else(|| unreachable!("extension map is keyed by TypeId"))
    }

    /// Finishes the application.
    #[must_use]
    pub fn build(self) -> Application {
        Application {
            inner: Arc::new(Inner {
                store: self.store,
                handlers: self.handlers,
                modules: self.modules,
                extensions: self.extensions,
            }),
        }
    }
}

struct Inner {
    store: Store,
    handlers: HashMap<TypeId, Handler>,
    modules: Vec<String>,
    extensions: HashMap<TypeId, Box<dyn Any + Send + Sync>>,
}

/// Commands in, events out: the wired application. Cheap to clone.
///
/// ```
/// # use orchestrix::{Aggregate, Command, Event};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// # #[event(prefix = "com.acme.counter")]
/// # enum CounterEvent { Incremented { by: u32 } }
/// # struct Increment { id: String, by: u32 }
/// # impl Command for Increment { fn aggregate_id(&self) -> String { self.id.clone() } }
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
/// let mut builder = Application::builder(Store::memory());
/// builder.aggregate::<Counter>()?;
/// let app = builder.build();
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
            defaults: ExecutorConfig::default(),
            handlers: HashMap::new(),
            modules: Vec::new(),
            current_source: None,
            extensions: HashMap::new(),
        }
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.inner.store
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

    /// A value stored by a component at build time.
    #[must_use]
    pub fn extension<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.inner
            .extensions
            .get(&TypeId::of::<T>())
            .and_then(|b| b.downcast_ref())
    }
}
