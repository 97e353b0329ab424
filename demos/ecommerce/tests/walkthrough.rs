//! The e-commerce walk-through under the runtime, for every injected failure:
//! exact final order, payment and saga statuses and stock.

// Amounts in cents are written `euros_cents` (`100_00` is 100.00).
#![allow(clippy::inconsistent_digit_grouping)]

use std::time::Duration;

use orchestrix::Store;
use orchestrix::saga::SagaStatus;
use orchestrix_demo_ecommerce::walkthrough::{self, Failure, Report};
use orchestrix_demo_ecommerce::{OrderStatus, PaymentStatus};

async fn run(failure: Failure) -> (Report, String) {
    let mut out = Vec::new();
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        walkthrough::run(Store::memory(), "t", failure, &mut out),
    )
    .await
    .expect("the walk-through took too long")
    .unwrap();
    (report, String::from_utf8(out).unwrap())
}

fn statuses(report: &Report, order: &str) -> (OrderStatus, PaymentStatus, SagaStatus) {
    let o = &report.orders[order];
    (o.status, o.payment, o.saga)
}

const CONFIRMED: (OrderStatus, PaymentStatus, SagaStatus) = (
    OrderStatus::Confirmed,
    PaymentStatus::Charged,
    SagaStatus::Completed,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_failures_every_order_is_confirmed() {
    let (report, printed) = run(Failure::None).await;
    for order in ["o1", "o2", "o3"] {
        assert_eq!(statuses(&report, order), CONFIRMED, "{order}\n{printed}");
    }
    assert_eq!((report.stock["keyboard"], report.stock["mouse"]), (7, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declined_payment_cancels_the_order() {
    let (report, printed) = run(Failure::Payment).await;
    assert_eq!(statuses(&report, "o1"), CONFIRMED);
    assert_eq!(
        statuses(&report, "o2"),
        (
            OrderStatus::Cancelled,
            PaymentStatus::None,
            SagaStatus::Compensated
        ),
        "{printed}"
    );
    assert!(
        report.orders["o2"]
            .reason
            .as_deref()
            .unwrap()
            .contains("was declined")
    );
    assert_eq!(statuses(&report, "o3"), CONFIRMED);
    assert_eq!((report.stock["keyboard"], report.stock["mouse"]), (7, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn missing_stock_refunds_the_payment_and_cancels_the_order() {
    let (report, printed) = run(Failure::Inventory).await;
    assert_eq!(statuses(&report, "o1"), CONFIRMED);
    assert_eq!(
        statuses(&report, "o2"),
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
            .contains("only 0 in stock")
    );
    assert_eq!(statuses(&report, "o3"), CONFIRMED);
    assert_eq!((report.stock["keyboard"], report.stock["mouse"]), (7, 0));
}
