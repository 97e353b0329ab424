//! An event quarantined by a quality check is replayed from the dead
//! letters once the rule is fixed: it lands in the table once, the table's
//! position (its Delta `txn` version) does not move back, and a restarted
//! sink neither writes it again nor re-quarantines anything.

use std::sync::Arc;
use std::time::Duration;

use orchestrix::runtime::{DeadLetters, ProjectionRunner, TransactionalHandler};
use orchestrix::store::ExpectedRevision;
use orchestrix::{EventRecord, RecordedEvent, Store, StreamId};
use orchestrix_lakehouse::{LakehouseSink, QualityCheck, open_table, read_rows};
use serde_json::{Map, Value, json};

const TYPE: &str = "com.acme.Paid";

#[derive(Debug)]
struct Positive;

impl QualityCheck for Positive {
    fn check(&self, _: &RecordedEvent, payload: &Map<String, Value>) -> Result<(), String> {
        match payload.get("amount").and_then(Value::as_i64) {
            Some(a) if a > 0 => Ok(()),
            _ => Err("amount must be positive".into()),
        }
    }
}

async fn run(store: &Store, sink: Arc<LakehouseSink>) {
    let runner = ProjectionRunner::transactional(store.clone(), sink)
        .start()
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), runner.wait_until_caught_up(head))
        .await
        .expect("caught up within 60 s")
        .unwrap();
    runner.shutdown().await.unwrap();
}

async fn txn(dir: &std::path::Path) -> Option<i64> {
    let table = open_table(dir).await.unwrap();
    table
        .snapshot()
        .unwrap()
        .transaction_version(table.log_store().as_ref(), "lake")
        .await
        .unwrap()
}

#[tokio::test]
async fn a_replayed_dead_letter_lands_once_and_the_position_stays() {
    let store = Store::memory();
    let lake = tempfile::tempdir().unwrap();
    let dir = lake.path().join(TYPE);
    for (i, amount) in [10, -1, 30].into_iter().enumerate() {
        let stream = StreamId::new("pay", &format!("p{i}")).unwrap();
        let e = EventRecord::json(TYPE, 1, &json!({"amount": amount}));
        store
            .append(&stream, ExpectedRevision::NoStream, vec![e])
            .await
            .unwrap();
    }
    let strict = Arc::new(
        LakehouseSink::builder(store.clone(), "lake", lake.path())
            .check(Arc::new(Positive))
            .build(),
    );
    run(&store, strict.clone()).await;
    assert_eq!(strict.stats().dead_lettered, 1);
    assert_eq!(read_rows(&dir).await.unwrap().len(), 2);
    assert_eq!(txn(&dir).await, Some(3));

    // The rule is relaxed: replay the letter through a sink without it.
    let relaxed = Arc::new(LakehouseSink::builder(store.clone(), "lake", lake.path()).build());
    let letters = DeadLetters::new(store.clone());
    let report = letters
        .replay_all("lake", &TransactionalHandler::new(relaxed.clone()))
        .await
        .unwrap();
    assert_eq!(report.replayed.len(), 1, "{report:?}");
    assert!(letters.list("lake").await.unwrap().is_empty());
    let amounts: Vec<i64> = read_rows(&dir)
        .await
        .unwrap()
        .iter()
        .map(|r| r["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(amounts, [10, -1, 30]);
    assert_eq!(txn(&dir).await, Some(3), "the position did not move back");

    // A restart writes nothing again.
    let again = Arc::new(LakehouseSink::builder(store.clone(), "lake", lake.path()).build());
    run(&store, again.clone()).await;
    assert_eq!(again.stats().rows, 0);
    assert_eq!(read_rows(&dir).await.unwrap().len(), 3);
}
