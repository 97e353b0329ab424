//! Ingest of a foreign Avro topic: a plain producer that knows nothing of
//! Orchestrix writes Confluent frames (magic byte, schema id, Avro binary
//! encoded with apache-avro) of two versions of a `Payment` schema registered
//! in a schema registry served over HTTP; the ingest decodes them through the
//! REST client, resolves both versions to v2 and deposits every payment
//! exactly once. A frame with an unknown schema id, a truncated frame and a
//! JSON value are dead-lettered with their reasons, and the records behind
//! them are still processed.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::Value as AvroValue;
use orchestrix::{Aggregate, Application, Command, Event, Store, StreamId};
use orchestrix_avro::ParsedSchema;
use orchestrix_kafka::orchestrix_schema_registry::server::serve;
use orchestrix_kafka::orchestrix_schema_registry::{
    CompatibilityLevel, ConfluentReader, EmbeddedRegistry, RegistryClient, SchemaRegistry,
};
use orchestrix_kafka::rdkafka::ClientConfig;
use orchestrix_kafka::rdkafka::producer::{FutureProducer, FutureRecord};
use orchestrix_kafka::{IngestAction, IngestBuilder, KafkaRecord, dead_letter, ensure_topic};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "com.acme.bank")]
enum AccountEvent {
    Deposited { cents: u64 },
}

struct Deposit {
    account: String,
    cents: u64,
}

impl Command for Deposit {
    fn aggregate_id(&self) -> String {
        self.account.clone()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a deposit must be positive")]
struct NotPositive;

#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: u64,
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Command = Deposit;
    type Event = AccountEvent;
    type Error = NotPositive;

    fn handle(&self, c: &Deposit) -> Result<Vec<AccountEvent>, NotPositive> {
        if c.cents == 0 {
            return Err(NotPositive);
        }
        Ok(vec![AccountEvent::Deposited { cents: c.cents }])
    }

    fn apply(&mut self, e: &AccountEvent) {
        let AccountEvent::Deposited { cents } = e;
        self.balance += cents;
    }
}

/// The foreign producer's schemas: v2 adds a field with a default, so it is
/// BACKWARD-compatible with v1.
const PAYMENT_V1: &str = r#"{"type":"record","name":"Payment","namespace":"com.foreign.billing",
  "fields":[{"name":"account","type":"string"},{"name":"cents","type":"long"}]}"#;
const PAYMENT_V2: &str = r#"{"type":"record","name":"Payment","namespace":"com.foreign.billing",
  "fields":[{"name":"account","type":"string"},{"name":"cents","type":"long"},
            {"name":"currency","type":"string","default":"EUR"}]}"#;

/// A payment as the ingest reads it: v2's shape, so `currency` is there for
/// v1 records only if they were resolved to v2.
#[derive(Deserialize)]
struct Payment {
    account: String,
    cents: u64,
    currency: String,
}

/// What a Confluent serializer writes: magic byte 0, big-endian id, Avro.
fn confluent_frame(schema_id: u32, schema: &Schema, value: AvroValue) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend(apache_avro::to_avro_datum(schema, value).unwrap());
    out
}

fn payment(account: &str, cents: u64, currency: Option<&str>) -> AvroValue {
    let mut fields = vec![
        ("account".to_owned(), AvroValue::String(account.to_owned())),
        (
            "cents".to_owned(),
            AvroValue::Long(i64::try_from(cents).unwrap()),
        ),
    ];
    if let Some(c) = currency {
        fields.push(("currency".to_owned(), AvroValue::String(c.to_owned())));
    }
    AvroValue::Record(fields)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_ingests_foreign_confluent_avro_and_dead_letters_what_does_not_decode() {
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let config = common::test_config(&brokers);
    let topic = common::unique("foreign.payments");
    ensure_topic(&config, &topic, 3).await.unwrap();

    // The registry, served over HTTP like a Confluent Schema Registry.
    let server = serve(
        Arc::new(EmbeddedRegistry::memory()),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let registry = Arc::new(RegistryClient::new(&server.url()).unwrap());
    let subject = format!("{topic}-value");
    registry
        .set_config(Some(&subject), CompatibilityLevel::Backward)
        .await
        .unwrap();
    let v1_id = registry.register(&subject, PAYMENT_V1).await.unwrap();
    let v2_id = registry.register(&subject, PAYMENT_V2).await.unwrap();
    assert_ne!(v1_id, v2_id);
    let unknown_id = v2_id + 1000;

    // The foreign producer: rdkafka and apache-avro, nothing else.
    let v1 = Schema::parse_str(PAYMENT_V1).unwrap();
    let v2 = Schema::parse_str(PAYMENT_V2).unwrap();
    let good = |i: u64| {
        let account = format!("a{}", i % 6);
        let value = if i.is_multiple_of(2) {
            confluent_frame(v1_id, &v1, payment(&account, i + 1, None))
        } else {
            confluent_frame(v2_id, &v2, payment(&account, i + 1, Some("EUR")))
        };
        (account, value)
    };
    let truncated = {
        let mut f = confluent_frame(v2_id, &v2, payment("a1", 7, Some("EUR")));
        f.truncate(f.len() - 2);
        f
    };
    let bad = [
        (
            "a0".to_owned(),
            confluent_frame(unknown_id, &v1, payment("a0", 5, None)),
        ),
        ("a1".to_owned(), truncated),
        (
            "a2".to_owned(),
            json!({"account": "a2", "cents": 5})
                .to_string()
                .into_bytes(),
        ),
    ];
    // Half the payments, the three bad values, the other half: the same keys
    // land on the same partitions, so good records follow each bad one.
    let records: Vec<(String, Vec<u8>)> = (0..30)
        .map(good)
        .chain(bad.iter().cloned())
        .chain((30..60).map(good))
        .collect();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    for (key, value) in &records {
        producer
            .send(
                FutureRecord::to(&topic).key(key).payload(value),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }

    let app = Application::builder(Store::memory())
        .aggregate::<Account>()
        .build()
        .unwrap();
    let reader =
        ConfluentReader::new(registry).with_reader_schema(ParsedSchema::parse(PAYMENT_V2).unwrap());
    let seen_ids = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = seen_ids.clone();
    let worker = IngestBuilder::new(config, app.clone(), "foreign-payments")
        .topic(&topic)
        .avro(reader)
        .start(move |_record: &KafkaRecord, decoded| {
            assert_eq!(
                decoded.writer_name.as_deref(),
                Some("com.foreign.billing.Payment")
            );
            seen.lock().unwrap().insert(decoded.schema_id);
            let p: Payment = decoded.json()?;
            assert_eq!(p.currency, "EUR", "v1 records resolved to v2's default");
            Ok(IngestAction::command(Deposit {
                account: p.account,
                cents: p.cents,
            }))
        })
        .await
        .unwrap();
    worker
        .wait_caught_up(Duration::from_secs(60))
        .await
        .unwrap();
    let stats = worker.stats();
    assert_eq!(
        (stats.applied, stats.skipped, stats.dead_lettered),
        (60, 0, 3),
        "{stats:?}"
    );
    worker.shutdown().await.unwrap();
    assert_eq!(*seen_ids.lock().unwrap(), BTreeSet::from([v1_id, v2_id]));

    // Every good payment applied exactly once.
    for k in 0..6_u64 {
        let expected: u64 = (0..60_u64).filter(|i| i % 6 == k).map(|i| i + 1).sum();
        let account = app.load::<Account>(&format!("a{k}")).await.unwrap();
        assert_eq!(
            (account.state.balance, account.revision),
            (expected, Some(9)),
            "ten deposits on a{k}"
        );
    }

    // The three bad values are dead letters, as written, with the reason.
    let letters = common::read_topic(
        &brokers,
        &format!("{topic}.dlq"),
        3,
        Duration::from_secs(20),
    );
    assert_eq!(letters.len(), 3, "{letters:?}");
    let unknown = format!("schema id {unknown_id} is unknown");
    for (key, value) in &bad {
        let letter = letters
            .iter()
            .find(|l| l.key_str() == Some(key.as_str()))
            .unwrap_or_else(|| panic!("no dead letter for {key}: {letters:?}"));
        assert_eq!(&letter.payload[..], &value[..]);
        assert_eq!(
            letter.header_str(dead_letter::ERROR_KIND),
            Some("serialization")
        );
        assert_eq!(
            letter.header_str(dead_letter::ERROR_CLASS),
            Some("permanent")
        );
        assert_eq!(
            letter.header_str(dead_letter::CONSUMER),
            Some("foreign-payments")
        );
        let reason = letter.header_str(dead_letter::ERROR).unwrap();
        let expected: &[&str] = match key.as_str() {
            "a0" => &[unknown.as_str()],
            "a1" => &["corrupt Avro body", "truncated", "/currency"],
            _ => &["not Confluent wire format", "0x7b", "looks like JSON"],
        };
        for part in expected {
            assert!(reason.contains(part), "{key}: {reason:?} lacks {part:?}");
        }

        // The records behind the bad one on its partition were processed:
        // the account's last deposit came from a later offset.
        let offset: i64 = letter
            .header_str(dead_letter::ORIGINAL_OFFSET)
            .unwrap()
            .parse()
            .unwrap();
        let partition = letter.header_str(dead_letter::ORIGINAL_PARTITION).unwrap();
        let events = app
            .store()
            .read_stream_forward(&StreamId::new("account", key).unwrap(), 0, 100)
            .await
            .unwrap();
        let last = events
            .last()
            .unwrap()
            .record
            .metadata
            .causation_id
            .clone()
            .unwrap();
        let prefix = format!("kafka:{topic}:{partition}:");
        let last_offset: i64 = last
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{last} is not from partition {partition}"))
            .parse()
            .unwrap();
        assert!(
            last_offset > offset,
            "{key}: the dead letter at offset {offset} was the last record handled"
        );
    }

    server.shutdown().await.unwrap();
}
