//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use orchestrix::store::{AppendRequest, AppendResult, EventStore, ExpectedRevision};
use orchestrix::{EventRecord, StreamId};
use orchestrix_sqlite::{SqliteConfig, SqliteStore};
use serde_json::json;
use tempfile::TempDir;
use uuid::Uuid;

/// A store on a fresh file; keep the `TempDir` alive as long as the store.
pub async fn file_store() -> (Arc<SqliteStore>, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(SqliteConfig::new(db_path(&dir)).with_read_pool_size(2))
        .await
        .expect("open file store");
    (Arc::new(store), dir)
}

/// The database file inside `dir`.
pub fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("orchestrix.db")
}

/// A fresh in-memory store.
pub async fn memory_store() -> Arc<SqliteStore> {
    Arc::new(
        SqliteStore::open_in_memory()
            .await
            .expect("open in-memory store"),
    )
}

/// A random category.
pub fn category() -> String {
    format!("c{}", Uuid::new_v4().simple())
}

/// A fresh stream of `category`.
pub fn stream_in(category: &str) -> StreamId {
    StreamId::new(category, &Uuid::new_v4().simple().to_string()).expect("stream id")
}

/// A fresh stream of a fresh category.
pub fn stream() -> StreamId {
    stream_in(&category())
}

/// A JSON event of `event_type` with payload `{"n": n}`.
pub fn event(event_type: &str, n: u64) -> EventRecord {
    EventRecord::json(event_type, 1, &json!({ "n": n }))
}

/// Appends `count` events, panicking on failure.
pub async fn append(
    store: &dyn EventStore,
    stream: &StreamId,
    expected: ExpectedRevision,
    count: u64,
) -> AppendResult {
    let events = (0..count).map(|n| event("com.test.Happened", n)).collect();
    store
        .append(AppendRequest::new(stream.clone(), expected, events))
        .await
        .expect("append")
}

/// Runs the named async checks (each `async fn(Arc<SqliteStore>)`) against a
/// file store and an in-memory store, one test each.
#[macro_export]
macro_rules! on_both_stores {
    ($($check:ident),* $(,)?) => {
        $(
            mod $check {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn file() {
                    let (store, _dir) = $crate::common::file_store().await;
                    super::$check(store).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn memory() {
                    super::$check($crate::common::memory_store().await).await;
                }
            }
        )*
    };
}
