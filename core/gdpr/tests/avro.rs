//! Personal fields marked in Avro schemas, encrypted under the Avro codec.
#![cfg(feature = "avro")]

use std::sync::Arc;

use orchestrix::codec::Codec as _;
use orchestrix_avro::{AvroCodec, AvroSchemas};
use orchestrix_gdpr::{
    Error, ForgetRequest, Gdpr, MemoryKeyStore, PersonalFields, Vault, is_erased,
};
use serde_json::json;

const TYPE: &str = "com.acme.crm.CustomerRegistered";
const AVSC: &str = r#"{
  "type": "record", "name": "CustomerRegistered", "namespace": "com.acme.crm",
  "fields": [
    {"name": "customer_id", "type": "string", "subject": true},
    {"name": "email", "type": "string", "personal": true},
    {"name": "name", "type": ["null", "string"], "default": null, "personal": true},
    {"name": "plan", "type": "string"},
    {"name": "contacts", "type": {"type": "array", "items": {
      "type": "record", "name": "Contact",
      "fields": [{"name": "kind", "type": "string"},
                 {"name": "phone", "type": "string", "personal": true}]}}}
  ]
}"#;

#[tokio::test]
async fn avro_personal_properties_are_encrypted_and_erased() {
    let schemas = AvroSchemas::new().with(TYPE, 1, AVSC).unwrap();
    let fields = PersonalFields::new()
        .avro(TYPE, 1, schemas.require(TYPE, 1).unwrap().schema())
        .unwrap();
    let marked = fields.get(TYPE, 1).unwrap();
    assert_eq!(marked.subject().as_str(), "/customer_id");
    let paths: Vec<&str> = marked.personal().iter().map(|p| p.as_str()).collect();
    assert_eq!(paths, ["/email", "/name", "/contacts/*/phone"]);

    let gdpr = Gdpr::new(Vault::new(MemoryKeyStore::new()).unwrap(), fields)
        .with_inner_codec(Arc::new(AvroCodec::new(schemas)));
    let store = orchestrix::Store::memory().with_codec(gdpr.codec());
    let codec = store.codec();
    assert_eq!(
        codec.content_type(),
        AvroCodec::new(AvroSchemas::new()).content_type()
    );

    let payload = json!({"customer_id": "c-1", "email": "ada@example.com", "name": "Ada",
        "plan": "gold", "contacts": [{"kind": "mobile", "phone": "+44 20 7946 0000"}]});
    let bytes = codec.encode(TYPE, 1, &payload).unwrap();
    let raw = String::from_utf8_lossy(&bytes);
    assert!(
        !raw.contains("ada@example.com") && !raw.contains("Ada") && !raw.contains("7946"),
        "{raw}"
    );
    assert!(raw.contains("gold") && raw.contains("orx-pii:v1:"));
    assert_eq!(codec.decode(TYPE, 1, &bytes).unwrap(), payload);

    // A null personal value stays null.
    let nameless = json!({"customer_id": "c-1", "email": "x@example.com", "name": null,
        "plan": "gold", "contacts": []});
    let decoded = codec
        .decode(TYPE, 1, &codec.encode(TYPE, 1, &nameless).unwrap())
        .unwrap();
    assert_eq!(decoded, nameless);

    gdpr.forget(&store, ForgetRequest::new("c-1"))
        .await
        .unwrap();
    let erased = codec.decode(TYPE, 1, &bytes).unwrap();
    assert!(is_erased(&erased["email"]) && is_erased(&erased["name"]));
    assert!(is_erased(&erased["contacts"][0]["phone"]));
    assert_eq!(erased["contacts"][0]["kind"], "mobile");
    assert_eq!(erased["plan"], "gold");
    // Re-encoding an erased event (an upcaster does) fits the Avro schema.
    let again = codec.encode(TYPE, 1, &erased).unwrap();
    assert_eq!(codec.decode(TYPE, 1, &again).unwrap(), erased);
}

#[test]
fn avro_schemas_with_unfit_markings_are_refused() {
    let parse = |avsc: &str| apache_avro::Schema::parse_str(avsc).unwrap();
    let not_a_string = parse(
        r#"{"type": "record", "name": "R", "fields": [
        {"name": "id", "type": "string", "subject": true},
        {"name": "born", "type": "int", "personal": true}]}"#,
    );
    assert!(matches!(
        PersonalFields::new().avro("t", 1, &not_a_string),
        Err(Error::Config { .. })
    ));
    let no_subject = parse(
        r#"{"type": "record", "name": "R", "fields": [
        {"name": "email", "type": "string", "personal": true}]}"#,
    );
    let err = PersonalFields::new().avro("t", 1, &no_subject).unwrap_err();
    assert!(err.to_string().contains("\"subject\": true"), "{err}");
    let nothing_personal =
        parse(r#"{"type": "record", "name": "R", "fields": [{"name": "id", "type": "string"}]}"#);
    assert!(
        PersonalFields::new()
            .avro("t", 1, &nothing_personal)
            .unwrap()
            .is_empty()
    );
}
