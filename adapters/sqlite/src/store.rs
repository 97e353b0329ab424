//! [`SqliteStore`]: every storage port of Orchestrix on one SQLite database.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orchestrix::store::{
    AppendRequest, AppendResult, Backend, CheckpointStore, DeadLetter, DeadLetterStore, Direction,
    EventStore, Filter, Snapshot, SnapshotStore, Timer, TimerStore,
};
use orchestrix::{RecordedEvent, Result, StreamId};
use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::SqliteConfig;
use crate::conn::Connections;
use crate::error::{BACKEND, driver};
use crate::{events, records};

/// The embedded event store: every port ([`EventStore`], [`SnapshotStore`],
/// [`CheckpointStore`], [`DeadLetterStore`], [`TimerStore`]) on one SQLite
/// database in WAL mode.
///
/// One writer connection, owned by a dedicated thread, performs every write,
/// so commits are serialized and global positions are assigned in commit
/// order; a small pool of read connections (each on its own thread) serves
/// reads concurrently. No SQLite call ever runs on an async task.
///
/// [`append_batch`](EventStore::append_batch) commits all its requests in one
/// transaction, each in its own savepoint, so a conflicting request fails
/// alone. [`transaction`](Self::transaction) gives projections one transaction
/// for their read model and their checkpoint.
pub struct SqliteStore {
    conns: Connections,
    head: Arc<watch::Sender<u64>>,
    config: SqliteConfig,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.config.path)
            .field("synchronous", &self.config.synchronous)
            .field("readers", &self.conns.reader_count())
            .field("head", &*self.head.borrow())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating and migrating as needed) the database `config` names.
    ///
    /// # Errors
    /// [`orchestrix::Error::Backend`] when the file cannot be opened or
    /// migrated.
    pub async fn open(config: SqliteConfig) -> Result<Self> {
        let conns = Connections::open(&config).await?;
        let head = conns
            .write("open", |conn| events::head_position(conn))
            .await?;
        tracing::debug!(path = %config.path.display(), head, readers = conns.reader_count(), "opened SQLite store");
        Ok(Self {
            conns,
            head: Arc::new(watch::channel(head).0),
            config,
        })
    }

    /// Opens the database file `path` with the default settings.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub async fn open_path(path: impl Into<PathBuf>) -> Result<Self> {
        Self::open(SqliteConfig::new(path)).await
    }

    /// Opens a private in-memory database on a single connection. It behaves
    /// like a file store and disappears with the store.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub async fn open_in_memory() -> Result<Self> {
        Self::open(SqliteConfig::in_memory()).await
    }

    /// The settings it was opened with.
    #[must_use]
    pub fn config(&self) -> &SqliteConfig {
        &self.config
    }

    /// Every port of this store, as the core's [`Backend`].
    #[must_use]
    pub fn backend(self: Arc<Self>) -> Backend {
        Backend::from_all(self)
    }

    /// Runs `f` in one write transaction on the writer connection: committed
    /// when `f` returns `Ok`, rolled back when it returns `Err` (or panics).
    ///
    /// A projection updates its read-model tables and its checkpoint
    /// ([`save_checkpoint_in`](crate::save_checkpoint_in)) here, so its effects
    /// are exactly-once. `f` runs on the writer thread: keep it short, and do
    /// not block it on other work.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use orchestrix::store::CheckpointStore;
    /// use orchestrix_sqlite::{SqliteStore, save_checkpoint_in};
    /// let store = SqliteStore::open_in_memory().await?;
    /// store.transaction(|tx| {
    ///     tx.execute_batch("CREATE TABLE IF NOT EXISTS balances (account TEXT PRIMARY KEY, cents INTEGER)")
    ///         .map_err(|e| orchestrix::Error::backend("sqlite", "projection", false, e))?;
    ///     save_checkpoint_in(tx, "balances", 0)
    /// })
    /// .await?;
    /// assert_eq!(store.load_checkpoint("balances").await?, Some(0));
    /// # Ok::<(), orchestrix::Error>(()) }).unwrap();
    /// ```
    ///
    /// # Errors
    /// The error `f` returns, or [`orchestrix::Error::Backend`] when SQLite
    /// fails to begin or commit.
    pub async fn transaction<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    {
        const OP: &str = "transaction";
        self.conns
            .write(OP, move |conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(driver(OP))?;
                let value = f(&tx)?;
                tx.commit().map_err(driver(OP))?;
                Ok(value)
            })
            .await
    }

    /// Runs `f` on a read-only connection (read-model queries, inspection).
    /// Writes fail (`PRAGMA query_only`); use [`transaction`](Self::transaction).
    ///
    /// # Errors
    /// The error `f` returns.
    pub async fn query<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        self.conns.read("query", f).await
    }
}

#[async_trait]
impl EventStore for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<AppendResult>>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let head = self.head.clone();
        self.conns
            .write("append", move |conn| {
                let (results, new_head) = events::append_batch(conn, requests)?;
                if let Some(new_head) = new_head {
                    // Bumped on the writer thread right after the commit, so a
                    // cancelled caller cannot lose the notification.
                    head.send_if_modified(|h| {
                        let newer = new_head > *h;
                        if newer {
                            *h = new_head;
                        }
                        newer
                    });
                }
                Ok(results)
            })
            .await
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let stream = stream.clone();
        self.conns
            .read("read_stream", move |conn| {
                events::read_stream(conn, &stream, from, direction, limit)
            })
            .await
    }

    async fn read_all(
        &self,
        after: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<RecordedEvent>> {
        let filter = filter.clone();
        self.conns
            .read("read_all", move |conn| {
                events::read_all(conn, after, limit, &filter)
            })
            .await
    }

    async fn stream_revision(&self, stream: &StreamId) -> Result<Option<u64>> {
        let stream = stream.clone();
        self.conns
            .read("stream_revision", move |conn| {
                events::stream_revision(conn, &stream)
            })
            .await
    }

    async fn find_event(&self, stream: &StreamId, id: Uuid) -> Result<Option<u64>> {
        let stream = stream.clone();
        self.conns
            .read("find_event", move |conn| {
                events::find_event(conn, &stream, id)
            })
            .await
    }

    async fn head_position(&self) -> Result<u64> {
        self.conns
            .read("head_position", events::head_position)
            .await
    }

    fn notifications(&self) -> Option<watch::Receiver<u64>> {
        Some(self.head.subscribe())
    }
}

#[async_trait]
impl SnapshotStore for SqliteStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        self.conns
            .write("save_snapshot", move |conn| {
                records::save_snapshot(conn, &snapshot)
            })
            .await
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        let stream = stream.clone();
        self.conns
            .read("load_snapshot", move |conn| {
                records::load_snapshot(conn, &stream)
            })
            .await
    }
}

#[async_trait]
impl CheckpointStore for SqliteStore {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>> {
        let name = name.to_owned();
        self.conns
            .read("load_checkpoint", move |conn| {
                records::load_checkpoint(conn, &name)
            })
            .await
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<()> {
        let name = name.to_owned();
        self.conns
            .write("save_checkpoint", move |conn| {
                records::save_checkpoint(conn, &name, position)
            })
            .await
    }

    async fn delete_checkpoint(&self, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.conns
            .write("delete_checkpoint", move |conn| {
                records::delete_checkpoint(conn, &name)
            })
            .await
    }
}

#[async_trait]
impl DeadLetterStore for SqliteStore {
    async fn put_dead_letter(&self, letter: DeadLetter) -> Result<()> {
        self.conns
            .write("put_dead_letter", move |conn| {
                records::put_dead_letter(conn, &letter)
            })
            .await
    }

    async fn list_dead_letters(
        &self,
        consumer: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let consumer = consumer.map(str::to_owned);
        self.conns
            .read("list_dead_letters", move |conn| {
                records::list_dead_letters(conn, consumer.as_deref(), limit)
            })
            .await
    }

    async fn get_dead_letter(&self, id: Uuid) -> Result<Option<DeadLetter>> {
        self.conns
            .read("get_dead_letter", move |conn| {
                records::get_dead_letter(conn, id)
            })
            .await
    }

    async fn delete_dead_letter(&self, id: Uuid) -> Result<bool> {
        self.conns
            .write("delete_dead_letter", move |conn| {
                records::delete_dead_letter(conn, id)
            })
            .await
    }
}

#[async_trait]
impl TimerStore for SqliteStore {
    async fn schedule_timer(&self, timer: Timer) -> Result<()> {
        self.conns
            .write("schedule_timer", move |conn| {
                records::schedule_timer(conn, &timer)
            })
            .await
    }

    async fn due_timers(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Timer>> {
        let owner = owner.to_owned();
        self.conns
            .read("due_timers", move |conn| {
                records::due_timers(conn, &owner, now, limit)
            })
            .await
    }

    async fn cancel_timer(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.conns
            .write("cancel_timer", move |conn| records::cancel_timer(conn, &id))
            .await
    }
}
