//! Ingest of foreign records: plain JSON written by a plain producer is mapped
//! to commands (executed by the application) and to appended events; a record
//! that is not JSON and a command the aggregate rejects are dead-lettered;
//! reading the topic again applies nothing twice (command ids from offsets).

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
    common::eventually("all 64 records settled", Duration::from_secs(40), || {
        let s = worker.stats();
        s.handled + s.skipped + s.dead_lettered == 64
    })
    .await;
    let stats = worker.stats();
    assert_eq!(
        (stats.handled, stats.skipped, stats.dead_lettered),
        (61, 1, 2),
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

    // Read everything again in a new group: the command ids dedupe.
    let again = IngestBuilder::new(config, app.clone(), "payments-ingest")
        .topic(&topic)
        .group_id(common::unique("replay"))
        .start(|r: &KafkaRecord| match r.json::<Legacy>() {
            Ok(Legacy::Note { .. }) => Ok(IngestAction::skip()),
            _ => map(r),
        })
        .await
        .unwrap();
    common::eventually("replay settled", Duration::from_secs(40), || {
        let s = again.stats();
        s.handled + s.skipped + s.dead_lettered == 64
    })
    .await;
    again.shutdown().await.unwrap();
    for k in 0..6 {
        let account = app.load::<Account>(&format!("a{k}")).await.unwrap();
        assert_eq!(
            (account.state.balance, account.revision),
            (expected(k), Some(9)),
            "a{k} unchanged by the replay"
        );
    }
}
