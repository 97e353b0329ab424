//! [`PostgresStore`]: every storage port of the core on PostgreSQL.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Object, Pool};
use orchestrix::store::{
    AppendRequest, AppendResult, Backend, CheckpointStore, DeadLetter, DeadLetterStore, Direction,
    EventStore, Filter, Snapshot, SnapshotStore, Timer, TimerStore,
};
use orchestrix::{Error, RecordedEvent, Result, StreamId};
use tokio::sync::watch;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::config::PostgresConfig;
use crate::error::{BACKEND, from_pg, from_pool, retry};
use crate::rows::{self, DEAD_LETTER_COLUMNS, EVENT_COLUMNS, split_time, to_i64, to_u64};
use crate::schema::{self, SchemaName};
use crate::tls::Connector;

/// The SQL of one schema, built once from the validated schema name.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) append: String,
    read_forward: String,
    read_backward: String,
    read_all: String,
    read_all_safe: String,
    head: String,
    heads_safe: String,
    revision: String,
    find_event: String,
    save_snapshot: String,
    load_snapshot: String,
    pub(crate) load_checkpoint: String,
    pub(crate) save_checkpoint: String,
    delete_checkpoint: String,
    put_dead_letter: String,
    list_dead_letters: String,
    get_dead_letter: String,
    delete_dead_letter: String,
    schedule_timer: String,
    due_timers: String,
    cancel_timer: String,
}

impl Sql {
    pub(crate) fn new(s: &SchemaName) -> Self {
        let events = s.table("events");
        let q = s.quoted();
        Self {
            append: format!(
                "SELECT first_position, actual, accepted, duplicate
                 FROM {q}.append_events($1::text[], $2::text[], $3::int4[], $4::int8[], $5::int4[], $6::int4[],
                                        $7::int4[], $8::uuid[], $9::text[], $10::int8[], $11::text[],
                                        $12::timestamptz[], $13::int2[], $14::text[], $15::bytea[], $16::jsonb[],
                                        $17::text)"
            ),
            read_forward: format!(
                "SELECT {EVENT_COLUMNS} FROM {events} WHERE stream_id = $1 AND revision >= $2 ORDER BY revision LIMIT $3"
            ),
            read_backward: format!(
                "SELECT {EVENT_COLUMNS} FROM {events} WHERE stream_id = $1 AND revision <= $2 ORDER BY revision DESC LIMIT $3"
            ),
            read_all: format!(
                "SELECT {EVENT_COLUMNS}, xid < (SELECT pg_snapshot_xmin(pg_current_snapshot())) AS safe FROM {events}
                 WHERE position > $1
                   AND (cardinality($3::text[]) = 0 OR category = ANY ($3::text[]))
                   AND (cardinality($4::text[]) = 0 OR event_type = ANY ($4::text[]))
                 ORDER BY position LIMIT $2"
            ),
            read_all_safe: format!("SELECT {EVENT_COLUMNS}, safe FROM {q}.read_all_safe($1, $2, $3::text[], $4::text[])"),
            heads_safe: format!("SELECT safe, committed FROM {q}.heads_safe()"),
            head: format!(
                "SELECT coalesce((SELECT position FROM {events}
                                  WHERE xid < (SELECT pg_snapshot_xmin(pg_current_snapshot()))
                                  ORDER BY position DESC LIMIT 1), 0),
                        coalesce((SELECT max(position) FROM {events}), 0)"
            ),
            revision: format!("SELECT max(revision) FROM {events} WHERE stream_id = $1"),
            find_event: format!("SELECT revision FROM {events} WHERE event_id = $1 AND stream_id = $2"),
            save_snapshot: format!(
                "INSERT INTO {t} AS s (stream_id, revision, state_version, data, taken_at, taken_at_nanos)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (stream_id) DO UPDATE SET
                     revision = EXCLUDED.revision, state_version = EXCLUDED.state_version, data = EXCLUDED.data,
                     taken_at = EXCLUDED.taken_at, taken_at_nanos = EXCLUDED.taken_at_nanos
                 WHERE s.revision <= EXCLUDED.revision",
                t = s.table("snapshots")
            ),
            load_snapshot: format!(
                "SELECT revision, state_version, data, taken_at, taken_at_nanos FROM {} WHERE stream_id = $1",
                s.table("snapshots")
            ),
            load_checkpoint: format!("SELECT position FROM {} WHERE name = $1", s.table("checkpoints")),
            save_checkpoint: format!(
                "INSERT INTO {} (name, position) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
                s.table("checkpoints")
            ),
            delete_checkpoint: format!("DELETE FROM {} WHERE name = $1", s.table("checkpoints")),
            put_dead_letter: format!(
                "INSERT INTO {} ({DEAD_LETTER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                 ON CONFLICT (id) DO UPDATE SET
                     consumer = EXCLUDED.consumer, event_id = EXCLUDED.event_id, event_type = EXCLUDED.event_type,
                     stream_id = EXCLUDED.stream_id, position = EXCLUDED.position, payload = EXCLUDED.payload,
                     headers = EXCLUDED.headers, reason = EXCLUDED.reason, error_kind = EXCLUDED.error_kind,
                     attempts = EXCLUDED.attempts, failed_at = EXCLUDED.failed_at,
                     failed_at_nanos = EXCLUDED.failed_at_nanos",
                s.table("dead_letters")
            ),
            list_dead_letters: format!(
                "SELECT {DEAD_LETTER_COLUMNS} FROM {} WHERE ($1::text IS NULL OR consumer = $1)
                 ORDER BY failed_at, failed_at_nanos, id LIMIT $2",
                s.table("dead_letters")
            ),
            get_dead_letter: format!("SELECT {DEAD_LETTER_COLUMNS} FROM {} WHERE id = $1", s.table("dead_letters")),
            delete_dead_letter: format!("DELETE FROM {} WHERE id = $1", s.table("dead_letters")),
            schedule_timer: format!(
                "INSERT INTO {} (id, owner, key, due_at, due_at_nanos, payload) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (id) DO NOTHING",
                s.table("timers")
            ),
            due_timers: format!(
                "SELECT id, owner, key, due_at, due_at_nanos, payload FROM {}
                 WHERE owner = $1 AND (due_at, due_at_nanos) <= ($2, $3)
                 ORDER BY due_at, due_at_nanos, id COLLATE \"C\" LIMIT $4",
                s.table("timers")
            ),
            cancel_timer: format!("DELETE FROM {} WHERE id = $1", s.table("timers")),
        }
    }
}

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    pub(crate) schema: SchemaName,
    pub(crate) sql: Sql,
    pub(crate) config: PostgresConfig,
    pub(crate) connector: Connector,
    pub(crate) head: watch::Sender<u64>,
    /// The last position committed by this process (fed after each commit).
    pub(crate) committed: watch::Sender<u64>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            task.abort();
        }
    }
}

/// Every storage port on PostgreSQL, in one schema. Cheap to clone (shares
/// the pool).
///
/// ```no_run
/// use orchestrix::store::ExpectedRevision;
/// use orchestrix::{EventRecord, Store, StreamId};
/// use orchestrix_postgres::{PostgresConfig, PostgresStore};
/// # async fn demo() -> orchestrix::Result<()> {
/// let pg = PostgresStore::connect(PostgresConfig::from_url("postgres://postgres@127.0.0.1/test?schema=shop")?).await?;
/// let store = Store::new(pg.backend());
/// let stream = StreamId::parse("order-1")?;
/// let event = EventRecord::json("com.acme.OrderPlaced", 1, &serde_json::json!({ "total": 12 }));
/// store.append(&stream, ExpectedRevision::NoStream, vec![event]).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct PostgresStore {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema.as_str())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects (checking that the server answers), migrates the schema when
    /// `config.migrate`, and starts the LISTEN task when `config.listen`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad configuration, a backend error when
    /// the server cannot be reached or the migration fails.
    pub async fn connect(config: PostgresConfig) -> Result<Self> {
        config.validate()?;
        let schema = config.schema_name()?;
        let connector = Connector::new(&config)?;
        let pg = config.pg_config()?;
        let manager = connector.manager(pg);
        let pool = Pool::builder(manager)
            .max_size(config.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(Duration::from_millis(config.acquire_timeout_ms)))
            .create_timeout(Some(Duration::from_millis(
                config.connect_timeout_ms.max(1),
            )))
            .build()
            .map_err(|e| Error::invalid("postgres pool", e.to_string()))?;
        let store = Self {
            inner: Arc::new(Inner {
                pool,
                sql: Sql::new(&schema),
                schema,
                config,
                connector,
                head: watch::channel(0).0,
                committed: watch::channel(0).0,
                tasks: Mutex::new(Vec::new()),
            }),
        };
        if store.inner.config.migrate {
            store.migrate().await?;
        } else {
            drop(store.client("connect").await?);
        }
        let mut tasks = Vec::new();
        if store.inner.config.listen {
            tasks.push(tokio::spawn(crate::listen::run(Arc::downgrade(
                &store.inner,
            ))));
        }
        if store.inner.config.notify {
            let committed = store.inner.committed.subscribe();
            tasks.push(tokio::spawn(crate::listen::announce(
                Arc::downgrade(&store.inner),
                committed,
            )));
        }
        *store
            .inner
            .tasks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tasks;
        Ok(store)
    }

    /// Records the positions just committed by an append of this process:
    /// wakes the local subscribers and the NOTIFY task.
    pub(crate) fn announce(&self, results: &[Result<AppendResult>]) {
        let Some(last) = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|r| r.last_position)
            .max()
        else {
            return;
        };
        self.inner.committed.send_if_modified(|p| {
            let newer = last > *p;
            if newer {
                *p = last;
            }
            newer
        });
    }

    /// [`connect`](Self::connect) with [`PostgresConfig::from_url`].
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_url(url: &str) -> Result<Self> {
        Self::connect(PostgresConfig::from_url(url)?).await
    }

    /// Runs the migrations (see [`crate::schema`]); returns the versions applied.
    ///
    /// # Errors
    /// A backend error.
    pub async fn migrate(&self) -> Result<Vec<i32>> {
        let cfg = self.inner.config.retry;
        retry(&cfg, || async {
            let mut client = self.client("migrate").await?;
            schema::migrate(&mut client, &self.inner.schema).await
        })
        .await
    }

    /// A [`Store`](orchestrix::Store) over every port, with write coalescing
    /// as the configuration says ([`PostgresConfig::coalesce`], on by
    /// default).
    #[must_use]
    pub fn store(&self) -> orchestrix::Store {
        let store = orchestrix::Store::new(self.backend());
        let c = &self.inner.config;
        if c.coalesce {
            store.with_coalescing(orchestrix::coalesce::CoalesceConfig {
                max_batch: c.max_batch,
                max_in_flight: c.max_in_flight,
            })
        } else {
            store
        }
    }

    /// Every port as trait objects, for [`orchestrix::Store::new`].
    #[must_use]
    pub fn backend(&self) -> Backend {
        Backend::from_all(Arc::new(self.clone()))
    }

    /// The schema.
    #[must_use]
    pub fn schema(&self) -> &SchemaName {
        &self.inner.schema
    }

    /// The configuration.
    #[must_use]
    pub fn config(&self) -> &PostgresConfig {
        &self.inner.config
    }

    /// The connection pool, for read-model queries of the application.
    #[must_use]
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// A pooled connection.
    ///
    /// # Errors
    /// A backend error (transient when the server is unreachable or the pool
    /// stays exhausted).
    pub async fn connection(&self) -> Result<Object> {
        self.client("connect").await
    }

    pub(crate) async fn client(&self, operation: &'static str) -> Result<Object> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| from_pool(operation, e))
    }

    /// Runs an idempotent query on a pooled connection, retried on
    /// transient errors.
    async fn query(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        retry(&self.inner.config.retry, || async {
            let c = self.client(operation).await?;
            let statement = c
                .prepare_cached(sql)
                .await
                .map_err(|e| from_pg(operation, e))?;
            c.query(&statement, params)
                .await
                .map_err(|e| from_pg(operation, e))
        })
        .await
    }

    /// Runs an idempotent statement on a pooled connection, retried on
    /// transient errors.
    async fn execute(
        &self,
        operation: &'static str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64> {
        retry(&self.inner.config.retry, || async {
            let c = self.client(operation).await?;
            let statement = c
                .prepare_cached(sql)
                .await
                .map_err(|e| from_pg(operation, e))?;
            c.execute(&statement, params)
                .await
                .map_err(|e| from_pg(operation, e))
        })
        .await
    }

    /// The highest position that readers of the all-stream can see now,
    /// and the highest committed one (higher while an older transaction
    /// is still running).
    pub(crate) async fn heads(&self) -> Result<(u64, u64)> {
        let mut heads = (0, 0);
        // First against the global xmin (cheap); when that holds events
        // back, against the oldest transaction that claimed positions here.
        for sql in [&self.inner.sql.head, &self.inner.sql.heads_safe] {
            let rows = self.query("head position", sql, &[]).await?;
            let row = rows
                .first()
                .ok_or_else(|| Error::corrupted("head position", "no row"))?;
            let safe: i64 = row.try_get(0).map_err(|e| from_pg("head position", e))?;
            let committed: i64 = row.try_get(1).map_err(|e| from_pg("head position", e))?;
            heads = (
                to_u64("head position", safe)?,
                to_u64("head position", committed)?,
            );
            if heads.0 >= heads.1 {
                break;
            }
        }
        Ok(heads)
    }

    /// The highest position that readers of the all-stream can see now.
    pub(crate) async fn safe_head(&self) -> Result<u64> {
        Ok(self.heads().await?.0)
    }

    /// Waits (with backoff, at most `visibility_wait_ms` in all) while
    /// `attempt` says that committed events are held back by an older
    /// transaction still running; then returns what is readable.
    async fn wait_visible<T, F, Fut>(&self, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(T, bool)>>,
    {
        let budget = Duration::from_millis(self.inner.config.visibility_wait_ms);
        let started = tokio::time::Instant::now();
        let mut sleep = Duration::from_millis(1);
        loop {
            let last = started.elapsed() >= budget;
            let (value, blocked) = attempt().await?;
            if !blocked || last {
                return Ok(value);
            }
            tokio::time::sleep(
                sleep
                    .min(budget.saturating_sub(started.elapsed()))
                    .max(Duration::from_micros(100)),
            )
            .await;
            sleep = (sleep * 2).min(Duration::from_millis(50));
        }
    }

    /// Appends inside the caller's transaction (commits with it): for
    /// changes that must be atomic with an append. Must be the first write
    /// of the transaction (positions are claimed together with the
    /// transaction id, see [`crate::schema`]); a second append in the same
    /// transaction fails.
    ///
    /// # Errors
    /// The outer error when the statement failed (the transaction is then
    /// aborted); each request's own error otherwise.
    pub async fn append_in(
        &self,
        tx: &tokio_postgres::Transaction<'_>,
        requests: &[AppendRequest],
    ) -> Result<Vec<Result<AppendResult>>> {
        if crate::append::repeats_across_requests(requests) {
            return Err(Error::invalid(
                "append batch",
                "an event id occurs in more than one request (append them in separate transactions)",
            ));
        }
        let statements = crate::append::Statements::prepare(tx, &self.inner.sql).await?;
        match crate::append::run(
            tx,
            &statements,
            &self.inner.schema,
            requests,
            false,
            self.inner.config.notify,
        )
        .await
        {
            Ok(outcome) => Ok(outcome.results),
            Err(crate::append::Failure::Unique(e)) => {
                Err(crate::append::unique_error(&e, requests))
            }
            Err(crate::append::Failure::Other(e)) => Err(e),
        }
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<AppendResult>>> {
        crate::append::append_batch(self, requests).await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let sql = match direction {
            Direction::Forward => &self.inner.sql.read_forward,
            Direction::Backward => &self.inner.sql.read_backward,
        };
        let rows = self
            .query("read stream", sql, &[&stream.as_str(), &from, &limit])
            .await?;
        rows.iter().map(rows::event_from_row).collect()
    }

    async fn read_all(
        &self,
        after: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<RecordedEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // Rows come in position order; by the claim invariant (see
        // `crate::schema`) the ones not yet safe form a suffix. While a
        // committed row is held back, wait a little for the older
        // transactions, so that a reader sees its own commits.
        // First against the global xmin (cheap); when that holds events
        // back, against the oldest transaction that claimed positions here.
        self.wait_visible(|| async {
            let params: [&(dyn ToSql + Sync); 4] =
                [&after, &limit, &filter.categories, &filter.event_types];
            let mut result = (Vec::new(), false);
            for sql in [&self.inner.sql.read_all, &self.inner.sql.read_all_safe] {
                let rows = self.query("read all", sql, &params).await?;
                let mut events = Vec::with_capacity(rows.len());
                let mut blocked = false;
                for row in &rows {
                    let safe: bool = row.try_get(12).map_err(|e| from_pg("read all", e))?;
                    if !safe {
                        blocked = true;
                        break;
                    }
                    events.push(rows::event_from_row(row)?);
                }
                result = (events, blocked);
                if !blocked {
                    break;
                }
            }
            Ok(result)
        })
        .await
    }

    async fn stream_revision(&self, stream: &StreamId) -> Result<Option<u64>> {
        let rows = self
            .query(
                "stream revision",
                &self.inner.sql.revision,
                &[&stream.as_str()],
            )
            .await?;
        let revision: Option<i64> = rows
            .first()
            .map_or(Ok(None), |r| r.try_get(0))
            .map_err(|e| from_pg("stream revision", e))?;
        revision.map(|r| to_u64("stream revision", r)).transpose()
    }

    async fn find_event(&self, stream: &StreamId, id: Uuid) -> Result<Option<u64>> {
        // One probe of the unique index on event ids.
        let rows = self
            .query(
                "find event",
                &self.inner.sql.find_event,
                &[&id, &stream.as_str()],
            )
            .await?;
        let revision: Option<i64> = rows
            .first()
            .map_or(Ok(None), |r| r.try_get(0).map(Some))
            .map_err(|e| from_pg("find event", e))?;
        revision.map(|r| to_u64("find event", r)).transpose()
    }

    async fn head_position(&self) -> Result<u64> {
        self.wait_visible(|| async {
            let (safe, committed) = self.heads().await?;
            Ok((safe, safe < committed))
        })
        .await
    }

    fn notifications(&self) -> Option<watch::Receiver<u64>> {
        self.inner
            .config
            .listen
            .then(|| self.inner.head.subscribe())
    }
}

#[async_trait]
impl SnapshotStore for PostgresStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        let revision = to_i64("snapshot revision", snapshot.revision)?;
        let (taken_at, nanos) = split_time(snapshot.taken_at);
        let data: &[u8] = &snapshot.data;
        self.execute(
            "save snapshot",
            &self.inner.sql.save_snapshot,
            &[
                &snapshot.stream_id.as_str(),
                &revision,
                &i64::from(snapshot.state_version),
                &data,
                &taken_at,
                &nanos,
            ],
        )
        .await?;
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        let rows = self
            .query(
                "load snapshot",
                &self.inner.sql.load_snapshot,
                &[&stream.as_str()],
            )
            .await?;
        rows.first()
            .map(|r| rows::snapshot_from_row(stream, r))
            .transpose()
    }
}

#[async_trait]
impl CheckpointStore for PostgresStore {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>> {
        let rows = self
            .query("load checkpoint", &self.inner.sql.load_checkpoint, &[&name])
            .await?;
        rows.first()
            .map(|r| {
                r.try_get::<_, i64>(0)
                    .map_err(|e| from_pg("load checkpoint", e))
                    .and_then(|p| to_u64("checkpoint", p))
            })
            .transpose()
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<()> {
        let position = to_i64("checkpoint", position)?;
        self.execute(
            "save checkpoint",
            &self.inner.sql.save_checkpoint,
            &[&name, &position],
        )
        .await?;
        Ok(())
    }

    async fn delete_checkpoint(&self, name: &str) -> Result<()> {
        self.execute(
            "delete checkpoint",
            &self.inner.sql.delete_checkpoint,
            &[&name],
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl DeadLetterStore for PostgresStore {
    async fn put_dead_letter(&self, letter: DeadLetter) -> Result<()> {
        let position = letter
            .position
            .map(|p| to_i64("dead letter position", p))
            .transpose()?;
        let headers = serde_json::to_value(&letter.headers)
            .map_err(|e| Error::encode("dead letter headers", e))?;
        let (failed_at, nanos) = split_time(letter.failed_at);
        let payload: &[u8] = &letter.payload;
        self.execute(
            "put dead letter",
            &self.inner.sql.put_dead_letter,
            &[
                &letter.id,
                &letter.consumer,
                &letter.event_id,
                &letter.event_type,
                &letter.stream_id,
                &position,
                &payload,
                &headers,
                &letter.reason,
                &letter.error_kind,
                &i64::from(letter.attempts),
                &failed_at,
                &nanos,
            ],
        )
        .await?;
        Ok(())
    }

    async fn list_dead_letters(
        &self,
        consumer: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(
                "list dead letters",
                &self.inner.sql.list_dead_letters,
                &[&consumer, &limit],
            )
            .await?;
        rows.iter().map(rows::dead_letter_from_row).collect()
    }

    async fn get_dead_letter(&self, id: Uuid) -> Result<Option<DeadLetter>> {
        let rows = self
            .query("get dead letter", &self.inner.sql.get_dead_letter, &[&id])
            .await?;
        rows.first().map(rows::dead_letter_from_row).transpose()
    }

    async fn delete_dead_letter(&self, id: Uuid) -> Result<bool> {
        Ok(self
            .execute(
                "delete dead letter",
                &self.inner.sql.delete_dead_letter,
                &[&id],
            )
            .await?
            > 0)
    }
}

#[async_trait]
impl TimerStore for PostgresStore {
    async fn schedule_timer(&self, timer: Timer) -> Result<()> {
        let (due_at, nanos) = split_time(timer.due_at);
        self.execute(
            "schedule timer",
            &self.inner.sql.schedule_timer,
            &[
                &timer.id,
                &timer.owner,
                &timer.key,
                &due_at,
                &nanos,
                &timer.payload,
            ],
        )
        .await?;
        Ok(())
    }

    async fn due_timers(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Timer>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (now, nanos) = split_time(now);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self
            .query(
                "due timers",
                &self.inner.sql.due_timers,
                &[&owner, &now, &nanos, &limit],
            )
            .await?;
        rows.iter().map(rows::timer_from_row).collect()
    }

    async fn cancel_timer(&self, id: &str) -> Result<bool> {
        Ok(self
            .execute("cancel timer", &self.inner.sql.cancel_timer, &[&id])
            .await?
            > 0)
    }
}
