//! The read-model conformance suite (`orchestrix-testkit`) on a file store,
//! each case in a fresh temporary database.

use std::sync::Arc;

use async_trait::async_trait;
use orchestrix::Result;
use orchestrix::runtime::{ReadModelStore, RowChange};
use orchestrix_sqlite::{SqliteConfig, SqliteStore};
use serde_json::Value;
use tempfile::TempDir;

/// The read models of a file store, and the directory that holds the file
/// (deleted after the store is dropped).
#[derive(Debug)]
struct OnTempFile {
    read_models: Arc<dyn ReadModelStore>,
    _dir: TempDir,
}

#[async_trait]
impl ReadModelStore for OnTempFile {
    async fn load(&self, view: &str, key: &str) -> Result<Option<Value>> {
        self.read_models.load(view, key).await
    }
    async fn load_all(&self, view: &str) -> Result<Vec<(String, Value)>> {
        self.read_models.load_all(view).await
    }
    async fn apply(
        &self,
        view: &str,
        key: &str,
        stream: &str,
        revision: u64,
        change: RowChange<'_>,
    ) -> Result<bool> {
        self.read_models
            .apply(view, key, stream, revision, change)
            .await
    }
    async fn clear(&self, view: &str) -> Result<()> {
        self.read_models.clear(view).await
    }
}

async fn file() -> Option<Arc<dyn ReadModelStore>> {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = SqliteConfig::new(dir.path().join("read_models.db")).with_read_pool_size(2);
    let store = Arc::new(SqliteStore::open(config).await.expect("open file store"));
    Some(Arc::new(OnTempFile {
        read_models: store.read_models(),
        _dir: dir,
    }))
}

orchestrix_testkit::read_model_conformance!(file);

/// Rows and applied revisions survive closing and reopening the file.
#[tokio::test]
async fn rows_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("reopen.db");
    let set = |_: Option<Value>| Ok(serde_json::json!({ "n": 1 }));
    {
        let store = Arc::new(SqliteStore::open_path(&path).await.expect("open"));
        assert!(
            store
                .read_models()
                .apply("v", "k", "s-1", 3, &set)
                .await
                .expect("apply")
        );
    }
    let store = Arc::new(SqliteStore::open_path(&path).await.expect("reopen"));
    let read_models = store.read_models();
    assert_eq!(
        read_models.load("v", "k").await.expect("load"),
        Some(serde_json::json!({ "n": 1 }))
    );
    assert!(
        !read_models
            .apply("v", "k", "s-1", 3, &set)
            .await
            .expect("apply"),
        "the applied revision is durable"
    );
}
