//! Every port against the real server, in a fresh schema per test.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use orchestrix::store::{
    AppendRequest, CheckpointStore, DeadLetter, DeadLetterStore, Direction, EventStore,
    ExpectedRevision, Filter, Snapshot, SnapshotStore, Timer, TimerStore,
};
use orchestrix::{Error, EventRecord, Metadata, StreamId};
use orchestrix_postgres::testing;
use serde_json::json;
use uuid::Uuid;

fn stream(s: &str) -> StreamId {
    StreamId::parse(s).unwrap()
}

fn event(ty: &str, n: u64) -> EventRecord {
    EventRecord::json(ty, 1, &json!({ "n": n }))
}

#[tokio::test]
async fn events_round_trip_exactly_with_nanoseconds_and_metadata() {
    let Some(store) = testing::store("events_round_trip_exactly").await else {
        return;
    };
    let s = stream("order-1");
    let mut extensions = BTreeMap::new();
    extensions.insert("tenant".to_owned(), "acme".to_owned());
    let record = EventRecord {
        id: Uuid::now_v7(),
        event_type: "com.acme.OrderPlaced".into(),
        schema_version: 3,
        source: "/shop/orders".into(),
        time: DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap(),
        content_type: "application/octet-stream".into(),
        data: Bytes::from_static(&[0, 159, 146, 150, 255]),
        metadata: Metadata {
            correlation_id: Some("c-1".into()),
            causation_id: Some("cmd-1".into()),
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            tracestate: None,
            extensions,
        },
    };
    let r = store
        .append(AppendRequest::new(
            s.clone(),
            ExpectedRevision::NoStream,
            vec![record.clone()],
        ))
        .await
        .unwrap();
    assert_eq!(
        (
            r.first_revision,
            r.last_revision,
            r.first_position,
            r.last_position
        ),
        (0, 0, 1, 1)
    );
    let read = store
        .read_stream(&s, 0, Direction::Forward, 10)
        .await
        .unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].record, record);
    assert_eq!((read[0].revision, read[0].position), (0, 1));
    assert_eq!(store.read_all(0, 10, &Filter::all()).await.unwrap(), read);
}

#[tokio::test]
async fn reads_forward_backward_and_filtered() {
    let Some(store) = testing::store("reads_forward_backward_and_filtered").await else {
        return;
    };
    let a = stream("order-a");
    let b = stream("invoice-b");
    store
        .append(AppendRequest::new(
            a.clone(),
            ExpectedRevision::Any,
            (0..5).map(|n| event("com.acme.A", n)).collect(),
        ))
        .await
        .unwrap();
    store
        .append(AppendRequest::new(
            b.clone(),
            ExpectedRevision::NoStream,
            (0..3).map(|n| event("com.acme.B", n)).collect(),
        ))
        .await
        .unwrap();
    store
        .append(AppendRequest::new(
            a.clone(),
            ExpectedRevision::Exact(4),
            vec![event("com.acme.C", 9)],
        ))
        .await
        .unwrap();

    let fwd = store
        .read_stream(&a, 2, Direction::Forward, 3)
        .await
        .unwrap();
    assert_eq!(
        fwd.iter().map(|e| e.revision).collect::<Vec<_>>(),
        [2, 3, 4]
    );
    let back = store
        .read_stream(&a, u64::MAX, Direction::Backward, 2)
        .await
        .unwrap();
    assert_eq!(back.iter().map(|e| e.revision).collect::<Vec<_>>(), [5, 4]);
    let back = store
        .read_stream(&a, 1, Direction::Backward, 10)
        .await
        .unwrap();
    assert_eq!(back.iter().map(|e| e.revision).collect::<Vec<_>>(), [1, 0]);
    assert!(
        store
            .read_stream(&stream("order-none"), 0, Direction::Forward, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .read_stream(&a, 0, Direction::Forward, 0)
            .await
            .unwrap()
            .is_empty()
    );

    let all = store.read_all(0, 100, &Filter::all()).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        (1..=9).collect::<Vec<_>>()
    );
    let orders = store
        .read_all(0, 100, &Filter::all().categories(["order"]))
        .await
        .unwrap();
    assert_eq!(orders.len(), 6);
    let c = store
        .read_all(
            0,
            100,
            &Filter::all().event_types(["com.acme.C", "com.acme.B"]),
        )
        .await
        .unwrap();
    assert_eq!(
        c.iter().map(|e| e.position).collect::<Vec<_>>(),
        [6, 7, 8, 9]
    );
    let none = store
        .read_all(
            0,
            100,
            &Filter::all()
                .categories(["order"])
                .event_types(["com.acme.B"]),
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(
        store.read_all(7, 1, &Filter::all()).await.unwrap()[0].position,
        8
    );
    assert_eq!(store.head_position().await.unwrap(), 9);
    assert_eq!(store.stream_revision(&a).await.unwrap(), Some(5));
    assert_eq!(
        store.stream_revision(&stream("order-none")).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn snapshots_keep_the_newest() {
    let Some(store) = testing::store("snapshots_keep_the_newest").await else {
        return;
    };
    let s = stream("account-1");
    assert_eq!(store.load_snapshot(&s).await.unwrap(), None);
    let snap = |revision, data: &'static [u8]| Snapshot {
        stream_id: s.clone(),
        revision,
        state_version: 2,
        data: Bytes::from_static(data),
        taken_at: Utc::now(),
    };
    let s5 = snap(5, b"five");
    store.save_snapshot(s5.clone()).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(s5.clone()));
    store.save_snapshot(snap(3, b"three")).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(s5));
    let s9 = snap(9, b"nine");
    store.save_snapshot(s9.clone()).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(s9));
}

#[tokio::test]
async fn checkpoints_save_load_delete() {
    let Some(store) = testing::store("checkpoints_save_load_delete").await else {
        return;
    };
    assert_eq!(store.load_checkpoint("p").await.unwrap(), None);
    store.save_checkpoint("p", 7).await.unwrap();
    store.save_checkpoint("p", 9).await.unwrap();
    store.save_checkpoint("q", 1).await.unwrap();
    assert_eq!(store.load_checkpoint("p").await.unwrap(), Some(9));
    store.delete_checkpoint("p").await.unwrap();
    assert_eq!(store.load_checkpoint("p").await.unwrap(), None);
    assert_eq!(store.load_checkpoint("q").await.unwrap(), Some(1));
}

#[tokio::test]
async fn dead_letters_list_get_delete() {
    let Some(store) = testing::store("dead_letters_list_get_delete").await else {
        return;
    };
    let base = Utc::now();
    let letter = |consumer: &str, offset: i64| DeadLetter {
        id: Uuid::now_v7(),
        consumer: consumer.to_owned(),
        event_id: Some(Uuid::now_v7()),
        event_type: Some("com.acme.X".into()),
        stream_id: Some("order-1".into()),
        position: Some(u64::try_from(offset).unwrap() + 1),
        payload: Bytes::from_static(b"\x00raw"),
        headers: BTreeMap::from([("ce_type".to_owned(), "com.acme.X".to_owned())]),
        reason: "cannot decode".into(),
        error_kind: "serialization".into(),
        attempts: 3,
        failed_at: base + TimeDelta::nanoseconds(offset),
    };
    let l1 = letter("proj", 2);
    let l2 = letter("saga", 1);
    let l3 = DeadLetter {
        event_id: None,
        event_type: None,
        stream_id: None,
        position: None,
        ..letter("proj", 3)
    };
    for l in [&l1, &l2, &l3] {
        store.put_dead_letter(l.clone()).await.unwrap();
    }
    assert_eq!(
        store.list_dead_letters(None, 10).await.unwrap(),
        vec![l2.clone(), l1.clone(), l3.clone()]
    );
    assert_eq!(
        store.list_dead_letters(Some("proj"), 10).await.unwrap(),
        vec![l1.clone(), l3.clone()]
    );
    assert_eq!(
        store.list_dead_letters(Some("proj"), 1).await.unwrap(),
        vec![l1.clone()]
    );
    assert_eq!(
        store.get_dead_letter(l3.id).await.unwrap(),
        Some(l3.clone())
    );
    assert!(store.delete_dead_letter(l3.id).await.unwrap());
    assert!(!store.delete_dead_letter(l3.id).await.unwrap());
    assert_eq!(store.get_dead_letter(l3.id).await.unwrap(), None);
}

#[tokio::test]
async fn timers_are_idempotent_and_due_in_order() {
    let Some(store) = testing::store("timers_are_idempotent_and_due_in_order").await else {
        return;
    };
    let now = Utc::now();
    let timer = |id: &str, owner: &str, offset_ns: i64| Timer {
        id: id.to_owned(),
        owner: owner.to_owned(),
        key: format!("k-{id}"),
        due_at: now + TimeDelta::nanoseconds(offset_ns),
        payload: json!({ "id": id, "big": u64::MAX, "f": 1.5, "nested": { "z": [1, null, "x"] } }),
    };
    let t_b = timer("b", "saga", -10);
    let t_a = timer("a", "saga", -10);
    let t_c = timer("c", "saga", -20);
    let t_future = timer("d", "saga", 1);
    let t_other = timer("e", "other", -100);
    for t in [&t_b, &t_a, &t_c, &t_future, &t_other] {
        store.schedule_timer(t.clone()).await.unwrap();
    }
    // Scheduling the same id again keeps the first.
    store
        .schedule_timer(Timer {
            due_at: now - TimeDelta::days(1),
            ..t_future.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        store.due_timers("saga", now, 10).await.unwrap(),
        vec![t_c.clone(), t_a.clone(), t_b.clone()]
    );
    assert_eq!(
        store.due_timers("saga", now, 2).await.unwrap(),
        vec![t_c.clone(), t_a.clone()]
    );
    assert_eq!(
        store
            .due_timers("saga", now + TimeDelta::nanoseconds(1), 10)
            .await
            .unwrap(),
        vec![t_c.clone(), t_a.clone(), t_b.clone(), t_future.clone()]
    );
    assert!(store.cancel_timer("a").await.unwrap());
    assert!(!store.cancel_timer("a").await.unwrap());
    assert_eq!(
        store.due_timers("saga", now, 10).await.unwrap(),
        vec![t_c, t_b]
    );
}

#[tokio::test]
async fn batch_results_match_the_memory_store() {
    let Some(store) = testing::store("batch_results_match_the_memory_store").await else {
        return;
    };
    let memory = orchestrix::store::memory::MemoryStore::new();
    let a = stream("order-a");
    let b = stream("order-b");
    let stored = event("com.acme.X", 0);
    let dup = EventRecord {
        id: stored.id,
        ..event("com.acme.Y", 1)
    };
    let batch = vec![
        AppendRequest::new(a.clone(), ExpectedRevision::NoStream, vec![stored.clone()]),
        AppendRequest::new(
            a.clone(),
            ExpectedRevision::NoStream,
            vec![event("com.acme.X", 1)],
        ),
        AppendRequest::new(
            b.clone(),
            ExpectedRevision::Exact(5),
            vec![event("com.acme.X", 2)],
        ),
        AppendRequest::new(
            b.clone(),
            ExpectedRevision::StreamExists,
            vec![event("com.acme.X", 3)],
        ),
        AppendRequest::new(b.clone(), ExpectedRevision::Any, vec![]),
        AppendRequest::new(
            a.clone(),
            ExpectedRevision::Exact(0),
            vec![event("com.acme.X", 4), event("com.acme.X", 5)],
        ),
        AppendRequest::new(b.clone(), ExpectedRevision::Any, vec![dup]),
        AppendRequest::new(
            b.clone(),
            ExpectedRevision::NoStream,
            vec![event("com.acme.X", 6)],
        ),
        AppendRequest::new(
            a.clone(),
            ExpectedRevision::StreamExists,
            vec![event("com.acme.X", 7)],
        ),
    ];
    let expected = memory.append_batch(batch.clone()).await.unwrap();
    let got = store.append_batch(batch).await.unwrap();
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        match (g, e) {
            (Ok(g), Ok(e)) => assert_eq!(g, e, "request {i}"),
            (Err(g), Err(e)) => {
                assert_eq!(g.kind(), e.kind(), "request {i}");
                assert_eq!(g.to_string(), e.to_string(), "request {i}");
            }
            _ => panic!("request {i}: postgres {g:?}, memory {e:?}"),
        }
    }
    for s in [&a, &b] {
        let pg = store
            .read_stream(s, 0, Direction::Forward, 100)
            .await
            .unwrap();
        let mem = memory
            .read_stream(s, 0, Direction::Forward, 100)
            .await
            .unwrap();
        assert_eq!(pg, mem);
    }
    assert_eq!(
        store.read_all(0, 100, &Filter::all()).await.unwrap(),
        memory.read_all(0, 100, &Filter::all()).await.unwrap()
    );
    // A later batch sees the stored ids too.
    let again = store
        .append(AppendRequest::new(
            b.clone(),
            ExpectedRevision::Any,
            vec![stored],
        ))
        .await
        .unwrap_err();
    assert!(matches!(again, Error::InvalidInput { .. }), "{again}");
}

#[tokio::test]
async fn random_operations_match_the_memory_store() {
    use rand::{Rng, SeedableRng};
    let Some(store) = testing::store("random_operations_match_the_memory_store").await else {
        return;
    };
    let memory = orchestrix::store::memory::MemoryStore::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let streams: Vec<StreamId> = (0..4)
        .map(|i| stream(&format!("{}-{i}", ["order", "account"][i % 2])))
        .collect();
    let mut ids = Vec::new();
    for round in 0..40 {
        let n = rng.random_range(1..=6);
        let mut batch = Vec::new();
        for _ in 0..n {
            let s = streams[rng.random_range(0..streams.len())].clone();
            let expected = match rng.random_range(0..5) {
                0 => ExpectedRevision::Any,
                1 => ExpectedRevision::NoStream,
                2 => ExpectedRevision::StreamExists,
                _ => ExpectedRevision::Exact(rng.random_range(0..6)),
            };
            let events: Vec<_> = (0..rng.random_range(0..4))
                .map(|k| {
                    if !ids.is_empty() && rng.random_ratio(1, 20) {
                        EventRecord {
                            id: ids[rng.random_range(0..ids.len())],
                            ..event("com.acme.Dup", k)
                        }
                    } else {
                        event(
                            if k % 2 == 0 {
                                "com.acme.A"
                            } else {
                                "com.acme.B"
                            },
                            k,
                        )
                    }
                })
                .collect();
            ids.extend(events.iter().map(|e| e.id));
            batch.push(AppendRequest::new(s, expected, events));
        }
        let e = memory.append_batch(batch.clone()).await.unwrap();
        let g = store.append_batch(batch).await.unwrap();
        let show = |r: &Vec<orchestrix::Result<orchestrix::store::AppendResult>>| {
            r.iter()
                .map(|x| x.as_ref().map_err(ToString::to_string).copied())
                .collect::<Vec<_>>()
        };
        assert_eq!(show(&g), show(&e), "round {round}");
    }
    for s in &streams {
        assert_eq!(
            store
                .read_stream(s, 0, Direction::Forward, 1000)
                .await
                .unwrap(),
            memory
                .read_stream(s, 0, Direction::Forward, 1000)
                .await
                .unwrap()
        );
        assert_eq!(
            store
                .read_stream(s, u64::MAX, Direction::Backward, 3)
                .await
                .unwrap(),
            memory
                .read_stream(s, u64::MAX, Direction::Backward, 3)
                .await
                .unwrap()
        );
        assert_eq!(
            store.stream_revision(s).await.unwrap(),
            memory.stream_revision(s).await.unwrap()
        );
    }
    for filter in [
        Filter::all(),
        Filter::all().categories(["order"]),
        Filter::all().event_types(["com.acme.B"]),
    ] {
        for after in [0, 3, 10] {
            assert_eq!(
                store.read_all(after, 7, &filter).await.unwrap(),
                memory.read_all(after, 7, &filter).await.unwrap()
            );
        }
    }
    assert_eq!(
        store.head_position().await.unwrap(),
        memory.head_position().await.unwrap()
    );
}
