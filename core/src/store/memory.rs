//! The in-memory backend: every port, in one process, for tests and demos.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use super::{
    AppendRequest, AppendResult, CheckpointStore, DeadLetter, DeadLetterStore, Direction,
    EventStore, Filter, Snapshot, SnapshotStore, Timer, TimerStore,
};
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::id::StreamId;

/// Every port in memory. Cheap to create; nothing survives the process.
///
/// ```
/// use orchestrix::store::{memory::MemoryStore, AppendRequest, EventStore, ExpectedRevision, Filter};
/// use orchestrix::{EventRecord, StreamId};
/// # tokio_test();
/// # fn tokio_test() { tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let store = MemoryStore::new();
/// let stream = StreamId::parse("order-1")?;
/// let e = EventRecord::json("com.acme.Placed", 1, &serde_json::json!({}));
/// store.append(AppendRequest::new(stream.clone(), ExpectedRevision::NoStream, vec![e])).await?;
/// assert_eq!(store.stream_revision(&stream).await?, Some(0));
/// assert_eq!(store.read_all(0, 10, &Filter::all()).await?.len(), 1);
/// # Ok::<(), orchestrix::Error>(()) }).unwrap() }
/// ```
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    head: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    all: Vec<RecordedEvent>,
    streams: HashMap<StreamId, Vec<usize>>,
    ids: HashSet<Uuid>,
    snapshots: HashMap<StreamId, Snapshot>,
    checkpoints: HashMap<String, u64>,
    dead_letters: BTreeMap<(DateTime<Utc>, Uuid), DeadLetter>,
    timers: HashMap<String, Timer>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            head: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written
        // (every mutation below is committed after all checks), so recover.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl State {
    fn current(&self, stream: &StreamId) -> Option<u64> {
        self.streams.get(stream).map(|v| v.len() as u64 - 1)
    }

    fn append_one(&mut self, request: AppendRequest) -> Result<AppendResult> {
        request.validate()?;
        let current = self.current(&request.stream_id);
        request.expected.check(&request.stream_id, current)?;
        if let Some(dup) = request.events.iter().find(|e| self.ids.contains(&e.id)) {
            return Err(Error::invalid(
                format!("event {}", dup.id),
                "an event with this id is already stored",
            ));
        }
        let first_revision = current.map_or(0, |c| c + 1);
        let first_position = self.all.len() as u64 + 1;
        let n = request.events.len() as u64;
        let indexes = self.streams.entry(request.stream_id.clone()).or_default();
        for (i, record) in request.events.into_iter().enumerate() {
            let i = i as u64;
            indexes.push(self.all.len());
            self.ids.insert(record.id);
            self.all.push(RecordedEvent {
                stream_id: request.stream_id.clone(),
                revision: first_revision + i,
                position: first_position + i,
                record,
            });
        }
        Ok(AppendResult {
            first_revision,
            last_revision: first_revision + n - 1,
            first_position,
            last_position: first_position + n - 1,
        })
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn append_batch(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<Result<AppendResult>>> {
        let (results, head) = {
            let mut state = self.lock();
            let results: Vec<_> = requests.into_iter().map(|r| state.append_one(r)).collect();
            (results, state.all.len() as u64)
        };
        self.head.send_replace(head);
        Ok(results)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let state = self.lock();
        let Some(indexes) = state.streams.get(stream) else {
            return Ok(Vec::new());
        };
        let len = indexes.len() as u64;
        let out = match direction {
            Direction::Forward => {
                let start = usize::try_from(from.min(len)).unwrap_or(usize::MAX);
                indexes[start..]
                    .iter()
                    .take(limit)
                    .map(|&i| state.all[i].clone())
                    .collect()
            }
            Direction::Backward => {
                if len == 0 {
                    return Ok(Vec::new());
                }
                let end = usize::try_from(from.min(len - 1)).unwrap_or(usize::MAX);
                indexes[..=end]
                    .iter()
                    .rev()
                    .take(limit)
                    .map(|&i| state.all[i].clone())
                    .collect()
            }
        };
        Ok(out)
    }

    async fn read_all(
        &self,
        after: u64,
        limit: usize,
        filter: &Filter,
    ) -> Result<Vec<RecordedEvent>> {
        let state = self.lock();
        let start = usize::try_from(after)
            .unwrap_or(usize::MAX)
            .min(state.all.len());
        Ok(state.all[start..]
            .iter()
            .filter(|e| filter.matches(e.stream_id.category(), &e.record.event_type))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn stream_revision(&self, stream: &StreamId) -> Result<Option<u64>> {
        Ok(self.lock().current(stream))
    }

    async fn head_position(&self) -> Result<u64> {
        Ok(self.lock().all.len() as u64)
    }

    fn notifications(&self) -> Option<watch::Receiver<u64>> {
        Some(self.head.subscribe())
    }
}

#[async_trait]
impl SnapshotStore for MemoryStore {
    async fn save_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        let mut state = self.lock();
        let keep_old = state
            .snapshots
            .get(&snapshot.stream_id)
            .is_some_and(|old| old.revision > snapshot.revision);
        if !keep_old {
            state.snapshots.insert(snapshot.stream_id.clone(), snapshot);
        }
        Ok(())
    }

    async fn load_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        Ok(self.lock().snapshots.get(stream).cloned())
    }
}

#[async_trait]
impl CheckpointStore for MemoryStore {
    async fn load_checkpoint(&self, name: &str) -> Result<Option<u64>> {
        Ok(self.lock().checkpoints.get(name).copied())
    }

    async fn save_checkpoint(&self, name: &str, position: u64) -> Result<()> {
        self.lock().checkpoints.insert(name.to_owned(), position);
        Ok(())
    }

    async fn delete_checkpoint(&self, name: &str) -> Result<()> {
        self.lock().checkpoints.remove(name);
        Ok(())
    }
}

#[async_trait]
impl DeadLetterStore for MemoryStore {
    async fn put_dead_letter(&self, letter: DeadLetter) -> Result<()> {
        self.lock()
            .dead_letters
            .insert((letter.failed_at, letter.id), letter);
        Ok(())
    }

    async fn list_dead_letters(
        &self,
        consumer: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        Ok(self
            .lock()
            .dead_letters
            .values()
            .filter(|d| consumer.is_none_or(|c| d.consumer == c))
            .take(limit)
            .cloned()
            .collect())
    }

    async fn get_dead_letter(&self, id: Uuid) -> Result<Option<DeadLetter>> {
        Ok(self
            .lock()
            .dead_letters
            .values()
            .find(|d| d.id == id)
            .cloned())
    }

    async fn delete_dead_letter(&self, id: Uuid) -> Result<bool> {
        let mut state = self.lock();
        let key = state
            .dead_letters
            .iter()
            .find(|(_, d)| d.id == id)
            .map(|(k, _)| *k);
        Ok(key.is_some_and(|k| state.dead_letters.remove(&k).is_some()))
    }
}

#[async_trait]
impl TimerStore for MemoryStore {
    async fn schedule_timer(&self, timer: Timer) -> Result<()> {
        self.lock().timers.entry(timer.id.clone()).or_insert(timer);
        Ok(())
    }

    async fn due_timers(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Timer>> {
        let state = self.lock();
        let mut due: Vec<_> = state
            .timers
            .values()
            .filter(|t| t.owner == owner && t.due_at <= now)
            .cloned()
            .collect();
        due.sort_by(|a, b| a.due_at.cmp(&b.due_at).then_with(|| a.id.cmp(&b.id)));
        due.truncate(limit);
        Ok(due)
    }

    async fn cancel_timer(&self, id: &str) -> Result<bool> {
        Ok(self.lock().timers.remove(id).is_some())
    }
}
