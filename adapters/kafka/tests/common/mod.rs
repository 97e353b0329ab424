//! Shared helpers of the integration tests: broker discovery (skip locally,
//! fail loudly in CI), random names, fast-rebalancing settings, and reading a
//! whole topic back.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use orchestrix_kafka::config::RetryConfig;
use orchestrix_kafka::rdkafka::ClientConfig;
use orchestrix_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use orchestrix_kafka::rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use orchestrix_kafka::{KafkaConfig, KafkaRecord};
use orchestrix_testkit::services::{Service, require};

/// The brokers to test against, or `None` (after saying why) when none is
/// reachable. Panics instead when `CI=true`: CI must never pass quietly
/// (the testkit's one service rule).
pub fn kafka_brokers() -> Option<String> {
    require(Service::Kafka)
}

/// Like [`kafka_brokers`] for PostgreSQL.
pub fn postgres_url() -> Option<String> {
    require(Service::Postgres)
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

/// Settings for tests: the given brokers, a random topic prefix, a short
/// session (a killed member's partitions move on within seconds), quick
/// commits and retries.
pub fn test_config(brokers: &str) -> KafkaConfig {
    let mut c = KafkaConfig {
        brokers: vec![brokers.to_owned()],
        ..KafkaConfig::default()
    };
    c.topics.prefix = unique("it");
    c.topics.partitions = 3;
    c.consumer.session_timeout_ms = 6_000;
    c.consumer.heartbeat_interval_ms = 1_000;
    c.consumer.commit_interval_ms = 200;
    c.consumer.retry = RetryConfig::Fixed {
        max_attempts: 3,
        delay_ms: 20,
    };
    c
}

/// Reads `topic` from the beginning: at least `expected` records (unless
/// `timeout` passes first), then on until nothing new arrives for a second.
/// Sorted by partition, then offset.
/// (Reading up to the high watermarks would stop early on an open
/// transaction's records; a quiet second is simpler and enough here.)
pub fn read_topic(
    brokers: &str,
    topic: &str,
    expected: usize,
    timeout: Duration,
) -> Vec<KafkaRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("reader consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let partitions: Vec<i32> = metadata
        .topics()
        .first()
        .map(|t| t.partitions().iter().map(|p| p.id()).collect())
        .unwrap_or_default();
    assert!(!partitions.is_empty(), "topic {topic} has no partitions");
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let deadline = Instant::now() + timeout;
    let mut last_new = Instant::now();
    let mut records = Vec::new();
    while Instant::now() < deadline
        && (records.len() < expected || last_new.elapsed() < Duration::from_secs(1))
    {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            records.push(KafkaRecord::from_message(&m.expect("read")));
            last_new = Instant::now();
        }
    }
    records.sort_by_key(|r| (r.partition, r.offset));
    records
}

/// Waits until `check` holds, or panics with `what` after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
