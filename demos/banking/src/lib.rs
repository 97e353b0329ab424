//! Orchestrix banking demo: accounts as an event-sourced aggregate, transfers
//! through a saga (debit, credit, reversal when the credit fails, a deadline
//! that reverses a transfer that does not complete), and a balances
//! projection, all on the embedded runtime.
//!
//! `cargo run -p orchestrix-demo-banking` runs [`walkthrough::run`] on the
//! embedded SQLite store (`--store memory://` for an in-memory one).

// Amounts in cents are written `euros_cents` (`100_00` is 100.00).
#![allow(clippy::inconsistent_digit_grouping)]

pub mod account;
pub mod balances;
pub mod bank;
pub mod saga;
pub mod schemas;
pub mod transfer;
pub mod walkthrough;

pub use account::{Account, AccountCommand, AccountError, AccountEvent, AccountStatus, Cents};
pub use balances::{BalanceRow, Balances};
pub use bank::{Bank, BankModule, BankOptions};
pub use saga::{BankCommand, Stage, TransferSaga, TransferSagaEvent, TransferState};
pub use transfer::{Transfer, TransferCommand, TransferError, TransferEvent, TransferStatus};

/// Formats cents as `1234.56`.
#[must_use]
pub fn money(cents: i128) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let cents = cents.unsigned_abs();
    format!("{sign}{}.{:02}", cents / 100, cents % 100)
}

/// Where the demo runs, for its first line: the store URL and the bus URL,
/// passwords replaced by `***`.
///
/// ```
/// let on = orchestrix_demo_banking::running_on("postgres://bank:s3cret@db:5432/test", Some("nats://127.0.0.1:4222"));
/// assert_eq!(on, "postgres://bank:***@db:5432/test, bus nats://127.0.0.1:4222");
/// ```
#[must_use]
pub fn running_on(store: &str, bus: Option<&str>) -> String {
    let store = orchestrix::url::redact(store);
    match bus {
        Some(bus) => format!("{store}, bus {}", orchestrix::url::redact(bus)),
        None => store,
    }
}

#[cfg(test)]
mod tests {
    /// The store's password is not printed (it used to be).
    #[test]
    fn the_banner_hides_passwords() {
        let on = super::running_on(
            "postgres://user:hunter2@127.0.0.1:5432/test?schema=demo",
            Some("kafka://127.0.0.1:9092"),
        );
        assert!(!on.contains("hunter2"), "{on}");
        assert!(
            on.starts_with("postgres://user:***@127.0.0.1:5432/test"),
            "{on}"
        );
        assert_eq!(
            super::running_on("sqlite://demo.db", None),
            "sqlite://demo.db"
        );
    }
}
