//! One contract for the embedded registry, run on every storage: memory,
//! SQLite (in a file shared with an event store's tables) and PostgreSQL.

use orchestrix_schema_registry::storage::SqliteStorage;
use orchestrix_schema_registry::{
    CompatibilityLevel, EmbeddedRegistry, RegistryError, SchemaRegistry, VersionSpec,
};

fn record(fields: &str) -> String {
    format!(
        r#"{{"type":"record","name":"Placed","namespace":"com.acme.shop","fields":[{fields}]}}"#
    )
}

/// Registration, ids, versions, compatibility enforcement, levels, deletion.
async fn contract(registry: &EmbeddedRegistry) {
    let v1 = record(r#"{"name":"total","type":"int"}"#);
    let v2 = record(
        r#"{"name":"total","type":"long"},{"name":"note","type":["null","string"],"default":null}"#,
    );
    let breaking = record(
        r#"{"name":"total","type":"long"},{"name":"note","type":["null","string"],"default":null},{"name":"sku","type":"string"}"#,
    );

    assert_eq!(registry.subjects().await.unwrap(), Vec::<String>::new());
    let id1 = registry.register("placed", &v1).await.unwrap();
    assert_eq!(
        registry.register("placed", &v1).await.unwrap(),
        id1,
        "idempotent"
    );
    let id2 = registry.register("placed", &v2).await.unwrap();
    assert_ne!(id1, id2);
    assert_eq!(
        registry.register("copy", &v2).await.unwrap(),
        id2,
        "ids are global and shared"
    );
    assert_eq!(registry.versions("placed").await.unwrap(), [1, 2]);
    assert_eq!(registry.versions("copy").await.unwrap(), [1]);
    assert_eq!(registry.subjects().await.unwrap(), ["copy", "placed"]);
    assert_eq!(
        registry
            .version("placed", VersionSpec::Latest)
            .await
            .unwrap()
            .schema,
        v2
    );
    assert_eq!(registry.schema_by_id(id1).await.unwrap(), v1);

    let err = registry.register("placed", &breaking).await.unwrap_err();
    let RegistryError::Incompatible { details, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(details.len(), 1);
    assert!(
        details[0].contains("field `sku` added without a default"),
        "{details:?}"
    );
    assert_eq!(
        registry.versions("placed").await.unwrap(),
        [1, 2],
        "nothing registered"
    );

    // Transitive levels look further back: v1 (int) cannot read v2's long.
    registry
        .set_config(Some("placed"), CompatibilityLevel::ForwardTransitive)
        .await
        .unwrap();
    let check = registry
        .check_compatibility("placed", VersionSpec::Latest, &v2)
        .await
        .unwrap();
    assert!(
        !check.is_compatible
            && check
                .messages
                .iter()
                .any(|m| m.contains("version 1 cannot read")),
        "{check:?}"
    );
    registry
        .set_config(None, CompatibilityLevel::None)
        .await
        .unwrap();
    assert_eq!(
        registry.config(None, false).await.unwrap(),
        CompatibilityLevel::None
    );
    assert_eq!(
        registry.config(Some("placed"), false).await.unwrap(),
        CompatibilityLevel::ForwardTransitive
    );
    assert!(matches!(
        registry.config(Some("copy"), false).await,
        Err(RegistryError::SubjectConfigNotFound(_))
    ));
    assert_eq!(
        registry.config(Some("copy"), true).await.unwrap(),
        CompatibilityLevel::None
    );
    registry.register("copy", &breaking).await.unwrap();

    assert_eq!(registry.delete_subject("copy").await.unwrap(), [1, 2]);
    assert!(matches!(
        registry.versions("copy").await,
        Err(RegistryError::SubjectNotFound(_))
    ));
    assert_eq!(registry.schema_by_id(id2).await.unwrap(), v2);
}

#[tokio::test]
async fn memory_storage_keeps_the_contract() {
    contract(&EmbeddedRegistry::memory()).await;
}

#[tokio::test]
async fn sqlite_storage_keeps_the_contract_in_the_event_store_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.db");
    // The event store's tables are already in the file.
    rusqlite_like_event_store(&path);
    let registry = EmbeddedRegistry::sqlite(&path).unwrap();
    contract(&registry).await;
    // Another process (another connection) sees the same registry.
    let other = EmbeddedRegistry::open_url(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(other.versions("placed").await.unwrap(), [1, 2]);
    let storage = SqliteStorage::open(&path).unwrap();
    assert_eq!(storage.path(), path);
    // Both live in the one file, the registry's tables under their prefix.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    tables.sort();
    assert_eq!(
        tables,
        [
            "events",
            "schema_registry_config",
            "schema_registry_schemas",
            "schema_registry_versions"
        ]
    );
    let events: i64 = conn
        .query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(events, 1);
}

fn rusqlite_like_event_store(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("CREATE TABLE events (position INTEGER PRIMARY KEY, data BLOB); INSERT INTO events (data) VALUES (x'00');").unwrap();
}

#[tokio::test]
async fn concurrent_registrations_get_distinct_versions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registry.db");
    let a = EmbeddedRegistry::sqlite(&path).unwrap();
    let b = EmbeddedRegistry::sqlite(&path).unwrap();
    a.set_config(None, CompatibilityLevel::None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let registry = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            registry
                .register(
                    "s",
                    &record(&format!(r#"{{"name":"f{i}","type":"int","default":0}}"#)),
                )
                .await
                .unwrap()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 8);
    assert_eq!(a.versions("s").await.unwrap(), (1..=8).collect::<Vec<_>>());
}

#[tokio::test]
async fn unknown_storage_urls_name_the_problem() {
    let err = EmbeddedRegistry::open_url("mysql://x").await.unwrap_err();
    assert!(
        err.to_string().contains("unknown registry storage URL"),
        "{err}"
    );
    assert!(EmbeddedRegistry::open_url("memory://").await.is_ok());
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_storage_keeps_the_contract() {
    use std::sync::Arc;

    use orchestrix_schema_registry::storage::PostgresStorage;
    let url = std::env::var("ORCHESTRIX_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let schema = format!("sr_test_{}_{nanos}", std::process::id());
    let storage = match PostgresStorage::connect(&url, Some(&schema)).await {
        Ok(s) => s,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!(
                "skipping: PostgreSQL at {url} is not reachable ({e}); set CI=true to make this a failure"
            );
            return;
        }
        Err(e) => panic!("PostgreSQL at {url} is required in CI: {e}"),
    };
    let registry = EmbeddedRegistry::new(Arc::new(storage));
    contract(&registry).await;
    // Two connections racing on one subject still get distinct versions.
    let other = EmbeddedRegistry::new(Arc::new(
        PostgresStorage::connect(&url, Some(&schema)).await.unwrap(),
    ));
    other
        .set_config(Some("race"), CompatibilityLevel::None)
        .await
        .unwrap();
    let (rx, ry) = (
        record(r#"{"name":"x","type":"int"}"#),
        record(r#"{"name":"y","type":"int"}"#),
    );
    let (x, y) = tokio::join!(registry.register("race", &rx), other.register("race", &ry));
    assert_ne!(x.unwrap(), y.unwrap());
    assert_eq!(registry.versions("race").await.unwrap(), [1, 2]);
    let (client, conn) = tokio_postgres_connect(&url).await;
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    drop(conn);
}

#[cfg(feature = "postgres")]
async fn tokio_postgres_connect(
    url: &str,
) -> (tokio_postgres::Client, tokio::task::JoinHandle<()>) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    let handle = tokio::spawn(async move {
        let _ = connection.await;
    });
    (client, handle)
}
