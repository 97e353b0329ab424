//! Typed projections: decoded events, rows by key, redeliveries skipped by
//! stream revision, rebuilds from a cleared read model.

use std::sync::Arc;

use orchestrix::runtime::{MemoryReadModels, Projection, Runtime, ViewProjection};
use orchestrix::store::ExpectedRevision;
use orchestrix::{Application, Event, EventRecord, RecordedEvent, Store, StreamId, View};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "com.acme.bank")]
enum MoneyEvent {
    Deposited { cents: i64 },
    Withdrawn { cents: i64 },
}

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "com.acme.other")]
enum OtherEvent {
    Noise,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Row {
    balance: i64,
    events: u32,
}

#[derive(Debug)]
struct Balances;

impl View for Balances {
    const NAME: &'static str = "balances";
    type Event = MoneyEvent;
    type Row = Row;
    fn update(&self, row: &mut Row, event: &MoneyEvent, _: &RecordedEvent) {
        row.events += 1;
        match event {
            MoneyEvent::Deposited { cents } => row.balance += cents,
            MoneyEvent::Withdrawn { cents } => row.balance -= cents,
        }
    }
}

fn record(e: &impl Event) -> EventRecord {
    EventRecord::json(e.event_type(), e.schema_version(), &e.to_payload().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_keeps_typed_rows_and_rebuilds() {
    let app = Application::builder(Store::memory())
        .projection(Balances)
        .build()
        .unwrap();
    let running = Runtime::start(&app).await.unwrap();
    let a = StreamId::parse("account-a").unwrap();
    let b = StreamId::parse("account-b").unwrap();
    let store = app.store();
    store
        .append(
            &a,
            ExpectedRevision::NoStream,
            vec![
                record(&MoneyEvent::Deposited { cents: 100 }),
                record(&MoneyEvent::Withdrawn { cents: 30 }),
            ],
        )
        .await
        .unwrap();
    store
        .append(
            &b,
            ExpectedRevision::NoStream,
            vec![
                record(&MoneyEvent::Deposited { cents: 5 }),
                record(&OtherEvent::Noise),
            ],
        )
        .await
        .unwrap();
    running.catch_up().await.unwrap();
    let balances = app.read_model::<Balances>().unwrap();
    let expected = [
        (
            "a".to_owned(),
            Row {
                balance: 70,
                events: 2,
            },
        ),
        (
            "b".to_owned(),
            Row {
                balance: 5,
                events: 1,
            },
        ),
    ];
    assert_eq!(
        balances
            .all()
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        expected
    );

    // A rebuild clears the rows and replays: same rows, nothing counted twice.
    running
        .projection("balances")
        .unwrap()
        .rebuild()
        .await
        .unwrap();
    running.catch_up().await.unwrap();
    assert_eq!(
        balances
            .all()
            .await
            .unwrap()
            .into_iter()
            .collect::<Vec<_>>(),
        expected
    );
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn redelivered_events_are_applied_once() {
    let read_models = Arc::new(MemoryReadModels::new());
    let projection = ViewProjection::new(Balances, read_models.clone());
    let stream = StreamId::parse("account-x").unwrap();
    let event = |revision, position, cents| RecordedEvent {
        stream_id: stream.clone(),
        revision,
        position,
        record: record(&MoneyEvent::Deposited { cents }),
    };
    let (first, second) = (event(0, 1, 10), event(1, 2, 20));
    for e in [&first, &second, &first, &second] {
        projection.apply(e).await.unwrap();
    }
    let row = projection.read_model().get("x").await.unwrap().unwrap();
    assert_eq!(
        row,
        Row {
            balance: 30,
            events: 2
        }
    );

    projection.reset().await.unwrap();
    assert_eq!(projection.read_model().get("x").await.unwrap(), None);
    projection.apply(&first).await.unwrap();
    assert_eq!(
        projection
            .read_model()
            .get("x")
            .await
            .unwrap()
            .unwrap()
            .balance,
        10
    );

    // An event of another type is not the view's: a decode error, permanent.
    let noise = RecordedEvent {
        stream_id: stream.clone(),
        revision: 2,
        position: 3,
        record: record(&OtherEvent::Noise),
    };
    assert!(!projection.apply(&noise).await.unwrap_err().is_transient());
    assert!(!Projection::filter(&projection).matches("account", noise.event_type()));
}

#[test]
fn an_unregistered_view_is_not_found() {
    let app = Application::builder(Store::memory()).build().unwrap();
    let err = app.read_model::<Balances>().unwrap_err();
    assert!(err.to_string().contains("balances"), "{err}");
}
