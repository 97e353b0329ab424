//! Conversions between the core's types and table rows.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use orchestrix::store::{DeadLetter, Snapshot, Timer};
use orchestrix::{Error, EventRecord, Metadata, RecordedEvent, Result, StreamId};
use tokio_postgres::Row;
use uuid::Uuid;

/// Columns read for an event, in the order [`event_from_row`] expects.
/// (Metadata comes as JSON text: decoding it straight into `Metadata` skips
/// building a `serde_json::Value` per row.)
pub(crate) const EVENT_COLUMNS: &str = "position, stream_id, revision, event_id, event_type, schema_version, source, time, time_nanos, content_type, data, metadata::text AS metadata";

/// Splits a time into what `timestamptz` keeps (whole microseconds) and the
/// nanoseconds below, so that a stored time reads back exactly.
pub(crate) fn split_time(t: DateTime<Utc>) -> (DateTime<Utc>, i16) {
    let rem = t.timestamp_subsec_nanos() % 1_000;
    (
        t - TimeDelta::nanoseconds(i64::from(rem)),
        i16::try_from(rem).unwrap_or(0),
    )
}

/// The inverse of [`split_time`].
pub(crate) fn join_time(t: DateTime<Utc>, nanos: i16) -> DateTime<Utc> {
    t + TimeDelta::nanoseconds(i64::from(nanos))
}

/// A `u64` that must fit a `bigint` column.
pub(crate) fn to_i64(what: &str, v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| {
        Error::invalid(
            what.to_owned(),
            format!("{v} does not fit PostgreSQL's bigint"),
        )
    })
}

/// A `bigint` column that must hold a `u64`.
pub(crate) fn to_u64(what: &str, v: i64) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::corrupted(what.to_owned(), format!("negative value {v}")))
}

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    idx: usize,
    what: &str,
) -> Result<T> {
    row.try_get(idx)
        .map_err(|e| match std::error::Error::source(&e) {
            Some(cause) => Error::corrupted(what.to_owned(), format!("{e}: {cause}")),
            None => Error::corrupted(what.to_owned(), e.to_string()),
        })
}

/// Decodes a row of [`EVENT_COLUMNS`]. (Error texts are built only on
/// error: this runs for every event read.)
pub(crate) fn event_from_row(row: &Row) -> Result<RecordedEvent> {
    let position: i64 = get(row, 0, "event position")?;
    let what = || format!("event at position {position}");
    let col = |e: tokio_postgres::Error| match std::error::Error::source(&e) {
        Some(cause) => Error::corrupted(what(), format!("{e}: {cause}")),
        None => Error::corrupted(what(), e.to_string()),
    };
    let stream: String = row.try_get(1).map_err(col)?;
    let stream_id = StreamId::parse(stream).map_err(|e| Error::corrupted(what(), e.to_string()))?;
    let revision: i64 = row.try_get(2).map_err(col)?;
    let schema_version: i64 = row.try_get(5).map_err(col)?;
    let time: DateTime<Utc> = row.try_get(7).map_err(col)?;
    let nanos: i16 = row.try_get(8).map_err(col)?;
    let data: &[u8] = row.try_get(10).map_err(col)?;
    let metadata: &str = row.try_get(11).map_err(col)?;
    let metadata: Metadata = if metadata == "{}" {
        Metadata::default()
    } else {
        serde_json::from_str(metadata).map_err(|e| Error::corrupted(what(), e.to_string()))?
    };
    let unsigned = |v: i64| {
        u64::try_from(v).map_err(|_| Error::corrupted(what(), format!("negative value {v}")))
    };
    Ok(RecordedEvent {
        stream_id,
        revision: unsigned(revision)?,
        position: unsigned(position)?,
        record: EventRecord {
            id: row.try_get(3).map_err(col)?,
            event_type: row.try_get(4).map_err(col)?,
            schema_version: u32::try_from(schema_version).map_err(|_| {
                Error::corrupted(what(), format!("schema version {schema_version}"))
            })?,
            source: row.try_get(6).map_err(col)?,
            time: join_time(time, nanos),
            content_type: row.try_get(9).map_err(col)?,
            data: Bytes::copy_from_slice(data),
            metadata,
        },
    })
}

/// Column arrays of many events, for one `unnest` insert (the stream,
/// revision and position are filled in on the server).
#[derive(Debug, Default)]
pub(crate) struct EventColumns {
    pub(crate) event_id: Vec<Uuid>,
    pub(crate) event_type: Vec<String>,
    pub(crate) schema_version: Vec<i64>,
    pub(crate) source: Vec<String>,
    pub(crate) time: Vec<DateTime<Utc>>,
    pub(crate) time_nanos: Vec<i16>,
    pub(crate) content_type: Vec<String>,
    pub(crate) data: Vec<Bytes>,
    pub(crate) metadata: Vec<serde_json::Value>,
}

impl EventColumns {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            event_id: Vec::with_capacity(n),
            event_type: Vec::with_capacity(n),
            schema_version: Vec::with_capacity(n),
            source: Vec::with_capacity(n),
            time: Vec::with_capacity(n),
            time_nanos: Vec::with_capacity(n),
            content_type: Vec::with_capacity(n),
            data: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.event_id.len()
    }

    /// Adds one event.
    pub(crate) fn push_event(&mut self, record: &EventRecord) -> Result<()> {
        let (time, nanos) = split_time(record.time);
        let metadata = serde_json::to_value(&record.metadata)
            .map_err(|e| Error::encode(format!("event {}", record.id), e))?;
        self.event_id.push(record.id);
        self.event_type.push(record.event_type.clone());
        self.schema_version.push(i64::from(record.schema_version));
        self.source.push(record.source.clone());
        self.time.push(time);
        self.time_nanos.push(nanos);
        self.content_type.push(record.content_type.clone());
        self.data.push(record.data.clone());
        self.metadata.push(metadata);
        Ok(())
    }

    /// Drops every event from `len` on.
    pub(crate) fn truncate(&mut self, len: usize) {
        self.event_id.truncate(len);
        self.event_type.truncate(len);
        self.schema_version.truncate(len);
        self.source.truncate(len);
        self.time.truncate(len);
        self.time_nanos.truncate(len);
        self.content_type.truncate(len);
        self.data.truncate(len);
        self.metadata.truncate(len);
    }
}

/// Decodes a snapshot row: `revision, state_version, data, taken_at, taken_at_nanos`.
pub(crate) fn snapshot_from_row(stream: &StreamId, row: &Row) -> Result<Snapshot> {
    let what = format!("snapshot of `{stream}`");
    let revision: i64 = get(row, 0, &what)?;
    let state_version: i64 = get(row, 1, &what)?;
    let data: &[u8] = get(row, 2, &what)?;
    Ok(Snapshot {
        stream_id: stream.clone(),
        revision: to_u64(&what, revision)?,
        state_version: u32::try_from(state_version).map_err(|_| {
            Error::corrupted(what.clone(), format!("state version {state_version}"))
        })?,
        data: Bytes::copy_from_slice(data),
        taken_at: join_time(get(row, 3, &what)?, get(row, 4, &what)?),
    })
}

/// Columns read for a dead letter, in the order [`dead_letter_from_row`] expects.
pub(crate) const DEAD_LETTER_COLUMNS: &str = "id, consumer, event_id, event_type, stream_id, position, payload, headers, reason, error_kind, attempts, failed_at, failed_at_nanos";

/// Decodes a row of [`DEAD_LETTER_COLUMNS`].
pub(crate) fn dead_letter_from_row(row: &Row) -> Result<DeadLetter> {
    let id: Uuid = get(row, 0, "dead letter id")?;
    let what = format!("dead letter {id}");
    let position: Option<i64> = get(row, 5, &what)?;
    let payload: &[u8] = get(row, 6, &what)?;
    let headers: serde_json::Value = get(row, 7, &what)?;
    let headers: BTreeMap<String, String> = serde_json::from_value(headers)
        .map_err(|e| Error::corrupted(what.clone(), e.to_string()))?;
    let attempts: i64 = get(row, 10, &what)?;
    Ok(DeadLetter {
        id,
        consumer: get(row, 1, &what)?,
        event_id: get(row, 2, &what)?,
        event_type: get(row, 3, &what)?,
        stream_id: get(row, 4, &what)?,
        position: position.map(|p| to_u64(&what, p)).transpose()?,
        payload: Bytes::copy_from_slice(payload),
        headers,
        reason: get(row, 8, &what)?,
        error_kind: get(row, 9, &what)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| Error::corrupted(what.clone(), format!("attempts {attempts}")))?,
        failed_at: join_time(get(row, 11, &what)?, get(row, 12, &what)?),
    })
}

/// Decodes a timer row: `id, owner, key, due_at, due_at_nanos, payload`.
pub(crate) fn timer_from_row(row: &Row) -> Result<Timer> {
    let id: String = get(row, 0, "timer id")?;
    let what = format!("timer `{id}`");
    Ok(Timer {
        owner: get(row, 1, &what)?,
        key: get(row, 2, &what)?,
        due_at: join_time(get(row, 3, &what)?, get(row, 4, &what)?),
        payload: get(row, 5, &what)?,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_join_keep_nanoseconds() {
        for t in [
            DateTime::from_timestamp(1_700_000_000, 123_456_789).unwrap(),
            DateTime::from_timestamp(-1_000, 999_999_999).unwrap(),
            DateTime::from_timestamp(0, 0).unwrap(),
        ] {
            let (micros, nanos) = split_time(t);
            assert_eq!(micros.timestamp_subsec_nanos() % 1_000, 0);
            assert!((0..1_000).contains(&nanos));
            assert_eq!(join_time(micros, nanos), t);
        }
    }
}
