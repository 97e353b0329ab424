//! The bus as a core port, beside the publish port
//! ([`relay::Publisher`](crate::relay::Publisher)).
//!
//! - [`Bus`] and [`Subscription`]: the consumer port. A bus adapter
//!   (`orchestrix-kafka`, `orchestrix-nats`, [`MemoryBus`]) implements it
//!   with its transport only: fetch, acknowledge / commit, rebalance (the
//!   broker's consumer groups, or leases), dead-letter publish.
//! - [`HandlerDriver`]: the one consumer pipeline every bus runs its
//!   messages through (decode result, filter, duplicate check, tracing span,
//!   panic capture, retry decision, dead-lettering, stats and metrics with
//!   the embedded runtime's names).
//! - [`MemoryBus`]: the in-process reference implementation, with the same
//!   partition and group model.
//!
//! Every bus passes `orchestrix_testkit::bus_conformance!`.

pub mod driver;
pub mod memory;
pub mod port;

pub use driver::{DriverStats, HandlerDriver, Settled, Step, Verdict};
pub use memory::MemoryBus;
pub use port::{Bus, PartitionLag, Subscribe, Subscription};
