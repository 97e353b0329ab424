//! The handler port shared by projections, sagas and connectors.

use std::fmt;

use async_trait::async_trait;

use crate::error::Result;
use crate::event::RecordedEvent;
use crate::store::Filter;

/// Where a delivery comes from, for handlers that dedupe or report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The partition the event was routed to (0 when unpartitioned).
    pub partition: u32,
    /// Which attempt this is (1 = first).
    pub attempt: u32,
}

/// Handles recorded events, one at a time, in per-stream order.
///
/// Delivery is at-least-once: a handler may see an event again after a crash
/// or a retry, so it must be idempotent (dedupe on [`RecordedEvent::id`] or on
/// the position), unless it commits its effects together with its checkpoint.
/// Return a transient error ([`crate::Error::is_transient`]) to be retried under
/// the consumer's retry policy, a permanent one to dead-letter the event.
#[async_trait]
pub trait EventHandler: Send + Sync + fmt::Debug + 'static {
    /// A stable name: the checkpoint and dead-letter key.
    fn name(&self) -> &str;

    /// The events this handler wants (all by default).
    fn filter(&self) -> Filter {
        Filter::all()
    }

    /// Handles one event.
    async fn handle(&self, event: &RecordedEvent, delivery: &Delivery) -> Result<()>;
}
