//! The banking walk-through on the PostgreSQL store, chosen by URL
//! (`--store postgres://...`), in a fresh schema, ends exactly as on the
//! embedded store. PostgreSQL is `ORCHESTRIX_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); without it the test is skipped,
//! and it fails when `CI=true`.

use std::time::Duration;

use orchestrix::Store;
use orchestrix_demo_banking::walkthrough;

async fn store_url() -> Option<String> {
    let base = std::env::var("ORCHESTRIX_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let schema = format!("bank_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}schema={schema}");
    match orchestrix_backends::open_store(&url).await {
        Ok(_) => Some(url),
        Err(e) => {
            let reason = format!("PostgreSQL is not usable at {base}: {e}");
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
            eprintln!("skipping: {reason}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_walkthrough_on_postgres_ends_as_on_the_embedded_store() {
    let Some(url) = store_url().await else { return };
    let limit = Duration::from_secs(90);
    let mut out = Vec::new();
    let embedded = tokio::time::timeout(limit, walkthrough::run(Store::memory(), "t", &mut out))
        .await
        .expect("the embedded walk-through took too long")
        .unwrap();
    let store = orchestrix_backends::open_store(&url).await.unwrap();
    assert_eq!(store.backend_name(), "postgres");
    let mut out = Vec::new();
    let on_postgres = tokio::time::timeout(limit, walkthrough::run(store, "t", &mut out))
        .await
        .expect("the PostgreSQL walk-through took too long")
        .unwrap();
    assert_eq!(on_postgres, embedded, "{}", String::from_utf8_lossy(&out));
}
