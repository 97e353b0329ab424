//! Partitioned consumer: per-stream order, exactly-once delivery without
//! failures, filtering, lag, pause, shutdown, telemetry.

mod runtime_support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::runtime::{Consumer, Delivery, EventHandler, StartFrom, partition_for};
use orchestrix::store::{ExpectedRevision, Filter};
use orchestrix::{RecordedEvent, Result, Store, StreamId};
use runtime_support::{WAIT, append, eventually, old_record, record, stream, ticks, within};
use serde_json::json;
use tokio::sync::Semaphore;

/// Checks that every stream's events arrive in revision order, each once, on
/// the partition the stream hashes to.
#[derive(Debug)]
struct OrderChecker {
    partitions: u32,
    next_revision: Mutex<HashMap<StreamId, u64>>,
    seen: Mutex<HashSet<uuid::Uuid>>,
    violations: Mutex<Vec<String>>,
    handled: AtomicU64,
}

impl OrderChecker {
    fn new(partitions: u32) -> Self {
        Self {
            partitions,
            next_revision: Mutex::default(),
            seen: Mutex::default(),
            violations: Mutex::default(),
            handled: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl EventHandler for OrderChecker {
    fn name(&self) -> &str {
        "order-checker"
    }

    async fn handle(&self, event: &RecordedEvent, delivery: &Delivery) -> Result<()> {
        let expected_partition = partition_for(event.stream_id.as_str(), self.partitions);
        if delivery.partition != expected_partition {
            self.violations.lock().unwrap().push(format!(
                "{} on partition {}",
                event.stream_id, delivery.partition
            ));
        }
        {
            let mut next = self.next_revision.lock().unwrap();
            let expected = next.entry(event.stream_id.clone()).or_default();
            if event.revision != *expected {
                self.violations.lock().unwrap().push(format!(
                    "{} got revision {} expecting {}",
                    event.stream_id, event.revision, expected
                ));
            }
            *expected = event.revision + 1;
        }
        // Let other partitions run in between, so interleavings happen.
        tokio::task::yield_now().await;
        if !self.seen.lock().unwrap().insert(event.id()) {
            self.violations
                .lock()
                .unwrap()
                .push(format!("event {} handled twice", event.id()));
        }
        self.handled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn per_stream_order_holds_with_8_partitions_and_1000_streams() {
    const STREAMS: usize = 1000;
    const PER_STREAM: u64 = 6;
    let store = Store::memory();
    let streams: Arc<Vec<StreamId>> = Arc::new((0..STREAMS).map(|_| stream("account")).collect());
    // Half of every stream exists before the consumer starts (catch-up)...
    for s in streams.iter() {
        ticks(&store, s, PER_STREAM / 2).await;
    }
    let checker = Arc::new(OrderChecker::new(8));
    let consumer = Consumer::builder(store.clone(), checker.clone())
        .partitions(8)
        .batch_size(100)
        .buffer(64)
        .checkpoint_every(250)
        .start()
        .await
        .unwrap();
    // ...and the rest is appended concurrently, one event at a time, while it
    // consumes (live).
    let mut writers = Vec::new();
    for w in 0..8 {
        let (store, streams) = (store.clone(), streams.clone());
        writers.push(tokio::spawn(async move {
            for _ in 0..PER_STREAM / 2 {
                for s in streams.iter().skip(w).step_by(8) {
                    store
                        .append(
                            s,
                            ExpectedRevision::Any,
                            vec![record("com.acme.Tick", json!({}))],
                        )
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let head = store.head_position().await.unwrap();
    assert_eq!(head, STREAMS as u64 * PER_STREAM);
    within(
        "the consumer to catch up",
        consumer.wait_until_caught_up(head),
    )
    .await
    .unwrap();

    assert_eq!(
        checker.violations.lock().unwrap().as_slice(),
        &[] as &[String]
    );
    assert_eq!(checker.handled.load(Ordering::Relaxed), head);
    assert_eq!(checker.seen.lock().unwrap().len() as u64, head);
    {
        let next = checker.next_revision.lock().unwrap();
        assert_eq!(next.len(), STREAMS);
        assert!(next.values().all(|&n| n == PER_STREAM));
    }
    assert!(consumer.lag().await.unwrap().is_caught_up());
    within("shutdown", consumer.shutdown()).await.unwrap();
    assert_eq!(
        store
            .backend()
            .checkpoints
            .load_checkpoint("order-checker")
            .await
            .unwrap(),
        Some(head)
    );
}

/// Counts events per stream category and remembers the order of positions.
#[derive(Debug, Default)]
struct Recorder {
    name: &'static str,
    filter: Filter,
    positions: Mutex<Vec<u64>>,
}

#[async_trait]
impl EventHandler for Recorder {
    fn name(&self) -> &str {
        self.name
    }
    fn filter(&self) -> Filter {
        self.filter.clone()
    }
    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> Result<()> {
        self.positions.lock().unwrap().push(event.position);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_consumer_sees_only_its_events_and_still_reaches_the_head() {
    let store = Store::memory();
    let (order, other) = (stream("order"), stream("invoice"));
    let mut wanted = Vec::new();
    for _ in 0..5 {
        wanted.push(append(&store, &order, "com.acme.Placed", json!({})).await);
        append(&store, &other, "com.acme.Billed", json!({})).await;
    }
    // The last events do not match: the position must still move past them.
    append(&store, &other, "com.acme.Billed", json!({})).await;
    let recorder = Arc::new(Recorder {
        name: "orders-only",
        filter: Filter::all().categories(["order"]),
        ..Default::default()
    });
    let consumer = Consumer::builder(store.clone(), recorder.clone())
        .start()
        .await
        .unwrap();
    let head = within("catch-up", consumer.catch_up()).await.unwrap();
    assert_eq!(head, 11);
    assert_eq!(*recorder.positions.lock().unwrap(), wanted);
    assert!(consumer.lag().await.unwrap().is_caught_up());

    // Live: a non-matching tail is passed too.
    wanted.push(append(&store, &order, "com.acme.Placed", json!({})).await);
    let head = append(&store, &other, "com.acme.Billed", json!({})).await;
    within("live catch-up", consumer.wait_until_caught_up(head))
        .await
        .unwrap();
    assert_eq!(*recorder.positions.lock().unwrap(), wanted);
    consumer.shutdown().await.unwrap();
    assert_eq!(
        store
            .backend()
            .checkpoints
            .load_checkpoint("orders-only")
            .await
            .unwrap(),
        Some(head)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_positions_follow_the_policy() {
    let store = Store::memory();
    let s = stream("order");
    ticks(&store, &s, 3).await;

    let from_end = Arc::new(Recorder {
        name: "from-end",
        ..Default::default()
    });
    let consumer = Consumer::builder(store.clone(), from_end.clone())
        .start_from(StartFrom::End)
        .start()
        .await
        .unwrap();
    let head = ticks(&store, &s, 2).await;
    within("catch-up", consumer.wait_until_caught_up(head))
        .await
        .unwrap();
    assert_eq!(*from_end.positions.lock().unwrap(), vec![4, 5]);
    consumer.shutdown().await.unwrap();

    // A stored checkpoint wins over "or end"...
    let again = Arc::new(Recorder {
        name: "from-end",
        ..Default::default()
    });
    let consumer = Consumer::builder(store.clone(), again.clone())
        .start_from(StartFrom::CheckpointOrEnd)
        .start()
        .await
        .unwrap();
    let head = ticks(&store, &s, 1).await;
    within("catch-up", consumer.wait_until_caught_up(head))
        .await
        .unwrap();
    assert_eq!(*again.positions.lock().unwrap(), vec![6]);
    consumer.shutdown().await.unwrap();

    // ...and "beginning" ignores it.
    let replay = Arc::new(Recorder {
        name: "from-end",
        ..Default::default()
    });
    let consumer = Consumer::builder(store.clone(), replay.clone())
        .start_from(StartFrom::Beginning)
        .start()
        .await
        .unwrap();
    within("catch-up", consumer.catch_up()).await.unwrap();
    assert_eq!(
        *replay.positions.lock().unwrap(),
        (1..=6).collect::<Vec<_>>()
    );
    consumer.shutdown().await.unwrap();
}

/// Blocks in `handle` until a permit is available.
#[derive(Debug)]
struct Gated {
    gate: Semaphore,
    handled: AtomicU64,
    started: AtomicU64,
}

impl Gated {
    fn closed() -> Self {
        Self {
            gate: Semaphore::new(0),
            handled: AtomicU64::new(0),
            started: AtomicU64::new(0),
        }
    }
    fn open(&self) {
        self.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    }
}

#[async_trait]
impl EventHandler for Gated {
    fn name(&self) -> &str {
        "gated"
    }
    async fn handle(&self, _: &RecordedEvent, _: &Delivery) -> Result<()> {
        self.started.fetch_add(1, Ordering::SeqCst);
        self.gate.acquire().await.unwrap().forget();
        self.handled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_positive_while_blocked_or_paused_and_zero_after_catching_up() {
    let store = Store::memory();
    let s = stream("order");
    store
        .append(
            &s,
            ExpectedRevision::Any,
            (0..5).map(|_| old_record(120)).collect(),
        )
        .await
        .unwrap();
    let handler = Arc::new(Gated::closed());
    let consumer = Consumer::builder(store.clone(), handler.clone())
        .start()
        .await
        .unwrap();

    // Blocked in the handler: the oldest unfinished event is in flight.
    eventually("the first event to reach the handler", || {
        handler.started.load(Ordering::SeqCst) == 1
    })
    .await;
    let lag = consumer.lag().await.unwrap();
    assert_eq!(lag.events, 5);
    assert!(lag.behind >= Duration::from_secs(100), "{lag:?}");
    assert!(lag.seconds() >= 100.0);

    handler.open();
    within("catch-up", consumer.wait_until_caught_up(5))
        .await
        .unwrap();
    assert_eq!(
        consumer.lag().await.unwrap(),
        orchestrix::runtime::Lag::default()
    );

    // Paused: nothing is read, the next event to read is the oldest.
    consumer.pause();
    store
        .append(
            &s,
            ExpectedRevision::Any,
            vec![old_record(300), old_record(10)],
        )
        .await
        .unwrap();
    let lag = consumer.lag().await.unwrap();
    assert_eq!(lag.events, 2);
    assert!(lag.behind >= Duration::from_secs(290), "{lag:?}");
    assert_eq!(consumer.processed_position(), 5);

    consumer.resume();
    within("catch-up after resume", consumer.wait_until_caught_up(7))
        .await
        .unwrap();
    let lag = consumer.lag().await.unwrap();
    assert!(lag.is_caught_up());
    assert_eq!(lag.behind, Duration::ZERO);
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_events_and_commits() {
    let store = Store::memory();
    for _ in 0..4 {
        ticks(&store, &stream("order"), 25).await;
    }
    let handler = Arc::new(Gated::closed());
    let consumer = Consumer::builder(store.clone(), handler.clone())
        .partitions(4)
        // No periodic commits: only shutdown commits.
        .checkpoint_every(1_000_000)
        .checkpoint_interval(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    eventually("an event to reach the handler", || {
        handler.started.load(Ordering::SeqCst) >= 1
    })
    .await;
    assert_eq!(
        store
            .backend()
            .checkpoints
            .load_checkpoint("gated")
            .await
            .unwrap(),
        None
    );

    let monitor = consumer.monitor();
    let stopping = tokio::spawn(consumer.shutdown());
    handler.open();
    within("shutdown", stopping).await.unwrap().unwrap();

    let handled = handler.handled.load(Ordering::SeqCst);
    assert!(handled >= 1);
    let checkpoint = store
        .backend()
        .checkpoints
        .load_checkpoint("gated")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Some(checkpoint), monitor.committed_position());
    assert_eq!(checkpoint, monitor.processed_position());
    // Nothing is checkpointed that was not handled.
    assert!(
        checkpoint <= handled,
        "checkpoint {checkpoint} > handled {handled}"
    );
    assert!(monitor.is_stopped());
    assert!(monitor.wait_until_caught_up(u64::MAX).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_are_committed_every_k_events_while_running() {
    let store = Store::memory();
    let head = ticks(&store, &stream("order"), 50).await;
    let recorder = Arc::new(Recorder {
        name: "every-10",
        ..Default::default()
    });
    let consumer = Consumer::builder(store.clone(), recorder)
        .checkpoint_every(10)
        .checkpoint_interval(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    within("catch-up", consumer.wait_until_caught_up(head))
        .await
        .unwrap();
    let checkpoints = store.backend().checkpoints.clone();
    let mut stored = None;
    within("a commit", async {
        while stored.is_none() {
            stored = checkpoints.load_checkpoint("every-10").await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(stored.unwrap() >= 10);
    // Dropping the handle stops the consumer like a crash: nothing more is
    // committed, whatever the position was.
    drop(consumer);
}

/// A minimal subscriber that records the name and fields of every new span.
mod capture {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    pub type Spans = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

    #[derive(Default)]
    pub struct Capture {
        pub spans: Spans,
        next: AtomicU64,
    }

    struct Fields<'a>(&'a mut BTreeMap<String, String>);

    impl Visit for Fields<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, attrs: &Attributes<'_>) -> Id {
            let mut fields = BTreeMap::new();
            attrs.record(&mut Fields(&mut fields));
            self.spans
                .lock()
                .unwrap()
                .push((attrs.metadata().name().to_owned(), fields));
            Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) + 1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, _: &Event<'_>) {}
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }
}

#[tokio::test(flavor = "current_thread")]
async fn every_handler_call_runs_in_an_orchestrix_handle_span() {
    let subscriber = capture::Capture::default();
    let spans = subscriber.spans.clone();
    let _default = tracing::subscriber::set_default(subscriber);

    let store = Store::memory();
    let s = StreamId::parse("order-span").unwrap();
    let head = ticks(&store, &s, 2).await;
    let recorder = Arc::new(Recorder {
        name: "spans",
        ..Default::default()
    });
    let consumer = Consumer::builder(store.clone(), recorder)
        .partitions(3)
        .start()
        .await
        .unwrap();
    tokio::time::timeout(WAIT, consumer.wait_until_caught_up(head))
        .await
        .unwrap()
        .unwrap();
    consumer.shutdown().await.unwrap();

    let spans = spans.lock().unwrap();
    let handle: Vec<&BTreeMap<String, String>> = spans
        .iter()
        .filter(|(name, _)| name == "orchestrix.handle")
        .map(|(_, f)| f)
        .collect();
    assert_eq!(handle.len(), 2, "{spans:?}");
    let partition = partition_for("order-span", 3).to_string();
    for (i, fields) in handle.iter().enumerate() {
        assert_eq!(fields["handler"], "spans");
        assert_eq!(fields["event_type"], "com.acme.Tick");
        assert_eq!(fields["stream"], "order-span");
        assert_eq!(fields["position"], (i + 1).to_string());
        assert_eq!(fields["partition"], partition);
        assert_eq!(fields["attempt"], "1");
    }
}
