//! `cargo bench -p orchestrix-scylla`: appends through the ScyllaDB store
//! against raw CQL prepared INSERTs of rows of the same shape, measured in
//! the same run (interleaved rounds, medians), with the ratio printed.
//!
//! Needs the server of `ORCHESTRIX_SCYLLA_URL` (default
//! `scylla://127.0.0.1:9042`); the run uses a fresh keyspace, dropped at the
//! end. `BENCH_SECONDS` sets each timed window (default 3), `BENCH_ROUNDS`
//! the interleaved rounds (default 3), `BENCH_WRITERS` the writer counts
//! (default `1,16`). A criterion group then measures one single-event append
//! of each kind.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use orchestrix::store::{AppendRequest, EventStore, ExpectedRevision};
use orchestrix::{EventRecord, StreamId};
use orchestrix_scylla::{ScyllaStore, testing};
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use serde_json::json;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Store,
    RawInsert,
    RawLwt,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Store => "store append (1 event)",
            Self::RawInsert => "raw prepared INSERT",
            Self::RawLwt => "raw prepared INSERT … IF NOT EXISTS",
        }
    }
}

struct Raw {
    session: Arc<Session>,
    insert: PreparedStatement,
    lwt: PreparedStatement,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn record(n: u64) -> EventRecord {
    EventRecord::json("com.acme.bank.Deposited", 1, &json!({ "amount": n }))
}

async fn one(kind: Kind, store: &ScyllaStore, raw: &Raw, writer: u64, n: u64) {
    let stream = format!("account-{writer}_{}", n % 64);
    match kind {
        Kind::Store => {
            store
                .append(AppendRequest::new(
                    StreamId::parse(stream).unwrap(),
                    ExpectedRevision::Any,
                    vec![record(n)],
                ))
                .await
                .unwrap();
        }
        Kind::RawInsert | Kind::RawLwt => {
            let r = record(n);
            let ms = CqlTimestamp(r.time.timestamp_millis());
            let values = (
                format!("raw-{stream}"),
                i64::try_from(n).unwrap(),
                i64::try_from(n).unwrap(),
                r.id,
                r.event_type,
                1_i64,
                r.source,
                ms,
                0_i32,
                r.content_type,
                r.data.to_vec(),
                "{}",
            );
            let st = if matches!(kind, Kind::RawInsert) {
                &raw.insert
            } else {
                &raw.lwt
            };
            raw.session.execute_unpaged(st, values).await.unwrap();
        }
    }
}

/// Appends per second with `writers` concurrent writers for `window`.
async fn throughput(
    kind: Kind,
    store: &ScyllaStore,
    raw: &Arc<Raw>,
    writers: u64,
    window: Duration,
) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, raw, stop, count) = (store.clone(), raw.clone(), stop.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = rand::random::<u32>() as u64 * 1_000_000;
            while !stop.load(Ordering::Relaxed) {
                one(kind, &store, &raw, w, n).await;
                n += 1;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some((store, raw)) = rt.block_on(async {
        let store = testing::store("bench").await?;
        let session = store.session().clone();
        let table = store.keyspace().table("raw_events");
        session
            .query_unpaged(
                format!(
                    "CREATE TABLE IF NOT EXISTS {table} (stream_id text, revision bigint, position bigint, event_id uuid, event_type text, \
                     schema_version bigint, source text, time_ms timestamp, time_nanos int, content_type text, data blob, metadata text, \
                     PRIMARY KEY (stream_id, revision))"
                ),
                (),
            )
            .await
            .unwrap();
        let cols = "stream_id, revision, position, event_id, event_type, schema_version, source, time_ms, time_nanos, content_type, data, metadata";
        let insert = session
            .prepare(format!("INSERT INTO {table} ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))
            .await
            .unwrap();
        let lwt = session
            .prepare(format!("INSERT INTO {table} ({cols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS"))
            .await
            .unwrap();
        Some((store, Arc::new(Raw { session, insert, lwt })))
    }) else {
        return;
    };
    let window = Duration::from_secs(env_u64("BENCH_SECONDS", 3));
    let rounds = env_u64("BENCH_ROUNDS", 3);
    let writers: Vec<u64> = std::env::var("BENCH_WRITERS")
        .unwrap_or_else(|_| "1,16".into())
        .split(',')
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    println!(
        "\nScyllaDB store vs raw CQL (load average at start: {})\n",
        load()
    );
    println!(
        "| writers | store appends/s | raw INSERT/s | raw LWT INSERT/s | store / raw INSERT | store / raw LWT |"
    );
    println!("|---|---|---|---|---|---|");
    for &w in &writers {
        let (mut s, mut r, mut l) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            s.push(rt.block_on(throughput(Kind::Store, &store, &raw, w, window)));
            r.push(rt.block_on(throughput(Kind::RawInsert, &store, &raw, w, window)));
            l.push(rt.block_on(throughput(Kind::RawLwt, &store, &raw, w, window)));
        }
        let (s, r, l) = (median(s), median(r), median(l));
        println!(
            "| {w} | {s:.0} | {r:.0} | {l:.0} | {:.2} | {:.2} |",
            s / r,
            s / l
        );
    }
    println!("\n(load average at end: {})\n", load());

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    let mut group = c.benchmark_group("scylla single append");
    for kind in [Kind::Store, Kind::RawInsert, Kind::RawLwt] {
        let counter = AtomicU64::new(0);
        group.bench_function(kind.name(), |b| {
            b.to_async(&rt).iter(|| {
                let n = counter.fetch_add(1, Ordering::Relaxed) + 10_000_000_000;
                let (store, raw) = (&store, &raw);
                async move { one(kind, store, raw, 999, n).await }
            });
        });
    }
    group.finish();
    rt.block_on(orchestrix_scylla::schema::drop_keyspace(
        store.session(),
        store.keyspace(),
    ))
    .unwrap();
}
