//! Consumer tests against a live NATS server: dead letters, lease expiry,
//! rebalancing.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::{Error, RecordedEvent};
use orchestrix_nats::dead_letter::{
    ATTEMPTS_HEADER, CONSUMER_HEADER, ERROR_HEADER, ERROR_KIND_HEADER, GROUP_HEADER,
    SOURCE_SEQUENCE_HEADER, list_dead_letters,
};
use orchestrix_nats::{
    ConsumerHandle, NatsConfig, NatsConsumer, NatsDelivery, NatsHandler, NatsPublisher,
};

/// Records what it handles; fails on purpose by event type.
#[derive(Debug, Default)]
struct Recorder {
    seen: Mutex<Vec<(String, u64, u32, u64)>>,
    /// Per stream: the last revision applied.
    last: Mutex<HashMap<String, u64>>,
    violations: Mutex<Vec<String>>,
}

#[async_trait]
impl NatsHandler for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn handle(
        &self,
        event: &RecordedEvent,
        delivery: &NatsDelivery,
    ) -> orchestrix::Result<()> {
        self.seen.lock().unwrap().push((
            event.event_type().to_owned(),
            event.revision,
            delivery.attempt,
            delivery.stream_sequence,
        ));
        match event.event_type() {
            "test.Poison" => {
                return Err(Error::invalid("payload", "this event can never be applied"));
            }
            "test.Flaky" => {
                return Err(Error::Timeout {
                    operation: "flaky dependency".into(),
                    after: Duration::from_millis(1),
                });
            }
            _ => {}
        }
        let mut last = self.last.lock().unwrap();
        let stream = event.stream_id.to_string();
        match last.get(&stream) {
            Some(&l) if event.revision <= l => {} // a redelivery: at-least-once
            Some(&l) if event.revision != l + 1 => {
                self.violations
                    .lock()
                    .unwrap()
                    .push(format!("{stream}: revision {} after {l}", event.revision));
            }
            None if event.revision != 0 => {
                self.violations
                    .lock()
                    .unwrap()
                    .push(format!("{stream}: first revision {}", event.revision));
            }
            _ => {
                last.insert(stream, event.revision);
            }
        }
        Ok(())
    }
}

impl Recorder {
    fn applied(&self) -> u64 {
        self.last.lock().unwrap().values().map(|r| r + 1).sum()
    }
}

async fn start(config: &NatsConfig, handler: Arc<dyn NatsHandler>, worker: &str) -> ConsumerHandle {
    let mut config = config.clone();
    config.leases.worker_id = Some(worker.to_owned());
    NatsConsumer::builder(config)
        .nats_handler(handler)
        .group("projection")
        .start()
        .await
        .unwrap()
}

async fn wait_for(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn nats_dead_letters_carry_reasons_and_the_partition_keeps_going() {
    if !common::nats_available("nats_dead_letters").await {
        return;
    }
    let mut config = common::config(1);
    config.consumer.max_deliver = 3;
    let publisher = NatsPublisher::connect(config.clone()).await.unwrap();
    let recorder = Arc::new(Recorder::default());
    let worker = start(&config, recorder.clone(), "w1").await;

    let events = [
        common::recorded("order-1", 0, 1, "test.Ok"),
        common::recorded("order-1", 1, 2, "test.Poison"),
        common::recorded("order-1", 2, 3, "test.Ok"),
        common::recorded("order-1", 3, 4, "test.Flaky"),
        common::recorded("order-1", 4, 5, "test.Ok"),
    ];
    publisher.publish_events(&events[..2]).await.unwrap();
    // An undecodable message (no CloudEvents headers) on the same partition.
    let js = common::jetstream(&config).await;
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("ce-id", "not-a-cloudevent");
    js.publish_with_headers(config.partition_subject(0), headers, "garbage".into())
        .await
        .unwrap()
        .await
        .unwrap();
    publisher.publish_events(&events[2..]).await.unwrap();
    let last = common::recorded("order-1", 5, 6, "test.Ok");
    publisher
        .publish_events(std::slice::from_ref(&last))
        .await
        .unwrap();

    let ok_revisions = || -> Vec<u64> {
        recorder
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.0 == "test.Ok")
            .map(|s| s.1)
            .collect()
    };
    eventually("every good event handled", Duration::from_secs(30), || {
        ok_revisions().len() == 4
    })
    .await;
    eventually("three dead letters", Duration::from_secs(10), || {
        worker.stats().dead_lettered == 3
    })
    .await;
    assert_eq!(
        ok_revisions(),
        [0, 2, 4, 5],
        "in order, each once, past the failures"
    );
    let flaky_attempts: Vec<u32> = recorder
        .seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.0 == "test.Flaky")
        .map(|s| s.2)
        .collect();
    assert_eq!(
        flaky_attempts,
        [1, 2, 3],
        "a transient failure is redelivered up to max_deliver"
    );
    assert_eq!(worker.stats().retried, 2);

    let letters = common::read_stream(&js, &config.dead_letter_stream()).await;
    assert_eq!(letters.len(), 3, "one dead letter each");
    let by_kind = |kind: &str| {
        letters
            .iter()
            .find(|m| common::header(m, ERROR_KIND_HEADER).as_deref() == Some(kind))
            .unwrap()
    };
    let poison = letters
        .iter()
        .find(|m| common::header(m, "ce-type").as_deref() == Some("test.Poison"))
        .unwrap();
    assert_eq!(
        common::header(poison, ERROR_KIND_HEADER).as_deref(),
        Some("invalid_input")
    );
    assert!(
        common::header(poison, ERROR_HEADER)
            .unwrap()
            .contains("can never be applied")
    );
    assert_eq!(
        common::header(poison, ATTEMPTS_HEADER).as_deref(),
        Some("1"),
        "permanent errors are not retried"
    );
    assert_eq!(
        common::header(poison, CONSUMER_HEADER).as_deref(),
        Some("recorder"),
        "the consumer is the handler (what replay looks up)"
    );
    assert_eq!(
        common::header(poison, GROUP_HEADER).as_deref(),
        Some("projection")
    );
    assert_eq!(
        common::header(poison, "ce-id").unwrap(),
        events[1].id().to_string(),
        "original headers kept"
    );
    assert_eq!(poison.payload, events[1].record.data, "original body kept");
    let flaky = by_kind("timeout");
    assert_eq!(common::header(flaky, ATTEMPTS_HEADER).as_deref(), Some("3"));
    assert_eq!(
        common::header(flaky, "ce-type").as_deref(),
        Some("test.Flaky")
    );
    let garbage = letters
        .iter()
        .find(|m| &m.payload[..] == b"garbage")
        .expect("the undecodable message is a dead letter");
    assert_eq!(
        common::header(garbage, ERROR_KIND_HEADER).as_deref(),
        Some("invalid_input")
    );
    assert_eq!(
        common::header(garbage, SOURCE_SEQUENCE_HEADER).as_deref(),
        Some("3")
    );

    // The same, read back as core dead letters.
    let listed = list_dead_letters(&js, &config, 1, 10).await.unwrap();
    assert_eq!(listed.len(), 3);
    let poison = listed
        .iter()
        .map(|(_, l)| l)
        .find(|l| l.event_type.as_deref() == Some("test.Poison"))
        .unwrap();
    assert_eq!(
        (poison.consumer.as_str(), poison.attempts, poison.event_id),
        ("recorder", 1, Some(events[1].id()))
    );
    assert_eq!(poison.stream_id.as_deref(), Some("order-1"));

    worker.shutdown().await.unwrap();
    common::cleanup(&config).await;
}

#[tokio::test]
async fn nats_exceeding_max_deliveries_without_an_outcome_dead_letters() {
    if !common::nats_available("nats_max_deliveries").await {
        return;
    }
    // A handler that never finishes stands for a worker that crashes while
    // handling: the message is delivered again after each ack wait, and once
    // the deliveries exceed max_deliver it goes to the dead letters unhandled.
    #[derive(Debug, Default)]
    struct Hang(Mutex<u32>);
    #[async_trait]
    impl NatsHandler for Hang {
        fn name(&self) -> &str {
            "hang"
        }
        async fn handle(&self, _: &RecordedEvent, _: &NatsDelivery) -> orchestrix::Result<()> {
            *self.0.lock().unwrap() += 1;
            Ok(())
        }
    }
    let mut config = common::config(1);
    config.consumer.max_deliver = 2;
    config.consumer.ack_wait_ms = 300;
    let publisher = NatsPublisher::connect(config.clone()).await.unwrap();
    let event = common::recorded("order-9", 0, 1, "test.Ok");
    publisher
        .publish_events(std::slice::from_ref(&event))
        .await
        .unwrap();
    // Deliver it three times without acknowledging, as three crashed workers would.
    let js = common::jetstream(&config).await;
    let stream = js.get_stream(&config.stream.name).await.unwrap();
    let name = orchestrix_nats::consumer::partition_consumer_name("hang", 0);
    let consumer: async_nats::jetstream::consumer::PullConsumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some(name),
            ack_wait: Duration::from_millis(300),
            filter_subject: config.partition_subject(0),
            max_ack_pending: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    for _ in 0..2 {
        use futures::StreamExt as _;
        let mut batch = consumer
            .batch()
            .max_messages(1)
            .expires(Duration::from_secs(2))
            .messages()
            .await
            .unwrap();
        let _unacked = batch.next().await.unwrap().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let hang = Arc::new(Hang::default());
    let mut worker_config = config.clone();
    worker_config.leases.worker_id = Some("w1".into());
    let worker = NatsConsumer::builder(worker_config)
        .nats_handler(hang.clone())
        .start()
        .await
        .unwrap();
    eventually(
        "the message is dead-lettered",
        Duration::from_secs(15),
        || worker.stats().dead_lettered == 1,
    )
    .await;
    assert_eq!(*hang.0.lock().unwrap(), 0, "not handled a third time");
    let letters = common::read_stream(&js, &config.dead_letter_stream()).await;
    assert_eq!(
        common::header(&letters[0], ATTEMPTS_HEADER).as_deref(),
        Some("3")
    );
    assert!(
        common::header(&letters[0], ERROR_HEADER)
            .unwrap()
            .contains("more than the 2 allowed")
    );
    worker.shutdown().await.unwrap();
    common::cleanup(&config).await;
}

fn owned(workers: &[&ConsumerHandle]) -> (BTreeSet<u32>, usize) {
    let mut all = BTreeSet::new();
    let mut count = 0;
    for w in workers {
        for p in w.partitions() {
            all.insert(p);
            count += 1;
        }
    }
    (all, count)
}

#[tokio::test]
async fn nats_lease_expiry_hands_a_dead_workers_partitions_to_the_others() {
    if !common::nats_available("nats_lease_expiry").await {
        return;
    }
    let config = common::config(6);
    let recorder = Arc::new(Recorder::default());
    let a = start(&config, recorder.clone(), "wa").await;
    let b = start(&config, recorder.clone(), "wb").await;
    let c = start(&config, recorder.clone(), "wc").await;
    eventually("6 partitions spread 2-2-2", Duration::from_secs(20), || {
        owned(&[&a, &b, &c]) == ((0..6).collect(), 6)
            && [&a, &b, &c].iter().all(|w| w.partitions().len() == 2)
    })
    .await;
    let orphaned = a.partitions();

    // Worker a dies without releasing anything.
    let died = tokio::time::Instant::now();
    a.abort();
    // Its leases live for the TTL; then b and c take them on a heartbeat.
    let bound = config.leases.ttl() + config.leases.heartbeat() * 4 + Duration::from_secs(2);
    eventually("b and c own all 6 partitions", bound, || {
        owned(&[&b, &c]) == ((0..6).collect(), 6)
    })
    .await;
    let took = died.elapsed();
    assert!(
        took >= config.leases.ttl() - config.leases.heartbeat(),
        "handed over after {took:?}, before the lease could have expired"
    );
    assert_eq!(b.partitions().len() + c.partitions().len(), 6);
    assert!(
        b.partitions().len() == 3 && c.partitions().len() == 3,
        "rebalanced to 3 each: {:?} {:?}",
        b.partitions(),
        c.partitions()
    );
    println!(
        "partitions {orphaned:?} of the dead worker handed over after {took:?} (TTL {:?})",
        config.leases.ttl()
    );

    // The new owners consume: every event of every partition arrives.
    let publisher = NatsPublisher::connect(config.clone()).await.unwrap();
    let events: Vec<RecordedEvent> = (0..60)
        .map(|i| common::recorded(&format!("order-{}", i % 20), i / 20, i + 1, "test.Ok"))
        .collect();
    publisher.publish_events(&events).await.unwrap();
    eventually("all 60 events applied", Duration::from_secs(20), || {
        recorder.applied() == 60
    })
    .await;
    assert!(
        recorder.violations.lock().unwrap().is_empty(),
        "{:?}",
        recorder.violations.lock().unwrap()
    );
    b.shutdown().await.unwrap();
    c.shutdown().await.unwrap();
    common::cleanup(&config).await;
}

#[tokio::test]
async fn nats_workers_rebalance_in_order_when_joining_and_leaving() {
    if !common::nats_available("nats_rebalance").await {
        return;
    }
    let config = common::config(4);
    let publisher = NatsPublisher::connect(config.clone()).await.unwrap();
    let recorder = Arc::new(Recorder::default());
    let a = start(&config, recorder.clone(), "wa").await;
    eventually("a owns all 4", Duration::from_secs(10), || {
        a.partitions().len() == 4
    })
    .await;

    // A steady flow of events while workers join and leave.
    let flow = {
        let publisher = publisher.clone();
        tokio::spawn(async move {
            for round in 0..40u64 {
                let batch: Vec<RecordedEvent> = (0..25)
                    .map(|s| {
                        common::recorded(
                            &format!("order-{s}"),
                            round,
                            round * 25 + s + 1,
                            "test.Ok",
                        )
                    })
                    .collect();
                publisher.publish_events(&batch).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let joined = tokio::time::Instant::now();
    let b = start(&config, recorder.clone(), "wb").await;
    eventually("2 and 2", Duration::from_secs(10), || {
        a.partitions().len() == 2 && b.partitions().len() == 2
    })
    .await;
    println!("rebalanced after a join in {:?}", joined.elapsed());
    let left = tokio::time::Instant::now();
    b.shutdown().await.unwrap();
    eventually("a owns all 4 again", Duration::from_secs(10), || {
        a.partitions().len() == 4
    })
    .await;
    let after_leave = left.elapsed();
    assert!(
        after_leave < config.leases.ttl(),
        "a graceful leave hands over without waiting for the TTL ({after_leave:?})"
    );
    flow.await.unwrap();
    let done = wait_for(Duration::from_secs(30), || recorder.applied() == 1_000).await;
    assert!(
        done,
        "all 1000 events applied: applied {}, violations {:?}, a {:?}",
        recorder.applied(),
        recorder.violations.lock().unwrap(),
        a.stats()
    );
    assert!(
        recorder.violations.lock().unwrap().is_empty(),
        "{:?}",
        recorder.violations.lock().unwrap()
    );
    a.shutdown().await.unwrap();
    common::cleanup(&config).await;
}
