//! The account aggregate: open, deposit, withdraw, suspend, reactivate, close,
//! and the debit/credit/reversal commands that transfers use.

use orchestrix::{Aggregate, Command, Event};
use serde::{Deserialize, Serialize};

/// Amounts are in cents.
pub type Cents = u64;

/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(prefix = "com.orchestrix.bank.account")]
pub enum AccountEvent {
    /// The account was opened.
    Opened {
        /// The holder.
        owner: String,
    },
    /// Cash was paid in.
    Deposited {
        /// How much.
        amount: Cents,
    },
    /// Cash was paid out.
    Withdrawn {
        /// How much.
        amount: Cents,
    },
    /// The account was frozen: no money leaves it.
    Suspended {
        /// Why.
        reason: String,
    },
    /// The account was unfrozen.
    Reactivated,
    /// The account was closed (at a zero balance).
    Closed,
    /// Money left for a transfer.
    Debited {
        /// How much.
        amount: Cents,
        /// The transfer.
        transfer: String,
    },
    /// Money arrived from a transfer.
    Credited {
        /// How much.
        amount: Cents,
        /// The transfer.
        transfer: String,
    },
    /// A transfer's debit was undone: the money came back.
    DebitReversed {
        /// How much.
        amount: Cents,
        /// The transfer.
        transfer: String,
    },
    /// A transfer's credit was undone: the money was taken back.
    CreditReversed {
        /// How much.
        amount: Cents,
        /// The transfer.
        transfer: String,
    },
}

impl AccountEvent {
    /// How the event changes the balance, in cents.
    #[must_use]
    pub fn balance_change(&self) -> i128 {
        match self {
            Self::Deposited { amount }
            | Self::Credited { amount, .. }
            | Self::DebitReversed { amount, .. } => i128::from(*amount),
            Self::Withdrawn { amount }
            | Self::Debited { amount, .. }
            | Self::CreditReversed { amount, .. } => -i128::from(*amount),
            Self::Opened { .. } | Self::Suspended { .. } | Self::Reactivated | Self::Closed => 0,
        }
    }
}

/// What can be asked of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(id = account)]
pub enum AccountCommand {
    /// Opens an account.
    Open {
        /// The account id.
        account: String,
        /// The holder.
        owner: String,
    },
    /// Pays cash in.
    Deposit {
        /// The account id.
        account: String,
        /// How much.
        amount: Cents,
    },
    /// Pays cash out.
    Withdraw {
        /// The account id.
        account: String,
        /// How much.
        amount: Cents,
    },
    /// Freezes the account.
    Suspend {
        /// The account id.
        account: String,
        /// Why.
        reason: String,
    },
    /// Unfreezes the account.
    Reactivate {
        /// The account id.
        account: String,
    },
    /// Closes the account; its balance must be zero.
    Close {
        /// The account id.
        account: String,
    },
    /// Takes money out for a transfer.
    Debit {
        /// The account id.
        account: String,
        /// How much.
        amount: Cents,
        /// The transfer.
        transfer: String,
    },
    /// Puts money in from a transfer.
    Credit {
        /// The account id.
        account: String,
        /// How much.
        amount: Cents,
        /// The transfer.
        transfer: String,
    },
    /// Gives back the money of a transfer's debit (compensation).
    ReverseDebit {
        /// The account id.
        account: String,
        /// How much.
        amount: Cents,
        /// The transfer.
        transfer: String,
    },
    /// Takes back the money of a transfer's credit (compensation).
    ReverseCredit {
        /// The account id.
        account: String,
        /// How much.
        amount: Cents,
        /// The transfer.
        transfer: String,
    },
}

/// Why an account refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Open on an account that exists.
    #[error("the account is already open")]
    AlreadyOpen,
    /// Anything on an account never opened.
    #[error("the account does not exist")]
    NotOpen,
    /// Anything but a read on a closed account.
    #[error("the account is closed")]
    Closed,
    /// Money leaving a suspended account.
    #[error("the account is suspended")]
    Suspended,
    /// Reactivate on an account that is not suspended.
    #[error("the account is not suspended")]
    NotSuspended,
    /// An amount of zero.
    #[error("the amount must be positive")]
    ZeroAmount,
    /// Not enough money.
    #[error("insufficient funds: balance {balance} cents, {amount} cents asked")]
    InsufficientFunds {
        /// The balance.
        balance: Cents,
        /// The amount asked.
        amount: Cents,
    },
    /// Close with money left.
    #[error("the balance is {0} cents; only an empty account can be closed")]
    NotEmpty(Cents),
}

/// Where an account stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum AccountStatus {
    /// Never opened.
    #[default]
    New,
    /// Open.
    Open,
    /// Frozen.
    Suspended,
    /// Closed.
    Closed,
}

/// An account's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Account {
    /// Status.
    pub status: AccountStatus,
    /// Holder.
    pub owner: String,
    /// Balance in cents.
    pub balance: Cents,
}

impl Account {
    fn usable(&self) -> Result<(), AccountError> {
        match self.status {
            AccountStatus::New => Err(AccountError::NotOpen),
            AccountStatus::Closed => Err(AccountError::Closed),
            AccountStatus::Open | AccountStatus::Suspended => Ok(()),
        }
    }

    fn can_pay(&self, amount: Cents, suspended_ok: bool) -> Result<(), AccountError> {
        self.usable()?;
        if amount == 0 {
            return Err(AccountError::ZeroAmount);
        }
        if self.status == AccountStatus::Suspended && !suspended_ok {
            return Err(AccountError::Suspended);
        }
        if self.balance < amount {
            return Err(AccountError::InsufficientFunds {
                balance: self.balance,
                amount,
            });
        }
        Ok(())
    }

    fn can_receive(&self, amount: Cents) -> Result<(), AccountError> {
        self.usable()?;
        if amount == 0 {
            Err(AccountError::ZeroAmount)
        } else {
            Ok(())
        }
    }
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;

    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        use AccountCommand as C;
        use AccountEvent as E;
        let event = match command {
            C::Open { owner, .. } => match self.status {
                AccountStatus::New => E::Opened {
                    owner: owner.clone(),
                },
                _ => return Err(AccountError::AlreadyOpen),
            },
            C::Deposit { amount, .. } => {
                self.can_receive(*amount)?;
                E::Deposited { amount: *amount }
            }
            C::Withdraw { amount, .. } => {
                self.can_pay(*amount, false)?;
                E::Withdrawn { amount: *amount }
            }
            C::Suspend { reason, .. } => {
                self.usable()?;
                if self.status == AccountStatus::Suspended {
                    return Ok(vec![]);
                }
                E::Suspended {
                    reason: reason.clone(),
                }
            }
            C::Reactivate { .. } => {
                self.usable()?;
                if self.status != AccountStatus::Suspended {
                    return Err(AccountError::NotSuspended);
                }
                E::Reactivated
            }
            C::Close { .. } => {
                self.usable()?;
                if self.balance != 0 {
                    return Err(AccountError::NotEmpty(self.balance));
                }
                E::Closed
            }
            C::Debit {
                amount, transfer, ..
            } => {
                self.can_pay(*amount, false)?;
                E::Debited {
                    amount: *amount,
                    transfer: transfer.clone(),
                }
            }
            C::Credit {
                amount, transfer, ..
            } => {
                self.can_receive(*amount)?;
                E::Credited {
                    amount: *amount,
                    transfer: transfer.clone(),
                }
            }
            C::ReverseDebit {
                amount, transfer, ..
            } => {
                self.can_receive(*amount)?;
                E::DebitReversed {
                    amount: *amount,
                    transfer: transfer.clone(),
                }
            }
            C::ReverseCredit {
                amount, transfer, ..
            } => {
                // The bank takes its money back from a suspended account too.
                self.can_pay(*amount, true)?;
                E::CreditReversed {
                    amount: *amount,
                    transfer: transfer.clone(),
                }
            }
        };
        Ok(vec![event])
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => {
                self.status = AccountStatus::Open;
                self.owner.clone_from(owner);
            }
            AccountEvent::Suspended { .. } => self.status = AccountStatus::Suspended,
            AccountEvent::Reactivated => self.status = AccountStatus::Open,
            AccountEvent::Closed => self.status = AccountStatus::Closed,
            money => {
                let balance = i128::from(self.balance) + money.balance_change();
                self.balance = Cents::try_from(balance).unwrap_or_default();
            }
        }
    }
}
