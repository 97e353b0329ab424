//! Appends: many requests, one transaction, two round trips (`BEGIN` is
//! pipelined with the first statement, `COMMIT` with the second).
//!
//! 1. `append_prepare` takes a transaction-scoped advisory lock per stream
//!    (in one global order, so concurrent batches never deadlock), then reads
//!    the streams' revisions and which event ids already exist.
//! 2. In Rust, every request is validated ([`AppendRequest::validate`]) and
//!    checked ([`orchestrix::ExpectedRevision::check`]) in order against the
//!    revisions as the earlier requests of the batch leave them, exactly as
//!    the memory store does; a failing request fails alone.
//! 3. One `INSERT ... SELECT FROM unnest(...)` writes the events of every
//!    accepted request, with positions from `claim_positions` (see
//!    [`crate::schema`]) and a `pg_notify` delivered at commit.
//!
//! Another writer of the same stream waits for the lock and then sees this
//! batch's revisions, so it gets [`Error::Conflict`]. A unique violation
//! that still happens (a writer that bypassed the locks, or an event id
//! inserted concurrently) aborts the batch's transaction; the batch is then
//! replayed one request per transaction (each in its own transaction, the
//! equivalent of a savepoint per request, which position claims cannot use)
//! so that only the offending request fails, with a typed error.

use std::collections::{HashMap, HashSet};

use orchestrix::store::{AppendRequest, AppendResult};
use orchestrix::{Error, Result, StreamId};
use tokio_postgres::error::SqlState;
use tokio_postgres::{GenericClient, Transaction};
use uuid::Uuid;

use crate::error::{EVENT_ID_KEY, STREAM_REVISION_KEY, db_code, from_pg};
use crate::rows::{EventColumns, to_u64};
use crate::schema::SchemaName;
use crate::store::{PostgresStore, Sql};

/// The result of one batch inside a transaction.
pub(crate) struct Outcome {
    pub(crate) results: Vec<Result<AppendResult>>,
}

/// Why a batch transaction cannot commit.
pub(crate) enum Failure {
    /// A unique violation: the transaction is aborted; replay per request.
    Unique(tokio_postgres::Error),
    /// Anything else, already mapped.
    Other(Error),
}

/// The two statements of an append, prepared on the transaction's connection.
pub(crate) struct Statements {
    pub(crate) prepare: tokio_postgres::Statement,
    pub(crate) insert: tokio_postgres::Statement,
}

impl Statements {
    /// Prepares both statements (pipelined) without a cache.
    pub(crate) async fn prepare(tx: &Transaction<'_>, sql: &Sql) -> Result<Self> {
        let (prepare, insert) =
            futures::try_join!(tx.prepare(&sql.prepare), tx.prepare(&sql.insert))
                .map_err(|e| from_pg("append", e))?;
        Ok(Self { prepare, insert })
    }

    /// Prepares both statements through the pool's per-connection cache.
    pub(crate) async fn cached(
        client: &deadpool_postgres::ClientWrapper,
        sql: &Sql,
    ) -> Result<Self> {
        let (prepare, insert) = futures::try_join!(
            client.prepare_cached(&sql.prepare),
            client.prepare_cached(&sql.insert)
        )
        .map_err(|e| from_pg("append", e))?;
        Ok(Self { prepare, insert })
    }
}

/// Runs one batch. With `own_tx`, `client` is idle: the batch begins its
/// transaction (pipelined with the first statement) and commits it
/// (pipelined with the insert), or rolls it back when every request failed
/// its checks. Without, `client` is a
/// transaction that has not written anything yet, left open.
pub(crate) async fn run<C: GenericClient + Sync>(
    client: &C,
    statements: &Statements,
    schema: &SchemaName,
    requests: &[AppendRequest],
    own_tx: bool,
    notify: bool,
) -> Result<Outcome, Failure> {
    let mut results: Vec<Option<Result<AppendResult>>> = requests.iter().map(|_| None).collect();
    let mut streams: Vec<&str> = Vec::new();
    let mut ids: Vec<Uuid> = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        if let Err(e) = request.validate() {
            results[i] = Some(Err(e));
            continue;
        }
        streams.push(request.stream_id.as_str());
        ids.extend(request.events.iter().map(|e| e.id));
    }
    streams.sort_unstable();
    streams.dedup();
    if streams.is_empty() {
        return Ok(Outcome {
            results: results
                .into_iter()
                .map(Option::unwrap_or_default_err)
                .collect(),
        });
    }

    let row = if own_tx {
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&streams, &ids];
        let (begin, row) = futures::join!(
            client.batch_execute("BEGIN"),
            client.query_one(&statements.prepare, &params)
        );
        begin.map_err(|e| Failure::Other(from_pg("append", e)))?;
        row
    } else {
        client
            .query_one(&statements.prepare, &[&streams, &ids])
            .await
    }
    .map_err(|e| Failure::Other(from_pg("append", e)))?;
    let revisions: Vec<Option<i64>> = row
        .try_get(0)
        .map_err(|e| Failure::Other(from_pg("append", e)))?;
    let existing: Vec<Uuid> = row
        .try_get(1)
        .map_err(|e| Failure::Other(from_pg("append", e)))?;
    if revisions.len() != streams.len() {
        return Err(Failure::Other(Error::corrupted(
            "append",
            "append_prepare returned a revision per stream",
        )));
    }
    let mut current: HashMap<&str, Option<u64>> = HashMap::with_capacity(streams.len());
    for (stream, revision) in streams.iter().zip(revisions) {
        let revision = revision
            .map(|r| to_u64(&format!("revision of `{stream}`"), r))
            .transpose()
            .map_err(Failure::Other)?;
        current.insert(stream, revision);
    }
    let mut taken: HashSet<Uuid> = existing.into_iter().collect();

    // Decide every request in order, as the memory store does.
    let total: usize = requests.iter().map(|r| r.events.len()).sum();
    let mut columns = EventColumns::with_capacity(total);
    let mut accepted: Vec<(usize, u64, u64, u64)> = Vec::new(); // (request, first revision, last revision, offset)
    for (i, request) in requests.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        let stream = request.stream_id.as_str();
        let cur = current.get(stream).copied().flatten();
        if let Err(e) = request.expected.check(&request.stream_id, cur) {
            results[i] = Some(Err(e));
            continue;
        }
        if let Some(dup) = request.events.iter().find(|e| taken.contains(&e.id)) {
            results[i] = Some(Err(Error::invalid(
                format!("event {}", dup.id),
                "an event with this id is already stored",
            )));
            continue;
        }
        let first = cur.map_or(0, |c| c + 1);
        let offset = columns.len() as u64;
        let mut pushed = Ok(());
        for (k, event) in request.events.iter().enumerate() {
            pushed =
                pushed.and_then(|()| columns.push(&request.stream_id, first + k as u64, event));
        }
        if let Err(e) = pushed {
            // Roll this request's columns back out.
            truncate(&mut columns, usize::try_from(offset).unwrap_or(usize::MAX));
            results[i] = Some(Err(e));
            continue;
        }
        let last = first + request.events.len() as u64 - 1;
        taken.extend(request.events.iter().map(|e| e.id));
        current.insert(stream, Some(last));
        accepted.push((i, first, last, offset));
    }
    if accepted.is_empty() {
        if own_tx {
            client
                .batch_execute("ROLLBACK")
                .await
                .map_err(|e| Failure::Other(from_pg("append", e)))?;
        }
        return Ok(Outcome {
            results: results
                .into_iter()
                .map(Option::unwrap_or_default_err)
                .collect(),
        });
    }

    let count = i64::try_from(columns.len())
        .map_err(|_| Failure::Other(Error::invalid("append", "too many events")))?;
    let data: Vec<&[u8]> = columns.data.iter().map(|d| &d[..]).collect();
    // In a caller's transaction, NOTIFY goes with it (delivered at its
    // commit); our own transactions are announced after their commit by
    // the notifier task, off the commit path (see `crate::listen`).
    let channel = if notify && !own_tx {
        schema.channel()
    } else {
        String::new()
    };
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 14] = [
        &count,
        &columns.stream_id,
        &columns.category,
        &columns.revision,
        &columns.event_id,
        &columns.event_type,
        &columns.schema_version,
        &columns.source,
        &columns.time,
        &columns.time_nanos,
        &columns.content_type,
        &data,
        &columns.metadata,
        &channel,
    ];
    let insert = client.query_one(&statements.insert, &params);
    let (row, commit) = if own_tx {
        // After a failed insert the server answers COMMIT with a rollback.
        let (row, commit) = futures::join!(insert, client.batch_execute("COMMIT"));
        (row, Some(commit))
    } else {
        (insert.await, None)
    };
    let row = row.map_err(|e| match db_code(&e) {
        Some((code, _)) if *code == SqlState::UNIQUE_VIOLATION => Failure::Unique(e),
        // The server rejected the insert, so the pipelined COMMIT rolled back.
        Some(_) => Failure::Other(from_pg("append", e)),
        // The connection failed with the COMMIT already sent: it may have
        // committed.
        None if own_tx => Failure::Other(commit_unknown(e)),
        None => Failure::Other(from_pg("append", e)),
    })?;
    if let Some(Err(e)) = commit {
        return Err(Failure::Other(commit_unknown(e)));
    }
    let first_position: i64 = row
        .try_get(0)
        .map_err(|e| Failure::Other(from_pg("append", e)))?;
    let first_position = to_u64("claimed position", first_position).map_err(Failure::Other)?;
    for (i, first, last, offset) in accepted {
        let first_pos = first_position + offset;
        results[i] = Some(Ok(AppendResult {
            first_revision: first,
            last_revision: last,
            first_position: first_pos,
            last_position: first_pos + (last - first),
        }));
    }
    Ok(Outcome {
        results: results
            .into_iter()
            .map(Option::unwrap_or_default_err)
            .collect(),
    })
}

/// A commit whose outcome is unknown: permanent, so that nobody retries
/// blindly (a retry could append twice); with `Exact` expectations a caller
/// can re-read the stream and decide.
fn commit_unknown(e: tokio_postgres::Error) -> Error {
    Error::backend(
        crate::error::BACKEND,
        "append commit (outcome unknown: the append may have been committed)",
        false,
        crate::error::DriverError::from(e),
    )
}

fn truncate(c: &mut EventColumns, len: usize) {
    c.stream_id.truncate(len);
    c.category.truncate(len);
    c.revision.truncate(len);
    c.event_id.truncate(len);
    c.event_type.truncate(len);
    c.schema_version.truncate(len);
    c.source.truncate(len);
    c.time.truncate(len);
    c.time_nanos.truncate(len);
    c.content_type.truncate(len);
    c.data.truncate(len);
    c.metadata.truncate(len);
}

trait UnwrapResult {
    fn unwrap_or_default_err(self) -> Result<AppendResult>;
}

impl UnwrapResult for Option<Result<AppendResult>> {
    fn unwrap_or_default_err(self) -> Result<AppendResult> {
        self.unwrap_or_else(|| {
            Err(Error::corrupted(
                "append result",
                "request was neither accepted nor rejected",
            ))
        })
    }
}

/// The typed error of a unique violation, for one of `requests`.
pub(crate) fn unique_error(e: &tokio_postgres::Error, requests: &[AppendRequest]) -> Error {
    let Some(db) = e.as_db_error() else {
        return opaque(e);
    };
    match db.constraint() {
        Some(STREAM_REVISION_KEY) => {
            // Detail: `Key (stream_id, revision)=(order-1, 3) already exists.`
            let parsed = db.detail().and_then(|d| {
                let inner = d.split_once("=(")?.1;
                let (stream, rest) = inner.split_once(", ")?;
                let revision = rest.split_once(')')?.0.parse::<u64>().ok()?;
                Some((stream.to_owned(), revision))
            });
            match parsed.and_then(|(s, r)| {
                requests
                    .iter()
                    .find(|q| q.stream_id.as_str() == s)
                    .map(|q| (q, r))
            }) {
                Some((request, revision)) => Error::Conflict {
                    stream: request.stream_id.to_string(),
                    expected: request.expected,
                    actual: Some(revision),
                },
                None => opaque(e),
            }
        }
        Some(EVENT_ID_KEY) => {
            let what = db.detail().unwrap_or("event id").to_owned();
            Error::invalid(what, "an event with this id is already stored")
        }
        _ => opaque(e),
    }
}

fn opaque(e: &tokio_postgres::Error) -> Error {
    Error::backend(
        crate::error::BACKEND,
        "append",
        crate::error::is_transient(e),
        clone_error(e),
    )
}

fn clone_error(e: &tokio_postgres::Error) -> String {
    // tokio_postgres::Error is not Clone; keep its full text (with the
    // server's message) as the source.
    match e.as_db_error() {
        Some(db) => format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        None => e.to_string(),
    }
}

/// [`orchestrix::store::EventStore::append_batch`] for [`PostgresStore`].
pub(crate) async fn append_batch(
    store: &PostgresStore,
    requests: Vec<AppendRequest>,
) -> Result<Vec<Result<AppendResult>>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    let retry = store.inner.config.retry;
    let mut attempt = 1;
    let mut backoff = std::time::Duration::from_millis(retry.initial_backoff_ms.max(1));
    loop {
        match try_batch(store, &requests).await {
            Ok(BatchEnd::Done(results)) => return Ok(results),
            Ok(BatchEnd::Replay) => return replay_one_by_one(store, &requests).await,
            // Nothing was committed: the whole batch can be tried again.
            Err(e) if e.is_transient() && attempt < retry.max_attempts => {
                let micros = u64::try_from(backoff.as_micros()).unwrap_or(u64::MAX);
                tracing::debug!(error = %e, attempt, "transient failure before commit; retrying the append batch");
                tokio::time::sleep(std::time::Duration::from_micros(rand::random_range(
                    0..=micros,
                )))
                .await;
                backoff = (backoff * 2).min(std::time::Duration::from_millis(
                    retry.max_backoff_ms.max(1),
                ));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

enum BatchEnd {
    Done(Vec<Result<AppendResult>>),
    Replay,
}

/// A pooled connection running a transaction of ours: unless released
/// after the transaction ended, it is closed rather than returned to the
/// pool (the server then rolls back), so that no caller ever gets a
/// connection left inside a transaction, e.g. after a dropped future.
struct TxConn {
    conn: Option<deadpool_postgres::Object>,
}

impl TxConn {
    fn client(&self) -> &deadpool_postgres::ClientWrapper {
        self.conn
            .as_deref()
            .expect("connection present until released")
    }

    fn release(mut self) {
        drop(self.conn.take());
    }
}

impl Drop for TxConn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(deadpool_postgres::Object::take(conn));
        }
    }
}

/// One transaction. An error means nothing was committed, except when the
/// commit itself failed (then the outcome is unknown and the error is
/// marked permanent so that nobody retries blindly).
async fn try_batch(store: &PostgresStore, requests: &[AppendRequest]) -> Result<BatchEnd> {
    let conn = TxConn {
        conn: Some(store.client("append").await?),
    };
    let statements = Statements::cached(conn.client(), &store.inner.sql).await?;
    match run(
        &**conn.client(),
        &statements,
        &store.inner.schema,
        requests,
        true,
        store.inner.config.notify,
    )
    .await
    {
        Ok(outcome) => {
            conn.release();
            store.announce(&outcome.results);
            Ok(BatchEnd::Done(outcome.results))
        }
        Err(Failure::Unique(e)) => {
            tracing::debug!(error = %clone_error(&e), "unique violation in an append batch; replaying it one request per transaction");
            Ok(BatchEnd::Replay)
        }
        Err(Failure::Other(e)) => Err(e),
    }
}

/// The slow path after a unique violation: each request in its own
/// transaction, so that only the offending one fails.
async fn replay_one_by_one(
    store: &PostgresStore,
    requests: &[AppendRequest],
) -> Result<Vec<Result<AppendResult>>> {
    let mut results = Vec::with_capacity(requests.len());
    for request in requests {
        let one = std::slice::from_ref(request);
        let result = match try_batch_single(store, one).await {
            Ok(mut r) => r
                .pop()
                .unwrap_or_else(|| Err(Error::corrupted("append result", "missing"))),
            Err(e) => Err(e),
        };
        results.push(result);
    }
    Ok(results)
}

async fn try_batch_single(
    store: &PostgresStore,
    one: &[AppendRequest],
) -> Result<Vec<Result<AppendResult>>> {
    let conn = TxConn {
        conn: Some(store.client("append").await?),
    };
    let statements = Statements::cached(conn.client(), &store.inner.sql).await?;
    match run(
        &**conn.client(),
        &statements,
        &store.inner.schema,
        one,
        true,
        store.inner.config.notify,
    )
    .await
    {
        Ok(outcome) => {
            conn.release();
            store.announce(&outcome.results);
            Ok(outcome.results)
        }
        Err(Failure::Unique(e)) => {
            drop(conn);
            let mut error = unique_error(&e, one);
            // Report the stream's real revision, now that the racing writer
            // has committed.
            if let Error::Conflict { stream, actual, .. } = &mut error
                && let Ok(id) = StreamId::parse(stream.as_str())
                && let Ok(revision) =
                    orchestrix::store::EventStore::stream_revision(store, &id).await
            {
                *actual = revision;
            }
            Ok(vec![Err(error)])
        }
        Err(Failure::Other(e)) => Err(e),
    }
}
