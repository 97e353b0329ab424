//! The position allocator: one task per store that claims ranges of global
//! positions with lightweight transactions on the allocator partition of
//! the `claims` table.
//!
//! Every round is one conditional batch on that partition: the counter moves
//! from `next` to `next + n` (`IF next = ?`), one claim row per waiting
//! append records its range and its stream, and the claims known to be
//! written are deleted. Appends that wait while a round is in flight share
//! the next round, so the LWT rate does not grow with the append rate.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use orchestrix::{Error, Result};
use scylla::client::session::Session;
use scylla::response::query_result::QueryResult;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimestamp, CqlValue};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::config::RetryConfig;
use crate::error::{BACKEND, from_driver, from_exec};
use crate::lwt::LwtOutcome;
use crate::store::Statements;

/// Most claims in one round.
const MAX_CLAIMS: usize = 256;
/// Rounds of one set of claims before giving up.
const MAX_ROUNDS: u32 = 50;
/// How long written claims may wait for a claim round before they are
/// deleted in a round of their own.
const RELEASE_DELAY: Duration = Duration::from_millis(500);

/// A claimed range of positions, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claim {
    pub(crate) first: u64,
    pub(crate) last: u64,
}

enum Msg {
    Claim {
        stream: String,
        count: u64,
        reply: oneshot::Sender<Result<Claim>>,
    },
    Release(u64),
}

/// The handle to the allocator task.
pub(crate) struct Allocator {
    tx: mpsc::UnboundedSender<Msg>,
}

struct Task {
    session: Arc<Session>,
    bump: PreparedStatement,
    insert: PreparedStatement,
    delete: PreparedStatement,
    owner_serial: PreparedStatement,
    next_serial: PreparedStatement,
    retry: RetryConfig,
    next: Option<i64>,
}

impl Allocator {
    pub(crate) fn start(session: Arc<Session>, st: &Statements, retry: RetryConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = Task {
            session,
            bump: st.claim_bump.clone(),
            insert: st.claim_insert.clone(),
            delete: st.claim_delete.clone(),
            owner_serial: st.claim_owner_serial.clone(),
            next_serial: st.next_serial.clone(),
            retry,
            next: None,
        };
        tokio::spawn(task.run(rx));
        Self { tx }
    }

    /// Claims `count` consecutive positions for an append to `stream`.
    pub(crate) async fn claim(&self, stream: &str, count: u64) -> Result<Claim> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Msg::Claim {
                stream: stream.to_owned(),
                count,
                reply,
            })
            .map_err(|_| Error::Shutdown {
                component: "scylla position allocator",
            })?;
        rx.await.map_err(|_| Error::Shutdown {
            component: "scylla position allocator",
        })?
    }

    /// Reports a claim whose rows are all in `all_events`: its claim row may go.
    pub(crate) fn release(&self, claim_last: u64) {
        let _ = self.tx.send(Msg::Release(claim_last));
    }
}

struct Waiting {
    stream: String,
    count: u64,
    reply: oneshot::Sender<Result<Claim>>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut releases: Vec<u64> = Vec::new();
        loop {
            let first = if releases.is_empty() {
                rx.recv().await
            } else {
                match tokio::time::timeout(RELEASE_DELAY, rx.recv()).await {
                    Ok(m) => m,
                    Err(_) => {
                        if self.round(&[], &releases).await.is_ok() {
                            releases.clear();
                        }
                        continue;
                    }
                }
            };
            let Some(first) = first else { return };
            let mut waiting = Vec::new();
            let push = |m: Msg, waiting: &mut Vec<Waiting>, releases: &mut Vec<u64>| match m {
                Msg::Claim {
                    stream,
                    count,
                    reply,
                } => waiting.push(Waiting {
                    stream,
                    count,
                    reply,
                }),
                Msg::Release(last) => releases.push(last),
            };
            push(first, &mut waiting, &mut releases);
            while waiting.len() < MAX_CLAIMS {
                match rx.try_recv() {
                    Ok(m) => push(m, &mut waiting, &mut releases),
                    Err(_) => break,
                }
            }
            if waiting.is_empty() {
                continue;
            }
            let wanted: Vec<(String, u64)> = waiting
                .iter()
                .map(|w| (w.stream.clone(), w.count))
                .collect();
            match self.round(&wanted, &releases).await {
                Ok(claims) => {
                    releases.clear();
                    for (w, c) in waiting.into_iter().zip(claims) {
                        let _ = w.reply.send(Ok(c));
                    }
                }
                Err(e) => {
                    let transient = e.is_transient();
                    let text = e.to_string();
                    for w in waiting {
                        let _ = w.reply.send(Err(Error::backend(
                            BACKEND,
                            "claim positions",
                            transient,
                            text.clone(),
                        )));
                    }
                }
            }
        }
    }

    async fn read_next(&self) -> Result<i64> {
        let result = self
            .session
            .execute_unpaged(&self.next_serial, ())
            .await
            .map_err(|e| from_exec("claim positions", e))?;
        let rows = result
            .into_rows_result()
            .map_err(|e| from_driver("claim positions", false, e))?;
        let next: Option<(Option<i64>,)> = rows
            .maybe_first_row()
            .map_err(|e| from_driver("claim positions", false, e))?;
        next.and_then(|(n,)| n).ok_or_else(|| {
            Error::corrupted(
                "position allocator",
                "the counter row is missing; was the schema created?",
            )
        })
    }

    /// One or more LWT attempts until the claims (and releases) are applied.
    async fn round(&mut self, wanted: &[(String, u64)], releases: &[u64]) -> Result<Vec<Claim>> {
        let owner = Uuid::new_v4();
        let mut failures = 0;
        for _ in 0..MAX_ROUNDS {
            let next = match self.next {
                Some(n) => n,
                None => match self.read_next().await {
                    Ok(n) => n,
                    Err(e) if e.is_transient() && failures < self.retry.max_attempts => {
                        failures += 1;
                        tokio::time::sleep(Duration::from_millis(self.retry.initial_backoff_ms))
                            .await;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            let mut claims = Vec::with_capacity(wanted.len());
            let mut cursor = u64::try_from(next).map_err(|_| {
                Error::corrupted("position allocator", format!("negative counter {next}"))
            })?;
            for (_, count) in wanted {
                claims.push(Claim {
                    first: cursor,
                    last: cursor + count - 1,
                });
                cursor += count;
            }
            let new_next = i64::try_from(cursor)
                .map_err(|_| Error::invalid("global position", "out of CQL bigint range"))?;
            let mut batch = Batch::new(BatchType::Unlogged);
            let mut values: Vec<Vec<Option<CqlValue>>> = Vec::new();
            batch.append_statement(self.bump.clone());
            values.push(vec![
                Some(CqlValue::BigInt(new_next)),
                Some(CqlValue::BigInt(next)),
            ]);
            let now = CqlTimestamp(Utc::now().timestamp_millis());
            for ((stream, _), c) in wanted.iter().zip(&claims) {
                batch.append_statement(self.insert.clone());
                values.push(vec![
                    Some(CqlValue::BigInt(i64::try_from(c.last).unwrap_or(i64::MAX))),
                    Some(CqlValue::BigInt(i64::try_from(c.first).unwrap_or(i64::MAX))),
                    Some(CqlValue::Text(stream.clone())),
                    Some(CqlValue::Timestamp(now)),
                    Some(CqlValue::Uuid(owner)),
                ]);
            }
            for last in releases {
                batch.append_statement(self.delete.clone());
                values.push(vec![Some(CqlValue::BigInt(
                    i64::try_from(*last).unwrap_or(i64::MAX),
                ))]);
            }
            let result: std::result::Result<QueryResult, _> =
                self.session.batch(&batch, &values).await;
            match result {
                Ok(result) => match LwtOutcome::parse(result, "claim positions")? {
                    LwtOutcome::Applied => {
                        self.next = Some(new_next);
                        return Ok(claims);
                    }
                    LwtOutcome::NotApplied(current) => {
                        self.next = current.i64("next");
                    }
                },
                Err(e) => {
                    // The outcome is unknown: a serial read settles it.
                    self.next = None;
                    failures += 1;
                    tracing::debug!(error = %e, "claim round failed; checking its outcome");
                    if let Some(c) = claims.first() {
                        match self.owner_of(c.last).await {
                            Ok(Some(o)) if o == owner => return Ok(claims),
                            Ok(_) => {}
                            Err(e2) if failures >= self.retry.max_attempts => return Err(e2),
                            Err(_) => {}
                        }
                    }
                    if failures >= self.retry.max_attempts {
                        return Err(from_exec("claim positions", e));
                    }
                    tokio::time::sleep(Duration::from_millis(self.retry.initial_backoff_ms)).await;
                }
            }
        }
        Err(Error::backend(
            BACKEND,
            "claim positions",
            true,
            format!("the allocator counter kept moving for {MAX_ROUNDS} rounds"),
        ))
    }

    async fn owner_of(&self, last: u64) -> Result<Option<Uuid>> {
        let last = i64::try_from(last).unwrap_or(i64::MAX);
        let result = self
            .session
            .execute_unpaged(&self.owner_serial, (last,))
            .await
            .map_err(|e| from_exec("claim positions", e))?;
        let rows = result
            .into_rows_result()
            .map_err(|e| from_driver("claim positions", false, e))?;
        let row: Option<(Option<Uuid>,)> = rows
            .maybe_first_row()
            .map_err(|e| from_driver("claim positions", false, e))?;
        Ok(row.and_then(|(o,)| o))
    }
}
