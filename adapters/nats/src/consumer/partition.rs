//! One owned partition: its durable pull consumer and the message loop.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::{AckKind, Message};
use futures::StreamExt as _;
use orchestrix::bus::{Step, Verdict};
use orchestrix::cloudevent::binary;
use orchestrix::runtime::{Delivery, EventHandler, StartFrom};
use orchestrix::{Error, RecordedEvent, Result};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::Instrument as _;

use super::{PartitionLag, Shared};
use crate::dead_letter::Failure;
use crate::error::client;
use crate::handler::{NatsDelivery, NatsHandler};

/// Whether this worker may still act for the partition: the time, in
/// milliseconds since [`Shared::epoch`], until which its lease is surely
/// valid (renewal sent + TTL - one heartbeat of margin).
#[derive(Debug, Clone)]
pub(crate) struct LeaseClock {
    epoch: Instant,
    valid_until_ms: Arc<AtomicU64>,
}

impl LeaseClock {
    pub(crate) fn new(epoch: Instant) -> Self {
        Self {
            epoch,
            valid_until_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Marks the lease valid until `at`.
    pub(crate) fn extend_to(&self, at: Instant) {
        let ms =
            u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        self.valid_until_ms.store(ms, Ordering::Release);
    }

    /// How long the lease is still surely valid (zero when it may be lost).
    pub(crate) fn remaining(&self) -> Duration {
        let until = self.epoch + Duration::from_millis(self.valid_until_ms.load(Ordering::Acquire));
        until.saturating_duration_since(Instant::now())
    }
}

/// How long after a pull request's expiry the worker still waits for the
/// server's end-of-request status (or a message in transit).
const REQUEST_GRACE: Duration = Duration::from_millis(500);

/// Why a partition task ended.
#[derive(Debug)]
pub(crate) enum Exit {
    /// Asked to stop; in-flight work finished.
    Stopped,
    /// The lease could not be confirmed in time; stopped without acking
    /// further messages.
    LeaseExpired,
    /// Could not set up or read the consumer.
    Failed(Error),
}

/// The durable name of a partition's consumer: `{group}-p{partition}`
/// (the group with characters other than letters, digits, `-` and `_`
/// replaced by `_`).
pub fn durable_name(group_key: &str, partition: u32) -> String {
    format!("{group_key}-p{partition}")
}

/// Whether the durable consumer `name` exists.
async fn exists(shared: &Shared, name: &str) -> Result<bool> {
    match shared.stream.consumer_info(name).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => Ok(false),
        Err(e) => Err(client(
            "consume",
            true,
            format!("read consumer `{name}` on `{}`", shared.config.stream.name),
            e,
        )),
    }
}

/// Creates (or updates) the partition's durable pull consumer, starting
/// where [`Shared::start_from`] says (see the module docs of `consumer`).
async fn consumer(shared: &Shared, partition: u32) -> Result<PullConsumer> {
    let c = &shared.config.consumer;
    let name = durable_name(&shared.group_key, partition);
    let deliver_policy = match shared.start_from {
        StartFrom::Checkpoint => DeliverPolicy::All,
        StartFrom::CheckpointOrEnd if exists(shared, &name).await? => {
            return shared.stream.get_consumer(&name).await.map_err(|e| {
                client(
                    "consume",
                    true,
                    format!("open consumer `{name}` on `{}`", shared.config.stream.name),
                    e,
                )
            });
        }
        StartFrom::CheckpointOrEnd => DeliverPolicy::New,
        StartFrom::Beginning | StartFrom::End => {
            // This process's own position, not the durable's.
            if exists(shared, &name).await? {
                shared.stream.delete_consumer(&name).await.map_err(|e| {
                    client(
                        "consume",
                        true,
                        format!("reset consumer `{name}` on `{}`", shared.config.stream.name),
                        e,
                    )
                })?;
            }
            match shared.last_finished(partition) {
                Some(sequence) => DeliverPolicy::ByStartSequence {
                    start_sequence: sequence + 1,
                },
                None if shared.start_from == StartFrom::End => DeliverPolicy::New,
                None => DeliverPolicy::All,
            }
        }
    };
    let config = pull::Config {
        durable_name: Some(name.clone()),
        description: Some(format!(
            "Orchestrix group `{}`, partition {partition}",
            shared.group
        )),
        deliver_policy,
        ack_policy: AckPolicy::Explicit,
        ack_wait: c.ack_wait(),
        // Deliveries are counted and limited by the worker, which
        // dead-letters on the last one; the server never drops a message.
        max_deliver: -1,
        filter_subject: shared.config.partition_subject(partition),
        max_ack_pending: i64::from(c.max_ack_pending),
        ..Default::default()
    };
    shared.stream.create_consumer(config).await.map_err(|e| {
        client(
            "consume",
            true,
            format!(
                "create consumer `{name}` on `{}`",
                shared.config.stream.name
            ),
            e,
        )
    })
}

/// Runs a partition until `stop` says so or the lease lapses.
pub(crate) async fn run(
    shared: Arc<Shared>,
    partition: u32,
    mut stop: watch::Receiver<bool>,
    lease: LeaseClock,
) -> Exit {
    let span = tracing::info_span!("orchestrix.nats.partition", group = %shared.group, worker = %shared.worker, partition);
    async move {
        let consumer = loop {
            match consumer(&shared, partition).await {
                Ok(c) => break c,
                Err(e) if e.is_transient() && !*stop.borrow() => {
                    tracing::warn!(error = %e, "cannot set up the consumer; retrying");
                    tokio::select! {
                        _ = stop.changed() => return Exit::Stopped,
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
                Err(e) => return Exit::Failed(e),
            }
        };
        tracing::debug!("partition started");
        let c = &shared.config.consumer;
        let mut paused = shared.paused.subscribe();
        loop {
            if *stop.borrow() {
                return Exit::Stopped;
            }
            if *paused.borrow() {
                tokio::select! {
                    _ = stop.changed() => return Exit::Stopped,
                    _ = paused.wait_for(|p| !*p) => {}
                }
                continue;
            }
            let requested = Instant::now();
            let mut batch = match consumer.batch().max_messages(c.fetch_batch).expires(c.fetch_wait()).messages().await {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(error = %e, "pull request failed; retrying");
                    tokio::select! {
                        _ = stop.changed() => return Exit::Stopped,
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    continue;
                }
            };
            // The server ends a pull request at `fetch_wait` with a 408
            // status, but a 2.9 server sometimes sends none; the client would
            // then wait 5 s more. Past the server's expiry nothing new can
            // come, so stop waiting shortly after it.
            let over = requested + c.fetch_wait() + REQUEST_GRACE;
            loop {
                let next = tokio::select! {
                    biased;
                    _ = stop.changed() => None,
                    next = tokio::time::timeout_at(over, batch.next()) => Some(next.unwrap_or(None)),
                };
                match next {
                    // Stop asked while waiting: give back what this pull
                    // request still brings, so the next owner gets it at once.
                    None => {
                        drain(&mut batch, c.fetch_wait(), None).await;
                        return Exit::Stopped;
                    }
                    Some(None) => break,
                    Some(Some(Err(e))) => {
                        tracing::debug!(error = %e, "pull request ended");
                        break;
                    }
                    Some(Some(Ok(message))) => {
                        if lease.remaining().is_zero() {
                            // The lease may be someone else's by now: do not
                            // handle; give the message back.
                            drain(&mut batch, c.fetch_wait(), Some(message)).await;
                            return Exit::LeaseExpired;
                        }
                        if *paused.borrow() {
                            // Paused while waiting: give it back, unhandled.
                            drain(&mut batch, c.fetch_wait(), Some(message)).await;
                            break;
                        }
                        process(&shared, partition, message).await;
                        if *stop.borrow() {
                            drain(&mut batch, c.fetch_wait(), None).await;
                            return Exit::Stopped;
                        }
                        if *paused.borrow() {
                            // Give back the rest of the pull request.
                            drain(&mut batch, c.fetch_wait(), None).await;
                            break;
                        }
                    }
                }
            }
        }
    }
    .instrument(span)
    .await
}

/// Gives back every message a pull request still delivers until it
/// expires, so that a stopped partition holds nothing: they are held until
/// the request is over (a message given back earlier would come straight
/// back to the same request), then negatively acknowledged in order, so the
/// next owner gets them at once.
async fn drain(batch: &mut pull::Batch, wait: Duration, first: Option<Message>) {
    let deadline = Instant::now() + wait + Duration::from_millis(100);
    let mut held: Vec<Message> = first.into_iter().collect();
    while let Ok(Some(next)) = tokio::time::timeout_at(deadline, batch.next()).await {
        if let Ok(message) = next {
            held.push(message);
        }
    }
    for message in held {
        let _ = message.ack_with(AckKind::Nak(None)).await;
    }
}

/// A [`NatsHandler`] call for one delivery, as a core [`EventHandler`],
/// so that the [`HandlerDriver`](orchestrix::bus::HandlerDriver) runs it.
#[derive(Debug)]
struct WithDelivery {
    handler: Arc<dyn NatsHandler>,
    delivery: NatsDelivery,
}

#[async_trait::async_trait]
impl EventHandler for WithDelivery {
    fn name(&self) -> &str {
        self.handler.name()
    }

    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> Result<()> {
        self.handler.handle(event, &self.delivery).await
    }
}

/// Handles one message through the driver (decode result, filter, span,
/// panic capture, retry decision, stats and metrics), telling the server
/// every half ack-wait that work is in progress; then acks, naks with the
/// policy's backoff (JetStream redelivers; the delivery count is the
/// attempt), or dead-letters and terminates.
async fn process(shared: &Shared, partition: u32, message: Message) {
    let (stream_sequence, consumer_sequence, delivered) = match message.info() {
        Ok(info) => (info.stream_sequence, info.consumer_sequence, info.delivered),
        Err(e) => {
            tracing::error!(error = %e, "a message without JetStream metadata; terminating it");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let attempt = u32::try_from(delivered.max(1)).unwrap_or(u32::MAX);
    let delivery = Delivery { partition, attempt };
    let call = WithDelivery {
        handler: shared.handler.clone(),
        delivery: NatsDelivery {
            partition,
            attempt,
            stream_sequence,
            consumer_sequence,
            group: shared.group.clone(),
            worker: shared.worker.clone(),
        },
    };
    let driver = &shared.driver;
    let work = driver.handle_event(&call, decode(&message), &delivery);
    let every = shared.config.consumer.ack_wait() / 2;
    let verdict = driver
        .attempt(&delivery, with_progress(&message, every, work))
        .instrument(tracing::debug_span!(
            "orchestrix.nats.message",
            sequence = stream_sequence
        ))
        .await;
    match verdict {
        Verdict::Done(_) => {
            if let Err(e) = message.ack().await {
                tracing::warn!(error = %e, "ack failed; the message will be redelivered");
            }
            shared.finished(partition, stream_sequence);
        }
        Verdict::Retry { delay, .. } => {
            let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
        }
        Verdict::DeadLetter { error, attempts } => {
            let failure = failure(shared, &message, &error, attempts, stream_sequence);
            dead_letter(shared, partition, &message, &failure, &error).await;
        }
    }
}

/// Runs `work`, telling the server every `every` that the message is still
/// being handled.
async fn with_progress<F: Future<Output = Result<Step>>>(
    message: &Message,
    every: Duration,
    work: F,
) -> Result<Step> {
    tokio::pin!(work);
    let mut progress = tokio::time::interval_at(Instant::now() + every, every);
    loop {
        tokio::select! {
            result = &mut work => return result,
            _ = progress.tick() => {
                let _ = message.ack_with(AckKind::Progress).await;
            }
        }
    }
}

fn failure<'a>(
    shared: &'a Shared,
    message: &'a Message,
    error: &'a Error,
    attempts: u32,
    sequence: u64,
) -> Failure<'a> {
    Failure {
        message: &message.message,
        error,
        attempts,
        consumer: &shared.group,
        handler: shared.driver.name(),
        worker: &shared.worker,
        stream: &shared.config.stream.name,
        sequence,
    }
}

/// Publishes the dead letter and terminates the message; when the dead
/// letter cannot be stored, naks with a delay so that nothing is lost.
async fn dead_letter(
    shared: &Shared,
    partition: u32,
    message: &Message,
    failure: &Failure<'_>,
    error: &Error,
) {
    match shared.dead_letters.send(failure).await {
        Ok(()) => {
            shared.driver.dead_lettered(error, failure.attempts);
            let _ = message.ack_with(AckKind::Term).await;
            if let Some(sequence) = message.info().ok().map(|i| i.stream_sequence) {
                shared.finished(partition, sequence);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot store the dead letter; redelivering later");
            let _ = message
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
        }
    }
}

/// The stored event a message carries.
fn decode(message: &Message) -> Result<RecordedEvent> {
    let empty = async_nats::HeaderMap::new();
    let headers = message.message.headers.as_ref().unwrap_or(&empty);
    let pairs = headers.iter().flat_map(|(name, values)| {
        values
            .iter()
            .map(move |v| (AsRef::<str>::as_ref(name), v.as_str().as_bytes()))
    });
    let ce = binary::decode(pairs, &message.message.payload, binary::NATS_PREFIX)?;
    binary::to_recorded(&ce)
}

/// Where the group stands on `partition`: from its durable consumer's
/// pending and unacknowledged counts, or, without one, from the messages
/// stored on the partition's subject.
pub(crate) async fn lag(shared: &Shared, partition: u32) -> Result<PartitionLag> {
    let name = durable_name(&shared.group_key, partition);
    let subject = shared.config.partition_subject(partition);
    let (events, floor) = match shared.stream.consumer_info(&name).await {
        Ok(info) => (
            info.num_pending
                .saturating_add(u64::try_from(info.num_ack_pending).unwrap_or(u64::MAX)),
            info.ack_floor.stream_sequence,
        ),
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => {
            let mut subjects = shared
                .stream
                .info_with_subjects(&subject)
                .await
                .map_err(|e| {
                    client(
                        "lag",
                        true,
                        format!("read the subjects of `{}`", shared.config.stream.name),
                        e,
                    )
                })?;
            let mut count = 0u64;
            while let Some(entry) = subjects.next().await {
                let (_, n) = entry.map_err(|e| {
                    client(
                        "lag",
                        true,
                        format!("read the subjects of `{}`", shared.config.stream.name),
                        e,
                    )
                })?;
                count = count.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
            }
            (count, 0)
        }
        Err(e) => return Err(client("lag", true, format!("read consumer `{name}`"), e)),
    };
    let oldest = if events == 0 {
        None
    } else {
        // Best effort: the first message of the subject after the ack floor.
        shared
            .stream
            .raw_message_builder()
            .sequence(floor + 1)
            .next_by_subject(subject)
            .send()
            .await
            .ok()
            .and_then(|m| {
                let nanos = u64::try_from(m.time.unix_timestamp_nanos()).ok()?;
                std::time::UNIX_EPOCH.checked_add(Duration::from_nanos(nanos))
            })
    };
    Ok(PartitionLag {
        partition,
        events,
        oldest,
    })
}
