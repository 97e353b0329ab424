//! The shared store conformance suite against a real CQL server; the cases
//! of one test process share a random keyspace (each uses random names).

use orchestrix::store::Backend;
use orchestrix_scylla::testing;

/// Without a server: a printed skip outside CI, a failure under `CI=true`
/// (`testing::available`); never a stand-in store.
async fn scylla() -> Option<Backend> {
    if testing::available("store conformance").await {
        Some(testing::backend().await)
    } else {
        None
    }
}

orchestrix_testkit::store_conformance!(scylla);
