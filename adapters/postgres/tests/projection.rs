//! The core's transactional projection runner on a PostgreSQL read model.

use std::sync::Arc;

use orchestrix::runtime::{ProjectionRunner, RetryPolicy};
use orchestrix::store::{AppendRequest, EventStore, ExpectedRevision};
use orchestrix::{EventRecord, RecordedEvent, Store, StreamId};
use orchestrix_postgres::{PostgresProjection, PostgresStore, ReadModel, ReadModelTx, testing};
use serde_json::json;

#[derive(Debug)]
struct Counts {
    table: String,
}

#[async_trait::async_trait]
impl ReadModel for Counts {
    async fn apply(
        &self,
        tx: &ReadModelTx<'_>,
        events: &[RecordedEvent],
    ) -> orchestrix::Result<()> {
        let streams: Vec<&str> = events.iter().map(|e| e.stream_id.as_str()).collect();
        tx.execute(
            &format!(
                "INSERT INTO {t} AS c (stream_id, n) SELECT s, count(*) FROM unnest($1::text[]) s GROUP BY s
                 ON CONFLICT (stream_id) DO UPDATE SET n = c.n + EXCLUDED.n",
                t = self.table
            ),
            &[&streams],
        )
        .await?;
        Ok(())
    }

    async fn clear(&self, tx: &ReadModelTx<'_>) -> orchestrix::Result<()> {
        tx.execute(&format!("TRUNCATE {}", self.table), &[]).await?;
        Ok(())
    }
}

async fn counts(table: &str) -> Vec<(String, i64)> {
    testing::raw_client()
        .await
        .query(
            &format!("SELECT stream_id, n FROM {table} ORDER BY stream_id"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn append(store: &PostgresStore, stream: &str, n: usize) -> u64 {
    let events = (0..n)
        .map(|i| EventRecord::json("com.acme.Tick", 1, &json!({ "i": i })))
        .collect();
    store
        .append(AppendRequest::new(
            StreamId::parse(stream).unwrap(),
            ExpectedRevision::Any,
            events,
        ))
        .await
        .unwrap()
        .last_position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transactional_runner_keeps_the_read_model_and_checkpoint_together() {
    let Some(pg) = testing::store("transactional_runner").await else {
        return;
    };
    let table = pg.schema().table("counts");
    testing::raw_client()
        .await
        .batch_execute(&format!(
            "CREATE TABLE {table} (stream_id text PRIMARY KEY, n bigint NOT NULL)"
        ))
        .await
        .unwrap();
    append(&pg, "order-a", 30).await;
    append(&pg, "order-b", 12).await;
    let store = Store::new(pg.backend());
    let projection = Arc::new(PostgresProjection::new(
        pg.clone(),
        "counts",
        Counts {
            table: table.clone(),
        },
    ));
    let runner = ProjectionRunner::transactional(store.clone(), projection.clone())
        .batch_size(8)
        .retry(RetryPolicy::fixed(3, std::time::Duration::from_millis(1)))
        .start()
        .await
        .unwrap();
    let head = runner.catch_up().await.unwrap();
    assert_eq!(head, 42);
    assert_eq!(
        counts(&table).await,
        [("order-a".to_owned(), 30), ("order-b".to_owned(), 12)]
    );
    assert_eq!(
        orchestrix::store::CheckpointStore::load_checkpoint(&pg, "counts")
            .await
            .unwrap(),
        Some(42)
    );

    // A restart resumes from the checkpoint: nothing applied twice.
    runner.shutdown().await.unwrap();
    let runner = ProjectionRunner::transactional(store.clone(), projection.clone())
        .start()
        .await
        .unwrap();
    let head = append(&pg, "order-a", 3).await;
    runner.wait_until_caught_up(head).await.unwrap();
    assert_eq!(
        counts(&table).await,
        [("order-a".to_owned(), 33), ("order-b".to_owned(), 12)]
    );

    // Rebuild: cleared and replayed in the same database, same result.
    runner.rebuild().await.unwrap();
    assert_eq!(
        counts(&table).await,
        [("order-a".to_owned(), 33), ("order-b".to_owned(), 12)]
    );
    assert_eq!(
        orchestrix::store::CheckpointStore::load_checkpoint(&pg, "counts")
            .await
            .unwrap(),
        Some(head)
    );
    runner.shutdown().await.unwrap();
}
