//! [`MemoryBus`]: the in-process bus, with the partition and consumer-group
//! model of the real ones.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use async_trait::async_trait;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::driver::{DriverStats, HandlerDriver, Settled};
use super::port::{Bus, PartitionLag, Subscribe, Subscription};
use crate::dead_letter::{DeadLetterFilter, DeadLetterQueue};
use crate::error::{Error, Result};
use crate::event::RecordedEvent;
use crate::relay::Publisher;
use crate::runtime::partition::partition_for;
use crate::runtime::shutdown::Shutdown;
use crate::runtime::{StartFrom, dead_letter_for};
use crate::store::DeadLetter;

/// An in-process bus: one log per application (its "topic"), split into
/// partitions by stream id; consumer groups whose members share the
/// partitions (partition `p` goes to the `p % members`-th live member, in
/// join order), each partition handled by one member at a time, in order,
/// through the [`HandlerDriver`]; the group's position committed after each
/// message; dead letters kept per group.
///
/// Clones share the broker; [`for_app`](Self::for_app) gives another
/// application's view of the same broker (its own log, groups and dead
/// letters). Nothing survives the process.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use orchestrix::bus::{Bus, MemoryBus, Subscribe};
/// use orchestrix::runtime::{Delivery, EventHandler};
/// use orchestrix::{EventRecord, RecordedEvent, Result, StreamId};
///
/// #[derive(Debug, Default)]
/// struct Count(AtomicU64);
/// #[async_trait::async_trait]
/// impl EventHandler for Count {
///     fn name(&self) -> &str { "count" }
///     async fn handle(&self, _: &RecordedEvent, _: &Delivery) -> Result<()> {
///         self.0.fetch_add(1, Ordering::Relaxed);
///         Ok(())
///     }
/// }
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let bus = MemoryBus::new("shop", 4);
/// let events: Vec<RecordedEvent> = (0..10u64)
///     .map(|i| RecordedEvent {
///         stream_id: StreamId::new("order", &i.to_string()).unwrap(),
///         revision: 0,
///         position: i + 1,
///         record: EventRecord::json("com.acme.Placed", 1, &serde_json::json!({})),
///     })
///     .collect();
/// bus.publisher().publish(&events).await?;
/// let count = Arc::new(Count::default());
/// let member = bus.subscribe(Subscribe::new("counters", count.clone())).await?;
/// while count.0.load(Ordering::Relaxed) < 10 {
///     tokio::task::yield_now().await;
/// }
/// member.shutdown().await?;
/// # Ok::<(), orchestrix::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct MemoryBus {
    broker: Arc<Broker>,
    app: Arc<str>,
    partitions: u32,
}

impl fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBus")
            .field("app", &self.app)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

struct Broker {
    state: Mutex<State>,
    /// Bumped on every change; tasks wait on it.
    changed: watch::Sender<u64>,
    members: AtomicU64,
}

#[derive(Default)]
struct State {
    topics: HashMap<String, Topic>,
}

struct Topic {
    log: Vec<Vec<RecordedEvent>>,
    ids: HashSet<Uuid>,
    groups: HashMap<String, Group>,
}

#[derive(Default)]
struct Group {
    /// Next offset to handle, per partition (committed).
    committed: HashMap<u32, u64>,
    /// Live members, in join order.
    members: Vec<u64>,
    /// The member handling each partition now (it finishes its in-flight
    /// message before letting go).
    holder: HashMap<u32, u64>,
    dead_letters: BTreeMap<Uuid, (DeadLetter, RecordedEvent)>,
}

impl Group {
    fn owner(&self, partition: u32) -> Option<u64> {
        let n = self.members.len();
        (n > 0).then(|| self.members[usize::try_from(partition).unwrap_or(0) % n])
    }
}

impl MemoryBus {
    /// A new broker, and the bus of application `app` on it with
    /// `partitions` partitions (at least 1).
    #[must_use]
    pub fn new(app: &str, partitions: u32) -> Self {
        Self {
            broker: Arc::new(Broker {
                state: Mutex::default(),
                changed: watch::channel(0).0,
                members: AtomicU64::new(0),
            }),
            app: app.into(),
            partitions: partitions.max(1),
        }
    }

    /// Application `app`'s bus on the same broker.
    #[must_use]
    pub fn for_app(&self, app: &str) -> Self {
        Self {
            broker: self.broker.clone(),
            app: app.into(),
            partitions: self.partitions,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.broker
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn topic<'a>(&self, state: &'a mut State) -> &'a mut Topic {
        let partitions = usize::try_from(self.partitions).unwrap_or(1);
        state
            .topics
            .entry(self.app.to_string())
            .or_insert_with(|| Topic {
                log: vec![Vec::new(); partitions],
                ids: HashSet::new(),
                groups: HashMap::new(),
            })
    }

    fn notify(&self) {
        self.broker.changed.send_modify(|v| *v += 1);
    }
}

#[async_trait]
impl Publisher for MemoryBus {
    fn name(&self) -> &str {
        "memory-bus"
    }

    async fn publish(&self, events: &[RecordedEvent]) -> Result<()> {
        {
            let mut state = self.lock();
            let partitions = self.partitions;
            let topic = self.topic(&mut state);
            for event in events {
                // Idempotent publish: an event id seen before is dropped.
                if !topic.ids.insert(event.id()) {
                    continue;
                }
                let p = partition_for(event.stream_id.as_str(), partitions);
                topic.log[usize::try_from(p).unwrap_or(0)].push(event.clone());
            }
        }
        self.notify();
        Ok(())
    }
}

#[async_trait]
impl Bus for MemoryBus {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn partitions(&self) -> u32 {
        self.partitions
    }

    fn publisher(&self) -> Arc<dyn Publisher> {
        Arc::new(self.clone())
    }

    async fn subscribe(&self, options: Subscribe) -> Result<Box<dyn Subscription>> {
        if options.group.is_empty() {
            return Err(Error::invalid("consumer group", "must not be empty"));
        }
        let member = self.broker.members.fetch_add(1, Ordering::Relaxed) + 1;
        {
            let mut state = self.lock();
            let topic = self.topic(&mut state);
            topic
                .groups
                .entry(options.group.clone())
                .or_default()
                .members
                .push(member);
        }
        self.notify();
        let driver =
            Arc::new(HandlerDriver::for_handler(&*options.handler).with_retry(options.retry));
        let (stop, shutdown) = Shutdown::new();
        let (paused, paused_rx) = watch::channel(false);
        let member_state = Arc::new(Member {
            bus: self.clone(),
            group: options.group.clone(),
            id: member,
            driver: driver.clone(),
            handler: options.handler.clone(),
            start_from: options.start_from,
            resume_at: Mutex::new(HashMap::new()),
        });
        let tasks = (0..self.partitions)
            .map(|p| {
                tokio::spawn(member_state.clone().run_partition(
                    p,
                    shutdown.clone(),
                    paused_rx.clone(),
                ))
            })
            .collect();
        tracing::info!(app = %self.app, group = %options.group, member, "memory bus member joined");
        Ok(Box::new(MemorySubscription {
            member: member_state,
            stop,
            paused,
            tasks,
        }))
    }

    fn dead_letters(&self, group: &str) -> Arc<dyn DeadLetterQueue> {
        Arc::new(MemoryDeadLetters {
            bus: self.clone(),
            group: group.to_owned(),
        })
    }
}

struct Member {
    bus: MemoryBus,
    group: String,
    id: u64,
    driver: Arc<HandlerDriver>,
    handler: Arc<dyn crate::runtime::EventHandler>,
    start_from: StartFrom,
    /// Where this member left each partition, for `Beginning` / `End`.
    resume_at: Mutex<HashMap<u32, u64>>,
}

/// What a partition task does next.
enum Next {
    Handle(Box<RecordedEvent>, u64),
    Wait,
}

impl Member {
    /// Takes the next message of `partition` if this member owns it, or
    /// lets the partition go if it no longer does.
    fn next(&self, partition: u32, cursor: &mut Option<u64>) -> Next {
        let mut state = self.bus.lock();
        let topic = self.bus.topic(&mut state);
        let log_len = topic.log[usize::try_from(partition).unwrap_or(0)].len() as u64;
        let Some(group) = topic.groups.get_mut(&self.group) else {
            return Next::Wait;
        };
        let owner = group.owner(partition);
        let holder = group.holder.get(&partition).copied();
        if owner != Some(self.id) {
            if holder == Some(self.id) {
                group.holder.remove(&partition);
                if let Some(c) = cursor.take() {
                    self.remember(partition, c);
                }
                drop(state);
                self.bus.notify();
            }
            *cursor = None;
            return Next::Wait;
        }
        if holder.is_some_and(|h| h != self.id) {
            return Next::Wait; // the old owner finishes first
        }
        if holder.is_none() {
            group.holder.insert(partition, self.id);
            let committed = group.committed.get(&partition).copied();
            let own = self
                .resume_at
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&partition)
                .copied();
            *cursor = Some(match self.start_from {
                StartFrom::Checkpoint => committed.unwrap_or(0),
                StartFrom::CheckpointOrEnd => committed.unwrap_or(log_len),
                StartFrom::Beginning => own.unwrap_or(0),
                StartFrom::End => own.unwrap_or(log_len),
            });
        }
        let at = cursor.unwrap_or(0);
        match topic.log[usize::try_from(partition).unwrap_or(0)]
            .get(usize::try_from(at).unwrap_or(usize::MAX))
        {
            Some(event) => Next::Handle(Box::new(event.clone()), at),
            None => Next::Wait,
        }
    }

    fn remember(&self, partition: u32, next: u64) {
        self.resume_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(partition, next);
    }

    fn commit(&self, partition: u32, next: u64) {
        {
            let mut state = self.bus.lock();
            let topic = self.bus.topic(&mut state);
            if let Some(group) = topic.groups.get_mut(&self.group) {
                group.committed.insert(partition, next);
            }
        }
        self.remember(partition, next);
        self.bus.notify();
    }

    fn store_dead_letter(&self, event: &RecordedEvent, error: &Error, attempts: u32) {
        let letter = dead_letter_for(self.driver.name(), event, error, attempts);
        let mut state = self.bus.lock();
        let topic = self.bus.topic(&mut state);
        if let Some(group) = topic.groups.get_mut(&self.group) {
            group
                .dead_letters
                .insert(letter.id, (letter, event.clone()));
        }
    }

    async fn run_partition(
        self: Arc<Self>,
        partition: u32,
        shutdown: Shutdown,
        mut paused: watch::Receiver<bool>,
    ) {
        let mut changed = self.bus.broker.changed.subscribe();
        let mut cursor = None;
        loop {
            if shutdown.is_triggered() {
                break;
            }
            if *paused.borrow() {
                tokio::select! {
                    _ = paused.wait_for(|p| !*p) => {}
                    () = shutdown.triggered() => break,
                }
                continue;
            }
            changed.borrow_and_update();
            match self.next(partition, &mut cursor) {
                Next::Wait => {
                    tokio::select! {
                        _ = changed.changed() => {}
                        _ = paused.changed() => {}
                        () = shutdown.triggered() => break,
                    }
                }
                Next::Handle(event, at) => {
                    let (driver, handler) = (&self.driver, &self.handler);
                    let settled =
                        driver
                            .settle(partition, &shutdown, |delivery| {
                                let event = (*event).clone();
                                async move {
                                    driver.handle_event(&**handler, Ok(event), &delivery).await
                                }
                            })
                            .await;
                    match settled {
                        Settled::Done(_) => {}
                        Settled::DeadLetter { error, attempts } => {
                            self.store_dead_letter(&event, &error, attempts);
                            driver.dead_lettered(&error, attempts);
                        }
                        Settled::Abandoned => break,
                    }
                    cursor = Some(at + 1);
                    self.commit(partition, at + 1);
                }
            }
        }
        self.release(partition);
    }

    /// Lets `partition` go if this member holds it.
    fn release(&self, partition: u32) {
        {
            let mut state = self.bus.lock();
            let topic = self.bus.topic(&mut state);
            if let Some(group) = topic.groups.get_mut(&self.group)
                && group.holder.get(&partition) == Some(&self.id)
            {
                group.holder.remove(&partition);
            }
        }
        self.bus.notify();
    }

    /// Leaves the group (its partitions go to the others).
    fn leave(&self) {
        {
            let mut state = self.bus.lock();
            let topic = self.bus.topic(&mut state);
            if let Some(group) = topic.groups.get_mut(&self.group) {
                group.members.retain(|m| *m != self.id);
                group.holder.retain(|_, h| *h != self.id);
            }
        }
        self.bus.notify();
    }
}

/// A member of a [`MemoryBus`] group.
struct MemorySubscription {
    member: Arc<Member>,
    stop: watch::Sender<bool>,
    paused: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for MemorySubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemorySubscription")
            .field("group", &self.member.group)
            .field("member", &self.member.id)
            .finish_non_exhaustive()
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        if !self.tasks.is_empty() {
            for task in &self.tasks {
                task.abort();
            }
            self.tasks.clear();
            self.member.leave();
        }
    }
}

#[async_trait]
impl Subscription for MemorySubscription {
    fn group(&self) -> &str {
        &self.member.group
    }

    fn partitions(&self) -> Vec<u32> {
        let mut state = self.member.bus.lock();
        let topic = self.member.bus.topic(&mut state);
        let Some(group) = topic.groups.get(&self.member.group) else {
            return Vec::new();
        };
        (0..self.member.bus.partitions)
            .filter(|p| group.owner(*p) == Some(self.member.id))
            .collect()
    }

    fn stats(&self) -> DriverStats {
        self.member.driver.stats()
    }

    async fn lag(&self) -> Result<Vec<PartitionLag>> {
        let mut state = self.member.bus.lock();
        let topic = self.member.bus.topic(&mut state);
        let group = topic.groups.get(&self.member.group);
        Ok((0..self.member.bus.partitions)
            .map(|p| {
                let log = &topic.log[usize::try_from(p).unwrap_or(0)];
                let done = group
                    .and_then(|g| g.committed.get(&p).copied())
                    .unwrap_or(0);
                let events = (log.len() as u64).saturating_sub(done);
                let oldest = log
                    .get(usize::try_from(done).unwrap_or(usize::MAX))
                    .map(|e| SystemTime::from(e.record.time));
                PartitionLag::new(p, events, oldest)
            })
            .collect())
    }

    fn pause(&self) {
        self.paused.send_replace(true);
    }

    fn resume(&self) {
        self.paused.send_replace(false);
    }

    async fn shutdown(mut self: Box<Self>) -> Result<()> {
        self.stop.send_replace(true);
        let tasks = std::mem::take(&mut self.tasks);
        let mut result = Ok(());
        for task in tasks {
            if let Err(e) = task.await {
                result = Err(Error::backend(
                    "memory bus",
                    "shutdown",
                    false,
                    e.to_string(),
                ));
            }
        }
        self.member.leave();
        result
    }

    fn abort(self: Box<Self>) {
        drop(self);
    }
}

/// The dead letters of one group of a [`MemoryBus`].
#[derive(Debug)]
struct MemoryDeadLetters {
    bus: MemoryBus,
    group: String,
}

#[async_trait]
impl DeadLetterQueue for MemoryDeadLetters {
    fn describe(&self) -> String {
        format!("memory bus `{}`, group `{}`", self.bus.app, self.group)
    }

    async fn list(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        let mut state = self.bus.lock();
        let topic = self.bus.topic(&mut state);
        let all = topic
            .groups
            .get(&self.group)
            .map(|g| g.dead_letters.values().map(|(l, _)| l.clone()).collect())
            .unwrap_or_default();
        Ok(filter.apply(all))
    }

    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>> {
        let mut state = self.bus.lock();
        let topic = self.bus.topic(&mut state);
        Ok(topic
            .groups
            .get(&self.group)
            .and_then(|g| g.dead_letters.get(&id).map(|(l, _)| l.clone())))
    }

    async fn resolve(&self, id: Uuid) -> Result<bool> {
        let mut state = self.bus.lock();
        let topic = self.bus.topic(&mut state);
        Ok(topic
            .groups
            .get_mut(&self.group)
            .is_some_and(|g| g.dead_letters.remove(&id).is_some()))
    }

    async fn event(&self, letter: &DeadLetter) -> Result<RecordedEvent> {
        let mut state = self.bus.lock();
        let topic = self.bus.topic(&mut state);
        topic
            .groups
            .get(&self.group)
            .and_then(|g| g.dead_letters.get(&letter.id).map(|(_, e)| e.clone()))
            .ok_or_else(|| {
                Error::invalid(format!("dead letter {}", letter.id), "not in this queue")
            })
    }
}
