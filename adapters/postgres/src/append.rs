//! Appends: many requests, one statement, one round trip.
//!
//! 1. In Rust, every request is validated ([`AppendRequest::validate`]); an
//!    invalid one fails alone and is not sent.
//! 2. One call of `append_events` (see [`crate::schema`], version 2), in
//!    autocommit for the store's own appends (so the statement is the
//!    transaction: no `BEGIN`, no `COMMIT` message), does the rest on the
//!    server: it takes a transaction-scoped advisory lock per stream (in one
//!    global order, so concurrent batches never deadlock), reads the
//!    streams' revisions, checks every request's expected revision in order
//!    against the revisions as the earlier requests of the batch leave them
//!    (exactly as the memory store does; a failing request fails alone),
//!    claims positions with `claim_positions` and inserts the events of the
//!    accepted requests.
//! 3. Rust turns the per-request answers into results: a rejected request
//!    gets [`Error::Conflict`] from [`orchestrix::ExpectedRevision::check`]
//!    with the revision the server saw.
//!
//! Another writer of the same stream waits for the lock and then sees this
//! batch's revisions, so it gets [`Error::Conflict`]. A unique violation
//! that still happens (a writer that bypassed the locks, or an event id that
//! is already stored) aborts the statement, so nothing of the batch is
//! written; the batch is then replayed one request per transaction so that
//! only the offending request fails, with a typed error. (An event id is
//! not looked up before the insert: its unique index is the check, and the
//! replay is the rare path.)

use std::collections::HashMap;

use orchestrix::store::{AppendRequest, AppendResult, ExpectedRevision};
use orchestrix::{Error, Result, StreamId};
use tokio_postgres::GenericClient;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use crate::error::{EVENT_ID_KEY, STREAM_REVISION_KEY, db_code, from_pg};
use crate::rows::{EventColumns, to_i64, to_u64};
use crate::schema::SchemaName;
use crate::store::{PostgresStore, Sql};

/// The result of one batch.
pub(crate) struct Outcome {
    pub(crate) results: Vec<Result<AppendResult>>,
}

/// Why a batch cannot commit.
pub(crate) enum Failure {
    /// A unique violation: nothing was written; replay per request.
    Unique(tokio_postgres::Error),
    /// Anything else, already mapped.
    Other(Error),
}

/// The statement of an append, prepared on the connection that runs it.
pub(crate) struct Statements {
    pub(crate) append: tokio_postgres::Statement,
}

impl Statements {
    /// Prepares the statement without a cache.
    pub(crate) async fn prepare<C: GenericClient + Sync>(client: &C, sql: &Sql) -> Result<Self> {
        let append = client
            .prepare(&sql.append)
            .await
            .map_err(|e| from_pg("append", e))?;
        Ok(Self { append })
    }

    /// Prepares the statement through the pool's per-connection cache.
    pub(crate) async fn cached(
        client: &deadpool_postgres::ClientWrapper,
        sql: &Sql,
    ) -> Result<Self> {
        let append = client
            .prepare_cached(&sql.append)
            .await
            .map_err(|e| from_pg("append", e))?;
        Ok(Self { append })
    }
}

/// The wire code of an expectation (see `append_events`).
fn expected_code(expected: ExpectedRevision) -> Result<i64> {
    Ok(match expected {
        ExpectedRevision::Any => -1,
        ExpectedRevision::NoStream => -2,
        ExpectedRevision::StreamExists => -3,
        ExpectedRevision::Exact(n) => to_i64("expected revision", n)?,
    })
}

/// Runs one batch in one statement. With `own_tx`, `client` is idle and the
/// statement runs in autocommit (it is the transaction). Without, `client`
/// is a transaction that has not written anything yet, left open.
pub(crate) async fn run<C: GenericClient + Sync>(
    client: &C,
    statements: &Statements,
    schema: &SchemaName,
    requests: &[AppendRequest],
    own_tx: bool,
    notify: bool,
) -> Result<Outcome, Failure> {
    let mut results: Vec<Option<Result<AppendResult>>> = requests.iter().map(|_| None).collect();
    // Distinct streams (1-based indexes, as PostgreSQL arrays), requests and
    // events of the valid requests.
    let mut stream_index: HashMap<&str, i32> = HashMap::new();
    let mut streams: Vec<&str> = Vec::new();
    let mut categories: Vec<&str> = Vec::new();
    let mut sent: Vec<usize> = Vec::new();
    let mut req_stream: Vec<i32> = Vec::new();
    let mut req_expected: Vec<i64> = Vec::new();
    let mut req_count: Vec<i32> = Vec::new();
    let total: usize = requests.iter().map(|r| r.events.len()).sum();
    let mut columns = EventColumns::with_capacity(total);
    let mut ev_req: Vec<i32> = Vec::with_capacity(total);
    let mut ev_k: Vec<i32> = Vec::with_capacity(total);
    for (i, request) in requests.iter().enumerate() {
        let checked = request.validate().and_then(|()| {
            let expected = expected_code(request.expected)?;
            let count = i32::try_from(request.events.len())
                .map_err(|_| Error::invalid("append", "too many events in one request"))?;
            let index = i32::try_from(sent.len() + 1)
                .map_err(|_| Error::invalid("append", "too many requests in one batch"))?;
            Ok((expected, count, index))
        });
        let (expected, count, index) = match checked {
            Ok(v) => v,
            Err(e) => {
                results[i] = Some(Err(e));
                continue;
            }
        };
        let offset = columns.len();
        let mut pushed = Ok(());
        for (k, event) in request.events.iter().enumerate() {
            // The revision column is filled in on the server.
            pushed = pushed.and_then(|()| columns.push_event(event));
            ev_req.push(index);
            ev_k.push(i32::try_from(k).unwrap_or(i32::MAX));
        }
        if let Err(e) = pushed {
            columns.truncate(offset);
            ev_req.truncate(offset);
            ev_k.truncate(offset);
            results[i] = Some(Err(e));
            continue;
        }
        let stream = request.stream_id.as_str();
        let next = i32::try_from(streams.len() + 1).unwrap_or(i32::MAX);
        let s = *stream_index.entry(stream).or_insert_with(|| {
            streams.push(stream);
            categories.push(request.stream_id.category());
            next
        });
        sent.push(i);
        req_stream.push(s);
        req_expected.push(expected);
        req_count.push(count);
    }
    if sent.is_empty() {
        return Ok(Outcome {
            results: results
                .into_iter()
                .map(Option::unwrap_or_default_err)
                .collect(),
        });
    }

    // In a caller's transaction, NOTIFY goes with it (delivered at its
    // commit); our own appends are announced after their commit by the
    // notifier task, off the commit path (see `crate::listen`).
    let channel = if notify && !own_tx {
        schema.channel()
    } else {
        String::new()
    };
    let data: Vec<&[u8]> = columns.data.iter().map(|d| &d[..]).collect();
    let params: [&(dyn ToSql + Sync); 17] = [
        &streams,
        &categories,
        &req_stream,
        &req_expected,
        &req_count,
        &ev_req,
        &ev_k,
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
    let row = client
        .query_one(&statements.append, &params)
        .await
        .map_err(|e| match db_code(&e) {
            Some((code, _)) if *code == SqlState::UNIQUE_VIOLATION => Failure::Unique(e),
            // The server rejected the statement: nothing was written.
            Some(_) => Failure::Other(from_pg("append", e)),
            // The connection failed with the statement sent: in autocommit
            // it may have committed.
            None if own_tx => Failure::Other(commit_unknown(e)),
            None => Failure::Other(from_pg("append", e)),
        })?;
    let map = |e| Failure::Other(from_pg("append", e));
    let first_position: Option<i64> = row.try_get(0).map_err(map)?;
    let actual: Vec<Option<i64>> = row.try_get(1).map_err(map)?;
    let accepted: Vec<bool> = row.try_get(2).map_err(map)?;
    let duplicate: Vec<Option<Uuid>> = row.try_get(3).map_err(map)?;
    if actual.len() != sent.len() || accepted.len() != sent.len() || duplicate.len() != sent.len() {
        return Err(Failure::Other(Error::corrupted(
            "append",
            "append_events returned a result per request",
        )));
    }
    let mut position = match first_position {
        Some(p) => to_u64("claimed position", p).map_err(Failure::Other)?,
        None => 0,
    };
    for (((&i, actual), accepted), duplicate) in
        sent.iter().zip(actual).zip(accepted).zip(duplicate)
    {
        let request = &requests[i];
        let actual = actual
            .map(|r| to_u64(&format!("revision of `{}`", request.stream_id), r))
            .transpose()
            .map_err(Failure::Other)?;
        let checked = request.expected.check(&request.stream_id, actual);
        results[i] = Some(match (accepted, checked) {
            (true, Ok(())) if first_position.is_some() => {
                let first = actual.map_or(0, |c| c + 1);
                let n = request.events.len() as u64;
                let result = AppendResult {
                    first_revision: first,
                    last_revision: first + n - 1,
                    first_position: position,
                    last_position: position + n - 1,
                };
                position += n;
                Ok(result)
            }
            (false, Err(conflict)) => Err(conflict),
            (false, Ok(())) if duplicate.is_some() => Err(Error::invalid(
                format!(
                    "event {}",
                    duplicate.map(|id| id.to_string()).unwrap_or_default()
                ),
                "an event with this id is already stored",
            )),
            _ => Err(Error::corrupted(
                "append",
                format!(
                    "the server and the client disagree on expectation {} of `{}` at revision {actual:?}",
                    request.expected, request.stream_id
                ),
            )),
        });
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

/// Whether an event id occurs in more than one request (rare: the same
/// event sent twice in one coalesced batch).
pub(crate) fn repeats_across_requests(requests: &[AppendRequest]) -> bool {
    if requests.len() < 2 {
        return false;
    }
    let mut seen = std::collections::HashSet::new();
    requests.iter().any(|r| {
        let own: std::collections::HashSet<Uuid> = r.events.iter().map(|e| e.id).collect();
        own.into_iter().any(|id| !seen.insert(id))
    })
}

/// [`orchestrix::store::EventStore::append_batch`] for [`PostgresStore`].
pub(crate) async fn append_batch(
    store: &PostgresStore,
    requests: Vec<AppendRequest>,
) -> Result<Vec<Result<AppendResult>>> {
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    if repeats_across_requests(&requests) {
        // Whether a later request may take an id depends on whether the
        // earlier one is accepted: one request per statement decides that
        // in order, as the memory store does.
        return replay_one_by_one(store, &requests).await;
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

/// One statement (one transaction). An error means nothing was committed,
/// except when the connection failed with the statement sent (then the outcome is unknown and the error is
/// marked permanent so that nobody retries blindly).
async fn try_batch(store: &PostgresStore, requests: &[AppendRequest]) -> Result<BatchEnd> {
    let client = store.client("append").await?;
    let statements = Statements::cached(&client, &store.inner.sql).await?;
    match run(
        &**client,
        &statements,
        &store.inner.schema,
        requests,
        true,
        store.inner.config.notify,
    )
    .await
    {
        Ok(outcome) => {
            drop(client);
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
    let client = store.client("append").await?;
    let statements = Statements::cached(&client, &store.inner.sql).await?;
    match run(
        &**client,
        &statements,
        &store.inner.schema,
        one,
        true,
        store.inner.config.notify,
    )
    .await
    {
        Ok(outcome) => {
            drop(client);
            store.announce(&outcome.results);
            Ok(outcome.results)
        }
        Err(Failure::Unique(e)) => {
            drop(client);
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
