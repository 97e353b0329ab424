//! The shared store conformance suite (`orchestrix-testkit`), on a file store
//! and on an in-memory store.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use orchestrix::store::Backend;
use orchestrix_sqlite::{SqliteConfig, SqliteStore};

/// Where the file stores live: the target directory's `tmp` (which
/// `cargo clean` empties). Nextest runs every case in its own process and a
/// process cannot clean up after itself on exit, so each process first
/// removes the databases that earlier runs left there.
fn dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("orchestrix-sqlite-conformance");
        std::fs::create_dir_all(&dir).expect("create the conformance directory");
        remove_stale(&dir, Duration::from_secs(15 * 60));
        dir
    })
}

/// Removes the files of `dir` untouched for longer than `age` (never those of
/// a run in progress).
fn remove_stale(dir: &Path, age: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() > age);
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// A fresh store on a new file for each case.
async fn file_backend() -> Backend {
    let path = dir().join(format!("{}.db", uuid::Uuid::new_v4().simple()));
    let store = SqliteStore::open(SqliteConfig::new(path))
        .await
        .expect("open file store");
    Arc::new(store).backend()
}

/// A fresh in-memory store for each case.
async fn memory_backend() -> Backend {
    Arc::new(
        SqliteStore::open_in_memory()
            .await
            .expect("open in-memory store"),
    )
    .backend()
}

mod file {
    orchestrix_testkit::store_conformance!(super::file_backend);
}

mod memory {
    orchestrix_testkit::store_conformance!(super::memory_backend);
}
