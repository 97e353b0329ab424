//! Zombie fencing on Kafka: two consumer-group members in processes of
//! their own (`chaos_kafka_member`), one group, a checkpointed read model
//! (effects and the partition's next offset in one PostgreSQL transaction,
//! fenced by an epoch taken on every assignment: `orchestrix_chaos::fenced`).
//! The test process runs the commands and the relay to a Kafka broker of
//! the case's own. Member `a` is then taken out for longer than its session
//! timeout (3 s) while it holds fetched records:
//!
//! - `kafka_member_stopped_beyond_session_timeout`: SIGSTOP, and SIGCONT
//!   once member `b` owns every partition and applied records on them;
//! - `kafka_member_partitioned_from_broker`: each member in a network
//!   namespace of its own, the broker on an address of the host's; `a`'s
//!   link goes down (it keeps running, cut off from the broker, its read
//!   model still reachable) and up again once `b` took over.
//!
//! Checked: the read model equals the store's truth exactly (every event
//! applied once, none lost, none twice, offsets of each partition applied
//! in increasing order); the zombie rejoins the group and gets partitions
//! again. Counted: the stale records the zombie tried to apply after losing
//! its partitions (refused by the fence), its releases without a commit.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use orchestrix::Application;
use orchestrix_backends::{BusOptions, start_on_bus};
use orchestrix_chaos::fenced::{self, Snapshot};
use orchestrix_chaos::member::Member;
use orchestrix_chaos::net::{self, HostAddr, Netns};
use orchestrix_chaos::services::{Kafka, Postgres};
use orchestrix_chaos::workload::{self, Counter};
use orchestrix_chaos::{missing, poll, scale};

const SESSION_MS: u64 = 3_000;
const PARTITIONS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGSTOP, then SIGCONT.
    Stop,
    /// The member's network namespace cut off, then joined again.
    Partition,
}

async fn snapshot(client: &tokio_postgres::Client) -> Option<Snapshot> {
    fenced::snapshot(client).await.ok()
}

#[allow(clippy::too_many_lines)]
async fn fencing_case(case: &str, fault: Fault) -> anyhow::Result<()> {
    if !Kafka::available() && missing(case, "no `java` to run Apache Kafka") {
        return Ok(());
    }
    if !Postgres::available() && missing(case, "no PostgreSQL 15 for the read model") {
        return Ok(());
    }
    if fault == Fault::Partition
        && !net::available()
        && missing(case, "cannot make network namespaces (root and iproute2)")
    {
        return Ok(());
    }
    let count = scale(2_000, 20_000);
    let host = match fault {
        Fault::Partition => Some(HostAddr::add()?),
        Fault::Stop => None,
    };
    let kafka = Kafka::start_on(host.as_ref().map_or("127.0.0.1", HostAddr::addr)).await?;
    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("chaos.db").display());
    let store = orchestrix_worker::open_store(&store_url).await?;
    let app = Application::builder(store.clone())
        .aggregate::<Counter>()
        .build()?;
    let run = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let prefix = format!("chaos-{run}");
    let bus = start_on_bus(
        &app,
        &format!(
            "kafka://{}?prefix={prefix}&partitions={PARTITIONS}",
            kafka.brokers()
        ),
        BusOptions::producer(),
    )
    .await?;
    let topic = format!("{prefix}.events");
    let kafka_config = orchestrix_kafka::KafkaConfig {
        brokers: vec![kafka.brokers()],
        ..orchestrix_kafka::KafkaConfig::default()
    };
    orchestrix_kafka::ensure_topic(&kafka_config, &topic, i32::try_from(PARTITIONS)?).await?;
    let pg = Postgres::start().await?;
    fenced::create(&pg.socket_url()).await?;
    let model = fenced::connect(&pg.socket_url()).await?;
    let model = &model;
    let env = vec![
        ("CHAOS_BROKERS", kafka.brokers()),
        ("CHAOS_TOPIC", topic.clone()),
        ("CHAOS_GROUP", format!("{prefix}_fenced")),
        ("CHAOS_DB", pg.socket_url()),
        ("CHAOS_SESSION_MS", SESSION_MS.to_string()),
        ("CHAOS_WORK_MS", scale(15, 5).to_string()),
    ];
    let netns = |fault| -> anyhow::Result<Option<Netns>> {
        Ok(if fault == Fault::Partition {
            Some(Netns::new()?)
        } else {
            None
        })
    };
    let bin = env!("CARGO_BIN_EXE_chaos_kafka_member");
    let a = Member::start(bin, "a", &env, dir.path(), netns(fault)?).await?;
    let b = Member::start(bin, "b", &env, dir.path(), netns(fault)?).await?;
    let both = poll(
        "both members owning partitions",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || async {
            let s = snapshot(model).await?;
            let owners: std::collections::BTreeSet<&str> =
                s.owners.values().map(String::as_str).collect();
            (s.owners.len() == PARTITIONS && owners.len() == 2).then_some(())
        },
    )
    .await;
    if both.is_err() {
        for m in [&a, &b] {
            eprintln!("member {} log:\n{}", m.name(), m.log_text());
        }
    }
    both?;

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
    // The fault lands once a third of the commands are in, member `a` is
    // applying, and the members are behind (so that `a` holds fetched
    // records it has not handled yet: librdkafka prefetches).
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
    let a_partitions: Vec<i32> = snapshot(model)
        .await
        .context("read model")?
        .owners
        .iter()
        .filter(|(_, o)| *o == "a")
        .map(|(p, _)| *p)
        .collect();
    let applied_by_b_before = snapshot(model)
        .await
        .and_then(|s| s.applied_by.get("b").copied())
        .unwrap_or(0);

    match fault {
        Fault::Stop => a.signal("-STOP")?,
        Fault::Partition => a.netns().context("netns")?.cut()?,
    }
    let faulted = Instant::now();
    // The other member takes over every partition (after the session
    // timeout) and applies records on them; only then does the zombie come
    // back, with the records it fetched before.
    let takeover = poll(
        "member b owning every partition",
        Duration::from_secs(60),
        Duration::from_millis(20),
        || async {
            let s = snapshot(model).await?;
            (s.owners.len() == PARTITIONS && s.owners.values().all(|o| o == "b"))
                .then(|| faulted.elapsed())
        },
    )
    .await?;
    poll(
        "member b applying records after the takeover",
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
    let fenced_before = snapshot(model)
        .await
        .and_then(|s| s.fenced_by.get("a").copied())
        .unwrap_or(0);
    match fault {
        Fault::Stop => a.signal("-CONT")?,
        Fault::Partition => a.netns().context("netns")?.heal()?,
    }
    let healed = Instant::now();
    let out = faulted.elapsed();
    let rejoined = poll(
        "member a rejoining and owning partitions again",
        Duration::from_secs(90),
        Duration::from_millis(50),
        || async {
            let s = snapshot(model).await?;
            s.owners
                .values()
                .any(|o| o == "a")
                .then(|| healed.elapsed())
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
            (s.applied.len() >= truth.len()).then(|| healed.elapsed())
        },
    )
    .await
    .with_context(|| format!("{} events stored", truth.len()))?;
    let (stats_a, log_a) = a.stop().await?;
    let (stats_b, _) = b.stop().await?;
    bus.shutdown().await?;

    let s = fenced::snapshot(model).await?;
    let lost = truth.keys().filter(|k| !s.applied.contains_key(k)).count();
    let doubled = s.applied.values().filter(|&&n| n > 1).count();
    let unknown = s.applied.keys().filter(|k| !truth.contains_key(k)).count();
    let events: u64 = truth.values().map(|&n| u64::from(n)).sum();
    let released_uncommitted = log_a
        .lines()
        .filter(|l| l.contains("partition released") && l.contains("committed=false"))
        .count();
    let released_committed = log_a
        .lines()
        .filter(|l| l.contains("partition released") && l.contains("committed=true"))
        .count();
    let get = |m: &HashMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    println!(
        "CHAOS {case}: commands {count} events {events} faults 1 ({fault:?} of member a, {out:?}; a owned partitions {a_partitions:?}, backlog {backlog} events) takeover_by_b {takeover:?} lost {lost} doubled {doubled} unknown {unknown} out_of_order {} applied_by {:?} stale_refused_by_fence (a) {} (during the fault {}, after it {}; not behind the stored offset {}) redelivered_skipped {:?} a_rejoined {rejoined:?} after healing, read model caught up {caught_up:?} after healing; a released partitions without commit {released_uncommitted}, with commit {released_committed}; transient_failures {}",
        s.out_of_order,
        s.applied_by,
        get(&s.fenced_by, "a"),
        fenced_before,
        get(&s.fenced_by, "a") - fenced_before,
        s.fenced_not_behind,
        s.redelivered_by,
        produced.transient_failures,
    );
    println!("CHAOS {case}: a {stats_a}");
    println!("CHAOS {case}: b {stats_b}");
    drop(kafka);
    drop(host);
    assert_eq!(events, count, "every command's event stored once");
    assert_eq!(lost, 0, "events never applied");
    assert_eq!(doubled, 0, "events applied twice");
    assert_eq!(unknown, 0, "applied events not in the store");
    assert_eq!(s.out_of_order, 0, "a stale record applied after newer ones");
    assert_eq!(
        get(&s.fenced_by, "b"),
        0,
        "the member never stopped was fenced"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_member_stopped_beyond_session_timeout() -> anyhow::Result<()> {
    fencing_case("kafka-sigstop-fencing", Fault::Stop).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_member_partitioned_from_broker() -> anyhow::Result<()> {
    fencing_case("kafka-partition-fencing", Fault::Partition).await
}
