//! The bus conformance suite: every case is an `async fn(Arc<dyn BusFactory>)`
//! that checks one property of the [`Bus`] contract against a real broker
//! (or the in-memory bus). [`bus_conformance!`](crate::bus_conformance)
//! turns them into tests.
//!
//! Cases publish [`RecordedEvent`]s straight to the bus's publisher (as the
//! outbox relay does), run group members with recording handlers, and poll
//! with a bounded wait ([`WAIT`]) for what must happen; none sleeps to
//! synchronise.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use orchestrix::bus::{Bus, Subscribe, Subscription};
use orchestrix::dead_letter::{DeadLetterFilter, replay};
use orchestrix::runtime::{Delivery, EventHandler, RetryPolicy, StartFrom};
use orchestrix::{Error, EventRecord, RecordedEvent, Result, StreamId};
use uuid::Uuid;

use crate::random;

crate::__with_bus_cases!(__bus_case_names!());

/// The longest any case waits for something that must happen (a group
/// join, a redelivery after a lease or session timeout).
pub const WAIT: Duration = Duration::from_secs(120);

/// Makes buses on one broker, one per application name.
pub trait BusFactory: Send + Sync + 'static {
    /// The bus of application `app` (a run-unique name of letters and
    /// digits), on the broker every call shares. Its topic / stream and
    /// dead letters are the application's own.
    fn bus<'a>(&'a self, app: &'a str) -> BoxFuture<'a, Arc<dyn Bus>>;
}

/// A fresh application name: `b` and 16 random hex digits.
#[must_use]
pub fn app_name() -> String {
    format!("b{}", &random::suffix()[..16])
}

/// One handler call a recording handler saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Which member handled it.
    pub member: usize,
    /// The event.
    pub id: Uuid,
    /// Its stream.
    pub stream: String,
    /// Its revision.
    pub revision: u64,
}

/// What the recording handlers of one case share.
#[derive(Default)]
struct Log {
    seen: Mutex<Vec<Seen>>,
    /// Calls in progress per stream, to catch two members at once.
    in_flight: Mutex<HashMap<String, usize>>,
    overlaps: Mutex<Vec<String>>,
    /// Events whose handling blocks forever (until the member is aborted).
    hang: Mutex<HashSet<Uuid>>,
    /// Calls that entered a hanging event.
    entered: Mutex<HashSet<Uuid>>,
    /// Events that fail permanently.
    poison: Mutex<HashSet<Uuid>>,
    /// Exactly-once read model: per stream the last applied revision and the
    /// applications of each event, changed together ("one transaction").
    model: Mutex<(HashMap<String, u64>, HashMap<Uuid, u32>)>,
    delay: Mutex<Duration>,
}

impl Log {
    fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A handler that records what it handles, for one member.
struct Recorder {
    name: String,
    member: usize,
    log: Arc<Log>,
    /// Applies to the exactly-once read model instead of recording.
    exactly_once: bool,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("name", &self.name)
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl EventHandler for Recorder {
    fn name(&self) -> &str {
        &self.name
    }

    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> Result<()> {
        let log = &self.log;
        let stream = event.stream_id.to_string();
        {
            let mut in_flight = log.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
            let n = in_flight.entry(stream.clone()).or_default();
            *n += 1;
            if *n > 1 {
                log.overlaps
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(format!("{stream}#{}", event.revision));
            }
        }
        let result = self.call(event).await;
        *log.in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(stream)
            .or_default() -= 1;
        result
    }
}

impl Recorder {
    async fn call(&self, event: &RecordedEvent) -> Result<()> {
        let log = &self.log;
        let id = event.id();
        if log
            .hang
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&id)
        {
            log.entered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id);
            futures::future::pending::<()>().await;
        }
        if log
            .poison
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&id)
        {
            return Err(Error::invalid(
                format!("event {id}"),
                "poison: this handler can never handle it",
            ));
        }
        let delay = *log.delay.lock().unwrap_or_else(PoisonError::into_inner);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.exactly_once {
            let mut model = log.model.lock().unwrap_or_else(PoisonError::into_inner);
            let (positions, applied) = &mut *model;
            let stream = event.stream_id.to_string();
            let next = positions.get(&stream).map_or(0, |r| r + 1);
            if event.revision < next {
                return Ok(()); // already applied: the stored position says so
            }
            if event.revision > next {
                return Err(Error::invalid(
                    format!("event {stream}#{}", event.revision),
                    format!("arrived before revision {next} of its stream was applied"),
                ));
            }
            positions.insert(stream, event.revision);
            *applied.entry(id).or_default() += 1;
            return Ok(());
        }
        log.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Seen {
                member: self.member,
                id,
                stream: event.stream_id.to_string(),
                revision: event.revision,
            });
        Ok(())
    }
}

/// Events of `streams` fresh streams, `per_stream` revisions each (from
/// `first_revision`), interleaved stream by stream, positions from `first_position`.
fn events(
    streams: &[StreamId],
    first_revision: u64,
    per_stream: u64,
    first_position: u64,
) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let mut position = first_position;
    for revision in first_revision..first_revision + per_stream {
        for stream in streams {
            out.push(RecordedEvent {
                stream_id: stream.clone(),
                revision,
                position,
                record: EventRecord::json(
                    "com.testkit.bus.Happened",
                    1,
                    &serde_json::json!({ "revision": revision }),
                ),
            });
            position += 1;
        }
    }
    out
}

fn streams(n: usize) -> Vec<StreamId> {
    let category = random::category();
    (0..n).map(|_| random::stream(&category)).collect()
}

async fn publish(bus: &dyn Bus, events: &[RecordedEvent]) {
    bus.publisher()
        .publish(events)
        .await
        .unwrap_or_else(|e| panic!("{}: publish failed: {e}", bus.kind()));
}

async fn subscribe(
    bus: &dyn Bus,
    group: &str,
    handler: Recorder,
    retry: RetryPolicy,
    start_from: StartFrom,
) -> Box<dyn Subscription> {
    bus.subscribe(
        Subscribe::new(group, Arc::new(handler))
            .with_retry(retry)
            .with_start_from(start_from),
    )
    .await
    .unwrap_or_else(|e| panic!("{}: subscribe failed: {e}", bus.kind()))
}

fn recorder(name: &str, member: usize, log: &Arc<Log>) -> Recorder {
    Recorder {
        name: name.to_owned(),
        member,
        log: log.clone(),
        exactly_once: false,
    }
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy::fixed(3, Duration::from_millis(20))
}

/// Polls `done` every 20 ms until it holds, for at most [`WAIT`].
///
/// # Panics
/// With `what` when it never holds.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gave up after {WAIT:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn handled_ids(log: &Log) -> HashSet<Uuid> {
    log.seen().into_iter().map(|s| s.id).collect()
}

fn all_handled(log: &Log, events: &[RecordedEvent]) -> bool {
    let ids = handled_ids(log);
    events.iter().all(|e| ids.contains(&e.id()))
}

/// Per stream, handled revisions never skip ahead of the next unhandled one
/// (a redelivery may go back; nothing may come before its predecessor).
fn assert_stream_order(bus: &str, log: &Log) {
    assert_stream_order_but(bus, log, &[]);
}

/// [`assert_stream_order`], with `dead` (dead-lettered, never handled)
/// counted as handled.
fn assert_stream_order_but(bus: &str, log: &Log, dead: &[&RecordedEvent]) {
    let dead: HashSet<(String, u64)> = dead
        .iter()
        .map(|e| (e.stream_id.to_string(), e.revision))
        .collect();
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    for s in log.seen() {
        let expected = next.entry(s.stream.clone()).or_default();
        while dead.contains(&(s.stream.clone(), *expected)) {
            *expected += 1;
        }
        assert!(
            s.revision <= *expected,
            "{bus}: per-stream order broken: {}#{} handled before #{}",
            s.stream,
            s.revision,
            expected
        );
        if s.revision == *expected {
            *expected += 1;
        }
    }
}

fn assert_no_overlap(bus: &str, log: &Log) {
    let overlaps = log
        .overlaps
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert!(
        overlaps.is_empty(),
        "{bus}: events of one stream handled by two calls at once: {overlaps:?}"
    );
}

/// Two members of one group over several partitions: every event is
/// handled, and each stream's events in revision order.
pub async fn per_stream_order_under_parallel_partitions(factory: Arc<dyn BusFactory>) {
    let bus = factory.bus(&app_name()).await;
    let kind = bus.kind();
    let log = Arc::new(Log::default());
    let group = random::name("order");
    let a = subscribe(
        &*bus,
        &group,
        recorder(&group, 0, &log),
        quick_retry(),
        StartFrom::Checkpoint,
    )
    .await;
    let b = subscribe(
        &*bus,
        &group,
        recorder(&group, 1, &log),
        quick_retry(),
        StartFrom::Checkpoint,
    )
    .await;
    let all = events(&streams(24), 0, 10, 1);
    publish(&*bus, &all).await;
    wait_for(&format!("{kind}: all {} events handled", all.len()), || {
        // Checked on every poll: an event handled out of order may keep
        // its predecessor from ever being handled (a duplicate to the
        // driver).
        assert_stream_order(kind, &log);
        all_handled(&log, &all)
    })
    .await;
    assert_stream_order(kind, &log);
    assert_no_overlap(kind, &log);
    a.shutdown().await.expect("shutdown");
    b.shutdown().await.expect("shutdown");
}

/// A member that crashes (aborted) while handling an event, with nothing
/// acknowledged for it: the event is delivered again to the member that
/// takes over, and every event is handled.
pub async fn at_least_once_redelivery_after_a_crash(factory: Arc<dyn BusFactory>) {
    let bus = factory.bus(&app_name()).await;
    let kind = bus.kind();
    let log = Arc::new(Log::default());
    let group = random::name("crash");
    let all = events(&streams(6), 0, 5, 1);
    let stuck = all[14].id(); // revision 2 of the third stream
    log.hang
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(stuck);
    publish(&*bus, &all).await;
    let a = subscribe(
        &*bus,
        &group,
        recorder(&group, 0, &log),
        quick_retry(),
        StartFrom::Checkpoint,
    )
    .await;
    wait_for(
        &format!("{kind}: the first member handles the stuck event"),
        || {
            log.entered
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&stuck)
        },
    )
    .await;
    a.abort();
    log.hang
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    let b = subscribe(
        &*bus,
        &group,
        recorder(&group, 1, &log),
        quick_retry(),
        StartFrom::Checkpoint,
    )
    .await;
    wait_for(
        &format!("{kind}: the event in flight at the crash is delivered again, and all others"),
        || all_handled(&log, &all),
    )
    .await;
    assert!(
        log.seen().iter().any(|s| s.id == stuck && s.member == 1),
        "{kind}: the stuck event was not redelivered to the new member"
    );
    assert_stream_order(kind, &log);
    b.shutdown().await.expect("shutdown");
}

/// A member joins, then one leaves: the partitions are spread and handed
/// over; nothing is lost and no stream is handled by two members at once.
pub async fn rebalance_when_members_join_and_leave(factory: Arc<dyn BusFactory>) {
    let bus = factory.bus(&app_name()).await;
    let kind = bus.kind();
    let log = Arc::new(Log::default());
    *log.delay.lock().unwrap_or_else(PoisonError::into_inner) = Duration::from_millis(2);
    let group = random::name("rebalance");
    let keys = streams(24);
    let first = events(&keys, 0, 3, 1);
    let a = subscribe(
        &*bus,
        &group,
        recorder(&group, 0, &log),
        quick_retry(),
        StartFrom::Checkpoint,
    )
    .await;
    publish(&*bus, &first).await;
    wait_for(
        &format!("{kind}: the first member handles the first batch"),
        || all_handled(&log, &first),
    )
    .await;
    let b = subscribe(
        &*bus,
        &group,
        recorder(&group, 1, &log),
        quick_retry(),
        StartFrom::Checkpoint,
    )
    .await;
    wait_for(
        &format!("{kind}: the joining member gets partitions"),
        || !b.partitions().is_empty(),
    )
    .await;
    let second = events(&keys, 3, 3, 1 + first.len() as u64);
    publish(&*bus, &second).await;
    wait_for(&format!("{kind}: the second batch is handled"), || {
        all_handled(&log, &second)
    })
    .await;
    let second_ids: HashSet<Uuid> = second.iter().map(RecordedEvent::id).collect();
    assert!(
        log.seen()
            .iter()
            .any(|s| s.member == 1 && second_ids.contains(&s.id)),
        "{kind}: the member that joined handled nothing of its partitions"
    );
    a.shutdown().await.expect("shutdown");
    let third = events(&keys, 6, 3, 1 + (first.len() + second.len()) as u64);
    publish(&*bus, &third).await;
    wait_for(
        &format!("{kind}: after a member left, the other handles everything"),
        || all_handled(&log, &third),
    )
    .await;
    let third_ids: HashSet<Uuid> = third.iter().map(RecordedEvent::id).collect();
    let mut members: HashMap<Uuid, HashSet<usize>> = HashMap::new();
    for s in log.seen() {
        if second_ids.contains(&s.id) || third_ids.contains(&s.id) {
            members.entry(s.id).or_default().insert(s.member);
        }
    }
    assert!(
        members.values().all(|m| m.len() == 1),
        "{kind}: after the handover, an event was handled by two members"
    );
    assert!(
        log.seen()
            .iter()
            .filter(|s| third_ids.contains(&s.id))
            .all(|s| s.member == 1),
        "{kind}: a member that left still handled events"
    );
    assert_stream_order(kind, &log);
    assert_no_overlap(kind, &log);
    b.shutdown().await.expect("shutdown");
}

/// A message that fails permanently goes to the dead letters, with its
/// reason and attempts, and the partition moves on: the stream's later
/// events are handled.
pub async fn poison_message_is_dead_lettered_and_later_events_flow(factory: Arc<dyn BusFactory>) {
    let bus = factory.bus(&app_name()).await;
    let kind = bus.kind();
    let log = Arc::new(Log::default());
    let group = random::name("poison");
    let all = events(&streams(4), 0, 5, 1);
    let poison = &all[9]; // revision 2 of the second stream
    log.poison
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(poison.id());
    let a = subscribe(
        &*bus,
        &group,
        recorder(&group, 0, &log),
        quick_retry(),
        StartFrom::Checkpoint,
    )
    .await;
    publish(&*bus, &all).await;
    let rest: Vec<RecordedEvent> = all
        .iter()
        .filter(|e| e.id() != poison.id())
        .cloned()
        .collect();
    wait_for(
        &format!("{kind}: every event but the poison one is handled"),
        || all_handled(&log, &rest),
    )
    .await;
    let letter = dead_letter_of(&*bus, &group, poison.id()).await;
    assert_eq!(
        letter.consumer, group,
        "{kind}: the letter names its consumer"
    );
    assert!(
        letter.reason.contains("poison"),
        "{kind}: reason {:?}",
        letter.reason
    );
    assert_eq!(
        letter.attempts, 1,
        "{kind}: a permanent error is not retried"
    );
    assert_eq!(letter.stream_id.as_deref(), Some(poison.stream_id.as_str()));
    assert!(a.stats().dead_lettered >= 1, "{kind}: {:?}", a.stats());
    assert_stream_order_but(kind, &log, &[poison]);
    a.shutdown().await.expect("shutdown");
}

/// Waits for the dead letter of `event`.
async fn dead_letter_of(bus: &dyn Bus, group: &str, event: Uuid) -> orchestrix::store::DeadLetter {
    let queue = bus.dead_letters(group);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let letters = queue
            .list(&DeadLetterFilter::default())
            .await
            .unwrap_or_else(|e| panic!("{}: listing dead letters failed: {e}", bus.kind()));
        if let Some(l) = letters.into_iter().find(|l| l.event_id == Some(event)) {
            return l;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}: no dead letter for event {event} after {WAIT:?}",
            bus.kind()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A dead letter replays through the same API as the store's
/// ([`orchestrix::dead_letter::replay`]): the fixed handler gets the
/// original event, and the letter is resolved.
pub async fn dead_letter_replay(factory: Arc<dyn BusFactory>) {
    let bus = factory.bus(&app_name()).await;
    let kind = bus.kind();
    let log = Arc::new(Log::default());
    let group = random::name("replay");
    let all = events(&streams(2), 0, 3, 1);
    let poison = all[2].clone();
    log.poison
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(poison.id());
    let a = subscribe(
        &*bus,
        &group,
        recorder(&group, 0, &log),
        RetryPolicy::none(),
        StartFrom::Checkpoint,
    )
    .await;
    publish(&*bus, &all).await;
    let letter = dead_letter_of(&*bus, &group, poison.id()).await;
    a.shutdown().await.expect("shutdown");
    assert!(!handled_ids(&log).contains(&poison.id()));
    // The handler is fixed; replay.
    log.poison
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    let queue = bus.dead_letters(&group);
    let fixed = recorder(&group, 9, &log);
    replay(&*queue, &letter, &fixed)
        .await
        .unwrap_or_else(|e| panic!("{kind}: replay failed: {e}"));
    let replayed: Vec<Seen> = log
        .seen()
        .into_iter()
        .filter(|s| s.id == poison.id())
        .collect();
    assert_eq!(
        replayed.len(),
        1,
        "{kind}: the replay hands the event over once"
    );
    assert_eq!(replayed[0].revision, poison.revision);
    assert_eq!(replayed[0].stream, poison.stream_id.to_string());
    let left = queue
        .list(&DeadLetterFilter::default())
        .await
        .expect("list");
    assert!(
        left.iter().all(|l| l.id != letter.id),
        "{kind}: a replayed letter must be resolved"
    );
}

/// A read model that stores each stream's applied position with its
/// effects in one transaction applies every event exactly once, although a
/// member crashes mid-run and the bus delivers again.
pub async fn exactly_once_read_model_through_the_stored_position(factory: Arc<dyn BusFactory>) {
    let bus = factory.bus(&app_name()).await;
    let kind = bus.kind();
    let log = Arc::new(Log::default());
    *log.delay.lock().unwrap_or_else(PoisonError::into_inner) = Duration::from_millis(3);
    let group = random::name("exactly");
    let all = events(&streams(12), 0, 25, 1);
    publish(&*bus, &all).await;
    let member = |m| Recorder {
        name: group.clone(),
        member: m,
        log: log.clone(),
        exactly_once: true,
    };
    let applied = |log: &Log| {
        log.model
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .len()
    };
    let a = subscribe(
        &*bus,
        &group,
        member(0),
        quick_retry(),
        StartFrom::Checkpoint,
    )
    .await;
    wait_for(&format!("{kind}: a third applied before the crash"), || {
        applied(&log) >= all.len() / 3
    })
    .await;
    a.abort();
    let b = subscribe(
        &*bus,
        &group,
        member(1),
        quick_retry(),
        StartFrom::Checkpoint,
    )
    .await;
    wait_for(
        &format!("{kind}: every event applied after the crash"),
        || applied(&log) >= all.len(),
    )
    .await;
    let model = log
        .model
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .1
        .clone();
    for e in &all {
        assert_eq!(
            model.get(&e.id()).copied(),
            Some(1),
            "{kind}: {}#{} must be applied exactly once",
            e.stream_id,
            e.revision
        );
    }
    b.shutdown().await.expect("shutdown");
}

/// A group that stopped cleanly resumes from its committed position: a
/// restarted member handles only what came after.
pub async fn resume_after_restart_from_the_committed_position(factory: Arc<dyn BusFactory>) {
    let bus = factory.bus(&app_name()).await;
    let kind = bus.kind();
    let log = Arc::new(Log::default());
    let group = random::name("resume");
    let keys = streams(8);
    let before = events(&keys, 0, 4, 1);
    publish(&*bus, &before).await;
    let a = subscribe(
        &*bus,
        &group,
        recorder(&group, 0, &log),
        quick_retry(),
        StartFrom::Checkpoint,
    )
    .await;
    wait_for(&format!("{kind}: the first run handles everything"), || {
        all_handled(&log, &before)
    })
    .await;
    a.shutdown().await.expect("shutdown");
    let after = events(&keys, 4, 4, 1 + before.len() as u64);
    publish(&*bus, &after).await;
    let b = subscribe(
        &*bus,
        &group,
        recorder(&group, 1, &log),
        quick_retry(),
        StartFrom::Checkpoint,
    )
    .await;
    wait_for(
        &format!("{kind}: the restarted member handles the new events"),
        || all_handled(&log, &after),
    )
    .await;
    // Each partition delivers in order, so anything of the first run would
    // have come before the new events.
    let before_ids: HashSet<Uuid> = before.iter().map(RecordedEvent::id).collect();
    let again: Vec<Seen> = log
        .seen()
        .into_iter()
        .filter(|s| s.member == 1 && before_ids.contains(&s.id))
        .collect();
    assert!(
        again.is_empty(),
        "{kind}: the restarted member handled {} events committed before: {:?}",
        again.len(),
        again.first()
    );
    b.shutdown().await.expect("shutdown");
}

/// Publishing an event again (the relay after a crash) does not deliver it
/// twice.
pub async fn duplicate_publish_is_dropped(factory: Arc<dyn BusFactory>) {
    let bus = factory.bus(&app_name()).await;
    let kind = bus.kind();
    let log = Arc::new(Log::default());
    let group = random::name("dupes");
    let keys = streams(6);
    let batch = events(&keys, 0, 3, 1);
    let a = subscribe(
        &*bus,
        &group,
        recorder(&group, 0, &log),
        quick_retry(),
        StartFrom::Checkpoint,
    )
    .await;
    publish(&*bus, &batch).await;
    publish(&*bus, &batch).await;
    let markers = events(&keys, 3, 1, 1 + batch.len() as u64);
    publish(&*bus, &markers).await;
    wait_for(
        &format!("{kind}: the events after the duplicates are handled"),
        || all_handled(&log, &markers),
    )
    .await;
    let seen = log.seen();
    for e in &batch {
        let n = seen.iter().filter(|s| s.id == e.id()).count();
        assert_eq!(
            n, 1,
            "{kind}: {}#{} published twice was handled {n} times",
            e.stream_id, e.revision
        );
    }
    a.shutdown().await.expect("shutdown");
}

/// Two applications on one broker, with the same group name, never see
/// each other's events.
pub async fn applications_on_one_broker_are_isolated(factory: Arc<dyn BusFactory>) {
    let (one, two) = (
        factory.bus(&app_name()).await,
        factory.bus(&app_name()).await,
    );
    let kind = one.kind();
    let group = random::name("shared");
    let (log1, log2) = (Arc::new(Log::default()), Arc::new(Log::default()));
    let a = subscribe(
        &*one,
        &group,
        recorder(&group, 0, &log1),
        quick_retry(),
        StartFrom::Checkpoint,
    )
    .await;
    let b = subscribe(
        &*two,
        &group,
        recorder(&group, 1, &log2),
        quick_retry(),
        StartFrom::Checkpoint,
    )
    .await;
    let first = events(&streams(5), 0, 4, 1);
    let second = events(&streams(5), 0, 4, 1);
    publish(&*one, &first).await;
    publish(&*two, &second).await;
    wait_for(
        &format!("{kind}: each application handles its own events"),
        || all_handled(&log1, &first) && all_handled(&log2, &second),
    )
    .await;
    let ids1: HashSet<Uuid> = first.iter().map(RecordedEvent::id).collect();
    let ids2: HashSet<Uuid> = second.iter().map(RecordedEvent::id).collect();
    assert!(
        handled_ids(&log1).is_disjoint(&ids2) && handled_ids(&log2).is_disjoint(&ids1),
        "{kind}: an application handled another application's events"
    );
    a.shutdown().await.expect("shutdown");
    b.shutdown().await.expect("shutdown");
}

/// Pausing stops handling; resuming goes on where it stopped.
pub async fn pause_and_resume(factory: Arc<dyn BusFactory>) {
    let bus = factory.bus(&app_name()).await;
    let kind = bus.kind();
    let log = Arc::new(Log::default());
    let group = random::name("pause");
    let keys = streams(4);
    let first = events(&keys, 0, 2, 1);
    let a = subscribe(
        &*bus,
        &group,
        recorder(&group, 0, &log),
        quick_retry(),
        StartFrom::Checkpoint,
    )
    .await;
    publish(&*bus, &first).await;
    wait_for(&format!("{kind}: handled before the pause"), || {
        all_handled(&log, &first)
    })
    .await;
    a.pause();
    let second = events(&keys, 2, 2, 1 + first.len() as u64);
    publish(&*bus, &second).await;
    // Paused: the broker's lag shows the new events waiting.
    let total = second.len() as u64;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let lag: u64 = a.lag().await.expect("lag").iter().map(|l| l.events).sum();
        if lag >= total {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{kind}: lag never showed the paused events ({lag})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ids: HashSet<Uuid> = second.iter().map(RecordedEvent::id).collect();
    assert!(
        handled_ids(&log).is_disjoint(&ids),
        "{kind}: a paused member handled events"
    );
    a.resume();
    wait_for(&format!("{kind}: handled after resume"), || {
        all_handled(&log, &second)
    })
    .await;
    a.shutdown().await.expect("shutdown");
}
