//! One lake, one store: positions are a store's global positions, so a sink
//! that wrote a lake from one store refuses to resume it from another (it
//! would otherwise start at the first store's position and silently skip
//! the second store's events), while the same store resumes as before.

use std::sync::Arc;
use std::time::Duration;

use orchestrix::runtime::ProjectionRunner;
use orchestrix::store::ExpectedRevision;
use orchestrix::{Error, EventRecord, Store, StreamId};
use orchestrix_lakehouse::LakehouseSink;
use serde_json::json;

async fn append(store: &Store, n: usize) {
    for i in 0..n {
        let stream = StreamId::new("pay", &format!("p{i}")).unwrap();
        let e = EventRecord::json("com.acme.Paid", 1, &json!({"amount": i + 1}));
        store
            .append(&stream, ExpectedRevision::NoStream, vec![e])
            .await
            .unwrap();
    }
}

fn sink(store: &Store, lake: &std::path::Path, source: &str) -> Arc<LakehouseSink> {
    Arc::new(
        LakehouseSink::builder(store.clone(), "lake", lake)
            .source(source)
            .build(),
    )
}

async fn run(store: &Store, sink: Arc<LakehouseSink>) -> orchestrix::Result<()> {
    let runner = ProjectionRunner::transactional(store.clone(), sink)
        .start()
        .await?;
    let head = store.head_position().await?;
    tokio::time::timeout(Duration::from_secs(60), runner.wait_until_caught_up(head))
        .await
        .expect("caught up within 60 s")?;
    runner.shutdown().await
}

#[tokio::test]
async fn a_lake_written_from_one_store_is_not_resumed_from_another() {
    let lake = tempfile::tempdir().unwrap();
    let first = Store::memory();
    append(&first, 5).await;
    run(&first, sink(&first, lake.path(), "sqlite://a.db"))
        .await
        .unwrap();
    let written = sink(&first, lake.path(), "sqlite://a.db");
    run(&first, written.clone()).await.unwrap();
    assert_eq!(
        written.stats().rows,
        0,
        "the same store resumes where it stopped"
    );

    let second = Store::memory();
    append(&second, 3).await;
    let err = run(&second, sink(&second, lake.path(), "postgres://b/test"))
        .await
        .expect_err("another store's lake must be refused");
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("sqlite://a.db") && text.contains("postgres://b/test"),
        "the error names both stores: {text}"
    );
}
