//! The notifications walk-through, in process and as the binary a user runs:
//! on the embedded store, twice in a row on one SQLite file, and with the
//! dispatcher on NATS JetStream and on Kafka (each twice on one store).
//! Without a reachable broker the bus tests skip (they fail when `CI=true`).

use std::process::Stdio;
use std::time::Duration;

use orchestrix::Store;
use orchestrix_demo_notifications::walkthrough::{self, Options};
use orchestrix_demo_notifications::{Channel, Flakiness};
use orchestrix_testkit::services::{Service, require};

/// Every requested notification sent and delivered once; the outage's
/// dead-lettered and replayed; the rejected one left; the rate held.
fn assert_summary(s: &walkthrough::Summary, options: &Options) {
    let per_channel =
        |n: usize, c: Channel| (0..n).filter(|i| Channel::ALL[i % 3] == c).count() as u64;
    for channel in Channel::ALL {
        let c = s.channels[&channel];
        let requested = per_channel(options.count, channel)
            + (options.count..options.count + options.outage)
                .filter(|i| Channel::ALL[i % 3] == channel)
                .count() as u64;
        assert_eq!(c.requested, requested, "{channel:?}: {s:?}");
        // The e-mail channel holds the one rejected notification.
        let rejected = u64::from(channel == Channel::Email);
        assert_eq!(c.sent, requested - rejected, "{channel:?} sent: {s:?}");
        assert_eq!(
            c.delivered, c.sent,
            "{channel:?} delivered once each: {s:?}"
        );
        assert!(
            c.peak_per_second <= u64::from(options.rate_per_channel),
            "{channel:?} over its rate limit: {s:?}"
        );
    }
    assert_eq!(s.dead_lettered, options.outage as u64, "{s:?}");
    assert_eq!(s.replayed, options.outage as u64, "{s:?}");
    assert_eq!(s.rejected, 1, "{s:?}");
    assert!(
        s.retries > 0,
        "the flaky provider made the runtime retry: {s:?}"
    );
    assert!(
        s.duplicates_suppressed > 0,
        "lost acknowledgements were retried and deduplicated: {s:?}"
    );
}

fn quick() -> Options {
    Options {
        count: 30,
        outage: 3,
        flakiness: Flakiness {
            failure_rate: 0.3,
            // High, so that a run without a lost acknowledgement is
            // practically impossible (2^-27).
            lost_ack_rate: 0.5,
            latency: Duration::from_millis(1),
            seed: 11,
        },
        rate_per_channel: 20,
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_walkthrough_sends_everything_once_and_replays_the_outage() {
    let options = quick();
    let mut out = Vec::new();
    let summary = walkthrough::run(Store::memory(), options.clone(), "t", &mut out)
        .await
        .unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert_summary(&summary, &options);
    assert!(
        printed.contains("every sent notification delivered exactly once: yes"),
        "{printed}"
    );
}

/// Runs the binary; asserts exit 0 and the printed summary.
async fn run_binary(store: &str, bus: Option<&str>) -> String {
    let mut command =
        tokio::process::Command::new(env!("CARGO_BIN_EXE_orchestrix-demo-notifications"));
    command
        .args([
            "--store", store, "--count", "30", "--outage", "3", "--rate", "20",
        ])
        .env_remove("ORCHESTRIX_STORE")
        .env_remove("ORCHESTRIX_BUS_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(bus) = bus {
        command.args(["--bus", bus]);
    }
    let output = tokio::time::timeout(
        Duration::from_secs(150),
        command.spawn().unwrap().wait_with_output(),
    )
    .await
    .expect("the demo did not finish within 150 s")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "exit {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "3 dead letters replayed, all sent",
        "dead-lettered in the outage: 3, replayed: 3",
        "rejected (left in the dead letters): 1",
        "every sent notification delivered exactly once: yes",
    ] {
        assert!(stdout.contains(line), "{line}\n{stdout}");
    }
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_twice_on_one_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("notifications.db").display());
    for _ in 0..2 {
        run_binary(&store, None).await;
    }
}

fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_twice_with_the_dispatcher_on_nats() {
    let Some(nats) = require(Service::Nats) else {
        return;
    };
    let id = unique();
    let bus = format!("{nats}?stream=ORX_NOTIFY_{id}&prefix=orx.notify.{id}&partitions=4");
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("notifications.db").display());
    for _ in 0..2 {
        run_binary(&store, Some(&bus)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_twice_with_the_dispatcher_on_kafka() {
    let Some(brokers) = require(Service::Kafka) else {
        return;
    };
    let id = unique();
    let bus = format!(
        "kafka://{brokers}?prefix=orx-notify-{id}&partitions=4&session.timeout.ms=6000&heartbeat.interval.ms=1000"
    );
    let dir = tempfile::tempdir().unwrap();
    let store = format!("sqlite://{}", dir.path().join("notifications.db").display());
    for _ in 0..2 {
        run_binary(&store, Some(&bus)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_twice_on_one_postgres_store() {
    let Some(base) = require(Service::Postgres) else {
        return;
    };
    let sep = if base.contains('?') { '&' } else { '?' };
    let store = format!("{base}{sep}schema=notify_{}", unique());
    for _ in 0..2 {
        run_binary(&store, None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_twice_on_one_scylla_keyspace() {
    let Some(base) = require(Service::Cql) else {
        return;
    };
    let store = format!("{}/notify_{}", base.trim_end_matches('/'), unique());
    for _ in 0..2 {
        run_binary(&store, None).await;
    }
}
