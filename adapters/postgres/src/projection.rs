//! [`PostgresProjection`]: the core's
//! [`TransactionalProjection`]
//! on PostgreSQL, so that the runtime's `ProjectionRunner::transactional`
//! commits each batch of a read model together with its checkpoint.
//!
//! ```no_run
//! use std::sync::Arc;
//! use orchestrix::runtime::ProjectionRunner;
//! use orchestrix::{RecordedEvent, Store};
//! use orchestrix_postgres::{PostgresProjection, PostgresStore, ReadModel, ReadModelTx};
//!
//! #[derive(Debug)]
//! struct Counts;
//!
//! #[async_trait::async_trait]
//! impl ReadModel for Counts {
//!     async fn apply(&self, tx: &ReadModelTx<'_>, events: &[RecordedEvent]) -> orchestrix::Result<()> {
//!         let streams: Vec<&str> = events.iter().map(|e| e.stream_id.as_str()).collect();
//!         tx.execute(
//!             "INSERT INTO shop.counts (stream_id, n) SELECT s, count(*) FROM unnest($1::text[]) s GROUP BY s
//!              ON CONFLICT (stream_id) DO UPDATE SET n = counts.n + EXCLUDED.n",
//!             &[&streams],
//!         )
//!         .await?;
//!         Ok(())
//!     }
//!     async fn clear(&self, tx: &ReadModelTx<'_>) -> orchestrix::Result<()> {
//!         tx.execute("TRUNCATE shop.counts", &[]).await?;
//!         Ok(())
//!     }
//! }
//!
//! # async fn demo(pg: PostgresStore) -> orchestrix::Result<()> {
//! let projection = Arc::new(PostgresProjection::new(pg.clone(), "counts", Counts));
//! let runner = ProjectionRunner::transactional(Store::new(pg.backend()), projection).start().await?;
//! runner.catch_up().await?;
//! # Ok(()) }
//! ```

use std::fmt;

use async_trait::async_trait;
use orchestrix::runtime::TransactionalProjection;
use orchestrix::store::{CheckpointStore, Filter};
use orchestrix::{RecordedEvent, Result};

use crate::readmodel::{ReadModelTx, delete_checkpoint_in};
use crate::store::PostgresStore;

/// A read model in the store's database: what it does with a batch of
/// events, inside the transaction that also moves its checkpoint.
#[async_trait]
pub trait ReadModel: Send + Sync + fmt::Debug + 'static {
    /// Applies `events` (in order; possibly none) inside `tx`. An error rolls
    /// the whole batch back.
    async fn apply(&self, tx: &ReadModelTx<'_>, events: &[RecordedEvent]) -> Result<()>;

    /// Empties the read model inside `tx`, for a rebuild.
    async fn clear(&self, tx: &ReadModelTx<'_>) -> Result<()>;
}

/// A [`ReadModel`] run as a transactional projection, its checkpoint in the
/// store's `checkpoints` table of the same schema and transaction.
#[derive(Debug)]
pub struct PostgresProjection<M> {
    store: PostgresStore,
    name: String,
    filter: Filter,
    model: M,
}

impl<M: ReadModel> PostgresProjection<M> {
    /// A projection named `name` (its checkpoint and dead-letter key) of
    /// every event.
    pub fn new(store: PostgresStore, name: impl Into<String>, model: M) -> Self {
        Self {
            store,
            name: name.into(),
            filter: Filter::all(),
            model,
        }
    }

    /// Only the events that pass `filter`.
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// The read model.
    pub fn model(&self) -> &M {
        &self.model
    }
}

#[async_trait]
impl<M: ReadModel> TransactionalProjection for PostgresProjection<M> {
    fn name(&self) -> &str {
        &self.name
    }

    fn filter(&self) -> Filter {
        self.filter.clone()
    }

    async fn load_checkpoint(&self, checkpoint_name: &str) -> Result<Option<u64>> {
        self.store.load_checkpoint(checkpoint_name).await
    }

    async fn apply_batch(
        &self,
        events: &[RecordedEvent],
        checkpoint_name: &str,
        last_position: u64,
    ) -> Result<()> {
        let mut conn = self.store.connection().await?;
        let tx = self.store.begin(&mut conn).await?;
        // Locks the checkpoint: another instance of this projection waits.
        let stored = tx.load_checkpoint(checkpoint_name).await?;
        self.model.apply(&tx, events).await?;
        // A dead-letter replay applies an old event: never move back.
        if stored.is_none_or(|s| s < last_position) {
            tx.save_checkpoint(checkpoint_name, last_position).await?;
        }
        tx.commit().await
    }

    async fn reset(&self, checkpoint_name: &str) -> Result<()> {
        let mut conn = self.store.connection().await?;
        let tx = self.store.begin(&mut conn).await?;
        tx.load_checkpoint(checkpoint_name).await?;
        self.model.clear(&tx).await?;
        delete_checkpoint_in(tx.sql(), self.store.schema(), checkpoint_name).await?;
        tx.commit().await
    }

    async fn delete_checkpoint(&self, checkpoint_name: &str) -> Result<()> {
        self.store.delete_checkpoint(checkpoint_name).await
    }
}
