//! The banking demo on the ScyllaDB store (a CQL server; Apache Cassandra
//! here), chosen by URL: the walk-through ends as on the embedded store, and
//! the demo binary runs twice in a row on the same keyspace, both times with
//! exit 0 and the same closing balances. The server is
//! `ORCHESTRIX_SCYLLA_URL` (default `scylla://127.0.0.1:9042`); without it
//! the test is skipped, and it fails when `CI=true`.

use std::time::Duration;

use orchestrix::Store;
use orchestrix_demo_banking::walkthrough;
use orchestrix_testkit::services::{Service, require};

fn keyspace_url(base: &str) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{}/t_{secs}_bank{id}", base.trim_end_matches('/'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_walkthrough_on_scylla_ends_as_on_the_embedded_store() {
    let Some(base) = require(Service::Cql) else {
        return;
    };
    let url = keyspace_url(&base);
    let limit = Duration::from_secs(120);
    let mut out = Vec::new();
    let embedded = tokio::time::timeout(limit, walkthrough::run(Store::memory(), "t", &mut out))
        .await
        .expect("the embedded walk-through took too long")
        .unwrap();
    let store = orchestrix_backends::open_store(&url).await.unwrap();
    assert_eq!(store.backend_name(), "scylla");
    let mut out = Vec::new();
    let on_scylla = tokio::time::timeout(limit, walkthrough::run(store, "t", &mut out))
        .await
        .expect("the Scylla walk-through took too long")
        .unwrap();
    assert_eq!(on_scylla, embedded, "{}", String::from_utf8_lossy(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_binary_runs_twice_on_the_same_keyspace() {
    let Some(base) = require(Service::Cql) else {
        return;
    };
    let url = keyspace_url(&base);
    let mut outputs = Vec::new();
    for run in 0..2 {
        let out = tokio::time::timeout(
            Duration::from_secs(180),
            tokio::process::Command::new(env!("CARGO_BIN_EXE_orchestrix-demo-banking"))
                .args(["--store", &url])
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("run {run} took too long"))
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "run {run} failed: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("scylla://"), "names its store: {stdout}");
        outputs.push(stdout);
    }
    // Each run names its accounts afresh; their final balances agree.
    let tail = |s: &str| {
        s.lines()
            .skip_while(|l| !l.starts_with("Final balances"))
            .take_while(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(tail(&outputs[0]).len() >= 4, "{}", outputs[0]);
    assert_eq!(tail(&outputs[0]), tail(&outputs[1]), "{outputs:?}");
}
