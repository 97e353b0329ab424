//! Gap-safe global order: a transaction that takes a lower position and
//! commits after a later one is never skipped by a reader of the all-stream.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt as _;
use orchestrix::store::{AppendRequest, EventStore, ExpectedRevision, Filter};
use orchestrix::{EventRecord, Store, StreamId};
use orchestrix_postgres::testing;
use rand::{Rng, SeedableRng};
use serde_json::json;

fn request(stream: &str, n: usize) -> AppendRequest {
    AppendRequest::new(
        StreamId::parse(stream).unwrap(),
        ExpectedRevision::Any,
        (0..n)
            .map(|i| EventRecord::json("com.acme.Tick", 1, &json!({ "i": i })))
            .collect(),
    )
}

#[tokio::test]
async fn a_late_commit_of_a_lower_position_is_delivered_first_and_never_skipped() {
    let Some(pg) = testing::store("late_commit_lower_position").await else {
        return;
    };
    let store = Store::new(pg.backend()).with_poll_interval(Duration::from_millis(50));
    let mut sub = Box::pin(store.subscribe(0, Filter::all()));

    // A takes position 1 and stays open.
    let mut raw = testing::raw_client().await;
    let tx_a = raw.transaction().await.unwrap();
    let a = pg
        .append_in(&tx_a, &[request("order-a", 1)])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    assert_eq!(a.first_position, 1);

    // B takes position 2 and commits.
    let b = pg.append(request("order-b", 1)).await.unwrap();
    assert_eq!(b.first_position, 2);

    // The gap is real: a naive reader ordering by position sees 2 without 1.
    let naive: Vec<i64> = testing::raw_client()
        .await
        .query(
            &format!(
                "SELECT position FROM {} ORDER BY position",
                pg.schema().table("events")
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(naive, [2]);

    // The store's readers hold B back while A is open.
    assert!(pg.read_all(0, 10, &Filter::all()).await.unwrap().is_empty());
    assert_eq!(pg.head_position().await.unwrap(), 0);
    let early = tokio::time::timeout(Duration::from_millis(300), sub.next()).await;
    assert!(
        early.is_err(),
        "the subscriber delivered {early:?} while a lower position was uncommitted"
    );

    tx_a.commit().await.unwrap();
    let first = sub.next().await.unwrap().unwrap();
    let second = sub.next().await.unwrap().unwrap();
    assert_eq!((first.position, first.stream_id.as_str()), (1, "order-a"));
    assert_eq!((second.position, second.stream_id.as_str()), (2, "order-b"));
    assert_eq!(pg.head_position().await.unwrap(), 2);
    assert_eq!(pg.read_all(0, 10, &Filter::all()).await.unwrap().len(), 2);
}

#[tokio::test]
async fn an_aborted_lower_position_leaves_a_gap_that_readers_pass() {
    let Some(pg) = testing::store("aborted_lower_position").await else {
        return;
    };
    let mut raw = testing::raw_client().await;
    let tx_a = raw.transaction().await.unwrap();
    pg.append_in(&tx_a, &[request("order-a", 2)])
        .await
        .unwrap()
        .remove(0)
        .unwrap();
    let b = pg.append(request("order-b", 1)).await.unwrap();
    assert_eq!(b.first_position, 3);
    tx_a.rollback().await.unwrap();
    let all = pg.read_all(0, 10, &Filter::all()).await.unwrap();
    assert_eq!(all.iter().map(|e| e.position).collect::<Vec<_>>(), [3]);
}

/// Many writers holding their transactions open for random times and
/// committing (or rolling back) in random order, against one live
/// subscriber: it receives exactly the committed events, in strictly
/// increasing positions, none skipped, none twice.
#[tokio::test]
async fn random_out_of_order_commits_are_delivered_exactly_once_in_order() {
    let Some(pg) = testing::store("random_out_of_order_commits").await else {
        return;
    };
    let store = Store::new(pg.backend()).with_poll_interval(Duration::from_millis(50));
    let collector = {
        let sub = store.subscribe(0, Filter::all());
        tokio::spawn(async move {
            let mut sub = Box::pin(sub);
            let mut got = Vec::new();
            while let Some(e) = sub.next().await {
                let e = e.unwrap();
                let done = e.record.event_type == "com.acme.Done";
                got.push(e);
                if done {
                    return got;
                }
            }
            got
        })
    };
    let mut writers = Vec::new();
    for w in 0..6_u64 {
        let pg = pg.clone();
        writers.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(w);
            let mut raw = testing::raw_client().await;
            let mut committed = Vec::new();
            for i in 0..30 {
                let tx = raw.transaction().await.unwrap();
                let req = request(&format!("order-{w}_{}", i % 3), rng.random_range(1..=3));
                let ids: Vec<_> = req.events.iter().map(|e| e.id).collect();
                pg.append_in(&tx, &[req]).await.unwrap().remove(0).unwrap();
                tokio::time::sleep(Duration::from_micros(rng.random_range(0..4_000))).await;
                if rng.random_ratio(1, 8) {
                    tx.rollback().await.unwrap();
                } else {
                    tx.commit().await.unwrap();
                    committed.extend(ids);
                }
            }
            committed
        }));
    }
    let mut expected = HashSet::new();
    for w in writers {
        expected.extend(w.await.unwrap());
    }
    pg.append(AppendRequest::new(
        StreamId::parse("control-1").unwrap(),
        ExpectedRevision::NoStream,
        vec![EventRecord::json("com.acme.Done", 1, &json!({}))],
    ))
    .await
    .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(60), collector)
        .await
        .expect("subscriber stalled")
        .unwrap();
    let (done, events) = got.split_last().unwrap();
    assert_eq!(done.record.event_type, "com.acme.Done");
    assert!(
        got.windows(2).all(|w| w[0].position < w[1].position),
        "positions not strictly increasing"
    );
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
}

#[tokio::test]
async fn notifications_reach_another_store_instance() {
    let Some(writer) = testing::store("notifications_reach_another_store_instance").await else {
        return;
    };
    let mut config = writer.config().clone();
    config.migrate = false;
    let reader = orchestrix_postgres::PostgresStore::connect(config)
        .await
        .unwrap();
    let mut rx = reader.notifications().unwrap();
    // Wait for the LISTEN to be in place (the task publishes the head once).
    let before = *rx.borrow_and_update();
    assert_eq!(before, 0);
    // Appends keep arriving until one is seen: the LISTEN may start after
    // the first one.
    for i in 0..100 {
        writer.append(request("order-n", 1)).await.unwrap();
        if tokio::time::timeout(Duration::from_millis(100), rx.changed())
            .await
            .is_ok()
        {
            assert!(*rx.borrow() >= 1);
            return;
        }
        assert!(i < 99, "no notification arrived");
    }
}
