//! The shared store conformance suite, each case in a fresh random schema.

use std::sync::Arc;

use orchestrix::store::Backend;
use orchestrix::store::memory::MemoryStore;
use orchestrix_postgres::testing;

/// A fresh schema per case. Without a server: a failure under `CI=true`;
/// elsewhere a printed skip, and the case runs against the memory store so
/// that it still exercises the suite.
async fn postgres() -> Backend {
    if testing::available("store conformance").await {
        testing::backend().await
    } else {
        eprintln!("SKIP postgres conformance: running this case against the memory store instead");
        Backend::from_all(Arc::new(MemoryStore::new()))
    }
}

orchestrix_testkit::store_conformance!(postgres);
