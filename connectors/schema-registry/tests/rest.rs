//! The embedded registry served over REST, driven by this crate's client
//! (proving client and server against each other) and by raw HTTP requests
//! (proving status codes, content type and bodies as Confluent documents them).

use std::sync::Arc;

use orchestrix_schema_registry::server::{self, ServerHandle};
use orchestrix_schema_registry::{
    CompatibilityLevel, EmbeddedRegistry, RegistryClient, RegistryError, SchemaRegistry,
    VersionSpec,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const V1: &str = r#"{"type":"record","name":"Opened","namespace":"com.acme.bank","fields":[{"name":"owner","type":"string"}]}"#;
const V2: &str = r#"{"type":"record","name":"Opened","namespace":"com.acme.bank","fields":[{"name":"owner","type":"string"},{"name":"branch","type":"string","default":"main"}]}"#;
const BAD: &str = r#"{"type":"record","name":"Opened","namespace":"com.acme.bank","fields":[{"name":"owner","type":"int"}]}"#;
const SUBJECT: &str = "com.acme.bank.Opened";

async fn start() -> ServerHandle {
    server::serve(
        Arc::new(EmbeddedRegistry::memory()),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn client_and_embedded_server_agree() {
    let running = start().await;
    let client = RegistryClient::new(&running.url()).unwrap();

    assert_eq!(client.subjects().await.unwrap(), Vec::<String>::new());
    assert_eq!(client.register(SUBJECT, V1).await.unwrap(), 1);
    // The same schema again (other whitespace) is the same id and no new version.
    assert_eq!(
        client
            .register(
                SUBJECT,
                &serde_json::to_string_pretty(&serde_json::from_str::<Value>(V1).unwrap()).unwrap()
            )
            .await
            .unwrap(),
        1
    );
    assert_eq!(client.register(SUBJECT, V2).await.unwrap(), 2);
    // The same schema under another subject shares the id.
    assert_eq!(client.register("other", V2).await.unwrap(), 2);
    assert_eq!(client.subjects().await.unwrap(), [SUBJECT, "other"]);
    assert_eq!(client.versions(SUBJECT).await.unwrap(), [1, 2]);
    let latest = client.version(SUBJECT, VersionSpec::Latest).await.unwrap();
    assert_eq!(
        (
            latest.subject.as_str(),
            latest.version,
            latest.id,
            latest.schema.as_str()
        ),
        (SUBJECT, 2, 2, V2)
    );
    assert_eq!(
        client
            .version(SUBJECT, VersionSpec::Number(1))
            .await
            .unwrap()
            .schema,
        V1
    );
    assert_eq!(client.schema_by_id(1).await.unwrap(), V1);
    assert_eq!(client.lookup(SUBJECT, V1).await.unwrap().version, 1);

    // Compatibility: checked, then refused on registration, with the reason.
    let check = client
        .check_compatibility(SUBJECT, VersionSpec::Latest, BAD)
        .await
        .unwrap();
    assert!(!check.is_compatible);
    assert!(
        check.messages[0].contains("type of `owner` changed"),
        "{:?}",
        check.messages
    );
    assert!(
        client
            .check_compatibility(SUBJECT, VersionSpec::Number(1), V2)
            .await
            .unwrap()
            .is_compatible
    );
    let err = client.register(SUBJECT, BAD).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::Incompatible { subject, details } if subject == SUBJECT && details[0].contains("string cannot be read as new type int")),
        "{err}"
    );

    // Typed errors from error bodies.
    assert!(
        matches!(client.versions("nope").await.unwrap_err(), RegistryError::SubjectNotFound(s) if s == "nope")
    );
    assert!(matches!(
        client
            .version(SUBJECT, VersionSpec::Number(9))
            .await
            .unwrap_err(),
        RegistryError::VersionNotFound { .. }
    ));
    assert!(matches!(
        client.schema_by_id(99).await.unwrap_err(),
        RegistryError::SchemaNotFound(_)
    ));
    assert!(matches!(
        client.register(SUBJECT, "{oops").await.unwrap_err(),
        RegistryError::InvalidSchema(_)
    ));
    assert!(matches!(
        client.lookup(SUBJECT, r#""string""#).await.unwrap_err(),
        RegistryError::SchemaNotFound(_)
    ));

    // Configuration, global and per subject.
    assert_eq!(
        client.config(None, false).await.unwrap(),
        CompatibilityLevel::Backward
    );
    assert!(matches!(
        client.config(Some(SUBJECT), false).await.unwrap_err(),
        RegistryError::SubjectConfigNotFound(_)
    ));
    assert_eq!(
        client.config(Some(SUBJECT), true).await.unwrap(),
        CompatibilityLevel::Backward
    );
    client
        .set_config(Some(SUBJECT), CompatibilityLevel::None)
        .await
        .unwrap();
    assert_eq!(
        client.config(Some(SUBJECT), false).await.unwrap(),
        CompatibilityLevel::None
    );
    assert_eq!(
        client.register(SUBJECT, BAD).await.unwrap(),
        3,
        "NONE accepts anything"
    );
    client
        .set_config(None, CompatibilityLevel::FullTransitive)
        .await
        .unwrap();
    assert_eq!(
        client.config(None, false).await.unwrap(),
        CompatibilityLevel::FullTransitive
    );

    assert_eq!(client.delete_subject("other").await.unwrap(), [1]);
    assert_eq!(client.subjects().await.unwrap(), [SUBJECT]);
    assert_eq!(
        client.schema_by_id(2).await.unwrap(),
        V2,
        "ids stay readable"
    );
    running.shutdown().await.unwrap();

    // A registry that is not there is a transient transport error.
    let err = client.subjects().await.unwrap_err();
    assert!(
        matches!(err, RegistryError::Transport { .. }) && err.is_transient(),
        "{err}"
    );
}

/// One raw HTTP/1.1 exchange.
async fn http(
    running: &ServerHandle,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String, Value) {
    let mut stream = tokio::net::TcpStream::connect(running.local_addr())
        .await
        .unwrap();
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let value = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    (status, content_type, value)
}

fn schema_body(schema: &str) -> String {
    json!({ "schema": schema }).to_string()
}

#[tokio::test]
async fn rest_endpoints_answer_as_confluent_documents() {
    let running = start().await;
    let ct = "application/vnd.schemaregistry.v1+json";
    let err = |code: u32, message: &str| json!({"error_code": code, "message": message});

    assert_eq!(
        http(&running, "GET", "/subjects", None).await,
        (200, ct.into(), json!([]))
    );
    let v1 = schema_body(V1);
    assert_eq!(
        http(&running, "POST", "/subjects/s/versions", Some(&v1)).await,
        (200, ct.into(), json!({"id": 1}))
    );
    assert_eq!(
        http(&running, "GET", "/subjects/s/versions", None).await,
        (200, ct.into(), json!([1]))
    );
    assert_eq!(
        http(&running, "GET", "/subjects/s/versions/latest", None).await,
        (
            200,
            ct.into(),
            json!({"subject": "s", "version": 1, "id": 1, "schema": V1})
        )
    );
    assert_eq!(
        http(&running, "GET", "/subjects/s/versions/1/schema", None)
            .await
            .2,
        serde_json::from_str::<Value>(V1).unwrap()
    );
    assert_eq!(
        http(&running, "GET", "/schemas/ids/1", None).await,
        (200, ct.into(), json!({"schema": V1}))
    );
    assert_eq!(
        http(&running, "GET", "/schemas/ids/1/schema", None).await,
        (200, ct.into(), serde_json::from_str::<Value>(V1).unwrap())
    );
    assert_eq!(
        http(&running, "POST", "/subjects/t/versions", Some(&v1)).await,
        (200, ct.into(), json!({"id": 1}))
    );
    assert_eq!(
        http(&running, "GET", "/schemas/ids/1/versions", None).await,
        (
            200,
            ct.into(),
            json!([{"subject": "s", "version": 1}, {"subject": "t", "version": 1}])
        )
    );
    assert_eq!(
        http(&running, "DELETE", "/subjects/t", None).await,
        (200, ct.into(), json!([1]))
    );
    assert_eq!(
        http(&running, "GET", "/schemas/types", None).await,
        (200, ct.into(), json!(["AVRO"]))
    );
    assert_eq!(
        http(&running, "POST", "/subjects/s", Some(&v1)).await,
        (
            200,
            ct.into(),
            json!({"subject": "s", "version": 1, "id": 1, "schema": V1})
        )
    );

    // 404s.
    assert_eq!(
        http(&running, "GET", "/subjects/nope/versions", None).await,
        (404, ct.into(), err(40401, "Subject 'nope' not found."))
    );
    assert_eq!(
        http(&running, "GET", "/subjects/nope/versions/1", None).await,
        (404, ct.into(), err(40401, "Subject 'nope' not found."))
    );
    assert_eq!(
        http(&running, "GET", "/subjects/s/versions/7", None).await,
        (404, ct.into(), err(40402, "Version 7 not found."))
    );
    assert_eq!(
        http(&running, "GET", "/schemas/ids/99", None).await,
        (404, ct.into(), err(40403, "Schema 99 not found"))
    );
    for path in ["/schemas/ids/99/schema", "/schemas/ids/99/versions"] {
        assert_eq!(
            http(&running, "GET", path, None).await,
            (404, ct.into(), err(40403, "Schema 99 not found"))
        );
    }
    assert_eq!(
        http(&running, "GET", "/schemas/ids/x/versions", None).await,
        (404, ct.into(), err(40403, "Schema x not found"))
    );
    assert_eq!(
        http(&running, "POST", "/subjects/s", Some(&schema_body(V2))).await,
        (404, ct.into(), err(40403, "Schema not found"))
    );
    assert_eq!(
        http(&running, "GET", "/config/s", None).await,
        (
            404,
            ct.into(),
            err(
                40408,
                "Subject 's' does not have subject-level compatibility configured"
            )
        )
    );
    assert_eq!(http(&running, "GET", "/no/such/route", None).await.0, 404);

    // 422s.
    let invalid_version = |v: &str| {
        err(
            42202,
            &format!(
                "The specified version '{v}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
            ),
        )
    };
    assert_eq!(
        http(&running, "GET", "/subjects/s/versions/0", None).await,
        (422, ct.into(), invalid_version("0"))
    );
    assert_eq!(
        http(&running, "GET", "/subjects/s/versions/abc", None).await,
        (422, ct.into(), invalid_version("abc"))
    );
    let (status, _, body) = http(
        &running,
        "POST",
        "/subjects/s/versions",
        Some(&schema_body(r#"{"type":"record","name":"X"}"#)),
    )
    .await;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42201)));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid schema"),
        "{body}"
    );
    let (status, _, body) = http(
        &running,
        "POST",
        "/subjects/s/versions",
        Some(r#"{"schema":"\"int\"","schemaType":"PROTOBUF"}"#),
    )
    .await;
    assert_eq!((status, body["error_code"].clone()), (422, json!(42201)));
    assert_eq!(
        http(
            &running,
            "PUT",
            "/config",
            Some(r#"{"compatibility":"SIDEWAYS"}"#)
        )
        .await,
        (
            422,
            ct.into(),
            err(
                42203,
                "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"
            )
        )
    );
    assert_eq!(
        http(&running, "POST", "/subjects/s/versions", Some("{not json"))
            .await
            .0,
        400
    );

    // 409 on an incompatible registration; the check endpoint explains.
    let (status, _, body) = http(
        &running,
        "POST",
        "/subjects/s/versions",
        Some(&schema_body(BAD)),
    )
    .await;
    assert_eq!((status, body["error_code"].clone()), (409, json!(409)));
    assert!(
        body["message"].as_str().unwrap().starts_with(
            "Schema being registered is incompatible with an earlier schema for subject \"s\""
        ),
        "{body}"
    );
    assert_eq!(
        http(
            &running,
            "POST",
            "/compatibility/subjects/s/versions/latest",
            Some(&schema_body(BAD))
        )
        .await,
        (200, ct.into(), json!({"is_compatible": false}))
    );
    let (status, _, body) = http(
        &running,
        "POST",
        "/compatibility/subjects/s/versions/1?verbose=true",
        Some(&schema_body(BAD)),
    )
    .await;
    assert_eq!((status, body["is_compatible"].clone()), (200, json!(false)));
    assert!(
        body["messages"][0]
            .as_str()
            .unwrap()
            .contains("old type string cannot be read as new type int"),
        "{body}"
    );
    assert_eq!(
        http(
            &running,
            "POST",
            "/compatibility/subjects/s/versions",
            Some(&schema_body(V2))
        )
        .await,
        (200, ct.into(), json!({"is_compatible": true}))
    );
    assert_eq!(
        http(
            &running,
            "POST",
            "/compatibility/subjects/s/versions/5",
            Some(&schema_body(V2))
        )
        .await
        .2["error_code"],
        json!(40402)
    );
    assert_eq!(
        http(
            &running,
            "POST",
            "/compatibility/subjects/s/versions/x",
            Some(&schema_body(V2))
        )
        .await
        .2["error_code"],
        json!(42202)
    );

    // Config.
    assert_eq!(
        http(&running, "GET", "/config", None).await,
        (200, ct.into(), json!({"compatibilityLevel": "BACKWARD"}))
    );
    assert_eq!(
        http(
            &running,
            "PUT",
            "/config/s",
            Some(r#"{"compatibility":"none"}"#)
        )
        .await,
        (200, ct.into(), json!({"compatibility": "NONE"}))
    );
    assert_eq!(
        http(&running, "GET", "/config/s", None).await,
        (200, ct.into(), json!({"compatibilityLevel": "NONE"}))
    );
    assert_eq!(
        http(&running, "GET", "/config/t?defaultToGlobal=true", None)
            .await
            .2,
        json!({"compatibilityLevel": "BACKWARD"})
    );
    assert_eq!(
        http(
            &running,
            "POST",
            "/subjects/s/versions",
            Some(&schema_body(BAD))
        )
        .await,
        (200, ct.into(), json!({"id": 2}))
    );
    assert_eq!(
        http(&running, "DELETE", "/subjects/s", None).await,
        (200, ct.into(), json!([1, 2]))
    );
    assert_eq!(http(&running, "GET", "/subjects", None).await.2, json!([]));
    running.shutdown().await.unwrap();
}
