//! Conversions between the core's types and CQL values.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, TimeZone as _, Utc};
use orchestrix::{Error, EventRecord, Metadata, RecordedEvent, Result, StreamId};
use scylla::value::{CqlTimestamp, CqlValue};
use uuid::Uuid;

use crate::error::corrupted;

/// A `u64` as CQL `bigint`.
pub(crate) fn to_i64(what: &str, v: u64) -> Result<i64> {
    i64::try_from(v)
        .map_err(|_| Error::invalid(what.to_owned(), format!("{v} does not fit a CQL bigint")))
}

/// A CQL `bigint` that must not be negative.
pub(crate) fn to_u64(what: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| corrupted(what.to_owned(), format!("negative value {v}")))
}

/// A time as milliseconds plus the nanoseconds below the millisecond.
pub(crate) fn split_time(t: DateTime<Utc>) -> (CqlTimestamp, i32) {
    let ms = t.timestamp_millis();
    let sub = t.timestamp_subsec_nanos() % 1_000_000;
    (CqlTimestamp(ms), i32::try_from(sub).unwrap_or(0))
}

/// The inverse of [`split_time`].
pub(crate) fn join_time(what: &str, ms: CqlTimestamp, nanos: Option<i32>) -> Result<DateTime<Utc>> {
    let base = Utc
        .timestamp_millis_opt(ms.0)
        .single()
        .ok_or_else(|| corrupted(what.to_owned(), format!("timestamp {} out of range", ms.0)))?;
    Ok(base + chrono::TimeDelta::nanoseconds(i64::from(nanos.unwrap_or(0))))
}

/// The event columns shared by `events` and `all_events`, in this order:
/// `event_id, event_type, schema_version, source, time_ms, time_nanos,
/// content_type, data, metadata`.
pub(crate) fn record_values(record: &EventRecord) -> Result<Vec<Option<CqlValue>>> {
    let (ms, nanos) = split_time(record.time);
    let metadata = serde_json::to_string(&record.metadata)
        .map_err(|e| Error::encode(format!("metadata of event {}", record.id), e))?;
    Ok(vec![
        Some(CqlValue::Uuid(record.id)),
        Some(CqlValue::Text(record.event_type.clone())),
        Some(CqlValue::BigInt(i64::from(record.schema_version))),
        Some(CqlValue::Text(record.source.clone())),
        Some(CqlValue::Timestamp(ms)),
        Some(CqlValue::Int(nanos)),
        Some(CqlValue::Text(record.content_type.clone())),
        Some(CqlValue::Blob(record.data.to_vec())),
        Some(CqlValue::Text(metadata)),
    ])
}

/// The event columns read back (see [`record_values`]).
pub(crate) type RecordRow = (
    Option<Uuid>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<i32>,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
);

/// Builds a recorded event from its place and its columns.
pub(crate) fn recorded(
    stream_id: &str,
    revision: i64,
    position: i64,
    row: RecordRow,
) -> Result<RecordedEvent> {
    let what = || format!("event at position {position}");
    let missing = |col: &str| corrupted(what(), format!("column `{col}` is null"));
    let (id, event_type, schema_version, source, time_ms, time_nanos, content_type, data, metadata) =
        row;
    let metadata: Metadata = match metadata {
        Some(text) if !text.is_empty() => {
            serde_json::from_str(&text).map_err(|e| Error::decode(what(), e))?
        }
        _ => Metadata::default(),
    };
    let stream_id =
        StreamId::parse(stream_id).map_err(|e| corrupted(what(), format!("bad stream id: {e}")))?;
    Ok(RecordedEvent {
        stream_id,
        revision: to_u64("revision", revision)?,
        position: to_u64("position", position)?,
        record: EventRecord {
            id: id.ok_or_else(|| missing("event_id"))?,
            event_type: event_type.ok_or_else(|| missing("event_type"))?,
            schema_version: u32::try_from(schema_version.ok_or_else(|| missing("schema_version"))?)
                .map_err(|e| corrupted(what(), e))?,
            source: source.unwrap_or_default(),
            time: join_time(
                &what(),
                time_ms.ok_or_else(|| missing("time_ms"))?,
                time_nanos,
            )?,
            content_type: content_type.unwrap_or_default(),
            data: Bytes::from(data.unwrap_or_default()),
            metadata,
        },
    })
}

/// Dead-letter headers as JSON text.
pub(crate) fn headers_text(headers: &BTreeMap<String, String>) -> Result<String> {
    serde_json::to_string(headers).map_err(|e| Error::encode("dead-letter headers", e))
}

/// The inverse of [`headers_text`].
pub(crate) fn headers_from(text: Option<String>) -> Result<BTreeMap<String, String>> {
    match text {
        Some(t) if !t.is_empty() => {
            serde_json::from_str(&t).map_err(|e| Error::decode("dead-letter headers", e))
        }
        _ => Ok(BTreeMap::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_split_and_join_exactly() {
        let t = Utc.with_ymd_and_hms(2021, 3, 4, 5, 6, 7).single().unwrap()
            + chrono::TimeDelta::nanoseconds(123_456_789);
        let (ms, nanos) = split_time(t);
        assert_eq!(join_time("t", ms, Some(nanos)).unwrap(), t);
        let before = Utc.timestamp_millis_opt(-1_500).single().unwrap();
        let (ms, nanos) = split_time(before);
        assert_eq!(join_time("t", ms, Some(nanos)).unwrap(), before);
    }
}
