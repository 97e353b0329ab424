//! Projections: runner, rebuild in place, rebuild into a new version, and the
//! exactly-once transactional variant.

mod runtime_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use orchestrix::runtime::{
    DeadLetters, Projection, ProjectionHandler, ProjectionRunner, RetryPolicy,
    TransactionalHandler, TransactionalProjection,
};
use orchestrix::store::Filter;
use orchestrix::{Error, RecordedEvent, Result, Store, StreamId};
use runtime_support::{append, stream, within};
use serde_json::{Value, json};

/// Balances per account, in units (v1) or cents (v2). Idempotent: it keeps
/// the last applied revision per stream and skips anything at or below it.
#[derive(Debug)]
struct Balances {
    name: String,
    unit: i64,
    state: Mutex<BalanceState>,
    applies: AtomicU64,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct BalanceState {
    balances: BTreeMap<String, i64>,
    last_revision: BTreeMap<String, u64>,
}

impl Balances {
    fn new(name: &str, unit: i64) -> Self {
        Self {
            name: name.to_owned(),
            unit,
            state: Mutex::default(),
            applies: AtomicU64::new(0),
        }
    }
    fn balances(&self) -> BTreeMap<String, i64> {
        self.state.lock().unwrap().balances.clone()
    }
}

#[async_trait]
impl Projection for Balances {
    fn name(&self) -> &str {
        &self.name
    }

    fn filter(&self) -> Filter {
        Filter::all().categories(["account"])
    }

    async fn apply(&self, event: &RecordedEvent) -> Result<()> {
        let payload: Value = serde_json::from_slice(&event.record.data)
            .map_err(|e| Error::decode("balance event", e))?;
        let amount = payload["amount"]
            .as_i64()
            .ok_or_else(|| Error::invalid("balance event", "no amount"))?;
        let signed = match event.event_type() {
            "com.acme.Deposited" => amount,
            "com.acme.Withdrawn" => -amount,
            other => {
                return Err(Error::invalid(
                    "balance event",
                    format!("unexpected type {other}"),
                ));
            }
        };
        // Yield inside the apply, so partitions interleave.
        tokio::task::yield_now().await;
        let mut state = self.state.lock().unwrap();
        let stream = event.stream_id.to_string();
        if state
            .last_revision
            .get(&stream)
            .is_some_and(|&r| r >= event.revision)
        {
            return Ok(());
        }
        state.last_revision.insert(stream.clone(), event.revision);
        *state.balances.entry(stream).or_default() += signed * self.unit;
        self.applies.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn reset(&self) -> Result<()> {
        *self.state.lock().unwrap() = BalanceState::default();
        Ok(())
    }
}

/// 200 accounts with deposits and withdrawals, plus noise in another category.
async fn seed(store: &Store) -> Vec<StreamId> {
    let accounts: Vec<StreamId> = (0..200).map(|_| stream("account")).collect();
    for (i, account) in (0_i64..).zip(&accounts) {
        append(
            store,
            account,
            "com.acme.Deposited",
            json!({"amount": 100 + i}),
        )
        .await;
        append(
            store,
            account,
            "com.acme.Withdrawn",
            json!({"amount": i % 7}),
        )
        .await;
        append(store, &stream("audit"), "com.acme.Logged", json!({})).await;
        append(store, account, "com.acme.Deposited", json!({"amount": 3})).await;
    }
    accounts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuilt_projection_equals_the_original() {
    let store = Store::memory();
    let accounts = seed(&store).await;
    let runner = ProjectionRunner::builder(store.clone(), Arc::new(Balances::new("balances", 1)))
        .partitions(8)
        .batch_size(64)
        .start()
        .await
        .unwrap();
    within("catch-up", runner.catch_up()).await.unwrap();
    let original = runner.projection().balances();
    assert_eq!(original.len(), 200);
    assert_eq!(original[accounts[10].as_str()], 110 - 3 + 3);
    assert_eq!(runner.projection().applies.load(Ordering::Relaxed), 600);

    // Rebuild in place: reset, replay everything, same state.
    within("rebuild", runner.rebuild()).await.unwrap();
    assert_eq!(runner.projection().balances(), original);
    assert_eq!(runner.projection().applies.load(Ordering::Relaxed), 1200);

    // The rebuilt projection follows live events.
    let head = append(
        &store,
        &accounts[0],
        "com.acme.Deposited",
        json!({"amount": 1000}),
    )
    .await;
    within("live", runner.wait_until_caught_up(head))
        .await
        .unwrap();
    assert_eq!(
        runner.projection().balances()[accounts[0].as_str()],
        original[accounts[0].as_str()] + 1000
    );
    runner.shutdown().await.unwrap();
    assert_eq!(
        store
            .backend()
            .checkpoints
            .load_checkpoint("balances")
            .await
            .unwrap(),
        Some(head)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuild_into_builds_a_new_version_side_by_side_then_switches() {
    let store = Store::memory();
    let accounts = seed(&store).await;
    let v1 = Arc::new(Balances::new("balances.v1", 1));
    let runner = ProjectionRunner::builder(store.clone(), v1.clone())
        .partitions(4)
        .start()
        .await
        .unwrap();
    within("catch-up", runner.catch_up()).await.unwrap();
    let units = v1.balances();

    // Same name: refused.
    let same = runner
        .rebuild_into(Arc::new(Balances::new("balances.v1", 100)))
        .await
        .unwrap_err();
    assert!(matches!(same, Error::InvalidInput { .. }), "{same}");

    let v2 = Arc::new(Balances::new("balances.v2", 100));
    let old = within("rebuild_into", runner.rebuild_into(v2.clone()))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&old, &v1));
    assert!(Arc::ptr_eq(&runner.projection(), &v2));
    assert_eq!(runner.name(), "balances.v2");
    let cents: BTreeMap<String, i64> = units.iter().map(|(k, v)| (k.clone(), v * 100)).collect();
    assert_eq!(v2.balances(), cents);
    // The old version's checkpoint is gone; the new one's is kept from now on.
    assert_eq!(
        store
            .backend()
            .checkpoints
            .load_checkpoint("balances.v1")
            .await
            .unwrap(),
        None
    );

    // Live events now go to v2 only.
    let head = append(
        &store,
        &accounts[1],
        "com.acme.Deposited",
        json!({"amount": 2}),
    )
    .await;
    within("live", runner.wait_until_caught_up(head))
        .await
        .unwrap();
    assert_eq!(
        v2.balances()[accounts[1].as_str()],
        cents[accounts[1].as_str()] + 200
    );
    assert_eq!(v1.balances(), units);
    runner.shutdown().await.unwrap();
    assert_eq!(
        store
            .backend()
            .checkpoints
            .load_checkpoint("balances.v2")
            .await
            .unwrap(),
        Some(head)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_dead_letter_replays_through_the_projection_handler() {
    let store = Store::memory();
    let account = stream("account");
    append(&store, &account, "com.acme.Deposited", json!({"amount": 5})).await;
    append(
        &store,
        &account,
        "com.acme.Deposited",
        json!({"no_amount": true}),
    )
    .await;
    append(&store, &account, "com.acme.Deposited", json!({"amount": 7})).await;
    let balances = Arc::new(Balances::new("balances", 1));
    let runner = ProjectionRunner::builder(store.clone(), balances.clone())
        .start()
        .await
        .unwrap();
    within("catch-up", runner.catch_up()).await.unwrap();
    assert_eq!(balances.balances()[account.as_str()], 12);
    let dead_letters = DeadLetters::new(store.clone());
    let letters = dead_letters.list("balances").await.unwrap();
    assert_eq!(letters.len(), 1);
    assert!(letters[0].reason.contains("no amount"));
    let err = dead_letters
        .replay(letters[0].id, &ProjectionHandler::new(balances.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), "invalid_input");
    runner.shutdown().await.unwrap();
}

/// A transactional read model: every `apply_batch` works on a copy and swaps
/// it in (with the checkpoint) only when every event applied, like a database
/// transaction. Counts per stream are exact only if nothing applies twice.
#[derive(Debug)]
struct Ledger {
    name: String,
    committed: Mutex<LedgerState>,
    batches: AtomicU64,
    fail_transiently: AtomicU64,
}

#[derive(Debug, Default, Clone, PartialEq)]
struct LedgerState {
    counts: BTreeMap<String, u64>,
    checkpoint: Option<u64>,
}

impl Ledger {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            committed: Mutex::default(),
            batches: AtomicU64::new(0),
            fail_transiently: AtomicU64::new(0),
        }
    }
    fn state(&self) -> LedgerState {
        self.committed.lock().unwrap().clone()
    }
}

#[async_trait]
impl TransactionalProjection for Ledger {
    fn name(&self) -> &str {
        &self.name
    }

    async fn load_checkpoint(&self, _: &str) -> Result<Option<u64>> {
        Ok(self.committed.lock().unwrap().checkpoint)
    }

    async fn apply_batch(
        &self,
        events: &[RecordedEvent],
        _: &str,
        last_position: u64,
    ) -> Result<()> {
        self.batches.fetch_add(1, Ordering::Relaxed);
        if self.fail_transiently.load(Ordering::SeqCst) > 0 {
            self.fail_transiently.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::backend(
                "ledger",
                "commit",
                true,
                "database is locked",
            ));
        }
        let mut tx = self.committed.lock().unwrap().clone();
        for event in events {
            let payload: Value = serde_json::from_slice(&event.record.data)
                .map_err(|e| Error::decode("ledger event", e))?;
            if payload["poison"] == json!(true) {
                return Err(Error::invalid("ledger event", "poison"));
            }
            *tx.counts.entry(event.stream_id.to_string()).or_default() += 1;
        }
        tx.checkpoint = Some(
            tx.checkpoint
                .map_or(last_position, |c| c.max(last_position)),
        );
        *self.committed.lock().unwrap() = tx;
        Ok(())
    }

    async fn reset(&self, _: &str) -> Result<()> {
        *self.committed.lock().unwrap() = LedgerState::default();
        Ok(())
    }

    async fn delete_checkpoint(&self, _: &str) -> Result<()> {
        self.committed.lock().unwrap().checkpoint = None;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_projection_applies_batches_exactly_once_and_isolates_poison() {
    let store = Store::memory();
    let (a, b) = (stream("account"), stream("account"));
    for i in 0..30_u32 {
        append(
            &store,
            if i.is_multiple_of(2) { &a } else { &b },
            "com.acme.Tick",
            json!({}),
        )
        .await;
    }
    let poison_at = append(&store, &a, "com.acme.Tick", json!({"poison": true})).await;
    for _ in 0..9 {
        append(&store, &b, "com.acme.Tick", json!({})).await;
    }
    let ledger = Arc::new(Ledger::new("ledger"));
    let runner = ProjectionRunner::transactional(store.clone(), ledger.clone())
        .batch_size(16)
        .retry(RetryPolicy::fixed(3, Duration::from_millis(1)))
        .start()
        .await
        .unwrap();
    let head = within("catch-up", runner.catch_up()).await.unwrap();
    assert_eq!(head, 40);
    let state = ledger.state();
    assert_eq!(state.counts[a.as_str()], 15);
    assert_eq!(state.counts[b.as_str()], 24);
    // The checkpoint lives in the read model, not in the checkpoint store.
    assert_eq!(state.checkpoint, Some(40));
    assert_eq!(
        store
            .backend()
            .checkpoints
            .load_checkpoint("ledger")
            .await
            .unwrap(),
        None
    );
    let letters = DeadLetters::new(store.clone())
        .list("ledger")
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].position, Some(poison_at));
    assert_eq!(letters[0].attempts, 1);

    // A crash and a restart apply nothing twice.
    drop(runner);
    let runner = ProjectionRunner::transactional(store.clone(), ledger.clone())
        .start()
        .await
        .unwrap();
    let head = append(&store, &a, "com.acme.Tick", json!({})).await;
    within("live", runner.wait_until_caught_up(head))
        .await
        .unwrap();
    let state = ledger.state();
    assert_eq!(state.counts[a.as_str()], 16);
    assert_eq!(state.counts[b.as_str()], 24);

    // A transient failure is retried as a whole batch.
    ledger.fail_transiently.store(2, Ordering::SeqCst);
    let head = append(&store, &b, "com.acme.Tick", json!({})).await;
    within("retry", runner.wait_until_caught_up(head))
        .await
        .unwrap();
    assert_eq!(ledger.state().counts[b.as_str()], 25);
    assert_eq!(ledger.state().checkpoint, Some(head));
    assert_eq!(
        DeadLetters::new(store.clone())
            .list("ledger")
            .await
            .unwrap()
            .len(),
        1
    );

    // Rebuild: reset and replay, same counts.
    let before = ledger.state();
    within("rebuild", runner.rebuild()).await.unwrap();
    assert_eq!(ledger.state(), before);

    // Replaying the dead letter does not move the checkpoint back.
    let letter = DeadLetters::new(store.clone())
        .list("ledger")
        .await
        .unwrap()
        .remove(0);
    let err = DeadLetters::new(store.clone())
        .replay(letter.id, &TransactionalHandler::new(ledger.clone()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("poison"));
    assert_eq!(ledger.state().checkpoint, Some(head));
    runner.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_projection_can_be_rebuilt_into_a_new_version() {
    let store = Store::memory();
    let s = stream("account");
    for _ in 0..10 {
        append(&store, &s, "com.acme.Tick", json!({})).await;
    }
    let v1 = Arc::new(Ledger::new("ledger.v1"));
    let runner = ProjectionRunner::transactional(store.clone(), v1.clone())
        .start()
        .await
        .unwrap();
    within("catch-up", runner.catch_up()).await.unwrap();
    let v2 = Arc::new(Ledger::new("ledger.v2"));
    let old = within("rebuild_into", runner.rebuild_into(v2.clone()))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&old, &v1));
    assert_eq!(v2.state().counts, v1.state().counts);
    assert_eq!(v2.state().checkpoint, Some(10));
    assert_eq!(v1.state().checkpoint, None);
    runner.shutdown().await.unwrap();
}
