//! The dispatcher: sends each requested notification through the provider,
//! at most `rate` per second per channel, and records the provider's id.
//!
//! Delivery is at-least-once, so the dispatcher is made idempotent twice
//! over: the provider call carries the notification id as its idempotency
//! key (a redelivered event, or a retry after a lost acknowledgement, gets
//! the first delivery's id back and sends nothing), and `MarkSent` carries a
//! command id derived from the notification (a second `MarkSent` is
//! recognised and appends nothing).
//!
//! Failures are classified for the runtime: a provider that is down or
//! times out is a transient error, retried under the consumer's policy
//! (exponential backoff with jitter); when the attempts run out, the event
//! is dead-lettered, to be replayed once the provider is back. A recipient
//! the provider rejects is a permanent error: dead-lettered at once.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use orchestrix::runtime::{Delivery, EventHandler};
use orchestrix::store::Filter;
use orchestrix::{Application, CommandContext, Error, Event as _, RecordedEvent, Result};

use crate::domain::{Channel, NotificationCommand, NotificationEvent};
use crate::provider::FlakyProvider;

/// The dispatcher's consumer name (its checkpoint and dead-letter key).
pub const NAME: &str = "notification-dispatcher";

/// The events the dispatcher handles.
#[must_use]
pub fn filter() -> Filter {
    Filter::all().event_types(["com.orchestrix.notify.notification.Requested"])
}

/// Counters for the summary.
#[derive(Debug, Default)]
pub struct DispatchStats {
    /// Attempts after the first (retries by the runtime, replays).
    pub retries: AtomicU64,
    /// Transient provider failures seen.
    pub transient_failures: AtomicU64,
    /// Permanent rejections seen.
    pub rejections: AtomicU64,
}

/// Sends notifications. See the module docs.
#[derive(Debug)]
pub struct Dispatcher {
    app: Application,
    provider: Arc<FlakyProvider>,
    limits: BTreeMap<Channel, DefaultDirectRateLimiter>,
    stats: Arc<DispatchStats>,
}

impl Dispatcher {
    /// Sends through `provider`, at most `per_second` messages per second on
    /// each channel, recording into `stats`.
    ///
    /// # Panics
    /// If `per_second` is 0.
    #[must_use]
    pub fn new(
        app: Application,
        provider: Arc<FlakyProvider>,
        per_second: u32,
        stats: Arc<DispatchStats>,
    ) -> Self {
        let rate = NonZeroU32::new(per_second).expect("a rate limit above 0");
        // A burst of one: never more than `rate` within any second.
        let quota = Quota::per_second(rate).allow_burst(NonZeroU32::MIN);
        let limits = Channel::ALL
            .into_iter()
            .map(|c| (c, RateLimiter::direct(quota)))
            .collect();
        Self {
            app,
            provider,
            limits,
            stats,
        }
    }
}

#[async_trait]
impl EventHandler for Dispatcher {
    fn name(&self) -> &str {
        NAME
    }

    fn filter(&self) -> Filter {
        filter()
    }

    async fn handle(&self, event: &RecordedEvent, delivery: &Delivery) -> Result<()> {
        let NotificationEvent::Requested {
            channel, recipient, ..
        } = NotificationEvent::from_payload(
            &event.record.event_type,
            self.app.store().codec().decode(
                &event.record.event_type,
                event.record.schema_version,
                &event.record.data,
            )?,
        )?
        else {
            return Ok(());
        };
        if delivery.attempt > 1 {
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
        }
        let notification = event
            .stream_id
            .as_str()
            .strip_prefix("notification-")
            .unwrap_or(event.stream_id.as_str())
            .to_owned();
        if let Some(limit) = self.limits.get(&channel) {
            limit.until_ready().await;
        }
        let provider_id = match self.provider.send(&notification, channel, &recipient).await {
            Ok(id) => id,
            Err(e) if e.is_transient() => {
                self.stats
                    .transient_failures
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Error::backend("provider", "send", true, e));
            }
            Err(e) => {
                self.stats.rejections.fetch_add(1, Ordering::Relaxed);
                return Err(Error::invalid(
                    format!("notification `{notification}`"),
                    e.to_string(),
                ));
            }
        };
        let command = NotificationCommand::MarkSent {
            notification: notification.clone(),
            provider_id,
            attempt: delivery.attempt,
        };
        self.app
            .execute_with(
                command,
                CommandContext::with_id(format!("sent:{notification}")),
            )
            .await?;
        Ok(())
    }
}
