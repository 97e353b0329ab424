//! Bus consumer throughput on NATS JetStream (one run, prints a table; NATS
//! at `ORCHESTRIX_NATS_URL`, default `nats://127.0.0.1:4222`).
//!
//! The same 20,000 events (500 streams, 4 partition subjects, published
//! once by `NatsPublisher`) are consumed, in the same run, by
//!
//! - **raw**: `async-nats` durable pull consumers, one per partition subject
//!   with the adapter's settings (explicit ack, `max_ack_pending` 1 so a
//!   stream stays in order, batches of 100), each message acknowledged; the
//!   partitions are split over the members' connections;
//! - **driver**: `NatsConsumer` workers of one group (partitions assigned by
//!   leases), every message going through the core `HandlerDriver`
//!   (CloudEvent decode, filter, duplicate check, span, panic capture, retry
//!   decision, metrics) to a no-op handler, then acknowledged;
//!
//! with 1 and 4 members. Rate = events / (last event − first event seen), so
//! joining before the first event is not counted (lease moves while members
//! join are).
//!
//! Run: `cargo bench -p orchestrix-nats --bench consume`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, pull},
};
use async_trait::async_trait;
use futures::StreamExt as _;
use orchestrix::runtime::{Delivery, EventHandler};
use orchestrix::{EventRecord, RecordedEvent, StreamId};
use orchestrix_nats::{
    ConsumerConfig, LeaseConfig, NatsConfig, NatsConsumer, NatsPublisher, StreamConfig,
};
use uuid::Uuid;

const EVENTS: u64 = 20_000;
const STREAMS: u64 = 500;
const PARTITIONS: u32 = 4;
const WAIT: Duration = Duration::from_secs(300);

fn config() -> NatsConfig {
    let id = &Uuid::new_v4().simple().to_string()[..10];
    let url =
        std::env::var("ORCHESTRIX_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    NatsConfig {
        stream: StreamConfig {
            name: format!("BENCH_CONSUME_{id}"),
            subject_prefix: format!("bench{id}.consume"),
            partitions: PARTITIONS,
            ..StreamConfig::default()
        },
        leases: LeaseConfig {
            bucket: format!("bench{id}_leases"),
            ttl_ms: 3_000,
            heartbeat_ms: 500,
            worker_id: None,
        },
        consumer: ConsumerConfig {
            fetch_wait_ms: 1_000,
            ..ConsumerConfig::default()
        },
        ..NatsConfig::new(url)
    }
}

fn events() -> Vec<RecordedEvent> {
    (0..EVENTS)
        .map(|i| RecordedEvent {
            stream_id: StreamId::parse(format!("account-{}", i % STREAMS)).unwrap(),
            revision: i / STREAMS,
            position: i + 1,
            record: EventRecord::json(
                "com.acme.bank.Deposited",
                1,
                &serde_json::json!({ "amount": i, "currency": "EUR" }),
            ),
        })
        .collect()
}

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

async fn raw(config: &NatsConfig, members: u32) -> f64 {
    let meter = Arc::new(Meter::default());
    let tag = &Uuid::new_v4().simple().to_string()[..8];
    let mut tasks = Vec::new();
    for member in 0..members {
        let client = orchestrix_nats::connect(config).await.expect("connect");
        let js = jetstream::new(client);
        let stream = js.get_stream(&config.stream.name).await.expect("stream");
        for partition in (0..PARTITIONS).filter(|p| p % members == member) {
            let consumer: jetstream::consumer::PullConsumer = stream
                .create_consumer(pull::Config {
                    durable_name: Some(format!("raw{tag}-p{partition}")),
                    ack_policy: AckPolicy::Explicit,
                    filter_subject: config.partition_subject(partition),
                    max_ack_pending: i64::from(config.consumer.max_ack_pending),
                    ..Default::default()
                })
                .await
                .expect("consumer");
            let meter = meter.clone();
            let batch = config.consumer.fetch_batch;
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok(mut messages) = consumer
                        .batch()
                        .max_messages(batch)
                        .expires(Duration::from_secs(1))
                        .messages()
                        .await
                    else {
                        continue;
                    };
                    while let Some(Ok(message)) = messages.next().await {
                        let _ = message.ack().await;
                        meter.hit();
                    }
                }
            }));
        }
    }
    let rate = meter.rate().await;
    for t in tasks {
        t.abort();
    }
    rate
}

async fn driver(config: &NatsConfig, members: u32) -> f64 {
    let meter = Arc::new(Meter::default());
    let group = format!("driver{}", &Uuid::new_v4().simple().to_string()[..8]);
    let mut workers = Vec::new();
    for _ in 0..members {
        workers.push(
            NatsConsumer::builder(config.clone())
                .handler(Arc::new(Count(meter.clone())))
                .group(group.clone())
                .start()
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
        let config = config();
        let publisher = NatsPublisher::connect(config.clone()).await.expect("publisher");
        let all = events();
        for chunk in all.chunks(500) {
            publisher.publish_events(chunk).await.expect("publish");
        }
        println!(
            "NATS bus consumer: {EVENTS} events, {STREAMS} streams, {PARTITIONS} partitions, stream {}",
            config.stream.name
        );
        println!("{:>8} | {:>14} | {:>14} | {:>6}", "members", "raw ev/s", "driver ev/s", "ratio");
        for members in [1, 4] {
            let r = raw(&config, members).await;
            let d = driver(&config, members).await;
            println!("{members:>8} | {r:>14.0} | {d:>14.0} | {:>6.2}", d / r);
        }
        let js = publisher.jetstream().clone();
        let _ = js.delete_stream(&config.stream.name).await;
        let _ = js.delete_stream(config.dead_letter_stream()).await;
        let _ = js.delete_stream(format!("KV_{}", config.leases.bucket)).await;
    });
}
