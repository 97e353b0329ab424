//! Exactly-once read models: a projection whose connection is killed in the
//! middle of its batches, many times, still applies every event once.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use orchestrix::store::{AppendRequest, EventStore, ExpectedRevision, Filter};
use orchestrix::{EventRecord, StreamId};
use orchestrix_postgres::{PostgresStore, testing};
use rand::{Rng, SeedableRng};
use serde_json::json;
use uuid::Uuid;

const EVENTS: usize = 1_200;
const STREAMS: usize = 12;
const BATCH: usize = 25;
const PROJECTION: &str = "event_counts";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    None,
    /// `pg_terminate_backend` after applying some events of the batch.
    MidBatch(usize),
    /// `pg_terminate_backend` after saving the checkpoint, before the commit.
    BeforeCommit,
    /// `pg_terminate_backend` racing the commit (either outcome is fine).
    DuringCommit,
    /// The projection's future is dropped after applying some events.
    DropFuture(usize),
}

#[derive(Default)]
struct Stats {
    committed: AtomicUsize,
    killed: AtomicUsize,
    dropped: AtomicUsize,
}

async fn terminate(killer: &tokio_postgres::Client, pid: i32) {
    let row = killer
        .query_one("SELECT pg_terminate_backend($1, 5000)", &[&pid])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "backend {pid} did not terminate");
}

/// One batch in one transaction: load the checkpoint (locking it), apply,
/// save, commit.
async fn project_once(
    store: &PostgresStore,
    killer: &tokio_postgres::Client,
    kill: Kill,
    applied_in_batch: &AtomicUsize,
) -> orchestrix::Result<bool> {
    let mut conn = store.connection().await?;
    let pid: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(|e| orchestrix_postgres::error::from_pg("pid", e))?
        .get(0);
    let tx = store.begin(&mut conn).await?;
    let after = tx.load_checkpoint(PROJECTION).await?.unwrap_or(0);
    let events = store.read_all(after, BATCH, &Filter::all()).await?;
    let Some(last) = events.last().map(|e| e.position) else {
        tx.rollback().await?;
        return Ok(false);
    };
    let counts = store.schema().table("rm_counts");
    let applied = store.schema().table("rm_applied");
    for (i, e) in events.iter().enumerate() {
        if kill == Kill::MidBatch(i) {
            terminate(killer, pid).await;
        }
        if kill == Kill::DropFuture(i) {
            applied_in_batch.store(usize::MAX, Ordering::SeqCst);
            // Park: the caller drops this future.
            std::future::pending::<()>().await;
        }
        // No ON CONFLICT: applying an event twice would fail loudly.
        let position = i64::try_from(e.position).unwrap();
        tx.execute(
            &format!("INSERT INTO {applied} (event_id, position) VALUES ($1, $2)"),
            &[&e.id(), &position],
        )
        .await?;
        tx.execute(
            &format!(
                "INSERT INTO {counts} (stream_id, n) VALUES ($1, 1) ON CONFLICT (stream_id) DO UPDATE SET n = {counts}.n + 1"
            ),
            &[&e.stream_id.as_str()],
        )
        .await?;
        applied_in_batch.fetch_add(1, Ordering::SeqCst);
    }
    tx.save_checkpoint(PROJECTION, last).await?;
    match kill {
        Kill::BeforeCommit => {
            terminate(killer, pid).await;
            tx.commit().await?;
        }
        Kill::DuringCommit => {
            let (committed, ()) = tokio::join!(tx.commit(), terminate(killer, pid));
            committed?;
        }
        _ => tx.commit().await?,
    }
    Ok(true)
}

async fn worker(store: PostgresStore, seed: u64, stats: Arc<Stats>) {
    let killer = testing::raw_client().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for attempt in 0_u64.. {
        // A fixed cycle of failure kinds (offsets at random), so that every
        // kind happens many times whatever the interleaving of the workers.
        let kill = match (attempt + seed) % 6 {
            0 => Kill::None,
            1 | 5 => Kill::MidBatch(rng.random_range(0..BATCH / 2)),
            2 => Kill::BeforeCommit,
            3 => Kill::DuringCommit,
            _ => Kill::DropFuture(rng.random_range(0..BATCH / 2)),
        };
        let applied = AtomicUsize::new(0);
        let outcome = tokio::select! {
            r = project_once(&store, &killer, kill, &applied) => Some(r),
            () = async {
                while applied.load(Ordering::SeqCst) != usize::MAX {
                    tokio::task::yield_now().await;
                }
            } => None,
        };
        match outcome {
            None => {
                stats.dropped.fetch_add(1, Ordering::SeqCst);
            }
            Some(Ok(true)) => {
                stats.committed.fetch_add(1, Ordering::SeqCst);
            }
            Some(Ok(false)) => return,
            Some(Err(e)) => {
                // Only the kills fail a batch, and they are transient
                // (administrator shutdown, connection closed); a unique
                // violation (an event applied twice) would be permanent.
                assert!(e.is_transient(), "{kill:?}: {e}");
                assert!(!e.to_string().contains("duplicate key"), "{kill:?}: {e}");
                stats.killed.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_projections_apply_every_event_exactly_once() {
    let Some(store) = testing::store("killed_projections_apply_every_event_exactly_once").await
    else {
        return;
    };
    let mut ids: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
    let mut all_ids = HashSet::new();
    for chunk in 0..EVENTS / 60 {
        let batch: Vec<AppendRequest> = (0..6)
            .map(|k| {
                let stream = format!("account-{}", (chunk * 6 + k) % STREAMS);
                let events: Vec<_> = (0..10)
                    .map(|i| EventRecord::json("com.acme.Moved", 1, &json!({ "i": i })))
                    .collect();
                ids.entry(stream.clone())
                    .or_default()
                    .extend(events.iter().map(|e| e.id));
                all_ids.extend(events.iter().map(|e| e.id));
                AppendRequest::new(
                    StreamId::parse(stream).unwrap(),
                    ExpectedRevision::Any,
                    events,
                )
            })
            .collect();
        for r in store.append_batch(batch).await.unwrap() {
            r.unwrap();
        }
    }
    let head = store.head_position().await.unwrap();
    let setup = testing::raw_client().await;
    setup
        .batch_execute(&format!(
            "CREATE TABLE {} (stream_id text PRIMARY KEY, n bigint NOT NULL);
             CREATE TABLE {} (event_id uuid PRIMARY KEY, position bigint NOT NULL);",
            store.schema().table("rm_counts"),
            store.schema().table("rm_applied"),
        ))
        .await
        .unwrap();

    // Two instances of the projection at once, each killed at random.
    let stats = Arc::new(Stats::default());
    let workers: Vec<_> = (0..2)
        .map(|seed| tokio::spawn(worker(store.clone(), seed, stats.clone())))
        .collect();
    for w in workers {
        w.await.unwrap();
    }

    let killed = stats.killed.load(Ordering::SeqCst);
    let dropped = stats.dropped.load(Ordering::SeqCst);
    assert!(killed >= 20, "only {killed} batches were killed");
    assert!(dropped >= 5, "only {dropped} batches were dropped");
    eprintln!(
        "committed {} batches, killed {killed}, dropped {dropped}",
        stats.committed.load(Ordering::SeqCst)
    );

    assert_eq!(store.load_checkpoint_in_test().await, Some(head));
    let applied: Vec<Uuid> = setup
        .query(
            &format!(
                "SELECT event_id FROM {}",
                store.schema().table("rm_applied")
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(applied.len(), EVENTS, "every event applied exactly once");
    assert_eq!(applied.into_iter().collect::<HashSet<_>>(), all_ids);
    let counts: BTreeMap<String, i64> = setup
        .query(
            &format!(
                "SELECT stream_id, n FROM {}",
                store.schema().table("rm_counts")
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let expected: BTreeMap<String, i64> = ids
        .iter()
        .map(|(s, v)| (s.clone(), i64::try_from(v.len()).unwrap()))
        .collect();
    assert_eq!(counts, expected);
}

trait CheckpointOf {
    async fn load_checkpoint_in_test(&self) -> Option<u64>;
}

impl CheckpointOf for PostgresStore {
    async fn load_checkpoint_in_test(&self) -> Option<u64> {
        orchestrix::store::CheckpointStore::load_checkpoint(self, PROJECTION)
            .await
            .unwrap()
    }
}
