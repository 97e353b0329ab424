//! The handler port of the NATS consumer: [`NatsHandler`], which sees the
//! JetStream stream sequence of every delivery, and [`CoreHandler`], which
//! runs any core [`EventHandler`] on NATS.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use orchestrix::runtime::{Delivery, EventHandler};
use orchestrix::store::Filter;
use orchestrix::{RecordedEvent, Result};

/// Where a JetStream delivery comes from.
///
/// `stream_sequence` strictly increases within a partition (one subject of
/// one stream), so a read model that stores it per partition in the same
/// transaction as its effects, and skips a delivery whose sequence is not
/// above the stored one, applies every event exactly once even though
/// JetStream delivers at least once.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NatsDelivery {
    /// The partition (subject `{prefix}.{partition}`).
    pub partition: u32,
    /// Which delivery of this message this is (1 = first).
    pub attempt: u32,
    /// The message's sequence in the JetStream stream.
    pub stream_sequence: u64,
    /// The message's sequence in the partition's consumer.
    pub consumer_sequence: u64,
    /// The consumer group (the handler's name unless set).
    pub group: Arc<str>,
    /// The worker handling it.
    pub worker: Arc<str>,
}

impl NatsDelivery {
    /// The transport-neutral part, for a core [`EventHandler`].
    #[must_use]
    pub fn to_delivery(&self) -> Delivery {
        Delivery {
            partition: self.partition,
            attempt: self.attempt,
        }
    }
}

/// Handles events delivered by the NATS consumer, one at a time per
/// partition, in per-stream order.
///
/// Delivery is at-least-once. Return a transient error
/// ([`orchestrix::Error::is_transient`]) to have the message redelivered
/// after a backoff, a permanent one to dead-letter it.
#[async_trait]
pub trait NatsHandler: Send + Sync + fmt::Debug + 'static {
    /// A stable name: the default consumer group and dead-letter key.
    fn name(&self) -> &str;

    /// The events this handler wants (all by default); others are
    /// acknowledged without a call.
    fn filter(&self) -> Filter {
        Filter::all()
    }

    /// Handles one event.
    async fn handle(&self, event: &RecordedEvent, delivery: &NatsDelivery) -> Result<()>;
}

/// Runs a core [`EventHandler`] (a projection, a saga, a connector) on the
/// NATS consumer; it sees the partition and attempt of each delivery.
#[derive(Debug, Clone)]
pub struct CoreHandler(pub Arc<dyn EventHandler>);

#[async_trait]
impl NatsHandler for CoreHandler {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn filter(&self) -> Filter {
        self.0.filter()
    }

    async fn handle(&self, event: &RecordedEvent, delivery: &NatsDelivery) -> Result<()> {
        self.0.handle(event, &delivery.to_delivery()).await
    }
}
