//! A schema registry outage loses no events (issue 13): schema ids are
//! cached, and what is not cached waits for the registry.
//!
//! - The relay publishes to Apache Kafka as Confluent-framed Avro through a
//!   registry served over HTTP (SQLite storage, so that it restarts with the
//!   same ids). The registry goes down before some event types were ever
//!   registered: the relay retries and does not advance past the first event
//!   it cannot encode, and once the registry is back on the same port every
//!   event is on the topic exactly once, in order per stream, with the ids
//!   the registry gave before the outage.
//! - A consumer decoding through the registry that meets a schema id it has
//!   not cached while the registry is down retries (a transient error) and
//!   dead-letters nothing; it decodes everything once the registry is back.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
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
use orchestrix_kafka::config::RetryConfig;
use orchestrix_kafka::{ConsumerWorker, KafkaConfig, KafkaPublisher};
use orchestrix_schema_registry::server::{ServerHandle, serve};
use orchestrix_schema_registry::{
    AvroWireFormat, ConfluentAvro, EmbeddedRegistry, RegistryClient, SchemaRegistry as _,
};
use orchestrix_testkit::services::{Service, require};
use serde_json::{Value, json};

const OPENED: &str = "com.acme.bank.AccountOpened";
const DEPOSITED: &str = "com.acme.bank.MoneyDeposited";
const WITHDRAWN: &str = "com.acme.bank.MoneyWithdrawn";
const OPENED_V1: &str = r#"{"type":"record","name":"AccountOpened","namespace":"com.acme.bank",
  "fields":[{"name":"owner","type":"string"}]}"#;
const DEPOSITED_V1: &str = r#"{"type":"record","name":"MoneyDeposited","namespace":"com.acme.bank",
  "fields":[{"name":"amount","type":"long"}]}"#;
const WITHDRAWN_V1: &str = r#"{"type":"record","name":"MoneyWithdrawn","namespace":"com.acme.bank",
  "fields":[{"name":"amount","type":"long"}]}"#;

fn config(brokers: &str) -> KafkaConfig {
    let mut c = KafkaConfig {
        brokers: vec![brokers.to_owned()],
        ..KafkaConfig::default()
    };
    c.topics.prefix = unique("outage");
    c.topics.partitions = 3;
    c.consumer.session_timeout_ms = 6_000;
    c.consumer.heartbeat_interval_ms = 1_000;
    c.consumer.commit_interval_ms = 200;
    c
}

/// A registry on a SQLite file, served over HTTP at a fixed address, that
/// can be stopped and started again with the same ids.
struct Registry {
    file: PathBuf,
    addr: SocketAddr,
    server: Option<ServerHandle>,
}

impl Registry {
    /// On a local port that is free now (the OS picks it), so that a
    /// restart can listen on the same one.
    async fn start() -> Self {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let file = std::env::temp_dir().join(format!("{}.db", unique("registry-outage-")));
        let mut registry = Self {
            file,
            addr,
            server: None,
        };
        registry.up().await;
        registry
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn up(&mut self) {
        let storage: Arc<EmbeddedRegistry> =
            Arc::new(EmbeddedRegistry::sqlite(&self.file).unwrap());
        // The port was just released by the previous server: bind again.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match serve(storage.clone(), self.addr).await {
                Ok(server) => {
                    self.server = Some(server);
                    return;
                }
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "cannot listen on {}: {e}",
                        self.addr
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn down(&mut self) {
        self.server
            .take()
            .expect("running")
            .shutdown()
            .await
            .unwrap();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// An Avro wire format with all three event types in its catalog, talking to
/// the registry at `url` over HTTP, with an empty id cache.
fn format(url: &str) -> Arc<AvroWireFormat> {
    let catalog = AvroSchemas::new()
        .with(OPENED, 1, OPENED_V1)
        .unwrap()
        .with(DEPOSITED, 1, DEPOSITED_V1)
        .unwrap()
        .with(WITHDRAWN, 1, WITHDRAWN_V1)
        .unwrap();
    let client = RegistryClient::new(url)
        .unwrap()
        .with_timeout(Duration::from_secs(2));
    Arc::new(AvroWireFormat::new(ConfluentAvro::new(
        Arc::new(client),
        AvroCodec::new(catalog),
    )))
}

fn event(kind: &str, n: u64) -> EventRecord {
    let payload = if kind == OPENED {
        json!({"owner": format!("owner {n}")})
    } else {
        json!({"amount": n})
    };
    EventRecord::json(kind, 1, &payload)
}

fn schema_id(value: &[u8]) -> u32 {
    assert_eq!(value[0], 0, "magic byte");
    u32::from_be_bytes([value[1], value[2], value[3], value[4]])
}

/// The relay through an outage: held back while the registry is down, then
/// every event on the topic exactly once, in order per stream, with the
/// ids of its type (`KafkaPublisher` encodes a whole batch before sending
/// any of it, so a batch that cannot be encoded sends nothing and its
/// retry sends nothing twice; it used to send the events before the
/// unencodable one again on every retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_outage_holds_the_relay_back_and_publishes_each_event_once() {
    let Some(brokers) = require(Service::Kafka) else {
        return;
    };
    let duplicated = relay_through_an_outage(&brokers).await;
    assert!(
        duplicated.is_empty(),
        "published more than once (event id, copies): {duplicated:?}"
    );
}

/// Runs the outage scenario and checks everything but once-ness: held back
/// while the registry is down, then every stored event on the topic, in
/// order per stream, none skipped, ids stable. Returns the events that are
/// on the topic more than once, with their counts.
async fn relay_through_an_outage(brokers: &str) -> Vec<(String, usize)> {
    let brokers = brokers.to_owned();
    let mut registry = Registry::start().await;
    let config = config(&brokers);
    let topic = config.topics.topic_for_category("account");
    let store = Store::memory();
    let publisher = KafkaPublisher::new(config.clone())
        .unwrap()
        .with_value_format(format(&registry.url()));
    let relay = Relay::start(store.clone(), Arc::new(publisher), RelayConfig::default())
        .await
        .unwrap();
    let streams: Vec<StreamId> = (0..4)
        .map(|i| StreamId::new("account", &i.to_string()).unwrap())
        .collect();

    // Before the outage: one type is registered (and its id cached).
    for (i, s) in streams.iter().enumerate() {
        store
            .append(s, ExpectedRevision::Any, vec![event(OPENED, i as u64)])
            .await
            .unwrap();
    }
    tokio::time::timeout(Duration::from_secs(60), relay.wait_for(4))
        .await
        .expect("the first events relayed")
        .unwrap();
    let client = RegistryClient::new(&registry.url()).unwrap();
    let opened_id = client.lookup(OPENED, OPENED_V1).await.unwrap().id;
    assert_eq!(client.subjects().await.unwrap(), [OPENED]);

    // The registry goes down before the other two types were ever seen.
    registry.down().await;
    let mut n = 4_u64;
    // Every stream gets an event of a cached type followed, in the same
    // append, by types the relay must ask the registry for; then more.
    for s in &streams {
        store
            .append(
                s,
                ExpectedRevision::Any,
                vec![
                    event(OPENED, n),
                    event(DEPOSITED, n + 1),
                    event(WITHDRAWN, n + 2),
                ],
            )
            .await
            .unwrap();
        n += 3;
    }
    let first_unregistered = 6; // stream 0's MoneyDeposited
    for round in 0..3 {
        for s in &streams {
            let kind = [DEPOSITED, OPENED, WITHDRAWN][round];
            store
                .append(s, ExpectedRevision::Any, vec![event(kind, n)])
                .await
                .unwrap();
            n += 1;
        }
    }
    let total = n;
    assert_eq!(store.head_position().await.unwrap(), total);

    // The relay keeps failing on the first event it cannot encode: it never
    // gets past it, and never skips it. (Watching for a while is the point:
    // nothing must happen.)
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        let published = relay.published();
        assert!(
            (4..first_unregistered).contains(&published),
            "published up to {published} with the registry down"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(relay.lag().await.unwrap() > 0);

    // Back on the same port and file: the relay catches up by itself.
    registry.up().await;
    tokio::time::timeout(Duration::from_secs(60), relay.wait_for(total))
        .await
        .expect("everything relayed once the registry is back")
        .unwrap();
    relay.shutdown().await.unwrap();

    // The ids given before the outage are the ids after it.
    assert_eq!(
        client.lookup(OPENED, OPENED_V1).await.unwrap().id,
        opened_id
    );
    let mut ids = HashMap::new();
    for (subject, schema) in [
        (OPENED, OPENED_V1),
        (DEPOSITED, DEPOSITED_V1),
        (WITHDRAWN, WITHDRAWN_V1),
    ] {
        ids.insert(subject, client.lookup(subject, schema).await.unwrap().id);
    }

    // On the topic: every stored event exactly once, in order per stream,
    // framed with its type's id, decoding to the stored payload.
    let stored: Vec<RecordedEvent> = store.read_all(0, 1_000, &Filter::all()).await.unwrap();
    assert_eq!(stored.len() as u64, total);
    let records = tokio::task::spawn_blocking({
        let (brokers, topic) = (brokers.clone(), topic.clone());
        move || read_all(&brokers, &topic)
    })
    .await
    .unwrap();
    let by_id: HashMap<String, &RecordedEvent> =
        stored.iter().map(|e| (e.id().to_string(), e)).collect();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut per_stream: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let reader = format(&registry.url());
    for r in &records {
        let event_id = r.header_str("ce_id").expect("ce_id").to_owned();
        let original = by_id
            .get(&event_id)
            .unwrap_or_else(|| panic!("record {event_id} is no stored event"));
        *seen.entry(event_id.clone()).or_default() += 1;
        per_stream
            .entry(original.stream_id.to_string())
            .or_default()
            .push(original.revision);
        assert_eq!(
            schema_id(&r.payload),
            ids[original.record.event_type.as_str()],
            "record {event_id} ({})",
            original.record.event_type
        );
        let mut wire = (*original).clone();
        wire.record.data = r.payload.clone();
        wire.record.content_type = "application/avro".to_owned();
        let decoded = reader.inbound(&topic, wire).await.unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&decoded.record.data).unwrap(),
            serde_json::from_slice::<Value>(&original.record.data).unwrap(),
            "record {event_id}"
        );
    }
    assert_eq!(
        seen.len(),
        stored.len(),
        "every stored event is on the topic"
    );
    // Per stream, in order and none skipped: each revision's first copy
    // comes after the previous revision's, and a copy only repeats a
    // revision already seen.
    for (stream, revisions) in &per_stream {
        let mut next = 0;
        for &revision in revisions {
            assert!(
                revision <= next,
                "stream {stream}: revision {revision} before {next}: {revisions:?}"
            );
            if revision == next {
                next += 1;
            }
        }
        let count = stored
            .iter()
            .filter(|e| e.stream_id.to_string() == *stream)
            .count() as u64;
        assert_eq!(next, count, "stream {stream}: {revisions:?}");
    }
    let mut duplicated: Vec<(String, usize)> = seen.into_iter().filter(|(_, n)| *n > 1).collect();
    duplicated.sort();
    duplicated
}

#[derive(Debug, Default)]
struct Collect {
    seen: Mutex<Vec<(u64, Value)>>,
}

#[async_trait]
impl EventHandler for Collect {
    fn name(&self) -> &str {
        "collect"
    }

    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> orchestrix::Result<()> {
        let value: Value = serde_json::from_slice(&event.record.data)
            .map_err(|e| orchestrix::Error::decode("payload", e))?;
        self.seen.lock().unwrap().push((event.revision, value));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_retries_an_uncached_schema_id_until_the_registry_is_back() {
    let Some(brokers) = require(Service::Kafka) else {
        return;
    };
    let mut registry = Registry::start().await;
    let mut config = config(&brokers);
    // The consumer's retry budget outlasts the outage (the default, 5
    // attempts in about 1.5 s, would dead-letter a record whose writer
    // schema cannot be fetched for longer: an exhausted retry).
    config.consumer.retry = RetryConfig::Fixed {
        max_attempts: 1_000,
        delay_ms: 100,
    };
    let topic = config.topics.topic_for_category("account");
    let stream = StreamId::parse("account-1").unwrap();
    let publisher = KafkaPublisher::new(config.clone())
        .unwrap()
        .with_value_format(format(&registry.url()));
    let kinds = [OPENED, DEPOSITED, WITHDRAWN, DEPOSITED, WITHDRAWN, OPENED];
    let events: Vec<RecordedEvent> = kinds
        .iter()
        .zip(0_u64..)
        .map(|(kind, revision)| RecordedEvent {
            stream_id: stream.clone(),
            revision,
            position: revision + 1,
            record: event(kind, revision),
        })
        .collect();
    publisher.publish_events(&events).await.unwrap();

    // The registry goes down; a consumer that has cached no id starts.
    registry.down().await;
    let collect = Arc::new(Collect::default());
    let handler = Arc::new(WireDecoding::new(
        format(&registry.url()) as Arc<dyn ValueFormat>,
        collect.clone(),
    ));
    let worker = ConsumerWorker::builder(config.clone())
        .topic(&topic)
        .start(handler)
        .await
        .unwrap();
    // It meets the first record, cannot fetch its writer schema, and
    // retries it: transient, not dead-lettered, nothing handled.
    let deadline = Instant::now() + Duration::from_secs(60);
    while worker.stats().retried < 5 {
        assert!(
            Instant::now() < deadline,
            "no retries: {:?}",
            worker.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = worker.stats();
    assert_eq!((stats.dead_lettered, stats.handled), (0, 0), "{stats:?}");
    assert!(collect.seen.lock().unwrap().is_empty());

    // Back: the same record decodes, and everything after it.
    registry.up().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while collect.seen.lock().unwrap().len() < events.len() {
        assert!(
            Instant::now() < deadline,
            "seen {:?}; {:?}",
            collect.seen.lock().unwrap(),
            worker.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = worker.stats();
    worker.shutdown().await.unwrap();
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    let expected: Vec<(u64, Value)> = events
        .iter()
        .map(|e| (e.revision, serde_json::from_slice(&e.record.data).unwrap()))
        .collect();
    assert_eq!(*collect.seen.lock().unwrap(), expected);
}
