//! Avro on the wire, end to end, on Apache Kafka with a schema registry
//! served over real HTTP:
//!
//! - the relay publishes JSON-stored events as Confluent-framed Avro (magic
//!   byte 0, schema id, Avro binary; record-name subjects), and a consumer
//!   that knows nothing of Orchestrix — librdkafka, the registry's REST API
//!   over a plain TCP socket, and the `apache-avro` crate as the decoder —
//!   decodes every record to the stored payload;
//! - v1 and v2 writers share one topic and one reader resolves every record
//!   to v2, while an unknown schema id and a truncated frame go to the
//!   dead-letter topic with their reasons and later events still flow;
//! - the guide's schema-evolution walk-through on a live topic (v1 producer
//!   and consumer running, v2 registered, v2 producer joins; v3 refused).

mod common;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::{read_all, unique};
use orchestrix::relay::{Relay, RelayConfig};
use orchestrix::runtime::{Delivery, EventHandler};
use orchestrix::store::{ExpectedRevision, Filter};
use orchestrix::wire::{ValueFormat, WireDecoding};
use orchestrix::{EventRecord, RecordedEvent, Store, StreamId};
use orchestrix_avro::{AvroCodec, AvroSchemas};
use orchestrix_kafka::publisher::encode_event;
use orchestrix_kafka::rdkafka::ClientConfig;
use orchestrix_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use orchestrix_kafka::{ConsumerWorker, KafkaConfig, KafkaPublisher};
use orchestrix_schema_registry::server::{ServerHandle, serve};
use orchestrix_schema_registry::{AvroWireFormat, ConfluentAvro, EmbeddedRegistry, RegistryClient};
use orchestrix_testkit::services::{Service, require};
use serde_json::{Value, json};

const OPENED_V1: &str = r#"{"type":"record","name":"AccountOpened","namespace":"com.acme.bank",
  "fields":[{"name":"owner","type":"string"},{"name":"currency","type":"string"}]}"#;
const DEPOSITED_V1: &str = r#"{"type":"record","name":"MoneyDeposited","namespace":"com.acme.bank",
  "fields":[{"name":"amount","type":"long"}]}"#;
// v2 adds an optional field: BACKWARD compatible.
const DEPOSITED_V2: &str = r#"{"type":"record","name":"MoneyDeposited","namespace":"com.acme.bank",
  "fields":[{"name":"amount","type":"long"},{"name":"memo","type":["null","string"],"default":null}]}"#;

fn config(brokers: &str) -> KafkaConfig {
    let mut c = KafkaConfig {
        brokers: vec![brokers.to_owned()],
        ..KafkaConfig::default()
    };
    c.topics.prefix = unique("avro");
    c.topics.partitions = 3;
    c.consumer.session_timeout_ms = 6_000;
    c.consumer.heartbeat_interval_ms = 1_000;
    c.consumer.commit_interval_ms = 200;
    c
}

async fn registry() -> ServerHandle {
    serve(
        Arc::new(EmbeddedRegistry::memory()),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap()
}

/// An Avro wire format whose catalog knows `schemas`, talking to the
/// registry at `url` over HTTP.
fn format(url: &str, schemas: &[(&str, u32, &str)]) -> Arc<AvroWireFormat> {
    let mut catalog = AvroSchemas::new();
    for (t, v, s) in schemas {
        catalog = catalog.with(t, *v, s).unwrap();
    }
    let client = RegistryClient::new(url).unwrap();
    Arc::new(AvroWireFormat::new(ConfluentAvro::new(
        Arc::new(client),
        AvroCodec::new(catalog),
    )))
}

/// `GET path` from the registry with nothing but a socket: the body as JSON.
fn http_get(addr: SocketAddr, path: &str) -> Value {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/vnd.schemaregistry.v1+json\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_avro_records_decode_with_a_consumer_that_knows_nothing_of_orchestrix() {
    let Some(brokers) = require(Service::Kafka) else {
        return;
    };
    let registry = registry().await;
    let url = format!("http://{}", registry.local_addr());
    let config = config(&brokers);
    let topic = config.topics.topic_for_category("account");
    let store = Store::memory();
    for i in 0..30_u32 {
        let stream = StreamId::new("account", &format!("{}", i % 6)).unwrap();
        let record = if i < 6 {
            EventRecord::json(
                "com.acme.bank.AccountOpened",
                1,
                &json!({"owner": format!("owner {i}"), "currency": "EUR"}),
            )
        } else {
            EventRecord::json(
                "com.acme.bank.MoneyDeposited",
                1,
                &json!({"amount": i * 10}),
            )
        };
        store
            .append(&stream, ExpectedRevision::Any, vec![record])
            .await
            .unwrap();
    }
    // The format as a user asks for it: in the bus URL.
    let (rest, bus_format) = orchestrix_backends::format::split_format(&format!(
        "kafka://{brokers}?prefix={}&format=avro&registry={url}",
        config.topics.prefix
    ))
    .unwrap();
    assert_eq!(
        rest,
        format!("kafka://{brokers}?prefix={}", config.topics.prefix)
    );
    let catalog = AvroSchemas::new()
        .with("com.acme.bank.AccountOpened", 1, OPENED_V1)
        .unwrap()
        .with("com.acme.bank.MoneyDeposited", 1, DEPOSITED_V1)
        .unwrap();
    let avro = orchestrix_backends::format::value_format(&bus_format, Some(catalog))
        .unwrap()
        .expect("format=avro builds a format");
    assert_eq!(avro.name(), "avro");
    let publisher = KafkaPublisher::new(config.clone())
        .unwrap()
        .with_value_format(avro);
    let relay = Relay::start(store.clone(), Arc::new(publisher), RelayConfig::default())
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(60), relay.wait_for(30))
        .await
        .expect("relayed")
        .unwrap();
    relay.shutdown().await.unwrap();

    let stored: Vec<RecordedEvent> = store.read_all(0, 100, &Filter::all()).await.unwrap();
    let records = tokio::task::spawn_blocking({
        let (brokers, topic) = (brokers.clone(), topic.clone());
        move || read_all(&brokers, &topic)
    })
    .await
    .unwrap();
    assert_eq!(records.len(), stored.len());
    let addr = registry.local_addr();
    for r in &records {
        // The Confluent frame, read by hand.
        let v = &r.payload[..];
        assert_eq!(v[0], 0, "magic byte");
        let id = u32::from_be_bytes([v[1], v[2], v[3], v[4]]);
        assert_eq!(r.header_str("content-type"), Some("application/avro"));
        let schema_text = tokio::task::spawn_blocking(move || {
            http_get(addr, &format!("/schemas/ids/{id}"))["schema"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .await
        .unwrap();
        let schema = apache_avro::Schema::parse_str(&schema_text).unwrap();
        let datum = apache_avro::from_avro_datum(&schema, &mut &v[5..], None).unwrap();
        let decoded: Value = datum.try_into().unwrap();
        let event_id = r.header_str("ce_id").unwrap();
        let original = stored
            .iter()
            .find(|e| e.id().to_string() == event_id)
            .expect("every record is a stored event");
        let original: Value = serde_json::from_slice(&original.record.data).unwrap();
        assert_eq!(decoded, original, "record {event_id} (schema id {id})");
    }
    // Record-name subjects: one per event type.
    let subjects = tokio::task::spawn_blocking(move || http_get(addr, "/subjects"))
        .await
        .unwrap();
    let mut subjects: Vec<&str> = subjects
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    subjects.sort_unstable();
    assert_eq!(
        subjects,
        [
            "com.acme.bank.AccountOpened",
            "com.acme.bank.MoneyDeposited"
        ]
    );
}

#[derive(Debug, Default)]
struct Collect {
    seen: Mutex<Vec<(u32, Value)>>,
}

#[async_trait]
impl EventHandler for Collect {
    fn name(&self) -> &str {
        "collect"
    }

    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> orchestrix::Result<()> {
        let value: Value = serde_json::from_slice(&event.record.data)
            .map_err(|e| orchestrix::Error::decode("payload", e))?;
        self.seen
            .lock()
            .unwrap()
            .push((event.record.schema_version, value));
        Ok(())
    }
}

fn deposited(stream: &StreamId, revision: u64, version: u32, payload: &Value) -> RecordedEvent {
    RecordedEvent {
        stream_id: stream.clone(),
        revision,
        position: revision + 1,
        record: EventRecord::json("com.acme.bank.MoneyDeposited", version, payload),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_v1_and_v2_writers_one_reader_and_bad_frames_dead_lettered() {
    let Some(brokers) = require(Service::Kafka) else {
        return;
    };
    let registry = registry().await;
    let url = format!("http://{}", registry.local_addr());
    let config = config(&brokers);
    let topic = config.topics.topic_for_category("account");
    let stream = StreamId::parse("account-1").unwrap();
    let v1 = format(&url, &[("com.acme.bank.MoneyDeposited", 1, DEPOSITED_V1)]);
    let v2 = format(
        &url,
        &[
            ("com.acme.bank.MoneyDeposited", 1, DEPOSITED_V1),
            ("com.acme.bank.MoneyDeposited", 2, DEPOSITED_V2),
        ],
    );
    let old_writer = KafkaPublisher::new(config.clone())
        .unwrap()
        .with_value_format(v1.clone());
    let new_writer = KafkaPublisher::new(config.clone())
        .unwrap()
        .with_value_format(v2.clone());
    old_writer
        .publish_events(&[deposited(&stream, 0, 1, &json!({"amount": 10}))])
        .await
        .unwrap();
    new_writer
        .publish_events(&[deposited(
            &stream,
            1,
            2,
            &json!({"amount": 20, "memo": "rent"}),
        )])
        .await
        .unwrap();
    // Two frames no reader can read, with valid CloudEvents headers: an
    // unknown schema id and a frame cut short.
    let raw: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for (revision, bad) in [(2_u64, vec![0, 0, 1, 0x86, 0xA0, 2]), (3, vec![0, 0, 0])] {
        let template = encode_event(
            &config.topics,
            &deposited(&stream, revision, 1, &json!({"amount": 0})),
        )
        .unwrap();
        let mut headers = template.kafka_headers();
        headers = headers.insert(orchestrix_kafka::rdkafka::message::Header {
            key: "x-test",
            value: Some("poison".as_bytes()),
        });
        raw.send(
            FutureRecord::to(&topic)
                .key(&template.key)
                .payload(&bad)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    }
    old_writer
        .publish_events(&[deposited(&stream, 4, 1, &json!({"amount": 40}))])
        .await
        .unwrap();

    // One reader, on the newest schema, decoding by schema id.
    let collect = Arc::new(Collect::default());
    let reader = format(
        &url,
        &[
            ("com.acme.bank.MoneyDeposited", 1, DEPOSITED_V1),
            ("com.acme.bank.MoneyDeposited", 2, DEPOSITED_V2),
        ],
    );
    let handler = Arc::new(WireDecoding::new(
        reader as Arc<dyn ValueFormat>,
        collect.clone(),
    ));
    let worker = ConsumerWorker::builder(config.clone())
        .topic(&topic)
        .start(handler)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while collect.seen.lock().unwrap().len() < 3 || worker.stats().dead_lettered < 2 {
        assert!(
            Instant::now() < deadline,
            "seen {:?}, dead-lettered {}",
            collect.seen.lock().unwrap(),
            worker.stats().dead_lettered
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.shutdown().await.unwrap();
    assert_eq!(
        *collect.seen.lock().unwrap(),
        vec![
            (2, json!({"amount": 10, "memo": null})),
            (2, json!({"amount": 20, "memo": "rent"})),
            (2, json!({"amount": 40, "memo": null})),
        ],
        "every record resolved to the reader's v2, in order, the bad ones skipped"
    );

    // The dead letters carry the reasons.
    let dlq = config.consumer.dead_letter_topic.replace("{topic}", &topic);
    let letters = tokio::task::spawn_blocking(move || read_all(&brokers, &dlq))
        .await
        .unwrap();
    assert_eq!(letters.len(), 2, "each bad frame dead-lettered once");
    let reasons: Vec<String> = letters
        .iter()
        .map(|l| {
            l.headers
                .iter()
                .filter(|(k, _)| k.contains("reason") || k.contains("error"))
                .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(v)))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .collect();
    assert!(
        reasons[0].contains("100000") || reasons[0].to_lowercase().contains("schema id"),
        "unknown id named: {reasons:?}"
    );
    assert!(
        reasons[1].to_lowercase().contains("truncat") || reasons[1].contains("header"),
        "truncation named: {reasons:?}"
    );
}

// v3 changes a field's type: no reader of v2 can read it.
const DEPOSITED_V3: &str = r#"{"type":"record","name":"MoneyDeposited","namespace":"com.acme.bank",
  "fields":[{"name":"amount","type":"string"},{"name":"memo","type":["null","string"],"default":null}]}"#;
const DEPOSITED: &str = "com.acme.bank.MoneyDeposited";

/// The schema-evolution walk-through of the guide (chapter 6), on a live
/// topic: a v1 producer and a v1-era consumer are running; v2 is checked and
/// registered (BACKWARD); a v2 producer that may only look schemas up (a
/// read-only production registry) joins, both producers keep writing, and
/// the v1-era consumer and a v2 consumer each read every event in its own
/// version; an incompatible v3 is refused by the registry with the reason
/// in words, and a v3 producer cannot publish (nothing half-written).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn schema_evolution_on_a_live_topic() {
    use orchestrix_schema_registry::{RegistryError, SchemaRegistry as _, VersionSpec};

    let Some(brokers) = require(Service::Kafka) else {
        return;
    };
    let registry = registry().await;
    let url = format!("http://{}", registry.local_addr());
    let client = RegistryClient::new(&url).unwrap();
    let config = config(&brokers);
    let topic = config.topics.topic_for_category("account");
    let stream = StreamId::parse("account-7").unwrap();
    let v1_catalog = [(DEPOSITED, 1, DEPOSITED_V1)];
    let v2_catalog = [(DEPOSITED, 1, DEPOSITED_V1), (DEPOSITED, 2, DEPOSITED_V2)];

    // A v1 producer is running; so is a v1-era consumer.
    let v1_writer = KafkaPublisher::new(config.clone())
        .unwrap()
        .with_value_format(format(&url, &v1_catalog));
    let mut revision = 0;
    for _ in 0..3 {
        v1_writer
            .publish_events(&[deposited(
                &stream,
                revision,
                1,
                &json!({"amount": revision}),
            )])
            .await
            .unwrap();
        revision += 1;
    }
    let start = |catalog: &[(&str, u32, &str)], group: &str| {
        let collect = Arc::new(Collect::default());
        let handler = Arc::new(WireDecoding::new(
            format(&url, catalog) as Arc<dyn ValueFormat>,
            collect.clone(),
        ));
        let builder = ConsumerWorker::builder(config.clone())
            .topic(&topic)
            .group_id(unique(group));
        (
            collect,
            async move { builder.start(handler).await.unwrap() },
        )
    };
    let (old_reader, worker) = start(&v1_catalog, "v1-era");
    let old_worker = worker.await;

    // v2 adds an optional field: the check passes and it is registered.
    let check = client
        .check_compatibility(DEPOSITED, VersionSpec::Latest, DEPOSITED_V2)
        .await
        .unwrap();
    assert!(check.is_compatible, "{check:?}");
    assert_eq!(client.register(DEPOSITED, DEPOSITED_V2).await.unwrap(), 2);

    // A v2 producer that only looks schemas up, and a v2 consumer.
    let v2_format = format(&url, &v2_catalog);
    let read_only = AvroWireFormat::new(v2_format.confluent().clone().with_auto_register(false));
    let v2_writer = KafkaPublisher::new(config.clone())
        .unwrap()
        .with_value_format(Arc::new(read_only));
    let (new_reader, worker) = start(&v2_catalog, "v2");
    let new_worker = worker.await;
    // Both producers keep writing, interleaved.
    while revision < 13 {
        let event = if revision % 2 == 0 {
            deposited(&stream, revision, 1, &json!({"amount": revision}))
        } else {
            deposited(
                &stream,
                revision,
                2,
                &json!({"amount": revision, "memo": format!("m{revision}")}),
            )
        };
        let writer = if revision % 2 == 0 {
            &v1_writer
        } else {
            &v2_writer
        };
        writer.publish_events(&[event]).await.unwrap();
        revision += 1;
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    while old_reader.seen.lock().unwrap().len() < 13 || new_reader.seen.lock().unwrap().len() < 13 {
        assert!(
            Instant::now() < deadline,
            "v1-era consumer saw {:?}; v2 consumer saw {:?}; dead-lettered {} / {}",
            old_reader.seen.lock().unwrap(),
            new_reader.seen.lock().unwrap(),
            old_worker.stats().dead_lettered,
            new_worker.stats().dead_lettered
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        (
            old_worker.stats().dead_lettered,
            new_worker.stats().dead_lettered
        ),
        (0, 0)
    );
    old_worker.shutdown().await.unwrap();
    new_worker.shutdown().await.unwrap();
    let old_seen = old_reader.seen.lock().unwrap().clone();
    let new_seen = new_reader.seen.lock().unwrap().clone();
    for n in 0..13_u64 {
        let i = usize::try_from(n).unwrap();
        // The v1-era consumer reads every event as v1: v2's memo is not there.
        assert_eq!(old_seen[i], (1, json!({"amount": n})), "v1-era, event {n}");
        // The v2 consumer reads every event as v2: v1's have the default.
        let memo = if n >= 3 && n % 2 == 1 {
            json!(format!("m{n}"))
        } else {
            Value::Null
        };
        assert_eq!(
            new_seen[i],
            (2, json!({"amount": n, "memo": memo})),
            "v2, event {n}"
        );
    }

    // v3 breaks BACKWARD: the check says why, and the registry refuses it.
    let check = client
        .check_compatibility(DEPOSITED, VersionSpec::Latest, DEPOSITED_V3)
        .await
        .unwrap();
    assert!(!check.is_compatible);
    assert!(
        check.messages.iter().any(|m| m.contains("amount")),
        "the reason names the field: {:?}",
        check.messages
    );
    match client.register(DEPOSITED, DEPOSITED_V3).await {
        Err(RegistryError::Incompatible { details, .. }) => {
            assert!(details.iter().any(|d| d.contains("amount")), "{details:?}");
        }
        other => panic!("v3 was not refused: {other:?}"),
    }
    // A v3 producer on the read-only path cannot publish: its schema is not
    // registered, and it says so.
    let v3_catalog = [
        (DEPOSITED, 1, DEPOSITED_V1),
        (DEPOSITED, 2, DEPOSITED_V2),
        (DEPOSITED, 3, DEPOSITED_V3),
    ];
    let v3_writer = KafkaPublisher::new(config.clone())
        .unwrap()
        .with_value_format(Arc::new(AvroWireFormat::new(
            format(&url, &v3_catalog)
                .confluent()
                .clone()
                .with_auto_register(false),
        )));
    let err = v3_writer
        .publish_events(&[deposited(&stream, revision, 3, &json!({"amount": "13"}))])
        .await
        .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("not found"),
        "{err}"
    );
    assert_eq!(client.versions(DEPOSITED).await.unwrap(), vec![1, 2]);
}
