//! Write coalescing through the core's `Store::with_coalescing`: 64
//! concurrent appenders, clean and conflicting, each with its own result.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use orchestrix::coalesce::CoalesceConfig;
use orchestrix::store::{
    AppendRequest, AppendResult, Backend, Direction, EventStore, ExpectedRevision, Filter,
};
use orchestrix::{Error, EventRecord, RecordedEvent, Store, StreamId};
use orchestrix_postgres::{PostgresStore, testing};
use serde_json::json;
use uuid::Uuid;

/// Counts the batches the coalescer hands to the store.
#[derive(Debug)]
struct Counting {
    inner: PostgresStore,
    batches: AtomicUsize,
    largest: AtomicUsize,
}

#[async_trait]
impl EventStore for Counting {
    fn backend(&self) -> &'static str {
        "postgres"
    }
    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> orchestrix::Result<Vec<orchestrix::Result<AppendResult>>> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.largest.fetch_max(requests.len(), Ordering::SeqCst);
        self.inner.append_batch(requests).await
    }
    async fn read_stream(
        &self,
        s: &StreamId,
        from: u64,
        d: Direction,
        limit: usize,
    ) -> orchestrix::Result<Vec<RecordedEvent>> {
        self.inner.read_stream(s, from, d, limit).await
    }
    async fn read_all(
        &self,
        after: u64,
        limit: usize,
        filter: &Filter,
    ) -> orchestrix::Result<Vec<RecordedEvent>> {
        self.inner.read_all(after, limit, filter).await
    }
    async fn stream_revision(&self, s: &StreamId) -> orchestrix::Result<Option<u64>> {
        self.inner.stream_revision(s).await
    }
    async fn head_position(&self) -> orchestrix::Result<u64> {
        self.inner.head_position().await
    }
}

/// Successful appends: stream -> (revision, event id).
type Stored = BTreeMap<String, Vec<(u64, Uuid)>>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Own stream, exact expected revision: must always succeed.
    Clean,
    /// Shared with three others, all expecting the same revision each
    /// round: exactly one of the four succeeds per round.
    Racing,
    /// `NoStream` on a stream that exists: must always conflict.
    Stale,
    /// No events: invalid, alone.
    Invalid,
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Clean => "clean",
            Kind::Racing => "racing",
            Kind::Stale => "stale",
            Kind::Invalid => "invalid",
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_appenders_get_their_own_results_and_streams_match_exactly() {
    const TASKS: usize = 64;
    const ROUNDS: u64 = 15;
    let Some(pg) = testing::store_with("sixty_four_appenders", |mut c| {
        c.pool_size = 4;
        c
    })
    .await
    else {
        return;
    };
    let counting = Arc::new(Counting {
        inner: pg.clone(),
        batches: AtomicUsize::new(0),
        largest: AtomicUsize::new(0),
    });
    let backend = Backend {
        events: counting.clone(),
        ..pg.backend()
    };
    let store = Store::new(backend).with_coalescing(CoalesceConfig {
        max_batch: 64,
        max_in_flight: 2,
    });

    let stale_stream = StreamId::parse("stale-0").unwrap();
    store
        .append(
            &stale_stream,
            ExpectedRevision::NoStream,
            vec![EventRecord::json("com.acme.Seed", 1, &json!({}))],
        )
        .await
        .unwrap();

    // Task kinds: 32 clean, 24 racing (6 groups of 4), 4 stale, 4 invalid.
    let kind = |t: usize| match t {
        0..32 => Kind::Clean,
        32..56 => Kind::Racing,
        56..60 => Kind::Stale,
        _ => Kind::Invalid,
    };
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let stored: Arc<Mutex<Stored>> = Arc::default();
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        let barrier = barrier.clone();
        let stored = stored.clone();
        let stale_stream = stale_stream.clone();
        tasks.push(tokio::spawn(async move {
            let k = kind(t);
            let stream = match k {
                Kind::Clean => StreamId::parse(format!("clean-{t}")).unwrap(),
                Kind::Racing => StreamId::parse(format!("race-{}", (t - 32) / 4)).unwrap(),
                Kind::Stale => stale_stream,
                Kind::Invalid => StreamId::parse(format!("invalid-{t}")).unwrap(),
            };
            let mut wins = 0;
            for round in 0..ROUNDS {
                let expected = match k {
                    Kind::Clean | Kind::Racing => {
                        ExpectedRevision::from_current(round.checked_sub(1))
                    }
                    Kind::Stale => ExpectedRevision::NoStream,
                    Kind::Invalid => ExpectedRevision::Any,
                };
                let events = if k == Kind::Invalid {
                    Vec::new()
                } else {
                    vec![EventRecord::json(
                        "com.acme.Step",
                        1,
                        &json!({ "task": t, "round": round }),
                    )]
                };
                let id = events.first().map(|e| e.id);
                // Everyone submits at once, so batches mix all four kinds.
                barrier.wait().await;
                let result = store.append(&stream, expected, events).await;
                match (k, result) {
                    (Kind::Clean, Ok(r)) => {
                        assert_eq!(
                            (r.first_revision, r.last_revision),
                            (round, round),
                            "task {t}"
                        );
                        stored
                            .lock()
                            .unwrap()
                            .entry(stream.to_string())
                            .or_default()
                            .push((round, id.unwrap()));
                    }
                    (Kind::Racing, Ok(r)) => {
                        assert_eq!(r.last_revision, round, "task {t}");
                        wins += 1;
                        stored
                            .lock()
                            .unwrap()
                            .entry(stream.to_string())
                            .or_default()
                            .push((round, id.unwrap()));
                    }
                    (
                        Kind::Racing,
                        Err(Error::Conflict {
                            stream: s,
                            expected: e,
                            actual,
                        }),
                    ) => {
                        assert_eq!(
                            (s, e, actual),
                            (stream.to_string(), expected, Some(round)),
                            "task {t}"
                        );
                    }
                    (
                        Kind::Stale,
                        Err(Error::Conflict {
                            actual,
                            expected: e,
                            ..
                        }),
                    ) => {
                        assert_eq!(
                            (e, actual),
                            (ExpectedRevision::NoStream, Some(0)),
                            "task {t}"
                        );
                    }
                    (Kind::Invalid, Err(Error::InvalidInput { .. })) => {}
                    (k, other) => panic!("task {t} ({k:?}) round {round}: unexpected {other:?}"),
                }
                // The round ends for everyone before the next starts.
                barrier.wait().await;
            }
            (k, wins)
        }));
    }
    let mut racing_wins = 0;
    for task in tasks {
        let (k, wins) = task.await.unwrap();
        if k == Kind::Racing {
            racing_wins += wins;
        }
    }
    // One winner per group per round.
    assert_eq!(racing_wins, 6 * ROUNDS);

    // The stored streams are exactly the successful appends.
    let stored = stored.lock().unwrap().clone();
    for (stream, mut expected) in stored {
        expected.sort_unstable();
        let s = StreamId::parse(stream.as_str()).unwrap();
        let read = pg
            .read_stream(&s, 0, Direction::Forward, 1000)
            .await
            .unwrap();
        let got: Vec<(u64, Uuid)> = read.iter().map(|e| (e.revision, e.record.id)).collect();
        assert_eq!(got, expected, "stream {stream}");
    }
    assert_eq!(pg.stream_revision(&stale_stream).await.unwrap(), Some(0));
    for t in 60..64 {
        assert_eq!(
            pg.stream_revision(&StreamId::parse(format!("invalid-{t}")).unwrap())
                .await
                .unwrap(),
            None
        );
    }
    let all = pg.read_all(0, 10_000, &Filter::all()).await.unwrap();
    assert_eq!(all.len() as u64, 1 + 32 * ROUNDS + 6 * ROUNDS);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));

    // The appends were coalesced: fewer batches than appends.
    let batches = counting.batches.load(Ordering::SeqCst);
    assert!(
        counting.largest.load(Ordering::SeqCst) > 1,
        "no batch held more than one append"
    );
    assert!(
        batches < TASKS * usize::try_from(ROUNDS).unwrap(),
        "{batches} batches"
    );
}
