//! [`ScyllaStore`]: the connection, the prepared statements, and the
//! [`EventStore`] port (appends in `append.rs`, the all-stream in
//! `allstream.rs`, the other ports in `ports.rs`).

use std::collections::HashMap;
use std::hash::{BuildHasher as _, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orchestrix::store::{AppendRequest, AppendResult, Backend, Direction, EventStore, Filter};
use orchestrix::{RecordedEvent, Result, StreamId};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::response::query_result::QueryResult;
use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;
use tokio::sync::watch;

use crate::alloc::Allocator;
use crate::config::{ScyllaConfig, TlsMode};
use crate::error::{from_driver, from_exec, retry};
use crate::rows::{RecordRow, recorded, to_u64};
use crate::schema::{self, KeyspaceName};

/// Columns of an event read from the `events` table.
pub(crate) const EVENT_COLUMNS: &str = "event_id, event_type, schema_version, source, time_ms, time_nanos, content_type, data, metadata";

/// Number of in-process append locks (streams hash onto them).
const LOCKS: usize = 256;

/// Every port of the core on one CQL keyspace.
///
/// ```no_run
/// use orchestrix::store::{AppendRequest, EventStore, ExpectedRevision};
/// use orchestrix::{EventRecord, StreamId};
/// use orchestrix_scylla::{ScyllaConfig, ScyllaStore};
/// # async fn demo() -> orchestrix::Result<()> {
/// let config = ScyllaConfig::from_url("scylla://127.0.0.1:9042/bank")?;
/// let store = ScyllaStore::connect(config).await?; // creates the keyspace and tables
/// let e = EventRecord::json("com.acme.bank.Opened", 1, &serde_json::json!({ "owner": "ada" }));
/// let r = store.append(AppendRequest::new(StreamId::parse("account-1")?, ExpectedRevision::NoStream, vec![e])).await?;
/// assert_eq!(r.first_revision, 0);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ScyllaStore {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScyllaStore")
            .field("keyspace", &self.inner.ks.as_str())
            .field("nodes", &self.inner.config.nodes)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) session: Arc<Session>,
    pub(crate) config: ScyllaConfig,
    pub(crate) ks: KeyspaceName,
    pub(crate) st: Statements,
    pub(crate) alloc: Allocator,
    /// Highest position known to be gap-free (every position at or below
    /// it is written or skipped).
    pub(crate) head: AtomicU64,
    pub(crate) bootstrapped: AtomicBool,
    pub(crate) notify: watch::Sender<u64>,
    locks: Vec<tokio::sync::Mutex<()>>,
    hasher: RandomState,
    /// Where the all-stream was last found stuck, and since when.
    pub(crate) stall: Mutex<Option<(u64, Instant)>>,
    pub(crate) recovering: tokio::sync::Mutex<()>,
}

/// The prepared statements of the store.
pub(crate) struct Statements {
    pub(crate) stream_state: PreparedStatement,
    pub(crate) stream_state_serial: PreparedStatement,
    pub(crate) commit_head: PreparedStatement,
    pub(crate) insert_event: PreparedStatement,
    pub(crate) fence: PreparedStatement,
    pub(crate) read_forward: PreparedStatement,
    pub(crate) find_event: PreparedStatement,
    pub(crate) read_backward: PreparedStatement,
    pub(crate) read_backward_serial: PreparedStatement,
    pub(crate) all_insert: PreparedStatement,
    pub(crate) all_skip: PreparedStatement,
    pub(crate) all_keys: PreparedStatement,
    pub(crate) all_range: PreparedStatement,
    pub(crate) all_in: PreparedStatement,
    pub(crate) claims_read: PreparedStatement,
    pub(crate) claim_bump: PreparedStatement,
    pub(crate) claim_insert: PreparedStatement,
    pub(crate) claim_delete: PreparedStatement,
    pub(crate) claim_owner_serial: PreparedStatement,
    pub(crate) next_serial: PreparedStatement,
    pub(crate) snapshot_save: PreparedStatement,
    pub(crate) snapshot_load: PreparedStatement,
    pub(crate) checkpoint_load: PreparedStatement,
    pub(crate) checkpoint_save: PreparedStatement,
    pub(crate) checkpoint_delete: PreparedStatement,
    pub(crate) dl_insert: PreparedStatement,
    pub(crate) dl_id_insert: PreparedStatement,
    pub(crate) dl_id_get: PreparedStatement,
    pub(crate) dl_id_delete: PreparedStatement,
    pub(crate) dl_get: PreparedStatement,
    pub(crate) dl_delete: PreparedStatement,
    pub(crate) dl_list: PreparedStatement,
    pub(crate) dl_list_all: PreparedStatement,
    pub(crate) timer_insert: PreparedStatement,
    pub(crate) timer_get: PreparedStatement,
    pub(crate) timer_delete: PreparedStatement,
    pub(crate) timer_owner_insert: PreparedStatement,
    pub(crate) timer_owner_delete: PreparedStatement,
    pub(crate) timer_due: PreparedStatement,
}

impl Statements {
    async fn prepare(session: &Session, ks: &KeyspaceName, serial: Consistency) -> Result<Self> {
        let t = |name: &str| ks.table(name);
        let p = |cql: String| async move {
            session
                .prepare(cql)
                .await
                .map_err(|e| from_driver("prepare", true, e))
        };
        let serial_read = |mut s: PreparedStatement| {
            s.set_consistency(serial);
            s
        };
        let all_cols = format!("position, skip, append_last, stream_id, revision, {EVENT_COLUMNS}");
        Ok(Self {
            stream_state: p(format!(
                "SELECT head, last_claim, claim_committed FROM {} WHERE stream_id = ? LIMIT 1",
                t("events")
            ))
            .await?,
            stream_state_serial: serial_read(
                p(format!(
                    "SELECT head, last_claim, claim_committed FROM {} WHERE stream_id = ? LIMIT 1",
                    t("events")
                ))
                .await?,
            ),
            commit_head: p(format!(
                "UPDATE {} SET head = ?, last_claim = ?, claim_committed = true WHERE stream_id = ? IF head = ? AND last_claim = ?",
                t("events")
            ))
            .await?,
            insert_event: p(format!(
                "INSERT INTO {} (stream_id, revision, position, {EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                t("events")
            ))
            .await?,
            fence: p(format!(
                "UPDATE {} SET last_claim = ?, claim_committed = false WHERE stream_id = ? IF last_claim = ?",
                t("events")
            ))
            .await?,
            read_forward: p(format!(
                "SELECT revision, position, {EVENT_COLUMNS} FROM {} WHERE stream_id = ? AND revision >= ? LIMIT ?",
                t("events")
            ))
            .await?,
            // Filtered within the stream's partition, on the server: only the
            // revision of a match travels.
            find_event: p(format!(
                "SELECT revision FROM {} WHERE stream_id = ? AND event_id = ? ALLOW FILTERING",
                t("events")
            ))
            .await?,
            read_backward: p(format!(
                "SELECT revision, position, {EVENT_COLUMNS} FROM {} WHERE stream_id = ? AND revision <= ? ORDER BY revision DESC LIMIT ?",
                t("events")
            ))
            .await?,
            read_backward_serial: serial_read(
                p(format!(
                    "SELECT revision, position, {EVENT_COLUMNS} FROM {} WHERE stream_id = ? AND revision <= ? ORDER BY revision DESC LIMIT ?",
                    t("events")
                ))
                .await?,
            ),
            all_insert: p(format!(
                "INSERT INTO {} (bucket, position, skip, append_last, stream_id, category, revision, {EVENT_COLUMNS}) \
                 VALUES (?, ?, false, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                t("all_events")
            ))
            .await?,
            all_skip: p(format!(
                "INSERT INTO {} (bucket, position, skip, append_last) VALUES (?, ?, true, ?)",
                t("all_events")
            ))
            .await?,
            all_keys: p(format!(
                "SELECT position, skip, append_last, category, event_type FROM {} WHERE bucket = ? AND position >= ? LIMIT ?",
                t("all_events")
            ))
            .await?,
            all_range: p(format!(
                "SELECT {all_cols} FROM {} WHERE bucket = ? AND position >= ? AND position <= ?",
                t("all_events")
            ))
            .await?,
            all_in: p(format!(
                "SELECT {all_cols} FROM {} WHERE bucket = ? AND position IN ?",
                t("all_events")
            ))
            .await?,
            claims_read: p(format!(
                "SELECT next, last, first, stream_id, claimed_at FROM {} WHERE shard = {} AND last >= ?",
                t("claims"),
                schema::ALLOC_SHARD
            ))
            .await?,
            claim_bump: p(format!(
                "UPDATE {} SET next = ? WHERE shard = {} IF next = ?",
                t("claims"),
                schema::ALLOC_SHARD
            ))
            .await?,
            claim_insert: p(format!(
                "INSERT INTO {} (shard, last, first, stream_id, claimed_at, owner) VALUES ({}, ?, ?, ?, ?, ?)",
                t("claims"),
                schema::ALLOC_SHARD
            ))
            .await?,
            claim_delete: p(format!(
                "DELETE FROM {} WHERE shard = {} AND last = ?",
                t("claims"),
                schema::ALLOC_SHARD
            ))
            .await?,
            claim_owner_serial: serial_read(
                p(format!(
                    "SELECT owner FROM {} WHERE shard = {} AND last = ?",
                    t("claims"),
                    schema::ALLOC_SHARD
                ))
                .await?,
            ),
            next_serial: serial_read(
                p(format!(
                    "SELECT next FROM {} WHERE shard = {} LIMIT 1",
                    t("claims"),
                    schema::ALLOC_SHARD
                ))
                .await?,
            ),
            snapshot_save: p(format!(
                "INSERT INTO {} (stream_id, revision, state_version, data, taken_ms, taken_nanos) VALUES (?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
                t("snapshots")
            ))
            .await?,
            snapshot_load: p(format!(
                "SELECT revision, state_version, data, taken_ms, taken_nanos FROM {} WHERE stream_id = ?",
                t("snapshots")
            ))
            .await?,
            checkpoint_load: p(format!(
                "SELECT position FROM {} WHERE name = ?",
                t("checkpoints")
            ))
            .await?,
            checkpoint_save: p(format!(
                "INSERT INTO {} (name, position) VALUES (?, ?)",
                t("checkpoints")
            ))
            .await?,
            checkpoint_delete: p(format!("DELETE FROM {} WHERE name = ?", t("checkpoints"))).await?,
            dl_insert: p(format!(
                "INSERT INTO {} (consumer, failed_ms, id, failed_nanos, event_id, event_type, stream_id, position, payload, headers, reason, error_kind, attempts) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                t("dead_letters")
            ))
            .await?,
            dl_id_insert: p(format!(
                "INSERT INTO {} (id, consumer, failed_ms) VALUES (?, ?, ?) IF NOT EXISTS",
                t("dead_letter_ids")
            ))
            .await?,
            dl_id_get: p(format!(
                "SELECT consumer, failed_ms FROM {} WHERE id = ?",
                t("dead_letter_ids")
            ))
            .await?,
            dl_id_delete: p(format!(
                "DELETE FROM {} WHERE id = ? IF EXISTS",
                t("dead_letter_ids")
            ))
            .await?,
            dl_get: p(format!(
                "SELECT consumer, failed_ms, id, failed_nanos, event_id, event_type, stream_id, position, payload, headers, reason, error_kind, attempts \
                 FROM {} WHERE consumer = ? AND failed_ms = ? AND id = ?",
                t("dead_letters")
            ))
            .await?,
            dl_delete: p(format!(
                "DELETE FROM {} WHERE consumer = ? AND failed_ms = ? AND id = ?",
                t("dead_letters")
            ))
            .await?,
            dl_list: p(format!(
                "SELECT consumer, failed_ms, id, failed_nanos, event_id, event_type, stream_id, position, payload, headers, reason, error_kind, attempts \
                 FROM {} WHERE consumer = ? LIMIT ?",
                t("dead_letters")
            ))
            .await?,
            dl_list_all: p(format!(
                "SELECT consumer, failed_ms, id, failed_nanos, event_id, event_type, stream_id, position, payload, headers, reason, error_kind, attempts \
                 FROM {}",
                t("dead_letters")
            ))
            .await?,
            timer_insert: p(format!(
                "INSERT INTO {} (id, owner, key, due_ms, due_nanos, payload) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS",
                t("timers")
            ))
            .await?,
            timer_get: p(format!(
                "SELECT owner, key, due_ms, due_nanos, payload FROM {} WHERE id = ?",
                t("timers")
            ))
            .await?,
            timer_delete: p(format!("DELETE FROM {} WHERE id = ? IF EXISTS", t("timers"))).await?,
            timer_owner_insert: p(format!(
                "INSERT INTO {} (owner, due_ms, id, due_nanos, key, payload) VALUES (?, ?, ?, ?, ?, ?)",
                t("timers_by_owner")
            ))
            .await?,
            timer_owner_delete: p(format!(
                "DELETE FROM {} WHERE owner = ? AND due_ms = ? AND id = ?",
                t("timers_by_owner")
            ))
            .await?,
            timer_due: p(format!(
                "SELECT id, key, due_ms, due_nanos, payload FROM {} WHERE owner = ? AND due_ms <= ? LIMIT ?",
                t("timers_by_owner")
            ))
            .await?,
        })
    }
}

impl ScyllaStore {
    /// Connects, creates the keyspace and the tables (when `migrate`), and
    /// prepares every statement.
    ///
    /// # Errors
    /// [`orchestrix::Error::InvalidInput`] for a bad config,
    /// [`orchestrix::Error::Backend`] when the cluster cannot be reached.
    pub async fn connect(config: ScyllaConfig) -> Result<Self> {
        config.validate()?;
        let ks = KeyspaceName::new(&config.keyspace)?;
        let session = Arc::new(build_session(&config).await?);
        if config.migrate {
            schema::create(&session, &ks, config.replication_factor).await?;
        }
        let serial = match config.consistency.serial() {
            scylla::statement::SerialConsistency::LocalSerial => Consistency::LocalSerial,
            scylla::statement::SerialConsistency::Serial => Consistency::Serial,
        };
        let st = Statements::prepare(&session, &ks, serial).await?;
        let alloc = Allocator::start(session.clone(), &st, config.retry);
        let inner = Inner {
            session,
            ks,
            st,
            alloc,
            head: AtomicU64::new(0),
            bootstrapped: AtomicBool::new(false),
            notify: watch::channel(0).0,
            locks: (0..LOCKS).map(|_| tokio::sync::Mutex::new(())).collect(),
            hasher: RandomState::new(),
            stall: Mutex::new(None),
            recovering: tokio::sync::Mutex::new(()),
            config,
        };
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// [`connect`](Self::connect) with a `scylla://` URL.
    ///
    /// # Errors
    /// As [`ScyllaConfig::from_url`] and [`connect`](Self::connect).
    pub async fn connect_url(url: &str) -> Result<Self> {
        Self::connect(ScyllaConfig::from_url(url)?).await
    }

    /// Every port of this store, for [`orchestrix::Store::new`].
    #[must_use]
    pub fn backend(&self) -> Backend {
        Backend::from_all(Arc::new(self.clone()))
    }

    /// The config it was opened with.
    #[must_use]
    pub fn config(&self) -> &ScyllaConfig {
        &self.inner.config
    }

    /// The keyspace.
    #[must_use]
    pub fn keyspace(&self) -> &KeyspaceName {
        &self.inner.ks
    }

    /// The driver session, for tools and tests that run their own CQL.
    #[must_use]
    pub fn session(&self) -> &Arc<Session> {
        &self.inner.session
    }

    pub(crate) async fn stream_lock(&self, stream: &StreamId) -> tokio::sync::MutexGuard<'_, ()> {
        let h = self.inner.hasher.hash_one(stream.as_str());
        let i = usize::try_from(h % LOCKS as u64).unwrap_or(0);
        self.inner.locks[i].lock().await
    }

    pub(crate) async fn read_events(
        &self,
        statement: &PreparedStatement,
        stream: &StreamId,
        from: i64,
        limit: i32,
    ) -> Result<Vec<RecordedEvent>> {
        let result: QueryResult = retry(&self.inner.config.retry, || async {
            self.inner
                .session
                .execute_unpaged(statement, (stream.as_str(), from, limit))
                .await
                .map_err(|e| from_exec("read stream", e))
        })
        .await?;
        let rows = result
            .into_rows_result()
            .map_err(|e| from_driver("read stream", false, e))?;
        let mut out = Vec::with_capacity(rows.rows_num());
        type Row = (
            i64,
            Option<i64>,
            Option<uuid::Uuid>,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<scylla::value::CqlTimestamp>,
            Option<i32>,
            Option<String>,
            Option<Vec<u8>>,
            Option<String>,
        );
        for row in rows
            .rows::<Row>()
            .map_err(|e| from_driver("read stream", false, e))?
        {
            let (revision, position, a, b, c, d, e, f, g, h, i) =
                row.map_err(|e| from_driver("read stream", false, e))?;
            let record: RecordRow = (a, b, c, d, e, f, g, h, i);
            out.push(recorded(
                stream.as_str(),
                revision,
                position.unwrap_or_default(),
                record,
            )?);
        }
        Ok(out)
    }
}

async fn build_session(config: &ScyllaConfig) -> Result<Session> {
    let profile = ExecutionProfile::builder()
        .consistency(config.consistency.driver())
        .serial_consistency(Some(config.consistency.serial()))
        .request_timeout(Some(Duration::from_millis(
            config.request_timeout_ms.max(1),
        )))
        .build()
        .into_handle();
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.nodes)
        .connection_timeout(Duration::from_millis(config.connect_timeout_ms.max(1)))
        .default_execution_profile_handle(profile)
        .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()));
    if let Some(user) = &config.user {
        builder = builder.user(user, config.password.clone().unwrap_or_default());
    }
    if config.tls != TlsMode::Disable {
        builder = crate::tls::configure(builder, config)?;
    }
    builder
        .build()
        .await
        .map_err(|e| from_driver("connect", true, e))
}

#[async_trait]
impl EventStore for ScyllaStore {
    fn backend(&self) -> &'static str {
        crate::error::BACKEND
    }

    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<AppendResult>>> {
        // Requests for one stream run in order; different streams at once.
        let mut groups: HashMap<StreamId, Vec<(usize, AppendRequest)>> = HashMap::new();
        let total = requests.len();
        for (i, r) in requests.into_iter().enumerate() {
            groups.entry(r.stream_id.clone()).or_default().push((i, r));
        }
        let runs = groups.into_values().map(|group| async move {
            let mut out = Vec::with_capacity(group.len());
            for (i, r) in group {
                out.push((i, self.append_one(r).await));
            }
            out
        });
        let mut results: Vec<Option<Result<AppendResult>>> = (0..total).map(|_| None).collect();
        for (i, r) in futures::future::join_all(runs).await.into_iter().flatten() {
            results[i] = Some(r);
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(orchestrix::Error::corrupted("append result", "missing")))
            })
            .collect())
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
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        match direction {
            Direction::Forward => {
                let Ok(from) = i64::try_from(from) else {
                    return Ok(Vec::new());
                };
                self.read_events(&self.inner.st.read_forward, stream, from, limit)
                    .await
            }
            Direction::Backward => {
                let from = i64::try_from(from).unwrap_or(i64::MAX);
                self.read_events(&self.inner.st.read_backward, stream, from, limit)
                    .await
            }
        }
    }

    async fn read_all(
        &self,
        after: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<RecordedEvent>> {
        self.read_all_events(after, limit, filter).await
    }

    async fn find_event(&self, stream: &StreamId, id: uuid::Uuid) -> Result<Option<u64>> {
        let result: QueryResult = retry(&self.inner.config.retry, || async {
            self.inner
                .session
                .execute_unpaged(&self.inner.st.find_event, (stream.as_str(), id))
                .await
                .map_err(|e| from_exec("find event", e))
        })
        .await?;
        let rows = result
            .into_rows_result()
            .map_err(|e| from_driver("find event", false, e))?;
        let first = rows
            .maybe_first_row::<(i64,)>()
            .map_err(|e| from_driver("find event", false, e))?;
        first
            .map(|(revision,)| to_u64("event revision", revision))
            .transpose()
    }

    async fn stream_revision(&self, stream: &StreamId) -> Result<Option<u64>> {
        let state = self.stream_state(stream, false).await?;
        state.head.map(|h| to_u64("head revision", h)).transpose()
    }

    async fn head_position(&self) -> Result<u64> {
        self.gap_free_head().await
    }

    fn notifications(&self) -> Option<watch::Receiver<u64>> {
        Some(self.inner.notify.subscribe())
    }
}
