//! Opening the store a worker's configuration names.

use orchestrix::Store;
use orchestrix::url::{BackendUrl, Scheme};

use crate::error::Result;

/// Opens the store at `url`: `postgres://` (feature `postgres`, with write
/// coalescing, shared by every process), `sqlite://PATH` or `memory://`
/// (through `orchestrix-backends`).
///
/// # Errors
/// A malformed URL, a backend that is not compiled in (the error names the
/// feature), or the backend's connection error.
pub async fn open_store(url: &str) -> Result<Store> {
    let parsed = BackendUrl::parse(url)?;
    if parsed.scheme() == Scheme::Postgres {
        return open_postgres(url).await;
    }
    Ok(orchestrix_backends::open_store(url).await?)
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<Store> {
    use orchestrix::coalesce::CoalesceConfig;
    let store = orchestrix_postgres::PostgresStore::connect_url(url).await?;
    Ok(Store::new(store.backend()).with_coalescing(CoalesceConfig::default()))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: &str) -> Result<Store> {
    Err(orchestrix::Error::FeatureNotEnabled {
        scheme: "postgres".into(),
        feature: "postgres",
        krate: "orchestrix-worker",
    }
    .into())
}
