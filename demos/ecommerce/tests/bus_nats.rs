//! The e-commerce walk-through with the order saga consuming from the real
//! NATS JetStream server at `ORCHESTRIX_NATS_URL` (default
//! `nats://127.0.0.1:4222`), each run on a stream and subjects of its own.
//! Without a reachable server the test is skipped (it fails when `CI=true`).

use std::time::Duration;

use orchestrix::Store;
use orchestrix::saga::SagaStatus;
use orchestrix_demo_ecommerce::walkthrough::{self, Failure};
use orchestrix_demo_ecommerce::{OrderStatus, PaymentStatus};

/// A `nats://` bus URL on a fresh stream, or `None` (skip) when the server
/// cannot be reached outside CI.
async fn bus_url(test: &str) -> Option<String> {
    let base =
        std::env::var("ORCHESTRIX_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
    let host = base
        .trim_start_matches("nats://")
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_owned();
    let reachable = matches!(
        tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(host.as_str())
        )
        .await,
        Ok(Ok(_))
    );
    if !reachable {
        let reason = format!("NATS is not reachable at {base} (ORCHESTRIX_NATS_URL)");
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
        eprintln!("skipping {test}: {reason}");
        return None;
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    let id = &id[..12];
    Some(format!(
        "{}?stream=ORX_SHOP_{id}&prefix=orx.shop.{id}&partitions=4",
        base.trim_end_matches('/')
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_stock_over_nats_refunds_the_payment_and_cancels_the_order() {
    let Some(bus) = bus_url("missing_stock_over_nats").await else {
        return;
    };
    let mut out = Vec::new();
    let report = tokio::time::timeout(
        Duration::from_secs(90),
        walkthrough::run_on(
            Store::memory(),
            Some(&bus),
            "t",
            Failure::Inventory,
            &mut out,
        ),
    )
    .await
    .expect("the walk-through over NATS took too long")
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
