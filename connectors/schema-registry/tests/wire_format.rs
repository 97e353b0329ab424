//! `AvroWireFormat` on records the catalog has no schema for: the saga
//! engine's bookkeeping travels in an envelope every stock deserializer reads.

use std::sync::Arc;

use orchestrix::wire::ValueFormat;
use orchestrix::{EventRecord, RecordedEvent, StreamId};
use orchestrix_avro::apache_avro::{Schema, from_avro_datum, types::Value as Avro};
use orchestrix_avro::{AvroCodec, AvroSchemas};
use orchestrix_schema_registry::wire::ENGINE_RECORD_SCHEMA;
use orchestrix_schema_registry::{AvroWireFormat, ConfluentAvro, EmbeddedRegistry, SchemaRegistry};
use serde_json::{Value, json};

const CLOSED: &str = r#"{"type":"record","name":"Closed","namespace":"com.acme.bank","fields":[]}"#;

fn event(event_type: &str, payload: &Value) -> RecordedEvent {
    RecordedEvent {
        stream_id: StreamId::parse("saga-transfer-t1").unwrap(),
        revision: 0,
        position: 1,
        record: EventRecord::json(event_type, 1, payload),
    }
}

#[tokio::test]
async fn saga_engine_records_travel_in_an_envelope_and_come_back_whole() {
    let registry = Arc::new(EmbeddedRegistry::memory());
    let codec = AvroCodec::new(
        AvroSchemas::new()
            .with("com.acme.bank.Closed", 1, CLOSED)
            .unwrap(),
    );
    let format = AvroWireFormat::new(ConfluentAvro::new(registry.clone(), codec));

    let payload = json!({
        "command_id": "transfer:t1:3",
        "command": {"Account": {"Debit": {"account": "alice", "amount": 3000}}},
        "duplicate": false,
        "stream_id": "account-alice"
    });
    let sent = event("orchestrix.saga.CommandSent", &payload);
    let wire = format.outbound("bank", &sent).await.unwrap();
    assert_eq!(wire.record.content_type, "application/avro");
    assert_eq!(wire.record.data[0], 0, "a Confluent frame");

    // A reader that knows nothing of Orchestrix: the id from the frame, the
    // schema from the registry, apache-avro for the body.
    let id = u32::from_be_bytes(wire.record.data[1..5].try_into().unwrap());
    let text = registry.schema_by_id(id).await.unwrap();
    let writer = Schema::parse_str(&text).unwrap();
    assert_eq!(writer, Schema::parse_str(ENGINE_RECORD_SCHEMA).unwrap());
    let Avro::Record(fields) = from_avro_datum(&writer, &mut &wire.record.data[5..], None).unwrap()
    else {
        panic!("a record")
    };
    assert_eq!(
        fields[0],
        (
            "event_type".into(),
            Avro::String("orchestrix.saga.CommandSent".into())
        )
    );
    let Avro::String(json_text) = &fields[1].1 else {
        panic!("the JSON text")
    };
    assert_eq!(serde_json::from_str::<Value>(json_text).unwrap(), payload);

    // Orchestrix's own consumers get the engine record back as it was stored.
    let back = format.inbound("bank", wire).await.unwrap();
    assert_eq!(back.record.content_type, "application/json");
    assert_eq!(back.record.event_type, "orchestrix.saga.CommandSent");
    assert_eq!(
        serde_json::from_slice::<Value>(&back.record.data).unwrap(),
        payload
    );

    // A fieldless engine record (`null`) too.
    let completed = event("orchestrix.saga.Completed", &Value::Null);
    let back = format
        .inbound("bank", format.outbound("bank", &completed).await.unwrap())
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&back.record.data).unwrap(),
        Value::Null
    );

    // A domain event without a schema is still refused: only the engine's
    // records have an envelope.
    let err = format
        .outbound(
            "bank",
            &event("com.acme.bank.Opened", &json!({"owner": "A"})),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("com.acme.bank.Opened"), "{err}");

    // A fieldless domain event is an empty record.
    let closed = event("com.acme.bank.Closed", &Value::Null);
    let wire = format.outbound("bank", &closed).await.unwrap();
    assert_eq!(wire.record.data.len(), 5, "the frame and no body");
    let back = format.inbound("bank", wire).await.unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&back.record.data).unwrap(),
        json!({})
    );
}
