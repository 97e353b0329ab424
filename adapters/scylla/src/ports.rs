//! The snapshot, checkpoint, dead-letter and timer ports.

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use orchestrix::store::{
    CheckpointStore, DeadLetter, DeadLetterStore, Snapshot, SnapshotStore, Timer, TimerStore,
};
use orchestrix::{Error, Result, StreamId};
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimestamp;
use uuid::Uuid;

use crate::error::{from_driver, from_exec, retry};
use crate::lwt::LwtOutcome;
use crate::rows::{headers_from, headers_text, join_time, split_time, to_i64, to_u64};
use crate::store::ScyllaStore;

type LetterRow = (
    String,
    CqlTimestamp,
    Uuid,
    Option<i32>,
    Option<Uuid>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

fn letter_from(row: LetterRow) -> Result<DeadLetter> {
    let (
        consumer,
        failed_ms,
        id,
        failed_nanos,
        event_id,
        event_type,
        stream_id,
        position,
        payload,
        headers,
        reason,
        error_kind,
        attempts,
    ) = row;
    Ok(DeadLetter {
        id,
        consumer,
        event_id,
        event_type,
        stream_id,
        position: position
            .map(|p| to_u64("dead-letter position", p))
            .transpose()?,
        payload: Bytes::from(payload.unwrap_or_default()),
        headers: headers_from(headers)?,
        reason: reason.unwrap_or_default(),
        error_kind: error_kind.unwrap_or_default(),
        attempts: u32::try_from(attempts.unwrap_or_default()).unwrap_or(u32::MAX),
        failed_at: join_time("dead letter", failed_ms, failed_nanos)?,
    })
}

impl ScyllaStore {
    /// Runs an idempotent statement with retries.
    async fn run<V: SerializeRow + Clone>(
        &self,
        operation: &'static str,
        statement: &PreparedStatement,
        values: V,
    ) -> Result<QueryResult> {
        retry(&self.inner.config.retry, || {
            let values = values.clone();
            async move {
                self.inner
                    .session
                    .execute_unpaged(statement, values)
                    .await
                    .map_err(|e| from_exec(operation, e))
            }
        })
        .await
    }

    /// Runs a statement once (not idempotent: lightweight transactions).
    async fn run_once<V: SerializeRow>(
        &self,
        operation: &'static str,
        statement: &PreparedStatement,
        values: V,
    ) -> Result<QueryResult> {
        self.inner
            .session
            .execute_unpaged(statement, values)
            .await
            .map_err(|e| from_exec(operation, e))
    }
}

fn rows_of<R>(operation: &'static str, result: QueryResult) -> Result<Vec<R>>
where
    R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    let rows = result
        .into_rows_result()
        .map_err(|e| from_driver(operation, false, e))?;
    rows.rows::<R>()
        .map_err(|e| from_driver(operation, false, e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| from_driver(operation, false, e))
}

#[async_trait]
impl SnapshotStore for ScyllaStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        // The write timestamp is the revision: the highest revision wins,
        // whatever order saves arrive in.
        let revision = to_i64("snapshot revision", snapshot.revision)?;
        let (ms, nanos) = split_time(snapshot.taken_at);
        self.run(
            "save snapshot",
            &self.inner.st.snapshot_save,
            (
                snapshot.stream_id.as_str().to_owned(),
                revision,
                i64::from(snapshot.state_version),
                snapshot.data.to_vec(),
                ms,
                nanos,
                revision,
            ),
        )
        .await?;
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        let result = self
            .run(
                "load snapshot",
                &self.inner.st.snapshot_load,
                (stream.as_str(),),
            )
            .await?;
        type Row = (
            i64,
            Option<i64>,
            Option<Vec<u8>>,
            Option<CqlTimestamp>,
            Option<i32>,
        );
        let Some((revision, state_version, data, ms, nanos)) =
            rows_of::<Row>("load snapshot", result)?.into_iter().next()
        else {
            return Ok(None);
        };
        Ok(Some(Snapshot {
            stream_id: stream.clone(),
            revision: to_u64("snapshot revision", revision)?,
            state_version: u32::try_from(state_version.unwrap_or_default())
                .map_err(|e| Error::corrupted("snapshot state version", e.to_string()))?,
            data: Bytes::from(data.unwrap_or_default()),
            taken_at: join_time("snapshot", ms.unwrap_or(CqlTimestamp(0)), nanos)?,
        }))
    }
}

#[async_trait]
impl CheckpointStore for ScyllaStore {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>> {
        let result = self
            .run("load checkpoint", &self.inner.st.checkpoint_load, (name,))
            .await?;
        rows_of::<(Option<i64>,)>("load checkpoint", result)?
            .into_iter()
            .next()
            .and_then(|(p,)| p)
            .map(|p| to_u64("checkpoint", p))
            .transpose()
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<()> {
        let position = to_i64("checkpoint", position)?;
        self.run(
            "save checkpoint",
            &self.inner.st.checkpoint_save,
            (name, position),
        )
        .await?;
        Ok(())
    }

    async fn delete_checkpoint(&self, name: &str) -> Result<()> {
        self.run(
            "delete checkpoint",
            &self.inner.st.checkpoint_delete,
            (name,),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl DeadLetterStore for ScyllaStore {
    async fn put_dead_letter(&self, letter: DeadLetter) -> Result<()> {
        let (ms, nanos) = split_time(letter.failed_at);
        let position = letter
            .position
            .map(|p| to_i64("dead-letter position", p))
            .transpose()?;
        self.run(
            "put dead letter",
            &self.inner.st.dl_insert,
            (
                letter.consumer.as_str(),
                ms,
                letter.id,
                nanos,
                letter.event_id,
                letter.event_type.as_deref(),
                letter.stream_id.as_deref(),
                position,
                letter.payload.to_vec(),
                headers_text(&letter.headers)?,
                letter.reason.as_str(),
                letter.error_kind.as_str(),
                i64::from(letter.attempts),
            ),
        )
        .await?;
        self.run_once(
            "put dead letter",
            &self.inner.st.dl_id_insert,
            (letter.id, letter.consumer.as_str(), ms),
        )
        .await?;
        Ok(())
    }

    async fn list_dead_letters(
        &self,
        consumer: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut letters = match consumer {
            Some(c) => {
                let limit = i32::try_from(limit).unwrap_or(i32::MAX);
                let result = self
                    .run("list dead letters", &self.inner.st.dl_list, (c, limit))
                    .await?;
                rows_of::<LetterRow>("list dead letters", result)?
                    .into_iter()
                    .map(letter_from)
                    .collect::<Result<Vec<_>>>()?
            }
            None => {
                use futures::TryStreamExt as _;
                let pager = self
                    .inner
                    .session
                    .execute_iter(self.inner.st.dl_list_all.clone(), ())
                    .await
                    .map_err(|e| from_driver("list dead letters", true, e))?;
                let rows: Vec<LetterRow> = pager
                    .rows_stream::<LetterRow>()
                    .map_err(|e| from_driver("list dead letters", false, e))?
                    .try_collect()
                    .await
                    .map_err(|e| from_driver("list dead letters", true, e))?;
                rows.into_iter()
                    .map(letter_from)
                    .collect::<Result<Vec<_>>>()?
            }
        };
        letters.sort_by(|a, b| a.failed_at.cmp(&b.failed_at).then_with(|| a.id.cmp(&b.id)));
        letters.truncate(limit);
        Ok(letters)
    }

    async fn get_dead_letter(&self, id: Uuid) -> Result<Option<DeadLetter>> {
        let result = self
            .run("get dead letter", &self.inner.st.dl_id_get, (id,))
            .await?;
        let Some((Some(consumer), Some(ms))) =
            rows_of::<(Option<String>, Option<CqlTimestamp>)>("get dead letter", result)?
                .into_iter()
                .next()
        else {
            return Ok(None);
        };
        let result = self
            .run("get dead letter", &self.inner.st.dl_get, (consumer, ms, id))
            .await?;
        rows_of::<LetterRow>("get dead letter", result)?
            .into_iter()
            .next()
            .map(letter_from)
            .transpose()
    }

    async fn delete_dead_letter(&self, id: Uuid) -> Result<bool> {
        let result = self
            .run("delete dead letter", &self.inner.st.dl_id_get, (id,))
            .await?;
        let Some((Some(consumer), Some(ms))) =
            rows_of::<(Option<String>, Option<CqlTimestamp>)>("delete dead letter", result)?
                .into_iter()
                .next()
        else {
            return Ok(false);
        };
        let result = self
            .run_once("delete dead letter", &self.inner.st.dl_id_delete, (id,))
            .await?;
        let applied = matches!(
            LwtOutcome::parse(result, "delete dead letter")?,
            LwtOutcome::Applied
        );
        self.run(
            "delete dead letter",
            &self.inner.st.dl_delete,
            (consumer, ms, id),
        )
        .await?;
        Ok(applied)
    }
}

type TimerRow = (
    Option<String>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<i32>,
    Option<String>,
);

fn payload_of(text: Option<String>) -> Result<serde_json::Value> {
    match text {
        Some(t) => serde_json::from_str(&t).map_err(|e| Error::decode("timer payload", e)),
        None => Ok(serde_json::Value::Null),
    }
}

#[async_trait]
impl TimerStore for ScyllaStore {
    async fn schedule_timer(&self, timer: Timer) -> Result<()> {
        let (ms, nanos) = split_time(timer.due_at);
        let payload =
            serde_json::to_string(&timer.payload).map_err(|e| Error::encode("timer payload", e))?;
        let result = self
            .run_once(
                "schedule timer",
                &self.inner.st.timer_insert,
                (
                    timer.id.as_str(),
                    timer.owner.as_str(),
                    timer.key.as_str(),
                    ms,
                    nanos,
                    payload.as_str(),
                ),
            )
            .await?;
        // Applied or not, the owner's index gets the stored timer (this
        // also repairs an index row lost to an earlier crash).
        let stored = match LwtOutcome::parse(result, "schedule timer")? {
            LwtOutcome::Applied => {
                Some((timer.owner.clone(), timer.key.clone(), ms, nanos, payload))
            }
            LwtOutcome::NotApplied(_) => {
                let result = self
                    .run(
                        "schedule timer",
                        &self.inner.st.timer_get,
                        (timer.id.as_str(),),
                    )
                    .await?;
                rows_of::<TimerRow>("schedule timer", result)?
                    .into_iter()
                    .next()
                    .and_then(|(owner, key, due, nanos, payload)| {
                        Some((
                            owner?,
                            key.unwrap_or_default(),
                            due?,
                            nanos.unwrap_or(0),
                            payload.unwrap_or_default(),
                        ))
                    })
            }
        };
        if let Some((owner, key, due, nanos, payload)) = stored {
            self.run(
                "schedule timer",
                &self.inner.st.timer_owner_insert,
                (owner, due, timer.id.as_str(), nanos, key, payload),
            )
            .await?;
        }
        Ok(())
    }

    async fn due_timers(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Timer>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (ms, now_nanos) = split_time(now);
        // One more than asked: rows in the last millisecond may be past `now`.
        let fetch = i32::try_from(limit.saturating_add(64)).unwrap_or(i32::MAX);
        let result = self
            .run("due timers", &self.inner.st.timer_due, (owner, ms, fetch))
            .await?;
        let mut out = Vec::new();
        for (id, key, due, nanos, payload) in rows_of::<TimerRow>("due timers", result)? {
            let (Some(id), Some(due)) = (id, due) else {
                continue;
            };
            if due == ms && nanos.unwrap_or(0) > now_nanos {
                continue;
            }
            out.push(Timer {
                id,
                owner: owner.to_owned(),
                key: key.unwrap_or_default(),
                due_at: join_time("timer", due, nanos)?,
                payload: payload_of(payload)?,
            });
        }
        out.sort_by(|a, b| a.due_at.cmp(&b.due_at).then_with(|| a.id.cmp(&b.id)));
        out.truncate(limit);
        Ok(out)
    }

    async fn cancel_timer(&self, id: &str) -> Result<bool> {
        let result = self
            .run("cancel timer", &self.inner.st.timer_get, (id,))
            .await?;
        let stored = rows_of::<TimerRow>("cancel timer", result)?
            .into_iter()
            .next();
        let Some((Some(owner), _, Some(due), _, _)) = stored else {
            return Ok(false);
        };
        let result = self
            .run_once("cancel timer", &self.inner.st.timer_delete, (id,))
            .await?;
        let applied = matches!(
            LwtOutcome::parse(result, "cancel timer")?,
            LwtOutcome::Applied
        );
        self.run(
            "cancel timer",
            &self.inner.st.timer_owner_delete,
            (owner, due, id),
        )
        .await?;
        Ok(applied)
    }
}
