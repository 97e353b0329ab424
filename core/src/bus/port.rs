//! The consumer port: [`Bus`] and [`Subscription`].

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use super::driver::DriverStats;
use crate::dead_letter::DeadLetterQueue;
use crate::error::Result;
use crate::relay::Publisher;
use crate::runtime::StartFrom;
use crate::runtime::handler::EventHandler;
use crate::runtime::retry::RetryPolicy;

/// One member of a consumer group: what [`Bus::subscribe`] starts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Subscribe {
    /// The consumer group. Members of one group share the partitions; every
    /// group sees every event.
    pub group: String,
    /// The handler every message goes to (through the
    /// [`HandlerDriver`](super::HandlerDriver)).
    pub handler: Arc<dyn EventHandler>,
    /// Retries before a message is dead-lettered.
    pub retry: RetryPolicy,
    /// Where partitions start; [`StartFrom`] means what it means on the
    /// embedded runtime, with the group's committed position as the
    /// checkpoint.
    pub start_from: StartFrom,
}

impl Subscribe {
    /// A member of `group` running `handler`, from the group's committed
    /// position, with the default retry policy.
    #[must_use]
    pub fn new(group: impl Into<String>, handler: Arc<dyn EventHandler>) -> Self {
        Self {
            group: group.into(),
            handler,
            retry: RetryPolicy::default(),
            start_from: StartFrom::Checkpoint,
        }
    }

    /// Sets the retry policy.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets where partitions start.
    #[must_use]
    pub fn with_start_from(mut self, start_from: StartFrom) -> Self {
        self.start_from = start_from;
        self
    }
}

/// Where a group stands on one partition, as the broker tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionLag {
    /// The partition.
    pub partition: u32,
    /// Messages on the partition the group has not finished.
    pub events: u64,
    /// When the oldest of them was stored, if known.
    pub oldest: Option<SystemTime>,
}

impl PartitionLag {
    /// A partition's lag.
    #[must_use]
    pub fn new(partition: u32, events: u64, oldest: Option<SystemTime>) -> Self {
        Self {
            partition,
            events,
            oldest,
        }
    }
}

/// A message bus, as consumers see it: a publish side (the relay's
/// [`Publisher`]), partitioned consumer groups, and dead letters.
///
/// Contract (checked by `orchestrix_testkit::bus_conformance!`):
///
/// - events are partitioned by stream id: one stream's events reach one
///   member at a time, in order; partitions run in parallel;
/// - delivery is at-least-once: a message is acknowledged (committed) only
///   after it was handled or dead-lettered, so a member that crashes has its
///   unfinished messages delivered again to whoever takes its partitions;
/// - partitions are spread over the group's live members (by the broker or
///   by leases) and handed over when members join and leave, the old owner
///   finishing its in-flight message before the new one starts;
/// - a message that fails permanently is dead-lettered (one layout,
///   [`crate::dead_letter::header`]) and the partition moves on; dead letters
///   can be listed, replayed and resolved through [`Bus::dead_letters`];
/// - publishing an event again (same id) does not deliver it twice;
/// - buses of different applications (names) on one broker never see each
///   other's events.
#[async_trait]
pub trait Bus: Send + Sync + fmt::Debug + 'static {
    /// The kind of bus (`kafka`, `nats`, `memory`).
    fn kind(&self) -> &'static str;

    /// How many partitions the application's events are spread over.
    fn partitions(&self) -> u32;

    /// The publish side, for a [`Relay`](crate::relay::Relay).
    fn publisher(&self) -> Arc<dyn Publisher>;

    /// Joins a consumer group and starts consuming.
    ///
    /// # Errors
    /// A setup or connect failure, or invalid options.
    async fn subscribe(&self, options: Subscribe) -> Result<Box<dyn Subscription>>;

    /// The dead letters of `group`.
    fn dead_letters(&self, group: &str) -> Arc<dyn DeadLetterQueue>;
}

/// A running member of a consumer group ([`Bus::subscribe`]).
///
/// Dropping it stops it abruptly, like [`abort`](Self::abort).
#[async_trait]
pub trait Subscription: Send + Sync + fmt::Debug {
    /// The consumer group.
    fn group(&self) -> &str;

    /// The partitions this member owns now, ascending.
    fn partitions(&self) -> Vec<u32>;

    /// The handler driver's counters.
    fn stats(&self) -> DriverStats;

    /// Where the group stands on every partition, from the broker.
    ///
    /// # Errors
    /// A broker request that failed.
    async fn lag(&self) -> Result<Vec<PartitionLag>>;

    /// Stops fetching after the messages being handled now; lag grows.
    fn pause(&self);

    /// Undoes [`pause`](Self::pause).
    fn resume(&self);

    /// Leaves cleanly: stops fetching, lets in-flight handlers finish,
    /// acknowledges / commits, and leaves the group so others take over.
    ///
    /// # Errors
    /// The error that stopped the member earlier, if any.
    async fn shutdown(self: Box<Self>) -> Result<()>;

    /// Stops at once, as a crash would: nothing in flight is acknowledged,
    /// so it is delivered again.
    fn abort(self: Box<Self>);
}
