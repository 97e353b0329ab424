//! `cargo run -p orchestrix-demo-banking [-- --store URL] [--bus nats://...]`:
//! the banking walk-through on the embedded store, its saga and projection
//! on the embedded runtime or consuming from a bus.

use clap::Parser;

/// Accounts, a transfer saga with reversal, and a balances projection.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where events are stored: `sqlite://PATH` (embedded file) or `memory://`.
    #[arg(long, env = "ORCHESTRIX_STORE", default_value = "sqlite://banking.db")]
    store: String,
    /// A bus to run the saga and the projection from, e.g.
    /// `nats://127.0.0.1:4222?stream=BANK&prefix=bank.events&partitions=4`:
    /// events are relayed from the store to it and consumed back. Default:
    /// none, the embedded runtime reads the store.
    #[arg(long, env = "ORCHESTRIX_BUS_URL")]
    bus: Option<String>,
    /// A name for this run; accounts are named `{name}-{run}`. A fresh one by default.
    #[arg(long)]
    run: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let run = args.run.unwrap_or_else(|| {
        let millis = chrono_free_millis();
        format!("{:x}", millis % 0xff_ffff)
    });
    let store = orchestrix_backends::open_store(&args.store).await?;
    let on = orchestrix_demo_banking::running_on(&args.store, args.bus.as_deref());
    println!("Orchestrix banking demo on {on} (run {run})\n");
    let mut out = std::io::stdout();
    let options = orchestrix_demo_banking::BankOptions {
        bus: args.bus,
        ..Default::default()
    };
    orchestrix_demo_banking::walkthrough::run_with(store, options, &run, &mut out).await?;
    Ok(())
}

fn chrono_free_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}
