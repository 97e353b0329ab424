//! [`NatsPublisher`]: stored events to JetStream, as CloudEvents in binary
//! content mode, deduplicated by event id.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::{self, message::PublishMessage};
use async_trait::async_trait;
use bytes::Bytes;
use orchestrix::cloudevent::{CloudEvent, binary};
use orchestrix::relay::Publisher;
use orchestrix::runtime::partition_for;
use orchestrix::{Error, RecordedEvent, Result};

use crate::config::NatsConfig;
use crate::error::{NatsError, backend, client, publish_is_transient};

/// The header JetStream deduplicates on.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// JetStream stores a message carrying this header only when the stream's
/// last message has the id it names (see `publish_events`).
const EXPECTED_LAST_MSG_ID_HEADER: &str = "Nats-Expected-Last-Msg-Id";

/// One event as a JetStream message: subject, headers and body.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// `{prefix}.{partition}`.
    pub subject: String,
    /// The partition.
    pub partition: u32,
    /// `Nats-Msg-Id` = event id, `ce-*` attributes, `content-type`.
    pub headers: HeaderMap,
    /// The event data.
    pub payload: Bytes,
}

/// What a publish achieved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublishReport {
    /// Messages the stream stored.
    pub stored: usize,
    /// Messages the stream dropped as duplicates of an earlier one with the
    /// same event id (a republish after a relay restart).
    pub duplicates: usize,
    /// The stream sequence of the last message (stored or duplicate).
    pub last_sequence: u64,
}

/// Publishes stored events to a JetStream stream; plug it into the core
/// [`Relay`](orchestrix::relay::Relay) to move everything a store appends to
/// NATS, in order, at least once, with server-side dedupe.
///
/// - The subject is `{prefix}.{partition}` with partition
///   `fnv1a64(stream id) % partitions`, the same function the in-process
///   runtime uses, so one stream's events stay on one partition in order.
/// - The message is the CloudEvent of the event in binary content mode:
///   attributes as `ce-` headers, data as the body, `content-type`.
/// - `Nats-Msg-Id` is the event id: the stream drops a republished event
///   within its duplicate window.
/// - Publishes are pipelined with at most `max_outstanding_acks` unconfirmed
///   at once, and confirmed in order; [`publish`](Publisher::publish) returns
///   once every event of the batch is acknowledged.
///
/// ```no_run
/// use std::sync::Arc;
/// use orchestrix::relay::{Relay, RelayConfig};
/// use orchestrix::Store;
/// use orchestrix_nats::{NatsConfig, NatsPublisher};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Store::memory();
/// let publisher = NatsPublisher::connect(NatsConfig::new("nats://127.0.0.1:4222")).await?;
/// let relay = Relay::start(store.clone(), Arc::new(publisher), RelayConfig::default()).await?;
/// // ... append to `store`; the relay publishes every event ...
/// relay.shutdown().await?;
/// # Ok::<(), orchestrix::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct NatsPublisher {
    inner: Arc<Inner>,
}

struct Inner {
    js: jetstream::Context,
    config: NatsConfig,
    /// How payloads are written on the bus (`None`: the stored bytes).
    format: Option<Arc<dyn orchestrix::wire::ValueFormat>>,
}

impl fmt::Debug for NatsPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsPublisher")
            .field("stream", &self.inner.config.stream.name)
            .field("subject_prefix", &self.inner.config.stream.subject_prefix)
            .field("partitions", &self.inner.config.stream.partitions)
            .finish_non_exhaustive()
    }
}

impl NatsPublisher {
    /// Connects and, unless `publisher.ensure_stream` is off, creates or
    /// updates the event and dead-letter streams.
    ///
    /// # Errors
    /// A connect or stream setup failure.
    pub async fn connect(config: NatsConfig) -> Result<Self> {
        let client = crate::connect::connect(&config).await?;
        Self::with_client(client, config).await
    }

    /// Uses an existing connection.
    ///
    /// # Errors
    /// An invalid config or a stream setup failure.
    pub async fn with_client(client: async_nats::Client, config: NatsConfig) -> Result<Self> {
        config.validate()?;
        let js = crate::connect::jetstream(client, &config);
        if config.publisher.ensure_stream {
            crate::setup::ensure_streams(&js, &config).await?;
        }
        Ok(Self {
            inner: Arc::new(Inner {
                js,
                config,
                format: None,
            }),
        })
    }

    /// Writes payloads on the bus in `format` (e.g. Avro in the Confluent
    /// wire format, `orchestrix_schema_registry::AvroWireFormat`) instead of
    /// the stored bytes. The subject prefix is the format's topic.
    #[must_use]
    pub fn with_value_format(self, format: Arc<dyn orchestrix::wire::ValueFormat>) -> Self {
        let inner = &self.inner;
        Self {
            inner: Arc::new(Inner {
                js: inner.js.clone(),
                config: inner.config.clone(),
                format: Some(format),
            }),
        }
    }

    /// The config.
    #[must_use]
    pub fn config(&self) -> &NatsConfig {
        &self.inner.config
    }

    /// The JetStream context (for tools and tests).
    #[must_use]
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.inner.js
    }

    /// The partition of a stream.
    #[must_use]
    pub fn partition_of(&self, stream_id: &str) -> u32 {
        partition_for(stream_id, self.inner.config.stream.partitions)
    }

    /// The JetStream message of an event (see [`encode()`]).
    ///
    /// # Errors
    /// As [`encode()`].
    pub fn encode(&self, event: &RecordedEvent) -> Result<OutgoingMessage> {
        encode(&self.inner.config, event)
    }

    /// Publishes events in order and waits until JetStream acknowledged every
    /// one; reports how many were stored and how many were duplicates.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an event that cannot be encoded (nothing
    /// after it is sent); a transient [`Error::Backend`] when a publish is not
    /// acknowledged (the caller publishes the batch again; dedupe drops what
    /// was stored).
    pub async fn publish_events(&self, events: &[RecordedEvent]) -> Result<PublishReport> {
        let max = self.inner.config.publisher.max_outstanding_acks;
        let mut pending: VecDeque<(uuid::Uuid, String, PublishAckFuture)> =
            VecDeque::with_capacity(max.min(events.len()));
        let mut report = PublishReport::default();
        let mut previous: Option<uuid::Uuid> = None;
        for event in events {
            let mut message = match &self.inner.format {
                None => self.encode(event)?,
                Some(format) => {
                    let wire = format
                        .outbound(&self.inner.config.stream.subject_prefix, event)
                        .await?;
                    self.encode(&wire)?
                }
            };
            // Order across reconnections: when a connection dies mid-batch,
            // a publish lost in its socket can be overtaken by a later one
            // the client still buffered and sends after reconnecting, and
            // the stream would hold that stream's revisions out of order
            // (chaos case `relay_slow_link`; consumers then saw a revision
            // after its successor). Each event after the first of a call
            // is stored only right after its predecessor; a stale publish
            // that arrives out of turn is refused, and the caller's retry
            // of the batch stores it in order (duplicates are dropped by
            // `Nats-Msg-Id` before this check).
            if let Some(previous) = previous {
                message
                    .headers
                    .insert(EXPECTED_LAST_MSG_ID_HEADER, previous.to_string());
            }
            previous = Some(event.id());
            if pending.len() >= max
                && let Some((id, subject, ack)) = pending.pop_front()
            {
                self.confirm(id, &subject, ack, &mut report).await?;
            }
            let ack = self
                .inner
                .js
                .send_publish(
                    message.subject.clone(),
                    PublishMessage::build()
                        .headers(message.headers)
                        .payload(message.payload),
                )
                .await
                .map_err(|e| {
                    client(
                        "publish",
                        publish_is_transient(&e),
                        format!("publish event {} to `{}`", event.id(), message.subject),
                        e,
                    )
                })?;
            pending.push_back((event.id(), message.subject, ack));
        }
        while let Some((id, subject, ack)) = pending.pop_front() {
            self.confirm(id, &subject, ack, &mut report).await?;
        }
        Ok(report)
    }

    async fn confirm(
        &self,
        id: uuid::Uuid,
        subject: &str,
        ack: PublishAckFuture,
        report: &mut PublishReport,
    ) -> Result<()> {
        let ack = ack.await.map_err(|e| {
            let transient = publish_is_transient(&e);
            let hint = if matches!(e.kind(), PublishErrorKind::StreamNotFound) {
                " (no stream captures the subject)"
            } else {
                ""
            };
            client(
                "publish",
                transient,
                format!("acknowledgement of event {id} on `{subject}`{hint}"),
                e,
            )
        })?;
        if ack.stream != self.inner.config.stream.name {
            return Err(backend(
                "publish",
                false,
                NatsError::NotStored {
                    event_id: id.to_string(),
                    subject: subject.to_owned(),
                    reason: format!(
                        "stored by stream `{}`, not `{}`",
                        ack.stream, self.inner.config.stream.name
                    ),
                },
            ));
        }
        if ack.duplicate {
            report.duplicates += 1;
        } else {
            report.stored += 1;
        }
        report.last_sequence = ack.sequence;
        Ok(())
    }
}

/// The JetStream message of an event under `config`: subject
/// `{prefix}.{partition}`, `Nats-Msg-Id` = event id, the CloudEvent in binary
/// content mode (`ce-` headers, `content-type`), and the stored data, byte
/// for byte, as the body.
///
/// ```
/// use orchestrix::{EventRecord, RecordedEvent, StreamId};
/// use orchestrix_nats::{NatsConfig, partition_for};
/// use orchestrix_nats::publisher::encode;
/// let config = NatsConfig::default();
/// let event = RecordedEvent {
///     stream_id: StreamId::parse("account-7")?,
///     revision: 2,
///     position: 9,
///     record: EventRecord::json("com.acme.Deposited", 1, &serde_json::json!({ "amount": 5 })),
/// };
/// let m = encode(&config, &event)?;
/// assert_eq!(m.subject, format!("orchestrix.events.{}", partition_for("account-7", 16)));
/// assert_eq!(m.headers.get("Nats-Msg-Id").unwrap().as_str(), event.id().to_string());
/// assert_eq!(m.headers.get("ce-streamrevision").unwrap().as_str(), "2");
/// # Ok::<(), orchestrix::Error>(())
/// ```
///
/// # Errors
/// [`Error::InvalidInput`] when the event is not a valid CloudEvent, or an
/// attribute holds a line break (which no NATS header can carry).
pub fn encode(config: &NatsConfig, event: &RecordedEvent) -> Result<OutgoingMessage> {
    let partition = partition_for(event.stream_id.as_str(), config.stream.partitions);
    // The body is the stored bytes as they are; the envelope is built without
    // them, which spares parsing and re-serializing JSON data.
    let mut envelope = event.clone();
    envelope.record.data = Bytes::new();
    let ce = CloudEvent::from_recorded(&envelope)?;
    let (attributes, _) = binary::encode(&ce, binary::NATS_PREFIX);
    let payload = event.record.data.clone();
    let mut headers = HeaderMap::new();
    headers.insert(MSG_ID_HEADER, event.id().to_string());
    for (name, value) in attributes {
        if value.contains(['\r', '\n']) {
            return Err(Error::invalid(
                format!("event {} attribute `{name}`", event.id()),
                "a NATS header value cannot hold a line break",
            ));
        }
        headers.insert(name, value);
    }
    Ok(OutgoingMessage {
        subject: config.partition_subject(partition),
        partition,
        headers,
        payload,
    })
}

#[async_trait]
impl Publisher for NatsPublisher {
    fn name(&self) -> &str {
        "nats"
    }

    async fn publish(&self, events: &[RecordedEvent]) -> Result<()> {
        let report = self.publish_events(events).await?;
        if report.duplicates > 0 {
            tracing::debug!(
                duplicates = report.duplicates,
                stored = report.stored,
                "republished events were deduplicated"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use orchestrix::{EventRecord, StreamId};

    use super::*;

    fn event(stream: &str) -> RecordedEvent {
        let mut record =
            EventRecord::json("com.acme.Deposited", 3, &serde_json::json!({ "amount": 5 }));
        record.metadata.correlation_id = Some("corr-1".into());
        RecordedEvent {
            stream_id: StreamId::parse(stream).unwrap(),
            revision: 4,
            position: 17,
            record,
        }
    }

    #[test]
    fn encoded_messages_decode_back_to_the_event() {
        let config = NatsConfig::default();
        let e = event("account-7");
        let m = encode(&config, &e).unwrap();
        assert_eq!(
            m.partition,
            partition_for("account-7", config.stream.partitions)
        );
        assert_eq!(m.subject, config.partition_subject(m.partition));
        let pairs = m.headers.iter().flat_map(|(k, vs)| {
            vs.iter()
                .map(move |v| (AsRef::<str>::as_ref(k), v.as_str().as_bytes()))
        });
        let back =
            binary::to_recorded(&binary::decode(pairs, &m.payload, binary::NATS_PREFIX).unwrap())
                .unwrap();
        assert_eq!(
            (back.stream_id, back.revision, back.position),
            (e.stream_id.clone(), 4, 17)
        );
        assert_eq!(back.record.id, e.id());
        assert_eq!(back.record.schema_version, 3);
        assert_eq!(back.record.metadata, e.record.metadata);
        assert_eq!(back.record.data, e.record.data);
        assert_eq!(back.record.content_type, "application/json");
    }

    #[test]
    fn the_body_is_the_stored_bytes() {
        let mut e = event("account-9");
        e.record.data = Bytes::from_static(br#"{ "z": 1,  "a": [2] }"#); // not canonical JSON
        assert_eq!(
            encode(&NatsConfig::default(), &e).unwrap().payload,
            e.record.data
        );
    }

    #[test]
    fn a_line_break_in_an_attribute_is_refused() {
        let mut e = event("account-8");
        e.record
            .metadata
            .extensions
            .insert("note".into(), "two\nlines".into());
        let err = encode(&NatsConfig::default(), &e).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
    }
}
