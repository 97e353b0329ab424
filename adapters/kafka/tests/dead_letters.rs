//! Dead-letter routing: an undecodable record, a permanently failing event and
//! an event whose transient failures outlast the retry policy all go to the
//! dead-letter topic with the original headers and the error headers; a flaky
//! event succeeds on retry; the partition keeps moving and the worker stays
//! alive; every offset, dead-lettered ones included, is committed.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::runtime::{Delivery, EventHandler};
use orchestrix::{EventRecord, RecordedEvent, StreamId};
use orchestrix_kafka::rdkafka::ClientConfig;
use orchestrix_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use orchestrix_kafka::rdkafka::message::{Header, OwnedHeaders};
use orchestrix_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use orchestrix_kafka::rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use orchestrix_kafka::{ConsumerWorker, KafkaPublisher, dead_letter};
use serde_json::json;

#[derive(Debug, Default)]
struct Picky {
    handled: Mutex<Vec<(String, u64, u32)>>,
}

#[async_trait]
impl EventHandler for Picky {
    fn name(&self) -> &str {
        "picky"
    }

    async fn handle(&self, event: &RecordedEvent, delivery: &Delivery) -> orchestrix::Result<()> {
        let payload: serde_json::Value = serde_json::from_slice(&event.record.data).unwrap();
        match payload["fail"].as_str() {
            Some("permanent") => {
                return Err(orchestrix::Error::corrupted("payload", "poison pill"));
            }
            Some("always") => {
                return Err(orchestrix::Error::backend(
                    "test",
                    "handle",
                    true,
                    "still down",
                ));
            }
            Some("twice") if delivery.attempt < 3 => {
                return Err(orchestrix::Error::backend("test", "handle", true, "flaky"));
            }
            _ => {}
        }
        self.handled.lock().unwrap().push((
            event.stream_id.to_string(),
            event.revision,
            delivery.attempt,
        ));
        Ok(())
    }
}

fn event(stream: &StreamId, revision: u64, payload: serde_json::Value) -> RecordedEvent {
    RecordedEvent {
        stream_id: stream.clone(),
        revision,
        position: revision + 1,
        record: EventRecord::json("com.acme.Test", 1, &payload),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_dead_letters_poison_and_exhausted_messages_and_keeps_going() {
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let config = common::test_config(&brokers);
    let stream = StreamId::parse("acct-1").unwrap();
    let publisher = KafkaPublisher::new(config.clone()).unwrap();
    let topic = publisher.config().topics.topic_for_category("acct");

    publisher
        .publish_events(&[
            event(&stream, 0, json!({"n": 0})),
            event(&stream, 1, json!({"fail": "permanent"})),
            event(&stream, 2, json!({"n": 2})),
        ])
        .await
        .unwrap();
    // A record Orchestrix did not write, on the same partition (same key).
    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let garbage_headers = OwnedHeaders::new().insert(Header {
        key: "x-origin",
        value: Some("legacy".as_bytes()),
    });
    let garbage = raw
        .send(
            FutureRecord::to(&topic)
                .key("acct-1")
                .payload("not an event")
                .headers(garbage_headers),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    let delivered = publisher
        .publish_events(&[
            event(&stream, 3, json!({"fail": "twice"})),
            event(&stream, 4, json!({"fail": "always"})),
            event(&stream, 5, json!({"n": 5})),
        ])
        .await
        .unwrap();
    assert_eq!(
        delivered[0].partition, garbage.partition,
        "same key, same partition"
    );

    let handler = Arc::new(Picky::default());
    let worker = ConsumerWorker::builder(config.clone())
        .topic(&topic)
        .start(handler.clone())
        .await
        .unwrap();
    common::eventually(
        "revision 5 handled and three dead letters",
        Duration::from_secs(40),
        || {
            handler.handled.lock().unwrap().iter().any(|h| h.1 == 5)
                && worker.stats().dead_lettered == 3
        },
    )
    .await;
    let handled: Vec<(u64, u32)> = handler
        .handled
        .lock()
        .unwrap()
        .iter()
        .map(|h| (h.1, h.2))
        .collect();
    assert_eq!(
        handled,
        vec![(0, 1), (2, 1), (3, 3), (5, 1)],
        "in order, poison skipped, flaky retried"
    );

    // Still alive: a later event is handled.
    publisher
        .publish_events(&[event(&stream, 6, json!({"n": 6}))])
        .await
        .unwrap();
    common::eventually("revision 6 handled", Duration::from_secs(20), || {
        handler.handled.lock().unwrap().iter().any(|h| h.1 == 6)
    })
    .await;
    assert!(worker.is_running());
    let stats = worker.stats();
    assert_eq!((stats.dead_lettered, stats.handled), (3, 5), "{stats:?}");
    let group = worker.group_id().to_owned();
    worker.shutdown().await.unwrap();

    let dlq = format!("{topic}.dlq");
    let letters = common::read_topic(&brokers, &dlq, 3, Duration::from_secs(20));
    assert_eq!(letters.len(), 3, "dead letters: {letters:?}");
    let mut by_offset = letters.clone();
    by_offset.sort_by_key(|r| {
        r.header_str(dead_letter::ORIGINAL_OFFSET)
            .unwrap()
            .parse::<i64>()
            .unwrap()
    });
    let [poison, undecodable, exhausted] = &by_offset[..] else {
        unreachable!()
    };

    for letter in &by_offset {
        assert_eq!(letter.header_str(dead_letter::CONSUMER), Some("picky"));
        assert_eq!(letter.header_str(dead_letter::GROUP), Some(group.as_str()));
        assert_eq!(
            letter.header_str(dead_letter::ORIGINAL_TOPIC),
            Some(topic.as_str())
        );
        assert_eq!(
            letter.header_str(dead_letter::ORIGINAL_PARTITION),
            Some(garbage.partition.to_string().as_str())
        );
        assert_eq!(letter.key_str(), Some("acct-1"), "original key kept");
    }
    assert_eq!(
        poison.header_str(dead_letter::ERROR_KIND),
        Some("corrupted")
    );
    assert_eq!(
        poison.header_str(dead_letter::ERROR_CLASS),
        Some("permanent")
    );
    assert_eq!(
        poison.header_str(dead_letter::ATTEMPTS),
        Some("1"),
        "permanent errors are not retried"
    );
    assert!(
        poison
            .header_str(dead_letter::ERROR)
            .unwrap()
            .contains("poison pill")
    );
    assert_eq!(
        poison.header_str("ce_type"),
        Some("com.acme.Test"),
        "original CloudEvents headers kept"
    );
    assert_eq!(poison.header_str("ce_streamrevision"), Some("1"));
    assert_eq!(poison.header_str("content-type"), Some("application/json"));
    assert_eq!(&poison.payload[..], br#"{"fail":"permanent"}"#);

    assert_eq!(
        undecodable.header_str(dead_letter::ERROR_KIND),
        Some("invalid_input")
    );
    assert_eq!(undecodable.header_str(dead_letter::ATTEMPTS), Some("1"));
    assert_eq!(
        undecodable.header_str(dead_letter::ORIGINAL_OFFSET),
        Some(garbage.offset.to_string().as_str())
    );
    assert_eq!(undecodable.header_str("x-origin"), Some("legacy"));
    assert_eq!(&undecodable.payload[..], b"not an event");

    assert_eq!(
        exhausted.header_str(dead_letter::ERROR_KIND),
        Some("backend")
    );
    assert_eq!(
        exhausted.header_str(dead_letter::ERROR_CLASS),
        Some("transient")
    );
    assert_eq!(
        exhausted.header_str(dead_letter::ATTEMPTS),
        Some("3"),
        "retried up to the policy's max"
    );

    let parsed = dead_letter::parse(exhausted).unwrap();
    assert_eq!(
        (
            parsed.consumer.as_str(),
            parsed.attempts,
            parsed.stream_id.as_deref()
        ),
        ("picky", 3, Some("acct-1"))
    );
    assert_eq!(parsed.event_type.as_deref(), Some("com.acme.Test"));

    // Every offset, the dead-lettered ones included, was committed.
    let check: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(&topic, garbage.partition);
    let committed = check
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    let offset = committed
        .find_partition(&topic, garbage.partition)
        .unwrap()
        .offset();
    assert_eq!(
        offset,
        Offset::Offset(delivered[2].offset + 2),
        "committed past the last event"
    );
}
