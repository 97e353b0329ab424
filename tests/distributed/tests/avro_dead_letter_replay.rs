//! Dead letters of an Avro bus replay as JSON: a handler consuming Kafka in
//! Avro mode (`format=avro&registry=URL`) dead-letters some events; the
//! dead-letter queue opened from the same URL (`orchestrix_backends::
//! dead_letters`, what `orchestrix dlq replay --bus URL` uses) hands the
//! fixed handler each event decoded through the registry, as the live
//! consumer would have seen it, and resolves it.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use common::unique;
use orchestrix::dead_letter::DeadLetterFilter;
use orchestrix::runtime::{Delivery, EventHandler};
use orchestrix::store::ExpectedRevision;
use orchestrix::{Application, Error, EventRecord, RecordedEvent, Store, StreamId};
use orchestrix_avro::AvroSchemas;
use orchestrix_backends::BusOptions;
use orchestrix_schema_registry::EmbeddedRegistry;
use orchestrix_schema_registry::server::serve;
use orchestrix_testkit::services::{Service, require};
use serde_json::{Value, json};

const DEPOSITED: &str = "com.acme.bank.MoneyDeposited";
const DEPOSITED_V1: &str = r#"{"type":"record","name":"MoneyDeposited","namespace":"com.acme.bank",
  "fields":[{"name":"amount","type":"long"}]}"#;

/// Refuses deposits above 100 while `broken`; records what it handled.
#[derive(Debug, Default)]
struct Picky {
    broken: bool,
    seen: Mutex<Vec<Value>>,
}

#[async_trait]
impl EventHandler for Picky {
    fn name(&self) -> &str {
        "picky"
    }

    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> orchestrix::Result<()> {
        assert_eq!(
            event.record.content_type, "application/json",
            "decoded before the handler"
        );
        let value: Value =
            serde_json::from_slice(&event.record.data).map_err(|e| Error::decode("payload", e))?;
        if self.broken && value["amount"].as_i64().unwrap_or_default() > 100 {
            return Err(Error::invalid("deposit", "too large for the old code"));
        }
        self.seen.lock().unwrap().push(value);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_bus_dead_letters_replay_decoded_through_the_registry() {
    let Some(brokers) = require(Service::Kafka) else {
        return;
    };
    let registry = serve(
        Arc::new(EmbeddedRegistry::memory()),
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let id = unique("");
    let url = format!(
        "kafka://{brokers}?prefix=avrodlq-{id}&partitions=2&session.timeout.ms=6000&heartbeat.interval.ms=1000&format=avro&registry=http://{}",
        registry.local_addr()
    );
    let store = Store::memory();
    let picky = Arc::new(Picky {
        broken: true,
        ..Picky::default()
    });
    let app = Application::builder(store.clone())
        .name("avrodlq")
        .handler(picky.clone())
        .build()
        .unwrap();
    let mut options = BusOptions::default();
    options.avro_schemas = Some(AvroSchemas::new().with(DEPOSITED, 1, DEPOSITED_V1).unwrap());
    let runtime = orchestrix_backends::start_on_bus(&app, &url, options)
        .await
        .unwrap();

    let amounts = [10_i64, 500, 20, 700, 30];
    for (n, amount) in amounts.iter().enumerate() {
        let stream = StreamId::parse(format!("account-{n}")).unwrap();
        store
            .append(
                &stream,
                ExpectedRevision::NoStream,
                vec![EventRecord::json(DEPOSITED, 1, &json!({"amount": amount}))],
            )
            .await
            .unwrap();
    }
    let queue = orchestrix_backends::dead_letters(&url, Some(&app))
        .await
        .unwrap();
    assert!(queue.describe().contains("avro"), "{}", queue.describe());
    let filter = DeadLetterFilter::default();
    let deadline = Instant::now() + Duration::from_secs(60);
    let letters = loop {
        let letters = queue.list(&filter).await.unwrap();
        if letters.len() == 2 && picky.seen.lock().unwrap().len() == 3 {
            break letters;
        }
        assert!(
            Instant::now() < deadline,
            "handled {:?}, dead letters {}",
            picky.seen.lock().unwrap(),
            letters.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    runtime.shutdown().await.unwrap();
    // The letters keep the bytes as they were on the bus: Confluent frames.
    assert!(letters.iter().all(|l| l.payload.first() == Some(&0)));

    // The fixed code takes them, decoded as the live consumer decodes.
    let fixed = Picky::default();
    for letter in &letters {
        orchestrix::dead_letter::replay(queue.as_ref(), letter, &fixed)
            .await
            .unwrap();
    }
    let mut replayed = fixed.seen.lock().unwrap().clone();
    replayed.sort_by_key(|v| v["amount"].as_i64());
    assert_eq!(
        replayed,
        vec![json!({"amount": 500}), json!({"amount": 700})]
    );
    assert!(queue.list(&filter).await.unwrap().is_empty(), "resolved");
    registry.shutdown().await.unwrap();
}
