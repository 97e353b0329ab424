//! Domain events, commands, and the records that stores keep.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::id::StreamId;

/// One event type that a Rust event type can produce and decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventTypeInfo {
    /// The CloudEvents `type`, stable across schema versions, reverse-DNS style,
    /// e.g. `com.acme.bank.MoneyDeposited`.
    pub event_type: &'static str,
    /// The current schema version of that type.
    pub version: u32,
}

/// A domain event: a fact that happened.
///
/// Usually derived: `#[derive(Event)]` on an enum gives each variant the type
/// `{prefix}.{Variant}` (or `#[event(name = "...")]`) and a schema version
/// (`#[event(version = 2)]`, default 1). The payload of a variant is its fields,
/// serialized with serde; keep serde's default (externally tagged) enum
/// representation and do not rename variants with serde.
///
/// ```
/// use orchestrix::Event;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
/// #[event(prefix = "com.acme.bank")]
/// enum AccountEvent {
///     Opened { owner: String },
///     #[event(name = "MoneyDeposited", version = 2)]
///     Deposited { amount: u64 },
///     Closed,
/// }
///
/// let e = AccountEvent::Deposited { amount: 5 };
/// assert_eq!(e.event_type(), "com.acme.bank.MoneyDeposited");
/// assert_eq!(e.schema_version(), 2);
/// let payload = e.to_payload()?;
/// assert_eq!(payload, serde_json::json!({ "amount": 5 }));
/// let back = AccountEvent::from_payload("com.acme.bank.MoneyDeposited", payload)?;
/// assert_eq!(back, e);
/// assert!(AccountEvent::from_payload("com.acme.bank.Unknown", serde_json::Value::Null).is_err());
/// # Ok::<(), orchestrix::Error>(())
/// ```
pub trait Event: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The CloudEvents `type` of this value.
    fn event_type(&self) -> &'static str;

    /// The schema version this code writes for this value's type.
    fn schema_version(&self) -> u32;

    /// Every event type this Rust type produces, with its current version.
    fn event_types() -> &'static [EventTypeInfo];

    /// The payload as a JSON value (the codec turns it into bytes).
    ///
    /// # Errors
    /// [`Error::Serialization`] when serde fails.
    fn to_payload(&self) -> Result<serde_json::Value>;

    /// Rebuilds the value from its type and (already upcast) payload.
    ///
    /// # Errors
    /// [`Error::UnknownEventType`] for a type this Rust type does not produce,
    /// [`Error::Serialization`] when the payload does not fit.
    fn from_payload(event_type: &str, payload: serde_json::Value) -> Result<Self>;
}

/// Support for the `Event` derive: strips serde's external enum tag.
#[doc(hidden)]
pub fn __untag(event_type: &str, value: serde_json::Value) -> Result<serde_json::Value> {
    match value {
        serde_json::Value::Object(map) if map.len() == 1 => {
            Ok(map.into_iter().next().map(|(_, v)| v).unwrap_or_default())
        }
        serde_json::Value::String(_) => Ok(serde_json::Value::Null),
        other => Err(Error::encode(
            format!("event `{event_type}`"),
            format!("expected serde's externally tagged enum representation, got {other}"),
        )),
    }
}

/// Support for the `Event` derive: puts serde's external enum tag back.
#[doc(hidden)]
pub fn __retag<E: DeserializeOwned>(
    event_type: &str,
    variant: &str,
    payload: serde_json::Value,
) -> Result<E> {
    let tagged = match payload {
        serde_json::Value::Null => {
            // A unit variant serializes as its name; a newtype variant holding
            // something that serializes as `null` (an `Option::None`) needs the map.
            if let Ok(e) = serde_json::from_value(serde_json::Value::String(variant.to_owned())) {
                return Ok(e);
            }
            let mut map = serde_json::Map::with_capacity(1);
            map.insert(variant.to_owned(), serde_json::Value::Null);
            serde_json::Value::Object(map)
        }
        // A unit variant read from a format without a unit type (an Avro
        // record with no fields decodes to `{}`).
        serde_json::Value::Object(map) if map.is_empty() => {
            if let Ok(e) = serde_json::from_value(serde_json::Value::String(variant.to_owned())) {
                return Ok(e);
            }
            let mut tagged = serde_json::Map::with_capacity(1);
            tagged.insert(variant.to_owned(), serde_json::Value::Object(map));
            serde_json::Value::Object(tagged)
        }
        other => {
            let mut map = serde_json::Map::with_capacity(1);
            map.insert(variant.to_owned(), other);
            serde_json::Value::Object(map)
        }
    };
    serde_json::from_value(tagged).map_err(|e| Error::decode(format!("event `{event_type}`"), e))
}

/// A command: an intention to change one aggregate.
///
/// Usually derived: `#[derive(Command)]` takes the aggregate id from the field
/// named by `#[command(id = field)]` and names each command after its
/// variant, so that logs, metrics and errors say `Pay`, not `OrderCommand`:
///
/// ```
/// use orchestrix::Command;
///
/// #[derive(Command)]
/// #[command(id = order)]
/// enum OrderCommand {
///     Place { order: String, total: u64 },
///     Pay { order: String },
///     #[command(id = ticket)]
///     Escalate { ticket: String, order: String },
/// }
///
/// let pay = OrderCommand::Pay { order: "o-1".into() };
/// assert_eq!(pay.aggregate_id(), "o-1");
/// assert_eq!(pay.command_type(), "Pay");
/// let escalate = OrderCommand::Escalate { ticket: "t-9".into(), order: "o-1".into() };
/// assert_eq!(escalate.aggregate_id(), "t-9");
/// assert_eq!(OrderCommand::command_types(), ["Place", "Pay", "Escalate"]);
/// ```
///
/// By hand:
///
/// ```
/// use orchestrix::Command;
/// struct Deposit { account: String, amount: u64 }
/// impl Command for Deposit {
///     fn aggregate_id(&self) -> String { self.account.clone() }
/// }
/// assert_eq!(Deposit { account: "7".into(), amount: 1 }.aggregate_id(), "7");
/// ```
pub trait Command: Send + Sync + 'static {
    /// The id of the aggregate instance this command is for (the part of the
    /// stream id after the category).
    fn aggregate_id(&self) -> String;

    /// A name for logs, spans, metrics and errors; the Rust type name by
    /// default, the variant's name when derived.
    fn command_type(&self) -> &'static str {
        let full = std::any::type_name::<Self>();
        full.rsplit("::").next().unwrap_or(full)
    }

    /// Every name [`command_type`](Self::command_type) can return, in
    /// declaration order: the variants' names when derived, the Rust type
    /// name by default. The [event catalog](crate::catalog) lists them.
    fn command_types() -> Vec<&'static str>
    where
        Self: Sized,
    {
        let full = std::any::type_name::<Self>();
        vec![full.rsplit("::").next().unwrap_or(full)]
    }
}

/// CloudEvents extensions and causal metadata carried by every stored event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Id shared by every message of one business transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Id of the message (command or event) that caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<String>,
    /// W3C `traceparent` of the span that produced the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// W3C `tracestate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// Further CloudEvents extension attributes (names validated like
    /// CloudEvents extension names: lowercase ASCII letters and digits).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, String>,
}

/// An event about to be appended: everything but its place in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// Unique event id (UUIDv7 by default); the dedupe key everywhere downstream.
    pub id: Uuid,
    /// CloudEvents `type`.
    pub event_type: String,
    /// Schema version of `data`.
    pub schema_version: u32,
    /// CloudEvents `source`: URI-reference of the producing service or module.
    pub source: String,
    /// When the event happened.
    pub time: DateTime<Utc>,
    /// Media type of `data`, e.g. `application/json`.
    pub content_type: String,
    /// The encoded payload.
    pub data: Bytes,
    /// Correlation, causation, trace context and other extensions.
    pub metadata: Metadata,
}

impl EventRecord {
    /// A record of a JSON payload with a fresh UUIDv7 id, the current time and
    /// source `/orchestrix`.
    ///
    /// ```
    /// let r = orchestrix::EventRecord::json("com.acme.Pinged", 1, &serde_json::json!({"n": 1}));
    /// assert_eq!(r.content_type, "application/json");
    /// assert_eq!(&r.data[..], br#"{"n":1}"#);
    /// ```
    #[must_use]
    pub fn json(
        event_type: impl Into<String>,
        schema_version: u32,
        payload: &serde_json::Value,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_type: event_type.into(),
            schema_version,
            source: "/orchestrix".to_owned(),
            time: Utc::now(),
            content_type: crate::codec::JSON_CONTENT_TYPE.to_owned(),
            data: Bytes::from(payload.to_string()),
            metadata: Metadata::default(),
        }
    }

    /// The same record with other metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The same record with another source.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }
}

/// An event as stored: the record plus its stream revision and global position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The stream it belongs to.
    pub stream_id: StreamId,
    /// Its revision within the stream, from 0.
    pub revision: u64,
    /// Its position in the all-stream, strictly increasing in commit order, from 1.
    pub position: u64,
    /// The event itself.
    pub record: EventRecord,
}

impl RecordedEvent {
    /// The event id.
    #[must_use]
    pub fn id(&self) -> Uuid {
        self.record.id
    }

    /// The CloudEvents type.
    #[must_use]
    pub fn event_type(&self) -> &str {
        &self.record.event_type
    }

    /// Decodes the payload into a domain event, using the JSON codec.
    ///
    /// Stores read through [`crate::Store`] have already upcast the payload to
    /// the current version, so this is a plain decode.
    ///
    /// # Errors
    /// [`Error::Serialization`] or [`Error::UnknownEventType`].
    pub fn decode<E: Event>(&self) -> Result<E> {
        let value = crate::codec::decode_json(&self.record)?;
        E::from_payload(&self.record.event_type, value).map_err(|e| match e {
            Error::UnknownEventType {
                event_type, target, ..
            } => Error::UnknownEventType {
                event_type,
                version: self.record.schema_version,
                target,
            },
            other => other,
        })
    }
}

/// Reports an unknown event type while decoding into `T`.
#[doc(hidden)]
#[must_use]
pub fn __unknown<T>(event_type: &str) -> Error {
    Error::UnknownEventType {
        event_type: event_type.to_owned(),
        version: 0,
        target: std::any::type_name::<T>(),
    }
}
