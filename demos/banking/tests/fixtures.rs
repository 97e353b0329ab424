//! The transfer saga and the account, given/when/then: `SagaFixture` and
//! `AggregateFixture`, no store.

// Amounts in cents are written `euros_cents` (`100_00` is 100.00).
#![allow(clippy::inconsistent_digit_grouping)]

use std::time::Duration;

use orchestrix::saga::SagaStatus;
use orchestrix_demo_banking::saga::DEADLINE;
use orchestrix_demo_banking::{
    Account, AccountCommand, AccountError, AccountEvent, BankCommand, TransferCommand,
    TransferEvent, TransferSaga,
};
use orchestrix_testkit::{AggregateFixture, SagaFixture};

const DEADLINE_AFTER: Duration = Duration::from_secs(30);

fn saga() -> SagaFixture<TransferSaga> {
    SagaFixture::new(TransferSaga {
        deadline: DEADLINE_AFTER,
    })
}

fn requested() -> TransferEvent {
    TransferEvent::Requested {
        from: "a".into(),
        to: "b".into(),
        amount: 40_00,
    }
}

fn debited() -> AccountEvent {
    AccountEvent::Debited {
        amount: 40_00,
        transfer: "t1".into(),
    }
}

fn debit(account: &str) -> AccountCommand {
    AccountCommand::Debit {
        account: account.into(),
        amount: 40_00,
        transfer: "t1".into(),
    }
}

fn reverse_debit() -> BankCommand {
    AccountCommand::ReverseDebit {
        account: "a".into(),
        amount: 40_00,
        transfer: "t1".into(),
    }
    .into()
}

fn cancel() -> BankCommand {
    TransferCommand::Cancel {
        transfer: "t1".into(),
    }
    .into()
}

#[test]
fn a_request_debits_the_source_under_a_deadline() {
    saga()
        .when("transfer-t1", requested())
        .then_sends(vec![debit("a")])
        .then_schedules(&[(DEADLINE, DEADLINE_AFTER)])
        .then_compensates(Vec::<BankCommand>::new())
        .then_status(SagaStatus::Running);
}

#[test]
fn a_confirmed_debit_credits_the_target_and_a_credit_completes() {
    saga()
        .given("transfer-t1", requested())
        .when("account-a", debited())
        .then_sends(vec![AccountCommand::Credit {
            account: "b".into(),
            amount: 40_00,
            transfer: "t1".into(),
        }])
        .and()
        .when(
            "account-b",
            AccountEvent::Credited {
                amount: 40_00,
                transfer: "t1".into(),
            },
        )
        .then_sends(vec![TransferCommand::Complete {
            transfer: "t1".into(),
        }])
        .then_pending_timeouts(&[])
        .then_status(SagaStatus::Completed);
}

#[test]
fn a_refused_credit_reverses_the_debit_then_cancels() {
    saga()
        .given("transfer-t1", requested())
        .rejecting(|c| matches!(c, BankCommand::Account(AccountCommand::Credit { .. })))
        .when("account-a", debited())
        .then_compensates(vec![reverse_debit(), cancel()])
        .then_pending_timeouts(&[])
        .then_status(SagaStatus::Compensated);
}

#[test]
fn the_deadline_reverses_a_transfer_whose_credit_never_confirms() {
    saga()
        .given("transfer-t1", requested())
        .given("account-a", debited())
        .when_timeout(DEADLINE)
        .then_sends_nothing()
        // The credit was sent (and accepted) when the debit confirmed: it is
        // reversed too, newest first.
        .then_compensates(vec![
            AccountCommand::ReverseCredit {
                account: "b".into(),
                amount: 40_00,
                transfer: "t1".into(),
            }
            .into(),
            reverse_debit(),
            cancel(),
        ])
        .then_fails_with("the credit was not confirmed");
}

#[test]
fn an_account_debits_only_what_it_holds() {
    let opened = || {
        vec![
            AccountEvent::Opened {
                owner: "Ada".into(),
            },
            AccountEvent::Deposited { amount: 50_00 },
        ]
    };
    AggregateFixture::<Account>::new()
        .given(opened())
        .when(debit("a"))
        .then_expect_events(vec![debited()])
        .then_expect_state(|a| assert_eq!(a.balance, 10_00));
    AggregateFixture::<Account>::new()
        .given(opened())
        .given(vec![debited()])
        .when(debit("a"))
        .then_expect_error(|e| {
            matches!(
                e,
                AccountError::InsufficientFunds {
                    balance: 10_00,
                    amount: 40_00
                }
            )
        });
}
