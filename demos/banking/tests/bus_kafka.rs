//! The bank on the Kafka broker at `ORCHESTRIX_KAFKA_BROKERS` (default
//! `127.0.0.1:9092`, Tansu from `tests/scripts/services.sh`), each test on a
//! topic prefix (so a topic and consumer groups) of its own. Without a
//! reachable broker the tests are skipped (they fail when `CI=true`).
//!
//! - The walk-through with its saga and projection consuming from Kafka ends
//!   exactly as the in-process run does.

// Amounts in cents are written `euros_cents` (`100_00` is 100.00).
#![allow(clippy::inconsistent_digit_grouping)]

use std::time::Duration;

use orchestrix::Store;
use orchestrix::saga::SagaStatus;
use orchestrix_demo_banking::BankOptions;
use orchestrix_demo_banking::walkthrough;

/// A `kafka://` bus URL on a fresh topic prefix, with quick group joins, or
/// `None` (skip) when the broker cannot be reached outside CI.
async fn bus_url(test: &str) -> Option<String> {
    let brokers =
        std::env::var("ORCHESTRIX_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let mut reachable = false;
    for broker in brokers.split(',') {
        if let Ok(Ok(_)) = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(broker.trim()),
        )
        .await
        {
            reachable = true;
            break;
        }
    }
    if !reachable {
        let reason = format!(
            "no Kafka broker reachable at {brokers} (ORCHESTRIX_KAFKA_BROKERS; `bash tests/scripts/services.sh` starts Tansu)"
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
        eprintln!("skipping {test}: {reason}");
        return None;
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let id = &id[..12];
    // Tansu with librdkafka's default 45 s session takes > 20 s to join.
    Some(format!(
        "kafka://{brokers}?prefix=orx-bank-{id}&partitions=4&session.timeout.ms=6000&heartbeat.interval.ms=1000"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_walkthrough_over_kafka_ends_as_in_process() {
    let Some(bus) = bus_url("the_walkthrough_over_kafka_ends_as_in_process").await else {
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
