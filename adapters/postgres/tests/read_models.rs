//! The read-model conformance suite (`orchestrix-testkit`), each case in a
//! fresh random schema. Without a server: a printed skip, or a failure under
//! `CI=true` (`orchestrix_testkit::services::require`).

use std::sync::Arc;

use orchestrix::runtime::ReadModelStore;
use orchestrix_postgres::{PostgresConfig, PostgresStore, testing};
use orchestrix_testkit::services::{Service, require};

async fn connect(url: &str) -> PostgresStore {
    let mut config = PostgresConfig::from_url(url).expect("a valid PostgreSQL URL");
    config.schema = testing::random_schema();
    config.pool_size = 8;
    PostgresStore::connect(config)
        .await
        .expect("connect to the test PostgreSQL")
}

async fn postgres() -> Option<Arc<dyn ReadModelStore>> {
    let url = require(Service::Postgres)?;
    Some(connect(&url).await.read_models())
}

orchestrix_testkit::read_model_conformance!(postgres);

/// A schema at version 2 (before the read-model tables) gets them from the
/// next migration, and its events stay.
#[tokio::test]
async fn an_existing_schema_gains_the_tables() {
    let Some(url) = require(Service::Postgres) else {
        return;
    };
    let store = connect(&url).await;
    let client = store.connection().await.expect("connection");
    let q = store.schema().quoted();
    client
        .batch_execute(&format!(
            "DROP TABLE {q}.read_models; DROP TABLE {q}.read_model_applied;
             DELETE FROM {q}.schema_migrations WHERE version = 3;"
        ))
        .await
        .expect("roll the schema back to version 2");
    drop(client);
    let read_models = store.read_models();
    assert!(
        read_models.load("v", "k").await.is_err(),
        "no table before the migration"
    );
    assert_eq!(store.migrate().await.expect("migrate"), [3]);
    assert_eq!(
        store.migrate().await.expect("migrate again"),
        Vec::<i32>::new()
    );
    let set = |_: Option<serde_json::Value>| Ok(serde_json::json!({ "n": 1 }));
    assert!(
        read_models
            .apply("v", "k", "s-1", 0, &set)
            .await
            .expect("apply")
    );
    assert_eq!(
        read_models.load("v", "k").await.expect("load"),
        Some(serde_json::json!({ "n": 1 }))
    );
}
