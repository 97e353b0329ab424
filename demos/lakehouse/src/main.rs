//! `cargo run -p orchestrix-demo-lakehouse [-- --store URL] [--lake DIR]`:
//! datasets under data contracts into Delta tables, a quarantine, a GDPR
//! forget, a report. `optimize` and `vacuum` subcommands maintain the lake.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use orchestrix_demo_lakehouse::{Options, run};
use orchestrix_gdpr::keystore::KeyStore;
use orchestrix_gdpr::keystore::sqlite::SqliteKeyStore;
use orchestrix_lakehouse::{is_table, optimize, vacuum};

/// Lakehouse demo: data contracts, quality quarantine, Delta tables, GDPR forget.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where events are stored: `sqlite://PATH`, `postgres://...`.
    #[arg(
        long,
        env = "ORCHESTRIX_STORE",
        default_value = "sqlite://lakehouse.db"
    )]
    store: String,
    /// The lake's root directory (one Delta table per dataset). Default:
    /// `lakehouse-lake` for the default store, `lakehouse-lake-{hash of the
    /// store URL}` for any other (a lake is fed from one store).
    #[arg(long)]
    lake: Option<PathBuf>,
    /// The SQLite key store of the personal-data keys.
    #[arg(long, default_value = "lakehouse-keys.db")]
    keys: PathBuf,
    /// Customers registered.
    #[arg(long, default_value_t = 12)]
    customers: usize,
    /// Orders placed.
    #[arg(long, default_value_t = 60)]
    orders: usize,
    /// A name for this run; ids are `{run}-c1`, ... Fresh by default.
    #[arg(long)]
    run: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compacts the small files of every table of the lake.
    Optimize,
    /// Deletes the lake's unreferenced files older than the retention.
    Vacuum {
        /// Retention in seconds (default one week).
        #[arg(long, default_value_t = 7 * 24 * 3600)]
        retention_secs: u64,
    },
}

/// The lake of a store when `--lake` is not given: a lake is fed from one
/// store (positions are the store's), so each store URL gets its own.
fn default_lake(store: &str) -> PathBuf {
    if store == "sqlite://lakehouse.db" {
        return PathBuf::from("lakehouse-lake");
    }
    // FNV-1a: stable across runs and builds (std's hasher is not).
    let hash = store.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    PathBuf::from(format!("lakehouse-lake-{:08x}", hash >> 32))
}

fn tables(lake: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(lake)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_table(p))
        .collect();
    out.sort();
    Ok(out)
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
    let mut args = Args::parse();
    let lake = args
        .lake
        .take()
        .unwrap_or_else(|| default_lake(&args.store));
    match args.command {
        Some(Command::Optimize) => {
            for table in tables(&lake)? {
                let r = optimize(&table, 128 << 20).await?;
                println!(
                    "{}: {} files into {} ({} rows)",
                    table.display(),
                    r.files_removed,
                    r.files_added,
                    r.rows
                );
            }
            return Ok(());
        }
        Some(Command::Vacuum { retention_secs }) => {
            for table in tables(&lake)? {
                let deleted = vacuum(&table, Duration::from_secs(retention_secs)).await?;
                println!("{}: {} files deleted", table.display(), deleted.len());
            }
            return Ok(());
        }
        None => {}
    }
    let run_id = args.run.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("{:x}", nanos % 0xfff_ffff)
    });
    let store = orchestrix_backends::open_store(&args.store).await?;
    let keys: Arc<dyn KeyStore> = Arc::new(SqliteKeyStore::open(&args.keys)?);
    let options = Options {
        store_url: args.store.clone(),
        lake,
        run: run_id,
        customers: args.customers,
        orders: args.orders,
    };
    let report = run(store, keys, &options).await?;
    print!("{}", report.render(&options));
    anyhow::ensure!(
        report.forgotten_erased_rest_intact && report.others_readable,
        "the forget did not read as expected in the lake"
    );
    Ok(())
}
