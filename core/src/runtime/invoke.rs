//! The one place that calls handlers: tracing span (whose parent is the
//! handled event's `traceparent`), handler metrics, panic capture, retries,
//! and dead-lettering. Consumers, transactional projections and dead-letter
//! replays all go through here, so telemetry is emitted at one layer.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use tracing::Instrument as _;

use super::handler::{Delivery, EventHandler};
use super::retry::RetryPolicy;
use super::shutdown::Shutdown;
use super::transactional::TransactionalProjection;
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::store::{DeadLetter, Store};
use crate::telemetry;

/// How handling an event (or a batch) ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Handled.
    Done,
    /// Gave up: a permanent error or exhausted retries.
    Failed { error: Error, attempts: u32 },
    /// Shutdown came during a retry wait; the work is left unfinished.
    Abandoned,
}

/// Calls `handler` once for `event`, inside an `orchestrix.handle` span, and
/// turns a panic into a permanent error.
pub(crate) async fn invoke(
    handler: &dyn EventHandler,
    event: &RecordedEvent,
    partition: u32,
    attempt: u32,
) -> Result<()> {
    invoke_with(
        handler.name(),
        handler,
        event,
        &Delivery { partition, attempt },
    )
    .await
}

/// [`invoke`] with the consumer's name (the metrics' label) and the
/// delivery given: the one handler call of every runtime and bus.
pub(crate) async fn invoke_with(
    consumer: &str,
    handler: &dyn EventHandler,
    event: &RecordedEvent,
    delivery: &Delivery,
) -> Result<()> {
    let span = tracing::info_span!(
        "orchestrix.handle",
        otel.kind = "consumer",
        handler = consumer,
        event_id = %event.id(),
        event_type = event.event_type(),
        stream = %event.stream_id,
        position = event.position,
        partition = delivery.partition,
        attempt = delivery.attempt,
        error = tracing::field::Empty,
    );
    let metadata = &event.record.metadata;
    telemetry::set_parent(
        &span,
        metadata.traceparent.as_deref(),
        metadata.tracestate.as_deref(),
    );
    let started = Instant::now();
    let result = guard(consumer, handler.handle(event, delivery))
        .instrument(span.clone())
        .await;
    telemetry::metrics::record_handler_call(consumer, started.elapsed());
    if let Err(e) = &result {
        span.record("error", tracing::field::display(e));
    }
    result
}

/// Calls a transactional projection once for a batch (one transaction),
/// inside an `orchestrix.handle` span; the span names the event type and
/// stream when the batch holds one event.
pub(crate) async fn invoke_batch(
    projection: &dyn TransactionalProjection,
    events: &[RecordedEvent],
    last_position: u64,
    attempt: u32,
) -> Result<()> {
    let name = projection.name();
    let span = tracing::info_span!(
        "orchestrix.handle",
        otel.kind = "consumer",
        handler = name,
        events = events.len(),
        event_type = tracing::field::Empty,
        stream = tracing::field::Empty,
        first_position = events.first().map_or(last_position, |e| e.position),
        position = last_position,
        partition = 0u32,
        attempt,
        error = tracing::field::Empty,
    );
    if let [event] = events {
        span.record("event_type", event.event_type());
        span.record("stream", tracing::field::display(&event.stream_id));
        let metadata = &event.record.metadata;
        telemetry::set_parent(
            &span,
            metadata.traceparent.as_deref(),
            metadata.tracestate.as_deref(),
        );
    } else {
        telemetry::link_events(&span, events);
    }
    let started = Instant::now();
    let result = guard(name, projection.apply_batch(events, name, last_position))
        .instrument(span.clone())
        .await;
    if !events.is_empty() {
        telemetry::metrics::record_handler_call(name, started.elapsed());
        if result.is_ok() {
            telemetry::metrics::record_consumed(name, telemetry::metrics::OK, events.len());
        }
    }
    if let Err(e) = &result {
        span.record("error", tracing::field::display(e));
    }
    result
}

/// Runs a handler future, turning a panic into a permanent error so that a
/// poison message cannot kill the consumer.
pub(crate) async fn guard<F: Future<Output = Result<()>>>(handler: &str, fut: F) -> Result<()> {
    guard_step(handler, fut).await
}

/// [`guard`] for any result.
pub(crate) async fn guard_step<T, F: Future<Output = Result<T>>>(
    handler: &str,
    fut: F,
) -> Result<T> {
    match AssertUnwindSafe(fut).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".to_owned());
            Err(Error::backend(
                "handler",
                "handle",
                false,
                format!("`{handler}` panicked: {message}"),
            ))
        }
    }
}

/// Runs `attempt` (given the attempt number, from 1) until it succeeds, fails
/// permanently, or `policy` runs out of attempts; waits between attempts as the
/// policy says, unless shutdown comes first.
pub(crate) async fn with_retries<F, Fut>(
    policy: &RetryPolicy,
    shutdown: &Shutdown,
    what: &str,
    mut attempt: F,
) -> Outcome
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut n = 1;
    loop {
        match attempt(n).await {
            Ok(()) => return Outcome::Done,
            Err(error) if policy.should_retry(&error, n) => {
                let delay = policy.delay(n + 1).unwrap_or_default();
                tracing::warn!(what, attempt = n, ?delay, error = %error, "transient failure; retrying");
                if !shutdown.sleep(delay).await {
                    return Outcome::Abandoned;
                }
                n += 1;
            }
            Err(error) => return Outcome::Failed { error, attempts: n },
        }
    }
}

/// Handles one event with retries.
pub(crate) async fn handle(
    handler: &dyn EventHandler,
    event: &RecordedEvent,
    partition: u32,
    policy: &RetryPolicy,
    shutdown: &Shutdown,
) -> Outcome {
    let outcome = with_retries(policy, shutdown, handler.name(), |attempt| {
        invoke(handler, event, partition, attempt)
    })
    .await;
    if matches!(outcome, Outcome::Done) {
        telemetry::metrics::record_consumed(handler.name(), telemetry::metrics::OK, 1);
    }
    outcome
}

/// Stores a dead letter, retrying a failing dead-letter store with backoff
/// until it works; `false` when shutdown came first (the event then stays
/// unfinished and is delivered again after a restart).
pub(crate) async fn store_dead_letter(
    store: &Store,
    letter: DeadLetter,
    shutdown: &Shutdown,
) -> bool {
    tracing::warn!(
        consumer = %letter.consumer,
        event_id = ?letter.event_id,
        event_type = ?letter.event_type,
        stream = ?letter.stream_id,
        position = ?letter.position,
        attempts = letter.attempts,
        error_kind = %letter.error_kind,
        reason = %letter.reason,
        "dead-lettering event",
    );
    let stored = persist(shutdown, "dead-letter store", || {
        store.backend().dead_letters.put_dead_letter(letter.clone())
    })
    .await;
    if stored {
        telemetry::metrics::record_dead_letter(&letter.consumer, &letter.error_kind);
    }
    stored
}

/// Retries an infrastructure write (dead letter, checkpoint) with capped
/// exponential backoff until it succeeds; `false` when shutdown came first.
pub(crate) async fn persist<F, Fut>(shutdown: &Shutdown, what: &str, mut write: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let mut delay = Duration::from_millis(50);
    loop {
        match write().await {
            Ok(()) => return true,
            Err(error) => {
                tracing::error!(what, error = %error, ?delay, "write failed; retrying");
                if !shutdown.sleep(delay).await {
                    return false;
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
