//! The decoders that take bytes from outside (a broker, a registry, a URL in
//! a configuration), each as one function of arbitrary bytes that must
//! return (an error is fine) and never panic. The `cargo fuzz` targets in
//! `fuzz/` and the random-bytes tests here call the same functions.

use bytes::Bytes;
use orchestrix::cloudevent::{CloudEvent, binary};

/// Splits `data` into fields at `0xFF` bytes (a separator that is never
/// UTF-8), so that one input can carry several strings.
fn fields(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == 0xFF).collect()
}

/// Header name/value pairs and a body, from arbitrary bytes: fields taken
/// in pairs; the last odd one is the body.
fn headers_and_body(data: &[u8]) -> (Vec<(String, Vec<u8>)>, Vec<u8>) {
    let mut parts = fields(data);
    let body = if parts.len() % 2 == 1 {
        parts.pop().map(<[u8]>::to_vec).unwrap_or_default()
    } else {
        Vec::new()
    };
    let headers = parts
        .chunks(2)
        .map(|pair| {
            let name = String::from_utf8_lossy(pair.first().copied().unwrap_or_default());
            (
                name.into_owned(),
                pair.get(1).copied().unwrap_or_default().to_vec(),
            )
        })
        .collect();
    (headers, body)
}

/// CloudEvents structured mode (JSON), then back to a record.
pub fn cloudevent_json(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(event) = CloudEvent::from_json(&value)
    {
        let _ = event.to_json();
        let _ = event.to_record();
        let _ = binary::to_recorded(&event);
    }
}

/// CloudEvents binary mode, with the Kafka (`ce_`) and NATS (`ce-`) prefixes.
pub fn cloudevent_binary(data: &[u8]) {
    let (headers, body) = headers_and_body(data);
    for prefix in [binary::KAFKA_PREFIX, binary::NATS_PREFIX] {
        let pairs = headers.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
        if let Ok(event) = binary::decode(pairs, &body, prefix) {
            let _ = binary::to_recorded(&event);
            let _ = event.to_record();
        }
    }
}

/// The Confluent wire format (magic byte, schema id, Avro body).
pub fn avro_wire(data: &[u8]) {
    if let Ok((id, body)) = orchestrix_avro::wire::unframe(data) {
        let again = orchestrix_avro::wire::frame(id, body);
        assert_eq!(again, data, "frame(unframe(x)) must give x back");
    }
}

/// A schema covering Avro's types, for the decoder.
const SCHEMA: &str = r#"{
  "type": "record", "name": "Fuzz", "namespace": "com.orchestrix.fuzz",
  "fields": [
    {"name": "b", "type": "boolean"},
    {"name": "i", "type": "int"},
    {"name": "l", "type": "long"},
    {"name": "f", "type": "float"},
    {"name": "d", "type": "double"},
    {"name": "s", "type": "string"},
    {"name": "y", "type": "bytes"},
    {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
    {"name": "x", "type": {"type": "fixed", "name": "X", "size": 4}},
    {"name": "a", "type": {"type": "array", "items": "long"}},
    {"name": "m", "type": {"type": "map", "values": "string"}},
    {"name": "u", "type": ["null", "string", "long"]},
    {"name": "t", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2}},
    {"name": "uid", "type": {"type": "string", "logicalType": "uuid"}},
    {"name": "next", "type": ["null", "Fuzz"], "default": null}
  ]
}"#;

/// Avro binary decoding with a schema of every type (and recursion).
pub fn avro_decode(data: &[u8]) {
    use std::sync::OnceLock;
    static SCHEMA_PARSED: OnceLock<Option<orchestrix_avro::ParsedSchema>> = OnceLock::new();
    let Some(schema) = SCHEMA_PARSED
        .get_or_init(|| orchestrix_avro::ParsedSchema::parse(SCHEMA).ok())
        .as_ref()
    else {
        return;
    };
    let codec = orchestrix_avro::AvroCodec::new(orchestrix_avro::AvroSchemas::new());
    let _ = codec.decode_with(schema, schema, data);
}

/// The backend URL parser and the Kafka and NATS configurations from URLs.
pub fn urls(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for candidate in [
        text.to_string(),
        format!("kafka://{text}"),
        format!("nats://{text}"),
        format!("postgres://{text}"),
        format!("sqlite://{text}"),
    ] {
        let _ = orchestrix::url::redact(&candidate);
        if let Ok(url) = orchestrix::url::BackendUrl::parse(&candidate) {
            let _ = orchestrix_nats::NatsConfig::from_url(&url);
        }
        let _ = orchestrix_kafka::KafkaConfig::from_url(&candidate);
    }
}

/// Kafka records (headers, key, value) to events, and NATS headers to dead
/// letters.
pub fn headers(data: &[u8]) {
    let (pairs, body) = headers_and_body(data);
    let record = orchestrix_kafka::KafkaRecord {
        topic: "fuzz".to_owned(),
        partition: 0,
        offset: 0,
        key: pairs
            .first()
            .map(|(k, _)| Bytes::copy_from_slice(k.as_bytes())),
        payload: Bytes::from(body.clone()),
        headers: pairs
            .iter()
            .map(|(k, v)| (k.clone(), Bytes::copy_from_slice(v)))
            .collect(),
        timestamp: None,
    };
    let _ = record.decode_event();
    let mut map = orchestrix_nats::async_nats::HeaderMap::new();
    for (name, value) in &pairs {
        let value = String::from_utf8_lossy(value);
        // What a server could deliver: names the client's own parser takes.
        if let Ok(name) = name.parse::<orchestrix_nats::async_nats::HeaderName>()
            && let Ok(value) = value.parse::<orchestrix_nats::async_nats::HeaderValue>()
        {
            map.insert(name, value);
        }
    }
    let _ = orchestrix_nats::dead_letter::to_dead_letter(&map, Bytes::from(body));
}
