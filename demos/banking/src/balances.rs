//! The balances projection: every account's balance and status, typed.
use orchestrix::{RecordedEvent, View};
use serde::{Deserialize, Serialize};

use crate::account::{AccountEvent, AccountStatus};

/// One row of the read model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceRow {
    /// The holder.
    pub owner: String,
    /// The balance in cents (signed, so that a bug would show, not wrap).
    pub balance: i128,
    /// The status.
    pub status: AccountStatus,
}

/// Balances by account id (decoding, idempotence, reset: the framework's).
#[derive(Debug, Default)]
pub struct Balances;

impl View for Balances {
    const NAME: &'static str = "bank-balances";
    type Event = AccountEvent;
    type Row = BalanceRow;

    fn update(&self, row: &mut BalanceRow, event: &AccountEvent, _: &RecordedEvent) {
        row.balance += event.balance_change();
        match event {
            AccountEvent::Opened { owner } => {
                (row.owner, row.status) = (owner.clone(), AccountStatus::Open)
            }
            AccountEvent::Suspended { .. } => row.status = AccountStatus::Suspended,
            AccountEvent::Reactivated => row.status = AccountStatus::Open,
            AccountEvent::Closed => row.status = AccountStatus::Closed,
            _ => {}
        }
    }
}
