//! The embedded pipeline, each figure against a raw baseline of the same run.
//!
//! `cargo bench -p orchestrix-benches --bench pipeline`
//!
//! 1. Command pipeline (load, decide, append) through `CommandExecutor`, on the
//!    memory store and on the SQLite file store (1 writer and 16 concurrent
//!    writers with write coalescing), against raw appends of the same event
//!    (memory) and raw rusqlite INSERT + COMMIT of the same row (SQLite).
//! 2. The original Python framework's bus benchmark shape: 1,000 messages to 5
//!    handlers, through 5 runtime consumers on the memory store (append, store,
//!    subscribe, partition, handle, checkpoint), against a bare in-process bus
//!    of Tokio channels delivering the same messages to 5 handler tasks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Context as _;
use orchestrix::coalesce::CoalesceConfig;
use orchestrix::runtime::{Consumer, Delivery, EventHandler};
use orchestrix::store::{Backend, ExpectedRevision};
use orchestrix::{CommandExecutor, EventRecord, ExecutorConfig, RecordedEvent, Store, StreamId};
use orchestrix_benches::{Account, Deposit, per_second, row};
use orchestrix_sqlite::SqliteStore;

const COMMANDS: u64 = 5_000;
const ACCOUNTS: u64 = 100;

async fn commands(store: &Store, writers: u64, total: u64) -> anyhow::Result<f64> {
    let exec = CommandExecutor::<Account>::new(store.clone(), ExecutorConfig::default());
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let exec = exec.clone();
            tokio::spawn(async move {
                // Each writer owns its accounts, so the figure measures the
                // pipeline, not conflict retries.
                for i in 0..total / writers {
                    let id = format!("w{w}-{}", i % (ACCOUNTS / writers).max(1));
                    exec.execute(Deposit { id, amount: 1 }).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(per_second(total, start.elapsed()))
}

async fn raw_memory_appends(total: u64) -> anyhow::Result<f64> {
    let store = Store::memory();
    let payload = serde_json::json!({ "amount": 1 });
    let start = Instant::now();
    for i in 0..total {
        let stream = StreamId::new("account", &format!("{}", i % ACCOUNTS))?;
        let e = EventRecord::json("com.bench.account.Deposited", 1, &payload);
        store
            .backend()
            .events
            .append(orchestrix::store::AppendRequest::new(
                stream,
                ExpectedRevision::Any,
                vec![e],
            ))
            .await?;
    }
    Ok(per_second(total, start.elapsed()))
}

fn raw_sqlite_inserts(path: &std::path::Path, total: u64) -> anyhow::Result<f64> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.execute_batch(
        "CREATE TABLE raw (position INTEGER PRIMARY KEY AUTOINCREMENT, stream_id TEXT NOT NULL, revision INTEGER NOT NULL,
            event_id TEXT NOT NULL UNIQUE, event_type TEXT NOT NULL, data BLOB NOT NULL, metadata TEXT NOT NULL,
            UNIQUE (stream_id, revision))",
    )?;
    let data = br#"{"amount":1}"#.to_vec();
    let start = Instant::now();
    let mut revisions = vec![0u64; usize::try_from(ACCOUNTS)?];
    for i in 0..total {
        let account = usize::try_from(i % ACCOUNTS)?;
        let tx = conn.unchecked_transaction()?;
        tx.prepare_cached(
            "INSERT INTO raw (stream_id, revision, event_id, event_type, data, metadata) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(rusqlite::params![
            format!("account-{account}"),
            revisions[account],
            format!("{i:032x}"),
            "com.bench.account.Deposited",
            data,
            "{}"
        ])?;
        tx.commit()?;
        revisions[account] += 1;
    }
    Ok(per_second(total, start.elapsed()))
}

#[derive(Debug)]
struct Count(Arc<AtomicU64>, String);

#[async_trait::async_trait]
impl EventHandler for Count {
    fn name(&self) -> &str {
        &self.1
    }

    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> orchestrix::Result<()> {
        std::hint::black_box(event.position);
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn bus_shape() -> anyhow::Result<(f64, f64)> {
    const MESSAGES: u64 = 1_000;
    const HANDLERS: u64 = 5;
    // Raw: an in-process bus made of plain Tokio channels, one per handler
    // task, each message delivered to all five.
    let counters: Vec<Arc<AtomicU64>> =
        (0..HANDLERS).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let start = Instant::now();
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for c in &counters {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(1024);
        let c = c.clone();
        senders.push(tx);
        tasks.push(tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                std::hint::black_box(m);
                c.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for i in 0..MESSAGES {
        for tx in &senders {
            tx.send(i).await?;
        }
    }
    drop(senders);
    for t in tasks {
        t.await?;
    }
    let raw = per_second(MESSAGES * HANDLERS, start.elapsed());

    // Orchestrix: append 1,000 events, five consumers each handle all of them.
    let store = Store::memory();
    let start = Instant::now();
    let mut handles = Vec::new();
    let counters: Vec<Arc<AtomicU64>> =
        (0..HANDLERS).map(|_| Arc::new(AtomicU64::new(0))).collect();
    for (n, c) in counters.iter().enumerate() {
        let handler = Arc::new(Count(c.clone(), format!("bus-bench-{n}")));
        handles.push(Consumer::builder(store.clone(), handler).start().await?);
    }
    let payload = serde_json::json!({ "amount": 1 });
    for i in 0..MESSAGES {
        let stream = StreamId::new("account", &format!("{}", i % 50))?;
        store
            .append(
                &stream,
                ExpectedRevision::Any,
                vec![EventRecord::json(
                    "com.bench.account.Deposited",
                    1,
                    &payload,
                )],
            )
            .await?;
    }
    for h in &handles {
        h.wait_until_caught_up(MESSAGES).await?;
    }
    let orchestrix = per_second(MESSAGES * HANDLERS, start.elapsed());
    for h in handles {
        h.shutdown().await?;
    }
    anyhow::ensure!(
        counters
            .iter()
            .all(|c| c.load(Ordering::Relaxed) == MESSAGES),
        "every handler saw every message"
    );
    Ok((raw, orchestrix))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    println!("| benchmark | rate | ratio |");
    println!("|---|---|---|");

    let raw_mem = raw_memory_appends(COMMANDS).await?;
    row(
        "memory: raw append of one event (baseline)",
        raw_mem,
        "events/s",
        None,
    );
    let mem = commands(&Store::memory(), 1, COMMANDS).await?;
    row(
        "memory: command pipeline, 1 writer",
        mem,
        "cmds/s",
        Some(raw_mem),
    );
    let mem16 = commands(&Store::memory(), 16, COMMANDS).await?;
    row(
        "memory: command pipeline, 16 writers",
        mem16,
        "cmds/s",
        Some(raw_mem),
    );

    let raw_sql = raw_sqlite_inserts(&dir.path().join("raw.db"), COMMANDS).context("raw sqlite")?;
    row(
        "sqlite: raw INSERT + COMMIT per row (baseline)",
        raw_sql,
        "rows/s",
        None,
    );
    let open = |name: &str| {
        let path = dir.path().join(name);
        async move {
            anyhow::Ok(Backend::from_all(Arc::new(
                SqliteStore::open_path(path).await?,
            )))
        }
    };
    let one = Store::new(open("one.db").await?);
    let sql1 = commands(&one, 1, COMMANDS).await?;
    row(
        "sqlite: command pipeline, 1 writer",
        sql1,
        "cmds/s",
        Some(raw_sql),
    );
    let coalesced = Store::new(open("many.db").await?).with_coalescing(CoalesceConfig::default());
    let sql16 = commands(&coalesced, 16, COMMANDS).await?;
    row(
        "sqlite: command pipeline, 16 writers, coalesced commits",
        sql16,
        "cmds/s",
        Some(raw_sql),
    );

    let (raw_bus, bus) = bus_shape().await?;
    row(
        "bus shape: 1,000 messages x 5 handlers, Tokio channels (baseline)",
        raw_bus,
        "deliv/s",
        None,
    );
    row(
        "bus shape: 1,000 messages x 5 handlers, 5 runtime consumers",
        bus,
        "deliv/s",
        Some(raw_bus),
    );
    Ok(())
}
