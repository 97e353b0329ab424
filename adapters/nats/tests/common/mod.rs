//! Shared test helpers: service addresses, skipping, random names, reading a
//! stream back.

#![allow(dead_code)]

use std::time::Duration;

use async_nats::jetstream;
use orchestrix::{EventRecord, RecordedEvent, StreamId};
use orchestrix_nats::{DeadLetterConfig, LeaseConfig, NatsConfig, StreamConfig};

/// The NATS server under test.
pub fn nats_url() -> String {
    std::env::var("ORCHESTRIX_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

/// The PostgreSQL server under test.
pub fn postgres_url() -> String {
    std::env::var("ORCHESTRIX_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether the NATS server answers; when it does not, a test fails under CI
/// and is skipped (with a reason) elsewhere.
pub async fn nats_available(test: &str) -> bool {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let url = nats_url();
    let reachable =
        tokio::time::timeout(Duration::from_secs(3), async_nats::connect(url.as_str())).await;
    match reachable {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => skip(test, &format!("NATS at {url} is unreachable: {e}")),
        Err(_) => skip(test, &format!("NATS at {url} did not answer within 3 s")),
    }
}

/// Whether PostgreSQL answers (same rules as [`nats_available`]).
pub async fn postgres_available(test: &str) -> bool {
    let url = postgres_url();
    match tokio::time::timeout(
        Duration::from_secs(3),
        tokio_postgres::connect(&url, tokio_postgres::NoTls),
    )
    .await
    {
        Ok(Ok(_)) => true,
        Ok(Err(e)) => skip(test, &format!("PostgreSQL at {url} is unreachable: {e}")),
        Err(_) => skip(
            test,
            &format!("PostgreSQL at {url} did not answer within 3 s"),
        ),
    }
}

fn skip(test: &str, reason: &str) -> bool {
    assert!(
        !ci(),
        "{test}: CI=true but {reason}; start the service (see DESIGN.md §7) or set its env var"
    );
    eprintln!("SKIPPED {test}: {reason} (set CI=true to make this a failure)");
    false
}

/// 12 random hex digits.
pub fn suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A config with random stream, subjects, dead-letter stream and bucket, and
/// short timings for tests.
pub fn config(partitions: u32) -> NatsConfig {
    let id = suffix();
    NatsConfig {
        stream: StreamConfig {
            name: format!("T_{id}"),
            subject_prefix: format!("t{id}.ev"),
            partitions,
            max_age_secs: 3_600,
            storage: orchestrix_nats::Storage::Memory,
            ..StreamConfig::default()
        },
        dead_letters: DeadLetterConfig {
            max_age_secs: 3_600,
            ..DeadLetterConfig::default()
        },
        leases: LeaseConfig {
            bucket: format!("t{id}_leases"),
            ttl_ms: 3_000,
            heartbeat_ms: 500,
            worker_id: None,
        },
        consumer: orchestrix_nats::ConsumerConfig {
            ack_wait_ms: 4_000,
            nak_backoff_initial_ms: 50,
            nak_backoff_max_ms: 200,
            fetch_wait_ms: 500,
            shutdown_timeout_ms: 10_000,
            ..orchestrix_nats::ConsumerConfig::default()
        },
        ..NatsConfig::new(nats_url())
    }
}

/// A JetStream context on a fresh connection.
pub async fn jetstream(config: &NatsConfig) -> jetstream::Context {
    let client = orchestrix_nats::connect(config).await.expect("connect");
    jetstream::new(client)
}

/// Removes what a test created (best effort).
pub async fn cleanup(config: &NatsConfig) {
    let js = jetstream(config).await;
    let _ = js.delete_stream(&config.stream.name).await;
    let _ = js.delete_stream(config.dead_letter_stream()).await;
    let _ = js
        .delete_stream(format!("KV_{}", config.leases.bucket))
        .await;
}

/// Every message of a stream, in sequence order: (sequence, subject,
/// headers, payload).
pub async fn read_stream(
    js: &jetstream::Context,
    name: &str,
) -> Vec<jetstream::message::StreamMessage> {
    let mut stream = js.get_stream(name).await.expect("stream exists");
    let state = stream.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(m) = stream.get_raw_message(seq).await {
            out.push(m);
        }
    }
    out
}

/// A header value of a stored message.
pub fn header(m: &jetstream::message::StreamMessage, name: &str) -> Option<String> {
    m.headers
        .iter()
        .find(|(k, _)| AsRef::<str>::as_ref(*k).eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.last())
        .map(|v| v.as_str().to_owned())
}

/// A recorded event built by hand (no store), for publisher tests.
pub fn recorded(stream: &str, revision: u64, position: u64, ty: &str) -> RecordedEvent {
    RecordedEvent {
        stream_id: StreamId::parse(stream).expect("stream id"),
        revision,
        position,
        record: EventRecord::json(ty, 1, &serde_json::json!({ "revision": revision })),
    }
}
