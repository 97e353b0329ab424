//! The bank on the Kafka broker at `ORCHESTRIX_KAFKA_BROKERS` (default
//! `127.0.0.1:9092`, Tansu from `tests/scripts/services.sh`), each test on a
//! topic prefix (so a topic and consumer groups) of its own. Without a
//! reachable broker the tests are skipped (they fail when `CI=true`).
//!
//! - The walk-through with its saga and projection consuming from Kafka ends
//!   exactly as the in-process run does.
//! - Two processes: the worker binary consumes from Kafka while this process
//!   executes the commands on a shared SQLite file and relays; the worker's
//!   `/balances` converge, the sagas settle, its `/readyz` shows its groups,
//!   and it stops cleanly on SIGTERM.

// Amounts in cents are written `euros_cents` (`100_00` is 100.00).
#![allow(clippy::inconsistent_digit_grouping)]

mod common;

use std::time::Duration;

use common::{
    WorkerScenario, kafka_bus_url, the_demo_runs_twice, two_applications_on_one_broker,
    worker_consumes_what_this_process_relays, worker_exports_bus_metrics,
};
use orchestrix::Store;
use orchestrix::saga::SagaStatus;
use orchestrix_demo_banking::BankOptions;
use orchestrix_demo_banking::walkthrough;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_walkthrough_over_kafka_ends_as_in_process() {
    let Some(bus) = kafka_bus_url("the_walkthrough_over_kafka_ends_as_in_process").await else {
        return;
    };
    let limit = Duration::from_secs(120);
    let mut out = Vec::new();
    let embedded = tokio::time::timeout(limit, walkthrough::run(Store::memory(), "t", &mut out))
        .await
        .expect("the in-process walk-through took too long")
        .unwrap();
    let mut out = Vec::new();
    let options = BankOptions {
        bus: Some(bus),
        ..BankOptions::default()
    };
    let on_bus = tokio::time::timeout(
        limit,
        walkthrough::run_with(Store::memory(), options, "t", &mut out),
    )
    .await
    .expect("the walk-through over Kafka took too long")
    .unwrap();
    let printed = String::from_utf8(out).unwrap();
    assert_eq!(on_bus, embedded, "{printed}");
    // And what that is, so that a shared mistake does not pass.
    let expected = [("alice", 70_00), ("bob", 60_00), ("carol", 0)];
    for (name, cents) in expected {
        assert_eq!(on_bus.balances[name], cents, "{name}\n{printed}");
        assert_eq!(on_bus.ledger[name], cents, "{name}\n{printed}");
    }
    let sagas: Vec<_> = ["t1", "t2", "t3", "t4"]
        .iter()
        .map(|t| on_bus.transfers[*t].saga)
        .collect();
    assert_eq!(
        sagas,
        [
            SagaStatus::Completed,
            SagaStatus::Compensated,
            SagaStatus::Compensated,
            SagaStatus::Compensated
        ],
        "{printed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_process_consumes_from_kafka_what_this_process_relays() {
    let Some(bus) = kafka_bus_url("a_worker_process_consumes_from_kafka").await else {
        return;
    };
    // Kafka group joins are slower than NATS: 55 s here, 30 s for SIGTERM.
    let scenario = WorkerScenario {
        ready_contains: &["kafka group", "bank-balances", "saga-transfer"],
        settle: Duration::from_secs(55),
        stop: Duration::from_secs(30),
        dead_letters_in: &["Dead letters in kafka topic(s) orx-bank-"],
    };
    worker_consumes_what_this_process_relays(&bus, scenario).await;
}

/// The demo binary twice in a row on one PostgreSQL store over Kafka: both
/// runs exit 0 with the right balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_runs_twice_on_one_store_over_kafka() {
    let Some(bus) = kafka_bus_url("the_demo_runs_twice_on_one_store_over_kafka").await else {
        return;
    };
    the_demo_runs_twice(&bus).await;
}

/// The bank, then the shop, on one Kafka server with the default names.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_applications_on_one_kafka_server_with_default_names() {
    let Some(brokers) =
        orchestrix_testkit::services::require(orchestrix_testkit::services::Service::Kafka)
    else {
        return;
    };
    // Quick group joins; no names: the defaults are under test.
    let bus = format!("kafka://{brokers}?session.timeout.ms=6000&heartbeat.interval.ms=1000");
    two_applications_on_one_broker(&bus).await;
}

/// A worker on Kafka: consumer, dead-letter, per-partition lag and relay
/// lag series in its `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_on_kafka_exports_bus_metrics() {
    let Some(bus) = kafka_bus_url("a_worker_on_kafka_exports_bus_metrics").await else {
        return;
    };
    worker_exports_bus_metrics(&bus).await;
}
