//! Gap-safe global order on CQL: a writer that claims a lower position and
//! commits after a writer with a higher one is delivered first, never
//! skipped; a writer that never commits is fenced after its lease and
//! passed; many racing writers are seen exactly once, in order.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt as _;
use orchestrix::store::{AppendRequest, EventStore, ExpectedRevision, Filter};
use orchestrix::{EventRecord, RecordedEvent, Store, StreamId};
use orchestrix_scylla::testing;
use rand::{Rng, SeedableRng};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn request(stream: &str, n: usize) -> AppendRequest {
    AppendRequest::new(
        StreamId::parse(stream).unwrap(),
        ExpectedRevision::Any,
        (0..n)
            .map(|i| EventRecord::json("com.acme.Tick", 1, &json!({ "i": i })))
            .collect(),
    )
}

/// Positions that have a row in `all_events`, read with raw CQL.
async fn raw_positions(store: &orchestrix_scylla::ScyllaStore) -> Vec<i64> {
    let result = store
        .session()
        .query_unpaged(
            format!(
                "SELECT position FROM {} WHERE bucket = 0",
                store.keyspace().table("all_events")
            ),
            (),
        )
        .await
        .unwrap();
    result
        .into_rows_result()
        .unwrap()
        .rows::<(i64,)>()
        .unwrap()
        .map(|r| r.unwrap().0)
        .collect()
}

async fn poll_until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    tokio::time::timeout(WAIT, async {
        while !f().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} did not happen within {WAIT:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_late_commit_of_a_lower_position_is_delivered_first_and_never_skipped() {
    let Some(db) = testing::store_with("late_commit_lower_position", |mut c| {
        // Long enough that the paused writer is not fenced during the test.
        c.claim_lease_ms = 60_000;
        c
    })
    .await
    else {
        return;
    };
    let store = Store::new(db.backend()).with_poll_interval(Duration::from_millis(20));
    let mut sub = Box::pin(store.subscribe(0, Filter::all()));

    // A claims position 1 and stops before committing.
    let a = db.begin_append(request("order-a", 1)).await.unwrap();
    assert_eq!(a.first_position(), 1);
    // B claims position 2 and commits.
    let b = db.append(request("order-b", 1)).await.unwrap();
    assert_eq!(b.first_position, 2);

    // The gap is real: a naive reader ordering by position sees 2 without 1.
    assert_eq!(raw_positions(&db).await, [2]);

    // The store's readers hold B back while A is in flight.
    assert!(db.read_all(0, 10, &Filter::all()).await.unwrap().is_empty());
    assert_eq!(db.head_position().await.unwrap(), 0);
    let early = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
    assert!(
        early.is_err(),
        "the subscriber delivered {early:?} while a lower position was uncommitted"
    );

    let a = a.commit().await.unwrap();
    assert_eq!(a.first_position, 1);
    let first = sub.next().await.unwrap().unwrap();
    let second = sub.next().await.unwrap().unwrap();
    assert_eq!((first.position, first.stream_id.as_str()), (1, "order-a"));
    assert_eq!((second.position, second.stream_id.as_str()), (2, "order-b"));
    assert_eq!(db.head_position().await.unwrap(), 2);
    let all = db.read_all(0, 10, &Filter::all()).await.unwrap();
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_abandoned_claim_is_fenced_after_its_lease_and_the_late_writer_moves_behind() {
    let Some(db) = testing::store_with("abandoned_claim_is_fenced", |mut c| {
        c.claim_lease_ms = 500;
        c
    })
    .await
    else {
        return;
    };
    // A claims 1..=2 and stalls (a crashed or partitioned writer).
    let a = db.begin_append(request("order-a", 2)).await.unwrap();
    assert_eq!(a.first_position(), 1);
    let b = db.append(request("order-b", 1)).await.unwrap();
    assert_eq!(b.first_position, 3);

    // Readers are held back, then settle the expired claim and pass it.
    poll_until("readers passing the abandoned claim", || async {
        db.read_all(0, 10, &Filter::all()).await.unwrap().len() == 1
    })
    .await;
    assert_eq!(db.head_position().await.unwrap(), 3);
    assert_eq!(
        raw_positions(&db).await,
        [1, 2, 3],
        "positions 1 and 2 are skip markers"
    );

    // The late writer cannot commit at its fenced positions: it appends
    // behind everything a reader has seen.
    let late = a.commit().await.unwrap();
    assert_eq!(late.first_revision, 0);
    assert!(late.first_position > 3, "{late:?}");
    poll_until("the late append to become visible", || async {
        db.read_all(0, 10, &Filter::all()).await.unwrap().len() == 3
    })
    .await;
    let all = db.read_all(0, 10, &Filter::all()).await.unwrap();
    let streams: Vec<_> = all
        .iter()
        .map(|e| e.stream_id.as_str().to_owned())
        .collect();
    assert_eq!(streams, ["order-b", "order-a", "order-a"]);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    // The stream reads the same.
    let a_events = db
        .read_stream(
            &StreamId::parse("order-a").unwrap(),
            0,
            orchestrix::store::Direction::Forward,
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        a_events.iter().map(|e| e.position).collect::<Vec<_>>(),
        all[1..].iter().map(|e| e.position).collect::<Vec<_>>()
    );
}

/// Writers on two store instances (two allocators, as two processes) hold
/// their claims for random times and commit in random order, a few of them
/// only after their claim was fenced; one live subscriber receives every
/// committed event exactly once, in strictly increasing positions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_out_of_order_commits_are_delivered_exactly_once_in_order() {
    let Some(db) = testing::store_with("random_out_of_order_commits", |mut c| {
        c.claim_lease_ms = 1_000;
        c
    })
    .await
    else {
        return;
    };
    let other = testing::reopen(&db).await;
    let store = Store::new(db.backend()).with_poll_interval(Duration::from_millis(20));
    let collector = {
        let sub = store.subscribe(0, Filter::all());
        tokio::spawn(async move {
            let mut sub = Box::pin(sub);
            let mut got: Vec<RecordedEvent> = Vec::new();
            while let Some(e) = sub.next().await {
                let e = e.unwrap();
                if let Some(last) = got.last() {
                    assert!(
                        e.position > last.position,
                        "{} after {}",
                        e.position,
                        last.position
                    );
                }
                let done = e.record.event_type == "com.acme.Done";
                got.push(e);
                if done {
                    return got;
                }
            }
            got
        })
    };
    const WRITERS: u64 = 12;
    const APPENDS: usize = 40;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let db = if w % 2 == 0 {
            db.clone()
        } else {
            other.clone()
        };
        writers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w);
            let mut committed = Vec::new();
            for i in 0..APPENDS {
                let req = request(&format!("order-{w}_{}", i % 4), rng.random_range(1..=6));
                let ids: Vec<_> = req.events.iter().map(|e| e.id).collect();
                let pending = db.begin_append(req).await.unwrap();
                // A few writers stall past the lease: fenced, they move behind.
                let pause = if w < 2 && i % 20 == 7 {
                    Duration::from_millis(1_500)
                } else {
                    Duration::from_micros(rng.random_range(0..3_000))
                };
                tokio::time::sleep(pause).await;
                pending.commit().await.unwrap();
                committed.extend(ids);
            }
            committed
        }));
    }
    let mut expected = HashSet::new();
    for w in writers {
        expected.extend(w.await.unwrap());
    }
    db.append(AppendRequest::new(
        StreamId::parse("control-1").unwrap(),
        ExpectedRevision::NoStream,
        vec![EventRecord::json("com.acme.Done", 1, &json!({}))],
    ))
    .await
    .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(120), collector)
        .await
        .expect("the subscriber stalled")
        .unwrap();
    let (done, events) = got.split_last().unwrap();
    assert_eq!(done.record.event_type, "com.acme.Done");
    let delivered: Vec<_> = events.iter().map(|e| e.record.id).collect();
    let unique: HashSet<_> = delivered.iter().copied().collect();
    assert_eq!(
        unique.len(),
        delivered.len(),
        "an event was delivered twice"
    );
    assert_eq!(
        unique, expected,
        "delivered events differ from the committed ones"
    );
    assert!(expected.len() > 1_000, "{} events", expected.len());
    // Per stream, revisions are gap-free and in position order.
    let mut per_stream: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for e in events {
        per_stream
            .entry(e.stream_id.to_string())
            .or_default()
            .push(e.revision);
    }
    for (stream, revisions) in per_stream {
        assert_eq!(
            revisions,
            (0..revisions.len() as u64).collect::<Vec<_>>(),
            "{stream}"
        );
    }
    // A reader from the start sees the same sequence.
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = db.read_all(after, 500, &Filter::all()).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.position;
        all.extend(page);
    }
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        got.iter().map(|e| e.position).collect::<Vec<_>>()
    );
}
