//! Exactly-once projections: a batch of events and the checkpoint change in one
//! transaction of the read model's database.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use super::consumer::Shared;
use super::dead_letters::dead_letter_for;
use super::invoke::{self, Outcome};
use super::reader::Reader;
use super::retry::RetryPolicy;
use super::shutdown::Shutdown;
use crate::error::Result;
use crate::event::RecordedEvent;
use crate::store::Filter;

/// A read model that lives in the same database as its checkpoint, so that a
/// batch of events and the checkpoint after it commit in one transaction:
/// effects are exactly-once, even across crashes.
///
/// Backend crates implement it for their database (the SQLite adapter on its
/// connection, the PostgreSQL adapter on a transaction), usually by wrapping a
/// user's "apply one event inside this transaction" function. Run it with
/// [`ProjectionRunner::transactional`](super::ProjectionRunner::transactional)
/// or register it with
/// [`ApplicationBuilder::transactional_projection`](crate::ApplicationBuilder::transactional_projection).
///
/// The runner reads its start position from
/// [`load_checkpoint`](Self::load_checkpoint), never from the
/// [`CheckpointStore`](crate::store::CheckpointStore). It reads batches in one
/// partition (the transaction is the unit of parallelism) and calls
/// [`apply_batch`](Self::apply_batch) under the retry policy. When a batch fails
/// permanently, or keeps failing transiently after its retries, the runner
/// applies the batch again event by event, each in its own transaction, so that
/// only the failing event goes to the dead letters; it then calls
/// `apply_batch(&[], name, position)` to move the checkpoint past it.
#[async_trait]
pub trait TransactionalProjection: Send + Sync + fmt::Debug + 'static {
    /// A stable name: the checkpoint and dead-letter key.
    fn name(&self) -> &str;

    /// The events it wants (all by default).
    fn filter(&self) -> Filter {
        Filter::all()
    }

    /// The checkpoint stored by the last committed [`apply_batch`](Self::apply_batch).
    async fn load_checkpoint(&self, checkpoint_name: &str) -> Result<Option<u64>>;

    /// In one transaction: applies `events` (in order; possibly none) and
    /// stores `last_position` as the checkpoint of `checkpoint_name`, unless
    /// the stored one is higher (a dead-letter replay applies an old event
    /// and must not move the checkpoint back). All or nothing: an error must
    /// leave neither the read model nor the checkpoint changed.
    async fn apply_batch(
        &self,
        events: &[RecordedEvent],
        checkpoint_name: &str,
        last_position: u64,
    ) -> Result<()>;

    /// In one transaction: clears the read model and deletes the checkpoint
    /// (a rebuild then replays from the start).
    async fn reset(&self, checkpoint_name: &str) -> Result<()>;

    /// Deletes the checkpoint only (after a rebuild into a new version, for
    /// the old one).
    async fn delete_checkpoint(&self, checkpoint_name: &str) -> Result<()>;
}

/// Runs a transactional projection as an [`EventHandler`](super::EventHandler),
/// each event in its own transaction: for
/// [`DeadLetters::replay`](super::DeadLetters::replay).
#[derive(Debug)]
pub struct TransactionalHandler<P: ?Sized> {
    projection: Arc<P>,
}

impl<P: TransactionalProjection + ?Sized> TransactionalHandler<P> {
    /// Wraps a projection.
    #[must_use]
    pub fn new(projection: Arc<P>) -> Self {
        Self { projection }
    }
}

#[async_trait]
impl<P: TransactionalProjection + ?Sized> super::EventHandler for TransactionalHandler<P> {
    fn name(&self) -> &str {
        self.projection.name()
    }

    fn filter(&self) -> Filter {
        self.projection.filter()
    }

    async fn handle(&self, event: &RecordedEvent, _delivery: &super::Delivery) -> Result<()> {
        self.projection
            .apply_batch(
                std::slice::from_ref(event),
                self.projection.name(),
                event.position,
            )
            .await
    }
}

/// Lets a `P: ?Sized` (say `dyn TransactionalProjection`) be driven as a trait
/// object.
#[derive(Debug)]
pub(crate) struct Erased<P: ?Sized>(pub(crate) Arc<P>);

#[async_trait]
impl<P: TransactionalProjection + ?Sized> TransactionalProjection for Erased<P> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn filter(&self) -> Filter {
        self.0.filter()
    }
    async fn load_checkpoint(&self, checkpoint_name: &str) -> Result<Option<u64>> {
        self.0.load_checkpoint(checkpoint_name).await
    }
    async fn apply_batch(
        &self,
        events: &[RecordedEvent],
        checkpoint_name: &str,
        last_position: u64,
    ) -> Result<()> {
        self.0
            .apply_batch(events, checkpoint_name, last_position)
            .await
    }
    async fn reset(&self, checkpoint_name: &str) -> Result<()> {
        self.0.reset(checkpoint_name).await
    }
    async fn delete_checkpoint(&self, checkpoint_name: &str) -> Result<()> {
        self.0.delete_checkpoint(checkpoint_name).await
    }
}

/// The consumer task of a transactional projection.
pub(crate) async fn run(
    shared: Arc<Shared>,
    projection: Arc<dyn TransactionalProjection>,
    mut reader: Reader,
    retry: RetryPolicy,
    shutdown: Shutdown,
) {
    loop {
        shared.wait_unpaused(&shutdown).await;
        let Some(batch) = reader.next(&shutdown).await else {
            break;
        };
        let mut events = Vec::with_capacity(batch.items.len());
        let mut poisons = Vec::with_capacity(batch.items.len());
        for item in batch.items {
            shared
                .progress
                .begin(0, item.event.position, item.event.record.time);
            events.push(item.event);
            poisons.push(item.poison);
        }
        if !apply(&shared, &*projection, events, poisons, &retry, &shutdown).await {
            break;
        }
        shared.progress.scanned(batch.scanned);
    }
}

/// Applies one batch; `false` when shutdown left it unfinished.
async fn apply(
    shared: &Shared,
    projection: &dyn TransactionalProjection,
    events: Vec<RecordedEvent>,
    poisons: Vec<Option<crate::Error>>,
    retry: &RetryPolicy,
    shutdown: &Shutdown,
) -> bool {
    let Some(last) = events.last().map(|e| e.position) else {
        return true;
    };
    let name = shared.name();
    if poisons.iter().all(Option::is_none) {
        let outcome = invoke::with_retries(retry, shutdown, name, |attempt| {
            invoke::invoke_batch(projection, &events, last, attempt)
        })
        .await;
        match outcome {
            Outcome::Done => {
                for (i, e) in events.iter().enumerate() {
                    shared
                        .progress
                        .complete(0, e.position, i + 1 == events.len());
                }
                shared.set_committed(last);
                return true;
            }
            Outcome::Abandoned => return false,
            Outcome::Failed { error, .. } => {
                tracing::warn!(consumer = name, events = events.len(), error = %error, "batch failed; applying its events one by one");
            }
        }
    }
    for (event, poison) in events.iter().zip(poisons) {
        let position = event.position;
        let outcome = match poison {
            Some(error) => Outcome::Failed { error, attempts: 1 },
            None => {
                invoke::with_retries(retry, shutdown, name, |attempt| {
                    invoke::invoke_batch(projection, std::slice::from_ref(event), position, attempt)
                })
                .await
            }
        };
        match outcome {
            Outcome::Done => {}
            Outcome::Abandoned => return false,
            Outcome::Failed { error, attempts } => {
                let letter = dead_letter_for(name, event, &error, attempts);
                if !invoke::store_dead_letter(shared.store(), letter, shutdown).await {
                    return false;
                }
                // Move the checkpoint past the dead letter, so a restart does
                // not dead-letter it again.
                let moved = invoke::persist(shutdown, "checkpoint", || {
                    invoke::invoke_batch(projection, &[], position, 1)
                })
                .await;
                if !moved {
                    return false;
                }
            }
        }
        shared.progress.complete(0, position, true);
        shared.set_committed(position);
    }
    true
}
