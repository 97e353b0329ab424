//! A PostgreSQL cluster of this case's own restarted twice mid-run, once
//! with `pg_ctl stop -m fast` and once with `-m immediate` (crash recovery
//! at the next start), under a producer that sends numbered commands (each
//! re-sent with the same command id after a transient failure) and an
//! embedded consumer of the all-stream. Checked: every acknowledged command
//! is in the store exactly once, the consumer received every stored event,
//! and the same store handle (its pool) works after each restart without a
//! process restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use orchestrix::Application;
use orchestrix::runtime::Runtime;
use orchestrix_chaos::services::{PgStop, Postgres};
use orchestrix_chaos::workload::{self, Counter, Figures, Recorder};
use orchestrix_chaos::{missing, poll, scale};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_restarted_fast_and_immediate_mid_run() -> anyhow::Result<()> {
    if !Postgres::available()
        && missing(
            "postgres_restarted_fast_and_immediate_mid_run",
            "no PostgreSQL 15 under /usr/lib/postgresql/15/bin or no `postgres` user",
        )
    {
        return Ok(());
    }
    let count = scale(2_000, 20_000);
    let pg = Postgres::start().await?;
    let store = orchestrix_worker::open_store(&format!("{}?schema=chaos", pg.url())).await?;
    let recorder = Recorder::new();
    let app = Application::builder(store.clone())
        .aggregate::<Counter>()
        .handler(recorder.clone())
        .build()?;
    let runtime = Runtime::start(&app).await?;
    let run = &uuid::Uuid::new_v4().simple().to_string()[..10];

    let acknowledged = Arc::new(AtomicU64::new(0));
    let producer = {
        let (app, run, acked) = (app.clone(), run.to_owned(), acknowledged.clone());
        tokio::spawn(async move {
            workload::produce(&app, &run, count, 16, Duration::from_secs(90), |n| {
                acked.store(n, Ordering::Relaxed);
            })
            .await
        })
    };
    let mut outages = Vec::new();
    for (mode, at) in [
        (PgStop::Fast, count / 3),
        (PgStop::Immediate, 2 * count / 3),
    ] {
        poll(
            "commands before the restart",
            Duration::from_secs(90),
            Duration::from_millis(10),
            || {
                let n = acknowledged.load(Ordering::Relaxed);
                async move { (n >= at).then_some(()) }
            },
        )
        .await?;
        let stopped = Instant::now();
        pg.restart(mode).await?;
        let listening = stopped.elapsed();
        let before = acknowledged.load(Ordering::Relaxed);
        // Time to recover: from the stop until a command is acknowledged
        // after the server listens again.
        let recovered = poll(
            "a command acknowledged after the restart",
            Duration::from_secs(90),
            Duration::from_millis(10),
            || {
                let n = acknowledged.load(Ordering::Relaxed);
                async move { (n > before).then(|| stopped.elapsed()) }
            },
        )
        .await?;
        outages.push((mode, listening, recovered));
    }
    let produced = producer.await??;
    let store_truth = workload::stored(&store).await?;
    let head = store.head_position().await?;
    runtime.wait_until_caught_up(head).await?;
    let figures = Figures::check(count, &store_truth, &recorder.deliveries());
    runtime.shutdown().await?;
    println!(
        "CHAOS postgres-restart: commands {} events {} faults {} lost_in_store {} doubled_in_store {} lost_by_consumer {} redelivered {} transient_failures {} (classed permanent: {}) duplicates_recognised {} longest_stall {:?} outages {:?}",
        figures.commands,
        figures.events,
        outages.len(),
        figures.lost_in_store,
        figures.doubled_in_store,
        figures.lost_by_consumer,
        figures.redelivered,
        produced.transient_failures,
        produced.misclassified,
        produced.duplicates_recognised,
        produced.longest_stall,
        outages,
    );
    println!("CHAOS postgres-restart: errors seen: {:?}", produced.errors);
    assert_eq!(figures.lost_in_store, 0, "{figures:?}");
    assert_eq!(figures.doubled_in_store, 0, "{figures:?}");
    assert_eq!(figures.lost_by_consumer, 0, "{figures:?}");
    assert_eq!(figures.events, count, "{figures:?}");
    Ok(())
}
