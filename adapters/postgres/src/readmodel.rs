//! Exactly-once read models: the projection's table changes and its
//! checkpoint commit in one transaction.
//!
//! A projection reads the all-stream after its checkpoint, applies a batch
//! to its tables and saves the new checkpoint, all in one [`ReadModelTx`].
//! If the process or the connection dies anywhere before the commit, none
//! of it happened and the batch is read again; after the commit, all of it
//! happened and the checkpoint says so. [`ReadModelTx::load_checkpoint`]
//! also locks the checkpoint's name for the transaction, so two instances
//! of one projection never apply the same batch concurrently.
//!
//! ```no_run
//! use orchestrix::store::{EventStore, Filter};
//! use orchestrix_postgres::PostgresStore;
//! # async fn demo(store: PostgresStore) -> orchestrix::Result<()> {
//! let mut conn = store.connection().await?;
//! let tx = store.begin(&mut conn).await?;
//! let after = tx.load_checkpoint("order_totals").await?.unwrap_or(0);
//! let events = store.read_all(after, 500, &Filter::all().categories(["order"])).await?;
//! for e in &events {
//!     tx.execute("UPDATE shop.order_totals SET n = n + 1 WHERE stream_id = $1", &[&e.stream_id.as_str()]).await?;
//! }
//! if let Some(last) = events.last() {
//!     tx.save_checkpoint("order_totals", last.position).await?;
//! }
//! tx.commit().await?;
//! # Ok(()) }
//! ```

use std::fmt;

use orchestrix::Result;
use tokio_postgres::Transaction;
use tokio_postgres::types::ToSql;

use crate::error::from_pg;
use crate::rows::{to_i64, to_u64};
use crate::schema::SchemaName;
use crate::store::PostgresStore;

/// A transaction for a read-model update and its checkpoint. Dropping it
/// without [`commit`](Self::commit) rolls back.
pub struct ReadModelTx<'c> {
    tx: deadpool_postgres::Transaction<'c>,
    schema: SchemaName,
}

impl fmt::Debug for ReadModelTx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReadModelTx")
            .field("schema", &self.schema.as_str())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Begins a read-model transaction on `conn` (from
    /// [`connection`](Self::connection)).
    ///
    /// # Errors
    /// A backend error.
    pub async fn begin<'c>(
        &self,
        conn: &'c mut deadpool_postgres::Object,
    ) -> Result<ReadModelTx<'c>> {
        let tx = conn.transaction().await.map_err(|e| from_pg("begin", e))?;
        Ok(ReadModelTx {
            tx,
            schema: self.schema().clone(),
        })
    }
}

impl<'c> ReadModelTx<'c> {
    /// The driver transaction, for the read model's own statements.
    #[must_use]
    pub fn sql(&self) -> &Transaction<'c> {
        &self.tx
    }

    /// Runs one statement of the read model (prepared through the
    /// connection's statement cache); returns the rows affected.
    ///
    /// # Errors
    /// A backend error.
    pub async fn execute(&self, statement: &str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let st = self
            .tx
            .prepare_cached(statement)
            .await
            .map_err(|e| from_pg("read model", e))?;
        self.tx
            .execute(&st, params)
            .await
            .map_err(|e| from_pg("read model", e))
    }

    /// Runs one query of the read model.
    ///
    /// # Errors
    /// A backend error.
    pub async fn query(
        &self,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        let st = self
            .tx
            .prepare_cached(statement)
            .await
            .map_err(|e| from_pg("read model", e))?;
        self.tx
            .query(&st, params)
            .await
            .map_err(|e| from_pg("read model", e))
    }

    /// Locks `name` for this transaction, then reads its checkpoint.
    ///
    /// # Errors
    /// A backend error.
    pub async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>> {
        load_checkpoint_in(&self.tx, &self.schema, name).await
    }

    /// Stores the checkpoint of `name`, committed with the transaction.
    ///
    /// # Errors
    /// A backend error.
    pub async fn save_checkpoint(&self, name: &str, position: u64) -> Result<()> {
        save_checkpoint_in(&self.tx, &self.schema, name, position).await
    }

    /// Commits the read-model change and the checkpoint together.
    ///
    /// # Errors
    /// A backend error; the outcome is then unknown (re-read the checkpoint).
    pub async fn commit(self) -> Result<()> {
        self.tx
            .commit()
            .await
            .map_err(|e| from_pg("read model commit", e))
    }

    /// Rolls back.
    ///
    /// # Errors
    /// A backend error.
    pub async fn rollback(self) -> Result<()> {
        self.tx
            .rollback()
            .await
            .map_err(|e| from_pg("read model rollback", e))
    }
}

/// Locks checkpoint `name` of `schema` for the transaction (a concurrent
/// transaction doing the same waits for this one to end), then reads it.
///
/// # Errors
/// A backend error.
pub async fn load_checkpoint_in(
    tx: &Transaction<'_>,
    schema: &SchemaName,
    name: &str,
) -> Result<Option<u64>> {
    let map = |e| from_pg("load checkpoint", e);
    // Two statements: the read's snapshot is taken after the lock is
    // granted, so it sees the checkpoint of the transaction waited for.
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2))",
        &[&schema.checkpoint_lock_key(), &name],
    )
    .await
    .map_err(map)?;
    let sql = format!(
        "SELECT position FROM {} WHERE name = $1",
        schema.table("checkpoints")
    );
    let row = tx.query_opt(&sql, &[&name]).await.map_err(map)?;
    row.map(|r| {
        r.try_get::<_, i64>(0)
            .map_err(map)
            .and_then(|p| to_u64("checkpoint", p))
    })
    .transpose()
}

/// Stores checkpoint `name` of `schema` in the transaction.
///
/// # Errors
/// A backend error.
pub async fn save_checkpoint_in(
    tx: &Transaction<'_>,
    schema: &SchemaName,
    name: &str,
    position: u64,
) -> Result<()> {
    let position = to_i64("checkpoint", position)?;
    let sql = format!(
        "INSERT INTO {} (name, position) VALUES ($1, $2)
         ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
        schema.table("checkpoints")
    );
    tx.execute(&sql, &[&name, &position])
        .await
        .map_err(|e| from_pg("save checkpoint", e))?;
    Ok(())
}

/// Deletes checkpoint `name` of `schema` in the transaction.
///
/// # Errors
/// A backend error.
pub async fn delete_checkpoint_in(
    tx: &Transaction<'_>,
    schema: &SchemaName,
    name: &str,
) -> Result<()> {
    let sql = format!(
        "DELETE FROM {} WHERE name = $1",
        schema.table("checkpoints")
    );
    tx.execute(&sql, &[&name])
        .await
        .map_err(|e| from_pg("delete checkpoint", e))?;
    Ok(())
}
