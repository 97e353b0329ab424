//! The e-commerce walk-through with the order saga consuming from the Kafka
//! broker at `ORCHESTRIX_KAFKA_BROKERS` (default `127.0.0.1:9092`, Apache Kafka from
//! `tests/scripts/services.sh`), each run on a topic prefix of its own.
//! Without a reachable broker the test is skipped (it fails when `CI=true`).

use std::time::Duration;

use orchestrix::Store;
use orchestrix::saga::SagaStatus;
use orchestrix_demo_ecommerce::walkthrough::{self, Failure};
use orchestrix_demo_ecommerce::{OrderStatus, PaymentStatus};

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
    // A short session, so that a member that dies hands its partitions on quickly.
    Some(format!(
        "kafka://{brokers}?prefix=orx-shop-{id}&partitions=4&session.timeout.ms=6000&heartbeat.interval.ms=1000"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_stock_over_kafka_refunds_the_payment_and_cancels_the_order() {
    let Some(bus) = bus_url("missing_stock_over_kafka").await else {
        return;
    };
    let mut out = Vec::new();
    let report = tokio::time::timeout(
        Duration::from_secs(120),
        walkthrough::run_on(
            Store::memory(),
            Some(&bus),
            "t",
            Failure::Inventory,
            &mut out,
        ),
    )
    .await
    .expect("the walk-through over Kafka took too long")
    .unwrap();
    let printed = String::from_utf8(out).unwrap();
    let statuses = |order: &str| {
        let o = &report.orders[order];
        (o.status, o.payment, o.saga)
    };
    let confirmed = (
        OrderStatus::Confirmed,
        PaymentStatus::Charged,
        SagaStatus::Completed,
    );
    assert_eq!(statuses("o1"), confirmed, "{printed}");
    assert_eq!(
        statuses("o2"),
        (
            OrderStatus::Cancelled,
            PaymentStatus::Refunded,
            SagaStatus::Compensated
        ),
        "{printed}"
    );
    assert!(
        report.orders["o2"]
            .reason
            .as_deref()
            .unwrap()
            .contains("only 0 in stock"),
        "{printed}"
    );
    assert_eq!(statuses("o3"), confirmed, "{printed}");
    assert_eq!(
        (report.stock["keyboard"], report.stock["mouse"]),
        (7, 0),
        "{printed}"
    );
}
