//! Telemetry: the spans, the W3C trace context and the metrics that every
//! part of Orchestrix emits, written once at the dispatch layers.
//!
//! The core depends on neither OpenTelemetry nor a metrics exporter. It emits
//! [`tracing`] spans, carries the W3C trace context through a
//! [`TracePropagator`] that the process installs once (the
//! `orchestrix-worker` crate installs one backed by `tracing-opentelemetry`),
//! and records metrics through the `metrics` facade, which does
//! nothing until a recorder (such as the Prometheus exporter of
//! `orchestrix-worker`) is installed.
//!
//! # Spans
//!
//! | span | where | fields |
//! |---|---|---|
//! | `orchestrix.command` | [`CommandExecutor::execute_with`](crate::CommandExecutor::execute_with) | `command`, `aggregate`, `id`, `command_id`, `attempts`, `outcome` |
//! | `orchestrix.append`, `orchestrix.append_batch` | [`Store`](crate::Store) | `backend`, `stream`, `expected`, `events`, `revision`, `error` |
//! | `orchestrix.read_stream`, `orchestrix.read_all` (debug) | [`Store`](crate::Store) | `backend`, `stream`/`after`, `limit` |
//! | `orchestrix.publish` | [`Relay`](crate::relay::Relay) | `publisher`, `events`, `last_position`, `attempt`, `error` |
//! | `orchestrix.handle` | the runtime's one handler call site | `handler`, `event_id`, `event_type`, `stream`, `position`, `partition`, `attempt`, `error` |
//! | `orchestrix.saga` | [`SagaEngine`](crate::SagaEngine) | `saga`, `correlation`, `trigger`, `outcome` |
//!
//! # Trace context
//!
//! - A command's span continues the caller's trace (its parent is the current
//!   span), or the trace named by [`CommandContext::traceparent`](crate::CommandContext::traceparent)
//!   when one is given. Every event the command appends records the
//!   command span's context in the CloudEvents `traceparent` and
//!   `tracestate` extensions.
//! - Handling an event (in any process: the context is stored with the event
//!   and travels in the `ce_traceparent`/`ce-traceparent` headers on a bus)
//!   makes the event's `traceparent` the parent of the `orchestrix.handle`
//!   span, so a projection or a saga step continues the trace of the command
//!   that caused it, and the saga's own commands continue it further.
//! - A span that handles or publishes a batch of events links to each
//!   event's context instead (a span has one parent).
//!
//! Without an installed propagator the core records a context given in the
//! [`CommandContext`](crate::CommandContext) as is, and spans keep their
//! `tracing` parents.
//!
//! # Metrics
//!
//! See [`metrics`] for the names, labels and where each one is recorded. The
//! gauges that need a look at the store (consumer and relay lag, saga
//! instances) are sampled on demand by a [`MetricsSource`], typically just
//! before each scrape.

pub mod metrics;
mod propagation;
mod source;

pub use propagation::{
    TraceContext, TracePropagator, add_link, inject, install_propagator, link_events, propagator,
    set_parent,
};
pub use source::{MetricsSource, SagaMetrics};
