//! Sink throughput into Delta next to plain Parquet, in one run.
//!
//! The same events (default 100,000 of 3 types, small JSON payloads) go:
//!
//! - **sink**: through `LakehouseSink::apply_batch` in batches of 10,000
//!   (payload decode, column check, Arrow batch, Parquet files, one Delta
//!   commit per table per batch with its transaction identifier), into a
//!   fresh lake per round;
//! - **runner**: the same, driven by the transactional projection runner
//!   from an in-memory store (adds the store reads and the runner);
//! - **parquet**: the Arrow batches the sink builds for the same events
//!   (`LakehouseSink::arrow_batches`, built outside the timing), written
//!   with the `parquet` crate's `ArrowWriter` (Snappy, as the sink) to one
//!   file per table per batch: no Delta log, no statistics, no decode.
//!
//! - **arrow**: only the sink's first step for the same events, decoding
//!   the payloads and building the Arrow batches (`arrow_batches`), nothing
//!   written: the share of the sink's time that is not Parquet or Delta.
//!
//! Rounds interleave the paths; best and median per path, and the ratios of
//! the best rounds. Run: `cargo bench -p orchestrix-lakehouse`. Knobs:
//! `BENCH_EVENTS` (default 100,000), `BENCH_ROUNDS` (default 5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use orchestrix::runtime::{ProjectionRunner, TransactionalProjection};
use orchestrix::store::{ExpectedRevision, Filter};
use orchestrix::{EventRecord, RecordedEvent, Store, StreamId};
use orchestrix_lakehouse::LakehouseSink;
use orchestrix_lakehouse::deltalake::parquet::arrow::ArrowWriter;
use orchestrix_lakehouse::deltalake::parquet::basic::Compression;
use orchestrix_lakehouse::deltalake::parquet::file::properties::WriterProperties;
use serde_json::json;

const TYPES: [&str; 3] = [
    "com.acme.OrderPlaced",
    "com.acme.PaymentTaken",
    "com.acme.ItemShipped",
];
const BATCH: usize = 10_000;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn seed(store: &Store, n: usize) -> Vec<RecordedEvent> {
    let per_stream = 100;
    for s in 0..n.div_ceil(per_stream) {
        let stream = StreamId::new("order", &format!("o{s}")).unwrap();
        let events: Vec<EventRecord> = (0..per_stream.min(n - s * per_stream))
            .map(|i| {
                let k = s * per_stream + i;
                EventRecord::json(
                    TYPES[k % 3],
                    1,
                    &json!({"order": format!("o{s}"), "n": k, "amount": (k % 997) as f64 / 10.0,
                            "currency": "EUR", "express": k % 2 == 0}),
                )
            })
            .collect();
        store
            .append(&stream, ExpectedRevision::Any, events)
            .await
            .unwrap();
    }
    let mut all = Vec::with_capacity(n);
    let mut after = 0;
    loop {
        let page = store.read_all(after, 10_000, &Filter::all()).await.unwrap();
        if page.is_empty() {
            break;
        }
        after = page.last().unwrap().position;
        all.extend(page);
    }
    all
}

async fn sink_path(store: &Store, events: &[RecordedEvent]) -> Duration {
    let lake = tempfile::tempdir().unwrap();
    let sink = LakehouseSink::builder(store.clone(), "bench", lake.path())
        .max_rows(BATCH)
        .build();
    sink.load_checkpoint("bench").await.unwrap();
    let start = Instant::now();
    for chunk in events.chunks(BATCH) {
        let last = chunk.last().unwrap().position;
        sink.apply_batch(chunk, "bench", last).await.unwrap();
    }
    let took = start.elapsed();
    assert_eq!(sink.stats().rows, events.len() as u64);
    took
}

async fn runner_path(store: &Store, n: usize) -> Duration {
    let lake = tempfile::tempdir().unwrap();
    let sink = Arc::new(
        LakehouseSink::builder(store.clone(), "bench", lake.path())
            .max_rows(BATCH)
            .build(),
    );
    let start = Instant::now();
    let runner = ProjectionRunner::transactional(store.clone(), sink.clone())
        .batch_size(BATCH)
        .start()
        .await
        .unwrap();
    runner
        .wait_until_caught_up(store.head_position().await.unwrap())
        .await
        .unwrap();
    let took = start.elapsed();
    runner.shutdown().await.unwrap();
    assert_eq!(sink.stats().rows, n as u64);
    took
}

fn parquet_path(
    batches: &[Vec<(
        String,
        orchestrix_lakehouse::deltalake::arrow::record_batch::RecordBatch,
    )>],
) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let start = Instant::now();
    for (i, tables) in batches.iter().enumerate() {
        for (name, batch) in tables {
            let file =
                std::fs::File::create(dir.path().join(format!("{name}-{i}.parquet"))).unwrap();
            let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props.clone())).unwrap();
            w.write(batch).unwrap();
            w.close().unwrap();
        }
    }
    start.elapsed()
}

fn arrow_path(probe: &LakehouseSink, events: &[RecordedEvent]) -> Duration {
    let start = Instant::now();
    let mut rows = 0;
    for chunk in events.chunks(BATCH) {
        rows += probe
            .arrow_batches(chunk)
            .unwrap()
            .iter()
            .map(|(_, b)| b.num_rows())
            .sum::<usize>();
    }
    let took = start.elapsed();
    assert_eq!(rows, events.len());
    took
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn summary(name: &str, n: usize, mut times: Vec<Duration>) -> Duration {
    times.sort();
    let best = times[0];
    let median = times[times.len() / 2];
    println!(
        "| {name} | {:>10.0} | {:>10.0} | {:>8.1} |",
        rate(n, best),
        rate(n, median),
        best.as_secs_f64() * 1000.0
    );
    best
}

fn main() {
    let n = env("BENCH_EVENTS", 100_000);
    let rounds = env("BENCH_ROUNDS", 5).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::memory();
        let events = seed(&store, n).await;
        let probe = LakehouseSink::builder(store.clone(), "bench", "unused").build();
        let batches: Vec<_> = events.chunks(BATCH).map(|c| probe.arrow_batches(c).unwrap()).collect();
        let (mut sink, mut runner, mut parquet, mut arrow) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            for k in 0..4 {
                match (round + k) % 4 {
                    0 => sink.push(sink_path(&store, &events).await),
                    1 => runner.push(runner_path(&store, n).await),
                    2 => parquet.push(parquet_path(&batches)),
                    _ => arrow.push(arrow_path(&probe, &events)),
                }
            }
        }
        println!("{n} events of 3 types, batches of {BATCH}, {rounds} rounds");
        println!("| path | best events/s | median events/s | best ms |");
        println!("|---|---:|---:|---:|");
        let s = summary("sink (apply_batch into Delta)", n, sink);
        let r = summary("runner + sink from a memory store", n, runner);
        let p = summary("plain Parquet (ArrowWriter, same batches)", n, parquet);
        let a = summary("decode + Arrow batches only (no write)", n, arrow);
        println!(
            "sink / parquet: {:.2}x the time ({:.0} % of Parquet's throughput); runner / parquet: {:.2}x",
            s.as_secs_f64() / p.as_secs_f64(),
            100.0 * p.as_secs_f64() / s.as_secs_f64(),
            r.as_secs_f64() / p.as_secs_f64()
        );
        println!(
            "decode + Arrow: {:.0} % of the sink's best time; (decode + Arrow + Parquet) / sink: {:.0} %",
            100.0 * a.as_secs_f64() / s.as_secs_f64(),
            100.0 * (a + p).as_secs_f64() / s.as_secs_f64()
        );
    });
}
