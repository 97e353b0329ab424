//! Gauges sampled on demand: what a look at the store tells.

use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::error::Result;
use crate::runtime::ConsumerMonitor;
use crate::saga::{Saga, SagaEngine, SagaStatus};

/// Something that records gauges when asked, e.g. just before a scrape.
#[async_trait]
pub trait MetricsSource: Send + Sync + fmt::Debug + 'static {
    /// A name for logs.
    fn name(&self) -> &str;

    /// Measures and records.
    ///
    /// # Errors
    /// When the measurement fails (the gauges keep their last values).
    async fn sample(&self) -> Result<()>;
}

#[async_trait]
impl MetricsSource for ConsumerMonitor {
    fn name(&self) -> &str {
        ConsumerMonitor::name(self)
    }

    async fn sample(&self) -> Result<()> {
        self.record_lag().await.map(|_| ())
    }
}

/// Samples `orchestrix_saga_instances{saga,status}` from a saga's instances.
///
/// Counting reads every status change of the saga's instances, so a sample
/// taken less than [`min_interval`](Self::min_interval) after the previous
/// one is skipped (the gauges keep their values).
pub struct SagaMetrics<S: Saga> {
    engine: SagaEngine<S>,
    min_interval: Duration,
    last: Mutex<Option<Instant>>,
}

impl<S: Saga> fmt::Debug for SagaMetrics<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaMetrics")
            .field("saga", &S::NAME)
            .field("min_interval", &self.min_interval)
            .finish()
    }
}

impl<S: Saga> SagaMetrics<S> {
    /// Samples `engine`'s instances at most every 15 s.
    #[must_use]
    pub fn new(engine: SagaEngine<S>) -> Self {
        Self {
            engine,
            min_interval: Duration::from_secs(15),
            last: Mutex::new(None),
        }
    }

    /// Samples at most this often.
    #[must_use]
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    fn due(&self) -> bool {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < self.min_interval) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[async_trait]
impl<S: Saga> MetricsSource for SagaMetrics<S> {
    fn name(&self) -> &str {
        S::NAME
    }

    async fn sample(&self) -> Result<()> {
        if !self.due() {
            return Ok(());
        }
        let instances = match self.engine.list().await {
            Ok(i) => i,
            Err(e) => {
                // Try again at the next scrape.
                *self
                    .last
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
                return Err(e);
            }
        };
        for status in [
            SagaStatus::Running,
            SagaStatus::Completed,
            SagaStatus::Compensating,
            SagaStatus::Compensated,
            SagaStatus::Failed,
        ] {
            let count = instances.iter().filter(|i| i.status == status).count();
            super::metrics::set_saga_instances(S::NAME, status.as_str(), count);
        }
        Ok(())
    }
}
