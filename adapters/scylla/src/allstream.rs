//! The all-stream: reads up to the gap-free horizon, and the recovery of
//! claims whose writer is gone.
//!
//! Every claimed position ends up as a row of `all_events`: an event or a
//! skip marker. A reader walks positions upward from where it is and stops
//! at the first position without a row (a claim still in flight), or
//! before an append whose rows are not all there yet; everything before
//! that point is final, so nothing is ever delivered out of order or
//! skipped. When the walk stays stuck at one position for longer than the
//! claim lease, the reader settles the claim: it fences it on its stream
//! (a conditional write on the stream partition that makes the late
//! writer's commit fail) and writes skip markers, or, if the writer did
//! commit, copies its events from the stream partition.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use orchestrix::store::Filter;
use orchestrix::{RecordedEvent, Result, StreamId};
use scylla::value::CqlTimestamp;

use crate::alloc::Claim;
use crate::error::{from_driver, from_exec, retry};
use crate::lwt::LwtOutcome;
use crate::rows::{RecordRow, recorded, to_i64, to_u64};
use crate::schema::{BUCKET, SENTINEL};
use crate::store::ScyllaStore;

/// Rows per page of the key scan.
const KEY_PAGE: i32 = 2000;
/// Positions per `IN` query.
const IN_CHUNK: usize = 100;

/// What a walk over the all-stream found.
struct Walk {
    /// Positions of matching events, ascending, at most `limit`.
    matched: Vec<u64>,
    /// Every position at or below this one is final.
    horizon: u64,
    /// Whether the walk stopped because it reached `limit`.
    full: bool,
}

/// A claim row of the allocator partition.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRow {
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) stream_id: String,
    pub(crate) claimed_at: CqlTimestamp,
}

type KeyRow = (
    i64,
    Option<bool>,
    Option<i64>,
    Option<String>,
    Option<String>,
);

type FullRow = (
    i64,
    Option<bool>,
    Option<i64>,
    Option<String>,
    Option<i64>,
    Option<uuid::Uuid>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<i32>,
    Option<String>,
    Option<Vec<u8>>,
    Option<String>,
);

impl ScyllaStore {
    /// Walks from `after + 1` over consecutive positions.
    async fn walk(&self, after: u64, limit: usize, filter: Option<&Filter>) -> Result<Walk> {
        let mut next = after + 1;
        let mut horizon = after;
        let mut open: Vec<u64> = Vec::new();
        let mut matched: Vec<u64> = Vec::new();
        'pages: loop {
            let bucket = next / BUCKET;
            let rows: Vec<KeyRow> = {
                let result = retry(&self.inner.config.retry, || async {
                    self.inner
                        .session
                        .execute_unpaged(
                            &self.inner.st.all_keys,
                            (
                                to_i64("bucket", bucket)?,
                                to_i64("position", next)?,
                                KEY_PAGE,
                            ),
                        )
                        .await
                        .map_err(|e| from_exec("read all-stream", e))
                })
                .await?;
                let rows = result
                    .into_rows_result()
                    .map_err(|e| from_driver("read all-stream", false, e))?;
                rows.rows::<KeyRow>()
                    .map_err(|e| from_driver("read all-stream", false, e))?
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| from_driver("read all-stream", false, e))?
            };
            let got = rows.len();
            for (position, skip, append_last, category, event_type) in rows {
                let position = to_u64("position", position)?;
                if position != next {
                    break 'pages;
                }
                next += 1;
                let skip = skip.unwrap_or(false);
                if !skip {
                    let wanted = filter.is_none_or(|f| {
                        f.matches(
                            category.as_deref().unwrap_or_default(),
                            event_type.as_deref().unwrap_or_default(),
                        )
                    });
                    if wanted {
                        open.push(position);
                    }
                }
                let append_last = append_last.map_or(Ok(position), |l| to_u64("append_last", l))?;
                if append_last <= position {
                    horizon = position;
                    matched.append(&mut open);
                    if filter.is_some() && matched.len() >= limit {
                        matched.truncate(limit);
                        return Ok(Walk {
                            matched,
                            horizon,
                            full: true,
                        });
                    }
                }
            }
            let page = usize::try_from(KEY_PAGE).unwrap_or(usize::MAX);
            if got < page && next / BUCKET == bucket {
                break;
            }
            if got == 0 {
                break;
            }
        }
        Ok(Walk {
            matched,
            horizon,
            full: false,
        })
    }

    /// Fetches the events at `positions` (ascending).
    async fn fetch(&self, positions: &[u64]) -> Result<Vec<RecordedEvent>> {
        let mut by_bucket: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for &p in positions {
            by_bucket.entry(p / BUCKET).or_default().push(p);
        }
        let mut out = Vec::with_capacity(positions.len());
        for (bucket, ps) in by_bucket {
            let (Some(&lo), Some(&hi)) = (ps.first(), ps.last()) else {
                continue;
            };
            let dense = hi - lo + 1 == ps.len() as u64;
            let bucket = to_i64("bucket", bucket)?;
            let mut rows: Vec<FullRow> = Vec::new();
            if dense {
                rows.extend(
                    self.fetch_rows(
                        &self.inner.st.all_range,
                        (bucket, to_i64("position", lo)?, to_i64("position", hi)?),
                    )
                    .await?,
                );
            } else {
                for chunk in ps.chunks(IN_CHUNK) {
                    let list: Vec<i64> = chunk
                        .iter()
                        .map(|p| to_i64("position", *p))
                        .collect::<Result<_>>()?;
                    rows.extend(
                        self.fetch_rows(&self.inner.st.all_in, (bucket, list))
                            .await?,
                    );
                }
            }
            for (position, skip, _, stream_id, revision, a, b, c, d, e, f, g, h, i) in rows {
                if skip.unwrap_or(false) {
                    continue;
                }
                let record: RecordRow = (a, b, c, d, e, f, g, h, i);
                out.push(recorded(
                    stream_id.as_deref().unwrap_or_default(),
                    revision.unwrap_or_default(),
                    position,
                    record,
                )?);
            }
        }
        out.sort_by_key(|e| e.position);
        Ok(out)
    }

    async fn fetch_rows<V>(
        &self,
        statement: &scylla::statement::prepared::PreparedStatement,
        values: V,
    ) -> Result<Vec<FullRow>>
    where
        V: scylla::serialize::row::SerializeRow + Clone,
    {
        let result = retry(&self.inner.config.retry, || {
            let values = values.clone();
            async move {
                self.inner
                    .session
                    .execute_unpaged(statement, values)
                    .await
                    .map_err(|e| from_exec("read all-stream", e))
            }
        })
        .await?;
        let rows = result
            .into_rows_result()
            .map_err(|e| from_driver("read all-stream", false, e))?;
        rows.rows::<FullRow>()
            .map_err(|e| from_driver("read all-stream", false, e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| from_driver("read all-stream", false, e))
    }

    fn note_horizon(&self, after: u64, horizon: u64) {
        // A walk from above the known head proves nothing about the
        // positions in between.
        if after <= self.inner.head.load(Ordering::SeqCst) {
            self.inner.head.fetch_max(horizon, Ordering::SeqCst);
        }
    }

    pub(crate) async fn read_all_events(
        &self,
        after: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<RecordedEvent>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let walk = if filter.is_all() {
            // Unfiltered: every event counts towards the limit.
            let mut w = self.walk_limited(after, limit).await?;
            w.matched.truncate(limit);
            w
        } else {
            self.walk(after, limit, Some(filter)).await?
        };
        self.note_horizon(after, walk.horizon);
        if !walk.full {
            self.maybe_recover(walk.horizon + 1).await?;
        }
        self.fetch(&walk.matched).await
    }

    /// An unfiltered walk that stops after `limit` events.
    async fn walk_limited(&self, after: u64, limit: usize) -> Result<Walk> {
        let mut w = self.walk(after, limit, Some(&Filter::all())).await?;
        if w.matched.len() > limit {
            w.matched.truncate(limit);
            w.full = true;
        }
        Ok(w)
    }

    pub(crate) async fn gap_free_head(&self) -> Result<u64> {
        if !self.inner.bootstrapped.load(Ordering::SeqCst) {
            let (next, claims) = self.read_claims(0).await?;
            let lowest = claims.iter().map(|c| c.first).min().unwrap_or(next);
            let h0 = lowest.min(next).saturating_sub(1);
            self.inner.head.fetch_max(h0, Ordering::SeqCst);
            self.inner.bootstrapped.store(true, Ordering::SeqCst);
        }
        let start = self.inner.head.load(Ordering::SeqCst);
        let walk = self.walk(start, usize::MAX, None).await?;
        self.inner.head.fetch_max(walk.horizon, Ordering::SeqCst);
        self.maybe_recover(walk.horizon + 1).await?;
        Ok(self.inner.head.load(Ordering::SeqCst))
    }

    /// The allocator's counter and the open claims ending at or after `from`.
    pub(crate) async fn read_claims(&self, from: u64) -> Result<(u64, Vec<ClaimRow>)> {
        let from = to_i64("position", from)?;
        let result = retry(&self.inner.config.retry, || async {
            self.inner
                .session
                .execute_unpaged(&self.inner.st.claims_read, (from,))
                .await
                .map_err(|e| from_exec("read claims", e))
        })
        .await?;
        let rows = result
            .into_rows_result()
            .map_err(|e| from_driver("read claims", false, e))?;
        type Row = (
            Option<i64>,
            i64,
            Option<i64>,
            Option<String>,
            Option<CqlTimestamp>,
        );
        let mut next = None;
        let mut claims = Vec::new();
        for row in rows
            .rows::<Row>()
            .map_err(|e| from_driver("read claims", false, e))?
        {
            let (n, last, first, stream_id, claimed_at) =
                row.map_err(|e| from_driver("read claims", false, e))?;
            next = next.or(n);
            if last == SENTINEL {
                continue;
            }
            if let (Some(first), Some(stream_id), Some(claimed_at)) = (first, stream_id, claimed_at)
            {
                claims.push(ClaimRow {
                    first: to_u64("claim", first)?,
                    last: to_u64("claim", last)?,
                    stream_id,
                    claimed_at,
                });
            }
        }
        let next = next.ok_or_else(|| {
            orchestrix::Error::corrupted("position allocator", "the counter row is missing")
        })?;
        claims.sort_by_key(|c| c.first);
        Ok((to_u64("counter", next)?, claims))
    }

    /// Settles the claims blocking `stuck_at` once the all-stream has been
    /// stuck there for a whole lease and they are older than the lease.
    async fn maybe_recover(&self, stuck_at: u64) -> Result<()> {
        let lease = Duration::from_millis(self.inner.config.claim_lease_ms);
        {
            let mut stall = self
                .inner
                .stall
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match *stall {
                Some((at, since)) if at == stuck_at && since.elapsed() >= lease => {
                    *stall = Some((at, Instant::now()));
                }
                Some((at, _)) if at == stuck_at => return Ok(()),
                _ => {
                    *stall = Some((stuck_at, Instant::now()));
                    return Ok(());
                }
            }
        }
        let Ok(_guard) = self.inner.recovering.try_lock() else {
            return Ok(());
        };
        let (next, claims) = self.read_claims(stuck_at).await?;
        if next <= stuck_at {
            return Ok(());
        }
        let lease_ms = i64::try_from(self.inner.config.claim_lease_ms).unwrap_or(i64::MAX);
        let now = Utc::now().timestamp_millis();
        for c in claims.iter().take(16) {
            if c.claimed_at.0.saturating_add(lease_ms) > now {
                break;
            }
            tracing::info!(first = c.first, last = c.last, stream = %c.stream_id, "settling an expired position claim");
            self.recover(c).await?;
        }
        Ok(())
    }

    /// Decides whether an expired claim committed (copy its events) or not
    /// (fence it so that it never can, and skip it).
    pub(crate) async fn recover(&self, c: &ClaimRow) -> Result<()> {
        let stream = StreamId::parse(c.stream_id.as_str())?;
        let first = to_i64("position", c.first)?;
        let claim = Claim {
            first: c.first,
            last: c.last,
        };
        let mut committed = None;
        for _ in 0..20 {
            let s = self.stream_state(&stream, true).await?;
            match s.last_claim {
                Some(lc) if lc == first => {
                    committed = Some(s.committed == Some(true));
                    break;
                }
                Some(lc) if lc > first => {
                    committed = Some(!self.events_in(&stream, c.first, c.last).await?.is_empty());
                    break;
                }
                _ => {
                    let result = self
                        .inner
                        .session
                        .execute_unpaged(
                            &self.inner.st.fence,
                            (first, stream.as_str(), s.last_claim),
                        )
                        .await
                        .map_err(|e| from_exec("fence claim", e))?;
                    if let LwtOutcome::Applied = LwtOutcome::parse(result, "fence claim")? {
                        committed = Some(false);
                        break;
                    }
                }
            }
        }
        let Some(committed) = committed else {
            return Ok(());
        };
        if committed {
            let events = self.events_in(&stream, c.first, c.last).await?;
            self.write_all_events(claim, Some(&events)).await?;
        } else {
            self.write_all_events(claim, None).await?;
        }
        self.inner.alloc.release(c.last);
        self.inner.notify.send_modify(|v| *v = (*v).max(c.last));
        Ok(())
    }

    /// The events of `stream` with positions in `first..=last`, read serially.
    async fn events_in(
        &self,
        stream: &StreamId,
        first: u64,
        last: u64,
    ) -> Result<Vec<RecordedEvent>> {
        let mut out = Vec::new();
        let mut from = i64::MAX;
        loop {
            let page = self
                .read_events(&self.inner.st.read_backward_serial, stream, from, 500)
                .await?;
            let Some(tail) = page.last() else { break };
            let next_from = i64::try_from(tail.revision).unwrap_or(0) - 1;
            let mut done = tail.position < first || next_from < 0;
            for e in page {
                if e.position < first {
                    done = true;
                    break;
                }
                if e.position <= last {
                    out.push(e);
                }
            }
            if done {
                break;
            }
            from = next_from;
        }
        out.sort_by_key(|e| e.position);
        Ok(out)
    }
}
