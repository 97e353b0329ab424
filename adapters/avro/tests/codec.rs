//! The Avro codec: JSON ↔ Avro mapping, wire compatibility with `apache-avro`,
//! resolution outputs, and typed errors for bad input.

use orchestrix::codec::Codec;
use orchestrix::{Error, ErrorClass};
use orchestrix_avro::wire::{SchemaIdCache, frame};
use orchestrix_avro::{
    AvroCodec, AvroError, AvroSchemas, BytesAs, JsonMapping, ParsedSchema, TimeAs, avro_error,
};
use serde_json::{Value, json};

const ORDER_PLACED: &str = r#"{
  "type": "record", "name": "OrderPlaced", "namespace": "com.acme.shop",
  "fields": [
    {"name": "order_id", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "customer", "type": "string"},
    {"name": "total_cents", "type": "long"},
    {"name": "discount", "type": "double"},
    {"name": "quantity", "type": "int"},
    {"name": "express", "type": "boolean"},
    {"name": "status", "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "SHIPPED"]}},
    {"name": "note", "type": ["null", "string"], "default": null},
    {"name": "tags", "type": {"type": "array", "items": "string"}},
    {"name": "attributes", "type": {"type": "map", "values": "long"}},
    {"name": "placed_at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "delivery", "type": {"type": "int", "logicalType": "date"}},
    {"name": "price", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
    {"name": "raw", "type": "bytes"},
    {"name": "address", "type": {"type": "record", "name": "Address", "fields": [
        {"name": "city", "type": "string"},
        {"name": "zip", "type": ["null", "string"], "default": null}
    ]}},
    {"name": "previous", "type": ["null", "Address"], "default": null},
    {"name": "amount", "type": ["int", "string"]}
  ]
}"#;

fn sample() -> Value {
    json!({
        "order_id": "0190a6d2-3c4e-7a2b-9f00-123456789abc",
        "customer": "Zoë",
        "total_cents": 123_456_789_012_i64,
        "discount": 0.25,
        "quantity": -3,
        "express": true,
        "status": "PAID",
        "note": null,
        "tags": ["a", "b"],
        "attributes": {"x": 1, "y": -2},
        "placed_at": "2024-05-01T12:30:00.123Z",
        "delivery": "2024-05-03",
        "price": "19.99",
        "digest": [1, 2, 3, 255],
        "raw": [0, 128],
        "address": {"city": "Lyon", "zip": "69001"},
        "previous": {"city": "Paris", "zip": null},
        "amount": "ten"
    })
}

fn codec() -> AvroCodec {
    AvroCodec::new(
        AvroSchemas::new()
            .with("com.acme.shop.OrderPlaced", 1, ORDER_PLACED)
            .unwrap(),
    )
}

#[test]
fn round_trips_every_kind_of_value() {
    let codec = codec();
    let bytes = codec
        .encode("com.acme.shop.OrderPlaced", 1, &sample())
        .unwrap();
    assert_eq!(
        codec
            .decode("com.acme.shop.OrderPlaced", 1, &bytes)
            .unwrap(),
        sample()
    );
    assert_eq!(codec.content_type(), "application/avro");
}

#[test]
fn bytes_are_apache_avro_compatible_both_ways() {
    let codec = codec();
    let schema = ParsedSchema::parse(ORDER_PLACED).unwrap();
    let ours = codec.encode_with(&schema, &sample()).unwrap();
    // apache-avro reads our bytes, and writes them back as we do (its maps are
    // hash maps, so map entries may come out in another order: same length).
    let value = apache_avro::from_avro_datum(schema.schema(), &mut &ours[..], None).unwrap();
    let theirs = apache_avro::to_avro_datum(schema.schema(), value).unwrap();
    assert_eq!(ours.len(), theirs.len());
    // And we read what apache-avro wrote.
    assert_eq!(
        codec.decode_with(&schema, &schema, &theirs).unwrap(),
        sample()
    );
    // Without a map of several entries, the bytes are identical.
    let mut one_entry = sample();
    one_entry["attributes"] = json!({"only": 1});
    let ours = codec.encode_with(&schema, &one_entry).unwrap();
    let value = apache_avro::from_avro_datum(schema.schema(), &mut &ours[..], None).unwrap();
    assert_eq!(
        ours,
        apache_avro::to_avro_datum(schema.schema(), value).unwrap()
    );
}

#[test]
fn alternative_json_forms() {
    let codec = codec().with_mapping(JsonMapping {
        bytes: BytesAs::Base64,
        time: TimeAs::Numbers,
    });
    let mut v = sample();
    v["placed_at"] = json!(1_714_566_600_123_i64);
    v["delivery"] = json!(19_846);
    v["raw"] = json!("AIA=");
    v["digest"] = json!("AQID/w==");
    // Missing nullable fields are null; a union value can be tagged with its branch.
    v.as_object_mut().unwrap().remove("note");
    v["amount"] = json!({"int": 10});
    let bytes = codec.encode("com.acme.shop.OrderPlaced", 1, &v).unwrap();
    let back = codec
        .decode("com.acme.shop.OrderPlaced", 1, &bytes)
        .unwrap();
    assert_eq!(back["placed_at"], json!(1_714_566_600_123_i64));
    assert_eq!(back["delivery"], json!(19_846));
    assert_eq!(back["raw"], json!("AIA="));
    assert_eq!(back["note"], Value::Null);
    assert_eq!(back["amount"], json!(10));
    // Everything else reads back as the default mapping writes it.
    let mut expected = sample();
    expected["amount"] = json!(10);
    assert_eq!(
        self::codec()
            .decode("com.acme.shop.OrderPlaced", 1, &bytes)
            .unwrap(),
        expected
    );
}

#[test]
fn payloads_that_do_not_fit_are_mismatches_with_a_path() {
    let codec = codec();
    let cases = [
        ("/quantity", json!(1_i64 << 40), "32-bit"),
        (
            "/status",
            json!("LOST"),
            "not a symbol of enum `com.acme.shop.Status`",
        ),
        ("/address/city", json!(null), "expected a string"),
        ("/order_id", json!("nope"), "not a UUID"),
        ("/price", json!("1.234"), "more fractional digits"),
    ];
    for (path, bad, words) in cases {
        let mut v = sample();
        let pointer = v.pointer_mut(path).unwrap();
        *pointer = bad;
        let err = codec
            .encode("com.acme.shop.OrderPlaced", 1, &v)
            .unwrap_err();
        let Some(AvroError::Mismatch { path: p, reason }) = avro_error(&err) else {
            panic!("{err:?}")
        };
        assert_eq!(p, path);
        assert!(reason.contains(words), "{reason}");
        assert_eq!(err.class(), ErrorClass::Permanent);
    }
    let mut extra = sample();
    extra["surprise"] = json!(1);
    let err = codec
        .encode("com.acme.shop.OrderPlaced", 1, &extra)
        .unwrap_err();
    assert!(err.to_string().contains("surprise"), "{err}");
    let mut missing = sample();
    missing.as_object_mut().unwrap().remove("customer");
    let err = codec
        .encode("com.acme.shop.OrderPlaced", 1, &missing)
        .unwrap_err();
    assert!(err.to_string().contains("/customer"), "{err}");
}

#[test]
fn truncated_or_trailing_bytes_are_typed_permanent_errors() {
    let codec = codec();
    let bytes = codec
        .encode("com.acme.shop.OrderPlaced", 1, &sample())
        .unwrap();
    for cut in 0..bytes.len() {
        let err = codec
            .decode("com.acme.shop.OrderPlaced", 1, &bytes[..cut])
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Serialization {
                    action: "decode",
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert!(
            matches!(
                avro_error(&err),
                Some(AvroError::Truncated { .. } | AvroError::Malformed { .. })
            ),
            "cut at {cut}: {err:?}"
        );
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    let err = codec
        .decode("com.acme.shop.OrderPlaced", 1, &longer)
        .unwrap_err();
    assert!(
        matches!(avro_error(&err), Some(AvroError::Malformed { .. })),
        "{err:?}"
    );
    assert!(err.to_string().contains("1 byte(s) left"), "{err}");
}

#[test]
fn unknown_versions_and_bad_schemas_are_typed() {
    let codec = codec();
    let err = codec
        .encode("com.acme.shop.OrderPlaced", 9, &sample())
        .unwrap_err();
    assert!(
        matches!(
            avro_error(&err),
            Some(AvroError::UnknownSchema { version: 9, .. })
        ),
        "{err:?}"
    );
    let err = codec.decode("com.acme.Unknown", 1, &[]).unwrap_err();
    assert_eq!(err.class(), ErrorClass::Permanent);

    let bad = AvroSchemas::new()
        .with(
            "t",
            1,
            r#"{"type":"record","name":"R","fields":[{"name":"a","type":"nonsense"}]}"#,
        )
        .unwrap_err();
    assert!(matches!(bad, AvroError::SchemaParse { .. }), "{bad:?}");
    let core: Error = bad.into();
    assert!(matches!(core, Error::InvalidInput { .. }), "{core:?}");
    assert_eq!(core.class(), ErrorClass::Permanent);
    assert!(ParsedSchema::parse("{not json").is_err());
}

#[test]
fn confluent_framing_errors_are_typed() {
    let codec = codec();
    let schema = codec
        .schemas()
        .get("com.acme.shop.OrderPlaced", 1)
        .unwrap()
        .clone();
    let cache = SchemaIdCache::new();
    cache.insert(7, Some("com.acme.shop.OrderPlaced"), &schema);
    let framed = codec
        .encode_framed(7, "com.acme.shop.OrderPlaced", 1, &sample())
        .unwrap();
    assert_eq!(&framed[..5], &[0, 0, 0, 0, 7]);
    let decoded = codec.decode_framed(&cache, &framed).unwrap();
    assert_eq!(
        (
            decoded.schema_id,
            decoded.event_type.as_deref(),
            decoded.version
        ),
        (7, Some("com.acme.shop.OrderPlaced"), Some(1))
    );
    assert_eq!(decoded.value, sample());

    let mut wrong_magic = framed.clone();
    wrong_magic[0] = 1;
    assert_eq!(
        codec.decode_framed(&cache, &wrong_magic).unwrap_err(),
        AvroError::WrongMagicByte(1)
    );
    let unknown = frame(8, &framed[5..]);
    assert_eq!(
        codec.decode_framed(&cache, &unknown).unwrap_err(),
        AvroError::UnknownSchemaId(8)
    );
    assert!(matches!(
        codec.decode_framed(&cache, &framed[..3]).unwrap_err(),
        AvroError::Truncated { .. }
    ));
    assert!(matches!(
        codec.decode_framed(&cache, &framed[..20]).unwrap_err(),
        AvroError::Truncated { .. }
    ));
    for err in [AvroError::WrongMagicByte(1), AvroError::UnknownSchemaId(8)] {
        let core: Error = err.into();
        assert!(matches!(core, Error::Serialization { .. }));
        assert_eq!(core.class(), ErrorClass::Permanent);
    }
}

#[test]
fn resolution_fills_defaults_follows_aliases_and_maps_enum_defaults() {
    let v1 = ParsedSchema::parse(
        r#"{"type":"record","name":"Shipped","fields":[
            {"name":"carrier","type":{"type":"enum","name":"Carrier","symbols":["UPS","DHL","POST"]}},
            {"name":"weight","type":"int"},
            {"name":"legacy","type":"string"}]}"#,
    )
    .unwrap();
    let v3 = ParsedSchema::parse(
        r#"{"type":"record","name":"Shipped","fields":[
            {"name":"carrier","type":{"type":"enum","name":"Carrier","symbols":["UPS","DHL","OTHER"],"default":"OTHER"}},
            {"name":"weight_grams","type":"double","aliases":["weight"]},
            {"name":"insured","type":"boolean","default":false},
            {"name":"raw","type":"bytes","default":"\u00ff"},
            {"name":"when","type":["null",{"type":"long","logicalType":"timestamp-millis"}],"default":null}]}"#,
    )
    .unwrap();
    let codec = AvroCodec::new(AvroSchemas::new());
    let bytes = codec
        .encode_with(
            &v1,
            &json!({"carrier": "POST", "weight": 1200, "legacy": "x"}),
        )
        .unwrap();
    assert_eq!(
        codec.decode_with(&v1, &v3, &bytes).unwrap(),
        json!({"carrier": "OTHER", "weight_grams": 1200.0, "insured": false, "raw": [255], "when": null})
    );
    // Forward: old readers read new data, ignoring what they do not know.
    let new_bytes = codec
        .encode_with(&v3, &json!({"carrier": "DHL", "weight_grams": 2.5, "insured": true, "raw": [], "when": "2024-01-01T00:00:00Z"}))
        .unwrap();
    let err = codec.decode_with(&v3, &v1, &new_bytes).unwrap_err();
    assert!(
        matches!(err, AvroError::Resolution { .. }),
        "double cannot be read as int: {err}"
    );
}

/// A fieldless event (serde's unit variant, stored as JSON `null`) has a
/// record with no fields as its schema; it writes no bytes and reads back as
/// `{}`, which the `Event` derive reads as the unit variant again.
#[test]
fn a_fieldless_event_is_an_empty_record_and_reads_back_as_its_unit_variant() {
    #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, orchestrix::Event)]
    #[event(prefix = "com.acme.bank")]
    enum AccountEvent {
        Closed,
        Opened { owner: String },
    }
    use orchestrix::Event as _;

    let codec = AvroCodec::new(
        AvroSchemas::new()
            .with(
                "com.acme.bank.Closed",
                1,
                r#"{"type":"record","name":"Closed","namespace":"com.acme.bank","fields":[]}"#,
            )
            .unwrap()
            .with(
                "com.acme.bank.Opened",
                1,
                r#"{"type":"record","name":"Opened","namespace":"com.acme.bank","fields":[{"name":"owner","type":"string"}]}"#,
            )
            .unwrap(),
    );
    let closed = AccountEvent::Closed.to_payload().unwrap();
    assert_eq!(closed, Value::Null);
    let bytes = codec.encode("com.acme.bank.Closed", 1, &closed).unwrap();
    assert!(bytes.is_empty());
    let back = codec.decode("com.acme.bank.Closed", 1, &bytes).unwrap();
    assert_eq!(back, json!({}));
    assert_eq!(
        AccountEvent::from_payload("com.acme.bank.Closed", back).unwrap(),
        AccountEvent::Closed
    );
    // Only a record without fields takes `null`.
    assert!(
        codec
            .encode("com.acme.bank.Opened", 1, &Value::Null)
            .is_err()
    );
}
