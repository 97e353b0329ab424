//! The given/when/then fixture, on a small bank account.

use orchestrix::{Aggregate, Command, Event};
use orchestrix_testkit::AggregateFixture;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(prefix = "com.acme.bank")]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
    Closed,
}

enum AccountCommand {
    Open { owner: String },
    Deposit { amount: u64 },
    Withdraw { amount: u64 },
    Close,
}

impl Command for AccountCommand {
    fn aggregate_id(&self) -> String {
        "a1".to_owned()
    }
}

#[derive(Debug, PartialEq, thiserror::Error)]
enum AccountError {
    #[error("the account is already open")]
    AlreadyOpen,
    #[error("the account is not open")]
    NotOpen,
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    Insufficient { balance: u64, requested: u64 },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    open: bool,
    owner: String,
    balance: u64,
}

impl Aggregate for Account {
    const CATEGORY: &'static str = "account";
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;

    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Open { owner } if !self.open => Ok(vec![AccountEvent::Opened {
                owner: owner.clone(),
            }]),
            AccountCommand::Open { .. } => Err(AccountError::AlreadyOpen),
            _ if !self.open => Err(AccountError::NotOpen),
            AccountCommand::Deposit { amount: 0 } => Ok(vec![]),
            AccountCommand::Deposit { amount } => {
                Ok(vec![AccountEvent::Deposited { amount: *amount }])
            }
            AccountCommand::Withdraw { amount } if *amount > self.balance => {
                Err(AccountError::Insufficient {
                    balance: self.balance,
                    requested: *amount,
                })
            }
            AccountCommand::Withdraw { amount } => {
                Ok(vec![AccountEvent::Withdrawn { amount: *amount }])
            }
            AccountCommand::Close if self.balance > 0 => Ok(vec![
                AccountEvent::Withdrawn {
                    amount: self.balance,
                },
                AccountEvent::Closed,
            ]),
            AccountCommand::Close => Ok(vec![AccountEvent::Closed]),
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => {
                self.open = true;
                self.owner.clone_from(owner);
            }
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
            AccountEvent::Closed => self.open = false,
        }
    }
}

fn fixture() -> AggregateFixture<Account> {
    AggregateFixture::new()
}

fn opened() -> AccountEvent {
    AccountEvent::Opened {
        owner: "ada".to_owned(),
    }
}

#[test]
fn expects_events() {
    fixture()
        .given_no_previous_events()
        .when(AccountCommand::Open {
            owner: "ada".to_owned(),
        })
        .then_expect_events(vec![opened()]);
}

#[test]
fn given_events_build_the_state() {
    fixture()
        .given(vec![opened(), AccountEvent::Deposited { amount: 10 }])
        .given(vec![AccountEvent::Withdrawn { amount: 3 }])
        .when(AccountCommand::Close)
        .then_expect_events(vec![
            AccountEvent::Withdrawn { amount: 7 },
            AccountEvent::Closed,
        ])
        .then_expect_state(|a| {
            assert!(!a.open);
            assert_eq!(a.balance, 0);
        })
        // A second state check sees the same state: events are applied once.
        .then_expect_state(|a| assert_eq!(a.balance, 0));
}

#[test]
fn expects_no_events() {
    fixture()
        .given(vec![opened()])
        .when(AccountCommand::Deposit { amount: 0 })
        .then_expect_no_events()
        .then_expect_state(|a| assert_eq!(a.owner, "ada"));
}

#[test]
fn expects_an_error_by_predicate_and_by_message() {
    fixture()
        .given(vec![opened(), AccountEvent::Deposited { amount: 5 }])
        .when(AccountCommand::Withdraw { amount: 8 })
        .then_expect_error(|e| {
            matches!(
                e,
                AccountError::Insufficient {
                    balance: 5,
                    requested: 8
                }
            )
        })
        .then_expect_error_message("insufficient funds: balance 5, requested 8")
        .then_expect_state(|a| {
            assert_eq!(a.balance, 5, "a rejected command leaves the state as given")
        });
}

#[test]
fn into_result_gives_the_raw_outcome() {
    let result = fixture()
        .when(AccountCommand::Deposit { amount: 1 })
        .into_result();
    assert_eq!(result.unwrap_err(), AccountError::NotOpen);
    let result = fixture()
        .given(vec![opened()])
        .when(AccountCommand::Deposit { amount: 1 })
        .into_result();
    assert_eq!(result.unwrap(), vec![AccountEvent::Deposited { amount: 1 }]);
}

#[test]
fn debug_shows_the_given_events() {
    let f = fixture().given(vec![opened()]);
    let debug = format!("{f:?}");
    assert!(
        debug.contains("com.acme.bank.Opened v1") && debug.contains("ada"),
        "{debug}"
    );
    let then = f.when(AccountCommand::Open {
        owner: "bob".to_owned(),
    });
    assert!(format!("{then:?}").contains("AlreadyOpen"));
}

#[test]
#[should_panic(expected = "the command produced other events than expected")]
fn panics_on_other_events() {
    fixture()
        .given(vec![opened()])
        .when(AccountCommand::Deposit { amount: 5 })
        .then_expect_events(vec![AccountEvent::Deposited { amount: 6 }]);
}

#[test]
fn the_diff_is_readable() {
    let panic = std::panic::catch_unwind(|| {
        fixture()
            .given(vec![opened(), AccountEvent::Deposited { amount: 5 }])
            .when(AccountCommand::Close)
            .then_expect_events(vec![AccountEvent::Withdrawn { amount: 4 }]);
    })
    .expect_err("the fixture must panic");
    let message = panic.downcast_ref::<String>().expect("a formatted message");
    let expected = "\
aggregate `account`, command `AccountCommand` after 2 given event(s): the command produced other events than expected
  (= same, - expected, + actual)
  - #0 com.acme.bank.Withdrawn v1 {\"amount\":4}
  + #0 com.acme.bank.Withdrawn v1 {\"amount\":5}
  - #1 (none)
  + #1 com.acme.bank.Closed v1 null
";
    assert_eq!(message, expected);
}

#[test]
#[should_panic(expected = "but the command was rejected: the account is not open")]
fn panics_when_events_were_expected_but_the_command_failed() {
    fixture()
        .when(AccountCommand::Deposit { amount: 1 })
        .then_expect_events(vec![AccountEvent::Deposited { amount: 1 }]);
}

#[test]
#[should_panic(expected = "expected an error, but the command was accepted with 1 event(s)")]
fn panics_when_an_error_was_expected_but_the_command_succeeded() {
    fixture()
        .when(AccountCommand::Open {
            owner: "ada".to_owned(),
        })
        .then_expect_error(|_| true);
}

#[test]
#[should_panic(expected = "the command was rejected, but not with the expected error")]
fn panics_on_another_error() {
    fixture()
        .given(vec![opened()])
        .when(AccountCommand::Open {
            owner: "bob".to_owned(),
        })
        .then_expect_error(|e| *e == AccountError::NotOpen);
}

#[test]
#[should_panic(expected = "the command was rejected with another message")]
fn panics_on_another_message() {
    fixture()
        .when(AccountCommand::Close)
        .then_expect_error_message("the account is closed");
}

#[test]
#[should_panic(expected = "expected 0 event(s)")]
fn panics_when_no_events_were_expected_but_the_command_failed() {
    fixture()
        .when(AccountCommand::Close)
        .then_expect_no_events();
}

/// An event whose payload does not decode back to itself is caught.
mod asymmetric {
    use orchestrix::{Aggregate, Command, Event, EventTypeInfo};
    use orchestrix_testkit::AggregateFixture;
    use serde::{Deserialize, Serialize};

    /// Serializes its `n` doubled on the way out only.
    #[derive(Debug, Clone, Serialize, Deserialize)]
    struct Doubled {
        n: u64,
    }

    impl Event for Doubled {
        fn event_type(&self) -> &'static str {
            "com.acme.Doubled"
        }
        fn schema_version(&self) -> u32 {
            1
        }
        fn event_types() -> &'static [EventTypeInfo] {
            &[EventTypeInfo {
                event_type: "com.acme.Doubled",
                version: 1,
            }]
        }
        fn to_payload(&self) -> orchestrix::Result<serde_json::Value> {
            Ok(serde_json::json!({ "n": self.n * 2 }))
        }
        fn from_payload(_: &str, payload: serde_json::Value) -> orchestrix::Result<Self> {
            serde_json::from_value(payload).map_err(|e| orchestrix::Error::decode("Doubled", e))
        }
    }

    struct Go;
    impl Command for Go {
        fn aggregate_id(&self) -> String {
            "x".to_owned()
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("never")]
    struct Never;

    #[derive(Default, Serialize, Deserialize)]
    struct Thing;

    impl Aggregate for Thing {
        const CATEGORY: &'static str = "thing";
        type Command = Go;
        type Event = Doubled;
        type Error = Never;
        fn handle(&self, _: &Go) -> Result<Vec<Doubled>, Never> {
            Ok(vec![Doubled { n: 1 }])
        }
        fn apply(&mut self, _: &Doubled) {}
    }

    #[test]
    #[should_panic(expected = "given event #0 changes in its payload round trip")]
    fn given_events_must_round_trip() {
        AggregateFixture::<Thing>::new()
            .given(vec![Doubled { n: 1 }])
            .when(Go)
            .then_expect_no_events();
    }

    #[test]
    #[should_panic(expected = "produced event #0 changes in its payload round trip")]
    fn produced_events_must_round_trip() {
        let _ = AggregateFixture::<Thing>::new().when(Go);
    }
}
