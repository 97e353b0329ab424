//! Rows corrupted behind the store's back (raw SQL through a second
//! connection) read as `Error::Corrupted` naming the row, never as a panic.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use orchestrix::store::{
    AppendRequest, CheckpointStore, DeadLetter, DeadLetterStore, Direction, EventStore,
    ExpectedRevision, Filter, Snapshot, SnapshotStore, Timer, TimerStore,
};
use orchestrix::{Error, StreamId};
use orchestrix_sqlite::SqliteStore;
use orchestrix_sqlite::rusqlite::Connection;
use tempfile::TempDir;
use uuid::Uuid;

use common::{append, db_path, file_store, stream};

/// A store with one event of a fresh stream, and a raw connection to its file.
async fn one_event() -> (Arc<SqliteStore>, TempDir, Connection, StreamId, u64) {
    let (store, dir) = file_store().await;
    let s = stream();
    let r = append(&*store, &s, ExpectedRevision::NoStream, 1).await;
    let raw = Connection::open(db_path(&dir)).unwrap();
    (store, dir, raw, s, r.first_position)
}

fn assert_corrupted<T: std::fmt::Debug>(result: orchestrix::Result<T>, what: &str, reason: &str) {
    match result {
        Err(Error::Corrupted { what: w, reason: r }) => {
            assert_eq!(w, what);
            assert!(r.contains(reason), "reason `{r}` should mention `{reason}`");
        }
        other => panic!("expected Corrupted({what}), got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_corrupted_event_column_is_reported_with_its_position() {
    let cases = [
        ("metadata = 'not json {'", "metadata"),
        ("metadata = x'00ff'", "metadata"),
        ("stream_id = 'no dash here'", "stream_id"),
        ("stream_id = 42", "stream_id"),
        ("revision = -1", "revision"),
        ("revision = 'three'", "revision"),
        ("event_id = 'not-a-uuid'", "event_id"),
        ("event_id = x'0102'", "event_id"),
        ("schema_version = -5", "schema_version"),
        ("schema_version = 99999999999", "schema_version"),
        ("time = 'yesterday'", "time"),
        ("time = 9223372036854775807", "time"),
        ("event_type = x'6f6b'", "event_type"),
        ("data = 1.5", "data"),
        ("source = CAST(x'ff' AS TEXT)", "source"),
    ];
    for (set, column) in cases {
        let (store, _dir, raw, s, position) = one_event().await;
        raw.execute(
            &format!("UPDATE events SET {set} WHERE position = ?1"),
            [position],
        )
        .unwrap();
        let what = format!("event at position {position}");
        let reason = format!("column `{column}`");
        assert_corrupted(
            store.read_all(position - 1, 10, &Filter::all()).await,
            &what,
            &reason,
        );
        if column != "stream_id" {
            assert_corrupted(
                store.read_stream(&s, 0, Direction::Forward, 10).await,
                &what,
                &reason,
            );
            assert_corrupted(
                store
                    .read_stream(&s, u64::MAX, Direction::Backward, 10)
                    .await,
                &what,
                &reason,
            );
        }
        // The store keeps working after reporting it.
        append(&*store, &stream(), ExpectedRevision::NoStream, 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negative_revision_fails_only_appends_to_its_stream() {
    let (store, _dir, raw, s, _) = one_event().await;
    raw.execute(
        "UPDATE events SET revision = -7 WHERE stream_id = ?1",
        [s.as_str()],
    )
    .unwrap();
    assert_corrupted(
        store.stream_revision(&s).await,
        &format!("stream `{s}`"),
        "negative revision -7",
    );
    let other = stream();
    let results = store
        .append_batch(vec![
            AppendRequest::new(
                s.clone(),
                ExpectedRevision::Any,
                vec![common::event("t", 0)],
            ),
            AppendRequest::new(
                other.clone(),
                ExpectedRevision::NoStream,
                vec![common::event("t", 1)],
            ),
        ])
        .await
        .unwrap();
    assert!(
        matches!(results[0], Err(Error::Corrupted { .. })),
        "{:?}",
        results[0]
    );
    assert!(results[1].is_ok(), "{:?}", results[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_rows_of_the_other_ports_are_reported() {
    let (store, dir) = file_store().await;
    let s = stream();
    store
        .save_snapshot(Snapshot {
            stream_id: s.clone(),
            revision: 3,
            state_version: 1,
            data: Bytes::from_static(b"{}"),
            taken_at: Utc::now(),
        })
        .await
        .unwrap();
    store.save_checkpoint("proj", 5).await.unwrap();
    let letter = DeadLetter {
        id: Uuid::now_v7(),
        consumer: "c".into(),
        event_id: None,
        event_type: None,
        stream_id: None,
        position: Some(1),
        payload: Bytes::from_static(b"x"),
        headers: BTreeMap::new(),
        reason: "r".into(),
        error_kind: "k".into(),
        attempts: 1,
        failed_at: Utc::now(),
    };
    store.put_dead_letter(letter.clone()).await.unwrap();
    let now = Utc::now();
    let timer = Timer {
        id: "t1".into(),
        owner: "o".into(),
        key: "k".into(),
        due_at: now,
        payload: serde_json::json!(1),
    };
    store.schedule_timer(timer).await.unwrap();

    let raw = Connection::open(db_path(&dir)).unwrap();
    raw.execute_batch(
        "UPDATE snapshots SET revision = -1;
         UPDATE checkpoints SET position = 'far';
         UPDATE dead_letters SET headers = '[1, 2]';
         UPDATE timers SET payload = '{oops';",
    )
    .unwrap();
    assert_corrupted(
        store.load_snapshot(&s).await,
        &format!("snapshot of `{s}`"),
        "revision",
    );
    assert_corrupted(
        store.load_checkpoint("proj").await,
        "checkpoint `proj`",
        "position",
    );
    let what = format!("dead letter {}", letter.id);
    assert_corrupted(store.get_dead_letter(letter.id).await, &what, "headers");
    assert_corrupted(store.list_dead_letters(None, 10).await, &what, "headers");
    assert_corrupted(
        store.due_timers("o", now, 10).await,
        "timer `t1`",
        "payload",
    );
}
