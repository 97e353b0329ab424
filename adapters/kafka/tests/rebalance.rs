//! Two in-process workers of one group with a tiny per-partition buffer and a
//! slow handler: partitions are paused and resumed by flow control, handed
//! over in a rebalance when the second worker joins, and every event is
//! handled exactly once in per-stream order (revoke drains and commits before
//! the new owner starts), then a graceful shutdown leaves the group.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::runtime::{Delivery, EventHandler};
use orchestrix::{EventRecord, RecordedEvent, StreamId};
use orchestrix_kafka::{ConsumerWorker, KafkaPublisher};
use serde_json::json;

#[derive(Debug, Default)]
struct Ledger {
    /// stream → revisions in handling order, across both workers.
    seen: Mutex<HashMap<String, Vec<u64>>>,
}

#[derive(Debug)]
struct Slow {
    ledger: Arc<Ledger>,
}

#[async_trait]
impl EventHandler for Slow {
    fn name(&self) -> &str {
        "slow"
    }

    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> orchestrix::Result<()> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.ledger
            .seen
            .lock()
            .unwrap()
            .entry(event.stream_id.to_string())
            .or_default()
            .push(event.revision);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_paused_partitions_resume_and_hand_over_in_order() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let mut config = common::test_config(&brokers);
    config.topics.partitions = 2;
    config.consumer.max_buffered_per_partition = 50;
    let topic = config.topics.topic_for_category("cart");
    let publisher = KafkaPublisher::new(config.clone()).unwrap();
    let (streams, revisions) = (20_u64, 20_u64);
    let events: Vec<RecordedEvent> = (0..revisions)
        .flat_map(|r| (0..streams).map(move |s| (s, r)))
        .enumerate()
        .map(|(i, (s, r))| RecordedEvent {
            stream_id: StreamId::new("cart", &s.to_string()).unwrap(),
            revision: r,
            position: u64::try_from(i).unwrap() + 1,
            record: EventRecord::json("com.acme.shop.ItemAdded", 1, &json!({"n": r})),
        })
        .collect();
    publisher.publish_events(&events).await.unwrap();
    let total = events.len();

    let ledger = Arc::new(Ledger::default());
    let group = common::unique("rebalance");
    let handled = |l: &Ledger| l.seen.lock().unwrap().values().map(Vec::len).sum::<usize>();
    let first = ConsumerWorker::builder(config.clone())
        .topic(&topic)
        .group_id(&group)
        .start(Arc::new(Slow {
            ledger: ledger.clone(),
        }))
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    common::eventually(
        "the first worker is under way",
        Duration::from_secs(30),
        || handled(&ledger) >= 40,
    )
    .await;
    eprintln!("first under way after {:?}", t0.elapsed());
    let second = ConsumerWorker::builder(config)
        .topic(&topic)
        .group_id(&group)
        .start(Arc::new(Slow {
            ledger: ledger.clone(),
        }))
        .await
        .unwrap();
    second
        .wait_for_assignment(Duration::from_secs(30))
        .await
        .unwrap();
    eprintln!(
        "second assigned after {:?}: {:?} {:?}",
        t0.elapsed(),
        first.assignment(),
        second.assignment()
    );
    common::eventually(
        "every event handled after the hand-over",
        Duration::from_secs(60),
        || handled(&ledger) >= total,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (a, b) = (first.stats(), second.stats());
    assert!(
        a.handled > 0 && b.handled > 0,
        "both workers handled events: {a:?} {b:?}"
    );
    assert!(
        a.pauses > 0,
        "flow control paused the first worker's partitions: {a:?}"
    );
    assert!(
        a.rebalances >= 3,
        "the first worker was assigned, revoked and assigned again: {a:?}"
    );
    assert_eq!(
        first.assignment().len() + second.assignment().len(),
        2,
        "each partition owned once"
    );
    for (stream, seen) in ledger.seen.lock().unwrap().iter() {
        let expected: Vec<u64> = (0..revisions).collect();
        assert_eq!(seen, &expected, "{stream}: every revision once, in order");
    }
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}
