//! The small bank the chapters use: an account aggregate (chapter 1 shows it
//! written out) and its balances view (chapter 3).

use orchestrix::{Aggregate, Command, Event, RecordedEvent, View};
use serde::{Deserialize, Serialize};

/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(prefix = "com.acme.bank")]
pub enum AccountEvent {
    /// Opened for `owner`.
    Opened {
        /// The holder.
        owner: String,
    },
    /// Money in.
    Deposited {
        /// Cents.
        amount: u64,
    },
    /// Money out.
    Withdrawn {
        /// Cents.
        amount: u64,
    },
}

/// What an account is asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(id = account)]
pub enum AccountCommand {
    /// Open it.
    Open {
        /// The account id.
        account: String,
        /// The holder.
        owner: String,
    },
    /// Put money in.
    Deposit {
        /// The account id.
        account: String,
        /// Cents.
        amount: u64,
    },
    /// Take money out.
    Withdraw {
        /// The account id.
        account: String,
        /// Cents.
        amount: u64,
    },
}

/// Why an account says no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Open twice.
    #[error("the account is already open")]
    AlreadyOpen,
    /// Anything before open.
    #[error("the account is not open")]
    NotOpen,
    /// More than the balance.
    #[error("insufficient funds: {balance} available")]
    InsufficientFunds {
        /// What there is.
        balance: u64,
    },
}

/// The account: decides and evolves, no I/O.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Account {
    /// Whether it is open.
    pub open: bool,
    /// Cents.
    pub balance: u64,
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;

    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Open { .. } if self.open => Err(AccountError::AlreadyOpen),
            AccountCommand::Open { owner, .. } => Ok(vec![AccountEvent::Opened {
                owner: owner.clone(),
            }]),
            _ if !self.open => Err(AccountError::NotOpen),
            AccountCommand::Deposit { amount, .. } => {
                Ok(vec![AccountEvent::Deposited { amount: *amount }])
            }
            AccountCommand::Withdraw { amount, .. } if *amount > self.balance => {
                Err(AccountError::InsufficientFunds {
                    balance: self.balance,
                })
            }
            AccountCommand::Withdraw { amount, .. } => {
                Ok(vec![AccountEvent::Withdrawn { amount: *amount }])
            }
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { .. } => self.open = true,
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
        }
    }
}

/// One row of the balances read model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalanceRow {
    /// The holder.
    pub owner: String,
    /// Cents.
    pub balance: u64,
}

/// Balances by account id: a typed projection.
#[derive(Debug, Default)]
pub struct Balances;

impl View for Balances {
    const NAME: &'static str = "guide-balances";
    type Event = AccountEvent;
    type Row = BalanceRow;

    fn update(&self, row: &mut BalanceRow, event: &AccountEvent, _: &RecordedEvent) {
        match event {
            AccountEvent::Opened { owner } => row.owner.clone_from(owner),
            AccountEvent::Deposited { amount } => row.balance += amount,
            AccountEvent::Withdrawn { amount } => row.balance -= amount,
        }
    }
}
