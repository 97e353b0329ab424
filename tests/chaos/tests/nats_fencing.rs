//! Zombie fencing on NATS: two members of one consumer group in processes
//! of their own (`chaos_nats_member`), partitions assigned by leases in a
//! JetStream key-value bucket (TTL 3 s, heartbeat 1 s, ack wait 3 s), a
//! PostgreSQL read model guarded by each stream's last applied revision.
//! The test process runs the commands and the relay to a NATS server of the
//! case's own. Member `a` is SIGSTOPped while it owns partitions and holds a
//! backlog; SIGCONT once member `b` owns every partition and applied events
//! on them.
//!
//! Checked: the read model equals the store's truth exactly (every event
//! applied once, none lost), no stream saw a revision beyond its next one
//! (no event skipped, no two members handling one partition out of order);
//! the zombie gets partitions again. Counted: events the zombie handled
//! after SIGCONT that were already applied (refused by the guard).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use orchestrix::Application;
use orchestrix_backends::{BusOptions, start_on_bus};
use orchestrix_chaos::fenced::{self, GuardedSnapshot};
use orchestrix_chaos::member::Member;
use orchestrix_chaos::services::{Nats, Postgres};
use orchestrix_chaos::workload::{self, Counter};
use orchestrix_chaos::{missing, poll, scale};

const TTL_MS: u64 = 3_000;
const PARTITIONS: usize = 4;

async fn snapshot(client: &tokio_postgres::Client) -> Option<GuardedSnapshot> {
    fenced::guarded_snapshot(client).await.ok()
}

/// The partitions a member last said it owns.
fn owns(member: &Member) -> Vec<u32> {
    member
        .last_line("OWN ")
        .and_then(|l| serde_json::from_str(l.trim_start_matches("OWN ")).ok())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[allow(clippy::too_many_lines)]
async fn nats_member_stopped_beyond_lease_ttl() -> anyhow::Result<()> {
    let case = "nats_member_stopped_beyond_lease_ttl";
    if !Nats::available() && missing(case, "no /usr/sbin/nats-server") {
        return Ok(());
    }
    if !Postgres::available() && missing(case, "no PostgreSQL 15 for the read model") {
        return Ok(());
    }
    let count = scale(2_000, 20_000);
    let nats = Nats::start().await?;
    let pg = Postgres::start().await?;
    fenced::create_guarded(&pg.socket_url()).await?;
    let model = fenced::connect(&pg.socket_url()).await?;
    let model = &model;
    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("chaos.db").display());
    let store = orchestrix_worker::open_store(&store_url).await?;
    let app = Application::builder(store.clone())
        .aggregate::<Counter>()
        .build()?;
    let run = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let bus_url = format!(
        "{}?stream=CHAOS_{run}&prefix=chaos.{run}&partitions={PARTITIONS}",
        nats.url()
    );
    let bus = start_on_bus(&app, &bus_url, BusOptions::producer()).await?;
    let env = vec![
        ("CHAOS_NATS", bus_url.clone()),
        ("CHAOS_GROUP", format!("chaos_{run}_guarded")),
        ("CHAOS_DB", pg.socket_url()),
        ("CHAOS_TTL_MS", TTL_MS.to_string()),
        ("CHAOS_WORK_MS", scale(15, 5).to_string()),
    ];
    let bin = env!("CARGO_BIN_EXE_chaos_nats_member");
    let a = Member::start(bin, "a", &env, dir.path(), None).await?;
    let b = Member::start(bin, "b", &env, dir.path(), None).await?;
    poll(
        "both members owning partitions",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            let (na, nb) = (owns(&a).len(), owns(&b).len());
            async move { (na > 0 && nb > 0 && na + nb == PARTITIONS).then_some(()) }
        },
    )
    .await?;

    let acknowledged = Arc::new(AtomicU64::new(0));
    let producer = {
        let (app, run, acked) = (app.clone(), run.to_owned(), acknowledged.clone());
        tokio::spawn(async move {
            workload::produce(&app, &run, count, 16, Duration::from_secs(60), |n| {
                acked.store(n, Ordering::Relaxed);
            })
            .await
        })
    };
    let backlog = poll(
        "a third of the commands, member a applying, a backlog",
        Duration::from_secs(60),
        Duration::from_millis(10),
        || {
            let n = acknowledged.load(Ordering::Relaxed);
            async move {
                let s = snapshot(model).await.unwrap_or_default();
                let applied_a = s.applied_by.get("a").copied().unwrap_or(0);
                let applied: u64 = s.applied_by.values().sum();
                // (A machine whose consumers outpace the producer gets
                // there only when every command is in: then the backlog
                // is whatever is left.)
                let behind = n >= applied + 200 || n == count;
                (n >= count / 3 && applied_a > 0 && behind).then_some(n.saturating_sub(applied))
            }
        },
    )
    .await?;
    let a_partitions = owns(&a);
    let applied_by_b_before = snapshot(model)
        .await
        .and_then(|s| s.applied_by.get("b").copied())
        .unwrap_or(0);
    a.signal("-STOP")?;
    let stopped = Instant::now();
    let takeover = poll(
        "member b owning every partition",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || {
            let n = owns(&b).len();
            async move { (n == PARTITIONS).then(|| stopped.elapsed()) }
        },
    )
    .await?;
    poll(
        "member b applying events after the takeover",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || async {
            let s = snapshot(model).await?;
            let more = s
                .applied_by
                .get("b")
                .copied()
                .unwrap_or(0)
                .saturating_sub(applied_by_b_before);
            (more >= (backlog / 2).min(50)).then_some(())
        },
    )
    .await?;
    let stale_before = snapshot(model)
        .await
        .and_then(|s| s.stale_by.get("a").copied())
        .unwrap_or(0);
    let lines_at_cont = a.lines().len();
    a.signal("-CONT")?;
    let resumed = Instant::now();
    let out = stopped.elapsed();
    // After SIGCONT the zombie first finds its leases lost (it reports
    // fewer partitions), then claims partitions again.
    let rejoined = poll(
        "member a losing its partitions, then owning some again",
        Duration::from_secs(90),
        Duration::from_millis(20),
        || {
            let owned: Vec<usize> = a.lines()[lines_at_cont..]
                .iter()
                .filter_map(|l| l.strip_prefix("OWN "))
                .filter_map(|l| serde_json::from_str::<Vec<u32>>(l).ok())
                .map(|p| p.len())
                .collect();
            let lost_at = owned.iter().position(|&n| n < a_partitions.len());
            let back = lost_at.is_some_and(|i| owned[i..].iter().any(|&n| n > 0));
            async move { back.then(|| resumed.elapsed()) }
        },
    )
    .await?;
    let produced = producer.await??;
    bus.catch_up().await?;
    let truth = workload::stored(&store).await?;
    let caught_up = poll(
        "the read model applying every stored event",
        Duration::from_secs(scale(120, 900)),
        Duration::from_millis(100),
        || async {
            let s = snapshot(model).await?;
            (s.applied.len() >= truth.len()).then(|| resumed.elapsed())
        },
    )
    .await
    .with_context(|| format!("{} events stored", truth.len()))?;
    let (stats_a, _) = a.stop().await?;
    let (stats_b, _) = b.stop().await?;
    bus.shutdown().await?;

    let s = fenced::guarded_snapshot(model).await?;
    let lost = truth.keys().filter(|k| !s.applied.contains_key(k)).count();
    let doubled = s.applied.values().filter(|&&n| n > 1).count();
    let unknown = s.applied.keys().filter(|k| !truth.contains_key(k)).count();
    let events: u64 = truth.values().map(|&n| u64::from(n)).sum();
    let get = |m: &std::collections::HashMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    let gaps: u64 = s.gaps_by.values().sum();
    println!(
        "CHAOS nats-sigstop-fencing: commands {count} events {events} faults 1 (SIGSTOP of member a, {out:?}; a owned partitions {a_partitions:?}, backlog {backlog} events) takeover_by_b {takeover:?} lost {lost} doubled {doubled} unknown {unknown} gaps {gaps} applied_by {:?} already_applied_refused (a) {} (after SIGCONT {}) (b) {} a_rejoined {rejoined:?} after SIGCONT, read model caught up {caught_up:?} after SIGCONT; transient_failures {}",
        s.applied_by,
        get(&s.stale_by, "a"),
        get(&s.stale_by, "a") - stale_before,
        get(&s.stale_by, "b"),
        produced.transient_failures,
    );
    println!("CHAOS nats-sigstop-fencing: a {stats_a}");
    println!("CHAOS nats-sigstop-fencing: b {stats_b}");
    assert_eq!(events, count, "every command's event stored once");
    assert_eq!(lost, 0, "events never applied");
    assert_eq!(doubled, 0, "events applied twice");
    assert_eq!(unknown, 0, "applied events not in the store");
    assert_eq!(
        gaps, 0,
        "a stream's event applied before the one ahead of it"
    );
    Ok(())
}
