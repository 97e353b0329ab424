//! Kafka transactions, for real (Apache Kafka, `read_committed`): the
//! transactional relay publisher commits each batch atomically, resumes from
//! what the topic holds when its checkpoint is stale (a crash between Kafka's
//! commit and the checkpoint), so no event is published twice, fences a
//! zombie with the same transactional id, and leaves nothing of an aborted
//! batch visible to `read_committed` readers.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use orchestrix::relay::{Publisher, Relay, RelayConfig};
use orchestrix::runtime::RetryPolicy;
use orchestrix::store::ExpectedRevision;
use orchestrix::{EventRecord, RecordedEvent, Store, StreamId};
use orchestrix_kafka::rdkafka::ClientConfig;
use orchestrix_kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use orchestrix_kafka::{KafkaConfig, KafkaRecord, TransactionalPublisher};
use serde_json::json;

async fn append(store: &Store, streams: usize, per_stream: usize, round: usize) {
    for n in 0..per_stream {
        for s in 0..streams {
            let stream = StreamId::new("order", &format!("{s}")).unwrap();
            let record =
                EventRecord::json("com.acme.shop.Changed", 1, &json!({"round": round, "n": n}));
            store
                .append(&stream, ExpectedRevision::Any, vec![record])
                .await
                .unwrap();
        }
    }
}

fn relay_config() -> RelayConfig {
    RelayConfig {
        batch: 40,
        retry: RetryPolicy::fixed(3, Duration::from_millis(50)),
        ..RelayConfig::default()
    }
}

/// Every record of the topic as (stream, revision, position), checking that
/// each is a well-formed CloudEvent keyed by its stream.
fn published(brokers: &str, topic: &str, expected: usize) -> Vec<(String, u64, u64)> {
    common::read_topic(brokers, topic, expected, Duration::from_secs(60))
        .iter()
        .map(|r: &KafkaRecord| {
            let e = r.decode_event().expect("an Orchestrix CloudEvent");
            assert_eq!(r.key_str(), Some(e.stream_id.as_str()));
            (e.stream_id.to_string(), e.revision, e.position)
        })
        .collect()
}

/// Each position exactly once, and each stream's revisions 0.. in order.
fn assert_exactly_once(records: &[(String, u64, u64)], head: u64) {
    let mut positions: Vec<u64> = records.iter().map(|r| r.2).collect();
    positions.sort_unstable();
    let expected: Vec<u64> = (1..=head).collect();
    assert_eq!(
        positions.len(),
        expected.len(),
        "{} records for {head} events: duplicates or losses",
        records.len()
    );
    assert_eq!(positions, expected, "every position exactly once");
    let mut next: BTreeMap<&str, u64> = BTreeMap::new();
    for (stream, revision, _) in records {
        let n = next.entry(stream).or_insert(0);
        assert_eq!(
            *revision, *n,
            "{stream}: revisions in order on its partition"
        );
        *n += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_transactional_relay_resumes_from_the_topic_when_its_checkpoint_is_stale() {
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let config = common::test_config(&brokers);
    let topic = config.topics.topic_for_category("order");
    let txid = common::unique("relay");
    let store = Store::memory();

    append(&store, 12, 10, 0).await;
    let first = store.head_position().await.unwrap();
    let publisher = Arc::new(TransactionalPublisher::new(config.clone(), &txid).unwrap());
    assert_eq!(
        publisher.published_up_to().await.unwrap(),
        None,
        "a fresh topic holds nothing"
    );
    let relay = Relay::start(store.clone(), publisher, relay_config())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), relay.wait_for(first))
        .await
        .expect("relay caught up")
        .unwrap();
    relay.shutdown().await.unwrap();

    // The process died after Kafka committed but before the checkpoint was
    // saved: the store's checkpoint is behind what the topic holds.
    store
        .backend()
        .checkpoints
        .save_checkpoint("relay:kafka", first / 3)
        .await
        .unwrap();
    append(&store, 12, 5, 1).await;
    let head = store.head_position().await.unwrap();

    let publisher = Arc::new(TransactionalPublisher::new(config.clone(), &txid).unwrap());
    assert_eq!(
        publisher.published_up_to().await.unwrap(),
        Some(first),
        "the topic tells how far the committed prefix goes"
    );
    let relay = Relay::start(store.clone(), publisher, relay_config())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), relay.wait_for(head))
        .await
        .expect("relay caught up")
        .unwrap();
    relay.shutdown().await.unwrap();

    let records = published(&brokers, &topic, usize::try_from(head).unwrap());
    assert_exactly_once(&records, head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_a_second_relay_with_the_same_transactional_id_fences_the_first() {
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let config = common::test_config(&brokers);
    let topic = config.topics.topic_for_category("order");
    let txid = common::unique("relay");
    let store = Store::memory();
    append(&store, 4, 10, 0).await;
    let events: Vec<RecordedEvent> = store
        .read_all(0, 1_000, &orchestrix::store::Filter::all())
        .await
        .unwrap();
    let (batch1, batch2) = events.split_at(20);

    let old = TransactionalPublisher::new(config.clone(), &txid).unwrap();
    old.publish(batch1).await.unwrap();

    // A replacement starts (a new pod while the old one still runs).
    let new = TransactionalPublisher::new(config.clone(), &txid).unwrap();
    assert_eq!(new.published_up_to().await.unwrap(), Some(20));

    // The zombie cannot publish any more, and says so permanently.
    let err = old.publish(batch2).await.unwrap_err();
    assert!(
        !err.is_transient(),
        "a fenced producer must stop, not retry: {err}"
    );
    new.publish(batch2).await.unwrap();

    let records = published(&brokers, &topic, events.len());
    assert_exactly_once(&records, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_aborted_transactions_are_invisible_to_read_committed_readers() {
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let config: KafkaConfig = common::test_config(&brokers);
    let topic = config.topics.topic_for_category("order");
    orchestrix_kafka::ensure_topic(&config, &topic, 1)
        .await
        .unwrap();
    let txid = common::unique("raw");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("transactional.id", &txid)
        .create()
        .unwrap();
    let t = Duration::from_secs(30);
    tokio::task::spawn_blocking(move || {
        producer.init_transactions(t).unwrap();
        for (commit, n) in [(false, 5), (true, 3), (false, 2)] {
            producer.begin_transaction().unwrap();
            for i in 0..n {
                producer
                    .send(
                        BaseRecord::to(&topic)
                            .key("k")
                            .payload(&format!("{commit}-{i}")),
                    )
                    .unwrap();
            }
            producer.flush(t).unwrap();
            if commit {
                producer.commit_transaction(t).unwrap();
            } else {
                producer.abort_transaction(t).unwrap();
            }
        }
    })
    .await
    .unwrap();

    let topic = config.topics.topic_for_category("order");
    // Fewer than expected on purpose: the reader stops after a quiet second.
    let committed = common::read_topic(&brokers, &topic, 3, Duration::from_secs(30));
    let values: Vec<&[u8]> = committed.iter().map(|r| &r.payload[..]).collect();
    assert_eq!(
        values,
        [&b"true-0"[..], b"true-1", b"true-2"],
        "read_committed sees the committed batch only"
    );
    // The TransactionalPublisher's scan ignores the aborted records too (and
    // these records carry no position at all).
    let scan = TransactionalPublisher::new(config, common::unique("scan")).unwrap();
    assert_eq!(scan.published_up_to().await.unwrap(), None);
}
