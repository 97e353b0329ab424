//! The bank on the real NATS JetStream server at `ORCHESTRIX_NATS_URL`
//! (default `nats://127.0.0.1:4222`), each test on a stream and subjects of
//! its own. Without a reachable server the tests are skipped (they fail when
//! `CI=true`).
//!
//! - The walk-through with its saga and projection consuming from NATS ends
//!   exactly as the in-process run does.
//! - Two processes: the worker binary consumes from NATS while this process
//!   executes the commands on a shared SQLite file and relays; the worker's
//!   `/balances` converge, its `/readyz` shows its partitions, and it stops
//!   cleanly on SIGTERM.

// Amounts in cents are written `euros_cents` (`100_00` is 100.00).
#![allow(clippy::inconsistent_digit_grouping)]

mod common;

use std::time::Duration;

use common::{
    WorkerScenario, nats_bus_url, the_demo_runs_twice, two_applications_on_one_broker,
    worker_consumes_what_this_process_relays, worker_exports_bus_metrics,
};
use orchestrix::Store;
use orchestrix::saga::SagaStatus;
use orchestrix_demo_banking::BankOptions;
use orchestrix_demo_banking::walkthrough;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_walkthrough_over_nats_ends_as_in_process() {
    let Some(bus) = nats_bus_url("the_walkthrough_over_nats_ends_as_in_process").await else {
        return;
    };
    let limit = Duration::from_secs(90);
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
    .expect("the walk-through over NATS took too long")
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
async fn a_worker_process_consumes_from_nats_what_this_process_relays() {
    let Some(bus) = nats_bus_url("a_worker_process_consumes_from_nats").await else {
        return;
    };
    let scenario = WorkerScenario {
        ready_contains: &["nats group", "bank-balances"],
        settle: Duration::from_secs(60),
        stop: Duration::from_secs(40),
        dead_letters_in: &["Dead letters in nats stream ORX_BANK_"],
    };
    worker_consumes_what_this_process_relays(&bus, scenario).await;
}

/// The demo binary twice in a row on one PostgreSQL store over NATS: both
/// runs exit 0 with the right balances.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_runs_twice_on_one_store_over_nats() {
    let Some(bus) = nats_bus_url("the_demo_runs_twice_on_one_store_over_nats").await else {
        return;
    };
    the_demo_runs_twice(&bus).await;
}

/// The bank, then the shop, on one NATS server with the default names.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_applications_on_one_nats_server_with_default_names() {
    let Some(bus) =
        orchestrix_testkit::services::require(orchestrix_testkit::services::Service::Nats)
    else {
        return;
    };
    two_applications_on_one_broker(&bus).await;
}

/// A worker on NATS: consumer, dead-letter, per-partition lag and relay
/// lag series in its `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_on_nats_exports_bus_metrics() {
    let Some(bus) = nats_bus_url("a_worker_on_nats_exports_bus_metrics").await else {
        return;
    };
    worker_exports_bus_metrics(&bus).await;
}
