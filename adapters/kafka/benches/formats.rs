//! The Kafka bus in Avro mode next to JSON mode and the raw client, in one
//! run (needs a broker at `ORCHESTRIX_KAFKA_BROKERS`, default
//! 127.0.0.1:9092; prints tables and ratios, asserts no timing).
//!
//! Avro mode is `KafkaPublisher::with_value_format(AvroWireFormat)`: each
//! JSON payload encoded with its Avro schema and framed in the Confluent
//! wire format (magic byte, 4-byte schema id from a registry, Avro binary).
//! The registry is an `EmbeddedRegistry` served over HTTP on loopback and
//! reached through `RegistryClient`, so the first event of a type costs a
//! real HTTP round trip and later ones hit the client's id cache. Consumers
//! read the frame back with `WireDecoding` over their own `AvroWireFormat`
//! (their own client and cache, as a separate process would have).
//!
//! 1. Publish throughput: the same events (500 streams, 6 partitions)
//!    through a raw rdkafka `FutureProducer` sending records pre-encoded
//!    outside the timing (once the JSON records, once the Avro-framed records
//!    the Avro publisher produces: same topic layout, key, `ce_` headers and
//!    value bytes), and through `KafkaPublisher` in JSON and in Avro mode, in
//!    batches of 500 (the relay's default, each awaited) and in one batch.
//!    Every path uses the adapter's producer settings. Interleaved rounds
//!    (the order rotates each round); best and median per path; ratios of
//!    the best rounds, and the median of the per-round ratios. In the same rounds, the CPU per event of each
//!    step without I/O: CloudEvents encoding, the Avro outbound and its
//!    pieces (JSON parse, Avro encoding, cached schema id), Avro inbound.
//! 2. End-to-end latency: one event at a time, one every 5 ms, from just
//!    before the publish call to the consumer's handler seeing it (matched
//!    by event id): raw `FutureProducer` → raw `BaseConsumer` polled on its
//!    own thread; `KafkaPublisher` → `ConsumerWorker` (JSON); and
//!    `KafkaPublisher` + Avro → `ConsumerWorker` + `WireDecoding` (Avro).
//!    The three consumers run side by side; the paths take turns in blocks
//!    of 50 events, each block drained before the next starts.
//!
//! Run: `cargo bench -p orchestrix-kafka --bench formats`; a subset with
//! `-- throughput` or `-- latency`. Knobs: `BENCH_EVENTS` (throughput
//! events, default 50,000), `BENCH_ROUNDS` (default 7), `BENCH_LATENCY_EVENTS`
//! (per path, default 200).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orchestrix::runtime::{Delivery, EventHandler};
use orchestrix::wire::{ValueFormat, WireDecoding};
use orchestrix::{EventRecord, RecordedEvent, StreamId};
use orchestrix_avro::{AvroCodec, AvroSchemas};
use orchestrix_kafka::publisher::{EncodedMessage, encode_event};
use orchestrix_kafka::rdkafka::consumer::{BaseConsumer, Consumer as _};
use orchestrix_kafka::rdkafka::error::{KafkaError, RDKafkaErrorCode};
use orchestrix_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use orchestrix_kafka::{ConsumerWorker, KafkaConfig, KafkaPublisher, KafkaRecord, ensure_topic};
use orchestrix_schema_registry::server::serve;
use orchestrix_schema_registry::{AvroWireFormat, ConfluentAvro, EmbeddedRegistry, RegistryClient};
use serde_json::json;
use uuid::Uuid;

const STREAMS: u64 = 500;
const PARTITIONS: i32 = 6;
const BATCH: usize = 500;
const LATENCY_INTERVAL: Duration = Duration::from_millis(5);
const LATENCY_BLOCK: usize = 50;

/// The Avro schema of the benchmark's event (the payload of `kafka.rs`).
const DEPOSITED: &str = "com.acme.bank.MoneyDeposited";
const DEPOSITED_AVSC: &str = r#"{"type":"record","name":"MoneyDeposited","namespace":"com.acme.bank","fields":[
  {"name":"account","type":"string"},{"name":"amount_cents","type":"long"},{"name":"currency","type":"string"},
  {"name":"reference","type":"string"},{"name":"note","type":"string"}]}"#;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn deposit(stream: &StreamId, revision: u64, i: u64) -> RecordedEvent {
    let payload = json!({
        "account": stream.entity_id(),
        "amount_cents": i * 7 % 10_000,
        "currency": "EUR",
        "reference": format!("INV-{i:08}"),
        "note": "benchmark deposit",
    });
    RecordedEvent {
        stream_id: stream.clone(),
        revision,
        position: i + 1,
        record: EventRecord::json(DEPOSITED, 1, &payload).with_source("/bank"),
    }
}

/// `n` deposits spread over [`STREAMS`] accounts.
fn events(n: u64) -> Vec<RecordedEvent> {
    (0..n)
        .map(|i| {
            let s = i % STREAMS;
            let stream = StreamId::new("account", &format!("ACC-{s:06}")).unwrap();
            deposit(&stream, i / STREAMS, i)
        })
        .collect()
}

/// An Avro wire format with its own registry client (and so its own id cache).
fn avro_format(registry_url: &str) -> Arc<AvroWireFormat> {
    let client = RegistryClient::new(registry_url).unwrap();
    let codec = AvroCodec::new(
        AvroSchemas::new()
            .with(DEPOSITED, 1, DEPOSITED_AVSC)
            .unwrap(),
    );
    Arc::new(AvroWireFormat::new(ConfluentAvro::new(
        Arc::new(client),
        codec,
    )))
}

fn with_prefix(config: &KafkaConfig, prefix: &str) -> KafkaConfig {
    let mut c = config.clone();
    c.topics.prefix = prefix.to_owned();
    c
}

fn record_bytes(m: &EncodedMessage) -> usize {
    m.payload.len()
        + m.key.len()
        + m.headers
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

#[allow(clippy::cast_precision_loss)]
fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn sorted(v: &[Duration]) -> Vec<Duration> {
    let mut v = v.to_vec();
    v.sort();
    v
}

/// Sends pre-encoded records to `topic` and awaits every delivery.
async fn raw_publish(producer: &FutureProducer, topic: &str, messages: &[EncodedMessage]) {
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
}

async fn publish(publisher: &KafkaPublisher, events: &[RecordedEvent], batch: usize) {
    for chunk in events.chunks(batch) {
        publisher.publish_events(chunk).await.expect("publish");
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Path {
    RawJson,
    RawAvro,
    Json500,
    Avro500,
    JsonOne,
    AvroOne,
    EncodeJson,
    EncodeAvro,
    ParseJson,
    AvroEncode,
    SchemaId,
    Inbound,
}

impl Path {
    const ALL: [Self; 12] = [
        Self::RawJson,
        Self::RawAvro,
        Self::Json500,
        Self::Avro500,
        Self::JsonOne,
        Self::AvroOne,
        Self::EncodeJson,
        Self::EncodeAvro,
        Self::ParseJson,
        Self::AvroEncode,
        Self::SchemaId,
        Self::Inbound,
    ];

    /// Paths that do no I/O: reported in µs per event.
    fn is_cpu(self) -> bool {
        matches!(
            self,
            Self::EncodeJson
                | Self::EncodeAvro
                | Self::ParseJson
                | Self::AvroEncode
                | Self::SchemaId
                | Self::Inbound
        )
    }

    fn label(self) -> &'static str {
        match self {
            Self::RawJson => "raw FutureProducer, pre-encoded JSON records (baseline)",
            Self::RawAvro => "raw FutureProducer, pre-encoded Avro records",
            Self::Json500 => "KafkaPublisher JSON, batches of 500 (relay default)",
            Self::Avro500 => "KafkaPublisher Avro, batches of 500 (relay default)",
            Self::JsonOne => "KafkaPublisher JSON, one batch",
            Self::AvroOne => "KafkaPublisher Avro, one batch",
            Self::EncodeJson => "JSON publish: CloudEvents record encoding (`encode_event`)",
            Self::EncodeAvro => {
                "Avro publish: `AvroWireFormat::outbound` + CloudEvents record encoding"
            }
            Self::ParseJson => "  of which: parsing the stored JSON payload to a `Value`",
            Self::AvroEncode => "  of which: Avro binary encoding of the `Value` (`encode_with`)",
            Self::SchemaId => "  of which: schema id from the client's cache (`schema_id`)",
            Self::Inbound => {
                "Avro consume: `AvroWireFormat::inbound` (frame → writer schema → JSON payload)"
            }
        }
    }
}

async fn throughput(config: &KafkaConfig, run: &str, registry_url: &str, n: u64, rounds: usize) {
    let all = events(n);
    let json_publisher = KafkaPublisher::new(with_prefix(config, &format!("{run}-json"))).unwrap();
    let avro_config = with_prefix(config, &format!("{run}-avro"));
    let avro_publisher = KafkaPublisher::new(avro_config.clone())
        .unwrap()
        .with_value_format(avro_format(registry_url));
    let avro_topic = avro_publisher.topic_of(&all[0]);
    let raw: FutureProducer = config.producer_client_config().create().unwrap();
    let (raw_json_topic, raw_avro_topic) = (format!("{run}-raw.json"), format!("{run}-raw.avro"));
    ensure_topic(config, &raw_json_topic, PARTITIONS)
        .await
        .unwrap();
    ensure_topic(config, &raw_avro_topic, PARTITIONS)
        .await
        .unwrap();
    // The records the raw producer sends: what each publisher sends, encoded
    // outside the timing. The Avro ones through a format of their own.
    let json_records: Vec<EncodedMessage> = all
        .iter()
        .map(|e| encode_event(&config.topics, e).unwrap())
        .collect();
    let encoder = avro_format(registry_url);
    let mut avro_records = Vec::with_capacity(all.len());
    let mut wire_events = Vec::with_capacity(all.len());
    for e in &all {
        let wire = encoder.outbound(&avro_topic, e).await.unwrap();
        avro_records.push(encode_event(&avro_config.topics, &wire).unwrap());
        wire_events.push(wire);
    }
    // The pieces of the Avro path, for the CPU breakdown.
    let schema = encoder
        .confluent()
        .codec()
        .schemas()
        .require(DEPOSITED, 1)
        .unwrap();
    let values: Vec<serde_json::Value> = all
        .iter()
        .map(|e| serde_json::from_slice(&e.record.data).unwrap())
        .collect();
    let decoder = avro_format(registry_url);
    decoder
        .inbound(&avro_topic, wire_events[0].clone())
        .await
        .unwrap();
    let avg = |r: &[EncodedMessage]| r.iter().map(record_bytes).sum::<usize>() / r.len().max(1);
    let avg_payload =
        |r: &[EncodedMessage]| r.iter().map(|m| m.payload.len()).sum::<usize>() / r.len().max(1);
    let (json_size, avro_size) = (avg(&json_records), avg(&avro_records));

    // Warm up every path (topic creation, metadata, connections, schema ids).
    let warm = all.len().min(1_000);
    raw_publish(&raw, &raw_json_topic, &json_records[..warm]).await;
    raw_publish(&raw, &raw_avro_topic, &avro_records[..warm]).await;
    publish(&json_publisher, &all[..warm], BATCH).await;
    publish(&avro_publisher, &all[..warm], BATCH).await;

    let mut times: HashMap<Path, Vec<Duration>> = HashMap::new();
    for round in 0..rounds {
        let mut order = Path::ALL.to_vec();
        order.rotate_left(round % Path::ALL.len());
        for path in order {
            let start = Instant::now();
            match path {
                Path::RawJson => raw_publish(&raw, &raw_json_topic, &json_records).await,
                Path::RawAvro => raw_publish(&raw, &raw_avro_topic, &avro_records).await,
                Path::Json500 => publish(&json_publisher, &all, BATCH).await,
                Path::Avro500 => publish(&avro_publisher, &all, BATCH).await,
                Path::JsonOne => publish(&json_publisher, &all, all.len()).await,
                Path::AvroOne => publish(&avro_publisher, &all, all.len()).await,
                Path::EncodeJson => {
                    for e in &all {
                        std::hint::black_box(encode_event(&config.topics, e).unwrap());
                    }
                }
                Path::EncodeAvro => {
                    for e in &all {
                        let wire = encoder.outbound(&avro_topic, e).await.unwrap();
                        std::hint::black_box(encode_event(&avro_config.topics, &wire).unwrap());
                    }
                }
                Path::ParseJson => {
                    for e in &all {
                        std::hint::black_box(
                            serde_json::from_slice::<serde_json::Value>(&e.record.data).unwrap(),
                        );
                    }
                }
                Path::AvroEncode => {
                    for v in &values {
                        std::hint::black_box(
                            encoder.confluent().codec().encode_with(schema, v).unwrap(),
                        );
                    }
                }
                Path::SchemaId => {
                    for _ in &all {
                        std::hint::black_box(
                            encoder
                                .confluent()
                                .schema_id(&avro_topic, schema)
                                .await
                                .unwrap(),
                        );
                    }
                }
                Path::Inbound => {
                    for w in &wire_events {
                        std::hint::black_box(
                            decoder.inbound(&avro_topic, w.clone()).await.unwrap(),
                        );
                    }
                }
            }
            times.entry(path).or_default().push(start.elapsed());
        }
    }

    let best = |p: Path| times[&p].iter().copied().min().unwrap_or_default();
    let median = |p: Path| {
        let s = sorted(&times[&p]);
        s[s.len() / 2]
    };
    let (raw_json, raw_avro) = (
        rate(all.len(), best(Path::RawJson)),
        rate(all.len(), best(Path::RawAvro)),
    );
    println!();
    println!(
        "## Publish throughput: {} events over {STREAMS} streams, {PARTITIONS} partitions, {rounds} interleaved rounds (load average {})",
        all.len(),
        load_average()
    );
    println!(
        "record size (key + headers + value): JSON {json_size} bytes (value {}), Avro {avro_size} bytes (value {})",
        avg_payload(&json_records),
        avg_payload(&avro_records)
    );
    println!();
    // Per round: the raw JSON time over the path's time, so that a round's
    // noise hits both sides of the ratio.
    let round_ratio = |p: Path| {
        let mut r: Vec<f64> = times[&Path::RawJson]
            .iter()
            .zip(&times[&p])
            .map(|(raw, t)| raw.as_secs_f64() / t.as_secs_f64())
            .collect();
        r.sort_by(f64::total_cmp);
        r[r.len() / 2]
    };
    println!(
        "| path | best events/s | median events/s | vs raw JSON, best | vs raw JSON, median of per-round ratios | vs raw, same bytes, best |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for path in Path::ALL.into_iter().filter(|p| !p.is_cpu()) {
        let (b, m) = (rate(all.len(), best(path)), rate(all.len(), median(path)));
        let same = match path {
            Path::RawAvro | Path::Avro500 | Path::AvroOne => raw_avro,
            _ => raw_json,
        };
        println!(
            "| {} | {b:.0} | {m:.0} | {:.2} | {:.2} | {:.2} |",
            path.label(),
            b / raw_json,
            round_ratio(path),
            b / same
        );
    }
    println!();
    println!("| CPU per event, no I/O (same rounds) | best µs | median µs |");
    println!("|---|---:|---:|");
    #[allow(clippy::cast_precision_loss)]
    let us = |d: Duration| d.as_secs_f64() * 1e6 / all.len() as f64;
    for path in Path::ALL.into_iter().filter(|p| p.is_cpu()) {
        println!(
            "| {} | {:.2} | {:.2} |",
            path.label(),
            us(best(path)),
            us(median(path))
        );
    }
    println!(
        "Avro / JSON, same batching: batches of 500 {:.2}, one batch {:.2}",
        best(Path::Json500).as_secs_f64() / best(Path::Avro500).as_secs_f64(),
        best(Path::JsonOne).as_secs_f64() / best(Path::AvroOne).as_secs_f64()
    );
}

/// Publish times by event id, and the handler-side latencies.
#[derive(Debug, Default)]
struct Clock {
    started: Mutex<HashMap<Uuid, Instant>>,
    latencies: Mutex<Vec<Duration>>,
}

impl Clock {
    fn start(&self, id: Uuid) {
        self.started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Instant::now());
    }

    fn seen(&self, id: Uuid) {
        let started = self
            .started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
        if let Some(t) = started {
            self.latencies
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(t.elapsed());
        }
    }

    fn count(&self) -> usize {
        self.latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn take(&self) -> Vec<Duration> {
        std::mem::take(
            &mut *self
                .latencies
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

#[derive(Debug)]
struct ClockHandler(Arc<Clock>);

#[async_trait]
impl EventHandler for ClockHandler {
    fn name(&self) -> &str {
        "bench-latency"
    }

    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> orchestrix::Result<()> {
        self.0.seen(event.id());
        Ok(())
    }
}

/// How one latency path publishes and who consumes it.
enum Sender {
    Raw {
        producer: FutureProducer,
        topic: String,
        topics: orchestrix_kafka::config::TopicConfig,
    },
    Publisher(Arc<KafkaPublisher>),
}

enum Receiver {
    Raw {
        stop: Arc<AtomicBool>,
        thread: std::thread::JoinHandle<()>,
    },
    Worker(ConsumerWorker),
    None,
}

struct LatencyPath {
    name: &'static str,
    sender: Arc<Sender>,
    receiver: Receiver,
    clock: Arc<Clock>,
    stream: StreamId,
    next: u64,
    latencies: Vec<Duration>,
    publish_calls: Arc<Mutex<Vec<Duration>>>,
    lost: usize,
}

impl Sender {
    async fn send(&self, event: &RecordedEvent) {
        match self {
            Self::Raw {
                producer,
                topic,
                topics,
            } => {
                let m = encode_event(topics, event).unwrap();
                Self::send_raw(producer, topic, &m).await;
            }
            Self::Publisher(p) => {
                p.publish_events(std::slice::from_ref(event))
                    .await
                    .expect("publish");
            }
        }
    }

    async fn send_raw(producer: &FutureProducer, topic: &str, m: &EncodedMessage) {
        producer
            .send(
                FutureRecord::to(topic)
                    .key(m.key.as_bytes())
                    .payload(&m.payload[..])
                    .headers(m.kafka_headers()),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("raw send");
    }
}

/// Polls a raw group consumer on its own thread until `stop`.
fn raw_consumer(config: &KafkaConfig, topic: &str, clock: Arc<Clock>) -> Receiver {
    let consumer: BaseConsumer = config
        .consumer_client_config(&format!("{topic}.raw-group"))
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let thread = std::thread::spawn({
        let stop = stop.clone();
        move || {
            while !stop.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        let record = KafkaRecord::from_message(&m);
                        if let Some(id) = record
                            .header_str("ce_id")
                            .and_then(|s| Uuid::parse_str(s).ok())
                        {
                            clock.seen(id);
                        }
                    }
                    Some(Err(e)) => eprintln!("raw consumer: {e}"),
                    None => {}
                }
            }
        }
    });
    Receiver::Raw { stop, thread }
}

impl LatencyPath {
    fn event(&mut self) -> RecordedEvent {
        let e = deposit(&self.stream, self.next, self.next);
        self.next += 1;
        e
    }

    /// Waits until `count` samples are in, for at most 60 s; whether they are.
    async fn wait_for(&self, count: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.clock.count() < count {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// One event, until the consumer has it: the group has joined.
    async fn prime(&mut self) {
        let e = self.event();
        self.clock.start(e.id());
        self.sender.send(&e).await;
        assert!(
            self.wait_for(1).await,
            "{}: the consumer never received the priming event",
            self.name
        );
        self.clock.take();
    }

    /// `n` events, one every [`LATENCY_INTERVAL`], each published by its own
    /// task so that a slow acknowledgement does not delay the next; then
    /// waits until the consumer has seen them.
    async fn block(&mut self, n: usize) {
        let mut tick = tokio::time::interval(LATENCY_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tasks = Vec::with_capacity(n);
        for _ in 0..n {
            tick.tick().await;
            let e = self.event();
            let (sender, clock, calls) = (
                self.sender.clone(),
                self.clock.clone(),
                self.publish_calls.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let start = Instant::now();
                clock.start(e.id());
                sender.send(&e).await;
                calls
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(start.elapsed());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        self.wait_for(n).await;
        let got = self.clock.take();
        self.lost += n.saturating_sub(got.len());
        self.latencies.extend(got);
        self.clock
            .started
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    async fn stop(self) {
        match self.receiver {
            Receiver::Raw { stop, thread } => {
                stop.store(true, Ordering::Relaxed);
                tokio::task::spawn_blocking(move || thread.join().unwrap())
                    .await
                    .unwrap();
            }
            Receiver::Worker(w) => w.shutdown().await.unwrap(),
            Receiver::None => {}
        }
    }

    fn new(name: &'static str, sender: Sender, receiver: Receiver, clock: Arc<Clock>) -> Self {
        Self {
            name,
            sender: Arc::new(sender),
            receiver,
            clock,
            stream: StreamId::new("account", "latency").unwrap(),
            next: 0,
            latencies: Vec::new(),
            publish_calls: Arc::new(Mutex::new(Vec::new())),
            lost: 0,
        }
    }

    /// Raw: the topic created as the adapter creates it, a raw group
    /// consumer on its own thread.
    async fn raw(config: &KafkaConfig) -> Self {
        let topic = config.topics.topic_for_category("account");
        ensure_topic(config, &topic, PARTITIONS).await.unwrap();
        let clock = Arc::new(Clock::default());
        let mut path = Self::new(
            "raw FutureProducer → raw BaseConsumer (baseline)",
            Sender::Raw {
                producer: config.producer_client_config().create().unwrap(),
                topic: topic.clone(),
                topics: config.topics.clone(),
            },
            raw_consumer(config, &topic, clock.clone()),
            clock,
        );
        path.prime().await;
        path
    }

    /// `KafkaPublisher` (with `format`) → `ConsumerWorker` (reading through
    /// `WireDecoding` with a format of its own when `registry_url` is given).
    /// The publisher creates its topic on the first (priming) event; the
    /// worker starts after it, from the beginning.
    async fn adapter(
        name: &'static str,
        config: &KafkaConfig,
        avro_registry_url: Option<&str>,
    ) -> Self {
        let mut publisher = KafkaPublisher::new(config.clone()).unwrap();
        if let Some(url) = avro_registry_url {
            publisher = publisher.with_value_format(avro_format(url));
        }
        let publisher = Arc::new(publisher);
        let clock = Arc::new(Clock::default());
        let mut path = Self::new(
            name,
            Sender::Publisher(publisher),
            Receiver::None,
            clock.clone(),
        );
        let first = path.event();
        clock.start(first.id());
        path.sender.send(&first).await;
        let topic = config.topics.topic_for_category("account");
        let handler: Arc<dyn EventHandler> = match avro_registry_url {
            None => Arc::new(ClockHandler(clock)),
            Some(url) => Arc::new(WireDecoding::new(
                avro_format(url) as Arc<dyn ValueFormat>,
                Arc::new(ClockHandler(clock)),
            )),
        };
        let worker = ConsumerWorker::builder(config.clone())
            .topic(&topic)
            .group_id(format!("{topic}.group"))
            .start(handler)
            .await
            .unwrap();
        path.receiver = Receiver::Worker(worker);
        assert!(path.wait_for(1).await, "{name}: no priming event");
        path.clock.take();
        path
    }
}

async fn latency(config: &KafkaConfig, run: &str, registry_url: &str, per_path: usize) {
    let raw = LatencyPath::raw(&with_prefix(config, &format!("{run}-lraw"))).await;
    let json = LatencyPath::adapter(
        "KafkaPublisher → ConsumerWorker (JSON)",
        &with_prefix(config, &format!("{run}-ljson")),
        None,
    )
    .await;
    let avro = LatencyPath::adapter(
        "KafkaPublisher + AvroWireFormat → ConsumerWorker + WireDecoding (Avro)",
        &with_prefix(config, &format!("{run}-lavro")),
        Some(registry_url),
    )
    .await;
    let mut paths = [raw, json, avro];

    let started = Instant::now();
    let blocks = per_path.div_ceil(LATENCY_BLOCK);
    for b in 0..blocks {
        let n = LATENCY_BLOCK.min(per_path - b * LATENCY_BLOCK);
        for k in 0..paths.len() {
            let i = (b + k) % paths.len();
            paths[i].block(n).await;
        }
    }
    let took = started.elapsed();

    println!();
    println!(
        "## End-to-end latency: {per_path} events per path, one every {} ms, in blocks of {LATENCY_BLOCK} taking turns ({:.1} s; load average {})",
        LATENCY_INTERVAL.as_millis(),
        took.as_secs_f64(),
        load_average()
    );
    println!(
        "latency = handler sees the event − just before the publish call (matched by event id)"
    );
    println!();
    println!(
        "| path | p50 | p99 | max | received | p50 vs raw | p99 vs raw | publish call p50 (until acked) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let raw_lat = sorted(&paths[0].latencies);
    let (raw_p50, raw_p99) = (percentile(&raw_lat, 0.50), percentile(&raw_lat, 0.99));
    for p in &paths {
        let lat = sorted(&p.latencies);
        let calls = sorted(
            &p.publish_calls
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));
        println!(
            "| {} | {:.1} ms | {:.1} ms | {:.1} ms | {}{} | {:.2} | {:.2} | {:.1} ms |",
            p.name,
            ms(p50),
            ms(p99),
            ms(lat.last().copied().unwrap_or_default()),
            lat.len(),
            if p.lost > 0 {
                format!(" ({} not seen within 60 s)", p.lost)
            } else {
                String::new()
            },
            p50.as_secs_f64() / raw_p50.as_secs_f64(),
            p99.as_secs_f64() / raw_p99.as_secs_f64(),
            ms(percentile(&calls, 0.50)),
        );
    }
    for p in paths {
        p.stop().await;
    }
}

#[tokio::main]
async fn main() {
    let brokers =
        std::env::var("ORCHESTRIX_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    if std::net::TcpStream::connect(brokers.split(',').next().unwrap_or_default()).is_err() {
        eprintln!("skipping the Kafka formats benchmark: no broker at {brokers}");
        return;
    }
    // `cargo bench` passes `--bench`; anything else selects sections.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants =
        |section: &str| only.is_empty() || only.iter().any(|o| section.contains(o.as_str()));
    let events: u64 = env_or("BENCH_EVENTS", 50_000);
    let rounds: usize = env_or("BENCH_ROUNDS", 7).max(1);
    let per_path: usize = env_or("BENCH_LATENCY_EVENTS", 200).max(1);

    let run = format!("fmt-{:08x}", rand::random::<u32>());
    let mut config = KafkaConfig {
        brokers: vec![brokers.clone()],
        ..KafkaConfig::default()
    };
    config.topics.prefix = run.clone();
    config.topics.partitions = PARTITIONS;
    config.consumer.session_timeout_ms = 6_000;
    config.consumer.heartbeat_interval_ms = 1_000;
    let registry = serve(
        Arc::new(EmbeddedRegistry::memory()),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let url = registry.url();
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    println!(
        "Kafka bus: Avro vs JSON vs raw rdkafka; brokers {brokers}, registry {url} (HTTP, ids cached after the first); {cpus} CPUs; load average {} at start",
        load_average()
    );
    let p = &config.producer;
    println!(
        "producer (every path): idempotent, acks=all, {:?} compression, linger.ms={}; consumers: fetch.wait.max.ms={}",
        p.compression, p.linger_ms, config.consumer.fetch_wait_max_ms
    );
    let started = Instant::now();
    if wants("throughput") {
        throughput(&config, &run, &url, events, rounds).await;
    }
    if wants("latency") {
        latency(&config, &run, &url, per_path).await;
    }
    println!();
    println!(
        "took {:.0} s; load average {} at end",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    registry.shutdown().await.unwrap();
}
