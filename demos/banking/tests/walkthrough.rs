//! The banking walk-through on the memory store, under the runtime: exact
//! final balances and statuses.

// Amounts in cents are written `euros_cents` (`100_00` is 100.00).
#![allow(clippy::inconsistent_digit_grouping)]

use std::time::Duration;

use orchestrix::Store;
use orchestrix::saga::SagaStatus;
use orchestrix_demo_banking::walkthrough::{self, TransferOutcome};
use orchestrix_demo_banking::{AccountStatus, TransferStatus};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_walkthrough_ends_with_the_right_balances() {
    let mut out = Vec::new();
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        walkthrough::run(Store::memory(), "t", &mut out),
    )
    .await
    .expect("the walk-through took too long")
    .unwrap();
    let printed = String::from_utf8(out).unwrap();

    let expected = [("alice", 70_00), ("bob", 60_00), ("carol", 0)];
    for (name, cents) in expected {
        assert_eq!(
            report.balances[name], cents,
            "projection balance of {name}\n{printed}"
        );
        assert_eq!(
            report.ledger[name], cents,
            "aggregate balance of {name}\n{printed}"
        );
    }
    assert_eq!(report.statuses["alice"], AccountStatus::Open);
    assert_eq!(report.statuses["bob"], AccountStatus::Open);
    assert_eq!(report.statuses["carol"], AccountStatus::Closed);

    let completed = TransferOutcome {
        status: TransferStatus::Completed,
        saga: SagaStatus::Completed,
        reason: None,
    };
    assert_eq!(report.transfers["t1"], completed);
    for (name, why) in [
        ("t2", "the account is suspended"),
        ("t3", "the account is closed"),
        ("t4", "insufficient funds"),
    ] {
        let t = &report.transfers[name];
        assert_eq!(
            (t.status, t.saga),
            (TransferStatus::Cancelled, SagaStatus::Compensated),
            "{name}"
        );
        assert!(
            t.reason.as_deref().unwrap_or_default().contains(why),
            "{name}: {:?}",
            t.reason
        );
    }
    assert!(
        printed.contains("com.orchestrix.bank.transfersaga.DebitConfirmed"),
        "{printed}"
    );
    assert!(printed.contains("total    130.00"), "{printed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_walkthrough_runs_twice_on_one_sqlite_file() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("banking.db").display());
    for run in ["first", "second"] {
        let store = orchestrix_backends::open_store(&url).await.unwrap();
        let mut out = Vec::new();
        let report = tokio::time::timeout(
            Duration::from_secs(60),
            walkthrough::run(store, run, &mut out),
        )
        .await
        .expect("the walk-through took too long")
        .unwrap();
        let printed = String::from_utf8(out).unwrap();
        assert_eq!(report.balances["alice"], 70_00, "{run}\n{printed}");
        assert_eq!(report.balances["bob"], 60_00, "{run}\n{printed}");
        assert_eq!(report.ledger["carol"], 0, "{run}\n{printed}");
        assert_eq!(
            report.transfers["t3"].status,
            TransferStatus::Cancelled,
            "{run}"
        );
    }
}
