//! The embedded runtime: partitioned consumers, projections, retries and dead
//! letters, and their wiring into an [`Application`](crate::Application).
//!
//! - [`Consumer`]: reads the all-stream from a checkpoint (catch-up, then
//!   live), routes each event to partition `fnv1a(stream id) % N`, handles
//!   every partition in order on its own task, retries transient failures
//!   under a [`RetryPolicy`], dead-letters permanent ones and moves on, and
//!   commits a checkpoint that never passes an unfinished event.
//! - [`View`]: typed projections; the framework decodes, keys rows, skips
//!   redelivered events and resets, keeping rows in a [`ReadModelStore`].
//! - [`Projection`] and [`ProjectionRunner`]: read models on top of a
//!   consumer (at-least-once), or [`TransactionalProjection`] (exactly-once:
//!   batch and checkpoint in one transaction); rebuilds in place or into a new
//!   version.
//! - [`DeadLetters`]: list, inspect and replay what consumers gave up on.
//! - [`ApplicationBuilder`](crate::ApplicationBuilder)'s `projection`,
//!   `saga`, `handler` and `task`, and [`Runtime::start`]: the application
//!   registers, the runtime starts and stops them.
//!
//! # Delivery guarantees
//!
//! - One stream's events are handled in order, each after the previous one
//!   finished (or was dead-lettered); streams on different partitions run in
//!   parallel.
//! - The checkpoint is the low-watermark: the highest position P such that
//!   every event at or below P was handled or dead-lettered. Events above it
//!   may have been handled already (on a faster partition); after a crash they
//!   are delivered again. Delivery is therefore at-least-once: dedupe on
//!   [`RecordedEvent::id`](crate::RecordedEvent::id) (or on the stream revision
//!   or global position) in the handler, or use a [`TransactionalProjection`],
//!   whose effects and checkpoint commit together (exactly-once effects).
//! - A graceful [`ConsumerHandle::shutdown`] re-delivers nothing: it drains
//!   what the partitions hold and commits.
//! - A handler error that is transient ([`crate::Error::is_transient`]) is
//!   retried under the consumer's [`RetryPolicy`]; a permanent one (including
//!   a decode failure or a panic), or retries running out, puts the event in
//!   the dead letters (original payload, CloudEvents headers, reason, error
//!   kind, attempts) and the consumer moves on.
//!
//! Every handler call runs in an `orchestrix.handle` span (handler, event id
//! and type, stream, position, partition, attempt, error).

pub mod config;
pub mod consumer;
pub mod dead_letters;
pub mod handler;
pub(crate) mod invoke;
pub(crate) use invoke::invoke;
pub mod partition;
pub mod progress;
pub mod projection;
mod reader;
pub mod registry;
pub mod retry;
pub mod shutdown;
pub mod transactional;
pub mod view;

pub use config::{ConsumerConfig, StartFrom};
pub use consumer::{Consumer, ConsumerBuilder, ConsumerHandle, ConsumerMonitor};
pub use dead_letters::{DeadLetters, ReplayReport, dead_letter_for};
pub use handler::{Delivery, EventHandler};
pub use partition::partition_for;
pub use progress::Lag;
pub use projection::{Projection, ProjectionHandler, ProjectionRunner, ProjectionRunnerBuilder};
pub use registry::{
    BackgroundTask, HandlerFactory, RegisteredHandler, RegistrationKind, Registrations, Runtime,
    RuntimeHandle,
};
pub use retry::RetryPolicy;
pub use shutdown::Shutdown;
pub use transactional::{TransactionalHandler, TransactionalProjection};
pub use view::{MemoryReadModels, ReadModel, ReadModelStore, RowChange, View, ViewProjection};
