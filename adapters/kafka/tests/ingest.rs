//! Ingest of foreign records: plain JSON written by a plain producer is mapped
//! to commands (executed by the application) and to appended events; a record
//! that is not JSON and a command the aggregate rejects are dead-lettered;
//! reading the topic again in a new group applies nothing twice (durable ids
//! from offsets) and dead-letters nothing twice. A business key set by the
//! mapper makes a record the source sent twice land once; the caught-up
//! signal says when everything produced so far is in.

mod common;

use std::time::Duration;

use orchestrix::store::ExpectedRevision;
use orchestrix::{Aggregate, Application, Command, Event, EventRecord, Store, StreamId};
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

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Legacy {
    Payment {
        account: String,
        cents: u64,
    },
    Note {
        account: String,
        text: String,
    },
    #[serde(other)]
    Other,
}

fn map(record: &KafkaRecord) -> orchestrix::Result<IngestAction> {
    Ok(match record.json::<Legacy>()? {
        Legacy::Payment { account, cents } => IngestAction::command(Deposit { account, cents }),
        Legacy::Note { account, text } => IngestAction::append(
            StreamId::new("note", &account)?,
            ExpectedRevision::Any,
            vec![EventRecord::json(
                "com.acme.legacy.Noted",
                1,
                &json!({ "text": text }),
            )],
        ),
        Legacy::Other => IngestAction::skip(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_ingests_foreign_json_records_into_commands_and_events() {
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let config = common::test_config(&brokers);
    let topic = common::unique("legacy.payments");
    ensure_topic(&config, &topic, 3).await.unwrap();

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let mut records: Vec<(String, String)> = (0..60_u64)
        .map(|i| {
            (
                format!("a{}", i % 6),
                json!({"type": "payment", "account": format!("a{}", i % 6), "cents": i + 1})
                    .to_string(),
            )
        })
        .collect();
    records.push((
        "a1".into(),
        json!({"type": "note", "account": "a1", "text": "vip"}).to_string(),
    ));
    records.push(("a3".into(), "this is not json".into()));
    records.push((
        "a2".into(),
        json!({"type": "payment", "account": "a2", "cents": 0}).to_string(),
    ));
    records.push(("a4".into(), json!({"type": "heartbeat"}).to_string()));
    for (key, value) in &records {
        producer
            .send(
                FutureRecord::to(&topic).key(key).payload(value),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let expected = |k: u64| {
        (0..60_u64)
            .filter(|i| i % 6 == k)
            .map(|i| i + 1)
            .sum::<u64>()
    };

    let app = Application::builder(Store::memory())
        .aggregate::<Account>()
        .build()
        .unwrap();
    let worker = IngestBuilder::new(config.clone(), app.clone(), "payments-ingest")
        .topic(&topic)
        .start(map)
        .await
        .unwrap();
    worker
        .wait_caught_up(Duration::from_secs(60))
        .await
        .unwrap();
    let stats = worker.stats();
    assert_eq!(
        (
            stats.applied,
            stats.skipped,
            stats.dead_lettered,
            stats.duplicates,
            stats.dead_letter_duplicates
        ),
        (61, 1, 2, 0, 0),
        "{stats:?}"
    );
    worker.shutdown().await.unwrap();

    for k in 0..6 {
        let account = app.load::<Account>(&format!("a{k}")).await.unwrap();
        assert_eq!(account.state.balance, expected(k), "balance of a{k}");
        assert_eq!(account.revision, Some(9), "ten deposits on a{k}");
    }
    let notes = app
        .store()
        .read_stream_forward(&StreamId::parse("note-a1").unwrap(), 0, 10)
        .await
        .unwrap();
    assert_eq!(notes.len(), 1);
    assert!(
        notes[0]
            .record
            .metadata
            .causation_id
            .as_deref()
            .unwrap()
            .starts_with(&format!("kafka:{topic}:"))
    );
    let deposit = app
        .store()
        .read_stream_forward(&StreamId::parse("account-a0").unwrap(), 0, 1)
        .await
        .unwrap();
    assert!(
        deposit[0]
            .record
            .metadata
            .causation_id
            .as_deref()
            .unwrap()
            .starts_with("kafka:"),
        "command id from the offset"
    );

    let letters = common::read_topic(
        &brokers,
        &format!("{topic}.dlq"),
        2,
        Duration::from_secs(20),
    );
    let mut kinds: Vec<&str> = letters
        .iter()
        .map(|l| l.header_str(dead_letter::ERROR_KIND).unwrap())
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["rejected", "serialization"], "{letters:?}");
    let not_json = letters
        .iter()
        .find(|l| l.header_str(dead_letter::ERROR_KIND) == Some("serialization"))
        .unwrap();
    assert_eq!(&not_json.payload[..], b"this is not json");
    assert_eq!(
        not_json.header_str(dead_letter::CONSUMER),
        Some("payments-ingest")
    );

    // Read everything again in a new group: the durable ids dedupe the
    // commands and the append, and the bad records are dead-lettered already.
    let again = IngestBuilder::new(config, app.clone(), "payments-ingest")
        .topic(&topic)
        .group_id(common::unique("replay"))
        .start(map)
        .await
        .unwrap();
    again.wait_caught_up(Duration::from_secs(60)).await.unwrap();
    let stats = again.stats();
    assert_eq!(
        (
            stats.applied,
            stats.duplicates,
            stats.skipped,
            stats.dead_lettered,
            stats.dead_letter_duplicates
        ),
        (0, 61, 1, 0, 2),
        "{stats:?}"
    );
    again.shutdown().await.unwrap();
    let notes = app
        .store()
        .read_stream_forward(&StreamId::parse("note-a1").unwrap(), 0, 10)
        .await
        .unwrap();
    assert_eq!(notes.len(), 1, "the note appended once");
    let letters = common::read_topic(
        &brokers,
        &format!("{topic}.dlq"),
        2,
        Duration::from_secs(20),
    );
    assert_eq!(letters.len(), 2, "no dead letter twice: {letters:?}");
    for k in 0..6 {
        let account = app.load::<Account>(&format!("a{k}")).await.unwrap();
        assert_eq!(
            (account.state.balance, account.revision),
            (expected(k), Some(9)),
            "a{k} unchanged by the replay"
        );
    }
}

#[derive(Deserialize)]
struct KeyedPayment {
    payment_id: String,
    account: String,
    cents: u64,
}

/// The source system sends two payments twice (new offsets, same payment
/// id): with the payment id as the record's id they land once, and are
/// counted as duplicates. The worker says when it has caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_ingest_dedupes_on_the_business_key_the_mapper_sets() {
    let Some(brokers) = common::kafka_brokers() else {
        return;
    };
    let config = common::test_config(&brokers);
    let topic = common::unique("legacy.keyed");
    ensure_topic(&config, &topic, 1).await.unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let payments: Vec<u64> = (0..10).chain([3, 7]).collect();
    for n in &payments {
        let value =
            json!({"payment_id": format!("p{n}"), "account": "k1", "cents": n + 1}).to_string();
        producer
            .send(
                FutureRecord::to(&topic).key("k1").payload(&value),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
    }
    let app = Application::builder(Store::memory())
        .aggregate::<Account>()
        .build()
        .unwrap();
    let worker = IngestBuilder::new(config, app.clone(), "keyed-ingest")
        .topic(&topic)
        .start(|record: &KafkaRecord| {
            let p: KeyedPayment = record.json()?;
            Ok(IngestAction::command(Deposit {
                account: p.account,
                cents: p.cents,
            })
            .with_id(p.payment_id))
        })
        .await
        .unwrap();
    worker
        .wait_caught_up(Duration::from_secs(60))
        .await
        .unwrap();
    assert!(worker.caught_up(Duration::from_secs(10)).await.unwrap());
    let stats = worker.stats();
    assert_eq!((stats.applied, stats.duplicates), (10, 2), "{stats:?}");
    worker.shutdown().await.unwrap();

    let account = app.load::<Account>("k1").await.unwrap();
    assert_eq!(account.state.balance, (1..=10).sum::<u64>());
    let events = app
        .store()
        .read_stream_forward(&StreamId::parse("account-k1").unwrap(), 0, 100)
        .await
        .unwrap();
    let causes: Vec<&str> = events
        .iter()
        .map(|e| e.record.metadata.causation_id.as_deref().unwrap())
        .collect();
    let expected: Vec<String> = (0..10).map(|n| format!("p{n}")).collect();
    assert_eq!(causes, expected, "one event per payment id, in order");
}
