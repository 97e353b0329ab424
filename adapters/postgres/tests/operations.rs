//! Migrations, error mapping, retries, timeouts and TLS against the real server.

use std::time::Duration;

use orchestrix::store::{AppendRequest, Direction, EventStore, ExpectedRevision, Filter};
use orchestrix::{Error, EventRecord, StreamId};
use orchestrix_postgres::schema::{self, MIGRATIONS, SchemaName};
use orchestrix_postgres::{PostgresConfig, PostgresStore, testing};
use serde_json::json;

fn one(stream: &str, expected: ExpectedRevision) -> AppendRequest {
    AppendRequest::new(
        StreamId::parse(stream).unwrap(),
        expected,
        vec![EventRecord::json("com.acme.E", 1, &json!({}))],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrators_apply_each_version_once_and_rerunning_is_a_no_op() {
    if !testing::available("concurrent_migrators").await {
        return;
    }
    let schema = SchemaName::new(&testing::random_schema()).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let schema = schema.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = testing::raw_client().await;
            schema::migrate(&mut client, &schema).await.unwrap()
        }));
    }
    let mut applied = Vec::new();
    for t in tasks {
        applied.extend(t.await.unwrap());
    }
    applied.sort_unstable();
    let all: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(applied, all, "each version applied by exactly one migrator");
    let mut client = testing::raw_client().await;
    assert!(
        schema::migrate(&mut client, &schema)
            .await
            .unwrap()
            .is_empty()
    );
    let rows = client
        .query(
            &format!(
                "SELECT version FROM {}.schema_migrations ORDER BY 1",
                schema.quoted()
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        rows.iter().map(|r| r.get::<_, i32>(0)).collect::<Vec<_>>(),
        all
    );
    schema::drop_schema(&client, &schema).await.unwrap();
}

#[tokio::test]
async fn a_newer_schema_version_is_refused() {
    let Some(store) = testing::store("a_newer_schema_version_is_refused").await else {
        return;
    };
    let client = testing::raw_client().await;
    client
        .execute(
            &format!(
                "INSERT INTO {}.schema_migrations (version, name) VALUES (9999, 'future')",
                store.schema().quoted()
            ),
            &[],
        )
        .await
        .unwrap();
    let err = store.migrate().await.unwrap_err();
    assert!(err.to_string().contains("newer than this crate"), "{err}");
}

/// A writer that bypasses the store's locks inserts the row the store is
/// about to write; the unique violation on (stream, revision) becomes a
/// typed conflict with the stream's real revision.
#[tokio::test]
async fn a_unique_violation_on_a_stream_revision_is_a_typed_conflict() {
    let Some(store) = testing::store("unique_violation_is_a_conflict").await else {
        return;
    };
    let mut raw = testing::raw_client().await;
    let tx = raw.transaction().await.unwrap();
    tx.execute(
        &format!(
            "INSERT INTO {} (position, stream_id, category, revision, event_id, event_type, schema_version, source, time,
                             time_nanos, content_type, data, metadata)
             VALUES (1000, 'order-x', 'order', 0, gen_random_uuid(), 'com.acme.Foreign', 1, '/x', now(), 0,
                     'application/json', '\\x7b7d', '{{}}')",
            store.schema().table("events")
        ),
        &[],
    )
    .await
    .unwrap();
    let append = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append(one("order-x", ExpectedRevision::NoStream))
                .await
        })
    };
    // The append blocks on the uncommitted row's unique key until it commits.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tx.commit().await.unwrap();
    match append.await.unwrap() {
        Err(Error::Conflict {
            stream,
            expected,
            actual,
        }) => {
            assert_eq!(
                (stream.as_str(), expected, actual),
                ("order-x", ExpectedRevision::NoStream, Some(0))
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Other requests of a batch that hit a unique violation still succeed.
    let results = store
        .append_batch(vec![
            one("order-y", ExpectedRevision::NoStream),
            one("order-x", ExpectedRevision::Exact(0)),
        ])
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[tokio::test]
async fn reads_survive_terminated_connections_through_retries() {
    let Some(store) = testing::store("reads_survive_terminated_connections").await else {
        return;
    };
    store
        .append(one("order-r", ExpectedRevision::NoStream))
        .await
        .unwrap();
    let killer = testing::raw_client().await;
    for _ in 0..3 {
        // Kill every pooled connection of this test's store.
        let pids: Vec<i32> = {
            let mut pids = Vec::new();
            let conns: Vec<_> = futures::future::join_all((0..4).map(|_| store.connection())).await;
            for c in &conns {
                let c = c.as_ref().unwrap();
                pids.push(
                    c.query_one("SELECT pg_backend_pid()", &[])
                        .await
                        .unwrap()
                        .get(0),
                );
            }
            pids
        };
        for pid in pids {
            killer
                .execute("SELECT pg_terminate_backend($1, 5000)", &[&pid])
                .await
                .unwrap();
        }
        let events = store
            .read_stream(
                &StreamId::parse("order-r").unwrap(),
                0,
                Direction::Forward,
                10,
            )
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(
            store.read_all(0, 10, &Filter::all()).await.unwrap().len(),
            1
        );
    }
}

#[tokio::test]
async fn an_unreachable_server_is_a_transient_backend_error() {
    let mut config = PostgresConfig::from_url("postgres://postgres@127.0.0.1:1/test").unwrap();
    config.connect_timeout_ms = 500;
    config.retry.max_attempts = 2;
    config.retry.initial_backoff_ms = 1;
    let err = PostgresStore::connect(config).await.unwrap_err();
    match &err {
        Error::Backend {
            backend, transient, ..
        } => assert!(*backend == "postgres" && *transient, "{err:?}"),
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert!(err.is_transient());
}

#[tokio::test]
async fn the_statement_timeout_applies_and_is_transient() {
    let Some(store) = testing::store_with("statement_timeout", |mut c| {
        c.statement_timeout_ms = Some(100);
        c
    })
    .await
    else {
        return;
    };
    let conn = store.connection().await.unwrap();
    let err = conn.query_one("SELECT pg_sleep(2)", &[]).await.unwrap_err();
    let mapped = orchestrix_postgres::error::from_pg("test", err);
    assert!(mapped.to_string().contains("statement timeout"), "{mapped}");
    assert_eq!(orchestrix_postgres::error::sqlstate(&mapped), Some("57014"));
    assert!(mapped.is_transient());
}

#[tokio::test]
async fn an_invalid_schema_name_never_reaches_sql() {
    let config = PostgresConfig::new(testing::url()).with_schema("x\"; DROP TABLE y; --");
    let err = PostgresStore::connect(config).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
}

#[cfg(not(feature = "tls"))]
#[tokio::test]
async fn tls_require_without_the_feature_names_it() {
    let mut config = PostgresConfig::new(testing::url());
    config.tls = orchestrix_postgres::TlsMode::Require;
    let err = PostgresStore::connect(config).await.unwrap_err();
    assert!(
        matches!(err, Error::FeatureNotEnabled { feature: "tls", .. }),
        "{err:?}"
    );
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn tls_require_encrypts_and_verify_full_checks_the_certificate() {
    let ssl_on = {
        if !testing::available("tls").await {
            return;
        }
        let c = testing::raw_client().await;
        c.query_one("SHOW ssl", &[])
            .await
            .unwrap()
            .get::<_, String>(0)
            == "on"
    };
    if !ssl_on {
        eprintln!("SKIP tls: the server has ssl=off");
        return;
    }
    let Some(store) = testing::store_with("tls_require", |mut c| {
        c.tls = orchestrix_postgres::TlsMode::Require;
        c
    })
    .await
    else {
        return;
    };
    let conn = store.connection().await.unwrap();
    let ssl: bool = conn
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the pooled connection is not encrypted");
    store
        .append(one("order-tls", ExpectedRevision::NoStream))
        .await
        .unwrap();

    // The server's certificate is not signed by the Mozilla roots: refused.
    let mut config = testing::config();
    config.tls = orchestrix_postgres::TlsMode::VerifyFull;
    config.retry.max_attempts = 1;
    let err = PostgresStore::connect(config).await.unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
}

/// Append futures dropped at random points never leave a pooled connection
/// inside a transaction (which would hold its claimed positions and keep
/// every reader waiting) nor lose or duplicate what did commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_append_futures_leave_no_open_transaction() {
    let Some(store) = testing::store("dropped_append_futures").await else {
        return;
    };
    for i in 0..60_u64 {
        let fut = store.append(one(&format!("order-d{}", i % 5), ExpectedRevision::Any));
        // Poll a few times, then drop.
        let mut fut = Box::pin(fut);
        for _ in 0..(i % 7) {
            if futures::poll!(fut.as_mut()).is_ready() {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    let last = store
        .append(one("order-final", ExpectedRevision::NoStream))
        .await
        .unwrap();
    // Everything committed is readable right away: no transaction of ours is
    // left open holding back the readers.
    let committed: i64 = testing::raw_client()
        .await
        .query_one(
            &format!("SELECT count(*) FROM {}", store.schema().table("events")),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(store.head_position().await.unwrap(), last.last_position);
    let all = store.read_all(0, 1_000, &Filter::all()).await.unwrap();
    assert_eq!(all.len(), usize::try_from(committed).unwrap());
}

/// Backends terminated while appends are in flight: an append reported as
/// done is stored once; one reported as failed transiently (retried and
/// given up, or failed before its commit) is not stored; only an error
/// marked permanent may leave the outcome open. Never a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_racing_terminated_backends_are_never_duplicated_nor_misreported() {
    use rand::{Rng, SeedableRng};
    let Some(store) = testing::store_with("appends_racing_terminated_backends", |mut c| {
        c.pool_size = 2;
        c.retry.max_attempts = 3;
        c.retry.initial_backoff_ms = 1;
        c
    })
    .await
    else {
        return;
    };
    let killer = testing::raw_client().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut outcomes = Vec::new();
    for i in 0..60 {
        let request = one(&format!("order-k{}", i % 4), ExpectedRevision::Any);
        let id = request.events[0].id;
        let append = {
            let store = store.clone();
            tokio::spawn(async move { store.append(request).await })
        };
        tokio::time::sleep(Duration::from_micros(rng.random_range(0..3_000))).await;
        killer
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE application_name = 'orchestrix' AND datname = current_database() AND pid <> pg_backend_pid()
                   AND query LIKE '%' || $1 || '%'",
                &[&store.schema().as_str()],
            )
            .await
            .unwrap();
        outcomes.push((id, append.await.unwrap()));
    }
    let client = testing::raw_client().await;
    let mut failed = 0;
    for (id, outcome) in outcomes {
        let stored: i64 = client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {} WHERE event_id = $1",
                    store.schema().table("events")
                ),
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        match outcome {
            Ok(_) => assert_eq!(stored, 1, "{id}: reported appended"),
            Err(e) if e.is_transient() => {
                failed += 1;
                assert_eq!(stored, 0, "{id}: transient error {e}, yet stored");
            }
            Err(e) => {
                failed += 1;
                assert!(stored <= 1, "{id}: {e}");
            }
        }
    }
    eprintln!("{failed} of 60 appends failed");
}
