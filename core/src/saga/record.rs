//! The engine's own events in a saga stream (`orchestrix.saga.*`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ENGINE_EVENT_PREFIX, Saga, SagaCommand};
use crate::error::{Error, Result};
use crate::event::{Event, EventRecord, Metadata, RecordedEvent};
use crate::store::Store;

/// Bookkeeping the engine records next to the saga's own events.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "C: SagaCommand")]
pub(crate) enum EngineRecord<C> {
    /// The instance was created.
    Started { saga: String, correlation: String },
    /// A trigger (event id or timer id) was handled; it is skipped from now on.
    TriggerHandled {
        trigger: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event_type: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        position: Option<u64>,
    },
    /// A command is about to be sent (recorded before it runs, so that a
    /// crash before its outcome is recorded leaves it in doubt rather than
    /// unknown: compensation first settles it by its deterministic id).
    CommandPlanned {
        command_id: String,
        command: C,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        compensation: Option<C>,
    },
    /// A planned command was not sent: an earlier step of its trigger
    /// failed or finished the saga.
    CommandSkipped { command_id: String },
    /// A command was executed (or recognised as a duplicate by its aggregate).
    CommandSent {
        command_id: String,
        command: C,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        compensation: Option<C>,
        stream_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        revision: Option<u64>,
        duplicate: bool,
    },
    /// A command was rejected by its aggregate: the saga fails.
    CommandRejected {
        command_id: String,
        command: C,
        reason: String,
    },
    /// A compensation was pushed without a command.
    CompensationRegistered { compensation: C },
    /// A durable timeout was scheduled.
    TimeoutScheduled {
        name: String,
        timer_id: String,
        due_at: DateTime<Utc>,
    },
    /// A pending timeout was cancelled.
    TimeoutCancelled { name: String, timer_id: String },
    /// A timeout fired.
    TimeoutFired { name: String, timer_id: String },
    /// The saga finished successfully.
    Completed,
    /// The saga failed; compensation begins.
    CompensationStarted { reason: String },
    /// One compensation was executed.
    CompensationSent {
        index: usize,
        command_id: String,
        stream_id: String,
        duplicate: bool,
    },
    /// A compensation was rejected; the saga is left failed.
    CompensationRejected {
        index: usize,
        command_id: String,
        reason: String,
    },
    /// Every compensation was executed.
    Compensated,
    /// The saga could not be compensated.
    Failed { reason: String },
}

impl<C: SagaCommand> EngineRecord<C> {
    pub(crate) fn variant(&self) -> &'static str {
        match self {
            Self::Started { .. } => "Started",
            Self::TriggerHandled { .. } => "TriggerHandled",
            Self::CommandPlanned { .. } => "CommandPlanned",
            Self::CommandSkipped { .. } => "CommandSkipped",
            Self::CommandSent { .. } => "CommandSent",
            Self::CommandRejected { .. } => "CommandRejected",
            Self::CompensationRegistered { .. } => "CompensationRegistered",
            Self::TimeoutScheduled { .. } => "TimeoutScheduled",
            Self::TimeoutCancelled { .. } => "TimeoutCancelled",
            Self::TimeoutFired { .. } => "TimeoutFired",
            Self::Completed => "Completed",
            Self::CompensationStarted { .. } => "CompensationStarted",
            Self::CompensationSent { .. } => "CompensationSent",
            Self::CompensationRejected { .. } => "CompensationRejected",
            Self::Compensated => "Compensated",
            Self::Failed { .. } => "Failed",
        }
    }
}

/// The engine event types that change an instance's status, for listing.
pub(crate) const STATUS_TYPES: [&str; 5] = [
    "orchestrix.saga.Started",
    "orchestrix.saga.Completed",
    "orchestrix.saga.CompensationStarted",
    "orchestrix.saga.Compensated",
    "orchestrix.saga.Failed",
];

/// One entry of a saga stream.
pub(crate) enum Entry<S: Saga> {
    Engine(EngineRecord<S::Command>),
    Saga(S::Event),
}

/// Encodes entries as event records for the saga stream.
pub(crate) fn encode<S: Saga>(
    store: &Store,
    metadata: &Metadata,
    entries: &[Entry<S>],
) -> Result<Vec<EventRecord>> {
    let codec = store.codec();
    let source = format!("/saga/{}", S::NAME);
    entries
        .iter()
        .map(|entry| {
            let (event_type, version, payload) = match entry {
                Entry::Engine(r) => {
                    let event_type = format!("{ENGINE_EVENT_PREFIX}{}", r.variant());
                    let value = serde_json::to_value(r)
                        .map_err(|e| Error::encode(format!("event `{event_type}`"), e))?;
                    let payload = crate::event::__untag(&event_type, value)?;
                    (event_type, 1, payload)
                }
                Entry::Saga(e) => (
                    e.event_type().to_owned(),
                    e.schema_version(),
                    e.to_payload()?,
                ),
            };
            Ok(EventRecord {
                id: Uuid::now_v7(),
                data: codec.encode(&event_type, version, &payload)?,
                event_type,
                schema_version: version,
                source: source.clone(),
                time: Utc::now(),
                content_type: codec.content_type().to_owned(),
                metadata: metadata.clone(),
            })
        })
        .collect()
}

/// Decodes one stored entry of a saga stream.
pub(crate) fn decode<S: Saga>(store: &Store, recorded: &RecordedEvent) -> Result<Entry<S>> {
    let record = &recorded.record;
    let payload = if record.content_type == store.codec().content_type() {
        store
            .codec()
            .decode(&record.event_type, record.schema_version, &record.data)?
    } else {
        crate::codec::decode_json(record)?
    };
    match record.event_type.strip_prefix(ENGINE_EVENT_PREFIX) {
        Some(variant) => Ok(Entry::Engine(crate::event::__retag(
            &record.event_type,
            variant,
            payload,
        )?)),
        None => Ok(Entry::Saga(S::Event::from_payload(
            &record.event_type,
            payload,
        )?)),
    }
}
