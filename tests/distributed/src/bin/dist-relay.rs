//! Relays the store at `STORE_URL` to Kafka (`BROKERS`, topic prefix
//! `PREFIX`) through the transactional publisher (`TXID`) until SIGTERM.

use std::sync::Arc;

use orchestrix::Store;
use orchestrix::relay::{Relay, RelayConfig};
use orchestrix_distributed_tests::{env, init_logging};
use orchestrix_kafka::{KafkaConfig, TransactionalPublisher};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_logging();
    let url = env("STORE_URL")?;
    let mut config = KafkaConfig {
        brokers: vec![env("BROKERS")?],
        ..KafkaConfig::default()
    };
    config.topics.prefix = env("PREFIX")?;
    config.topics.partitions = 4;
    let store = Store::new(
        orchestrix_scylla::ScyllaStore::connect_url(&url)
            .await?
            .backend(),
    );
    let publisher = Arc::new(TransactionalPublisher::new(config, env("TXID")?)?);
    let relay = Relay::start(
        store,
        publisher,
        RelayConfig {
            batch: 100,
            ..RelayConfig::default()
        },
    )
    .await?;
    tracing::info!(from = relay.published(), "relay started");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    term.recv().await;
    tracing::info!(published = relay.published(), "SIGTERM: stopping");
    relay.shutdown().await?;
    Ok(())
}
