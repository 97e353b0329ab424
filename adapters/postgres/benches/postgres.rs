//! `cargo bench -p orchestrix-postgres`: the PostgreSQL adapter measured in
//! one run, each figure next to its raw baseline measured in the same run
//! (interleaved rounds, medians), printed as Markdown with the machine load.
//!
//! Needs the server of `ORCHESTRIX_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); every section uses a fresh
//! schema, dropped at the end. `BENCH_SECONDS` sets the length of each timed
//! window (default 3), `BENCH_ROUNDS` the interleaved rounds (default 3),
//! `BENCH_WRITERS` the writer counts (default `1,8,64`), `BENCH_IN_FLIGHT`
//! and `BENCH_MAX_BATCH` the coalescing settings (default: those of
//! `orchestrix_backends::open_store`, 2 and 256), `BENCH_ONLY=commands` stops
//! after the command workload.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use orchestrix::coalesce::CoalesceConfig;
use orchestrix::store::{AppendRequest, ExpectedRevision, Filter};
use orchestrix::{
    Aggregate, Command, CommandExecutor, Event, EventRecord, ExecutorConfig, Store, StreamId,
};
use orchestrix_postgres::{PostgresStore, testing};
use serde::{Deserialize, Serialize};
use serde_json::json;

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "com.acme.bank")]
enum AccountEvent {
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

enum AccountCommand {
    Deposit { id: String, amount: u64 },
}

impl Command for AccountCommand {
    fn aggregate_id(&self) -> String {
        match self {
            Self::Deposit { id, .. } => id.clone(),
        }
    }
}

#[derive(Debug)]
struct Overdrawn;

impl std::fmt::Display for Overdrawn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("overdrawn")
    }
}

impl std::error::Error for Overdrawn {}

#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: u64,
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = Overdrawn;

    fn handle(&self, c: &AccountCommand) -> Result<Vec<AccountEvent>, Overdrawn> {
        match c {
            AccountCommand::Deposit { amount, .. } => {
                Ok(vec![AccountEvent::Deposited { amount: *amount }])
            }
        }
    }

    fn apply(&mut self, e: &AccountEvent) {
        match e {
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => {
                self.balance = self.balance.saturating_sub(*amount)
            }
        }
    }
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Coalescing as `orchestrix_backends::open_store` sets it for PostgreSQL.
fn coalescing() -> CoalesceConfig {
    CoalesceConfig {
        max_batch: env_or("BENCH_MAX_BATCH", 256),
        max_in_flight: env_or("BENCH_IN_FLIGHT", 2),
    }
}

fn rounds() -> usize {
    env_or("BENCH_ROUNDS", 3).max(1)
}

fn window() -> Duration {
    Duration::from_secs(env_or("BENCH_SECONDS", 3) as u64)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A table of the events table's shape (same columns, defaults and
/// indexes) with positions from a plain sequence: what the raw baselines
/// insert into.
async fn raw_table(pg: &PostgresStore) -> String {
    let client = testing::raw_client().await;
    let raw = pg.schema().table("raw_events");
    let seq = pg.schema().table("raw_seq");
    client
        .batch_execute(&format!(
            "CREATE TABLE {raw} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES);
             CREATE SEQUENCE {seq}; ALTER TABLE {raw} ALTER position SET DEFAULT nextval('{}');",
            pg.schema().table("events"),
            seq.replace('"', "")
        ))
        .await
        .expect("raw table");
    raw
}

/// Raw commit rate: `conns` connections, each committing a prepared
/// single-row INSERT per transaction (autocommit: the INSERT is the
/// transaction) into a table of the events table's shape, for one window.
async fn raw_commits(conns: usize) -> f64 {
    let pg = fresh(1).await;
    let raw = raw_table(&pg).await;
    let sql = format!(
        "INSERT INTO {raw} (stream_id, category, revision, event_id, event_type, schema_version, source, time,
                            time_nanos, content_type, data, metadata)
         VALUES ($1, 'account', $2, $3, 'com.acme.bank.AccountEvent.Deposited', 1, '/orchestrix', $4, 0,
                 'application/json', $5, $6)"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for c in 0..conns {
        let (stop, done, sql) = (stop.clone(), done.clone(), sql.clone());
        tasks.push(tokio::spawn(async move {
            let client = testing::raw_client().await;
            let insert = client.prepare(&sql).await.expect("prepare");
            let data = br#"{"Deposited":{"amount":1}}"#.to_vec();
            let metadata = json!({});
            let mut revision = 0_i64;
            while !stop.load(Ordering::Relaxed) {
                let stream = format!("account-{c}_{}", revision % 100);
                client
                    .execute(
                        &insert,
                        &[
                            &stream,
                            &(revision / 100),
                            &uuid::Uuid::now_v7(),
                            &chrono::Utc::now(),
                            &data,
                            &metadata,
                        ],
                    )
                    .await
                    .expect("raw insert");
                done.fetch_add(1, Ordering::Relaxed);
                revision += 1;
            }
        }));
    }
    let n = measure(&done).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("raw writer");
    }
    drop_schema(&pg).await;
    n
}

/// Warms up, then counts `done` over one window; returns the rate.
async fn measure(done: &AtomicU64) -> f64 {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start_count = done.load(Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(window()).await;
    let n = done.load(Ordering::Relaxed) - start_count;
    rate(n, start.elapsed())
}

async fn fresh(pool_size: usize) -> PostgresStore {
    fresh_with(pool_size, true).await
}

async fn fresh_with(pool_size: usize, notify: bool) -> PostgresStore {
    let mut c = testing::config();
    c.pool_size = pool_size;
    c.listen = false;
    c.notify = notify;
    PostgresStore::connect(c).await.expect("connect")
}

async fn drop_schema(store: &PostgresStore) {
    let client = testing::raw_client().await;
    orchestrix_postgres::schema::drop_schema(&client, store.schema())
        .await
        .expect("drop schema");
}

#[allow(clippy::cast_precision_loss)]
fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Accounts each writer cycles through: streams stay a few events long, so
/// the figure measures the append path rather than the decoding of ever
/// longer streams (that is the rehydration figure).
const ACCOUNTS_PER_WRITER: u64 = 100;

/// Commands per second: `writers` tasks, each deciding on its own accounts
/// (so conflicts are rare), for one window.
/// Counts the batches (commits) the coalescer hands to the store.
#[derive(Debug)]
struct Counting {
    inner: PostgresStore,
    batches: AtomicU64,
    appends: AtomicU64,
}

#[async_trait::async_trait]
impl orchestrix::store::EventStore for Counting {
    fn backend(&self) -> &'static str {
        "postgres"
    }
    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> orchestrix::Result<Vec<orchestrix::Result<orchestrix::store::AppendResult>>> {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.appends
            .fetch_add(requests.len() as u64, Ordering::Relaxed);
        self.inner.append_batch(requests).await
    }
    async fn read_stream(
        &self,
        s: &StreamId,
        from: u64,
        d: orchestrix::Direction,
        limit: usize,
    ) -> orchestrix::Result<Vec<orchestrix::RecordedEvent>> {
        self.inner.read_stream(s, from, d, limit).await
    }
    async fn read_all(
        &self,
        after: u64,
        limit: usize,
        f: &Filter,
    ) -> orchestrix::Result<Vec<orchestrix::RecordedEvent>> {
        self.inner.read_all(after, limit, f).await
    }
    async fn stream_revision(&self, s: &StreamId) -> orchestrix::Result<Option<u64>> {
        self.inner.stream_revision(s).await
    }
    async fn head_position(&self) -> orchestrix::Result<u64> {
        self.inner.head_position().await
    }
}

/// Appends per commit of the last coalesced run, for the report.
static APPENDS_PER_COMMIT: std::sync::Mutex<f64> = std::sync::Mutex::new(0.0);

async fn command_workload(writers: usize, coalesced: bool, notify: bool) -> f64 {
    let pg = fresh_with(64, notify).await;
    let counting = Arc::new(Counting {
        inner: pg.clone(),
        batches: AtomicU64::new(0),
        appends: AtomicU64::new(0),
    });
    let backend = orchestrix::store::Backend {
        events: counting.clone(),
        ..pg.backend()
    };
    let mut store = Store::new(backend);
    if coalesced {
        store = store.with_coalescing(coalescing());
    }
    let executor = CommandExecutor::<Account>::new(store, ExecutorConfig::default());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..writers {
        let executor = executor.clone();
        let stop = stop.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("{w}_{}", i % ACCOUNTS_PER_WRITER);
                executor
                    .execute(AccountCommand::Deposit { id, amount: 1 })
                    .await
                    .expect("command");
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    let r = measure(&done).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("writer");
    }
    if coalesced {
        #[allow(clippy::cast_precision_loss)]
        let per_commit = counting.appends.load(Ordering::Relaxed) as f64
            / counting.batches.load(Ordering::Relaxed).max(1) as f64;
        *APPENDS_PER_COMMIT.lock().expect("lock") = per_commit;
    }
    drop_schema(&pg).await;
    r
}

fn records(n: usize) -> Vec<EventRecord> {
    (0..n)
        .map(|i| EventRecord::json("com.acme.bank.Deposited", 1, &json!({ "amount": i })))
        .collect()
}

/// Events per second appended by one writer, `per_append` events per
/// append, through the store; and the same rows through a raw prepared
/// `INSERT ... SELECT FROM unnest(...)` (one statement, one transaction, per
/// append) into a table of the same shape. Medians of interleaved rounds.
async fn append_throughput(per_append: usize) -> (f64, f64) {
    let pg = fresh(4).await;
    let raw = raw_table(&pg).await;
    let client = testing::raw_client().await;
    let insert = client
        .prepare(&format!(
            "INSERT INTO {raw} (stream_id, category, revision, event_id, event_type, schema_version, source, time,
                                time_nanos, content_type, data, metadata)
             SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], $4::uuid[], $5::text[], $6::int8[], $7::text[],
                                  $8::timestamptz[], $9::int2[], $10::text[], $11::bytea[], $12::jsonb[])"
        ))
        .await
        .expect("prepare");
    let stream = StreamId::parse("account-bench").expect("stream");
    let mut expected = ExpectedRevision::NoStream;
    let mut revision = 0_i64;
    let (mut stores, mut raws) = (Vec::new(), Vec::new());
    for _ in 0..rounds() {
        let mut n = 0_u64;
        let start = Instant::now();
        while start.elapsed() < window() {
            let r = orchestrix::store::EventStore::append(
                &pg,
                AppendRequest::new(stream.clone(), expected, records(per_append)),
            )
            .await
            .expect("append");
            expected = ExpectedRevision::Exact(r.last_revision);
            n += per_append as u64;
        }
        stores.push(rate(n, start.elapsed()));

        let mut n = 0_u64;
        let start = Instant::now();
        while start.elapsed() < window() {
            let rs = records(per_append);
            let k = rs.len();
            let streams = vec!["account-bench"; k];
            let categories = vec!["account"; k];
            let revisions: Vec<i64> = (0..k)
                .map(|i| revision + i64::try_from(i).expect("small"))
                .collect();
            let ids: Vec<_> = rs.iter().map(|r| r.id).collect();
            let types: Vec<&str> = rs.iter().map(|r| r.event_type.as_str()).collect();
            let versions = vec![1_i64; k];
            let sources: Vec<&str> = rs.iter().map(|r| r.source.as_str()).collect();
            let times: Vec<_> = rs.iter().map(|r| r.time).collect();
            let nanos = vec![0_i16; k];
            let cts: Vec<&str> = rs.iter().map(|r| r.content_type.as_str()).collect();
            let data: Vec<&[u8]> = rs.iter().map(|r| &r.data[..]).collect();
            let meta: Vec<serde_json::Value> = rs.iter().map(|_| json!({})).collect();
            client
                .execute(
                    &insert,
                    &[
                        &streams,
                        &categories,
                        &revisions,
                        &ids,
                        &types,
                        &versions,
                        &sources,
                        &times,
                        &nanos,
                        &cts,
                        &data,
                        &meta,
                    ],
                )
                .await
                .expect("raw insert");
            revision += i64::try_from(k).expect("small");
            n += k as u64;
        }
        raws.push(rate(n, start.elapsed()));
    }
    drop_schema(&pg).await;
    (median(stores), median(raws))
}

/// Milliseconds to rehydrate an account from a 10,000-event stream (the
/// executor's load: read, decode, apply), and the raw read of the same rows'
/// payloads; medians of interleaved runs.
async fn rehydrate() -> (f64, f64) {
    let pg = fresh(4).await;
    let store = Store::new(pg.backend());
    let stream = StreamId::parse("account-big").expect("stream");
    let mut expected = ExpectedRevision::NoStream;
    for _ in 0..100 {
        let r = store
            .append(&stream, expected, records(100))
            .await
            .expect("append");
        expected = ExpectedRevision::Exact(r.last_revision);
    }
    let executor = CommandExecutor::<Account>::new(store, ExecutorConfig::default());
    let client = testing::raw_client().await;
    let sql = format!(
        "SELECT data FROM {} WHERE stream_id = $1 ORDER BY revision",
        pg.schema().table("events")
    );
    let raw = client.prepare(&sql).await.expect("prepare");
    let (mut loads, mut raws) = (Vec::new(), Vec::new());
    for _ in 0..(10 * rounds()) {
        let start = Instant::now();
        let loaded = executor.load("big").await.expect("load");
        loads.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(loaded.revision, Some(9_999));
        let start = Instant::now();
        let rows = client
            .query(&raw, &[&"account-big"])
            .await
            .expect("raw read");
        raws.push(start.elapsed().as_secs_f64() * 1e3);
        assert_eq!(rows.len(), 10_000);
    }
    drop_schema(&pg).await;
    (median(loads), median(raws))
}

/// Events per second of a projection catching up from position 0 over
/// `total` events into a read-model table, one transaction (batch upsert +
/// checkpoint) per page; and a raw `INSERT ... SELECT` of the same counts.
async fn projection_catch_up(total: usize) -> (f64, f64) {
    let pg = fresh(8).await;
    let store = Store::new(pg.backend());
    let per_append = 100;
    let mut batch = Vec::new();
    for i in 0..total / per_append {
        let stream = StreamId::parse(format!("account-{}", i % 500)).expect("stream");
        batch.push(AppendRequest::new(
            stream,
            ExpectedRevision::Any,
            records(per_append),
        ));
        if batch.len() == 20 {
            for r in store
                .append_batch(std::mem::take(&mut batch))
                .await
                .expect("append")
            {
                r.expect("append");
            }
        }
    }
    for r in store.append_batch(batch).await.expect("append") {
        r.expect("append");
    }
    let counts = pg.schema().table("balances");
    let client = testing::raw_client().await;
    client
        .batch_execute(&format!("CREATE TABLE {counts} (stream_id text PRIMARY KEY, events bigint NOT NULL, total bigint NOT NULL)"))
        .await
        .expect("read model");
    let upsert = format!(
        "INSERT INTO {counts} AS c (stream_id, events, total)
         SELECT s, count(*), sum(a) FROM unnest($1::text[], $2::int8[]) AS u(s, a) GROUP BY s
         ON CONFLICT (stream_id) DO UPDATE SET events = c.events + EXCLUDED.events, total = c.total + EXCLUDED.total"
    );
    let page = 5_000;
    let start = Instant::now();
    let mut applied = 0_usize;
    loop {
        let mut conn = pg.connection().await.expect("conn");
        let tx = pg.begin(&mut conn).await.expect("begin");
        let after = tx
            .load_checkpoint("balances")
            .await
            .expect("checkpoint")
            .unwrap_or(0);
        let events = store
            .read_all(after, page, &Filter::all())
            .await
            .expect("read");
        let Some(last) = events.last().map(|e| e.position) else {
            break;
        };
        let mut streams = Vec::with_capacity(events.len());
        let mut amounts = Vec::with_capacity(events.len());
        for e in &events {
            let AccountEvent::Deposited { amount } = e.decode::<AccountEvent>().expect("decode")
            else {
                continue;
            };
            streams.push(e.stream_id.as_str());
            amounts.push(i64::try_from(amount).expect("amount"));
        }
        tx.execute(&upsert, &[&streams, &amounts])
            .await
            .expect("upsert");
        tx.save_checkpoint("balances", last).await.expect("save");
        tx.commit().await.expect("commit");
        applied += events.len();
    }
    let projection_rate = rate(applied as u64, start.elapsed());
    assert_eq!(applied, total);

    // Raw: the same aggregation straight from the events table in SQL.
    client
        .batch_execute(&format!("TRUNCATE {counts}"))
        .await
        .expect("truncate");
    let start = Instant::now();
    client
        .execute(
            &format!(
                "INSERT INTO {counts} (stream_id, events, total)
                 SELECT stream_id, count(*), sum((convert_from(data, 'UTF8')::jsonb->>'amount')::int8)
                 FROM {} GROUP BY stream_id",
                pg.schema().table("events")
            ),
            &[],
        )
        .await
        .expect("raw projection");
    let raw_rate = rate(total as u64, start.elapsed());
    drop_schema(&pg).await;
    (projection_rate, raw_rate)
}

#[tokio::main]
async fn main() {
    if let Err(reason) = testing::probe().await {
        assert!(
            !testing::in_ci(),
            "PostgreSQL unreachable under CI: {reason}"
        );
        eprintln!("SKIP benchmarks: PostgreSQL unreachable ({reason})");
        return;
    }
    let started = Instant::now();
    let coalesce = coalescing();
    println!("## orchestrix-postgres benchmarks\n");
    println!(
        "window per figure: {:?}; {} interleaved rounds, medians; PostgreSQL at {}; load average at start: {}\n",
        window(),
        rounds(),
        orchestrix::url::redact(&testing::url()),
        loadavg()
    );

    println!("### Command workload (load account, decide, append one event)\n");
    println!(
        "raw: prepared single-row INSERT per transaction (autocommit) into a table of the events table's shape, one connection per writer; \
         coalesced: max_batch {}, max_in_flight {}\n",
        coalesce.max_batch, coalesce.max_in_flight
    );
    println!(
        "| writers | raw commits/s | coalesced (cmd/s) | vs raw | appends per commit | one command per transaction (cmd/s) | vs raw | load average |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---|");
    let writer_counts: Vec<usize> = std::env::var("BENCH_WRITERS")
        .ok()
        .map(|v| v.split(',').filter_map(|w| w.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 8, 64]);
    for writers in writer_counts {
        let (mut raw, mut coalesced, mut single, mut per_commit) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds() {
            raw.push(raw_commits(writers).await);
            coalesced.push(command_workload(writers, true, true).await);
            per_commit.push(*APPENDS_PER_COMMIT.lock().expect("lock"));
            single.push(command_workload(writers, false, true).await);
        }
        let (raw, coalesced, single) = (median(raw), median(coalesced), median(single));
        println!(
            "| {writers} | {raw:.0} | {coalesced:.0} | **{:.2}x** | {:.1} | {single:.0} | {:.2}x | {} |",
            coalesced / raw,
            median(per_commit),
            single / raw,
            loadavg()
        );
    }
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "commands") {
        println!("\nload average at end: {}", loadavg());
        return;
    }
    println!("\n### Append throughput, one writer (events/s)\n");
    println!(
        "| events per append | store append | raw INSERT ... SELECT FROM unnest (same rows) | vs raw | load average |"
    );
    println!("|---:|---:|---:|---:|---|");
    for per_append in [1, 100] {
        let (store, raw) = append_throughput(per_append).await;
        println!(
            "| {per_append} | {store:.0} | {raw:.0} | **{:.2}x** | {} |",
            store / raw,
            loadavg()
        );
    }

    println!("\n### Rehydrating a 10,000-event stream\n");
    let (load, raw) = rehydrate().await;
    println!(
        "| executor load (read, decode, apply) | raw SELECT of the payloads | load / raw | load average |"
    );
    println!("|---:|---:|---:|---|");
    println!(
        "| {load:.1} ms ({:.0} events/s) | {raw:.1} ms | **{:.2}x** | {} |",
        10_000.0 / load * 1e3,
        load / raw,
        loadavg()
    );

    println!("\n### Projection catch-up into a PostgreSQL read model\n");
    let total = 100_000;
    let (projection, raw) = projection_catch_up(total).await;
    println!(
        "| events | projection (read_all pages of 5,000, decode, batch upsert + checkpoint per transaction) | raw INSERT ... SELECT ... GROUP BY | ratio |"
    );
    println!("|---:|---:|---:|---:|");
    println!(
        "| {total} | {projection:.0} events/s | {raw:.0} events/s | {:.2} |",
        projection / raw
    );

    println!(
        "\ntotal bench time: {:.0} s; load average at end: {}",
        started.elapsed().as_secs_f64(),
        loadavg()
    );
}
