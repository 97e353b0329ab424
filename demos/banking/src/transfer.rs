//! The transfer aggregate: a request to move money, and how it ended.

use orchestrix::{Aggregate, Command, Event};
use serde::{Deserialize, Serialize};

use crate::account::Cents;

/// What happened to a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(prefix = "com.orchestrix.bank.transfer")]
pub enum TransferEvent {
    /// Money was asked to move from one account to another.
    Requested {
        /// Source account.
        from: String,
        /// Target account.
        to: String,
        /// How much.
        amount: Cents,
    },
    /// The money arrived.
    Completed,
    /// The transfer was called off; any money moved was given back.
    Cancelled,
}

/// What can be asked of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(id = transfer)]
pub enum TransferCommand {
    /// Asks for a transfer.
    Request {
        /// The transfer id.
        transfer: String,
        /// Source account.
        from: String,
        /// Target account.
        to: String,
        /// How much.
        amount: Cents,
    },
    /// Marks it completed.
    Complete {
        /// The transfer id.
        transfer: String,
    },
    /// Marks it cancelled.
    Cancel {
        /// The transfer id.
        transfer: String,
    },
}

/// Why a transfer refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// Request on an existing transfer.
    #[error("the transfer already exists")]
    Exists,
    /// Anything on an unknown transfer.
    #[error("no such transfer")]
    Unknown,
    /// Complete or cancel on a finished transfer.
    #[error("the transfer is already {0:?}")]
    Finished(TransferStatus),
    /// Zero amount or same account on both sides.
    #[error("invalid transfer: {0}")]
    Invalid(&'static str),
}

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TransferStatus {
    /// Not requested.
    #[default]
    New,
    /// Requested, in progress.
    Requested,
    /// Money arrived.
    Completed,
    /// Called off.
    Cancelled,
}

/// A transfer's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Transfer {
    /// Status.
    pub status: TransferStatus,
    /// Source account.
    pub from: String,
    /// Target account.
    pub to: String,
    /// Amount.
    pub amount: Cents,
}

impl Aggregate for Transfer {
    const CATEGORY: &'static str = "transfer";
    type Command = TransferCommand;
    type Event = TransferEvent;
    type Error = TransferError;

    fn handle(&self, command: &TransferCommand) -> Result<Vec<TransferEvent>, TransferError> {
        match (command, self.status) {
            (
                TransferCommand::Request {
                    from, to, amount, ..
                },
                TransferStatus::New,
            ) => {
                if *amount == 0 {
                    return Err(TransferError::Invalid("the amount must be positive"));
                }
                if from == to {
                    return Err(TransferError::Invalid(
                        "source and target are the same account",
                    ));
                }
                Ok(vec![TransferEvent::Requested {
                    from: from.clone(),
                    to: to.clone(),
                    amount: *amount,
                }])
            }
            (TransferCommand::Request { .. }, _) => Err(TransferError::Exists),
            (_, TransferStatus::New) => Err(TransferError::Unknown),
            (TransferCommand::Complete { .. }, TransferStatus::Requested) => {
                Ok(vec![TransferEvent::Completed])
            }
            (TransferCommand::Cancel { .. }, TransferStatus::Requested) => {
                Ok(vec![TransferEvent::Cancelled])
            }
            (_, finished) => Err(TransferError::Finished(finished)),
        }
    }

    fn apply(&mut self, event: &TransferEvent) {
        match event {
            TransferEvent::Requested { from, to, amount } => {
                self.status = TransferStatus::Requested;
                self.from.clone_from(from);
                self.to.clone_from(to);
                self.amount = *amount;
            }
            TransferEvent::Completed => self.status = TransferStatus::Completed,
            TransferEvent::Cancelled => self.status = TransferStatus::Cancelled,
        }
    }
}
