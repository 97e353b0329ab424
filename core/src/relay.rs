//! The outbox relay: from any store to any bus, in order, never skipping.
//!
//! A [`Relay`] reads the all-stream from its checkpoint (catch-up, then live),
//! hands batches to a [`Publisher`] (Kafka, NATS JetStream, in-process) and
//! saves the checkpoint only after the publisher confirmed the whole batch.
//! Delivery is at-least-once: after a crash the last unconfirmed batch is
//! published again, and the event id is the dedupe key downstream
//! (`Nats-Msg-Id` on JetStream, idempotent consumers on Kafka).
//!
//! Every publish call runs in an `orchestrix.publish` span linked to the
//! traces of the events it carries, and counts in `orchestrix_publishes_total`
//! and `orchestrix_events_published_total`; [`Relay::record_lag`] samples
//! `orchestrix_relay_lag_events`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt as _;
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::error::Result;
use crate::event::RecordedEvent;
use crate::runtime::retry::RetryPolicy;
use crate::store::{Filter, Store};
use crate::telemetry::metrics as telemetry;

/// A bus that events are published to.
#[async_trait]
pub trait Publisher: Send + Sync + fmt::Debug + 'static {
    /// A short name for spans and checkpoints, e.g. `kafka`.
    fn name(&self) -> &str;

    /// Publishes the events and returns once the bus has acknowledged every
    /// one. Events of one stream are given in revision order and must be
    /// published in that order (same partition, sequential).
    async fn publish(&self, events: &[RecordedEvent]) -> Result<()>;

    /// The highest global position the bus already holds durably from this
    /// publisher, when the bus can tell (`None`, the default, when it
    /// cannot).
    ///
    /// A relay starts after the larger of its checkpoint and this position.
    /// A publisher that commits each batch atomically (Kafka transactions)
    /// answers it from the bus itself, so a crash between the bus's commit and
    /// the relay's checkpoint does not publish the batch a second time.
    async fn published_up_to(&self) -> Result<Option<u64>> {
        Ok(None)
    }
}

/// Relay settings.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Checkpoint name (default `relay:{publisher name}`).
    pub checkpoint: Option<String>,
    /// Which events to relay.
    pub filter: Filter,
    /// Most events handed to the publisher at once.
    pub batch: usize,
    /// Retries of a failed publish before the relay stops with the error (a
    /// relay must never skip an event, so it does not dead-letter).
    pub retry: RetryPolicy,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            checkpoint: None,
            filter: Filter::all(),
            batch: 500,
            retry: RetryPolicy::exponential(
                u32::MAX,
                Duration::from_millis(100),
                Duration::from_secs(10),
            ),
        }
    }
}

/// Moves events from a store to a publisher. See the module docs.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use orchestrix::relay::{Publisher, Relay, RelayConfig};
/// use orchestrix::store::ExpectedRevision;
/// use orchestrix::{EventRecord, RecordedEvent, Store, StreamId};
///
/// #[derive(Debug, Default)]
/// struct Collect(Mutex<Vec<u64>>);
/// #[async_trait::async_trait]
/// impl Publisher for Collect {
///     fn name(&self) -> &str { "collect" }
///     async fn publish(&self, events: &[RecordedEvent]) -> orchestrix::Result<()> {
///         self.0.lock().unwrap().extend(events.iter().map(|e| e.position));
///         Ok(())
///     }
/// }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Store::memory();
/// let s = StreamId::parse("order-1")?;
/// store.append(&s, ExpectedRevision::Any, vec![EventRecord::json("t", 1, &serde_json::json!({}))]).await?;
/// let publisher = Arc::new(Collect::default());
/// let relay = Relay::start(store.clone(), publisher.clone(), RelayConfig::default()).await?;
/// relay.wait_for(1).await?;
/// relay.shutdown().await?;
/// assert_eq!(*publisher.0.lock().unwrap(), vec![1]);
/// # Ok::<(), orchestrix::Error>(()) }).unwrap();
/// ```
#[derive(Debug)]
pub struct Relay {
    stop: watch::Sender<bool>,
    published: watch::Receiver<u64>,
    task: tokio::task::JoinHandle<Result<()>>,
    store: Store,
    publisher: String,
    filter: Filter,
}

impl Relay {
    /// Starts relaying from the stored checkpoint.
    ///
    /// # Errors
    /// When the checkpoint cannot be read.
    pub async fn start(
        store: Store,
        publisher: Arc<dyn Publisher>,
        config: RelayConfig,
    ) -> Result<Self> {
        let name = config
            .checkpoint
            .clone()
            .unwrap_or_else(|| format!("relay:{}", publisher.name()));
        let checkpoint = store
            .backend()
            .checkpoints
            .load_checkpoint(&name)
            .await?
            .unwrap_or(0);
        // What the bus already holds counts as published, checkpoint or not.
        let after = match publisher.published_up_to().await? {
            Some(on_bus) if on_bus > checkpoint => {
                tracing::info!(
                    relay = %name,
                    checkpoint,
                    on_bus,
                    "the bus holds events past the relay's checkpoint; resuming after them"
                );
                on_bus
            }
            _ => checkpoint,
        };
        let (stop, stop_rx) = watch::channel(false);
        let (published_tx, published) = watch::channel(after);
        let (publisher_name, filter) = (publisher.name().to_owned(), config.filter.clone());
        let task = tokio::spawn(run(
            store.clone(),
            publisher,
            config,
            name,
            after,
            stop_rx,
            published_tx,
        ));
        Ok(Self {
            stop,
            published,
            task,
            store,
            publisher: publisher_name,
            filter,
        })
    }

    /// How many positions the store's head is ahead of what is published: 0
    /// when nothing the relay's filter wants is left to publish.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn lag(&self) -> Result<u64> {
        let published = self.published();
        let head = self.store.head_position().await?;
        if head <= published
            || self
                .store
                .read_all(published, 1, &self.filter)
                .await?
                .is_empty()
        {
            return Ok(0);
        }
        Ok(head - published)
    }

    /// Measures [`lag`](Self::lag) and records it as the gauge
    /// `orchestrix_relay_lag_events{publisher}`.
    ///
    /// # Errors
    /// As [`lag`](Self::lag).
    pub async fn record_lag(&self) -> Result<u64> {
        let lag = self.lag().await?;
        crate::telemetry::metrics::set_relay_lag(&self.publisher, lag);
        Ok(lag)
    }

    /// The position up to which everything is published and checkpointed.
    #[must_use]
    pub fn published(&self) -> u64 {
        *self.published.borrow()
    }

    /// Waits until everything up to `position` is published.
    ///
    /// # Errors
    /// [`crate::Error::Shutdown`] when the relay stopped first.
    pub async fn wait_for(&self, position: u64) -> Result<()> {
        let mut rx = self.published.clone();
        rx.wait_for(|p| *p >= position)
            .await
            .map(|_| ())
            .map_err(|_| crate::Error::Shutdown { component: "relay" })
    }

    /// Stops after the batch in flight, with its checkpoint saved.
    ///
    /// # Errors
    /// The error that stopped the relay earlier, if any.
    pub async fn shutdown(self) -> Result<()> {
        let _ = self.stop.send(true);
        self.task
            .await
            .map_err(|e| crate::Error::backend("relay", "join", false, e))?
    }
}

async fn run(
    store: Store,
    publisher: Arc<dyn Publisher>,
    config: RelayConfig,
    name: String,
    after: u64,
    mut stop: watch::Receiver<bool>,
    published: watch::Sender<u64>,
) -> Result<()> {
    let mut events = Box::pin(store.subscribe_batched(after, config.filter.clone(), config.batch));
    let mut batch: Vec<RecordedEvent> = Vec::with_capacity(config.batch);
    loop {
        // Wait for at least one event (or a stop), then take what is ready.
        tokio::select! {
            biased;
            _ = stop.changed() => return Ok(()),
            next = events.next() => match next {
                None => return Ok(()),
                Some(e) => batch.push(e?),
            },
        }
        while batch.len() < config.batch {
            match futures::FutureExt::now_or_never(events.next()) {
                Some(Some(e)) => batch.push(e?),
                _ => break,
            }
        }
        let last = batch.last().map_or(0, |e| e.position);
        let mut attempt = 1;
        loop {
            let span = tracing::info_span!(
                "orchestrix.publish",
                otel.kind = "producer",
                publisher = publisher.name(),
                events = batch.len(),
                last_position = last,
                attempt,
                error = tracing::field::Empty,
            );
            crate::telemetry::link_events(&span, &batch);
            let result = publisher.publish(&batch).instrument(span.clone()).await;
            telemetry::record_publish(publisher.name(), telemetry::outcome(&result), batch.len());
            match result {
                Ok(()) => break,
                Err(e) => {
                    span.record("error", tracing::field::display(&e));
                    attempt += 1;
                    let Some(delay) = config.retry.delay(attempt) else {
                        return Err(e);
                    };
                    tracing::warn!(error = %e, attempt, "publish failed; retrying");
                    tokio::select! {
                        _ = stop.changed() => return Ok(()),
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        store
            .backend()
            .checkpoints
            .save_checkpoint(&name, last)
            .await?;
        published.send_replace(last);
        batch.clear();
    }
}
