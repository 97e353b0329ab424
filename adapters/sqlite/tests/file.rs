//! What only a file store has: persistence, migrations, pragmas, locks held by
//! other processes, and configuration.

mod common;

use std::sync::Arc;
use std::time::Duration;

use orchestrix::Error;
use orchestrix::store::{CheckpointStore, EventStore, ExpectedRevision, Filter};
use orchestrix::url::BackendUrl;
use orchestrix_sqlite::rusqlite::Connection;
use orchestrix_sqlite::rusqlite::types::Value;
use orchestrix_sqlite::schema::SCHEMA_VERSION;
use orchestrix_sqlite::{SqliteConfig, SqliteStore, Synchronous};

use common::{append, db_path, stream};

fn pragma(conn: &Connection, name: &str) -> String {
    match conn
        .query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, Value>(0))
        .unwrap()
    {
        Value::Integer(i) => i.to_string(),
        Value::Text(t) => t,
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_reopen_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dirs/orchestrix.db");
    let s = stream();
    let head = {
        // Missing directories are created only when asked for.
        let config = SqliteConfig {
            create_dirs: true,
            ..SqliteConfig::new(&path)
        };
        let store = SqliteStore::open(config).await.unwrap();
        let r = append(&store, &s, ExpectedRevision::NoStream, 3).await;
        store.save_checkpoint("p", r.last_position).await.unwrap();
        r.last_position
    };
    let store = SqliteStore::open_path(&path).await.unwrap();
    assert_eq!(store.head_position().await.unwrap(), head);
    assert_eq!(
        *store.notifications().unwrap().borrow(),
        head,
        "notifications start at the stored head"
    );
    assert_eq!(store.stream_revision(&s).await.unwrap(), Some(2));
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(head));
    let r = append(&store, &s, ExpectedRevision::Exact(2), 1).await;
    assert_eq!(
        r.first_position,
        head + 1,
        "positions continue after a reopen"
    );

    let raw = Connection::open(&path).unwrap();
    let migrations: Vec<(i64, String)> = raw
        .prepare("SELECT version, name FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        migrations.len(),
        usize::try_from(SCHEMA_VERSION).unwrap(),
        "{migrations:?}"
    );
    assert_eq!(migrations[0].0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_a_newer_build_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open_path(db_path(&dir)).await.unwrap());
    let raw = Connection::open(db_path(&dir)).unwrap();
    raw.execute(
        "INSERT INTO schema_migrations VALUES (?1, 'from the future', 0)",
        [SCHEMA_VERSION + 1],
    )
    .unwrap();
    let err = SqliteStore::open_path(db_path(&dir)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                backend: "sqlite",
                transient: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_use_wal_foreign_keys_and_the_configured_sync() {
    let dir = tempfile::tempdir().unwrap();
    for (sync, level) in [(Synchronous::Normal, "1"), (Synchronous::Full, "2")] {
        let config = SqliteConfig::new(db_path(&dir)).with_synchronous(sync);
        let store = SqliteStore::open(config).await.unwrap();
        let got = store
            .query(|c| {
                Ok((
                    pragma(c, "journal_mode"),
                    pragma(c, "foreign_keys"),
                    pragma(c, "synchronous"),
                ))
            })
            .await
            .unwrap();
        assert_eq!(got, ("wal".to_owned(), "1".to_owned(), level.to_owned()));
        let on_writer = store
            .transaction(|tx| Ok((pragma(tx, "foreign_keys"), pragma(tx, "synchronous"))))
            .await
            .unwrap();
        assert_eq!(on_writer, ("1".to_owned(), level.to_owned()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_elsewhere_is_a_transient_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig::new(db_path(&dir)).with_busy_timeout(Duration::from_millis(50));
    let store = SqliteStore::open(config).await.unwrap();
    let s = stream();
    append(&store, &s, ExpectedRevision::NoStream, 1).await;

    // Another process holds the write lock.
    let other = Connection::open(db_path(&dir)).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = store
        .append(orchestrix::store::AppendRequest::new(
            s.clone(),
            ExpectedRevision::Exact(0),
            vec![common::event("t", 1)],
        ))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                backend: "sqlite",
                transient: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    let err = store.save_checkpoint("p", 1).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    // Readers are not blocked by a writer in WAL mode.
    assert_eq!(
        store.read_all(0, 10, &Filter::all()).await.unwrap().len(),
        1
    );
    other.execute_batch("COMMIT").unwrap();
    append(&store, &s, ExpectedRevision::Exact(0), 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_missing_file_without_create_fails() {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        create_if_missing: false,
        ..SqliteConfig::new(db_path(&dir))
    };
    let err = SqliteStore::open(config).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Backend {
                backend: "sqlite",
                operation: "open",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!db_path(&dir).exists());
}

/// A path whose directory does not exist fails with an error naming the
/// directory, and creates nothing (it used to create the whole tree);
/// `?create_dirs=true` opts in to creating it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_directory_is_an_error_unless_create_dirs_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nonexistent").join("dir");
    let url = format!("sqlite://{}", missing.join("x.db").display());
    let config = SqliteConfig::from_url(&BackendUrl::parse(&url).unwrap()).unwrap();
    let err = SqliteStore::open(config).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(text.contains("does not exist"), "{text}");
    assert!(text.contains("create_dirs=true"), "{text}");
    assert!(!err.is_transient());
    assert!(!missing.exists(), "nothing may be created");
    assert!(!dir.path().join("nonexistent").exists());

    let config =
        SqliteConfig::from_url(&BackendUrl::parse(&format!("{url}?create_dirs=true")).unwrap())
            .unwrap();
    let store = SqliteStore::open(config).await.unwrap();
    drop(store);
    assert!(missing.join("x.db").exists());
}

/// The async runtime keeps running while the writer is busy: SQLite work
/// happens on the connection threads, never on a runtime thread.
#[tokio::test(flavor = "current_thread")]
async fn a_busy_writer_does_not_block_the_runtime() {
    let (store, _dir) = common::file_store().await;
    let slow = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .transaction(|_| {
                    std::thread::sleep(Duration::from_millis(300));
                    Ok(())
                })
                .await
        })
    };
    let mut ticks = 0;
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(200) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        ticks += 1;
    }
    assert!(
        ticks >= 5,
        "the runtime ticked only {ticks} times while the writer was busy"
    );
    // Reads are served by the reader pool meanwhile.
    store.read_all(0, 1, &Filter::all()).await.unwrap();
    slow.await.unwrap().unwrap();
}

#[test]
fn config_round_trips_and_rejects_unknown_fields() {
    let example = r#"{
        "path": "data/orchestrix.db",
        "create_if_missing": true,
        "create_dirs": false,
        "busy_timeout_ms": 2000,
        "synchronous": "FULL",
        "read_pool_size": 2,
        "statement_cache_capacity": 32,
        "cache_size_kib": 8192,
        "mmap_size_bytes": 268435456,
        "wal_autocheckpoint_pages": 1000
    }"#;
    let config: SqliteConfig = serde_json::from_str(example).unwrap();
    assert_eq!(config.synchronous, Synchronous::Full);
    assert_eq!(config.busy_timeout(), Duration::from_secs(2));
    let back: SqliteConfig =
        serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(back, config);
    let value: serde_json::Value = serde_json::from_str(example).unwrap();
    assert_eq!(
        serde_json::to_value(&config).unwrap(),
        value,
        "the example names every field"
    );

    assert_eq!(
        serde_json::from_str::<SqliteConfig>("{}").unwrap(),
        SqliteConfig::default()
    );
    let err = serde_json::from_str::<SqliteConfig>(r#"{ "path": "x.db", "journal": "delete" }"#)
        .unwrap_err();
    assert!(err.to_string().contains("unknown field"), "{err}");
    assert!(serde_json::from_str::<SqliteConfig>(r#"{ "synchronous": "OFF" }"#).is_err());

    let url = BackendUrl::parse("sqlite://var/lib/app.db").unwrap();
    assert_eq!(
        SqliteConfig::from_url(&url).unwrap().path,
        std::path::Path::new("var/lib/app.db")
    );
    assert!(
        SqliteConfig::from_url(&BackendUrl::parse("sqlite::memory:").unwrap())
            .unwrap()
            .is_in_memory()
    );
}

/// A `query` closure that leaves a read transaction open would pin an old
/// snapshot on its reader; the reader rolls it back after the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_transaction_left_open_is_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig::new(db_path(&dir)).with_read_pool_size(1);
    let store = SqliteStore::open(config).await.unwrap();
    store
        .query(|c| {
            c.execute_batch("BEGIN; SELECT COUNT(*) FROM events;")
                .map_err(|e| Error::backend("sqlite", "test", false, e))
        })
        .await
        .unwrap();
    append(&store, &stream(), ExpectedRevision::NoStream, 1).await;
    assert_eq!(
        store.read_all(0, 10, &Filter::all()).await.unwrap().len(),
        1
    );
    assert!(store.query(|c| Ok(c.is_autocommit())).await.unwrap());
}
