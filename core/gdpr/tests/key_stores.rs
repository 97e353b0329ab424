//! Every key store keeps the same contract; keys on disk survive a reopen.

#[cfg(feature = "sqlite")]
use orchestrix_gdpr::keystore::sqlite::SqliteKeyStore;
use orchestrix_gdpr::{Error, KeyLookup, KeyStore, MemoryKeyStore};
#[cfg(feature = "postgres")]
use orchestrix_testkit::services::{Service, require};

/// The key store contract, with subjects prefixed by `prefix` (unique per run).
async fn contract(store: &dyn KeyStore, prefix: &str) {
    let a = format!("{prefix}a");
    let b = format!("{prefix}b");
    let never = format!("{prefix}never");
    assert!(matches!(store.get(&a).await.unwrap(), KeyLookup::Missing));
    let key = store.get_or_create(&a).await.unwrap();
    let again = store.get_or_create(&a).await.unwrap();
    assert_eq!(key.as_bytes(), again.as_bytes(), "one key per subject");
    let other = store.get_or_create(&b).await.unwrap();
    assert_ne!(key.as_bytes(), other.as_bytes(), "a key per subject");
    match store.get(&a).await.unwrap() {
        KeyLookup::Active(k) => assert_eq!(k.as_bytes(), key.as_bytes()),
        other => panic!("expected the key, got {other:?}"),
    }
    assert!(store.destroy(&a).await.unwrap(), "a key existed");
    assert!(!store.destroy(&a).await.unwrap(), "idempotent");
    assert!(matches!(
        store.get(&a).await.unwrap(),
        KeyLookup::Forgotten(_)
    ));
    assert!(matches!(
        store.get_or_create(&a).await,
        Err(Error::Forgotten { .. })
    ));
    assert!(!store.destroy(&never).await.unwrap(), "no key to destroy");
    assert!(matches!(
        store.get_or_create(&never).await,
        Err(Error::Forgotten { .. })
    ));
    let forgotten: Vec<String> = store
        .forgotten()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.subject)
        .filter(|s| s.starts_with(prefix))
        .collect();
    assert_eq!(forgotten, [a, never]);
    assert!(matches!(store.get(&b).await.unwrap(), KeyLookup::Active(_)));
}

fn prefix() -> String {
    format!("s{}-", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn memory_key_store_keeps_the_contract() {
    contract(&MemoryKeyStore::new(), &prefix()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_key_store_keeps_the_contract() {
    contract(&SqliteKeyStore::open_in_memory().unwrap(), &prefix()).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_keys_and_tombstones_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let store = SqliteKeyStore::open(&path).unwrap();
    let key = store.get_or_create("kept").await.unwrap();
    let gone = store.get_or_create("gone").await.unwrap();
    assert!(store.destroy("gone").await.unwrap());
    drop(store);

    let reopened = SqliteKeyStore::open(&path).unwrap();
    match reopened.get("kept").await.unwrap() {
        KeyLookup::Active(k) => assert_eq!(k.as_bytes(), key.as_bytes()),
        other => panic!("expected the key, got {other:?}"),
    }
    assert!(matches!(
        reopened.get("gone").await.unwrap(),
        KeyLookup::Forgotten(_)
    ));
    drop(reopened);
    // With secure_delete, the destroyed key's bytes are not left in the file.
    let file = std::fs::read(&path).unwrap();
    assert!(
        file.windows(32).any(|w| w == key.as_bytes()),
        "the kept key"
    );
    assert!(
        !file.windows(32).any(|w| w == gone.as_bytes()),
        "the destroyed key lingers in the file"
    );
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_forget_in_another_process_is_seen_when_the_cached_key_expires() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.db");
    let here = orchestrix_gdpr::Vault::new(SqliteKeyStore::open(&path).unwrap())
        .unwrap()
        .with_cache_ttl(std::time::Duration::from_millis(50));
    let there = orchestrix_gdpr::Vault::new(SqliteKeyStore::open(&path).unwrap()).unwrap();
    let codec = orchestrix_gdpr::PersonalDataCodec::json(
        here,
        orchestrix_gdpr::PersonalFields::new()
            .event("t", "/id", ["/email"])
            .unwrap(),
    );
    use orchestrix::codec::Codec as _;
    let bytes = codec
        .encode("t", 1, &serde_json::json!({"id": "c-1", "email": "a@b.c"}))
        .unwrap();
    there.forget("c-1").await.unwrap();
    // Still cached here...
    assert_eq!(codec.decode("t", 1, &bytes).unwrap()["email"], "a@b.c");
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    // ...until the cache entry expires.
    assert!(orchestrix_gdpr::is_erased(
        &codec.decode("t", 1, &bytes).unwrap()["email"]
    ));
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_key_store_keeps_the_contract_in_a_fresh_schema() {
    let Some(url) = require(Service::Postgres) else {
        return;
    };
    let schema = format!("gdpr_{}", uuid::Uuid::new_v4().simple());
    let store = orchestrix_gdpr::keystore::postgres::PostgresKeyStore::new(&url)
        .unwrap()
        .with_schema(&schema)
        .unwrap();
    // Through a vault, on its I/O thread, as applications use it.
    let vault = orchestrix_gdpr::Vault::new(store).unwrap();
    vault_key(&vault, "pg-a").await;
    assert!(vault.forget("pg-a").await.unwrap());
    assert!(vault.is_forgotten("pg-a").await.unwrap());
    assert_eq!(vault.forgotten().await.unwrap()[0].subject, "pg-a");

    // And the whole contract, directly, in another fresh schema.
    let schema = format!("gdpr_{}", uuid::Uuid::new_v4().simple());
    let store = orchestrix_gdpr::keystore::postgres::PostgresKeyStore::new(&url)
        .unwrap()
        .with_schema(&schema)
        .unwrap();
    contract(&store, &prefix()).await;
    // Keys survive a new store (new pool) on the same schema.
    let key = store.get_or_create("durable").await.unwrap();
    let again = orchestrix_gdpr::keystore::postgres::PostgresKeyStore::new(&url)
        .unwrap()
        .with_schema(&schema)
        .unwrap();
    match again.get("durable").await.unwrap() {
        KeyLookup::Active(k) => assert_eq!(k.as_bytes(), key.as_bytes()),
        other => panic!("expected the key, got {other:?}"),
    }
}

/// Creates the subject's key through the vault's codec path.
#[cfg(feature = "postgres")]
async fn vault_key(vault: &orchestrix_gdpr::Vault, subject: &str) {
    let codec = orchestrix_gdpr::PersonalDataCodec::json(
        vault.clone(),
        orchestrix_gdpr::PersonalFields::new()
            .event("t", "/id", ["/email"])
            .unwrap(),
    );
    use orchestrix::codec::Codec as _;
    let bytes = codec
        .encode(
            "t",
            1,
            &serde_json::json!({"id": subject, "email": "a@b.c"}),
        )
        .unwrap();
    assert_eq!(codec.decode("t", 1, &bytes).unwrap()["email"], "a@b.c");
}
