//! The relay: in order, at-least-once, resumes from its checkpoint, never skips.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrix::relay::{Publisher, Relay, RelayConfig};
use orchestrix::runtime::RetryPolicy;
use orchestrix::store::memory::MemoryStore;
use orchestrix::store::{Backend, ExpectedRevision};
use orchestrix::{Error, EventRecord, RecordedEvent, Store, StreamId};

#[derive(Debug, Default)]
struct Recorder {
    seen: Mutex<Vec<RecordedEvent>>,
    fail_every: u32,
    calls: AtomicU32,
}

#[async_trait::async_trait]
impl Publisher for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }

    async fn publish(&self, events: &[RecordedEvent]) -> orchestrix::Result<()> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_every > 0 && call.is_multiple_of(self.fail_every) {
            return Err(Error::backend(
                "recorder",
                "publish",
                true,
                "broker unavailable",
            ));
        }
        self.seen.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
}

async fn append_many(store: &Store, streams: usize, per_stream: usize) {
    for r in 0..per_stream {
        for s in 0..streams {
            let id = StreamId::parse(format!("order-{s}")).unwrap();
            let e = EventRecord::json("com.test.Step", 1, &serde_json::json!({ "n": r }));
            store
                .append(&id, ExpectedRevision::Any, vec![e])
                .await
                .unwrap();
        }
    }
}

fn assert_per_stream_order(events: &[RecordedEvent]) {
    let mut last: HashMap<&str, u64> = HashMap::new();
    for e in events {
        if let Some(prev) = last.insert(e.stream_id.as_str(), e.revision) {
            assert!(
                e.revision > prev,
                "stream {} went from {prev} to {}",
                e.stream_id,
                e.revision
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_restart_loses_nothing_and_keeps_stream_order() {
    let backend = Backend::from_all(Arc::new(MemoryStore::new()));
    let store = Store::new(backend.clone());
    append_many(&store, 20, 10).await;

    let first = Arc::new(Recorder::default());
    let relay = Relay::start(
        store.clone(),
        first.clone(),
        RelayConfig {
            batch: 7,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    relay.wait_for(100).await.unwrap();
    relay.shutdown().await.unwrap();
    let done = first.seen.lock().unwrap().last().unwrap().position;
    assert!(done >= 100);

    // More events while the relay is down; a new relay resumes from its checkpoint.
    append_many(&store, 20, 5).await;
    let second = Arc::new(Recorder::default());
    let relay = Relay::start(
        Store::new(backend),
        second.clone(),
        RelayConfig {
            batch: 7,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    tokio::time::timeout(Duration::from_secs(20), relay.wait_for(300))
        .await
        .unwrap()
        .unwrap();
    relay.shutdown().await.unwrap();

    let mut all: Vec<u64> = first
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    let resumed: Vec<u64> = second
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(
        resumed.first().copied(),
        Some(done + 1),
        "resumes right after the checkpoint"
    );
    all.extend(resumed);
    assert_eq!(
        all,
        (1..=300).collect::<Vec<_>>(),
        "every event exactly once, in order"
    );
    assert_per_stream_order(&second.seen.lock().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_publishes_are_retried_and_never_skipped() {
    let store = Store::memory();
    append_many(&store, 5, 20).await;
    let flaky = Arc::new(Recorder {
        fail_every: 3,
        ..Default::default()
    });
    let config = RelayConfig {
        batch: 9,
        retry: RetryPolicy::fixed(u32::MAX, Duration::from_millis(1)),
        ..Default::default()
    };
    let relay = Relay::start(store.clone(), flaky.clone(), config)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), relay.wait_for(100))
        .await
        .unwrap()
        .unwrap();
    relay.shutdown().await.unwrap();
    let positions: Vec<u64> = flaky
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, (1..=100).collect::<Vec<_>>());
    assert!(
        flaky.calls.load(Ordering::SeqCst) > 12,
        "some publishes failed and were retried"
    );
}

#[tokio::test]
async fn a_relay_that_runs_out_of_retries_stops_with_the_error() {
    let store = Store::memory();
    append_many(&store, 1, 1).await;
    let broken = Arc::new(Recorder {
        fail_every: 1,
        ..Default::default()
    });
    let config = RelayConfig {
        retry: RetryPolicy::fixed(3, Duration::from_millis(1)),
        ..Default::default()
    };
    let relay = Relay::start(store.clone(), broken.clone(), config)
        .await
        .unwrap();
    assert!(relay.wait_for(1).await.is_err(), "the relay stopped");
    let err = relay.shutdown().await.unwrap_err();
    assert!(err.to_string().contains("broker unavailable"), "{err}");
    assert_eq!(broken.calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        store
            .backend()
            .checkpoints
            .load_checkpoint("relay:recorder")
            .await
            .unwrap(),
        None
    );
}
