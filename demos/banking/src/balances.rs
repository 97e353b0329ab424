//! The balances projection: every account's balance and status, kept up to
//! date by the runtime from the account events.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use orchestrix::runtime::Projection;
use orchestrix::store::Filter;
use orchestrix::{RecordedEvent, Result};

use crate::account::{AccountEvent, AccountStatus};

/// One row of the read model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BalanceRow {
    /// The holder.
    pub owner: String,
    /// The balance in cents (signed, so that a bug would show, not wrap).
    pub balance: i128,
    /// The status.
    pub status: AccountStatus,
    /// The last revision applied (for idempotence under redelivery).
    pub revision: u64,
}

/// Balances by account id, in memory.
#[derive(Debug, Default)]
pub struct Balances {
    rows: Mutex<BTreeMap<String, BalanceRow>>,
}

impl Balances {
    /// The projection's name (its checkpoint key).
    pub const NAME: &'static str = "bank-balances";

    /// One account's row.
    #[must_use]
    pub fn get(&self, account: &str) -> Option<BalanceRow> {
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(account)
            .cloned()
    }

    /// Every row.
    #[must_use]
    pub fn all(&self) -> BTreeMap<String, BalanceRow> {
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[async_trait]
impl Projection for Balances {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn filter(&self) -> Filter {
        Filter::all().categories(["account"])
    }

    async fn apply(&self, event: &RecordedEvent) -> Result<()> {
        let decoded: AccountEvent = event.decode()?;
        let mut rows = self.rows.lock().unwrap_or_else(PoisonError::into_inner);
        let row = rows
            .entry(event.stream_id.entity_id().to_owned())
            .or_default();
        // Events of one stream arrive in order: anything at or below the last
        // applied revision is a redelivery.
        if row.status != AccountStatus::New && event.revision <= row.revision {
            return Ok(());
        }
        row.revision = event.revision;
        row.balance += decoded.balance_change();
        match decoded {
            AccountEvent::Opened { owner } => {
                row.owner = owner;
                row.status = AccountStatus::Open;
            }
            AccountEvent::Suspended { .. } => row.status = AccountStatus::Suspended,
            AccountEvent::Reactivated => row.status = AccountStatus::Open,
            AccountEvent::Closed => row.status = AccountStatus::Closed,
            _ => {}
        }
        Ok(())
    }

    async fn reset(&self) -> Result<()> {
        self.rows
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        Ok(())
    }
}
