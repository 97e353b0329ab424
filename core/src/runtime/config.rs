//! How a consumer reads, partitions, retries and checkpoints.

use std::time::Duration;

use super::retry::RetryPolicy;
use crate::store::dispatch::DEFAULT_BATCH;

/// Where a consumer starts reading. It means the same on every runtime; the
/// checkpoint is the embedded consumer's stored position, or on a bus
/// (`orchestrix-backends`) the consumer group's committed position (Kafka
/// offsets, JetStream durable consumers):
///
/// | | checkpoint stored | none stored (a new consumer or group) |
/// |---|---|---|
/// | `Checkpoint` | after it | the first event kept |
/// | `CheckpointOrEnd` | after it | the head: events from now on |
/// | `Beginning` | ignored: the first event kept | the first event kept |
/// | `End` | ignored: the head | the head |
///
/// A read model kept in memory asks for `Beginning`, so that a restarted
/// process rebuilds it. On a bus, `Beginning` and `End` apply to each
/// partition the process runs for the first time; a partition it ran
/// before and gets back after a rebalance resumes where this process left
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartFrom {
    /// After the stored checkpoint, or from the beginning when there is none.
    #[default]
    Checkpoint,
    /// After the stored checkpoint, or from the current head when there is
    /// none (a new consumer that only cares about what happens from now on).
    CheckpointOrEnd,
    /// From the first event, ignoring (and then overwriting) the checkpoint.
    Beginning,
    /// From the current head, ignoring (and then overwriting) the checkpoint.
    End,
}

/// Settings of one consumer. Build with [`Default`] and the chainable setters:
///
/// ```
/// use std::time::Duration;
/// use orchestrix::runtime::{ConsumerConfig, RetryPolicy, StartFrom};
/// let config = ConsumerConfig::default()
///     .partitions(8)
///     .retry(RetryPolicy::fixed(3, Duration::from_millis(10)))
///     .checkpoint_every(500)
///     .start_from(StartFrom::Beginning);
/// assert_eq!(config.partitions, 8);
/// assert_eq!(config.batch_size, 512);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// Partitions, each handled by its own task: a stream's events always go
    /// to the same partition (see [`partition_for`](super::partition_for)), so
    /// they are handled in order; different partitions run in parallel.
    /// Default 1. Transactional projections always use one.
    pub partitions: u32,
    /// Events read from the store per round trip. Default 512.
    pub batch_size: usize,
    /// Events buffered per partition before the reader waits (backpressure).
    /// Default 1024.
    pub buffer: usize,
    /// Retries of a failing handler before the event is dead-lettered.
    /// Default [`RetryPolicy::default`].
    pub retry: RetryPolicy,
    /// Commit the checkpoint after this many handled events... Default 1000.
    pub checkpoint_every: u64,
    /// ...or after this long, whichever comes first. Default 1 s.
    pub checkpoint_interval: Duration,
    /// Where to start. Default [`StartFrom::Checkpoint`].
    pub start_from: StartFrom,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            partitions: 1,
            batch_size: DEFAULT_BATCH,
            buffer: 1024,
            retry: RetryPolicy::default(),
            checkpoint_every: 1000,
            checkpoint_interval: Duration::from_secs(1),
            start_from: StartFrom::Checkpoint,
        }
    }
}

impl ConsumerConfig {
    /// Sets [`partitions`](Self::partitions) (at least 1).
    #[must_use]
    pub fn partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions.max(1);
        self
    }

    /// Sets [`batch_size`](Self::batch_size) (at least 1).
    #[must_use]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Sets [`buffer`](Self::buffer) (at least 1).
    #[must_use]
    pub fn buffer(mut self, buffer: usize) -> Self {
        self.buffer = buffer.max(1);
        self
    }

    /// Sets [`retry`](Self::retry).
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Sets [`checkpoint_every`](Self::checkpoint_every) (at least 1).
    #[must_use]
    pub fn checkpoint_every(mut self, events: u64) -> Self {
        self.checkpoint_every = events.max(1);
        self
    }

    /// Sets [`checkpoint_interval`](Self::checkpoint_interval).
    #[must_use]
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = interval;
        self
    }

    /// Sets [`start_from`](Self::start_from).
    #[must_use]
    pub fn start_from(mut self, start_from: StartFrom) -> Self {
        self.start_from = start_from;
        self
    }
}

/// The setters of [`ConsumerConfig`], forwarded by a builder with a `config`
/// field.
macro_rules! forward_config_setters {
    () => {
        /// Replaces the whole configuration.
        pub fn config(mut self, config: $crate::runtime::ConsumerConfig) -> Self {
            self.config = config;
            self
        }

        /// See [`ConsumerConfig::partitions`](crate::runtime::ConsumerConfig::partitions).
        pub fn partitions(mut self, partitions: u32) -> Self {
            self.config = self.config.partitions(partitions);
            self
        }

        /// See [`ConsumerConfig::batch_size`](crate::runtime::ConsumerConfig::batch_size).
        pub fn batch_size(mut self, batch_size: usize) -> Self {
            self.config = self.config.batch_size(batch_size);
            self
        }

        /// See [`ConsumerConfig::buffer`](crate::runtime::ConsumerConfig::buffer).
        pub fn buffer(mut self, buffer: usize) -> Self {
            self.config = self.config.buffer(buffer);
            self
        }

        /// See [`ConsumerConfig::retry`](crate::runtime::ConsumerConfig::retry).
        pub fn retry(mut self, retry: $crate::runtime::RetryPolicy) -> Self {
            self.config = self.config.retry(retry);
            self
        }

        /// See [`ConsumerConfig::checkpoint_every`](crate::runtime::ConsumerConfig::checkpoint_every).
        pub fn checkpoint_every(mut self, events: u64) -> Self {
            self.config = self.config.checkpoint_every(events);
            self
        }

        /// See [`ConsumerConfig::checkpoint_interval`](crate::runtime::ConsumerConfig::checkpoint_interval).
        pub fn checkpoint_interval(mut self, interval: std::time::Duration) -> Self {
            self.config = self.config.checkpoint_interval(interval);
            self
        }

        /// See [`ConsumerConfig::start_from`](crate::runtime::ConsumerConfig::start_from).
        pub fn start_from(mut self, start_from: $crate::runtime::StartFrom) -> Self {
            self.config = self.config.start_from(start_from);
            self
        }
    };
}
pub(crate) use forward_config_setters;
