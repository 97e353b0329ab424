//! The transfer saga: debit the source, credit the target, complete; reverse
//! the debit when the credit fails; reverse everything when the transfer does
//! not complete in time.

use std::time::Duration;

use futures::future::BoxFuture;
use orchestrix::catalog::CommandSet;
use orchestrix::saga::{Saga, SagaCommand, SagaContext, SagaStep};
use orchestrix::store::Filter;
use orchestrix::{Application, CommandContext, CommandOutcome, Event, RecordedEvent, Result};
use serde::{Deserialize, Serialize};

use crate::account::{AccountCommand, AccountEvent, Cents};
use crate::transfer::{TransferCommand, TransferEvent};

/// The commands the transfer saga sends: to accounts and to transfers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BankCommand {
    /// An account command.
    Account(AccountCommand),
    /// A transfer command.
    Transfer(TransferCommand),
}

impl From<AccountCommand> for BankCommand {
    fn from(c: AccountCommand) -> Self {
        Self::Account(c)
    }
}

impl From<TransferCommand> for BankCommand {
    fn from(c: TransferCommand) -> Self {
        Self::Transfer(c)
    }
}

impl SagaCommand for BankCommand {
    fn dispatch(
        self,
        app: &Application,
        context: CommandContext,
    ) -> BoxFuture<'static, Result<CommandOutcome>> {
        let app = app.clone();
        Box::pin(async move {
            match self {
                Self::Account(c) => app.execute_with(c, context).await,
                Self::Transfer(c) => app.execute_with(c, context).await,
            }
        })
    }

    fn commands() -> Vec<CommandSet> {
        vec![
            CommandSet::of::<AccountCommand>().only([
                "Debit",
                "ReverseDebit",
                "Credit",
                "ReverseCredit",
            ]),
            CommandSet::of::<TransferCommand>().only(["Complete", "Cancel"]),
        ]
    }
}

/// The saga's own record of a transfer's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(prefix = "com.orchestrix.bank.transfersaga")]
pub enum TransferSagaEvent {
    /// The saga took the transfer on.
    Started {
        /// Source account.
        from: String,
        /// Target account.
        to: String,
        /// How much.
        amount: Cents,
    },
    /// The source account confirmed the debit.
    DebitConfirmed,
    /// The target account confirmed the credit.
    CreditConfirmed,
}

/// How far a transfer got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Stage {
    /// Not started.
    #[default]
    New,
    /// Debit sent, not confirmed.
    Debiting,
    /// Debit confirmed, credit sent, not confirmed.
    Crediting,
    /// Credit confirmed.
    Credited,
}

/// The transfer saga's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferState {
    /// Progress.
    pub stage: Stage,
    /// Source account.
    pub from: String,
    /// Target account.
    pub to: String,
    /// Amount.
    pub amount: Cents,
}

/// The name of the timeout within which a transfer must complete.
pub const DEADLINE: &str = "deadline";

/// Moves money between two accounts; correlation id = transfer id.
#[derive(Debug, Clone)]
pub struct TransferSaga {
    /// How long a transfer may take before it is reversed.
    pub deadline: Duration,
}

impl Default for TransferSaga {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(30),
        }
    }
}

impl Saga for TransferSaga {
    const NAME: &'static str = "transfer";
    type State = TransferState;
    type Event = TransferSagaEvent;
    type Command = BankCommand;

    fn filter(&self) -> Filter {
        Filter::all()
            .categories(["transfer", "account"])
            .event_types([
                "com.orchestrix.bank.transfer.Requested",
                "com.orchestrix.bank.account.Debited",
                "com.orchestrix.bank.account.Credited",
            ])
    }

    fn correlate(&self, event: &RecordedEvent) -> Option<String> {
        match event.stream_id.category() {
            "transfer" => Some(event.stream_id.entity_id().to_owned()),
            "account" => match event.decode::<AccountEvent>().ok()? {
                AccountEvent::Debited { transfer, .. }
                | AccountEvent::Credited { transfer, .. } => Some(transfer),
                _ => None,
            },
            _ => None,
        }
    }

    fn react(
        &self,
        cx: &SagaContext<'_, TransferState>,
        event: &RecordedEvent,
    ) -> Result<Vec<SagaStep<Self>>> {
        let transfer = cx.correlation.to_owned();
        let state = cx.state;
        if event.stream_id.category() == "transfer" {
            let TransferEvent::Requested { from, to, amount } = event.decode::<TransferEvent>()?
            else {
                return Ok(vec![]);
            };
            if state.stage != Stage::New {
                return Ok(vec![]);
            }
            return Ok(vec![
                SagaStep::record(TransferSagaEvent::Started {
                    from: from.clone(),
                    to,
                    amount,
                }),
                // Whatever fails later, the transfer ends cancelled.
                SagaStep::compensation(TransferCommand::Cancel {
                    transfer: transfer.clone(),
                }),
                SagaStep::schedule(DEADLINE, self.deadline),
                SagaStep::send_compensable(
                    AccountCommand::Debit {
                        account: from.clone(),
                        amount,
                        transfer: transfer.clone(),
                    },
                    AccountCommand::ReverseDebit {
                        account: from,
                        amount,
                        transfer,
                    },
                ),
            ]);
        }
        let account = event.stream_id.entity_id();
        Ok(match event.decode::<AccountEvent>()? {
            AccountEvent::Debited { .. }
                if state.stage == Stage::Debiting && account == state.from =>
            {
                vec![
                    SagaStep::record(TransferSagaEvent::DebitConfirmed),
                    SagaStep::send_compensable(
                        AccountCommand::Credit {
                            account: state.to.clone(),
                            amount: state.amount,
                            transfer: transfer.clone(),
                        },
                        AccountCommand::ReverseCredit {
                            account: state.to.clone(),
                            amount: state.amount,
                            transfer: transfer.clone(),
                        },
                    ),
                ]
            }
            AccountEvent::Credited { .. }
                if state.stage == Stage::Crediting && account == state.to =>
            {
                vec![
                    SagaStep::record(TransferSagaEvent::CreditConfirmed),
                    SagaStep::send(TransferCommand::Complete { transfer }),
                    SagaStep::complete(),
                ]
            }
            _ => vec![],
        })
    }

    fn on_timeout(
        &self,
        cx: &SagaContext<'_, TransferState>,
        name: &str,
    ) -> Result<Vec<SagaStep<Self>>> {
        let waiting = match cx.state.stage {
            Stage::Debiting => "the debit",
            Stage::Crediting => "the credit",
            Stage::New | Stage::Credited => "the transfer",
        };
        Ok(vec![SagaStep::fail(format!(
            "timeout `{name}`: {waiting} was not confirmed within {:?}",
            self.deadline
        ))])
    }

    fn apply(state: &mut TransferState, event: &TransferSagaEvent) {
        match event {
            TransferSagaEvent::Started { from, to, amount } => {
                *state = TransferState {
                    stage: Stage::Debiting,
                    from: from.clone(),
                    to: to.clone(),
                    amount: *amount,
                };
            }
            TransferSagaEvent::DebitConfirmed => state.stage = Stage::Crediting,
            TransferSagaEvent::CreditConfirmed => state.stage = Stage::Credited,
        }
    }
}
