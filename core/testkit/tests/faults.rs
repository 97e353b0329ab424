//! The suite is not vacuous: backends with one deliberate defect each fail
//! the case that covers it.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use orchestrix::store::memory::MemoryStore;
use orchestrix::store::{
    AppendRequest, AppendResult, Backend, CheckpointStore, DeadLetter, DeadLetterStore, Direction,
    EventStore, ExpectedRevision, Filter, Snapshot, SnapshotStore, Timer, TimerStore,
};
use orchestrix::{RecordedEvent, Result, StreamId};
use orchestrix_testkit::{__run_case, store};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// No defect, but no notifications either, and a short pause in every
    /// append and read, like a backend over a network.
    Slow,
    /// Appends ignore the expected revision.
    IgnoreExpected,
    /// Reads lose the CloudEvents extensions.
    DropExtensions,
    /// Backward reads come back ascending.
    BackwardAscending,
    /// One failing request fails the whole batch.
    BatchAllOrNothing,
    /// `read_all` shows some events only once later ones are visible (a late
    /// commit holding a lower position), so a follower skips them.
    LateCommit,
    /// Subscriptions and reads return an event twice.
    DuplicateInReadAll,
    /// Loading a snapshot never finds one.
    ForgetSnapshots,
    /// `due_timers` ignores the owner.
    TimersOfEveryone,
}

#[derive(Debug)]
struct Faulty {
    inner: MemoryStore,
    fault: Fault,
}

fn backend(fault: Fault) -> Backend {
    Backend::from_all(Arc::new(Faulty {
        inner: MemoryStore::new(),
        fault,
    }))
}

#[async_trait]
impl EventStore for Faulty {
    fn backend(&self) -> &'static str {
        "faulty"
    }

    async fn append_batch(
        &self,
        mut requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<AppendResult>>> {
        self.pause().await;
        if self.fault == Fault::IgnoreExpected {
            for r in &mut requests {
                r.expected = ExpectedRevision::Any;
            }
        }
        let mut results = self.inner.append_batch(requests).await?;
        if self.fault == Fault::BatchAllOrNothing
            && let Some(i) = results.iter().position(Result::is_err)
            && let Err(e) = results.swap_remove(i)
        {
            return Err(e);
        }
        Ok(results)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.pause().await;
        let mut events = self
            .inner
            .read_stream(stream, from, direction, limit)
            .await?;
        if self.fault == Fault::BackwardAscending && direction == Direction::Backward {
            events.reverse();
        }
        Ok(self.damage(events))
    }

    async fn read_all(
        &self,
        after: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<RecordedEvent>> {
        self.pause().await;
        let mut events = self.inner.read_all(after, limit, filter).await?;
        match self.fault {
            Fault::LateCommit => {
                // Hide every 5th position until 10 more events exist.
                let head = self.inner.head_position().await?;
                events.retain(|e| !(e.position % 5 == 0 && head < e.position + 10));
            }
            Fault::DuplicateInReadAll => {
                if let Some(first) = events.first().cloned() {
                    events.insert(0, first);
                    events.truncate(limit);
                }
            }
            _ => {}
        }
        Ok(self.damage(events))
    }

    async fn stream_revision(&self, stream: &StreamId) -> Result<Option<u64>> {
        self.inner.stream_revision(stream).await
    }

    async fn head_position(&self) -> Result<u64> {
        self.inner.head_position().await
    }

    fn notifications(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        if self.fault == Fault::Slow {
            return None;
        }
        self.inner.notifications()
    }
}

impl Faulty {
    async fn pause(&self) {
        if self.fault == Fault::Slow {
            tokio::time::sleep(std::time::Duration::from_micros(200)).await;
        }
    }

    fn damage(&self, mut events: Vec<RecordedEvent>) -> Vec<RecordedEvent> {
        if self.fault == Fault::DropExtensions {
            for e in &mut events {
                e.record.metadata.extensions.clear();
            }
        }
        events
    }
}

#[async_trait]
impl SnapshotStore for Faulty {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        self.inner.save_snapshot(snapshot).await
    }
    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        if self.fault == Fault::ForgetSnapshots {
            return Ok(None);
        }
        self.inner.load_snapshot(stream).await
    }
}

#[async_trait]
impl CheckpointStore for Faulty {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>> {
        self.inner.load_checkpoint(name).await
    }
    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<()> {
        self.inner.save_checkpoint(name, position).await
    }
    async fn delete_checkpoint(&self, name: &str) -> Result<()> {
        self.inner.delete_checkpoint(name).await
    }
}

#[async_trait]
impl DeadLetterStore for Faulty {
    async fn put_dead_letter(&self, letter: DeadLetter) -> Result<()> {
        self.inner.put_dead_letter(letter).await
    }
    async fn list_dead_letters(
        &self,
        consumer: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        self.inner.list_dead_letters(consumer, limit).await
    }
    async fn get_dead_letter(&self, id: Uuid) -> Result<Option<DeadLetter>> {
        self.inner.get_dead_letter(id).await
    }
    async fn delete_dead_letter(&self, id: Uuid) -> Result<bool> {
        self.inner.delete_dead_letter(id).await
    }
}

#[async_trait]
impl TimerStore for Faulty {
    async fn schedule_timer(&self, timer: Timer) -> Result<()> {
        self.inner.schedule_timer(timer).await
    }
    async fn due_timers(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Timer>> {
        if self.fault == Fault::TimersOfEveryone {
            let mut all = self.inner.due_timers(owner, now, limit).await?;
            all.push(Timer {
                id: "foreign".to_owned(),
                owner: "someone else".to_owned(),
                key: "k".to_owned(),
                due_at: now,
                payload: serde_json::Value::Null,
            });
            return Ok(all);
        }
        self.inner.due_timers(owner, now, limit).await
    }
    async fn cancel_timer(&self, id: &str) -> Result<bool> {
        self.inner.cancel_timer(id).await
    }
}

#[test]
#[should_panic(expected = "must fail with Error::Conflict")]
fn ignoring_the_expected_revision_is_caught() {
    __run_case(store::expected_revision_no_stream(backend(
        Fault::IgnoreExpected,
    )));
}

#[test]
#[should_panic(expected = "metadata")]
fn losing_extensions_is_caught() {
    __run_case(store::metadata_round_trip(backend(Fault::DropExtensions)));
}

#[test]
#[should_panic(expected = "returned the wrong revisions")]
fn ascending_backward_reads_are_caught() {
    __run_case(store::read_stream_from_revision_with_limits(backend(
        Fault::BackwardAscending,
    )));
}

#[test]
#[should_panic(expected = "append_batch failed as a whole")]
fn all_or_nothing_batches_are_caught() {
    __run_case(store::append_batch_results_are_independent(backend(
        Fault::BatchAllOrNothing,
    )));
}

#[test]
#[should_panic(expected = "skipped")]
fn late_commits_that_readers_skip_are_caught() {
    __run_case(store::read_all_never_skips_under_concurrent_appends(
        backend(Fault::LateCommit),
    ));
}

#[test]
#[should_panic(expected = "positions must be above `after` and strictly increasing")]
fn duplicates_in_read_all_are_caught() {
    __run_case(store::all_stream_positions_strictly_increase(backend(
        Fault::DuplicateInReadAll,
    )));
}

#[test]
#[should_panic(expected = "no snapshot")]
fn forgotten_snapshots_are_caught() {
    __run_case(store::snapshots_keep_the_highest_revision(backend(
        Fault::ForgetSnapshots,
    )));
}

#[test]
#[should_panic(expected = "which timers, in which order")]
fn timers_of_other_owners_are_caught() {
    __run_case(store::timers_schedule_due_cancel(backend(
        Fault::TimersOfEveryone,
    )));
}

/// The healthy wrapper passes, so the faults above are what the cases catch.
#[test]
fn a_faultless_wrapper_passes() {
    // `BackwardAscending` only touches backward reads, which these cases do not use.
    __run_case(store::expected_revision_exact(backend(
        Fault::BackwardAscending,
    )));
    __run_case(store::append_batch_results_are_independent(backend(
        Fault::DropExtensions,
    )));
}

/// The whole suite passes on a healthy backend that cannot notify and
/// answers slowly: subscriptions fall back to polling.
mod slow {
    use super::{Backend, Fault, backend};

    async fn slow() -> Backend {
        backend(Fault::Slow)
    }

    orchestrix_testkit::store_conformance!(slow);
}
