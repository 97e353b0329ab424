//! The sink: a [`TransactionalProjection`] that writes events into Delta
//! tables, each table's rows and the sink's position in one Delta commit.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use deltalake::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use deltalake::arrow::record_batch::RecordBatch;
use orchestrix::codec::{Codec, JsonCodec};
use orchestrix::dead_letter::stable_id;
use orchestrix::runtime::TransactionalProjection;
use orchestrix::runtime::dead_letters::dead_letter_for;
use orchestrix::store::Filter;
use orchestrix::{Error, RecordedEvent, Result, Store};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::schema::{ColumnType, Incompatible, SchemaSource, TableColumns, check_event};
use crate::table::{LakeTable, is_table};

/// Called after a batch's Parquet files are written and before they are
/// committed, with the table directory and the position about to be
/// committed: for crash tests.
pub type BeforeCommit = Arc<dyn Fn(&Path, u64) + Send + Sync>;

/// A data-quality rule run on each payload before it is written; an `Err`
/// sends the event to the dead letters with the message as the reason.
pub trait QualityCheck: Send + Sync + fmt::Debug + 'static {
    /// Checks one event's decoded payload.
    ///
    /// # Errors
    /// The reason the event is refused.
    fn check(
        &self,
        event: &RecordedEvent,
        payload: &Map<String, Value>,
    ) -> std::result::Result<(), String>;
}

/// Which table an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TableLayout {
    /// One table per event type (`com.acme.OrderPlaced`).
    #[default]
    PerEventType,
    /// One table per stream category (`order` for stream `order-42`).
    PerCategory,
}

/// How the sink writes; see [`LakehouseSink::builder`].
#[derive(Clone)]
pub struct SinkConfig {
    name: String,
    root: PathBuf,
    layout: TableLayout,
    tenant: Option<String>,
    filter: Filter,
    max_rows: usize,
    max_bytes: usize,
    target_file_size: u64,
    idle_commit_after: u64,
    checkpoint_interval: Option<u64>,
    schemas: Option<Arc<dyn SchemaSource>>,
    codec: Arc<dyn Codec>,
    checks: Vec<Arc<dyn QualityCheck>>,
    before_commit: Option<BeforeCommit>,
    source: Option<String>,
}

impl fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkConfig")
            .field("name", &self.name)
            .field("root", &self.root)
            .field("layout", &self.layout)
            .field("tenant", &self.tenant)
            .field("max_rows", &self.max_rows)
            .field("max_bytes", &self.max_bytes)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Builds a [`LakehouseSink`].
#[derive(Debug)]
#[must_use]
pub struct SinkBuilder {
    store: Store,
    config: SinkConfig,
}

impl SinkBuilder {
    /// One table per event type (default) or per stream category.
    pub fn layout(mut self, layout: TableLayout) -> Self {
        self.config.layout = layout;
        self
    }

    /// Also partitions by tenant, read from the event's metadata extension
    /// `extension` (`_none` when absent).
    pub fn partition_by_tenant(mut self, extension: &str) -> Self {
        self.config.tenant = Some(extension.to_owned());
        self
    }

    /// Only the events matching `filter` (all by default).
    pub fn filter(mut self, filter: Filter) -> Self {
        self.config.filter = filter;
        self
    }

    /// At most this many events per Delta commit (default 10,000). The
    /// consumer's `batch_size` is the other bound: a batch is committed as
    /// soon as the consumer hands it over, so latency stays bounded by one
    /// read and one commit.
    pub fn max_rows(mut self, rows: usize) -> Self {
        self.config.max_rows = rows.max(1);
        self
    }

    /// At most about this many payload bytes per Delta commit (default 64 MiB).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.config.max_bytes = bytes.max(1);
        self
    }

    /// Parquet files roll over at this size (default 128 MiB).
    pub fn target_file_size(mut self, bytes: u64) -> Self {
        self.config.target_file_size = bytes;
        self
    }

    /// A table that received nothing while the sink moved this many positions
    /// ahead gets a commit of the position alone (default 50,000), which
    /// bounds the replay after a restart.
    pub fn idle_commit_after(mut self, positions: u64) -> Self {
        self.config.idle_commit_after = positions.max(1);
        self
    }

    /// Tables this sink creates get a Delta checkpoint every `commits`
    /// commits (`delta.checkpointInterval`; Delta's default is 100). A
    /// checkpoint keeps the sink's position; it bounds what a restart reads
    /// from the log.
    pub fn checkpoint_interval(mut self, commits: u64) -> Self {
        self.config.checkpoint_interval = Some(commits.max(1));
        self
    }

    /// Declared payload schemas (e.g. [`AvroSchemas`](crate::schema::AvroSchemas));
    /// without one, columns are inferred from the JSON payloads.
    pub fn schemas(mut self, schemas: Arc<dyn SchemaSource>) -> Self {
        self.config.schemas = Some(schemas);
        self
    }

    /// The codec that turns stored payloads into JSON (default JSON). With
    /// GDPR, give the codec *inside* the personal-data codec, so personal
    /// fields reach the lake as ciphertext tokens.
    pub fn codec(mut self, codec: Arc<dyn Codec>) -> Self {
        self.config.codec = codec;
        self
    }

    /// Adds a data-quality check; failing events go to the dead letters.
    pub fn check(mut self, check: Arc<dyn QualityCheck>) -> Self {
        self.config.checks.push(check);
        self
    }

    /// Runs `hook` between writing a batch's files and committing them.
    pub fn before_commit(mut self, hook: BeforeCommit) -> Self {
        self.config.before_commit = Some(hook);
        self
    }

    /// Which store this sink reads, as an identity the user recognises (a
    /// store URL without its password, say). Positions are the store's
    /// global positions, so a lake fed from one store must not be resumed
    /// from another: the first start records the source in the lake
    /// (`_orchestrix_sources/{name}`), and a later start with a different
    /// source fails with [`Error::InvalidInput`] naming both, instead of
    /// resuming at a position that means nothing in the new store (and
    /// skipping its events). Not set: no check.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.config.source = Some(source.into());
        self
    }

    /// The sink.
    pub fn build(self) -> LakehouseSink {
        LakehouseSink {
            store: self.store,
            config: self.config,
            state: Mutex::new(State::default()),
            stats: Stats::default(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    /// The app id the tables were loaded for.
    app_id: Option<String>,
    tables: BTreeMap<String, LakeTable>,
}

#[derive(Debug, Default)]
struct Stats {
    rows: AtomicU64,
    commits: AtomicU64,
    dead_lettered: AtomicU64,
    skipped: AtomicU64,
}

/// What a sink did since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SinkStats {
    /// Rows written and committed.
    pub rows: u64,
    /// Delta commits.
    pub commits: u64,
    /// Events sent to the dead letters (incompatible or failing a check).
    pub dead_lettered: u64,
    /// Events skipped because their table already held them (a replay).
    pub skipped: u64,
}

/// Writes events into Delta tables under a root directory, exactly once.
///
/// Run it as a transactional projection:
/// `ProjectionRunner::transactional(store, Arc::new(sink)).start()`, or
/// register it with `ApplicationBuilder::transactional_projection`. The
/// runner reads batches from the all-stream and calls
/// [`apply_batch`](TransactionalProjection::apply_batch); the sink groups the
/// events by table and, per table, writes Parquet files and commits them with
/// a Delta transaction identifier (`txn`: app id = the checkpoint name,
/// version = the batch's last position) in one commit. On start,
/// [`load_checkpoint`](TransactionalProjection::load_checkpoint) reads every
/// table's version back from its log and resumes at the lowest; events at or
/// below a table's own version are skipped. A crash before a commit leaves
/// only unreferenced files (removed by [`vacuum`](crate::vacuum)); a replay
/// never writes a row twice.
///
/// ```
/// use std::sync::Arc;
/// use orchestrix::runtime::ProjectionRunner;
/// use orchestrix::store::ExpectedRevision;
/// use orchestrix::{EventRecord, Store, StreamId};
/// use orchestrix_lakehouse::{LakehouseSink, read_rows};
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Store::memory();
/// let stream = StreamId::new("order", "1")?;
/// let placed = EventRecord::json("com.acme.Placed", 1, &serde_json::json!({"amount": 12}));
/// store.append(&stream, ExpectedRevision::NoStream, vec![placed]).await?;
///
/// let lake = tempfile::tempdir()?;
/// let sink = Arc::new(LakehouseSink::builder(store.clone(), "lake", lake.path()).build());
/// let runner = ProjectionRunner::transactional(store.clone(), sink.clone()).start().await?;
/// runner.wait_until_caught_up(store.head_position().await?).await?;
/// runner.shutdown().await?;
///
/// let rows = read_rows(&lake.path().join("com.acme.Placed")).await?;
/// assert_eq!(rows[0]["amount"], 12);
/// assert_eq!(rows[0]["ce_subject"], "order-1");
/// # Ok::<(), anyhow::Error>(()) }).unwrap();
/// ```
pub struct LakehouseSink {
    store: Store,
    config: SinkConfig,
    state: Mutex<State>,
    stats: Stats,
}

impl fmt::Debug for LakehouseSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LakehouseSink")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// One event, decoded, on its way to a table.
struct Row<'e> {
    event: &'e RecordedEvent,
    payload: Map<String, Value>,
    date: String,
    tenant: Option<String>,
}

impl LakehouseSink {
    /// A sink named `name` (the checkpoint, dead-letter and Delta app id)
    /// writing under `root`; one table per event type, JSON payloads,
    /// columns inferred.
    pub fn builder(store: Store, name: &str, root: impl Into<PathBuf>) -> SinkBuilder {
        SinkBuilder {
            store,
            config: SinkConfig {
                name: name.to_owned(),
                root: root.into(),
                layout: TableLayout::PerEventType,
                tenant: None,
                filter: Filter::all(),
                max_rows: 10_000,
                max_bytes: 64 << 20,
                target_file_size: 128 << 20,
                idle_commit_after: 50_000,
                checkpoint_interval: None,
                schemas: None,
                codec: Arc::new(JsonCodec),
                checks: Vec::new(),
                before_commit: None,
                source: None,
            },
        }
    }

    /// The root directory of the lake.
    #[must_use]
    pub fn root(&self) -> &Path {
        &self.config.root
    }

    /// What the sink did since it started.
    #[must_use]
    pub fn stats(&self) -> SinkStats {
        SinkStats {
            rows: self.stats.rows.load(Ordering::Relaxed),
            commits: self.stats.commits.load(Ordering::Relaxed),
            dead_lettered: self.stats.dead_lettered.load(Ordering::Relaxed),
            skipped: self.stats.skipped.load(Ordering::Relaxed),
        }
    }

    /// The Arrow batches (one per table) the sink would build for `events`
    /// into empty tables, without writing anything; events it would refuse
    /// are left out. For previews and for benchmarks against plain Parquet.
    ///
    /// # Errors
    /// When a batch cannot be built.
    pub fn arrow_batches(&self, events: &[RecordedEvent]) -> Result<Vec<(String, RecordBatch)>> {
        let mut by_table: BTreeMap<String, (TableColumns, Vec<Row<'_>>)> = BTreeMap::new();
        for event in events {
            let Ok(row) = self.to_row(event) else {
                continue;
            };
            let (columns, rows) = by_table.entry(self.table_name(event)).or_default();
            let declared = self
                .config
                .schemas
                .as_ref()
                .and_then(|s| s.fields(event.event_type(), event.record.schema_version));
            let Ok(new) = check_event(
                columns,
                !rows.is_empty(),
                declared.as_deref().map(Vec::as_slice),
                &row.payload,
            ) else {
                continue;
            };
            for (n, t) in new {
                if columns.get(&n).is_none() {
                    columns.push(n, t);
                }
            }
            rows.push(row);
        }
        let partitions = self.partitions();
        by_table
            .into_iter()
            .map(|(name, (columns, rows))| Ok((name, build_batch(&columns, &partitions, &rows)?)))
            .collect()
    }

    /// The table an event goes to.
    #[must_use]
    pub fn table_name(&self, event: &RecordedEvent) -> String {
        let raw = match self.config.layout {
            TableLayout::PerEventType => event.event_type(),
            TableLayout::PerCategory => event.stream_id.category(),
        };
        table_dir_name(raw)
    }

    fn partitions(&self) -> Vec<String> {
        let mut p = vec![crate::schema::COL_DATE.to_owned()];
        if self.config.tenant.is_some() {
            p.push(crate::schema::COL_TENANT.to_owned());
        }
        p
    }

    async fn open_table(&self, dir: PathBuf, app_id: &str) -> Result<LakeTable> {
        let mut table = LakeTable::open(dir, app_id, self.partitions()).await?;
        table.checkpoint_interval = self.config.checkpoint_interval;
        Ok(table)
    }

    /// Records the configured source in the lake on the first start, and
    /// refuses a start with another one (see [`SinkBuilder::source`]).
    fn check_source(&self, checkpoint_name: &str) -> Result<()> {
        let Some(source) = &self.config.source else {
            return Ok(());
        };
        let dir = self.config.root.join("_orchestrix_sources");
        let path = dir.join(table_dir_name(checkpoint_name));
        let io = |operation: &'static str| {
            move |e: std::io::Error| Error::Backend {
                backend: "delta",
                operation,
                transient: false,
                source: Box::new(e),
            }
        };
        match std::fs::read_to_string(&path) {
            Ok(recorded) if recorded.trim_end() == source.as_str() => Ok(()),
            Ok(recorded) => Err(Error::invalid(
                format!("lake `{}`", self.config.root.display()),
                format!(
                    "sink `{checkpoint_name}` wrote this lake from `{}`, not from `{source}`: \
                     positions of one store mean nothing in another; \
                     use another lake directory for this store",
                    recorded.trim_end()
                ),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&dir).map_err(io("record the source"))?;
                std::fs::write(&path, format!("{source}\n")).map_err(io("record the source"))
            }
            Err(e) => Err(io("read the source")(e)),
        }
    }

    /// Loads every table under the root for `app_id` (once per app id).
    async fn ensure_loaded(&self, state: &mut State, app_id: &str) -> Result<()> {
        if state.app_id.as_deref() == Some(app_id) {
            return Ok(());
        }
        state.tables.clear();
        let entries = match std::fs::read_dir(&self.config.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                state.app_id = Some(app_id.to_owned());
                return Ok(());
            }
            Err(e) => {
                return Err(Error::Backend {
                    backend: "delta",
                    operation: "list lake",
                    transient: false,
                    source: Box::new(e),
                });
            }
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            if !is_table(&dir) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let table = self.open_table(dir, app_id).await?;
            state.tables.insert(name, table);
        }
        state.app_id = Some(app_id.to_owned());
        Ok(())
    }

    fn to_row<'e>(&self, event: &'e RecordedEvent) -> std::result::Result<Row<'e>, Incompatible> {
        let r = &event.record;
        let value = self
            .config
            .codec
            .decode(&r.event_type, r.schema_version, &r.data)
            .map_err(|e| Incompatible::NotAnObject(e.to_string()))?;
        let Value::Object(payload) = value else {
            return Err(Incompatible::NotAnObject(format!("got {value}")));
        };
        for check in &self.config.checks {
            check
                .check(event, &payload)
                .map_err(Incompatible::Quality)?;
        }
        let tenant = self.config.tenant.as_ref().map(|ext| {
            r.metadata
                .extensions
                .get(ext)
                .filter(|t| !t.is_empty())
                .cloned()
                .unwrap_or_else(|| "_none".to_owned())
        });
        Ok(Row {
            event,
            payload,
            date: r.time.format("%Y-%m-%d").to_string(),
            tenant,
        })
    }

    /// Whether a dead letter of this sink holds `event` (a dead-letter replay).
    async fn is_replay(&self, app_id: &str, event: &RecordedEvent) -> Result<bool> {
        let id = letter_id(app_id, event);
        Ok(self
            .store
            .backend()
            .dead_letters
            .get_dead_letter(id)
            .await?
            .is_some())
    }

    async fn apply_chunk(
        &self,
        state: &mut State,
        events: &[RecordedEvent],
        app_id: &str,
        last_position: u64,
    ) -> Result<()> {
        // Group by table, dropping what a table already holds.
        let mut by_table: BTreeMap<String, Vec<&RecordedEvent>> = BTreeMap::new();
        for event in events {
            let name = self.table_name(event);
            let committed = state.tables.get(&name).and_then(|t| t.committed);
            if committed.is_some_and(|c| event.position <= c)
                && !self.is_replay(app_id, event).await?
            {
                self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            by_table.entry(name).or_default().push(event);
        }
        let mut letters = Vec::new();
        let mut pending: Vec<(String, Vec<RecordBatch>, bool, usize)> = Vec::new();
        for (name, events) in by_table {
            if !state.tables.contains_key(&name) {
                let dir = self.config.root.join(&name);
                let table = self.open_table(dir, app_id).await?;
                state.tables.insert(name.clone(), table);
            }
            let Some(table) = state.tables.get(&name) else {
                continue;
            };
            let mut columns = table.columns.clone();
            let mut has_rows = table.exists();
            let mut evolved = false;
            let mut rows = Vec::with_capacity(events.len());
            for event in events {
                let checked = self.to_row(event).and_then(|row| {
                    let declared =
                        self.config.schemas.as_ref().and_then(|s| {
                            s.fields(event.event_type(), event.record.schema_version)
                        });
                    let new = check_event(
                        &columns,
                        has_rows,
                        declared.as_deref().map(Vec::as_slice),
                        &row.payload,
                    )?;
                    Ok((row, new))
                });
                match checked {
                    Ok((row, new)) => {
                        for (n, t) in new {
                            if columns.get(&n).is_none() {
                                columns.push(n, t);
                                evolved = true;
                            }
                        }
                        has_rows = true;
                        rows.push(row);
                    }
                    Err(why) => {
                        tracing::warn!(sink = %self.config.name, table = %name, event = %event.id(), reason = %why, "event refused; dead-lettered");
                        let error = Error::invalid(
                            format!("event for lake table `{name}`"),
                            why.to_string(),
                        );
                        let mut letter = dead_letter_for(app_id, event, &error, 1);
                        letter.id = letter_id(app_id, event);
                        letters.push(letter);
                    }
                }
            }
            if rows.is_empty() {
                continue;
            }
            let partitions = table.partitions.clone();
            let count = rows.len();
            let batch = build_batch(&columns, &partitions, &rows)?;
            pending.push((name.clone(), vec![batch], evolved && table.exists(), count));
            if let Some(t) = state.tables.get_mut(&name) {
                // Columns are adopted now; a failed commit reloads the table.
                t.columns = columns;
            }
        }
        for letter in letters {
            self.store
                .backend()
                .dead_letters
                .put_dead_letter(letter)
                .await?;
            self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        }
        let mut touched = Vec::new();
        for (name, batches, evolved, count) in pending {
            let Some(table) = state.tables.get_mut(&name) else {
                continue;
            };
            let position = table
                .committed
                .map_or(last_position, |c| c.max(last_position));
            let result = table
                .commit(
                    batches,
                    app_id,
                    position,
                    evolved,
                    self.config.target_file_size,
                    self.config.before_commit.as_ref(),
                )
                .await;
            if let Err(e) = result {
                // Forget the adopted columns: reload the table as committed.
                let dir = table.dir.clone();
                if let Ok(fresh) = self.open_table(dir, app_id).await {
                    *table = fresh;
                }
                return Err(e);
            }
            self.stats.commits.fetch_add(1, Ordering::Relaxed);
            self.stats.rows.fetch_add(count as u64, Ordering::Relaxed);
            touched.push(name);
        }
        // Tables that had nothing in this batch: move their position when it
        // lags far behind (or when the runner moves past a dead letter).
        for (name, table) in &mut state.tables {
            if touched.contains(name) || !table.exists() {
                continue;
            }
            let behind = table.committed.is_none_or(|c| c < last_position);
            let far = table
                .committed
                .is_none_or(|c| last_position.saturating_sub(c) >= self.config.idle_commit_after);
            if behind && (far || events.is_empty()) {
                table
                    .commit(
                        Vec::new(),
                        app_id,
                        last_position,
                        false,
                        self.config.target_file_size,
                        None,
                    )
                    .await?;
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

fn letter_id(app_id: &str, event: &RecordedEvent) -> uuid::Uuid {
    stable_id(&["orchestrix-lakehouse", app_id, &event.id().to_string()])
}

/// A table directory name: the event type or category with anything but
/// `[A-Za-z0-9._-]` replaced by `_`.
#[must_use]
pub fn table_dir_name(raw: &str) -> String {
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() || name.starts_with('.') || name.starts_with('_') {
        format!("t{name}")
    } else {
        name
    }
}

fn trace_id(traceparent: Option<&str>) -> Option<String> {
    let parts: Vec<&str> = traceparent?.split('-').collect();
    match parts.as_slice() {
        [_, trace, _, _] if trace.len() == 32 => Some((*trace).to_owned()),
        _ => None,
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn build_batch(
    columns: &TableColumns,
    partitions: &[String],
    rows: &[Row<'_>],
) -> Result<RecordBatch> {
    let schema = Arc::new(columns.arrow_schema(partitions));
    let n = rows.len();
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    let strings = |f: &dyn Fn(&Row<'_>) -> Option<String>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 16);
        for row in rows {
            b.append_option(f(row));
        }
        Arc::new(b.finish())
    };
    let longs = |f: &dyn Fn(&Row<'_>) -> i64| -> ArrayRef {
        let mut b = Int64Builder::with_capacity(n);
        for row in rows {
            b.append_value(f(row));
        }
        Arc::new(b.finish())
    };
    arrays.push(strings(&|r| Some(r.event.id().to_string())));
    arrays.push(strings(&|r| Some(r.event.record.source.clone())));
    arrays.push(strings(&|r| Some(r.event.record.event_type.clone())));
    arrays.push(strings(&|r| Some(r.event.stream_id.to_string())));
    let mut times = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
    for row in rows {
        times.append_value(row.event.record.time.timestamp_micros());
    }
    arrays.push(Arc::new(times.finish()));
    arrays.push(longs(&|r| to_i64(r.event.revision)));
    arrays.push(longs(&|r| to_i64(r.event.position)));
    arrays.push(strings(&|r| {
        trace_id(r.event.record.metadata.traceparent.as_deref())
    }));
    arrays.push(longs(&|r| i64::from(r.event.record.schema_version)));
    for (name, t) in columns.columns() {
        let array: ArrayRef = match t {
            ColumnType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(n);
                for row in rows {
                    b.append_option(row.payload.get(name).and_then(Value::as_bool));
                }
                Arc::new(b.finish())
            }
            ColumnType::Long => {
                let mut b = Int64Builder::with_capacity(n);
                for row in rows {
                    b.append_option(row.payload.get(name).and_then(Value::as_i64));
                }
                Arc::new(b.finish())
            }
            ColumnType::Double => {
                let mut b = Float64Builder::with_capacity(n);
                for row in rows {
                    b.append_option(row.payload.get(name).and_then(Value::as_f64));
                }
                Arc::new(b.finish())
            }
            ColumnType::String => strings(&|r| {
                r.payload
                    .get(name)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }),
            ColumnType::Json => strings(&|r| match r.payload.get(name) {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.to_string()),
            }),
        };
        arrays.push(array);
    }
    for p in partitions {
        if p == crate::schema::COL_DATE {
            arrays.push(strings(&|r| Some(r.date.clone())));
        } else {
            arrays.push(strings(&|r| r.tenant.clone()));
        }
    }
    RecordBatch::try_new(schema, arrays).map_err(|e| Error::Backend {
        backend: "delta",
        operation: "build record batch",
        transient: false,
        source: Box::new(e),
    })
}

/// Splits a batch into chunks of at most `max_rows` events and about
/// `max_bytes` payload bytes.
fn chunks(events: &[RecordedEvent], max_rows: usize, max_bytes: usize) -> Vec<&[RecordedEvent]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, e) in events.iter().enumerate() {
        if i > start && (i - start >= max_rows || bytes + e.record.data.len() > max_bytes) {
            out.push(&events[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += e.record.data.len();
    }
    if start < events.len() {
        out.push(&events[start..]);
    }
    out
}

#[async_trait]
impl TransactionalProjection for LakehouseSink {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn filter(&self) -> Filter {
        self.config.filter.clone()
    }

    /// The lowest position committed in the tables (each table's `txn`
    /// version for `checkpoint_name`); `None` without tables.
    async fn load_checkpoint(&self, checkpoint_name: &str) -> Result<Option<u64>> {
        self.check_source(checkpoint_name)?;
        let mut state = self.state.lock().await;
        state.app_id = None;
        self.ensure_loaded(&mut state, checkpoint_name).await?;
        let lowest = state
            .tables
            .values()
            .map(|t| t.committed.unwrap_or(0))
            .min();
        Ok(lowest.filter(|p| *p > 0))
    }

    async fn apply_batch(
        &self,
        events: &[RecordedEvent],
        checkpoint_name: &str,
        last_position: u64,
    ) -> Result<()> {
        let mut state = self.state.lock().await;
        self.ensure_loaded(&mut state, checkpoint_name).await?;
        if events.is_empty() {
            return self
                .apply_chunk(&mut state, events, checkpoint_name, last_position)
                .await;
        }
        for chunk in chunks(events, self.config.max_rows, self.config.max_bytes) {
            let last = chunk.last().map_or(last_position, |e| e.position);
            self.apply_chunk(&mut state, chunk, checkpoint_name, last)
                .await?;
        }
        Ok(())
    }

    /// Deletes every table under the root (a rebuild writes them anew).
    async fn reset(&self, checkpoint_name: &str) -> Result<()> {
        let mut state = self.state.lock().await;
        for table in state.tables.values() {
            remove_dir(&table.dir)?;
        }
        if let Ok(entries) = std::fs::read_dir(&self.config.root) {
            for entry in entries.flatten() {
                if is_table(&entry.path()) {
                    remove_dir(&entry.path())?;
                }
            }
        }
        state.tables.clear();
        state.app_id = None;
        // A rebuild may read another store.
        let source = self
            .config
            .root
            .join("_orchestrix_sources")
            .join(table_dir_name(checkpoint_name));
        match std::fs::remove_file(source) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Backend {
                backend: "delta",
                operation: "forget the source",
                transient: false,
                source: Box::new(e),
            }),
            _ => Ok(()),
        }
    }

    /// A Delta transaction identifier cannot be removed; the tables stay.
    async fn delete_checkpoint(&self, _checkpoint_name: &str) -> Result<()> {
        Ok(())
    }
}

fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Backend {
            backend: "delta",
            operation: "delete table",
            transient: false,
            source: Box::new(e),
        }),
    }
}
