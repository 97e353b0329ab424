//! Projection catch-up throughput on the embedded (memory) store, against a
//! raw `Store::read_all` loop over the same events in the same run.
//!
//! ```text
//! cargo bench -p orchestrix --bench projection
//! ORCHESTRIX_BENCH_EVENTS=1000000 cargo bench -p orchestrix --bench projection
//! ```
//!
//! The projections do almost nothing per event (count it), so the ratio is
//! the runtime's own cost: partition routing, completion tracking,
//! checkpointing, spans.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orchestrix::runtime::{Projection, ProjectionRunner, TransactionalProjection};
use orchestrix::store::{AppendRequest, ExpectedRevision, Filter};
use orchestrix::{EventRecord, RecordedEvent, Result, Store, StreamId};

const STREAMS: u64 = 1_000;
const READ_BATCH: usize = 512;

#[derive(Debug)]
struct Count {
    name: String,
    applied: AtomicU64,
}

#[async_trait]
impl Projection for Count {
    fn name(&self) -> &str {
        &self.name
    }
    async fn apply(&self, _: &RecordedEvent) -> Result<()> {
        self.applied.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn reset(&self) -> Result<()> {
        self.applied.store(0, Ordering::Relaxed);
        Ok(())
    }
}

/// A transactional projection whose "transaction" is a counter and a position.
#[derive(Debug, Default)]
struct BatchCount {
    applied: AtomicU64,
    checkpoint: AtomicU64,
}

#[async_trait]
impl TransactionalProjection for BatchCount {
    fn name(&self) -> &str {
        "bench-transactional"
    }
    async fn load_checkpoint(&self, _: &str) -> Result<Option<u64>> {
        Ok(None)
    }
    async fn apply_batch(
        &self,
        events: &[RecordedEvent],
        _: &str,
        last_position: u64,
    ) -> Result<()> {
        self.applied
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        self.checkpoint.fetch_max(last_position, Ordering::Relaxed);
        Ok(())
    }
    async fn reset(&self, _: &str) -> Result<()> {
        Ok(())
    }
    async fn delete_checkpoint(&self, _: &str) -> Result<()> {
        Ok(())
    }
}

async fn seed(store: &Store, events: u64) {
    let per_stream = events.div_ceil(STREAMS);
    let mut left = events;
    // 100 streams per commit, `per_stream` events each.
    let streams: Vec<StreamId> = (0..STREAMS)
        .map(|i| StreamId::new("account", &i.to_string()).unwrap())
        .collect();
    for chunk in streams.chunks(100) {
        let mut requests = Vec::new();
        for stream in chunk {
            let n = per_stream.min(left);
            if n == 0 {
                break;
            }
            left -= n;
            let records = (0..n)
                .map(|i| {
                    EventRecord::json(
                        "com.acme.bank.Deposited",
                        1,
                        &serde_json::json!({ "amount": i }),
                    )
                })
                .collect();
            requests.push(AppendRequest::new(
                stream.clone(),
                ExpectedRevision::Any,
                records,
            ));
        }
        if requests.is_empty() {
            break;
        }
        for result in store.append_batch(requests).await.unwrap() {
            result.unwrap();
        }
    }
}

fn rate(events: u64, elapsed: Duration) -> f64 {
    events as f64 / elapsed.as_secs_f64()
}

async fn raw_read(store: &Store) -> (u64, Duration) {
    let started = Instant::now();
    let (mut after, mut n) = (0, 0u64);
    loop {
        let batch = store
            .read_all(after, READ_BATCH, &Filter::all())
            .await
            .unwrap();
        let Some(last) = batch.last() else { break };
        after = last.position;
        n += batch.len() as u64;
    }
    (n, started.elapsed())
}

async fn projection(store: &Store, partitions: u32, head: u64, round: u32) -> (u64, Duration) {
    let count = Arc::new(Count {
        name: format!("bench-{partitions}-{round}"),
        applied: AtomicU64::new(0),
    });
    let started = Instant::now();
    let runner = ProjectionRunner::builder(store.clone(), count.clone())
        .partitions(partitions)
        .batch_size(READ_BATCH)
        .start()
        .await
        .unwrap();
    runner.wait_until_caught_up(head).await.unwrap();
    let elapsed = started.elapsed();
    runner.shutdown().await.unwrap();
    (count.applied.load(Ordering::Relaxed), elapsed)
}

async fn transactional(store: &Store, head: u64) -> (u64, Duration) {
    let count = Arc::new(BatchCount::default());
    let started = Instant::now();
    let runner = ProjectionRunner::transactional(store.clone(), count.clone())
        .batch_size(READ_BATCH)
        .start()
        .await
        .unwrap();
    runner.wait_until_caught_up(head).await.unwrap();
    let elapsed = started.elapsed();
    runner.shutdown().await.unwrap();
    (count.applied.load(Ordering::Relaxed), elapsed)
}

const ROUNDS: u32 = 5;

fn main() {
    let events: u64 = std::env::var("ORCHESTRIX_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store = Store::memory();
        seed(&store, events).await;
        let head = store.head_position().await.unwrap();
        println!(
            "projection catch-up, memory store, {head} events in {STREAMS} streams, \
             read batch {READ_BATCH}, best of {ROUNDS}, {} threads",
            std::thread::available_parallelism().map_or(1, usize::from)
        );
        println!(
            "{:<36} {:>12} {:>14} {:>8}",
            "reader", "seconds", "events/s", "vs raw"
        );
        raw_read(&store).await; // warm-up
        // Rounds interleave the readers, so that load from elsewhere on the
        // machine hits them alike; each keeps its fastest round.
        let names = [
            "raw Store::read_all loop",
            "projection, 1 partition(s)",
            "projection, 8 partition(s)",
            "transactional projection (batches)",
        ];
        let mut best = [Duration::MAX; 4];
        for round in 0..ROUNDS {
            let runs = [
                raw_read(&store).await,
                projection(&store, 1, head, round).await,
                projection(&store, 8, head, round).await,
                transactional(&store, head).await,
            ];
            for (i, (n, elapsed)) in runs.into_iter().enumerate() {
                assert_eq!(n, head, "{}", names[i]);
                best[i] = best[i].min(elapsed);
            }
        }
        let raw_rate = rate(head, best[0]);
        let rows = names.into_iter().zip(best);
        for (name, elapsed) in rows {
            let r = rate(head, elapsed);
            println!(
                "{name:<36} {:>12.3} {r:>14.0} {:>8.2}",
                elapsed.as_secs_f64(),
                r / raw_rate
            );
        }
    });
}
