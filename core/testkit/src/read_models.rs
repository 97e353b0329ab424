//! The read-model conformance suite: one `async fn` per contract case of
//! [`ReadModelStore`], the port where typed projections
//! ([`orchestrix::View`]) keep their rows.
//!
//! Every case takes an `Arc<dyn ReadModelStore>` and panics, with a message
//! that names the broken rule, when the store violates the contract. Cases
//! only touch views and streams with random names, so they may share one
//! database and run at the same time.
//!
//! [`CASES`] names every case;
//! [`read_model_conformance!`](crate::read_model_conformance) turns them into
//! tests.
//!
//! ```
//! use std::sync::Arc;
//! use orchestrix::runtime::MemoryReadModels;
//! # orchestrix_testkit::tokio::runtime::Runtime::new().unwrap().block_on(async {
//! orchestrix_testkit::read_models::apply_replaces_the_row(Arc::new(MemoryReadModels::new())).await;
//! # });
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use orchestrix::runtime::ReadModelStore;
use orchestrix::{Error, Result};
use serde_json::{Value, json};

use crate::random;

crate::__with_read_model_cases!(__read_model_case_names!());

/// How many tasks race in [`concurrent_applies_of_one_revision_apply_once`].
pub const RACERS: usize = 16;

fn view() -> String {
    random::name("view")
}

fn stream() -> String {
    random::stream(&random::category()).as_str().to_owned()
}

/// A change that ignores the stored row and writes `row`.
async fn put(
    store: &dyn ReadModelStore,
    view: &str,
    key: &str,
    stream: &str,
    revision: u64,
    row: Value,
) -> bool {
    let change = move |_: Option<Value>| -> Result<Value> { Ok(row.clone()) };
    store
        .apply(view, key, stream, revision, &change)
        .await
        .unwrap_or_else(|e| panic!("apply {view}/{key} at {stream}@{revision}: {e}"))
}

/// A change that counts: `{"n": stored n + 1}`.
fn increment(stored: Option<Value>) -> Result<Value> {
    let n = stored
        .as_ref()
        .and_then(|v| v.get("n"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Ok(json!({ "n": n + 1 }))
}

async fn load(store: &dyn ReadModelStore, view: &str, key: &str) -> Option<Value> {
    store
        .load(view, key)
        .await
        .unwrap_or_else(|e| panic!("load {view}/{key}: {e}"))
}

async fn load_all(store: &dyn ReadModelStore, view: &str) -> Vec<(String, Value)> {
    store
        .load_all(view)
        .await
        .unwrap_or_else(|e| panic!("load_all {view}: {e}"))
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

/// `load` of a row never written is `None`; `load_all` of an unknown view is
/// empty; `load_all` returns every row ordered by key.
pub async fn load_and_load_all_ordered_by_key(store: Arc<dyn ReadModelStore>) {
    let view = view();
    assert_eq!(load(&*store, &view, "nope").await, None, "unknown row");
    assert!(load_all(&*store, &view).await.is_empty(), "unknown view");
    for (i, key) in ["m", "b", "z", "a", "b2"].into_iter().enumerate() {
        let applied = put(&*store, &view, key, &stream(), 0, json!({ "i": i })).await;
        assert!(applied, "a first apply of a stream applies");
    }
    let all = load_all(&*store, &view).await;
    let keys: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["a", "b", "b2", "m", "z"],
        "load_all is ordered by key"
    );
    assert_eq!(
        load(&*store, &view, "z").await,
        Some(json!({ "i": 2 })),
        "load returns the stored JSON"
    );
    assert_eq!(
        all.iter().find(|(k, _)| k == "b2").map(|(_, v)| v.clone()),
        Some(json!({ "i": 4 }))
    );
}

/// `apply` hands the stored row to `change` and replaces it with the result;
/// JSON of any shape round-trips.
pub async fn apply_replaces_the_row(store: Arc<dyn ReadModelStore>) {
    let view = view();
    let s = stream();
    let seen = std::sync::Mutex::new(Vec::new());
    let change = |stored: Option<Value>| -> Result<Value> {
        seen.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(stored.clone());
        increment(stored)
    };
    for revision in 0..3 {
        let applied = store
            .apply(&view, "k", &s, revision, &change)
            .await
            .unwrap_or_else(|e| panic!("apply revision {revision}: {e}"));
        assert!(applied, "revision {revision} is new and applies");
    }
    assert_eq!(
        *seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        [None, Some(json!({ "n": 1 })), Some(json!({ "n": 2 }))],
        "change gets the stored row (None for a new key)"
    );
    assert_eq!(load(&*store, &view, "k").await, Some(json!({ "n": 3 })));

    let doc = json!({
        "text": "ünïcode ✓ 'quotes' \"double\"",
        "list": [1, 2.5, null, true],
        "nested": { "empty": {}, "big": u64::MAX },
    });
    assert!(put(&*store, &view, "k", &s, 3, doc.clone()).await);
    assert_eq!(
        load(&*store, &view, "k").await,
        Some(doc),
        "the row is replaced, not merged, and round-trips"
    );
    assert_eq!(load_all(&*store, &view).await.len(), 1, "still one row");
}

/// An already-applied or older revision of a stream returns `false` and
/// changes nothing; a gap in revisions is fine.
pub async fn applied_or_older_revisions_are_skipped(store: Arc<dyn ReadModelStore>) {
    let view = view();
    let s = stream();
    assert!(put(&*store, &view, "k", &s, 5, json!({ "v": 5 })).await);
    for revision in [5, 4, 0] {
        let applied = put(&*store, &view, "k", &s, revision, json!({ "v": revision })).await;
        assert!(!applied, "revision {revision} is at or below 5: skipped");
        assert_eq!(
            load(&*store, &view, "k").await,
            Some(json!({ "v": 5 })),
            "a skipped revision {revision} changes nothing"
        );
    }
    let applied = put(&*store, &view, "other", &s, 3, json!({ "v": 3 })).await;
    assert!(
        !applied,
        "revisions are per (view, stream), not per key: revision 3 is old"
    );
    assert_eq!(load(&*store, &view, "other").await, None, "no row written");
    assert!(
        put(&*store, &view, "k", &s, 9, json!({ "v": 9 })).await,
        "a later revision applies, gaps allowed"
    );
    assert_eq!(load(&*store, &view, "k").await, Some(json!({ "v": 9 })));
}

/// Revisions of different streams are independent, also when they change
/// the same row.
pub async fn streams_are_independent(store: Arc<dyn ReadModelStore>) {
    let view = view();
    let (a, b) = (stream(), stream());
    let inc = |stored| increment(stored);
    let apply = |s: String, revision: u64| {
        let store = store.clone();
        let view = view.clone();
        async move {
            store
                .apply(&view, "shared", &s, revision, &inc)
                .await
                .unwrap_or_else(|e| panic!("apply {s}@{revision}: {e}"))
        }
    };
    assert!(apply(a.clone(), 7).await, "a@7");
    assert!(apply(b.clone(), 0).await, "b@0 applies though a is at 7");
    assert!(apply(b.clone(), 1).await, "b@1");
    assert!(!apply(a.clone(), 7).await, "a@7 again is skipped");
    assert!(!apply(b.clone(), 1).await, "b@1 again is skipped");
    assert_eq!(
        load(&*store, &view, "shared").await,
        Some(json!({ "n": 3 })),
        "three applies from two streams"
    );
}

/// Rows and applied revisions of one view are invisible to another, also
/// with the same keys and streams.
pub async fn views_are_isolated(store: Arc<dyn ReadModelStore>) {
    let (v1, v2) = (view(), view());
    let s = stream();
    assert!(put(&*store, &v1, "k", &s, 3, json!("one")).await);
    assert_eq!(load(&*store, &v2, "k").await, None, "v2 sees no v1 row");
    assert!(load_all(&*store, &v2).await.is_empty());
    assert!(
        put(&*store, &v2, "k", &s, 1, json!("two")).await,
        "v2 has not applied s@1 although v1 applied s@3"
    );
    assert_eq!(load(&*store, &v1, "k").await, Some(json!("one")));
    assert_eq!(load(&*store, &v2, "k").await, Some(json!("two")));
    store
        .clear(&v2)
        .await
        .unwrap_or_else(|e| panic!("clear: {e}"));
    assert_eq!(
        load(&*store, &v1, "k").await,
        Some(json!("one")),
        "clearing v2 leaves v1"
    );
    assert!(
        !put(&*store, &v1, "k", &s, 3, json!("again")).await,
        "clearing v2 leaves v1's applied revisions"
    );
}

/// `clear` deletes every row and applied revision of the view, so a rebuild
/// applies the same revisions again.
pub async fn clear_wipes_rows_and_revisions(store: Arc<dyn ReadModelStore>) {
    let view = view();
    let (a, b) = (stream(), stream());
    assert!(put(&*store, &view, "x", &a, 4, json!(1)).await);
    assert!(put(&*store, &view, "y", &b, 2, json!(2)).await);
    store
        .clear(&view)
        .await
        .unwrap_or_else(|e| panic!("clear: {e}"));
    assert!(load_all(&*store, &view).await.is_empty(), "no rows left");
    assert_eq!(load(&*store, &view, "x").await, None);
    assert!(
        put(&*store, &view, "x", &a, 0, json!(10)).await,
        "after clear, revision 0 of a stream applies again"
    );
    assert!(put(&*store, &view, "y", &b, 2, json!(20)).await);
    assert_eq!(
        load_all(&*store, &view).await,
        [("x".to_owned(), json!(10)), ("y".to_owned(), json!(20))]
    );
    store
        .clear(&random::name("view"))
        .await
        .unwrap_or_else(|e| panic!("clear of an unknown view must succeed: {e}"));
}

/// A `change` that fails makes `apply` fail with its error and changes
/// nothing: neither the row nor the applied revision.
pub async fn failing_change_changes_nothing(store: Arc<dyn ReadModelStore>) {
    let view = view();
    let s = stream();
    assert!(put(&*store, &view, "k", &s, 0, json!({ "n": 1 })).await);
    let fail = |_: Option<Value>| -> Result<Value> {
        Err(Error::invalid("conformance", "the change refuses"))
    };
    let err = store
        .apply(&view, "k", &s, 1, &fail)
        .await
        .expect_err("a failing change fails apply");
    assert!(
        err.to_string().contains("the change refuses"),
        "apply returns the change's error, got: {err}"
    );
    assert_eq!(
        load(&*store, &view, "k").await,
        Some(json!({ "n": 1 })),
        "the row is unchanged"
    );
    let err = store
        .apply(&view, "new", &s, 1, &fail)
        .await
        .expect_err("a failing change fails apply");
    assert!(err.to_string().contains("the change refuses"), "{err}");
    assert_eq!(load(&*store, &view, "new").await, None, "no row created");
    assert!(
        put(&*store, &view, "k", &s, 1, json!({ "n": 2 })).await,
        "revision 1 was not recorded as applied: it applies now"
    );
    assert_eq!(load_all(&*store, &view).await.len(), 1);
}

/// [`RACERS`] tasks apply the same (stream, revision) at once: exactly one
/// applies, and the row shows one change.
pub async fn concurrent_applies_of_one_revision_apply_once(store: Arc<dyn ReadModelStore>) {
    let view = view();
    let s = stream();
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let (store, view, s, calls) = (store.clone(), view.clone(), s.clone(), calls.clone());
            tokio::spawn(async move {
                let change = |stored: Option<Value>| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    increment(stored)
                };
                store.apply(&view, "k", &s, 0, &change).await
            })
        })
        .collect();
    let mut applied = 0;
    for task in tasks {
        let result = task
            .await
            .unwrap_or_else(|e| panic!("a racing apply panicked: {e}"));
        if result.unwrap_or_else(|e| panic!("a racing apply failed: {e}")) {
            applied += 1;
        }
    }
    assert_eq!(applied, 1, "exactly one of {RACERS} racing applies applies");
    assert_eq!(
        load(&*store, &view, "k").await,
        Some(json!({ "n": 1 })),
        "the row shows one change"
    );
    assert!(calls.load(Ordering::SeqCst) >= 1, "change was called");

    // Racing increments of one row from different streams: none is lost.
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let (store, view) = (store.clone(), view.clone());
            tokio::spawn(async move {
                let inc = |stored| increment(stored);
                store.apply(&view, "k", &stream(), 0, &inc).await
            })
        })
        .collect();
    for task in tasks {
        let result = task
            .await
            .unwrap_or_else(|e| panic!("a racing apply panicked: {e}"));
        assert!(
            result.unwrap_or_else(|e| panic!("a racing apply failed: {e}")),
            "each stream's first revision applies"
        );
    }
    assert_eq!(
        load(&*store, &view, "k").await,
        Some(json!({ "n": RACERS + 1 })),
        "concurrent changes of one row from different streams are not lost"
    );
}
