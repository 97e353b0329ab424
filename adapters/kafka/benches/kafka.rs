//! Kafka adapter benchmark (one run, prints a table; needs a broker at
//! `ORCHESTRIX_KAFKA_BROKERS`, default 127.0.0.1:9092).
//!
//! 1. Publish throughput: the same records (topic, key, `ce_` headers, value)
//!    through `KafkaPublisher::publish_events` and through a raw rdkafka
//!    `FutureProducer` with the same settings, in the same run. The publisher
//!    is measured in batches of 500 (the relay's default batch, each awaited
//!    before the next, as the relay does) and in one batch; the raw producer
//!    sends everything and awaits all deliveries. Best of 5 interleaved rounds.
//! 2. End-to-end latency: append to a memory store → core `Relay` →
//!    `KafkaPublisher` → broker → `ConsumerWorker` → handler, at a paced rate;
//!    p50/p99 of (handler time − event time).
//!
//! Run: `cargo bench -p orchestrix-kafka --bench kafka`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orchestrix::relay::{Relay, RelayConfig};
use orchestrix::runtime::{Delivery, EventHandler};
use orchestrix::store::ExpectedRevision;
use orchestrix::{EventRecord, RecordedEvent, Store, StreamId};
use orchestrix_kafka::publisher::{EncodedMessage, encode_event};
use orchestrix_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use orchestrix_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use orchestrix_kafka::{
    ConsumerWorker, KafkaConfig, KafkaPublisher, TransactionalPublisher, ensure_topic,
};
use serde_json::json;

const EVENTS: u64 = 50_000;
const STREAMS: u64 = 500;
const ROUNDS: usize = 5;
const LATENCY_EVENTS: u64 = 2_000;
const LATENCY_RATE: u64 = 500; // events per second

/// The Avro schema of the benchmark's event.
const DEPOSITED_AVSC: &str = r#"{"type":"record","name":"MoneyDeposited","namespace":"com.acme.bank","fields":[
  {"name":"account","type":"string"},{"name":"amount_cents","type":"long"},{"name":"currency","type":"string"},
  {"name":"reference","type":"string"},{"name":"note","type":"string"}]}"#;

fn events(n: u64) -> Vec<RecordedEvent> {
    (0..n)
        .map(|i| {
            let s = i % STREAMS;
            let payload = json!({"account": format!("ACC-{s:06}"), "amount_cents": i * 7 % 10_000, "currency": "EUR", "reference": format!("INV-{i:08}"), "note": "benchmark deposit"});
            RecordedEvent {
                stream_id: StreamId::new("account", &s.to_string()).unwrap(),
                revision: i / STREAMS,
                position: i + 1,
                record: EventRecord::json("com.acme.bank.MoneyDeposited", 1, &payload).with_source("/bank"),
            }
        })
        .collect()
}

async fn raw_publish(
    producer: &FutureProducer,
    topic: &str,
    messages: &[EncodedMessage],
) -> Duration {
    let start = Instant::now();
    let mut pending = Vec::with_capacity(messages.len());
    for m in messages {
        let mut record = FutureRecord::to(topic)
            .key(m.key.as_bytes())
            .payload(&m.payload[..])
            .headers(m.kafka_headers());
        loop {
            match producer.send_result(record) {
                Ok(f) => {
                    pending.push(f);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => panic!("raw send: {e}"),
            }
        }
    }
    for f in futures::future::join_all(pending).await {
        f.expect("not canceled").expect("delivered");
    }
    start.elapsed()
}

async fn transactional_publish(
    publisher: &TransactionalPublisher,
    events: &[RecordedEvent],
    batch: usize,
) -> Duration {
    let start = Instant::now();
    for chunk in events.chunks(batch) {
        publisher.publish_events(chunk).await.unwrap();
    }
    start.elapsed()
}

async fn orchestrix_publish(
    publisher: &KafkaPublisher,
    events: &[RecordedEvent],
    batch: usize,
) -> Duration {
    let start = Instant::now();
    for chunk in events.chunks(batch) {
        publisher.publish_events(chunk).await.expect("publish");
    }
    start.elapsed()
}

fn rate(n: u64, d: Duration) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let n = n as f64;
    n / d.as_secs_f64()
}

/// The best round: interference from other processes only adds time.
fn best(v: &[Duration]) -> Duration {
    v.iter().copied().min().unwrap_or_default()
}

#[derive(Debug)]
struct Clock {
    latencies: Mutex<Vec<Duration>>,
}

#[async_trait]
impl EventHandler for Clock {
    fn name(&self) -> &str {
        "bench-latency"
    }

    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> orchestrix::Result<()> {
        let age = (chrono::Utc::now() - event.record.time)
            .to_std()
            .unwrap_or_default();
        self.latencies.lock().unwrap().push(age);
        Ok(())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Append → relay → Kafka → consumer group → handler, at a paced rate; the
/// sorted latencies.
async fn latency(config: &KafkaConfig, prefix: &str, fetch_wait_ms: Option<u64>) -> Vec<Duration> {
    let mut lat_config = config.clone();
    lat_config.topics.prefix = prefix.to_owned();
    if let Some(ms) = fetch_wait_ms {
        lat_config.consumer.fetch_wait_max_ms = ms;
    }
    let store = Store::memory();
    let relay_publisher = Arc::new(KafkaPublisher::new(lat_config.clone()).unwrap());
    let clock = Arc::new(Clock {
        latencies: Mutex::new(Vec::new()),
    });
    let worker = ConsumerWorker::builder(lat_config.clone())
        .categories(["account"])
        .start(clock.clone())
        .await
        .unwrap();
    let relay = Relay::start(store.clone(), relay_publisher, RelayConfig::default())
        .await
        .unwrap();
    // Prime: one event, wait until handled (group joined, topic exists).
    let prime = StreamId::new("account", "prime").unwrap();
    store
        .append(
            &prime,
            ExpectedRevision::Any,
            vec![EventRecord::json("com.acme.bank.Primed", 1, &json!({}))],
        )
        .await
        .unwrap();
    let primed = Instant::now();
    while clock.latencies.lock().unwrap().is_empty() {
        assert!(
            primed.elapsed() < Duration::from_secs(30),
            "latency consumer never received the priming event"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    clock.latencies.lock().unwrap().clear();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / LATENCY_RATE));
    for i in 0..LATENCY_EVENTS {
        tick.tick().await;
        let stream = StreamId::new("account", &(i % 100).to_string()).unwrap();
        store
            .append(
                &stream,
                ExpectedRevision::Any,
                vec![EventRecord::json(
                    "com.acme.bank.MoneyDeposited",
                    1,
                    &json!({"amount_cents": i}),
                )],
            )
            .await
            .unwrap();
    }
    let waited = Instant::now();
    while (clock.latencies.lock().unwrap().len() as u64) < LATENCY_EVENTS
        && waited.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay.shutdown().await.unwrap();
    worker.shutdown().await.unwrap();
    let mut lat = clock.latencies.lock().unwrap().clone();
    lat.sort();
    assert!(!lat.is_empty(), "no latency samples");
    lat
}

#[tokio::main]
async fn main() {
    let brokers =
        std::env::var("ORCHESTRIX_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    if std::net::TcpStream::connect(brokers.split(',').next().unwrap_or_default()).is_err() {
        eprintln!("skipping the Kafka benchmark: no broker at {brokers}");
        return;
    }
    let run = format!("bench-{:08x}", rand::random::<u32>());
    let mut config = KafkaConfig {
        brokers: vec![brokers.clone()],
        ..KafkaConfig::default()
    };
    config.topics.prefix = run.clone();
    config.topics.partitions = 6;
    config.consumer.session_timeout_ms = 6_000;
    config.consumer.heartbeat_interval_ms = 1_000;

    // 1. Throughput.
    let all = events(EVENTS);
    let encode_start = Instant::now();
    let encoded: Vec<EncodedMessage> = all
        .iter()
        .map(|e| encode_event(&config.topics, e).unwrap())
        .collect();
    let encode_t = encode_start.elapsed();
    let bytes: usize = encoded
        .iter()
        .map(|m| {
            m.payload.len()
                + m.key.len()
                + m.headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
        })
        .sum();
    let publisher = KafkaPublisher::new(config.clone()).unwrap();
    // Avro in the Confluent wire format, ids from a registry served over
    // HTTP on loopback (cached after the first event of each type).
    let registry = orchestrix_schema_registry::server::serve(
        Arc::new(orchestrix_schema_registry::EmbeddedRegistry::memory()),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let avro_format = Arc::new(orchestrix_schema_registry::AvroWireFormat::new(
        orchestrix_schema_registry::ConfluentAvro::new(
            Arc::new(orchestrix_schema_registry::RegistryClient::new(&registry.url()).unwrap()),
            orchestrix_avro::AvroCodec::new(
                orchestrix_avro::AvroSchemas::new()
                    .with("com.acme.bank.MoneyDeposited", 1, DEPOSITED_AVSC)
                    .unwrap(),
            ),
        ),
    ));
    let mut avro_config = config.clone();
    avro_config.topics.prefix = format!("{run}-avro");
    let avro = KafkaPublisher::new(avro_config)
        .unwrap()
        .with_value_format(avro_format);
    let mut tx_config = config.clone();
    tx_config.topics.prefix = format!("{run}-tx");
    let transactional = TransactionalPublisher::new(tx_config, format!("{run}-relay")).unwrap();
    let raw: FutureProducer = config.producer_client_config().create().unwrap();
    let raw_topic = format!("{run}.raw");
    ensure_topic(&config, &raw_topic, 6).await.unwrap();
    // Warm up both paths (topic creation, metadata, connections).
    publisher.publish_events(&all[..1_000]).await.unwrap();
    transactional.publish_events(&all[..1_000]).await.unwrap();
    avro.publish_events(&all[..1_000]).await.unwrap();
    raw_publish(&raw, &raw_topic, &encoded[..1_000]).await;

    let (mut t_raw, mut t_500, mut t_5000, mut t_one, mut t_tx500, mut t_tx5000) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let mut t_avro = Vec::new();
    for _ in 0..ROUNDS {
        t_raw.push(raw_publish(&raw, &raw_topic, &encoded).await);
        t_500.push(orchestrix_publish(&publisher, &all, 500).await);
        t_5000.push(orchestrix_publish(&publisher, &all, 5_000).await);
        t_one.push(orchestrix_publish(&publisher, &all, all.len()).await);
        t_tx500.push(transactional_publish(&transactional, &all, 500).await);
        t_tx5000.push(transactional_publish(&transactional, &all, 5_000).await);
        t_avro.push(orchestrix_publish(&avro, &all, all.len()).await);
    }
    let (raw_t, b500_t, b5000_t, one_t) = (best(&t_raw), best(&t_500), best(&t_5000), best(&t_one));

    // 2. Latency, with librdkafka's default fetch wait and with a short one.
    let lat_default = latency(&config, &format!("{run}-lat"), Some(100)).await;
    let lat_500 = latency(&config, &format!("{run}-lat500"), Some(500)).await;
    let lat_short = latency(&config, &format!("{run}-lat20"), Some(20)).await;

    let mb = |d: Duration| {
        #[allow(clippy::cast_precision_loss)]
        let b = bytes as f64;
        b / d.as_secs_f64() / 1e6
    };
    println!();
    println!(
        "Kafka adapter benchmark: {EVENTS} events over {STREAMS} streams, 6 partitions, {} bytes/record avg, best of {ROUNDS} interleaved rounds",
        bytes / encoded.len()
    );
    println!("brokers {brokers}; producer: idempotent, acks=all, lz4, linger.ms=5 (both paths)");
    println!();
    println!("| publish path | time | events/s | MB/s | vs raw |");
    println!("|---|---:|---:|---:|---:|");
    let row = |name: &str, d: Duration| {
        println!(
            "| {name} | {:.2} s | {:.0} | {:.1} | {:.2} |",
            d.as_secs_f64(),
            rate(EVENTS, d),
            mb(d),
            rate(EVENTS, d) / rate(EVENTS, raw_t)
        );
    };
    row("raw rdkafka FutureProducer (same bytes)", raw_t);
    row(
        "KafkaPublisher, batches of 500 (relay default), each awaited",
        b500_t,
    );
    row("KafkaPublisher, batches of 5,000, each awaited", b5000_t);
    row("KafkaPublisher, one batch", one_t);
    row(
        "KafkaPublisher + Avro (Confluent wire format, registry ids), one batch",
        best(&t_avro),
    );
    row(
        "TransactionalPublisher, batches of 500, one transaction each",
        best(&t_tx500),
    );
    row(
        "TransactionalPublisher, batches of 5,000, one transaction each",
        best(&t_tx5000),
    );
    println!(
        "| (CloudEvents encoding alone, in the publisher's time) | {:.2} s | {:.0} | | |",
        encode_t.as_secs_f64(),
        rate(EVENTS, encode_t)
    );
    println!();
    println!(
        "| end-to-end latency: append → relay → Kafka → consumer group → handler ({LATENCY_EVENTS} events paced at {LATENCY_RATE}/s) | p50 | p99 | max | received |"
    );
    println!("|---|---:|---:|---:|---:|");
    for (name, lat) in [
        ("fetch_wait_max_ms = 100", &lat_default),
        (
            "fetch_wait_max_ms = 500 (the default, librdkafka's)",
            &lat_500,
        ),
        ("fetch_wait_max_ms = 20", &lat_short),
    ] {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        println!(
            "| {name} | {:.1} ms | {:.1} ms | {:.1} ms | {} |",
            ms(percentile(lat, 0.50)),
            ms(percentile(lat, 0.99)),
            ms(*lat.last().unwrap()),
            lat.len()
        );
    }
}
