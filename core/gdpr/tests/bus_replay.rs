//! Relayed events are the stored bytes: ciphertext travels, and a consumer
//! decoding with the codec sees erased fields when it replays after a forget.
#![cfg(feature = "sqlite")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use orchestrix::RecordedEvent;
use orchestrix::relay::{Publisher, Relay, RelayConfig};
use orchestrix_gdpr::keystore::sqlite::SqliteKeyStore;
use orchestrix_gdpr::{ForgetRequest, Personal, Vault};

async fn register(app: &orchestrix::Application, id: &str) {
    app.execute(CustomerCommand::Register {
        id: id.to_owned(),
        name: NAME.to_owned(),
        email: EMAIL.to_owned(),
    })
    .await
    .unwrap();
}

/// A bus that keeps what the relay publishes: the stored bytes.
#[derive(Debug, Default)]
struct Bus(Mutex<Vec<RecordedEvent>>);

#[async_trait::async_trait]
impl Publisher for Bus {
    fn name(&self) -> &str {
        "bus"
    }

    async fn publish(&self, events: &[RecordedEvent]) -> orchestrix::Result<()> {
        self.0.lock().unwrap().extend_from_slice(events);
        Ok(())
    }
}

#[tokio::test]
async fn bus_consumers_get_ciphertext_and_a_replay_after_forget_sees_erased_fields() {
    // Producer and consumer are separate "processes": separate vaults on one
    // key database, the consumer's trusting its cache for no time at all.
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.db");
    let producer = gdpr(Vault::new(SqliteKeyStore::open(&keys).unwrap()).unwrap());
    let consumer = gdpr(
        Vault::new(SqliteKeyStore::open(&keys).unwrap())
            .unwrap()
            .with_cache_ttl(Duration::ZERO),
    );
    let app = app(&producer);
    let id = customer_id();
    register(&app, &id).await;

    let bus = Arc::new(Bus::default());
    let relay = Relay::start(app.store().clone(), bus.clone(), RelayConfig::default())
        .await
        .unwrap();
    relay.wait_for(1).await.unwrap();
    relay.shutdown().await.unwrap();

    let published = bus.0.lock().unwrap().clone();
    assert_eq!(published.len(), 1);
    assert!(!String::from_utf8_lossy(&published[0].record.data).contains(EMAIL));
    let decode = |e: &RecordedEvent| match consumer
        .personal_data_codec()
        .decode_event::<CustomerEvent>(e)
        .unwrap()
    {
        CustomerEvent::CustomerRegistered { email, .. } => email,
        CustomerEvent::PlanChanged { .. } => panic!("wrong event"),
    };
    assert_eq!(decode(&published[0]), Personal::Known(EMAIL.into()));

    // The producer's side forgets; the consumer replays the bus.
    producer
        .forget(app.store(), ForgetRequest::new(&id))
        .await
        .unwrap();
    assert_eq!(decode(&published[0]), Personal::Erased);
}
