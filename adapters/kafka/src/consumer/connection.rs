//! Whether a worker's client reaches the cluster ([`ConsumerWorker::connected`]).
//!
//! librdkafka keeps one connection per broker and reconnects on its own, so
//! it has no single connection state to ask. The worker's client context
//! pieces one together from what librdkafka reports:
//!
//! - the global error `ALL_BROKERS_DOWN` (raised as soon as the last broker
//!   connection is lost) marks the client disconnected;
//! - its statistics (every [`STATISTICS_INTERVAL_MS`] unless the
//!   configuration sets `statistics.interval.ms`) mark it connected while at
//!   least one broker connection is `UP`, disconnected while none is;
//! - a fetched record marks it connected.
//!
//! [`ConsumerWorker::connected`]: super::ConsumerWorker::connected

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde::Deserialize;

/// How often the worker's client reports its statistics (milliseconds),
/// unless the configuration sets `statistics.interval.ms`.
pub(crate) const STATISTICS_INTERVAL_MS: &str = "1000";

/// The connection state of one client. See the module docs.
#[derive(Debug)]
pub(crate) struct Connection {
    down: AtomicBool,
}

/// The part of librdkafka's statistics read here.
#[derive(Deserialize)]
struct Statistics {
    #[serde(default)]
    brokers: HashMap<String, Broker>,
}

#[derive(Deserialize)]
struct Broker {
    state: String,
}

impl Connection {
    pub(crate) fn new() -> Self {
        Self {
            down: AtomicBool::new(false),
        }
    }

    /// Whether the client reaches a broker, as far as it last told.
    pub(crate) fn connected(&self) -> bool {
        !self.down.load(Ordering::Acquire)
    }

    /// A global error of the client.
    pub(crate) fn on_error(&self, consumer: &str, error: &KafkaError) {
        if matches!(error, KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)) {
            self.set(consumer, false, "every broker connection is down");
        }
    }

    /// librdkafka's statistics (JSON).
    pub(crate) fn on_statistics(&self, consumer: &str, json: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<Statistics>(json) else {
            tracing::debug!(consumer, "unreadable librdkafka statistics");
            return;
        };
        if stats.brokers.is_empty() {
            return;
        }
        if stats.brokers.values().any(|b| b.state == "UP") {
            self.set(consumer, true, "a broker connection is up");
        } else {
            self.set(consumer, false, "no broker connection is up");
        }
    }

    /// A record arrived: a broker answered.
    pub(crate) fn on_record(&self, consumer: &str) {
        if self.down.load(Ordering::Relaxed) {
            self.set(consumer, true, "a record arrived");
        }
    }

    fn set(&self, consumer: &str, connected: bool, why: &str) {
        let was_down = self.down.swap(!connected, Ordering::AcqRel);
        match (was_down, connected) {
            (false, false) => tracing::warn!(consumer, why, "kafka unreachable"),
            (true, true) => tracing::info!(consumer, why, "kafka reachable again"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(states: &[&str]) -> Vec<u8> {
        let brokers: serde_json::Map<String, serde_json::Value> = states
            .iter()
            .enumerate()
            .map(|(i, s)| {
                (
                    format!("127.0.0.1:{i}/1"),
                    serde_json::json!({ "name": "b", "nodeid": 1, "state": s, "rtt": {} }),
                )
            })
            .collect();
        serde_json::to_vec(&serde_json::json!({ "name": "c", "brokers": brokers, "topics": {} }))
            .unwrap_or_default()
    }

    #[test]
    fn all_brokers_down_disconnects_until_a_broker_is_up_again() {
        let c = Connection::new();
        assert!(c.connected());
        c.on_error(
            "t",
            &KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
        );
        assert!(c.connected(), "one broker's failure is not an outage");
        c.on_error("t", &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown));
        assert!(!c.connected());
        c.on_statistics("t", &stats(&["DOWN", "TRY_CONNECT"]));
        assert!(!c.connected());
        c.on_statistics("t", &stats(&["CONNECT", "UP"]));
        assert!(c.connected());
        c.on_statistics("t", &stats(&["DOWN", "CONNECT"]));
        assert!(!c.connected(), "statistics alone tell an outage");
        c.on_record("t");
        assert!(c.connected());
    }

    #[test]
    fn statistics_without_brokers_or_unreadable_change_nothing() {
        let c = Connection::new();
        c.on_error("t", &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown));
        c.on_statistics("t", b"{\"name\": \"c\"}");
        c.on_statistics("t", b"not json");
        assert!(!c.connected());
    }
}
