//! The shared store conformance suite against a real CQL server; the cases
//! of one test process share a random keyspace (each uses random names).

use std::sync::Arc;

use orchestrix::store::Backend;
use orchestrix::store::memory::MemoryStore;
use orchestrix_scylla::testing;

/// Without a server: a failure under `CI=true`; elsewhere a printed skip,
/// and the case runs against the memory store so that it still exercises
/// the suite (a generated test cannot skip itself).
async fn scylla() -> Backend {
    if testing::available("store conformance").await {
        testing::backend().await
    } else {
        eprintln!("SKIP scylla conformance: running this case against the memory store instead");
        Backend::from_all(Arc::new(MemoryStore::new()))
    }
}

orchestrix_testkit::store_conformance!(scylla);
