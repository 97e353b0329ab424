//! A Kafka consumer-group member for the fencing cases
//! (`tests/kafka_fencing.rs`): a [`ConsumerWorker`] whose handler is the
//! fenced, checkpointed read model of `orchestrix_chaos::fenced`, with a
//! short session timeout. Prints `MEMBER READY` once started; on SIGTERM it
//! shuts down (drain, commit, leave) and prints its statistics.
//!
//! Settings from the environment: `CHAOS_BROKERS`, `CHAOS_TOPIC`,
//! `CHAOS_GROUP`, `CHAOS_DB` (the read model's PostgreSQL connection string), `CHAOS_NAME`,
//! `CHAOS_SESSION_MS`, `CHAOS_WORK_MS` (simulated work per record).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use orchestrix_chaos::fenced::FencedReadModel;
use orchestrix_kafka::config::RetryConfig;
use orchestrix_kafka::{ConsumerWorker, KafkaConfig};

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
    let session: u64 = env("CHAOS_SESSION_MS")?.parse()?;
    let work: u64 = env("CHAOS_WORK_MS")?.parse()?;
    let mut config = KafkaConfig {
        brokers: vec![env("CHAOS_BROKERS")?],
        client_id: name.clone(),
        ..KafkaConfig::default()
    };
    config.consumer.session_timeout_ms = session;
    config.consumer.heartbeat_interval_ms = (session / 6).max(100);
    config.consumer.commit_interval_ms = 500;
    config.consumer.retry = RetryConfig::Fixed {
        max_attempts: 50,
        delay_ms: 50,
    };
    config.topics.create = false;
    let model = Arc::new(FencedReadModel::new(
        &env("CHAOS_DB")?,
        &name,
        Duration::from_millis(work),
    ));
    let consumer = ConsumerWorker::builder(config)
        .topic(env("CHAOS_TOPIC")?)
        .group_id(env("CHAOS_GROUP")?)
        .start_with_offsets(model)
        .await?;
    println!("MEMBER READY");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    term.recv().await;
    let stats = consumer.stats();
    consumer.shutdown().await?;
    println!("MEMBER STOPPED {stats:?}");
    Ok(())
}
