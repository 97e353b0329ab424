//! A slow disk under the SQLite store: an ext4 file system on a loop
//! device whose I/O is throttled for the appending process by a `blkio`
//! cgroup (`orchestrix_chaos::disk`; no device-mapper, no `tc`, no FUSE
//! mount helper on the test machines). The appender (`chaos_sqlite_appender`,
//! a process of its own in the cgroup) runs the workload's commands one at
//! a time, each attempt bounded by a 50 ms timeout and re-sent with the same
//! command id when it times out or fails transiently.
//!
//! Phases: unthrottled for a third of the commands; throttled to 40 I/O
//! operations per second for 120 commands (60 in, the appender is SIGKILLed
//! and started again, still throttled); unthrottled again to the end.
//! Run with `synchronous=NORMAL` (the default: only WAL checkpoints sync) and
//! `synchronous=FULL` (every commit syncs).
//!
//! Checked after reopening the file: `PRAGMA integrity_check` is `ok`; every
//! command the appender saw acknowledged is in the store exactly once and
//! every one of `0..count` is there (a timed-out attempt was neither lost
//! nor doubled by its re-send); the appender finished, so the store recovered
//! without a restart once the disk was fast again. Reported, not asserted:
//! commands per second in each phase, timeouts, re-sends recognised as
//! duplicates, the slowest command.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use orchestrix_chaos::disk::{self, SlowDisk};
use orchestrix_chaos::workload::{self, Figures};
use orchestrix_chaos::{missing, poll, scale};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const IOPS: u64 = 40;
const SLOW_COMMANDS: u64 = 120;

struct Appender {
    child: tokio::process::Child,
    acked: Arc<AtomicU64>,
    done: Arc<Mutex<Option<String>>>,
}

fn start(
    disk: &SlowDisk,
    db: &std::path::Path,
    run: &str,
    count: u64,
    sync: &str,
) -> anyhow::Result<Appender> {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chaos_sqlite_appender"))
        .env("CHAOS_DB", db)
        .env("CHAOS_RUN", run)
        .env("CHAOS_COUNT", count.to_string())
        .env("CHAOS_TIMEOUT_MS", "50")
        .env("CHAOS_SYNC", sync)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting chaos_sqlite_appender")?;
    disk.add(child.id().context("no pid")?)?;
    let (acked, done) = (Arc::new(AtomicU64::new(0)), Arc::new(Mutex::new(None)));
    let out = child.stdout.take().context("no stdout")?;
    {
        let (acked, done) = (acked.clone(), done.clone());
        tokio::spawn(async move {
            let mut lines = BufReader::new(out).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(n) = line.strip_prefix("ACK ").and_then(|n| n.parse().ok()) {
                    acked.store(n, Ordering::Release);
                } else if let Some(json) = line.strip_prefix("DONE ") {
                    *done.lock().unwrap_or_else(PoisonError::into_inner) = Some(json.to_owned());
                }
            }
        });
    }
    Ok(Appender { child, acked, done })
}

async fn reach(appender: &Appender, n: u64, limit: Duration) -> anyhow::Result<Instant> {
    poll(
        &format!("{n} commands acknowledged"),
        limit,
        Duration::from_millis(5),
        || {
            let acked = appender.acked.load(Ordering::Acquire);
            async move { (acked >= n).then(Instant::now) }
        },
    )
    .await
}

#[allow(clippy::cast_precision_loss)]
fn rate(commands: u64, from: Instant, to: Instant) -> f64 {
    commands as f64 / to.duration_since(from).as_secs_f64().max(1e-3)
}

async fn slow_disk_case(case: &str, sync: &str) -> anyhow::Result<()> {
    if !disk::available()
        && missing(
            case,
            "no blkio cgroup, losetup or mkfs.ext4 for a throttled loop device",
        )
    {
        return Ok(());
    }
    let count = scale(600, 6_000);
    let disk = SlowDisk::new(64)?;
    let db = disk.path().join("chaos.db");
    let run = &uuid::Uuid::new_v4().simple().to_string()[..10];

    let started = Instant::now();
    let mut appender = start(&disk, &db, run, count, sync)?;
    let third = count / 3;
    let t_fast = reach(&appender, third, Duration::from_secs(120)).await?;
    disk.throttle(IOPS)?;
    let t_throttled = Instant::now();
    let at_throttle = appender.acked.load(Ordering::Acquire);
    let before_kill = reach(
        &appender,
        at_throttle + SLOW_COMMANDS / 2,
        Duration::from_secs(120),
    )
    .await?;
    appender.child.kill().await?;
    let at_kill = appender.acked.load(Ordering::Acquire);
    let killed = Instant::now();
    let mut appender = start(&disk, &db, run, count, sync)?;
    let back = reach(&appender, at_kill + 1, Duration::from_secs(120)).await?;
    let t_slow_end = reach(
        &appender,
        at_throttle + SLOW_COMMANDS,
        Duration::from_secs(120),
    )
    .await?;
    let at_unthrottle = appender.acked.load(Ordering::Acquire);
    disk.throttle(0)?;
    let status = tokio::time::timeout(Duration::from_secs(120), appender.child.wait())
        .await
        .context("the appender did not finish within 120 s of the disk being fast again")??;
    let t_end = Instant::now();
    anyhow::ensure!(status.success(), "the appender exited with {status}");
    let done = appender
        .done
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .context("no DONE line")?;

    // Reopened: intact, every command once.
    let integrity: String =
        rusqlite::Connection::open(&db)?.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
    let store = orchestrix_worker::open_store(&format!("sqlite://{}", db.display())).await?;
    let stored = workload::stored(&store).await?;
    let figures = Figures::check(count, &stored, &stored);
    println!(
        "CHAOS {case}: commands {count} events {} faults: disk throttled to {IOPS} IOPS for {} commands, appender SIGKILLed once while throttled; lost {} doubled {}; commands/s fast {:.0}, throttled {:.0} (before the kill) and {:.0} (after), fast again {:.0}; first ack after the restart {:?} after the kill; whole case {:?}; integrity_check {integrity}; appender's last run {done}",
        figures.events,
        at_unthrottle - at_throttle,
        figures.lost_in_store,
        figures.doubled_in_store,
        rate(third, started, t_fast),
        rate(
            at_kill.saturating_sub(at_throttle),
            t_throttled,
            before_kill
        ),
        rate(at_unthrottle.saturating_sub(at_kill), back, t_slow_end),
        rate(count - at_unthrottle, t_slow_end, t_end),
        back.duration_since(killed),
        started.elapsed(),
    );
    drop(store);
    drop(disk);
    assert_eq!(integrity, "ok");
    assert_eq!(figures.lost_in_store, 0, "{figures:?}");
    assert_eq!(figures.doubled_in_store, 0, "{figures:?}");
    assert_eq!(figures.events, count, "{figures:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_slow_disk_default_synchronous() -> anyhow::Result<()> {
    slow_disk_case("sqlite-slow-disk-normal", "NORMAL").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_slow_disk_synchronous_full() -> anyhow::Result<()> {
    slow_disk_case("sqlite-slow-disk-full", "FULL").await
}
