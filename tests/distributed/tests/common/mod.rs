//! What the Kafka tests of this crate share: unique names per run and a
//! reader of a whole topic that knows nothing of Orchestrix's consumers.

// Each test file uses a part of this module.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use orchestrix_kafka::KafkaRecord;
use orchestrix_kafka::rdkafka::ClientConfig;
use orchestrix_kafka::rdkafka::consumer::{BaseConsumer, Consumer as _};
use orchestrix_kafka::rdkafka::error::KafkaError;
use orchestrix_kafka::rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// `prefix` and a suffix of this run, so that reruns on one broker do not meet.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}{:x}", nanos ^ u128::from(std::process::id()))
}

/// Every record of `topic`, partition by partition, to its end.
pub fn read_all(brokers: &str, topic: &str) -> Vec<KafkaRecord> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("independent"))
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.len() < partitions.len() {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                done.insert(p);
            }
            Some(Err(e)) => panic!("{e}"),
            Some(Ok(m)) => out.push(KafkaRecord::from_message(&m)),
        }
    }
    out
}
