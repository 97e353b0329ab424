//! Test helpers (feature `testing`): the server URL, a fresh schema per
//! test, and the skip-or-fail rule for a missing server.
//!
//! The URL comes from `ORCHESTRIX_POSTGRES_URL` (default
//! [`DEFAULT_URL`]). When the server cannot be reached, a test is skipped
//! with a printed reason, unless `CI=true`, where it fails loudly: CI never
//! passes quietly without the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use orchestrix::store::Backend;

use crate::{PostgresConfig, PostgresStore};

/// The server used when `ORCHESTRIX_POSTGRES_URL` is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Prefix of the schemas made by [`random_schema`].
pub const TEST_SCHEMA_PREFIX: &str = "t_";

/// The server URL for tests.
#[must_use]
pub fn url() -> String {
    std::env::var("ORCHESTRIX_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Whether this run is CI (`CI=true`), where a missing server fails tests.
#[must_use]
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A fresh schema name, `t_` and 16 random hex digits.
#[must_use]
pub fn random_schema() -> String {
    format!("{TEST_SCHEMA_PREFIX}{:016x}", rand::random::<u64>())
}

/// A config for a fresh random schema on the test server, with a small pool
/// and quick connect timeouts.
///
/// # Panics
/// When the URL is malformed.
#[must_use]
pub fn config() -> PostgresConfig {
    let mut c = PostgresConfig::from_url(&url())
        .expect("ORCHESTRIX_POSTGRES_URL is not a valid postgres URL");
    c.schema = random_schema();
    c.pool_size = 8;
    c.connect_timeout_ms = 3_000;
    c.acquire_timeout_ms = 20_000;
    c
}

/// Whether the server answers, or why not.
///
/// # Errors
/// The connection error, for the skip message.
pub async fn probe() -> Result<(), String> {
    let mut pg = config().pg_config().map_err(|e| e.to_string())?;
    pg.connect_timeout(Duration::from_secs(3));
    let (client, conn) = pg
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| format!("{e}: {e:?}"))?;
    let driver = tokio::spawn(conn);
    let result = client
        .simple_query("SELECT 1")
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    drop(client);
    let _ = driver.await;
    result
}

/// `true` when the test can run. Otherwise prints why it is skipped and
/// returns `false`, or panics under CI.
///
/// # Panics
/// When the server is unreachable and `CI=true`.
pub async fn available(test: &str) -> bool {
    match probe().await {
        Ok(()) => {
            clean_stale_schemas_once().await;
            true
        }
        Err(reason) => {
            let url = orchestrix::url::redact(&url());
            assert!(
                !in_ci(),
                "PostgreSQL at {url} is unreachable ({reason}) and CI=true: integration tests must not pass without it. \
                 Start the server or set ORCHESTRIX_POSTGRES_URL."
            );
            eprintln!(
                "SKIP {test}: PostgreSQL at {url} is unreachable ({reason}); set ORCHESTRIX_POSTGRES_URL or start it"
            );
            false
        }
    }
}

/// A store in a fresh schema, or `None` when the test is skipped.
///
/// # Panics
/// When the server is unreachable under CI, or the store cannot be made.
pub async fn store(test: &str) -> Option<PostgresStore> {
    store_with(test, |c| c).await
}

/// [`store`] with the config adjusted first.
///
/// # Panics
/// As [`store`].
pub async fn store_with(
    test: &str,
    adjust: impl FnOnce(PostgresConfig) -> PostgresConfig,
) -> Option<PostgresStore> {
    if !available(test).await {
        return None;
    }
    Some(
        PostgresStore::connect(adjust(config()))
            .await
            .expect("connect to the test PostgreSQL"),
    )
}

/// A fresh-schema backend for conformance suites.
///
/// # Panics
/// When the server is unreachable (the suite cannot skip from a factory),
/// with the reason.
pub async fn backend() -> Backend {
    if let Err(reason) = probe().await {
        panic!(
            "PostgreSQL at {} is unreachable ({reason}); set ORCHESTRIX_POSTGRES_URL or start it",
            orchestrix::url::redact(&url())
        );
    }
    clean_stale_schemas_once().await;
    PostgresStore::connect(config())
        .await
        .expect("connect to the test PostgreSQL")
        .backend()
}

/// A plain driver connection to the test server (for tests that hold
/// transactions open or terminate backends).
///
/// # Panics
/// When the connection fails.
pub async fn raw_client() -> tokio_postgres::Client {
    let pg = config().pg_config().expect("test URL");
    let (client, conn) = pg
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect to the test PostgreSQL");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

static CLEANED: AtomicBool = AtomicBool::new(false);

/// Drops test schemas migrated more than an hour ago (left by earlier runs),
/// once per process.
async fn clean_stale_schemas_once() {
    if CLEANED.swap(true, Ordering::SeqCst) {
        return;
    }
    let client = raw_client().await;
    let Ok(rows) = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 't\\_%' AND length(nspname) = 18 \
             AND to_regclass(quote_ident(nspname) || '.schema_migrations') IS NOT NULL",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let Ok(schema) = crate::SchemaName::new(&name) else {
            continue;
        };
        let stale = client
            .query_opt(
                &format!("SELECT 1 FROM {}.schema_migrations WHERE applied_at < now() - interval '1 hour' LIMIT 1", schema.quoted()),
                &[],
            )
            .await;
        if matches!(stale, Ok(Some(_))) {
            let _ = crate::schema::drop_schema(&client, &schema).await;
        }
    }
}
