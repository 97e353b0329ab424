//! Projections: read models kept up to date by a consumer, with rebuilds.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use async_trait::async_trait;

use super::config::{ConsumerConfig, StartFrom, forward_config_setters};
use super::consumer::{ConsumerHandle, ConsumerMonitor, Pipeline, start};
use super::handler::{Delivery, EventHandler};
use super::progress::Lag;
use super::transactional::{Erased, TransactionalProjection};
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::store::{Filter, Store};

/// A read model built from events.
///
/// Delivery is at-least-once: after a crash, events after the last committed
/// checkpoint are applied again, and a dead letter may be replayed later. Make
/// [`apply`](Self::apply) idempotent: remember the [`RecordedEvent::id`] (or the
/// stream revision / global position) of what was applied and skip repeats,
/// or use an upsert that lands on the same state. When the read model lives in
/// the store's database, implement [`TransactionalProjection`] instead for
/// exactly-once effects.
///
/// Events of one stream arrive in order; events of different streams may be
/// applied concurrently when the runner has several partitions. A decode
/// failure should be returned as is (it is permanent): the event goes to the
/// dead letters and the projection carries on.
#[async_trait]
pub trait Projection: Send + Sync + fmt::Debug + 'static {
    /// A stable name: the checkpoint and dead-letter key. A new version of the
    /// read model (see [`ProjectionRunner::rebuild_into`]) needs a new name.
    fn name(&self) -> &str;

    /// The events it wants (all by default).
    fn filter(&self) -> Filter {
        Filter::all()
    }

    /// Applies one event.
    async fn apply(&self, event: &RecordedEvent) -> Result<()>;

    /// Clears the read model, before a rebuild replays every event.
    async fn reset(&self) -> Result<()>;
}

/// Runs a [`Projection`] as an [`EventHandler`] (for a
/// [`Consumer`](super::Consumer), or for [`DeadLetters::replay`](super::DeadLetters::replay)).
#[derive(Debug)]
pub struct ProjectionHandler<P: ?Sized> {
    projection: Arc<P>,
}

impl<P: Projection + ?Sized> ProjectionHandler<P> {
    /// Wraps a projection.
    #[must_use]
    pub fn new(projection: Arc<P>) -> Self {
        Self { projection }
    }
}

#[async_trait]
impl<P: Projection + ?Sized> EventHandler for ProjectionHandler<P> {
    fn name(&self) -> &str {
        self.projection.name()
    }

    fn filter(&self) -> Filter {
        self.projection.filter()
    }

    async fn handle(&self, event: &RecordedEvent, _delivery: &Delivery) -> Result<()> {
        self.projection.apply(event).await
    }
}

/// How a runner drives, resets and forgets one kind of projection.
#[async_trait]
trait Driver<P: ?Sized + Send + Sync + 'static>: Send + Sync + 'static {
    fn name(&self, projection: &P) -> String;
    fn pipeline(&self, projection: &Arc<P>) -> Pipeline;
    /// Clears the read model and its checkpoint.
    async fn reset(&self, store: &Store, projection: &P) -> Result<()>;
    async fn delete_checkpoint(&self, store: &Store, projection: &P) -> Result<()>;
}

/// [`Projection`]s: checkpoint in the [`CheckpointStore`](crate::store::CheckpointStore).
struct AtLeastOnce;

#[async_trait]
impl<P: Projection + ?Sized> Driver<P> for AtLeastOnce {
    fn name(&self, projection: &P) -> String {
        projection.name().to_owned()
    }

    fn pipeline(&self, projection: &Arc<P>) -> Pipeline {
        Pipeline::Handler(Arc::new(ProjectionHandler::new(projection.clone())))
    }

    async fn reset(&self, store: &Store, projection: &P) -> Result<()> {
        // Checkpoint first: if the reset then fails, the next start replays
        // onto the old model (idempotent apply copes), instead of skipping
        // events onto an empty one.
        store
            .backend()
            .checkpoints
            .delete_checkpoint(projection.name())
            .await?;
        projection.reset().await
    }

    async fn delete_checkpoint(&self, store: &Store, projection: &P) -> Result<()> {
        store
            .backend()
            .checkpoints
            .delete_checkpoint(projection.name())
            .await
    }
}

/// [`TransactionalProjection`]s: checkpoint in the read model's database.
struct ExactlyOnce;

#[async_trait]
impl<P: TransactionalProjection + ?Sized> Driver<P> for ExactlyOnce {
    fn name(&self, projection: &P) -> String {
        projection.name().to_owned()
    }

    fn pipeline(&self, projection: &Arc<P>) -> Pipeline {
        Pipeline::Transactional(Arc::new(Erased(projection.clone())))
    }

    async fn reset(&self, _store: &Store, projection: &P) -> Result<()> {
        projection.reset(projection.name()).await
    }

    async fn delete_checkpoint(&self, _store: &Store, projection: &P) -> Result<()> {
        projection.delete_checkpoint(projection.name()).await
    }
}

/// Configures and starts a [`ProjectionRunner`].
#[must_use]
pub struct ProjectionRunnerBuilder<P: ?Sized + Send + Sync + 'static> {
    store: Store,
    projection: Arc<P>,
    driver: Arc<dyn Driver<P>>,
    config: ConsumerConfig,
}

impl<P: ?Sized + Send + Sync + fmt::Debug + 'static> fmt::Debug for ProjectionRunnerBuilder<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionRunnerBuilder")
            .field("projection", &self.projection)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<P: ?Sized + Send + Sync + 'static> ProjectionRunnerBuilder<P> {
    forward_config_setters!();

    /// Starts the projection's consumer.
    ///
    /// # Errors
    /// When the checkpoint or the head cannot be read.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub async fn start(self) -> Result<ProjectionRunner<P>> {
        let handle = start(
            self.store.clone(),
            self.driver.pipeline(&self.projection),
            self.config.clone(),
        )
        .await?;
        Ok(ProjectionRunner {
            store: self.store,
            config: self.config,
            driver: self.driver,
            current: RwLock::new(self.projection),
            monitor: RwLock::new(handle.monitor()),
            consumer: Mutex::new(Some(handle)),
            switching: tokio::sync::Mutex::new(()),
        })
    }
}

/// Keeps a projection up to date: a [`Consumer`](super::Consumer) of it
/// (batches, partitions, retries, dead letters, checkpoints, lag), plus
/// rebuilds.
///
/// - [`ProjectionRunner::builder`] runs a [`Projection`]: at-least-once, the
///   checkpoint in the store's [`CheckpointStore`](crate::store::CheckpointStore).
/// - [`ProjectionRunner::transactional`] runs a [`TransactionalProjection`]:
///   exactly-once, the checkpoint committed with each batch.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
/// use orchestrix::runtime::{Projection, ProjectionRunner};
/// use orchestrix::store::ExpectedRevision;
/// use orchestrix::{EventRecord, RecordedEvent, Result, Store, StreamId};
///
/// /// Events per stream.
/// #[derive(Debug, Default)]
/// struct PerStream(Mutex<HashMap<String, u64>>);
///
/// #[async_trait::async_trait]
/// impl Projection for PerStream {
///     fn name(&self) -> &str { "per-stream" }
///     async fn apply(&self, event: &RecordedEvent) -> Result<()> {
///         // Idempotent: the count is the revision + 1, however often it runs.
///         self.0.lock().unwrap().insert(event.stream_id.to_string(), event.revision + 1);
///         Ok(())
///     }
///     async fn reset(&self) -> Result<()> {
///         self.0.lock().unwrap().clear();
///         Ok(())
///     }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Store::memory();
/// let stream = StreamId::parse("order-1")?;
/// let e = |t: &str| EventRecord::json(t, 1, &serde_json::json!({}));
/// store.append(&stream, ExpectedRevision::Any, vec![e("com.acme.Placed"), e("com.acme.Paid")]).await?;
///
/// let runner = ProjectionRunner::builder(store.clone(), Arc::new(PerStream::default())).partitions(4).start().await?;
/// runner.catch_up().await?;
/// assert_eq!(runner.projection().0.lock().unwrap()["order-1"], 2);
/// assert!(runner.lag().await?.is_caught_up());
///
/// runner.rebuild().await?; // reset, replay from the start, wait until caught up
/// assert_eq!(runner.projection().0.lock().unwrap()["order-1"], 2);
/// runner.shutdown().await?;
/// # Ok::<(), orchestrix::Error>(()) }).unwrap();
/// ```
pub struct ProjectionRunner<P: ?Sized + Send + Sync + 'static> {
    store: Store,
    config: ConsumerConfig,
    driver: Arc<dyn Driver<P>>,
    current: RwLock<Arc<P>>,
    monitor: RwLock<ConsumerMonitor>,
    consumer: Mutex<Option<ConsumerHandle>>,
    switching: tokio::sync::Mutex<()>,
}

impl<P: ?Sized + Send + Sync + fmt::Debug + 'static> fmt::Debug for ProjectionRunner<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("projection", &self.projection())
            .field("consumer", &self.monitor())
            .finish_non_exhaustive()
    }
}

impl<P: Projection + ?Sized> ProjectionRunner<P> {
    /// A runner of an at-least-once [`Projection`].
    pub fn builder(store: Store, projection: Arc<P>) -> ProjectionRunnerBuilder<P> {
        ProjectionRunnerBuilder {
            store,
            projection,
            driver: Arc::new(AtLeastOnce),
            config: ConsumerConfig::default(),
        }
    }
}

impl<P: TransactionalProjection + ?Sized> ProjectionRunner<P> {
    /// A runner of an exactly-once [`TransactionalProjection`] (one partition;
    /// the checkpoint settings do not apply, each batch commits its own).
    pub fn transactional(store: Store, projection: Arc<P>) -> ProjectionRunnerBuilder<P> {
        ProjectionRunnerBuilder {
            store,
            projection,
            driver: Arc::new(ExactlyOnce),
            config: ConsumerConfig::default(),
        }
    }
}

impl<P: ?Sized + Send + Sync + 'static> ProjectionRunner<P> {
    /// The current version of the projection (query it for the read model).
    #[must_use]
    pub fn projection(&self) -> Arc<P> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The current projection's name.
    #[must_use]
    pub fn name(&self) -> String {
        self.driver.name(&self.projection())
    }

    /// A monitor of the current consumer (replaced by a rebuild).
    #[must_use]
    pub fn monitor(&self) -> ConsumerMonitor {
        self.monitor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// See [`ConsumerMonitor::processed_position`].
    #[must_use]
    pub fn processed_position(&self) -> u64 {
        self.monitor().processed_position()
    }

    /// See [`ConsumerMonitor::lag`].
    ///
    /// # Errors
    /// When the head cannot be read.
    pub async fn lag(&self) -> Result<Lag> {
        self.monitor().lag().await
    }

    /// See [`ConsumerMonitor::wait_until_caught_up`].
    ///
    /// # Errors
    /// [`Error::Shutdown`] when the consumer stops first.
    pub async fn wait_until_caught_up(&self, head: u64) -> Result<()> {
        self.monitor().wait_until_caught_up(head).await
    }

    /// See [`ConsumerMonitor::catch_up`].
    ///
    /// # Errors
    /// As [`ConsumerMonitor::catch_up`].
    pub async fn catch_up(&self) -> Result<u64> {
        self.monitor().catch_up().await
    }

    fn take_consumer(&self) -> Option<ConsumerHandle> {
        self.consumer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn install(&self, handle: ConsumerHandle) -> Option<ConsumerHandle> {
        *self.monitor.write().unwrap_or_else(PoisonError::into_inner) = handle.monitor();
        self.consumer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(handle)
    }

    /// Rebuilds in place: stops the consumer, clears the read model and its
    /// checkpoint, replays every event from the start, and returns once the
    /// replay has reached the head as it was when the rebuild began. Queries
    /// see a partial model meanwhile; use [`rebuild_into`](Self::rebuild_into)
    /// to avoid that.
    ///
    /// # Errors
    /// A store or reset error (the consumer is then restarted as configured),
    /// or [`Error::Shutdown`] when the runner is shut down meanwhile.
    pub async fn rebuild(&self) -> Result<()> {
        let _one_at_a_time = self.switching.lock().await;
        let head = self.store.head_position().await?;
        let projection = self.projection();
        if let Some(old) = self.take_consumer() {
            old.shutdown().await?;
        }
        tracing::info!(projection = %self.driver.name(&projection), head, "rebuilding projection");
        if let Err(e) = self.driver.reset(&self.store, &projection).await {
            let handle = start(
                self.store.clone(),
                self.driver.pipeline(&projection),
                self.config.clone(),
            )
            .await?;
            self.install(handle);
            return Err(e);
        }
        let config = self.config.clone().start_from(StartFrom::Beginning);
        let handle = start(
            self.store.clone(),
            self.driver.pipeline(&projection),
            config,
        )
        .await?;
        let monitor = handle.monitor();
        self.install(handle);
        monitor.wait_until_caught_up(head).await
    }

    /// Builds a new version of the read model side by side: clears `next`,
    /// replays every event into it from the start while the current version
    /// keeps serving and following live events, and once `next` has reached
    /// the head (as it was when this began) switches to it: stops the current
    /// version's consumer, deletes its checkpoint, and returns it (drop its
    /// storage when no reader needs it any more). `next` then follows live
    /// events.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `next` has the current version's name (each
    /// version needs its own checkpoint); a store or reset error, in which case
    /// nothing is switched.
    pub async fn rebuild_into(&self, next: Arc<P>) -> Result<Arc<P>> {
        let _one_at_a_time = self.switching.lock().await;
        let current = self.projection();
        let (old_name, new_name) = (self.driver.name(&current), self.driver.name(&next));
        if old_name == new_name {
            return Err(Error::invalid(
                format!("rebuild of projection `{old_name}`"),
                "the new version needs a name of its own (it has its own checkpoint)",
            ));
        }
        tracing::info!(from = %old_name, to = %new_name, "rebuilding projection into a new version");
        self.driver.reset(&self.store, &next).await?;
        let head = self.store.head_position().await?;
        let config = self.config.clone().start_from(StartFrom::Beginning);
        let handle = start(self.store.clone(), self.driver.pipeline(&next), config).await?;
        // On error the new consumer is dropped (stopped) and nothing switches.
        handle.wait_until_caught_up(head).await?;
        let old = self.install(handle);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
        if let Some(old) = old
            && let Err(e) = old.shutdown().await
        {
            tracing::warn!(projection = %old_name, error = %e, "the old version did not stop cleanly");
        }
        self.driver.delete_checkpoint(&self.store, &current).await?;
        tracing::info!(from = %old_name, to = %new_name, "switched to the new version");
        Ok(current)
    }

    /// Stops the consumer gracefully (drain, commit). The runner then stays
    /// stopped.
    ///
    /// # Errors
    /// As [`ConsumerHandle::shutdown`].
    pub async fn shutdown(&self) -> Result<()> {
        let _one_at_a_time = self.switching.lock().await;
        match self.take_consumer() {
            Some(handle) => handle.shutdown().await,
            None => Ok(()),
        }
    }
}
