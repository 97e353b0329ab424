//! Test helpers (feature `testing`): the server URL, a fresh keyspace per
//! test, and the skip-or-fail rule for a missing server.
//!
//! The URL comes from `ORCHESTRIX_SCYLLA_URL` (default [`DEFAULT_URL`]).
//! When the server cannot be reached, a test is skipped with a printed
//! reason, unless `CI=true`, where it fails loudly: CI never passes quietly
//! without the server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use orchestrix::store::Backend;

use crate::{ScyllaConfig, ScyllaStore};

/// The server used when `ORCHESTRIX_SCYLLA_URL` is not set.
pub const DEFAULT_URL: &str = "scylla://127.0.0.1:9042";

/// Prefix of the keyspaces made by [`random_keyspace`].
pub const TEST_KEYSPACE_PREFIX: &str = "t_";

/// Test keyspaces older than this are dropped by the first test of a run.
const STALE_AFTER_SECS: u64 = 3600;

/// The server URL for tests.
#[must_use]
pub fn url() -> String {
    std::env::var("ORCHESTRIX_SCYLLA_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

/// Whether this run is CI (`CI=true`), where a missing server fails tests.
#[must_use]
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A fresh keyspace name: `t_`, the creation time in seconds, and 8 random
/// hex digits (the time lets later runs drop what this one leaves).
#[must_use]
pub fn random_keyspace() -> String {
    format!(
        "{TEST_KEYSPACE_PREFIX}{}_{:08x}",
        unix_now(),
        rand::random::<u32>()
    )
}

/// A config for a fresh random keyspace on the test server, with quick
/// connect timeouts and a short claim lease.
///
/// # Panics
/// When the URL is malformed.
#[must_use]
pub fn config() -> ScyllaConfig {
    let mut c =
        ScyllaConfig::from_url(&url()).expect("ORCHESTRIX_SCYLLA_URL is not a valid scylla:// URL");
    c.keyspace = random_keyspace();
    c.connect_timeout_ms = 3_000;
    c.claim_lease_ms = 2_000;
    c
}

/// Whether the server answers, or why not.
///
/// # Errors
/// The connection error, for the skip message.
pub async fn probe() -> Result<(), String> {
    let c = config();
    let session = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&c.nodes)
        .connection_timeout(Duration::from_secs(3))
        .build()
        .await
        .map_err(|e| e.to_string())?;
    session
        .query_unpaged("SELECT release_version FROM system.local", ())
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// `true` when the test can run. Otherwise prints why it is skipped and
/// returns `false`, or panics under CI.
///
/// # Panics
/// When the server is unreachable and `CI=true`.
pub async fn available(test: &str) -> bool {
    match probe().await {
        Ok(()) => {
            clean_stale_keyspaces_once().await;
            true
        }
        Err(reason) => {
            let url = orchestrix::url::redact(&url());
            assert!(
                !in_ci(),
                "the CQL server at {url} is unreachable ({reason}) and CI=true: integration tests must not pass without it. \
                 Start it (tests/scripts/services.sh) or set ORCHESTRIX_SCYLLA_URL."
            );
            eprintln!(
                "SKIP {test}: the CQL server at {url} is unreachable ({reason}); set ORCHESTRIX_SCYLLA_URL or start it"
            );
            false
        }
    }
}

/// A store in a fresh keyspace, or `None` when the test is skipped.
///
/// # Panics
/// When the server is unreachable under CI, or the store cannot be made.
pub async fn store(test: &str) -> Option<ScyllaStore> {
    store_with(test, |c| c).await
}

/// [`store`] with the config adjusted first.
///
/// # Panics
/// As [`store`].
pub async fn store_with(
    test: &str,
    adjust: impl FnOnce(ScyllaConfig) -> ScyllaConfig,
) -> Option<ScyllaStore> {
    if !available(test).await {
        return None;
    }
    Some(
        ScyllaStore::connect(adjust(config()))
            .await
            .expect("connect to the test CQL server"),
    )
}

/// A second store on the keyspace of `store`, as another process would open
/// it (its own session and allocator).
///
/// # Panics
/// When the connection fails.
pub async fn reopen(store: &ScyllaStore) -> ScyllaStore {
    let mut c = store.config().clone();
    c.migrate = false;
    ScyllaStore::connect(c)
        .await
        .expect("reopen the test store")
}

static SHARED_KEYSPACE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// A backend for conformance suites: one random keyspace per test process
/// (cases use random names, so they may share it; a keyspace per case would
/// spend most of the run on schema changes), a fresh session per case.
///
/// # Panics
/// When the server is unreachable (the suite cannot skip from a factory),
/// with the reason.
pub async fn backend() -> Backend {
    if let Err(reason) = probe().await {
        panic!(
            "the CQL server at {} is unreachable ({reason}); set ORCHESTRIX_SCYLLA_URL or start it",
            orchestrix::url::redact(&url())
        );
    }
    clean_stale_keyspaces_once().await;
    let keyspace = SHARED_KEYSPACE.get_or_init(random_keyspace).clone();
    let mut c = config();
    c.keyspace = keyspace;
    ScyllaStore::connect(c)
        .await
        .expect("connect to the test CQL server")
        .backend()
}

static CLEANED: AtomicBool = AtomicBool::new(false);

/// Drops test keyspaces created more than an hour ago (left by earlier
/// runs), once per process.
async fn clean_stale_keyspaces_once() {
    if CLEANED.swap(true, Ordering::SeqCst) {
        return;
    }
    let c = config();
    let Ok(session) = scylla::client::session_builder::SessionBuilder::new()
        .known_nodes(&c.nodes)
        .build()
        .await
    else {
        return;
    };
    let Ok(result) = session
        .query_unpaged("SELECT keyspace_name FROM system_schema.keyspaces", ())
        .await
    else {
        return;
    };
    let Ok(rows) = result.into_rows_result() else {
        return;
    };
    let Ok(names) = rows.rows::<(String,)>() else {
        return;
    };
    let cutoff = unix_now().saturating_sub(STALE_AFTER_SECS);
    for (name,) in names.flatten() {
        let Some(rest) = name.strip_prefix(TEST_KEYSPACE_PREFIX) else {
            continue;
        };
        let Some((secs, _)) = rest.split_once('_') else {
            continue;
        };
        if secs.parse::<u64>().is_ok_and(|t| t < cutoff)
            && let Ok(ks) = crate::KeyspaceName::new(&name)
        {
            let _ = crate::schema::drop_keyspace(&session, &ks).await;
        }
    }
}
