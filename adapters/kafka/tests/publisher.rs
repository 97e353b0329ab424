//! The publisher names topics by category or bounded context, creates them
//! with the configured partitions, keys records by stream (one stream, one
//! partition, in order), and writes CloudEvents binary mode with the codec's
//! bytes as the value.

mod common;

use std::time::Duration;

use orchestrix::{EventRecord, RecordedEvent, StreamId};
use orchestrix_kafka::KafkaPublisher;
use orchestrix_kafka::rdkafka::ClientConfig;
use orchestrix_kafka::rdkafka::consumer::{BaseConsumer, Consumer};

fn event(stream: &str, revision: u64, position: u64, source: &str) -> RecordedEvent {
    let mut record = EventRecord::json(
        "com.acme.shop.Placed",
        2,
        &serde_json::json!({"z": 1, "a": [revision]}),
    )
    .with_source(source);
    // Bytes exactly as a codec wrote them, not re-serialized.
    record.data = bytes::Bytes::from(format!("{{ \"z\": 1, \"a\": [{revision}] }}"));
    record.metadata.correlation_id = Some("corr-1".into());
    RecordedEvent {
        stream_id: StreamId::parse(stream).unwrap(),
        revision,
        position,
        record,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_publisher_writes_keyed_binary_cloudevents_to_created_topics() {
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let mut config = common::test_config(&brokers);
    config.topics.template = "{prefix}.{context}".into();
    config.topics.partitions = 4;
    let publisher = KafkaPublisher::new(config.clone()).unwrap();
    let events: Vec<RecordedEvent> = (0..40)
        .map(|i| {
            event(
                &format!("order-{}", i % 8),
                i / 8,
                i + 1,
                if i % 2 == 0 { "/shop" } else { "/shop/v2" },
            )
        })
        .collect();
    let delivered = publisher.publish_events(&events).await.unwrap();
    let topic = format!("{}.shop", config.topics.prefix);
    assert!(
        delivered.iter().all(|d| d.topic == topic),
        "one topic per bounded context"
    );

    let admin: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let metadata = admin
        .fetch_metadata(Some(&topic), Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        metadata.topics()[0].partitions().len(),
        4,
        "created with the configured partitions"
    );

    let records = common::read_topic(&brokers, &topic, events.len(), Duration::from_secs(20));
    assert_eq!(records.len(), events.len());
    for stream in 0..8 {
        let key = format!("order-{stream}");
        let mine: Vec<_> = records
            .iter()
            .filter(|r| r.key_str() == Some(key.as_str()))
            .collect();
        assert!(
            mine.windows(2).all(|w| w[0].partition == w[1].partition),
            "{key} stays on one partition"
        );
        let revisions: Vec<String> = mine
            .iter()
            .map(|r| r.header_str("ce_streamrevision").unwrap().to_owned())
            .collect();
        assert_eq!(
            revisions,
            ["0", "1", "2", "3", "4"],
            "{key} in revision order"
        );
    }
    let first = records
        .iter()
        .find(|r| r.header_str("ce_globalposition") == Some("1"))
        .unwrap();
    assert_eq!(
        &first.payload[..],
        &events[0].record.data[..],
        "the value is the codec's bytes"
    );
    assert_eq!(first.header_str("ce_specversion"), Some("1.0"));
    assert_eq!(
        first.header_str("ce_id"),
        Some(events[0].record.id.to_string().as_str())
    );
    assert_eq!(first.header_str("ce_type"), Some("com.acme.shop.Placed"));
    assert_eq!(first.header_str("ce_source"), Some("/shop"));
    assert_eq!(
        first.header_str("ce_dataschema"),
        Some("urn:orchestrix:schema:com.acme.shop.Placed:2")
    );
    assert_eq!(first.header_str("ce_correlationid"), Some("corr-1"));
    assert_eq!(first.header_str("content-type"), Some("application/json"));
    let back = first.decode_event().unwrap();
    assert_eq!(
        (
            back.stream_id.as_str(),
            back.revision,
            back.position,
            back.record.schema_version
        ),
        ("order-0", 0, 1, 2)
    );
    assert_eq!(back.record.data, events[0].record.data);
}
