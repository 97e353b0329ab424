//! Appends: one conditional batch on the stream's partition per append,
//! with positions claimed from the allocator beforehand.
//!
//! 1. read the stream's head revision and last claim; check the expectation
//!    (a conflict fails here, before any position is claimed);
//! 2. claim positions for the events;
//! 3. conditional batch on the stream partition: the new head and
//!    `last_claim = first claimed position`, `IF head = <read> AND last_claim
//!    = <read>`, plus one row per event. A stale read retries with the
//!    values the LWT returned (re-checking the expectation); a claim that a
//!    newer claim overtook on this stream, or that a reader fenced, is
//!    given up (skipped) and a fresh one claimed, so positions within a
//!    stream follow revisions;
//! 4. write the events (or skip markers) into `all_events`, release the claim.

use std::collections::BTreeMap;

use orchestrix::store::{AppendRequest, AppendResult};
use orchestrix::{Error, RecordedEvent, Result, StreamId};
use scylla::statement::batch::{Batch, BatchType};
use scylla::value::CqlValue;

use crate::alloc::Claim;
use crate::error::{BACKEND, from_driver, from_exec, retry};
use crate::lwt::LwtOutcome;
use crate::rows::{record_values, to_i64, to_u64};
use crate::schema::BUCKET;
use crate::store::ScyllaStore;

/// Claims one append may give up before it fails.
const MAX_CLAIMS: u32 = 20;
/// Conditional batches one claim may try before it fails.
const MAX_ATTEMPTS: u32 = 50;

/// The static columns of a stream partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StreamState {
    pub(crate) head: Option<i64>,
    pub(crate) last_claim: Option<i64>,
    pub(crate) committed: Option<bool>,
}

impl StreamState {
    fn head_u64(&self) -> Result<Option<u64>> {
        self.head.map(|h| to_u64("head revision", h)).transpose()
    }
}

enum Attempt {
    Committed,
    /// Not applied; the current state.
    Stale(StreamState),
}

impl ScyllaStore {
    pub(crate) async fn stream_state(
        &self,
        stream: &StreamId,
        serial: bool,
    ) -> Result<StreamState> {
        let st = if serial {
            &self.inner.st.stream_state_serial
        } else {
            &self.inner.st.stream_state
        };
        let result = retry(&self.inner.config.retry, || async {
            self.inner
                .session
                .execute_unpaged(st, (stream.as_str(),))
                .await
                .map_err(|e| from_exec("read stream head", e))
        })
        .await?;
        let rows = result
            .into_rows_result()
            .map_err(|e| from_driver("read stream head", false, e))?;
        let row: Option<(Option<i64>, Option<i64>, Option<bool>)> = rows
            .maybe_first_row()
            .map_err(|e| from_driver("read stream head", false, e))?;
        Ok(
            row.map_or_else(StreamState::default, |(head, last_claim, committed)| {
                StreamState {
                    head,
                    last_claim,
                    committed,
                }
            }),
        )
    }

    pub(crate) async fn append_one(&self, request: AppendRequest) -> Result<AppendResult> {
        request.validate()?;
        let _guard = self.stream_lock(&request.stream_id).await;
        let mut state = self.stream_state(&request.stream_id, false).await?;
        for _ in 0..MAX_CLAIMS {
            request
                .expected
                .check(&request.stream_id, state.head_u64()?)?;
            let count = u64::try_from(request.events.len()).unwrap_or(u64::MAX);
            let claim = self
                .inner
                .alloc
                .claim(request.stream_id.as_str(), count)
                .await?;
            match self.commit_with_claim(&request, claim, &mut state).await {
                Ok(Some(result)) => return Ok(result),
                // The claim was given up; claim again.
                Ok(None) => {}
                Err(e) => return Err(e),
            }
        }
        Err(Error::backend(
            BACKEND,
            "append",
            true,
            format!(
                "`{}`: newer claims kept overtaking this append's claim",
                request.stream_id
            ),
        ))
    }

    /// Tries to commit `request` at `claim`. `Ok(None)`: the claim can no
    /// longer be used on this stream (it was skipped); claim again.
    async fn commit_with_claim(
        &self,
        request: &AppendRequest,
        claim: Claim,
        state: &mut StreamState,
    ) -> Result<Option<AppendResult>> {
        let first = to_i64("position", claim.first)?;
        for _ in 0..MAX_ATTEMPTS {
            if state.last_claim.is_some_and(|lc| lc >= first) {
                self.skip_claim(claim).await;
                return Ok(None);
            }
            let attempt = match self.try_commit(request, claim, state).await {
                Ok(a) => a,
                Err(e) => {
                    // Unknown outcome: a serial read completes or kills the
                    // attempt, then tells which.
                    tracing::debug!(error = %e, "append LWT failed; reading its outcome");
                    match self.stream_state(&request.stream_id, true).await {
                        Ok(s) if s.last_claim == Some(first) && s.committed == Some(true) => {
                            Attempt::Committed
                        }
                        Ok(s) => Attempt::Stale(s),
                        // Still unknown: the claim stays open, and readers
                        // settle it once its lease runs out.
                        Err(_) => return Err(e),
                    }
                }
            };
            match attempt {
                Attempt::Committed => {
                    let first_revision = state
                        .head
                        .map_or(Ok(0), |h| to_u64("head", h).map(|h| h + 1))?;
                    let n = u64::try_from(request.events.len()).unwrap_or(u64::MAX);
                    let events: Vec<RecordedEvent> = request
                        .events
                        .iter()
                        .enumerate()
                        .map(|(i, r)| RecordedEvent {
                            stream_id: request.stream_id.clone(),
                            revision: first_revision + i as u64,
                            position: claim.first + i as u64,
                            record: r.clone(),
                        })
                        .collect();
                    match self.write_all_events(claim, Some(&events)).await {
                        Ok(()) => self.inner.alloc.release(claim.last),
                        Err(e) => tracing::warn!(
                            error = %e,
                            first = claim.first,
                            "an append committed but its all-stream rows are not written; readers copy them once the claim's lease runs out"
                        ),
                    }
                    self.inner.notify.send_modify(|v| *v = (*v).max(claim.last));
                    return Ok(Some(AppendResult {
                        first_revision,
                        last_revision: first_revision + n - 1,
                        first_position: claim.first,
                        last_position: claim.last,
                    }));
                }
                Attempt::Stale(current) => {
                    if current.last_claim == Some(first) {
                        // A reader fenced this claim: it will never hold events.
                        self.skip_claim(claim).await;
                        *state = current;
                        return Ok(None);
                    }
                    *state = current;
                    if let Err(conflict) = request
                        .expected
                        .check(&request.stream_id, state.head_u64()?)
                    {
                        self.skip_claim(claim).await;
                        return Err(conflict);
                    }
                }
            }
        }
        self.skip_claim(claim).await;
        Err(Error::backend(
            BACKEND,
            "append",
            true,
            format!("`{}` kept changing under the append", request.stream_id),
        ))
    }

    async fn try_commit(
        &self,
        request: &AppendRequest,
        claim: Claim,
        state: &StreamState,
    ) -> Result<Attempt> {
        let stream = request.stream_id.as_str();
        let first_revision = state.head.map_or(0, |h| h + 1);
        let n = i64::try_from(request.events.len()).unwrap_or(i64::MAX);
        let first = to_i64("position", claim.first)?;
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut values: Vec<Vec<Option<CqlValue>>> = Vec::with_capacity(request.events.len() + 1);
        batch.append_statement(self.inner.st.commit_head.clone());
        values.push(vec![
            Some(CqlValue::BigInt(first_revision + n - 1)),
            Some(CqlValue::BigInt(first)),
            Some(CqlValue::Text(stream.to_owned())),
            state.head.map(CqlValue::BigInt),
            state.last_claim.map(CqlValue::BigInt),
        ]);
        for (i, record) in request.events.iter().enumerate() {
            let i = i64::try_from(i).unwrap_or(i64::MAX);
            batch.append_statement(self.inner.st.insert_event.clone());
            let mut row = vec![
                Some(CqlValue::Text(stream.to_owned())),
                Some(CqlValue::BigInt(first_revision + i)),
                Some(CqlValue::BigInt(first + i)),
            ];
            row.extend(record_values(record)?);
            values.push(row);
        }
        let result = self
            .inner
            .session
            .batch(&batch, &values)
            .await
            .map_err(|e| from_exec("append", e))?;
        Ok(match LwtOutcome::parse(result, "append")? {
            LwtOutcome::Applied => Attempt::Committed,
            LwtOutcome::NotApplied(current) => Attempt::Stale(StreamState {
                head: current.i64("head"),
                last_claim: current.i64("last_claim"),
                committed: current.bool("claim_committed"),
            }),
        })
    }

    /// Marks a claim that will never hold events as skipped, and releases it.
    /// On failure the claim stays open; readers settle it after its lease.
    pub(crate) async fn skip_claim(&self, claim: Claim) {
        match self.write_all_events(claim, None).await {
            Ok(()) => self.inner.alloc.release(claim.last),
            Err(e) => {
                tracing::warn!(error = %e, first = claim.first, "cannot mark a claim skipped")
            }
        }
    }

    /// Writes the all-stream rows of a claim: its events, or skip markers.
    pub(crate) async fn write_all_events(
        &self,
        claim: Claim,
        events: Option<&[RecordedEvent]>,
    ) -> Result<()> {
        let last = to_i64("position", claim.last)?;
        let mut by_bucket: BTreeMap<i64, Vec<Vec<Option<CqlValue>>>> = BTreeMap::new();
        match events {
            Some(events) => {
                for e in events {
                    let position = to_i64("position", e.position)?;
                    let mut row = vec![
                        Some(CqlValue::BigInt(to_i64("bucket", e.position / BUCKET)?)),
                        Some(CqlValue::BigInt(position)),
                        Some(CqlValue::BigInt(last)),
                        Some(CqlValue::Text(e.stream_id.as_str().to_owned())),
                        Some(CqlValue::Text(e.stream_id.category().to_owned())),
                        Some(CqlValue::BigInt(to_i64("revision", e.revision)?)),
                    ];
                    row.extend(record_values(&e.record)?);
                    by_bucket
                        .entry(to_i64("bucket", e.position / BUCKET)?)
                        .or_default()
                        .push(row);
                }
            }
            None => {
                for p in claim.first..=claim.last {
                    by_bucket
                        .entry(to_i64("bucket", p / BUCKET)?)
                        .or_default()
                        .push(vec![
                            Some(CqlValue::BigInt(to_i64("bucket", p / BUCKET)?)),
                            Some(CqlValue::BigInt(to_i64("position", p)?)),
                            Some(CqlValue::BigInt(last)),
                        ]);
                }
            }
        }
        let statement = if events.is_some() {
            &self.inner.st.all_insert
        } else {
            &self.inner.st.all_skip
        };
        let writes = by_bucket.into_values().map(|rows| async move {
            let mut batch = Batch::new(BatchType::Unlogged);
            for _ in &rows {
                batch.append_statement(statement.clone());
            }
            retry(&self.inner.config.retry, || async {
                self.inner
                    .session
                    .batch(&batch, &rows)
                    .await
                    .map(|_| ())
                    .map_err(|e| from_exec("write all-stream", e))
            })
            .await
        });
        for r in futures::future::join_all(writes).await {
            r?;
        }
        Ok(())
    }
}

/// An append stopped between claiming its positions and committing them, as
/// a slow or crashed writer would be (feature `testing`).
#[cfg(feature = "testing")]
#[derive(Debug)]
pub struct PendingAppend {
    store: ScyllaStore,
    request: AppendRequest,
    claim: Claim,
    state: StreamState,
}

#[cfg(feature = "testing")]
impl PendingAppend {
    /// The first position claimed.
    #[must_use]
    pub fn first_position(&self) -> u64 {
        self.claim.first
    }

    /// Commits at the claimed positions; when the claim can no longer be
    /// used (a reader fenced it), appends again with fresh positions.
    ///
    /// # Errors
    /// As [`orchestrix::store::EventStore::append`].
    pub async fn commit(mut self) -> Result<AppendResult> {
        let _guard = self.store.stream_lock(&self.request.stream_id).await;
        if let Some(r) = self
            .store
            .commit_with_claim(&self.request, self.claim, &mut self.state)
            .await?
        {
            return Ok(r);
        }
        drop(_guard);
        self.store.append_one(self.request).await
    }
}

#[cfg(feature = "testing")]
impl ScyllaStore {
    /// Validates `request`, checks its expectation and claims its positions,
    /// but does not commit (feature `testing`): the building block of tests
    /// that commit a lower position after a higher one, or never.
    ///
    /// # Errors
    /// As [`orchestrix::store::EventStore::append`].
    pub async fn begin_append(&self, request: AppendRequest) -> Result<PendingAppend> {
        request.validate()?;
        let state = self.stream_state(&request.stream_id, false).await?;
        request
            .expected
            .check(&request.stream_id, state.head_u64()?)?;
        let count = u64::try_from(request.events.len()).unwrap_or(u64::MAX);
        let claim = self
            .inner
            .alloc
            .claim(request.stream_id.as_str(), count)
            .await?;
        Ok(PendingAppend {
            store: self.clone(),
            request,
            claim,
            state,
        })
    }
}
