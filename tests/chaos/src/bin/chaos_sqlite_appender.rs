//! The appender of the slow-disk case (`tests/sqlite_slow_disk.rs`): the
//! workload's commands on a SQLite store, one at a time, each attempt
//! bounded by a timeout. An attempt that times out or fails transiently is
//! re-sent with the same command id; a command counts as acknowledged only
//! when the executor returned `Ok`. Commands already in the store (from an
//! earlier run of this process, killed) are skipped, so the process can be
//! killed and started again on the same file.
//!
//! Prints `ACK {n}` after each acknowledgement (n: acknowledged so far in
//! the store) and at the end `DONE {json}` with its counts.
//!
//! Settings from the environment: `CHAOS_DB` (the SQLite file),
//! `CHAOS_RUN`, `CHAOS_COUNT`, `CHAOS_TIMEOUT_MS` (per attempt),
//! `CHAOS_SYNC` (`NORMAL` or `FULL`).

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use orchestrix::executor::CommandContext;
use orchestrix::{Application, Store};
use orchestrix_chaos::workload::{self, Counter, CounterCommand};
use orchestrix_sqlite::{SqliteConfig, SqliteStore, Synchronous};

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("environment variable {name} is required"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let path = env("CHAOS_DB")?;
    let run = env("CHAOS_RUN")?;
    let count: u64 = env("CHAOS_COUNT")?.parse()?;
    let timeout = Duration::from_millis(env("CHAOS_TIMEOUT_MS")?.parse()?);
    let sync = match env("CHAOS_SYNC")?.as_str() {
        "FULL" => Synchronous::Full,
        _ => Synchronous::Normal,
    };
    let sqlite =
        Arc::new(SqliteStore::open(SqliteConfig::new(&path).with_synchronous(sync)).await?);
    let store = Store::new(sqlite.backend());
    let app = Application::builder(store.clone())
        .aggregate::<Counter>()
        .build()?;
    let already = workload::stored(&store).await?;
    let (mut timeouts, mut transient, mut duplicates, mut slowest) =
        (0u64, 0u64, 0u64, Duration::ZERO);
    let mut errors: Vec<String> = Vec::new();
    let mut acked = already.len() as u64;
    let mut out = std::io::stdout();
    for seq in (0..count).filter(|s| !already.contains_key(s)) {
        let started = Instant::now();
        loop {
            let command = CounterCommand::Add {
                counter: format!("{run}-{}", seq % 16),
                seq,
            };
            let context = CommandContext::with_id(format!("{run}-cmd-{seq}"));
            match tokio::time::timeout(timeout, app.execute_with(command, context)).await {
                Ok(Ok(outcome)) => {
                    if outcome.duplicate {
                        duplicates += 1;
                    }
                    break;
                }
                Ok(Err(e)) if e.is_transient() => {
                    transient += 1;
                    let text = e.to_string();
                    if errors.len() < 5 && !errors.contains(&text) {
                        errors.push(text);
                    }
                }
                Ok(Err(e)) => anyhow::bail!("command {seq} failed permanently: {e}"),
                Err(_) => timeouts += 1,
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(120),
                "command {seq} not acknowledged within 120 s"
            );
        }
        slowest = slowest.max(started.elapsed());
        acked += 1;
        writeln!(out, "ACK {acked}")?;
    }
    let done = serde_json::json!({
        "timeouts": timeouts,
        "transient": transient,
        "duplicates_recognised": duplicates,
        "slowest_ms": slowest.as_millis(),
        "errors": errors,
        "skipped_as_stored": already.len(),
    });
    writeln!(out, "DONE {done}")?;
    Ok(())
}
