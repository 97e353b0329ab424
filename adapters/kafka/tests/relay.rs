//! The core relay with the Kafka publisher: stopped and restarted from its
//! checkpoint, with acks lost along the way, nothing is lost or reordered
//! (duplicates of an unacknowledged batch are allowed: at-least-once), and
//! the records are CloudEvents in binary mode keyed by stream.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::relay::{Publisher, Relay, RelayConfig};
use orchestrix::runtime::RetryPolicy;
use orchestrix::store::ExpectedRevision;
use orchestrix::{EventRecord, RecordedEvent, Store, StreamId};
use orchestrix_kafka::KafkaPublisher;
use serde_json::json;

/// Publishes, but reports every third batch as failed after it was written
/// (a lost ack), and fails every seventh before writing.
#[derive(Debug)]
struct LosesAcks {
    inner: KafkaPublisher,
    calls: AtomicU32,
}

#[async_trait]
impl Publisher for LosesAcks {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn publish(&self, events: &[RecordedEvent]) -> orchestrix::Result<()> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if n.is_multiple_of(7) {
            return Err(orchestrix::Error::backend(
                "kafka",
                "publish",
                true,
                "broker unreachable (injected)",
            ));
        }
        self.inner.publish(events).await?;
        if n.is_multiple_of(3) {
            return Err(orchestrix::Error::backend(
                "kafka",
                "publish",
                true,
                "ack lost (injected)",
            ));
        }
        Ok(())
    }
}

async fn append_round(store: &Store, streams: usize, per_stream: u64, round: u64) {
    for r in 0..per_stream {
        for s in 0..streams {
            let stream = StreamId::new("order", &format!("{s}")).unwrap();
            let record =
                EventRecord::json("com.acme.shop.Changed", 1, &json!({"round": round, "n": r}));
            store
                .append(&stream, ExpectedRevision::Any, vec![record])
                .await
                .unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_relay_restarts_from_its_checkpoint_without_loss() {
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let config = common::test_config(&brokers);
    let topic = config.topics.topic_for_category("order");
    let store = Store::memory();
    let relay_config = RelayConfig {
        batch: 50,
        retry: RetryPolicy::fixed(u32::MAX, Duration::from_millis(10)),
        ..RelayConfig::default()
    };
    let (streams, per_round) = (30_usize, 20_u64);

    append_round(&store, streams, per_round, 0).await;
    let publisher = Arc::new(LosesAcks {
        inner: KafkaPublisher::new(config.clone()).unwrap(),
        calls: AtomicU32::new(0),
    });
    let relay = Relay::start(store.clone(), publisher.clone(), relay_config.clone())
        .await
        .unwrap();
    relay.wait_for(300).await.unwrap();
    relay.shutdown().await.unwrap();
    let checkpoint = store
        .backend()
        .checkpoints
        .load_checkpoint("relay:kafka")
        .await
        .unwrap()
        .unwrap();
    assert!(checkpoint >= 300, "checkpoint {checkpoint}");

    // More events while no relay runs; a new relay (a new process, say) resumes.
    append_round(&store, streams, per_round, 1).await;
    let head = store.head_position().await.unwrap();
    let publisher = Arc::new(LosesAcks {
        inner: KafkaPublisher::new(config.clone()).unwrap(),
        calls: AtomicU32::new(0),
    });
    let relay = Relay::start(store.clone(), publisher, relay_config)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), relay.wait_for(head))
        .await
        .expect("relay caught up")
        .unwrap();
    relay.shutdown().await.unwrap();
    assert_eq!(
        store
            .backend()
            .checkpoints
            .load_checkpoint("relay:kafka")
            .await
            .unwrap(),
        Some(head)
    );

    let total = usize::try_from(head).unwrap();
    // Read at least everything; duplicates make it more.
    let records = common::read_topic(&brokers, &topic, total, Duration::from_secs(60));
    let mut positions = BTreeSet::new();
    let mut next_revision: BTreeMap<String, u64> = BTreeMap::new();
    let mut partition_of: BTreeMap<String, i32> = BTreeMap::new();
    let mut duplicates = 0;
    for r in &records {
        let event = r
            .decode_event()
            .expect("every record is an Orchestrix CloudEvent");
        let stream = event.stream_id.to_string();
        assert_eq!(r.key_str(), Some(stream.as_str()), "key = stream id");
        assert_eq!(r.header_str("ce_specversion"), Some("1.0"));
        assert_eq!(r.header_str("ce_subject"), Some(stream.as_str()));
        assert_eq!(r.header_str("ce_partitionkey"), Some(stream.as_str()));
        assert_eq!(
            *partition_of.entry(stream.clone()).or_insert(r.partition),
            r.partition,
            "{stream} on one partition"
        );
        positions.insert(event.position);
        let next = next_revision.entry(stream.clone()).or_insert(0);
        if event.revision == *next {
            *next += 1;
        } else {
            assert!(
                event.revision < *next,
                "{stream}: revision {} after {} — a gap",
                event.revision,
                *next
            );
            duplicates += 1;
        }
    }
    assert_eq!(positions.len(), total, "every position published");
    assert_eq!(positions.first().copied(), Some(1));
    assert_eq!(positions.last().copied(), Some(head));
    assert!(
        next_revision.values().all(|n| *n == 2 * per_round),
        "every stream complete, in order: {next_revision:?}"
    );
    assert!(
        duplicates > 0,
        "lost acks were injected, so some batches went out twice"
    );
    eprintln!(
        "{} records for {total} events ({duplicates} redelivered after injected failures)",
        records.len()
    );
}
