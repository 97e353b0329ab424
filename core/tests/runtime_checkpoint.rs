//! Checkpoints: the low-watermark never passes an unfinished event; a restart
//! re-delivers exactly what was not checkpointed (at-least-once), and an
//! idempotent handler ends with exact counts.

mod runtime_support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::runtime::{Consumer, Delivery, EventHandler, partition_for};
use orchestrix::{RecordedEvent, Result, Store, StreamId};
use runtime_support::{eventually, ticks, within};
use tokio::sync::Notify;
use uuid::Uuid;

/// Counts events per stream, deduplicated by event id (the idempotent
/// variant), and records every raw delivery. Blocks forever on `stuck` while
/// `blocking` is set, like a hung partition.
#[derive(Debug, Default)]
struct Idempotent {
    stuck: Mutex<Option<Uuid>>,
    blocking: AtomicBool,
    applied: Mutex<HashSet<Uuid>>,
    per_stream: Mutex<HashMap<StreamId, u64>>,
    deliveries: Mutex<Vec<u64>>,
    never: Notify,
}

#[async_trait]
impl EventHandler for Idempotent {
    fn name(&self) -> &str {
        "idempotent"
    }

    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> Result<()> {
        self.deliveries.lock().unwrap().push(event.position);
        let is_stuck = *self.stuck.lock().unwrap() == Some(event.id());
        if is_stuck && self.blocking.load(Ordering::SeqCst) {
            self.never.notified().await;
        }
        if self.applied.lock().unwrap().insert(event.id()) {
            *self
                .per_stream
                .lock()
                .unwrap()
                .entry(event.stream_id.clone())
                .or_default() += 1;
        }
        Ok(())
    }
}

/// Two streams on different partitions of `partitions`.
fn streams_on_different_partitions(partitions: u32) -> (StreamId, StreamId) {
    let a = StreamId::parse("account-a").unwrap();
    let pa = partition_for(a.as_str(), partitions);
    let b = (0..)
        .map(|i| StreamId::parse(format!("account-b{i}")).unwrap())
        .find(|b| partition_for(b.as_str(), partitions) != pa)
        .unwrap();
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_partition_holds_the_checkpoint_and_a_restart_redelivers_only_what_is_unfinished() {
    let store = Store::memory();
    let (slow, fast) = streams_on_different_partitions(2);
    // Positions 1..=5: handled normally.
    let warmup = StreamId::parse("warmup-1").unwrap();
    ticks(&store, &warmup, 5).await;
    // Position 6: blocks its partition.
    ticks(&store, &slow, 1).await;
    let stuck = store
        .read_all(5, 1, &Default::default())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(stuck.position, 6);
    // Positions 7..=16 on the other partition, 17 on the slow one.
    ticks(&store, &fast, 10).await;
    let head = ticks(&store, &slow, 1).await;
    assert_eq!(head, 17);

    let handler = Arc::new(Idempotent::default());
    *handler.stuck.lock().unwrap() = Some(stuck.id());
    handler.blocking.store(true, Ordering::SeqCst);
    let consumer = Consumer::builder(store.clone(), handler.clone())
        .partitions(2)
        .checkpoint_every(1)
        .checkpoint_interval(Duration::from_millis(5))
        .start()
        .await
        .unwrap();

    // The fast partition finishes everything it has...
    eventually("the fast stream to be handled", || {
        handler.per_stream.lock().unwrap().get(&fast) == Some(&10)
    })
    .await;
    // ...but the watermark, and so the checkpoint, stop below the stuck event.
    eventually("the checkpoint to be committed", || {
        consumer.committed_position() == Some(5)
    })
    .await;
    assert_eq!(consumer.processed_position(), 5);
    let lag = consumer.lag().await.unwrap();
    assert_eq!(lag.events, 12);
    tokio::time::sleep(Duration::from_millis(30)).await; // a few more commit rounds
    assert_eq!(
        store
            .backend()
            .checkpoints
            .load_checkpoint("idempotent")
            .await
            .unwrap(),
        Some(5)
    );

    // Crash.
    consumer.abort();
    let first_run: Vec<u64> = handler.deliveries.lock().unwrap().drain(..).collect();
    assert!(first_run.contains(&6) && !first_run.contains(&17));

    // Restart with the partition unblocked: everything after the checkpoint
    // comes again (the fast stream's events a second time), nothing before it.
    handler.blocking.store(false, Ordering::SeqCst);
    let consumer = Consumer::builder(store.clone(), handler.clone())
        .partitions(2)
        .start()
        .await
        .unwrap();
    within(
        "catch-up after restart",
        consumer.wait_until_caught_up(head),
    )
    .await
    .unwrap();
    let mut second_run: Vec<u64> = handler.deliveries.lock().unwrap().clone();
    second_run.sort_unstable();
    assert_eq!(second_run, (6..=17).collect::<Vec<_>>());

    // The idempotent handler counted every event exactly once.
    let per_stream = handler.per_stream.lock().unwrap().clone();
    assert_eq!(per_stream[&warmup], 5);
    assert_eq!(per_stream[&slow], 2);
    assert_eq!(per_stream[&fast], 10);
    assert_eq!(handler.applied.lock().unwrap().len(), 17);
    consumer.shutdown().await.unwrap();
    assert_eq!(
        store
            .backend()
            .checkpoints
            .load_checkpoint("idempotent")
            .await
            .unwrap(),
        Some(17)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_graceful_shutdown_a_restart_delivers_only_new_events() {
    let store = Store::memory();
    let s = StreamId::parse("order-1").unwrap();
    let head = ticks(&store, &s, 20).await;
    let handler = Arc::new(Idempotent::default());
    let consumer = Consumer::builder(store.clone(), handler.clone())
        .partitions(4)
        .start()
        .await
        .unwrap();
    within("catch-up", consumer.wait_until_caught_up(head))
        .await
        .unwrap();
    consumer.shutdown().await.unwrap();
    assert_eq!(handler.deliveries.lock().unwrap().len(), 20);

    let head = ticks(&store, &s, 3).await;
    let consumer = Consumer::builder(store.clone(), handler.clone())
        .partitions(4)
        .start()
        .await
        .unwrap();
    within("catch-up", consumer.wait_until_caught_up(head))
        .await
        .unwrap();
    assert_eq!(handler.deliveries.lock().unwrap().len(), 23);
    assert_eq!(handler.per_stream.lock().unwrap()[&s], 23);
    consumer.shutdown().await.unwrap();
}
