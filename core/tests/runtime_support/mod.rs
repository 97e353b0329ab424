//! Helpers shared by the runtime tests.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use orchestrix::store::ExpectedRevision;
use orchestrix::{EventRecord, Store, StreamId};
use serde_json::{Value, json};

/// The longest any test waits for the runtime; generous, since only a hang
/// should hit it.
pub const WAIT: Duration = Duration::from_secs(30);

/// Awaits `fut`, failing the test (instead of hanging) after [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Polls `check` until it holds (bounded by [`WAIT`]).
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

/// A random stream id in `category`.
pub fn stream(category: &str) -> StreamId {
    StreamId::new(category, &uuid::Uuid::new_v4().simple().to_string()).unwrap()
}

/// A JSON event record.
pub fn record(event_type: &str, payload: Value) -> EventRecord {
    EventRecord::json(event_type, 1, &payload)
}

/// Appends one event to `stream`.
pub async fn append(store: &Store, stream: &StreamId, event_type: &str, payload: Value) -> u64 {
    store
        .append(
            stream,
            ExpectedRevision::Any,
            vec![record(event_type, payload)],
        )
        .await
        .unwrap()
        .last_position
}

/// Appends `n` events `{"n": i}` of type `com.acme.Tick` to `stream`.
pub async fn ticks(store: &Store, stream: &StreamId, n: u64) -> u64 {
    let events = (0..n)
        .map(|i| record("com.acme.Tick", json!({ "n": i })))
        .collect();
    store
        .append(stream, ExpectedRevision::Any, events)
        .await
        .unwrap()
        .last_position
}

/// A record that happened `seconds` ago.
pub fn old_record(seconds: i64) -> EventRecord {
    let mut r = record("com.acme.Tick", json!({}));
    r.time = Utc::now() - chrono::Duration::seconds(seconds);
    r
}
