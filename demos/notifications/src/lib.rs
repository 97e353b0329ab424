//! Orchestrix notifications demo: notifications sent through a flaky
//! provider, with the runtime's retries (exponential backoff with jitter),
//! dead letters replayed after an outage, idempotent sends (an idempotency
//! key at the provider, a command id for the aggregate) and a rate limit per
//! channel.
//!
//! `cargo run -p orchestrix-demo-notifications` runs [`walkthrough::run`] on
//! the embedded SQLite store; `--store` and `--bus` as in the other demos.

pub mod dispatcher;
pub mod domain;
pub mod provider;
pub mod status;
pub mod walkthrough;

use std::sync::Arc;
use std::time::Duration;

use orchestrix::runtime::{ConsumerConfig, EventHandler, RetryPolicy};
use orchestrix::{Application, ApplicationBuilder, Module};

pub use dispatcher::{DispatchStats, Dispatcher};
pub use domain::{
    Channel, Notification, NotificationCommand, NotificationError, NotificationEvent,
};
pub use provider::{Flakiness, FlakyProvider, ProviderError, ProviderStats};
pub use status::{StatusRow, Statuses};

/// Registers notifications, their status read model and the dispatcher.
#[derive(Debug, Clone)]
pub struct NotifyModule {
    provider: Arc<FlakyProvider>,
    stats: Arc<DispatchStats>,
    /// Messages per second per channel.
    pub rate_per_channel: u32,
    /// The dispatcher's consumer settings (its retry policy).
    pub consumer: ConsumerConfig,
}

/// Attempts per notification before it is dead-lettered: with the default
/// 30% failure rate, all of them fail for one notification in about 170,000
/// (with 6, about one run of the demo in 40 dead-lettered a notification
/// while the provider was up).
pub const ATTEMPTS: u32 = 10;

/// The dispatcher's retries (and the replay's): [`ATTEMPTS`] attempts,
/// exponential backoff from 20 ms to 400 ms, with jitter.
#[must_use]
pub fn retry_policy() -> RetryPolicy {
    RetryPolicy::exponential(
        ATTEMPTS,
        Duration::from_millis(20),
        Duration::from_millis(400),
    )
}

impl NotifyModule {
    /// A module sending through `provider`: 4 partitions, up to
    /// [`ATTEMPTS`] attempts 20 ms to 400 ms apart (exponential, with
    /// jitter), 10 messages per second per channel.
    #[must_use]
    pub fn new(provider: Arc<FlakyProvider>, stats: Arc<DispatchStats>) -> Self {
        Self {
            provider,
            stats,
            rate_per_channel: 10,
            consumer: ConsumerConfig::default()
                .partitions(4)
                .retry(retry_policy()),
        }
    }
}

impl Module for NotifyModule {
    fn name(&self) -> &str {
        "notify"
    }

    fn register(&self, app: ApplicationBuilder) -> ApplicationBuilder {
        let (provider, stats, rate) = (
            self.provider.clone(),
            self.stats.clone(),
            self.rate_per_channel,
        );
        app.aggregate::<Notification>()
            .projection_with(
                Statuses,
                self.consumer.clone().retry(RetryPolicy::default()),
            )
            .handler_factory(
                dispatcher::NAME,
                dispatcher::filter(),
                self.consumer.clone(),
                move |app: &Application| {
                    Ok(Arc::new(Dispatcher::new(
                        app.clone(),
                        provider.clone(),
                        rate,
                        stats.clone(),
                    )) as Arc<dyn EventHandler>)
                },
            )
    }
}
