//! The read-model conformance suite against the in-memory read models.

use std::sync::Arc;

use orchestrix::runtime::{MemoryReadModels, ReadModelStore};

async fn memory() -> Option<Arc<dyn ReadModelStore>> {
    Some(Arc::new(MemoryReadModels::new()))
}

orchestrix_testkit::read_model_conformance!(memory);

/// One store shared by every case at once: they must not see each other's
/// data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cases_share_one_store() {
    use orchestrix_testkit::read_models as rm;
    let store: Arc<dyn ReadModelStore> = Arc::new(MemoryReadModels::new());
    let s = || store.clone();
    tokio::join!(
        rm::load_and_load_all_ordered_by_key(s()),
        rm::apply_replaces_the_row(s()),
        rm::applied_or_older_revisions_are_skipped(s()),
        rm::streams_are_independent(s()),
        rm::views_are_isolated(s()),
        rm::clear_wipes_rows_and_revisions(s()),
        rm::failing_change_changes_nothing(s()),
        rm::concurrent_applies_of_one_revision_apply_once(s()),
    );
}
