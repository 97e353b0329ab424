//! The workload every case drives: numbered commands on a few counters,
//! sent with a command id each and re-sent after a transient failure, a
//! recording consumer, and the check of both against the truth.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orchestrix::executor::CommandContext;
use orchestrix::runtime::{Delivery, EventHandler};
use orchestrix::store::Filter;
use orchestrix::{Aggregate, Application, Command, Event, RecordedEvent, Store};
use serde::{Deserialize, Serialize};

/// What a counter records.
#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "com.orchestrix.chaos")]
pub enum CounterEvent {
    /// Command number `seq` was applied.
    Added {
        /// The workload's sequence number of the command.
        seq: u64,
    },
}

/// The one command.
#[derive(Debug, Command)]
#[command(id = counter)]
pub enum CounterCommand {
    /// Records `seq` on `counter`.
    Add {
        /// The counter (aggregate id).
        counter: String,
        /// The workload's sequence number.
        seq: u64,
    },
}

/// The workload's errors (none: every command is accepted).
#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

/// A counter: accepts every `Add`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counter {
    added: u64,
}

impl Aggregate for Counter {
    const CATEGORY: &'static str = "counter";
    type Command = CounterCommand;
    type Event = CounterEvent;
    type Error = Never;

    fn handle(&self, command: &CounterCommand) -> Result<Vec<CounterEvent>, Never> {
        let CounterCommand::Add { seq, .. } = command;
        Ok(vec![CounterEvent::Added { seq: *seq }])
    }

    fn apply(&mut self, _event: &CounterEvent) {
        self.added += 1;
    }
}

/// The sequence number of a counter event.
#[must_use]
pub fn seq_of(event: &RecordedEvent) -> Option<u64> {
    if !event.event_type().ends_with("Added") {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(event.record.data.as_ref()).ok()?;
    value
        .get("Added")
        .and_then(|a| a.get("seq"))
        .or_else(|| value.get("seq"))
        .and_then(serde_json::Value::as_u64)
}

/// A consumer that records every delivery of a counter event, by event id.
#[derive(Debug, Default)]
pub struct Recorder {
    seen: Mutex<HashMap<String, (u64, u32)>>,
}

impl Recorder {
    /// A new recorder, shared.
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Distinct events delivered.
    #[must_use]
    pub fn distinct(&self) -> usize {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Deliveries per sequence number.
    #[must_use]
    pub fn deliveries(&self) -> BTreeMap<u64, u32> {
        let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = BTreeMap::new();
        for (seq, count) in seen.values() {
            *out.entry(*seq).or_default() += count;
        }
        out
    }
}

#[async_trait]
impl EventHandler for Recorder {
    fn name(&self) -> &str {
        "chaos-recorder"
    }

    async fn handle(&self, event: &RecordedEvent, _delivery: &Delivery) -> orchestrix::Result<()> {
        if let Some(seq) = seq_of(event) {
            let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            seen.entry(event.id().to_string()).or_insert((seq, 0)).1 += 1;
        }
        Ok(())
    }
}

/// What the producer saw.
#[derive(Debug, Default, Clone)]
pub struct Produced {
    /// Commands acknowledged (each once, however many attempts it took).
    pub acknowledged: u64,
    /// Attempts that failed with a transient error and were re-sent.
    pub transient_failures: u64,
    /// Of those, errors the backend classed permanent although they were a
    /// lost connection (a classification defect when not 0).
    pub misclassified: u64,
    /// The first error of each kind seen, for the report.
    pub errors: Vec<String>,
    /// Re-sent commands the executor recognised as already handled.
    pub duplicates_recognised: u64,
    /// The longest stretch during which no command succeeded.
    pub longest_stall: Duration,
}

/// Sends commands `0..count` round-robin over `counters` counters, one at a
/// time; a transient failure is re-sent with the same command id until it
/// is acknowledged (a permanent one fails the run). `progress` is called
/// after each acknowledgement with the number acknowledged so far.
///
/// # Errors
/// A permanent error, or a command not acknowledged within `limit`.
pub async fn produce(
    app: &Application,
    run: &str,
    count: u64,
    counters: u64,
    limit: Duration,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Produced> {
    let mut produced = Produced::default();
    let mut last_ok = Instant::now();
    for seq in 0..count {
        let command_id = format!("{run}-cmd-{seq}");
        let started = Instant::now();
        loop {
            let command = CounterCommand::Add {
                counter: format!("{run}-{}", seq % counters.max(1)),
                seq,
            };
            match app
                .execute_with(command, CommandContext::with_id(command_id.clone()))
                .await
            {
                Ok(outcome) => {
                    if outcome.duplicate {
                        produced.duplicates_recognised += 1;
                    }
                    break;
                }
                Err(e) if e.is_transient() || is_connection_loss(&e) => {
                    produced.transient_failures += 1;
                    if !e.is_transient() {
                        produced.misclassified += 1;
                    }
                    let text = e.to_string();
                    if produced.errors.len() < 5 && !produced.errors.contains(&text) {
                        produced.errors.push(text);
                    }
                    if started.elapsed() > limit {
                        anyhow::bail!("command {seq} not acknowledged within {limit:?}: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => anyhow::bail!("command {seq} failed permanently: {e}"),
            }
        }
        produced.longest_stall = produced.longest_stall.max(last_ok.elapsed());
        last_ok = Instant::now();
        produced.acknowledged += 1;
        progress(produced.acknowledged);
    }
    Ok(produced)
}

/// Errors the chaos cases treat as a lost connection even when the backend
/// classed them permanent (reported, so that a misclassification shows).
fn is_connection_loss(e: &orchestrix::Error) -> bool {
    let text = e.to_string().to_lowercase();
    [
        "connection",
        "closed",
        "terminating",
        "shutting down",
        "starting up",
        "recovery",
    ]
    .iter()
    .any(|w| text.contains(w))
}

/// The store's truth: every counter event's sequence number, with how many
/// events carry it.
///
/// # Errors
/// When the store cannot be read.
pub async fn stored(store: &Store) -> anyhow::Result<BTreeMap<u64, u32>> {
    let mut out = BTreeMap::new();
    let mut after = 0;
    loop {
        let events = store.read_all(after, 1000, &Filter::all()).await?;
        let Some(last) = events.last().map(|e| e.position) else {
            break;
        };
        for e in &events {
            if let Some(seq) = seq_of(e) {
                *out.entry(seq).or_default() += 1;
            }
        }
        after = last;
    }
    Ok(out)
}

/// The figures of one case.
#[derive(Debug, Default, Clone)]
pub struct Figures {
    /// Commands sent (each acknowledged once).
    pub commands: u64,
    /// Events in the store.
    pub events: u64,
    /// Acknowledged commands with no event in the store.
    pub lost_in_store: u64,
    /// Commands whose event is in the store more than once.
    pub doubled_in_store: u64,
    /// Stored events the consumer never received.
    pub lost_by_consumer: u64,
    /// Deliveries beyond the first (at-least-once redeliveries).
    pub redelivered: u64,
}

impl Figures {
    /// Compares the store and the consumer with the commands `0..count`.
    #[must_use]
    pub fn check(count: u64, store: &BTreeMap<u64, u32>, consumer: &BTreeMap<u64, u32>) -> Self {
        let mut f = Self {
            commands: count,
            events: store.values().map(|&n| u64::from(n)).sum(),
            ..Self::default()
        };
        for seq in 0..count {
            match store.get(&seq) {
                None => f.lost_in_store += 1,
                Some(&n) if n > 1 => f.doubled_in_store += 1,
                Some(_) => {}
            }
        }
        for seq in store.keys() {
            match consumer.get(seq) {
                None => f.lost_by_consumer += 1,
                Some(&n) => f.redelivered += u64::from(n.saturating_sub(1)),
            }
        }
        f
    }
}
