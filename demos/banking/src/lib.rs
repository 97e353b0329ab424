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
