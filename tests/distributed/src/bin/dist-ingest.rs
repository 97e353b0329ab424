//! Ingests a foreign topic of payments (`TOPIC` on `BROKERS`, consumer group
//! `GROUP`, ingest name `NAME`) into the store at `STORE_URL`
//! (`postgres://…`, `scylla://…` or `sqlite://path`) until SIGTERM.
//!
//! A record is JSON `{"payment_id", "account", "cents"}`: a deposit on the
//! account, with the payment id as its business key; anything else is
//! dead-lettered, and so is a deposit of 0 cents (the account rejects it).
//! Once the worker has caught up with the topic it writes its stats and the
//! balances of the accounts it saw to `CAUGHT_UP_FILE` (JSON) and keeps
//! running.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrix::{Aggregate, Application, Command, Event, Store};
use orchestrix_distributed_tests::{env, init_logging};
use orchestrix_kafka::{IngestAction, IngestBuilder, KafkaConfig, KafkaRecord};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "com.legacy.bank")]
enum AccountEvent {
    Deposited { cents: u64 },
}

struct Deposit {
    account: String,
    cents: u64,
}

impl Command for Deposit {
    fn aggregate_id(&self) -> String {
        self.account.clone()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("a deposit must be positive")]
struct NotPositive;

#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: u64,
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Command = Deposit;
    type Event = AccountEvent;
    type Error = NotPositive;

    fn handle(&self, c: &Deposit) -> Result<Vec<AccountEvent>, NotPositive> {
        if c.cents == 0 {
            return Err(NotPositive);
        }
        Ok(vec![AccountEvent::Deposited { cents: c.cents }])
    }

    fn apply(&mut self, e: &AccountEvent) {
        let AccountEvent::Deposited { cents } = e;
        self.balance += cents;
    }
}

#[derive(Deserialize)]
struct Payment {
    payment_id: String,
    account: String,
    cents: u64,
}

async fn open(url: &str) -> Result<Store, Box<dyn std::error::Error>> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = orchestrix_sqlite::SqliteStore::open_path(path).await?;
        return Ok(Store::new(Arc::new(store).backend()));
    }
    if url.starts_with("scylla://") {
        let store = orchestrix_scylla::ScyllaStore::connect_url(url).await?;
        return Ok(Store::new(store.backend()));
    }
    let store = orchestrix_postgres::PostgresStore::connect_url(url).await?;
    Ok(Store::new(store.backend()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_logging();
    let store = open(&env("STORE_URL")?).await?;
    let app = Application::builder(store).aggregate::<Account>().build()?;
    let mut config = KafkaConfig {
        brokers: vec![env("BROKERS")?],
        ..KafkaConfig::default()
    };
    // A SIGKILLed member holds its partitions until its session expires:
    // keep that short (the broker's minimum) so the restarts join quickly.
    // Offsets are committed as by default, about once a second.
    config.consumer.session_timeout_ms = 6_000;
    config.consumer.heartbeat_interval_ms = 1_000;
    let accounts = Arc::new(Mutex::new(BTreeSet::new()));
    let seen = accounts.clone();
    let worker = IngestBuilder::new(config, app.clone(), env("NAME")?)
        .topic(env("TOPIC")?)
        .group_id(env("GROUP")?)
        .start(move |record: &KafkaRecord| {
            let p: Payment = record.json()?;
            seen.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(p.account.clone());
            Ok(IngestAction::command(Deposit {
                account: p.account,
                cents: p.cents,
            })
            .with_id(p.payment_id))
        })
        .await?;
    tracing::info!(group = worker.consumer().group_id(), "ingest started");
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        caught_up = worker.wait_caught_up(Duration::from_secs(300)) => {
            caught_up?;
            let stats = worker.stats();
            let names: Vec<String> = accounts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .iter()
                .cloned()
                .collect();
            let mut balances = serde_json::Map::new();
            for name in names {
                let account = app.load::<Account>(&name).await?;
                balances.insert(name, account.state.balance.into());
            }
            let report = serde_json::json!({
                "received": stats.received,
                "applied": stats.applied,
                "duplicates": stats.duplicates,
                "skipped": stats.skipped,
                "dead_lettered": stats.dead_lettered,
                "dead_letter_duplicates": stats.dead_letter_duplicates,
                "balances": balances,
            });
            tracing::info!(%report, "caught up");
            let path = env("CAUGHT_UP_FILE")?;
            // Written whole, then renamed: the test never reads half a file.
            std::fs::write(format!("{path}.tmp"), report.to_string())?;
            std::fs::rename(format!("{path}.tmp"), &path)?;
            term.recv().await;
        }
        _ = term.recv() => {}
    }
    tracing::info!(stats = ?worker.stats(), "SIGTERM: stopping");
    worker.shutdown().await?;
    Ok(())
}
