//! A slow, lossy link between the relay and the broker: `tc netem` is not
//! available on this machine (no `sch_netem` module), so the link is a
//! userspace TCP proxy of the case's own between the relay's client and the
//! NATS server. It holds every chunk for 40 ms in each direction (80 ms
//! round trip on loopback) and cuts every connection after a random 300 to
//! 900 ms (both sockets closed, whatever was in flight lost: publishes,
//! their acknowledgements, or both), so the client reconnects again and
//! again while the commands run (from when the bus is set up: its setup
//! is not retried, a process that cannot set up its bus fails to start).
//!
//! Checked on the JetStream stream itself (read back by sequence through a
//! direct connection): every stored event published exactly once (one
//! message per event id: a publish whose acknowledgement was lost is sent
//! again with the same message id and the server drops the copy), in the
//! store's order (global positions strictly increasing with the stream
//! sequence, each stream's revisions 0, 1, 2, ... without a gap).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use orchestrix::Application;
use orchestrix_backends::{BusOptions, start_on_bus};
use orchestrix_chaos::services::Nats;
use orchestrix_chaos::workload::{self, Counter};
use orchestrix_chaos::{missing, scale};
use rand::Rng as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const DELAY: Duration = Duration::from_millis(40);

/// Copies `from` to `to`, holding each chunk for [`DELAY`].
async fn pump(mut from: tokio::net::tcp::OwnedReadHalf, mut to: tokio::net::tcp::OwnedWriteHalf) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                tokio::time::sleep(DELAY).await;
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The lossy proxy: accepts on a free loopback port, forwards to
/// `upstream`, and while `lossy` is set cuts each connection after 300 to
/// 900 ms. Counts the cuts.
async fn proxy(
    lossy: Arc<std::sync::atomic::AtomicBool>,

    upstream: String,
    cuts: Arc<AtomicU64>,
) -> anyhow::Result<(u16, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (upstream, cuts, lossy) = (upstream.clone(), cuts.clone(), lossy.clone());
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let cut = async {
                    loop {
                        let life = Duration::from_millis(rand::rng().random_range(300..900));
                        tokio::time::sleep(life).await;
                        if lossy.load(Ordering::Relaxed) {
                            cuts.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                };
                tokio::select! {
                    () = pump(cr, sw) => {}
                    () = pump(sr, cw) => {}
                    () = cut => {}
                }
                // Dropping the halves closes both connections.
            });
        }
    });
    Ok((port, task))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[allow(clippy::too_many_lines)]
async fn relay_over_a_slow_lossy_link_publishes_every_event_once() -> anyhow::Result<()> {
    let case = "relay_over_a_slow_lossy_link_publishes_every_event_once";
    if !Nats::available() && missing(case, "no /usr/sbin/nats-server") {
        return Ok(());
    }
    let count = scale(2_000, 20_000);
    let nats = Nats::start().await?;
    let upstream = nats
        .url()
        .strip_prefix("nats://")
        .context("a nats:// URL")?
        .to_owned();
    let cuts = Arc::new(AtomicU64::new(0));
    // Lossy once the bus is set up (its setup requests are not retried: a
    // process that cannot set up its bus fails to start, and is restarted).
    let lossy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (port, proxy_task) = proxy(lossy.clone(), upstream, cuts.clone()).await?;

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
        &format!("nats://127.0.0.1:{port}?stream={stream_name}&prefix=chaos.{run}&partitions=4"),
        BusOptions::producer(),
    )
    .await?;
    let relay = bus.relay().context("the relay")?;
    lossy.store(true, Ordering::Relaxed);

    let started = Instant::now();
    let acknowledged = Arc::new(AtomicU64::new(0));
    let produced = {
        let acked = acknowledged.clone();
        workload::produce(&app, run, count, 16, Duration::from_secs(60), |n| {
            acked.store(n, Ordering::Relaxed);
        })
        .await?
    };
    let head = store.head_position().await?;
    tokio::time::timeout(Duration::from_secs(300), relay.wait_for(head))
        .await
        .context("the relay did not reach the head within 300 s")??;
    let took = started.elapsed();
    let published_total = relay.published();
    bus.shutdown().await?;
    proxy_task.abort();

    // The stream itself, message by message, over a direct connection.
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
    let (mut duplicates, mut out_of_order, mut last_position) = (0u64, 0u64, 0u64);
    let mut revisions: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let header = |m: &async_nats::jetstream::message::StreamMessage, name: &str| {
        m.headers.get(name).map(|v| v.as_str().to_owned())
    };
    for seq in first..=last {
        let m = stream.get_raw_message(seq).await?;
        if !ids.insert(header(&m, "ce-id").context("no ce-id")?) {
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
    let cuts = cuts.load(Ordering::Relaxed);
    println!(
        "CHAOS relay-slow-link: commands {count} events {events} faults {cuts} connection cuts, 40 ms each way; relay at the head {took:?} after the first command; stream messages {messages} lost {lost} duplicates {duplicates} out_of_order {out_of_order} streams_with_gaps {gaps} of {}; producer transient_failures {}",
        revisions.len(),
        produced.transient_failures,
    );
    assert!(
        cuts >= 3,
        "the link was cut only {cuts} times: no fault injected"
    );
    assert_eq!(events, count, "every command's event stored once");
    assert_eq!(published_total, head, "relay at the head");
    assert_eq!(messages, events, "one message per stored event");
    assert_eq!(lost, 0, "events never published");
    assert_eq!(duplicates, 0, "events published twice");
    assert_eq!(out_of_order, 0, "events published out of the store's order");
    assert_eq!(gaps, 0, "a stream's revisions with a gap or out of order");
    Ok(())
}
