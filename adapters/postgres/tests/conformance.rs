//! The shared store conformance suite, each case in a fresh random schema.

use orchestrix::store::Backend;
use orchestrix_postgres::testing;

/// Without a server: a printed skip outside CI, a failure under `CI=true`
/// (`testing::available`); never a stand-in store.
async fn postgres() -> Option<Backend> {
    if testing::available("store conformance").await {
        Some(testing::backend().await)
    } else {
        None
    }
}

orchestrix_testkit::store_conformance!(postgres);
