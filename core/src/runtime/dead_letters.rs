//! Dead letters: what consumers gave up on, and how to inspect and replay it.
//!
//! Every consumer of the runtime puts an event in the dead letters when its
//! handler fails permanently (a poison message, an undecodable payload, a panic)
//! or keeps failing transiently until the [`RetryPolicy`](super::RetryPolicy)
//! runs out of attempts; then it moves on. [`DeadLetters`] lists those letters
//! and replays them once the cause is fixed.

use std::collections::BTreeMap;

use chrono::Utc;
use uuid::Uuid;

use super::handler::EventHandler;
use super::invoke::invoke;
use super::partition::partition_for;
use crate::cloudevent::{self, CloudEvent};
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::store::{DeadLetter, Filter, Store};

/// Most letters one [`DeadLetters::list`] returns (the port has no paging).
const LIST_LIMIT: usize = 1 << 31;

/// The dead letter for `event`, which `consumer` failed to handle with `error`
/// after `attempts` attempts.
///
/// The payload is the event's data as the handler received it (after
/// upcasting; the stored bytes when no upcaster applied or upcasting failed).
/// The headers are the event's CloudEvents attributes in their string form
/// (the binary content mode's headers, without the `ce_` prefix): `id`,
/// `source`, `type`, `subject`, `time`, `datacontenttype`, `dataschema`,
/// `partitionkey`, `streamrevision`, `globalposition`, `schemaversion`, and
/// the causal and trace extensions when present.
///
/// ```
/// use orchestrix::runtime::dead_letter_for;
/// use orchestrix::{EventRecord, Error, RecordedEvent, StreamId};
/// let event = RecordedEvent {
///     stream_id: StreamId::parse("order-1")?,
///     revision: 0,
///     position: 7,
///     record: EventRecord::json("com.acme.Placed", 1, &serde_json::json!({"n": 1})),
/// };
/// let letter = dead_letter_for("orders-view", &event, &Error::invalid("order", "no lines"), 1);
/// assert_eq!(letter.headers["type"], "com.acme.Placed");
/// assert_eq!(letter.headers["globalposition"], "7");
/// assert_eq!(letter.error_kind, "invalid_input");
/// assert_eq!(&letter.payload[..], br#"{"n":1}"#);
/// # Ok::<(), orchestrix::Error>(())
/// ```
#[must_use]
pub fn dead_letter_for(
    consumer: &str,
    event: &RecordedEvent,
    error: &Error,
    attempts: u32,
) -> DeadLetter {
    DeadLetter {
        id: Uuid::now_v7(),
        consumer: consumer.to_owned(),
        event_id: Some(event.id()),
        event_type: Some(event.record.event_type.clone()),
        stream_id: Some(event.stream_id.to_string()),
        position: Some(event.position),
        payload: event.record.data.clone(),
        headers: headers_of(event),
        reason: error.to_string(),
        error_kind: error.kind().to_owned(),
        attempts,
        failed_at: Utc::now(),
    }
}

/// The CloudEvents attributes of a stored event as strings.
fn headers_of(event: &RecordedEvent) -> BTreeMap<String, String> {
    let r = &event.record;
    match CloudEvent::from_recorded(event) {
        Ok(ce) => {
            let serde_json::Value::Object(attributes) = ce.to_json() else {
                return BTreeMap::new();
            };
            attributes
                .into_iter()
                .filter(|(k, _)| k != "data" && k != "data_base64")
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect()
        }
        // Stored metadata that is not a valid CloudEvent (say, an empty
        // source): keep what there is, as is.
        Err(_) => {
            let mut h = BTreeMap::from([
                (
                    "specversion".to_owned(),
                    cloudevent::SPEC_VERSION.to_owned(),
                ),
                ("id".to_owned(), r.id.to_string()),
                ("source".to_owned(), r.source.clone()),
                ("type".to_owned(), r.event_type.clone()),
                ("subject".to_owned(), event.stream_id.to_string()),
                (
                    "time".to_owned(),
                    r.time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
                ),
                ("datacontenttype".to_owned(), r.content_type.clone()),
                (
                    cloudevent::EXT_STREAM_REVISION.to_owned(),
                    event.revision.to_string(),
                ),
                (
                    cloudevent::EXT_GLOBAL_POSITION.to_owned(),
                    event.position.to_string(),
                ),
                (
                    cloudevent::EXT_SCHEMA_VERSION.to_owned(),
                    r.schema_version.to_string(),
                ),
            ]);
            let md = &r.metadata;
            for (name, value) in [
                (cloudevent::EXT_CORRELATION_ID, &md.correlation_id),
                (cloudevent::EXT_CAUSATION_ID, &md.causation_id),
                (cloudevent::EXT_TRACEPARENT, &md.traceparent),
                (cloudevent::EXT_TRACESTATE, &md.tracestate),
            ] {
                if let Some(v) = value {
                    h.insert(name.to_owned(), v.clone());
                }
            }
            h.extend(md.extensions.iter().map(|(k, v)| (k.clone(), v.clone())));
            h
        }
    }
}

/// What [`DeadLetters::replay_all`] did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Letters replayed successfully (and deleted).
    pub replayed: Vec<Uuid>,
    /// Letters whose replay failed again (kept), with the error.
    pub failed: Vec<(Uuid, Error)>,
}

/// Lists, inspects and replays dead letters.
///
/// A replay runs the handler once on the event, outside of its stream's order
/// (later events of the stream were handled already), in an `orchestrix.handle`
/// span with `attempt` = the letter's attempts + 1. It succeeds and deletes the
/// letter, or fails and keeps it.
///
/// ```
/// use std::sync::Arc;
/// use orchestrix::runtime::{Delivery, DeadLetters, EventHandler, dead_letter_for};
/// use orchestrix::store::ExpectedRevision;
/// use orchestrix::{Error, EventRecord, RecordedEvent, Result, Store, StreamId};
///
/// #[derive(Debug)]
/// struct Fixed;
/// #[async_trait::async_trait]
/// impl EventHandler for Fixed {
///     fn name(&self) -> &str { "orders-view" }
///     async fn handle(&self, _: &RecordedEvent, _: &Delivery) -> Result<()> { Ok(()) }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = Store::memory();
/// let stream = StreamId::parse("order-1")?;
/// let record = EventRecord::json("com.acme.Placed", 1, &serde_json::json!({}));
/// store.append(&stream, ExpectedRevision::NoStream, vec![record]).await?;
/// let event = store.read_stream_forward(&stream, 0, 1).await?.remove(0);
/// let letter = dead_letter_for("orders-view", &event, &Error::invalid("order", "bad"), 1);
/// store.backend().dead_letters.put_dead_letter(letter.clone()).await?;
///
/// let dead_letters = DeadLetters::new(store);
/// assert_eq!(dead_letters.list("orders-view").await?.len(), 1);
/// dead_letters.replay(letter.id, &Fixed).await?;
/// assert!(dead_letters.list("orders-view").await?.is_empty());
/// # Ok::<(), orchestrix::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct DeadLetters {
    store: Store,
}

impl DeadLetters {
    /// Dead letters of this store.
    #[must_use]
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// The letters of one consumer, oldest first.
    ///
    /// # Errors
    /// A dead-letter store error.
    pub async fn list(&self, consumer: &str) -> Result<Vec<DeadLetter>> {
        self.store
            .backend()
            .dead_letters
            .list_dead_letters(Some(consumer), LIST_LIMIT)
            .await
    }

    /// Every letter, oldest first.
    ///
    /// # Errors
    /// A dead-letter store error.
    pub async fn list_all(&self) -> Result<Vec<DeadLetter>> {
        self.store
            .backend()
            .dead_letters
            .list_dead_letters(None, LIST_LIMIT)
            .await
    }

    /// One letter.
    ///
    /// # Errors
    /// A dead-letter store error.
    pub async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>> {
        self.store.backend().dead_letters.get_dead_letter(id).await
    }

    /// Deletes a letter without replaying it; `false` if it was absent.
    ///
    /// # Errors
    /// A dead-letter store error.
    pub async fn delete(&self, id: Uuid) -> Result<bool> {
        self.store
            .backend()
            .dead_letters
            .delete_dead_letter(id)
            .await
    }

    /// The event a letter stands for: read again from the store when it is
    /// still there (so it is upcast by today's upcasters), otherwise rebuilt
    /// from the letter's payload and headers.
    ///
    /// # Errors
    /// A store or upcasting error, or [`Error::InvalidInput`] when the letter
    /// does not describe an event.
    pub async fn event(&self, letter: &DeadLetter) -> Result<RecordedEvent> {
        if let (Some(position), Some(id)) = (letter.position, letter.event_id)
            && position > 0
        {
            let found = self.store.read_all(position - 1, 1, &Filter::all()).await?;
            if let Some(event) = found
                .into_iter()
                .next()
                .filter(|e| e.position == position && e.id() == id)
            {
                return Ok(event);
            }
        }
        event_from_letter(letter)
    }

    /// Replays one letter through `handler` (usually the fixed handler of the
    /// consumer that gave up), deleting it on success.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id; the handler's error (the letter
    /// is kept); a store error.
    pub async fn replay(&self, id: Uuid, handler: &dyn EventHandler) -> Result<()> {
        let letter = self.get(id).await?.ok_or_else(|| Error::NotFound {
            what: format!("dead letter {id}"),
        })?;
        self.replay_letter(&letter, handler).await
    }

    async fn replay_letter(&self, letter: &DeadLetter, handler: &dyn EventHandler) -> Result<()> {
        let event = self.event(letter).await?;
        let partition = partition_for(event.stream_id.as_str(), 1);
        invoke(
            handler,
            &event,
            partition,
            letter.attempts.saturating_add(1),
        )
        .await?;
        self.delete(letter.id).await?;
        tracing::info!(consumer = %letter.consumer, letter = %letter.id, event_id = %event.id(), "dead letter replayed");
        Ok(())
    }

    /// Replays every letter of `consumer`, oldest first, through `handler`.
    /// A failing letter is kept and reported; the others still run.
    ///
    /// # Errors
    /// Only when the letters cannot be listed.
    pub async fn replay_all(
        &self,
        consumer: &str,
        handler: &dyn EventHandler,
    ) -> Result<ReplayReport> {
        let mut report = ReplayReport::default();
        for letter in self.list(consumer).await? {
            match self.replay_letter(&letter, handler).await {
                Ok(()) => report.replayed.push(letter.id),
                Err(e) => report.failed.push((letter.id, e)),
            }
        }
        Ok(report)
    }
}

/// Rebuilds an event from a letter's CloudEvents headers and payload.
fn event_from_letter(letter: &DeadLetter) -> Result<RecordedEvent> {
    let mut attributes: serde_json::Map<String, serde_json::Value> = letter
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    attributes.insert(
        "data_base64".into(),
        cloudevent::base64_encode(&letter.payload).into(),
    );
    let ce = CloudEvent::from_json(&serde_json::Value::Object(attributes))?;
    let (stream_id, record) = ce.to_record()?;
    let number = |name: &str| ce.extension(name).and_then(|v| v.parse::<u64>().ok());
    let position = letter
        .position
        .or_else(|| number(cloudevent::EXT_GLOBAL_POSITION))
        .ok_or_else(|| Error::invalid(format!("dead letter {}", letter.id), "no position"))?;
    let revision = number(cloudevent::EXT_STREAM_REVISION).unwrap_or_default();
    Ok(RecordedEvent {
        stream_id,
        revision,
        position,
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventRecord;
    use crate::id::StreamId;

    #[test]
    fn a_letter_rebuilds_its_event() {
        let mut record = EventRecord::json("com.acme.Placed", 2, &serde_json::json!({"n": 1}));
        record.metadata.correlation_id = Some("c-1".into());
        let event = RecordedEvent {
            stream_id: StreamId::parse("order-1").unwrap(),
            revision: 3,
            position: 9,
            record,
        };
        let letter = dead_letter_for("view", &event, &Error::invalid("x", "y"), 2);
        let back = event_from_letter(&letter).unwrap();
        assert_eq!(back.stream_id, event.stream_id);
        assert_eq!((back.revision, back.position), (3, 9));
        assert_eq!(back.record.id, event.record.id);
        assert_eq!(back.record.schema_version, 2);
        assert_eq!(back.record.metadata, event.record.metadata);
        assert_eq!(back.record.data, event.record.data);
    }
}
