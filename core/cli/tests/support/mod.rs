//! Stores, seed data and a runner of the `orchestrix` binary for the CLI tests.
#![allow(dead_code)]

use std::process::Command;

use chrono::Utc;
use orchestrix::runtime::dead_letter_for;
use orchestrix::store::{ExpectedRevision, Timer};
use orchestrix::{Error, EventRecord, Store, StreamId};
use orchestrix_testkit::services::{Service, require};
use uuid::Uuid;

/// A store URL, and the directory that holds it (SQLite).
pub struct TestStore {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

/// A SQLite file store.
pub fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("events.db").display());
    TestStore {
        url,
        _dir: Some(dir),
    }
}

/// A PostgreSQL store in a random schema, or `None` (skipped) outside CI when
/// PostgreSQL is not there.
pub fn postgres() -> Option<TestStore> {
    let base = require(Service::Postgres)?;
    let sep = if base.contains('?') { '&' } else { '?' };
    let schema = format!("cli_{}", Uuid::new_v4().simple());
    Some(TestStore {
        url: format!("{base}{sep}schema={schema}"),
        _dir: None,
    })
}

/// What [`seed`] wrote.
pub struct Seeded {
    pub account_event: Uuid,
    pub letters: Vec<Uuid>,
    pub timer_id: String,
}

fn json(t: &str, v: serde_json::Value) -> EventRecord {
    EventRecord::json(t, 1, &v)
}

/// Two accounts (3 + 1 events), an order (2 events), two dead letters of
/// `balances` and one of `mailer`, and a running saga with a pending
/// timeout next to a compensated one.
pub async fn seed(store: &Store) -> Seeded {
    let a1 = StreamId::parse("account-1").unwrap();
    let a2 = StreamId::parse("account-2").unwrap();
    let o1 = StreamId::parse("order-1").unwrap();
    let opened = json("com.acme.bank.Opened", serde_json::json!({"owner": "ada"}));
    let account_event = opened.id;
    store
        .append(
            &a1,
            ExpectedRevision::NoStream,
            vec![
                opened,
                json(
                    "com.acme.bank.Deposited",
                    serde_json::json!({"amount": 100}),
                ),
                json("com.acme.bank.Withdrawn", serde_json::json!({"amount": 30})),
            ],
        )
        .await
        .unwrap();
    store
        .append(
            &o1,
            ExpectedRevision::NoStream,
            vec![
                json("com.acme.shop.Placed", serde_json::json!({"total": 12})),
                json("com.acme.shop.Paid", serde_json::json!({"total": 12})),
            ],
        )
        .await
        .unwrap();
    store
        .append(
            &a2,
            ExpectedRevision::NoStream,
            vec![json(
                "com.acme.bank.Opened",
                serde_json::json!({"owner": "bob"}),
            )],
        )
        .await
        .unwrap();

    // Dead letters for real events.
    let events = store.read_stream_forward(&a1, 0, 10).await.unwrap();
    let orders = store.read_stream_forward(&o1, 0, 10).await.unwrap();
    let mut letters = Vec::new();
    for (consumer, event, error) in [
        (
            "balances",
            &events[1],
            Error::invalid("amount", "negative balance"),
        ),
        (
            "balances",
            &events[2],
            Error::invalid("amount", "negative balance"),
        ),
        ("mailer", &orders[0], Error::invalid("email", "no address")),
    ] {
        let letter = dead_letter_for(consumer, event, &error, 3);
        letters.push(letter.id);
        store
            .backend()
            .dead_letters
            .put_dead_letter(letter)
            .await
            .unwrap();
    }

    // Saga streams as the engine records them.
    let due = Utc::now() + chrono::Duration::hours(1);
    let timer_id = "transfer:t1:expire".to_owned();
    let t1 = StreamId::parse("saga_transfer-t1").unwrap();
    store
        .append(
            &t1,
            ExpectedRevision::NoStream,
            vec![
                json(
                    "orchestrix.saga.Started",
                    serde_json::json!({"saga": "transfer", "correlation": "t1"}),
                ),
                json(
                    "com.acme.bank.transfer.Debited",
                    serde_json::json!({"amount": 5}),
                ),
                json(
                    "orchestrix.saga.CommandSent",
                    serde_json::json!({"command_id": "c1", "command": {"Withdraw": {"id": "1", "amount": 5}}, "stream_id": "account-1", "duplicate": false}),
                ),
                json(
                    "orchestrix.saga.TimeoutScheduled",
                    serde_json::json!({"name": "expire", "timer_id": timer_id, "due_at": due.to_rfc3339()}),
                ),
            ],
        )
        .await
        .unwrap();
    store
        .backend()
        .timers
        .schedule_timer(Timer {
            id: timer_id.clone(),
            owner: "transfer".into(),
            key: "t1".into(),
            due_at: due,
            payload: serde_json::json!({"name": "expire"}),
        })
        .await
        .unwrap();
    let t2 = StreamId::parse("saga_transfer-t2").unwrap();
    store
        .append(
            &t2,
            ExpectedRevision::NoStream,
            vec![
                json(
                    "orchestrix.saga.Started",
                    serde_json::json!({"saga": "transfer", "correlation": "t2"}),
                ),
                json(
                    "orchestrix.saga.CompensationStarted",
                    serde_json::json!({"reason": "account-9 is closed"}),
                ),
                json("orchestrix.saga.Compensated", serde_json::json!({})),
            ],
        )
        .await
        .unwrap();
    Seeded {
        account_event,
        letters,
        timer_id,
    }
}

/// The output of one run of the binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// Runs `orchestrix --store URL ARGS...`.
pub fn orchestrix(url: &str, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_orchestrix"))
        .arg("--store")
        .arg(url)
        .args(args)
        .env_remove("ORCHESTRIX_STORE_URL")
        .env_remove("ORCHESTRIX_CONFIG")
        .output()
        .expect("run orchestrix");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
