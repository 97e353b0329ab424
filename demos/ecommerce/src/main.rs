//! `cargo run -p orchestrix-demo-ecommerce [-- --fail inventory|payment|none] [--store URL] [--bus nats://...]`.

use clap::Parser;
use orchestrix_demo_ecommerce::Failure;

/// An order saga (payment, inventory, confirmation) with compensation.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Which failure to inject into the second order.
    #[arg(long, value_enum, default_value_t = Failure::None)]
    fail: Failure,
    /// Where events are stored: `sqlite://PATH` (embedded file) or `memory://`.
    #[arg(
        long,
        env = "ORCHESTRIX_STORE",
        default_value = "sqlite://ecommerce.db"
    )]
    store: String,
    /// A bus to run the order saga from, e.g.
    /// `nats://127.0.0.1:4222?stream=SHOP&prefix=shop.events&partitions=4`:
    /// events are relayed from the store to it and consumed back. Default:
    /// none, the embedded runtime reads the store.
    #[arg(long, env = "ORCHESTRIX_BUS_URL")]
    bus: Option<String>,
    /// A name for this run; orders and products are named `{name}-{run}`. A fresh one by default.
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
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        format!("{:x}", millis % 0xff_ffff)
    });
    let store = orchestrix_backends::open_store(&args.store).await?;
    let on = orchestrix_demo_ecommerce::running_on(&args.store, args.bus.as_deref());
    println!(
        "Orchestrix e-commerce demo on {on} (run {run}, injected failure: {:?})\n",
        args.fail
    );
    let mut out = std::io::stdout();
    orchestrix_demo_ecommerce::walkthrough::run_on(
        store,
        args.bus.as_deref(),
        &run,
        args.fail,
        &mut out,
    )
    .await?;
    Ok(())
}
