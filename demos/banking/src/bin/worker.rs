#![allow(clippy::inconsistent_digit_grouping)] // amounts in cents: `100_00` is 100.00
//! `orchestrix-demo-banking-worker`: the bank's balances projection and
//! transfer saga as a long-running worker (see `orchestrix-worker`):
//! `/healthz`, `/readyz`, `/metrics` and `/balances` on `http.listen`, JSON
//! logs with trace ids, OpenTelemetry traces (`OTEL_*`; build with
//! `--features otlp` to export), graceful shutdown on SIGTERM.
//!
//! ```text
//! orchestrix-demo-banking-worker --config worker.toml
//! ORCHESTRIX_STORE_URL=postgres://postgres@127.0.0.1:5432/test?schema=bank orchestrix-demo-banking-worker
//! ```
//!
//! Without a bus the worker reads the store's all-stream, which PostgreSQL
//! shares between processes: run one worker per store (each one runs every
//! consumer; the embedded runtime has no cross-process partition
//! assignment). With `--bus nats://...` (or `bus.url`) the saga and the
//! projection consume from NATS JetStream, partitions shared among every
//! worker of the same consumer group, while the process that executes the
//! commands (or one worker, `--relay`) relays the store to the bus: the
//! projection and saga workers run as separate processes. The balances read
//! model lives in memory, so its consumer starts from the first event.
//! `--traffic-every-ms N` also opens accounts and requests a transfer every
//! N ms, so that a fresh compose set-up has something to show.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::routing::get;
use clap::Parser;
use orchestrix::runtime::{ConsumerConfig, StartFrom};
use orchestrix::saga::SagaConfig;
use orchestrix::telemetry::SagaMetrics;
use orchestrix::{Application, ReadModel};
use orchestrix_demo_banking::{
    AccountCommand, Balances, BankModule, TransferCommand, TransferSaga, money,
};
use orchestrix_worker::{Telemetry, Worker, WorkerConfig, open_store};

/// Runs the bank's projections and sagas as a worker.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The worker configuration (TOML); `ORCHESTRIX_*` variables override it.
    #[arg(long, short, env = "ORCHESTRIX_CONFIG")]
    config: Option<PathBuf>,
    /// The event store (overrides `store.url`): `postgres://...?schema=bank`,
    /// `sqlite://PATH` or `memory://`.
    #[arg(long)]
    store: Option<String>,
    /// A bus to consume from (overrides `bus.url`), e.g.
    /// `nats://127.0.0.1:4222?stream=BANK&prefix=bank.events&partitions=4`:
    /// the saga and the projection run as partitioned consumers of it (one
    /// group each, shared with the other workers), the saga's timers here.
    /// Another process relays the store's events to the bus, unless
    /// `--relay`.
    #[arg(long)]
    bus: Option<String>,
    /// With `--bus`: also relay the store's events to the bus (`bus.relay`).
    #[arg(long)]
    relay: bool,
    /// Consumer partitions (parallel streams) per consumer.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Generate demo traffic: a new pair of accounts and a transfer this
    /// often (milliseconds).
    #[arg(long)]
    traffic_every_ms: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = WorkerConfig::load(args.config.as_deref())?;
    if let Some(store) = args.store {
        config.store.url = store;
    }
    if let Some(bus) = args.bus {
        config.bus.url = bus;
    }
    if args.relay {
        config.bus.relay = true;
    }
    if config.service_name == WorkerConfig::default().service_name {
        config.service_name = "orchestrix-demo-banking-worker".to_owned();
    }
    let telemetry = Telemetry::builder(&config.service_name)
        .log(config.log.clone())
        .init()?;
    let store = open_store(&config.store.url).await.with_context(|| {
        format!(
            "opening the store `{}`",
            orchestrix::url::redact(&config.store.url)
        )
    })?;
    let consumer = ConsumerConfig::default()
        .partitions(args.partitions)
        .start_from(StartFrom::Beginning);
    let module = BankModule::new(TransferSaga::default(), SagaConfig::default(), consumer);
    let app = Application::builder(store).module(module).build()?;
    let engine = app.saga::<TransferSaga>()?;
    let balances = app.read_model::<Balances>()?;

    let traffic = args
        .traffic_every_ms
        .map(|ms| tokio::spawn(traffic(app.clone(), Duration::from_millis(ms.max(1)))));
    let result = Worker::new(app)
        .config(config)
        .metrics_source(Arc::new(SagaMetrics::new(engine)))
        .routes(balances_route(balances))
        .avro_schemas(orchestrix_demo_banking::schemas::avro_schemas())
        // Read-only unless ORCHESTRIX_CONSOLE_TOKEN is set.
        .console(std::env::var("ORCHESTRIX_CONSOLE_TOKEN").ok())
        .run()
        .await;
    if let Some(t) = traffic {
        t.abort();
    }
    telemetry.shutdown();
    Ok(result?)
}

/// `GET /balances`: the read model as JSON.
fn balances_route(balances: ReadModel<Balances>) -> Router {
    Router::new().route(
        "/balances",
        get(move || {
            let balances = balances.clone();
            async move {
                let rows = match balances.all().await {
                    Ok(rows) => rows,
                    Err(e) => {
                        return (
                            StatusCode::SERVICE_UNAVAILABLE,
                            [(header::CONTENT_TYPE, "text/plain")],
                            e.to_string(),
                        );
                    }
                };
                let rows: serde_json::Map<String, serde_json::Value> = rows
                    .into_iter()
                    .map(|(id, row)| {
                        let value = serde_json::json!({
                            "owner": row.owner,
                            "balance": money(row.balance),
                            "status": format!("{:?}", row.status),
                        });
                        (id, value)
                    })
                    .collect();
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/json")],
                    serde_json::Value::Object(rows).to_string(),
                )
            }
        }),
    )
}

/// Opens two accounts, funds one and requests a transfer, every `every`.
async fn traffic(app: Application, every: Duration) {
    let run = std::process::id();
    for n in 0u64.. {
        let (a, b) = (format!("t{run}-{n}-a"), format!("t{run}-{n}-b"));
        let commands = [
            AccountCommand::Open {
                account: a.clone(),
                owner: "Ada".into(),
            },
            AccountCommand::Open {
                account: b.clone(),
                owner: "Bob".into(),
            },
            AccountCommand::Deposit {
                account: a.clone(),
                amount: 100_00,
            },
        ];
        for command in commands {
            if let Err(e) = app.execute(command).await {
                tracing::warn!(error = %e, "demo traffic: account command failed");
            }
        }
        let request = TransferCommand::Request {
            transfer: format!("t{run}-{n}"),
            from: a,
            to: b,
            amount: 25_00,
        };
        if let Err(e) = app.execute(request).await {
            tracing::warn!(error = %e, "demo traffic: transfer request failed");
        }
        tokio::time::sleep(every).await;
    }
}
