//! The command executor: load, decide, append with `Exact(revision)`, retry.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::aggregate::Aggregate;
use crate::error::{Error, Result};
use crate::event::{Command, Event, EventRecord, Metadata};
use crate::id::StreamId;
use crate::store::{ExpectedRevision, Snapshot, Store};
use crate::telemetry;

/// Metadata that travels with a command to every event it causes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandContext {
    /// Idempotence key: a command with an id already handled by the aggregate is
    /// not handled again. A fresh UUIDv7 when absent.
    pub command_id: Option<String>,
    /// Correlation id; defaults to the command id.
    pub correlation_id: Option<String>,
    /// W3C trace parent of the command. With a
    /// [`TracePropagator`](crate::telemetry::TracePropagator) installed, it
    /// becomes the parent of the `orchestrix.command` span (the current span
    /// is the parent when absent), and the events record the command span's
    /// own context; without one, the events record this value as is.
    pub traceparent: Option<String>,
    /// W3C trace state, with [`traceparent`](Self::traceparent).
    pub tracestate: Option<String>,
    /// Extra CloudEvents extensions for every produced event.
    pub extensions: BTreeMap<String, String>,
    /// Remember the command id for good, not only among the aggregate's
    /// [`remembered_commands`](ExecutorConfig::remembered_commands): see
    /// [`durable`](Self::durable).
    pub durable_id: bool,
}

impl CommandContext {
    /// A context with a command id.
    #[must_use]
    pub fn with_id(command_id: impl Into<String>) -> Self {
        Self {
            command_id: Some(command_id.into()),
            ..Self::default()
        }
    }

    /// Sets the correlation id.
    #[must_use]
    pub fn correlated(mut self, correlation_id: impl Into<String>) -> Self {
        self.correlation_id = Some(correlation_id.into());
        self
    }

    /// Makes the command id's idempotence durable and unbounded: the command
    /// is applied at most once to its aggregate, however long after the
    /// first time it is sent again (a record redelivered by a bus, a topic
    /// read again by a new consumer group).
    ///
    /// Its events get ids derived from the stream, the command id and their
    /// index ([`durable_event_id`]), and a command whose id is not among the
    /// aggregate's recent ones looks its first event up in the store
    /// ([`Store::find_event`]: one indexed read on PostgreSQL and SQLite)
    /// before deciding; found, it is a duplicate. The append that follows
    /// expects the revision the lookup was made against, so a concurrent
    /// copy of the command conflicts, catches up and is found then: this
    /// holds on every store. Meant for ids that name the command's cause
    /// (an offset, a business key), not for fresh ones.
    ///
    /// ```
    /// use orchestrix::CommandContext;
    ///
    /// let context = CommandContext::with_id("payments:2024-000123").durable();
    /// assert!(context.durable_id);
    /// ```
    #[must_use]
    pub fn durable(mut self) -> Self {
        self.durable_id = true;
        self
    }
}

/// The namespace of [`durable_event_id`]'s name-based UUIDs.
const DURABLE_EVENT_NAMESPACE: Uuid = Uuid::from_u128(0xd40a_22da_5820_4542_9f3a_cf30_cffa_bd7d);

/// The id of the `index`-th event of the command `command_id` on `stream`
/// when its idempotence is durable ([`CommandContext::durable`]): a
/// name-based UUID (version 5), the same in every process and every run.
///
/// ```
/// use orchestrix::StreamId;
/// use orchestrix::executor::durable_event_id;
///
/// let stream = StreamId::new("account", "a1").unwrap();
/// assert_eq!(durable_event_id(&stream, "kafka:t:0:7", 0), durable_event_id(&stream, "kafka:t:0:7", 0));
/// assert_ne!(durable_event_id(&stream, "kafka:t:0:7", 0), durable_event_id(&stream, "kafka:t:0:8", 0));
/// ```
#[must_use]
pub fn durable_event_id(stream: &StreamId, command_id: &str, index: usize) -> Uuid {
    let name = format!("{stream}\n{command_id}\n{index}");
    Uuid::new_v5(&DURABLE_EVENT_NAMESPACE, name.as_bytes())
}

/// What executing a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    /// The aggregate's stream.
    pub stream_id: StreamId,
    /// The command id (given or generated).
    pub command_id: String,
    /// The stream's revision after the command (`None`: still no stream).
    pub revision: Option<u64>,
    /// Global position of the last appended event, if any were appended.
    pub position: Option<u64>,
    /// How many events were appended (0 for a duplicate or a no-op).
    pub appended: usize,
    /// The command id had already been handled; nothing was done.
    pub duplicate: bool,
}

/// How often the executor retries after a concurrency conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConflictRetry {
    /// Attempts in all (1 = no retry).
    pub max_attempts: u32,
    /// First backoff; doubled each retry, with jitter.
    pub initial_backoff: Duration,
    /// Largest backoff.
    pub max_backoff: Duration,
}

impl Default for ConflictRetry {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(100),
        }
    }
}

/// Executor settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorConfig {
    /// Conflict retries.
    pub retry: ConflictRetry,
    /// Take a snapshot every this many events (`None`: never).
    pub snapshot_every: Option<u64>,
    /// CloudEvents `source` of produced events.
    pub source: String,
    /// How many recent command ids each aggregate remembers for idempotence
    /// (kept in snapshots too).
    pub remembered_commands: usize,
    /// Events read per round trip while loading.
    pub load_batch: usize,
    /// Aggregates kept in memory between commands (0 disables the cache). A
    /// cached aggregate decides without a read: its events are appended with
    /// `Exact(cached revision)`, and when another writer or process got there
    /// first, that append's own conflict check says so, the executor reads
    /// the events after the cached revision and decides again (without
    /// counting an attempt or backing off). A decision that appends nothing
    /// (a rejection, a no-op, a duplicate command id) is confirmed against
    /// the stream's newer events before it is returned. So other writers are
    /// always seen; the cache saves the read of every command.
    pub cache_capacity: usize,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            retry: ConflictRetry::default(),
            snapshot_every: None,
            source: "/orchestrix".to_owned(),
            remembered_commands: 64,
            load_batch: 1024,
            cache_capacity: 10_000,
        }
    }
}

/// An aggregate loaded from its stream.
#[derive(Debug)]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// The stream's revision (`None`: no events yet).
    pub revision: Option<u64>,
    /// Command ids recently handled (newest last).
    pub recent_commands: VecDeque<String>,
    /// Whether a snapshot was used.
    pub from_snapshot: bool,
}

#[derive(Deserialize)]
struct SnapshotBody<A> {
    state: A,
    recent_commands: VecDeque<String>,
}

#[derive(Serialize)]
struct SnapshotBodyRef<'a, A> {
    state: &'a A,
    recent_commands: &'a VecDeque<String>,
}

type Cache<A> = Arc<Mutex<HashMap<StreamId, Loaded<A>>>>;

/// Loads, decides, appends; one executor per aggregate type. Clones share the
/// aggregate cache.
pub struct CommandExecutor<A> {
    store: Store,
    config: ExecutorConfig,
    cache: Cache<A>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A> std::fmt::Debug for CommandExecutor<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandExecutor")
            .field("aggregate", &std::any::type_name::<A>())
            .field("store", &self.store)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<A> Clone for CommandExecutor<A> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            config: self.config.clone(),
            cache: self.cache.clone(),
            _aggregate: PhantomData,
        }
    }
}

impl<A: Aggregate> CommandExecutor<A> {
    /// An executor over `store`.
    #[must_use]
    pub fn new(store: Store, config: ExecutorConfig) -> Self {
        Self {
            store,
            config,
            cache: Arc::default(),
            _aggregate: PhantomData,
        }
    }

    /// Takes an aggregate out of the cache: while a command works on it, a
    /// concurrent command on the same aggregate loads its own copy.
    fn cache_take(&self, stream: &StreamId) -> Option<Loaded<A>> {
        if self.config.cache_capacity == 0 {
            return None;
        }
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(stream)
    }

    fn cache_put(&self, stream: StreamId, loaded: Loaded<A>) {
        let capacity = self.config.cache_capacity;
        if capacity == 0 {
            return;
        }
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= capacity && !cache.contains_key(&stream) {
            // Evict an arbitrary entry: a miss only costs a full load.
            if let Some(victim) = cache.keys().next().cloned() {
                cache.remove(&victim);
            }
        }
        cache.insert(stream, loaded);
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The stream id of an aggregate instance.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an id with forbidden characters.
    pub fn stream_id(id: &str) -> Result<StreamId> {
        StreamId::new(A::CATEGORY, id)
    }

    /// Loads an aggregate: its latest usable snapshot, then the newer events.
    ///
    /// # Errors
    /// A store error, or a decode error for an event the aggregate cannot read.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>> {
        let stream = Self::stream_id(id)?;
        self.load_stream(&stream).await
    }

    async fn load_stream(&self, stream: &StreamId) -> Result<Loaded<A>> {
        let mut loaded = Loaded {
            state: A::default(),
            revision: None,
            recent_commands: VecDeque::new(),
            from_snapshot: false,
        };
        if self.config.snapshot_every.is_some()
            && let Some(s) = self.store.backend().snapshots.load_snapshot(stream).await?
        {
            if s.state_version == A::STATE_VERSION {
                match serde_json::from_slice::<SnapshotBody<A>>(&s.data) {
                    Ok(body) => {
                        loaded.state = body.state;
                        loaded.recent_commands = body.recent_commands;
                        loaded.revision = Some(s.revision);
                        loaded.from_snapshot = true;
                    }
                    Err(e) => {
                        tracing::warn!(stream = %stream, error = %e, "ignoring a snapshot that does not decode")
                    }
                }
            } else {
                tracing::debug!(stream = %stream, snapshot = s.state_version, current = A::STATE_VERSION, "ignoring a stale snapshot");
            }
        }
        self.catch_up(stream, loaded).await
    }

    /// Applies the events after `loaded.revision`.
    async fn catch_up(&self, stream: &StreamId, mut loaded: Loaded<A>) -> Result<Loaded<A>> {
        let mut from = loaded.revision.map_or(0, |r| r + 1);
        loop {
            let events = self
                .store
                .read_stream_forward(stream, from, self.config.load_batch)
                .await?;
            let Some(last) = events.last() else { break };
            from = last.revision + 1;
            let n = events.len();
            for recorded in &events {
                let event: A::Event = self.store.decode(recorded)?;
                loaded.state.apply(&event);
                loaded.revision = Some(recorded.revision);
                if let Some(cause) = &recorded.record.metadata.causation_id
                    && loaded.recent_commands.back() != Some(cause)
                {
                    loaded.recent_commands.push_back(cause.clone());
                    while loaded.recent_commands.len() > self.config.remembered_commands {
                        loaded.recent_commands.pop_front();
                    }
                }
            }
            if n < self.config.load_batch {
                break;
            }
        }
        Ok(loaded)
    }

    /// Executes a command with a fresh context.
    ///
    /// # Errors
    /// See [`execute_with`](Self::execute_with).
    pub async fn execute(&self, command: A::Command) -> Result<CommandOutcome> {
        self.execute_with(command, CommandContext::default()).await
    }

    /// Executes a command: load, handle, append with `Exact(revision)`, and on a
    /// conflict reload and decide again, up to the retry limit.
    ///
    /// # Errors
    /// [`Error::Rejected`] when the aggregate says no, [`Error::Conflict`] when
    /// retries ran out, or a store error.
    pub async fn execute_with(
        &self,
        command: A::Command,
        context: CommandContext,
    ) -> Result<CommandOutcome> {
        let command_type = command.command_type();
        let command_id = context
            .command_id
            .clone()
            .unwrap_or_else(|| Uuid::now_v7().to_string());
        let span = tracing::info_span!(
            "orchestrix.command",
            otel.kind = "internal",
            command = command_type,
            aggregate = A::CATEGORY,
            id = %command.aggregate_id(),
            command_id = %command_id,
            attempts = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let mut context = context;
        // An explicit context is the parent; otherwise the current span is.
        // Either way the events record the command span's own context.
        telemetry::set_parent(
            &span,
            context.traceparent.as_deref(),
            context.tracestate.as_deref(),
        );
        if let Some(trace) = telemetry::inject(&span) {
            context.traceparent = Some(trace.traceparent);
            context.tracestate = trace.tracestate;
        }
        let started = std::time::Instant::now();
        let result = self
            .execute_inner(&command, &context, command_id)
            .instrument(span.clone())
            .await;
        let outcome = match &result {
            Ok(o) if o.duplicate => "duplicate",
            Ok(_) => telemetry::metrics::OK,
            Err(e) => e.kind(),
        };
        span.record("outcome", outcome);
        telemetry::metrics::record_command(command_type, A::CATEGORY, outcome, started.elapsed());
        result
    }

    async fn execute_inner(
        &self,
        command: &A::Command,
        context: &CommandContext,
        command_id: String,
    ) -> Result<CommandOutcome> {
        let stream = Self::stream_id(&command.aggregate_id())?;
        let retry = self.config.retry;
        let mut backoff = retry.initial_backoff;
        let mut attempt = 0;
        let mut cached = self.cache_take(&stream);
        // A cached aggregate is decided on as it is (see
        // `ExecutorConfig::cache_capacity`); only the first pass trusts it.
        let mut trusted = cached.is_some();
        loop {
            let (mut loaded, verified) = match cached.take() {
                Some(base) if trusted => (base, false),
                Some(base) => (self.catch_up(&stream, base).await?, true),
                None => (self.load_stream(&stream).await?, true),
            };
            trusted = false;
            let seen = loaded.recent_commands.contains(&command_id)
                || (context.durable_id && self.applied(&stream, &command_id).await?);
            let decision = if seen {
                None
            } else {
                Some(loaded.state.handle(command))
            };
            if !verified && !matches!(&decision, Some(Ok(events)) if !events.is_empty()) {
                // A decision that appends nothing is confirmed against the
                // stream first: newer events may change it.
                cached = Some(loaded);
                continue;
            }
            attempt += 1;
            tracing::Span::current().record("attempts", attempt);
            let events = match decision {
                None => {
                    let revision = loaded.revision;
                    self.cache_put(stream.clone(), loaded);
                    return Ok(CommandOutcome {
                        stream_id: stream,
                        command_id,
                        revision,
                        position: None,
                        appended: 0,
                        duplicate: true,
                    });
                }
                Some(Err(e)) => {
                    self.cache_put(stream, loaded);
                    return Err(Error::Rejected {
                        command: command.command_type().to_owned(),
                        source: Box::new(e),
                    });
                }
                Some(Ok(events)) if events.is_empty() => {
                    let revision = loaded.revision;
                    self.cache_put(stream.clone(), loaded);
                    return Ok(CommandOutcome {
                        stream_id: stream,
                        command_id,
                        revision,
                        position: None,
                        appended: 0,
                        duplicate: false,
                    });
                }
                Some(Ok(events)) => events,
            };
            let records = self.records(&stream, &events, context, &command_id)?;
            let expected = ExpectedRevision::from_current(loaded.revision);
            match self.store.append(&stream, expected, records).await {
                Ok(result) => {
                    for e in &events {
                        loaded.state.apply(e);
                    }
                    loaded.recent_commands.push_back(command_id.clone());
                    while loaded.recent_commands.len() > self.config.remembered_commands {
                        loaded.recent_commands.pop_front();
                    }
                    loaded.revision = Some(result.last_revision);
                    self.maybe_snapshot(
                        &stream,
                        &loaded,
                        result.first_revision,
                        result.last_revision,
                    )
                    .await;
                    self.cache_put(stream.clone(), loaded);
                    return Ok(CommandOutcome {
                        stream_id: stream,
                        command_id,
                        revision: Some(result.last_revision),
                        position: Some(result.last_position),
                        appended: events.len(),
                        duplicate: false,
                    });
                }
                Err(e @ Error::Conflict { .. }) if !verified => {
                    // The cached state was behind: not contention, so no
                    // attempt is spent and there is no backoff.
                    tracing::debug!(error = %e, "cached aggregate was behind; catching up");
                    attempt -= 1;
                    cached = Some(loaded);
                }
                Err(e @ Error::Conflict { .. }) if attempt < retry.max_attempts => {
                    tracing::debug!(error = %e, attempt, "conflict; catching up");
                    // The state is still that of `loaded.revision`: the next
                    // attempt reads only the events that beat us.
                    cached = Some(loaded);
                    let jitter = rand::random_range(0..=backoff.as_micros().max(1));
                    tokio::time::sleep(Duration::from_micros(
                        u64::try_from(jitter).unwrap_or(u64::MAX),
                    ))
                    .await;
                    backoff = (backoff * 2).min(retry.max_backoff);
                }
                Err(e) => {
                    if context.durable_id && self.applied(&stream, &command_id).await? {
                        // A copy of the command got there first (a store with
                        // a unique index on event ids may say so before the
                        // revision check does).
                        tracing::debug!(error = %e, "a durable command id was applied meanwhile");
                        let revision = self.store.stream_revision(&stream).await?;
                        return Ok(CommandOutcome {
                            stream_id: stream,
                            command_id,
                            revision,
                            position: None,
                            appended: 0,
                            duplicate: true,
                        });
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Whether the stream holds the first event of the durable command
    /// `command_id`.
    async fn applied(&self, stream: &StreamId, command_id: &str) -> Result<bool> {
        let first = durable_event_id(stream, command_id, 0);
        Ok(self.store.find_event(stream, first).await?.is_some())
    }

    fn records(
        &self,
        stream: &StreamId,
        events: &[A::Event],
        context: &CommandContext,
        command_id: &str,
    ) -> Result<Vec<EventRecord>> {
        let codec = self.store.codec();
        let metadata = Metadata {
            correlation_id: Some(
                context
                    .correlation_id
                    .clone()
                    .unwrap_or_else(|| command_id.to_owned()),
            ),
            causation_id: Some(command_id.to_owned()),
            traceparent: context.traceparent.clone(),
            tracestate: context.tracestate.clone(),
            extensions: context.extensions.clone(),
        };
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let payload = e.to_payload()?;
                Ok(EventRecord {
                    id: if context.durable_id {
                        durable_event_id(stream, command_id, i)
                    } else {
                        Uuid::now_v7()
                    },
                    event_type: e.event_type().to_owned(),
                    schema_version: e.schema_version(),
                    source: self.config.source.clone(),
                    time: Utc::now(),
                    content_type: codec.content_type().to_owned(),
                    data: codec.encode(e.event_type(), e.schema_version(), &payload)?,
                    metadata: metadata.clone(),
                })
            })
            .collect()
    }

    async fn maybe_snapshot(&self, stream: &StreamId, loaded: &Loaded<A>, first: u64, last: u64) {
        let Some(every) = self.config.snapshot_every.filter(|n| *n > 0) else {
            return;
        };
        // The stream held `first` events before this append and `last + 1`
        // after it: snapshot when that crossed a multiple of `every`.
        if (last + 1) / every == first / every {
            return;
        }
        let body = SnapshotBodyRef {
            state: &loaded.state,
            recent_commands: &loaded.recent_commands,
        };
        let data = match serde_json::to_vec(&body) {
            Ok(d) => Bytes::from(d),
            Err(e) => {
                tracing::warn!(stream = %stream, error = %e, "cannot serialize a snapshot");
                return;
            }
        };
        let snapshot = Snapshot {
            stream_id: stream.clone(),
            revision: last,
            state_version: A::STATE_VERSION,
            data,
            taken_at: Utc::now(),
        };
        if let Err(e) = self.store.backend().snapshots.save_snapshot(snapshot).await {
            // A missing snapshot only costs load time; the command succeeded.
            tracing::warn!(stream = %stream, error = %e, "cannot save a snapshot");
        }
    }

    /// Takes a snapshot now, whatever the policy.
    ///
    /// # Errors
    /// A load or store error.
    pub async fn snapshot_now(&self, id: &str) -> Result<Option<u64>> {
        let stream = Self::stream_id(id)?;
        let loaded = self.load_stream(&stream).await?;
        let Some(revision) = loaded.revision else {
            return Ok(None);
        };
        let body = SnapshotBodyRef {
            state: &loaded.state,
            recent_commands: &loaded.recent_commands,
        };
        let data =
            Bytes::from(serde_json::to_vec(&body).map_err(|e| Error::encode("snapshot", e))?);
        self.store
            .backend()
            .snapshots
            .save_snapshot(Snapshot {
                stream_id: stream,
                revision,
                state_version: A::STATE_VERSION,
                data,
                taken_at: Utc::now(),
            })
            .await?;
        Ok(Some(revision))
    }
}

/// Whether an event type is one `E` can decode.
#[must_use]
pub fn knows<E: Event>(event_type: &str) -> bool {
    E::event_types().iter().any(|t| t.event_type == event_type)
}
