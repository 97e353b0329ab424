//! The Confluent wire format against a registry over REST: ids registered
//! once and cached, record-name subjects, old writers resolved to the current
//! reader, and typed permanent errors for bad messages.

use std::sync::Arc;

use orchestrix::ErrorClass;
use orchestrix_avro::wire::{SubjectStrategy, frame};
use orchestrix_avro::{AvroCodec, AvroError, AvroSchemas, avro_error};
use orchestrix_schema_registry::{
    CompatibilityLevel, ConfluentAvro, EmbeddedRegistry, RegistryClient, SchemaRegistry,
    VersionSpec, server,
};
use serde_json::json;

const T: &str = "com.acme.shop.OrderPlaced";

fn schemas() -> AvroSchemas {
    AvroSchemas::new()
        .with(T, 1, r#"{"type":"record","name":"OrderPlaced","namespace":"com.acme.shop","fields":[{"name":"total","type":"int"}]}"#)
        .unwrap()
        .with(
            T,
            2,
            r#"{"type":"record","name":"OrderPlaced","namespace":"com.acme.shop","fields":[{"name":"total","type":"long"},
                {"name":"currency","type":"string","default":"EUR"}]}"#,
        )
        .unwrap()
}

#[tokio::test]
async fn framed_messages_round_trip_with_cached_ids() {
    let running = server::serve(
        Arc::new(EmbeddedRegistry::memory()),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let client = Arc::new(RegistryClient::new(&running.url()).unwrap());

    // An old producer knows only v1; the consumer knows v2.
    let old = ConfluentAvro::new(
        client.clone(),
        AvroCodec::new(
            AvroSchemas::new()
                .with(T, 1, schemas().get(T, 1).unwrap().text())
                .unwrap(),
        ),
    );
    let new = ConfluentAvro::new(client.clone(), AvroCodec::new(schemas()));
    let bytes_v1 = old
        .serialize("orders", T, 1, &json!({"total": 5}))
        .await
        .unwrap();
    let bytes_v2 = new
        .serialize("orders", T, 2, &json!({"total": 7, "currency": "CHF"}))
        .await
        .unwrap();
    assert_eq!(&bytes_v1[..5], &[0, 0, 0, 0, 1]);
    assert_eq!(&bytes_v2[..5], &[0, 0, 0, 0, 2]);
    // Record-name strategy: the subject is the record's full name.
    assert_eq!(client.subjects().await.unwrap(), [T]);
    assert_eq!(client.versions(T).await.unwrap(), [1, 2]);

    let read = new.deserialize(&bytes_v1).await.unwrap();
    assert_eq!(
        (read.schema_id, read.event_type.as_deref(), read.version),
        (1, Some(T), Some(2))
    );
    assert_eq!(read.value, json!({"total": 5, "currency": "EUR"}));
    assert_eq!(
        new.deserialize(&bytes_v2).await.unwrap().value,
        json!({"total": 7, "currency": "CHF"})
    );
    assert_eq!(new.cache().len(), 2);

    // With the registry gone, cached ids and schemas still serve.
    running.shutdown().await.unwrap();
    assert_eq!(
        new.serialize("orders", T, 2, &json!({"total": 8}))
            .await
            .unwrap()[..5],
        [0, 0, 0, 0, 2]
    );
    assert_eq!(
        new.deserialize(&bytes_v1).await.unwrap().value["total"],
        json!(5)
    );
    // An id never seen needs the registry: unreachable is transient, not a dead letter.
    let err = new.deserialize(&frame(3, &[2])).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");
}

#[tokio::test]
async fn bad_messages_are_permanent_typed_errors() {
    let serde = ConfluentAvro::new(
        Arc::new(EmbeddedRegistry::memory()),
        AvroCodec::new(schemas()),
    );
    let good = serde
        .serialize("orders", T, 2, &json!({"total": 1, "currency": "EUR"}))
        .await
        .unwrap();

    let mut wrong_magic = good.clone();
    wrong_magic[0] = 7;
    type Expect = fn(&AvroError) -> bool;
    let cases: Vec<(Vec<u8>, Expect)> = vec![
        (wrong_magic, |e| matches!(e, AvroError::WrongMagicByte(7))),
        (frame(42, &good[5..]), |e| {
            matches!(e, AvroError::UnknownSchemaId(42))
        }),
        (good[..good.len() - 1].to_vec(), |e| {
            matches!(e, AvroError::Truncated { .. })
        }),
        (good[..2].to_vec(), |e| {
            matches!(e, AvroError::Truncated { .. })
        }),
    ];
    for (bytes, expected) in cases {
        let err = serde.deserialize(&bytes).await.unwrap_err();
        assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
        assert!(
            matches!(err, orchestrix::Error::Serialization { .. }),
            "{err:?}"
        );
        assert!(avro_error(&err).is_some_and(expected), "{err:?}");
    }
}

#[tokio::test]
async fn writer_schemas_unknown_to_the_catalog_decode_as_written() {
    let registry = Arc::new(EmbeddedRegistry::memory());
    let id = registry
        .register("weird", r#"{"type":"fixed","name":"F","size":2}"#)
        .await
        .unwrap();
    let serde = ConfluentAvro::new(registry, AvroCodec::new(schemas()))
        .with_strategy(SubjectStrategy::TopicName);
    let value = serde.deserialize(&frame(id, &[1, 2])).await.unwrap();
    assert_eq!((value.event_type, value.value), (None, json!([1, 2])));
}

/// A registry that hands out schema text this process cannot parse.
#[derive(Debug)]
struct Garbage;

#[async_trait::async_trait]
impl SchemaRegistry for Garbage {
    async fn register(&self, _: &str, _: &str) -> orchestrix_schema_registry::Result<u32> {
        Ok(1)
    }
    async fn lookup(
        &self,
        s: &str,
        _: &str,
    ) -> orchestrix_schema_registry::Result<orchestrix_schema_registry::SubjectVersion> {
        Err(orchestrix_schema_registry::RegistryError::SubjectNotFound(
            s.into(),
        ))
    }
    async fn schema_by_id(&self, _: u32) -> orchestrix_schema_registry::Result<String> {
        Ok(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"nope"}]}"#.into())
    }
    async fn subjects(&self) -> orchestrix_schema_registry::Result<Vec<String>> {
        Ok(Vec::new())
    }
    async fn versions(&self, s: &str) -> orchestrix_schema_registry::Result<Vec<u32>> {
        Err(orchestrix_schema_registry::RegistryError::SubjectNotFound(
            s.into(),
        ))
    }
    async fn version(
        &self,
        s: &str,
        _: VersionSpec,
    ) -> orchestrix_schema_registry::Result<orchestrix_schema_registry::SubjectVersion> {
        Err(orchestrix_schema_registry::RegistryError::SubjectNotFound(
            s.into(),
        ))
    }
    async fn check_compatibility(
        &self,
        _: &str,
        _: VersionSpec,
        _: &str,
    ) -> orchestrix_schema_registry::Result<orchestrix_schema_registry::CompatibilityResult> {
        Ok(orchestrix_schema_registry::CompatibilityResult {
            is_compatible: true,
            messages: Vec::new(),
        })
    }
    async fn config(
        &self,
        _: Option<&str>,
        _: bool,
    ) -> orchestrix_schema_registry::Result<CompatibilityLevel> {
        Ok(CompatibilityLevel::Backward)
    }
    async fn set_config(
        &self,
        _: Option<&str>,
        l: CompatibilityLevel,
    ) -> orchestrix_schema_registry::Result<CompatibilityLevel> {
        Ok(l)
    }
    async fn delete_subject(&self, _: &str) -> orchestrix_schema_registry::Result<Vec<u32>> {
        Ok(Vec::new())
    }
}

#[tokio::test]
async fn unparsable_writer_schema_is_a_permanent_error() {
    let serde = ConfluentAvro::new(Arc::new(Garbage), AvroCodec::new(schemas()));
    let err = serde.deserialize(&frame(1, &[2])).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent, "{err}");
    assert!(
        matches!(avro_error(&err), Some(AvroError::SchemaParse { .. })),
        "{err:?}"
    );
}
