//! Reading old versions through `orchestrix::Store`: events written with v1
//! read by code that knows only v3, by Avro resolution (a field added with a
//! default, a field renamed with an alias) and by an explicit upcaster (a unit
//! change resolution cannot express), on every read path.

use std::sync::Arc;

use futures::StreamExt as _;
use orchestrix::codec::Codec;
use orchestrix::store::{ExpectedRevision, Filter};
use orchestrix::{Event, EventRecord, Store, StreamId};
use orchestrix_avro::{AVRO_CONTENT_TYPE, AvroCodec, AvroSchemas};
use serde::{Deserialize, Serialize};
use serde_json::json;

const DEPOSITED: &str = "com.acme.bank.MoneyDeposited";
const WITHDRAWN: &str = "com.acme.bank.MoneyWithdrawn";

/// The code of today: it knows only v3 of both event types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)]
#[event(prefix = "com.acme.bank")]
enum AccountEvent {
    #[event(name = "MoneyDeposited", version = 3)]
    Deposited {
        account_id: String,
        amount: i64,
        currency: String,
    },
    #[event(name = "MoneyWithdrawn", version = 3)]
    Withdrawn {
        account: String,
        cents: i64,
        currency: String,
    },
}

fn record(name: &str, fields: &str) -> String {
    format!(
        r#"{{"type":"record","name":"{name}","namespace":"com.acme.bank","fields":[{fields}]}}"#
    )
}

fn schemas() -> AvroSchemas {
    AvroSchemas::new()
        // Deposited: v2 adds `currency` with a default, v3 renames `account` with an alias.
        .with(DEPOSITED, 1, &record("MoneyDeposited", r#"{"name":"account","type":"string"},{"name":"amount","type":"long"}"#))
        .unwrap()
        .with(
            DEPOSITED,
            2,
            &record(
                "MoneyDeposited",
                r#"{"name":"account","type":"string"},{"name":"amount","type":"long"},{"name":"currency","type":"string","default":"EUR"}"#,
            ),
        )
        .unwrap()
        .with(
            DEPOSITED,
            3,
            &record(
                "MoneyDeposited",
                r#"{"name":"account_id","type":"string","aliases":["account"]},{"name":"amount","type":"long"},
                   {"name":"currency","type":"string","default":"EUR"}"#,
            ),
        )
        .unwrap()
        // Withdrawn: v2 adds `currency`, v3 replaces euros (double) by cents (long): an upcaster.
        .with(WITHDRAWN, 1, &record("MoneyWithdrawn", r#"{"name":"account","type":"string"},{"name":"euros","type":"double"}"#))
        .unwrap()
        .with(
            WITHDRAWN,
            2,
            &record(
                "MoneyWithdrawn",
                r#"{"name":"account","type":"string"},{"name":"euros","type":"double"},{"name":"currency","type":"string","default":"EUR"}"#,
            ),
        )
        .unwrap()
        .with(
            WITHDRAWN,
            3,
            &record(
                "MoneyWithdrawn",
                r#"{"name":"account","type":"string"},{"name":"cents","type":"long"},{"name":"currency","type":"string","default":"EUR"}"#,
            ),
        )
        .unwrap()
}

/// A record as old code wrote it: Avro bytes of an old version.
fn old_record(
    codec: &AvroCodec,
    event_type: &str,
    version: u32,
    payload: &serde_json::Value,
) -> EventRecord {
    let mut r = EventRecord::json(event_type, version, &json!(null));
    r.content_type = AVRO_CONTENT_TYPE.to_owned();
    r.data = codec.encode(event_type, version, payload).unwrap();
    r
}

fn store(codec: &AvroCodec) -> Store {
    let upcasters = codec
        .upcasters()
        .step(WITHDRAWN, 2, |v| {
            #[allow(clippy::cast_possible_truncation)]
            let cents = (v["euros"].as_f64().unwrap_or_default() * 100.0).round() as i64;
            Ok(json!({"account": v["account"], "cents": cents, "currency": v["currency"]}))
        })
        .build();
    Store::memory()
        .with_codec(Arc::new(codec.clone()))
        .with_upcasters(upcasters)
}

#[tokio::test]
async fn v1_events_are_read_as_v3_on_every_read_path() {
    let codec = AvroCodec::new(schemas());
    codec.schemas().verify::<AccountEvent>().unwrap();
    let store = store(&codec);
    let stream = StreamId::parse("account-7").unwrap();
    store
        .append(
            &stream,
            ExpectedRevision::NoStream,
            vec![
                old_record(
                    &codec,
                    DEPOSITED,
                    1,
                    &json!({"account": "7", "amount": 500}),
                ),
                old_record(
                    &codec,
                    WITHDRAWN,
                    1,
                    &json!({"account": "7", "euros": 1.25}),
                ),
                old_record(
                    &codec,
                    DEPOSITED,
                    2,
                    &json!({"account": "7", "amount": 300, "currency": "CHF"}),
                ),
            ],
        )
        .await
        .unwrap();
    let expected = vec![
        AccountEvent::Deposited {
            account_id: "7".into(),
            amount: 500,
            currency: "EUR".into(),
        },
        AccountEvent::Withdrawn {
            account: "7".into(),
            cents: 125,
            currency: "EUR".into(),
        },
        AccountEvent::Deposited {
            account_id: "7".into(),
            amount: 300,
            currency: "CHF".into(),
        },
    ];

    // Aggregate load path.
    let events = store.read_stream_forward(&stream, 0, 10).await.unwrap();
    assert!(
        events
            .iter()
            .all(|e| e.record.schema_version == 3 && e.record.content_type == AVRO_CONTENT_TYPE)
    );
    let decoded: Vec<AccountEvent> = events.iter().map(|e| store.decode(e).unwrap()).collect();
    assert_eq!(decoded, expected);
    // The JSON-only decode of core refuses Avro instead of misreading it.
    assert!(events[0].decode::<AccountEvent>().is_err());

    // All-stream path and subscriptions (projections, relays).
    let all = store.read_all(0, 10, &Filter::default()).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|e| store.decode::<AccountEvent>(e).unwrap())
            .collect::<Vec<_>>(),
        expected
    );
    let live: Vec<_> = store
        .subscribe(0, Filter::default())
        .take(3)
        .collect()
        .await;
    let live: Vec<AccountEvent> = live
        .into_iter()
        .map(|e| store.decode(&e.unwrap()).unwrap())
        .collect();
    assert_eq!(live, expected);
}

#[tokio::test]
async fn current_events_round_trip_through_the_store() {
    let codec = AvroCodec::new(schemas());
    let store = store(&codec);
    let stream = StreamId::parse("account-8").unwrap();
    let event = AccountEvent::Withdrawn {
        account: "8".into(),
        cents: 99,
        currency: "USD".into(),
    };
    let mut r = EventRecord::json(event.event_type(), event.schema_version(), &json!(null));
    r.content_type = AVRO_CONTENT_TYPE.to_owned();
    r.data = codec
        .encode(
            event.event_type(),
            event.schema_version(),
            &event.to_payload().unwrap(),
        )
        .unwrap();
    store
        .append(&stream, ExpectedRevision::NoStream, vec![r])
        .await
        .unwrap();
    let events = store.read_stream_forward(&stream, 0, 10).await.unwrap();
    assert_eq!(store.decode::<AccountEvent>(&events[0]).unwrap(), event);
}

#[tokio::test]
async fn resolution_alone_goes_from_v1_to_v3_in_one_step() {
    let codec = AvroCodec::new(schemas());
    let bytes = codec
        .encode(DEPOSITED, 1, &json!({"account": "1", "amount": 5}))
        .unwrap();
    let (version, value) = codec.decode_latest(DEPOSITED, 1, &bytes).unwrap();
    assert_eq!(
        (version, value),
        (
            3,
            json!({"account_id": "1", "amount": 5, "currency": "EUR"})
        )
    );
    // Straight v1 → v3 resolution fails where an upcaster is needed (double → long).
    let bytes = codec
        .encode(WITHDRAWN, 1, &json!({"account": "1", "euros": 0.5}))
        .unwrap();
    assert!(codec.decode_latest(WITHDRAWN, 1, &bytes).is_err());
}

/// A typed `View` on an Avro store reads through the store's codec and
/// upcasters (it decoded payloads as JSON only, and failed on every event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typed_view_reads_avro_events_through_the_store_codec() {
    #[derive(Debug, Default)]
    struct Totals;
    impl orchestrix::View for Totals {
        const NAME: &'static str = "totals";
        type Event = AccountEvent;
        type Row = i64;
        fn update(&self, row: &mut i64, event: &AccountEvent, _: &orchestrix::RecordedEvent) {
            match event {
                AccountEvent::Deposited { amount, .. } => *row += amount,
                AccountEvent::Withdrawn { cents, .. } => *row -= cents,
            }
        }
    }

    let codec = AvroCodec::new(schemas());
    let store = store(&codec);
    let stream = StreamId::parse("account-7").unwrap();
    store
        .append(
            &stream,
            ExpectedRevision::NoStream,
            vec![
                old_record(
                    &codec,
                    DEPOSITED,
                    1,
                    &json!({"account": "7", "amount": 500}),
                ),
                old_record(
                    &codec,
                    WITHDRAWN,
                    1,
                    &json!({"account": "7", "euros": 1.25}),
                ),
            ],
        )
        .await
        .unwrap();
    let app = orchestrix::Application::builder(store)
        .projection(Totals)
        .build()
        .unwrap();
    let runtime = orchestrix::runtime::Runtime::start(&app).await.unwrap();
    runtime.catch_up().await.unwrap();
    let totals = app.read_model::<Totals>().unwrap();
    assert_eq!(totals.get("7").await.unwrap(), Some(375));
    assert!(
        runtime
            .monitors()
            .iter()
            .all(|m| m.processed_position() == 2)
    );
    runtime.shutdown().await.unwrap();
}
