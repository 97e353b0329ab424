//! Dead letters on NATS: the original message (headers and body, byte for
//! byte) published to the dead-letter subject with reason headers, and read
//! back as core [`DeadLetter`]s.
//!
//! Headers added to the original ones, the layout every bus shares
//! ([`orchestrix::dead_letter::header`]; written in lowercase, read
//! case-insensitively):
//!
//! | header | value |
//! |---|---|
//! | `orchestrix-error` | the error, for a person (one line, at most 1 KiB) |
//! | `orchestrix-error-kind` | [`orchestrix::Error::kind`], e.g. `invalid_input` |
//! | `orchestrix-error-class` | `transient` or `permanent` |
//! | `orchestrix-attempts` | deliveries of the message so far |
//! | `orchestrix-consumer` | the handler that gave up (what replay looks up) |
//! | `orchestrix-group` | the consumer group |
//! | `orchestrix-worker` | the worker that gave up |
//! | `orchestrix-original-topic`, `-partition`, `-offset`, `-subject` | where the message was: stream, partition of its subject, stream sequence, subject |
//! | `orchestrix-failed-at` | RFC 3339 time |
//! | `orchestrix-dead-letter-id` | a UUIDv7 naming the dead letter |
//!
//! Letters written before this layout (`Orchestrix-Source-Stream`,
//! `-Sequence`, `-Subject`) read the same.
//!
//! `Nats-Msg-Id` becomes `{consumer}:{stream}:{sequence}`, so a worker that
//! dead-letters a message, crashes before terminating it and sees it again
//! does not store a second dead letter.

use std::collections::BTreeMap;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use orchestrix::cloudevent::{EXT_GLOBAL_POSITION, binary};
use orchestrix::dead_letter::{header, legacy_alias, stable_id};
use orchestrix::store::DeadLetter;
use orchestrix::{Error, Result};
use uuid::Uuid;

use crate::config::NatsConfig;
use crate::error::{client, publish_is_transient};
use crate::publisher::MSG_ID_HEADER;

/// Why the message was dead-lettered, for a person.
pub const ERROR_HEADER: &str = header::ERROR;
/// [`orchestrix::Error::kind`] of the failure.
pub const ERROR_KIND_HEADER: &str = header::ERROR_KIND;
/// `transient` or `permanent`.
pub const ERROR_CLASS_HEADER: &str = header::ERROR_CLASS;
/// How many deliveries the message had.
pub const ATTEMPTS_HEADER: &str = header::ATTEMPTS;
/// The handler that gave up.
pub const CONSUMER_HEADER: &str = header::CONSUMER;
/// The consumer group.
pub const GROUP_HEADER: &str = header::GROUP;
/// The worker that gave up.
pub const WORKER_HEADER: &str = header::WORKER;
/// The stream the message came from.
pub const SOURCE_STREAM_HEADER: &str = header::ORIGINAL_TOPIC;
/// The partition of the message's subject, when it is partitioned.
pub const SOURCE_PARTITION_HEADER: &str = header::ORIGINAL_PARTITION;
/// The message's sequence in that stream.
pub const SOURCE_SEQUENCE_HEADER: &str = header::ORIGINAL_OFFSET;
/// The message's subject.
pub const SOURCE_SUBJECT_HEADER: &str = header::ORIGINAL_SUBJECT;
/// When it was dead-lettered.
pub const FAILED_AT_HEADER: &str = header::FAILED_AT;
/// The dead letter's own id.
pub const DEAD_LETTER_ID_HEADER: &str = header::DEAD_LETTER_ID;

const MAX_REASON: usize = 1024;

/// A header value that NATS can carry: one line, bounded.
fn header_safe(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > max {
        let mut cut = max;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// Whether a header is JetStream's own (`Nats-*`): not copied, since
/// `Nats-Msg-Id` and the `Nats-Expected-*` headers would change what the
/// dead-letter stream does with the message.
fn is_jetstream_header(name: &str) -> bool {
    // `get`, not `[..5]`: a name may hold a multi-byte character there.
    name.get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("nats-"))
}

/// Where a failed message came from and why it failed.
#[derive(Debug)]
pub(crate) struct Failure<'a> {
    pub message: &'a async_nats::Message,
    pub error: &'a Error,
    pub attempts: u32,
    /// The consumer group.
    pub consumer: &'a str,
    /// The handler's name.
    pub handler: &'a str,
    pub worker: &'a str,
    pub stream: &'a str,
    pub sequence: u64,
}

/// Publishes dead letters.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetterSink {
    js: jetstream::Context,
    subject: String,
    /// Whether a stream captures the subject (then the publish is confirmed).
    persistent: bool,
}

impl DeadLetterSink {
    pub(crate) fn new(js: jetstream::Context, config: &NatsConfig) -> Self {
        Self {
            js,
            subject: config.dead_letter_subject(),
            persistent: !config.dead_letters.no_stream,
        }
    }

    /// The headers of the dead letter of `failure`.
    pub(crate) fn headers(failure: &Failure<'_>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(original) = &failure.message.headers {
            for (name, values) in original.iter() {
                let name: &str = name.as_ref();
                if is_jetstream_header(name) {
                    continue;
                }
                for value in values {
                    headers.append(name, value.as_str());
                }
            }
        }
        headers.insert(
            MSG_ID_HEADER,
            format!(
                "{}:{}:{}",
                failure.consumer, failure.stream, failure.sequence
            ),
        );
        headers.insert(
            ERROR_HEADER,
            header_safe(&failure.error.to_string(), MAX_REASON),
        );
        headers.insert(ERROR_KIND_HEADER, failure.error.kind());
        headers.insert(
            ERROR_CLASS_HEADER,
            if failure.error.is_transient() {
                "transient"
            } else {
                "permanent"
            },
        );
        headers.insert(ATTEMPTS_HEADER, failure.attempts.to_string());
        headers.insert(CONSUMER_HEADER, header_safe(failure.handler, 256));
        headers.insert(GROUP_HEADER, header_safe(failure.consumer, 256));
        headers.insert(WORKER_HEADER, header_safe(failure.worker, 256));
        headers.insert(SOURCE_STREAM_HEADER, failure.stream);
        if let Some(partition) = failure
            .message
            .subject
            .as_str()
            .rsplit('.')
            .next()
            .and_then(|p| p.parse::<u32>().ok())
        {
            headers.insert(SOURCE_PARTITION_HEADER, partition.to_string());
        }
        headers.insert(SOURCE_SEQUENCE_HEADER, failure.sequence.to_string());
        headers.insert(SOURCE_SUBJECT_HEADER, failure.message.subject.as_str());
        headers.insert(
            FAILED_AT_HEADER,
            Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        );
        headers.insert(DEAD_LETTER_ID_HEADER, Uuid::now_v7().to_string());
        headers
    }

    /// Publishes the dead letter of `failure`; confirmed by the dead-letter
    /// stream when there is one.
    pub(crate) async fn send(&self, failure: &Failure<'_>) -> Result<()> {
        let headers = Self::headers(failure);
        let payload = failure.message.payload.clone();
        let what = || {
            format!(
                "dead letter of `{}` #{} to `{}`",
                failure.stream, failure.sequence, self.subject
            )
        };
        if self.persistent {
            let ack = self
                .js
                .send_publish(
                    self.subject.clone(),
                    PublishMessage::build().headers(headers).payload(payload),
                )
                .await
                .map_err(|e| client("dead_letter", publish_is_transient(&e), what(), e))?;
            ack.await
                .map_err(|e| client("dead_letter", true, what(), e))?;
        } else {
            let nats = self.js.client();
            nats.publish_with_headers(self.subject.clone(), headers, payload)
                .await
                .map_err(|e| client("dead_letter", true, what(), e))?;
            nats.flush()
                .await
                .map_err(|e| client("dead_letter", true, what(), e))?;
        }
        Ok(())
    }
}

/// Reads a dead-letter message (headers and body as stored) into a core
/// [`DeadLetter`]. Fields that the headers do not carry stay empty; without
/// an id header the id is a new one ([`list_dead_letters`] derives a stable
/// one from the sequence).
#[must_use]
pub fn to_dead_letter(headers: &HeaderMap, payload: Bytes) -> DeadLetter {
    let mut original = BTreeMap::new();
    let mut ours = BTreeMap::new();
    for (name, values) in headers.iter() {
        let name: &str = name.as_ref();
        let Some(value) = values.last() else { continue };
        if name.len() > 11
            && name
                .get(..11)
                .is_some_and(|p| p.eq_ignore_ascii_case("orchestrix-"))
        {
            let name = legacy_alias(name).map_or_else(|| name.to_ascii_lowercase(), str::to_owned);
            ours.insert(name, value.as_str().to_owned());
        } else if !is_jetstream_header(name) {
            original.insert(name.to_owned(), value.as_str().to_owned());
        }
    }
    let ours_get = |h: &str| ours.get(&h.to_ascii_lowercase()).cloned();
    let ce = |attr: &str| {
        original
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(&format!("{}{attr}", binary::NATS_PREFIX)))
            .map(|(_, v)| v.clone())
    };
    DeadLetter {
        id: ours_get(DEAD_LETTER_ID_HEADER)
            .and_then(|v| Uuid::parse_str(&v).ok())
            .unwrap_or_else(Uuid::now_v7),
        consumer: ours_get(CONSUMER_HEADER).unwrap_or_default(),
        event_id: ce("id").and_then(|v| Uuid::parse_str(&v).ok()),
        event_type: ce("type"),
        stream_id: ce("subject"),
        position: ce(EXT_GLOBAL_POSITION).and_then(|v| v.parse().ok()),
        payload,
        headers: original,
        reason: ours_get(ERROR_HEADER).unwrap_or_default(),
        error_kind: ours_get(ERROR_KIND_HEADER).unwrap_or_default(),
        attempts: ours_get(ATTEMPTS_HEADER)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        failed_at: ours_get(FAILED_AT_HEADER)
            .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
            .map_or_else(Utc::now, |t| t.with_timezone(&Utc)),
    }
}

/// Whether a dead-letter message carries its id.
fn has_id(headers: &HeaderMap) -> bool {
    headers
        .iter()
        .any(|(name, _)| AsRef::<str>::as_ref(name).eq_ignore_ascii_case(DEAD_LETTER_ID_HEADER))
}

/// Lists up to `limit` dead letters from the dead-letter stream, oldest
/// first, starting at stream sequence `from` (1 for the beginning), with the
/// sequence of each. A letter without an id header gets one derived from
/// its stream and sequence ([`stable_id`]), the same in every listing.
///
/// # Errors
/// A transient [`Error::Backend`] when the stream cannot be read.
pub async fn list_dead_letters(
    js: &jetstream::Context,
    config: &NatsConfig,
    from: u64,
    limit: usize,
) -> Result<Vec<(u64, DeadLetter)>> {
    let name = config.dead_letter_stream();
    let mut stream = js
        .get_stream(&name)
        .await
        .map_err(|e| client("dead_letters", true, format!("open stream `{name}`"), e))?;
    let state = stream
        .info()
        .await
        .map_err(|e| client("dead_letters", true, format!("info of stream `{name}`"), e))?
        .state
        .clone();
    let mut out = Vec::new();
    let mut seq = from.max(state.first_sequence);
    while out.len() < limit && seq <= state.last_sequence {
        match stream.get_raw_message(seq).await {
            Ok(m) => {
                let mut letter = to_dead_letter(&m.headers, m.payload);
                if !has_id(&m.headers) {
                    letter.id = stable_id(&["nats", &name, &m.sequence.to_string()]);
                }
                out.push((m.sequence, letter));
            }
            // A removed (aged out or deleted) message leaves a gap.
            Err(e) => tracing::debug!(sequence = seq, error = %e, "no dead letter at sequence"),
        }
        seq += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_one_bounded_line() {
        assert_eq!(header_safe("a\r\nb", 100), "a  b");
        let long = "é".repeat(2000);
        let safe = header_safe(&long, MAX_REASON);
        assert!(safe.len() <= MAX_REASON + '…'.len_utf8());
    }

    #[test]
    fn dead_letter_headers_round_trip() {
        let mut original = HeaderMap::new();
        original.insert("Nats-Msg-Id", "event-id");
        original.insert("ce-id", "0191b2b0-0000-7000-8000-000000000001");
        original.insert("ce-type", "com.acme.T");
        original.insert("ce-subject", "order-1");
        original.insert("ce-globalposition", "17");
        let message = async_nats::Message {
            subject: "orders.3".into(),
            reply: None,
            payload: Bytes::from_static(b"{}"),
            headers: Some(original),
            status: None,
            description: None,
            length: 0,
        };
        let error = Error::invalid("thing", "bad\nvery bad");
        let failure = Failure {
            message: &message,
            error: &error,
            attempts: 3,
            consumer: "ORDERS_balances",
            handler: "balances",
            worker: "w1",
            stream: "ORDERS",
            sequence: 42,
        };
        let headers = DeadLetterSink::headers(&failure);
        assert_eq!(
            headers.get(MSG_ID_HEADER).unwrap().as_str(),
            "ORDERS_balances:ORDERS:42"
        );
        assert!(!headers.get(ERROR_HEADER).unwrap().as_str().contains('\n'));
        let letter = to_dead_letter(&headers, message.payload.clone());
        assert_eq!(letter.consumer, "balances");
        assert_eq!(letter.attempts, 3);
        assert_eq!(letter.error_kind, "invalid_input");
        assert_eq!(letter.stream_id.as_deref(), Some("order-1"));
        assert_eq!(letter.position, Some(17));
        assert_eq!(letter.event_type.as_deref(), Some("com.acme.T"));
        assert!(letter.event_id.is_some());
        assert!(letter.headers.contains_key("ce-id"));
        assert!(
            !letter
                .headers
                .keys()
                .any(|k| k.eq_ignore_ascii_case("nats-msg-id"))
        );
    }
}
