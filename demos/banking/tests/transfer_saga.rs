//! Every path of the transfer saga, driven event by event so that timeouts
//! can land exactly where a crash or a slow consumer would put them.

// Amounts in cents are written `euros_cents` (`100_00` is 100.00).
#![allow(clippy::inconsistent_digit_grouping)]

use std::sync::Arc;
use std::time::Duration;

use orchestrix::saga::{
    Clock as _, HandleOutcome, ManualClock, SagaConfig, SagaEngine, SagaStatus,
};
use orchestrix::store::memory::MemoryStore;
use orchestrix::store::{Backend, Filter};
use orchestrix::{Application, RecordedEvent, Store, StreamId};
use orchestrix_demo_banking::{
    Account, AccountCommand, AccountEvent, Transfer, TransferCommand, TransferSaga, TransferStatus,
};

const DEADLINE: Duration = Duration::from_secs(30);

struct Fixture {
    app: Application,
    engine: SagaEngine<TransferSaga>,
    clock: ManualClock,
}

fn app_on(store: Store) -> Application {
    Application::builder(store)
        .aggregate::<Account>()
        .aggregate::<Transfer>()
        .build()
        .unwrap()
}

fn engine_for(app: &Application, clock: &ManualClock) -> SagaEngine<TransferSaga> {
    let config = SagaConfig::default().with_clock(clock.clone());
    SagaEngine::with_config(TransferSaga { deadline: DEADLINE }, app, config).unwrap()
}

impl Fixture {
    fn on(store: Store, clock: ManualClock) -> Self {
        let app = app_on(store);
        let engine = engine_for(&app, &clock);
        Self { app, engine, clock }
    }

    fn new() -> Self {
        Self::on(Store::memory(), ManualClock::default())
    }

    async fn open(&self, account: &str, deposit: u64) {
        self.app
            .execute(AccountCommand::Open {
                account: account.into(),
                owner: account.into(),
            })
            .await
            .unwrap();
        if deposit > 0 {
            self.app
                .execute(AccountCommand::Deposit {
                    account: account.into(),
                    amount: deposit,
                })
                .await
                .unwrap();
        }
    }

    async fn request(&self, transfer: &str, from: &str, to: &str, amount: u64) {
        let command = TransferCommand::Request {
            transfer: transfer.into(),
            from: from.into(),
            to: to.into(),
            amount,
        };
        self.app.execute(command).await.unwrap();
    }

    async fn balance(&self, account: &str) -> u64 {
        self.app
            .load::<Account>(account)
            .await
            .unwrap()
            .state
            .balance
    }

    async fn transfer_status(&self, transfer: &str) -> TransferStatus {
        self.app
            .load::<Transfer>(transfer)
            .await
            .unwrap()
            .state
            .status
    }

    async fn saga(&self, transfer: &str) -> SagaStatus {
        self.engine
            .status(transfer)
            .await
            .unwrap()
            .expect("the saga instance exists")
    }

    async fn history(&self, account: &str) -> Vec<AccountEvent> {
        let stream = StreamId::new("account", account).unwrap();
        let events = self
            .app
            .store()
            .read_stream_forward(&stream, 0, 100)
            .await
            .unwrap();
        events
            .iter()
            .map(|e| e.decode().unwrap())
            .filter(|e: &AccountEvent| e.balance_change() != 0)
            .skip_while(is_deposit)
            .collect()
    }

    /// The last event of a type (the next one for the saga to see).
    async fn last(&self, event_type: &str) -> RecordedEvent {
        let events = self
            .app
            .store()
            .read_all(0, 1000, &Filter::all().event_types([event_type]))
            .await
            .unwrap();
        events.last().cloned().expect("the event exists")
    }

    async fn handle(&self, event_type: &str) -> HandleOutcome {
        let event = self.last(event_type).await;
        self.engine.handle_event(&event).await.unwrap()
    }

    async fn pending_timers(&self) -> usize {
        let far = self.clock.now() + chrono::Duration::days(365);
        self.app
            .store()
            .backend()
            .timers
            .due_timers("transfer", far, 100)
            .await
            .unwrap()
            .len()
    }
}

fn is_deposit(e: &AccountEvent) -> bool {
    matches!(e, AccountEvent::Deposited { .. })
}

const REQUESTED: &str = "com.orchestrix.bank.transfer.Requested";
const DEBITED: &str = "com.orchestrix.bank.account.Debited";
const CREDITED: &str = "com.orchestrix.bank.account.Credited";

#[tokio::test]
async fn a_transfer_debits_credits_and_completes() {
    let f = Fixture::new();
    f.open("alice", 100_00).await;
    f.open("bob", 0).await;
    f.request("t1", "alice", "bob", 30_00).await;
    // Requested: debit; debited: credit; credited: complete.
    assert_eq!(f.engine.catch_up().await.unwrap(), 3);
    assert_eq!(
        (f.balance("alice").await, f.balance("bob").await),
        (70_00, 30_00)
    );
    assert_eq!(f.transfer_status("t1").await, TransferStatus::Completed);
    assert_eq!(f.saga("t1").await, SagaStatus::Completed);
    assert_eq!(f.pending_timers().await, 0);
    // Correlation travels with the saga's commands.
    let credited = f.last(CREDITED).await;
    assert_eq!(
        credited.record.metadata.correlation_id.as_deref(),
        Some("t1")
    );
}

#[tokio::test]
async fn a_credit_to_a_closed_account_is_reversed() {
    let f = Fixture::new();
    f.open("alice", 100_00).await;
    f.open("carol", 0).await;
    f.app
        .execute(AccountCommand::Close {
            account: "carol".into(),
        })
        .await
        .unwrap();
    f.request("t2", "alice", "carol", 25_00).await;
    f.engine.catch_up().await.unwrap();
    assert_eq!(f.balance("alice").await, 100_00);
    assert_eq!(
        f.history("alice").await,
        [
            AccountEvent::Debited {
                amount: 25_00,
                transfer: "t2".into()
            },
            AccountEvent::DebitReversed {
                amount: 25_00,
                transfer: "t2".into()
            }
        ]
    );
    assert_eq!(f.transfer_status("t2").await, TransferStatus::Cancelled);
    let instance = f.engine.instance("t2").await.unwrap().unwrap();
    assert_eq!(instance.status, SagaStatus::Compensated);
    assert!(instance.reason.unwrap().contains("the account is closed"));
    assert_eq!(f.pending_timers().await, 0);
}

#[tokio::test]
async fn a_refused_debit_moves_no_money() {
    let f = Fixture::new();
    f.open("alice", 10_00).await;
    f.open("bob", 0).await;
    f.open("dave", 50_00).await;
    f.app
        .execute(AccountCommand::Suspend {
            account: "dave".into(),
            reason: "audit".into(),
        })
        .await
        .unwrap();
    f.request("t3", "alice", "bob", 20_00).await; // too much
    f.request("t4", "dave", "bob", 5_00).await; // suspended
    f.engine.catch_up().await.unwrap();
    for (t, why) in [
        ("t3", "insufficient funds"),
        ("t4", "the account is suspended"),
    ] {
        let instance = f.engine.instance(t).await.unwrap().unwrap();
        assert_eq!(instance.status, SagaStatus::Compensated, "{t}");
        assert!(
            instance.reason.as_deref().unwrap().contains(why),
            "{t}: {:?}",
            instance.reason
        );
        assert_eq!(f.transfer_status(t).await, TransferStatus::Cancelled);
    }
    assert_eq!(
        (
            f.balance("alice").await,
            f.balance("bob").await,
            f.balance("dave").await
        ),
        (10_00, 0, 50_00)
    );
    assert!(f.history("alice").await.is_empty());
}

#[tokio::test]
async fn a_credit_that_never_confirms_is_reversed_at_the_deadline() {
    let f = Fixture::new();
    f.open("alice", 100_00).await;
    f.open("bob", 0).await;
    f.request("t5", "alice", "bob", 40_00).await;
    f.handle(REQUESTED).await;
    f.handle(DEBITED).await;
    // The credit went through, but its confirmation is not handled in time.
    assert_eq!(f.balance("bob").await, 40_00);
    f.clock.advance(DEADLINE + Duration::from_secs(1));
    assert_eq!(f.engine.fire_due_timers().await.unwrap(), 1);
    assert_eq!(
        (f.balance("alice").await, f.balance("bob").await),
        (100_00, 0)
    );
    assert_eq!(
        f.history("bob").await,
        [
            AccountEvent::Credited {
                amount: 40_00,
                transfer: "t5".into()
            },
            AccountEvent::CreditReversed {
                amount: 40_00,
                transfer: "t5".into()
            }
        ]
    );
    let instance = f.engine.instance("t5").await.unwrap().unwrap();
    assert_eq!(instance.status, SagaStatus::Compensated);
    assert!(
        instance
            .reason
            .unwrap()
            .contains("the credit was not confirmed")
    );
    assert_eq!(f.transfer_status("t5").await, TransferStatus::Cancelled);
    // The late confirmation changes nothing.
    assert_eq!(f.handle(CREDITED).await, HandleOutcome::Ignored);
    assert_eq!(f.saga("t5").await, SagaStatus::Compensated);
}

#[tokio::test]
async fn a_debit_that_never_confirms_is_reversed_at_the_deadline() {
    let f = Fixture::new();
    f.open("alice", 100_00).await;
    f.open("bob", 0).await;
    f.request("t6", "alice", "bob", 40_00).await;
    f.handle(REQUESTED).await;
    f.clock.advance(DEADLINE * 2);
    f.engine.fire_due_timers().await.unwrap();
    assert_eq!(
        (f.balance("alice").await, f.balance("bob").await),
        (100_00, 0)
    );
    assert_eq!(f.saga("t6").await, SagaStatus::Compensated);
    assert_eq!(f.handle(DEBITED).await, HandleOutcome::Ignored);
    assert_eq!(f.balance("bob").await, 0, "no credit after the reversal");
}

#[tokio::test]
async fn a_reversal_that_cannot_be_made_leaves_the_saga_failed() {
    let f = Fixture::new();
    f.open("alice", 100_00).await;
    f.open("bob", 0).await;
    f.request("t7", "alice", "bob", 40_00).await;
    f.handle(REQUESTED).await;
    f.handle(DEBITED).await;
    // Bob spends the money before the deadline reverses the credit.
    f.app
        .execute(AccountCommand::Withdraw {
            account: "bob".into(),
            amount: 30_00,
        })
        .await
        .unwrap();
    f.clock.advance(DEADLINE * 2);
    f.engine.fire_due_timers().await.unwrap();
    let instance = f.engine.instance("t7").await.unwrap().unwrap();
    assert_eq!(instance.status, SagaStatus::Failed);
    assert!(
        instance
            .reason
            .as_deref()
            .unwrap()
            .contains("insufficient funds"),
        "{:?}",
        instance.reason
    );
    assert_eq!(
        instance.pending_compensations().count(),
        3,
        "nothing after the rejected reversal ran"
    );
    assert_eq!(
        (f.balance("alice").await, f.balance("bob").await),
        (60_00, 10_00)
    );
    assert_eq!(
        f.transfer_status("t7").await,
        TransferStatus::Requested,
        "left for a person to resolve"
    );
}

#[tokio::test]
async fn a_redelivered_debit_sends_one_credit() {
    let f = Fixture::new();
    f.open("alice", 100_00).await;
    f.open("bob", 0).await;
    f.request("t8", "alice", "bob", 10_00).await;
    f.handle(REQUESTED).await;
    assert!(matches!(
        f.handle(DEBITED).await,
        HandleOutcome::Handled { commands: 1, .. }
    ));
    assert_eq!(f.handle(DEBITED).await, HandleOutcome::Duplicate);
    assert_eq!(f.handle(REQUESTED).await, HandleOutcome::Duplicate);
    assert_eq!(
        (f.balance("alice").await, f.balance("bob").await),
        (90_00, 10_00)
    );
}

#[tokio::test]
async fn after_a_restart_the_pending_deadline_still_reverses_the_transfer() {
    let memory = Arc::new(MemoryStore::new());
    let clock = ManualClock::default();
    {
        // The first process debits and credits, then dies before it sees the
        // credit's confirmation.
        let f = Fixture::on(Store::new(Backend::from_all(memory.clone())), clock.clone());
        f.open("alice", 100_00).await;
        f.open("bob", 0).await;
        f.request("t9", "alice", "bob", 40_00).await;
        f.handle(REQUESTED).await;
        f.handle(DEBITED).await;
    }
    clock.advance(DEADLINE * 2);
    let f = Fixture::on(Store::new(Backend::from_all(memory)), clock);
    assert_eq!(f.saga("t9").await, SagaStatus::Running);
    assert_eq!(f.engine.fire_due_timers().await.unwrap(), 1);
    f.engine.catch_up().await.unwrap(); // every event, the late credit included
    assert_eq!(
        (f.balance("alice").await, f.balance("bob").await),
        (100_00, 0)
    );
    assert_eq!(f.saga("t9").await, SagaStatus::Compensated);
    assert_eq!(f.transfer_status("t9").await, TransferStatus::Cancelled);
}
