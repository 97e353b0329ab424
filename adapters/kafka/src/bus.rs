//! [`KafkaBus`]: Apache Kafka as the core [`Bus`] port. The transport is
//! the [`ConsumerWorker`] (fetch, commit, the broker's consumer-group
//! rebalances, dead-letter topics); every record goes through the core
//! [`HandlerDriver`](orchestrix::bus::HandlerDriver).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::Result;
use orchestrix::bus::{Bus, DriverStats, PartitionLag, Subscribe, Subscription};
use orchestrix::dead_letter::DeadLetterQueue;
use orchestrix::relay::Publisher;
use orchestrix::runtime::RetryPolicy;

use crate::config::{KafkaConfig, RetryConfig};
use crate::consumer::{ConsumerWorker, LagProbe};
use crate::dead_letter_queue::KafkaDeadLetters;
use crate::publisher::KafkaPublisher;

/// How long a broker may take to tell a group's progress.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// An application's events on one Kafka topic, `{prefix}.events`, keyed by
/// stream id (so a stream stays on one partition), as a [`Bus`].
///
/// ```no_run
/// use orchestrix::bus::Bus;
/// use orchestrix_kafka::{KafkaBus, KafkaConfig};
/// let mut config = KafkaConfig::default();
/// config.topics.prefix = "orchestrix.shop".into();
/// let bus = KafkaBus::new(config)?;
/// assert_eq!(bus.topic(), "orchestrix.shop.events");
/// # Ok::<(), orchestrix::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct KafkaBus {
    config: KafkaConfig,
    topic: String,
    publisher: Arc<KafkaPublisher>,
}

impl KafkaBus {
    /// The bus of `config`: every event on the topic `{prefix}.events` (the
    /// topic template and overrides are replaced).
    ///
    /// # Errors
    /// Invalid settings, or a producer that cannot be created.
    pub fn new(mut config: KafkaConfig) -> Result<Self> {
        config.topics.template = "{prefix}.events".to_owned();
        config.topics.overrides.clear();
        config.validate()?;
        let topic = config.topics.topic_for_category("events");
        let publisher = Arc::new(KafkaPublisher::new(config.clone())?);
        Ok(Self {
            config,
            topic,
            publisher,
        })
    }

    /// The topic.
    #[must_use]
    pub fn topic(&self) -> &str {
        &self.topic
    }
}

/// A registration's retry policy as the worker's settings.
#[must_use]
pub fn retry_config(policy: RetryPolicy) -> RetryConfig {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match policy {
        RetryPolicy::None => RetryConfig::None,
        RetryPolicy::Fixed {
            max_attempts,
            delay,
        } => RetryConfig::Fixed {
            max_attempts,
            delay_ms: ms(delay),
        },
        RetryPolicy::Exponential {
            max_attempts,
            initial,
            max,
        } => RetryConfig::Exponential {
            max_attempts,
            initial_ms: ms(initial),
            max_ms: ms(max),
        },
    }
}

#[async_trait]
impl Bus for KafkaBus {
    fn kind(&self) -> &'static str {
        "kafka"
    }

    fn partitions(&self) -> u32 {
        u32::try_from(self.config.topics.partitions).unwrap_or(1)
    }

    fn publisher(&self) -> Arc<dyn Publisher> {
        self.publisher.clone()
    }

    async fn subscribe(&self, options: Subscribe) -> Result<Box<dyn Subscription>> {
        let mut config = self.config.clone();
        config.consumer.retry = retry_config(options.retry);
        let worker = ConsumerWorker::builder(config)
            .topic(self.topic.clone())
            .group_id(options.group.clone())
            .start_from(options.start_from)
            .start(options.handler)
            .await?;
        Ok(Box::new(KafkaSubscription {
            group: options.group,
            probe: worker.lag_probe(),
            worker: Mutex::new(Some(worker)),
        }))
    }

    fn dead_letters(&self, group: &str) -> Arc<dyn DeadLetterQueue> {
        Arc::new(KafkaDeadLetters::new(
            self.config.clone(),
            [self.config.dead_letter_topic(&self.topic, group)],
        ))
    }
}

/// A [`ConsumerWorker`] as a [`Subscription`] (behind a mutex: the worker
/// is `Send` but not `Sync`).
#[derive(Debug)]
struct KafkaSubscription {
    group: String,
    probe: LagProbe,
    worker: Mutex<Option<ConsumerWorker>>,
}

impl KafkaSubscription {
    fn with<T: Default>(&self, f: impl FnOnce(&ConsumerWorker) -> T) -> T {
        self.worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(f)
            .unwrap_or_default()
    }

    fn take(&mut self) -> Option<ConsumerWorker> {
        self.worker
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    fn group(&self) -> &str {
        &self.group
    }

    fn partitions(&self) -> Vec<u32> {
        let mut owned: Vec<u32> = self.with(|w| {
            w.assignment()
                .into_iter()
                .filter_map(|(_, p)| u32::try_from(p).ok())
                .collect()
        });
        owned.sort_unstable();
        owned.dedup();
        owned
    }

    fn stats(&self) -> DriverStats {
        self.with(ConsumerWorker::driver_stats)
    }

    async fn lag(&self) -> Result<Vec<PartitionLag>> {
        Ok(self
            .probe
            .lag(PROBE_TIMEOUT)
            .await?
            .into_iter()
            .map(|l| {
                PartitionLag::new(
                    u32::try_from(l.partition).unwrap_or_default(),
                    l.events(),
                    l.oldest,
                )
            })
            .collect())
    }

    fn pause(&self) {
        self.with(ConsumerWorker::pause);
    }

    fn resume(&self) {
        self.with(ConsumerWorker::resume);
    }

    async fn shutdown(mut self: Box<Self>) -> Result<()> {
        match self.take() {
            Some(w) => Ok(w.shutdown().await?),
            None => Ok(()),
        }
    }

    fn abort(mut self: Box<Self>) {
        if let Some(w) = self.take() {
            w.abort();
        }
    }
}

impl Drop for KafkaSubscription {
    fn drop(&mut self) {
        if let Some(w) = self.take() {
            w.abort();
        }
    }
}
