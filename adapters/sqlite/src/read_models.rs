//! [`SqliteReadModels`]: the rows of typed projections ([`orchestrix::View`])
//! in the store's database, tables `read_models` and `read_model_applied`
//! (migration 2).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use orchestrix::runtime::{ReadModelStore, RowChange};
use orchestrix::{Error, Result};
use rusqlite::{Connection, OptionalExtension as _};

use crate::convert::to_i64;
use crate::error::driver;
use crate::store::SqliteStore;

/// The [`ReadModelStore`] on a [`SqliteStore`]'s database: one row per
/// (view, key) as JSON text, and the last applied revision per (view,
/// stream).
///
/// `apply` reads the stored row on a reader connection, runs `change` on the
/// async side (it is not `'static`, so it cannot go to the writer thread),
/// then writes in one transaction on the writer after checking that the
/// revision is still new and the row still the one `change` saw; when another
/// apply changed the row in between, it reads again and retries.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use orchestrix_sqlite::SqliteStore;
/// let store = Arc::new(SqliteStore::open_in_memory().await?);
/// let read_models = store.read_models();
/// let set = |_: Option<serde_json::Value>| Ok(serde_json::json!({ "n": 1 }));
/// assert!(read_models.apply("carts", "c1", "cart-c1", 0, &set).await?);
/// assert!(!read_models.apply("carts", "c1", "cart-c1", 0, &set).await?);
/// assert_eq!(read_models.load("carts", "c1").await?, Some(serde_json::json!({ "n": 1 })));
/// # Ok::<(), orchestrix::Error>(()) }).unwrap();
/// ```
pub struct SqliteReadModels {
    store: Arc<SqliteStore>,
}

impl fmt::Debug for SqliteReadModels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteReadModels")
            .field("path", &self.store.config().path)
            .finish()
    }
}

impl SqliteReadModels {
    /// Read models in `store`'s database.
    #[must_use]
    pub fn new(store: Arc<SqliteStore>) -> Self {
        Self { store }
    }
}

impl SqliteStore {
    /// The read models of typed projections in this database, for
    /// [`ApplicationBuilder::read_models`](orchestrix::ApplicationBuilder::read_models).
    #[must_use]
    pub fn read_models(self: Arc<Self>) -> Arc<dyn ReadModelStore> {
        Arc::new(SqliteReadModels::new(self))
    }
}

/// What the write step of `apply` found.
enum Write {
    Applied,
    AlreadyApplied,
    /// The row changed since it was read: read again.
    Stale,
}

fn applied_revision(
    conn: &Connection,
    op: &'static str,
    view: &str,
    stream: &str,
) -> Result<Option<i64>> {
    conn.prepare_cached(
        r#"SELECT revision FROM read_model_applied WHERE "view" = ?1 AND stream = ?2"#,
    )
    .map_err(driver(op))?
    .query_row((view, stream), |r| r.get(0))
    .optional()
    .map_err(driver(op))
}

fn stored_row(
    conn: &Connection,
    op: &'static str,
    view: &str,
    key: &str,
) -> Result<Option<String>> {
    conn.prepare_cached(r#"SELECT "row" FROM read_models WHERE "view" = ?1 AND "key" = ?2"#)
        .map_err(driver(op))?
        .query_row((view, key), |r| r.get(0))
        .optional()
        .map_err(driver(op))
}

fn parse(view: &str, key: &str, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::corrupted(format!("read model `{view}` row `{key}`"), e.to_string()))
}

#[async_trait]
impl ReadModelStore for SqliteReadModels {
    async fn load(&self, view: &str, key: &str) -> Result<Option<serde_json::Value>> {
        let (view, key) = (view.to_owned(), key.to_owned());
        self.store
            .query(move |conn| {
                stored_row(conn, "read_model_load", &view, &key)?
                    .map(|text| parse(&view, &key, &text))
                    .transpose()
            })
            .await
    }

    async fn load_all(&self, view: &str) -> Result<Vec<(String, serde_json::Value)>> {
        const OP: &str = "read_model_load_all";
        let view = view.to_owned();
        self.store
            .query(move |conn| {
                let mut stmt = conn
                    .prepare_cached(
                        r#"SELECT "key", "row" FROM read_models WHERE "view" = ?1 ORDER BY "key""#,
                    )
                    .map_err(driver(OP))?;
                let rows = stmt
                    .query_map([&view], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })
                    .map_err(driver(OP))?;
                rows.map(|row| {
                    let (key, text) = row.map_err(driver(OP))?;
                    let value = parse(&view, &key, &text)?;
                    Ok((key, value))
                })
                .collect()
            })
            .await
    }

    async fn apply(
        &self,
        view: &str,
        key: &str,
        stream: &str,
        revision: u64,
        change: RowChange<'_>,
    ) -> Result<bool> {
        const OP: &str = "read_model_apply";
        let revision = to_i64(revision, "read model revision")?;
        loop {
            let (v, k, s) = (view.to_owned(), key.to_owned(), stream.to_owned());
            let (applied, seen) = self
                .store
                .query(move |conn| {
                    Ok((
                        applied_revision(conn, OP, &v, &s)?,
                        stored_row(conn, OP, &v, &k)?,
                    ))
                })
                .await?;
            if applied.is_some_and(|a| a >= revision) {
                return Ok(false);
            }
            let stored = seen.as_deref().map(|t| parse(view, key, t)).transpose()?;
            let text = change(stored)?.to_string();
            let (v, k, s) = (view.to_owned(), key.to_owned(), stream.to_owned());
            let write = self
                .store
                .transaction(move |tx| {
                    if applied_revision(tx, OP, &v, &s)?.is_some_and(|a| a >= revision) {
                        return Ok(Write::AlreadyApplied);
                    }
                    if stored_row(tx, OP, &v, &k)? != seen {
                        return Ok(Write::Stale);
                    }
                    tx.prepare_cached(
                        r#"INSERT INTO read_models ("view", "key", "row") VALUES (?1, ?2, ?3)
                           ON CONFLICT ("view", "key") DO UPDATE SET "row" = excluded."row""#,
                    )
                    .map_err(driver(OP))?
                    .execute((&v, &k, &text))
                    .map_err(driver(OP))?;
                    tx.prepare_cached(
                        r#"INSERT INTO read_model_applied ("view", stream, revision) VALUES (?1, ?2, ?3)
                           ON CONFLICT ("view", stream) DO UPDATE SET revision = excluded.revision"#,
                    )
                    .map_err(driver(OP))?
                    .execute((&v, &s, revision))
                    .map_err(driver(OP))?;
                    Ok(Write::Applied)
                })
                .await?;
            match write {
                Write::Applied => return Ok(true),
                Write::AlreadyApplied => return Ok(false),
                Write::Stale => {}
            }
        }
    }

    async fn clear(&self, view: &str) -> Result<()> {
        const OP: &str = "read_model_clear";
        let view = view.to_owned();
        self.store
            .transaction(move |tx| {
                tx.execute(r#"DELETE FROM read_models WHERE "view" = ?1"#, [&view])
                    .map_err(driver(OP))?;
                tx.execute(
                    r#"DELETE FROM read_model_applied WHERE "view" = ?1"#,
                    [&view],
                )
                .map_err(driver(OP))?;
                Ok(())
            })
            .await
    }
}
