//! `cargo run -p orchestrix-demo-banking [-- --store URL]`: the banking
//! walk-through on the embedded store.

use clap::Parser;

/// Accounts, a transfer saga with reversal, and a balances projection.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where events are stored: `sqlite://PATH` (embedded file) or `memory://`.
    #[arg(long, env = "ORCHESTRIX_STORE", default_value = "sqlite://banking.db")]
    store: String,
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
    println!("Orchestrix banking demo on {} (run {run})\n", args.store);
    let mut out = std::io::stdout();
    orchestrix_demo_banking::walkthrough::run(store, &run, &mut out).await?;
    Ok(())
}

fn chrono_free_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default()
}
