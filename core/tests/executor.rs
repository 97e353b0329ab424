//! Command executor: optimistic locking, retries, idempotence, snapshots,
//! correlation and causation.

use std::sync::Arc;

use orchestrix::store::memory::MemoryStore;
use orchestrix::store::{Backend, ExpectedRevision};
use orchestrix::{
    Aggregate, Application, Command, CommandContext, CommandExecutor, Error, Event, EventRecord,
    ExecutorConfig, Store, StreamId,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(prefix = "com.test.account")]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

#[derive(Debug)]
enum AccountCommand {
    Open { id: String, owner: String },
    Deposit { id: String, amount: u64 },
    Withdraw { id: String, amount: u64 },
}

impl Command for AccountCommand {
    fn aggregate_id(&self) -> String {
        match self {
            Self::Open { id, .. } | Self::Deposit { id, .. } | Self::Withdraw { id, .. } => {
                id.clone()
            }
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
enum AccountError {
    #[error("account already open")]
    AlreadyOpen,
    #[error("account not open")]
    NotOpen,
    #[error("insufficient funds: balance {balance}, wanted {wanted}")]
    Insufficient { balance: u64, wanted: u64 },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Account {
    open: bool,
    balance: u64,
    applied: u64,
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
                Err(AccountError::Insufficient {
                    balance: self.balance,
                    wanted: *amount,
                })
            }
            AccountCommand::Withdraw { amount, .. } => {
                Ok(vec![AccountEvent::Withdrawn { amount: *amount }])
            }
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        self.applied += 1;
        match event {
            AccountEvent::Opened { .. } => self.open = true,
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
        }
    }
}

fn open(id: &str) -> AccountCommand {
    AccountCommand::Open {
        id: id.into(),
        owner: "ann".into(),
    }
}

fn deposit(id: &str, amount: u64) -> AccountCommand {
    AccountCommand::Deposit {
        id: id.into(),
        amount,
    }
}

#[tokio::test]
async fn rejected_commands_keep_the_domain_error() {
    let exec = CommandExecutor::<Account>::new(Store::memory(), ExecutorConfig::default());
    let err = exec.execute(deposit("a", 1)).await.unwrap_err();
    let Error::Rejected { source, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        source.downcast_ref::<AccountError>(),
        Some(&AccountError::NotOpen)
    );
    exec.execute(open("a")).await.unwrap();
    let err = exec
        .execute(AccountCommand::Withdraw {
            id: "a".into(),
            amount: 5,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("insufficient funds"), "{err}");
    assert!(!err.is_transient());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commands_on_one_aggregate_all_land_through_conflict_retries() {
    let exec = CommandExecutor::<Account>::new(
        Store::memory(),
        ExecutorConfig {
            retry: orchestrix::executor::ConflictRetry {
                max_attempts: 100,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    exec.execute(open("hot")).await.unwrap();
    let tasks: Vec<_> = (1..=40)
        .map(|i| {
            let exec = exec.clone();
            tokio::spawn(async move { exec.execute(deposit("hot", i)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let loaded = exec.load("hot").await.unwrap();
    assert_eq!(loaded.state.balance, (1..=40).sum::<u64>());
    assert_eq!(loaded.revision, Some(40));
}

#[tokio::test]
async fn conflicts_surface_once_retries_run_out() {
    let store = Store::memory();
    let exec = CommandExecutor::<Account>::new(
        store.clone(),
        ExecutorConfig {
            retry: orchestrix::executor::ConflictRetry {
                max_attempts: 1,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    exec.execute(open("c")).await.unwrap();
    // A raw append with a stale expectation is the typed conflict.
    let err = store
        .append(
            &StreamId::parse("account-c").unwrap(),
            ExpectedRevision::NoStream,
            vec![EventRecord::json(
                "com.test.account.Deposited",
                1,
                &serde_json::json!({"amount": 1}),
            )],
        )
        .await
        .unwrap_err();
    match err {
        Error::Conflict {
            expected, actual, ..
        } => {
            assert_eq!(expected, ExpectedRevision::NoStream);
            assert_eq!(actual, Some(0));
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn a_command_id_is_handled_once() {
    let exec = CommandExecutor::<Account>::new(Store::memory(), ExecutorConfig::default());
    exec.execute(open("i")).await.unwrap();
    let first = exec
        .execute_with(deposit("i", 10), CommandContext::with_id("cmd-1"))
        .await
        .unwrap();
    assert!(!first.duplicate);
    let again = exec
        .execute_with(deposit("i", 10), CommandContext::with_id("cmd-1"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(again.appended, 0);
    exec.execute_with(deposit("i", 5), CommandContext::with_id("cmd-2"))
        .await
        .unwrap();
    assert_eq!(exec.load("i").await.unwrap().state.balance, 15);
}

#[tokio::test]
async fn idempotence_survives_snapshots() {
    let exec = CommandExecutor::<Account>::new(
        Store::memory(),
        ExecutorConfig {
            snapshot_every: Some(2),
            ..ExecutorConfig::default()
        },
    );
    exec.execute(open("s")).await.unwrap();
    exec.execute_with(deposit("s", 7), CommandContext::with_id("once"))
        .await
        .unwrap();
    for _ in 0..5 {
        exec.execute(deposit("s", 1)).await.unwrap();
    }
    let loaded = exec.load("s").await.unwrap();
    assert!(loaded.from_snapshot);
    let again = exec
        .execute_with(deposit("s", 7), CommandContext::with_id("once"))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert_eq!(exec.load("s").await.unwrap().state.balance, 12);
}

#[tokio::test]
async fn snapshots_shorten_loads_and_stale_versions_are_ignored() {
    let mem = Arc::new(MemoryStore::new());
    let store = Store::new(Backend::from_all(mem.clone()));
    let exec = CommandExecutor::<Account>::new(
        store.clone(),
        ExecutorConfig {
            snapshot_every: Some(10),
            ..Default::default()
        },
    );
    exec.execute(open("snap")).await.unwrap();
    for _ in 0..24 {
        exec.execute(deposit("snap", 2)).await.unwrap();
    }
    let loaded = exec.load("snap").await.unwrap();
    assert!(loaded.from_snapshot);
    assert_eq!(loaded.state.balance, 48);
    assert_eq!(loaded.revision, Some(24));
    // The snapshot was taken at revision 19 (20 events), so only 5 events were applied.
    assert_eq!(loaded.state.applied, 25 - 20 + 20);
    let snap = store
        .backend()
        .snapshots
        .load_snapshot(&StreamId::parse("account-snap").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(snap.revision, 19);

    // A snapshot of another state version is ignored: the state is rebuilt from events.
    let mut stale = snap.clone();
    stale.state_version = 99;
    stale.revision = 24;
    stale.data = bytes::Bytes::from_static(b"{\"not\":\"the state\"}");
    orchestrix::store::SnapshotStore::save_snapshot(&*mem, stale)
        .await
        .unwrap();
    let loaded = exec.load("snap").await.unwrap();
    assert!(!loaded.from_snapshot);
    assert_eq!(loaded.state.balance, 48);
    assert_eq!(loaded.state.applied, 25);
}

#[tokio::test]
async fn correlation_and_causation_travel_from_command_to_events() {
    let store = Store::memory();
    let exec = CommandExecutor::<Account>::new(
        store.clone(),
        ExecutorConfig {
            source: "/bank".into(),
            ..Default::default()
        },
    );
    let ctx = CommandContext::with_id("cmd-9").correlated("corr-1");
    exec.execute_with(open("m"), ctx).await.unwrap();
    exec.execute(deposit("m", 1)).await.unwrap();
    let events = store
        .read_stream_forward(&StreamId::parse("account-m").unwrap(), 0, 10)
        .await
        .unwrap();
    assert_eq!(
        events[0].record.metadata.correlation_id.as_deref(),
        Some("corr-1")
    );
    assert_eq!(
        events[0].record.metadata.causation_id.as_deref(),
        Some("cmd-9")
    );
    assert_eq!(events[0].record.source, "/bank");
    assert_eq!(events[0].event_type(), "com.test.account.Opened");
    // Without a context, the generated command id is both causation and correlation.
    let md = &events[1].record.metadata;
    assert_eq!(md.correlation_id, md.causation_id);
    assert!(md.causation_id.is_some());
    let ce = orchestrix::CloudEvent::from_recorded(&events[0]).unwrap();
    assert_eq!(ce.extension("correlationid").as_deref(), Some("corr-1"));
    assert_eq!(ce.extension("causationid").as_deref(), Some("cmd-9"));
}

#[tokio::test]
async fn unknown_event_types_in_a_stream_are_typed_errors() {
    let store = Store::memory();
    let exec = CommandExecutor::<Account>::new(store.clone(), ExecutorConfig::default());
    store
        .append(
            &StreamId::parse("account-u").unwrap(),
            ExpectedRevision::NoStream,
            vec![EventRecord::json(
                "com.other.Thing",
                1,
                &serde_json::json!({}),
            )],
        )
        .await
        .unwrap();
    let err = exec.load("u").await.unwrap_err();
    assert!(
        matches!(err, Error::UnknownEventType { ref event_type, version: 1, .. } if event_type == "com.other.Thing"),
        "{err}"
    );
    // A bad aggregate id is rejected before any I/O.
    let err = exec.execute(deposit("has space", 1)).await.unwrap_err();
    assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
}

#[tokio::test]
async fn upcasters_apply_when_loading_aggregates() {
    let store = Store::memory().with_upcasters(orchestrix::Upcasters::new().add(
        "com.test.account.Deposited",
        0,
        |v| Ok(serde_json::json!({ "amount": v["cents"].as_u64().unwrap_or_default() / 100 })),
    ));
    let exec = CommandExecutor::<Account>::new(store.clone(), ExecutorConfig::default());
    exec.execute(open("up")).await.unwrap();
    store
        .append(
            &StreamId::parse("account-up").unwrap(),
            ExpectedRevision::Exact(0),
            vec![EventRecord::json(
                "com.test.account.Deposited",
                0,
                &serde_json::json!({"cents": 500}),
            )],
        )
        .await
        .unwrap();
    assert_eq!(exec.load("up").await.unwrap().state.balance, 5);
}

#[tokio::test]
async fn the_application_dispatches_by_command_type_and_refuses_double_registration() {
    let err = Application::builder(Store::memory())
        .aggregate::<Account>()
        .aggregate::<Account>()
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("already handled"), "{err}");
    let app = Application::builder(Store::memory())
        .aggregate::<Account>()
        .build()
        .unwrap();
    app.execute(open("x")).await.unwrap();
    struct Unhandled;
    impl Command for Unhandled {
        fn aggregate_id(&self) -> String {
            "1".into()
        }
    }
    assert!(matches!(
        app.execute(Unhandled).await,
        Err(Error::NoHandler { .. })
    ));
}

#[tokio::test]
async fn a_cached_aggregate_still_sees_other_writers() {
    let store = Store::memory();
    // Two executors with their own caches stand for two processes.
    let here = CommandExecutor::<Account>::new(store.clone(), ExecutorConfig::default());
    let there = CommandExecutor::<Account>::new(store.clone(), ExecutorConfig::default());
    here.execute(open("shared")).await.unwrap();
    here.execute(deposit("shared", 10)).await.unwrap();
    there
        .execute(AccountCommand::Withdraw {
            id: "shared".into(),
            amount: 10,
        })
        .await
        .unwrap();
    // `here` has the account cached at balance 10; a withdrawal of 5 must be
    // refused because `there` emptied it, and no conflict may slip through.
    let err = here
        .execute(AccountCommand::Withdraw {
            id: "shared".into(),
            amount: 5,
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("balance 0"), "{err}");
    here.execute(deposit("shared", 3)).await.unwrap();
    there.execute(deposit("shared", 4)).await.unwrap();
    here.execute(deposit("shared", 1)).await.unwrap();
    assert_eq!(here.load("shared").await.unwrap().state.balance, 8);
    assert_eq!(here.load("shared").await.unwrap().revision, Some(5));
}

/// A durable command id is recognised however far it fell out of the
/// aggregate's window of recent ids: the withdrawal sent again after eleven
/// newer commands (window: 4, snapshots every 3 events) is a duplicate, not
/// a second withdrawal; a plain id that old is applied again.
#[tokio::test]
async fn durable_command_ids_are_remembered_beyond_the_window() {
    let config = ExecutorConfig {
        remembered_commands: 4,
        snapshot_every: Some(3),
        ..ExecutorConfig::default()
    };
    let app = Application::builder(Store::memory())
        .aggregate_with::<Account>(config)
        .build()
        .unwrap();
    let send = |command: AccountCommand, id: &str, durable: bool| {
        let context = CommandContext::with_id(id);
        let context = if durable { context.durable() } else { context };
        app.execute_with(command, context)
    };
    let deposit = |amount| AccountCommand::Deposit {
        id: "d1".into(),
        amount,
    };
    let withdraw = || AccountCommand::Withdraw {
        id: "d1".into(),
        amount: 10,
    };
    send(
        AccountCommand::Open {
            id: "d1".into(),
            owner: "ann".into(),
        },
        "open",
        true,
    )
    .await
    .unwrap();
    send(withdraw(), "durable-withdrawal", true)
        .await
        .unwrap_err(); // nothing to withdraw yet: rejected, not remembered
    send(deposit(10), "first-deposit", true).await.unwrap();
    let first = send(withdraw(), "durable-withdrawal", true).await.unwrap();
    assert!(!first.duplicate);
    send(deposit(10), "plain", false).await.unwrap();
    for n in 0..10 {
        send(deposit(5), &format!("deposit-{n}"), true)
            .await
            .unwrap();
    }
    // 60 on the account: a second withdrawal would be accepted.
    let again = send(withdraw(), "durable-withdrawal", true).await.unwrap();
    assert!(again.duplicate, "{again:?}");
    assert_eq!(again.appended, 0);
    let plain_again = send(deposit(10), "plain", false).await.unwrap();
    assert!(
        !plain_again.duplicate,
        "a plain id out of the window is applied again (the window is the bound)"
    );
    let account = app.load::<Account>("d1").await.unwrap();
    assert_eq!(account.state.balance, 70);
    assert_eq!(account.revision, Some(14));
    // The durable ids are the events' ids.
    let stream = StreamId::new("account", "d1").unwrap();
    let events = app
        .store()
        .read_stream_forward(&stream, 0, 100)
        .await
        .unwrap();
    assert_eq!(
        events[2].record.id,
        orchestrix::executor::durable_event_id(&stream, "durable-withdrawal", 0)
    );
}

/// Copies of one durable command sent at once through separate
/// applications (separate aggregate caches) on one store: one applies it,
/// every other one reports a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_copies_of_a_durable_command_apply_once() {
    let store = Store::memory();
    let apps: Vec<Application> = (0..4)
        .map(|_| {
            Application::builder(store.clone())
                .aggregate::<Account>()
                .build()
                .unwrap()
        })
        .collect();
    apps[0]
        .execute(AccountCommand::Open {
            id: "c1".into(),
            owner: "bo".into(),
        })
        .await
        .unwrap();
    for round in 0..20 {
        let copies = apps.iter().map(|app| {
            app.execute_with(
                AccountCommand::Deposit {
                    id: "c1".into(),
                    amount: 1,
                },
                CommandContext::with_id(format!("record-{round}")).durable(),
            )
        });
        let outcomes = futures::future::join_all(copies).await;
        let applied = outcomes
            .iter()
            .filter(|o| !o.as_ref().unwrap().duplicate)
            .count();
        assert_eq!(applied, 1, "round {round}: {outcomes:?}");
    }
    let account = apps[3].load::<Account>("c1").await.unwrap();
    assert_eq!(account.state.balance, 20);
}
