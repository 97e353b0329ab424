//! A NATS consumer-group member for `tests/nats_fencing.rs`: a
//! [`NatsConsumer`] (partition leases in a key-value bucket) whose handler is
//! the revision-guarded read model of `orchestrix_chaos::fenced`, with a
//! short lease TTL. Prints `MEMBER READY` once started, `OWN [..]` whenever
//! its partitions change, and on SIGTERM shuts down and prints
//! `MEMBER STOPPED {stats}`.
//!
//! Settings from the environment: `CHAOS_NATS` (the bus URL with stream,
//! prefix and partitions), `CHAOS_GROUP`, `CHAOS_DB` (the read model's
//! PostgreSQL connection string), `CHAOS_NAME`, `CHAOS_TTL_MS`,
//! `CHAOS_WORK_MS`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use orchestrix::url::BackendUrl;
use orchestrix_chaos::fenced::RevisionGuardedModel;
use orchestrix_nats::{NatsConfig, NatsConsumer};

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("environment variable {name} is required"))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let name = env("CHAOS_NAME")?;
    let ttl: u64 = env("CHAOS_TTL_MS")?.parse()?;
    let work: u64 = env("CHAOS_WORK_MS")?.parse()?;
    let mut config = NatsConfig::from_url(&BackendUrl::parse(&env("CHAOS_NATS")?)?)?;
    config.leases.ttl_ms = ttl;
    config.leases.heartbeat_ms = ttl / 3;
    config.leases.worker_id = Some(name.clone());
    config.consumer.ack_wait_ms = ttl;
    let model = Arc::new(RevisionGuardedModel::new(
        &env("CHAOS_DB")?,
        &name,
        Duration::from_millis(work),
    ));
    let consumer = NatsConsumer::builder(config)
        .handler(model)
        .group(env("CHAOS_GROUP")?)
        .start()
        .await?;
    println!("MEMBER READY");
    let mut owned = consumer.watch_partitions();
    tokio::spawn(async move {
        loop {
            let now = owned.borrow_and_update().clone();
            println!("OWN {now:?}");
            if owned.changed().await.is_err() {
                break;
            }
        }
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    term.recv().await;
    let stats = consumer.stats();
    consumer.shutdown().await?;
    println!("MEMBER STOPPED {stats:?}");
    Ok(())
}
