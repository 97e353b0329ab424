//! Storage ports: the traits every backend implements, and their shared types.
//!
//! Backends implement [`EventStore`], [`SnapshotStore`], [`CheckpointStore`],
//! [`DeadLetterStore`] and [`TimerStore`]; applications use them through
//! [`Store`], the one dispatch layer that adds tracing, upcasting
//! and write coalescing for every backend alike.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::event::{EventRecord, RecordedEvent};
use crate::id::StreamId;

pub mod dispatch;
pub mod memory;

pub use dispatch::Store;

/// What an append expects of the stream it appends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedRevision {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must exist (have at least one event).
    StreamExists,
    /// The stream's last revision must be exactly this.
    Exact(u64),
}

impl ExpectedRevision {
    /// The expectation that fits a stream whose current revision is `current`
    /// (`None` for a stream that does not exist).
    #[must_use]
    pub fn from_current(current: Option<u64>) -> Self {
        current.map_or(Self::NoStream, Self::Exact)
    }

    /// Checks the expectation against the stream's current revision; every
    /// backend calls this so that all report conflicts alike.
    ///
    /// ```
    /// use orchestrix::{ExpectedRevision, StreamId};
    /// let s = StreamId::parse("order-1")?;
    /// assert!(ExpectedRevision::NoStream.check(&s, None).is_ok());
    /// assert!(ExpectedRevision::NoStream.check(&s, Some(0)).is_err());
    /// assert!(ExpectedRevision::Exact(2).check(&s, Some(2)).is_ok());
    /// assert!(ExpectedRevision::StreamExists.check(&s, None).is_err());
    /// # Ok::<(), orchestrix::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Conflict`] with the expected and actual revision.
    pub fn check(self, stream: &StreamId, current: Option<u64>) -> Result<()> {
        let ok = match self {
            Self::Any => true,
            Self::NoStream => current.is_none(),
            Self::StreamExists => current.is_some(),
            Self::Exact(n) => current == Some(n),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Conflict {
                stream: stream.to_string(),
                expected: self,
                actual: current,
            })
        }
    }
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("any revision"),
            Self::NoStream => f.write_str("no stream"),
            Self::StreamExists => f.write_str("an existing stream"),
            Self::Exact(n) => write!(f, "revision {n}"),
        }
    }
}

/// Reading direction within a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Ascending revisions, starting at `from`.
    Forward,
    /// Descending revisions, starting at `from` (use `u64::MAX` for the end).
    Backward,
}

/// One append: events for one stream with an expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRequest {
    /// Target stream.
    pub stream_id: StreamId,
    /// What the stream must look like before the append.
    pub expected: ExpectedRevision,
    /// The events, in order; at least one.
    pub events: Vec<EventRecord>,
}

impl AppendRequest {
    /// Builds a request.
    #[must_use]
    pub fn new(stream_id: StreamId, expected: ExpectedRevision, events: Vec<EventRecord>) -> Self {
        Self {
            stream_id,
            expected,
            events,
        }
    }

    /// Rejects an empty append, duplicate event ids within the request, and
    /// invalid extension names. Backends call this before anything else.
    ///
    /// # Errors
    /// [`Error::InvalidInput`].
    pub fn validate(&self) -> Result<()> {
        if self.events.is_empty() {
            return Err(Error::invalid(
                format!("append to `{}`", self.stream_id),
                "no events",
            ));
        }
        let mut ids = std::collections::HashSet::with_capacity(self.events.len());
        for e in &self.events {
            if !ids.insert(e.id) {
                return Err(Error::invalid(
                    format!("append to `{}`", self.stream_id),
                    format!("event id {} twice", e.id),
                ));
            }
            if e.event_type.is_empty() {
                return Err(Error::invalid(
                    format!("event {}", e.id),
                    "empty event type",
                ));
            }
            for name in e.metadata.extensions.keys() {
                crate::cloudevent::validate_extension_name(name)?;
            }
        }
        Ok(())
    }
}

/// The outcome of a successful append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AppendResult {
    /// Revision of the first appended event.
    pub first_revision: u64,
    /// Revision of the last appended event: the stream's new revision.
    pub last_revision: u64,
    /// Global position of the first appended event.
    pub first_position: u64,
    /// Global position of the last appended event.
    pub last_position: u64,
}

/// Which events a read of the all-stream returns.
///
/// ```
/// use orchestrix::store::Filter;
/// let f = Filter::all().categories(["account"]).event_types(["com.acme.bank.Opened"]);
/// assert!(f.matches("account", "com.acme.bank.Opened"));
/// assert!(!f.matches("order", "com.acme.bank.Opened"));
/// assert!(Filter::all().matches("x", "y"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Filter {
    /// Only these event types (empty: all).
    pub event_types: Vec<String>,
    /// Only streams of these categories (empty: all).
    pub categories: Vec<String>,
}

impl Filter {
    /// No filtering.
    #[must_use]
    pub fn all() -> Self {
        Self::default()
    }

    /// Restricts to event types.
    #[must_use]
    pub fn event_types<I: IntoIterator<Item = S>, S: Into<String>>(mut self, types: I) -> Self {
        self.event_types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Restricts to categories.
    #[must_use]
    pub fn categories<I: IntoIterator<Item = S>, S: Into<String>>(mut self, categories: I) -> Self {
        self.categories = categories.into_iter().map(Into::into).collect();
        self
    }

    /// Whether an event of `category` and `event_type` passes.
    #[must_use]
    pub fn matches(&self, category: &str, event_type: &str) -> bool {
        (self.categories.is_empty() || self.categories.iter().any(|c| c == category))
            && (self.event_types.is_empty() || self.event_types.iter().any(|t| t == event_type))
    }

    /// Whether it filters nothing.
    #[must_use]
    pub fn is_all(&self) -> bool {
        self.categories.is_empty() && self.event_types.is_empty()
    }
}

/// The event store port.
///
/// Contract (checked by `orchestrix-testkit` for every backend):
/// - revisions in a stream start at 0 and have no gaps;
/// - global positions start at 1 and strictly increase in the order in which
///   readers can see commits: a reader of the all-stream never skips an event
///   because a transaction holding a lower position committed late;
/// - an append is atomic: all its events or none;
/// - [`append_batch`](EventStore::append_batch) commits many independent appends
///   at once; each keeps its own expectation and its own result.
#[async_trait]
pub trait EventStore: Send + Sync + fmt::Debug + 'static {
    /// A short backend name for spans and errors, e.g. `sqlite`.
    fn backend(&self) -> &'static str;

    /// Appends every request in one commit where the backend can. Each request
    /// succeeds or fails alone (a conflict fails only its own request); later
    /// requests for the same stream see the effect of earlier ones. The outer
    /// error means the whole batch failed and nothing was written.
    async fn append_batch(&self, requests: Vec<AppendRequest>)
    -> Result<Vec<Result<AppendResult>>>;

    /// Appends one request.
    async fn append(&self, request: AppendRequest) -> Result<AppendResult> {
        self.append_batch(vec![request])
            .await?
            .pop()
            .unwrap_or_else(|| {
                Err(Error::corrupted(
                    "append result",
                    "the backend returned no result",
                ))
            })
    }

    /// Reads up to `limit` events of one stream from revision `from` in
    /// `direction`. A stream that does not exist reads as empty.
    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>>;

    /// Reads up to `limit` events of the all-stream with position greater than
    /// `after`, ascending, that pass `filter`.
    async fn read_all(
        &self,
        after: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<RecordedEvent>>;

    /// The stream's last revision, `None` if it does not exist.
    async fn stream_revision(&self, stream: &StreamId) -> Result<Option<u64>>;

    /// The revision of the event `id` in `stream`, `None` when the stream
    /// holds no event with that id. Commands with a durable id look up their
    /// first event here before deciding
    /// ([`CommandContext::durable`](crate::CommandContext::durable)).
    ///
    /// The default reads the stream from its start; stores with an index on
    /// event ids (PostgreSQL, SQLite) answer with one lookup.
    async fn find_event(&self, stream: &StreamId, id: Uuid) -> Result<Option<u64>> {
        const BATCH: usize = 1024;
        let mut from = 0;
        loop {
            let events = self
                .read_stream(stream, from, Direction::Forward, BATCH)
                .await?;
            if let Some(found) = events.iter().find(|e| e.record.id == id) {
                return Ok(Some(found.revision));
            }
            match events.last() {
                Some(last) if events.len() == BATCH => from = last.revision + 1,
                _ => return Ok(None),
            }
        }
    }

    /// The highest position readers can see now (0 for an empty store). It must
    /// be gap-safe like [`read_all`](EventStore::read_all): every event at or
    /// below it is already visible, because filtered subscriptions skip ahead
    /// to it.
    async fn head_position(&self) -> Result<u64>;

    /// A receiver that changes whenever new events become visible, carrying the
    /// head position, if the backend can notify; subscribers poll otherwise.
    fn notifications(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// A snapshot of an aggregate's state at a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The aggregate's stream.
    pub stream_id: StreamId,
    /// The revision of the last event folded into the state.
    pub revision: u64,
    /// The aggregate's state schema version; a snapshot of another version is ignored.
    pub state_version: u32,
    /// The serialized state.
    pub data: Bytes,
    /// When it was taken.
    pub taken_at: DateTime<Utc>,
}

/// Keeps the latest snapshot per stream.
#[async_trait]
pub trait SnapshotStore: Send + Sync + fmt::Debug + 'static {
    /// Stores a snapshot, replacing an older one of the same stream (a snapshot
    /// at a lower revision than the stored one is ignored).
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()>;
    /// The latest snapshot of a stream.
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>>;
}

/// Keeps the position a named consumer has processed up to.
#[async_trait]
pub trait CheckpointStore: Send + Sync + fmt::Debug + 'static {
    /// The stored checkpoint of `name`.
    async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>>;
    /// Stores the checkpoint of `name`.
    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<()>;
    /// Removes the checkpoint of `name` (used by projection rebuilds).
    async fn delete_checkpoint(&self, name: &str) -> Result<()>;
}

/// A message that a consumer gave up on, with everything needed to replay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Id of the dead letter itself.
    pub id: Uuid,
    /// The consumer (projection, saga, worker) that failed.
    pub consumer: String,
    /// The original event id, when the message was an event.
    pub event_id: Option<Uuid>,
    /// The original event type, when known.
    pub event_type: Option<String>,
    /// The original stream, when known.
    pub stream_id: Option<String>,
    /// The original global position (or bus offset), when known.
    pub position: Option<u64>,
    /// The original bytes, exactly as received.
    #[serde(with = "bytes_base64")]
    pub payload: Bytes,
    /// The original headers or attributes, plus nothing else.
    pub headers: BTreeMap<String, String>,
    /// Why it failed, for a person.
    pub reason: String,
    /// The error kind ([`Error::kind`]).
    pub error_kind: String,
    /// How many times handling was attempted.
    pub attempts: u32,
    /// When it was dead-lettered.
    pub failed_at: DateTime<Utc>,
}

mod bytes_base64 {
    use bytes::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::cloudevent::base64_encode(b))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let s = String::deserialize(d)?;
        crate::cloudevent::base64_decode(&s)
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

/// Keeps dead letters until they are replayed or deleted.
#[async_trait]
pub trait DeadLetterStore: Send + Sync + fmt::Debug + 'static {
    /// Stores a dead letter.
    async fn put_dead_letter(&self, letter: DeadLetter) -> Result<()>;
    /// Lists dead letters, oldest first, of one consumer or of all.
    async fn list_dead_letters(
        &self,
        consumer: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>>;
    /// One dead letter.
    async fn get_dead_letter(&self, id: Uuid) -> Result<Option<DeadLetter>>;
    /// Removes a dead letter (after a successful replay); `false` if it was absent.
    async fn delete_dead_letter(&self, id: Uuid) -> Result<bool>;
}

/// A durable timer, e.g. a saga timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timer {
    /// Unique id; scheduling the same id twice keeps one timer.
    pub id: String,
    /// The owner (saga name) that handles it.
    pub owner: String,
    /// The instance (saga correlation id) it belongs to.
    pub key: String,
    /// When it is due.
    pub due_at: DateTime<Utc>,
    /// Owner-defined payload.
    pub payload: serde_json::Value,
}

/// Keeps durable timers that survive restarts.
#[async_trait]
pub trait TimerStore: Send + Sync + fmt::Debug + 'static {
    /// Schedules a timer (idempotent on its id).
    async fn schedule_timer(&self, timer: Timer) -> Result<()>;
    /// Timers of `owner` due at or before `now`, earliest first.
    async fn due_timers(&self, owner: &str, now: DateTime<Utc>, limit: usize)
    -> Result<Vec<Timer>>;
    /// Removes a timer (fired or cancelled); `false` if it was absent.
    async fn cancel_timer(&self, id: &str) -> Result<bool>;
}

/// Every port of one backend, as trait objects.
#[derive(Clone, Debug)]
pub struct Backend {
    /// Events.
    pub events: Arc<dyn EventStore>,
    /// Snapshots.
    pub snapshots: Arc<dyn SnapshotStore>,
    /// Checkpoints.
    pub checkpoints: Arc<dyn CheckpointStore>,
    /// Dead letters.
    pub dead_letters: Arc<dyn DeadLetterStore>,
    /// Durable timers.
    pub timers: Arc<dyn TimerStore>,
}

impl Backend {
    /// Uses one value that implements every port.
    pub fn from_all<T>(all: Arc<T>) -> Self
    where
        T: EventStore + SnapshotStore + CheckpointStore + DeadLetterStore + TimerStore,
    {
        Self {
            events: all.clone(),
            snapshots: all.clone(),
            checkpoints: all.clone(),
            dead_letters: all.clone(),
            timers: all,
        }
    }
}
