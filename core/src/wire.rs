//! How event payloads travel on a bus: the value format.
//!
//! The store keeps each payload as its codec wrote it (JSON by default, Avro
//! with `orchestrix-avro`'s codec). A bus may want another form: the
//! Confluent wire format (magic byte 0, 4-byte schema id, Avro binary) so
//! that Kafka Connect, ksqlDB, Flink and Spark read the topic with stock
//! deserializers. A [`ValueFormat`] rewrites a stored event's payload on the
//! way out ([`outbound`](ValueFormat::outbound), used by publishers) and back
//! on the way in ([`inbound`](ValueFormat::inbound), used by consumers
//! before a handler decodes), so handlers and read models never see the
//! difference.
//!
//! [`Passthrough`] (the default) publishes the store's bytes unchanged. The
//! Avro implementation lives in `orchestrix-schema-registry`, next to the
//! registry it needs for schema ids.
//!
//! ```
//! use orchestrix::wire::{Passthrough, ValueFormat};
//! use orchestrix::{EventRecord, RecordedEvent, StreamId};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let event = RecordedEvent {
//!     stream_id: StreamId::parse("account-1")?,
//!     revision: 0,
//!     position: 1,
//!     record: EventRecord::json("com.acme.Opened", 1, &serde_json::json!({"owner": "Ann"})),
//! };
//! let out = Passthrough.outbound("bank.account", &event).await?;
//! assert_eq!(out, event);
//! assert_eq!(Passthrough.inbound("bank.account", out).await?, event);
//! # Ok::<(), orchestrix::Error>(())
//! # }).unwrap();
//! ```

use std::fmt;

use async_trait::async_trait;

use crate::error::Result;
use crate::event::RecordedEvent;

/// Rewrites payloads between the store's form and the bus's form.
///
/// Only `record.data`, `record.content_type` and `record.schema_version`
/// may change; the id, stream, revision, position, type and metadata travel
/// as they are (they are CloudEvents attributes, not payload).
#[async_trait]
pub trait ValueFormat: Send + Sync + fmt::Debug + 'static {
    /// A short name: `json`, `avro`.
    fn name(&self) -> &str;

    /// The event as it is published on `topic` (a Kafka topic or NATS
    /// subject prefix; subject naming strategies may use it).
    ///
    /// # Errors
    /// A permanent error when the payload cannot be written in this format
    /// (it does not fit its schema, no schema is known); a transient one
    /// when a dependency (a schema registry) cannot be reached: the relay
    /// retries and never skips.
    async fn outbound(&self, topic: &str, event: &RecordedEvent) -> Result<RecordedEvent>;

    /// The event read from `topic`, back in the form the consumer's handlers
    /// decode.
    ///
    /// # Errors
    /// A permanent error for a payload that cannot be read (corrupt frame,
    /// unknown schema id, a writer schema the reader cannot resolve): the
    /// consumer dead-letters it with the reason and moves on. A transient one
    /// when the registry cannot be reached: the consumer retries.
    async fn inbound(&self, topic: &str, event: RecordedEvent) -> Result<RecordedEvent>;
}

/// The store's bytes, unchanged, both ways.
#[derive(Debug, Clone, Copy, Default)]
pub struct Passthrough;

#[async_trait]
impl ValueFormat for Passthrough {
    fn name(&self) -> &str {
        "json"
    }

    async fn outbound(&self, _topic: &str, event: &RecordedEvent) -> Result<RecordedEvent> {
        Ok(event.clone())
    }

    async fn inbound(&self, _topic: &str, event: RecordedEvent) -> Result<RecordedEvent> {
        Ok(event)
    }
}

/// A handler that reads events back from the bus's value format before the
/// inner handler sees them: what a bus consumer runs when its bus carries
/// another format than the store's.
///
/// A payload the format cannot read (a corrupt frame, an unknown schema id)
/// fails the delivery with the format's permanent error, so the consumer
/// dead-letters it with that reason and goes on; a transient one (registry
/// unreachable) is retried under the consumer's policy.
///
/// ```
/// use std::sync::Arc;
/// use orchestrix::runtime::{Delivery, EventHandler};
/// use orchestrix::wire::{Passthrough, WireDecoding};
/// # #[derive(Debug)] struct Count;
/// # #[async_trait::async_trait] impl EventHandler for Count {
/// #     fn name(&self) -> &str { "count" }
/// #     async fn handle(&self, _: &orchestrix::RecordedEvent, _: &Delivery) -> orchestrix::Result<()> { Ok(()) }
/// # }
/// let handler = WireDecoding::new(Arc::new(Passthrough), Arc::new(Count));
/// assert_eq!(handler.name(), "count");
/// ```
#[derive(Debug)]
pub struct WireDecoding {
    format: std::sync::Arc<dyn ValueFormat>,
    inner: std::sync::Arc<dyn crate::runtime::EventHandler>,
}

impl WireDecoding {
    /// Decodes with `format`, then hands the event to `inner`.
    #[must_use]
    pub fn new(
        format: std::sync::Arc<dyn ValueFormat>,
        inner: std::sync::Arc<dyn crate::runtime::EventHandler>,
    ) -> Self {
        Self { format, inner }
    }
}

#[async_trait]
impl crate::runtime::EventHandler for WireDecoding {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn filter(&self) -> crate::store::Filter {
        self.inner.filter()
    }

    async fn handle(
        &self,
        event: &RecordedEvent,
        delivery: &crate::runtime::Delivery,
    ) -> Result<()> {
        let decoded = self.format.inbound("", event.clone()).await?;
        self.inner.handle(&decoded, delivery).await
    }
}
