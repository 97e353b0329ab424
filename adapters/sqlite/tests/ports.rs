//! Snapshots, checkpoints, dead letters and timers, on a file store and an
//! in-memory store.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, TimeZone as _, Utc};
use orchestrix::Error;
use orchestrix::store::{
    CheckpointStore, DeadLetter, DeadLetterStore, Snapshot, SnapshotStore, Timer, TimerStore,
};
use orchestrix_sqlite::SqliteStore;
use uuid::Uuid;

use common::stream;

on_both_stores!(
    snapshots_keep_the_highest_revision,
    checkpoints_round_trip,
    dead_letters_round_trip,
    timers_fire_in_order
);

fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap()
}

async fn snapshots_keep_the_highest_revision(store: Arc<SqliteStore>) {
    let s = stream();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), None);
    let snap = |revision: u64, data: &'static [u8]| Snapshot {
        stream_id: s.clone(),
        revision,
        state_version: 2,
        data: Bytes::from_static(data),
        taken_at: micros(Utc::now()),
    };
    store.save_snapshot(snap(5, b"five")).await.unwrap();
    store.save_snapshot(snap(3, b"three")).await.unwrap();
    assert_eq!(
        store.load_snapshot(&s).await.unwrap().unwrap().data,
        &b"five"[..]
    );
    let same = snap(5, b"five again");
    store.save_snapshot(same.clone()).await.unwrap();
    assert_eq!(store.load_snapshot(&s).await.unwrap(), Some(same));
    store.save_snapshot(snap(8, b"\0\xff")).await.unwrap();
    let got = store.load_snapshot(&s).await.unwrap().unwrap();
    assert_eq!(
        (got.revision, got.state_version, &got.data[..]),
        (8, 2, &b"\0\xff"[..])
    );
    assert_eq!(store.load_snapshot(&stream()).await.unwrap(), None);
}

async fn checkpoints_round_trip(store: Arc<SqliteStore>) {
    assert_eq!(store.load_checkpoint("a").await.unwrap(), None);
    store.save_checkpoint("a", 1).await.unwrap();
    store.save_checkpoint("b", 2).await.unwrap();
    store.save_checkpoint("a", 10).await.unwrap();
    assert_eq!(store.load_checkpoint("a").await.unwrap(), Some(10));
    store.save_checkpoint("a", 4).await.unwrap();
    assert_eq!(
        store.load_checkpoint("a").await.unwrap(),
        Some(4),
        "a checkpoint may move back (rebuilds)"
    );
    store.delete_checkpoint("a").await.unwrap();
    store.delete_checkpoint("never").await.unwrap();
    assert_eq!(store.load_checkpoint("a").await.unwrap(), None);
    assert_eq!(store.load_checkpoint("b").await.unwrap(), Some(2));
    let max = u64::try_from(i64::MAX).unwrap();
    store.save_checkpoint("b", max).await.unwrap();
    assert_eq!(store.load_checkpoint("b").await.unwrap(), Some(max));
    let err = store.save_checkpoint("b", max + 1).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err:?}");
}

async fn dead_letters_round_trip(store: Arc<SqliteStore>) {
    let t0 = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let letter = |consumer: &str, secs: i64| DeadLetter {
        id: Uuid::now_v7(),
        consumer: consumer.to_owned(),
        event_id: Some(Uuid::now_v7()),
        event_type: Some("com.test.Failed".into()),
        stream_id: Some("order-1".into()),
        position: Some(42),
        payload: Bytes::from_static(b"\x00raw\xff"),
        headers: BTreeMap::from([("ce_type".to_owned(), "com.test.Failed".to_owned())]),
        reason: "cannot decode".into(),
        error_kind: "serialization".into(),
        attempts: 3,
        failed_at: t0 + TimeDelta::seconds(secs),
    };
    let late = letter("projection", 20);
    let early = letter("projection", 10);
    let other = DeadLetter {
        event_id: None,
        event_type: None,
        stream_id: None,
        position: None,
        headers: BTreeMap::new(),
        ..letter("saga", 15)
    };
    for l in [&late, &early, &other] {
        store.put_dead_letter(l.clone()).await.unwrap();
    }
    let ids = |v: Vec<DeadLetter>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_dead_letters(None, 10).await.unwrap()),
        [early.id, other.id, late.id]
    );
    assert_eq!(
        ids(store
            .list_dead_letters(Some("projection"), 10)
            .await
            .unwrap()),
        [early.id, late.id]
    );
    assert_eq!(
        ids(store.list_dead_letters(None, 1).await.unwrap()),
        [early.id]
    );
    assert!(
        store
            .list_dead_letters(Some("nobody"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.get_dead_letter(other.id).await.unwrap(),
        Some(other.clone())
    );
    assert_eq!(
        store.get_dead_letter(late.id).await.unwrap(),
        Some(late.clone())
    );
    assert!(store.delete_dead_letter(early.id).await.unwrap());
    assert!(!store.delete_dead_letter(early.id).await.unwrap());
    assert_eq!(store.get_dead_letter(early.id).await.unwrap(), None);
    assert_eq!(
        ids(store.list_dead_letters(None, 10).await.unwrap()),
        [other.id, late.id]
    );
}

async fn timers_fire_in_order(store: Arc<SqliteStore>) {
    let now = micros(Utc::now());
    let timer = |id: &str, owner: &str, offset: i64| Timer {
        id: id.to_owned(),
        owner: owner.to_owned(),
        key: format!("key-{id}"),
        due_at: now + TimeDelta::seconds(offset),
        payload: serde_json::json!({ "id": id, "n": [1, 2] }),
    };
    store.schedule_timer(timer("b", "saga", -5)).await.unwrap();
    store.schedule_timer(timer("a", "saga", -5)).await.unwrap();
    store.schedule_timer(timer("c", "saga", -10)).await.unwrap();
    store.schedule_timer(timer("d", "saga", 60)).await.unwrap();
    store
        .schedule_timer(timer("e", "other", -60))
        .await
        .unwrap();
    // Scheduling an id again keeps the first timer.
    store
        .schedule_timer(timer("c", "saga", 3600))
        .await
        .unwrap();
    let due = store.due_timers("saga", now, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["c", "a", "b"]
    );
    assert_eq!(due[0], timer("c", "saga", -10));
    assert_eq!(store.due_timers("saga", now, 2).await.unwrap().len(), 2);
    assert_eq!(
        store
            .due_timers("saga", now + TimeDelta::seconds(60), 10)
            .await
            .unwrap()
            .len(),
        4
    );
    assert!(store.cancel_timer("c").await.unwrap());
    assert!(!store.cancel_timer("c").await.unwrap());
    let due = store.due_timers("saga", now, 10).await.unwrap();
    assert_eq!(
        due.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
}
