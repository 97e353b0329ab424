//! The walk-through: notifications through a flaky provider, an outage
//! whose notifications are dead-lettered and replayed once the provider is
//! back, and a summary.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context as _, bail};
use orchestrix::dead_letter::{DeadLetterFilter, DeadLetterQueue, StoreDeadLetters};
use orchestrix::runtime::Runtime;
use orchestrix::store::DeadLetter;
use orchestrix::{Application, Store};
use orchestrix_backends::BusOptions;

use crate::NotifyModule;
use crate::dispatcher::{self, DispatchStats};
use crate::domain::{Channel, NotificationCommand};
use crate::provider::{Flakiness, FlakyProvider, ProviderStats};
use crate::status::Statuses;

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// A bus to run the dispatcher and the read model from; none: the
    /// embedded runtime.
    pub bus: Option<String>,
    /// Notifications requested while the provider is up (one of them to a
    /// recipient the provider rejects).
    pub count: usize,
    /// Notifications requested during the outage.
    pub outage: usize,
    /// How the provider misbehaves.
    pub flakiness: Flakiness,
    /// Messages per second per channel.
    pub rate_per_channel: u32,
    /// How long each phase may take to settle.
    pub settle: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            bus: None,
            count: 60,
            outage: 6,
            flakiness: Flakiness::default(),
            rate_per_channel: 10,
            settle: Duration::from_secs(60),
        }
    }
}

/// One channel's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelSummary {
    /// Requested.
    pub requested: u64,
    /// Recorded as sent (`Sent` events).
    pub sent: u64,
    /// Delivered by the provider (each idempotency key at most once).
    pub delivered: u64,
    /// The most deliveries within one second.
    pub peak_per_second: u64,
}

/// How a run ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// By channel.
    pub channels: BTreeMap<Channel, ChannelSummary>,
    /// Dead-lettered during the outage, after every attempt failed.
    pub dead_lettered: u64,
    /// Of those, replayed and sent once the provider was back.
    pub replayed: u64,
    /// Rejected for good by the provider (left in the dead letters).
    pub rejected: u64,
    /// Attempts after the first, across all notifications.
    pub retries: u64,
    /// Provider calls answered with an earlier delivery's id (a retry after
    /// a lost acknowledgement): sent once, not twice.
    pub duplicates_suppressed: u64,
    /// The limit per channel and second.
    pub rate_limit: u32,
}

/// Runs the walk-through on `store`, printing to `out`; notification ids are
/// `{run}-{n}`, so that runs on one store do not collide.
///
/// # Errors
/// A start, command or store error, or a phase that did not settle.
pub async fn run(
    store: Store,
    options: Options,
    run: &str,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<Summary> {
    let provider = Arc::new(FlakyProvider::new(options.flakiness));
    let stats = Arc::new(DispatchStats::default());
    let mut module = NotifyModule::new(provider.clone(), stats.clone());
    module.rate_per_channel = options.rate_per_channel;
    let app = Application::builder(store).module(module).build()?;
    let runtime =
        orchestrix_backends::start_runtime(&app, options.bus.as_deref(), BusOptions::default())
            .await?;
    let f = options.flakiness;
    writeln!(
        out,
        "Provider: fails {:.0}% of calls, loses {:.0}% of acknowledgements, {} ms per call; \
         at most {} messages per second per channel.\n",
        f.failure_rate * 100.0,
        f.lost_ack_rate * 100.0,
        f.latency.as_millis(),
        options.rate_per_channel
    )?;

    // 1. Notifications while the provider is flaky: retries get them through.
    let mut requested: BTreeMap<Channel, u64> = BTreeMap::new();
    let mut ids = Vec::new();
    // An e-mail (n % 3 == 0) without an @: the provider rejects it for good.
    let rejected_id = format!("{run}-3");
    for n in 0..options.count {
        let channel = Channel::ALL[n % Channel::ALL.len()];
        let id = format!("{run}-{n}");
        let recipient = if id == rejected_id {
            "nobody-at-example.org".to_owned()
        } else {
            recipient(channel, n)
        };
        request(&app, &id, channel, recipient).await?;
        *requested.entry(channel).or_default() += 1;
        if id != rejected_id {
            ids.push(id);
        }
    }
    writeln!(
        out,
        "1. Requested {} notifications ({} to an address the provider rejects).",
        options.count,
        usize::from(options.count > 3)
    )?;
    wait_sent(&app, &ids, options.settle)
        .await
        .context("phase 1: the notifications were not all sent")?;
    writeln!(
        out,
        "   All {} sendable ones sent: {} retries, {} transient provider failures.",
        ids.len(),
        stats.retries.load(Ordering::Relaxed),
        stats.transient_failures.load(Ordering::Relaxed),
    )?;

    // 2. An outage: every attempt fails, and the events are dead-lettered.
    provider.set_down(true);
    let mut outage_ids = Vec::new();
    for n in options.count..options.count + options.outage {
        let channel = Channel::ALL[n % Channel::ALL.len()];
        let id = format!("{run}-{n}");
        request(&app, &id, channel, recipient(channel, n)).await?;
        *requested.entry(channel).or_default() += 1;
        outage_ids.push(id);
    }
    writeln!(
        out,
        "2. The provider is down; {} more notifications requested.",
        options.outage
    )?;
    // The dead letters are where the dispatcher runs: the store's on the
    // embedded runtime, the bus's dead-letter topic or stream on a bus.
    let dead: Arc<dyn DeadLetterQueue> = match &options.bus {
        Some(bus) => orchestrix_backends::dead_letters(bus, Some(&app)).await?,
        None => Arc::new(StoreDeadLetters::new(app.store().clone())),
    };
    let expected = options.outage + usize::from(options.count > 3);
    let letters = wait_letters(dead.as_ref(), run, expected, options.settle)
        .await
        .context("phase 2: the outage's notifications were not dead-lettered")?;
    let (transient, permanent): (Vec<DeadLetter>, Vec<DeadLetter>) =
        letters.into_iter().partition(|l| l.error_kind == "backend");
    writeln!(
        out,
        "   Dead-lettered after every attempt: {} (provider unavailable); \
         rejected at once: {} (invalid recipient).",
        transient.len(),
        permanent.len()
    )?;

    // 3. The provider is back: replay the dead letters, once each.
    provider.set_down(false);
    let handler = Runtime::handlers(&app)?
        .into_iter()
        .find(|h| h.name() == dispatcher::NAME)
        .context("the dispatcher is registered")?
        .handler();
    // The provider is still flaky: each replay is retried under the same
    // policy as live delivery (exponential backoff with jitter).
    let policy = crate::retry_policy();
    let mut replayed = 0;
    for letter in &transient {
        let mut attempt = 1;
        loop {
            match orchestrix::dead_letter::replay(dead.as_ref(), letter, handler.as_ref()).await {
                Ok(()) => break,
                Err(e) if e.is_transient() => {
                    attempt += 1;
                    let Some(wait) = policy.delay(attempt) else {
                        return Err(e).context(format!("replaying dead letter {}", letter.id));
                    };
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(e).context(format!("replaying dead letter {}", letter.id)),
            }
        }
        replayed += 1;
    }
    let all: Vec<String> = ids.iter().chain(&outage_ids).cloned().collect();
    wait_sent(&app, &all, options.settle)
        .await
        .context("phase 3: the replayed notifications were not all sent")?;
    writeln!(
        out,
        "3. The provider is back: {replayed} dead letters replayed, all sent.\n"
    )?;

    let summary = summarize(
        &app,
        &provider.stats(&format!("{run}-")),
        &stats,
        run,
        &requested,
        (transient.len(), replayed, permanent.len()),
        options.rate_per_channel,
    )
    .await?;
    print(out, &summary)?;
    runtime.shutdown().await?;
    Ok(summary)
}

fn recipient(channel: Channel, n: usize) -> String {
    match channel {
        Channel::Email => format!("user{n}@example.org"),
        Channel::Sms => format!("+4915100{n:04}"),
        Channel::Push => format!("device-{n}"),
    }
}

async fn request(
    app: &Application,
    id: &str,
    channel: Channel,
    recipient: String,
) -> anyhow::Result<()> {
    app.execute(NotificationCommand::Request {
        notification: id.to_owned(),
        channel,
        recipient,
        body: format!("Hello from {id}"),
    })
    .await?;
    Ok(())
}

/// Waits until every notification of `ids` is sent in the read model.
async fn wait_sent(app: &Application, ids: &[String], limit: Duration) -> anyhow::Result<()> {
    let statuses = app.read_model::<Statuses>()?;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let mut missing = 0;
        for id in ids {
            if !statuses.get(id).await?.is_some_and(|r| r.sent) {
                missing += 1;
            }
        }
        if missing == 0 {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{missing} of {} not sent within {limit:?}", ids.len());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `expected` dead letters of this run's notifications exist.
async fn wait_letters(
    dead: &dyn DeadLetterQueue,
    run: &str,
    expected: usize,
    limit: Duration,
) -> anyhow::Result<Vec<DeadLetter>> {
    let deadline = tokio::time::Instant::now() + limit;
    let prefix = format!("notification-{run}-");
    loop {
        let filter = DeadLetterFilter {
            consumer: Some(dispatcher::NAME.to_owned()),
            ..DeadLetterFilter::default()
        };
        let ours: Vec<DeadLetter> = dead
            .list(&filter)
            .await?
            .into_iter()
            .filter(|l| {
                l.stream_id
                    .as_deref()
                    .is_some_and(|s| s.starts_with(&prefix))
            })
            .collect();
        if ours.len() >= expected {
            return Ok(ours);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{} of {expected} dead letters within {limit:?}", ours.len());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn summarize(
    app: &Application,
    provider: &ProviderStats,
    stats: &DispatchStats,
    run: &str,
    requested: &BTreeMap<Channel, u64>,
    (dead_lettered, replayed, rejected): (usize, usize, usize),
    rate_limit: u32,
) -> anyhow::Result<Summary> {
    let rows = app.read_model::<Statuses>()?.all().await?;
    let prefix = format!("{run}-");
    let mut channels: BTreeMap<Channel, ChannelSummary> = BTreeMap::new();
    for channel in Channel::ALL {
        let sent = rows
            .iter()
            .filter(|(id, r)| id.starts_with(&prefix) && r.channel == Some(channel) && r.sent)
            .count();
        channels.insert(
            channel,
            ChannelSummary {
                requested: requested.get(&channel).copied().unwrap_or_default(),
                sent: u64::try_from(sent)?,
                delivered: provider
                    .delivered
                    .get(&channel)
                    .copied()
                    .unwrap_or_default(),
                peak_per_second: provider
                    .peak_per_second
                    .get(&channel)
                    .copied()
                    .unwrap_or_default(),
            },
        );
    }
    Ok(Summary {
        channels,
        dead_lettered: u64::try_from(dead_lettered)?,
        replayed: u64::try_from(replayed)?,
        rejected: u64::try_from(rejected)?,
        retries: stats.retries.load(Ordering::Relaxed),
        duplicates_suppressed: provider.duplicates,
        rate_limit,
    })
}

fn print(out: &mut (dyn Write + Send), s: &Summary) -> std::io::Result<()> {
    writeln!(out, "Summary")?;
    writeln!(
        out,
        "  {:<8} {:>9} {:>6} {:>10} {:>12}",
        "channel", "requested", "sent", "delivered", "peak/s"
    )?;
    for (channel, c) in &s.channels {
        writeln!(
            out,
            "  {:<8} {:>9} {:>6} {:>10} {:>12}",
            channel.name(),
            c.requested,
            c.sent,
            c.delivered,
            format!("{} (≤{})", c.peak_per_second, s.rate_limit)
        )?;
    }
    writeln!(out, "  retries: {}", s.retries)?;
    writeln!(
        out,
        "  duplicate sends suppressed by the idempotency key: {}",
        s.duplicates_suppressed
    )?;
    writeln!(
        out,
        "  dead-lettered in the outage: {}, replayed: {}",
        s.dead_lettered, s.replayed
    )?;
    writeln!(out, "  rejected (left in the dead letters): {}", s.rejected)?;
    let exactly_once = s.channels.values().all(|c| c.sent == c.delivered);
    writeln!(
        out,
        "  every sent notification delivered exactly once: {}",
        if exactly_once { "yes" } else { "NO" }
    )
}
