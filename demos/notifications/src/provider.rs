//! A flaky notification provider: it fails at a configurable rate, is slow,
//! sometimes delivers but loses the acknowledgement, can be taken down
//! entirely, and deduplicates on the idempotency key it is given, as real
//! providers (SES, Twilio, FCM) do.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

use crate::domain::Channel;

/// How the provider misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flakiness {
    /// Share of calls that fail before delivering (0.0–1.0).
    pub failure_rate: f64,
    /// Share of delivered calls whose acknowledgement is lost: the caller
    /// sees a timeout although the message went out.
    pub lost_ack_rate: f64,
    /// How long each call takes.
    pub latency: Duration,
    /// Seed of the provider's dice.
    pub seed: u64,
}

impl Default for Flakiness {
    fn default() -> Self {
        Self {
            failure_rate: 0.3,
            lost_ack_rate: 0.1,
            latency: Duration::from_millis(2),
            seed: 7,
        }
    }
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Down or overloaded: try again later.
    #[error("the provider is unavailable (503)")]
    Unavailable,
    /// No answer in time; the message may have gone out.
    #[error("the provider did not answer in time")]
    Timeout,
    /// The provider refuses this message for good.
    #[error("the provider rejects the recipient `{0}` (400)")]
    Rejected(String),
}

impl ProviderError {
    /// Whether trying again can help.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::Rejected(_))
    }
}

/// One message the provider delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The provider's message id.
    pub id: String,
    /// The channel.
    pub channel: Channel,
    /// When it went out.
    pub at: Instant,
}

/// What the provider saw, for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderStats {
    /// Calls made.
    pub calls: u64,
    /// Calls that carried a key already delivered: answered with the first
    /// delivery's id, nothing sent again.
    pub duplicates: u64,
    /// Messages delivered, by channel (each key at most once).
    pub delivered: BTreeMap<Channel, u64>,
    /// The most messages of a channel delivered within any one second.
    pub peak_per_second: BTreeMap<Channel, u64>,
}

/// The provider. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct FlakyProvider {
    flakiness: Flakiness,
    dice: Mutex<StdRng>,
    down: AtomicBool,
    calls: AtomicU64,
    duplicates: AtomicU64,
    delivered: Mutex<HashMap<String, Delivery>>,
}

impl FlakyProvider {
    /// A provider that misbehaves as `flakiness` says.
    #[must_use]
    pub fn new(flakiness: Flakiness) -> Self {
        Self {
            dice: Mutex::new(StdRng::seed_from_u64(flakiness.seed)),
            flakiness,
            down: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            delivered: Mutex::new(HashMap::new()),
        }
    }

    /// Takes the provider down (every call fails) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Sends one message under an idempotency key: a key delivered before is
    /// answered with the first delivery's id and not sent again.
    ///
    /// # Errors
    /// [`ProviderError`]: unavailable (down, or the failure rate struck),
    /// a timeout (the acknowledgement was lost), or a rejected recipient.
    pub async fn send(
        &self,
        key: &str,
        channel: Channel,
        recipient: &str,
    ) -> Result<String, ProviderError> {
        tokio::time::sleep(self.flakiness.latency).await;
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(ProviderError::Unavailable);
        }
        if !valid(channel, recipient) {
            return Err(ProviderError::Rejected(recipient.to_owned()));
        }
        let (fail, lose_ack) = {
            let mut dice = self
                .dice
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (
                dice.random_bool(self.flakiness.failure_rate.clamp(0.0, 1.0)),
                dice.random_bool(self.flakiness.lost_ack_rate.clamp(0.0, 1.0)),
            )
        };
        let id = {
            let mut delivered = self
                .delivered
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(first) = delivered.get(key) {
                self.duplicates.fetch_add(1, Ordering::SeqCst);
                return Ok(first.id.clone());
            }
            if fail {
                return Err(ProviderError::Unavailable);
            }
            let id = format!("msg-{}", delivered.len() + 1);
            delivered.insert(
                key.to_owned(),
                Delivery {
                    id: id.clone(),
                    channel,
                    at: Instant::now(),
                },
            );
            id
        };
        if lose_ack {
            return Err(ProviderError::Timeout);
        }
        Ok(id)
    }

    /// What the provider saw so far, deliveries counted for the keys that
    /// start with `prefix` only.
    #[must_use]
    pub fn stats(&self, prefix: &str) -> ProviderStats {
        let all = self
            .delivered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let delivered: Vec<&Delivery> = all
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(_, d)| d)
            .collect();
        let mut stats = ProviderStats {
            calls: self.calls.load(Ordering::SeqCst),
            duplicates: self.duplicates.load(Ordering::SeqCst),
            ..ProviderStats::default()
        };
        for channel in Channel::ALL {
            let mut times: Vec<Instant> = delivered
                .iter()
                .filter(|d| d.channel == channel)
                .map(|d| d.at)
                .collect();
            times.sort();
            // The most deliveries within any window of one second.
            let mut peak = 0;
            let mut start = 0;
            for end in 0..times.len() {
                while times[end].duration_since(times[start]) >= Duration::from_secs(1) {
                    start += 1;
                }
                peak = peak.max(end - start + 1);
            }
            stats
                .delivered
                .insert(channel, u64::try_from(times.len()).unwrap_or(u64::MAX));
            stats
                .peak_per_second
                .insert(channel, u64::try_from(peak).unwrap_or(u64::MAX));
        }
        stats
    }
}

/// Whether the provider accepts `recipient` on `channel`.
fn valid(channel: Channel, recipient: &str) -> bool {
    match channel {
        Channel::Email => recipient.contains('@'),
        Channel::Sms => recipient.starts_with('+') && recipient.len() > 4,
        Channel::Push => !recipient.is_empty(),
    }
}
