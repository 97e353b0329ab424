//! The event store port on a file store and an in-memory store, compared with
//! the core's memory store where errors must match.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{TimeZone as _, Utc};
use futures::StreamExt as _;
use orchestrix::coalesce::CoalesceConfig;
use orchestrix::store::memory::MemoryStore;
use orchestrix::store::{
    AppendRequest, AppendResult, Direction, EventStore, ExpectedRevision, Filter,
};
use orchestrix::{Error, EventRecord, Metadata, Store};
use orchestrix_sqlite::SqliteStore;

use common::{append, category, event, stream, stream_in};

on_both_stores!(
    reads_a_stream_forward_and_backward,
    expected_revision_errors_match_the_memory_store,
    append_batch_isolates_each_request,
    append_batch_matches_the_memory_store,
    read_all_filters_in_sql_with_parameters,
    positions_start_at_one_without_gaps,
    notifications_follow_commits,
    records_round_trip,
    coalesced_concurrent_appends_are_all_stored_once,
);

async fn reads_a_stream_forward_and_backward(store: Arc<SqliteStore>) {
    let s = stream();
    let r = append(&*store, &s, ExpectedRevision::NoStream, 5).await;
    assert_eq!((r.first_revision, r.last_revision), (0, 4));
    assert_eq!(r.last_position - r.first_position, 4);
    assert_eq!(store.stream_revision(&s).await.unwrap(), Some(4));

    let revs =
        |v: Vec<orchestrix::RecordedEvent>| v.into_iter().map(|e| e.revision).collect::<Vec<_>>();
    assert_eq!(
        revs(
            store
                .read_stream(&s, 0, Direction::Forward, 100)
                .await
                .unwrap()
        ),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(
        revs(
            store
                .read_stream(&s, 2, Direction::Forward, 2)
                .await
                .unwrap()
        ),
        [2, 3]
    );
    assert_eq!(
        revs(
            store
                .read_stream(&s, 9, Direction::Forward, 2)
                .await
                .unwrap()
        ),
        Vec::<u64>::new()
    );
    assert_eq!(
        revs(
            store
                .read_stream(&s, u64::MAX, Direction::Backward, 3)
                .await
                .unwrap()
        ),
        [4, 3, 2]
    );
    assert_eq!(
        revs(
            store
                .read_stream(&s, 1, Direction::Backward, 10)
                .await
                .unwrap()
        ),
        [1, 0]
    );
    assert_eq!(
        revs(
            store
                .read_stream(&s, u64::MAX, Direction::Forward, 10)
                .await
                .unwrap()
        ),
        Vec::<u64>::new()
    );
    assert!(
        store
            .read_stream(&s, 0, Direction::Forward, 0)
            .await
            .unwrap()
            .is_empty()
    );
    let missing = stream();
    assert!(
        store
            .read_stream(&missing, 0, Direction::Forward, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .read_stream(&missing, u64::MAX, Direction::Backward, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.stream_revision(&missing).await.unwrap(), None);
}

/// Runs the same appends on both stores and returns each outcome as text.
async fn outcomes(store: &dyn EventStore, ops: &[(usize, ExpectedRevision, u64)]) -> Vec<String> {
    // Fixed names (each test has a fresh store), so that error texts compare equal.
    let streams = [
        orchestrix::StreamId::parse("order-a").unwrap(),
        orchestrix::StreamId::parse("order-b").unwrap(),
    ];
    let mut out = Vec::new();
    for &(s, expected, count) in ops {
        let events = (0..count).map(|n| event("com.test.Happened", n)).collect();
        let r = store
            .append(AppendRequest::new(streams[s].clone(), expected, events))
            .await;
        out.push(match r {
            Ok(r) => format!("ok {r:?}"),
            Err(e) => format!("{} {e}", e.kind()),
        });
    }
    out
}

async fn expected_revision_errors_match_the_memory_store(store: Arc<SqliteStore>) {
    use ExpectedRevision::{Any, Exact, NoStream, StreamExists};
    let ops = [
        (0, StreamExists, 1),
        (0, Exact(0), 1),
        (0, NoStream, 2),
        (0, NoStream, 1),
        (0, Exact(0), 1),
        (0, Exact(1), 1),
        (0, Any, 2),
        (0, StreamExists, 1),
        (1, Any, 1),
        (1, Exact(3), 1),
        (1, NoStream, 0),
    ];
    let memory = MemoryStore::new();
    let expected = outcomes(&memory, &ops).await;
    let got = outcomes(&*store, &ops).await;
    assert_eq!(got, expected);
    match store
        .append(AppendRequest::new(stream(), Exact(5), vec![event("t", 0)]))
        .await
    {
        Err(Error::Conflict {
            expected: Exact(5),
            actual: None,
            ..
        }) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn append_batch_isolates_each_request(store: Arc<SqliteStore>) {
    let (a, b) = (stream(), stream());
    let stored = event("com.test.Stored", 0);
    let stored_id = stored.id;
    append_one(&store, &b, ExpectedRevision::NoStream, vec![stored])
        .await
        .unwrap();
    let shared = event("com.test.Shared", 0);
    let mut twice = event("com.test.Twice", 0);
    twice.id = shared.id;
    let mut dup_of_stored = event("com.test.Dup", 0);
    dup_of_stored.id = stored_id;
    let mut lone_dup = event("com.test.LoneDup", 0);
    lone_dup.id = stored_id;
    let batch = vec![
        AppendRequest::new(
            a.clone(),
            ExpectedRevision::NoStream,
            vec![event("t", 0), event("t", 1)],
        ),
        AppendRequest::new(a.clone(), ExpectedRevision::NoStream, vec![event("t", 2)]), // conflict: sees request 0
        AppendRequest::new(a.clone(), ExpectedRevision::Exact(1), vec![event("t", 3)]), // sees request 0
        AppendRequest::new(a.clone(), ExpectedRevision::Any, vec![]), // invalid: empty
        AppendRequest::new(
            b.clone(),
            ExpectedRevision::Any,
            vec![event("t", 4), dup_of_stored],
        ), // duplicate id
        AppendRequest::new(b.clone(), ExpectedRevision::Exact(0), vec![shared]),
        AppendRequest::new(a.clone(), ExpectedRevision::Any, vec![event("t", 5), twice]), // duplicate of request 5
        AppendRequest::new(a.clone(), ExpectedRevision::Exact(2), vec![event("t", 6)]),
        AppendRequest::new(b.clone(), ExpectedRevision::Exact(1), vec![lone_dup]), // one event, duplicate id
        AppendRequest::new(b.clone(), ExpectedRevision::Exact(1), vec![event("t", 7)]),
    ];
    let results = store.append_batch(batch).await.unwrap();
    assert_eq!(results.len(), 10);
    let ok = |i: usize| {
        results[i]
            .as_ref()
            .unwrap_or_else(|e| panic!("request {i}: {e}"))
    };
    assert_eq!((ok(0).first_revision, ok(0).last_revision), (0, 1));
    assert!(
        matches!(
            results[1],
            Err(Error::Conflict {
                actual: Some(1),
                ..
            })
        ),
        "{:?}",
        results[1]
    );
    assert_eq!(ok(2).first_revision, 2);
    assert!(
        matches!(results[3], Err(Error::InvalidInput { .. })),
        "{:?}",
        results[3]
    );
    match &results[4] {
        Err(Error::InvalidInput { what, reason }) => {
            assert_eq!(what, &format!("event {stored_id}"));
            assert!(reason.contains("already stored"), "{reason}");
        }
        other => panic!("duplicate stored id: {other:?}"),
    }
    assert_eq!(ok(5).first_revision, 1);
    assert!(
        matches!(results[6], Err(Error::InvalidInput { .. })),
        "{:?}",
        results[6]
    );
    assert_eq!(ok(7).first_revision, 3);
    assert!(
        matches!(results[8], Err(Error::InvalidInput { .. })),
        "{:?}",
        results[8]
    );
    assert_eq!(ok(9).first_revision, 2);
    // Failed requests left nothing behind and consumed no positions.
    assert_eq!(store.stream_revision(&a).await.unwrap(), Some(3));
    assert_eq!(store.stream_revision(&b).await.unwrap(), Some(2));
    assert_eq!(ok(2).first_position, ok(0).last_position + 1);
    assert_eq!(ok(5).first_position, ok(2).last_position + 1);
    assert_eq!(ok(7).first_position, ok(5).last_position + 1);
    assert_eq!(ok(9).first_position, ok(7).last_position + 1);
    assert_eq!(store.head_position().await.unwrap(), ok(9).last_position);
    assert!(store.append_batch(Vec::new()).await.unwrap().is_empty());
}

async fn append_one(
    store: &SqliteStore,
    s: &orchestrix::StreamId,
    expected: ExpectedRevision,
    events: Vec<EventRecord>,
) -> orchestrix::Result<AppendResult> {
    store
        .append(AppendRequest::new(s.clone(), expected, events))
        .await
}

async fn append_batch_matches_the_memory_store(store: Arc<SqliteStore>) {
    let memory = MemoryStore::new();
    let a = orchestrix::StreamId::parse("acct-1").unwrap();
    let b = orchestrix::StreamId::parse("acct-2").unwrap();
    let mut dup = event("d", 0);
    let first = event("f", 0);
    dup.id = first.id;
    let batch = vec![
        AppendRequest::new(
            a.clone(),
            ExpectedRevision::NoStream,
            vec![first, event("x", 1)],
        ),
        AppendRequest::new(a.clone(), ExpectedRevision::Exact(0), vec![event("x", 2)]),
        AppendRequest::new(
            b.clone(),
            ExpectedRevision::StreamExists,
            vec![event("x", 3)],
        ),
        AppendRequest::new(b.clone(), ExpectedRevision::Any, vec![event("x", 4), dup]),
        AppendRequest::new(b.clone(), ExpectedRevision::NoStream, vec![event("x", 5)]),
        AppendRequest::new(a.clone(), ExpectedRevision::Exact(1), vec![event("", 6)]),
    ];
    let text = |r: Vec<orchestrix::Result<AppendResult>>| {
        r.into_iter()
            .map(|r| match r {
                Ok(r) => format!("{r:?}"),
                Err(e) => format!("{} {e}", e.kind()),
            })
            .collect::<Vec<_>>()
    };
    let expected = text(memory.append_batch(batch.clone()).await.unwrap());
    let got = text(store.append_batch(batch).await.unwrap());
    assert_eq!(got, expected);
}

async fn read_all_filters_in_sql_with_parameters(store: Arc<SqliteStore>) {
    let (c1, c2, c3) = (category(), category(), category());
    let (t1, t2) = (format!("com.test.{c1}.One"), format!("com.test.{c1}.Two"));
    let mut written = Vec::new();
    for (c, t) in [
        (&c1, &t1),
        (&c2, &t2),
        (&c3, &t1),
        (&c1, &t2),
        (&c2, &t1),
        (&c3, &t2),
    ] {
        let r = append_one(
            &store,
            &stream_in(c),
            ExpectedRevision::NoStream,
            vec![event(t, 0)],
        )
        .await
        .unwrap();
        written.push((c.clone(), t.clone(), r.first_position));
    }
    let start = written[0].2 - 1;
    let expect = |f: &dyn Fn(&str, &str) -> bool| {
        written
            .iter()
            .filter(|(c, t, _)| f(c, t))
            .map(|(_, _, p)| *p)
            .collect::<Vec<_>>()
    };
    let read = |filter: Filter, after: u64, limit: usize| {
        let store = store.clone();
        async move {
            store
                .read_all(after, limit, &filter)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.position)
                .collect::<Vec<_>>()
        }
    };
    let ours = [c1.clone(), c2.clone(), c3.clone()];
    assert_eq!(
        read(Filter::all().categories(ours.clone()), start, 100).await,
        expect(&|_, _| true)
    );
    assert_eq!(
        read(Filter::all().categories([&c1]), start, 100).await,
        expect(&|c, _| c == c1)
    );
    assert_eq!(
        read(Filter::all().categories([&c1, &c3]), start, 100).await,
        expect(&|c, _| c == c1 || c == c3)
    );
    assert_eq!(
        read(Filter::all().event_types([&t1]), start, 100).await,
        expect(&|_, t| t == t1)
    );
    assert_eq!(
        read(
            Filter::all().categories([&c2, &c3]).event_types([&t2]),
            start,
            100
        )
        .await,
        expect(&|c, t| (c == c2 || c == c3) && t == t2)
    );
    assert_eq!(
        read(
            Filter::all().categories([&c1]).event_types([&t1, &t2]),
            start,
            100
        )
        .await,
        expect(&|c, _| c == c1)
    );
    // after and limit
    let all = expect(&|_, _| true);
    assert_eq!(
        read(Filter::all().categories(ours.clone()), all[1], 2).await,
        all[2..4]
    );
    assert!(
        read(Filter::all().categories(ours.clone()), start, 0)
            .await
            .is_empty()
    );
    assert!(read(Filter::all(), u64::MAX, 10).await.is_empty());
    // Hostile filter values are data, not SQL.
    for hostile in [
        "x' OR '1'='1",
        "x\" OR 1=1 --",
        "'); DROP TABLE events; --",
        "%",
        "",
    ] {
        assert!(
            read(Filter::all().categories([hostile]), 0, 100)
                .await
                .is_empty(),
            "{hostile}"
        );
        assert!(
            read(Filter::all().event_types([hostile]), 0, 100)
                .await
                .is_empty(),
            "{hostile}"
        );
        assert!(
            read(
                Filter::all()
                    .categories([hostile, "y"])
                    .event_types([hostile]),
                0,
                100
            )
            .await
            .is_empty()
        );
    }
    assert_eq!(
        read(Filter::all().categories(ours), start, 100).await,
        all,
        "the events table survived"
    );
}

async fn positions_start_at_one_without_gaps(store: Arc<SqliteStore>) {
    assert_eq!(store.head_position().await.unwrap(), 0);
    let s = stream();
    let _ = append_one(&store, &s, ExpectedRevision::Exact(7), vec![event("t", 0)])
        .await
        .unwrap_err();
    append(&*store, &s, ExpectedRevision::NoStream, 3).await;
    let _ = append_one(&store, &s, ExpectedRevision::NoStream, vec![event("t", 0)])
        .await
        .unwrap_err();
    append(&*store, &stream(), ExpectedRevision::Any, 2).await;
    let positions: Vec<u64> = store
        .read_all(0, 100, &Filter::all())
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(positions, [1, 2, 3, 4, 5]);
    assert_eq!(store.head_position().await.unwrap(), 5);
}

async fn notifications_follow_commits(store: Arc<SqliteStore>) {
    let mut rx = store.notifications().expect("the SQLite store notifies");
    let start = *rx.borrow_and_update();
    let s = stream();
    let r = append(&*store, &s, ExpectedRevision::NoStream, 2).await;
    assert!(rx.has_changed().unwrap(), "a commit must notify");
    assert_eq!(*rx.borrow_and_update(), r.last_position);
    assert!(r.last_position > start);
    // A batch whose every request fails commits nothing and does not notify.
    let _ = append_one(&store, &s, ExpectedRevision::NoStream, vec![event("t", 0)])
        .await
        .unwrap_err();
    assert!(!rx.has_changed().unwrap());
    // A subscription wakes up on the notification, well before its poll interval.
    let sub = Store::new(store.clone().backend()).with_poll_interval(Duration::from_secs(3600));
    let mut live =
        Box::pin(sub.subscribe(r.last_position, Filter::all().categories([s.category()])));
    let writer = {
        let store = store.clone();
        let s = s.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            append(&*store, &s, ExpectedRevision::Exact(1), 1).await
        })
    };
    let got = tokio::time::timeout(Duration::from_secs(10), live.next())
        .await
        .expect("woken")
        .unwrap()
        .unwrap();
    assert_eq!(got.revision, 2);
    assert_eq!(got.position, writer.await.unwrap().last_position);
}

async fn records_round_trip(store: Arc<SqliteStore>) {
    let time = Utc.with_ymd_and_hms(2024, 2, 29, 23, 59, 58).unwrap()
        + chrono::TimeDelta::nanoseconds(123_456_789);
    let mut extensions = BTreeMap::new();
    extensions.insert("partitionkey".to_owned(), "p-1".to_owned());
    let metadata = Metadata {
        correlation_id: Some("corr".into()),
        causation_id: Some("cause".into()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        tracestate: Some("vendor=1".into()),
        extensions,
    };
    let binary = EventRecord {
        id: uuid::Uuid::now_v7(),
        event_type: "com.test.Binary".into(),
        schema_version: u32::MAX,
        source: "/tests/sqlite?x=1".into(),
        time,
        content_type: "application/octet-stream".into(),
        data: Bytes::from_static(&[0, 159, 146, 150, 255, 0]),
        metadata,
    };
    let old = EventRecord {
        time: Utc.with_ymd_and_hms(1900, 1, 1, 0, 0, 0).unwrap(),
        ..event("com.test.Old", 1)
    };
    let empty = EventRecord {
        data: Bytes::new(),
        ..event("com.test.Empty", 2)
    };
    let s = stream();
    let written = vec![binary, old, empty];
    append_one(&store, &s, ExpectedRevision::NoStream, written.clone())
        .await
        .unwrap();
    let read = store
        .read_stream(&s, 0, Direction::Forward, 10)
        .await
        .unwrap();
    let from_all = store
        .read_all(read[0].position - 1, 3, &Filter::all())
        .await
        .unwrap();
    assert_eq!(read, from_all);
    for (r, w) in read.iter().zip(&written) {
        let mut expected = w.clone();
        // Times are kept at microsecond precision.
        expected.time = chrono::DateTime::from_timestamp_micros(w.time.timestamp_micros()).unwrap();
        assert_eq!(r.record, expected);
        assert_eq!(r.stream_id, s);
    }
    assert_eq!(read[0].record.time.timestamp_subsec_micros(), 123_456);
}

async fn coalesced_concurrent_appends_are_all_stored_once(store: Arc<SqliteStore>) {
    let app = Store::new(store.clone().backend()).with_coalescing(CoalesceConfig::default());
    let cat = category();
    let before = store.head_position().await.unwrap();
    // A follower reads the all-stream while appends run and must never skip.
    let follower = {
        let store = store.clone();
        let cat = cat.clone();
        tokio::spawn(async move {
            let filter = Filter::all().categories([cat]);
            let mut seen = Vec::new();
            let mut after = before;
            while seen.len() < 400 {
                let page = store.read_all(after, 64, &filter).await.unwrap();
                match page.last() {
                    Some(last) => after = last.position,
                    None => tokio::task::yield_now().await,
                }
                seen.extend(page.into_iter().map(|e| e.position));
            }
            seen
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let app = app.clone();
        let s = stream_in(&cat);
        tasks.push(tokio::spawn(async move {
            let mut expected = ExpectedRevision::NoStream;
            for n in 0..10u64 {
                let r = app
                    .append(&s, expected, vec![event("t", n), event("t", n)])
                    .await
                    .unwrap();
                expected = ExpectedRevision::Exact(r.last_revision);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let seen = tokio::time::timeout(Duration::from_secs(30), follower)
        .await
        .unwrap()
        .unwrap();
    let stored: Vec<u64> = store
        .read_all(before, 1000, &Filter::all().categories([cat]))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.position)
        .collect();
    assert_eq!(stored.len(), 400);
    assert_eq!(seen, stored, "the follower saw every event once, in order");
    assert!(stored.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(store.head_position().await.unwrap(), before + 400);
}
