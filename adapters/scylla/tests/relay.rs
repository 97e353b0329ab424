//! The core's outbox relay on the ScyllaDB store: restarted after crashes in the
//! middle of publishing, it resumes from its checkpoint; downstream, deduped
//! by event id, every event arrives, each stream in revision order.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orchestrix::relay::{Publisher, Relay, RelayConfig};
use orchestrix::runtime::retry::RetryPolicy;
use orchestrix::store::{AppendRequest, EventStore, ExpectedRevision};
use orchestrix::{Error, EventRecord, RecordedEvent, Store, StreamId};
use orchestrix_scylla::testing;
use serde_json::json;
use uuid::Uuid;

/// A bus that keeps every delivery (with the run that made it) and crashes
/// once it holds `crash_at` deliveries, halfway through a batch.
#[derive(Debug)]
struct Bus {
    delivered: Arc<Mutex<Vec<(usize, RecordedEvent)>>>,
    run: usize,
    crash_at: Option<usize>,
    crashed: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl Publisher for Bus {
    fn name(&self) -> &str {
        "bus"
    }

    async fn publish(&self, events: &[RecordedEvent]) -> orchestrix::Result<()> {
        let mut delivered = self.delivered.lock().unwrap();
        for e in events {
            if self.crash_at.is_some_and(|n| delivered.len() >= n) {
                self.crashed.notify_one();
                return Err(Error::backend("bus", "publish", false, "crashed mid-batch"));
            }
            delivered.push((self.run, e.clone()));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_resumes_after_crashes_without_losing_or_reordering() {
    let Some(db) = testing::store("relay_resumes_after_crashes").await else {
        return;
    };
    let store = Store::new(db.backend());
    let streams: Vec<StreamId> = (0..8)
        .map(|i| StreamId::parse(format!("order-{i}")).unwrap())
        .collect();
    let appended: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let append_some = |n: usize| {
        let db = db.clone();
        let streams = streams.clone();
        let appended = appended.clone();
        async move {
            for i in 0..n {
                let events: Vec<_> = (0..1 + i % 3)
                    .map(|k| EventRecord::json("com.acme.E", 1, &json!({ "k": k })))
                    .collect();
                appended.lock().unwrap().extend(events.iter().map(|e| e.id));
                db.append(AppendRequest::new(
                    streams[i % streams.len()].clone(),
                    ExpectedRevision::Any,
                    events,
                ))
                .await
                .unwrap();
            }
        }
    };
    append_some(100).await;

    let delivered: Arc<Mutex<Vec<(usize, RecordedEvent)>>> = Arc::default();
    let config = RelayConfig {
        batch: 32,
        retry: RetryPolicy::none(),
        ..RelayConfig::default()
    };
    let writer = tokio::spawn(append_some(100));
    // Both crashes come before the relay could catch up with the ~200
    // events appended before it started.
    for (run, crash_at) in [(0, 60), (1, 150)] {
        let crashed = Arc::new(tokio::sync::Notify::new());
        let bus = Arc::new(Bus {
            delivered: delivered.clone(),
            run,
            crash_at: Some(crash_at),
            crashed: crashed.clone(),
        });
        let relay = Relay::start(store.clone(), bus, config.clone())
            .await
            .unwrap();
        crashed.notified().await;
        // Without retries the relay stops with the publisher's error, its
        // checkpoint at the last batch confirmed in full.
        let err = relay.shutdown().await.unwrap_err();
        assert!(err.to_string().contains("crashed mid-batch"), "{err}");
    }
    writer.await.unwrap();
    let head = db.head_position().await.unwrap();
    let bus = Arc::new(Bus {
        delivered: delivered.clone(),
        run: 2,
        crash_at: None,
        crashed: Arc::default(),
    });
    let relay = Relay::start(store.clone(), bus, config).await.unwrap();
    relay.wait_for(head).await.unwrap();
    relay.shutdown().await.unwrap();

    let delivered = delivered.lock().unwrap().clone();
    // Each run delivers in strictly increasing positions.
    for run in 0..3 {
        let positions: Vec<u64> = delivered
            .iter()
            .filter(|(r, _)| *r == run)
            .map(|(_, e)| e.position)
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "run {run} out of order"
        );
    }
    // At-least-once: the crashed batches were published again.
    let ids: Vec<Uuid> = delivered.iter().map(|(_, e)| e.id()).collect();
    let unique: HashSet<Uuid> = ids.iter().copied().collect();
    assert!(unique.len() < ids.len(), "no batch was published twice");
    // Deduped by event id, everything arrived.
    assert_eq!(
        unique,
        appended
            .lock()
            .unwrap()
            .iter()
            .copied()
            .collect::<HashSet<_>>()
    );
    // Deduped by event id, each stream arrives in revision order, gap-free.
    let mut seen = HashSet::new();
    let mut per_stream: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (_, e) in &delivered {
        if seen.insert(e.id()) {
            per_stream
                .entry(e.stream_id.to_string())
                .or_default()
                .push(e.revision);
        }
    }
    for (stream, revisions) in per_stream {
        assert_eq!(
            revisions,
            (0..revisions.len() as u64).collect::<Vec<_>>(),
            "stream {stream}"
        );
    }
}

/// A publisher that keeps everything, in order.
#[derive(Debug, Default)]
struct Collect(Arc<Mutex<Vec<RecordedEvent>>>);

#[async_trait]
impl Publisher for Collect {
    fn name(&self) -> &str {
        "collect"
    }

    async fn publish(&self, events: &[RecordedEvent]) -> orchestrix::Result<()> {
        self.0.lock().unwrap().extend(events.iter().cloned());
        Ok(())
    }
}

/// While the relay runs, a writer holds a lower position open and others
/// commit higher ones (on two store instances, as two processes): the relay
/// publishes the late event first, and every event exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_waits_for_a_late_lower_position_and_publishes_in_order() {
    let Some(db) = testing::store_with("relay_late_lower_position", |mut c| {
        c.claim_lease_ms = 60_000;
        c
    })
    .await
    else {
        return;
    };
    let other = testing::reopen(&db).await;
    let store = Store::new(db.backend()).with_poll_interval(std::time::Duration::from_millis(20));
    let published: Arc<Mutex<Vec<RecordedEvent>>> = Arc::default();
    let relay = Relay::start(
        store.clone(),
        Arc::new(Collect(published.clone())),
        RelayConfig::default(),
    )
    .await
    .unwrap();

    let late = db
        .begin_append(AppendRequest::new(
            StreamId::parse("order-late").unwrap(),
            ExpectedRevision::NoStream,
            vec![EventRecord::json("com.acme.E", 1, &json!({ "late": true }))],
        ))
        .await
        .unwrap();
    let mut writers = Vec::new();
    for (w, s) in [db.clone(), other.clone(), db.clone(), other.clone()]
        .into_iter()
        .enumerate()
    {
        writers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25 {
                let events: Vec<_> = (0..1 + i % 3)
                    .map(|k| EventRecord::json("com.acme.E", 1, &json!({ "k": k })))
                    .collect();
                ids.extend(events.iter().map(|e| e.id));
                s.append(AppendRequest::new(
                    StreamId::parse(format!("order-{w}")).unwrap(),
                    ExpectedRevision::Any,
                    events,
                ))
                .await
                .unwrap();
            }
            ids
        }));
    }
    let mut expected: HashSet<Uuid> = HashSet::new();
    for w in writers {
        expected.extend(w.await.unwrap());
    }
    // Nothing above the open claim has been published.
    assert!(published.lock().unwrap().is_empty());
    let late_result = late.commit().await.unwrap();
    expected.insert(
        db.read_stream(
            &StreamId::parse("order-late").unwrap(),
            0,
            orchestrix::store::Direction::Forward,
            1,
        )
        .await
        .unwrap()[0]
            .id(),
    );
    assert_eq!(late_result.first_position, 1);
    let head = db.head_position().await.unwrap();
    relay.wait_for(head).await.unwrap();
    relay.shutdown().await.unwrap();

    let published = published.lock().unwrap().clone();
    assert_eq!(published[0].stream_id.as_str(), "order-late");
    assert!(
        published.windows(2).all(|w| w[0].position < w[1].position),
        "out of order"
    );
    let ids: Vec<Uuid> = published.iter().map(RecordedEvent::id).collect();
    let unique: HashSet<Uuid> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "published twice");
    assert_eq!(unique, expected);
}
