//! One table per stream category, partitioned by date and tenant; the
//! CloudEvents attribute columns carry the event's id, type, source, subject,
//! time, revision, position, trace id and schema version.

use std::sync::Arc;
use std::time::Duration;

use orchestrix::runtime::ProjectionRunner;
use orchestrix::store::ExpectedRevision;
use orchestrix::{EventRecord, Store, StreamId};
use orchestrix_lakehouse::{LakehouseSink, TableLayout, live_files, read_rows};
use serde_json::json;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn per_category_tables_partitioned_by_date_and_tenant() {
    let store = Store::memory();
    let mut ids = Vec::new();
    for (i, (category, ty, tenant)) in [
        ("order", "com.acme.Placed", "acme"),
        ("order", "com.acme.Shipped", "globex"),
        ("invoice", "com.acme.Issued", "acme"),
    ]
    .into_iter()
    .enumerate()
    {
        let stream = StreamId::new(category, &format!("x{i}")).unwrap();
        let mut e = EventRecord::json(ty, 2, &json!({"n": i, "nested": {"k": [1, 2]}}));
        e.metadata.extensions.insert("tenant".into(), tenant.into());
        e.metadata.traceparent = Some(format!("00-{TRACE}-00f067aa0ba902b7-01"));
        ids.push(e.id.to_string());
        store
            .append(&stream, ExpectedRevision::NoStream, vec![e])
            .await
            .unwrap();
    }
    let lake = tempfile::tempdir().unwrap();
    let sink = Arc::new(
        LakehouseSink::builder(store.clone(), "lake", lake.path())
            .layout(TableLayout::PerCategory)
            .partition_by_tenant("tenant")
            .build(),
    );
    let runner = ProjectionRunner::transactional(store.clone(), sink)
        .start()
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), runner.wait_until_caught_up(head))
        .await
        .expect("caught up within 60 s")
        .unwrap();
    let lag = runner.lag().await.unwrap();
    assert!(lag.is_caught_up(), "{lag:?}");
    runner.shutdown().await.unwrap();

    let orders = read_rows(&lake.path().join("order")).await.unwrap();
    assert_eq!(orders.len(), 2);
    let first = &orders[0];
    assert_eq!(first["ce_id"], ids[0].as_str());
    assert_eq!(first["ce_type"], "com.acme.Placed");
    assert_eq!(first["ce_source"], "/orchestrix");
    assert_eq!(first["ce_subject"], "order-x0");
    assert_eq!(first["ce_streamrevision"], 0);
    assert_eq!(first["ce_globalposition"], 1);
    assert_eq!(first["ce_traceid"], TRACE);
    assert_eq!(first["ce_schemaversion"], 2);
    assert!(
        first["ce_time"]
            .as_str()
            .is_some_and(|t| t.ends_with("+00:00"))
    );
    assert_eq!(first["tenant"], "acme");
    assert_eq!(orders[1]["tenant"], "globex");
    // Nested values are JSON text columns, read back as JSON.
    assert_eq!(first["nested"], json!({"k": [1, 2]}));
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let date = first["date"].as_str().unwrap();
    assert!(date.len() == 10 && date <= today.as_str(), "{date}");

    // Hive-style partition directories, one file per (date, tenant).
    let files = live_files(&lake.path().join("order")).await.unwrap();
    assert_eq!(files.len(), 2);
    let tenants: Vec<Option<String>> = files
        .iter()
        .map(|f| {
            f.partition_values
                .iter()
                .find(|(k, _)| k == "tenant")
                .and_then(|(_, v)| v.clone())
        })
        .collect();
    assert!(tenants.contains(&Some("acme".into())) && tenants.contains(&Some("globex".into())));
    assert!(
        files
            .iter()
            .all(|f| f.path.starts_with(&format!("date={date}/tenant="))),
        "{files:?}"
    );

    let invoices = read_rows(&lake.path().join("invoice")).await.unwrap();
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0]["ce_type"], "com.acme.Issued");
}
