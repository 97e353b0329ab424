//! Retry policies for consumers: none, fixed, exponential with jitter.

use std::time::Duration;

use crate::error::Error;

/// How a consumer retries a failing handler before dead-lettering the message.
///
/// Permanent errors ([`Error::class`]) are never retried; transient ones are
/// retried until `max_attempts` is reached.
///
/// ```
/// use std::time::Duration;
/// use orchestrix::runtime::retry::RetryPolicy;
/// let p = RetryPolicy::exponential(5, Duration::from_millis(10), Duration::from_secs(1));
/// assert_eq!(p.max_attempts(), 5);
/// let d = p.delay(3).unwrap(); // before the 3rd attempt: 10ms * 2^1, ± jitter
/// assert!(d <= Duration::from_millis(20));
/// assert!(p.delay(6).is_none()); // attempts exhausted
/// assert!(RetryPolicy::none().delay(2).is_none());
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryPolicy {
    /// One attempt only.
    None,
    /// Up to `max_attempts`, waiting `delay` between them.
    Fixed {
        /// Attempts in all.
        max_attempts: u32,
        /// Wait between attempts.
        delay: Duration,
    },
    /// Up to `max_attempts`, waiting `initial * 2^(n-1)` capped at `max`, with
    /// "full jitter" (a random wait between half and all of it).
    Exponential {
        /// Attempts in all.
        max_attempts: u32,
        /// Wait before the second attempt.
        initial: Duration,
        /// Longest wait.
        max: Duration,
    },
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::exponential(5, Duration::from_millis(50), Duration::from_secs(5))
    }
}

impl RetryPolicy {
    /// No retries.
    #[must_use]
    pub fn none() -> Self {
        Self::None
    }

    /// Fixed delay.
    #[must_use]
    pub fn fixed(max_attempts: u32, delay: Duration) -> Self {
        Self::Fixed {
            max_attempts,
            delay,
        }
    }

    /// Exponential backoff with jitter.
    #[must_use]
    pub fn exponential(max_attempts: u32, initial: Duration, max: Duration) -> Self {
        Self::Exponential {
            max_attempts,
            initial,
            max,
        }
    }

    /// Attempts in all.
    #[must_use]
    pub fn max_attempts(&self) -> u32 {
        match *self {
            Self::None => 1,
            Self::Fixed { max_attempts, .. } | Self::Exponential { max_attempts, .. } => {
                max_attempts.max(1)
            }
        }
    }

    /// The wait before attempt number `attempt` (2 = first retry), or `None`
    /// when no attempt `attempt` is allowed.
    #[must_use]
    pub fn delay(&self, attempt: u32) -> Option<Duration> {
        if attempt < 2 || attempt > self.max_attempts() {
            return None;
        }
        match *self {
            Self::None => None,
            Self::Fixed { delay, .. } => Some(delay),
            Self::Exponential { initial, max, .. } => {
                let factor = 2u32.saturating_pow(attempt - 2);
                let full = initial.saturating_mul(factor).min(max);
                let half = full / 2;
                let jitter = full.saturating_sub(half);
                let extra = jitter.mul_f64(rand::random::<f64>());
                Some(half + extra)
            }
        }
    }

    /// Whether attempt `attempt` failing with `error` should be retried.
    #[must_use]
    pub fn should_retry(&self, error: &Error, attempt: u32) -> bool {
        error.is_transient() && attempt < self.max_attempts()
    }
}
