//! The bank in Avro mode: `--bus kafka://...&format=avro&registry=URL` (and
//! the same on NATS), with the project's registry served over real HTTP.
//!
//! - The demo binary runs twice in a row on one store and ends right both
//!   times: its saga and projection consume the Avro records back.
//! - A consumer that knows nothing of Orchestrix (librdkafka, the registry's
//!   REST API, apache-avro) reads every record of the bank's topics: each is
//!   a Confluent frame whose schema id resolves to the schema of the event
//!   type its `ce_type` header names (the saga engine's own records to the
//!   engine envelope), and there is one record per stored event.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use apache_avro::types::Value as Avro;
use common::{assert_demo_correct, kafka_bus_url, nats_bus_url, run_demo};
use orchestrix::store::Filter;
use orchestrix_kafka::rdkafka::ClientConfig;
use orchestrix_kafka::rdkafka::Message as _;
use orchestrix_kafka::rdkafka::consumer::{BaseConsumer, Consumer as _};
use orchestrix_kafka::rdkafka::message::Headers as _;
use orchestrix_kafka::rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use orchestrix_schema_registry::EmbeddedRegistry;
use orchestrix_schema_registry::server::{ServerHandle, serve};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn registry() -> ServerHandle {
    serve(
        Arc::new(EmbeddedRegistry::memory()),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

/// `GET path` on the registry, as any HTTP client would: the JSON body.
async fn http_get(registry: &ServerHandle, path: &str) -> serde_json::Value {
    let addr = registry.url().trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(addr.as_str()).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/vnd.schemaregistry.v1+json\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{path}: {response}"
    );
    serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap()
}

/// Every record of every topic whose name starts with `prefix`:
/// `(topic, ce_type header, value)`.
fn read_topics(brokers: &str, prefix: &str) -> Vec<(String, String, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("independent-{prefix}"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for topic in metadata.topics() {
        if !topic.name().starts_with(prefix) {
            continue;
        }
        for p in topic.partitions() {
            let (_, high) = consumer
                .fetch_watermarks(topic.name(), p.id(), Duration::from_secs(10))
                .unwrap();
            if high > 0 {
                assignment
                    .add_partition_offset(topic.name(), p.id(), Offset::Beginning)
                    .unwrap();
                ends.insert((topic.name().to_owned(), p.id()), high);
            }
        }
    }
    assert!(!ends.is_empty(), "no records on topics `{prefix}*`");
    consumer.assign(&assignment).unwrap();
    let mut records = Vec::new();
    let mut done = BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while done.len() < ends.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "reading the topics took too long"
        );
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let m = message.unwrap();
        let ce_type = m
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "ce_type"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8(v.to_vec()).unwrap())
            .expect("a ce_type header");
        records.push((
            m.topic().to_owned(),
            ce_type,
            m.payload().unwrap_or_default().to_vec(),
        ));
        let key = (m.topic().to_owned(), m.partition());
        if m.offset() + 1 >= ends[&key] {
            done.insert(key);
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bank_in_avro_mode_on_kafka_is_read_by_a_consumer_that_knows_nothing_of_orchestrix() {
    let Some(bus) = kafka_bus_url("the_bank_in_avro_mode_on_kafka").await else {
        return;
    };
    let registry = registry().await;
    let bus = format!("{bus}&format=avro&registry={}", registry.url());
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("bank.db").display());
    for run in 1..=2 {
        let printed = run_demo(&store_url, &bus, Duration::from_secs(150)).await;
        eprintln!("run {run} passed");
        assert_demo_correct(&printed);
    }

    let store = orchestrix_backends::open_store(&store_url).await.unwrap();
    let stored = store.read_all(0, 100_000, &Filter::all()).await.unwrap();
    let brokers =
        std::env::var("ORCHESTRIX_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let prefix = bus
        .split("prefix=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let records = read_topics(&brokers, &format!("{prefix}."));
    assert_eq!(records.len(), stored.len(), "one record per stored event");

    let mut schemas: BTreeMap<u32, apache_avro::Schema> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (topic, ce_type, value) in &records {
        assert!(
            value.len() >= 5 && value[0] == 0,
            "{topic} {ce_type}: not a Confluent frame"
        );
        let id = u32::from_be_bytes(value[1..5].try_into().unwrap());
        if let std::collections::btree_map::Entry::Vacant(slot) = schemas.entry(id) {
            let body = http_get(&registry, &format!("/schemas/ids/{id}")).await;
            let text = body["schema"].as_str().unwrap();
            slot.insert(apache_avro::Schema::parse_str(text).unwrap());
        }
        let schema = &schemas[&id];
        let decoded = apache_avro::from_avro_datum(schema, &mut &value[5..], None)
            .unwrap_or_else(|e| panic!("{topic} {ce_type}: {e}"));
        let Avro::Record(fields) = decoded else {
            panic!("{ce_type}: not a record")
        };
        let apache_avro::Schema::Record(record) = schema else {
            panic!("{ce_type}: not a record schema")
        };
        if ce_type.starts_with("orchestrix.saga.") {
            assert_eq!(record.name.fullname(None), "orchestrix.saga.EngineRecord");
            assert_eq!(fields[0].1, Avro::String(ce_type.clone()));
        } else {
            assert_eq!(
                &record.name.fullname(None),
                ce_type,
                "the schema of the event type"
            );
            if ce_type.ends_with(".Deposited") {
                assert!(matches!(fields[0].1, Avro::Long(n) if n > 0), "{fields:?}");
            }
        }
        seen.insert(ce_type.clone());
    }
    for expected in [
        "com.orchestrix.bank.account.Opened",
        "com.orchestrix.bank.account.Closed",
        "com.orchestrix.bank.transfer.Requested",
        "com.orchestrix.bank.transfersaga.Started",
        "orchestrix.saga.CommandSent",
    ] {
        assert!(seen.contains(expected), "no {expected} among {seen:?}");
    }
    // The registry holds the bank's subjects (record names), nothing else.
    let subjects = http_get(&registry, "/subjects").await;
    let subjects: BTreeSet<&str> = subjects
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let types: BTreeSet<&str> = seen
        .iter()
        .map(|t| {
            if t.starts_with("orchestrix.saga.") {
                "orchestrix.saga.EngineRecord"
            } else {
                t.as_str()
            }
        })
        .collect();
    assert_eq!(subjects, types);
    registry.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bank_in_avro_mode_on_nats_runs_twice_and_ends_right() {
    let Some(bus) = nats_bus_url("the_bank_in_avro_mode_on_nats").await else {
        return;
    };
    let registry = registry().await;
    let bus = format!("{bus}&format=avro&registry={}", registry.url());
    let dir = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite://{}", dir.path().join("bank.db").display());
    for run in 1..=2 {
        let printed = run_demo(&store_url, &bus, Duration::from_secs(150)).await;
        eprintln!("run {run} passed");
        assert_demo_correct(&printed);
    }
    let subjects = http_get(&registry, "/subjects").await;
    assert!(
        subjects
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "com.orchestrix.bank.transfer.Requested"),
        "{subjects}"
    );
    registry.shutdown().await.unwrap();
}
