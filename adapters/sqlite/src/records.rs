//! SQL of the ports beside the event store: snapshots, checkpoints, dead
//! letters and timers.

use std::collections::BTreeMap;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use orchestrix::store::{DeadLetter, Snapshot, Timer};
use orchestrix::{Error, Result, StreamId};
use rusqlite::{Connection, Row, Transaction};
use uuid::Uuid;

use crate::convert::{Columns, to_i64};
use crate::error::driver;

// ---- snapshots ----

pub(crate) fn save_snapshot(conn: &Connection, s: &Snapshot) -> Result<()> {
    const OP: &str = "save_snapshot";
    // A snapshot at a lower revision than the stored one is ignored.
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO snapshots (stream_id, revision, state_version, data, taken_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (stream_id) DO UPDATE SET
                 revision = excluded.revision, state_version = excluded.state_version,
                 data = excluded.data, taken_at = excluded.taken_at
             WHERE excluded.revision >= snapshots.revision",
        )
        .map_err(driver(OP))?;
    let data: &[u8] = &s.data;
    stmt.execute((
        s.stream_id.as_str(),
        to_i64(s.revision, "snapshot revision")?,
        s.state_version,
        data,
        s.taken_at.timestamp_micros(),
    ))
    .map_err(driver(OP))?;
    Ok(())
}

pub(crate) fn load_snapshot(conn: &Connection, stream: &StreamId) -> Result<Option<Snapshot>> {
    const OP: &str = "load_snapshot";
    let mut stmt = conn
        .prepare_cached(
            "SELECT revision, state_version, data, taken_at FROM snapshots WHERE stream_id = ?1",
        )
        .map_err(driver(OP))?;
    let mut rows = stmt.query([stream.as_str()]).map_err(driver(OP))?;
    let Some(row) = rows.next().map_err(driver(OP))? else {
        return Ok(None);
    };
    let cols = Columns::new(row, || format!("snapshot of `{stream}`"));
    Ok(Some(Snapshot {
        stream_id: stream.clone(),
        revision: cols.u64(0, "revision")?,
        state_version: cols.u32(1, "state_version")?,
        data: Bytes::copy_from_slice(cols.bytes(2, "data")?),
        taken_at: cols.time(3, "taken_at")?,
    }))
}

// ---- checkpoints ----

/// Stores the checkpoint `name` inside the caller's transaction, so that a
/// projection commits its read-model changes and its checkpoint together.
///
/// Use it inside [`SqliteStore::transaction`](crate::SqliteStore::transaction);
/// it writes the same table as
/// [`CheckpointStore`](orchestrix::store::CheckpointStore).
///
/// # Errors
/// [`Error::InvalidInput`] for a position above `i64::MAX`,
/// [`Error::Backend`] when SQLite fails.
pub fn save_checkpoint_in(tx: &Transaction<'_>, name: &str, position: u64) -> Result<()> {
    save_checkpoint(tx, name, position)
}

/// Loads the checkpoint `name` inside the caller's transaction.
///
/// # Errors
/// [`Error::Corrupted`] for a stored negative position, [`Error::Backend`]
/// when SQLite fails.
pub fn load_checkpoint_in(tx: &Transaction<'_>, name: &str) -> Result<Option<u64>> {
    load_checkpoint(tx, name)
}

pub(crate) fn save_checkpoint(conn: &Connection, name: &str, position: u64) -> Result<()> {
    const OP: &str = "save_checkpoint";
    let position = to_i64(position, "checkpoint position")?;
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO checkpoints (name, position, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at",
        )
        .map_err(driver(OP))?;
    stmt.execute((name, position, Utc::now().timestamp_micros()))
        .map_err(driver(OP))?;
    Ok(())
}

pub(crate) fn load_checkpoint(conn: &Connection, name: &str) -> Result<Option<u64>> {
    const OP: &str = "load_checkpoint";
    let mut stmt = conn
        .prepare_cached("SELECT position FROM checkpoints WHERE name = ?1")
        .map_err(driver(OP))?;
    let mut rows = stmt.query([name]).map_err(driver(OP))?;
    let Some(row) = rows.next().map_err(driver(OP))? else {
        return Ok(None);
    };
    Columns::new(row, || format!("checkpoint `{name}`"))
        .u64(0, "position")
        .map(Some)
}

pub(crate) fn delete_checkpoint(conn: &Connection, name: &str) -> Result<()> {
    const OP: &str = "delete_checkpoint";
    let mut stmt = conn
        .prepare_cached("DELETE FROM checkpoints WHERE name = ?1")
        .map_err(driver(OP))?;
    stmt.execute([name]).map_err(driver(OP))?;
    Ok(())
}

// ---- dead letters ----

const DEAD_LETTER_COLUMNS: &str = "id, consumer, event_id, event_type, stream_id, position, payload, headers, reason, error_kind, attempts, failed_at";

pub(crate) fn put_dead_letter(conn: &Connection, d: &DeadLetter) -> Result<()> {
    const OP: &str = "put_dead_letter";
    let headers = serde_json::to_string(&d.headers)
        .map_err(|e| Error::encode(format!("headers of dead letter {}", d.id), e))?;
    let position = d
        .position
        .map(|p| to_i64(p, "dead letter position"))
        .transpose()?;
    let mut stmt = conn
        .prepare_cached(&format!(
            "INSERT OR REPLACE INTO dead_letters ({DEAD_LETTER_COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ))
        .map_err(driver(OP))?;
    let payload: &[u8] = &d.payload;
    stmt.execute(rusqlite::params![
        d.id.to_string(),
        d.consumer,
        d.event_id.map(|u| u.to_string()),
        d.event_type,
        d.stream_id,
        position,
        payload,
        headers,
        d.reason,
        d.error_kind,
        d.attempts,
        d.failed_at.timestamp_micros(),
    ])
    .map_err(driver(OP))?;
    Ok(())
}

pub(crate) fn list_dead_letters(
    conn: &Connection,
    consumer: Option<&str>,
    limit: usize,
) -> Result<Vec<DeadLetter>> {
    const OP: &str = "list_dead_letters";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = if consumer.is_some() {
        format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE consumer = ?1 ORDER BY failed_at, id LIMIT ?2"
        )
    } else {
        format!("SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters ORDER BY failed_at, id LIMIT ?1")
    };
    let mut stmt = conn.prepare_cached(&sql).map_err(driver(OP))?;
    let mut rows = match consumer {
        Some(c) => stmt.query((c, limit)),
        None => stmt.query([limit]),
    }
    .map_err(driver(OP))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(driver(OP))? {
        out.push(decode_dead_letter(row)?);
    }
    Ok(out)
}

pub(crate) fn get_dead_letter(conn: &Connection, id: Uuid) -> Result<Option<DeadLetter>> {
    const OP: &str = "get_dead_letter";
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = ?1"
        ))
        .map_err(driver(OP))?;
    let mut rows = stmt.query([id.to_string()]).map_err(driver(OP))?;
    rows.next()
        .map_err(driver(OP))?
        .map(decode_dead_letter)
        .transpose()
}

pub(crate) fn delete_dead_letter(conn: &Connection, id: Uuid) -> Result<bool> {
    const OP: &str = "delete_dead_letter";
    let mut stmt = conn
        .prepare_cached("DELETE FROM dead_letters WHERE id = ?1")
        .map_err(driver(OP))?;
    Ok(stmt.execute([id.to_string()]).map_err(driver(OP))? > 0)
}

fn decode_dead_letter(row: &Row<'_>) -> Result<DeadLetter> {
    let label: Option<String> = row.get::<_, String>(0).ok();
    let cols = Columns::new(row, || {
        format!(
            "dead letter {}",
            label.as_deref().unwrap_or("with an unreadable id")
        )
    });
    Ok(DeadLetter {
        id: cols.uuid(0, "id")?,
        consumer: cols.text(1, "consumer")?.to_owned(),
        event_id: cols.opt_uuid(2, "event_id")?,
        event_type: cols.opt_text(3, "event_type")?.map(str::to_owned),
        stream_id: cols.opt_text(4, "stream_id")?.map(str::to_owned),
        position: cols
            .opt_int(5, "position")?
            .map(|p| {
                u64::try_from(p).map_err(|_| cols.bad("position", &format!("negative value {p}")))
            })
            .transpose()?,
        payload: Bytes::copy_from_slice(cols.bytes(6, "payload")?),
        headers: cols.json::<BTreeMap<String, String>>(7, "headers")?,
        reason: cols.text(8, "reason")?.to_owned(),
        error_kind: cols.text(9, "error_kind")?.to_owned(),
        attempts: cols.u32(10, "attempts")?,
        failed_at: cols.time(11, "failed_at")?,
    })
}

// ---- timers ----

pub(crate) fn schedule_timer(conn: &Connection, t: &Timer) -> Result<()> {
    const OP: &str = "schedule_timer";
    let payload = serde_json::to_string(&t.payload)
        .map_err(|e| Error::encode(format!("payload of timer `{}`", t.id), e))?;
    // Idempotent on the id: the first schedule wins, as in the memory store.
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO timers (id, owner, key, due_at, payload) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (id) DO NOTHING",
        )
        .map_err(driver(OP))?;
    stmt.execute((
        &t.id,
        &t.owner,
        &t.key,
        t.due_at.timestamp_micros(),
        payload,
    ))
    .map_err(driver(OP))?;
    Ok(())
}

pub(crate) fn due_timers(
    conn: &Connection,
    owner: &str,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Timer>> {
    const OP: &str = "due_timers";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, owner, key, due_at, payload FROM timers
             WHERE owner = ?1 AND due_at <= ?2 ORDER BY due_at, id LIMIT ?3",
        )
        .map_err(driver(OP))?;
    let mut rows = stmt
        .query((owner, now.timestamp_micros(), limit))
        .map_err(driver(OP))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(driver(OP))? {
        let label: Option<String> = row.get::<_, String>(0).ok();
        let cols = Columns::new(row, || {
            format!(
                "timer `{}`",
                label.as_deref().unwrap_or("with an unreadable id")
            )
        });
        out.push(Timer {
            id: cols.text(0, "id")?.to_owned(),
            owner: cols.text(1, "owner")?.to_owned(),
            key: cols.text(2, "key")?.to_owned(),
            due_at: cols.time(3, "due_at")?,
            payload: cols.json(4, "payload")?,
        });
    }
    Ok(out)
}

pub(crate) fn cancel_timer(conn: &Connection, id: &str) -> Result<bool> {
    const OP: &str = "cancel_timer";
    let mut stmt = conn
        .prepare_cached("DELETE FROM timers WHERE id = ?1")
        .map_err(driver(OP))?;
    Ok(stmt.execute([id]).map_err(driver(OP))? > 0)
}
