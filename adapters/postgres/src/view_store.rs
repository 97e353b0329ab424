//! [`PostgresReadModels`]: the rows of typed projections ([`orchestrix::View`])
//! in the store's schema, tables `read_models` and `read_model_applied`
//! (migration 3).
//!
//! Not to be confused with [`crate::readmodel`], where a hand-written
//! projection updates its own tables and its checkpoint in one transaction.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use orchestrix::runtime::{ReadModelStore, RowChange};
use orchestrix::{Error, Result};

use crate::error::{from_pg, retry};
use crate::rows::to_i64;
use crate::store::PostgresStore;

/// The [`ReadModelStore`] on a [`PostgresStore`]'s schema: one row per
/// (view, key) as `jsonb`, and the last applied revision per (view, stream).
///
/// `apply` is one transaction: it claims the revision with
/// `INSERT … ON CONFLICT DO UPDATE … WHERE revision < new` on
/// `read_model_applied` (which also locks that (view, stream) until the
/// commit, so one of several racing applies of a revision wins and the others
/// return `false`), then locks the row (`FOR UPDATE`, after creating it if
/// absent) so that changes of one row from different streams never overwrite
/// each other, runs `change` and writes the result. A failing `change` rolls
/// it all back. Transient failures (serialization, deadlock, lost connection)
/// retry the whole transaction as [`RetryConfig`](crate::RetryConfig) says.
///
/// The tables come with the schema migrations
/// ([`PostgresStore::migrate`], run by `connect` unless
/// [`PostgresConfig::migrate`](crate::PostgresConfig::migrate) is off).
///
/// ```no_run
/// use orchestrix::Application;
/// use orchestrix_postgres::PostgresStore;
/// # async fn demo() -> orchestrix::Result<()> {
/// let pg = PostgresStore::connect_url("postgres://postgres@127.0.0.1/test?schema=shop").await?;
/// let app = Application::builder(pg.store()).read_models(pg.read_models()).build()?;
/// # drop(app); Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresReadModels {
    store: PostgresStore,
    sql: Arc<Sql>,
}

impl fmt::Debug for PostgresReadModels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresReadModels")
            .field("schema", &self.store.schema().as_str())
            .finish()
    }
}

#[derive(Debug)]
struct Sql {
    load: String,
    load_all: String,
    claim: String,
    create_row: String,
    lock_row: String,
    write_row: String,
    clear_rows: String,
    clear_applied: String,
}

impl PostgresReadModels {
    /// Read models in `store`'s schema.
    #[must_use]
    pub fn new(store: PostgresStore) -> Self {
        let s = store.schema();
        let rows = s.table("read_models");
        let applied = s.table("read_model_applied");
        let sql = Sql {
            load: format!(
                r#"SELECT "row" FROM {rows} WHERE "view" = $1 AND "key" = $2 AND "row" IS NOT NULL"#
            ),
            load_all: format!(
                r#"SELECT "key", "row" FROM {rows} WHERE "view" = $1 AND "row" IS NOT NULL
                   ORDER BY "key" COLLATE "C""#
            ),
            claim: format!(
                r#"INSERT INTO {applied} AS a ("view", stream, revision) VALUES ($1, $2, $3)
                   ON CONFLICT ("view", stream) DO UPDATE SET revision = EXCLUDED.revision
                   WHERE a.revision < EXCLUDED.revision
                   RETURNING 1"#
            ),
            create_row: format!(
                r#"INSERT INTO {rows} ("view", "key", "row") VALUES ($1, $2, NULL)
                   ON CONFLICT ("view", "key") DO NOTHING"#
            ),
            lock_row: format!(
                r#"SELECT "row" FROM {rows} WHERE "view" = $1 AND "key" = $2 FOR UPDATE"#
            ),
            write_row: format!(r#"UPDATE {rows} SET "row" = $3 WHERE "view" = $1 AND "key" = $2"#),
            clear_rows: format!(r#"DELETE FROM {rows} WHERE "view" = $1"#),
            clear_applied: format!(r#"DELETE FROM {applied} WHERE "view" = $1"#),
        };
        Self {
            store,
            sql: Arc::new(sql),
        }
    }

    async fn try_apply(
        &self,
        view: &str,
        key: &str,
        stream: &str,
        revision: i64,
        change: RowChange<'_>,
    ) -> Result<bool> {
        const OP: &str = "read_model_apply";
        let map = |e| from_pg(OP, e);
        let mut client = self.store.client(OP).await?;
        let tx = client.transaction().await.map_err(map)?;
        let claimed = tx
            .query_opt(&self.sql.claim, &[&view, &stream, &revision])
            .await
            .map_err(map)?;
        if claimed.is_none() {
            tx.rollback().await.map_err(map)?;
            return Ok(false);
        }
        tx.execute(&self.sql.create_row, &[&view, &key])
            .await
            .map_err(map)?;
        let stored: Option<serde_json::Value> = tx
            .query_one(&self.sql.lock_row, &[&view, &key])
            .await
            .map_err(map)?
            .try_get(0)
            .map_err(|e| {
                Error::corrupted(format!("read model `{view}` row `{key}`"), e.to_string())
            })?;
        // On an error the transaction is dropped, which rolls it back.
        let row = change(stored)?;
        tx.execute(&self.sql.write_row, &[&view, &key, &row])
            .await
            .map_err(map)?;
        tx.commit().await.map_err(map)?;
        Ok(true)
    }
}

impl PostgresStore {
    /// The read models of typed projections in this store's schema, for
    /// [`ApplicationBuilder::read_models`](orchestrix::ApplicationBuilder::read_models).
    #[must_use]
    pub fn read_models(&self) -> Arc<dyn ReadModelStore> {
        Arc::new(PostgresReadModels::new(self.clone()))
    }
}

#[async_trait]
impl ReadModelStore for PostgresReadModels {
    async fn load(&self, view: &str, key: &str) -> Result<Option<serde_json::Value>> {
        const OP: &str = "read_model_load";
        let row = retry(&self.store.config().retry, || async {
            let client = self.store.client(OP).await?;
            client
                .query_opt(&self.sql.load, &[&view, &key])
                .await
                .map_err(|e| from_pg(OP, e))
        })
        .await?;
        row.map(|r| {
            r.try_get(0).map_err(|e| {
                Error::corrupted(format!("read model `{view}` row `{key}`"), e.to_string())
            })
        })
        .transpose()
    }

    async fn load_all(&self, view: &str) -> Result<Vec<(String, serde_json::Value)>> {
        const OP: &str = "read_model_load_all";
        let rows = retry(&self.store.config().retry, || async {
            let client = self.store.client(OP).await?;
            client
                .query(&self.sql.load_all, &[&view])
                .await
                .map_err(|e| from_pg(OP, e))
        })
        .await?;
        rows.iter()
            .map(|r| {
                let key: String = r.try_get(0).map_err(|e| {
                    Error::corrupted(format!("read model `{view}` key"), e.to_string())
                })?;
                let value = r.try_get(1).map_err(|e| {
                    Error::corrupted(format!("read model `{view}` row `{key}`"), e.to_string())
                })?;
                Ok((key, value))
            })
            .collect()
    }

    async fn apply(
        &self,
        view: &str,
        key: &str,
        stream: &str,
        revision: u64,
        change: RowChange<'_>,
    ) -> Result<bool> {
        let revision = to_i64("read model revision", revision)?;
        retry(&self.store.config().retry, || {
            self.try_apply(view, key, stream, revision, change)
        })
        .await
    }

    async fn clear(&self, view: &str) -> Result<()> {
        const OP: &str = "read_model_clear";
        retry(&self.store.config().retry, || async {
            let map = |e| from_pg(OP, e);
            let mut client = self.store.client(OP).await?;
            let tx = client.transaction().await.map_err(map)?;
            tx.execute(&self.sql.clear_rows, &[&view])
                .await
                .map_err(map)?;
            tx.execute(&self.sql.clear_applied, &[&view])
                .await
                .map_err(map)?;
            tx.commit().await.map_err(map)
        })
        .await
    }
}
