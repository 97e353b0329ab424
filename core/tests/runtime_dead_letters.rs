//! Retries and dead letters: poison events, undecodable payloads, transient
//! failures, exhausted retries, panics, upcasting failures, replay.

mod runtime_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use orchestrix::runtime::{Consumer, DeadLetters, Delivery, EventHandler, RetryPolicy};
use orchestrix::store::ExpectedRevision;
use orchestrix::{Error, RecordedEvent, Result, Store, Upcasters};
use runtime_support::{append, record, stream, within};
use serde_json::{Value, json};

/// A projection of amounts per stream that fails on demand:
/// - `{"poison": true}`: a permanent error, unless `fixed`;
/// - `{"flaky": n}`: a transient error on the first `n` attempts;
/// - `{"down": true}`: a transient error, always;
/// - `{"panic": true}`: panics;
/// - bytes that are not JSON: a decode error.
#[derive(Debug, Default)]
struct Amounts {
    fixed: AtomicBool,
    totals: Mutex<HashMap<String, i64>>,
    attempts: Mutex<HashMap<u64, Vec<u32>>>,
    handled: AtomicU64,
}

#[async_trait]
impl EventHandler for Amounts {
    fn name(&self) -> &str {
        "amounts"
    }

    async fn handle(&self, event: &RecordedEvent, delivery: &Delivery) -> Result<()> {
        self.attempts
            .lock()
            .unwrap()
            .entry(event.position)
            .or_default()
            .push(delivery.attempt);
        let payload: Value = serde_json::from_slice(&event.record.data)
            .map_err(|e| Error::decode(format!("event `{}`", event.event_type()), e))?;
        if payload["poison"] == json!(true) && !self.fixed.load(Ordering::SeqCst) {
            return Err(Error::invalid("amount", "poison pill"));
        }
        if let Some(n) = payload["flaky"].as_u64()
            && u64::from(delivery.attempt) <= n
        {
            return Err(Error::Timeout {
                operation: "read model write".into(),
                after: Duration::from_millis(1),
            });
        }
        if payload["down"] == json!(true) {
            return Err(Error::backend(
                "readmodel",
                "write",
                true,
                "connection refused",
            ));
        }
        if payload["panic"] == json!(true) {
            panic!("the handler blew up");
        }
        let amount = payload["amount"].as_i64().unwrap_or_default();
        *self
            .totals
            .lock()
            .unwrap()
            .entry(event.stream_id.to_string())
            .or_default() += amount;
        self.handled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn fast_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::fixed(attempts, Duration::from_millis(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_and_undecodable_events_are_dead_lettered_and_the_consumer_keeps_going() {
    let store = Store::memory();
    let s = stream("account");
    append(&store, &s, "com.acme.Deposited", json!({"amount": 5})).await;
    let mut poison = record("com.acme.Deposited", json!({"amount": 100, "poison": true}));
    poison.metadata.correlation_id = Some("corr-7".into());
    let poison_id = poison.id;
    let poison_bytes = poison.data.clone();
    store
        .append(&s, ExpectedRevision::Any, vec![poison])
        .await
        .unwrap();
    let mut garbage = record("com.acme.Deposited", json!({}));
    garbage.data = Bytes::from_static(b"\x00not json at all");
    store
        .append(&s, ExpectedRevision::Any, vec![garbage])
        .await
        .unwrap();
    for _ in 0..10 {
        append(&store, &s, "com.acme.Deposited", json!({"amount": 1})).await;
    }

    let amounts = Arc::new(Amounts::default());
    let consumer = Consumer::builder(store.clone(), amounts.clone())
        .partitions(2)
        .retry(fast_retries(5))
        .start()
        .await
        .unwrap();
    let head = within("catch-up", consumer.catch_up()).await.unwrap();
    assert_eq!(head, 13);
    // Every later event was handled.
    assert_eq!(amounts.handled.load(Ordering::SeqCst), 11);
    assert_eq!(amounts.totals.lock().unwrap()[s.as_str()], 15);

    let letters = DeadLetters::new(store.clone())
        .list("amounts")
        .await
        .unwrap();
    assert_eq!(letters.len(), 2, "{letters:#?}");
    let (p, g) = (&letters[0], &letters[1]);
    assert_eq!(p.event_id, Some(poison_id));
    assert_eq!(p.payload, poison_bytes);
    assert_eq!(p.position, Some(2));
    assert_eq!(p.stream_id.as_deref(), Some(s.as_str()));
    assert_eq!(p.event_type.as_deref(), Some("com.acme.Deposited"));
    assert_eq!(p.consumer, "amounts");
    assert_eq!(p.error_kind, "invalid_input");
    assert!(p.reason.contains("poison pill"), "{}", p.reason);
    assert_eq!(p.attempts, 1, "permanent errors are not retried");
    assert_eq!(p.headers["id"], poison_id.to_string());
    assert_eq!(p.headers["type"], "com.acme.Deposited");
    assert_eq!(p.headers["subject"], s.as_str());
    assert_eq!(p.headers["correlationid"], "corr-7");
    assert_eq!(p.headers["globalposition"], "2");
    assert_eq!(p.headers["specversion"], "1.0");
    assert!(!p.headers.contains_key("data") && !p.headers.contains_key("data_base64"));

    assert_eq!(&g.payload[..], b"\x00not json at all");
    assert_eq!(g.error_kind, "serialization");
    assert!(g.reason.contains("cannot decode"), "{}", g.reason);
    assert_eq!(g.attempts, 1);
    assert_eq!(g.position, Some(3));

    // The checkpoint moved past the dead letters.
    consumer.shutdown().await.unwrap();
    assert_eq!(
        store
            .backend()
            .checkpoints
            .load_checkpoint("amounts")
            .await
            .unwrap(),
        Some(13)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_error_is_retried_until_it_succeeds() {
    let store = Store::memory();
    let s = stream("account");
    let flaky = append(
        &store,
        &s,
        "com.acme.Deposited",
        json!({"amount": 3, "flaky": 2}),
    )
    .await;
    append(&store, &s, "com.acme.Deposited", json!({"amount": 4})).await;
    let amounts = Arc::new(Amounts::default());
    let consumer = Consumer::builder(store.clone(), amounts.clone())
        .retry(fast_retries(5))
        .start()
        .await
        .unwrap();
    within("catch-up", consumer.catch_up()).await.unwrap();
    assert_eq!(amounts.attempts.lock().unwrap()[&flaky], vec![1, 2, 3]);
    assert_eq!(amounts.totals.lock().unwrap()[s.as_str()], 7);
    assert!(
        DeadLetters::new(store.clone())
            .list_all()
            .await
            .unwrap()
            .is_empty()
    );
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_dead_letter_the_event() {
    let store = Store::memory();
    let s = stream("account");
    let down = append(
        &store,
        &s,
        "com.acme.Deposited",
        json!({"amount": 3, "down": true}),
    )
    .await;
    append(&store, &s, "com.acme.Deposited", json!({"amount": 4})).await;
    let amounts = Arc::new(Amounts::default());
    let consumer = Consumer::builder(store.clone(), amounts.clone())
        .retry(fast_retries(3))
        .start()
        .await
        .unwrap();
    within("catch-up", consumer.catch_up()).await.unwrap();
    assert_eq!(amounts.attempts.lock().unwrap()[&down], vec![1, 2, 3]);
    assert_eq!(amounts.totals.lock().unwrap()[s.as_str()], 4);
    let letters = DeadLetters::new(store.clone())
        .list("amounts")
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].attempts, 3);
    assert_eq!(letters[0].error_kind, "backend");
    assert!(letters[0].reason.contains("connection refused"));
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_dead_letters_the_event_instead_of_dying() {
    let store = Store::memory();
    let s = stream("account");
    append(&store, &s, "com.acme.Deposited", json!({"panic": true})).await;
    append(&store, &s, "com.acme.Deposited", json!({"amount": 4})).await;
    let amounts = Arc::new(Amounts::default());
    let consumer = Consumer::builder(store.clone(), amounts.clone())
        .retry(fast_retries(3))
        .start()
        .await
        .unwrap();
    within("catch-up", consumer.catch_up()).await.unwrap();
    assert_eq!(amounts.totals.lock().unwrap()[s.as_str()], 4);
    let letters = DeadLetters::new(store.clone())
        .list("amounts")
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert!(
        letters[0].reason.contains("the handler blew up"),
        "{}",
        letters[0].reason
    );
    assert_eq!(letters[0].attempts, 1);
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_that_fails_to_upcast_is_dead_lettered_with_its_stored_bytes() {
    let upcasters = Upcasters::new().add("com.acme.Deposited", 1, |mut v| {
        if v.get("cents").is_some() {
            return Err(Error::invalid("deposit v1", "cents are not supported"));
        }
        v["currency"] = json!("EUR");
        Ok(v)
    });
    let store = Store::memory().with_upcasters(upcasters);
    let s = stream("account");
    append(&store, &s, "com.acme.Deposited", json!({"amount": 1})).await;
    append(&store, &s, "com.acme.Deposited", json!({"cents": 150})).await;
    append(&store, &s, "com.acme.Deposited", json!({"amount": 2})).await;
    let amounts = Arc::new(Amounts::default());
    let consumer = Consumer::builder(store.clone(), amounts.clone())
        .start()
        .await
        .unwrap();
    within("catch-up", consumer.catch_up()).await.unwrap();
    assert_eq!(amounts.totals.lock().unwrap()[s.as_str()], 3);
    let letters = DeadLetters::new(store.clone())
        .list("amounts")
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].position, Some(2));
    assert_eq!(
        serde_json::from_slice::<Value>(&letters[0].payload).unwrap(),
        json!({"cents": 150})
    );
    assert!(letters[0].reason.contains("cents are not supported"));
    assert_eq!(letters[0].headers["schemaversion"], "1");
    consumer.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaying_a_dead_letter_after_the_fix_applies_it_and_deletes_the_letter() {
    let store = Store::memory();
    let (a, b) = (stream("account"), stream("account"));
    append(
        &store,
        &a,
        "com.acme.Deposited",
        json!({"amount": 100, "poison": true}),
    )
    .await;
    append(&store, &a, "com.acme.Deposited", json!({"amount": 1})).await;
    append(
        &store,
        &b,
        "com.acme.Deposited",
        json!({"amount": 50, "poison": true}),
    )
    .await;
    let mut garbage = record("com.acme.Deposited", json!({}));
    garbage.data = Bytes::from_static(b"{{{");
    store
        .append(&b, ExpectedRevision::Any, vec![garbage])
        .await
        .unwrap();

    let amounts = Arc::new(Amounts::default());
    let consumer = Consumer::builder(store.clone(), amounts.clone())
        .start()
        .await
        .unwrap();
    within("catch-up", consumer.catch_up()).await.unwrap();
    let dead_letters = DeadLetters::new(store.clone());
    let letters = dead_letters.list("amounts").await.unwrap();
    assert_eq!(letters.len(), 3);
    assert_eq!(
        dead_letters.get(letters[0].id).await.unwrap().as_ref(),
        Some(&letters[0])
    );

    // Not fixed yet: the replay fails and the letter stays.
    let err = dead_letters
        .replay(letters[0].id, &*amounts)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("poison pill"));
    assert_eq!(dead_letters.list("amounts").await.unwrap().len(), 3);

    // Fixed: one replay applies and deletes.
    amounts.fixed.store(true, Ordering::SeqCst);
    dead_letters.replay(letters[0].id, &*amounts).await.unwrap();
    assert_eq!(amounts.totals.lock().unwrap()[a.as_str()], 101);
    assert!(dead_letters.get(letters[0].id).await.unwrap().is_none());
    assert!(matches!(
        dead_letters.replay(letters[0].id, &*amounts).await,
        Err(Error::NotFound { .. })
    ));

    // Replay the rest: the poison one succeeds, the garbage stays.
    let report = dead_letters.replay_all("amounts", &*amounts).await.unwrap();
    assert_eq!(report.replayed, vec![letters[1].id]);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].0, letters[2].id);
    assert_eq!(report.failed[0].1.kind(), "serialization");
    assert_eq!(amounts.totals.lock().unwrap()[b.as_str()], 50);
    let left = dead_letters.list("amounts").await.unwrap();
    assert_eq!(left.len(), 1);
    // The replay counted as one more attempt.
    let attempts = amounts.attempts.lock().unwrap()[&letters[0].position.unwrap()].clone();
    assert_eq!(attempts, vec![1, 2, 2]);
    consumer.shutdown().await.unwrap();
}
