//! Bus consumer throughput on Kafka (one run, prints a table; needs a broker
//! at `ORCHESTRIX_KAFKA_BROKERS`, default 127.0.0.1:9092).
//!
//! The same 20,000 events (500 streams, 4 partitions, published once by
//! `KafkaPublisher`) are consumed, in the same run, by
//!
//! - **raw**: rdkafka `StreamConsumer`s in a fresh group, each task
//!   receiving messages in a loop (no decode, no commit): the client's own
//!   consume loop;
//! - **driver**: `ConsumerWorker`s in a fresh group, every record going
//!   through the core `HandlerDriver` (CloudEvent decode, filter, duplicate
//!   check, span, panic capture, retry decision, metrics) to a no-op
//!   handler, one task per partition, offsets committed.
//!
//! with 1 and 4 members. Rate = events / (last event − first event seen),
//! so the group join before the first event is not counted (a rebalance
//! while members join is).
//!
//! Run: `cargo bench -p orchestrix-kafka --bench consume`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orchestrix::bus::Bus;
use orchestrix::runtime::{Delivery, EventHandler};
use orchestrix::{EventRecord, RecordedEvent, StreamId};
use orchestrix_kafka::rdkafka::ClientConfig;
use orchestrix_kafka::rdkafka::consumer::{Consumer as _, StreamConsumer};
use orchestrix_kafka::{ConsumerWorker, KafkaBus, KafkaConfig};
use serde_json::json;

const EVENTS: u64 = 20_000;
const STREAMS: u64 = 500;
const PARTITIONS: i32 = 4;
const WAIT: Duration = Duration::from_secs(300);

fn events() -> Vec<RecordedEvent> {
    (0..EVENTS)
        .map(|i| {
            let s = i % STREAMS;
            RecordedEvent {
                stream_id: StreamId::new("account", &s.to_string()).unwrap(),
                revision: i / STREAMS,
                position: i + 1,
                record: EventRecord::json(
                    "com.acme.bank.MoneyDeposited",
                    1,
                    &json!({"account": format!("ACC-{s:06}"), "amount_cents": i * 7 % 10_000, "reference": format!("INV-{i:08}")}),
                ),
            }
        })
        .collect()
}

/// Counts what arrives and when the first and the last did.
#[derive(Debug, Default)]
struct Meter {
    count: AtomicU64,
    first: Mutex<Option<Instant>>,
    last: Mutex<Option<Instant>>,
}

impl Meter {
    fn hit(&self) {
        let now = Instant::now();
        self.first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(now);
        if self.count.fetch_add(1, Ordering::Relaxed) + 1 == EVENTS {
            *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(now);
        }
    }

    async fn rate(&self) -> f64 {
        let deadline = Instant::now() + WAIT;
        while self.count.load(Ordering::Relaxed) < EVENTS {
            assert!(Instant::now() < deadline, "not all events consumed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let first = self.first.lock().unwrap().expect("first");
        let last = self.last.lock().unwrap().expect("last");
        #[allow(clippy::cast_precision_loss)]
        let rate = EVENTS as f64 / (last - first).as_secs_f64();
        rate
    }
}

#[derive(Debug)]
struct Count(Arc<Meter>);

#[async_trait]
impl EventHandler for Count {
    fn name(&self) -> &str {
        "bench"
    }
    async fn handle(&self, _: &RecordedEvent, _: &Delivery) -> orchestrix::Result<()> {
        self.0.hit();
        Ok(())
    }
}

async fn raw(brokers: &str, topic: &str, members: usize) -> f64 {
    let meter = Arc::new(Meter::default());
    let group = format!("raw-{}", uuid::Uuid::new_v4().simple());
    let mut tasks = Vec::new();
    for _ in 0..members {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .create()
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let meter = meter.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                if consumer.recv().await.is_ok() {
                    meter.hit();
                }
            }
        }));
    }
    let rate = meter.rate().await;
    for t in tasks {
        t.abort();
    }
    rate
}

async fn driver(config: &KafkaConfig, topic: &str, members: usize) -> f64 {
    let meter = Arc::new(Meter::default());
    let group = format!("driver-{}", uuid::Uuid::new_v4().simple());
    let mut workers = Vec::new();
    for _ in 0..members {
        workers.push(
            ConsumerWorker::builder(config.clone())
                .topic(topic)
                .group_id(group.clone())
                .start(Arc::new(Count(meter.clone())))
                .await
                .expect("worker"),
        );
    }
    let rate = meter.rate().await;
    for w in workers {
        w.abort();
    }
    rate
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let brokers = std::env::var("ORCHESTRIX_KAFKA_BROKERS")
            .unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
        let mut config = KafkaConfig {
            brokers: vec![brokers.clone()],
            ..KafkaConfig::default()
        };
        config.topics.prefix = format!("bench{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        config.topics.partitions = PARTITIONS;
        let bus = KafkaBus::new(config.clone()).expect("bus");
        let topic = bus.topic().to_owned();
        let all = events();
        for chunk in all.chunks(1_000) {
            bus.publisher().publish(chunk).await.expect("publish");
        }
        println!("Kafka bus consumer: {EVENTS} events, {STREAMS} streams, {PARTITIONS} partitions, topic {topic}");
        println!("{:>8} | {:>14} | {:>14} | {:>6}", "members", "raw ev/s", "driver ev/s", "ratio");
        for members in [1, 4] {
            let r = raw(&brokers, &topic, members).await;
            let d = driver(&config, &topic, members).await;
            println!("{members:>8} | {r:>14.0} | {d:>14.0} | {:>6.2}", d / r);
        }
    });
}
