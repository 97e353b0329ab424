//! [`NatsBus`]: NATS JetStream as the core [`Bus`] port. The transport is
//! the [`NatsConsumer`] (pull consumers per partition, leases, acks,
//! redelivery, the dead-letter stream); every message goes through the core
//! [`HandlerDriver`](orchestrix::bus::HandlerDriver).

use std::sync::Arc;

use async_trait::async_trait;
use orchestrix::Result;
use orchestrix::bus::{Bus, DriverStats, PartitionLag, Subscribe, Subscription};
use orchestrix::dead_letter::DeadLetterQueue;
use orchestrix::relay::Publisher;

use crate::config::NatsConfig;
use crate::consumer::{ConsumerHandle, NatsConsumer};
use crate::dead_letter_queue::NatsDeadLetters;
use crate::publisher::NatsPublisher;

/// An application's events on one JetStream stream, on partition subjects
/// `{prefix}.{partition}` chosen by stream id, as a [`Bus`].
///
/// ```no_run
/// use orchestrix::bus::Bus;
/// use orchestrix_nats::{NatsBus, NatsConfig};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let bus = NatsBus::connect(NatsConfig::new("nats://127.0.0.1:4222")).await?;
/// assert_eq!(bus.partitions(), NatsConfig::default().stream.partitions);
/// # Ok::<(), orchestrix::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct NatsBus {
    config: NatsConfig,
    client: async_nats::Client,
    publisher: Arc<NatsPublisher>,
}

impl NatsBus {
    /// Connects, and sets up the stream and the dead-letter stream.
    ///
    /// # Errors
    /// Invalid settings, or a connect or setup failure.
    pub async fn connect(config: NatsConfig) -> Result<Self> {
        config.validate()?;
        let client = crate::connect::connect(&config).await?;
        let publisher = Arc::new(NatsPublisher::with_client(client.clone(), config.clone()).await?);
        Ok(Self {
            config,
            client,
            publisher,
        })
    }

    /// The settings.
    #[must_use]
    pub fn config(&self) -> &NatsConfig {
        &self.config
    }
}

#[async_trait]
impl Bus for NatsBus {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn partitions(&self) -> u32 {
        self.config.stream.partitions
    }

    fn publisher(&self) -> Arc<dyn Publisher> {
        self.publisher.clone()
    }

    async fn subscribe(&self, options: Subscribe) -> Result<Box<dyn Subscription>> {
        let handle = NatsConsumer::builder(self.config.clone())
            .client(self.client.clone())
            .handler(options.handler)
            .group(options.group)
            .retry(options.retry)
            .start_from(options.start_from)
            .start()
            .await?;
        Ok(Box::new(NatsSubscription {
            handle: Some(handle),
        }))
    }

    fn dead_letters(&self, _group: &str) -> Arc<dyn DeadLetterQueue> {
        // One dead-letter stream per application: every group's letters,
        // told apart by their `consumer`.
        Arc::new(NatsDeadLetters::new(
            self.client.clone(),
            self.config.clone(),
        ))
    }
}

/// A [`ConsumerHandle`] as a [`Subscription`].
#[derive(Debug)]
struct NatsSubscription {
    handle: Option<ConsumerHandle>,
}

#[async_trait]
impl Subscription for NatsSubscription {
    fn group(&self) -> &str {
        self.handle.as_ref().map_or("", ConsumerHandle::group)
    }

    fn partitions(&self) -> Vec<u32> {
        self.handle
            .as_ref()
            .map(ConsumerHandle::partitions)
            .unwrap_or_default()
    }

    fn stats(&self) -> DriverStats {
        self.handle
            .as_ref()
            .map(ConsumerHandle::driver_stats)
            .unwrap_or_default()
    }

    async fn lag(&self) -> Result<Vec<PartitionLag>> {
        let Some(handle) = &self.handle else {
            return Ok(Vec::new());
        };
        Ok(handle
            .lag()
            .await?
            .into_iter()
            .map(|l| PartitionLag::new(l.partition, l.events, l.oldest))
            .collect())
    }

    fn pause(&self) {
        if let Some(h) = &self.handle {
            h.pause();
        }
    }

    fn resume(&self) {
        if let Some(h) = &self.handle {
            h.resume();
        }
    }

    async fn shutdown(mut self: Box<Self>) -> Result<()> {
        match self.handle.take() {
            Some(h) => h.shutdown().await,
            None => Ok(()),
        }
    }

    fn abort(mut self: Box<Self>) {
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}
