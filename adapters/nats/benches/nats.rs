//! NATS benchmarks, one run, printed as a table:
//!
//! 1. publish throughput through `NatsPublisher` (CloudEvent encoding,
//!    `ce-` headers, dedupe id, bounded outstanding acks awaited in order)
//!    against raw `async-nats` JetStream publishes of the same bytes with the
//!    same ack window;
//! 2. end-to-end latency from an append to a memory store, through the
//!    core `Relay` and JetStream, to a handler of `NatsConsumer` seeing the
//!    event.
//!
//! `cargo bench -p orchestrix-nats --bench nats`; NATS at
//! `ORCHESTRIX_NATS_URL` (default `nats://127.0.0.1:4222`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, message::PublishMessage};
use async_trait::async_trait;
use orchestrix::relay::{Relay, RelayConfig};
use orchestrix::store::ExpectedRevision;
use orchestrix::{EventRecord, RecordedEvent, Store, StreamId};
use orchestrix_nats::{
    ConsumerConfig, LeaseConfig, NatsConfig, NatsConsumer, NatsDelivery, NatsHandler,
    NatsPublisher, StreamConfig,
};
use uuid::Uuid;

const EVENTS: u64 = 20_000;
const BATCH: usize = 500;
const ROUNDS: usize = 5;
const LATENCY_EVENTS: u64 = 1_000;
const LATENCY_RATE_PER_SEC: u64 = 200;

fn config(tag: &str) -> NatsConfig {
    let id = &Uuid::new_v4().simple().to_string()[..10];
    let url =
        std::env::var("ORCHESTRIX_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    NatsConfig {
        stream: StreamConfig {
            name: format!("BENCH_{tag}_{id}"),
            subject_prefix: format!("bench{id}.{tag}"),
            partitions: 8,
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

fn events(n: u64, streams: u64) -> Vec<RecordedEvent> {
    (0..n)
        .map(|i| RecordedEvent {
            stream_id: StreamId::parse(format!("account-{}", i % streams)).unwrap(),
            revision: i / streams,
            position: i + 1,
            record: EventRecord::json(
                "com.acme.bank.Deposited",
                1,
                &serde_json::json!({ "amount": i, "currency": "EUR" }),
            ),
        })
        .collect()
}

async fn cleanup(js: &jetstream::Context, config: &NatsConfig) {
    let _ = js.delete_stream(&config.stream.name).await;
    let _ = js.delete_stream(config.dead_letter_stream()).await;
    let _ = js
        .delete_stream(format!("KV_{}", config.leases.bucket))
        .await;
}

/// Raw async-nats: the same subjects, headers and bodies, the same window of
/// outstanding acks awaited in order.
async fn raw_publish(
    js: &jetstream::Context,
    messages: &[(String, async_nats::HeaderMap, bytes::Bytes)],
    window: usize,
) {
    let mut pending = VecDeque::with_capacity(window);
    for (subject, headers, payload) in messages {
        if pending.len() >= window {
            let ack: jetstream::context::PublishAckFuture = pending.pop_front().unwrap();
            ack.await.unwrap();
        }
        let ack = js
            .send_publish(
                subject.clone(),
                PublishMessage::build()
                    .headers(headers.clone())
                    .payload(payload.clone()),
            )
            .await
            .unwrap();
        pending.push_back(ack);
    }
    while let Some(ack) = pending.pop_front() {
        ack.await.unwrap();
    }
}

/// One round on two fresh streams of the same config: chunk by chunk,
/// alternating which side goes first, so that both see the same machine
/// noise. Returns the rates (msg/s) of Orchestrix and of raw publishes.
async fn round(batch: &[RecordedEvent]) -> (f64, f64) {
    let ox_config = config("ox");
    let raw_config = config("raw");
    let ox = NatsPublisher::connect(ox_config.clone()).await.unwrap();
    let raw = NatsPublisher::connect(raw_config.clone()).await.unwrap();
    // The same subjects, headers and bodies as Orchestrix publishes.
    let messages: Vec<_> = batch
        .iter()
        .map(|e| {
            let m = raw.encode(e).unwrap();
            (m.subject, m.headers, m.payload)
        })
        .collect();
    let window = ox_config.publisher.max_outstanding_acks;
    let (mut ox_time, mut raw_time) = (Duration::ZERO, Duration::ZERO);
    for (i, (events, raw_messages)) in batch.chunks(BATCH).zip(messages.chunks(BATCH)).enumerate() {
        for side in [i % 2, 1 - i % 2] {
            let started = Instant::now();
            if side == 0 {
                let report = ox.publish_events(events).await.unwrap();
                assert_eq!(report.stored, events.len());
                ox_time += started.elapsed();
            } else {
                raw_publish(raw.jetstream(), raw_messages, window).await;
                raw_time += started.elapsed();
            }
        }
    }
    cleanup(ox.jetstream(), &ox_config).await;
    cleanup(raw.jetstream(), &raw_config).await;
    let n = batch.len() as f64;
    (n / ox_time.as_secs_f64(), n / raw_time.as_secs_f64())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn throughput() -> ((f64, f64), (f64, f64)) {
    let config = config("enc");
    let sample = events(EVENTS, 1_000);
    let started = Instant::now();
    for e in &sample {
        std::hint::black_box(orchestrix_nats::publisher::encode(&config, e).unwrap());
    }
    println!(
        "  encoding alone (CloudEvent envelope, ce- headers): {:.2} us/event",
        started.elapsed().as_secs_f64() * 1e6 / EVENTS as f64
    );
    let (mut ox, mut raw) = (Vec::new(), Vec::new());
    for r in 0..ROUNDS {
        let (o, w) = round(&events(EVENTS, 1_000)).await;
        println!(
            "  round {}: orchestrix {o:>9.0} msg/s   raw {w:>9.0} msg/s   ratio {:.2}",
            r + 1,
            o / w
        );
        ox.push(o);
        raw.push(w);
    }
    let best = |v: &[f64]| v.iter().copied().fold(0f64, f64::max);
    ((best(&ox), median(ox.clone())), (best(&raw), median(raw)))
}

#[derive(Debug)]
struct Latency {
    appended: Arc<Mutex<HashMap<Uuid, Instant>>>,
    seen: Arc<Mutex<Vec<Duration>>>,
}

#[async_trait]
impl NatsHandler for Latency {
    fn name(&self) -> &str {
        "latency"
    }

    async fn handle(&self, event: &RecordedEvent, _: &NatsDelivery) -> orchestrix::Result<()> {
        let at = self.appended.lock().unwrap().get(&event.id()).copied();
        if let Some(at) = at {
            self.seen.lock().unwrap().push(at.elapsed());
        }
        Ok(())
    }
}

/// The `per_mille`-th value of sorted samples (nearest rank, rounded down).
fn percentile(sorted: &[Duration], per_mille: usize) -> Duration {
    sorted[(sorted.len() - 1) * per_mille / 1000]
}

async fn latency() -> (Duration, Duration, Duration, usize) {
    let config = config("e2e");
    let store = Store::memory();
    let publisher = Arc::new(NatsPublisher::connect(config.clone()).await.unwrap());
    let relay = Relay::start(store.clone(), publisher.clone(), RelayConfig::default())
        .await
        .unwrap();
    let appended = Arc::new(Mutex::new(HashMap::new()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(Latency {
        appended: appended.clone(),
        seen: seen.clone(),
    });
    let worker = NatsConsumer::builder(config.clone())
        .nats_handler(handler)
        .start()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while worker.partitions().len() < 8 {
        assert!(
            Instant::now() < deadline,
            "the worker did not claim its partitions"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let interval = Duration::from_micros(1_000_000 / LATENCY_RATE_PER_SEC);
    let mut tick = tokio::time::interval(interval);
    for i in 0..LATENCY_EVENTS {
        tick.tick().await;
        let stream = StreamId::parse(format!("account-{}", i % 100)).unwrap();
        let record = EventRecord::json(
            "com.acme.bank.Deposited",
            1,
            &serde_json::json!({ "amount": i }),
        );
        appended.lock().unwrap().insert(record.id, Instant::now());
        store
            .append(&stream, ExpectedRevision::Any, vec![record])
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while (seen.lock().unwrap().len() as u64) < LATENCY_EVENTS && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await.unwrap();
    relay.shutdown().await.unwrap();
    cleanup(publisher.jetstream(), &config).await;
    let mut samples = seen.lock().unwrap().clone();
    let slow = samples
        .iter()
        .filter(|d| **d > Duration::from_millis(100))
        .count();
    if slow > 0 {
        println!("  {slow} of {} samples above 100 ms", samples.len());
    }
    samples.sort();
    (
        percentile(&samples, 500),
        percentile(&samples, 990),
        *samples.last().unwrap(),
        samples.len(),
    )
}

#[tokio::main]
async fn main() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let url =
        std::env::var("ORCHESTRIX_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    if async_nats::connect(url.as_str()).await.is_err() {
        eprintln!("SKIPPED: no NATS server at {url}");
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("orchestrix-nats benchmarks: NATS at {url}, {cpus} CPUs");
    println!(
        "publish throughput: {EVENTS} events of 1,000 streams, batches of {BATCH}, {ROUNDS} rounds, chunks interleaved"
    );
    let ((ox_best, ox_median), (raw_best, raw_median)) =
        if std::env::var("BENCH_ONLY_LATENCY").is_ok() {
            ((1.0, 1.0), (1.0, 1.0))
        } else {
            throughput().await
        };
    println!(
        "end-to-end latency: {LATENCY_EVENTS} events at {LATENCY_RATE_PER_SEC}/s, append -> relay -> JetStream -> consumer handler"
    );
    let (p50, p99, max, n) = latency().await;
    println!();
    println!("| benchmark | orchestrix | raw async-nats | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| publish throughput, best round (msg/s) | {ox_best:.0} | {raw_best:.0} | {:.2} |",
        ox_best / raw_best
    );
    println!(
        "| publish throughput, median round (msg/s) | {ox_median:.0} | {raw_median:.0} | {:.2} |",
        ox_median / raw_median
    );
    println!(
        "| end-to-end latency p50 | {:.2} ms | | |",
        p50.as_secs_f64() * 1e3
    );
    println!(
        "| end-to-end latency p99 | {:.2} ms | | |",
        p99.as_secs_f64() * 1e3
    );
    println!(
        "| end-to-end latency max | {:.2} ms ({n} samples) | | |",
        max.as_secs_f64() * 1e3
    );
}
