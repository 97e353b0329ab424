//! A network partition between the relay and the broker: the NATS server
//! runs in a network namespace of the case's own (listening on the
//! namespace's address), the test process runs the commands on a SQLite
//! store and the relay to the server. A third of the way in, the host end
//! of the namespace's veth pair goes down (packets dropped both ways, the
//! TCP connection left open), for at least 5 s (20 s in the long variant)
//! and until a quarter of the commands are waiting behind it; then it comes
//! up again.
//!
//! Checked on the JetStream stream itself (every message read back by
//! sequence): every stored event published exactly once (one message per
//! event id, as many messages as events), in the store's order (global
//! positions strictly increasing with the stream sequence, and each
//! stream's revisions 0, 1, 2, ... with no gap), and the relay publishing
//! nothing the partition cut off while it lasted. Measured: the backlog at
//! the heal, how long the relay took to publish the store's head after it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use orchestrix::Application;
use orchestrix_backends::{BusOptions, start_on_bus};
use orchestrix_chaos::net::{self, Netns};
use orchestrix_chaos::services::Nats;
use orchestrix_chaos::workload::{self, Counter};
use orchestrix_chaos::{missing, poll, scale};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[allow(clippy::too_many_lines)]
async fn relay_partitioned_from_broker_delays_but_never_loses() -> anyhow::Result<()> {
    let case = "relay_partitioned_from_broker_delays_but_never_loses";
    if !Nats::available() && missing(case, "no /usr/sbin/nats-server") {
        return Ok(());
    }
    if !net::available() && missing(case, "cannot make network namespaces (root and iproute2)") {
        return Ok(());
    }
    let count = scale(2_000, 20_000);
    let outage = Duration::from_secs(scale(5, 20));
    let ns = Netns::new()?;
    let nats = Nats::start_on(ns.addr(), Some(&ns)).await?;
    let dir = tempfile::tempdir()?;
    let store_url = format!("sqlite://{}", dir.path().join("chaos.db").display());
    let store = orchestrix_worker::open_store(&store_url).await?;
    let app = Application::builder(store.clone())
        .aggregate::<Counter>()
        .build()?;
    let run = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let stream_name = format!("CHAOS_{run}");
    let bus = start_on_bus(
        &app,
        &format!(
            "{}?stream={stream_name}&prefix=chaos.{run}&partitions=4",
            nats.url()
        ),
        BusOptions::producer(),
    )
    .await?;
    let relay = bus.relay().context("the relay")?;

    let acknowledged = Arc::new(AtomicU64::new(0));
    let producer = {
        let (app, run, acked) = (app.clone(), run.to_owned(), acknowledged.clone());
        tokio::spawn(async move {
            workload::produce(&app, &run, count, 16, Duration::from_secs(60), |n| {
                acked.store(n, Ordering::Relaxed);
            })
            .await
        })
    };
    poll(
        "a third of the commands, the relay publishing",
        Duration::from_secs(60),
        Duration::from_millis(10),
        || {
            let n = acknowledged.load(Ordering::Relaxed);
            let published = relay.published();
            async move { (n >= count / 3 && published > 0).then_some(()) }
        },
    )
    .await?;

    ns.cut()?;
    let cut = Instant::now();
    let published_at_cut = relay.published();
    // The outage: at least `outage`, and until a quarter of the commands
    // wait behind it (sampled, the relay's published position recorded).
    let mut published_during = published_at_cut;
    loop {
        published_during = published_during.max(relay.published());
        let head = store.head_position().await?;
        if cut.elapsed() >= outage && head >= published_at_cut + count / 4 {
            break;
        }
        anyhow::ensure!(
            cut.elapsed() < Duration::from_secs(120),
            "no backlog of {} events behind the partition within 120 s",
            count / 4
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let head_at_heal = store.head_position().await?;
    let published_at_heal = relay.published();
    ns.heal()?;
    let healed = Instant::now();
    let down = healed.duration_since(cut);
    relay.wait_for(head_at_heal).await?;
    let recovered = healed.elapsed();

    let produced = producer.await??;
    bus.catch_up().await?;
    let published_total = relay.published();
    bus.shutdown().await?;

    // The stream itself, message by message.
    let client = async_nats::connect(nats.url()).await?;
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream(&stream_name).await?;
    let info = stream.info().await?;
    let (first, last, messages) = (
        info.state.first_sequence,
        info.state.last_sequence,
        info.state.messages,
    );
    let mut ids = HashSet::new();
    let mut duplicates = 0u64;
    let mut out_of_order = 0u64;
    let mut last_position = 0u64;
    let mut revisions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let header = |m: &async_nats::jetstream::message::StreamMessage, name: &str| {
        m.headers.get(name).map(|v| v.as_str().to_owned())
    };
    for seq in first..=last {
        let m = stream.get_raw_message(seq).await?;
        let id = header(&m, "ce-id").context("no ce-id")?;
        if !ids.insert(id) {
            duplicates += 1;
        }
        let position: u64 = header(&m, "ce-globalposition")
            .context("no ce-globalposition")?
            .parse()?;
        if position <= last_position {
            out_of_order += 1;
        }
        last_position = position;
        let revision: u64 = header(&m, "ce-streamrevision")
            .context("no ce-streamrevision")?
            .parse()?;
        let stream_id = header(&m, "ce-subject")
            .or_else(|| header(&m, "ce-partitionkey"))
            .context("no stream id header")?;
        revisions.entry(stream_id).or_default().push(revision);
    }
    let gaps = revisions
        .values()
        .filter(|r| r.iter().enumerate().any(|(i, &rev)| rev != i as u64))
        .count();
    let truth = workload::stored(&store).await?;
    let events: u64 = truth.values().map(|&n| u64::from(n)).sum();
    let lost = events.saturating_sub(ids.len() as u64);
    println!(
        "CHAOS relay-partition: commands {count} events {events} faults 1 (veth link down between relay and broker, {down:?}) published_at_cut {published_at_cut} published_while_cut {} backlog_at_heal {} relay_caught_up {recovered:?} after healing; stream messages {messages} lost {lost} duplicates {duplicates} out_of_order {out_of_order} streams_with_gaps {gaps} of {}; producer transient_failures {}",
        published_at_heal.max(published_during) - published_at_cut,
        head_at_heal - published_at_heal,
        revisions.len(),
        produced.transient_failures,
    );
    drop(nats);
    drop(ns);
    assert_eq!(events, count, "every command's event stored once");
    assert_eq!(
        published_total,
        store.head_position().await?,
        "relay at the head"
    );
    assert_eq!(messages, events, "one message per stored event");
    assert_eq!(lost, 0, "events never published");
    assert_eq!(duplicates, 0, "events published twice");
    assert_eq!(out_of_order, 0, "events published out of the store's order");
    assert_eq!(gaps, 0, "a stream's revisions with a gap or out of order");
    Ok(())
}
