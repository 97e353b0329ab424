#![doc = include_str!("../README.md")]

pub mod bus;
pub mod dead_letters;
pub mod format;

pub use bus::{
    AppRuntime, Assignment, BusOptions, BusRuntime, BusStatus, PartitionStatus, is_bus_url,
    start_on_bus, start_runtime,
};
pub use dead_letters::dead_letters;
use orchestrix::coalesce::CoalesceConfig;
use orchestrix::store::Backend;
use orchestrix::url::{BackendUrl, Scheme};
use orchestrix::{Error, Result, Store};

/// Opens the backend a URL names, with every port.
///
/// # Errors
/// [`Error::InvalidInput`] for a malformed URL or a bus URL,
/// [`Error::FeatureNotEnabled`] for a backend not compiled in, or the
/// backend's connection error.
pub async fn open_backend(url: &str) -> Result<Backend> {
    let parsed = BackendUrl::parse(url)?;
    match parsed.scheme() {
        Scheme::Memory => Ok(Backend::from_all(std::sync::Arc::new(
            orchestrix::store::memory::MemoryStore::new(),
        ))),
        Scheme::Sqlite => open_sqlite(&parsed).await,
        Scheme::Postgres => open_postgres(&parsed).await,
        Scheme::Scylla => open_scylla(&parsed).await,
        Scheme::Kafka | Scheme::Nats => Err(Error::invalid(
            format!("store URL `{parsed}`"),
            format!("`{}://` names a bus, not an event store", parsed.scheme()),
        )),
        other => Err(Error::invalid(
            format!("store URL `{parsed}`"),
            format!("no store for `{other}://`"),
        )),
    }
}

/// Opens a [`Store`] on the backend a URL names. File and database stores get
/// write coalescing, so concurrent commands share commits. On PostgreSQL it
/// is on by default and set from the URL: `coalesce=on|off`, `max_batch`
/// (default 256), `max_in_flight` (default 2); see
/// `orchestrix_postgres::PostgresConfig`.
///
/// # Errors
/// As [`open_backend`].
pub async fn open_store(url: &str) -> Result<Store> {
    let parsed = BackendUrl::parse(url)?;
    if parsed.scheme() == Scheme::Postgres {
        return open_postgres_store(&parsed).await;
    }
    let backend = open_backend(url).await?;
    let store = Store::new(backend);
    Ok(match parsed.scheme() {
        Scheme::Memory => store,
        // ScyllaDB appends are LWT round trips that overlap well.
        Scheme::Scylla => store.with_coalescing(CoalesceConfig {
            max_batch: 256,
            max_in_flight: 4,
        }),
        _ => store.with_coalescing(CoalesceConfig::default()),
    })
}

// Unused only when every store feature is on.
#[cfg_attr(
    all(feature = "sqlite", feature = "postgres", feature = "scylla"),
    allow(dead_code)
)]
fn not_enabled(url: &BackendUrl, feature: &'static str) -> Error {
    Error::FeatureNotEnabled {
        scheme: url.scheme().as_str().to_owned(),
        feature,
        krate: "orchestrix-backends",
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &BackendUrl) -> Result<Backend> {
    let config = orchestrix_sqlite::SqliteConfig::from_url(url)?;
    let store = orchestrix_sqlite::SqliteStore::open(config).await?;
    Ok(Backend::from_all(std::sync::Arc::new(store)))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &BackendUrl) -> Result<Backend> {
    let store = orchestrix_postgres::PostgresStore::connect_url(url.as_str()).await?;
    Ok(store.backend())
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(url: &BackendUrl) -> Result<Backend> {
    Err(not_enabled(url, "postgres"))
}

/// The PostgreSQL store with the coalescing its URL asks for.
#[cfg(feature = "postgres")]
async fn open_postgres_store(url: &BackendUrl) -> Result<Store> {
    let store = orchestrix_postgres::PostgresStore::connect_url(url.as_str()).await?;
    Ok(store.store())
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres_store(url: &BackendUrl) -> Result<Store> {
    Err(not_enabled(url, "postgres"))
}

#[cfg(feature = "scylla")]
async fn open_scylla(url: &BackendUrl) -> Result<Backend> {
    let store = orchestrix_scylla::ScyllaStore::connect_url(url.as_str()).await?;
    Ok(store.backend())
}

#[cfg(not(feature = "scylla"))]
async fn open_scylla(url: &BackendUrl) -> Result<Backend> {
    Err(not_enabled(url, "scylla"))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(url: &BackendUrl) -> Result<Backend> {
    Err(not_enabled(url, "sqlite"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn malformed_and_unavailable_urls_are_typed_errors() {
        for bad in [
            "",
            "memory",
            "mysql://x",
            "postgres://",
            "sqlite://",
            "sqlite:relative",
        ] {
            let err = open_store(bad).await.unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{bad}: {err}");
        }
        let err = open_store("nats://127.0.0.1:4222").await.unwrap_err();
        assert!(err.to_string().contains("bus"), "{err}");
    }

    #[cfg(not(feature = "scylla"))]
    #[tokio::test]
    async fn scylla_urls_name_the_missing_feature() {
        let err = open_store("scylla://127.0.0.1:9042").await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::FeatureNotEnabled {
                    feature: "scylla",
                    krate: "orchestrix-backends",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("`scylla` feature"), "{err}");
    }

    #[cfg(feature = "scylla")]
    #[tokio::test]
    async fn scylla_urls_reach_the_scylla_store() {
        // A config error comes from orchestrix-scylla, before any connection.
        let err = open_store("scylla://127.0.0.1:9042/ks?no_such_param=1")
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
        assert!(err.to_string().contains("no_such_param"), "{err}");
    }

    #[cfg(feature = "sqlite")]
    #[tokio::test]
    async fn sqlite_urls_open_a_file_store_that_persists() {
        use orchestrix::store::ExpectedRevision;
        use orchestrix::{EventRecord, StreamId};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("x.db").display());
        let stream = StreamId::parse("order-1").unwrap();
        {
            let store = open_store(&url).await.unwrap();
            assert_eq!(store.backend_name(), "sqlite");
            let e = EventRecord::json("com.acme.Placed", 1, &serde_json::json!({"total": 1}));
            store
                .append(&stream, ExpectedRevision::NoStream, vec![e])
                .await
                .unwrap();
        }
        let store = open_store(&url).await.unwrap();
        assert_eq!(store.stream_revision(&stream).await.unwrap(), Some(0));
    }
}
