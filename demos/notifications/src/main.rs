//! `cargo run -p orchestrix-demo-notifications [-- --store URL] [--bus URL]`:
//! notifications through a flaky provider, an outage, dead letters replayed.

use std::time::Duration;

use clap::Parser;
use orchestrix_demo_notifications::Flakiness;
use orchestrix_demo_notifications::walkthrough::{self, Options};

/// Notifications over a flaky provider: retries, dead letters, replay.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where events are stored: `sqlite://PATH`, `postgres://...`, `memory://`.
    #[arg(
        long,
        env = "ORCHESTRIX_STORE",
        default_value = "sqlite://notifications.db"
    )]
    store: String,
    /// A bus to run the dispatcher from (`nats://...`, `kafka://...`).
    #[arg(long, env = "ORCHESTRIX_BUS_URL")]
    bus: Option<String>,
    /// Notifications requested while the provider is up.
    #[arg(long, default_value_t = 60)]
    count: usize,
    /// Notifications requested during the outage.
    #[arg(long, default_value_t = 6)]
    outage: usize,
    /// Share of provider calls that fail (0.0–1.0).
    #[arg(long, default_value_t = 0.3)]
    failure_rate: f64,
    /// Share of deliveries whose acknowledgement is lost (0.0–1.0).
    #[arg(long, default_value_t = 0.1)]
    lost_ack_rate: f64,
    /// Milliseconds per provider call.
    #[arg(long, default_value_t = 2)]
    latency_ms: u64,
    /// Messages per second per channel.
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// Seed of the provider's dice.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// A name for this run; notification ids are `{run}-{n}`. Fresh by default.
    #[arg(long)]
    run: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        (0.0..1.0).contains(&args.failure_rate) && (0.0..=1.0).contains(&args.lost_ack_rate),
        "--failure-rate must be in [0, 1) and --lost-ack-rate in [0, 1]"
    );
    anyhow::ensure!(args.rate > 0, "--rate must be above 0");
    let run = args.run.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("{:x}", nanos % 0xfff_ffff)
    });
    let store = orchestrix_backends::open_store(&args.store).await?;
    let on = match &args.bus {
        Some(bus) => format!(
            "{}, bus {}",
            orchestrix::url::redact(&args.store),
            orchestrix::url::redact(bus)
        ),
        None => orchestrix::url::redact(&args.store),
    };
    println!("Orchestrix notifications demo on {on} (run {run})\n");
    let options = Options {
        bus: args.bus,
        count: args.count,
        outage: args.outage,
        flakiness: Flakiness {
            failure_rate: args.failure_rate,
            lost_ack_rate: args.lost_ack_rate,
            latency: Duration::from_millis(args.latency_ms),
            seed: args.seed,
        },
        rate_per_channel: args.rate,
        ..Options::default()
    };
    let mut out = std::io::stdout();
    walkthrough::run(store, options, &run, &mut out).await?;
    Ok(())
}
