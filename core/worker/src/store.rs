//! Opening the store a worker's configuration names.

use orchestrix::Store;

use crate::error::Result;

/// Opens the store at `url` through `orchestrix-backends`: `postgres://`
/// (feature `postgres`, with write coalescing, shared by every process),
/// `sqlite://PATH` or `memory://`.
///
/// # Errors
/// A malformed URL, a backend that is not compiled in (the error names the
/// feature), or the backend's connection error.
pub async fn open_store(url: &str) -> Result<Store> {
    Ok(orchestrix_backends::open_store(url).await?)
}
