//! Avro on NATS JetStream: the same Confluent frame as on Kafka (magic byte,
//! schema id, Avro binary) is the message payload, with the CloudEvents
//! attributes in `ce-` headers. v1 and v2 writers share one stream; one
//! reader decodes by schema id and resolves every message to its v2.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orchestrix::runtime::{Delivery, EventHandler};
use orchestrix::wire::{ValueFormat, WireDecoding};
use orchestrix::{EventRecord, RecordedEvent, StreamId};
use orchestrix_avro::{AvroCodec, AvroSchemas};
use orchestrix_nats::{NatsConfig, NatsConsumer, NatsPublisher};
use orchestrix_schema_registry::server::serve;
use orchestrix_schema_registry::{AvroWireFormat, ConfluentAvro, EmbeddedRegistry, RegistryClient};
use orchestrix_testkit::services::{Service, require};
use serde_json::{Value, json};

const DEPOSITED_V1: &str = r#"{"type":"record","name":"MoneyDeposited","namespace":"com.acme.bank",
  "fields":[{"name":"amount","type":"long"}]}"#;
const DEPOSITED_V2: &str = r#"{"type":"record","name":"MoneyDeposited","namespace":"com.acme.bank",
  "fields":[{"name":"amount","type":"long"},{"name":"memo","type":["null","string"],"default":null}]}"#;

fn format(url: &str, versions: &[(u32, &str)]) -> Arc<AvroWireFormat> {
    let mut catalog = AvroSchemas::new();
    for (v, s) in versions {
        catalog = catalog.with("com.acme.bank.MoneyDeposited", *v, s).unwrap();
    }
    Arc::new(AvroWireFormat::new(ConfluentAvro::new(
        Arc::new(RegistryClient::new(url).unwrap()),
        AvroCodec::new(catalog),
    )))
}

#[derive(Debug, Default)]
struct Collect(Mutex<Vec<(u64, u32, Value)>>);

#[async_trait]
impl EventHandler for Collect {
    fn name(&self) -> &str {
        "collect"
    }

    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> orchestrix::Result<()> {
        let value: Value = serde_json::from_slice(&event.record.data)
            .map_err(|e| orchestrix::Error::decode("payload", e))?;
        self.0
            .lock()
            .unwrap()
            .push((event.revision, event.record.schema_version, value));
        Ok(())
    }
}

fn deposited(stream: &StreamId, revision: u64, version: u32, payload: &Value) -> RecordedEvent {
    RecordedEvent {
        stream_id: stream.clone(),
        revision,
        position: revision + 1,
        record: EventRecord::json("com.acme.bank.MoneyDeposited", version, payload),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_v1_and_v2_writers_one_avro_reader() {
    let Some(nats) = require(Service::Nats) else {
        return;
    };
    let registry = serve(
        Arc::new(EmbeddedRegistry::memory()),
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
    )
    .await
    .unwrap();
    let url = registry.url();
    let id = uuid_suffix();
    let mut config = NatsConfig::new(nats);
    config.stream.name = format!("AVRO_{id}");
    config.stream.subject_prefix = format!("avro{id}.ev");
    config.stream.partitions = 2;
    config.leases.bucket = format!("avro{id}_leases");

    let stream = StreamId::parse("account-1").unwrap();
    let v1 = NatsPublisher::connect(config.clone())
        .await
        .unwrap()
        .with_value_format(format(&url, &[(1, DEPOSITED_V1)]));
    let v2 = NatsPublisher::connect(config.clone())
        .await
        .unwrap()
        .with_value_format(format(&url, &[(1, DEPOSITED_V1), (2, DEPOSITED_V2)]));
    v1.publish_events(&[deposited(&stream, 0, 1, &json!({"amount": 10}))])
        .await
        .unwrap();
    v2.publish_events(&[deposited(
        &stream,
        1,
        2,
        &json!({"amount": 20, "memo": "rent"}),
    )])
    .await
    .unwrap();
    v1.publish_events(&[deposited(&stream, 2, 1, &json!({"amount": 30}))])
        .await
        .unwrap();

    // The payload on the stream is the Confluent frame.
    let js = orchestrix_nats::async_nats::jetstream::new(
        orchestrix_nats::connect(&config).await.unwrap(),
    );
    let first = js
        .get_stream(&config.stream.name)
        .await
        .unwrap()
        .get_raw_message(1)
        .await
        .unwrap();
    assert_eq!(first.payload[0], 0, "magic byte");
    assert_eq!(
        first
            .headers
            .get("content-type")
            .map(|v| v.as_str().to_owned()),
        Some("application/avro".to_owned())
    );

    let collect = Arc::new(Collect::default());
    let reader = format(&url, &[(1, DEPOSITED_V1), (2, DEPOSITED_V2)]);
    let consumer = NatsConsumer::builder(config.clone())
        .handler(Arc::new(WireDecoding::new(
            reader as Arc<dyn ValueFormat>,
            collect.clone(),
        )))
        .group("avro")
        .start()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while collect.0.lock().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "{:?}", collect.0.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    consumer.shutdown().await.unwrap();
    assert_eq!(
        *collect.0.lock().unwrap(),
        vec![
            (0, 2, json!({"amount": 10, "memo": null})),
            (1, 2, json!({"amount": 20, "memo": "rent"})),
            (2, 2, json!({"amount": 30, "memo": null})),
        ]
    );
    let _ = js.delete_stream(&config.stream.name).await;
    let _ = js.delete_stream(config.dead_letter_stream()).await;
    let _ = js
        .delete_stream(format!("KV_{}", config.leases.bucket))
        .await;
}

fn uuid_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{:x}", nanos ^ u128::from(std::process::id()))
}
