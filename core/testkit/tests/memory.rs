//! The store conformance suite against the in-memory backend.

use std::sync::Arc;

use orchestrix::store::Backend;
use orchestrix::store::memory::MemoryStore;

async fn memory() -> Backend {
    Backend::from_all(Arc::new(MemoryStore::new()))
}

orchestrix_testkit::store_conformance!(memory);

/// One store shared by many cases running at once: they must not see each
/// other's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cases_share_one_store() {
    use orchestrix_testkit::store;
    let backend = memory().await;
    let b = || backend.clone();
    tokio::join!(
        store::revisions_start_at_zero_without_gaps(b()),
        store::read_all_honours_after_limit_and_filters(b()),
        store::all_stream_positions_strictly_increase(b()),
        store::read_all_never_skips_under_concurrent_appends(b()),
        store::subscription_catches_up_then_stays_live(b()),
        store::subscription_with_filter(b()),
        store::metadata_round_trip(b()),
        store::dead_letters_put_list_get_delete(b()),
        store::timers_schedule_due_cancel(b()),
        store::upcasting_on_every_read_path(b()),
    );
}
