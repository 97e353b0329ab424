//! The lake keeps personal fields as ciphertext tokens: after `forget`, a
//! fresh read of the lake table through the GDPR codec shows the forgotten
//! subject's personal fields erased and the rest of the row intact, while
//! other subjects still read in clear. Nothing in the lake is rewritten.

use std::sync::Arc;
use std::time::Duration;

use orchestrix::runtime::ProjectionRunner;
use orchestrix::store::ExpectedRevision;
use orchestrix::{EventRecord, Store, StreamId};
use orchestrix_gdpr::keystore::sqlite::SqliteKeyStore;
use orchestrix_gdpr::{ForgetRequest, Gdpr, PersonalFields, Vault, is_erased};
use orchestrix_lakehouse::{LakehouseSink, live_files, read_rows, read_rows_with};
use serde_json::json;

const TYPE: &str = "com.acme.CustomerRegistered";
const EMAIL_1: &str = "ada@example.com";
const EMAIL_2: &str = "grace@example.com";

fn open_gdpr(keys: &std::path::Path) -> Gdpr {
    let fields = PersonalFields::new()
        .event(TYPE, "/customer_id", ["/email", "/name"])
        .unwrap();
    Gdpr::new(
        Vault::new(SqliteKeyStore::open(keys).unwrap()).unwrap(),
        fields,
    )
}

async fn sink_once(store: &Store, lake: &std::path::Path) {
    let sink = Arc::new(LakehouseSink::builder(store.clone(), "lake", lake).build());
    let runner = ProjectionRunner::transactional(store.clone(), sink)
        .start()
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), runner.wait_until_caught_up(head))
        .await
        .expect("caught up within 60 s")
        .unwrap();
    runner.shutdown().await.unwrap();
}

#[tokio::test]
async fn after_forget_the_lake_reads_erased_personal_fields_and_the_rest_intact() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.db");
    let lake = dir.path().join("lake");
    let table = lake.join(TYPE);
    let gdpr = open_gdpr(&keys);
    let store = Store::memory().with_codec(gdpr.codec());
    for (id, email, name) in [("c-1", EMAIL_1, "Ada"), ("c-2", EMAIL_2, "Grace")] {
        let stream = StreamId::new("customer", id).unwrap();
        let payload =
            json!({"customer_id": id, "email": email, "name": name, "plan": "gold", "age": 36});
        // The store's codec encrypts the personal fields (as an application's
        // `execute` does).
        let mut e = EventRecord::json(TYPE, 1, &payload);
        e.data = store.codec().encode(TYPE, 1, &payload).unwrap();
        store
            .append(&stream, ExpectedRevision::NoStream, vec![e])
            .await
            .unwrap();
    }
    sink_once(&store, &lake).await;

    // The lake holds tokens, not the plaintext.
    let raw = read_rows(&table).await.unwrap();
    assert_eq!(raw.len(), 2);
    for row in &raw {
        let email = row["email"].as_str().unwrap();
        assert!(email.starts_with("orx-pii:v1:"), "{email}");
        assert_eq!(row["plan"], "gold");
    }
    let files = live_files(&table).await.unwrap();
    for f in &files {
        let bytes = std::fs::read(table.join(&f.path)).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(EMAIL_1) && !text.contains("Ada"));
    }

    // Through the vault: in clear.
    let rows = read_rows_with(&table, &*gdpr.codec()).await.unwrap();
    assert_eq!(rows[0]["email"], EMAIL_1);
    assert_eq!(rows[1]["name"], "Grace");

    gdpr.forget(
        &store,
        ForgetRequest::new("c-1")
            .requested_by("dpo")
            .reason("Art. 17"),
    )
    .await
    .unwrap();

    // A fresh read, with a fresh vault on the same key store (no cache).
    let fresh = open_gdpr(&keys);
    let rows = read_rows_with(&table, &*fresh.codec()).await.unwrap();
    assert_eq!(rows.len(), 2);
    let ada = &rows[0];
    assert!(is_erased(&ada["email"]), "{ada:?}");
    assert!(is_erased(&ada["name"]), "{ada:?}");
    assert_eq!(ada["customer_id"], "c-1");
    assert_eq!(ada["plan"], "gold");
    assert_eq!(ada["age"], 36);
    assert_eq!(ada["ce_subject"], "customer-c-1");
    assert_eq!(ada["ce_type"], TYPE);
    let grace = &rows[1];
    assert_eq!(grace["email"], EMAIL_2);
    assert_eq!(grace["name"], "Grace");

    // The lake files were not rewritten: the forget touched only the key.
    assert_eq!(live_files(&table).await.unwrap(), files);

    // The sink keeps running after the forget; the audit event gets its own table.
    sink_once(&store, &lake).await;
    let audit = read_rows(&lake.join("orchestrix.gdpr.SubjectForgotten"))
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["subject"], "c-1");
    assert_eq!(read_rows(&table).await.unwrap().len(), 2);
}
