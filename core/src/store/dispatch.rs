//! [`Store`]: the one dispatch layer in front of every backend.
//!
//! Every read and write of events goes through here, so spans, metrics
//! (`orchestrix_appends_total`, `orchestrix_append_duration_seconds`,
//! `orchestrix_events_appended_total`, see [`crate::telemetry::metrics`]),
//! upcasting and write coalescing are written once and every backend inherits
//! them.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tracing::Instrument as _;
use uuid::Uuid;

use super::{AppendRequest, AppendResult, Backend, Direction, Filter};
use crate::coalesce::{CoalesceConfig, Coalescer};
use crate::codec::{Codec, JsonCodec};
use crate::error::Result;
use crate::event::RecordedEvent;
use crate::id::StreamId;
use crate::telemetry;
use crate::upcast::Upcasters;

/// Default number of events a subscription reads per round trip.
pub const DEFAULT_BATCH: usize = 512;

/// The application's handle on a backend: every port, plus tracing, upcasting
/// and (optionally) write coalescing. Cheap to clone.
///
/// ```
/// use orchestrix::store::{ExpectedRevision, Filter};
/// use orchestrix::{EventRecord, Store, StreamId, Upcasters};
/// use serde_json::json;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Store::memory().with_upcasters(Upcasters::new().add("com.acme.Pinged", 1, |mut v| {
///     v["loud"] = json!(false);
///     Ok(v)
/// }));
/// let stream = StreamId::parse("ping-1")?;
/// store.append(&stream, ExpectedRevision::NoStream, vec![EventRecord::json("com.acme.Pinged", 1, &json!({}))]).await?;
/// let events = store.read_stream_forward(&stream, 0, 10).await?;
/// assert_eq!(events[0].record.schema_version, 2); // upcast on read
/// # Ok::<(), orchestrix::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    codec: Arc<dyn Codec>,
    upcasters: Upcasters,
    coalescer: Option<Coalescer>,
    poll_interval: Duration,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend.events.backend())
            .field("codec", &self.codec.content_type())
            .field("upcasters", &self.upcasters)
            .field("coalescing", &self.coalescer.is_some())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Wraps a backend, with the JSON codec and no upcasters.
    #[must_use]
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            codec: Arc::new(JsonCodec),
            upcasters: Upcasters::new(),
            coalescer: None,
            poll_interval: Duration::from_millis(500),
        }
    }

    /// A fresh in-memory store.
    #[must_use]
    pub fn memory() -> Self {
        Self::new(Backend::from_all(Arc::new(
            super::memory::MemoryStore::new(),
        )))
    }

    /// Uses these upcasters on every read path.
    #[must_use]
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// Uses this codec for payloads.
    #[must_use]
    pub fn with_codec(mut self, codec: Arc<dyn Codec>) -> Self {
        self.codec = codec;
        self
    }

    /// Gathers concurrent appends into shared commits (see [`crate::coalesce`]).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    #[must_use]
    pub fn with_coalescing(mut self, config: CoalesceConfig) -> Self {
        self.coalescer = Some(Coalescer::start(self.backend.events.clone(), config));
        self
    }

    /// How often a live subscription polls when the backend cannot notify.
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How often a live subscription polls when the backend cannot notify.
    #[must_use]
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// The backend's ports.
    #[must_use]
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The backend's name.
    #[must_use]
    pub fn backend_name(&self) -> &'static str {
        self.backend.events.backend()
    }

    /// The payload codec.
    #[must_use]
    pub fn codec(&self) -> &Arc<dyn Codec> {
        &self.codec
    }

    /// The upcasters.
    #[must_use]
    pub fn upcasters(&self) -> &Upcasters {
        &self.upcasters
    }

    /// Decodes a read event into a domain event with this store's codec
    /// (where [`RecordedEvent::decode`] assumes JSON). Events read through this
    /// store are already upcast, so this is a plain decode.
    ///
    /// # Errors
    /// [`crate::Error::Serialization`] or [`crate::Error::UnknownEventType`].
    pub fn decode<E: crate::event::Event>(&self, event: &RecordedEvent) -> Result<E> {
        let record = &event.record;
        let value = self
            .codec
            .decode(&record.event_type, record.schema_version, &record.data)?;
        E::from_payload(&record.event_type, value).map_err(|e| match e {
            crate::Error::UnknownEventType {
                event_type, target, ..
            } => crate::Error::UnknownEventType {
                event_type,
                version: record.schema_version,
                target,
            },
            other => other,
        })
    }

    /// Appends events to a stream.
    ///
    /// # Errors
    /// [`crate::Error::Conflict`] when `expected` does not hold, or a backend error.
    pub async fn append(
        &self,
        stream: &StreamId,
        expected: super::ExpectedRevision,
        events: Vec<crate::event::EventRecord>,
    ) -> Result<AppendResult> {
        self.append_request(AppendRequest::new(stream.clone(), expected, events))
            .await
    }

    /// Appends one request (through the coalescer when enabled).
    ///
    /// # Errors
    /// As [`append`](Self::append).
    pub async fn append_request(&self, request: AppendRequest) -> Result<AppendResult> {
        let span = tracing::info_span!(
            "orchestrix.append",
            otel.kind = "internal",
            backend = self.backend_name(),
            stream = %request.stream_id,
            expected = %request.expected,
            events = request.events.len(),
            revision = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let backend = self.backend_name();
        let fut = async {
            let events = request.events.len();
            let started = std::time::Instant::now();
            let result = match &self.coalescer {
                Some(c) => c.append(request).await,
                None => self.backend.events.append(request).await,
            };
            telemetry::metrics::record_append(
                backend,
                telemetry::metrics::outcome(&result),
                events,
                started.elapsed(),
            );
            let span = tracing::Span::current();
            match &result {
                Ok(r) => {
                    span.record("revision", r.last_revision);
                }
                Err(e) => {
                    span.record("error", tracing::field::display(e));
                }
            }
            result
        };
        fut.instrument(span).await
    }

    /// Appends many independent requests in one batch (one commit where the
    /// backend can); each has its own result.
    ///
    /// # Errors
    /// The outer error when the whole batch failed.
    pub async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<AppendResult>>> {
        let backend = self.backend_name();
        let span =
            tracing::info_span!("orchestrix.append_batch", backend, appends = requests.len());
        let sizes: Vec<usize> = requests.iter().map(|r| r.events.len()).collect();
        let started = std::time::Instant::now();
        let result = self
            .backend
            .events
            .append_batch(requests)
            .instrument(span)
            .await;
        let took = started.elapsed();
        match &result {
            Ok(results) => {
                for (r, events) in results.iter().zip(sizes) {
                    telemetry::metrics::record_append(
                        backend,
                        telemetry::metrics::outcome(r),
                        events,
                        took,
                    );
                }
            }
            Err(e) => {
                for events in sizes {
                    telemetry::metrics::record_append(backend, e.kind(), events, took);
                }
            }
        }
        result
    }

    fn upcast(&self, mut events: Vec<RecordedEvent>) -> Result<Vec<RecordedEvent>> {
        if !self.upcasters.is_empty() {
            for e in &mut events {
                self.upcasters.upcast_record(&*self.codec, &mut e.record)?;
            }
        }
        Ok(events)
    }

    /// Reads one stream.
    ///
    /// # Errors
    /// A backend, corruption or upcasting error.
    pub async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let span = tracing::debug_span!("orchestrix.read_stream", backend = self.backend_name(), stream = %stream, from, ?direction, limit);
        let events = self
            .backend
            .events
            .read_stream(stream, from, direction, limit)
            .instrument(span)
            .await?;
        self.upcast(events)
    }

    /// Reads one stream forward from `from`.
    ///
    /// # Errors
    /// As [`read_stream`](Self::read_stream).
    pub async fn read_stream_forward(
        &self,
        stream: &StreamId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.read_stream(stream, from, Direction::Forward, limit)
            .await
    }

    /// Reads the all-stream after `after`.
    ///
    /// # Errors
    /// A backend, corruption or upcasting error.
    pub async fn read_all(
        &self,
        after: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<RecordedEvent>> {
        let span = tracing::debug_span!(
            "orchestrix.read_all",
            backend = self.backend_name(),
            after,
            limit
        );
        let events = self
            .backend
            .events
            .read_all(after, limit, filter)
            .instrument(span)
            .await?;
        self.upcast(events)
    }

    /// The stream's last revision.
    ///
    /// # Errors
    /// A backend error.
    pub async fn stream_revision(&self, stream: &StreamId) -> Result<Option<u64>> {
        self.backend.events.stream_revision(stream).await
    }

    /// The revision of the event `id` in `stream`, if the stream holds it
    /// ([`EventStore::find_event`](super::EventStore::find_event)).
    ///
    /// # Errors
    /// A backend error.
    pub async fn find_event(&self, stream: &StreamId, id: Uuid) -> Result<Option<u64>> {
        let span = tracing::debug_span!("orchestrix.find_event", backend = self.backend_name(), stream = %stream, %id);
        self.backend
            .events
            .find_event(stream, id)
            .instrument(span)
            .await
    }

    /// The head of the all-stream.
    ///
    /// # Errors
    /// A backend error.
    pub async fn head_position(&self) -> Result<u64> {
        self.backend.events.head_position().await
    }

    /// Subscribes to the all-stream after `after`: catches up, then stays live,
    /// with no gap and no duplicate. The stream ends only on an error (yielded
    /// last) or when dropped.
    pub fn subscribe(
        &self,
        after: u64,
        filter: Filter,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static {
        self.subscribe_batched(after, filter, DEFAULT_BATCH)
    }

    /// [`subscribe`](Self::subscribe) with a chosen read batch size.
    pub fn subscribe_batched(
        &self,
        after: u64,
        filter: Filter,
        batch: usize,
    ) -> impl Stream<Item = Result<RecordedEvent>> + Send + 'static {
        let state = SubState {
            store: self.clone(),
            after,
            filter,
            batch: batch.max(1),
            buffer: VecDeque::new(),
            notify: self.backend.events.notifications(),
            failed: false,
        };
        futures::stream::unfold(state, |mut s| async move {
            if s.failed {
                return None;
            }
            loop {
                if let Some(e) = s.buffer.pop_front() {
                    return Some((Ok(e), s));
                }
                // Mark the current head as seen before reading, so a commit
                // that lands during the read wakes us again.
                if let Some(rx) = &mut s.notify {
                    rx.borrow_and_update();
                }
                // With a filter, a short page means nothing else matched up
                // to the head as it was before the read: skip past it, so a
                // rare filter does not rescan the same tail on every wake-up.
                let head = if s.filter.is_all() {
                    None
                } else {
                    match s.store.head_position().await {
                        Ok(h) => Some(h),
                        Err(e) => {
                            s.failed = true;
                            return Some((Err(e), s));
                        }
                    }
                };
                match s.store.read_all(s.after, s.batch, &s.filter).await {
                    Err(e) => {
                        s.failed = true;
                        return Some((Err(e), s));
                    }
                    Ok(events) => {
                        let full = events.len() >= s.batch;
                        let empty = events.is_empty();
                        s.after = events.last().map_or(s.after, |e| e.position);
                        if let Some(head) = head.filter(|_| !full) {
                            s.after = s.after.max(head);
                        }
                        s.buffer.extend(events);
                        if empty {
                            s.wait().await;
                        }
                    }
                }
            }
        })
    }
}

struct SubState {
    store: Store,
    after: u64,
    filter: Filter,
    batch: usize,
    buffer: VecDeque<RecordedEvent>,
    notify: Option<tokio::sync::watch::Receiver<u64>>,
    failed: bool,
}

impl SubState {
    async fn wait(&mut self) {
        let poll = self.store.poll_interval;
        match &mut self.notify {
            Some(rx) => {
                // The poll bounds the wait even if a notification is lost.
                if let Ok(Err(_)) = tokio::time::timeout(poll, rx.changed()).await {
                    // The backend dropped its notifier: fall back to polling.
                    self.notify = None;
                }
            }
            None => tokio::time::sleep(poll).await,
        }
    }
}
