//! v1 then v2 (a new optional field) land in one table, the new field as a
//! nullable column; v3 (an incompatible change) goes to the dead letters and
//! leaves the table as it was. Once with declared Avro schemas, once with
//! columns inferred from JSON.

use std::sync::Arc;
use std::time::Duration;

use orchestrix::runtime::ProjectionRunner;
use orchestrix::store::ExpectedRevision;
use orchestrix::{EventRecord, Store, StreamId};
use orchestrix_lakehouse::deltalake::arrow::datatypes::DataType;
use orchestrix_lakehouse::schema::AvroSchemas;
use orchestrix_lakehouse::{LakehouseSink, live_files, open_table, read_rows};
use serde_json::{Value, json};

const TYPE: &str = "com.acme.Registered";

fn v1() -> &'static str {
    r#"{"type":"record","name":"Registered","fields":[
        {"name":"customer","type":"string"},{"name":"age","type":"long"}]}"#
}
fn v2() -> &'static str {
    r#"{"type":"record","name":"Registered","fields":[
        {"name":"customer","type":"string"},{"name":"age","type":"long"},
        {"name":"country","type":["null","string"],"default":null}]}"#
}
/// `age` becomes a string: incompatible.
fn v3() -> &'static str {
    r#"{"type":"record","name":"Registered","fields":[
        {"name":"customer","type":"string"},{"name":"age","type":"string"},
        {"name":"country","type":["null","string"],"default":null}]}"#
}
/// A new required field without default: incompatible.
fn v4() -> &'static str {
    r#"{"type":"record","name":"Registered","fields":[
        {"name":"customer","type":"string"},{"name":"age","type":"long"},
        {"name":"country","type":["null","string"],"default":null},
        {"name":"vat","type":"string"}]}"#
}

async fn append(store: &Store, n: usize, version: u32, payload: Value) {
    let stream = StreamId::new("customer", &format!("c{n}")).unwrap();
    let e = EventRecord::json(TYPE, version, &payload);
    store
        .append(&stream, ExpectedRevision::Any, vec![e])
        .await
        .unwrap();
}

async fn run(store: &Store, sink: Arc<LakehouseSink>) {
    let runner = ProjectionRunner::transactional(store.clone(), sink)
        .start()
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), runner.wait_until_caught_up(head))
        .await
        .expect("the sink catches up within 60 s")
        .unwrap();
    runner.shutdown().await.unwrap();
}

async fn evolve(declared: bool) {
    let store = Store::memory();
    let lake = tempfile::tempdir().unwrap();
    let dir = lake.path().join(TYPE);
    let schemas = AvroSchemas::new()
        .with(TYPE, 1, v1())
        .unwrap()
        .with(TYPE, 2, v2())
        .unwrap()
        .with(TYPE, 3, v3())
        .unwrap()
        .with(TYPE, 4, v4())
        .unwrap();
    let sink = || {
        let b = LakehouseSink::builder(store.clone(), "lake", lake.path());
        Arc::new(
            if declared {
                b.schemas(Arc::new(schemas.clone()))
            } else {
                b
            }
            .build(),
        )
    };

    // v1 only.
    append(&store, 1, 1, json!({"customer": "c1", "age": 30})).await;
    append(&store, 2, 1, json!({"customer": "c2", "age": 41})).await;
    let first = sink();
    run(&store, first.clone()).await;
    let rows = read_rows(&dir).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert!(!rows[0].contains_key("country"), "{:?}", rows[0]);

    // v2 adds an optional field: a new nullable column; old rows read null.
    append(
        &store,
        3,
        2,
        json!({"customer": "c3", "age": 25, "country": "NL"}),
    )
    .await;
    append(
        &store,
        4,
        2,
        json!({"customer": "c4", "age": 52, "country": null}),
    )
    .await;
    let second = sink();
    run(&store, second.clone()).await;
    let table = open_table(&dir).await.unwrap();
    let schema = table.snapshot().unwrap().schema();
    let country = schema.field("country").expect("the new column");
    assert!(country.is_nullable());
    let rows = read_rows(&dir).await.unwrap();
    let countries: Vec<&Value> = rows.iter().map(|r| &r["country"]).collect();
    assert_eq!(
        countries,
        [&Value::Null, &Value::Null, &json!("NL"), &Value::Null]
    );
    assert_eq!(rows[2]["age"], 25);
    let files_before = live_files(&dir).await.unwrap();

    // v3 changes a type, v4 adds a required field: both dead-lettered with
    // their reason; the table is unchanged; a later v2 event still lands.
    let (bad_type, bad_required) = if declared {
        (
            json!({"customer": "c5", "age": "old", "country": "BE"}),
            json!({"customer": "c6", "age": 9, "country": "DE", "vat": "DE1"}),
        )
    } else {
        // Inferred: a type change is the incompatible case.
        (
            json!({"customer": "c5", "age": "old", "country": "BE"}),
            json!({"customer": "c6", "age": 9.5, "country": "DE"}),
        )
    };
    append(&store, 5, 3, bad_type).await;
    append(&store, 6, 4, bad_required).await;
    append(
        &store,
        7,
        2,
        json!({"customer": "c7", "age": 61, "country": "FR"}),
    )
    .await;
    let third = sink();
    run(&store, third.clone()).await;
    assert_eq!(third.stats().dead_lettered, 2);
    let letters = store
        .backend()
        .dead_letters
        .list_dead_letters(Some("lake"), 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(
        letters[0]
            .reason
            .contains("incompatible schema change: field `age`"),
        "{}",
        letters[0].reason
    );
    let expected_second = if declared {
        "new required field `vat`"
    } else {
        "field `age` is double but the table's column is long"
    };
    assert!(
        letters[1].reason.contains(expected_second),
        "{}",
        letters[1].reason
    );
    let rows = read_rows(&dir).await.unwrap();
    let customers: Vec<&str> = rows
        .iter()
        .map(|r| r["customer"].as_str().unwrap())
        .collect();
    assert_eq!(customers, ["c1", "c2", "c3", "c4", "c7"]);
    let table = open_table(&dir).await.unwrap();
    let schema = table.snapshot().unwrap().schema();
    assert!(schema.field("vat").is_none());
    let age = rows[4]["age"].clone();
    assert_eq!(age, 61);
    let files_after = live_files(&dir).await.unwrap();
    assert_eq!(files_after.len(), files_before.len() + 1);

    // The Arrow type of `age` is still a 64-bit integer.
    let batches = orchestrix_lakehouse::read_batches(&dir).await.unwrap();
    let age_field = batches[0].schema().field_with_name("age").unwrap().clone();
    assert_eq!(age_field.data_type(), &DataType::Int64);

    // A restart re-reads nothing and dead-letters nothing again.
    let fourth = sink();
    run(&store, fourth.clone()).await;
    assert_eq!(fourth.stats().rows, 0);
    assert_eq!(fourth.stats().dead_lettered, 0);
    assert_eq!(read_rows(&dir).await.unwrap().len(), 5);
}

#[tokio::test]
async fn declared_avro_schemas_evolve_and_refuse() {
    evolve(true).await;
}

#[tokio::test]
async fn inferred_json_columns_evolve_and_refuse() {
    evolve(false).await;
}
