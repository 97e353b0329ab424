//! Read-only views of a store: streams, events, projections' checkpoints and
//! lag, dead letters and saga instances, as serializable values that the CLI
//! prints and the console renders.
//!
//! Everything here goes through the store ports
//! ([`EventStore`](orchestrix::store::EventStore),
//! [`CheckpointStore`](orchestrix::store::CheckpointStore),
//! [`DeadLetterStore`](orchestrix::store::DeadLetterStore),
//! [`TimerStore`](orchestrix::store::TimerStore)), so it works on every
//! backend alike. Dead letters go through a
//! [`DeadLetterQueue`]: the store's by default, a bus's
//! dead-letter topic or stream with [`Inspector::with_dead_letters`]. The ports have no stream index, so listing streams, finding
//! an event by id and listing sagas scan the all-stream (in pages of
//! [`PAGE`] events): fine for an operator on stores of millions of events, not
//! something to put on a hot path.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use orchestrix::cloudevent::{self, CloudEvent};
use std::sync::Arc;

use orchestrix::dead_letter::{DeadLetterQueue, StoreDeadLetters};
use orchestrix::store::{DeadLetter, Direction, Filter, Timer};
use orchestrix::{RecordedEvent, Store, StreamId};
use serde::Serialize;
use uuid::Uuid;

use crate::error::{Error, Result};

/// Events read per page when scanning the all-stream.
pub const PAGE: usize = 1000;

/// One stream in a listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamSummary {
    /// The stream id, `{category}-{id}`.
    pub stream: String,
    /// Its category.
    pub category: String,
    /// The last revision (events - 1).
    pub revision: u64,
    /// Number of events.
    pub events: u64,
    /// Global position of its last event.
    pub last_position: u64,
    /// Time of its last event.
    pub last_time: DateTime<Utc>,
}

/// One category in a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CategorySummary {
    /// The category.
    pub category: String,
    /// Number of streams.
    pub streams: u64,
    /// Number of events.
    pub events: u64,
}

/// One stored event, with its CloudEvents attributes and its payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventView {
    /// Global position.
    pub position: u64,
    /// Stream id.
    pub stream: String,
    /// Revision in the stream.
    pub revision: u64,
    /// Event id.
    pub id: Uuid,
    /// CloudEvents `type`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Schema version of the payload.
    pub schema_version: u32,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// CloudEvents `source`.
    pub source: String,
    /// Content type of the payload.
    pub content_type: String,
    /// Every CloudEvents attribute (context attributes and extensions), as strings.
    pub attributes: BTreeMap<String, String>,
    /// The payload: JSON when the content type is JSON, otherwise
    /// `{"base64": "..."}`.
    pub data: serde_json::Value,
}

impl EventView {
    /// The view of a stored event.
    #[must_use]
    pub fn of(event: &RecordedEvent) -> Self {
        let r = &event.record;
        let attributes = match CloudEvent::from_recorded_opaque(event) {
            Ok(ce) => match ce.to_json() {
                serde_json::Value::Object(map) => map
                    .into_iter()
                    .filter(|(k, _)| k != "data" && k != "data_base64")
                    .map(|(k, v)| match v {
                        serde_json::Value::String(s) => (k, s),
                        other => (k, other.to_string()),
                    })
                    .collect(),
                _ => BTreeMap::new(),
            },
            Err(_) => BTreeMap::new(),
        };
        Self {
            position: event.position,
            stream: event.stream_id.to_string(),
            revision: event.revision,
            id: r.id,
            event_type: r.event_type.clone(),
            schema_version: r.schema_version,
            time: r.time,
            source: r.source.clone(),
            content_type: r.content_type.clone(),
            attributes,
            data: payload_json(&r.content_type, &r.data),
        }
    }
}

/// A payload as JSON: parsed when it is JSON, else `{"base64": ...}`.
#[must_use]
pub fn payload_json(content_type: &str, data: &[u8]) -> serde_json::Value {
    if orchestrix::codec::is_json(content_type)
        && let Ok(value) = serde_json::from_slice(data)
    {
        return value;
    }
    if content_type.is_empty()
        && let Ok(value) = serde_json::from_slice(data)
    {
        return value;
    }
    serde_json::json!({ "base64": cloudevent::base64_encode(data) })
}

/// A projection's (or any consumer's) checkpoint against the store's head.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProjectionStatus {
    /// The checkpoint name.
    pub name: String,
    /// The stored checkpoint (`None`: never checkpointed).
    pub checkpoint: Option<u64>,
    /// The store's head position.
    pub head: u64,
    /// Positions between the checkpoint and the head (a filtered projection
    /// also counts events it will skip).
    pub lag_events: u64,
    /// Seconds from the first event after the checkpoint to now; 0 when
    /// caught up.
    pub lag_seconds: f64,
}

pub use orchestrix::dead_letter::DeadLetterFilter;

/// A dead letter with its payload readable.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeadLetterView {
    /// The letter, as stored (payload in base64).
    #[serde(flatten)]
    pub letter: DeadLetter,
    /// The payload as JSON when it is JSON, else `{"base64": ...}`.
    pub data: serde_json::Value,
}

impl DeadLetterView {
    /// The view of a letter.
    #[must_use]
    pub fn of(letter: DeadLetter) -> Self {
        let content_type = letter
            .headers
            .get("datacontenttype")
            .cloned()
            .unwrap_or_default();
        let data = payload_json(&content_type, &letter.payload);
        Self { letter, data }
    }
}

/// Where a saga instance stands, as recorded by the engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SagaSummaryView {
    /// The saga's name.
    pub saga: String,
    /// The instance's correlation id.
    pub correlation: String,
    /// `NAME/CORRELATION`, what `sagas show` takes.
    pub id: String,
    /// `running`, `completed`, `compensating`, `compensated` or `failed`.
    pub status: String,
    /// Why it failed, once it has.
    pub reason: Option<String>,
    /// When it last changed status.
    pub updated: DateTime<Utc>,
}

/// One entry of a saga's audit trail (its stream).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SagaEntry {
    /// Revision in the saga stream.
    pub revision: u64,
    /// When it was recorded.
    pub time: DateTime<Utc>,
    /// The event type (`orchestrix.saga.*` for the engine's bookkeeping).
    #[serde(rename = "type")]
    pub event_type: String,
    /// The payload.
    pub data: serde_json::Value,
}

/// A pending timeout of a saga instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingTimeoutView {
    /// The timeout's name.
    pub name: String,
    /// The timer id.
    pub timer_id: String,
    /// When it is due.
    pub due_at: DateTime<Utc>,
    /// Whether the timer store still holds it (it fires after a restart).
    pub durable: bool,
}

/// One saga instance in full.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SagaDetail {
    /// Status and identity.
    #[serde(flatten)]
    pub summary: SagaSummaryView,
    /// The saga stream.
    pub stream: String,
    /// The state as the saga's own events left it: the payload of each, last
    /// one per type (the state type is the application's; see the trail).
    pub saga_events: Vec<SagaEntry>,
    /// Commands sent, rejected and compensations run, in order.
    pub steps: Vec<SagaEntry>,
    /// Timeouts scheduled and not fired or cancelled.
    pub pending_timeouts: Vec<PendingTimeoutView>,
    /// Every entry of the saga's stream.
    pub trail: Vec<SagaEntry>,
}

/// The prefix of the stream categories of sagas.
pub const SAGA_CATEGORY_PREFIX: &str = "saga_";

const ENGINE: &str = orchestrix::saga::ENGINE_EVENT_PREFIX;

fn status_of(event_type: &str) -> Option<&'static str> {
    match event_type.strip_prefix(ENGINE)? {
        "Started" => Some("running"),
        "Completed" => Some("completed"),
        "CompensationStarted" => Some("compensating"),
        "Compensated" => Some("compensated"),
        "Failed" => Some("failed"),
        _ => None,
    }
}

const STEP_TYPES: [&str; 6] = [
    "CommandSent",
    "CommandRejected",
    "CompensationRegistered",
    "CompensationSent",
    "CompensationRejected",
    "TimeoutFired",
];

/// Read-only queries over one store (and its dead letters, or a bus's).
#[derive(Debug, Clone)]
pub struct Inspector {
    store: Store,
    dead_letters: Arc<dyn DeadLetterQueue>,
}

impl Inspector {
    /// Queries over `store`, with the store's dead letters.
    #[must_use]
    pub fn new(store: Store) -> Self {
        Self {
            dead_letters: Arc::new(StoreDeadLetters::new(store.clone())),
            store,
        }
    }

    /// The dead letters of `queue` (a bus's, say) instead of the store's.
    #[must_use]
    pub fn with_dead_letters(mut self, queue: Arc<dyn DeadLetterQueue>) -> Self {
        self.dead_letters = queue;
        self
    }

    /// Where the dead letters come from.
    #[must_use]
    pub fn dead_letter_queue(&self) -> &Arc<dyn DeadLetterQueue> {
        &self.dead_letters
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Calls `f` on every event after `after` that passes `filter`, in
    /// position order, until `f` returns `false` or the head is reached.
    async fn scan(
        &self,
        after: u64,
        filter: &Filter,
        mut f: impl FnMut(&RecordedEvent) -> bool,
    ) -> Result<()> {
        let mut after = after;
        loop {
            let page = self.store.read_all(after, PAGE, filter).await?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = last.position;
            for event in &page {
                if !f(event) {
                    return Ok(());
                }
            }
            if page.len() < PAGE {
                return Ok(());
            }
        }
    }

    /// Every stream (of `category`, if given), in order of first appearance.
    ///
    /// # Errors
    /// A store error.
    pub async fn streams(&self, category: Option<&str>) -> Result<Vec<StreamSummary>> {
        let filter = category.map_or_else(Filter::all, |c| Filter::all().categories([c]));
        let mut order: Vec<String> = Vec::new();
        let mut by_stream: HashMap<String, StreamSummary> = HashMap::new();
        self.scan(0, &filter, |e| {
            let key = e.stream_id.as_str();
            match by_stream.get_mut(key) {
                Some(s) => {
                    s.revision = e.revision;
                    s.events += 1;
                    s.last_position = e.position;
                    s.last_time = e.record.time;
                }
                None => {
                    order.push(key.to_owned());
                    by_stream.insert(
                        key.to_owned(),
                        StreamSummary {
                            stream: key.to_owned(),
                            category: e.stream_id.category().to_owned(),
                            revision: e.revision,
                            events: 1,
                            last_position: e.position,
                            last_time: e.record.time,
                        },
                    );
                }
            }
            true
        })
        .await?;
        Ok(order
            .into_iter()
            .filter_map(|k| by_stream.remove(&k))
            .collect())
    }

    /// Every category with its stream and event counts, by name.
    ///
    /// # Errors
    /// A store error.
    pub async fn categories(&self) -> Result<Vec<CategorySummary>> {
        let mut out: BTreeMap<String, CategorySummary> = BTreeMap::new();
        for s in self.streams(None).await? {
            let c = out
                .entry(s.category.clone())
                .or_insert_with(|| CategorySummary {
                    category: s.category.clone(),
                    streams: 0,
                    events: 0,
                });
            c.streams += 1;
            c.events += s.events;
        }
        Ok(out.into_values().collect())
    }

    /// Up to `limit` events of `stream` from revision `from`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a malformed stream id; a store error.
    pub async fn read_stream(
        &self,
        stream: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<EventView>> {
        let id = StreamId::parse(stream)?;
        let events = self
            .store
            .read_stream(&id, from, Direction::Forward, limit)
            .await?;
        Ok(events.iter().map(EventView::of).collect())
    }

    /// Up to `limit` events of the all-stream after position `after` (of
    /// `category`, if given).
    ///
    /// # Errors
    /// A store error.
    pub async fn read_all(
        &self,
        after: u64,
        limit: usize,
        category: Option<&str>,
    ) -> Result<Vec<EventView>> {
        let filter = category.map_or_else(Filter::all, |c| Filter::all().categories([c]));
        let events = self.store.read_all(after, limit, &filter).await?;
        Ok(events.iter().map(EventView::of).collect())
    }

    /// The last `limit` events of the all-stream (of `category`, if given),
    /// oldest first.
    ///
    /// # Errors
    /// A store error.
    pub async fn last(&self, limit: usize, category: Option<&str>) -> Result<Vec<EventView>> {
        let head = self.store.head_position().await?;
        let filter = category.map_or_else(Filter::all, |c| Filter::all().categories([c]));
        // Step back from the head until enough events are found.
        let mut window = u64::try_from(limit).unwrap_or(u64::MAX).max(1);
        loop {
            let after = head.saturating_sub(window);
            let mut found = Vec::new();
            self.scan(after, &filter, |e| {
                found.push(EventView::of(e));
                true
            })
            .await?;
            if found.len() >= limit || after == 0 {
                let skip = found.len().saturating_sub(limit);
                return Ok(found.split_off(skip));
            }
            window = window.saturating_mul(4);
        }
    }

    /// The event with this id.
    ///
    /// # Errors
    /// A store error.
    pub async fn event(&self, id: Uuid) -> Result<Option<EventView>> {
        let mut found = None;
        self.scan(0, &Filter::all(), |e| {
            if e.id() == id {
                found = Some(EventView::of(e));
                false
            } else {
                true
            }
        })
        .await?;
        Ok(found)
    }

    /// The event at this global position.
    ///
    /// # Errors
    /// A store error.
    pub async fn event_at(&self, position: u64) -> Result<Option<EventView>> {
        if position == 0 {
            return Ok(None);
        }
        let found = self.store.read_all(position - 1, 1, &Filter::all()).await?;
        Ok(found
            .iter()
            .find(|e| e.position == position)
            .map(EventView::of))
    }

    /// The store's head position.
    ///
    /// # Errors
    /// A store error.
    pub async fn head(&self) -> Result<u64> {
        Ok(self.store.head_position().await?)
    }

    /// The checkpoint and lag of each named consumer.
    ///
    /// # Errors
    /// A store error.
    pub async fn projections(&self, names: &[String]) -> Result<Vec<ProjectionStatus>> {
        let head = self.store.head_position().await?;
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let checkpoint = self
                .store
                .backend()
                .checkpoints
                .load_checkpoint(name)
                .await?;
            let at = checkpoint.unwrap_or(0);
            let lag_events = head.saturating_sub(at);
            let lag_seconds = if lag_events == 0 {
                0.0
            } else {
                match self.store.read_all(at, 1, &Filter::all()).await?.first() {
                    Some(e) => (Utc::now() - e.record.time)
                        .to_std()
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0),
                    None => 0.0,
                }
            };
            out.push(ProjectionStatus {
                name: name.clone(),
                checkpoint,
                head,
                lag_events,
                lag_seconds,
            });
        }
        Ok(out)
    }

    /// Dead letters that pass `filter`, oldest first.
    ///
    /// # Errors
    /// A store or bus error.
    pub async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        Ok(self.dead_letters.list(filter).await?)
    }

    /// One dead letter.
    ///
    /// # Errors
    /// A store or bus error.
    pub async fn dead_letter(&self, id: Uuid) -> Result<Option<DeadLetter>> {
        Ok(self.dead_letters.get(id).await?)
    }

    /// Deletes (resolves) a dead letter; `false` if it was absent.
    ///
    /// # Errors
    /// A store or bus error.
    pub async fn delete_dead_letter(&self, id: Uuid) -> Result<bool> {
        Ok(self.dead_letters.resolve(id).await?)
    }

    /// Every saga instance (with this status, if given), by saga and
    /// correlation id.
    ///
    /// # Errors
    /// A store error.
    pub async fn sagas(&self, status: Option<&str>) -> Result<Vec<SagaSummaryView>> {
        let types: Vec<String> = [
            "Started",
            "Completed",
            "CompensationStarted",
            "Compensated",
            "Failed",
        ]
        .iter()
        .map(|t| format!("{ENGINE}{t}"))
        .collect();
        let filter = Filter::all().event_types(types);
        let mut by_stream: BTreeMap<String, SagaSummaryView> = BTreeMap::new();
        self.scan(0, &filter, |e| {
            let category = e.stream_id.category();
            let (Some(saga), Some(status)) = (
                category.strip_prefix(SAGA_CATEGORY_PREFIX),
                status_of(&e.record.event_type),
            ) else {
                return true;
            };
            let reason = serde_json::from_slice::<serde_json::Value>(&e.record.data)
                .ok()
                .and_then(|v| v.get("reason").and_then(|r| r.as_str().map(str::to_owned)));
            let correlation = e.stream_id.entity_id().to_owned();
            let entry =
                by_stream
                    .entry(e.stream_id.to_string())
                    .or_insert_with(|| SagaSummaryView {
                        saga: saga.to_owned(),
                        id: format!("{saga}/{correlation}"),
                        correlation,
                        status: String::new(),
                        reason: None,
                        updated: e.record.time,
                    });
            entry.status = status.to_owned();
            entry.updated = e.record.time;
            if reason.is_some() {
                entry.reason = reason;
            }
            true
        })
        .await?;
        let mut out: Vec<SagaSummaryView> = by_stream
            .into_values()
            .filter(|s| status.is_none_or(|want| s.status.eq_ignore_ascii_case(want)))
            .collect();
        out.sort_by(|a, b| (&a.saga, &a.correlation).cmp(&(&b.saga, &b.correlation)));
        Ok(out)
    }

    /// One saga instance: `NAME/CORRELATION` or its stream id
    /// `saga_NAME-CORRELATION`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a malformed id; a store error.
    pub async fn saga(&self, id: &str) -> Result<Option<SagaDetail>> {
        let stream = saga_stream(id)?;
        let saga = stream
            .category()
            .strip_prefix(SAGA_CATEGORY_PREFIX)
            .unwrap_or_default()
            .to_owned();
        let correlation = stream.entity_id().to_owned();
        let events = self
            .store
            .read_stream(&stream, 0, Direction::Forward, usize::MAX >> 1)
            .await?;
        let Some(first) = events.first() else {
            return Ok(None);
        };
        let mut summary = SagaSummaryView {
            saga: saga.clone(),
            id: format!("{saga}/{correlation}"),
            correlation: correlation.clone(),
            status: "running".to_owned(),
            reason: None,
            updated: first.record.time,
        };
        let mut trail = Vec::with_capacity(events.len());
        let mut steps = Vec::new();
        let mut saga_events = Vec::new();
        let mut timeouts: BTreeMap<String, (String, DateTime<Utc>)> = BTreeMap::new();
        for e in &events {
            let entry = SagaEntry {
                revision: e.revision,
                time: e.record.time,
                event_type: e.record.event_type.clone(),
                data: payload_json(&e.record.content_type, &e.record.data),
            };
            let str_field = |name: &str| {
                entry
                    .data
                    .get(name)
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            };
            match e.record.event_type.strip_prefix(ENGINE) {
                Some(variant) => {
                    if let Some(status) = status_of(&e.record.event_type) {
                        summary.status = status.to_owned();
                        summary.updated = e.record.time;
                    }
                    if let Some(reason) = str_field("reason")
                        && variant != "CompensationRejected"
                    {
                        summary.reason.get_or_insert(reason);
                    }
                    match variant {
                        "TimeoutScheduled" => {
                            if let (Some(name), Some(timer), Some(due)) = (
                                str_field("name"),
                                str_field("timer_id"),
                                str_field("due_at")
                                    .and_then(|d| DateTime::parse_from_rfc3339(&d).ok()),
                            ) {
                                timeouts.insert(name, (timer, due.with_timezone(&Utc)));
                            }
                        }
                        "TimeoutCancelled" | "TimeoutFired" => {
                            if let (Some(name), Some(timer)) =
                                (str_field("name"), str_field("timer_id"))
                                && timeouts.get(&name).is_some_and(|(t, _)| *t == timer)
                            {
                                timeouts.remove(&name);
                            }
                        }
                        _ => {}
                    }
                    if STEP_TYPES.contains(&variant) {
                        steps.push(entry.clone());
                    }
                }
                None => saga_events.push(entry.clone()),
            }
            trail.push(entry);
        }
        let durable: Vec<Timer> = self
            .store
            .backend()
            .timers
            .due_timers(&saga, Utc::now() + chrono::Duration::days(36_500), 100_000)
            .await?;
        let pending_timeouts = timeouts
            .into_iter()
            .map(|(name, (timer_id, due_at))| PendingTimeoutView {
                durable: durable.iter().any(|t| t.id == timer_id),
                name,
                timer_id,
                due_at,
            })
            .collect();
        Ok(Some(SagaDetail {
            summary,
            stream: stream.to_string(),
            saga_events,
            steps,
            pending_timeouts,
            trail,
        }))
    }
}

/// The stream of a saga instance named `NAME/CORRELATION` or by its stream id.
///
/// # Errors
/// [`Error::InvalidInput`] when it names neither.
pub fn saga_stream(id: &str) -> Result<StreamId> {
    let stream = match id.split_once('/') {
        Some((saga, correlation)) => {
            StreamId::new(&format!("{SAGA_CATEGORY_PREFIX}{saga}"), correlation)?
        }
        None => StreamId::parse(id)?,
    };
    if !stream.category().starts_with(SAGA_CATEGORY_PREFIX) {
        return Err(Error::InvalidInput(format!(
            "`{id}` is not a saga instance: give NAME/CORRELATION or saga_NAME-CORRELATION"
        )));
    }
    Ok(stream)
}
