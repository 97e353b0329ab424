//! The store conformance suite: one `async fn` per contract case.
//!
//! Every case takes a [`Backend`] and panics, with a message that names the
//! broken rule, when the backend violates the contract of the ports in
//! [`orchestrix::store`]. A case may share its database with other cases that
//! run at the same time: it only touches streams, categories, event types,
//! consumers, checkpoints and timers with random names (see
//! [`random`]), and reads the all-stream through filters on
//! categories or event types unique to the case.
//!
//! Waits are bounded ([`WAIT`]); no case asserts on wall-clock durations.
//! JSON payloads are compared as JSON values (a backend may store them as
//! JSON), every other payload byte for byte; times are compared with a
//! tolerance of one millisecond (a backend may truncate to microseconds).
//!
//! [`CASES`] names every case; [`store_conformance!`](crate::store_conformance)
//! turns them into tests. Every case future is `Send + 'static`, so a caller
//! may also spawn cases, e.g. to run several at once on one database.
//!
//! ```
//! use std::sync::Arc;
//! use orchestrix::store::{Backend, memory::MemoryStore};
//! # orchestrix_testkit::tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let backend = Backend::from_all(Arc::new(MemoryStore::new()));
//! orchestrix_testkit::store::expected_revision_exact(backend).await;
//! # });
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, TimeZone as _, Utc};
use futures::{Stream, StreamExt as _};
use orchestrix::store::{
    AppendRequest, AppendResult, Backend, DeadLetter, Direction, ExpectedRevision, Filter,
    Snapshot, Timer,
};
use orchestrix::{Error, EventRecord, Metadata, RecordedEvent, Store, StreamId, Upcasters};
use serde_json::json;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::random;

crate::__with_store_cases!(__store_case_names!());
crate::__with_store_cases!(__store_cases_are_send!());

/// The longest a case waits for something to happen (an event to become
/// visible, a subscription to deliver, tasks to finish).
pub const WAIT: Duration = Duration::from_secs(20);

/// Page size of the paged reads.
const PAGE: usize = 1000;

/// How far a time read back may be from the time stored.
const TIME_TOLERANCE: TimeDelta = TimeDelta::milliseconds(1);

/// How often a subscription polls a backend that cannot notify.
const POLL: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn event(event_type: &str, n: u64) -> EventRecord {
    EventRecord::json(event_type, 1, &json!({ "n": n }))
}

fn events(event_type: &str, count: u64) -> Vec<EventRecord> {
    (0..count).map(|n| event(event_type, n)).collect()
}

fn ids(events: &[RecordedEvent]) -> Vec<Uuid> {
    events.iter().map(RecordedEvent::id).collect()
}

fn record_ids(records: &[EventRecord]) -> Vec<Uuid> {
    records.iter().map(|r| r.id).collect()
}

fn revisions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.revision).collect()
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

fn len_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

async fn try_append(
    backend: &Backend,
    stream: &StreamId,
    expected: ExpectedRevision,
    records: Vec<EventRecord>,
) -> orchestrix::Result<AppendResult> {
    backend
        .events
        .append(AppendRequest::new(stream.clone(), expected, records))
        .await
}

async fn append(
    backend: &Backend,
    stream: &StreamId,
    expected: ExpectedRevision,
    records: Vec<EventRecord>,
) -> AppendResult {
    let n = records.len();
    let result = try_append(backend, stream, expected, records)
        .await
        .unwrap_or_else(|e| {
            panic!("appending {n} event(s) to `{stream}` expecting {expected:?} failed: {e}")
        });
    let expected_last = result.first_revision + len_u64(n) - 1;
    assert_eq!(
        result.last_revision, expected_last,
        "append of {n} event(s) to `{stream}` reported revisions {}..={}: the last revision must be first + {n} - 1",
        result.first_revision, result.last_revision
    );
    if n == 1 {
        assert_eq!(
            result.first_position, result.last_position,
            "append of one event to `{stream}` reported two different positions: {result:?}"
        );
    } else {
        assert!(
            result.last_position > result.first_position,
            "append of {n} events to `{stream}` reported a last position not above the first: {result:?}"
        );
    }
    result
}

async fn read_stream(
    backend: &Backend,
    stream: &StreamId,
    from: u64,
    direction: Direction,
    limit: usize,
) -> Vec<RecordedEvent> {
    let events = backend
        .events
        .read_stream(stream, from, direction, limit)
        .await
        .unwrap_or_else(|e| {
            panic!("read_stream(`{stream}`, from {from}, {direction:?}, limit {limit}) failed: {e}")
        });
    assert!(
        events.len() <= limit,
        "read_stream(`{stream}`, from {from}, {direction:?}, limit {limit}) returned {} events, more than the limit",
        events.len()
    );
    for e in &events {
        assert_eq!(
            &e.stream_id, stream,
            "read_stream(`{stream}`) returned an event of another stream at revision {}",
            e.revision
        );
    }
    events
}

/// Reads a whole stream forward, in pages of [`PAGE`].
async fn read_whole_stream(backend: &Backend, stream: &StreamId) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut from = 0;
    loop {
        let page = read_stream(backend, stream, from, Direction::Forward, PAGE).await;
        if let Some(first) = page.first() {
            assert_eq!(
                first.revision, from,
                "read_stream(`{stream}`, from {from}, Forward) must start at revision {from}"
            );
        }
        let full = page.len() == PAGE;
        if let Some(last) = page.last() {
            from = last.revision + 1;
        }
        out.extend(page);
        if !full {
            return out;
        }
    }
}

async fn read_all(
    backend: &Backend,
    after: u64,
    limit: usize,
    filter: &Filter,
) -> Vec<RecordedEvent> {
    let events = backend
        .events
        .read_all(after, limit, filter)
        .await
        .unwrap_or_else(|e| {
            panic!("read_all(after {after}, limit {limit}, {filter:?}) failed: {e}")
        });
    assert!(
        events.len() <= limit,
        "read_all(after {after}, limit {limit}, {filter:?}) returned {} events, more than the limit",
        events.len()
    );
    let mut last = after;
    for e in &events {
        assert!(
            e.position > last,
            "read_all(after {after}, {filter:?}) returned position {} after position {last}: positions must be above \
             `after` and strictly increasing",
            e.position
        );
        last = e.position;
        assert!(
            filter.matches(e.stream_id.category(), e.event_type()),
            "read_all({filter:?}) returned an event it filters out: `{}` of stream `{}`",
            e.event_type(),
            e.stream_id
        );
    }
    events
}

/// Every visible event after `after` that passes `filter`, in pages.
async fn read_all_after(backend: &Backend, after: u64, filter: &Filter) -> Vec<RecordedEvent> {
    let mut out: Vec<RecordedEvent> = Vec::new();
    let mut cursor = after;
    loop {
        let page = read_all(backend, cursor, PAGE, filter).await;
        let Some(last) = page.last() else { return out };
        cursor = last.position;
        out.extend(page);
    }
}

/// Every event with a position in `(after, until]` that passes `filter`, in pages.
async fn read_all_until(
    backend: &Backend,
    after: u64,
    until: u64,
    filter: &Filter,
) -> Vec<RecordedEvent> {
    let mut out: Vec<RecordedEvent> = Vec::new();
    let mut cursor = after;
    while cursor < until {
        let page = read_all(backend, cursor, PAGE, filter).await;
        let Some(last) = page.last() else { break };
        cursor = last.position;
        out.extend(page.into_iter().filter(|e| e.position <= until));
    }
    out
}

async fn head_position(backend: &Backend) -> u64 {
    backend
        .events
        .head_position()
        .await
        .unwrap_or_else(|e| panic!("head_position failed: {e}"))
}

async fn stream_revision(backend: &Backend, stream: &StreamId) -> Option<u64> {
    backend
        .events
        .stream_revision(stream)
        .await
        .unwrap_or_else(|e| panic!("stream_revision(`{stream}`) failed: {e}"))
}

/// Waits (at most [`WAIT`]) until `head_position` reaches `position`; every
/// event at or below it is then visible to `read_all`.
async fn wait_visible(backend: &Backend, position: u64) {
    let reached = tokio::time::timeout(WAIT, async {
        loop {
            if head_position(backend).await >= position {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    if reached.is_err() {
        let head = head_position(backend).await;
        panic!(
            "position {position} was committed, but head_position stayed at {head} for {WAIT:?}"
        );
    }
}

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {WAIT:?}"))
}

/// Awaits a task, re-raising its panic so that its assert message is reported.
async fn join<T>(handle: JoinHandle<T>) -> T {
    match handle.await {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("a task of the case failed: {e}"),
    }
}

async fn join_all<T>(handles: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(join(h).await);
    }
    out
}

#[track_caller]
fn assert_conflict(
    result: orchestrix::Result<AppendResult>,
    stream: &StreamId,
    expected: ExpectedRevision,
    actual: Option<u64>,
) {
    match result {
        Err(Error::Conflict {
            stream: s,
            expected: e,
            actual: a,
        }) => {
            assert_eq!(
                s,
                stream.as_str(),
                "the conflict must name the stream appended to"
            );
            assert_eq!(
                e, expected,
                "the conflict on `{stream}` must report the expected revision that failed"
            );
            assert_eq!(
                a, actual,
                "the conflict on `{stream}` (expecting {expected:?}) must report the actual revision"
            );
        }
        other => panic!(
            "appending to `{stream}` expecting {expected:?} while the stream is at {actual:?} must fail with \
             Error::Conflict {{ expected: {expected:?}, actual: {actual:?} }}, got {other:?}"
        ),
    }
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: orchestrix::Result<T>, what: &str) {
    match result {
        Err(Error::InvalidInput { .. }) => {}
        other => panic!("{what} must fail with Error::InvalidInput, got {other:?}"),
    }
}

#[track_caller]
fn assert_time_close(actual: DateTime<Utc>, expected: DateTime<Utc>, what: &str) {
    let off = (actual - expected).abs();
    assert!(
        off <= TIME_TOLERANCE,
        "{what}: stored {expected:?}, read back {actual:?}, {off} apart (the tolerance is 1 ms)"
    );
}

#[track_caller]
fn assert_strictly_increasing(events: &[RecordedEvent], what: &str) {
    for pair in events.windows(2) {
        assert!(
            pair[1].position > pair[0].position,
            "{what}: positions must strictly increase, but {} (`{}` rev {}) follows {} (`{}` rev {})",
            pair[1].position,
            pair[1].stream_id,
            pair[1].revision,
            pair[0].position,
            pair[0].stream_id,
            pair[0].revision
        );
    }
}

#[track_caller]
fn assert_unique_ids(events: &[RecordedEvent], what: &str) {
    let mut seen = HashSet::with_capacity(events.len());
    for e in events {
        assert!(
            seen.insert(e.id()),
            "{what}: event {} (position {}) appears twice",
            e.id(),
            e.position
        );
    }
}

/// Compares a record read back with the one appended: JSON payloads as JSON
/// values, other payloads byte for byte, times within the tolerance.
#[track_caller]
fn assert_same_record(read: &EventRecord, written: &EventRecord, what: &str) {
    assert_eq!(read.id, written.id, "{what}: id");
    assert_eq!(read.event_type, written.event_type, "{what}: event type");
    assert_eq!(
        read.schema_version, written.schema_version,
        "{what}: schema version"
    );
    assert_eq!(read.source, written.source, "{what}: source");
    assert_eq!(
        read.content_type, written.content_type,
        "{what}: content type"
    );
    assert_eq!(read.metadata, written.metadata, "{what}: metadata");
    assert_time_close(read.time, written.time, &format!("{what}: time"));
    if orchestrix::codec::is_json(&written.content_type) {
        let parse = |data: &[u8], side: &str| -> serde_json::Value {
            serde_json::from_slice(data)
                .unwrap_or_else(|e| panic!("{what}: the {side} JSON payload does not parse: {e}"))
        };
        assert_eq!(
            parse(&read.data, "read"),
            parse(&written.data, "written"),
            "{what}: JSON payload"
        );
    } else {
        assert_eq!(read.data, written.data, "{what}: payload bytes");
    }
}

fn json_of(e: &RecordedEvent) -> serde_json::Value {
    serde_json::from_slice(&e.record.data).unwrap_or_else(|err| {
        panic!(
            "event {} (`{}`) has a payload that is not JSON: {err}",
            e.id(),
            e.event_type()
        )
    })
}

fn store(backend: Backend) -> Store {
    Store::new(backend).with_poll_interval(POLL)
}

/// Collects from a subscription until `done` says so (at most [`WAIT`]).
async fn collect<S>(
    sub: &mut S,
    into: &mut Vec<RecordedEvent>,
    what: &str,
    mut done: impl FnMut(&[RecordedEvent]) -> bool,
) where
    S: Stream<Item = orchestrix::Result<RecordedEvent>> + Unpin,
{
    if done(into) {
        return;
    }
    let result = tokio::time::timeout(WAIT, async {
        while let Some(item) = sub.next().await {
            let e = item.unwrap_or_else(|e| panic!("{what}: the subscription failed: {e}"));
            if let Some(last) = into.last() {
                assert!(
                    e.position > last.position,
                    "{what}: the subscription delivered position {} after {}: positions must strictly increase \
                     (no duplicates, no reordering)",
                    e.position,
                    last.position
                );
            }
            into.push(e);
            if done(into) {
                return true;
            }
        }
        false
    })
    .await;
    match result {
        Ok(true) => {}
        Ok(false) => panic!(
            "{what}: the subscription ended after {} events; it must stay live",
            into.len()
        ),
        Err(_) => panic!(
            "{what}: the subscription delivered only {} events within {WAIT:?}",
            into.len()
        ),
    }
}

fn count_of(events: &[RecordedEvent], wanted: &HashSet<Uuid>) -> usize {
    events.iter().filter(|e| wanted.contains(&e.id())).count()
}

// ---------------------------------------------------------------------------
// Streams and revisions
// ---------------------------------------------------------------------------

/// Revisions start at 0 and grow by one per event, without gaps, across
/// appends of one and of several events; `stream_revision` follows; the
/// reported positions are those read back.
pub async fn revisions_start_at_zero_without_gaps(backend: Backend) {
    let stream = random::stream(&random::category());
    assert_eq!(
        stream_revision(&backend, &stream).await,
        None,
        "a fresh stream must have no revision"
    );

    let batches = [
        (
            ExpectedRevision::NoStream,
            events("com.testkit.Revision", 1),
        ),
        (
            ExpectedRevision::Exact(0),
            events("com.testkit.Revision", 3),
        ),
        (ExpectedRevision::Any, events("com.testkit.Revision", 2)),
        (
            ExpectedRevision::StreamExists,
            events("com.testkit.Revision", 1),
        ),
    ];
    let mut written = Vec::new();
    let mut results = Vec::new();
    let mut next = 0;
    let mut last_position = 0;
    for (expected, records) in batches {
        let n = len_u64(records.len());
        written.extend(record_ids(&records));
        let r = append(&backend, &stream, expected, records).await;
        assert_eq!(
            (r.first_revision, r.last_revision),
            (next, next + n - 1),
            "append of {n} event(s) to `{stream}` (expecting {expected:?}) must get revisions {next}..={}",
            next + n - 1
        );
        assert!(
            r.first_position > last_position,
            "positions of later appends must be higher: {r:?} after {last_position}"
        );
        last_position = r.last_position;
        next += n;
        assert_eq!(
            stream_revision(&backend, &stream).await,
            Some(next - 1),
            "stream_revision after appending"
        );
        results.push(r);
    }

    let read = read_whole_stream(&backend, &stream).await;
    assert_eq!(
        revisions(&read),
        (0..next).collect::<Vec<_>>(),
        "revisions of `{stream}` must be 0, 1, 2, … without gaps"
    );
    assert_eq!(
        ids(&read),
        written,
        "events of `{stream}` must be read back in append order"
    );
    assert_strictly_increasing(&read, "events of one stream");
    for r in results {
        let first = &read[usize::try_from(r.first_revision).unwrap_or(usize::MAX)];
        let last = &read[usize::try_from(r.last_revision).unwrap_or(usize::MAX)];
        assert_eq!(
            first.position, r.first_position,
            "reported first position of {r:?}"
        );
        assert_eq!(
            last.position, r.last_position,
            "reported last position of {r:?}"
        );
    }
}

/// `read_stream` from a revision, forward and backward, honours the limit;
/// backward from `u64::MAX` (or any revision past the end) starts at the end.
pub async fn read_stream_from_revision_with_limits(backend: Backend) {
    let stream = random::stream(&random::category());
    append(
        &backend,
        &stream,
        ExpectedRevision::NoStream,
        events("com.testkit.Read", 10),
    )
    .await;

    let cases: &[(u64, Direction, usize, Vec<u64>)] = &[
        (0, Direction::Forward, 100, (0..10).collect()),
        (0, Direction::Forward, 10, (0..10).collect()),
        (3, Direction::Forward, 4, vec![3, 4, 5, 6]),
        (8, Direction::Forward, 5, vec![8, 9]),
        (9, Direction::Forward, 1, vec![9]),
        (10, Direction::Forward, 5, vec![]),
        (u64::MAX, Direction::Forward, 5, vec![]),
        (0, Direction::Forward, 0, vec![]),
        (u64::MAX, Direction::Backward, 100, (0..10).rev().collect()),
        (u64::MAX, Direction::Backward, 3, vec![9, 8, 7]),
        (20, Direction::Backward, 2, vec![9, 8]),
        (9, Direction::Backward, 2, vec![9, 8]),
        (5, Direction::Backward, 3, vec![5, 4, 3]),
        (1, Direction::Backward, 10, vec![1, 0]),
        (0, Direction::Backward, 10, vec![0]),
        (u64::MAX, Direction::Backward, 0, vec![]),
    ];
    for (from, direction, limit, want) in cases {
        let got = read_stream(&backend, &stream, *from, *direction, *limit).await;
        assert_eq!(
            &revisions(&got),
            want,
            "read_stream(`{stream}` of 10 events, from {from}, {direction:?}, limit {limit}) returned the wrong revisions"
        );
    }
}

/// A stream that does not exist reads as empty in both directions and has no
/// revision; streams do not leak into each other, even with a common prefix.
pub async fn nonexistent_stream_reads_empty(backend: Backend) {
    let category = random::category();
    let missing = random::stream(&category);
    assert_eq!(
        stream_revision(&backend, &missing).await,
        None,
        "stream_revision of a stream never written"
    );
    assert!(
        read_stream(&backend, &missing, 0, Direction::Forward, 10)
            .await
            .is_empty(),
        "forward read of a missing stream"
    );
    assert!(
        read_stream(&backend, &missing, u64::MAX, Direction::Backward, 10)
            .await
            .is_empty(),
        "backward read of a missing stream"
    );

    // A stream whose id extends another's must not be read as part of it.
    let long = StreamId::parse(format!("{missing}x")).unwrap_or_else(|e| panic!("stream id: {e}"));
    append(
        &backend,
        &long,
        ExpectedRevision::NoStream,
        events("com.testkit.Other", 2),
    )
    .await;
    assert_eq!(
        stream_revision(&backend, &missing).await,
        None,
        "`{missing}` must stay absent after writing `{long}`"
    );
    assert!(
        read_stream(&backend, &missing, 0, Direction::Forward, 10)
            .await
            .is_empty(),
        "`{missing}` must read empty"
    );
    let short = StreamId::parse(&missing.as_str()[..missing.as_str().len() - 1])
        .unwrap_or_else(|e| panic!("stream id: {e}"));
    assert_eq!(
        stream_revision(&backend, &short).await,
        None,
        "`{short}` must stay absent after writing `{long}`"
    );
    assert!(
        read_stream(&backend, &short, u64::MAX, Direction::Backward, 10)
            .await
            .is_empty(),
        "`{short}` must read empty"
    );
}

// ---------------------------------------------------------------------------
// Expected revisions
// ---------------------------------------------------------------------------

/// `Any` appends to a missing stream and to an existing one; it never conflicts.
pub async fn expected_revision_any(backend: Backend) {
    let stream = random::stream(&random::category());
    let r = append(
        &backend,
        &stream,
        ExpectedRevision::Any,
        events("com.testkit.Any", 1),
    )
    .await;
    assert_eq!(
        r.first_revision, 0,
        "Any on a missing stream creates it at revision 0"
    );
    let r = append(
        &backend,
        &stream,
        ExpectedRevision::Any,
        events("com.testkit.Any", 2),
    )
    .await;
    assert_eq!(
        (r.first_revision, r.last_revision),
        (1, 2),
        "Any on an existing stream appends at the end"
    );
    assert_eq!(stream_revision(&backend, &stream).await, Some(2));
}

/// `NoStream` creates a stream once; a second `NoStream` conflicts with the
/// actual revision and writes nothing.
pub async fn expected_revision_no_stream(backend: Backend) {
    let stream = random::stream(&random::category());
    let r = append(
        &backend,
        &stream,
        ExpectedRevision::NoStream,
        events("com.testkit.NoStream", 2),
    )
    .await;
    assert_eq!(
        (r.first_revision, r.last_revision),
        (0, 1),
        "NoStream on a missing stream"
    );

    let rejected = events("com.testkit.NoStream", 1);
    let rejected_id = rejected[0].id;
    let result = try_append(&backend, &stream, ExpectedRevision::NoStream, rejected).await;
    assert_conflict(result, &stream, ExpectedRevision::NoStream, Some(1));
    assert_eq!(
        stream_revision(&backend, &stream).await,
        Some(1),
        "a conflicting append must write nothing"
    );
    let read = read_whole_stream(&backend, &stream).await;
    assert_eq!(read.len(), 2, "a conflicting append must write nothing");
    assert!(
        !ids(&read).contains(&rejected_id),
        "the rejected event must not be stored"
    );
}

/// `StreamExists` conflicts (actual `None`) on a missing stream without
/// creating it, and appends once the stream exists.
pub async fn expected_revision_stream_exists(backend: Backend) {
    let stream = random::stream(&random::category());
    let result = try_append(
        &backend,
        &stream,
        ExpectedRevision::StreamExists,
        events("com.testkit.Exists", 1),
    )
    .await;
    assert_conflict(result, &stream, ExpectedRevision::StreamExists, None);
    assert_eq!(
        stream_revision(&backend, &stream).await,
        None,
        "a conflicting append must not create the stream"
    );
    assert!(
        read_stream(&backend, &stream, 0, Direction::Forward, 10)
            .await
            .is_empty(),
        "a conflicting append must write nothing"
    );

    append(
        &backend,
        &stream,
        ExpectedRevision::NoStream,
        events("com.testkit.Exists", 1),
    )
    .await;
    let r = append(
        &backend,
        &stream,
        ExpectedRevision::StreamExists,
        events("com.testkit.Exists", 2),
    )
    .await;
    assert_eq!(
        (r.first_revision, r.last_revision),
        (1, 2),
        "StreamExists on an existing stream"
    );
    assert_eq!(stream_revision(&backend, &stream).await, Some(2));
}

/// `Exact(n)` appends only when the stream is at exactly `n`: it conflicts on
/// a missing stream, on a stale `n` and on an `n` ahead of the stream.
pub async fn expected_revision_exact(backend: Backend) {
    let stream = random::stream(&random::category());
    let result = try_append(
        &backend,
        &stream,
        ExpectedRevision::Exact(0),
        events("com.testkit.Exact", 1),
    )
    .await;
    assert_conflict(result, &stream, ExpectedRevision::Exact(0), None);
    assert_eq!(
        stream_revision(&backend, &stream).await,
        None,
        "a conflicting append must not create the stream"
    );

    append(
        &backend,
        &stream,
        ExpectedRevision::NoStream,
        events("com.testkit.Exact", 2),
    )
    .await;
    for stale in [
        ExpectedRevision::Exact(0),
        ExpectedRevision::Exact(5),
        ExpectedRevision::Exact(u64::MAX >> 1),
    ] {
        let result = try_append(&backend, &stream, stale, events("com.testkit.Exact", 1)).await;
        assert_conflict(result, &stream, stale, Some(1));
    }
    let r = append(
        &backend,
        &stream,
        ExpectedRevision::Exact(1),
        events("com.testkit.Exact", 1),
    )
    .await;
    assert_eq!(r.first_revision, 2, "Exact(1) on a stream at revision 1");
    let result = try_append(
        &backend,
        &stream,
        ExpectedRevision::Exact(1),
        events("com.testkit.Exact", 1),
    )
    .await;
    assert_conflict(result, &stream, ExpectedRevision::Exact(1), Some(2));
    assert_eq!(
        read_whole_stream(&backend, &stream).await.len(),
        3,
        "conflicting appends must write nothing"
    );
}

// ---------------------------------------------------------------------------
// Invalid input and atomicity
// ---------------------------------------------------------------------------

/// An append without events is rejected with `Error::InvalidInput`, on a
/// missing and on an existing stream, whatever the expectation.
pub async fn empty_append_is_rejected(backend: Backend) {
    let stream = random::stream(&random::category());
    for expected in [ExpectedRevision::Any, ExpectedRevision::NoStream] {
        let result = try_append(&backend, &stream, expected, Vec::new()).await;
        assert_invalid(
            result,
            &format!("an empty append to a missing stream expecting {expected:?}"),
        );
    }
    assert_eq!(
        stream_revision(&backend, &stream).await,
        None,
        "an empty append must not create the stream"
    );

    append(
        &backend,
        &stream,
        ExpectedRevision::NoStream,
        events("com.testkit.Empty", 1),
    )
    .await;
    for expected in [
        ExpectedRevision::Any,
        ExpectedRevision::StreamExists,
        ExpectedRevision::Exact(0),
    ] {
        let result = try_append(&backend, &stream, expected, Vec::new()).await;
        assert_invalid(
            result,
            &format!("an empty append to an existing stream expecting {expected:?}"),
        );
    }
    assert_eq!(
        stream_revision(&backend, &stream).await,
        Some(0),
        "an empty append must not change the stream"
    );
}

/// Two events with one id in one append are rejected with
/// `Error::InvalidInput`, and nothing of the append is written.
pub async fn duplicate_event_ids_in_one_append_are_rejected(backend: Backend) {
    let stream = random::stream(&random::category());
    let mut records = events("com.testkit.Dup", 3);
    records[2].id = records[0].id;
    let result = try_append(&backend, &stream, ExpectedRevision::Any, records).await;
    assert_invalid(result, "an append with a repeated event id");
    assert_eq!(
        stream_revision(&backend, &stream).await,
        None,
        "a rejected append must not create the stream"
    );

    append(
        &backend,
        &stream,
        ExpectedRevision::NoStream,
        events("com.testkit.Dup", 1),
    )
    .await;
    let mut records = events("com.testkit.Dup", 2);
    records[1].id = records[0].id;
    let result = try_append(&backend, &stream, ExpectedRevision::Exact(0), records).await;
    assert_invalid(
        result,
        "an append with a repeated event id to an existing stream",
    );
    assert_eq!(
        read_whole_stream(&backend, &stream).await.len(),
        1,
        "a rejected append must write nothing"
    );
}

/// `find_event` answers the revision of an event by its id, only within its
/// own stream, and `None` for ids the stream does not hold.
pub async fn find_event_locates_an_event_in_its_stream(backend: Backend) {
    let category = random::category();
    let (a, b) = (random::stream(&category), random::stream(&category));
    let first = events("com.testkit.Find", 3);
    let first_ids = record_ids(&first);
    append(&backend, &a, ExpectedRevision::NoStream, first).await;
    let later = events("com.testkit.Find", 2);
    let later_id = later[1].id;
    append(&backend, &a, ExpectedRevision::Exact(2), later).await;
    let other = events("com.testkit.Find", 1);
    let other_id = other[0].id;
    append(&backend, &b, ExpectedRevision::NoStream, other).await;

    let find = |stream: StreamId, id: Uuid| {
        let backend = backend.clone();
        async move {
            backend
                .events
                .find_event(&stream, id)
                .await
                .unwrap_or_else(|e| panic!("find_event({stream}, {id}) failed: {e}"))
        }
    };
    assert_eq!(find(a.clone(), first_ids[0]).await, Some(0), "first event");
    assert_eq!(find(a.clone(), first_ids[2]).await, Some(2), "third event");
    assert_eq!(
        find(a.clone(), later_id).await,
        Some(4),
        "an event of a later append"
    );
    assert_eq!(
        find(b.clone(), other_id).await,
        Some(0),
        "the other stream's event"
    );
    assert_eq!(
        find(a.clone(), other_id).await,
        None,
        "an event of another stream is not found in this one"
    );
    assert_eq!(find(a, Uuid::now_v7()).await, None, "an unknown id");
    assert_eq!(
        find(random::stream(&category), first_ids[0]).await,
        None,
        "a stream that does not exist"
    );
}

/// A multi-event append is all or nothing: its events get consecutive
/// revisions; a failed one writes none of them; concurrent readers of the
/// stream and of the all-stream only ever see whole appends.
pub async fn multi_event_append_is_atomic(backend: Backend) {
    let category = random::category();
    let stream = random::stream(&category);
    let records = events("com.testkit.Atomic", 5);
    let written = record_ids(&records);
    let r = append(&backend, &stream, ExpectedRevision::NoStream, records).await;
    assert_eq!((r.first_revision, r.last_revision), (0, 4));
    let read = read_whole_stream(&backend, &stream).await;
    assert_eq!(
        ids(&read),
        written,
        "a multi-event append must be stored whole, in order"
    );
    assert_strictly_increasing(&read, "a multi-event append");
    assert_eq!(
        (read[0].position, read[4].position),
        (r.first_position, r.last_position),
        "reported positions"
    );

    // A conflicting append of several events writes none of them.
    let result = try_append(
        &backend,
        &stream,
        ExpectedRevision::Exact(3),
        events("com.testkit.Atomic", 5),
    )
    .await;
    assert_conflict(result, &stream, ExpectedRevision::Exact(3), Some(4));
    // An invalid event late in the append spoils all of it.
    let mut records = events("com.testkit.Atomic", 5);
    records[3].event_type = String::new();
    assert_invalid(
        try_append(&backend, &stream, ExpectedRevision::Exact(4), records).await,
        "an append with an empty event type",
    );
    assert_eq!(
        read_whole_stream(&backend, &stream).await.len(),
        5,
        "failed appends must write nothing"
    );

    // Readers racing a writer see whole appends only.
    const APPENDS: u64 = 40;
    const SIZE: u64 = 5;
    let total = usize::try_from(SIZE * (APPENDS + 1)).unwrap_or(usize::MAX);
    let writer = {
        let backend = backend.clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            for _ in 0..APPENDS {
                append(
                    &backend,
                    &stream,
                    ExpectedRevision::Any,
                    events("com.testkit.Atomic", SIZE),
                )
                .await;
                tokio::task::yield_now().await;
            }
        })
    };
    let filter = Filter::all().categories([category.as_str()]);
    let mut readers = Vec::new();
    for all_stream in [false, true, false, true] {
        let backend = backend.clone();
        let stream = stream.clone();
        let filter = filter.clone();
        readers.push(tokio::spawn(async move {
            within("an atomicity reader", async {
                loop {
                    let seen = if all_stream {
                        read_all(&backend, 0, 10 * total, &filter).await
                    } else {
                        read_stream(&backend, &stream, 0, Direction::Forward, 10 * total).await
                    };
                    let where_ = if all_stream { "read_all" } else { "read_stream" };
                    assert!(
                        len_u64(seen.len()).is_multiple_of(SIZE),
                        "{where_} saw {} events of `{stream}`, which is not a whole number of {SIZE}-event appends",
                        seen.len()
                    );
                    if seen.len() >= total {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
            })
            .await;
        }));
    }
    join(writer).await;
    join_all(readers).await;
}

/// `append_batch` gives each request its own result: a conflicting or
/// invalid request fails alone, its neighbours succeed, and later requests
/// for the same stream see the effect of earlier ones.
pub async fn append_batch_results_are_independent(backend: Backend) {
    let category = random::category();
    let (a, b, c) = (
        random::stream(&category),
        random::stream(&category),
        random::stream(&category),
    );
    let c0 = events("com.testkit.Batch", 1);
    let mut c_ids = record_ids(&c0);
    append(&backend, &c, ExpectedRevision::NoStream, c0).await;

    let a1 = events("com.testkit.Batch", 1);
    let a2 = events("com.testkit.Batch", 1);
    let b2 = events("com.testkit.Batch", 1);
    let c12 = events("com.testkit.Batch", 2);
    let a_ids: Vec<_> = record_ids(&a1).into_iter().chain(record_ids(&a2)).collect();
    let b_ids = record_ids(&b2);
    c_ids.extend(record_ids(&c12));
    let requests = vec![
        AppendRequest::new(a.clone(), ExpectedRevision::NoStream, a1),
        AppendRequest::new(
            b.clone(),
            ExpectedRevision::Exact(3),
            events("com.testkit.Batch", 2),
        ),
        AppendRequest::new(c.clone(), ExpectedRevision::Exact(0), c12),
        AppendRequest::new(a.clone(), ExpectedRevision::Exact(0), a2),
        AppendRequest::new(
            a.clone(),
            ExpectedRevision::NoStream,
            events("com.testkit.Batch", 1),
        ),
        AppendRequest::new(c.clone(), ExpectedRevision::StreamExists, Vec::new()),
        AppendRequest::new(b.clone(), ExpectedRevision::NoStream, b2),
    ];
    let mut results = backend
        .events
        .append_batch(requests)
        .await
        .unwrap_or_else(|e| {
            panic!("append_batch failed as a whole, but only some of its requests are bad: {e}")
        })
        .into_iter();
    assert_eq!(
        results.len(),
        7,
        "append_batch must return one result per request"
    );
    let mut next = |what: &str| {
        results
            .next()
            .unwrap_or_else(|| panic!("no result for {what}"))
    };

    let r = next("request 0")
        .unwrap_or_else(|e| panic!("request 0 (`{a}` NoStream) must succeed, got {e}"));
    assert_eq!(r.first_revision, 0, "request 0 creates `{a}`");
    assert_conflict(next("request 1"), &b, ExpectedRevision::Exact(3), None);
    let r = next("request 2")
        .unwrap_or_else(|e| panic!("request 2 (`{c}` Exact(0)) must succeed, got {e}"));
    assert_eq!(
        (r.first_revision, r.last_revision),
        (1, 2),
        "request 2 appends to `{c}`"
    );
    let r = next("request 3").unwrap_or_else(|e| {
        panic!(
            "request 3 (`{a}` Exact(0)) must see request 0 of the same batch and succeed, got {e}"
        )
    });
    assert_eq!(r.first_revision, 1, "request 3 appends after request 0");
    assert_conflict(next("request 4"), &a, ExpectedRevision::NoStream, Some(1));
    assert_invalid(next("request 5"), "an empty request in a batch");
    let r = next("request 6").unwrap_or_else(|e| {
        panic!("request 6 (`{b}` NoStream) must succeed after the failed request 1, got {e}")
    });
    assert_eq!(r.first_revision, 0, "request 6 creates `{b}`");

    assert_eq!(
        ids(&read_whole_stream(&backend, &a).await),
        a_ids,
        "`{a}` after the batch"
    );
    assert_eq!(
        ids(&read_whole_stream(&backend, &b).await),
        b_ids,
        "`{b}` after the batch"
    );
    assert_eq!(
        ids(&read_whole_stream(&backend, &c).await),
        c_ids,
        "`{c}` after the batch"
    );

    let empty = backend
        .events
        .append_batch(Vec::new())
        .await
        .unwrap_or_else(|e| panic!("an empty batch failed: {e}"));
    assert!(empty.is_empty(), "an empty batch must return no results");
}

/// Many tasks race to append to one stream, each with `Exact(current)`,
/// retrying on conflict: exactly one wins each revision, and the stream ends
/// with every event exactly once and no gaps.
pub async fn concurrent_appenders_one_winner_per_revision(backend: Backend) {
    const TASKS: usize = 64;
    const PER_TASK: usize = 4;
    let stream = random::stream(&random::category());
    append(
        &backend,
        &stream,
        ExpectedRevision::NoStream,
        events("com.testkit.Race", 1),
    )
    .await;

    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut tasks = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        let backend = backend.clone();
        let stream = stream.clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            let mut wins = Vec::with_capacity(PER_TASK);
            let mut current = stream_revision(&backend, &stream).await;
            for record in events("com.testkit.Race", len_u64(PER_TASK)) {
                loop {
                    let Some(revision) = current else {
                        panic!("`{stream}` exists, but a conflict or stream_revision reported it absent");
                    };
                    let expected = ExpectedRevision::Exact(revision);
                    match try_append(&backend, &stream, expected, vec![record.clone()]).await {
                        Ok(r) => {
                            assert_eq!(
                                r.first_revision,
                                revision + 1,
                                "an append expecting {expected:?} succeeded, so it must get revision {}",
                                revision + 1
                            );
                            wins.push((r.first_revision, record.id));
                            current = Some(r.first_revision);
                            break;
                        }
                        Err(Error::Conflict { actual, expected: e, .. }) => {
                            assert_eq!(e, expected, "the conflict must report the expectation that failed");
                            assert_ne!(actual, current, "a conflict expecting {expected:?} must report another revision");
                            current = actual;
                            tokio::task::yield_now().await;
                        }
                        Err(e) => panic!("a racing append to `{stream}` failed with a non-conflict error: {e}"),
                    }
                }
            }
            wins
        }));
    }
    let wins: Vec<(u64, Uuid)> = tokio::time::timeout(6 * WAIT, join_all(tasks))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{TASKS} racing appenders did not finish within {:?}",
                6 * WAIT
            )
        })
        .into_iter()
        .flatten()
        .collect();

    let total = TASKS * PER_TASK;
    let mut winners: HashMap<u64, Uuid> = HashMap::with_capacity(total);
    for (revision, id) in &wins {
        if let Some(other) = winners.insert(*revision, *id) {
            panic!(
                "two appends both won revision {revision} of `{stream}`: events {other} and {id}"
            );
        }
    }
    let read = read_whole_stream(&backend, &stream).await;
    assert_eq!(
        read.len(),
        total + 1,
        "`{stream}` must hold the first event and every raced event once"
    );
    assert_eq!(
        revisions(&read),
        (0..len_u64(total + 1)).collect::<Vec<_>>(),
        "revisions of `{stream}` must have no gaps"
    );
    assert_unique_ids(&read, "a raced stream");
    assert_strictly_increasing(&read, "a raced stream");
    for e in &read[1..] {
        assert_eq!(
            winners.get(&e.revision),
            Some(&e.id()),
            "revision {} of `{stream}` must hold the event whose append won it",
            e.revision
        );
    }
}

// ---------------------------------------------------------------------------
// The all-stream
// ---------------------------------------------------------------------------

/// Global positions strictly increase in append order, across streams, and
/// match the reported and the per-stream positions.
pub async fn all_stream_positions_strictly_increase(backend: Backend) {
    let category = random::category();
    let streams: Vec<_> = (0..3).map(|_| random::stream(&category)).collect();
    let mut written = Vec::new();
    let mut reported = Vec::new();
    let mut last = 0;
    for round in 0..4u64 {
        for stream in &streams {
            let records = events("com.testkit.Position", 1 + round % 2);
            written.extend(record_ids(&records));
            let n = records.len();
            let r = append(&backend, stream, ExpectedRevision::Any, records).await;
            assert!(
                r.first_position > last,
                "position {} reported after {last}: positions must increase",
                r.first_position
            );
            last = r.last_position;
            reported.push((n, r));
        }
    }
    wait_visible(&backend, last).await;
    let all = read_all_after(&backend, 0, &Filter::all().categories([category.as_str()])).await;
    assert_eq!(
        ids(&all),
        written,
        "read_all must return the events in append order"
    );
    assert_strictly_increasing(&all, "read_all");
    let mut rest = all.as_slice();
    for (n, r) in &reported {
        let (chunk, tail) = rest.split_at(*n);
        rest = tail;
        let got = (chunk[0].position, chunk[*n - 1].position);
        assert_eq!(
            got,
            (r.first_position, r.last_position),
            "positions read back of the append that reported {r:?}"
        );
    }
    for stream in &streams {
        let per_stream = read_whole_stream(&backend, stream).await;
        let from_all: Vec<_> = all
            .iter()
            .filter(|e| &e.stream_id == stream)
            .cloned()
            .collect();
        assert_eq!(
            per_stream, from_all,
            "`{stream}` must read the same from read_stream and from read_all"
        );
    }
    // Nothing comes between our last event and itself, even unfiltered.
    let at = read_all(&backend, last - 1, 1, &Filter::all()).await;
    assert_eq!(
        at.first().map(RecordedEvent::id),
        written.last().copied(),
        "read_all(after {}, limit 1) must return position {last}",
        last - 1
    );
}

/// `read_all(after, limit, filter)` returns only positions above `after`, at
/// most `limit` events, and only those of the categories and event types of
/// the filter (several of each, and both together).
pub async fn read_all_honours_after_limit_and_filters(backend: Backend) {
    let (cat1, cat2) = (random::category(), random::category());
    let (ty_a, ty_b) = (random::event_type("Alpha"), random::event_type("Beta"));
    let (s1, s2, s3) = (
        random::stream(&cat1),
        random::stream(&cat1),
        random::stream(&cat2),
    );
    let plan: [(&StreamId, &[&str]); 5] = [
        (&s1, &[&ty_a, &ty_b]),
        (&s2, &[&ty_a]),
        (&s3, &[&ty_a, &ty_b]),
        (&s1, &[&ty_b]),
        (&s3, &[&ty_a]),
    ];
    let mut last = 0;
    for (stream, types) in plan {
        let records: Vec<_> = types.iter().map(|t| event(t, 0)).collect();
        last = append(&backend, stream, ExpectedRevision::Any, records)
            .await
            .last_position;
    }
    wait_visible(&backend, last).await;

    let both = Filter::all().categories([cat1.as_str(), cat2.as_str()]);
    let ours = read_all_after(&backend, 0, &both).await;
    assert_eq!(
        ours.len(),
        7,
        "read_all with both categories must return all 7 events"
    );
    let select = |pred: &dyn Fn(&RecordedEvent) -> bool| -> Vec<Uuid> {
        ours.iter()
            .filter(|e| pred(e))
            .map(RecordedEvent::id)
            .collect()
    };

    for k in [0, 2, 5, 6] {
        let after = ours[k].position;
        assert_eq!(
            ids(&read_all(&backend, after, PAGE, &both).await),
            ids(&ours[k + 1..]),
            "read_all(after {after}) must return exactly the events above {after}"
        );
    }
    assert_eq!(
        ids(&read_all(&backend, 0, 3, &both).await),
        ids(&ours[..3]),
        "read_all(limit 3) must return the first 3"
    );
    assert_eq!(
        ids(&read_all(&backend, ours[1].position, 2, &both).await),
        ids(&ours[2..4]),
        "read_all(after, limit 2) must return the next 2"
    );
    assert!(
        read_all(&backend, 0, 0, &both).await.is_empty(),
        "read_all(limit 0) must return nothing"
    );

    let cases: Vec<(Filter, Vec<Uuid>)> = vec![
        (
            Filter::all().categories([cat1.as_str()]),
            select(&|e| e.stream_id.category() == cat1),
        ),
        (
            Filter::all().categories([cat2.as_str()]),
            select(&|e| e.stream_id.category() == cat2),
        ),
        (
            Filter::all().event_types([ty_a.as_str()]),
            select(&|e| e.event_type() == ty_a),
        ),
        (
            Filter::all().event_types([ty_b.as_str()]),
            select(&|e| e.event_type() == ty_b),
        ),
        (
            Filter::all().event_types([ty_a.as_str(), ty_b.as_str()]),
            ids(&ours),
        ),
        (
            Filter::all()
                .categories([cat1.as_str()])
                .event_types([ty_b.as_str()]),
            select(&|e| e.stream_id.category() == cat1 && e.event_type() == ty_b),
        ),
        (
            Filter::all()
                .categories([cat2.as_str(), random::category().as_str()])
                .event_types([ty_a.as_str()]),
            select(&|e| e.stream_id.category() == cat2 && e.event_type() == ty_a),
        ),
        (Filter::all().categories([random::category()]), Vec::new()),
        (
            Filter::all().event_types([random::event_type("Never")]),
            Vec::new(),
        ),
    ];
    for (filter, want) in cases {
        let got = read_all_after(&backend, 0, &filter).await;
        assert_eq!(ids(&got), want, "read_all with {filter:?}");
        if want.len() > 1 {
            let after = got[0].position;
            assert_eq!(
                ids(&read_all(&backend, after, 1, &filter).await),
                want[1..2],
                "read_all(after, limit 1) with {filter:?}"
            );
        }
    }
}

/// `head_position` never goes back and reaches the position of every
/// committed append; nothing of ours lies beyond it.
pub async fn head_position_tracks_appends(backend: Backend) {
    let category = random::category();
    let filter = Filter::all().categories([category.as_str()]);
    let mut head = head_position(&backend).await;
    for n in 1..=5 {
        let r = append(
            &backend,
            &random::stream(&category),
            ExpectedRevision::NoStream,
            events("com.testkit.Head", n),
        )
        .await;
        wait_visible(&backend, r.last_position).await;
        let now = head_position(&backend).await;
        assert!(now >= head, "head_position went back from {head} to {now}");
        assert!(
            now >= r.last_position,
            "head_position {now} is below the committed position {}",
            r.last_position
        );
        head = now;
        assert!(
            read_all(&backend, head, PAGE, &filter).await.is_empty(),
            "an event of ours lies beyond head_position {head}"
        );
    }
}

/// A reader that follows the all-stream with `read_all(after)` while many
/// tasks append to many streams never skips an event (for example one whose
/// transaction took a lower position but committed late).
pub async fn read_all_never_skips_under_concurrent_appends(backend: Backend) {
    const WRITERS: usize = 8;
    const APPENDS: u64 = 30;
    let category = random::category();
    let filter = Filter::all().categories([category.as_str()]);
    let done = Arc::new(AtomicBool::new(false));

    let reader = {
        let backend = backend.clone();
        let filter = filter.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut seen: Vec<RecordedEvent> = Vec::new();
            let mut after = 0;
            loop {
                let finishing = done.load(Ordering::SeqCst);
                let page = read_all(&backend, after, 100, &filter).await;
                match page.last() {
                    Some(last) => after = last.position,
                    None if finishing => return seen,
                    None => tokio::time::sleep(Duration::from_millis(1)).await,
                }
                seen.extend(page);
            }
        })
    };
    let mut writers = Vec::with_capacity(WRITERS);
    for w in 0..WRITERS {
        let backend = backend.clone();
        let category = category.clone();
        writers.push(tokio::spawn(async move {
            let streams: Vec<_> = (0..3).map(|_| random::stream(&category)).collect();
            let mut last = 0;
            let mut written = Vec::new();
            for i in 0..APPENDS {
                let records = events("com.testkit.Skip", 1 + (i + len_u64(w)) % 3);
                written.extend(record_ids(&records));
                let stream = &streams[usize::try_from(i).unwrap_or_default() % streams.len()];
                last = append(&backend, stream, ExpectedRevision::Any, records)
                    .await
                    .last_position;
                tokio::task::yield_now().await;
            }
            (last, written)
        }));
    }
    let results = within("the writers", join_all(writers)).await;
    let last = results.iter().map(|(p, _)| *p).max().unwrap_or_default();
    let written: HashSet<Uuid> = results.into_iter().flat_map(|(_, w)| w).collect();
    wait_visible(&backend, last).await;
    done.store(true, Ordering::SeqCst);
    let seen = within("the all-stream reader", join(reader)).await;

    assert_unique_ids(&seen, "the following reader");
    let seen_ids: HashSet<Uuid> = seen.iter().map(RecordedEvent::id).collect();
    let missed = written.iter().filter(|id| !seen_ids.contains(id)).count();
    let stored = read_all_after(&backend, 0, &filter).await;
    let missed_positions: Vec<_> = stored
        .iter()
        .filter(|e| !seen_ids.contains(&e.id()))
        .map(|e| e.position)
        .collect();
    assert!(
        missed == 0,
        "a reader following read_all(after) skipped {missed} of {} events (of those read_all returns now, positions \
         {missed_positions:?}): an event became visible at a position below one already read",
        written.len()
    );
    assert_eq!(
        stored.len(),
        written.len(),
        "read_all must return every appended event once"
    );
    assert_eq!(
        positions(&seen),
        positions(&stored),
        "the following reader must see what read_all returns afterwards"
    );
}

// ---------------------------------------------------------------------------
// Subscriptions
// ---------------------------------------------------------------------------

/// One task per stream, appending its events one by one.
fn spawn_writers(
    backend: &Backend,
    streams: Vec<(StreamId, Vec<EventRecord>)>,
) -> Vec<JoinHandle<()>> {
    streams
        .into_iter()
        .map(|(stream, records)| {
            let backend = backend.clone();
            tokio::spawn(async move {
                for (i, record) in records.into_iter().enumerate() {
                    append(&backend, &stream, ExpectedRevision::Any, vec![record]).await;
                    if i % 4 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect()
}

/// `Store::subscribe` delivers the past (catch-up), then stays live while
/// several tasks keep appending: strictly increasing positions, no gap (it
/// equals `read_all` over the same range), no duplicate.
pub async fn subscription_catches_up_then_stays_live(backend: Backend) {
    let category = random::category();
    let store = store(backend.clone());
    let before = head_position(&backend).await;
    let past_stream = random::stream(&category);
    let past = events("com.testkit.Past", 20);
    let past_ids: HashSet<Uuid> = record_ids(&past).into_iter().collect();
    append(
        &backend,
        &past_stream,
        ExpectedRevision::NoStream,
        past[..12].to_vec(),
    )
    .await;
    append(
        &backend,
        &past_stream,
        ExpectedRevision::Exact(11),
        past[12..].to_vec(),
    )
    .await;

    let mut sub = Box::pin(store.subscribe(before, Filter::all()));
    let mut got = Vec::new();
    collect(&mut sub, &mut got, "catch-up", |got| {
        count_of(got, &past_ids) == past_ids.len()
    })
    .await;

    let live: Vec<_> = (0..4)
        .map(|_| (random::stream(&category), events("com.testkit.Live", 25)))
        .collect();
    let live_ids: HashSet<Uuid> = live.iter().flat_map(|(_, r)| record_ids(r)).collect();
    let writers = spawn_writers(&backend, live);
    collect(&mut sub, &mut got, "live", |got| {
        count_of(got, &live_ids) == live_ids.len()
    })
    .await;
    join_all(writers).await;

    assert_unique_ids(&got, "the subscription");
    assert_strictly_increasing(&got, "the subscription");
    let until = got.last().map_or(before, |e| e.position);
    let stored = read_all_until(&backend, before, until, &Filter::all()).await;
    assert_eq!(
        positions(&got),
        positions(&stored),
        "the subscription must deliver exactly what read_all returns for positions {before}..={until}"
    );
    assert_eq!(
        ids(&got),
        ids(&stored),
        "the subscription and read_all disagree on the events"
    );
    let ours: Vec<_> = got
        .iter()
        .filter(|e| e.stream_id.category() == category)
        .collect();
    assert_eq!(
        ours.len(),
        past_ids.len() + live_ids.len(),
        "our events, each once"
    );
}

/// Filtered subscriptions (by category from position 0, and by event type)
/// deliver exactly the matching events, past and live, in order, and equal
/// `read_all` with the same filter.
pub async fn subscription_with_filter(backend: Backend) {
    let (category, other) = (random::category(), random::category());
    let (wanted, unwanted) = (random::event_type("Wanted"), random::event_type("Unwanted"));
    let store = store(backend.clone());
    let before = head_position(&backend).await;
    let mixed = |n: u64| -> Vec<EventRecord> {
        (0..n)
            .map(|i| event(if i % 3 == 0 { &unwanted } else { &wanted }, i))
            .collect()
    };
    append(
        &backend,
        &random::stream(&category),
        ExpectedRevision::NoStream,
        mixed(9),
    )
    .await;
    append(
        &backend,
        &random::stream(&other),
        ExpectedRevision::NoStream,
        mixed(6),
    )
    .await;

    let by_category = Filter::all().categories([category.as_str()]);
    let by_type = Filter::all().event_types([wanted.as_str()]);
    let mut sub_category = Box::pin(store.subscribe(0, by_category.clone()));
    let mut sub_type = Box::pin(store.subscribe(before, by_type.clone()));
    let (mut got_category, mut got_type) = (Vec::new(), Vec::new());
    collect(
        &mut sub_category,
        &mut got_category,
        "catch-up by category",
        |g| g.len() == 9,
    )
    .await;
    collect(
        &mut sub_type,
        &mut got_type,
        "catch-up by event type",
        |g| g.len() == 10,
    )
    .await;

    let mut plan: Vec<_> = (0..3)
        .map(|_| (random::stream(&category), mixed(30)))
        .collect();
    plan.extend((0..2).map(|_| (random::stream(&other), mixed(30))));
    let writers = spawn_writers(&backend, plan);
    collect(
        &mut sub_category,
        &mut got_category,
        "live by category",
        |g| g.len() == 9 + 90,
    )
    .await;
    collect(&mut sub_type, &mut got_type, "live by event type", |g| {
        g.len() == 10 + 100
    })
    .await;
    join_all(writers).await;

    for (got, filter, after) in [
        (&got_category, &by_category, 0),
        (&got_type, &by_type, before),
    ] {
        assert_unique_ids(got, "a filtered subscription");
        for e in got {
            assert!(
                filter.matches(e.stream_id.category(), e.event_type()),
                "the subscription with {filter:?} delivered `{}` of `{}`",
                e.event_type(),
                e.stream_id
            );
        }
        let last = got.last().map_or(after, |e| e.position);
        wait_visible(&backend, last).await;
        let stored = read_all_after(&backend, after, filter).await;
        assert_eq!(
            ids(got),
            ids(&stored),
            "the subscription with {filter:?} must deliver exactly what read_all returns"
        );
        assert_eq!(
            positions(got),
            positions(&stored),
            "positions of the subscription with {filter:?}"
        );
    }
    // Nothing more arrives for the category filter: every event of it was delivered.
    assert_eq!(
        read_all_after(&backend, 0, &by_category).await.len(),
        99,
        "events in our category"
    );
}

// ---------------------------------------------------------------------------
// Event attributes
// ---------------------------------------------------------------------------

/// Every attribute of an event survives the store: id, type, schema version,
/// source, time (within 1 ms), content type, payload, correlation, causation,
/// trace context and extensions; absent metadata stays absent.
pub async fn metadata_round_trip(backend: Backend) {
    let category = random::category();
    let stream = random::stream(&category);
    let full = Metadata {
        correlation_id: Some(format!("corr-{}", Uuid::new_v4())),
        causation_id: Some(format!("cause-{}", Uuid::new_v4())),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
        tracestate: Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".to_owned()),
        extensions: BTreeMap::from([
            ("partitionkey".to_owned(), "account-42".to_owned()),
            ("tenant".to_owned(), "ünïcødé ✓ \"quoted\"".to_owned()),
            ("x1".to_owned(), "1".to_owned()),
        ]),
    };
    let fixed_time = Utc
        .with_ymd_and_hms(2021, 3, 4, 5, 6, 7)
        .single()
        .unwrap_or_else(|| panic!("a fixed time"))
        + TimeDelta::nanoseconds(123_456_789);
    let records = vec![
        EventRecord {
            id: Uuid::now_v7(),
            event_type: random::event_type("Described"),
            schema_version: 7,
            source: "https://example.com/services/billing?region=eu#x".to_owned(),
            time: fixed_time,
            content_type: "application/json".to_owned(),
            data: Bytes::from(json!({ "text": "héllo \u{1F600}", "n": 1.5, "list": [1, null, true], "nested": { "a": {} } }).to_string()),
            metadata: full.clone(),
        },
        EventRecord::json(random::event_type("Plain"), 1, &json!({}))
            .with_source("/testkit/plain")
            .with_metadata(Metadata { correlation_id: Some("only-correlation".to_owned()), ..Metadata::default() }),
        EventRecord::json(random::event_type("Bare"), 2, &json!(null)),
        EventRecord {
            content_type: "application/cloudevents+json; charset=utf-8".to_owned(),
            ..EventRecord::json(random::event_type("Typed"), 1, &json!([1, 2, 3]))
        },
    ];
    let r = append(
        &backend,
        &stream,
        ExpectedRevision::NoStream,
        records.clone(),
    )
    .await;
    let read = read_whole_stream(&backend, &stream).await;
    assert_eq!(read.len(), records.len(), "every event of `{stream}`");
    for (i, (got, want)) in read.iter().zip(&records).enumerate() {
        assert_same_record(&got.record, want, &format!("read_stream, event #{i}"));
    }
    let backward = read_stream(&backend, &stream, u64::MAX, Direction::Backward, 10).await;
    for (i, (got, want)) in backward.iter().rev().zip(&records).enumerate() {
        assert_same_record(
            &got.record,
            want,
            &format!("backward read_stream, event #{i}"),
        );
    }
    wait_visible(&backend, r.last_position).await;
    let all = read_all_after(&backend, 0, &Filter::all().categories([category.as_str()])).await;
    assert_eq!(all.len(), records.len(), "read_all of our category");
    for (i, (got, want)) in all.iter().zip(&records).enumerate() {
        assert_same_record(&got.record, want, &format!("read_all, event #{i}"));
        assert_eq!(got.stream_id, stream, "read_all, event #{i}: stream id");
    }
}

/// Non-JSON payloads keep their content type and every byte, including NUL,
/// bytes that are not UTF-8, and a large payload.
pub async fn binary_data_round_trip(backend: Backend) {
    let stream = random::stream(&random::category());
    let all_bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let large: Vec<u8> = (0..256 * 1024u32)
        .map(|i| i.to_le_bytes()[0] ^ i.to_le_bytes()[1])
        .collect();
    let payloads: Vec<(&str, Vec<u8>)> = vec![
        ("application/octet-stream", all_bytes),
        (
            "application/octet-stream",
            vec![0, 0, 0xff, 0xfe, 0xc3, 0x28, b'\n', b'\r', 0],
        ),
        (
            "application/avro",
            b"Obj\x01\x04\x14avro.codec\x08null".to_vec(),
        ),
        ("application/protobuf", large),
        (
            "text/plain; charset=utf-8",
            "plain text, no JSON".as_bytes().to_vec(),
        ),
    ];
    let records: Vec<_> = payloads
        .into_iter()
        .map(|(content_type, data)| EventRecord {
            content_type: content_type.to_owned(),
            data: Bytes::from(data),
            ..EventRecord::json(random::event_type("Binary"), 1, &json!(null))
        })
        .collect();
    append(
        &backend,
        &stream,
        ExpectedRevision::NoStream,
        records.clone(),
    )
    .await;
    let read = read_whole_stream(&backend, &stream).await;
    assert_eq!(read.len(), records.len());
    for (i, (got, want)) in read.iter().zip(&records).enumerate() {
        assert_same_record(&got.record, want, &format!("binary event #{i}"));
    }
}

// ---------------------------------------------------------------------------
// Snapshots, checkpoints, dead letters, timers
// ---------------------------------------------------------------------------

#[track_caller]
fn assert_same_snapshot(got: Option<Snapshot>, want: &Snapshot, what: &str) {
    let Some(mut got) = got else {
        panic!("{what}: no snapshot of `{}` was loaded", want.stream_id)
    };
    assert_time_close(got.taken_at, want.taken_at, &format!("{what}: taken_at"));
    got.taken_at = want.taken_at;
    assert_eq!(&got, want, "{what}");
}

/// Snapshots load back as saved; a newer one replaces an older one; one at a
/// lower revision than the stored one is ignored; streams are independent.
pub async fn snapshots_keep_the_highest_revision(backend: Backend) {
    let snapshots = &backend.snapshots;
    let category = random::category();
    let (stream, other) = (random::stream(&category), random::stream(&category));
    let load = |s: StreamId| async move {
        snapshots
            .load_snapshot(&s)
            .await
            .unwrap_or_else(|e| panic!("load_snapshot(`{s}`) failed: {e}"))
    };
    let save = |s: Snapshot| async move {
        let what = format!("save_snapshot(`{}` at {})", s.stream_id, s.revision);
        snapshots
            .save_snapshot(s)
            .await
            .unwrap_or_else(|e| panic!("{what} failed: {e}"));
    };
    let snapshot = |stream: &StreamId, revision: u64, data: &[u8]| Snapshot {
        stream_id: stream.clone(),
        revision,
        state_version: 3,
        data: Bytes::copy_from_slice(data),
        taken_at: Utc::now(),
    };
    assert_eq!(
        load(stream.clone()).await,
        None,
        "a stream never snapshotted has no snapshot"
    );

    let s5 = snapshot(&stream, 5, b"{\"state\":5}");
    save(s5.clone()).await;
    assert_same_snapshot(load(stream.clone()).await, &s5, "after the first save");

    let s10 = Snapshot {
        state_version: 4,
        ..snapshot(&stream, 10, &[0, 159, 146, 150, 255])
    };
    save(s10.clone()).await;
    assert_same_snapshot(
        load(stream.clone()).await,
        &s10,
        "a snapshot at a higher revision replaces the older one",
    );

    save(snapshot(&stream, 7, b"{\"state\":7}")).await;
    assert_same_snapshot(
        load(stream.clone()).await,
        &s10,
        "a snapshot at a lower revision must be ignored",
    );

    assert_eq!(
        load(other.clone()).await,
        None,
        "a snapshot must not leak to another stream"
    );
    let o1 = snapshot(&other, 1, b"other");
    save(o1.clone()).await;
    assert_same_snapshot(load(other).await, &o1, "another stream's snapshot");
    assert_same_snapshot(
        load(stream).await,
        &s10,
        "the first stream's snapshot after saving another's",
    );
}

/// Checkpoints: none at first, saved, overwritten, deleted (deleting a missing
/// one is fine), independent per name.
pub async fn checkpoints_load_save_overwrite_delete(backend: Backend) {
    let checkpoints = &backend.checkpoints;
    let (name, other) = (random::name("projection"), random::name("projection"));
    let load = |n: String| async move {
        checkpoints
            .load_checkpoint(&n)
            .await
            .unwrap_or_else(|e| panic!("load_checkpoint(`{n}`) failed: {e}"))
    };
    let save = |n: String, p: u64| async move {
        checkpoints
            .save_checkpoint(&n, p)
            .await
            .unwrap_or_else(|e| panic!("save_checkpoint(`{n}`, {p}) failed: {e}"));
    };
    let delete = |n: String| async move {
        checkpoints
            .delete_checkpoint(&n)
            .await
            .unwrap_or_else(|e| panic!("delete_checkpoint(`{n}`) failed: {e}"));
    };
    assert_eq!(
        load(name.clone()).await,
        None,
        "a new consumer has no checkpoint"
    );
    save(name.clone(), 5).await;
    assert_eq!(load(name.clone()).await, Some(5), "the saved checkpoint");
    save(name.clone(), 1 << 40).await;
    assert_eq!(
        load(name.clone()).await,
        Some(1 << 40),
        "a saved checkpoint must overwrite the previous one"
    );
    save(name.clone(), 0).await;
    assert_eq!(
        load(name.clone()).await,
        Some(0),
        "a checkpoint may be set back (a rebuild starts over)"
    );
    save(other.clone(), 9).await;
    assert_eq!(
        load(name.clone()).await,
        Some(0),
        "another consumer's checkpoint must not change this one"
    );
    delete(name.clone()).await;
    assert_eq!(
        load(name.clone()).await,
        None,
        "a deleted checkpoint is gone"
    );
    delete(name.clone()).await;
    assert_eq!(
        load(other).await,
        Some(9),
        "deleting one checkpoint must keep the others"
    );
    save(name.clone(), 3).await;
    assert_eq!(
        load(name).await,
        Some(3),
        "a checkpoint can be saved again after deletion"
    );
}

#[track_caller]
fn assert_same_letters(got: &[DeadLetter], want: &[&DeadLetter], what: &str) {
    let got_ids: Vec<Uuid> = got.iter().map(|d| d.id).collect();
    let want_ids: Vec<Uuid> = want.iter().map(|d| d.id).collect();
    assert_eq!(
        got_ids, want_ids,
        "{what}: which dead letters, in which order"
    );
    for (g, w) in got.iter().zip(want) {
        assert_same_letter(Some(g.clone()), w, what);
    }
}

#[track_caller]
fn assert_same_letter(got: Option<DeadLetter>, want: &DeadLetter, what: &str) {
    let Some(mut got) = got else {
        panic!("{what}: dead letter {} is missing", want.id)
    };
    assert_time_close(got.failed_at, want.failed_at, &format!("{what}: failed_at"));
    got.failed_at = want.failed_at;
    assert_eq!(&got, want, "{what}: dead letter {}", want.id);
}

/// Dead letters: put, list by consumer (oldest first, limited), list all,
/// get, delete; every field survives, payload bytes included.
pub async fn dead_letters_put_list_get_delete(backend: Backend) {
    let letters = &backend.dead_letters;
    let (consumer, other) = (random::name("consumer"), random::name("consumer"));
    let base = Utc::now() - TimeDelta::hours(1);
    let letter = |consumer: &str, age_secs: i64, n: u8| DeadLetter {
        id: Uuid::now_v7(),
        consumer: consumer.to_owned(),
        event_id: n.is_multiple_of(2).then(Uuid::now_v7),
        event_type: n.is_multiple_of(2).then(|| "com.testkit.Failed".to_owned()),
        stream_id: n.is_multiple_of(2).then(|| format!("order-{n}")),
        position: n.is_multiple_of(2).then_some(1 << 40),
        payload: Bytes::from(vec![n, 0, 0xff, b'{', 0xc3]),
        headers: BTreeMap::from([
            ("ce_type".to_owned(), "com.testkit.Failed".to_owned()),
            ("x".to_owned(), format!("ü{n}")),
        ]),
        reason: format!("handler failed: attempt {n} \"quoted\""),
        error_kind: "serialization".to_owned(),
        attempts: u32::from(n) + 1,
        failed_at: base + TimeDelta::seconds(age_secs),
    };
    let (d1, d2, d3) = (
        letter(&consumer, 1, 1),
        letter(&consumer, 2, 2),
        letter(&consumer, 3, 3),
    );
    let foreign = letter(&other, 0, 4);
    for d in [&d3, &foreign, &d1, &d2] {
        letters
            .put_dead_letter(d.clone())
            .await
            .unwrap_or_else(|e| panic!("put_dead_letter({}) failed: {e}", d.id));
    }
    let list = |c: Option<String>, limit: usize| async move {
        letters
            .list_dead_letters(c.as_deref(), limit)
            .await
            .unwrap_or_else(|e| panic!("list_dead_letters({c:?}, {limit}) failed: {e}"))
    };
    assert_same_letters(
        &list(Some(consumer.clone()), 10).await,
        &[&d1, &d2, &d3],
        "list by consumer, oldest first",
    );
    assert_same_letters(
        &list(Some(consumer.clone()), 2).await,
        &[&d1, &d2],
        "list by consumer, limit 2",
    );
    assert_same_letters(
        &list(Some(other.clone()), 10).await,
        &[&foreign],
        "list of another consumer",
    );
    assert!(
        list(Some(random::name("consumer")), 10).await.is_empty(),
        "list of a consumer without dead letters"
    );
    let everyone = list(None, 50).await;
    assert!(
        everyone.len() <= 50,
        "list_dead_letters(None, 50) returned {} letters",
        everyone.len()
    );
    assert!(
        !everyone.is_empty(),
        "list_dead_letters(None, 50) returned nothing, but letters are stored"
    );
    for pair in everyone.windows(2) {
        assert!(
            pair[0].failed_at <= pair[1].failed_at,
            "list_dead_letters(None) must list oldest first"
        );
    }

    let get = |id: Uuid| async move {
        letters
            .get_dead_letter(id)
            .await
            .unwrap_or_else(|e| panic!("get_dead_letter({id}) failed: {e}"))
    };
    assert_same_letter(get(d2.id).await, &d2, "get");
    assert_same_letter(get(d1.id).await, &d1, "get");
    assert_eq!(get(Uuid::now_v7()).await, None, "get of an unknown id");

    let delete = |id: Uuid| async move {
        letters
            .delete_dead_letter(id)
            .await
            .unwrap_or_else(|e| panic!("delete_dead_letter({id}) failed: {e}"))
    };
    assert!(
        delete(d2.id).await,
        "deleting a stored dead letter must report true"
    );
    assert!(!delete(d2.id).await, "deleting it again must report false");
    assert!(
        !delete(Uuid::now_v7()).await,
        "deleting an unknown id must report false"
    );
    assert_eq!(get(d2.id).await, None, "a deleted dead letter is gone");
    assert_same_letters(
        &list(Some(consumer.clone()), 10).await,
        &[&d1, &d3],
        "list after a delete",
    );

    for d in [&d1, &d3, &foreign] {
        assert!(delete(d.id).await, "cleaning up dead letter {}", d.id);
    }
    assert!(
        list(Some(consumer), 10).await.is_empty(),
        "list after deleting every letter of the consumer"
    );
}

#[track_caller]
fn assert_same_timers(got: &[Timer], want: &[&Timer], what: &str) {
    let got_ids: Vec<&str> = got.iter().map(|t| t.id.as_str()).collect();
    let want_ids: Vec<&str> = want.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(got_ids, want_ids, "{what}: which timers, in which order");
    for (g, w) in got.iter().zip(want) {
        assert_time_close(g.due_at, w.due_at, &format!("{what}: due_at of `{}`", w.id));
        let g = Timer {
            due_at: w.due_at,
            ..g.clone()
        };
        assert_eq!(&g, *w, "{what}: timer `{}`", w.id);
    }
}

/// Timers: scheduling is idempotent on the id; `due_timers` returns the
/// owner's timers due at or before `now`, earliest first, limited; cancel
/// removes a timer once.
pub async fn timers_schedule_due_cancel(backend: Backend) {
    let timers = &backend.timers;
    let (owner, other) = (random::name("saga"), random::name("saga"));
    let now = Utc::now();
    let timer = |owner: &str, offset_secs: i64, n: u32| Timer {
        id: random::name("timer"),
        owner: owner.to_owned(),
        key: format!("order-{n}"),
        due_at: now + TimeDelta::seconds(offset_secs),
        payload: json!({ "n": n, "step": "reserve", "nested": { "list": [1, 2] } }),
    };
    let (early, middle, late, future) = (
        timer(&owner, -30, 1),
        timer(&owner, -20, 2),
        timer(&owner, -10, 3),
        timer(&owner, 3600, 4),
    );
    let foreign = timer(&other, -25, 5);
    let schedule = |t: Timer| async move {
        let id = t.id.clone();
        timers
            .schedule_timer(t)
            .await
            .unwrap_or_else(|e| panic!("schedule_timer(`{id}`) failed: {e}"));
    };
    for t in [&late, &future, &early, &foreign, &middle] {
        schedule(t.clone()).await;
    }
    let due = |o: String, at: DateTime<Utc>, limit: usize| async move {
        timers
            .due_timers(&o, at, limit)
            .await
            .unwrap_or_else(|e| panic!("due_timers(`{o}`, {at}, {limit}) failed: {e}"))
    };
    assert_same_timers(
        &due(owner.clone(), now, 10).await,
        &[&early, &middle, &late],
        "due now, earliest first",
    );
    assert_same_timers(
        &due(owner.clone(), now, 2).await,
        &[&early, &middle],
        "due now, limit 2",
    );
    assert_same_timers(
        &due(owner.clone(), now - TimeDelta::seconds(20), 10).await,
        &[&early, &middle],
        "due at a past time (inclusive)",
    );
    assert_same_timers(
        &due(owner.clone(), now + TimeDelta::hours(2), 10).await,
        &[&early, &middle, &late, &future],
        "due later",
    );
    assert_same_timers(
        &due(other.clone(), now, 10).await,
        &[&foreign],
        "another owner's timers",
    );
    assert!(
        due(random::name("saga"), now, 10).await.is_empty(),
        "an owner without timers"
    );

    // Scheduling the same id again keeps one timer.
    schedule(middle.clone()).await;
    assert_same_timers(
        &due(owner.clone(), now, 10).await,
        &[&early, &middle, &late],
        "after scheduling a timer twice",
    );
    schedule(Timer {
        due_at: now - TimeDelta::seconds(5),
        payload: json!("changed"),
        ..middle.clone()
    })
    .await;
    let after = due(owner.clone(), now, 10).await;
    assert_eq!(
        after.iter().filter(|t| t.id == middle.id).count(),
        1,
        "scheduling an id again must keep exactly one timer with that id, got {after:?}"
    );
    assert_eq!(
        after.len(),
        3,
        "scheduling an id again must not add a timer: {after:?}"
    );

    let cancel = |id: String| async move {
        timers
            .cancel_timer(&id)
            .await
            .unwrap_or_else(|e| panic!("cancel_timer(`{id}`) failed: {e}"))
    };
    assert!(
        cancel(early.id.clone()).await,
        "cancelling a scheduled timer must report true"
    );
    assert!(
        !cancel(early.id.clone()).await,
        "cancelling it again must report false"
    );
    assert!(
        !cancel(random::name("timer")).await,
        "cancelling an unknown timer must report false"
    );
    let left = due(owner.clone(), now + TimeDelta::hours(2), 10).await;
    assert!(
        !left.iter().any(|t| t.id == early.id),
        "a cancelled timer must not be due"
    );
    assert_eq!(left.len(), 3, "the other timers stay after a cancel");
    for t in [&middle, &late, &future, &foreign] {
        assert!(cancel(t.id.clone()).await, "cleaning up timer `{}`", t.id);
    }
    assert!(
        due(owner, now + TimeDelta::hours(2), 10).await.is_empty(),
        "no timers left"
    );
}

// ---------------------------------------------------------------------------
// Volume and upcasting
// ---------------------------------------------------------------------------

/// A stream of 10,240 events, appended in batches of 512, reads back whole:
/// forward in pages, backward in pages, and through `read_all`, with exact
/// revisions.
pub async fn large_stream_round_trip(backend: Backend) {
    const TOTAL: u64 = 10_240;
    const BATCH: u64 = 512;
    let category = random::category();
    let stream = random::stream(&category);
    let mut written = Vec::new();
    let mut last = 0;
    for b in 0..TOTAL / BATCH {
        let records: Vec<_> = (0..BATCH)
            .map(|i| event("com.testkit.Bulk", b * BATCH + i))
            .collect();
        written.extend(record_ids(&records));
        let expected = if b == 0 {
            ExpectedRevision::NoStream
        } else {
            ExpectedRevision::Exact(b * BATCH - 1)
        };
        let r = append(&backend, &stream, expected, records).await;
        assert_eq!(
            (r.first_revision, r.last_revision),
            (b * BATCH, (b + 1) * BATCH - 1),
            "batch {b}"
        );
        last = r.last_position;
    }
    assert_eq!(
        stream_revision(&backend, &stream).await,
        Some(TOTAL - 1),
        "stream_revision of the large stream"
    );

    for page in [1000, 999, 4096] {
        let mut read = Vec::new();
        let mut from = 0;
        loop {
            let got = read_stream(&backend, &stream, from, Direction::Forward, page).await;
            let Some(tail) = got.last() else { break };
            from = tail.revision + 1;
            read.extend(got);
        }
        assert_eq!(read.len(), written.len(), "forward read in pages of {page}");
        assert_eq!(
            revisions(&read),
            (0..TOTAL).collect::<Vec<_>>(),
            "revisions read forward in pages of {page}"
        );
        assert_eq!(
            ids(&read),
            written,
            "events read forward in pages of {page}"
        );
        assert_strictly_increasing(&read, "the large stream");
        for e in read.iter().step_by(997) {
            assert_eq!(
                json_of(e),
                json!({ "n": e.revision }),
                "payload of revision {}",
                e.revision
            );
        }
    }

    let mut read = Vec::new();
    let mut from = u64::MAX;
    loop {
        let got = read_stream(&backend, &stream, from, Direction::Backward, 1000).await;
        let Some(tail) = got.last() else { break };
        let Some(next) = tail.revision.checked_sub(1) else {
            read.extend(got);
            break;
        };
        from = next;
        read.extend(got);
    }
    assert_eq!(
        revisions(&read),
        (0..TOTAL).rev().collect::<Vec<_>>(),
        "revisions read backward in pages"
    );
    assert_eq!(
        ids(&read),
        written.iter().rev().copied().collect::<Vec<_>>(),
        "events read backward in pages"
    );

    wait_visible(&backend, last).await;
    let all = read_all_after(&backend, 0, &Filter::all().categories([category.as_str()])).await;
    assert_eq!(ids(&all), written, "read_all of the large stream");
    assert_eq!(
        revisions(&all),
        (0..TOTAL).collect::<Vec<_>>(),
        "revisions through read_all"
    );
}

/// Upcasters registered on `Store::with_upcasters` apply, chained, on
/// `read_stream`, `read_all` and `subscribe`; the stored events stay as written.
pub async fn upcasting_on_every_read_path(backend: Backend) {
    let category = random::category();
    let stream = random::stream(&category);
    let ty = random::event_type("Upcast");
    let untouched = random::event_type("Untouched");
    let upcasters = Upcasters::new()
        .add(&ty, 1, |mut v| {
            v["added"] = json!("by v1 to v2");
            Ok(v)
        })
        .add(&ty, 2, |mut v| {
            let n = v.get("n").cloned().unwrap_or_default();
            if let Some(map) = v.as_object_mut() {
                map.remove("n");
                map.insert("count".to_owned(), n);
            }
            Ok(v)
        });
    let store = store(backend.clone()).with_upcasters(upcasters);
    let records = vec![
        EventRecord::json(&ty, 1, &json!({ "n": 1 })),
        EventRecord::json(&ty, 2, &json!({ "n": 2, "added": "at v2" })),
        EventRecord::json(&ty, 3, &json!({ "count": 3 })),
        EventRecord::json(&untouched, 1, &json!({ "n": 4 })),
    ];
    let expected = [
        (
            ty.as_str(),
            3,
            json!({ "count": 1, "added": "by v1 to v2" }),
        ),
        (ty.as_str(), 3, json!({ "count": 2, "added": "at v2" })),
        (ty.as_str(), 3, json!({ "count": 3 })),
        (untouched.as_str(), 1, json!({ "n": 4 })),
    ];
    let r = store
        .append(&stream, ExpectedRevision::NoStream, records.clone())
        .await
        .unwrap_or_else(|e| panic!("append through Store failed: {e}"));
    let check = |got: &[RecordedEvent], path: &str| {
        assert_eq!(got.len(), expected.len(), "{path}: number of events");
        for (i, (e, (t, v, payload))) in got.iter().zip(&expected).enumerate() {
            assert_eq!(e.id(), records[i].id, "{path}, event #{i}: id");
            assert_eq!(e.revision, len_u64(i), "{path}, event #{i}: revision");
            assert_eq!(
                (e.event_type(), e.record.schema_version),
                (*t, *v),
                "{path}, event #{i}: type and version"
            );
            assert_eq!(&json_of(e), payload, "{path}, event #{i}: upcast payload");
        }
    };

    let forward = store
        .read_stream_forward(&stream, 0, 10)
        .await
        .unwrap_or_else(|e| panic!("Store::read_stream failed: {e}"));
    check(&forward, "Store::read_stream forward");
    let mut backward = store
        .read_stream(&stream, u64::MAX, Direction::Backward, 10)
        .await
        .unwrap_or_else(|e| panic!("Store::read_stream backward failed: {e}"));
    backward.reverse();
    check(&backward, "Store::read_stream backward");

    wait_visible(&backend, r.last_position).await;
    let filter = Filter::all().categories([category.as_str()]);
    let all = store
        .read_all(0, 10, &filter)
        .await
        .unwrap_or_else(|e| panic!("Store::read_all failed: {e}"));
    check(&all, "Store::read_all");

    let mut sub = Box::pin(store.subscribe(0, filter));
    let mut got = Vec::new();
    collect(&mut sub, &mut got, "an upcasting subscription", |g| {
        g.len() == expected.len()
    })
    .await;
    check(&got, "Store::subscribe");

    let raw = read_whole_stream(&backend, &stream).await;
    for (i, (got, want)) in raw.iter().zip(&records).enumerate() {
        assert_same_record(
            &got.record,
            want,
            &format!("the stored event #{i} (upcasting must not write back)"),
        );
    }
}
