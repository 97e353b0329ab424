//! Every `checkpoint_interval` commits (here 10) Delta writes a checkpoint
//! (Parquet) of the log; the sink's position (its `txn` action) survives it:
//! a restarted sink resumes from the checkpointed table and writes only the
//! new events.

use std::sync::Arc;
use std::time::Duration;

use orchestrix::runtime::ProjectionRunner;
use orchestrix::store::ExpectedRevision;
use orchestrix::{EventRecord, Store, StreamId};
use orchestrix_lakehouse::{LakehouseSink, read_rows};
use serde_json::json;

const TYPE: &str = "com.acme.Tick";

async fn append(store: &Store, from: usize, to: usize) {
    for i in from..to {
        let stream = StreamId::new("tick", &format!("t{i}")).unwrap();
        let e = EventRecord::json(TYPE, 1, &json!({"i": i}));
        store
            .append(&stream, ExpectedRevision::NoStream, vec![e])
            .await
            .unwrap();
    }
}

async fn run(store: &Store, sink: Arc<LakehouseSink>) {
    // One event per batch: one Delta commit per event.
    let runner = ProjectionRunner::transactional(store.clone(), sink)
        .batch_size(1)
        .start()
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();
    tokio::time::timeout(Duration::from_secs(120), runner.wait_until_caught_up(head))
        .await
        .expect("caught up within 120 s")
        .unwrap();
    runner.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_position_survives_a_delta_checkpoint() {
    let store = Store::memory();
    let lake = tempfile::tempdir().unwrap();
    let dir = lake.path().join(TYPE);
    append(&store, 0, 25).await;
    let sink = || {
        Arc::new(
            LakehouseSink::builder(store.clone(), "lake", lake.path())
                .checkpoint_interval(10)
                .build(),
        )
    };
    let first = sink();
    run(&store, first.clone()).await;
    assert_eq!(first.stats().commits, 25);
    let checkpointed = std::fs::read_dir(dir.join("_delta_log"))
        .unwrap()
        .flatten()
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .ends_with(".checkpoint.parquet")
        });
    assert!(checkpointed, "Delta wrote a checkpoint");

    append(&store, 25, 35).await;
    let second = sink();
    run(&store, second.clone()).await;
    assert_eq!(second.stats().rows, 10);
    assert_eq!(
        second.stats().skipped,
        0,
        "resumed at the checkpointed position"
    );
    let rows = read_rows(&dir).await.unwrap();
    let seen: Vec<i64> = rows.iter().map(|r| r["i"].as_i64().unwrap()).collect();
    assert_eq!(seen, (0..35).collect::<Vec<i64>>());
}
