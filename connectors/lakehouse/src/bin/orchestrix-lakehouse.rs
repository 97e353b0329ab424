//! `orchestrix-lakehouse`: run the lakehouse sink on a store, or compact and
//! vacuum the lake's tables.
//!
//! ```text
//! orchestrix-lakehouse run --store sqlite://orchestrix.db --lake lake [--exit-when-caught-up]
//! orchestrix-lakehouse optimize --lake lake
//! orchestrix-lakehouse vacuum --lake lake --retention-secs 604800
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use orchestrix::runtime::ProjectionRunner;
use orchestrix_lakehouse::{LakehouseSink, TableLayout, is_table, optimize, vacuum};

/// The Orchestrix lakehouse sink: events into Delta Lake tables.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the sink: reads the store's all-stream into the lake.
    Run {
        /// The event store: `sqlite://PATH`, `postgres://...`.
        #[arg(long, env = "ORCHESTRIX_STORE")]
        store: String,
        /// The lake's root directory (one Delta table per subdirectory).
        #[arg(long)]
        lake: PathBuf,
        /// The sink's name: its Delta app id and dead-letter consumer name.
        #[arg(long, default_value = "lakehouse")]
        name: String,
        /// Events per batch (and at most per Delta commit).
        #[arg(long, default_value_t = 2000)]
        batch: usize,
        /// One table per stream category instead of per event type.
        #[arg(long)]
        per_category: bool,
        /// Partition by this metadata extension as `tenant`.
        #[arg(long)]
        tenant: Option<String>,
        /// Stop once the sink reached the head read at start.
        #[arg(long)]
        exit_when_caught_up: bool,
        /// Crash test: abort the process after writing the files of the Nth
        /// commit and before committing them.
        #[arg(long, hide = true)]
        crash_before_commit: Option<u64>,
    },
    /// Compacts the small files of every table under the lake.
    Optimize {
        /// The lake's root directory.
        #[arg(long)]
        lake: PathBuf,
        /// Target file size in bytes.
        #[arg(long, default_value_t = 128 << 20)]
        target_size: u64,
    },
    /// Deletes unreferenced files older than the retention from every table.
    Vacuum {
        /// The lake's root directory.
        #[arg(long)]
        lake: PathBuf,
        /// Retention in seconds (default one week).
        #[arg(long, default_value_t = 7 * 24 * 3600)]
        retention_secs: u64,
    },
}

fn tables(lake: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(lake).with_context(|| format!("reading {}", lake.display()))? {
        let path = entry?.path();
        if is_table(&path) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Run {
            store,
            lake,
            name,
            batch,
            per_category,
            tenant,
            exit_when_caught_up,
            crash_before_commit,
        } => {
            let store_url = store;
            let store = orchestrix_backends::open_store(&store_url).await?;
            let mut builder = LakehouseSink::builder(store.clone(), &name, &lake)
                .max_rows(batch)
                .source(orchestrix::url::redact(&store_url));
            if per_category {
                builder = builder.layout(TableLayout::PerCategory);
            }
            if let Some(t) = tenant {
                builder = builder.partition_by_tenant(&t);
            }
            if let Some(n) = crash_before_commit {
                let seen = AtomicU64::new(0);
                builder = builder.before_commit(Arc::new(move |_, _| {
                    if seen.fetch_add(1, Ordering::SeqCst) + 1 >= n {
                        std::process::abort();
                    }
                }));
            }
            let sink = Arc::new(builder.build());
            let head = store.head_position().await?;
            let runner = ProjectionRunner::transactional(store.clone(), sink.clone())
                .batch_size(batch)
                .start()
                .await?;
            if exit_when_caught_up {
                runner.wait_until_caught_up(head).await?;
            } else {
                tokio::signal::ctrl_c().await?;
            }
            runner.shutdown().await?;
            let stats = sink.stats();
            println!(
                "rows {} commits {} dead-lettered {} skipped {}",
                stats.rows, stats.commits, stats.dead_lettered, stats.skipped
            );
        }
        Command::Optimize { lake, target_size } => {
            for table in tables(&lake)? {
                let report = optimize(&table, target_size).await?;
                println!(
                    "{}: {} partitions, {} files into {}, {} rows",
                    table.display(),
                    report.partitions,
                    report.files_removed,
                    report.files_added,
                    report.rows
                );
            }
        }
        Command::Vacuum {
            lake,
            retention_secs,
        } => {
            for table in tables(&lake)? {
                let deleted = vacuum(&table, Duration::from_secs(retention_secs)).await?;
                println!("{}: {} files deleted", table.display(), deleted.len());
            }
        }
    }
    Ok(())
}
