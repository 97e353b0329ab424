//! SQL of the event store port: appends, stream and all-stream reads, and the
//! decoding of stored rows (a bad row is [`Error::Corrupted`], never a panic).

use bytes::Bytes;
use orchestrix::store::{AppendRequest, AppendResult, Direction, Filter};
use orchestrix::{Error, EventRecord, Metadata, RecordedEvent, Result, StreamId};
use rusqlite::{Connection, ErrorCode, Row, Rows, ToSql, Transaction, TransactionBehavior};
use uuid::Uuid;

use crate::convert::{Columns, to_i64};
use crate::error::{BACKEND, backend, driver};

/// The columns [`decode_event`] reads, in its order.
macro_rules! columns {
    () => {
        "position, stream_id, revision, event_id, event_type, schema_version, source, time, content_type, data, metadata"
    };
}

const COLUMNS: &str = columns!();

const INSERT: &str = "INSERT INTO events \
     (stream_id, category, revision, event_id, event_type, schema_version, source, time, content_type, data, metadata) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";

const FIND_EVENT: &str = "SELECT revision FROM events WHERE event_id = ?1 AND stream_id = ?2";
const CURRENT_REVISION: &str = "SELECT MAX(revision) FROM events WHERE stream_id = ?1";

const SAVEPOINT: &str = "SAVEPOINT orchestrix_append";
const RELEASE: &str = "RELEASE orchestrix_append";
const ROLLBACK_TO: &str = "ROLLBACK TO orchestrix_append";

/// Appends every request in one transaction, each inside its own savepoint.
///
/// Returns each request's result and the new head position (`None` when
/// nothing was appended). A request that fails (validation, conflict,
/// duplicate event id) rolls back to its savepoint and reports its own error;
/// a failure of SQLite itself fails the whole batch and writes nothing.
pub(crate) fn append_batch(
    conn: &mut Connection,
    requests: Vec<AppendRequest>,
) -> Result<(Vec<Result<AppendResult>>, Option<u64>)> {
    const OP: &str = "append";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(driver(OP))?;
    let mut results = Vec::with_capacity(requests.len());
    let mut head = None;
    for request in requests {
        match append_one(&tx, request) {
            // SQLite itself failed: the whole batch fails, and dropping `tx`
            // rolls everything back.
            Err(e @ Error::Backend { .. }) => return Err(e),
            result => {
                if let Ok(r) = &result {
                    head = Some(r.last_position);
                }
                results.push(result);
            }
        }
    }
    tx.commit().map_err(driver(OP))?;
    Ok((results, head))
}

fn append_one(tx: &Transaction<'_>, request: AppendRequest) -> Result<AppendResult> {
    request.validate()?;
    let stream = &request.stream_id;
    let current = stream_revision(tx, stream)?;
    request.expected.check(stream, current)?;
    let first_revision = current.map_or(0, |c| c + 1);
    // Encode everything that can fail before writing, so that only a duplicate
    // event id can fail a request after its first row is written.
    let metadata = request
        .events
        .iter()
        .map(|e| {
            serde_json::to_string(&e.metadata)
                .map_err(|err| Error::encode(format!("metadata of event {}", e.id), err))
        })
        .collect::<Result<Vec<_>>>()?;
    let last_revision = first_revision + (request.events.len() as u64 - 1);
    to_i64(last_revision, "revision")?;

    let result = if request.events.len() == 1 {
        // One INSERT statement is atomic on its own: when it fails (duplicate
        // event id) SQLite undoes it, so the savepoint is not needed.
        insert_events(tx, stream, first_revision, &request.events, &metadata)
    } else {
        in_savepoint(tx, || {
            insert_events(tx, stream, first_revision, &request.events, &metadata)
        })
    };
    let (first_position, last_position) = result?;
    Ok(AppendResult {
        first_revision,
        last_revision,
        first_position,
        last_position,
    })
}

/// Runs `f` inside a savepoint: released when `f` succeeds, rolled back to
/// (undoing exactly what `f` wrote) when it fails.
fn in_savepoint<T>(tx: &Transaction<'_>, f: impl FnOnce() -> Result<T>) -> Result<T> {
    const OP: &str = "append";
    let run = |sql: &str| {
        tx.prepare_cached(sql)
            .and_then(|mut s| s.execute([]))
            .map_err(driver(OP))
    };
    run(SAVEPOINT)?;
    match f() {
        Ok(value) => {
            run(RELEASE)?;
            Ok(value)
        }
        Err(e) => {
            run(ROLLBACK_TO)?;
            run(RELEASE)?;
            Err(e)
        }
    }
}

fn insert_events(
    tx: &Transaction<'_>,
    stream: &StreamId,
    first_revision: u64,
    events: &[EventRecord],
    metadata: &[String],
) -> Result<(u64, u64)> {
    const OP: &str = "append";
    let mut insert = tx.prepare_cached(INSERT).map_err(driver(OP))?;
    let stream_text = stream.as_str();
    let category = stream.category();
    let mut first_position = None;
    let mut last_position = 0;
    let mut id_buf = Uuid::encode_buffer();
    for (revision, (event, metadata)) in (first_revision..).zip(events.iter().zip(metadata)) {
        let id: &str = event.id.hyphenated().encode_lower(&mut id_buf);
        let data: &[u8] = &event.data;
        let params: [&dyn ToSql; 11] = [
            &stream_text,
            &category,
            &to_i64(revision, "revision")?,
            &id,
            &event.event_type,
            &event.schema_version,
            &event.source,
            &event.time.timestamp_micros(),
            &event.content_type,
            &data,
            metadata,
        ];
        insert
            .execute(&params[..])
            .map_err(|e| insert_error(e, event.id))?;
        // A backend error (not the request's own): the whole batch rolls back,
        // which matters for a one-event request that runs without a savepoint.
        let position = u64::try_from(tx.last_insert_rowid()).map_err(|_| {
            Error::backend(
                BACKEND,
                OP,
                false,
                "SQLite assigned a non-positive position",
            )
        })?;
        first_position.get_or_insert(position);
        last_position = position;
    }
    Ok((first_position.unwrap_or(last_position), last_position))
}

fn insert_error(err: rusqlite::Error, id: Uuid) -> Error {
    if let rusqlite::Error::SqliteFailure(f, Some(msg)) = &err
        && f.code == ErrorCode::ConstraintViolation
        && msg.contains("events.event_id")
    {
        return Error::invalid(
            format!("event {id}"),
            "an event with this id is already stored",
        );
    }
    backend("append", err)
}

/// The revision of the event `id` in `stream` (one probe of the unique
/// index on event ids).
pub(crate) fn find_event(conn: &Connection, stream: &StreamId, id: Uuid) -> Result<Option<u64>> {
    let mut id_buf = Uuid::encode_buffer();
    let id: &str = id.hyphenated().encode_lower(&mut id_buf);
    let mut stmt = conn
        .prepare_cached(FIND_EVENT)
        .map_err(driver("find_event"))?;
    let mut rows = stmt
        .query(rusqlite::params![id, stream.as_str()])
        .map_err(driver("find_event"))?;
    let Some(row) = rows.next().map_err(driver("find_event"))? else {
        return Ok(None);
    };
    let revision: i64 = row.get(0).map_err(driver("find_event"))?;
    u64::try_from(revision).map(Some).map_err(|_| {
        Error::corrupted(
            format!("stream `{stream}`"),
            format!("negative revision {revision}"),
        )
    })
}

/// The stream's last revision.
pub(crate) fn stream_revision(conn: &Connection, stream: &StreamId) -> Result<Option<u64>> {
    let mut stmt = conn
        .prepare_cached(CURRENT_REVISION)
        .map_err(driver("stream_revision"))?;
    let max: Option<i64> = stmt
        .query_row([stream.as_str()], |r| r.get(0))
        .map_err(driver("stream_revision"))?;
    max.map(|r| {
        u64::try_from(r).map_err(|_| {
            Error::corrupted(
                format!("stream `{stream}`"),
                format!("negative revision {r}"),
            )
        })
    })
    .transpose()
}

/// The highest committed position (0 for an empty store).
pub(crate) fn head_position(conn: &Connection) -> Result<u64> {
    let mut stmt = conn
        .prepare_cached("SELECT COALESCE(MAX(position), 0) FROM events")
        .map_err(driver("head_position"))?;
    let head: i64 = stmt
        .query_row([], |r| r.get(0))
        .map_err(driver("head_position"))?;
    u64::try_from(head)
        .map_err(|_| Error::corrupted("events table", format!("negative head position {head}")))
}

/// Reads one stream.
pub(crate) fn read_stream(
    conn: &Connection,
    stream: &StreamId,
    from: u64,
    direction: Direction,
    limit: usize,
) -> Result<Vec<RecordedEvent>> {
    const OP: &str = "read_stream";
    if limit == 0 {
        return Ok(Vec::new());
    }
    // Reads of a whole stream (forward from 0, backward from the end) do not
    // bound the revision, so that a row with a corrupted revision is reported
    // rather than silently left out.
    let from = i64::try_from(from).unwrap_or(i64::MAX);
    let whole = match direction {
        Direction::Forward => from == 0,
        Direction::Backward => from == i64::MAX,
    };
    let sql = match (direction, whole) {
        (Direction::Forward, true) => {
            concat!(
                "SELECT ",
                columns!(),
                " FROM events WHERE stream_id = ?1 ORDER BY revision ASC"
            )
        }
        (Direction::Forward, false) => concat!(
            "SELECT ",
            columns!(),
            " FROM events WHERE stream_id = ?1 AND revision >= ?2 ORDER BY revision ASC"
        ),
        (Direction::Backward, true) => {
            concat!(
                "SELECT ",
                columns!(),
                " FROM events WHERE stream_id = ?1 ORDER BY revision DESC"
            )
        }
        (Direction::Backward, false) => concat!(
            "SELECT ",
            columns!(),
            " FROM events WHERE stream_id = ?1 AND revision <= ?2 ORDER BY revision DESC"
        ),
    };
    let mut stmt = conn.prepare_cached(sql).map_err(driver(OP))?;
    let rows = if whole {
        stmt.query([stream.as_str()])
    } else {
        stmt.query((stream.as_str(), from))
    };
    take(rows.map_err(driver(OP))?, limit, OP, |row| {
        decode_event(row, Some(stream))
    })
}

/// Reads the all-stream after `after`, filtering in SQL with bound parameters.
pub(crate) fn read_all(
    conn: &Connection,
    after: u64,
    limit: usize,
    filter: &Filter,
) -> Result<Vec<RecordedEvent>> {
    const OP: &str = "read_all";
    if limit == 0 {
        return Ok(Vec::new());
    }
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let sql = read_all_sql(filter.categories.len(), filter.event_types.len());
    let mut params: Vec<&dyn ToSql> =
        Vec::with_capacity(1 + filter.categories.len() + filter.event_types.len());
    params.push(&after);
    params.extend(filter.categories.iter().map(|c| c as &dyn ToSql));
    params.extend(filter.event_types.iter().map(|t| t as &dyn ToSql));
    let mut stmt = conn.prepare_cached(&sql).map_err(driver(OP))?;
    let rows = stmt.query(&params[..]).map_err(driver(OP))?;
    take(rows, limit, OP, |row| decode_event(row, None))
}

/// Decodes up to `limit` rows.
///
/// The limit is applied here rather than with SQL `LIMIT ?`: SQLite re-prepares
/// a statement each time a `LIMIT` parameter is bound (the value may change
/// the plan), which costs more than the query. Every query here reads in index
/// order without sorting, so stopping early reads no more than needed.
fn take<T>(
    mut rows: Rows<'_>,
    limit: usize,
    operation: &'static str,
    mut decode: impl FnMut(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::with_capacity(limit.min(256));
    while out.len() < limit {
        match rows.next().map_err(driver(operation))? {
            Some(row) => out.push(decode(row)?),
            None => break,
        }
    }
    Ok(out)
}

/// The read-all query for a filter of this shape. Only the number of
/// placeholders depends on the filter; every value is a bound parameter.
///
/// One category uses the `(category, position)` index, whose order is the
/// position order, so a page stops after `limit` rows (see [`take`]). Several categories scan
/// by position (`+category` keeps SQLite from choosing the index and then
/// sorting every matching row of those categories just to return one page).
pub(crate) fn read_all_sql(categories: usize, event_types: usize) -> String {
    let mut sql = format!("SELECT {COLUMNS} FROM events WHERE position > ?");
    match categories {
        0 => {}
        1 => sql.push_str(" AND category = ?"),
        n => {
            sql.push_str(" AND +category IN (");
            push_placeholders(&mut sql, n);
            sql.push(')');
        }
    }
    if event_types > 0 {
        sql.push_str(" AND event_type IN (");
        push_placeholders(&mut sql, event_types);
        sql.push(')');
    }
    sql.push_str(" ORDER BY position ASC");
    sql
}

fn push_placeholders(sql: &mut String, n: usize) {
    for i in 0..n {
        sql.push_str(if i == 0 { "?" } else { ", ?" });
    }
}

/// Decodes one row selected with [`COLUMNS`]; `stream` is the stream the
/// query selected on, when it selected on one.
fn decode_event(row: &Row<'_>, stream: Option<&StreamId>) -> Result<RecordedEvent> {
    let position: i64 = row
        .get(0)
        .map_err(|e| Error::corrupted("event row", format!("unreadable position: {e}")))?;
    let cols = Columns::new(row, || format!("event at position {position}"));
    let stream_id = match stream {
        Some(s) => s.clone(),
        None => {
            StreamId::parse(cols.text(1, "stream_id")?).map_err(|e| cols.bad("stream_id", &e))?
        }
    };
    let record = EventRecord {
        id: cols.uuid(3, "event_id")?,
        event_type: cols.text(4, "event_type")?.to_owned(),
        schema_version: cols.u32(5, "schema_version")?,
        source: cols.text(6, "source")?.to_owned(),
        time: cols.time(7, "time")?,
        content_type: cols.text(8, "content_type")?.to_owned(),
        data: Bytes::copy_from_slice(cols.bytes(9, "data")?),
        metadata: match cols.bytes(10, "metadata")? {
            // Most events carry no metadata: skip the JSON parser.
            b"{}" => Metadata::default(),
            _ => cols.json::<Metadata>(10, "metadata")?,
        },
    };
    let revision = cols.u64(2, "revision")?;
    let position = u64::try_from(position)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| cols.bad("position", &"not positive"))?;
    Ok(RecordedEvent {
        stream_id,
        revision,
        position,
        record,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> String {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map(params, |r| r.get::<_, String>(3)).unwrap();
        rows.map(Result::unwrap).collect::<Vec<_>>().join("; ")
    }

    /// Every read walks an index in the order it returns rows, so reading
    /// stops after `limit` rows and never sorts a whole category or stream.
    #[test]
    fn reads_never_sort() {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn).unwrap();
        let p = plan(&conn, &read_all_sql(1, 0), &[&0, &"order"]);
        assert!(p.contains("events_by_category"), "{p}");
        for (cats, types) in [(0, 0), (1, 0), (1, 2), (0, 1), (3, 0), (3, 2)] {
            let mut params: Vec<&dyn ToSql> = vec![&0];
            params.extend((0..cats + types).map(|_| &"x" as &dyn ToSql));
            let p = plan(&conn, &read_all_sql(cats, types), &params);
            assert!(
                !p.contains("TEMP B-TREE") && !p.contains("SCAN events"),
                "{cats} {types}: {p}"
            );
        }
        for sql in [
            concat!(
                "SELECT ",
                columns!(),
                " FROM events WHERE stream_id = ?1 ORDER BY revision ASC"
            ),
            concat!(
                "SELECT ",
                columns!(),
                " FROM events WHERE stream_id = ?1 ORDER BY revision DESC"
            ),
        ] {
            let p = plan(&conn, sql, &[&"a-1"]);
            assert!(
                !p.contains("TEMP B-TREE") && p.contains("stream_id=?"),
                "{p}"
            );
        }
    }

    #[test]
    fn filter_values_are_placeholders() {
        assert_eq!(
            read_all_sql(2, 1),
            format!(
                "SELECT {COLUMNS} FROM events WHERE position > ? AND +category IN (?, ?) \
                 AND event_type IN (?) ORDER BY position ASC"
            )
        );
    }
}
