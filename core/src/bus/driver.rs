//! [`HandlerDriver`]: the one consumer pipeline every bus runs its messages
//! through.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::runtime::handler::{Delivery, EventHandler};
use crate::runtime::invoke;
use crate::runtime::retry::RetryPolicy;
use crate::runtime::shutdown::Shutdown;
use crate::store::Filter;
use crate::telemetry::metrics;

/// How many streams the driver remembers the last handled revision of, to
/// drop republished events (see [`HandlerDriver::handle_event`]).
pub const DEDUPE_STREAMS: usize = 65_536;

/// What one successful attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The handler ran and succeeded.
    Handled,
    /// Not for this handler (its filter), or a duplicate of an event it
    /// already handled: acknowledged without a call.
    Skipped,
}

/// What the transport does with a message after one attempt
/// ([`HandlerDriver::attempt`]).
#[derive(Debug)]
pub enum Verdict {
    /// Acknowledge / commit: handled or skipped.
    Done(Step),
    /// A transient failure the retry policy retries: deliver it again after
    /// `delay` (a broker redelivery, or an in-process wait).
    Retry {
        /// The wait before the next attempt.
        delay: Duration,
        /// Why it failed.
        error: Error,
    },
    /// Give up: a permanent error (including an undecodable message and a
    /// panic) or retries exhausted. Publish a dead letter, then acknowledge.
    DeadLetter {
        /// Why.
        error: Error,
        /// Attempts made.
        attempts: u32,
    },
}

/// How a message ended under in-process retries ([`HandlerDriver::settle`]).
#[derive(Debug)]
pub enum Settled {
    /// Handled or skipped: acknowledge / commit.
    Done(Step),
    /// Dead-letter it (then acknowledge).
    DeadLetter {
        /// Why.
        error: Error,
        /// Attempts made.
        attempts: u32,
    },
    /// Shutdown came during a retry wait: leave the message unacknowledged
    /// (it is delivered again).
    Abandoned,
}

/// Counters of one driver (one handler in one process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverStats {
    /// Messages the handler finished successfully.
    pub handled: u64,
    /// Messages outside the handler's filter.
    pub skipped: u64,
    /// Republished events dropped as duplicates.
    pub duplicates: u64,
    /// Attempts that failed transiently and were retried.
    pub retried: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
}

#[derive(Debug, Default)]
struct Counters {
    handled: AtomicU64,
    skipped: AtomicU64,
    duplicates: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The consumer pipeline of every bus, once: decode result → filter →
/// duplicate check → `orchestrix.handle` span (continuing the event's
/// trace) → panic capture → retry decision → dead letter → stats and
/// metrics (`orchestrix_handler_duration_seconds`,
/// `orchestrix_events_consumed_total`, `orchestrix_dead_letters_total`,
/// the embedded runtime's names, labelled `consumer` = the handler's name).
///
/// A bus adapter keeps only transport: it fetches a message, decodes it
/// into a [`RecordedEvent`], asks the driver what to do with it, and
/// acknowledges, redelivers or publishes a dead letter as told. Two retry
/// styles are served:
///
/// - in-process ([`settle`](Self::settle)): the driver calls again after the
///   policy's delay (Kafka, the in-memory bus);
/// - broker redelivery ([`attempt`](Self::attempt)): one call per delivery,
///   the transport redelivers after [`Verdict::Retry`]'s delay and passes the
///   delivery count as the attempt (NATS JetStream).
///
/// **Duplicates.** A relay that crashes between publishing and storing its
/// checkpoint publishes some events again; a bus without broker-side
/// deduplication (Kafka) delivers them twice. The driver remembers the last
/// revision it handled of each stream (up to [`DEDUPE_STREAMS`] streams,
/// forgotten all at once beyond that, and per process) and skips an event at
/// or below it, so a republished event is dropped while a redelivered,
/// never-finished one is not.
///
/// ```
/// use std::sync::Arc;
/// use orchestrix::bus::{HandlerDriver, Settled, Step};
/// use orchestrix::runtime::{Delivery, EventHandler, RetryPolicy, Shutdown};
/// use orchestrix::{EventRecord, RecordedEvent, Result, StreamId};
///
/// #[derive(Debug)]
/// struct Print;
/// #[async_trait::async_trait]
/// impl EventHandler for Print {
///     fn name(&self) -> &str { "print" }
///     async fn handle(&self, e: &RecordedEvent, _: &Delivery) -> Result<()> {
///         println!("{} #{}", e.stream_id, e.revision);
///         Ok(())
///     }
/// }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let handler: Arc<dyn EventHandler> = Arc::new(Print);
/// let driver = HandlerDriver::for_handler(&*handler).with_retry(RetryPolicy::none());
/// let event = RecordedEvent {
///     stream_id: StreamId::new("order", "1")?,
///     revision: 0,
///     position: 1,
///     record: EventRecord::json("com.acme.Placed", 1, &serde_json::json!({})),
/// };
/// let (_stop, shutdown) = Shutdown::new();
/// let settled = driver
///     .settle(0, &shutdown, |delivery| {
///         let (driver, handler, event) = (&driver, handler.clone(), event.clone());
///         async move { driver.handle_event(&*handler, Ok(event), &delivery).await }
///     })
///     .await;
/// assert!(matches!(settled, Settled::Done(Step::Handled)));
/// assert_eq!(driver.stats().handled, 1);
/// // The same event published again is dropped.
/// let again = driver.handle_event(&*handler, Ok(event), &Delivery { partition: 0, attempt: 1 }).await?;
/// assert_eq!(again, Step::Skipped);
/// # Ok::<(), orchestrix::Error>(()) }).unwrap();
/// ```
pub struct HandlerDriver {
    name: Arc<str>,
    filter: Filter,
    retry: RetryPolicy,
    dedupe: bool,
    counters: Arc<Counters>,
    last_revision: Mutex<HashMap<String, u64>>,
}

impl fmt::Debug for HandlerDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerDriver")
            .field("name", &self.name)
            .field("retry", &self.retry)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl HandlerDriver {
    /// A driver for the consumer `name` (the metrics' `consumer` label and
    /// the dead-letter key): every event, the default retry policy, duplicates
    /// dropped.
    #[must_use]
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            filter: Filter::all(),
            retry: RetryPolicy::default(),
            dedupe: true,
            counters: Arc::default(),
            last_revision: Mutex::new(HashMap::new()),
        }
    }

    /// A driver named after `handler`, with its filter.
    #[must_use]
    pub fn for_handler(handler: &dyn EventHandler) -> Self {
        Self::new(handler.name()).with_filter(handler.filter())
    }

    /// Only events `filter` matches are handled; the rest are skipped.
    #[must_use]
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// The retry policy.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Whether republished events are dropped (default `true`).
    #[must_use]
    pub fn with_dedupe(mut self, dedupe: bool) -> Self {
        self.dedupe = dedupe;
        self
    }

    /// The consumer's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The retry policy.
    #[must_use]
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// The filter.
    #[must_use]
    pub fn filter(&self) -> &Filter {
        &self.filter
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> DriverStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        DriverStats {
            handled: get(&c.handled),
            skipped: get(&c.skipped),
            duplicates: get(&c.duplicates),
            retried: get(&c.retried),
            dead_lettered: get(&c.dead_lettered),
        }
    }

    /// Runs `handler` for one decoded message: a decode error is a
    /// permanent error (it dead-letters); an event outside the filter, or a
    /// duplicate, is [`Step::Skipped`]; otherwise the handler is called in an
    /// `orchestrix.handle` span with its panics captured and its duration
    /// recorded.
    ///
    /// # Errors
    /// The decode error, or the handler's error (a panic as a permanent one).
    pub async fn handle_event(
        &self,
        handler: &dyn EventHandler,
        decoded: Result<RecordedEvent>,
        delivery: &Delivery,
    ) -> Result<Step> {
        let event = decoded?;
        if !self
            .filter
            .matches(event.stream_id.category(), event.event_type())
        {
            return Ok(Step::Skipped);
        }
        if self.is_duplicate(&event) {
            bump(&self.counters.duplicates);
            tracing::debug!(consumer = %self.name, stream = %event.stream_id, revision = event.revision, "duplicate event dropped");
            return Ok(Step::Skipped);
        }
        invoke::invoke_with(&self.name, handler, &event, delivery).await?;
        self.remember(&event);
        Ok(Step::Handled)
    }

    fn is_duplicate(&self, event: &RecordedEvent) -> bool {
        self.dedupe
            && self
                .last_revision
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(event.stream_id.as_str())
                .is_some_and(|last| event.revision <= *last)
    }

    fn remember(&self, event: &RecordedEvent) {
        if !self.dedupe {
            return;
        }
        let mut last = self
            .last_revision
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if last.len() >= DEDUPE_STREAMS && !last.contains_key(event.stream_id.as_str()) {
            last.clear();
        }
        let entry = last.entry(event.stream_id.to_string()).or_default();
        *entry = (*entry).max(event.revision);
    }

    /// One attempt: runs `work` (usually [`handle_event`](Self::handle_event))
    /// with panics captured, counts and records the outcome, and says what
    /// the transport does next. An attempt number above the policy's
    /// `max_attempts` (a message delivered again and again without an
    /// outcome: its workers crashed or hung) dead-letters without calling.
    pub async fn attempt<Fut>(&self, delivery: &Delivery, work: Fut) -> Verdict
    where
        Fut: Future<Output = Result<Step>>,
    {
        let max = self.retry.max_attempts();
        if delivery.attempt > max {
            let error = Error::backend(
                "bus",
                "consume",
                false,
                format!(
                    "`{}`: delivered {} times, more than the {max} allowed, without an outcome",
                    self.name, delivery.attempt
                ),
            );
            return Verdict::DeadLetter {
                error,
                attempts: delivery.attempt,
            };
        }
        match invoke::guard_step(&self.name, work).await {
            Ok(step) => {
                match step {
                    Step::Handled => {
                        bump(&self.counters.handled);
                        metrics::record_consumed(&self.name, metrics::OK, 1);
                    }
                    Step::Skipped => bump(&self.counters.skipped),
                }
                Verdict::Done(step)
            }
            Err(error) if self.retry.should_retry(&error, delivery.attempt) => {
                bump(&self.counters.retried);
                let delay = self.retry.delay(delivery.attempt + 1).unwrap_or_default();
                tracing::debug!(consumer = %self.name, attempt = delivery.attempt, ?delay, error = %error, "transient failure; retrying");
                Verdict::Retry { delay, error }
            }
            Err(error) => Verdict::DeadLetter {
                error,
                attempts: delivery.attempt,
            },
        }
    }

    /// Attempts a message until it is done, must be dead-lettered, or
    /// shutdown comes during a retry wait; `work` is called with each
    /// attempt's [`Delivery`].
    pub async fn settle<F, Fut>(&self, partition: u32, shutdown: &Shutdown, mut work: F) -> Settled
    where
        F: FnMut(Delivery) -> Fut,
        Fut: Future<Output = Result<Step>>,
    {
        let mut attempt = 1;
        loop {
            let delivery = Delivery { partition, attempt };
            match self.attempt(&delivery, work(delivery.clone())).await {
                Verdict::Done(step) => return Settled::Done(step),
                Verdict::DeadLetter { error, attempts } => {
                    return Settled::DeadLetter { error, attempts };
                }
                Verdict::Retry { delay, .. } => {
                    if !shutdown.sleep(delay).await {
                        return Settled::Abandoned;
                    }
                    attempt += 1;
                }
            }
        }
    }

    /// Publishes a dead letter with `send`, retrying a failing send with
    /// capped backoff until it works (a message is never skipped without a
    /// dead letter); `false` when shutdown came first (leave the message
    /// unacknowledged). Records `orchestrix_dead_letters_total`.
    pub async fn dead_letter<F, Fut, T, E>(
        &self,
        error: &Error,
        attempts: u32,
        shutdown: &Shutdown,
        mut send: F,
    ) -> bool
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: fmt::Display,
    {
        let mut backoff = Duration::from_millis(100);
        loop {
            match send().await {
                Ok(_) => {
                    self.dead_lettered(error, attempts);
                    return true;
                }
                Err(e) => {
                    tracing::error!(consumer = %self.name, error = %e, "cannot publish the dead letter; retrying");
                    if !shutdown.sleep(backoff).await {
                        return false;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Counts a dead letter the transport published itself (one try, as a
    /// broker-redelivery transport does).
    pub fn dead_lettered(&self, error: &Error, attempts: u32) {
        bump(&self.counters.dead_lettered);
        metrics::record_dead_letter(&self.name, error.kind());
        tracing::warn!(consumer = %self.name, attempts, error = %error, "message dead-lettered");
    }
}
